//! Hostile peers against the core: what a peer can make us hold is bounded
//! by configuration, whatever it sends within the rules.

use beep_proto::frame::{DEFAULT_MAX_HEADER_LEN, Header, parse_header};
use beep_proto::{Config, Session};

/// A peer written by hand: it tracks the window we grant it on channel 0
/// from our SEQ frames, and never grants us any (so our answers stay
/// queued).
struct Attacker {
    /// Next sequence number of ours on channel 0.
    seqno: u32,
    /// Octets of channel 0 it may still send (RFC 3081 3.1.1: 4096 to start).
    window_end: u32,
    msgno: u32,
}

impl Attacker {
    fn new() -> Self {
        Attacker {
            seqno: 0,
            window_end: 4096,
            msgno: 0,
        }
    }

    /// An attacker that has read `listener`'s greeting and sent its own.
    fn greeting(listener: &mut Session) -> Self {
        let mut attacker = Attacker::new();
        attacker.read(&drain(listener));
        let hello = attacker.frame("RPY", 0, &greeting()).unwrap();
        listener.handle_input(&hello).unwrap();
        attacker
    }

    /// A frame on channel 0, if the window allows it.
    fn frame(&mut self, keyword: &str, msgno: u32, payload: &[u8]) -> Option<Vec<u8>> {
        let size = payload.len() as u32;
        if self.seqno.wrapping_add(size) > self.window_end {
            return None;
        }
        let mut frame = format!("{keyword} 0 {msgno} . {} {size}\r\n", self.seqno).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"END\r\n");
        self.seqno = self.seqno.wrapping_add(size);
        Some(frame)
    }

    /// Reads what the listener sent: only SEQ frames on channel 0 matter.
    fn read(&mut self, wire: &[u8]) {
        let mut rest = wire;
        while let Some((header, used)) = parse_header(rest, DEFAULT_MAX_HEADER_LEN).unwrap() {
            rest = &rest[used..];
            match header {
                Header::Seq(seq) if seq.channel == 0 => {
                    self.window_end = seq.ackno.wrapping_add(seq.window);
                }
                Header::Seq(_) => {}
                Header::Frame(f) => rest = &rest[f.size as usize + 5..],
            }
        }
    }
}

/// Everything `session` has to send now.
fn drain(session: &mut Session) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(bytes) = session.poll_transmit() {
        wire.extend_from_slice(&bytes);
    }
    wire
}

fn greeting() -> Vec<u8> {
    b"Content-Type: application/beep+xml\r\n\r\n<greeting />\r\n".to_vec()
}

/// RFC 3080 2.3.1.2 / 2.2.1.1: a peer that keeps sending `<start>`
/// requests the listener must refuse (an unknown encoding, repeated at
/// length in a naive diagnostic) and never grants window for the answers
/// stalls itself: our unsent channel-0 output stays bounded, and its
/// window closes.
#[test]
fn a_peer_asking_without_reading_answers_cannot_make_us_hold_them() {
    let config = Config {
        profiles: vec!["http://example.org/p".into()],
        ..Config::default()
    };
    let limit = config.max_queued_channel0;
    let mut listener = Session::listener(config);
    let mut attacker = Attacker::greeting(&mut listener);
    let bad = format!(
        "Content-Type: application/beep+xml\r\n\r\n<start number='1'><profile uri='http://example.org/p' encoding='{}' /></start>",
        ">".repeat(3000)
    );
    let mut sent = 0;
    let mut peak = 0;
    for _ in 0..5000 {
        attacker.msgno += 1;
        let Some(frame) = attacker.frame("MSG", attacker.msgno, bad.as_bytes()) else {
            break;
        };
        listener.handle_input(&frame).unwrap();
        sent += 1;
        attacker.read(&drain(&mut listener));
        peak = peak.max(listener.queued_output());
    }
    assert!(sent < 5000, "the attacker's window never closed");
    // The limit, plus what one 4096-octet window of requests can add
    // (one answer here; at most about 1 KiB each in general).
    assert!(
        peak <= limit + 8 * 1024,
        "{peak} octets held for {sent} requests"
    );
}

/// An answer never repeats peer input at length: an `<error>` to a
/// request is a few hundred octets however long the bad value.
#[test]
fn a_diagnostic_does_not_echo_a_long_bad_value() {
    let mut listener = Session::listener(Config::default());
    let mut attacker = Attacker::greeting(&mut listener);
    let bad = format!(
        "Content-Type: application/beep+xml\r\n\r\n<start number='1'><profile uri='http://example.org/p' encoding='{}' /></start>",
        "x".repeat(3500)
    );
    let frame = attacker.frame("MSG", 1, bad.as_bytes()).unwrap();
    listener.handle_input(&frame).unwrap();
    let answer = drain(&mut listener);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("ERR 0 1 "), "{text}");
    assert!(answer.len() < 600, "{} octets: {text}", answer.len());
}

/// Partial messages on many channels at once are bounded session-wide,
/// not only per message (each here is well under `max_message_size`).
#[test]
fn unfinished_messages_on_many_channels_share_one_budget() {
    use beep_proto::{Event, Message, ProtocolError, SessionEnd};
    let budget = 100_000;
    let listener = Config {
        profiles: vec!["http://example.org/p".into()],
        max_reassembly: budget,
        ..Config::default()
    };
    // Frames of 4096 octets, so the three messages interleave.
    let mut client = Session::initiator(Config {
        max_frame_size: 4096,
        ..Config::default()
    });
    let mut server = Session::listener(listener);
    let pump = |a: &mut Session, b: &mut Session| -> Result<(), ProtocolError> {
        loop {
            let mut moved = false;
            while let Some(bytes) = a.poll_transmit() {
                b.handle_input(&bytes)?;
                moved = true;
            }
            while let Some(e) = b.poll_event() {
                if let Event::StartRequested(r) = e {
                    b.accept_start(r.channel, r.profiles[0].clone()).unwrap();
                }
            }
            while let Some(bytes) = b.poll_transmit() {
                a.handle_input(&bytes).unwrap();
                moved = true;
            }
            while a.poll_event().is_some() {}
            if !moved {
                return Ok(());
            }
        }
    };
    let channels: Vec<u32> = (0..3)
        .map(|_| {
            client
                .open_channel(
                    vec![beep_proto::xml::Profile::new("http://example.org/p")],
                    None,
                )
                .unwrap()
        })
        .collect();
    pump(&mut client, &mut server).unwrap();
    // One message near the budget alone is fine.
    client
        .send_msg(channels[0], Message::new(vec![b'a'; 90_000]))
        .unwrap();
    pump(&mut client, &mut server).unwrap();
    // Three at once, interleaved frame by frame, are not.
    for &channel in &channels {
        client
            .send_msg(channel, Message::new(vec![b'b'; 60_000]))
            .unwrap();
    }
    let err = pump(&mut client, &mut server).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::ReassemblyBudgetExceeded { limit: budget }
    );
    assert_eq!(
        server.end_reason(),
        Some(&SessionEnd::Violation(err.clone()))
    );
}

/// The greeting is kept for the whole session: one above
/// `Config::max_greeting` ends it with a typed error, decided at the
/// frame header that would pass the limit.
#[test]
fn rfc3080_2_4_a_greeting_above_the_limit_ends_the_session() {
    use beep_proto::ProtocolError;
    let mut listener = Session::listener(Config {
        max_greeting: 6000,
        ..Config::default()
    });
    let mut attacker = Attacker::new();
    attacker.read(&drain(&mut listener));
    let profiles: String = (0..200)
        .map(|i| format!("<profile uri='http://example.org/p{i}' />"))
        .collect();
    let body =
        format!("Content-Type: application/beep+xml\r\n\r\n<greeting>{profiles}</greeting>\r\n");
    assert!(body.len() > 6000);
    // Sent in frames within the window, as a patient peer would.
    let mut result = Ok(());
    for (i, piece) in body.as_bytes().chunks(2000).enumerate() {
        let last = (i + 1) * 2000 >= body.len();
        let more = if last { "." } else { "*" };
        let mut frame =
            format!("RPY 0 0 {more} {} {}\r\n", attacker.seqno, piece.len()).into_bytes();
        frame.extend_from_slice(piece);
        frame.extend_from_slice(b"END\r\n");
        attacker.seqno += piece.len() as u32;
        result = listener.handle_input(&frame);
        attacker.read(&drain(&mut listener));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(ProtocolError::GreetingTooLarge { limit: 6000 }));
}

/// Start requests are bounded in what they can make us keep until the
/// application answers: profiles per start, and starts awaiting an answer.
#[test]
fn rfc3080_2_3_1_2_starts_awaiting_an_answer_are_bounded() {
    let mut listener = Session::listener(Config {
        profiles: vec!["http://example.org/p".into()],
        max_pending_starts: 3,
        max_start_profiles: 4,
        ..Config::default()
    });
    let mut attacker = Attacker::greeting(&mut listener);
    let start = |number: u32, profiles: usize| {
        let offered: String = (0..profiles)
            .map(|i| format!("<profile uri='http://example.org/p{i}' />"))
            .collect();
        format!(
            "Content-Type: application/beep+xml\r\n\r\n<start number='{number}'>{offered}</start>"
        )
    };
    let mut answers = String::new();
    let mut ask = |listener: &mut Session, attacker: &mut Attacker, msgno: u32, body: String| {
        let frame = attacker.frame("MSG", msgno, body.as_bytes()).unwrap();
        listener.handle_input(&frame).unwrap();
        answers.push_str(&String::from_utf8_lossy(&drain(listener)));
    };
    ask(&mut listener, &mut attacker, 1, start(1, 5));
    for (msgno, channel) in [(2, 3), (3, 5), (4, 7), (5, 9)] {
        ask(&mut listener, &mut attacker, msgno, start(channel, 1));
    }
    // Too many profiles: 501. Three starts await the application; the
    // fourth is refused with 421 (sent once the three before it are
    // answered: replies keep MSG order, RFC 3080 2.6.1).
    assert!(answers.contains("ERR 0 1 "), "{answers}");
    assert!(answers.contains("code='501'"), "{answers}");
    let requested: Vec<u32> = std::iter::from_fn(|| listener.poll_event())
        .filter_map(|e| match e {
            beep_proto::Event::StartRequested(r) => Some(r.channel),
            _ => None,
        })
        .collect();
    assert_eq!(requested, vec![3, 5, 7]);
    for channel in requested {
        listener
            .deny_start(
                channel,
                beep_proto::ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
                "no",
            )
            .unwrap();
    }
    let rest = String::from_utf8_lossy(&drain(&mut listener)).into_owned();
    assert!(rest.contains("ERR 0 5 "), "{rest}");
    assert!(rest.contains("code='421'"), "{rest}");
}

/// Empty MSGs pipelined on many channels at once are bounded session-wide,
/// not only per channel (16,000 on each of 1,024 channels held 2 GB).
#[test]
fn messages_awaiting_our_reply_are_bounded_on_all_channels_together() {
    use beep_proto::{Message, ProtocolError, xml::Profile};
    let listener = Config {
        profiles: vec!["http://example.org/p".into()],
        max_pipelined: 100,
        max_pipelined_total: 150,
        ..Config::default()
    };
    let mut client = Session::initiator(Config::default());
    let mut server = Session::listener(listener);
    let channels: Vec<u32> = (0..3)
        .map(|_| {
            client
                .open_channel(vec![Profile::new("http://example.org/p")], None)
                .unwrap()
        })
        .collect();
    for _ in 0..4 {
        while let Some(bytes) = client.poll_transmit() {
            server.handle_input(&bytes).unwrap();
        }
        while let Some(e) = server.poll_event() {
            if let beep_proto::Event::StartRequested(r) = e {
                server
                    .accept_start(r.channel, r.profiles[0].clone())
                    .unwrap();
            }
        }
        while let Some(bytes) = server.poll_transmit() {
            client.handle_input(&bytes).unwrap();
        }
        while client.poll_event().is_some() {}
    }
    // 60 unanswered MSGs per channel: each channel is under its own
    // bound of 100, the 150 of all three together is not.
    let mut result = Ok(());
    'sending: for _ in 0..60 {
        for &channel in &channels {
            client.send_msg(channel, Message::new("")).unwrap();
        }
        while let Some(bytes) = client.poll_transmit() {
            result = server.handle_input(&bytes);
            if result.is_err() {
                break 'sending;
            }
        }
    }
    assert_eq!(
        result,
        Err(ProtocolError::TooManyPipelinedTotal { limit: 150 })
    );
}

/// Sessions sharing a reassembly budget (a listener's connections) are
/// bounded together: each below its own budget, the one whose unfinished
/// message takes the total past the shared limit ends, and what a session
/// held goes back when its message completes or the session is dropped.
#[test]
fn sessions_sharing_a_budget_are_bounded_together() {
    use beep_proto::{Event, Message, ProtocolError, SessionEnd, SharedBudget};
    let shared = SharedBudget::new(100_000);
    let server_config = || Config {
        profiles: vec!["http://example.org/p".into()],
        ..Config::default()
    };
    // A client and a server session, the server's counted in `shared`;
    // the client's frames are 4096 octets, so a large MSG arrives in many.
    let pair = || {
        let mut client = Session::initiator(Config {
            max_frame_size: 4096,
            ..Config::default()
        });
        let mut server = Session::listener(server_config());
        server.share_reassembly_budget(shared.clone());
        let channel = client
            .open_channel(
                vec![beep_proto::xml::Profile::new("http://example.org/p")],
                None,
            )
            .unwrap();
        (client, server, channel)
    };
    // Moves what fits both ways, accepting starts; an error ends the pump.
    let pump = |a: &mut Session, b: &mut Session| -> Result<(), ProtocolError> {
        for _ in 0..64 {
            while let Some(bytes) = a.poll_transmit() {
                b.handle_input(&bytes)?;
            }
            while let Some(e) = b.poll_event() {
                if let Event::StartRequested(r) = e {
                    b.accept_start(r.channel, r.profiles[0].clone()).unwrap();
                }
            }
            while let Some(bytes) = b.poll_transmit() {
                a.handle_input(&bytes).unwrap();
            }
            while a.poll_event().is_some() {}
        }
        Ok(())
    };
    let (mut c1, mut s1, ch1) = pair();
    let (mut c2, mut s2, ch2) = pair();
    pump(&mut c1, &mut s1).unwrap();
    pump(&mut c2, &mut s2).unwrap();
    // 60,000 octets unfinished on the first: within the shared 100,000.
    let f1 = c1.open_msg(ch1, Message::verbatim("")).unwrap();
    c1.feed(f1, vec![b'a'; 60_000], false).unwrap();
    pump(&mut c1, &mut s1).unwrap();
    assert!(shared.used() >= 56_000, "{}", shared.used());
    // 60,000 more on the second: past the shared limit, though well
    // within its own 64 MiB.
    let f2 = c2.open_msg(ch2, Message::verbatim("")).unwrap();
    c2.feed(f2, vec![b'b'; 60_000], false).unwrap();
    let err = pump(&mut c2, &mut s2).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::SharedReassemblyBudgetExceeded { limit: 100_000 }
    );
    assert_eq!(s2.end_reason(), Some(&SessionEnd::Violation(err)));
    // The first completes its message: what it held goes back; dropping
    // the second gives back the rest.
    c1.feed(f1, "", true).unwrap();
    pump(&mut c1, &mut s1).unwrap();
    drop(s2);
    assert_eq!(shared.used(), 0);
}
