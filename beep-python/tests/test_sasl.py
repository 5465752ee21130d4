"""vortex.sasl: PLAIN and CRAM-MD5, good and wrong passwords, both APIs."""

import threading

import pytest

import vortex
import vortex.sasl
from conftest import ECHO, HOST, listen


def sasl_listener(ctx):
    calls = []

    def auth_handler(conn, auth_props, user_data):
        calls.append((auth_props["mech"], auth_props["auth_id"], user_data))
        if auth_props["mech"] == vortex.sasl.PLAIN:
            if auth_props["auth_id"] == "bob" and auth_props["password"] == "secret":
                return True
        if auth_props["mech"] == vortex.sasl.CRAM_MD5:
            if auth_props["auth_id"] == "bob":
                auth_props["return_password"] = True
                return "secret"
        if auth_props["mech"] == vortex.sasl.SCRAM_SHA_256:
            return "secret" if auth_props["auth_id"] == "bob" else None
        if auth_props["mech"] == vortex.sasl.ANONYMOUS:
            return auth_props["anonymous_token"] == "test@aspl.es"
        return False

    who = []

    def received(conn, channel, frame, data):
        who.append((vortex.sasl.is_authenticated(conn), vortex.sasl.auth_id(conn),
                    vortex.sasl.method_used(conn)))
        channel.send_rpy(frame.payload, msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=received)
    assert vortex.sasl.init(ctx)
    for mech in ("plain", vortex.sasl.CRAM_MD5, "SCRAM-SHA-256", vortex.sasl.ANONYMOUS):
        assert vortex.sasl.accept_mech(ctx, mech, auth_handler, "ud")
    assert not vortex.sasl.accept_mech(ctx, "OTP", auth_handler)
    return listen(ctx), calls, who


@pytest.mark.parametrize("mech", [vortex.sasl.PLAIN, vortex.sasl.CRAM_MD5,
                                  vortex.sasl.SCRAM_SHA_256])
def test_good_password(ctx, mech):
    listener, calls, who = sasl_listener(ctx)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (status, msg) = vortex.sasl.start_auth_sync(conn, mech, "bob", None, "secret")
    assert status == vortex.status_OK, msg
    assert vortex.sasl.is_authenticated(conn)
    assert vortex.sasl.method_used(conn) == mech
    assert vortex.sasl.auth_id(conn) == "bob"
    assert calls == [(mech, "bob", "ud")]
    assert conn.new_channel(ECHO).request("hi", timeout=10).payload == "hi"
    assert who == [(True, "bob", mech)]
    conn.close()


@pytest.mark.parametrize("mech", [vortex.sasl.PLAIN, vortex.sasl.CRAM_MD5])
def test_wrong_password(ctx, mech):
    listener, _, _ = sasl_listener(ctx)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (status, msg) = vortex.sasl.start_auth_sync(conn, mech, "bob", None, "wrong")
    assert status == vortex.status_ERROR
    assert "535" in msg
    assert not vortex.sasl.is_authenticated(conn)
    with pytest.raises(vortex.AuthenticationError) as refused:
        vortex.sasl.authenticate(conn, mech, "bob", "wrong")
    assert refused.value.code == 535
    # The session goes on, and may try again.
    info = vortex.sasl.authenticate(conn, mech, "bob", "secret")
    assert info["auth_id"] == "bob"
    conn.close()


def test_unknown_user_with_cram_md5(ctx):
    listener, _, _ = sasl_listener(ctx)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (status, _) = vortex.sasl.start_auth_sync(conn, vortex.sasl.CRAM_MD5, "eve", None, "x")
    assert status == vortex.status_ERROR
    conn.close()


def test_start_auth_async_status(ctx):
    listener, _, _ = sasl_listener(ctx)
    conn = vortex.Connection(ctx, HOST, listener.port)
    got = []
    done = threading.Event()

    def sasl_status(conn, status, status_msg, queue):
        got.append((status, queue))
        done.set()

    assert vortex.sasl.start_auth(conn, vortex.sasl.ANONYMOUS, anonymous_token="test@aspl.es",
                                  auth_notify=sasl_status, auth_notify_data="q")
    assert done.wait(10)
    assert got == [(vortex.status_OK, "q")]
    assert vortex.sasl.get_prop(conn, "mech") == vortex.sasl.ANONYMOUS
    conn.close()


def test_auth_handler_gets_the_listener_side_connection(ctx):
    """PyVortex's auth handler gets ``conn``: the listener's Connection the
    attempt came on, usable in the handler, and the same connection (equal,
    same id, same data) as its frame handlers get afterwards; each attempt
    on a connection of its own sees another one."""
    asked = []

    def auth_handler(conn, auth_props, user_data):
        conn.set_data("user", auth_props["auth_id"])
        asked.append((conn, conn.is_ok(), conn.role, auth_props["auth_id"]))
        return auth_props["auth_id"] == "bob" and auth_props["password"] == "secret"

    served = []

    def received(conn, channel, frame, data):
        served.append((conn, conn.get_data("user"), vortex.sasl.auth_id(conn)))
        channel.send_rpy(frame.payload, msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=received)
    assert vortex.sasl.accept_mech(ctx, vortex.sasl.PLAIN, auth_handler)
    listener = listen(ctx)
    bob = vortex.Connection(ctx, HOST, listener.port)
    assert vortex.sasl.authenticate(bob, vortex.sasl.PLAIN, "bob", "secret")["auth_id"] == "bob"
    (bob_conn, ok, role, user) = asked[0]
    assert isinstance(bob_conn, vortex.Connection)
    assert (ok, role, user) == (True, "listener", "bob")
    assert bob_conn.is_ok() and vortex.sasl.auth_id(bob_conn) == "bob"
    assert bob_conn.id != bob.id, "the listener's side is a connection of its own"
    assert bob.new_channel(ECHO).request("hi", timeout=10).payload == "hi"
    (echo_conn, stored, who) = served[0]
    assert echo_conn == bob_conn and echo_conn.id == bob_conn.id
    assert hash(echo_conn) == hash(bob_conn)
    assert (stored, who) == ("bob", "bob")

    eve = vortex.Connection(ctx, HOST, listener.port)
    with pytest.raises(vortex.AuthenticationError):
        vortex.sasl.authenticate(eve, vortex.sasl.PLAIN, "eve", "secret")
    (eve_conn, ok, _, user) = asked[1]
    assert (ok, user) == (True, "eve")
    assert eve_conn != bob_conn and eve_conn.id != bob_conn.id
    assert not vortex.sasl.is_authenticated(eve_conn)
    bob.close()
    eve.close()
    assert not bob_conn.is_ok()


def test_auth_handler_that_raises_denies(ctx, caplog):
    def auth_handler(conn, auth_props, user_data):
        raise KeyError("no user database")

    vortex.sasl.accept_mech(ctx, vortex.sasl.PLAIN, auth_handler)
    listener = listen(ctx)
    conn = vortex.Connection(ctx, HOST, listener.port)
    (status, _) = vortex.sasl.start_auth_sync(conn, vortex.sasl.PLAIN, "bob", None, "secret")
    assert status == vortex.status_ERROR
    assert "no user database" in caplog.text
    assert conn.is_ok()
    conn.close()
