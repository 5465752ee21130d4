//! beep-tokio: a close carries a reply code and a diagnostic to the peer's
//! close handler, a close handler decides on channels either side opened
//! and refuses with its own code, and the application answers a start for
//! a profile it does not serve. Every scenario runs twice: on tokio and on
//! async-std (`blocking_close_start.rs` runs them on the blocking driver).

mod async_support;

use async_support::{Env, T};
use beep_proto::xml::Profile;
use beep_proto::{Message, ReplyCode};
use beep_tokio::{
    Channel, CloseDecision, Connection, Error, Listener, ProfileHandler, Registry, ShutdownHandle,
};
use futures_channel::mpsc;
use futures_util::StreamExt;
use futures_util::future::RemoteHandle;

on_both_runtimes!(
    rfc3080_2_3_1_3_a_close_carries_its_code_and_text_and_a_refusal_its_own,
    rfc3080_2_3_1_3_a_close_handler_on_a_channel_we_opened_decides_the_peers_close,
    rfc3080_2_3_1_2_a_start_for_an_unregistered_profile_gets_the_applications_answer,
);

/// Echoes; its channels tell the test about themselves and about each
/// close request (see [`registry`]).
const ASKS: &str = "http://example.org/beep/asks";
/// Echoes; refuses every close with a plain `false`.
const STUBBORN: &str = "http://example.org/beep/stubborn";

/// A listener serving a registry on loopback until dropped.
struct Server {
    addr: std::net::SocketAddr,
    stop: ShutdownHandle,
    _serving: RemoteHandle<Result<(), Error>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
    }
}

async fn serve(env: &Env, registry: Registry) -> Server {
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
    }
}

/// The close requests a handler saw: code and text.
type Seen = mpsc::UnboundedReceiver<(ReplyCode, String)>;

/// [`ASKS`]: sends each channel that gets a message to `channels`, and
/// each close request to the returned receiver; agrees to a close with
/// code 200 and refuses any other with 421 and its own text. Also
/// [`STUBBORN`].
fn registry(channels: mpsc::UnboundedSender<Channel>) -> (Registry, Seen) {
    let (seen_tx, seen) = mpsc::unbounded();
    let mut registry = Registry::new();
    registry.register(
        ASKS,
        ProfileHandler::new(move |channel, m| {
            let _ = channels.unbounded_send(channel.clone());
            async move {
                let _ = channel.reply_rpy(m.msgno, m.message).await;
            }
        })
        .on_close_request(move |_, request| {
            let _ = seen_tx.unbounded_send((request.code, request.text.clone()));
            if request.code == ReplyCode::SUCCESS {
                CloseDecision::Accept
            } else {
                let text = format!("not for \"{}\"", request.text);
                CloseDecision::Deny(ReplyCode::SERVICE_NOT_AVAILABLE, text)
            }
        }),
    );
    registry.register(
        STUBBORN,
        ProfileHandler::new(|channel, m| async move {
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        })
        .on_close(|_| false),
    );
    (registry, seen)
}

fn refusal(result: Result<impl std::fmt::Debug, Error>) -> (ReplyCode, String) {
    match result {
        Err(Error::Refused { code, text }) => (code, text),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn rfc3080_2_3_1_3_a_close_carries_its_code_and_text_and_a_refusal_its_own(env: Env) {
    let (channels, _) = mpsc::unbounded();
    let (registry, mut seen) = registry(channels);
    let server = serve(&env, registry).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let asks = conn.open_channel(Profile::new(ASKS), None).await.unwrap();

    let refused = asks
        .close_with(ReplyCode::TRANSACTION_FAILED, "going away")
        .await;
    assert_eq!(
        refusal(refused),
        (
            ReplyCode::SERVICE_NOT_AVAILABLE,
            "not for \"going away\"".to_string()
        )
    );
    assert_eq!(
        env.within(T, "close request", seen.next()).await,
        Some((ReplyCode::TRANSACTION_FAILED, "going away".to_string()))
    );
    // Refused: the channel goes on.
    asks.request(Message::new("still here"), T).await.unwrap();

    asks.close().await.unwrap();
    assert_eq!(
        env.within(T, "close request", seen.next()).await,
        Some((ReplyCode::SUCCESS, String::new()))
    );
    assert!(asks.profile().is_none());

    // A close handler returning a plain `false` still refuses with 550.
    let stubborn = conn
        .open_channel(Profile::new(STUBBORN), None)
        .await
        .unwrap();
    assert_eq!(
        refusal(stubborn.close().await),
        (
            ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
            "close refused".to_string()
        )
    );
}

async fn rfc3080_2_3_1_3_a_close_handler_on_a_channel_we_opened_decides_the_peers_close(env: Env) {
    let (channels, mut opened_here) = mpsc::unbounded();
    let (registry, _) = registry(channels);
    let server = serve(&env, registry).await;
    let conn = Connection::connect(server.addr, env.options())
        .await
        .unwrap();
    let ours = conn.open_channel(Profile::new(ASKS), None).await.unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded();
    ours.set_close_handler(move |channel, request| {
        let _ = seen_tx.unbounded_send((channel.number(), request.code, request.text.clone()));
        CloseDecision::Deny(ReplyCode::SERVICE_NOT_AVAILABLE, "still in use".into())
    });
    ours.request(Message::new("hello"), T).await.unwrap();
    // The server's end of the same channel.
    let theirs = env
        .within(T, "server channel", opened_here.next())
        .await
        .unwrap();

    let refused = theirs.close_with(ReplyCode::SUCCESS, "done here").await;
    assert_eq!(
        refusal(refused),
        (ReplyCode::SERVICE_NOT_AVAILABLE, "still in use".to_string())
    );
    assert_eq!(
        env.within(T, "close request", seen.next()).await,
        Some((ours.number(), ReplyCode::SUCCESS, "done here".to_string()))
    );
    ours.request(Message::new("still open"), T).await.unwrap();

    // A plain `true` agrees; the handler it replaces is not asked, and
    // goes (ending its feed).
    ours.set_close_handler(|_, _| true);
    theirs.close().await.unwrap();
    assert!(ours.profile().is_none(), "closed on our side too");
    assert_eq!(
        env.within(T, "old handler dropped", seen.next()).await,
        None
    );
    conn.close().await.unwrap();
}

async fn rfc3080_2_3_1_2_a_start_for_an_unregistered_profile_gets_the_applications_answer(
    env: Env,
) {
    let (channels, _) = mpsc::unbounded();
    let (mut registry, _) = registry(channels);
    // Without an unknown-profile handler: the built-in 550.
    let plain = serve(&env, registry.clone()).await;
    let conn = Connection::connect(plain.addr, env.options())
        .await
        .unwrap();
    let refused = conn
        .open_channel(Profile::new("http://example.org/beep/nope"), None)
        .await;
    assert_eq!(
        refusal(refused),
        (
            ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
            "none of the requested profiles is supported".to_string()
        )
    );
    conn.close().await.unwrap();

    registry.on_unknown_profile(|request| {
        let asked: Vec<_> = request.profiles.iter().map(|p| p.uri.as_str()).collect();
        let text = format!("not served here: {}", asked.join(" "));
        (ReplyCode::PARAMETER_INVALID, text)
    });
    let answering = serve(&env, registry).await;
    let conn = Connection::connect(answering.addr, env.options())
        .await
        .unwrap();
    let refused = conn
        .open_channel(Profile::new("http://example.org/beep/nope"), None)
        .await;
    assert_eq!(
        refusal(refused),
        (
            ReplyCode::PARAMETER_INVALID,
            "not served here: http://example.org/beep/nope".to_string()
        )
    );
    // Registered profiles are not its business.
    let asks = conn.open_channel(Profile::new(ASKS), None).await.unwrap();
    asks.request(Message::new("served"), T).await.unwrap();
}
