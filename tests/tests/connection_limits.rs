//! `Listener::set_max_connections` (issue 10): a listener serves at most so
//! many connections at once, in all and from one source address; a peer
//! beyond either gets an `<error>` with 421 in place of a greeting (RFC
//! 3080 2.4) that names the limit, and a connection that ends makes room.
//! Both listeners, with blocking clients.

use std::net::SocketAddr;
use std::time::Duration;

use beep_proto::ReplyCode;
use beep_proto::dispatch::Error;

mod serving;

const BOUND: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> Result<beep_blocking::Connection, Error> {
    beep_blocking::Connection::connect(addr, Default::default())
}

/// Fills the listener at `addr` to its limit of two, checks that the next
/// connection is refused with `text`, and that closing one makes room.
fn check(addr: SocketAddr, text: &str) {
    let first = connect(addr).expect("the first is served");
    let second = connect(addr).expect("the second is served");
    match connect(addr) {
        Err(Error::Refused { code, text: said }) => {
            assert_eq!(code, ReplyCode::SERVICE_NOT_AVAILABLE);
            assert!(said.contains(text), "{said:?}");
        }
        other => panic!("the third should be refused, got {other:?}"),
    }
    first.close().unwrap();
    // The listener counts it out once it has ended on its side too.
    let deadline = std::time::Instant::now() + BOUND;
    let third = loop {
        match connect(addr) {
            Ok(conn) => break conn,
            Err(Error::Refused { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("no room after a connection ended: {e}"),
        }
    };
    third.close().unwrap();
    second.close().unwrap();
}

#[test]
fn rfc3080_2_4_blocking_listener_refuses_beyond_its_limit_from_one_address() {
    let server = serving::blocking(Default::default(), Default::default(), |l| {
        l.set_max_connections(100, 2);
    });
    check(
        server.addr,
        "too many connections from 127.0.0.1: 2 at most",
    );
    server.stop();
}

#[test]
fn rfc3080_2_4_blocking_listener_refuses_beyond_its_limit_in_all() {
    let server = serving::blocking(Default::default(), Default::default(), |l| {
        l.set_max_connections(2, 100);
    });
    check(server.addr, "too many connections: 2 at most");
    server.stop();
}

#[test]
fn rfc3080_2_4_tokio_listener_refuses_beyond_its_limit_from_one_address() {
    let server = serving::tokio(Default::default(), Default::default(), |l| {
        l.set_max_connections(100, 2);
    });
    check(
        server.addr,
        "too many connections from 127.0.0.1: 2 at most",
    );
    server.stop();
}

#[test]
fn rfc3080_2_4_tokio_listener_refuses_beyond_its_limit_in_all() {
    let server = serving::tokio(Default::default(), Default::default(), |l| {
        l.set_max_connections(2, 100);
    });
    check(server.addr, "too many connections: 2 at most");
    server.stop();
}
