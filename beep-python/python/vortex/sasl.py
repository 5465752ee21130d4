"""SASL (RFC 3080 4.1) for vortex connections (PyVortex ``vortex.sasl``).

Listener side (before ``vortex.create_listener``)::

    vortex.sasl.accept_mech(ctx, "plain", auth_handler)

    def auth_handler(conn, auth_props, user_data):
        if auth_props["mech"] == vortex.sasl.PLAIN:
            return auth_props["auth_id"] == "bob" and auth_props["password"] == "secret"
        if auth_props["mech"] == vortex.sasl.CRAM_MD5:
            return "secret" if auth_props["auth_id"] == "bob" else None
        return False

``auth_props`` holds ``mech`` (the profile URI), ``auth_id``,
``authorization_id``, ``password`` (PLAIN), ``anonymous_token``,
``serverName`` and ``return_password`` (True when the mechanism needs the
user's password: CRAM-MD5, DIGEST-MD5, SCRAM-SHA-256). ``conn`` is the
listener's ``vortex.Connection`` the attempt came on (the one its frame
handlers get).

Client side: ``start_auth_sync(conn, vortex.sasl.PLAIN, "bob", None,
"secret")`` returns ``(status, status_msg)``; ``start_auth(...,
auth_notify=sasl_status, auth_notify_data=...)`` reports to
``sasl_status(conn, status, status_msg, data)``. Pythonic:
``authenticate(conn, "plain", "bob", "secret")`` raises
``vortex.AuthenticationError``.
"""

from . import _beep

_sasl = _beep.sasl

__all__ = [
    "ANONYMOUS",
    "CRAM_MD5",
    "DIGEST_MD5",
    "EXTERNAL",
    "PLAIN",
    "SCRAM_SHA_256",
    "SCRAM_SHA_256_PLUS",
    "accept_mech",
    "auth_id",
    "auth_info",
    "authenticate",
    "authorization_id",
    "get_prop",
    "init",
    "is_authenticated",
    "method_used",
    "start_auth",
    "start_auth_sync",
]

#: The SASL profiles, by their URIs (as PyVortex names them).
ANONYMOUS = "http://iana.org/beep/SASL/ANONYMOUS"
PLAIN = "http://iana.org/beep/SASL/PLAIN"
CRAM_MD5 = "http://iana.org/beep/SASL/CRAM-MD5"
DIGEST_MD5 = "http://iana.org/beep/SASL/DIGEST-MD5"
EXTERNAL = "http://iana.org/beep/SASL/EXTERNAL"
SCRAM_SHA_256 = "http://iana.org/beep/SASL/SCRAM-SHA-256"
#: SCRAM-SHA-256 bound to the connection's TLS 1.3 session (RFC 9266's
#: tls-exporter): start TLS first; offered by a listener only over TLS.
#: Not in PyVortex.
SCRAM_SHA_256_PLUS = "http://iana.org/beep/SASL/SCRAM-SHA-256-PLUS"

accept_mech = _sasl.accept_mech
start_auth = _sasl.start_auth
start_auth_sync = _sasl.start_auth_sync
authenticate = _sasl.authenticate
is_authenticated = _sasl.is_authenticated
method_used = _sasl.method_used
auth_id = _sasl.auth_id
authorization_id = _sasl.authorization_id
auth_info = _sasl.auth_info


def init(ctx):
    """PyVortex's SASL initialisation: always succeeds (True)."""
    return True


def get_prop(conn, name):
    """A property of the connection's authentication: ``"auth_id"``,
    ``"authorization_id"`` or ``"mech"`` (None before a success)."""
    info = auth_info(conn)
    return None if info is None else info.get(name)
