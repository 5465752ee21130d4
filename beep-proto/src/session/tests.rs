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
