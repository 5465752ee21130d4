"""vortex.tls with a certificate generated for the test."""

import threading

import pytest

import vortex
import vortex.tls
from conftest import ECHO, HOST, echo_received, listen


@pytest.fixture
def certificate(tmp_path):
    cert, key = vortex._beep._test_certificate("localhost")
    (tmp_path / "test.crt").write_text(cert)
    (tmp_path / "test.key").write_text(key)
    return str(tmp_path / "test.crt"), str(tmp_path / "test.key")


def tls_listener(ctx, certificate, accept=True):
    crt, key = certificate
    calls = []
    # The connection each handler got: accept, certificate and key
    # handlers, then the frame handlers.
    conns = {"tls": [], "frames": []}

    def tls_accept_handler(conn, server_name, data):
        calls.append(("accept", server_name, data))
        conns["tls"].append(conn)
        return accept

    def tls_cert_handler(conn, server_name, data):
        calls.append(("cert", server_name, data))
        conns["tls"].append(conn)
        return crt

    def tls_key_handler(conn, server_name, data):
        calls.append(("key", server_name, data))
        conns["tls"].append(conn)
        return key

    secured = []

    def received(conn, channel, frame, data):
        secured.append(vortex.tls.is_enabled(conn))
        conns["frames"].append(conn)
        echo_received(conn, channel, frame, data)

    vortex.register_profile(ctx, ECHO, frame_received=received)
    assert vortex.tls.init(ctx)
    vortex.tls.accept_tls(ctx,
                          accept_handler=tls_accept_handler, accept_handler_data="test",
                          cert_handler=tls_cert_handler, cert_handler_data="test 2",
                          key_handler=tls_key_handler, key_handler_data="test 3")
    return listen(ctx), calls, secured, conns


def test_start_tls_sync_then_echo(ctx, certificate):
    listener, calls, secured, _ = tls_listener(ctx, certificate)
    conn = vortex.Connection(ctx, HOST, listener.port)
    assert not vortex.tls.is_enabled(conn)
    (new_conn, status, status_msg) = vortex.tls.start_tls_sync(
        conn, "localhost", ca_file=certificate[0])
    assert status == vortex.status_OK, status_msg
    assert new_conn == conn
    assert vortex.tls.is_enabled(conn)
    assert calls == [("accept", "localhost", "test"), ("cert", "localhost", "test 2"),
                     ("key", "localhost", "test 3")]
    info = vortex.tls.info(conn)
    assert info["protocol_version"] and len(info["peer_certificates"]) == 1
    channel = conn.new_channel(ECHO)
    assert channel.request("secret", timeout=10).payload == "secret"
    assert secured == [True]
    conn.close()


def test_tls_handlers_get_the_listener_side_connection(ctx, certificate):
    """PyVortex's TLS accept, certificate and key handlers get ``conn``: the
    listener's Connection that asks, the same one (equal, same id) for the
    three and for the frame handlers of the session once it is secured."""
    listener, _, _, conns = tls_listener(ctx, certificate)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (_, status, msg) = vortex.tls.start_tls_sync(conn, "localhost", ca_file=certificate[0])
    assert status == vortex.status_OK, msg
    assert conn.new_channel(ECHO).request("x", timeout=10).payload == "x"
    (accept, cert, key) = conns["tls"]
    assert all(isinstance(c, vortex.Connection) for c in (accept, cert, key))
    assert accept == cert == key == conns["frames"][0]
    assert len({accept.id, cert.id, key.id, conns["frames"][0].id}) == 1
    assert accept.role == "listener" and accept.id != conn.id
    assert accept.is_ok() and vortex.tls.is_enabled(accept)
    conn.close()


def test_start_tls_async_notify(ctx, certificate):
    listener, _, _, _ = tls_listener(ctx, certificate)
    vortex.tls.set_verification(ctx, ca_file=certificate[0])
    conn = vortex.Connection(ctx, HOST, listener.port, "localhost")
    got = []
    done = threading.Event()

    def tls_notify(conn, status, status_msg, data):
        got.append((conn, status, status_msg, data))
        done.set()

    assert vortex.tls.start_tls(conn, "localhost", tls_notify, "nd")
    assert done.wait(10)
    (c, status, msg, data) = got[0]
    assert (c == conn, status, data) == (True, vortex.status_OK, "nd"), msg
    assert conn.new_channel(ECHO).request("x", timeout=10).payload == "x"
    conn.close()


def test_untrusted_certificate_fails(ctx, certificate, tmp_path):
    listener, _, _, _ = tls_listener(ctx, certificate)
    other, _ = vortex._beep._test_certificate("localhost")
    (tmp_path / "other.crt").write_text(other)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (_, status, msg) = vortex.tls.start_tls_sync(conn, "localhost", ca_file=str(tmp_path / "other.crt"))
    assert status == vortex.status_ERROR
    assert "certificate" in msg.lower() or "tls" in msg.lower()
    assert not conn.is_ok()
    conn2 = vortex.Connection(ctx, HOST, listener.port)
    with pytest.raises(vortex.TLSError):
        vortex.tls.secure(conn2, "localhost", ca_file=str(tmp_path / "other.crt"))


def test_accept_handler_refuses(ctx, certificate):
    listener, calls, _, _ = tls_listener(ctx, certificate, accept=False)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (_, status, msg) = vortex.tls.start_tls_sync(conn, "localhost", insecure=True)
    assert status == vortex.status_ERROR
    assert calls == [("accept", "localhost", "test")]
    # Refused: the session goes on in plain.
    assert conn.is_ok() and not vortex.tls.is_enabled(conn)
    with pytest.raises(vortex.RefusedError):
        vortex.tls.secure(conn, "localhost", insecure=True)
    assert conn.new_channel(ECHO).request("plain", timeout=10).payload == "plain"
    conn.close()


def test_cert_handler_that_raises_refuses(ctx, certificate, caplog):
    def broken(conn, server_name, data):
        raise OSError("no certificate here")

    vortex.register_profile(ctx, ECHO, frame_received=echo_received)
    vortex.tls.accept_tls(ctx, cert_handler=broken, key_file=certificate[1])
    listener = listen(ctx)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (_, status, _) = vortex.tls.start_tls_sync(conn, "localhost", insecure=True)
    assert status == vortex.status_ERROR
    assert "no certificate here" in caplog.text
    assert conn.is_ok()
    conn.close()


def test_scram_plus_binds_to_the_tls_session(ctx, certificate):
    """SCRAM-SHA-256-PLUS (RFC 9266): offered only over TLS, refused
    before it, and authenticates once TLS is on."""
    import vortex.sasl

    def auth_handler(conn, auth_props, user_data):
        return "secret" if auth_props["auth_id"] == "bob" else None

    assert vortex.sasl.accept_mech(ctx, vortex.sasl.SCRAM_SHA_256_PLUS, auth_handler)
    listener, _, _, _ = tls_listener(ctx, certificate)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (status, msg) = vortex.sasl.start_auth_sync(
        conn, vortex.sasl.SCRAM_SHA_256_PLUS, "bob", None, "secret")
    assert status != vortex.status_OK
    assert "RFC 9266" in msg
    (_, status, msg) = vortex.tls.start_tls_sync(conn, "localhost", ca_file=certificate[0])
    assert status == vortex.status_OK, msg
    (status, msg) = vortex.sasl.start_auth_sync(
        conn, vortex.sasl.SCRAM_SHA_256_PLUS, "bob", None, "secret")
    assert status == vortex.status_OK, msg
    assert vortex.sasl.method_used(conn) == vortex.sasl.SCRAM_SHA_256_PLUS
    assert conn.new_channel(ECHO).request("bound", timeout=10).payload == "bound"
    conn.close()
