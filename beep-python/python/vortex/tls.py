"""TLS (RFC 3080 3.1) for vortex connections (PyVortex ``vortex.tls``).

Listener side::

    vortex.tls.accept_tls(ctx,
                          accept_handler=tls_accept_handler, accept_handler_data="test",
                          cert_handler=tls_cert_handler, cert_handler_data="test 2",
                          key_handler=tls_key_handler, key_handler_data="test 3")

(before ``vortex.create_listener``); the handlers get ``(conn, server_name,
data)``, ``conn`` the listener's ``vortex.Connection`` that asks (the one
its frame handlers get). Or, Pythonic:
``accept_tls(ctx, cert_file="cert.pem", key_file="key.pem")``.

Client side: ``start_tls(conn, serverName, tls_notify, data)`` (the
handler gets ``(conn, status, status_msg, data)``) or
``start_tls_sync(conn)`` returning ``(conn, status, status_msg)``; ``conn``
stays the same object. Unlike PyVortex the listener's certificate is
verified: against the system's CAs by default, ``ca_file=...`` or
``set_verification(ctx, ca_file=...)`` for a private CA, or
``insecure=True`` for PyVortex's behaviour (tests only).
"""

from . import _beep

_tls = _beep.tls

__all__ = [
    "accept_tls",
    "info",
    "init",
    "is_enabled",
    "secure",
    "set_verification",
    "start_tls",
    "start_tls_sync",
]

#: The URI of the TLS profile.
TLS_URI = "http://iana.org/beep/TLS"

accept_tls = _tls.accept_tls
set_verification = _tls.set_verification
start_tls = _tls.start_tls
start_tls_sync = _tls.start_tls_sync
secure = _tls.secure
is_enabled = _tls.is_enabled
info = _tls.info


def init(ctx):
    """PyVortex's TLS initialisation: always succeeds (True)."""
    return True
