"""Loopback benchmark of the vortex package, beside Python's raw sockets.

    python bench.py [--seconds 1] [--rounds 3] [--only TEXT]

Rows as `cargo bench -p beep-blocking --bench loopback` prints them (same
row names, same table): each row alternates raw TCP and vortex for
`--rounds` rounds of `--seconds` and prints the medians and the median
ratio with its range. Here "raw TCP" is Python's own sockets (threads,
`sendall`/`recv`), and both ends of each measurement run in this process,
the listener's handlers on the library's threads with the GIL taken.

* ping-pong 100 B: one channel, `channel.request(100 B)` in a loop; the
  listener's Python handler echoes each MSG with `send_rpy`.
* bulk 64 KiB, 1 channel, defaults: one channel streams 64 KiB MSGs with
  `send_msg`; the listener's Python handler answers each with an empty
  RPY, counted by the client's frame handler (the default windows, which
  grow to 1 MiB by themselves).

Install the package optimised first (`maturin develop --release` in the
virtual environment; `run-tests.sh` installs a debug build).
"""

import argparse
import socket
import statistics
import threading
import time

import vortex

ECHO = "http://example.org/beep/echo"
SINK = "http://example.org/beep/sink"
SMALL = 100
BULK = 64 << 10


def raw_echo_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server


def raw_pingpong(seconds):
    server = raw_echo_server()
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * SMALL
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        client.sendall(msg)
        got = 0
        while got < SMALL:
            got += len(client.recv(SMALL - got))
        n += 1
    elapsed = time.perf_counter() - start
    client.close()
    server.close()
    return n / elapsed


def raw_bulk(seconds):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    total = [0]

    def sink():
        conn, _ = server.accept()
        with conn:
            while True:
                data = conn.recv(BULK)
                if not data:
                    return
                total[0] += len(data)

    reader = threading.Thread(target=sink)
    reader.start()
    client = socket.create_connection(server.getsockname())
    msg = b"x" * BULK
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        client.sendall(msg)
    client.close()
    reader.join()
    server.close()
    return total[0] / (time.perf_counter() - start) / (1 << 20)


def vortex_listener():
    ctx = vortex.Ctx()

    def echo(conn, channel, frame, data):
        channel.send_rpy(frame.payload_bytes, frame.payload_size, frame.msg_no)

    def sink(conn, channel, frame, data):
        channel.send_rpy(b"", 0, frame.msg_no)

    vortex.register_profile(ctx, ECHO, frame_received=echo)
    vortex.register_profile(ctx, SINK, frame_received=sink)
    listener = vortex.create_listener(ctx, "127.0.0.1", "0")
    assert listener.is_ok(), listener.error_msg
    return ctx, listener


def vortex_pingpong(seconds):
    ctx, listener = vortex_listener()
    conn = vortex.connect(ctx, "127.0.0.1", listener.port)
    channel = conn.new_channel(ECHO)
    msg = b"x" * SMALL
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        channel.request(msg, timeout=30)
        n += 1
    rate = n / (time.perf_counter() - start)
    conn.close()
    ctx.exit()
    return rate


def vortex_bulk(seconds):
    ctx, listener = vortex_listener()
    conn = vortex.connect(ctx, "127.0.0.1", listener.port)
    replies = [0]
    lock = threading.Lock()

    def counted(conn, channel, frame, data):
        with lock:
            replies[0] += 1

    channel = conn.new_channel(SINK, frame_received=counted)
    msg = b"x" * BULK
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if channel.send_msg(msg) is None:
            raise RuntimeError(conn.pop_channel_error())
        sent += 1
    deadline = time.perf_counter() + 30
    while replies[0] < sent and time.perf_counter() < deadline:
        time.sleep(0.001)
    rate = sent * BULK / (time.perf_counter() - start) / (1 << 20)
    conn.close()
    ctx.exit()
    return rate


def row(label, raws, beeps):
    ratios = [b / r for r, b in zip(raws, beeps)]
    print("| %s | %.0f | %.0f | %.2fx (%.2f-%.2f) |" % (
        label, statistics.median(raws), statistics.median(beeps),
        statistics.median(ratios), min(ratios), max(ratios)), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=None, help="run the rows whose name contains this")
    args = parser.parse_args()
    rounds = max(args.rounds, 1)
    print("| benchmark | raw TCP (Python sockets) | vortex (Python) | ratio (median, range over %d rounds) |" % rounds)
    print("|---|---|---|---|")
    rows = [
        ("ping-pong 100 B (round trips/s)", raw_pingpong, vortex_pingpong),
        ("bulk 64 KiB, 1 channel, defaults (MiB/s)", raw_bulk, vortex_bulk),
    ]
    for label, raw, beep in rows:
        if args.only and args.only not in label:
            continue
        raws, beeps = [], []
        for _ in range(rounds):
            raws.append(raw(args.seconds))
            beeps.append(beep(args.seconds))
        row(label, raws, beeps)


if __name__ == "__main__":
    main()
