"""Shared helpers of the vortex test suite: every test talks to 127.0.0.1
only, on ports the system chooses, and bounds every wait."""

import os
import threading
import time

import pytest

import vortex

ECHO = "http://example.org/beep/echo"
HOST = "127.0.0.1"


@pytest.fixture
def ctx():
    """A context, exited (listeners stopped) after the test."""
    ctx = vortex.Ctx()
    assert ctx.init()
    yield ctx
    ctx.exit()


def echo_received(conn, channel, frame, data):
    """A frame-received handler that echoes each MSG."""
    if frame.type == "MSG":
        channel.send_rpy(frame.payload_bytes, frame.payload_size, frame.msg_no)


def listen(ctx):
    """A listener on 127.0.0.1 with a port the system chose."""
    listener = vortex.create_listener(ctx, HOST, "0")
    assert listener.is_ok(), listener.error_msg
    assert listener.port != "0"
    return listener


def echo_listener(ctx, uri=ECHO):
    """A listener serving an echo profile."""
    vortex.register_profile(ctx, uri, frame_received=echo_received)
    return listen(ctx)


def connect(ctx, listener):
    conn = vortex.Connection(ctx, HOST, listener.port)
    assert conn.is_ok(), conn.error_msg
    return conn


def wait_for(predicate, timeout=10.0, what="condition"):
    """Polls `predicate` until true; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.01)


class Collector:
    """A frame-received handler that keeps what it gets, thread-safely."""

    def __init__(self):
        self.frames = []
        self.lock = threading.Lock()
        self.event = threading.Event()

    def __call__(self, conn, channel, frame, data):
        with self.lock:
            self.frames.append(frame)
        self.event.set()

    def wait(self, count, timeout=10.0):
        wait_for(lambda: len(self.frames) >= count, timeout, "%d frames" % count)
        with self.lock:
            return list(self.frames)


@pytest.fixture
def beep_bin():
    """The Rust `beep` tool (run-tests.sh builds it and sets BEEP_BIN)."""
    path = os.environ.get("BEEP_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("BEEP_BIN is not set to the beep tool")
    return path
