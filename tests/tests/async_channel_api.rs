//! beep-tokio: a start handler gets the connection (its serverName and
//! peer address, or to shut it down), a channel the peer opened is handed
//! to the application once it is open so it can send MSGs on it, and a
//! channel is opened with a number of our choosing or with several
//! candidate profiles. Every scenario runs twice: on tokio and on
//! async-std (`blocking_channel_api.rs` runs them on the blocking driver).

mod async_support;

use std::net::SocketAddr;

use async_support::{Env, T, body};
use beep_proto::xml::Profile;
use beep_proto::{Message, UsageError};
use beep_tokio::{
    Channel, CloseReason, Connection, Error, Listener, ProfileHandler, Registry, ShutdownHandle,
    StartDecision,
};
use futures_channel::mpsc;
use futures_util::StreamExt;
use futures_util::future::RemoteHandle;

on_both_runtimes!(
    pyvortex_a_start_handler_reads_the_server_name_and_peer_address_of_its_connection,
    pyvortex_a_start_handler_may_shut_its_connection_down,
    rfc3080_2_3_1_2_the_listener_sends_msgs_on_a_channel_the_initiator_opened_once_it_is_added,
    rfc3080_2_3_1_2_a_channel_number_of_our_parity_is_used_and_another_is_refused,
    rfc3080_2_3_1_2_of_several_offered_profiles_the_channel_runs_the_one_the_peer_chose,
    rfc3081_3_1_4_a_window_set_on_a_channel_lets_the_peer_send_that_much_ahead,
);

/// Echoes; its start handler reports what the connection says.
const ECHO: &str = "http://example.org/beep/echo";
/// Its start handler shuts the connection down.
const SHUTS: &str = "http://example.org/beep/shuts";
/// Hands each channel the peer opens to the test.
const PUSH: &str = "http://example.org/beep/push";
/// Served by nobody.
const UNKNOWN: &str = "http://example.org/beep/unknown";

/// What a start handler read from its connection: serverName and peer.
type Seen = (Option<String>, Option<SocketAddr>);

/// A listener serving the test's registry on loopback until dropped.
struct Server {
    addr: SocketAddr,
    stop: ShutdownHandle,
    _serving: RemoteHandle<Result<(), Error>>,
    /// What [`ECHO`]'s start handler saw, one per start.
    seen: mpsc::UnboundedReceiver<Seen>,
    /// The channels [`PUSH`] was given.
    added: mpsc::UnboundedReceiver<Channel>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
    }
}

async fn serve(env: &Env) -> Server {
    let (seen_tx, seen) = mpsc::unbounded();
    let (added_tx, added) = mpsc::unbounded();
    let mut registry = Registry::new();
    registry.register(
        ECHO,
        ProfileHandler::new(|channel, m| async move {
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        })
        .on_start_with_connection(move |connection, _, _| {
            let seen = (connection.server_name(), connection.peer_addr());
            let _ = seen_tx.unbounded_send(seen);
            StartDecision::Accept(None)
        }),
    );
    registry.register(
        SHUTS,
        ProfileHandler::new(|_, _| async {}).on_start_with_connection(|connection, _, _| {
            connection.shutdown();
            StartDecision::Accept(None)
        }),
    );
    registry.register(
        PUSH,
        ProfileHandler::new(|_, _| async {}).on_channel_added(move |channel| {
            let _ = added_tx.unbounded_send(channel.clone());
        }),
    );
    let listener = Listener::bind("127.0.0.1:0", registry, env.options())
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let serving = env.spawn(listener.serve());
    Server {
        addr,
        stop,
        _serving: serving,
        seen,
        added,
    }
}

async fn pyvortex_a_start_handler_reads_the_server_name_and_peer_address_of_its_connection(
    env: Env,
) {
    let mut server = serve(&env).await;
    let client = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let host = Some("example.org".to_string());
    client
        .open_channel(Profile::new(ECHO), host.clone())
        .await
        .unwrap();
    // RFC 3080 2.3.1.2: the first accepted start binds the serverName, so
    // the handler of the first start sees none yet, and of the next one it.
    let (name, peer) = env.within(T, "start", server.seen.next()).await.unwrap();
    assert_eq!(name, None);
    assert!(peer.is_some_and(|p| p.ip().is_loopback()), "{peer:?}");
    client.open_channel(Profile::new(ECHO), None).await.unwrap();
    let (name, later) = env.within(T, "start", server.seen.next()).await.unwrap();
    assert_eq!((name, later), (host, peer));
}

async fn pyvortex_a_start_handler_may_shut_its_connection_down(env: Env) {
    let server = serve(&env).await;
    let client = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let opened = client.open_channel(Profile::new(SHUTS), None).await;
    assert!(matches!(opened, Err(Error::Closed(_))), "{opened:?}");
    let reason = env.within(T, "closed", client.wait_closed()).await;
    assert!(
        matches!(reason, CloseReason::Lost(_) | CloseReason::Shutdown),
        "{reason:?}"
    );
}

async fn rfc3080_2_3_1_2_the_listener_sends_msgs_on_a_channel_the_initiator_opened_once_it_is_added(
    env: Env,
) {
    let mut server = serve(&env).await;
    let client = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let ours = client.open_channel(Profile::new(PUSH), None).await.unwrap();
    ours.set_message_handler(|channel, m| async move {
        let mut answer = b"pong: ".to_vec();
        answer.extend_from_slice(m.message.body());
        let _ = channel.reply_rpy(m.msgno, Message::new(answer)).await;
    });
    let theirs = env.within(T, "added", server.added.next()).await.unwrap();
    assert_eq!(theirs.number(), ours.number());
    assert_eq!(theirs.profile().as_deref(), Some(PUSH));
    let reply = theirs.request(Message::new("ping"), T).await.unwrap();
    assert_eq!(body(reply), b"pong: ping");
    assert!(server.added.try_recv().is_err(), "added once");
}

async fn rfc3080_2_3_1_2_a_channel_number_of_our_parity_is_used_and_another_is_refused(env: Env) {
    let server = serve(&env).await;
    let client = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let echo = || vec![Profile::new(ECHO)];
    let seven = client.open_channel_number(7, echo(), None).await.unwrap();
    assert_eq!(seven.number(), 7);
    let reply = seven.request(Message::new("on seven"), T).await.unwrap();
    assert_eq!(body(reply), b"on seven");
    for refused in [7, 4, 0] {
        match client.open_channel_number(refused, echo(), None).await {
            Err(Error::Usage(UsageError::ChannelNumberUnavailable { channel })) => {
                assert_eq!(channel, refused)
            }
            other => panic!("channel {refused}: {other:?}"),
        }
    }
    // A refused number changed nothing: the next free one is still 1.
    let next = client.open_channel_any(echo(), None).await.unwrap();
    assert_eq!(next.number(), 1);
}

async fn rfc3080_2_3_1_2_of_several_offered_profiles_the_channel_runs_the_one_the_peer_chose(
    env: Env,
) {
    let server = serve(&env).await;
    let client = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let offer = vec![Profile::new(UNKNOWN), Profile::new(ECHO)];
    let channel = client.open_channel_any(offer, None).await.unwrap();
    assert_eq!(channel.profile().as_deref(), Some(ECHO));
    let reply = channel.request(Message::new("chosen"), T).await.unwrap();
    assert_eq!(body(reply), b"chosen");
    let refused = client
        .open_channel_any(vec![Profile::new(UNKNOWN)], None)
        .await;
    assert!(matches!(refused, Err(Error::Refused { .. })), "{refused:?}");
}

async fn rfc3081_3_1_4_a_window_set_on_a_channel_lets_the_peer_send_that_much_ahead(env: Env) {
    let mut server = serve(&env).await;
    let client = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let ours = client.open_channel(Profile::new(PUSH), None).await.unwrap();
    // Messages wait here untaken, and so does their credit.
    let untaken = ours.incoming();
    ours.set_window(1 << 20).unwrap();
    let theirs = env.within(T, "added", server.added.next()).await.unwrap();
    for _ in 0..10 {
        theirs
            .send_msg(Message::new(vec![1u8; 50_000]))
            .await
            .unwrap();
    }
    // 500 KB reach us without any taken: the 4096-octet default would hold
    // all but the first 4 KiB at the server.
    let server_conn = theirs.connection();
    let deadline = std::time::Instant::now() + T;
    while server_conn.queued_output() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} octets still queued",
            server_conn.queued_output()
        );
        env.sleep(std::time::Duration::from_millis(5)).await; // polling a counter
    }
    assert!(ours.set_window(100).is_err(), "below 4096");
    drop(untaken);
}
