"""The core module: echo, sizes, many channels, errors, ANS/NUL, close."""

import threading

import pytest

import vortex
from conftest import ECHO, HOST, Collector, connect, echo_listener, listen, wait_for


def test_echo_with_pyvortex_calls(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    channel = conn.open_channel(0, ECHO)
    assert channel is not None
    assert channel.profile == ECHO
    queue = vortex.AsyncQueue()
    channel.set_frame_received(vortex.queue_reply, queue)
    msg_no = channel.send_msg("This is a test", 14)
    assert msg_no is not None
    frame = channel.get_reply(queue)
    assert frame.type == "RPY"
    assert frame.payload == "This is a test"
    assert frame.payload_size == 14
    assert frame.msg_no == msg_no
    assert conn.close()
    assert not conn.is_ok()


def test_request_pythonic(ctx):
    listener = echo_listener(ctx)
    with vortex.connect(ctx, HOST, listener.port) as conn:
        channel = conn.new_channel(ECHO)
        reply = channel.request(b"\x00\xffbinary", timeout=10)
        assert reply.type == "RPY"
        assert reply.payload_bytes == b"\x00\xffbinary"
        # Text that is not UTF-8 survives a round trip as str.
        again = channel.request(reply.payload, timeout=10)
        assert again.payload_bytes == b"\x00\xffbinary"


def test_200_kb_messages_both_ways(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    channel = conn.new_channel(ECHO)
    payload = bytes(range(256)) * 800  # 204,800 octets
    reply = channel.request(payload, timeout=30)
    assert reply.payload_size == len(payload)
    assert reply.payload_bytes == payload
    conn.close()


def test_twenty_channels_on_one_connection(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    channels = [conn.open_channel(0, ECHO) for _ in range(20)]
    assert all(channels)
    assert len({c.number for c in channels}) == 20
    collector = Collector()
    for c in channels:
        c.set_frame_received(collector)
    for i, c in enumerate(channels):
        assert c.send_msg("message %d" % i) is not None
    frames = collector.wait(20)
    assert sorted(f.payload for f in frames) == sorted("message %d" % i for i in range(20))
    assert {f.channel_num for f in frames} == {c.number for c in channels}
    conn.close()


def test_unknown_profile_gives_error_code_550(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    assert conn.open_channel(0, "http://example.org/beep/unknown") is None
    err = conn.pop_channel_error()
    assert err is not None
    code, text = err
    assert code == 550
    assert "profile" in text
    assert conn.pop_channel_error() is None
    # The session goes on.
    assert conn.open_channel(0, ECHO) is not None
    with pytest.raises(vortex.RefusedError) as refused:
        conn.new_channel("http://example.org/beep/unknown")
    assert refused.value.code == 550
    conn.close()


def test_start_handler_refuses(ctx):
    starts = []

    def start(channel_num, conn, data):
        starts.append((channel_num, conn.role, data))
        return channel_num != 3

    vortex.register_profile(ctx, ECHO, start=start, start_data="sd",
                            frame_received=lambda *a: None)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    assert conn.open_channel(3, ECHO) is None
    assert conn.pop_channel_error()[0] == 550
    assert conn.open_channel(5, ECHO).number == 5
    assert starts == [(3, "listener", "sd"), (5, "listener", "sd")]
    conn.close()


def test_ans_nul_one_to_many(ctx):
    def answers(conn, channel, frame, data):
        if frame.type == "MSG":
            for i in range(5):
                assert channel.send_ans_rpy("answer %d" % i, msg_no=frame.msg_no)
            assert channel.finalize_ans_rpy(frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=answers)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    channel = conn.open_channel(0, ECHO)
    collector = Collector()
    channel.set_frame_received(collector, "data")
    msg_no = channel.send_msg("go")
    frames = collector.wait(6)
    assert [f.type for f in frames] == ["ANS"] * 5 + ["NUL"]
    assert [f.payload for f in frames[:5]] == ["answer %d" % i for i in range(5)]
    assert [f.ans_no for f in frames[:5]] == list(range(5))
    assert all(f.msg_no == msg_no for f in frames)
    assert frames[5].payload_size == 0
    # The Pythonic request collects the answers.
    answers_ = channel.request("again", timeout=10)
    assert [f.payload for f in answers_] == ["answer %d" % i for i in range(5)]
    conn.close()


def test_err_reply(ctx):
    def refuse(conn, channel, frame, data):
        channel.send_err("no such thing", msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=refuse)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    reply = conn.new_channel(ECHO).request("x", timeout=10)
    assert (reply.type, reply.payload) == ("ERR", "no such thing")
    conn.close()


def test_client_closes_channel_and_listener_decides(ctx):
    asked = []

    def close(channel_num, conn, data):
        asked.append(channel_num)
        return data

    vortex.register_profile(ctx, ECHO, close=close, close_data=True,
                            frame_received=lambda *a: None)
    vortex.register_profile(ctx, ECHO + "2", close=close, close_data=False,
                            frame_received=lambda *a: None)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    agreeing = conn.open_channel(0, ECHO)
    assert agreeing.close() is True
    assert not agreeing.is_ready()
    stubborn = conn.open_channel(0, ECHO + "2")
    assert stubborn.close() is False
    code, _ = conn.pop_channel_error()
    assert code == 550
    assert stubborn.is_ready()
    assert asked == [agreeing.number, stubborn.number]
    conn.close()


def test_listener_closes_channel_and_client_decides(ctx):
    closed = []
    done = threading.Event()

    def received(conn, channel, frame, data):
        # The listener answers, then closes the channel the message came
        # on (a close waits until every MSG is answered, RFC 3080 2.3.1.3).
        channel.send_rpy("bye", msg_no=frame.msg_no)
        closed.append(channel.close())
        done.set()

    vortex.register_profile(ctx, ECHO, frame_received=received)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    asked = []

    def client_close(channel_num, conn, data):
        asked.append((channel_num, data))
        return True

    channel = conn.open_channel(0, ECHO, close=client_close, close_data="cd")
    channel.send_msg("close it")
    assert done.wait(10)
    assert closed == [True]
    assert asked == [(channel.number, "cd")]
    wait_for(lambda: not channel.is_ready(), what="the channel to close")
    conn.close()


def test_on_channel_async_open(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    got = []
    done = threading.Event()

    def on_channel(number, channel, conn_, data):
        got.append((number, channel, conn_ == conn, data))
        done.set()

    assert conn.open_channel(0, ECHO, on_channel=on_channel, on_channel_data="x") is None
    assert done.wait(10)
    number, channel, same, data = got[0]
    assert (number > 0, same, data) == (True, True, "x")
    assert channel.number == number
    done.clear()
    assert conn.open_channel(0, "urn:nope", on_channel=on_channel) is None
    assert done.wait(10)
    assert got[1][:2] == (-1, None)
    assert conn.pop_channel_error()[0] == 550
    conn.close()


def test_connection_data_and_close_handler_on_both_sides(ctx):
    seen = []
    server_closed = threading.Event()

    def received(conn, channel, frame, data):
        count = (conn.get_data("count") or 0) + 1
        conn.set_data("count", count)
        if count == 1:
            conn.set_on_close(lambda c, d: server_closed.set())
        seen.append(count)
        channel.send_rpy(str(count), msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=received)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    channel = conn.new_channel(ECHO)
    assert [channel.request("x", timeout=10).payload for _ in range(3)] == ["1", "2", "3"]
    client_closed = threading.Event()
    handler_id = conn.set_on_close(lambda c, d: client_closed.set())
    removed = conn.set_on_close(lambda c, d: pytest.fail("removed handler ran"))
    assert conn.remove_on_close(removed)
    assert handler_id != removed
    # The listener goes away: the client's handler runs.
    listener.shutdown()
    assert client_closed.wait(10)
    assert server_closed.wait(10)
    assert not conn.is_ok()
    assert conn.error_msg


def test_failed_connection_is_not_ok(ctx):
    listener = listen(ctx)
    port = listener.port
    listener.shutdown()
    wait_for(lambda: vortex.Connection(ctx, HOST, port, timeout=2).is_ok() is False)
    conn = vortex.Connection(ctx, HOST, port, timeout=2)
    assert not conn.is_ok()
    assert conn.status == vortex.status_ERROR
    assert conn.error_msg
    assert conn.open_channel(0, ECHO) is None
    assert conn.pop_channel_error()[0] == 421
    with pytest.raises(vortex.ConnectionClosedError):
        vortex.connect(ctx, HOST, port, timeout=2)


def test_listener_bind_failure_is_reported(ctx):
    listener = listen(ctx)
    again = vortex.create_listener(ctx, HOST, listener.port)
    assert not again.is_ok()
    assert again.error_msg


def test_usage_errors_are_typed(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    channel = conn.new_channel(ECHO)
    with pytest.raises(vortex.UsageError):
        channel.send_msg("abc", 10)
    with pytest.raises(ValueError):
        channel.send_msg("abc", -5)
    with pytest.raises(vortex.UsageError):
        channel.send_rpy("no msg_no")
    with pytest.raises(vortex.UsageError):
        vortex.register_profile(ctx, "")
    with pytest.raises(vortex.UsageError):
        conn.new_channel(ECHO, number=2)  # the initiator's numbers are odd
    assert conn.open_channel(2, ECHO) is None
    assert conn.pop_channel_error()[0] == 553
    # A size shorter than the payload sends its start (PyVortex's size).
    assert channel.request(b"abcdef", timeout=10).payload == "abcdef"
    queue = vortex.AsyncQueue()
    channel.set_frame_received(vortex.queue_reply, queue)
    channel.send_msg(b"abcdef", 3)
    assert channel.get_reply(queue).payload == "abc"
    conn.close()


def test_context_managers(ctx):
    with vortex.Ctx() as other:
        vortex.register_profile(other, ECHO, frame_received=lambda c, ch, f, d: ch.reply(f, f))
        with vortex.create_listener(other, HOST, "0") as listener:
            with vortex.Connection(other, HOST, listener.port) as conn:
                with conn.new_channel(ECHO) as channel:
                    assert channel.request("ctx", timeout=10).payload == "ctx"
                assert not channel.is_ready()
            assert not conn.is_ok()


CALLBACK = "http://example.org/beep/callback"


def served_side(ctx):
    """A listener serving ECHO whose frame handler keeps the connection it
    gets (the listener's side of each client's), in arrival order."""
    seen = []

    def received(conn, channel, frame, data):
        seen.append(conn)
        channel.send_rpy(frame.payload, msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=received)
    return listen(ctx), seen


def test_connection_identity_is_the_drivers(ctx):
    """Two connections have different ids; the listener's handlers get one
    Connection per client, equal (same id, same hash, same data) at every
    message, and apart from the client's own side."""
    listener, seen = served_side(ctx)
    a = connect(ctx, listener)
    b = connect(ctx, listener)
    assert a.id != b.id and a != b
    for conn in (a, a, b):
        assert conn.new_channel(ECHO).request("x", timeout=10).payload == "x"
    (a1, a2, b1) = seen
    assert a1 == a2 and a1.id == a2.id and hash(a1) == hash(a2)
    a1.set_data("k", "v")
    assert a2.get_data("k") == "v"
    assert a1 != b1 and a1.id != b1.id
    assert {a1.id, b1.id}.isdisjoint({a.id, b.id})
    assert len({a, b, a1, a2, b1}) == 4
    a.close()
    b.close()


def test_listener_starts_a_channel_on_a_client_that_registered_the_profile():
    """PyVortex's clients serve the profiles registered on their context:
    the listener opens a channel on the client (from the Connection its
    handler got), and the client's frame handler answers with the client's
    own Connection."""
    with vortex.Ctx() as server_ctx, vortex.Ctx() as client_ctx:
        listener, seen = served_side(server_ctx)
        started = []
        answered = []

        def start(channel_num, conn, data):
            started.append((channel_num, data))
            return True

        def callback(conn, channel, frame, data):
            answered.append((conn, conn.get_data("name"), data))
            channel.send_rpy("client: " + frame.payload, msg_no=frame.msg_no)

        vortex.register_profile(client_ctx, CALLBACK, start=start, start_data="sd",
                                frame_received=callback, frame_received_data="fd")
        client = connect(client_ctx, listener)
        client.set_data("name", "the client")
        assert client.new_channel(ECHO).request("hi", timeout=10).payload == "hi"
        served = seen[0]
        assert CALLBACK in served.remote_profiles
        channel = served.open_channel(0, CALLBACK)
        assert channel is not None, served.pop_channel_error()
        assert channel.number % 2 == 0, "the listener's channels are even"
        assert channel.request("hello", timeout=10).payload == "client: hello"
        assert started == [(channel.number, "sd")]
        (conn, name, data) = answered[0]
        assert conn == client and conn.id == client.id
        assert (name, data) == ("the client", "fd")
        client.close()


def test_a_client_refuses_a_channel_of_a_profile_it_did_not_register(ctx):
    """Profiles not registered on the client's context are refused (550)."""
    listener, seen = served_side(ctx)
    conn = connect(ctx, listener)
    assert conn.new_channel(ECHO).request("hi", timeout=10).payload == "hi"
    assert seen[0].open_channel(0, CALLBACK) is None
    assert seen[0].pop_channel_error()[0] == 550
    assert conn.is_ok()
    conn.close()
