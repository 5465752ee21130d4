"""Handlers that raise or block, signals, threads, shutdowns: no crash, no
deadlock."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import vortex
from conftest import ECHO, HOST, connect, echo_listener, echo_received, listen, wait_for


def test_frame_handler_that_raises_answers_err(ctx, caplog):
    def received(conn, channel, frame, data):
        if frame.payload == "boom":
            raise ValueError("handler failed on purpose")
        channel.send_rpy(frame.payload, msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=received)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    channel = conn.new_channel(ECHO)
    reply = channel.request("boom", timeout=10)
    assert reply.type == "ERR"
    assert "handler failed on purpose" in caplog.text
    assert "Traceback" in caplog.text or caplog.records[-1].exc_info
    # The channel and the connection go on.
    assert channel.request("fine", timeout=10).payload == "fine"
    conn.close()


def test_client_frame_handler_that_raises(ctx, caplog):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    channel = conn.open_channel(0, ECHO)
    seen = []

    def received(conn, channel, frame, data):
        seen.append(frame.payload)
        raise RuntimeError("client handler failed")

    channel.set_frame_received(received)
    for i in range(3):
        channel.send_msg(str(i))
    wait_for(lambda: len(seen) == 3, what="three replies")
    wait_for(lambda: len(caplog.records) >= 3, what="three log records")
    assert [r.getMessage() for r in caplog.records] == [
        "exception in frame received handler: client handler failed"] * 3
    assert conn.is_ok()
    conn.close()


def test_start_and_close_handlers_that_raise(ctx, caplog):
    def start(channel_num, conn, data):
        if channel_num == 3:
            raise RuntimeError("start handler failed")
        return True

    def close(channel_num, conn, data):
        raise RuntimeError("close handler failed")

    vortex.register_profile(ctx, ECHO, start=start, close=close, frame_received=echo_received)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    assert conn.open_channel(3, ECHO) is None
    assert conn.pop_channel_error()[0] == 554
    channel = conn.open_channel(5, ECHO)
    # A failing close handler agrees, as a panicking Rust one does.
    assert channel.close()
    assert "start handler failed" in caplog.text and "close handler failed" in caplog.text
    conn.close()


def test_handler_raising_system_exit_does_not_exit(ctx, caplog):
    def received(conn, channel, frame, data):
        sys.exit(3)

    vortex.register_profile(ctx, ECHO, frame_received=received)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    assert conn.new_channel(ECHO).request("x", timeout=10).type == "ERR"
    conn.close()


def test_blocking_handler_leaves_python_and_other_connections_running(ctx):
    release = threading.Event()

    def received(conn, channel, frame, data):
        if frame.payload == "block":
            release.wait(10)  # blocks this connection's handlers
        channel.send_rpy(frame.payload, msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=received)
    listener = listen(ctx)
    blocked = connect(ctx, listener)
    other = connect(ctx, listener)
    results = []
    waiter = threading.Thread(
        target=lambda: results.append(blocked.new_channel(ECHO).request("block", timeout=20)))
    waiter.start()
    # Meanwhile: other connections are served, and Python threads run.
    ticks = []
    ticker = threading.Thread(target=lambda: [ticks.append(time.sleep(0.01)) for _ in range(20)])
    ticker.start()
    for i in range(10):
        assert other.new_channel(ECHO).request(str(i), timeout=10).payload == str(i)
    ticker.join(10)
    assert len(ticks) == 20
    assert not results
    release.set()
    waiter.join(20)
    assert results and results[0].payload == "block"
    blocked.close()
    other.close()


def test_many_threads_on_one_connection(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    shared = conn.new_channel(ECHO)
    errors = []

    def worker(index):
        try:
            own = conn.new_channel(ECHO)
            for i in range(100):
                channel = shared if i % 2 else own
                text = "%d-%d" % (index, i)
                reply = channel.request(text, timeout=20)
                assert reply.payload == text
                # PyVortex-style sends, replies to a handler-less channel.
                assert own.send_msg(text) is not None or not conn.is_ok()
        except Exception as exc:  # collected, reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert conn.close()


def test_shutdown_while_threads_send(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    channel = conn.new_channel(ECHO)
    stop = threading.Event()
    outcomes = []

    def sender():
        while not stop.is_set():
            try:
                channel.request("x" * 1000, timeout=5)
            except vortex.VortexError as exc:
                outcomes.append(type(exc))
                return

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    conn.shutdown()
    for t in threads:
        t.join(10)
    stop.set()
    assert not any(t.is_alive() for t in threads)
    assert outcomes and all(issubclass(o, vortex.ConnectionClosedError) for o in outcomes)
    assert channel.send_msg("late") is None
    assert conn.pop_channel_error()[0] == 421


def test_request_timeout(ctx):
    release = threading.Event()

    def slow(conn, channel, frame, data):
        release.wait(10)
        channel.send_rpy("late", msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=slow)
    listener = listen(ctx)
    conn = connect(ctx, listener)
    first, second = conn.new_channel(ECHO), conn.new_channel(ECHO)
    with pytest.raises(vortex.TimeoutError):
        first.request("x", timeout=0.3)
    with pytest.raises(TimeoutError):  # the built-in class too
        second.request("x", timeout=0.1)
    release.set()
    conn.close()


def run_script(source, **kwargs):
    """Starts `source` in a fresh interpreter with the same vortex."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(source)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


LISTENER_SCRIPT = """
    import sys, vortex
    ctx = vortex.Ctx()
    def received(conn, channel, frame, data):
        channel.send_rpy(frame.payload, msg_no=frame.msg_no)
    vortex.register_profile(ctx, "http://example.org/beep/echo", frame_received=received)
    listener = vortex.create_listener(ctx, "127.0.0.1", "0")
    print(listener.port, flush=True)
    vortex.wait_listeners(ctx, unlock_on_signal=True)
    print("unlocked", flush=True)
    ctx.exit()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_wait_listeners(ctx, signum):
    process = run_script(LISTENER_SCRIPT)
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read()
        conn = vortex.Connection(ctx, HOST, port)
        assert conn.new_channel(ECHO).request("before", timeout=10).payload == "before"
        process.send_signal(signum)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert "unlocked" in out
        wait_for(lambda: not conn.is_ok(), what="the listener to release the connection")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_sigint_without_unlock_raises_keyboard_interrupt():
    process = run_script("""
        import vortex
        ctx = vortex.Ctx()
        print("waiting", flush=True)
        try:
            vortex.wait_listeners(ctx)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    try:
        assert process.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
        assert "interrupted" in out, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_interpreter_exits_with_traffic_in_flight():
    process = run_script("""
        import threading, vortex
        ctx = vortex.Ctx()
        def received(conn, channel, frame, data):
            channel.send_rpy(frame.payload, msg_no=frame.msg_no)
        vortex.register_profile(ctx, "urn:echo", frame_received=received)
        listener = vortex.create_listener(ctx, "127.0.0.1", "0")
        conn = vortex.Connection(ctx, "127.0.0.1", listener.port)
        channel = conn.open_channel(0, "urn:echo")
        channel.set_frame_received(lambda *args: None)
        def flood():
            while channel.send_msg("x" * 100) is not None:
                pass
        for _ in range(3):
            threading.Thread(target=flood, daemon=True).start()
        import time; time.sleep(0.3)
        print("exiting", flush=True)
    """)
    try:
        out, err = process.communicate(timeout=30)
        assert "exiting" in out
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
