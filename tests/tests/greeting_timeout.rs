//! RFC 3080 2.4: each peer greets as soon as the connection is
//! established. A peer that connects and never greets is disconnected by
//! the listener after `Options::greeting_timeout` (issue 10: it held a
//! connection's threads for ever), while honest peers, on other
//! connections or greeting in time on this one, are served as usual. Both
//! drivers, through their `Listener` and through `accept_transport`.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use beep_proto::Message;
use beep_proto::dispatch::{EndReason, Reply};
use beep_proto::xml::Profile;

mod serving;

use serving::ECHO;
/// The greeting timeout of the listeners under test.
const GREETING: Duration = Duration::from_millis(300);
/// The longest wait for anything that should happen.
const BOUND: Duration = Duration::from_secs(5);

/// What a listener that cut off a silent peer gives as the reason.
fn no_greeting() -> EndReason {
    EndReason::Lost("no greeting within 0.3 s".into())
}

/// Connects and sends nothing; returns how long after connecting the
/// listener closed the connection (a read of 0 or an error, after its
/// greeting), or panics if it is still open after [`BOUND`].
fn silent_peer_is_cut_off(addr: SocketAddr) -> Duration {
    let connected = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut buf = [0u8; 1024];
    loop {
        let left = BOUND.saturating_sub(connected.elapsed());
        assert!(
            !left.is_zero(),
            "a silent peer still connected after {BOUND:?}"
        );
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            // The listener's greeting.
            Ok(n) if n > 0 => {}
            Ok(_) => return connected.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("a silent peer still connected after {BOUND:?}")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return connected.elapsed(),
        }
    }
}

/// One echo on `conn`, through a new channel.
fn echo(conn: &beep_blocking::Connection, text: &'static str) {
    let channel = conn
        .open_channel(Profile::new(ECHO), None)
        .expect("open echo");
    match channel.request(Message::new(text), BOUND).expect("echo") {
        Reply::Rpy(m) => assert_eq!(&m.body()[..], text.as_bytes()),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// A silent peer is cut off after the greeting timeout and not before,
/// while an honest client connected meanwhile is served, and stays
/// usable after twice the greeting timeout.
fn check_listener(addr: SocketAddr) {
    let silent = std::thread::spawn(move || silent_peer_is_cut_off(addr));
    let honest = beep_blocking::Connection::connect(addr, beep_blocking::Options::default())
        .expect("an honest client connects");
    let greeted = Instant::now();
    echo(&honest, "meanwhile");
    let cut_off = silent.join().expect("silent peer");
    assert!(cut_off >= GREETING, "cut off after {cut_off:?}");
    // The passing of time is the point: the honest client's connection
    // outlives twice the greeting timeout.
    std::thread::sleep((2 * GREETING).saturating_sub(greeted.elapsed()));
    assert!(honest.is_ok(), "{:?}", honest.close_reason());
    echo(&honest, "later");
    honest.close().expect("release");
}

#[test]
fn rfc3080_2_4_blocking_listener_cuts_off_a_peer_that_never_greets() {
    let options = beep_blocking::Options {
        greeting_timeout: GREETING,
        ..Default::default()
    };
    let server = serving::blocking(serving::blocking_echo(), options, |_| {});
    check_listener(server.addr);
    server.stop();
}

#[test]
fn rfc3080_2_4_tokio_listener_cuts_off_a_peer_that_never_greets() {
    let options = beep_tokio::Options {
        greeting_timeout: GREETING,
        ..Default::default()
    };
    let server = serving::tokio(serving::tokio_echo(), options, |_| {});
    check_listener(server.addr);
    server.stop();
}

#[cfg(unix)]
#[test]
fn rfc3080_2_4_blocking_accept_transport_ends_with_no_greeting() {
    use beep_blocking::{Connection, Options, Registry};
    use std::os::unix::net::UnixStream;
    let (_silent, theirs) = UnixStream::pair().expect("pair");
    let options = Options {
        greeting_timeout: GREETING,
        ..Options::default()
    };
    let conn = Connection::accept_transport(theirs, Registry::new(), options).expect("accept");
    assert_eq!(conn.wait_closed(BOUND), Some(no_greeting()));

    // Duration::MAX: no deadline, and no panic computing one. (Time
    // passing is the point: the silent peer outlives a greeting timeout.)
    let (_silent, theirs) = UnixStream::pair().expect("pair");
    let options = Options {
        greeting_timeout: Duration::MAX,
        ..Options::default()
    };
    let conn = Connection::accept_transport(theirs, Registry::new(), options).expect("accept");
    assert_eq!(conn.wait_closed(GREETING), None);
    conn.shutdown();
}

/// A connected TCP pair: the silent peer's end (kept open, unused), and
/// the listener's end as a `futures-io` stream.
fn tcp_pair() -> (TcpStream, async_std::net::TcpStream) {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = TcpStream::connect(socket.local_addr().expect("addr")).expect("connect");
    let (theirs, _) = socket.accept().expect("accept");
    (silent, async_std::net::TcpStream::from(theirs))
}

#[test]
fn rfc3080_2_4_tokio_accept_transport_ends_with_no_greeting() {
    use beep_tokio::{Connection, Options, Registry};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (_silent, theirs) = tcp_pair();
        let options = Options {
            greeting_timeout: GREETING,
            ..Options::default()
        };
        let conn = Connection::accept_transport(theirs, Registry::new(), options).expect("accept");
        let reason = tokio::time::timeout(BOUND, conn.wait_closed()).await;
        assert_eq!(reason.ok(), Some(no_greeting()));

        // Duration::MAX: no deadline, and no panic computing one. (Time
        // passing is the point: the silent peer outlives a greeting
        // timeout.)
        let (_silent, theirs) = tcp_pair();
        let options = Options {
            greeting_timeout: Duration::MAX,
            ..Options::default()
        };
        let conn = Connection::accept_transport(theirs, Registry::new(), options).expect("accept");
        let reason = tokio::time::timeout(GREETING, conn.wait_closed()).await;
        assert!(reason.is_err(), "ended: {reason:?}");
        conn.shutdown();
    });
}
