"""The Python package against the Rust `beep` tool, both ways."""

import re
import subprocess

import pytest

import vortex
import vortex.sasl
import vortex.tls
from conftest import ECHO, HOST, echo_received, listen

SINK = "http://example.org/beep/sink"


@pytest.fixture
def certificate(tmp_path):
    cert, key = vortex._beep._test_certificate("localhost")
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    return str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")


class Serve:
    """`beep serve` on 127.0.0.1, port chosen by the system."""

    def __init__(self, beep_bin, *args):
        self.process = subprocess.Popen(
            [beep_bin, "serve", "--listen", HOST + ":0", "--echo", ECHO, "--sink", SINK, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        found = re.search(r"listening on \S+:(\d+)", line)
        if not found:
            self.stop()
            pytest.fail("beep serve did not start: %r %r" % (line, self.process.stderr.read()))
        self.port = found.group(1)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def serve(beep_bin):
    servers = []

    def start(*args):
        server = Serve(beep_bin, *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_python_client_against_beep_serve(ctx, serve):
    server = serve()
    conn = vortex.Connection(ctx, HOST, server.port)
    assert conn.is_ok(), conn.error_msg
    assert set(conn.remote_profiles) >= {ECHO, SINK}
    channel = conn.open_channel(0, ECHO)
    queue = vortex.AsyncQueue()
    channel.set_frame_received(vortex.queue_reply, queue)
    channel.send_msg("hello rust", 10)
    frame = queue.timedpop(10_000_000)
    assert frame is not None and frame.payload == "hello rust"
    big = b"x" * 200_000
    assert conn.new_channel(ECHO).request(big, timeout=30).payload_bytes == big
    assert conn.new_channel(SINK).request("gone", timeout=10).payload == ""
    assert conn.close()


def test_python_client_tls_and_sasl_against_beep_serve(ctx, serve, certificate):
    cert, key = certificate
    server = serve("--tls-cert", cert, "--tls-key", key, "--sasl-user", "bob:secret")
    conn = vortex.Connection(ctx, HOST, server.port)
    (conn, status, msg) = vortex.tls.start_tls_sync(conn, "localhost", ca_file=cert)
    assert status == vortex.status_OK, msg
    (status, msg) = vortex.sasl.start_auth_sync(conn, vortex.sasl.CRAM_MD5, "bob", None, "wrong")
    assert status == vortex.status_ERROR
    (status, msg) = vortex.sasl.start_auth_sync(conn, vortex.sasl.CRAM_MD5, "bob", None, "secret")
    assert status == vortex.status_OK, msg
    assert conn.new_channel(ECHO).request("both", timeout=10).payload == "both"
    conn.close()


def beep_send(beep_bin, port, *args, data="hello python"):
    return subprocess.run(
        [beep_bin, "send", "%s:%s" % (HOST, port), "--profile", ECHO, "--timeout", "10", *args, data],
        capture_output=True, text=True, timeout=30)


def test_beep_send_against_python_listener(ctx, beep_bin):
    vortex.register_profile(ctx, ECHO, frame_received=echo_received)
    listener = listen(ctx)
    done = beep_send(beep_bin, listener.port)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello python"


def test_beep_send_err_from_python_listener(ctx, beep_bin):
    def refuse(conn, channel, frame, data):
        channel.send_err("not today", msg_no=frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=refuse)
    listener = listen(ctx)
    done = beep_send(beep_bin, listener.port)
    assert done.returncode == 1
    assert "not today" in done.stderr + done.stdout


def test_beep_send_tls_and_sasl_against_python_listener(ctx, beep_bin, certificate):
    cert, key = certificate
    vortex.register_profile(ctx, ECHO, frame_received=echo_received)
    vortex.tls.accept_tls(ctx, cert_file=cert, key_file=key)

    def auth(conn, props, data):
        if props["auth_id"] != "bob":
            return None
        return "secret" if props["return_password"] else props["password"] == "secret"

    for mech in ("PLAIN", "SCRAM-SHA-256"):
        vortex.sasl.accept_mech(ctx, mech, auth)
    listener = listen(ctx)
    done = beep_send(beep_bin, listener.port, "--tls", "--ca", cert, "--server-name", "localhost",
                     "--sasl", "SCRAM-SHA-256", "--user", "bob", "--password", "secret")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello python"
    wrong = beep_send(beep_bin, listener.port, "--tls", "--ca", cert, "--server-name", "localhost",
                      "--sasl", "PLAIN", "--user", "bob", "--password", "nope")
    assert wrong.returncode != 0
