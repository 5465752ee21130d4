//! Who reads a beep-blocking connection's socket: a thread waiting for a
//! reply reads it itself when nobody else does, and keeps the role
//! reserved for its next wait for a few milliseconds. These tests pin what
//! must still hold: what arrives while nobody waits is read anyway, a
//! reading waiter keeps its deadline, and many waiters get their own
//! replies.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use beep_blocking::{Connection, Error, Listener, Options, ProfileHandler, Registry, Reply};
use beep_proto::Message;
use beep_proto::xml::Profile;

const ECHO: &str = "http://example.org/beep/echo";
/// Replies, then sends the client a MSG of its own once the test says go
/// (after its request returned).
const PUSH: &str = "http://example.org/beep/push";
/// Replies, then shuts the connection down once the test says go.
const HANG_UP: &str = "http://example.org/beep/hang-up";
/// Never answers.
const SILENT: &str = "http://example.org/beep/silent";
/// Asks the client a question on the same channel and replies with its
/// answer (a request made from inside a handler).
const ASK: &str = "http://example.org/beep/ask";
/// The client's answer to ASK in the large-reply test.
const SIZE: usize = 200_000;
const T: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    _stop: beep_blocking::ShutdownHandle,
    /// Lets a PUSH or HANG_UP handler go on after its reply.
    go: mpsc::Sender<()>,
}

fn server() -> Server {
    let (go, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    // Waits for the test's go, so what follows reaches a client that is
    // waiting for nothing.
    let wait_for_go = move || {
        let _ = gate.lock().unwrap().recv_timeout(T);
    };
    let mut registry = Registry::new();
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
        }),
    );
    registry.register(
        PUSH,
        ProfileHandler::new({
            let wait_for_go = wait_for_go.clone();
            move |channel, m| {
                let _ = channel.reply_rpy(m.msgno, m.message);
                channel.connection().flush();
                wait_for_go();
                let _ = channel.send_msg(Message::new("pushed"));
            }
        }),
    );
    registry.register(
        HANG_UP,
        ProfileHandler::new(move |channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
            channel.connection().flush();
            wait_for_go();
            channel.connection().shutdown();
        }),
    );
    registry.register(SILENT, ProfileHandler::new(|_, _| ()));
    registry.register(
        ASK,
        ProfileHandler::new(|channel, m| {
            let answer = channel
                .request(Message::new("question"), T)
                .map_err(|e| e.to_string())?;
            let Reply::Rpy(answer) = answer else {
                return Err(format!("unexpected {answer:?}"));
            };
            let _ = channel.reply_rpy(m.msgno, answer);
            Ok(())
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    std::thread::spawn(move || listener.serve());
    Server {
        addr,
        _stop: stop,
        go,
    }
}

fn rpy_body(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Rpy(m) => m.body().to_vec(),
        other => panic!("expected RPY, got {other:?}"),
    }
}

#[test]
fn a_message_arriving_after_a_reply_reaches_its_handler_with_nobody_waiting() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let channel = conn.open_channel(Profile::new(PUSH), None).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    channel.set_message_handler(move |channel, m| {
        let _ = tx.lock().unwrap().send(m.message.body().to_vec());
        let _ = channel.reply_rpy(m.msgno, Message::new("thanks"));
    });
    // The reply is read by this thread; the push comes later, when no call
    // of ours waits, and must be read all the same.
    let reply = channel.request(Message::new("hello"), T).unwrap();
    assert_eq!(rpy_body(reply), b"hello");
    server.go.send(()).unwrap();
    assert_eq!(rx.recv_timeout(T).unwrap(), b"pushed");
}

#[test]
fn a_peer_hanging_up_after_a_reply_is_noticed_with_nobody_waiting() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let channel = conn.open_channel(Profile::new(HANG_UP), None).unwrap();
    let (tx, rx) = mpsc::channel();
    conn.on_close(move |reason| {
        let _ = tx.send(reason.clone());
    });
    let reply = channel.request(Message::new("bye"), T).unwrap();
    assert_eq!(rpy_body(reply), b"bye");
    server.go.send(()).unwrap();
    assert!(rx.recv_timeout(T).is_ok(), "the close was never noticed");
    assert!(!conn.is_ok());
}

#[test]
fn a_waiter_reading_the_socket_itself_keeps_its_deadline() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let silent = conn.open_channel(Profile::new(SILENT), None).unwrap();
    let started = Instant::now();
    let result = silent.request(Message::new("anyone?"), Duration::from_millis(300));
    assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The short read timeout it set does not disturb what follows.
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    // The point: long enough for that timeout to expire on a worker's read.
    std::thread::sleep(Duration::from_millis(700));
    for i in 0..20 {
        let body = format!("after the timeout {i}");
        let reply = echo.request(Message::new(body.clone()), T).unwrap();
        assert_eq!(rpy_body(reply), body.as_bytes());
    }
}

#[test]
fn many_threads_waiting_on_one_connection_each_get_their_own_reply() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let shared = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let conn = conn.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                let own = conn.open_channel(Profile::new(ECHO), None).unwrap();
                for i in 0..200 {
                    let channel = if i % 2 == 0 { &shared } else { &own };
                    let body = format!("thread {t} request {i}");
                    let reply = channel.request(Message::new(body.clone()), T).unwrap();
                    assert_eq!(rpy_body(reply), body.as_bytes());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn a_handler_may_wait_for_the_peer_on_its_own_connection() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let channel = conn.open_channel(Profile::new(ASK), None).unwrap();
    channel.set_message_handler(|channel, m| {
        assert_eq!(&m.message.body()[..], b"question");
        let _ = channel.reply_rpy(m.msgno, Message::new("forty-two"));
    });
    for _ in 0..20 {
        let reply = channel.request(Message::new("what is it?"), T).unwrap();
        assert_eq!(rpy_body(reply), b"forty-two");
    }
}

#[test]
fn a_handler_waiting_for_a_reply_larger_than_the_window_gives_the_window_back() {
    // The server's handler reads its reply itself, inside the batch that
    // holds its output back: the window updates it owes must leave anyway,
    // and the awaited reply must be credited although the handler's own
    // MSG is still held, or the 200,000-octet answer stops after 4096.
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let channel = conn.open_channel(Profile::new(ASK), None).unwrap();
    channel.set_message_handler(|channel, m| {
        let _ = channel.reply_rpy(m.msgno, Message::new(vec![b'a'; SIZE]));
    });
    let started = Instant::now();
    let reply = channel.request(Message::new("what is it?"), T).unwrap();
    assert_eq!(rpy_body(reply).len(), SIZE);
    assert!(
        started.elapsed() < T / 2,
        "stalled for {:?}",
        started.elapsed()
    );
}
