//! beep-blocking: a close carries a reply code and a diagnostic to the
//! peer's close handler, a close handler decides on channels either side
//! opened and refuses with its own code, and the application answers a
//! start for a profile it does not serve. `async_close_start.rs` runs the
//! same scenarios on the async driver.

use std::net::SocketAddr;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use beep_blocking::{
    Channel, CloseDecision, Connection, Error, Listener, Options, ProfileHandler, Registry,
    ShutdownHandle,
};
use beep_proto::xml::Profile;
use beep_proto::{Message, ReplyCode};

/// Echoes; its channels tell the test about themselves and about each
/// close request (see [`registry`]).
const ASKS: &str = "http://example.org/beep/asks";
/// Echoes; refuses every close with a plain `false`.
const STUBBORN: &str = "http://example.org/beep/stubborn";
const T: Duration = Duration::from_secs(10);

/// A listener serving `registry` on loopback until dropped.
struct Server {
    addr: SocketAddr,
    stop: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(registry: Registry) -> Server {
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = Some(std::thread::spawn(move || listener.serve()));
    Server { addr, stop, thread }
}

/// The close requests a handler saw: code and text.
type Seen = mpsc::Receiver<(ReplyCode, String)>;

/// [`ASKS`]: sends each channel that gets a message to `channels`, and
/// each close request to the returned receiver; agrees to a close with
/// code 200 and refuses any other with 421 and its own text. Also
/// [`STUBBORN`].
fn registry(channels: mpsc::Sender<Channel>) -> (Registry, Seen) {
    let (seen_tx, seen) = mpsc::channel();
    let channels = Mutex::new(channels);
    let mut registry = Registry::new();
    registry.register(
        ASKS,
        ProfileHandler::new(move |channel, m| {
            let _ = channels.lock().unwrap().send(channel.clone());
            let _ = channel.reply_rpy(m.msgno, m.message);
        })
        .on_close_request(move |_, request| {
            let _ = seen_tx.send((request.code, request.text.clone()));
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
        ProfileHandler::new(|channel, m| {
            let _ = channel.reply_rpy(m.msgno, m.message);
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

#[test]
fn rfc3080_2_3_1_3_a_close_carries_its_code_and_text_and_a_refusal_its_own() {
    let (channels, _) = mpsc::channel();
    let (registry, seen) = registry(channels);
    let server = serve(registry);
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let asks = conn.open_channel(Profile::new(ASKS), None).unwrap();

    let refused = asks.close_with(ReplyCode::TRANSACTION_FAILED, "going away");
    assert_eq!(
        refusal(refused),
        (
            ReplyCode::SERVICE_NOT_AVAILABLE,
            "not for \"going away\"".to_string()
        )
    );
    assert_eq!(
        seen.recv_timeout(T).unwrap(),
        (ReplyCode::TRANSACTION_FAILED, "going away".to_string())
    );
    // Refused: the channel goes on.
    asks.request(Message::new("still here"), T).unwrap();

    asks.close().unwrap();
    assert_eq!(
        seen.recv_timeout(T).unwrap(),
        (ReplyCode::SUCCESS, String::new())
    );
    assert!(asks.profile().is_none());

    // A close handler returning a plain `false` still refuses with 550.
    let stubborn = conn.open_channel(Profile::new(STUBBORN), None).unwrap();
    assert_eq!(
        refusal(stubborn.close()),
        (
            ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
            "close refused".to_string()
        )
    );
}

#[test]
fn rfc3080_2_3_1_3_a_close_handler_on_a_channel_we_opened_decides_the_peers_close() {
    let (channels, opened_here) = mpsc::channel();
    let (registry, _) = registry(channels);
    let server = serve(registry);
    let conn = Connection::connect(server.addr, Options::default()).unwrap();
    let ours = conn.open_channel(Profile::new(ASKS), None).unwrap();
    let (seen_tx, seen) = mpsc::channel();
    ours.set_close_handler(move |channel, request| {
        let _ = seen_tx.send((channel.number(), request.code, request.text.clone()));
        CloseDecision::Deny(ReplyCode::SERVICE_NOT_AVAILABLE, "still in use".into())
    });
    ours.request(Message::new("hello"), T).unwrap();
    // The server's end of the same channel.
    let theirs = opened_here.recv_timeout(T).unwrap();

    let refused = theirs.close_with(ReplyCode::SUCCESS, "done here");
    assert_eq!(
        refusal(refused),
        (ReplyCode::SERVICE_NOT_AVAILABLE, "still in use".to_string())
    );
    assert_eq!(
        seen.recv_timeout(T).unwrap(),
        (ours.number(), ReplyCode::SUCCESS, "done here".to_string())
    );
    ours.request(Message::new("still open"), T).unwrap();

    // A plain `true` agrees; the handler it replaces is not asked.
    ours.set_close_handler(|_, _| true);
    theirs.close().unwrap();
    assert!(ours.profile().is_none(), "closed on our side too");
    assert!(seen.try_recv().is_err());
    conn.close().unwrap();
}

#[test]
fn rfc3080_2_3_1_2_a_start_for_an_unregistered_profile_gets_the_applications_answer() {
    let (channels, _) = mpsc::channel();
    let (mut registry, _) = registry(channels);
    // Without an unknown-profile handler: the built-in 550.
    let plain = serve(registry.clone());
    let conn = Connection::connect(plain.addr, Options::default()).unwrap();
    let refused = conn.open_channel(Profile::new("http://example.org/beep/nope"), None);
    assert_eq!(
        refusal(refused),
        (
            ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
            "none of the requested profiles is supported".to_string()
        )
    );
    conn.close().unwrap();

    registry.on_unknown_profile(|request| {
        let asked: Vec<_> = request.profiles.iter().map(|p| p.uri.as_str()).collect();
        let text = format!("not served here: {}", asked.join(" "));
        (ReplyCode::PARAMETER_INVALID, text)
    });
    let answering = serve(registry);
    let conn = Connection::connect(answering.addr, Options::default()).unwrap();
    let refused = conn.open_channel(Profile::new("http://example.org/beep/nope"), None);
    assert_eq!(
        refusal(refused),
        (
            ReplyCode::PARAMETER_INVALID,
            "not served here: http://example.org/beep/nope".to_string()
        )
    );
    // Registered profiles are not its business.
    let asks = conn.open_channel(Profile::new(ASKS), None).unwrap();
    asks.request(Message::new("served"), T).unwrap();
}
