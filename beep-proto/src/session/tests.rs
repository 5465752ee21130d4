//! Unit tests that reach into the session's channel state.

use super::*;
use crate::event::{Event, MessageKind};
use crate::flow::{RecvWindow, SendWindow};

fn pump(a: &mut Session, b: &mut Session) {
    loop {
        let mut moved = false;
        while let Some(bytes) = a.poll_transmit() {
            b.handle_input(&bytes).unwrap();
            moved = true;
        }
        while let Some(bytes) = b.poll_transmit() {
            a.handle_input(&bytes).unwrap();
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// Puts both ends of `channel` just before the seqno wrap (2^32) and
/// the msgno wrap (2^31-1), as a long-lived channel would be.
fn near_the_wrap(s: &mut Session, channel: u32, seqno: u32, msgno: u32) {
    let ch = s.channels.get_mut(&channel).unwrap();
    ch.send = SendWindow::starting_at(seqno);
    ch.recv = RecvWindow::starting_at(seqno, DEFAULT_WINDOW);
    ch.next_msgno = msgno;
}

#[test]
fn rfc3080_2_2_1_2_sequence_and_message_numbers_wrap_mid_conversation() {
    const P: &str = "http://example.org/p";
    let mut a = Session::initiator(Config::default());
    let mut b = Session::listener(Config {
        profiles: vec![P.into()],
        ..Config::default()
    });
    let channel = a.open_channel(vec![Profile::new(P)], None).unwrap();
    pump(&mut a, &mut b);
    while let Some(e) = b.poll_event() {
        if let Event::StartRequested(r) = e {
            b.accept_start(r.channel, Profile::new(P)).unwrap();
        }
    }
    pump(&mut a, &mut b);
    while a.poll_event().is_some() {}
    let start = u32::MAX - 3000;
    near_the_wrap(&mut a, channel, start, MAX_31BIT - 2);
    near_the_wrap(&mut b, channel, start, 0);

    let mut sent = Vec::new();
    for i in 0..8u8 {
        let body = vec![i; 1500];
        sent.push((
            a.send_msg(channel, Message::new(body.clone())).unwrap(),
            body,
        ));
    }
    let msgnos: Vec<u32> = sent.iter().map(|(m, _)| m.0).collect();
    assert_eq!(&msgnos[..4], &[MAX_31BIT - 2, MAX_31BIT - 1, MAX_31BIT, 0]);
    let mut replies = Vec::new();
    for _ in 0..50 {
        pump(&mut a, &mut b);
        while let Some(e) = b.poll_event() {
            if let Event::Message(m) = e {
                b.send_rpy(m.channel, m.msgno, m.message).unwrap();
            }
        }
        pump(&mut a, &mut b);
        while let Some(e) = a.poll_event() {
            if let Event::Message(m) = e {
                assert_eq!(m.kind, MessageKind::Rpy);
                replies.push((m.msgno, m.message.body().to_vec()));
            }
        }
    }
    assert_eq!(replies, sent, "every reply, in order, across both wraps");
    let seqno = a.channels[&channel].send.next();
    assert!(seqno < start, "the sequence numbers wrapped (now {seqno})");
}

/// A connected pair with channel 1 open on both sides (`a` the initiator).
fn open_pair(a: Config) -> (Session, Session, u32) {
    const P: &str = "http://example.org/p";
    let mut a = Session::initiator(a);
    let mut b = Session::listener(Config {
        profiles: vec![P.into()],
        ..Config::default()
    });
    let channel = a.open_channel(vec![Profile::new(P)], None).unwrap();
    pump(&mut a, &mut b);
    while let Some(e) = b.poll_event() {
        if let Event::StartRequested(r) = e {
            b.accept_start(r.channel, Profile::new(P)).unwrap();
        }
    }
    pump(&mut a, &mut b);
    while a.poll_event().is_some() {}
    (a, b, channel)
}

fn messages(s: &mut Session) -> Vec<crate::IncomingMessage> {
    std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The application (side a, without automatic credit) holds a MSG of the
/// channel, as while its handler runs, and asks for a 20,000-octet reply:
/// the replies it got.
fn big_reply_behind_a_held_message(awaited: bool) -> Vec<crate::IncomingMessage> {
    let (mut a, mut b, channel) = open_pair(Config {
        auto_credit: false,
        ..Config::default()
    });
    b.send_msg(channel, Message::new("question")).unwrap();
    pump(&mut a, &mut b);
    assert_eq!(messages(&mut a).len(), 1, "the held MSG");
    let msgno = a.send_msg(channel, Message::new("tell me")).unwrap();
    a.set_reply_awaited(channel, msgno, awaited);
    pump(&mut a, &mut b);
    let asked = messages(&mut b);
    b.send_rpy(channel, asked[0].msgno, Message::new(vec![9u8; 20_000]))
        .unwrap();
    pump(&mut a, &mut b);
    messages(&mut a)
}

/// RFC 3081 3.1.4 (use of flow control): an awaited reply larger than the window passes
/// a message the application still holds.
#[test]
fn rfc3081_3_1_4_an_awaited_reply_larger_than_the_window_passes_a_held_message() {
    // Frames of an unfinished message wait for the application to catch
    // up, which a handler waiting for this very reply never does.
    assert!(big_reply_behind_a_held_message(false).is_empty());
    // A waiter takes the reply whole: its frames are credited as they come.
    let reply = big_reply_behind_a_held_message(true);
    assert_eq!(reply.len(), 1, "the whole reply arrived");
    assert_eq!(reply[0].message.body().len(), 20_000);
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &str) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

/// Everything `s` has to send, through the vectored path.
fn drain_vectored(s: &mut Session) -> Vec<u8> {
    let mut chunks = Vec::new();
    while s.poll_transmit_vectored(&mut chunks) {}
    chunks.concat()
}

/// RFC 3081 3.1.4: the SEQ announcing a large window on a channel we
/// accepted goes right behind our start reply, before the channel's
/// first frame, even when that frame was queued before the reply went.
#[test]
fn rfc3081_3_1_4_an_accepted_channels_seq_goes_before_its_first_frame() {
    const P: &str = "http://example.org/p";
    let mut a = Session::initiator(Config::default());
    let mut b = Session::listener(Config {
        profiles: vec![P.into()],
        receive_window: 1 << 20,
        ..Config::default()
    });
    let channel = a.open_channel(vec![Profile::new(P)], None).unwrap();
    pump(&mut a, &mut b);
    while let Some(e) = b.poll_event() {
        if let Event::StartRequested(r) = e {
            b.accept_start(r.channel, Profile::new(P)).unwrap();
        }
    }
    // Accepted, not yet open for sending: the MSG waits for the reply.
    b.send_msg(channel, Message::new("early")).unwrap();
    let wire = drain_vectored(&mut b);
    let profile = find(&wire, "<profile").expect("the start reply");
    let seq = find(&wire, "SEQ 1 0 1048576\r\n").expect("the channel's SEQ");
    let msg = find(&wire, "MSG 1 0 ").expect("the channel's MSG");
    assert!(
        profile < seq && seq < msg,
        "{}",
        String::from_utf8_lossy(&wire)
    );
}

/// RFC 3081 3.1.4: on a channel we started, the SEQ made when the
/// peer's `<profile>` arrives goes before the first MSG sent on it.
#[test]
fn rfc3081_3_1_4_a_started_channels_seq_goes_before_its_first_frame() {
    const P: &str = "http://example.org/p";
    let mut a = Session::initiator(Config {
        receive_window: 1 << 20,
        ..Config::default()
    });
    let mut b = Session::listener(Config {
        profiles: vec![P.into()],
        ..Config::default()
    });
    let channel = a.open_channel(vec![Profile::new(P)], None).unwrap();
    pump(&mut a, &mut b);
    while let Some(e) = b.poll_event() {
        if let Event::StartRequested(r) = e {
            b.accept_start(r.channel, Profile::new(P)).unwrap();
        }
    }
    while let Some(bytes) = b.poll_transmit() {
        a.handle_input(&bytes).unwrap();
    }
    assert!(a.wants_transmit(), "the SEQ is due");
    a.send_msg(channel, Message::new(vec![7u8; 3000])).unwrap();
    let wire = drain_vectored(&mut a);
    let seq = find(&wire, "SEQ 1 0 1048576\r\n").expect("the channel's SEQ");
    let msg = find(&wire, "MSG 1 0 ").expect("the channel's MSG");
    assert!(seq < msg);
    assert!(!a.wants_transmit());
}

/// RFC 3081 3.1.3: a newer SEQ for a channel replaces one not yet
/// written (its window edge is at or past the older one's); the one due
/// counts as queued output and makes the session want to transmit.
#[test]
fn rfc3081_3_1_3_a_newer_seq_replaces_the_one_due() {
    let (mut a, mut b, channel) = open_pair(Config {
        auto_credit: false,
        ..Config::default()
    });
    b.send_msg(channel, Message::verbatim(vec![1u8; 2100]))
        .unwrap();
    pump(&mut a, &mut b);
    assert_eq!(messages(&mut a).len(), 1);
    assert!(!a.wants_transmit());
    a.consumed(channel, 2100);
    assert!(a.wants_transmit(), "a SEQ is due");
    assert_eq!(a.queued_output(), "SEQ 1 2100 4096\r\n".len());
    a.set_receive_window(channel, 8192).unwrap();
    assert_eq!(a.queued_output(), "SEQ 1 2100 8192\r\n".len());
    let wire = a.poll_transmit().unwrap();
    assert_eq!(&wire[..], b"SEQ 1 2100 8192\r\n");
    assert!(!a.wants_transmit() && a.queued_output() == 0);
}

/// A SEQ due on a channel that closes before it is written is dropped
/// with the channel.
#[test]
fn a_closed_channels_seq_due_is_dropped() {
    let (mut a, mut b, channel) = open_pair(Config {
        auto_credit: false,
        ..Config::default()
    });
    let msgno = a.send_msg(channel, Message::new("ask")).unwrap();
    pump(&mut a, &mut b);
    let asked = messages(&mut b);
    b.send_rpy(channel, asked[0].msgno, Message::verbatim(vec![2u8; 2100]))
        .unwrap();
    b.close_channel(channel, ReplyCode::SUCCESS, "").unwrap();
    pump(&mut a, &mut b);
    let reply = std::iter::from_fn(|| a.poll_event())
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .next()
        .unwrap();
    assert_eq!(reply.msgno, msgno);
    a.consumed(channel, reply.credit);
    assert!(a.wants_transmit(), "a SEQ is due");
    a.accept_close(channel).unwrap();
    assert!(!a.is_channel_open(channel));
    let wire = a.poll_transmit().unwrap();
    assert!(
        find(&wire, "SEQ").is_none(),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert!(find(&wire, "<ok").is_some());
    assert!(!a.wants_transmit() && a.queued_output() == 0);
}
