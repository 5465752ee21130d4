//! Two sessions wired back to back in memory: the fastest way to test
//! whole conversations without sockets.
#![allow(dead_code)]

use beep_proto::xml::Profile;
use beep_proto::{Config, Event, IncomingMessage, Session};

pub const ECHO: &str = "http://example.org/beep/echo";
pub const OTHER: &str = "http://example.org/beep/other";

/// An initiator `a` and a listener `b`, with the events each has polled.
pub struct Pair {
    pub a: Session,
    pub b: Session,
    pub a_events: Vec<Event>,
    pub b_events: Vec<Event>,
    /// Largest frame payload seen on the wire, each way.
    pub bytes_a_to_b: usize,
    pub bytes_b_to_a: usize,
}

pub fn listener_config() -> Config {
    Config {
        profiles: vec![ECHO.into(), OTHER.into()],
        ..Config::default()
    }
}

impl Pair {
    pub fn new() -> Self {
        Self::with(Config::default(), listener_config())
    }

    pub fn with(a: Config, b: Config) -> Self {
        let mut pair = Pair {
            a: Session::initiator(a),
            b: Session::listener(b),
            a_events: Vec::new(),
            b_events: Vec::new(),
            bytes_a_to_b: 0,
            bytes_b_to_a: 0,
        };
        pair.pump();
        // Tests look at what follows the greetings; these stay readable
        // through `Session::peer_greeting`.
        pair.a_events.retain(|e| !matches!(e, Event::Greeting(_)));
        pair.b_events.retain(|e| !matches!(e, Event::Greeting(_)));
        pair
    }

    /// Moves bytes both ways and collects events until nothing moves.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(bytes) = self.a.poll_transmit() {
                self.bytes_a_to_b += bytes.len();
                self.b
                    .handle_input(&bytes)
                    .expect("listener rejected input");
                moved = true;
            }
            while let Some(bytes) = self.b.poll_transmit() {
                self.bytes_b_to_a += bytes.len();
                self.a
                    .handle_input(&bytes)
                    .expect("initiator rejected input");
                moved = true;
            }
            while let Some(e) = self.a.poll_event() {
                self.a_events.push(e);
                moved = true;
            }
            while let Some(e) = self.b.poll_event() {
                self.b_events.push(e);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    /// Opens a channel from `a` with `profile`, accepted by `b`.
    pub fn open(&mut self, profile: &str) -> u32 {
        let channel = self
            .a
            .open_channel(vec![Profile::new(profile)], None)
            .unwrap();
        self.pump();
        let request = take_start(&mut self.b_events);
        assert_eq!(request.channel, channel);
        self.b.accept_start(channel, Profile::new(profile)).unwrap();
        self.pump();
        assert!(
            self.a_events
                .iter()
                .any(|e| matches!(e, Event::ChannelOpened { channel: c, .. } if *c == channel)),
            "channel {channel} did not open: {:?}",
            self.a_events
        );
        self.a_events.clear();
        channel
    }

    /// `b` answers every MSG it has received with a RPY of the same payload.
    pub fn echo_all(&mut self) {
        for m in take_messages(&mut self.b_events) {
            self.b.send_rpy(m.channel, m.msgno, m.message).unwrap();
        }
        self.pump();
    }
}

pub fn take_start(events: &mut Vec<Event>) -> beep_proto::StartRequest {
    let index = events
        .iter()
        .position(|e| matches!(e, Event::StartRequested(_)))
        .unwrap_or_else(|| panic!("no start request in {events:?}"));
    match events.remove(index) {
        Event::StartRequested(r) => r,
        _ => unreachable!(),
    }
}

/// Removes and returns the message events, in order.
pub fn take_messages(events: &mut Vec<Event>) -> Vec<IncomingMessage> {
    let mut out = Vec::new();
    events.retain(|e| match e {
        Event::Message(m) => {
            out.push(m.clone());
            false
        }
        _ => true,
    });
    out
}
