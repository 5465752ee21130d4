//! Messages sent in pieces (LibVortex's payload feeder, issue 8), over
//! sockets on both drivers: a client uploads a MSG in pieces and awaits
//! its reply, a server streams a RPY and ANS in pieces from its handler,
//! a feed far larger than the connection's output limit goes through
//! while the unsent output stays bounded, and a feeder dropped unfinished
//! ends its message with what was fed. The wire rules (frames with the
//! continuation indicator, windows) are the core's, tested in
//! beep-proto/tests/feeder.rs.

use std::io::Write;
use std::time::Duration;

use beep_proto::Message;
use beep_proto::dispatch::Reply;
use beep_proto::xml::Profile;

mod serving;

use serving::ECHO;

const T: Duration = Duration::from_secs(20);
/// A profile whose MSG "rows N" is answered with N rows, fed as a RPY,
/// and "answers N" with N ANS of one row each, fed, then NUL.
const ROWS: &str = "http://example.org/beep/rows";

/// The rows a "rows N" request gets back.
fn rows(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("row {i}\n").into_bytes())
        .collect()
}

fn count(m: &beep_proto::IncomingMessage) -> usize {
    let text = std::str::from_utf8(m.message.body()).unwrap_or("");
    text.split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn body(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Rpy(m) => m.body().to_vec(),
        other => panic!("expected a RPY, got {other:?}"),
    }
}

fn upload() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i % 251) as u8).collect()
}

fn blocking_registry() -> beep_blocking::Registry {
    let mut registry = serving::blocking_echo();
    registry.register(
        ROWS,
        beep_blocking::ProfileHandler::new(|channel, m| -> Result<(), beep_blocking::Error> {
            let n = count(&m);
            if m.message.body().starts_with(b"answers") {
                for i in 0..n {
                    let mut answer = channel.feed_ans(m.msgno, Message::verbatim(""))?;
                    answer.feed(format!("row {i}\n"))?;
                    answer.finish()?;
                }
                return channel.reply_nul(m.msgno);
            }
            let mut reply = channel.feed_rpy(m.msgno, Message::default())?;
            for i in 0..n {
                reply.feed(format!("row {i}\n"))?;
            }
            reply.finish()
        }),
    );
    registry
}

fn tokio_registry() -> beep_tokio::Registry {
    let mut registry = serving::tokio_echo();
    registry.register(
        ROWS,
        beep_tokio::ProfileHandler::new(|channel, m| async move {
            let n = count(&m);
            if m.message.body().starts_with(b"answers") {
                for i in 0..n {
                    let mut answer = channel.feed_ans(m.msgno, Message::verbatim("")).await?;
                    answer.feed(format!("row {i}\n")).await?;
                    answer.finish()?;
                }
                return channel.reply_nul(m.msgno).await;
            }
            let mut reply = channel.feed_rpy(m.msgno, Message::default()).await?;
            for i in 0..n {
                reply.feed(format!("row {i}\n")).await?;
            }
            reply.finish()
        }),
    );
    registry
}

/// Options whose unsent-output limit is far below what is fed.
fn small_limit() -> (usize, beep_blocking::Options) {
    let limit = 256 << 10;
    let options = beep_blocking::Options {
        max_queued_output: limit,
        ..Default::default()
    };
    (limit, options)
}

#[test]
fn blocking_upload_in_pieces_through_write_gets_its_echo_and_stays_bounded() {
    let server = serving::blocking(serving::blocking_echo(), Default::default(), |_| {});
    let (limit, options) = small_limit();
    let conn = beep_blocking::Connection::connect(server.addr, options).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let data = upload();
    let mut request = echo.feed_request(Message::default()).unwrap();
    let mut most = 0;
    for piece in data.chunks(64 << 10) {
        request.write_all(piece).unwrap();
        most = most.max(conn.queued_output());
    }
    // Senders wait for room: a piece may go past the limit, never more.
    assert!(most <= limit + (64 << 10) + 4096, "{most} octets queued");
    assert_eq!(body(request.finish(T).unwrap()), data);
    conn.close().unwrap();
    server.stop();
}

#[test]
fn blocking_handlers_stream_rpy_and_ans_in_pieces() {
    let server = serving::blocking(blocking_registry(), Default::default(), |_| {});
    let conn = beep_blocking::Connection::connect(server.addr, Default::default()).unwrap();
    let channel = conn.open_channel(Profile::new(ROWS), None).unwrap();
    let reply = channel.request(Message::new("rows 20000"), T).unwrap();
    assert_eq!(body(reply), rows(20_000));
    match channel.request(Message::new("answers 3"), T).unwrap() {
        Reply::Answers(answers) => {
            let bodies: Vec<&[u8]> = answers.iter().map(|(_, m)| &m.body()[..]).collect();
            assert_eq!(bodies, [&b"row 0\n"[..], b"row 1\n", b"row 2\n"]);
        }
        other => panic!("expected answers, got {other:?}"),
    }
    conn.close().unwrap();
    server.stop();
}

#[test]
fn blocking_feeder_dropped_unfinished_ends_the_message_with_what_was_fed() {
    let server = serving::blocking(serving::blocking_echo(), Default::default(), |_| {});
    let conn = beep_blocking::Connection::connect(server.addr, Default::default()).unwrap();
    let echo = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let replies = echo.incoming();
    let mut feeder = echo.feed_msg(Message::verbatim("")).unwrap();
    feeder.feed("cut ").unwrap();
    feeder.feed("short").unwrap();
    let msgno = feeder.id().msgno();
    drop(feeder);
    let reply = replies.recv_timeout(T).expect("the echo of the fed MSG");
    assert_eq!(reply.msgno, msgno);
    assert_eq!(&reply.message.body()[..], b"cut short");
    // The channel goes on: the next MSG was not held behind it.
    assert_eq!(
        body(echo.request(Message::new("next"), T).unwrap()),
        b"next"
    );
    conn.close().unwrap();
    server.stop();
}

#[test]
fn tokio_upload_and_streamed_replies_in_pieces() {
    let server = serving::blocking(blocking_registry(), Default::default(), |_| {});
    let rows_server = serving::tokio(tokio_registry(), Default::default(), |_| {});
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limit = 256 << 10;
        let options = beep_tokio::Options {
            max_queued_output: limit,
            ..Default::default()
        };
        // An upload to the blocking listener's echo.
        let conn = beep_tokio::Connection::connect(server.addr, options)
            .await
            .unwrap();
        let echo = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
        let data = upload();
        let mut request = echo.feed_request(Message::default()).await.unwrap();
        let mut most = 0;
        for piece in data.chunks(64 << 10) {
            request.feed(piece.to_vec()).await.unwrap();
            most = most.max(conn.queued_output());
        }
        assert!(most <= limit + (64 << 10) + 4096, "{most} octets queued");
        assert_eq!(body(request.finish(T).await.unwrap()), data);
        conn.close().await.unwrap();
        // The tokio listener's handlers stream their replies.
        let conn = beep_tokio::Connection::connect(rows_server.addr, Default::default())
            .await
            .unwrap();
        let channel = conn.open_channel(Profile::new(ROWS), None).await.unwrap();
        let reply = channel
            .request(Message::new("rows 20000"), T)
            .await
            .unwrap();
        assert_eq!(body(reply), rows(20_000));
        match channel.request(Message::new("answers 3"), T).await.unwrap() {
            Reply::Answers(answers) => assert_eq!(answers.len(), 3),
            other => panic!("expected answers, got {other:?}"),
        }
        conn.close().await.unwrap();
    });
    rows_server.stop();
    server.stop();
}
