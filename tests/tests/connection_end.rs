//! A listener tells the application why each served connection ended
//! (`Listener::on_connection_end`), so a dropped peer is not a mystery: a
//! peer that breaks the framing rules (RFC 3080 2.2.1.1) is reported as a
//! protocol violation with its address. Both listeners.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

mod serving;

const T: Duration = Duration::from_secs(10);

/// Breaks the rules on a fresh connection and waits until it is closed.
fn misbehave(addr: SocketAddr) -> SocketAddr {
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.write_all(b"this is not a frame header\r\n").unwrap();
    peer.set_read_timeout(Some(T)).unwrap();
    let mut sink = Vec::new();
    let _ = peer.read_to_end(&mut sink);
    peer.local_addr().unwrap()
}

#[test]
fn rfc3080_2_2_1_1_the_blocking_listener_reports_why_a_peer_was_dropped() {
    use beep_blocking::{CloseReason, Registry};
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let server = serving::blocking(Registry::new(), Default::default(), |listener| {
        listener.on_connection_end(move |peer, reason: &CloseReason| {
            let _ = tx.lock().unwrap().send((peer, reason.clone()));
        })
    });
    let ours = misbehave(server.addr);
    let (peer, reason) = rx.recv_timeout(T).unwrap();
    assert_eq!(peer, ours);
    assert!(matches!(reason, CloseReason::Violation(_)), "{reason:?}");
    server.stop();
}

#[test]
fn rfc3080_2_2_1_1_the_tokio_listener_reports_why_a_peer_was_dropped() {
    use beep_tokio::{CloseReason, Registry};
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let server = serving::tokio(Registry::new(), Default::default(), |listener| {
        listener.on_connection_end(move |peer, reason: &CloseReason| {
            let _ = tx.lock().unwrap().send((peer, reason.clone()));
        })
    });
    let ours = misbehave(server.addr);
    let (peer, reason) = rx.recv_timeout(T).unwrap();
    assert_eq!(peer, ours);
    assert!(matches!(reason, CloseReason::Violation(_)), "{reason:?}");
    server.stop();
}
