"""BEEP (RFC 3080/3081) for Python 3 with PyVortex's API, on beep-rs.

A PyVortex script runs unchanged::

    import vortex

    ctx = vortex.Ctx()
    ctx.init()
    conn = vortex.Connection(ctx, "localhost", "1602")
    channel = conn.open_channel(0, "http://example.org/beep/echo")
    channel.send_msg("hello", 5)

Beside PyVortex's conventions (None/False on failure and
``conn.pop_channel_error()``), a few Pythonic calls raise typed exceptions
(``vortex.connect``, ``Connection.new_channel``, ``Channel.send``,
``Channel.request``, ``Channel.reply``), payloads may be ``bytes`` or
``str`` with the size left out, and contexts, connections, channels and
listeners are context managers.

Handlers run on the library's threads with the GIL taken; an exception in
one is logged on the ``vortex`` logger and answered as a failure (an ERR
reply, a refused start, a denied authentication).
"""

import atexit as _atexit
import queue as _queue
import signal as _signal
import threading as _threading

from . import _beep
from ._beep import (
    Channel,
    Connection,
    Ctx,
    Frame,
    Listener,
    create_listener,
    register_profile,
    unlock_listeners,
)
from ._errors import (
    AuthenticationError,
    ConnectionClosedError,
    ProtocolError,
    RefusedError,
    TimeoutError,
    TLSError,
    UsageError,
    VortexError,
)
from ._pool import ChannelPool

__all__ = [
    "AsyncQueue",
    "AuthenticationError",
    "Channel",
    "ChannelPool",
    "Connection",
    "ConnectionClosedError",
    "Ctx",
    "Frame",
    "Listener",
    "ProtocolError",
    "RefusedError",
    "TLSError",
    "UsageError",
    "VortexError",
    "connect",
    "create_listener",
    "queue_reply",
    "register_profile",
    "status_ERROR",
    "status_OK",
    "unlock_listeners",
    "wait_listeners",
]

#: PyVortex's status values (``conn.status``, ``tls_notify``, ``sasl_status``).
status_OK = _beep.status_OK
status_ERROR = _beep.status_ERROR


def connect(ctx, host, port, server_name=None, timeout=None):
    """Connects to a BEEP listener and waits for its greeting; raises
    ``ConnectionClosedError`` (or ``TimeoutError``) on failure. The
    Pythonic twin of ``vortex.Connection(ctx, host, port)``."""
    return _beep.connect_or_raise(ctx, host, port, server_name, timeout)


def wait_listeners(ctx, unlock_on_signal=False):
    """Blocks until ``unlock_listeners(ctx)`` or ``ctx.exit()``, with the GIL
    released (PyVortex ``vortex.wait_listeners``). With ``unlock_on_signal``
    SIGINT (Ctrl-C) and SIGTERM end the wait, which then returns normally;
    without it Ctrl-C raises ``KeyboardInterrupt`` as usual."""
    previous = None
    if unlock_on_signal and _threading.current_thread() is _threading.main_thread():
        def _on_term(signum, frame):
            raise KeyboardInterrupt

        try:
            previous = _signal.signal(_signal.SIGTERM, _on_term)
        except (ValueError, OSError):
            previous = None
    try:
        _beep.wait_listeners(ctx, unlock_on_signal)
    finally:
        if previous is not None:
            _signal.signal(_signal.SIGTERM, previous)


class AsyncQueue:
    """A thread-safe FIFO (PyVortex ``vortex.AsyncQueue``): handlers
    ``push``, the application ``pop``s (waiting) or ``timedpop``s."""

    def __init__(self):
        self._queue = _queue.Queue()

    def push(self, data):
        """Adds ``data`` at the end."""
        self._queue.put(data)

    def unique_push(self, data):
        """Adds ``data`` unless it is queued already."""
        with self._queue.mutex:
            if any(item is data for item in self._queue.queue):
                return
        self._queue.put(data)

    def priority_push(self, data):
        """Adds ``data`` at the front."""
        with self._queue.mutex:
            self._queue.queue.appendleft(data)
            self._queue.unfinished_tasks += 1
            self._queue.not_empty.notify()

    def pop(self):
        """Takes the first item, waiting for one (Ctrl-C interrupts)."""
        while True:
            try:
                return self._queue.get(timeout=0.1)
            except _queue.Empty:
                continue

    def timedpop(self, microseconds):
        """Takes the first item, waiting at most ``microseconds``; None if
        none came."""
        try:
            return self._queue.get(timeout=max(microseconds, 0) / 1e6)
        except _queue.Empty:
            return None

    @property
    def items(self):
        """The number of items queued."""
        return self._queue.qsize()

    @property
    def length(self):
        """The number of items queued."""
        return self._queue.qsize()

    def unref(self):
        """Accepted for compatibility."""

    def __len__(self):
        return self._queue.qsize()


def queue_reply(conn, channel, frame, queue):
    """A frame-received handler that pushes each frame to ``queue`` (an
    ``AsyncQueue``): ``channel.set_frame_received(vortex.queue_reply, q)``
    then ``channel.get_reply(q)``."""
    queue.push(frame)


__version__ = "0.1.0"

# At exit, the library's threads stop calling Python handlers before the
# interpreter finalizes.
_atexit.register(_beep._shutdown)
