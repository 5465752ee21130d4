"""Channel pools (PyVortex ``vortex.ChannelPool``): channels of one profile
on a connection, lent one borrower at a time.

Written in Python on top of ``Connection.open_channel``: PyVortex's pool
lends without waiting (``next_ready`` gives None when every channel is
busy), grows and shrinks on request, and calls its ``create_channel``
handler with PyVortex's arguments, which beep-blocking's ``ChannelPool``
(it waits for a channel, and gives its channel maker only the connection)
does not.
"""

import contextlib
import itertools
import threading

from ._errors import _report

__all__ = ["ChannelPool", "channel_pool_new"]

_ids = itertools.count(1)


class ChannelPool:
    """Channels of one profile on a connection (PyVortex ``ChannelPool``).

    ``next_ready()`` lends an idle channel (None if there is none, unless
    ``auto_inc`` lets the pool open one more) and ``release(channel)``
    gives it back. Pythonic: ``with pool.channel() as ch: ...``.
    """

    def __init__(self, conn, profile, create_channel=None, create_channel_data=None,
                 received=None, received_data=None, close=None, close_data=None):
        self.id = next(_ids)
        self.conn = conn
        self.profile = profile
        self._create_channel = create_channel
        self._create_channel_data = create_channel_data
        self._received = received
        self._received_data = received_data
        self._close = close
        self._close_data = close_data
        self._lock = threading.Lock()
        # [channel, busy] pairs, in creation order.
        self._channels = []

    @property
    def ctx(self):
        """The connection's context."""
        return self.conn.ctx

    @property
    def channel_count(self):
        """How many channels the pool holds."""
        with self._lock:
            self._forget_closed()
            return len(self._channels)

    @property
    def channel_available(self):
        """How many of them are idle."""
        with self._lock:
            self._forget_closed()
            return sum(1 for _, busy in self._channels if not busy)

    def _forget_closed(self):
        self._channels = [entry for entry in self._channels if entry[0].is_ready()]

    def _create(self, next_data=None):
        """A new channel: from the create_channel handler, or opened here."""
        if self._create_channel is not None:
            try:
                channel = self._create_channel(
                    self.conn, 0, self.profile, self._received, self._received_data,
                    self._close, self._close_data, self._create_channel_data, next_data)
            except Exception as exc:  # a handler's failure: logged, no channel
                _report("channel pool create_channel handler", exc)
                return None
            return channel if channel else None
        return self.conn.open_channel(
            0, self.profile, frame_received=self._received,
            frame_received_data=self._received_data, close=self._close,
            close_data=self._close_data)

    def add(self, num=1):
        """Opens ``num`` more channels; False if one could not be opened."""
        for _ in range(num):
            channel = self._create()
            if channel is None:
                return False
            with self._lock:
                self._channels.append([channel, False])
        return True

    def remove(self, num=1):
        """Closes up to ``num`` idle channels."""
        closing = []
        with self._lock:
            for entry in list(self._channels):
                if len(closing) == num:
                    break
                if not entry[1]:
                    self._channels.remove(entry)
                    closing.append(entry[0])
        for channel in closing:
            channel.close()

    def next_ready(self, auto_inc=False, user_data=None):
        """Lends an idle channel; if there is none, opens one more when
        ``auto_inc`` is true, else returns None."""
        with self._lock:
            self._forget_closed()
            for entry in self._channels:
                if not entry[1]:
                    entry[1] = True
                    return entry[0]
        if not auto_inc:
            return None
        channel = self._create(user_data)
        if channel is None:
            return None
        with self._lock:
            self._channels.append([channel, True])
        return channel

    def release(self, channel):
        """Gives a channel lent by ``next_ready`` back."""
        with self._lock:
            for entry in self._channels:
                if entry[0] == channel:
                    entry[1] = False
                    return True
        return False

    @contextlib.contextmanager
    def channel(self, auto_inc=True):
        """Lends a channel for a ``with`` block and gives it back after.
        Raises ``vortex.UsageError`` when none is idle and none can be
        opened."""
        from ._errors import UsageError

        channel = self.next_ready(auto_inc=auto_inc)
        if channel is None:
            raise UsageError("no channel ready in the pool")
        try:
            yield channel
        finally:
            self.release(channel)

    def close(self):
        """Closes every channel of the pool."""
        with self._lock:
            channels, self._channels = self._channels, []
        for channel, _ in channels:
            if channel.is_ready():
                channel.close()

    def __len__(self):
        return self.channel_count

    def __repr__(self):
        return "<vortex.ChannelPool %d %s: %d channels>" % (
            self.id, self.profile, len(self._channels))


def channel_pool_new(conn, profile, init_num, create_channel=None, create_channel_data=None,
                     received=None, received_data=None, close=None, close_data=None,
                     on_created=None, user_data=None):
    """``Connection.channel_pool_new``: a pool with ``init_num`` channels.
    With ``on_created(pool, user_data)`` the pool is made on a thread of
    its own and None is returned at once."""
    def make():
        pool = ChannelPool(conn, profile, create_channel, create_channel_data,
                           received, received_data, close, close_data)
        pool.add(init_num)
        return pool

    if on_created is None:
        return make()

    def run():
        pool = make()
        try:
            on_created(pool, user_data)
        except Exception as exc:
            _report("channel pool on_created handler", exc)

    threading.Thread(target=run, name="vortex-pool", daemon=True).start()
    return None
