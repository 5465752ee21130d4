//! `Options::idle_timeout` (issue 10): a listener ends a connection on
//! which nothing has moved and nothing is under way for that long, and
//! says why; a request whose handler takes longer than the timeout is
//! still answered, since an unanswered MSG is not idleness. Both
//! listeners, with a blocking client.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use beep_proto::Message;
use beep_proto::dispatch::{EndReason, Reply};
use beep_proto::xml::Profile;

mod serving;

use serving::ECHO;

const IDLE: Duration = Duration::from_millis(300);
/// A handler's work: longer than the idle timeout.
const WORK: Duration = Duration::from_millis(900);
const SLOW: &str = "http://example.org/beep/slow";
/// The longest wait for anything that should happen.
const BOUND: Duration = Duration::from_secs(10);

fn idle_reason() -> EndReason {
    EndReason::Lost("idle for 0.3 s".into())
}

fn blocking_registry() -> beep_blocking::Registry {
    let mut registry = serving::blocking_echo();
    registry.register(
        SLOW,
        beep_blocking::ProfileHandler::new(|channel, m| {
            std::thread::sleep(WORK);
            let _ = channel.reply_rpy(m.msgno, Message::new("done"));
        }),
    );
    registry
}

fn tokio_registry() -> beep_tokio::Registry {
    let mut registry = serving::tokio_echo();
    registry.register(
        SLOW,
        beep_tokio::ProfileHandler::new(|channel, m| async move {
            tokio::time::sleep(WORK).await;
            let _ = channel.reply_rpy(m.msgno, Message::new("done")).await;
        }),
    );
    registry
}

/// What a client sees of the listener at `addr`, whose ended connections
/// are reported on `ends`: a long request is answered, then the idle
/// connection is ended by the listener, which says why.
fn check(addr: std::net::SocketAddr, ends: &mpsc::Receiver<EndReason>) {
    let conn = beep_blocking::Connection::connect(addr, Default::default()).unwrap();
    let slow = conn.open_channel(Profile::new(SLOW), None).unwrap();
    match slow.request(Message::new("work"), BOUND).unwrap() {
        Reply::Rpy(m) => assert_eq!(&m.body()[..], b"done"),
        other => panic!("expected the slow RPY, got {other:?}"),
    }
    assert!(conn.is_ok(), "cut while a request was under way");
    // Now nothing moves: the listener ends the connection.
    let quiet_since = Instant::now();
    let reason = conn
        .wait_closed(BOUND)
        .expect("the listener ends an idle connection");
    // The listener counts from its last write, a little before the reply
    // reached us: not much less than the timeout, never at once.
    assert!(
        quiet_since.elapsed() >= IDLE / 2,
        "ended before the timeout"
    );
    assert!(
        !matches!(reason, beep_blocking::CloseReason::Released),
        "{reason:?}"
    );
    assert_eq!(ends.recv_timeout(BOUND).unwrap(), idle_reason());
}

fn idle_options<O>(options: O, set: impl FnOnce(&mut O)) -> O {
    let mut options = options;
    set(&mut options);
    options
}

#[test]
fn blocking_listener_ends_idle_connections_but_not_long_requests() {
    let (tx, ends) = mpsc::channel();
    let options = idle_options(beep_blocking::Options::default(), |o| o.idle_timeout = IDLE);
    let server = serving::blocking(blocking_registry(), options, move |listener| {
        let tx = std::sync::Mutex::new(tx);
        listener.on_connection_end(move |_, reason| {
            let _ = tx.lock().unwrap().send(reason.clone());
        });
    });
    check(server.addr, &ends);
    server.stop();
}

#[test]
fn tokio_listener_ends_idle_connections_but_not_long_requests() {
    let (tx, ends) = mpsc::channel();
    let options = idle_options(beep_tokio::Options::default(), |o| o.idle_timeout = IDLE);
    let server = serving::tokio(tokio_registry(), options, move |listener| {
        let tx = std::sync::Mutex::new(tx);
        listener.on_connection_end(move |_, reason| {
            let _ = tx.lock().unwrap().send(reason.clone());
        });
    });
    check(server.addr, &ends);
    server.stop();
}

#[test]
fn without_an_idle_timeout_a_quiet_connection_stays() {
    let server = serving::blocking(serving::blocking_echo(), Default::default(), |_| {});
    let conn = beep_blocking::Connection::connect(server.addr, Default::default()).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    std::thread::sleep(IDLE * 3);
    assert!(conn.is_ok());
    assert!(echo.request(Message::new("still here"), BOUND).is_ok());
    conn.close().unwrap();
    server.stop();
}
