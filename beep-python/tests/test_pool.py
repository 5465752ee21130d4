"""Channel pools (PyVortex ChannelPool) and their handlers."""

import threading

import vortex
from conftest import ECHO, Collector, connect, echo_listener


def test_pool_lends_and_takes_back(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    pool = conn.channel_pool_new(ECHO, 2)
    assert isinstance(pool, vortex.ChannelPool)
    assert (pool.channel_count, pool.channel_available) == (2, 2)
    assert pool.conn == conn
    first = pool.next_ready()
    second = pool.next_ready()
    assert first is not None and second is not None and first != second
    assert pool.channel_available == 0
    assert pool.next_ready() is None  # none idle, no auto_inc
    third = pool.next_ready(auto_inc=True)
    assert third is not None and pool.channel_count == 3
    assert pool.release(first)
    assert pool.next_ready() == first
    for channel in (first, second, third):
        assert channel.request("pooled", timeout=10).payload == "pooled"
        pool.release(channel)
    with pool.channel() as channel:
        assert pool.channel_available == 2
        assert channel.profile == ECHO
    pool.remove(1)
    assert pool.channel_count == 2
    pool.close()
    assert pool.channel_count == 0
    conn.close()


def test_pool_handlers(ctx):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)
    created = []
    collector = Collector()

    def create_channel(conn, channel_num, profile, received, received_data,
                       close, close_data, user_data, next_data):
        created.append((channel_num, profile, received_data, user_data, next_data))
        return conn.open_channel(channel_num, profile, frame_received=received,
                                 frame_received_data=received_data)

    done = threading.Event()
    pools = []

    def on_created(pool, data):
        pools.append((pool, data))
        done.set()

    assert conn.channel_pool_new(ECHO, 1, create_channel, "cd", collector, "rd",
                                 on_created=on_created, user_data="ud") is None
    assert done.wait(10)
    pool, data = pools[0]
    assert data == "ud"
    assert created == [(0, ECHO, "rd", "cd", None)]
    channel = pool.next_ready()
    channel.send_msg("via pool")
    assert collector.wait(1)[0].payload == "via pool"
    pool.release(channel)
    pool.next_ready()
    assert pool.next_ready(auto_inc=True, user_data="nd") is not None
    assert created[-1] == (0, ECHO, "rd", "cd", "nd")
    conn.close()


def test_pool_create_handler_that_raises_gives_no_channel(ctx, caplog):
    listener = echo_listener(ctx)
    conn = connect(ctx, listener)

    def broken(*args):
        raise RuntimeError("cannot create")

    pool = conn.channel_pool_new(ECHO, 0, broken)
    assert pool.next_ready(auto_inc=True) is None
    assert "cannot create" in caplog.text
    conn.close()
