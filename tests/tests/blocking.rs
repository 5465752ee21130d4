//! beep-blocking clients against beep-blocking listeners over loopback TCP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use beep_blocking::{
    CloseReason, Connection, Error, Listener, Options, ProfileHandler, Registry, Reply,
    ShutdownHandle, StartDecision,
};
use beep_proto::xml::Profile;
use beep_proto::{AnsNo, Config, Message, MsgNo, ReplyCode};

const ECHO: &str = "http://example.org/beep/echo";
const COUNT: &str = "http://example.org/beep/count";
const PANIC: &str = "http://example.org/beep/panic";
const PICKY: &str = "http://example.org/beep/picky";
const T: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
    /// serverNames seen by the picky profile's start handler.
    server_names: Arc<Mutex<Vec<Option<String>>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn server_with(options: Options) -> Server {
    let server_names = Arc::new(Mutex::new(Vec::new()));
    let names = server_names.clone();
    let mut registry = Registry::new();
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
        }),
    );
    registry.register(
        COUNT,
        ProfileHandler::new(|channel, m| {
            let n: u32 = String::from_utf8_lossy(m.message.body())
                .parse()
                .unwrap_or(3);
            for i in 0..n {
                let _ = channel.reply_ans(m.msgno, Message::new(i.to_string()));
            }
            let _ = channel.reply_nul(m.msgno);
        }),
    );
    registry.register(
        PANIC,
        ProfileHandler::new(|_, m| {
            if m.message.body().starts_with(b"panic") {
                panic!("handler panics on purpose");
            }
        }),
    );
    registry.register(
        PICKY,
        ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
        })
        .on_start(move |request, offer| {
            names.lock().unwrap().push(request.server_name.clone());
            match offer.content.as_deref() {
                Some(b"let me in") => StartDecision::Accept(Some("welcome".into())),
                _ => StartDecision::Deny(ReplyCode::AUTHENTICATION_REQUIRED, "say the word".into()),
            }
        })
        .on_close(|_| false),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, options).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = Some(std::thread::spawn(move || listener.serve()));
    Server {
        addr,
        stop,
        thread,
        server_names,
    }
}

fn server() -> Server {
    server_with(Options::default())
}

fn body(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Rpy(m) => m.body().to_vec(),
        other => panic!("expected RPY, got {other:?}"),
    }
}

#[test]
fn request_reply_answers_and_release() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    assert_eq!(conn.peer_greeting().profiles.len(), 4);
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    assert_eq!(echo.profile().as_deref(), Some(ECHO));
    let m = Message::new("with headers").with_header("Content-Type", "text/plain");
    match echo.request(m.clone(), T).unwrap() {
        Reply::Rpy(reply) => assert_eq!(reply, m, "payload and MIME headers echoed"),
        other => panic!("{other:?}"),
    }
    let count = conn.open_channel(Profile::new(COUNT), None).unwrap();
    match count.request(Message::new("5"), T).unwrap() {
        Reply::Answers(answers) => {
            let texts: Vec<_> = answers.iter().map(|(_, m)| m.body().to_vec()).collect();
            assert_eq!(
                texts,
                vec![
                    b"0".to_vec(),
                    b"1".to_vec(),
                    b"2".to_vec(),
                    b"3".to_vec(),
                    b"4".to_vec()
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    // Asserted here, not in the callback: the driver catches its panics.
    let (closed_tx, closed) = mpsc::channel();
    conn.on_close(move |reason| {
        let _ = closed_tx.send(reason.clone());
    });
    echo.close().unwrap();
    conn.close().unwrap();
    assert_eq!(conn.wait_closed(T), Some(CloseReason::Released));
    assert_eq!(closed.recv_timeout(T), Ok(CloseReason::Released));
    assert_eq!(
        closed.recv_timeout(T),
        Err(mpsc::RecvTimeoutError::Disconnected),
        "close notification fires once, then is dropped"
    );
    assert!(matches!(
        echo.send_msg(Message::new("late")),
        Err(Error::Closed(_))
    ));
}

#[test]
fn pipelined_requests_complete_in_order() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 0..500u32 {
        let tx = tx.clone();
        echo.request_with(Message::new(i.to_string()), move |reply| {
            tx.send((i, reply.map(body))).unwrap();
        })
        .unwrap();
    }
    for i in 0..500u32 {
        let (n, reply) = rx.recv_timeout(T).unwrap();
        assert_eq!(n, i, "replies complete in MSG order");
        assert_eq!(reply.unwrap(), i.to_string().into_bytes());
    }
}

#[test]
fn refused_start_reports_the_peer_code_and_server_name_reaches_the_handler() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    match conn.open_channel(Profile::new(PICKY), Some("beep.example.test".into())) {
        Err(Error::Refused { code, text }) => {
            assert_eq!(code, ReplyCode::AUTHENTICATION_REQUIRED);
            assert_eq!(text, "say the word");
        }
        other => panic!("{other:?}"),
    }
    let offer = Profile::new(PICKY).with_content("let me in");
    let channel = conn.open_channel(offer, None).unwrap();
    assert_eq!(channel.start_reply().as_deref(), Some(&b"welcome"[..]));
    assert_eq!(body(channel.request(Message::new("x"), T).unwrap()), b"x");
    // Its close handler refuses: the channel stays usable.
    assert!(matches!(channel.close(), Err(Error::Refused { .. })));
    assert_eq!(body(channel.request(Message::new("y"), T).unwrap()), b"y");
    assert!(matches!(
        conn.open_channel(Profile::new("http://example.org/unknown"), None),
        Err(Error::Refused { code, .. }) if code == ReplyCode::REQUESTED_ACTION_NOT_TAKEN
    ));
    let names = server.server_names.lock().unwrap().clone();
    assert_eq!(names, vec![Some("beep.example.test".to_string()), None]);
}

#[test]
fn async_channel_creation_notifies_completion() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    conn.open_channel_with(Profile::new(ECHO), None, move |r| {
        tx.send(r.map(|c| c.number())).unwrap()
    })
    .unwrap();
    conn.open_channel_with(Profile::new(PICKY), None, move |r| {
        tx2.send(r.map(|c| c.number())).unwrap()
    })
    .unwrap();
    let mut results = [rx.recv_timeout(T).unwrap(), rx.recv_timeout(T).unwrap()];
    results.sort_by_key(|r| r.is_err());
    assert!(matches!(results[0], Ok(n) if n % 2 == 1));
    assert!(matches!(results[1], Err(Error::Refused { .. })));
}

#[test]
fn a_panicking_handler_ends_only_its_channel() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let doomed = conn.open_channel(Profile::new(PANIC), None).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    // The panicking handler's MSG gets an ERR instead of hanging the caller.
    match doomed.request(Message::new("panic now"), T) {
        Ok(Reply::Err(_)) | Err(Error::Closed(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(conn.is_ok());
    assert_eq!(
        body(echo.request(Message::new("still here"), T).unwrap()),
        b"still here"
    );
    let other = Connection::connect(server.addr, Options::default()).unwrap();
    let c = other.open_channel(Profile::new(ECHO), None).unwrap();
    assert_eq!(
        body(c.request(Message::new("other connection"), T).unwrap()),
        b"other connection"
    );
}

#[test]
fn three_hundred_channels_on_one_connection() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let channels: Vec<_> = (0..300)
        .map(|_| conn.open_channel(Profile::new(ECHO), None).unwrap())
        .collect();
    for (i, c) in channels.iter().enumerate() {
        assert_eq!(
            body(c.request(Message::new(format!("{i}")), T).unwrap()),
            format!("{i}").into_bytes()
        );
    }
}

#[test]
fn two_hundred_connections_with_several_channels_each() {
    let server = server();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let conn = Connection::connect(addr, Options::default()).unwrap();
                for j in 0..3 {
                    let c = conn.open_channel(Profile::new(ECHO), None).unwrap();
                    let text = format!("{i}/{j}");
                    assert_eq!(
                        body(c.request(Message::new(text.clone()), T).unwrap()),
                        text.into_bytes()
                    );
                }
                conn.close().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn large_messages_with_large_windows() {
    let big = Options {
        config: Config {
            receive_window: 1 << 20,
            max_frame_size: 64 << 10,
            ..Config::default()
        },
        ..Options::default()
    };
    let server = server_with(big.clone());
    let conn = Connection::connect(server.addr, big).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        body(echo.request(Message::new(payload.clone()), T).unwrap()),
        payload
    );
}

/// Reads from `stream` until `pattern` has been seen (or EOF).
fn read_until(stream: &mut TcpStream, pattern: &[u8]) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(pattern.len()).any(|w| w == pattern) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A raw TCP peer: sends `script`, waits for the client's start request,
/// then closes the connection.
fn raw_peer(script: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = socket.accept().unwrap();
        stream.write_all(&script).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        read_until(&mut stream, b"</start>");
    });
    (addr, thread)
}

#[test]
fn a_peer_vanishing_mid_frame_is_reported_once_and_nothing_hangs() {
    let greeting = "Content-Type: application/beep+xml\r\n\r\n<greeting><profile uri='http://example.org/beep/echo' /></greeting>\r\n";
    let mut script = format!("RPY 0 0 . 0 {}\r\n{greeting}END\r\n", greeting.len()).into_bytes();
    // Half of a frame that never completes.
    script.extend_from_slice(b"MSG 0 0 . ");
    let (addr, peer) = raw_peer(script);
    let conn = Connection::connect(addr, Options::default()).unwrap();
    let (closed_tx, closed) = mpsc::channel();
    conn.on_close(move |reason| {
        let _ = closed_tx.send(reason.clone());
    });
    // The start request never gets an answer: the wait ends with the connection.
    let result = conn.open_channel(Profile::new(ECHO), None);
    assert!(
        matches!(result, Err(Error::Closed(CloseReason::Lost(_)))),
        "{result:?}"
    );
    assert!(conn.wait_closed(T).is_some());
    peer.join().unwrap();
    let reason = closed.recv_timeout(T).expect("the close was notified");
    assert!(matches!(reason, CloseReason::Lost(_)), "{reason:?}");
    assert_eq!(
        closed.recv_timeout(T),
        Err(mpsc::RecvTimeoutError::Disconnected),
        "reported once"
    );
    assert!(!conn.is_ok());
}

#[test]
fn a_protocol_violation_closes_the_connection_with_the_reason() {
    let (addr, peer) = raw_peer(b"RPY 0 0 . 0 5\r\nhello\r\nEND\r\n".to_vec());
    match Connection::connect(addr, Options::default()) {
        Err(Error::Closed(CloseReason::Violation(_))) => {}
        other => panic!("{other:?}"),
    }
    peer.join().unwrap();
}

/// Waits `delay`, then reads until the end; returns the octets read.
fn read_all_after(mut stream: std::net::TcpStream, delay: Duration) -> usize {
    use std::io::Read;
    // The point: a peer that does not read until long after our timeout
    // (nothing on our side can say when it gave up but the peer's view).
    std::thread::sleep(delay);
    stream.set_read_timeout(Some(T)).unwrap();
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        received += n;
    }
    received
}

/// The queue limit and 256 KiB messages of the stalled-peer tests.
const LIMIT: usize = 1 << 20;
const CHUNK: usize = 256 << 10;

/// Options for a stalled peer: a 1 MiB queue limit and 1 MiB frames.
fn stalled_options() -> Options {
    Options {
        max_queued_output: LIMIT,
        config: Config {
            max_frame_size: 1 << 20,
            ..Config::default()
        },
        ..Options::default()
    }
}

/// Sends 256 KiB messages without waiting until our writer is stuck on a
/// peer that reads nothing: the queue is full and stops shrinking (a full
/// queue alone may only mean that the writer lags behind a kernel still
/// taking bytes). Returns the payload octets sent.
fn fill_until_stuck(conn: &Connection, channel: &beep_blocking::Channel) -> usize {
    let chunk = Message::new(vec![0u8; CHUNK]);
    let mut sent = 0;
    loop {
        match channel.try_send_msg(chunk.clone()) {
            Ok(_) => sent += CHUNK,
            Err(Error::QueueFull { queued, limit }) => {
                assert_eq!(limit, LIMIT);
                assert!(queued > LIMIT && queued <= LIMIT + CHUNK, "{queued}");
                // Nothing tells that the kernel stopped taking bytes: a
                // queue that did not shrink in 200 ms is taken as stuck.
                std::thread::sleep(Duration::from_millis(200));
                if conn.queued_output() == queued {
                    return sent;
                }
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            sent < 400 * CHUNK,
            "{sent} octets taken by a peer that reads nothing"
        );
    }
}

/// A peer that greets, accepts a channel with a huge window (so only TCP
/// stops the sender), then never reads again until told to go.
fn stalled_peer() -> (SocketAddr, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (addr, peer) = stalled_peer_then(move |_, _| {
        let _ = stop_rx.recv();
    });
    (addr, stop_tx, peer)
}

/// Like [`stalled_peer`], then runs `then` with the stream and the next
/// seqno of the peer's channel 0.
fn stalled_peer_then(
    then: impl FnOnce(TcpStream, usize) + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = socket.accept().unwrap();
        let greeting = "Content-Type: application/beep+xml\r\n\r\n<greeting><profile uri='http://example.org/beep/echo' /></greeting>\r\n";
        let greeting_frame = format!("RPY 0 0 . 0 {}\r\n{greeting}END\r\n", greeting.len());
        stream.write_all(greeting_frame.as_bytes()).unwrap();
        read_until(&mut stream, b"</start>");
        let ok = "Content-Type: application/beep+xml\r\n\r\n<profile uri='http://example.org/beep/echo' />\r\n";
        let mut reply = format!("RPY 0 0 . {} {}\r\n{ok}END\r\n", greeting.len(), ok.len());
        // Advertise a huge window so that only TCP stops the sender.
        reply += "SEQ 1 0 2147483647\r\n";
        stream.write_all(reply.as_bytes()).unwrap();
        then(stream, greeting.len() + ok.len());
    });
    (addr, peer)
}

#[test]
fn a_peer_that_stops_reading_bounds_our_memory() {
    let (addr, stop_tx, peer) = stalled_peer();
    let conn = Connection::connect(addr, stalled_options()).unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let (sent_tx, sent) = mpsc::channel();
    let sender = std::thread::spawn(move || {
        let chunk = Message::new(vec![0u8; CHUNK]);
        while channel.send_msg(chunk.clone()).is_ok() {
            let _ = sent_tx.send(());
        }
    });
    // Every send is counted as it returns. Nothing tells that the sender
    // blocked: it has once no send returned for 500 ms. Kernel buffers
    // take a few MB; a sender that our queue does not stop runs into the
    // bound below instead.
    let mut messages = 0;
    while sent.recv_timeout(Duration::from_millis(500)).is_ok() {
        messages += 1;
        assert!(
            messages < 400,
            "{messages} x 256 KiB accepted by a peer that reads nothing"
        );
    }
    assert!(conn.is_ok(), "{:?}", conn.close_reason());
    // Our own queue stays near its limit.
    let queued = conn.queued_output();
    assert!(queued <= LIMIT + CHUNK, "queued {queued}");
    conn.shutdown();
    sender.join().unwrap();
    let _ = stop_tx.send(());
    peer.join().unwrap();
}

#[test]
fn non_blocking_sends_report_a_full_queue_instead_of_waiting() {
    let (addr, stop_tx, peer) = stalled_peer();
    let conn = Connection::connect(addr, stalled_options()).unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let chunk = Message::new(vec![0u8; CHUNK]);
    // Without the try_ calls this thread would wait for ever.
    fill_until_stuck(&conn, &channel);
    // Refused, not sent: the queue did not grow, the connection lives.
    let queued = conn.queued_output();
    assert!(matches!(
        channel.try_send_msg(chunk.clone()),
        Err(Error::QueueFull { .. })
    ));
    assert_eq!(conn.queued_output(), queued);
    assert!(conn.is_ok());
    conn.shutdown();
    assert!(matches!(
        channel.try_send_msg(chunk),
        Err(Error::Closed(CloseReason::Shutdown))
    ));
    let _ = stop_tx.send(());
    peer.join().unwrap();
}

#[test]
fn listener_shutdown_releases_open_sessions() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    assert_eq!(
        body(echo.request(Message::new("before"), T).unwrap()),
        b"before"
    );
    drop(server);
    assert!(conn.wait_closed(T).is_some());
    assert_eq!(conn.close_reason(), Some(CloseReason::Released));
}

#[test]
fn accept_filter_turns_connections_away() {
    let listener = Listener::bind("127.0.0.1:0", Registry::new(), Options::default());
    let mut listener = listener.unwrap();
    listener.set_accept_filter(|_| false);
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    let short = Options {
        connect_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    assert!(Connection::connect(addr, short).is_err());
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn ipv6_loopback_works_where_available() {
    let Ok(listener) = Listener::bind("[::1]:0", Registry::new(), Options::default()) else {
        return; // no IPv6 on this machine
    };
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    let conn = Connection::connect(addr, Options::default()).unwrap();
    assert!(conn.is_ok());
    conn.close().unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(10));
}

#[test]
fn channel_pool_grows_to_its_maximum_and_reuses_released_channels() {
    use beep_blocking::ChannelPool;
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let created = Arc::new(AtomicUsize::new(0));
    let counter = created.clone();
    let pool = ChannelPool::with_create_handler(&conn, Profile::new(ECHO), 1, 3, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!((pool.len(), pool.idle()), (1, 1));
    let a = pool.next_ready(T).unwrap();
    let b = pool.next_ready(T).unwrap();
    let c = pool.next_ready(T).unwrap();
    let mut numbers = vec![a.number(), b.number(), c.number()];
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 3, "three distinct channels");
    assert_eq!(created.load(Ordering::SeqCst), 3);
    assert!(matches!(
        pool.next_ready(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    let reused = b.number();
    drop(b);
    let again = pool.next_ready(T).unwrap();
    assert_eq!(again.number(), reused, "a released channel is ready again");
    assert_eq!(
        body(again.request(Message::new("pooled"), T).unwrap()),
        b"pooled"
    );
    // A waiting borrower gets the next channel released from another thread.
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.next_ready(T).map(|c| c.number()))
    };
    let released = a.number();
    drop(a);
    assert_eq!(waiter.join().unwrap().unwrap(), released);
    assert_eq!(
        created.load(Ordering::SeqCst),
        3,
        "never beyond the maximum"
    );
    drop((c, again));
}

#[test]
fn channel_pool_creation_is_notified() {
    use beep_blocking::ChannelPool;
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    ChannelPool::new_with(&conn, Profile::new(ECHO), 2, 2, move |pool| {
        tx.send(pool.map(|p| p.len())).unwrap();
    });
    assert_eq!(rx.recv_timeout(T).unwrap().unwrap(), 2);
    let (tx, rx) = mpsc::channel();
    ChannelPool::new_with(
        &conn,
        Profile::new("http://example.org/none"),
        1,
        2,
        move |pool| {
            tx.send(pool.map(|p| p.len())).unwrap();
        },
    );
    assert!(matches!(
        rx.recv_timeout(T).unwrap(),
        Err(Error::Refused { .. })
    ));
}

#[test]
fn batches_hold_output_until_they_end_or_wait() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let (tx, rx) = mpsc::channel();
    echo.set_message_handler(move |_, m| tx.send(m.message.body().to_vec()).unwrap());
    conn.batch(|| {
        for i in 0..100 {
            echo.send_msg(Message::new(format!("{i}"))).unwrap();
        }
        // A request inside a batch must not wait for bytes the batch holds.
        assert_eq!(
            body(echo.request(Message::new("inside"), T).unwrap()),
            b"inside"
        );
        // Nested batches flush with the outermost one.
        conn.batch(|| echo.send_msg(Message::new("nested")).unwrap());
    });
    for i in 0..100 {
        assert_eq!(rx.recv_timeout(T).unwrap(), format!("{i}").into_bytes());
    }
    assert_eq!(rx.recv_timeout(T).unwrap(), b"nested");
}

#[test]
fn rfc3081_2_the_peer_sending_ok_closes_the_connection() {
    // A raw initiator asks to release the session; our listener answers
    // <ok/> and must then close the TCP connection (RFC 3081 section 2),
    // which the raw peer sees as EOF.
    let server = server();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let greeting = "Content-Type: application/beep+xml\r\n\r\n<greeting />\r\n";
    let close = "Content-Type: application/beep+xml\r\n\r\n<close number='0' code='200' />\r\n";
    let script = format!(
        "RPY 0 0 . 0 {}\r\n{greeting}END\r\nMSG 0 0 . {} {}\r\n{close}END\r\n",
        greeting.len(),
        greeting.len(),
        close.len()
    );
    stream.write_all(script.as_bytes()).unwrap();
    let mut received = Vec::new();
    let eof = stream.read_to_end(&mut received);
    assert!(eof.is_ok(), "no EOF after the <ok/>: {eof:?}");
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("<ok />"), "{text}");
}

#[test]
fn a_shut_down_connection_closes_its_socket() {
    // Our side ends the connection: the peer must see EOF (the writer and
    // reader threads let go of the socket).
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = socket.accept().unwrap();
        stream.write_all(greeting_frame().as_bytes()).unwrap();
        stream.set_read_timeout(Some(T)).unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).is_ok()
    });
    let conn = Connection::connect(addr, Options::default()).unwrap();
    conn.shutdown();
    assert!(peer.join().unwrap(), "the peer never saw EOF");
}

fn greeting_frame() -> String {
    let greeting = "Content-Type: application/beep+xml\r\n\r\n<greeting><profile uri='http://example.org/beep/echo' /></greeting>\r\n";
    format!("RPY 0 0 . 0 {}\r\n{greeting}END\r\n", greeting.len())
}

#[test]
fn rfc3080_5_2_invalid_configurations_are_refused_up_front() {
    let bad = Options {
        config: Config {
            features: Some("turbo".into()),
            ..Config::default()
        },
        ..Options::default()
    };
    assert!(matches!(
        Listener::bind("127.0.0.1:0", Registry::new(), bad.clone()),
        Err(Error::Usage(_))
    ));
    assert!(matches!(
        Connection::connect("127.0.0.1:9", bad),
        Err(Error::Usage(_))
    ));
}

#[test]
fn a_peer_that_never_grants_window_for_our_replies_is_slowed_not_buffered() {
    use beep_proto::frame::{Header, parse_header};
    use std::time::Instant;
    // Our listener: 1 MiB receive window, 1 MiB outbound queue limit.
    let options = Options {
        config: Config {
            receive_window: 1 << 20,
            max_frame_size: 64 << 10,
            ..Config::default()
        },
        max_queued_output: 1 << 20,
        ..Options::default()
    };
    let server = server_with(options);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    // The peer reads everything we send (so TCP is not what stops us) but
    // never sends SEQ for channel 1: our echo replies cannot leave beyond
    // the 4096 octets every channel starts with. The reader reports the
    // window edges of channel 1 and the RPY frames of channel 0.
    let (window_tx, windows) = mpsc::channel::<u64>();
    let (started_tx, started) = mpsc::channel::<()>();
    {
        let mut reader = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some((header, used))) = parse_header(&buf, 128) {
                    let total = match &header {
                        Header::Seq(_) => used,
                        Header::Frame(h) => used + h.size as usize + 5,
                    };
                    if buf.len() < total {
                        break; // parsed again, whole, after the next read
                    }
                    match header {
                        Header::Seq(seq) if seq.channel == 1 => {
                            let _ = window_tx.send(u64::from(seq.ackno) + u64::from(seq.window));
                        }
                        Header::Frame(h)
                            if h.channel == 0
                                && h.msgno == MsgNo(0)
                                && h.frame_type == beep_proto::frame::FrameType::Rpy =>
                        {
                            let _ = started_tx.send(());
                        }
                        _ => {}
                    }
                    buf.drain(..total);
                }
            }
        });
    }
    let greeting = "Content-Type: application/beep+xml\r\n\r\n<greeting />\r\n";
    let start = format!(
        "Content-Type: application/beep+xml\r\n\r\n<start number='1'><profile uri='{ECHO}' /></start>\r\n"
    );
    let script = format!(
        "RPY 0 0 . 0 {}\r\n{greeting}END\r\nMSG 0 0 . {} {}\r\n{start}END\r\n",
        greeting.len(),
        greeting.len(),
        start.len()
    );
    stream.write_all(script.as_bytes()).unwrap();
    // Their greeting and their start reply (two RPY 0 0 frames... the second
    // is msgno 0 of our start): wait for both.
    for _ in 0..2 {
        started.recv_timeout(T).expect("channel 1 never started");
    }
    let mut limit = 4096;
    // Send 16 KiB MSGs as fast as our window allows, until it stops opening:
    // nothing tells that it never will, so the test waits for a window
    // update for 2 s after the last send.
    let payload = vec![b'x'; 16 << 10];
    let (mut seqno, mut msgno) = (0u64, 0u32);
    let mut last_sent = Instant::now();
    loop {
        let size = payload.len() as u64 + 2;
        if seqno + size <= limit {
            let head = format!("MSG 1 {msgno} . {seqno} {size}\r\n\r\n");
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&payload).unwrap();
            stream.write_all(b"END\r\n").unwrap();
            seqno += size;
            msgno += 1;
            last_sent = Instant::now();
        } else {
            let quiet = Duration::from_secs(2).saturating_sub(last_sent.elapsed());
            match windows.recv_timeout(quiet) {
                Ok(edge) => limit = limit.max(edge),
                Err(_) => break,
            }
        }
        assert!(
            seqno < 64 << 20,
            "the window kept opening: we buffer without bound"
        );
    }
    // We took at most the queue limit plus the window plus a message or two.
    assert!(
        seqno <= (1 << 20) + (1 << 20) + (64 << 10),
        "accepted {seqno} octets"
    );
    assert!(
        seqno > 1 << 20,
        "accepted only {seqno} octets: the window never opened"
    );
    // Meanwhile the listener serves everyone else.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    assert_eq!(
        body(echo.request(Message::new("still serving"), T).unwrap()),
        b"still serving"
    );
}

#[test]
fn non_blocking_replies_go_out_like_the_waiting_ones() {
    const TRY: &str = "http://example.org/beep/try";
    let mut registry = Registry::new();
    registry.register(
        TRY,
        ProfileHandler::new(|channel, m| {
            let result = match &m.message.body()[..] {
                b"rpy" => channel.try_reply_rpy(m.msgno, Message::new("positive")),
                b"err" => channel.try_reply_err(m.msgno, Message::new("negative")),
                _ => channel
                    .try_reply_ans(m.msgno, Message::new("one"))
                    .and_then(|_| channel.try_reply_ans(m.msgno, Message::new("two")))
                    .and_then(|_| channel.reply_nul(m.msgno)),
            };
            result.expect("an idle connection has room");
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    let conn = Connection::connect(addr, Options::default()).unwrap();
    let channel = conn.open_channel(Profile::new(TRY), None).unwrap();
    assert_eq!(
        body(channel.request(Message::new("rpy"), T).unwrap()),
        b"positive"
    );
    match channel.request(Message::new("err"), T).unwrap() {
        Reply::Err(m) => assert_eq!(&m.body()[..], b"negative"),
        other => panic!("{other:?}"),
    }
    match channel.request(Message::new("ans"), T).unwrap() {
        Reply::Answers(answers) => {
            let bodies: Vec<_> = answers.iter().map(|(_, m)| m.body().to_vec()).collect();
            assert_eq!(bodies, [b"one".to_vec(), b"two".to_vec()]);
        }
        other => panic!("{other:?}"),
    }
    // A MSG sent without waiting gets its reply through the handler.
    let (tx, rx) = mpsc::channel();
    channel.set_message_handler(move |_, m| {
        let _ = tx.send(m.message.body().to_vec());
    });
    channel.try_send_msg(Message::new("rpy")).unwrap();
    assert_eq!(rx.recv_timeout(T).unwrap(), b"positive");
    conn.close().unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn a_release_towards_a_peer_that_stops_reading_gives_up_after_the_timeout() {
    // The peer reads nothing, but answers our release blindly: we end
    // `Released` with output still unwritten. The writer must give up
    // after the release timeout instead of holding its thread and the
    // socket for as long as the peer keeps them open.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (got_tx, got_rx) = mpsc::channel::<usize>();
    let (addr, peer) = stalled_peer_then(move |mut stream, seqno| {
        go_rx.recv().unwrap();
        let ok = "Content-Type: application/beep+xml\r\n\r\n<ok />\r\n";
        let reply = format!("RPY 0 1 . {seqno} {}\r\n{ok}END\r\n", ok.len());
        stream.write_all(reply.as_bytes()).unwrap();
        // Long after the timeout, take everything that comes.
        got_tx
            .send(read_all_after(stream, Duration::from_secs(3)))
            .unwrap();
    });
    let options = Options {
        release_timeout: Duration::from_secs(1),
        ..stalled_options()
    };
    let conn = Connection::connect(addr, options).unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let sent = fill_until_stuck(&conn, &channel);
    let before = conn.queued_output();
    let closer = std::thread::spawn({
        let conn = conn.clone();
        move || conn.close()
    });
    // The close request is queued (the writer is stuck): the peer may answer.
    // Nothing reports that `close` queued it: the queue is polled.
    while conn.queued_output() == before {
        std::thread::sleep(Duration::from_millis(1));
    }
    go_tx.send(()).unwrap();
    closer.join().unwrap().unwrap();
    assert_eq!(conn.close_reason(), Some(CloseReason::Released));
    let received = got_rx.recv_timeout(T * 2).expect("the peer saw the end");
    assert!(
        received < sent,
        "the peer got all {received} octets: the writer waited for it instead of giving up"
    );
    peer.join().unwrap();
}

#[test]
fn dropping_every_handle_releases_the_connection() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let (tx, rx) = mpsc::channel();
    conn.on_close(move |reason| {
        let _ = tx.send(reason.clone());
    });
    // A channel is a handle too: the connection lives on through it.
    drop(conn);
    assert_eq!(
        body(echo.request(Message::new("still"), T).unwrap()),
        b"still"
    );
    assert!(rx.try_recv().is_err(), "closed while a channel was held");
    drop(echo);
    assert_eq!(rx.recv_timeout(T).unwrap(), CloseReason::Released);
}

#[test]
fn a_handler_that_flushes_before_blocking_does_not_hold_its_reply_back() {
    // The handler replies, then blocks on a channel of its own until the
    // client has that reply: the batch holding the reply must go out
    // first, which `flush` does.
    const REPLY_THEN_WAIT: &str = "http://example.org/beep/reply-then-wait";
    let (seen_tx, seen_rx) = mpsc::channel::<()>();
    let seen_rx = Mutex::new(seen_rx);
    let mut registry = Registry::new();
    registry.register(
        REPLY_THEN_WAIT,
        ProfileHandler::new(move |channel, m| {
            channel.reply_rpy(m.msgno, m.message).unwrap();
            channel.connection().flush();
            let _ = seen_rx.lock().unwrap().recv_timeout(T);
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    let conn = Connection::connect(addr, Options::default()).unwrap();
    let channel = conn
        .open_channel(Profile::new(REPLY_THEN_WAIT), None)
        .unwrap();
    let first = channel.request(Message::new("first"), Duration::from_secs(5));
    assert_eq!(
        body(first.expect("the reply left before the handler blocked")),
        b"first"
    );
    seen_tx.send(()).unwrap();
    seen_tx.send(()).unwrap();
    // Handlers run one at a time: this answer means the first one ended.
    assert_eq!(
        body(channel.request(Message::new("second"), T).unwrap()),
        b"second"
    );
    conn.close().unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn a_handler_error_answers_with_err_and_keeps_the_channel() {
    const LOOKUP: &str = "http://example.org/beep/lookup";
    let mut registry = Registry::new();
    registry.register(
        LOOKUP,
        ProfileHandler::new(|channel, m| -> Result<(), String> {
            match &m.message.body()[..] {
                b"known" => channel
                    .reply_rpy(m.msgno, Message::new("value"))
                    .map_err(|e| e.to_string()),
                b"late" => {
                    // Answered already: the error sends nothing more.
                    let _ = channel.reply_rpy(m.msgno, Message::new("answered"));
                    Err("after the reply".into())
                }
                other => Err(format!("no key {}", String::from_utf8_lossy(other))),
            }
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    let conn = Connection::connect(addr, Options::default()).unwrap();
    let channel = conn.open_channel(Profile::new(LOOKUP), None).unwrap();
    match channel.request(Message::new("missing"), T).unwrap() {
        Reply::Err(m) => assert_eq!(&m.body()[..], b"no key missing"),
        other => panic!("{other:?}"),
    }
    // The channel stays open and in step.
    assert_eq!(
        body(channel.request(Message::new("late"), T).unwrap()),
        b"answered"
    );
    assert_eq!(
        body(channel.request(Message::new("known"), T).unwrap()),
        b"value"
    );
    assert_eq!(channel.profile().as_deref(), Some(LOOKUP));
    conn.close().unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn a_release_gives_up_even_when_a_handler_is_the_one_stuck_writing() {
    // As above, but the unwritten output is a handler's reply, so the
    // thread stuck in the socket write is the dispatcher itself.
    const REPLY: usize = 8 << 20;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (got_tx, got_rx) = mpsc::channel::<usize>();
    let (addr, peer) = stalled_peer_then(move |mut stream, seqno| {
        go_rx.recv().unwrap(); // the handler is set
        let msg = b"MSG 1 0 . 0 7\r\n\r\nhelloEND\r\n";
        stream.write_all(msg).unwrap();
        go_rx.recv().unwrap(); // our release is queued
        let ok = "Content-Type: application/beep+xml\r\n\r\n<ok />\r\n";
        let reply = format!("RPY 0 1 . {seqno} {}\r\n{ok}END\r\n", ok.len());
        stream.write_all(reply.as_bytes()).unwrap();
        got_tx
            .send(read_all_after(stream, Duration::from_secs(3)))
            .unwrap();
    });
    let options = Options {
        release_timeout: Duration::from_secs(1),
        config: Config {
            max_frame_size: 1 << 20,
            ..Config::default()
        },
        ..Options::default()
    };
    let conn = Connection::connect(addr, options).unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let (replied_tx, replied_rx) = mpsc::channel();
    channel.set_message_handler(move |channel, m| {
        let _ = channel.reply_rpy(m.msgno, Message::new(vec![0u8; REPLY]));
        let _ = replied_tx.send(());
    });
    go_tx.send(()).unwrap();
    replied_rx
        .recv_timeout(T)
        .unwrap_or_else(|e| panic!("{e}: {:?}", conn.close_reason()));
    // The dispatcher writes the reply at the end of its batch and blocks:
    // the queue stops shrinking. Nothing reports a blocked write: a queue
    // that did not change in 50 ms is taken as stuck.
    let mut queued = conn.queued_output();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = conn.queued_output();
        if now == queued && now > 0 {
            break;
        }
        queued = now;
    }
    let closer = std::thread::spawn({
        let conn = conn.clone();
        move || conn.close()
    });
    // Polled, as above: the close request is queued.
    while conn.queued_output() == queued {
        std::thread::sleep(Duration::from_millis(1));
    }
    go_tx.send(()).unwrap();
    closer.join().unwrap().unwrap();
    let received = got_rx.recv_timeout(T * 2).expect("the peer saw the end");
    assert!(
        received < REPLY,
        "the peer got all {received} octets: nothing gave up on the stuck writer"
    );
    peer.join().unwrap();
}

#[test]
fn frame_handlers_carry_messages_larger_than_the_message_limit() {
    // Both sides refuse to reassemble more than 64 KiB; 1 MiB goes through
    // frame by frame, both ways.
    const UPLOAD: &str = "http://example.org/beep/upload";
    const SIZE: usize = 1 << 20;
    let options = Options {
        config: Config {
            max_message_size: 64 << 10,
            ..Config::default()
        },
        ..Options::default()
    };
    let received = Arc::new(AtomicUsize::new(0));
    // A streaming channel delivers no whole messages.
    let whole = Arc::new(AtomicUsize::new(0));
    let messages = whole.clone();
    let counter = received.clone();
    let mut registry = Registry::new();
    registry.register(
        UPLOAD,
        ProfileHandler::new(move |_, _| {
            messages.fetch_add(1, Ordering::SeqCst);
        })
        .on_frame(move |channel, frame| -> Result<(), Error> {
            let total = counter.fetch_add(frame.payload.len(), Ordering::SeqCst);
            if !frame.more {
                // Answer with the size, then send the whole back.
                let size = (total + frame.payload.len()).to_string();
                channel.reply_ans(frame.msgno, Message::new(size))?;
                channel.reply_ans(frame.msgno, Message::new(vec![b'z'; SIZE]))?;
                channel.reply_nul(frame.msgno)?;
            }
            Ok(())
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, options.clone()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    let conn = Connection::connect(addr, options).unwrap();
    let channel = conn.open_channel(Profile::new(UPLOAD), None).unwrap();
    let (tx, rx) = mpsc::channel();
    channel
        .set_frame_handler(move |_, frame| {
            let _ = tx.send(frame);
        })
        .unwrap();
    // Requests wait for whole replies: refused on a streaming channel.
    assert!(matches!(
        channel.request(Message::new("x"), T),
        Err(Error::Usage(beep_proto::UsageError::Streaming { .. }))
    ));
    channel.send_msg(Message::new(vec![b'a'; SIZE])).unwrap();
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    let mut frames = 0;
    loop {
        let frame = rx.recv_timeout(T).unwrap();
        frames += 1;
        match frame.kind {
            beep_proto::MessageKind::Ans { .. } => {
                current.extend_from_slice(&frame.payload);
                if !frame.more {
                    answers.push(std::mem::take(&mut current));
                }
            }
            beep_proto::MessageKind::Nul => break,
            other => panic!("{other:?}"),
        }
    }
    // Each answer is a MIME entity: an empty header block, then the body.
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0], format!("\r\n{}", SIZE + 2).into_bytes());
    assert_eq!(answers[1].len(), SIZE + 2);
    assert!(answers[1][2..].iter().all(|b| *b == b'z'));
    assert!(frames > 16, "{frames} frames for 1 MiB in 4 KiB windows");
    assert_eq!(received.load(Ordering::SeqCst), SIZE + 2);
    assert_eq!(whole.load(Ordering::SeqCst), 0);
    conn.close().unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn an_incoming_queue_is_bounded_by_the_window_until_read() {
    // The server answers one MSG with 100 ANS of 1000 octets. Until the
    // client reads its queue, the 4 KiB window it gave lets only a few
    // through: the rest waits in the server's output, not in our memory.
    const STREAM: &str = "http://example.org/beep/stream";
    let (queued_tx, queued) = mpsc::channel();
    let mut registry = Registry::new();
    registry.register(
        STREAM,
        ProfileHandler::new(move |channel, m| -> Result<(), Error> {
            for i in 0..100 {
                let ans = Message::new(format!("{i:04}").repeat(250));
                channel.reply_ans(m.msgno, ans)?;
            }
            channel.reply_nul(m.msgno)?;
            // Everything is queued: the test looks at what could leave.
            let _ = queued_tx.send(channel.connection().clone());
            Ok(())
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    let conn = Connection::connect(addr, Options::default()).unwrap();
    let channel = conn.open_channel(Profile::new(STREAM), None).unwrap();
    let incoming = channel.incoming();
    channel.send_msg(Message::new("go")).unwrap();
    let server = queued
        .recv_timeout(T)
        .expect("the handler queued its answers");
    // The point: time for the server to send past our window if it could
    // (nothing happens that the test could wait for when it cannot).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.queued_output() > 90_000,
        "the server sent {} octets past our window",
        100_000 - server.queued_output()
    );
    let mut answers = 0;
    loop {
        let m = incoming.recv_timeout(T).unwrap();
        match m.kind {
            beep_proto::MessageKind::Ans { ansno } => {
                assert_eq!(ansno, AnsNo(answers));
                assert!(
                    m.message
                        .body()
                        .starts_with(format!("{answers:04}").as_bytes())
                );
                answers += 1;
            }
            beep_proto::MessageKind::Nul => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answers, 100);
    // Reading ends when the channel closes, and when the connection does.
    channel.close().unwrap();
    assert!(matches!(
        incoming.recv_timeout(T),
        Err(Error::ChannelClosed)
    ));
    assert!(incoming.recv().is_none());
    let last = conn.open_channel(Profile::new(STREAM), None).unwrap();
    let last_incoming = last.incoming();
    drop(server);
    conn.close().unwrap();
    assert!(matches!(
        last_incoming.recv_timeout(T),
        Err(Error::ChannelClosed)
    ));
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

// Durations too long for a deadline (issue 8): `Duration::MAX` means no
// deadline, where `Instant::now() + Duration::MAX` used to panic.

#[test]
fn a_request_waiting_duration_max_gets_its_reply_whoever_reads_it() {
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    // Alone, the waiting thread reads the socket itself, without a timeout.
    let reply = echo.request(Message::new("alone"), Duration::MAX);
    assert_eq!(body(reply.unwrap()), b"alone");
    // Together, some threads read the replies of others, which wait for
    // them to be handed over.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let echo = echo.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let text = format!("{t}/{i}");
                    let reply = echo.request(Message::new(text.clone()), Duration::MAX);
                    assert_eq!(body(reply.unwrap()), text.into_bytes());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn a_request_waiting_duration_max_gets_a_reply_that_the_handler_holds_back() {
    const GATED: &str = "http://example.org/beep/gated";
    let (reached_tx, reached) = mpsc::channel::<()>();
    let (open, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let mut registry = Registry::new();
    registry.register(
        GATED,
        ProfileHandler::new(move |channel, m| {
            let _ = reached_tx.send(());
            let _ = gate.lock().unwrap().recv_timeout(T);
            let _ = channel.reply_rpy(m.msgno, m.message);
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    // The gate opens once the MSG reached the handler: the request is
    // waiting by then.
    let opener = std::thread::spawn(move || {
        reached.recv_timeout(T).expect("the handler ran");
        open.send(()).unwrap();
    });
    let conn = Connection::connect(addr, Options::default()).unwrap();
    let channel = conn.open_channel(Profile::new(GATED), None).unwrap();
    let reply = channel.request(Message::new("held back"), Duration::MAX);
    assert_eq!(body(reply.unwrap()), b"held back");
    opener.join().unwrap();
    conn.close().unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn timeouts_of_duration_max_connect_and_bound_nothing() {
    // The connect timeout bounds the connect and the greeting, the channel
    // timeout channel starts and closes, the release timeout the release
    // and a released session's last flush, on both sides: Duration::MAX
    // leaves each unbounded.
    let forever = Options {
        connect_timeout: Duration::MAX,
        channel_timeout: Duration::MAX,
        release_timeout: Duration::MAX,
        ..Options::default()
    };
    let server = server_with(forever.clone());
    let conn = Connection::connect(server.addr, forever).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    assert_eq!(
        body(echo.request(Message::new("no deadline"), T).unwrap()),
        b"no deadline"
    );
    echo.close().unwrap();
    conn.close().unwrap();
    assert!(conn.wait_closed(Duration::MAX).is_some());
    assert_eq!(conn.close_reason(), Some(CloseReason::Released));
    // The listener releases its sessions with the same options.
    let other = Connection::connect(server.addr, Options::default()).unwrap();
    drop(server);
    assert!(other.wait_closed(T).is_some());
    assert_eq!(other.close_reason(), Some(CloseReason::Released));
}

#[test]
fn waits_of_duration_max_end_when_their_event_comes() {
    use beep_blocking::ChannelPool;
    let server = server();
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let pool = ChannelPool::new(&conn, Profile::new(ECHO), 1, 1).unwrap();
    let lent = pool.next_ready(Duration::MAX).unwrap();
    // One thread waits for the pool's only channel, another for the end of
    // the connection. Each says so just before it waits; a wait that began
    // late ends the same way, as only its event can end it.
    let (waiting_tx, waiting) = mpsc::channel();
    let borrower = std::thread::spawn({
        let (pool, waiting_tx) = (pool.clone(), waiting_tx.clone());
        move || {
            waiting_tx.send(()).unwrap();
            pool.next_ready(Duration::MAX).map(|c| c.number())
        }
    });
    let watcher = std::thread::spawn({
        let conn = conn.clone();
        move || {
            waiting_tx.send(()).unwrap();
            conn.wait_closed(Duration::MAX)
        }
    });
    waiting.recv_timeout(T).unwrap();
    waiting.recv_timeout(T).unwrap();
    let number = lent.number();
    drop(lent);
    assert_eq!(borrower.join().unwrap().unwrap(), number);
    conn.close().unwrap();
    assert!(watcher.join().unwrap().is_some(), "wait_closed saw the end");
}
