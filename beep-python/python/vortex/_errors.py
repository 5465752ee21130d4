"""The exceptions of the vortex package, and how handler errors are logged.

PyVortex's calls keep PyVortex's conventions (None or False, and the
reason in ``conn.pop_channel_error()``); the Pythonic calls (``vortex.connect``,
``Connection.new_channel``, ``Channel.send``/``request``/``reply``,
``vortex.tls.secure``, ``vortex.sasl.authenticate``) raise these instead.
"""

import builtins
import logging

__all__ = [
    "VortexError",
    "ProtocolError",
    "UsageError",
    "RefusedError",
    "AuthenticationError",
    "ConnectionClosedError",
    "TLSError",
    "TimeoutError",
]

log = logging.getLogger("vortex")


class VortexError(Exception):
    """Base of every vortex error: ``text`` says what happened, ``code`` is
    the BEEP reply code (RFC 3080 section 8) when there is one."""

    def __init__(self, text, code=None):
        super().__init__(text)
        self.text = text
        self.code = code

    def __str__(self):
        if self.code is None:
            return self.text
        return "%s (%s)" % (self.text, self.code)


class ProtocolError(VortexError):
    """The peer broke the protocol; the connection is closed."""


class UsageError(VortexError, ValueError):
    """The call does not fit: bad arguments, or the session's state (a
    channel number in use, a closed connection, TLS with channels open)."""


class RefusedError(VortexError):
    """The peer refused: a channel start, a close, TLS, or the session;
    ``code`` and ``text`` are the peer's."""


class AuthenticationError(RefusedError):
    """The peer refused the SASL credentials (535)."""


class ConnectionClosedError(VortexError, builtins.ConnectionError):
    """The connection is closed (released, lost, or broken) or could not
    be made."""


class TLSError(ConnectionClosedError):
    """The TLS handshake failed (an untrusted certificate, ...); the
    connection is closed."""


class TimeoutError(VortexError, builtins.TimeoutError):  # noqa: A001
    """No answer in time."""


def _report(where, exc, traceback=None):
    """Logs an exception raised by a handler (called by the native module)."""
    log.error(
        "exception in %s: %s", where, exc,
        exc_info=(type(exc), exc, traceback or exc.__traceback__),
    )
