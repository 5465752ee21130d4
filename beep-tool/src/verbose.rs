//! `-v`: the frames exchanged, printed to stderr as they cross the
//! connection, like `curl -v` prints HTTP headers (`> ` sent, `< `
//! received; header lines only, payloads are skipped). The drivers report
//! them as `tracing` events (target `beep::frame`); this is a subscriber
//! that prints them, and for `serve`, which has many peers, names the peer
//! on each line and prints channel and connection events too.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Prints the frame events (and, `with_peer`, the channel and session
/// events) of every connection of this process, from now on.
pub fn install(with_peer: bool) {
    let subscriber = tracing_subscriber::registry().with(Printer { with_peer });
    // Only fails if a subscriber is set already: the tool sets none.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The stderr printer.
struct Printer {
    with_peer: bool,
}

impl<S: Subscriber> Layer<S> for Printer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        let frame = target == "beep::frame";
        if !(frame || self.with_peer && target.starts_with("beep::")) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::new();
        if self.with_peer {
            let _ = write!(line, "{} ", fields.peer);
        }
        if frame {
            let _ = write!(line, "{} {}", fields.dir, fields.message);
        } else {
            let _ = write!(line, "* {}{}", fields.message, fields.rest);
        }
        eprintln!("{line}");
    }
}

/// An event's fields, as printed.
#[derive(Default)]
struct Fields {
    peer: String,
    dir: String,
    message: String,
    /// The others, as ` name=value`.
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "peer" => self.peer = value.to_owned(),
            "dir" => self.dir = value.to_owned(),
            "message" => self.message = value.to_owned(),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}
