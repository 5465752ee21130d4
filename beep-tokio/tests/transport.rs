//! Sessions over streams of the caller's: an in-memory pipe instead of TCP,
//! so the runtime-neutral core is exercised without any socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use beep_proto::xml::Profile;
use beep_proto::{Message, ReplyCode};
use beep_tokio::{
    CloseReason, Connection, Error, Options, ProfileHandler, Registry, Reply, StartDecision,
};
use tokio_util::compat::TokioAsyncReadCompatExt;

const ECHO: &str = "http://example.org/beep/echo";
const CLOSED: &str = "http://example.org/beep/closed";
const T: Duration = Duration::from_secs(10);

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| async move {
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        }),
    );
    registry.register(
        CLOSED,
        ProfileHandler::new(|_, _| async {}).on_start(|_, _| {
            StartDecision::Deny(ReplyCode::SERVICE_NOT_AVAILABLE, "closed".into())
        }),
    );
    registry
}

/// Two connected sessions over an in-memory pipe.
async fn pair() -> (Connection, Connection) {
    let (a, b) = tokio::io::duplex(16 << 10);
    let listener =
        Connection::accept_transport(b.compat(), registry(), Options::default()).unwrap();
    let initiator = Connection::connect_transport(a.compat(), Options::default())
        .await
        .unwrap();
    (initiator, listener)
}

#[tokio::test]
async fn a_session_runs_over_an_in_memory_pipe() {
    let (client, server) = pair().await;
    assert_eq!(client.peer_addr(), None);
    assert_eq!(client.peer_greeting().profiles, vec![ECHO, CLOSED]);
    let echo = client.open_channel(Profile::new(ECHO), None).await.unwrap();
    // Bigger than the pipe and the default window: flow control at work.
    let payload = vec![7u8; 100_000];
    match echo
        .request(Message::new(payload.clone()), T)
        .await
        .unwrap()
    {
        Reply::Rpy(m) => assert_eq!(m.body().as_ref(), &payload[..]),
        other => panic!("{other:?}"),
    }
    match client.open_channel(Profile::new(CLOSED), None).await {
        Err(Error::Refused { code, text }) => {
            assert_eq!(code, ReplyCode::SERVICE_NOT_AVAILABLE);
            assert_eq!(text, "closed");
        }
        other => panic!("{other:?}"),
    }
    client.close().await.unwrap();
    let reason = tokio::time::timeout(T, server.wait_closed()).await.unwrap();
    assert_eq!(reason, CloseReason::Released);
}

#[tokio::test]
async fn the_peer_can_open_channels_on_the_initiator_too() {
    let (client, server) = pair().await;
    // The initiator serves no profiles: the listener's start is refused.
    match server.open_channel(Profile::new(ECHO), None).await {
        Err(Error::Refused { code, .. }) => {
            assert_eq!(code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN)
        }
        other => panic!("{other:?}"),
    }
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_broken_stream_ends_the_session_once_and_fails_every_wait() {
    let (client, server) = pair().await;
    let echo = client.open_channel(Profile::new(ECHO), None).await.unwrap();
    let closes = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let seen = closes.clone();
    client.on_close(move |reason| {
        seen.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(reason.clone());
    });
    // The listener drops its end of the pipe without a word.
    server.shutdown();
    let reason = tokio::time::timeout(T, rx).await.unwrap().unwrap();
    assert!(matches!(reason, CloseReason::Lost(_)), "{reason:?}");
    assert!(matches!(
        echo.request(Message::new("x"), T).await,
        Err(Error::Closed(CloseReason::Lost(_)))
    ));
    client.shutdown();
    assert_eq!(closes.load(Ordering::SeqCst), 1);
    // A callback registered after the end runs at once.
    let late = Arc::new(AtomicUsize::new(0));
    let seen = late.clone();
    client.on_close(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(late.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tokio_tcp_streams_write_every_slice_of_a_vectored_write() {
    use beep_tokio::runtime::{Runtime, Tokio};
    use futures_util::io::AsyncWriteExt;
    use tokio::io::AsyncReadExt;
    // tokio-util's compat writes only the first slice; frames go out as
    // several slices (header, payload, trailer) and must leave together.
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let accepted = tokio::spawn(async move { socket.accept().await.unwrap().0 });
    let mut stream = Tokio::current().unwrap().connect(addr).await.unwrap();
    let parts: [&[u8]; 3] = [b"MSG 1 0 . 0 5\r\n", b"hello", b"END\r\n"];
    let slices = parts.map(std::io::IoSlice::new);
    let written = stream.write_vectored(&slices).await.unwrap();
    assert_eq!(written, 25, "one call writes every slice");
    let mut peer = accepted.await.unwrap();
    let mut got = [0u8; 25];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..], b"MSG 1 0 . 0 5\r\nhelloEND\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_sends_a_handlers_reply_before_it_blocks_its_thread() {
    use futures_util::FutureExt;
    // The handler replies, then blocks its worker thread until the client
    // has the reply. Replies of a burst of handlers are held for one
    // write; `flush` sends them first.
    const BLOCKING: &str = "http://example.org/beep/blocking";
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<()>();
    let seen_rx = std::sync::Mutex::new(seen_rx);
    let mut registry = Registry::new();
    registry.register(
        BLOCKING,
        ProfileHandler::new(move |channel, m| {
            // Sent without awaiting (there is room), then flushed.
            let sent = channel.reply_rpy(m.msgno, m.message).now_or_never();
            assert!(matches!(sent, Some(Ok(()))));
            channel.connection().flush();
            let _ = tokio::task::block_in_place(|| seen_rx.lock().unwrap().recv_timeout(T));
            async {}
        }),
    );
    let (a, b) = tokio::io::duplex(16 << 10);
    let _server = Connection::accept_transport(b.compat(), registry, Options::default()).unwrap();
    let client = Connection::connect_transport(a.compat(), Options::default())
        .await
        .unwrap();
    let channel = client
        .open_channel(Profile::new(BLOCKING), None)
        .await
        .unwrap();
    let reply = channel
        .request(Message::new("first"), Duration::from_secs(3))
        .await
        .expect("the reply left before the handler blocked");
    assert!(matches!(reply, Reply::Rpy(m) if m.body().as_ref() == b"first"));
    seen_tx.send(()).unwrap();
}
