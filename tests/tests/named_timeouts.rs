//! The drivers' waits on the peer have a timeout each (issue 8: the
//! connect timeout used to bound them all): `channel_timeout` for the
//! answer to a channel start, `release_timeout` for the answer to a
//! session release. Against a peer that greets and then answers nothing,
//! each wait ends in `Error::Timeout` within its own limit while the
//! connect timeout is far longer. Both drivers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use beep_proto::dispatch::Error;
use beep_proto::xml::Profile;

/// The limit under test.
const SHORT: Duration = Duration::from_millis(300);
/// The connect timeout: a wait that used it would take this long.
const LONG: Duration = Duration::from_secs(30);

/// A peer that greets, then reads everything and answers nothing, until
/// the connection closes.
fn mute_peer() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let greeting = "Content-Type: application/beep+xml\r\n\r\n<greeting><profile uri='http://example.org/beep/echo' /></greeting>\r\n";
        let frame = format!("RPY 0 0 . 0 {}\r\n{greeting}END\r\n", greeting.len());
        stream.write_all(frame.as_bytes()).expect("greet");
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    });
    (addr, handle)
}

fn echo() -> Profile {
    Profile::new("http://example.org/beep/echo")
}

fn blocking_options() -> beep_blocking::Options {
    beep_blocking::Options {
        connect_timeout: LONG,
        channel_timeout: SHORT,
        release_timeout: SHORT,
        ..Default::default()
    }
}

fn async_options() -> beep_tokio::Options {
    beep_tokio::Options {
        connect_timeout: LONG,
        channel_timeout: SHORT,
        release_timeout: SHORT,
        ..Default::default()
    }
}

/// Checks that a wait begun at `started` timed out, well before [`LONG`].
fn timed_out<T: std::fmt::Debug>(what: &str, started: Instant, result: Result<T, Error>) {
    assert!(
        matches!(result, Err(Error::Timeout)),
        "{what}: expected a timeout, got {result:?}"
    );
    assert!(
        started.elapsed() < LONG / 2,
        "{what}: timed out after {:?}, by the connect timeout rather than its own",
        started.elapsed()
    );
}

#[test]
fn blocking_open_channel_waits_channel_timeout() {
    let (addr, peer) = mute_peer();
    let conn = beep_blocking::Connection::connect(addr, blocking_options()).expect("connect");
    let started = Instant::now();
    timed_out("open_channel", started, conn.open_channel(echo(), None));
    conn.shutdown();
    peer.join().expect("peer");
}

#[test]
fn blocking_close_waits_release_timeout() {
    let (addr, peer) = mute_peer();
    let conn = beep_blocking::Connection::connect(addr, blocking_options()).expect("connect");
    let started = Instant::now();
    timed_out("close", started, conn.close());
    conn.shutdown();
    peer.join().expect("peer");
}

#[test]
fn tokio_open_channel_and_close_wait_their_own_timeouts() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for step in ["open_channel", "close"] {
        let (addr, peer) = mute_peer();
        rt.block_on(async {
            let conn = beep_tokio::Connection::connect(addr, async_options())
                .await
                .expect("connect");
            let started = Instant::now();
            let result = match step {
                "open_channel" => conn.open_channel(echo(), None).await.map(drop),
                _ => conn.close().await,
            };
            timed_out(step, started, result);
            conn.shutdown();
        });
        peer.join().expect("peer");
    }
}
