//! Both drivers report what their connections do as `tracing` events
//! (issue 8): each frame header at TRACE (`beep::frame`, with the peer and
//! the direction), channels opening and closing and the connection's end
//! at DEBUG. One process-wide subscriber records them; a client of each
//! driver talks to a listener of the other, so every event is seen from
//! both sides.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use beep_proto::Message;
use beep_proto::xml::Profile;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

mod serving;

use serving::ECHO;

const T: Duration = Duration::from_secs(10);

/// Every `beep::` event, as `target peer dir message rest`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        if !target.starts_with("beep::") {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let text = format!(
            "{target} {} {} {}{}",
            line.peer, line.dir, line.message, line.rest
        );
        self.0.lock().unwrap().push(text);
    }
}

#[derive(Default)]
struct Line {
    peer: String,
    dir: String,
    message: String,
    rest: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "peer" => self.peer = value.into(),
            "dir" => self.dir = value.into(),
            "message" => self.message = value.into(),
            name => self.rest.push_str(&format!(" {name}={value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The events of one exchange (open the echo channel, one MSG, release),
/// seen by the client (whose peer is `server`) and the listener.
fn check(events: &[String], server: std::net::SocketAddr, who: &str) {
    let has = |what: &str| events.iter().any(|e| e.contains(what));
    let server = server.to_string();
    for expected in [
        // The client's frames, named by the listener's address.
        format!("beep::frame {server} > MSG 1 0 . 0 4"),
        format!("beep::frame {server} < RPY 1 0 . 0 4"),
        format!("beep::channel {server}  channel opened channel=1 profile={ECHO} by=us"),
        format!("beep::session {server}  connection ended reason=released by agreement"),
        // The listener's, named by the client's address.
        "< MSG 1 0 . 0 4".to_owned(),
        "> RPY 1 0 . 0 4".to_owned(),
        format!("channel opened channel=1 profile={ECHO} by=peer"),
    ] {
        assert!(has(&expected), "{who}: no {expected:?} in {events:#?}");
    }
}

#[test]
fn both_drivers_report_frames_channels_and_the_end() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder.clone()))
        .expect("the only subscriber of this test process");

    // A blocking client against a tokio listener.
    let server = serving::tokio(serving::tokio_echo(), Default::default(), |_| {});
    let conn = beep_blocking::Connection::connect(server.addr, Default::default()).unwrap();
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    channel.request(Message::new("hi"), T).unwrap();
    conn.close().unwrap();
    let addr = server.addr;
    server.stop();
    check(&recorder.take(), addr, "blocking client, tokio listener");

    // A tokio client against a blocking listener.
    let server = serving::blocking(serving::blocking_echo(), Default::default(), |_| {});
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let conn = beep_tokio::Connection::connect(server.addr, Default::default())
            .await
            .unwrap();
        let channel = conn.open_channel(Profile::new(ECHO), None).await.unwrap();
        channel.request(Message::new("hi"), T).await.unwrap();
        conn.close().await.unwrap();
    });
    let addr = server.addr;
    server.stop();
    check(&recorder.take(), addr, "tokio client, blocking listener");
}
