//! Two sessions wired back to back in memory, no sockets at all: the
//! smallest complete picture of driving a `Session` by hand.
//!
//! Run: `cargo run -p beep-proto --example in_memory`

use beep_proto::xml::Profile;
use beep_proto::{Config, Event, Message, Session};

const ECHO: &str = "http://example.org/beep/echo";

/// Moves bytes both ways until neither side has anything to send, and
/// returns the events each side saw, answering the listener's as an echo
/// server would.
fn pump(client: &mut Session, server: &mut Session) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let mut moved = false;
        while let Some(bytes) = client.poll_transmit() {
            server.handle_input(&bytes).expect("valid input");
            moved = true;
        }
        while let Some(event) = server.poll_event() {
            moved = true;
            match event {
                Event::StartRequested(req) => server
                    .accept_start(req.channel, Profile::new(ECHO))
                    .expect("pending start"),
                Event::Message(m) => server
                    .send_rpy(m.channel, m.msgno, m.message)
                    .expect("open request"),
                Event::CloseRequested { channel, .. } => {
                    server.accept_close(channel).expect("pending close")
                }
                _ => {}
            }
        }
        while let Some(bytes) = server.poll_transmit() {
            client.handle_input(&bytes).expect("valid input");
            moved = true;
        }
        while let Some(event) = client.poll_event() {
            seen.push(event);
            moved = true;
        }
        if !moved {
            return seen;
        }
    }
}

fn main() {
    let mut client = Session::initiator(Config::default());
    let mut server = Session::listener(Config {
        profiles: vec![ECHO.into()],
        ..Config::default()
    });
    let channel = client
        .open_channel(vec![Profile::new(ECHO)], None)
        .expect("session is active");
    for event in pump(&mut client, &mut server) {
        println!("client: {event:?}");
    }
    for text in ["one", "two", "three"] {
        client
            .send_msg(channel, Message::new(text))
            .expect("channel is open");
    }
    for event in pump(&mut client, &mut server) {
        if let Event::Message(m) = event {
            println!(
                "client: reply to MSG {}: {:?}",
                m.msgno,
                String::from_utf8_lossy(m.message.body())
            );
        }
    }
    client
        .close_session(beep_proto::ReplyCode::SUCCESS, "bye")
        .expect("session is active");
    for event in pump(&mut client, &mut server) {
        println!("client: {event:?}");
    }
}
