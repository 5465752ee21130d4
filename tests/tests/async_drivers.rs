//! beep-tokio clients against beep-tokio listeners over loopback TCP. Every
//! scenario runs twice: on tokio and on async-std.

mod async_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_support::{
    COUNT, ECHO, Env, GATED, PANIC, PICKY, T, body, greeting_frame, raw_peer, read_until, server,
    server_with,
};
use beep_proto::xml::Profile;
use beep_proto::{AnsNo, Config, Message, MessageKind, ReplyCode};
use beep_tokio::{CloseReason, Connection, Error, Listener, Options, Registry, Reply};
use futures_channel::{mpsc, oneshot};
use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};

on_both_runtimes!(
    request_reply_answers_and_release,
    pipelined_requests_complete_in_order,
    refused_start_reports_the_peer_code_and_server_name_reaches_the_handler,
    callback_channel_creation_notifies_completion,
    a_panicking_handler_ends_only_its_channel,
    three_hundred_channels_on_one_connection,
    two_hundred_connections_with_three_channels_each,
    large_messages_with_large_windows,
    a_peer_vanishing_mid_frame_is_reported_once_and_nothing_hangs,
    a_protocol_violation_closes_the_connection_with_the_reason,
    a_peer_that_stops_reading_bounds_our_memory,
    non_blocking_sends_report_a_full_queue_instead_of_waiting,
    non_blocking_replies_go_out_like_the_waiting_ones,
    a_release_towards_a_peer_that_stops_reading_gives_up_after_the_timeout,
    dropping_every_handle_releases_the_connection,
    a_handler_that_waits_after_replying_does_not_hold_its_reply_back,
    a_handler_error_answers_with_err_and_keeps_the_channel,
    frame_handlers_carry_messages_larger_than_the_message_limit,
    an_incoming_stream_is_bounded_by_the_window_and_answers_what_it_drops,
    listener_shutdown_releases_sessions_and_completes_replies_in_flight,
    a_timed_out_request_leaves_its_late_reply_to_the_handler,
    shutdown_fails_pending_calls_promptly,
    accept_filter_turns_connections_away,
    ipv6_loopback_works_where_available,
    channel_pool_grows_to_its_maximum_and_reuses_released_channels,
    a_cancelled_pool_opening_gives_its_slot_back,
    a_request_waiting_duration_max_gets_its_reply_even_a_late_one,
    timeouts_of_duration_max_connect_and_bound_nothing,
    a_pool_wait_of_duration_max_ends_when_a_channel_is_released,
);

async fn request_reply_answers_and_release(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    assert_eq!(conn.peer_greeting().profiles.len(), 5);
    let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    assert_eq!(echo.profile().as_deref(), Some(ECHO));
    assert_eq!(echo.number() % 2, 1, "initiator channels are odd");
    let m = Message::new("with headers").with_header("Content-Type", "text/plain");
    match echo.request(m.clone(), T).await.unwrap() {
        Reply::Rpy(reply) => assert_eq!(reply, m, "payload and MIME headers echoed"),
        other => panic!("{other:?}"),
    }
    let count = conn.open_channel(Profile::new(COUNT), None).await.unwrap();
    match count.request(Message::new("5"), T).await.unwrap() {
        Reply::Answers(answers) => {
            let texts: Vec<_> = answers.iter().map(|(_, m)| m.body().to_vec()).collect();
            let expected: Vec<Vec<u8>> = (0..5).map(|i| i.to_string().into_bytes()).collect();
            assert_eq!(texts, expected);
            let ansnos: Vec<AnsNo> = answers.iter().map(|(n, _)| *n).collect();
            assert_eq!(ansnos, [0, 1, 2, 3, 4].map(AnsNo));
        }
        other => panic!("{other:?}"),
    }
    // Asserted here, not in the callback: the driver catches its panics.
    let (closed_tx, mut closed) = mpsc::unbounded();
    conn.on_close(move |reason| {
        let _ = closed_tx.unbounded_send(reason.clone());
    });
    echo.close().await.unwrap();
    assert_eq!(echo.profile(), None, "closed channels run no profile");
    conn.close().await.unwrap();
    assert_eq!(
        env.within(T, "wait_closed", conn.wait_closed()).await,
        CloseReason::Released
    );
    let reason = env.within(T, "on_close", closed.next()).await;
    assert_eq!(reason, Some(CloseReason::Released));
    // Ending it again reports nothing more.
    conn.shutdown();
    conn.close().await.unwrap();
    assert_eq!(
        env.within(T, "on_close dropped", closed.next()).await,
        None,
        "close notification fires once, then is dropped"
    );
    assert!(matches!(
        count.send_msg(Message::new("late")).await,
        Err(Error::Closed(CloseReason::Released))
    ));
    server.stop(&env).await;
}

async fn pipelined_requests_complete_in_order(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded();
    for i in 0..500u32 {
        let tx = tx.clone();
        echo.request_with(Message::new(i.to_string()), move |reply| {
            tx.unbounded_send((i, reply.map(body))).unwrap();
        })
        .await
        .unwrap();
    }
    for i in 0..500u32 {
        let (n, reply) = env.within(T, "reply", rx.next()).await.unwrap();
        assert_eq!(n, i, "replies complete in MSG order");
        assert_eq!(reply.unwrap(), i.to_string().into_bytes());
    }
    // The same through awaiting futures, all in flight at once.
    let replies = join_all((0..500u32).map(|i| echo.request(Message::new(i.to_string()), T))).await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(body(reply.unwrap()), i.to_string().into_bytes());
    }
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn refused_start_reports_the_peer_code_and_server_name_reaches_the_handler(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    match conn
        .open_channel(Profile::new(PICKY), Some("beep.example.test".into()))
        .await
    {
        Err(Error::Refused { code, text }) => {
            assert_eq!(code, ReplyCode::AUTHENTICATION_REQUIRED);
            assert_eq!(text, "say the word");
        }
        other => panic!("{other:?}"),
    }
    let offer = Profile::new(PICKY).with_content("let me in");
    let channel = conn.open_channel(offer, None).await.unwrap();
    assert_eq!(channel.start_reply().as_deref(), Some(&b"welcome"[..]));
    assert_eq!(
        body(channel.request(Message::new("x"), T).await.unwrap()),
        b"x"
    );
    // Its close handler refuses: the channel stays usable.
    assert!(matches!(channel.close().await, Err(Error::Refused { .. })));
    assert_eq!(
        body(channel.request(Message::new("y"), T).await.unwrap()),
        b"y"
    );
    assert!(matches!(
        conn.open_channel(Profile::new("http://example.org/unknown"), None).await,
        Err(Error::Refused { code, .. }) if code == ReplyCode::REQUESTED_ACTION_NOT_TAKEN
    ));
    let names = server.server_names.lock().unwrap().clone();
    assert_eq!(names, vec![Some("beep.example.test".to_string()), None]);
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn callback_channel_creation_notifies_completion(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded();
    let tx2 = tx.clone();
    conn.open_channel_with(Profile::new(ECHO), None, move |r| {
        tx.unbounded_send(r.map(|c| c.number())).unwrap()
    })
    .unwrap();
    conn.open_channel_with(Profile::new(PICKY), None, move |r| {
        tx2.unbounded_send(r.map(|c| c.number())).unwrap()
    })
    .unwrap();
    let mut results = [
        env.within(T, "open", rx.next()).await.unwrap(),
        env.within(T, "open", rx.next()).await.unwrap(),
    ];
    results.sort_by_key(|r| r.is_err());
    assert!(matches!(results[0], Ok(n) if n % 2 == 1));
    assert!(matches!(results[1], Err(Error::Refused { .. })));
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn a_panicking_handler_ends_only_its_channel(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let doomed = conn.open_channel(Profile::new(PANIC), None).await.unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    assert_eq!(
        body(doomed.request(Message::new("fine"), T).await.unwrap()),
        b"fine"
    );
    // The panicking handler's MSG gets an ERR instead of hanging the caller.
    match doomed.request(Message::new("panic now"), T).await {
        Ok(Reply::Err(m)) => assert_eq!(m.body(), "the handler failed"),
        other => panic!("{other:?}"),
    }
    assert!(conn.is_ok());
    assert_eq!(
        body(echo.request(Message::new("still here"), T).await.unwrap()),
        b"still here"
    );
    let other = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let c = other.open_channel(Profile::new(ECHO), None).await.unwrap();
    assert_eq!(
        body(
            c.request(Message::new("other connection"), T)
                .await
                .unwrap()
        ),
        b"other connection"
    );
    other.close().await.unwrap();
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn three_hundred_channels_on_one_connection(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let mut channels = Vec::new();
    for _ in 0..300 {
        channels.push(conn.open_channel(Profile::new(ECHO), None).await.unwrap());
    }
    let replies = join_all(
        channels
            .iter()
            .enumerate()
            .map(|(i, c)| c.request(Message::new(i.to_string()), T)),
    )
    .await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(body(reply.unwrap()), i.to_string().into_bytes());
    }
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn two_hundred_connections_with_three_channels_each(env: Env) {
    let server = server(&env).await;
    let clients = (0..200).map(|i| {
        let env = env.clone();
        let addr = server.addr;
        env.clone().spawn(async move {
            let conn = Connection::connect(addr, env.options()).await.unwrap();
            for j in 0..3 {
                let c = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
                let text = format!("{i}/{j}");
                assert_eq!(
                    body(c.request(Message::new(text.clone()), T).await.unwrap()),
                    text.into_bytes()
                );
            }
            conn.close().await.unwrap();
        })
    });
    join_all(clients).await;
    server.stop(&env).await;
}

async fn large_messages_with_large_windows(env: Env) {
    let big = Options {
        config: Config {
            receive_window: 1 << 20,
            max_frame_size: 64 << 10,
            ..Config::default()
        },
        ..Options::default()
    };
    let server = server_with(&env, big.clone()).await;
    let conn = Connection::connect(server.addr, env.with(big))
        .await
        .unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        body(
            echo.request(Message::new(payload.clone()), T)
                .await
                .unwrap()
        ),
        payload
    );
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn a_peer_vanishing_mid_frame_is_reported_once_and_nothing_hangs(env: Env) {
    let mut script = greeting_frame().into_bytes();
    // Half of a frame that never completes.
    script.extend_from_slice(b"MSG 0 0 . ");
    let (addr, peer) = raw_peer(script);
    let conn = Connection::connect(addr, env.options()).await.unwrap();
    let (closed_tx, mut closed) = mpsc::unbounded();
    conn.on_close(move |reason| {
        let _ = closed_tx.unbounded_send(reason.clone());
    });
    // The start request never gets an answer: the wait ends with the
    // connection, long before the open's own timeout.
    let result = env
        .within(
            T / 2,
            "open_channel",
            conn.open_channel(Profile::new(ECHO), None),
        )
        .await;
    assert!(
        matches!(result, Err(Error::Closed(CloseReason::Lost(_)))),
        "{result:?}"
    );
    assert!(matches!(
        env.within(T, "wait_closed", conn.wait_closed()).await,
        CloseReason::Lost(_)
    ));
    let reason = env.within(T, "on_close", closed.next()).await;
    assert!(matches!(reason, Some(CloseReason::Lost(_))), "{reason:?}");
    peer.join().unwrap();
    conn.shutdown();
    assert_eq!(
        env.within(T, "on_close dropped", closed.next()).await,
        None,
        "reported once"
    );
    assert!(!conn.is_ok());
}

async fn a_protocol_violation_closes_the_connection_with_the_reason(env: Env) {
    let (addr, peer) = raw_peer(b"RPY 0 0 . 0 5\r\nhello\r\nEND\r\n".to_vec());
    match Connection::connect(addr, env.options()).await {
        Err(Error::Closed(CloseReason::Violation(_))) => {}
        other => panic!("{other:?}"),
    }
    peer.join().unwrap();
}

/// Waits `delay`, then reads until the end; returns the octets read.
fn read_all_after(mut stream: std::net::TcpStream, delay: Duration) -> usize {
    use std::io::Read;
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
async fn fill_until_stuck(env: &Env, conn: &Connection, channel: &beep_tokio::Channel) -> usize {
    let chunk = Message::new(vec![0u8; CHUNK]);
    let mut sent = 0;
    loop {
        match channel.try_send_msg(chunk.clone()) {
            Ok(_) => sent += CHUNK,
            Err(Error::QueueFull { queued, limit }) => {
                assert_eq!(limit, LIMIT);
                assert!(queued > LIMIT && queued <= LIMIT + CHUNK, "{queued}");
                env.sleep(Duration::from_millis(200)).await;
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
        env.sleep(Duration::from_millis(1)).await;
    }
}

/// A peer that greets, accepts a channel with a huge window (so only TCP
/// stops the sender), then never reads again until told to go.
fn stalled_peer() -> (
    std::net::SocketAddr,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (addr, peer) = stalled_peer_then(move |_, _| {
        let _ = stop_rx.recv_timeout(Duration::from_secs(60));
    });
    (addr, stop_tx, peer)
}

/// Like [`stalled_peer`], then runs `then` with the stream and the next
/// seqno of the peer's channel 0.
fn stalled_peer_then(
    then: impl FnOnce(std::net::TcpStream, usize) + Send + 'static,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = socket.accept().unwrap();
        stream.write_all(greeting_frame().as_bytes()).unwrap();
        read_until(&mut stream, b"</start>");
        let ok = "Content-Type: application/beep+xml\r\n\r\n<profile uri='http://example.org/beep/echo' />\r\n";
        let greeting_len = async_support::GREETING.len();
        let mut reply = format!("RPY 0 0 . {greeting_len} {}\r\n{ok}END\r\n", ok.len());
        // Advertise a huge window so that only TCP stops the sender.
        reply += "SEQ 1 0 2147483647\r\n";
        stream.write_all(reply.as_bytes()).unwrap();
        then(stream, greeting_len + ok.len());
    });
    (addr, peer)
}

async fn a_release_towards_a_peer_that_stops_reading_gives_up_after_the_timeout(env: Env) {
    use std::io::Write;
    // The peer reads nothing, but answers our release blindly: we end
    // `Released` with output still unwritten. The writer must give up
    // after the release timeout instead of holding its task and the
    // socket for as long as the peer keeps them open.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (got_tx, got_rx) = std::sync::mpsc::channel::<usize>();
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
    let conn = Connection::connect(addr, env.with(options)).await.unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let sent = fill_until_stuck(&env, &conn, &channel).await;
    let before = conn.queued_output();
    let closer = env.spawn({
        let conn = conn.clone();
        async move { conn.close().await }
    });
    // The close request is queued (the writer is stuck): the peer may answer.
    while conn.queued_output() == before {
        env.sleep(Duration::from_millis(1)).await;
    }
    go_tx.send(()).unwrap();
    env.within(T, "close", closer).await.unwrap();
    assert_eq!(conn.close_reason(), Some(CloseReason::Released));
    let received = loop {
        match got_rx.try_recv() {
            Ok(received) => break received,
            Err(std::sync::mpsc::TryRecvError::Empty) => env.sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("the peer died: {e}"),
        }
    };
    assert!(
        received < sent,
        "the peer got all {received} octets: the writer waited for it instead of giving up"
    );
    peer.join().unwrap();
}

async fn a_peer_that_stops_reading_bounds_our_memory(env: Env) {
    let (addr, stop_tx, peer) = stalled_peer();
    let conn = Connection::connect(addr, env.with(stalled_options()))
        .await
        .unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let sender = env.spawn(async move {
        let chunk = Message::new(vec![0u8; CHUNK]);
        loop {
            match channel.send_msg(chunk.clone()).await {
                Ok(_) => counter.fetch_add(1, Ordering::SeqCst),
                Err(e) => return e,
            };
        }
    });
    // Whenever we look, our own queue is within its limit (plus the one
    // message that passed the check); kernel buffers take a few MB more.
    for _ in 0..20 {
        env.sleep(Duration::from_millis(100)).await;
        let queued = conn.queued_output();
        assert!(queued <= LIMIT + CHUNK, "queued {queued}");
    }
    let messages = sent.load(Ordering::SeqCst);
    assert!(
        messages < 400,
        "{messages} x 256 KiB accepted by a peer that reads nothing"
    );
    // The sender waiting for room is released by the shutdown.
    conn.shutdown();
    let ended = env.within(T, "sender", sender).await;
    assert!(
        matches!(ended, Error::Closed(CloseReason::Shutdown)),
        "{ended:?}"
    );
    let _ = stop_tx.send(());
    peer.join().unwrap();
}

async fn non_blocking_sends_report_a_full_queue_instead_of_waiting(env: Env) {
    let (addr, stop_tx, peer) = stalled_peer();
    let conn = Connection::connect(addr, env.with(stalled_options()))
        .await
        .unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let chunk = Message::new(vec![0u8; CHUNK]);
    fill_until_stuck(&env, &conn, &channel).await;
    // Refused, not sent: the queue did not grow, the connection lives.
    let queued = conn.queued_output();
    assert!(matches!(
        channel.try_send_msg(chunk.clone()),
        Err(Error::QueueFull { .. })
    ));
    assert!(
        conn.queued_output() <= queued,
        "a refused message was queued"
    );
    assert!(conn.is_ok());
    conn.shutdown();
    assert!(matches!(
        channel.try_send_msg(chunk),
        Err(Error::Closed(CloseReason::Shutdown))
    ));
    let _ = stop_tx.send(());
    peer.join().unwrap();
}

async fn non_blocking_replies_go_out_like_the_waiting_ones(env: Env) {
    const TRY: &str = "http://example.org/beep/try";
    let mut registry = Registry::new();
    registry.register(
        TRY,
        beep_tokio::ProfileHandler::new(|channel, m| async move {
            let result = match &m.message.body()[..] {
                b"rpy" => channel.try_reply_rpy(m.msgno, Message::new("positive")),
                b"err" => channel.try_reply_err(m.msgno, Message::new("negative")),
                _ => channel
                    .try_reply_ans(m.msgno, Message::new("one"))
                    .and_then(|_| channel.try_reply_ans(m.msgno, Message::new("two")))
                    .map(drop),
            };
            result.expect("an idle connection has room");
            if m.message.body().as_ref() == b"ans" {
                channel.reply_nul(m.msgno).await.unwrap();
            }
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, env.options())
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let served = env.spawn(listener.serve());
    let conn = Connection::connect(addr, env.options()).await.unwrap();
    let channel = conn.open_channel(Profile::new(TRY), None).await.unwrap();
    let reply = channel.request(Message::new("rpy"), T).await.unwrap();
    assert_eq!(body(reply), b"positive");
    match channel.request(Message::new("err"), T).await.unwrap() {
        Reply::Err(m) => assert_eq!(&m.body()[..], b"negative"),
        other => panic!("{other:?}"),
    }
    match channel.request(Message::new("ans"), T).await.unwrap() {
        Reply::Answers(answers) => {
            let bodies: Vec<_> = answers.iter().map(|(_, m)| m.body().to_vec()).collect();
            assert_eq!(bodies, [b"one".to_vec(), b"two".to_vec()]);
        }
        other => panic!("{other:?}"),
    }
    // A MSG sent without waiting gets its reply through the handler.
    let (tx, mut rx) = mpsc::unbounded();
    channel.set_message_handler(move |_, m| {
        let _ = tx.unbounded_send(m.message.body().to_vec());
        async {}
    });
    channel.try_send_msg(Message::new("rpy")).unwrap();
    assert_eq!(
        env.within(T, "reply", rx.next()).await.unwrap(),
        b"positive"
    );
    conn.close().await.unwrap();
    stop.shutdown();
    env.within(T, "serve", served).await.unwrap();
}

async fn listener_shutdown_releases_sessions_and_completes_replies_in_flight(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    assert_eq!(
        body(echo.request(Message::new("before"), T).await.unwrap()),
        b"before"
    );
    let gated = conn.open_channel(Profile::new(GATED), None).await.unwrap();
    let in_flight = env.spawn({
        let gated = gated.clone();
        async move { gated.request(Message::new("in flight"), T).await }
    });
    let gate = server.gate.clone();
    env.within(T, "handler reached", gate.reached.wait()).await;
    let stopping = env.spawn({
        let env = env.clone();
        async move { server.stop(&env).await }
    });
    // Let the listener start its release while the reply is pending; the
    // outcome below does not depend on how long this is.
    env.sleep(Duration::from_millis(50)).await;
    gate.open();
    let reply = env.within(T, "reply in flight", in_flight).await;
    assert_eq!(body(reply.unwrap()), b"in flight");
    assert_eq!(
        env.within(T, "wait_closed", conn.wait_closed()).await,
        CloseReason::Released
    );
    env.within(T * 3, "listener stopped", stopping).await;
}

async fn a_timed_out_request_leaves_its_late_reply_to_the_handler(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let gated = conn.open_channel(Profile::new(GATED), None).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded();
    gated.set_message_handler(move |_channel, m| {
        let tx = tx.clone();
        async move {
            let _ = tx.unbounded_send(m);
        }
    });
    let result = gated
        .request(Message::new("late"), Duration::from_millis(100))
        .await;
    assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    server.gate.open();
    let late = env.within(T, "late reply", rx.next()).await.unwrap();
    assert_eq!(late.kind, MessageKind::Rpy);
    assert_eq!(late.message.body(), "late");
    // The channel goes on working.
    assert_eq!(
        body(gated.request(Message::new("next"), T).await.unwrap()),
        b"next"
    );
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn shutdown_fails_pending_calls_promptly(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let gated = conn.open_channel(Profile::new(GATED), None).await.unwrap();
    let pending = env.spawn({
        let gated = gated.clone();
        async move { gated.request(Message::new("never"), T * 6).await }
    });
    env.within(T, "handler reached", server.gate.reached.wait())
        .await;
    conn.shutdown();
    let result = env.within(T, "pending request", pending).await;
    assert!(
        matches!(result, Err(Error::Closed(CloseReason::Shutdown))),
        "{result:?}"
    );
    assert!(matches!(
        conn.open_channel(Profile::new(ECHO), None).await,
        Err(Error::Closed(CloseReason::Shutdown))
    ));
    server.gate.open();
    server.stop(&env).await;
}

async fn accept_filter_turns_connections_away(env: Env) {
    let mut listener = Listener::bind("127.0.0.1:0", Registry::new(), env.options())
        .await
        .unwrap();
    listener.set_accept_filter(|_| false);
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let serving = env.spawn(listener.serve());
    let short = Options {
        connect_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    assert!(Connection::connect(addr, env.with(short)).await.is_err());
    stop.shutdown();
    env.within(T, "serve", serving).await.unwrap();
}

async fn ipv6_loopback_works_where_available(env: Env) {
    let Ok(listener) = Listener::bind("[::1]:0", Registry::new(), env.options()).await else {
        return; // no IPv6 on this machine
    };
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let serving = env.spawn(listener.serve());
    let conn = Connection::connect(addr, env.options()).await.unwrap();
    assert!(conn.is_ok());
    assert_eq!(conn.peer_addr(), Some(addr));
    conn.close().await.unwrap();
    stop.shutdown();
    env.within(T, "serve", serving).await.unwrap();
}

async fn channel_pool_grows_to_its_maximum_and_reuses_released_channels(env: Env) {
    use beep_tokio::ChannelPool;
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let created = Arc::new(AtomicUsize::new(0));
    let counter = created.clone();
    let pool = ChannelPool::with_create_handler(&conn, Profile::new(ECHO), 1, 3, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .await
    .unwrap();
    assert_eq!((pool.len(), pool.idle()), (1, 1));
    let a = pool.next_ready(T).await.unwrap();
    let b = pool.next_ready(T).await.unwrap();
    let c = pool.next_ready(T).await.unwrap();
    let mut numbers = vec![a.number(), b.number(), c.number()];
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 3, "three distinct channels");
    assert!(matches!(
        pool.next_ready(Duration::from_millis(100)).await,
        Err(Error::Timeout)
    ));
    let reused = b.number();
    drop(b);
    let again = pool.next_ready(T).await.unwrap();
    assert_eq!(again.number(), reused, "a released channel is ready again");
    assert_eq!(
        body(again.request(Message::new("pooled"), T).await.unwrap()),
        b"pooled"
    );
    // The next borrower gets the channel just released.
    let waiter = pool.next_ready(T);
    let released = a.number();
    drop(a);
    assert_eq!(waiter.await.unwrap().number(), released);
    assert_eq!(
        created.load(Ordering::SeqCst),
        3,
        "never beyond the maximum"
    );
    // The pool-created notification.
    let (tx, rx) = oneshot::channel();
    ChannelPool::new_with(&conn, Profile::new(ECHO), 2, 2, move |pool| {
        let _ = tx.send(pool.map(|p| p.len()));
    });
    assert_eq!(rx.await.unwrap().unwrap(), 2);
    drop((c, again));
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn a_cancelled_pool_opening_gives_its_slot_back(env: Env) {
    use beep_tokio::ChannelPool;
    // A raw peer that greets, reads our start request and never answers it
    // (until the test ends): the opening is certainly still in progress
    // when it is abandoned, whatever the timing.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = socket.accept().unwrap();
        std::io::Write::write_all(&mut stream, greeting_frame().as_bytes()).unwrap();
        read_until(&mut stream, b"</start>");
        let _ = wait_done.recv();
    });
    let conn = Connection::connect(addr, env.options()).await.unwrap();
    let pool = ChannelPool::new(&conn, Profile::new(ECHO), 0, 1)
        .await
        .unwrap();
    let abandoned = env
        .timeout(Duration::from_millis(20), pool.next_ready(T))
        .await;
    assert!(abandoned.is_none(), "the start cannot have been answered");
    // Without the guard the slot stays taken and a pool of one is dead.
    assert_eq!(pool.len(), 0, "the reserved slot came back");
    conn.shutdown();
    drop(done);
    peer.join().unwrap();
}

async fn dropping_every_handle_releases_the_connection(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded();
    conn.on_close(move |reason| {
        let _ = tx.unbounded_send(reason.clone());
    });
    // A channel is a handle too: the connection lives on through it.
    drop(conn);
    let reply = echo.request(Message::new("still"), T).await.unwrap();
    assert_eq!(body(reply), b"still");
    assert!(rx.try_recv().is_err(), "closed while a channel was held");
    drop(echo);
    let reason = env.within(T, "on_close", rx.next()).await;
    assert_eq!(reason, Some(CloseReason::Released));
    server.stop(&env).await;
}

async fn a_handler_that_waits_after_replying_does_not_hold_its_reply_back(env: Env) {
    // The handler replies, then waits until the client has that reply.
    // Replies of a burst of handlers are batched; the batch must go out
    // when a handler waits, or both sides wait for ever.
    const REPLY_THEN_WAIT: &str = "http://example.org/beep/reply-then-wait";
    let (seen_tx, seen_rx) = oneshot::channel::<()>();
    let seen = Arc::new(std::sync::Mutex::new(Some(seen_rx)));
    let mut registry = Registry::new();
    registry.register(
        REPLY_THEN_WAIT,
        beep_tokio::ProfileHandler::new(move |channel, m| {
            let seen = seen.lock().unwrap().take();
            async move {
                channel.reply_rpy(m.msgno, m.message).await.unwrap();
                if let Some(seen) = seen {
                    let _ = seen.await;
                }
            }
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, env.options())
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let served = env.spawn(listener.serve());
    let conn = Connection::connect(addr, env.options()).await.unwrap();
    let channel = conn
        .open_channel(Profile::new(REPLY_THEN_WAIT), None)
        .await
        .unwrap();
    let first = channel.request(Message::new("first"), T).await;
    assert_eq!(
        body(first.expect("the reply left before the handler waited")),
        b"first"
    );
    seen_tx.send(()).unwrap();
    // Handlers run one at a time: this answer means the first one ended.
    let second = channel.request(Message::new("second"), T).await.unwrap();
    assert_eq!(body(second), b"second");
    conn.close().await.unwrap();
    stop.shutdown();
    env.within(T, "serve", served).await.unwrap();
}

async fn a_handler_error_answers_with_err_and_keeps_the_channel(env: Env) {
    const LOOKUP: &str = "http://example.org/beep/lookup";
    let mut registry = Registry::new();
    registry.register(
        LOOKUP,
        beep_tokio::ProfileHandler::new(|channel, m| async move {
            match &m.message.body()[..] {
                b"known" => channel
                    .reply_rpy(m.msgno, Message::new("value"))
                    .await
                    .map_err(|e| e.to_string()),
                b"late" => {
                    // Answered already: the error sends nothing more.
                    let _ = channel.reply_rpy(m.msgno, Message::new("answered")).await;
                    Err("after the reply".to_string())
                }
                other => Err(format!("no key {}", String::from_utf8_lossy(other))),
            }
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, env.options())
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let served = env.spawn(listener.serve());
    let conn = Connection::connect(addr, env.options()).await.unwrap();
    let channel = conn.open_channel(Profile::new(LOOKUP), None).await.unwrap();
    match channel.request(Message::new("missing"), T).await.unwrap() {
        Reply::Err(m) => assert_eq!(&m.body()[..], b"no key missing"),
        other => panic!("{other:?}"),
    }
    // The channel stays open and in step.
    let late = channel.request(Message::new("late"), T).await.unwrap();
    assert_eq!(body(late), b"answered");
    let known = channel.request(Message::new("known"), T).await.unwrap();
    assert_eq!(body(known), b"value");
    assert_eq!(channel.profile().as_deref(), Some(LOOKUP));
    conn.close().await.unwrap();
    stop.shutdown();
    env.within(T, "serve", served).await.unwrap();
}

async fn frame_handlers_carry_messages_larger_than_the_message_limit(env: Env) {
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
    let counter = received.clone();
    let mut registry = Registry::new();
    registry.register(
        UPLOAD,
        beep_tokio::ProfileHandler::new(|_, _| async {}).on_frame(move |channel, frame| {
            let total = counter.fetch_add(frame.payload.len(), Ordering::SeqCst);
            async move {
                if !frame.more {
                    // Answer with the size, then send the whole back.
                    let size = (total + frame.payload.len()).to_string();
                    channel.reply_ans(frame.msgno, Message::new(size)).await?;
                    let big = Message::new(vec![b'z'; SIZE]);
                    channel.reply_ans(frame.msgno, big).await?;
                    channel.reply_nul(frame.msgno).await?;
                }
                Ok::<(), Error>(())
            }
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, env.with(options.clone()))
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let served = env.spawn(listener.serve());
    let conn = Connection::connect(addr, env.with(options)).await.unwrap();
    let channel = conn.open_channel(Profile::new(UPLOAD), None).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded();
    channel
        .set_frame_handler(move |_, frame| {
            let _ = tx.unbounded_send(frame);
            async {}
        })
        .unwrap();
    // Requests wait for whole replies: refused on a streaming channel.
    assert!(matches!(
        channel.request(Message::new("x"), T).await,
        Err(Error::Usage(beep_proto::UsageError::Streaming { .. }))
    ));
    channel
        .send_msg(Message::new(vec![b'a'; SIZE]))
        .await
        .unwrap();
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    loop {
        let frame = env.within(T, "frame", rx.next()).await.unwrap();
        match frame.kind {
            MessageKind::Ans { .. } => {
                current.extend_from_slice(&frame.payload);
                if !frame.more {
                    answers.push(std::mem::take(&mut current));
                }
            }
            MessageKind::Nul => break,
            other => panic!("{other:?}"),
        }
    }
    // Each answer is a MIME entity: an empty header block, then the body.
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0], format!("\r\n{}", SIZE + 2).into_bytes());
    assert_eq!(answers[1].len(), SIZE + 2);
    assert_eq!(received.load(Ordering::SeqCst), SIZE + 2);
    conn.close().await.unwrap();
    stop.shutdown();
    env.within(T, "serve", served).await.unwrap();
}

async fn an_incoming_stream_is_bounded_by_the_window_and_answers_what_it_drops(env: Env) {
    // On "go" the server answers with 100 ANS of 1000 octets; on "push"
    // it sends us two MSGs and reports how they were answered.
    const STREAM: &str = "http://example.org/beep/stream";
    let server_conn = Arc::new(std::sync::Mutex::new(None));
    let seen = server_conn.clone();
    let (report_tx, mut report_rx) = mpsc::unbounded::<Vec<bool>>();
    let mut registry = Registry::new();
    registry.register(
        STREAM,
        beep_tokio::ProfileHandler::new(move |channel, m| {
            *seen.lock().unwrap() = Some(channel.connection().clone());
            let report = report_tx.clone();
            async move {
                if m.message.body().as_ref() == b"push" {
                    let (a, b) = futures_util::future::join(
                        channel.request(Message::new("event 1"), T),
                        channel.request(Message::new("event 2"), T),
                    )
                    .await;
                    let positive = [a, b].map(|r| matches!(r, Ok(Reply::Rpy(_))));
                    let _ = report.unbounded_send(positive.to_vec());
                    return channel.reply_rpy(m.msgno, Message::new("pushed")).await;
                }
                for i in 0..100 {
                    let ans = Message::new(format!("{i:04}").repeat(250));
                    channel.reply_ans(m.msgno, ans).await?;
                }
                channel.reply_nul(m.msgno).await
            }
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, env.options())
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let served = env.spawn(listener.serve());
    let conn = Connection::connect(addr, env.options()).await.unwrap();
    let channel = conn.open_channel(Profile::new(STREAM), None).await.unwrap();
    let mut incoming = channel.incoming();
    channel.send_msg(Message::new("go")).await.unwrap();
    env.sleep(Duration::from_millis(300)).await;
    let server = server_conn
        .lock()
        .unwrap()
        .clone()
        .expect("the handler ran");
    // Our 4 KiB window lets only a few through until we read.
    assert!(
        server.queued_output() > 90_000,
        "the server sent {} octets past our window",
        100_000 - server.queued_output()
    );
    let mut answers = 0;
    loop {
        let m = env.within(T, "answer", incoming.next()).await.unwrap();
        match m.kind {
            MessageKind::Ans { ansno } => {
                assert_eq!(ansno, AnsNo(answers));
                answers += 1;
            }
            MessageKind::Nul => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answers, 100);
    // We answer the first MSG and drop the stream with the second queued:
    // it gets an ERR, so the server is not left waiting.
    channel.send_msg(Message::new("push")).await.unwrap();
    let first = env.within(T, "event", incoming.next()).await.unwrap();
    channel
        .reply_rpy(first.msgno, Message::new("ok"))
        .await
        .unwrap();
    env.sleep(Duration::from_millis(200)).await;
    drop(incoming);
    let report = env.within(T, "report", report_rx.next()).await.unwrap();
    assert_eq!(report, vec![true, false]);
    // A stream ends when its channel closes, and when the connection does.
    let other = conn.open_channel(Profile::new(STREAM), None).await.unwrap();
    let mut other_incoming = other.incoming();
    other.close().await.unwrap();
    assert!(env.within(T, "end", other_incoming.next()).await.is_none());
    let last = conn.open_channel(Profile::new(STREAM), None).await.unwrap();
    let mut last_incoming = last.incoming();
    drop(server);
    conn.close().await.unwrap();
    assert!(env.within(T, "end", last_incoming.next()).await.is_none());
    // On a closed channel it ends at once.
    assert!(
        env.within(T, "end", other.incoming().next())
            .await
            .is_none()
    );
    stop.shutdown();
    env.within(T, "serve", served).await.unwrap();
}

// Durations too long for a deadline (issue 8): `Duration::MAX` means no
// deadline, where `Instant::now() + Duration::MAX` used to panic, and no
// runtime is asked to sleep that long.

async fn a_request_waiting_duration_max_gets_its_reply_even_a_late_one(env: Env) {
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    let reply = echo.request(Message::new("at once"), Duration::MAX).await;
    assert_eq!(body(reply.unwrap()), b"at once");
    // The gated handler holds its reply until the request is waiting.
    let gated = conn.open_channel(Profile::new(GATED), None).await.unwrap();
    let request = env.spawn({
        let gated = gated.clone();
        async move { gated.request(Message::new("late"), Duration::MAX).await }
    });
    env.within(T, "handler reached", server.gate.reached.wait())
        .await;
    server.gate.open();
    let reply = env.within(T, "late reply", request).await;
    assert_eq!(body(reply.unwrap()), b"late");
    conn.close().await.unwrap();
    server.stop(&env).await;
}

async fn timeouts_of_duration_max_connect_and_bound_nothing(env: Env) {
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
    let server = server_with(&env, forever.clone()).await;
    let conn = Connection::connect(server.addr, env.with(forever))
        .await
        .unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
    assert_eq!(
        body(echo.request(Message::new("no deadline"), T).await.unwrap()),
        b"no deadline"
    );
    echo.close().await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(
        env.within(T, "wait_closed", conn.wait_closed()).await,
        CloseReason::Released
    );
    // The listener releases its sessions with the same options.
    let other = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    server.stop(&env).await;
    assert_eq!(
        env.within(T, "released by the listener", other.wait_closed())
            .await,
        CloseReason::Released
    );
}

async fn a_pool_wait_of_duration_max_ends_when_a_channel_is_released(env: Env) {
    use beep_tokio::ChannelPool;
    let server = server(&env).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let pool = ChannelPool::new(&conn, Profile::new(ECHO), 1, 1)
        .await
        .unwrap();
    let lent = pool.next_ready(Duration::MAX).await.unwrap();
    // Polled once: it waits for the pool's only channel.
    let mut waiting = Box::pin(pool.next_ready(Duration::MAX));
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "the channel is lent"
    );
    let number = lent.number();
    drop(lent);
    let again = env.within(T, "pool wait", waiting).await.unwrap();
    assert_eq!(again.number(), number);
    drop(again);
    conn.close().await.unwrap();
    server.stop(&env).await;
}
