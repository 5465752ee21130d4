//! A peer that asks for the release and then closes its sending half
//! (RFC 3080 2.3.1.3 with a TCP half-close) still gets our `<ok/>`: the
//! end of its stream does not lose what it asked for. Both drivers'
//! listeners, with a hand-driven `beep_proto::Session` as the peer.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use beep_proto::{Config, Event, ReplyCode, Session, SessionEnd};

mod serving;

/// Greets, asks for the release, shuts its sending half, then reads until
/// the listener closes; returns how the session ended on this side.
fn release_then_half_close(addr: SocketAddr) -> Option<SessionEnd> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut session = Session::initiator(Config::default());
    let mut buf = vec![0u8; 16 * 1024];
    // Wait for the listener's greeting.
    while session.peer_greeting().is_none() {
        session.write_to(&mut stream).expect("write");
        let n = stream.read(&mut buf).expect("read greeting");
        assert!(n > 0, "closed before its greeting");
        session.handle_input(&buf[..n]).expect("valid greeting");
    }
    session
        .close_session(ReplyCode::SUCCESS, "bye")
        .expect("release");
    session.write_to(&mut stream).expect("write close");
    stream.flush().expect("flush");
    stream.shutdown(Shutdown::Write).expect("half-close");
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!("read after the half-close: {e}"),
        };
        if n == 0 {
            session.handle_eof();
            break;
        }
        session.handle_input(&buf[..n]).expect("valid reply");
    }
    std::iter::from_fn(|| session.poll_event()).find_map(|e| match e {
        Event::SessionEnded(end) => Some(end),
        _ => None,
    })
}

#[test]
fn rfc3080_2_3_1_3_blocking_listener_answers_a_release_whose_peer_half_closed() {
    let server = serving::blocking(serving::blocking_echo(), Default::default(), |_| {});
    for _ in 0..20 {
        assert_eq!(
            release_then_half_close(server.addr),
            Some(SessionEnd::Released)
        );
    }
    server.stop();
}

#[test]
fn rfc3080_2_3_1_3_tokio_listener_answers_a_release_whose_peer_half_closed() {
    let server = serving::tokio(serving::tokio_echo(), Default::default(), |_| {});
    for _ in 0..20 {
        assert_eq!(
            release_then_half_close(server.addr),
            Some(SessionEnd::Released)
        );
    }
    server.stop();
}
