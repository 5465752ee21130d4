//! Backpressure for embedders: a bound on queued output that the send
//! calls report, and `Event::Writable` once the queue has drained.

mod common;

use beep_proto::{Config, Event, Message, MsgNo, UsageError};
use common::{ECHO, Pair, listener_config, take_messages};

const LIMIT: usize = 10_000;

fn bounded() -> Config {
    Config {
        max_queued_output: LIMIT,
        ..Config::default()
    }
}

fn writables(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Writable))
        .count()
}

#[test]
fn sends_are_refused_above_the_output_limit_and_writable_follows_the_drain() {
    let mut pair = Pair::with(bounded(), listener_config());
    let channel = pair.open(ECHO);
    // The peer reads nothing: keep sending until the session refuses.
    let mut sent = 0;
    let refusal = loop {
        match pair.a.send_msg(channel, Message::new(vec![b'x'; 3000])) {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100, "never refused");
    };
    assert!(matches!(
        refusal,
        UsageError::OutputFull { limit: LIMIT, queued } if queued > LIMIT
    ));
    // One message may take the queue past the limit, never more.
    assert!(pair.a.queued_output() <= LIMIT + 3000 + 100);
    assert!(!pair.a.has_room());
    // The peer reads and gives its window back: the queue drains.
    pair.pump();
    assert_eq!(writables(&pair.a_events), 1, "{:?}", pair.a_events);
    pair.a.send_msg(channel, Message::new("again")).unwrap();
    pair.pump();
    assert_eq!(take_messages(&mut pair.b_events).len(), sent + 1);
    // No refusal since: no second Writable.
    assert_eq!(writables(&pair.a_events), 1);
}

#[test]
fn writable_is_not_reported_without_a_refusal() {
    let mut pair = Pair::with(bounded(), listener_config());
    let channel = pair.open(ECHO);
    for _ in 0..3 {
        pair.a
            .send_msg(channel, Message::new(vec![b'y'; 3000]))
            .unwrap();
    }
    pair.pump();
    assert_eq!(writables(&pair.a_events), 0);
}

#[test]
fn rfc3080_2_6_2_a_nul_is_never_refused_so_a_one_to_many_reply_can_end() {
    let server = Config {
        max_queued_output: LIMIT,
        ..listener_config()
    };
    let mut pair = Pair::with(Config::default(), server);
    let channel = pair.open(ECHO);
    pair.a.send_msg(channel, Message::new("many")).unwrap();
    pair.pump();
    let msg = take_messages(&mut pair.b_events).remove(0);
    let answered = loop {
        match pair
            .b
            .send_ans(channel, msg.msgno, Message::new(vec![b'a'; 2000]))
        {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(answered, UsageError::OutputFull { .. }));
    pair.b.send_nul(channel, msg.msgno).unwrap();
    pair.pump();
    assert!(writables(&pair.b_events) == 1);
    assert!(
        pair.a_events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.kind == beep_proto::MessageKind::Nul))
    );
}

/// A writer that takes at most `room` octets, then would block.
struct Socket {
    wire: Vec<u8>,
    room: usize,
}

impl std::io::Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room).min(7); // short writes, too
        self.wire.extend_from_slice(&buf[..n]);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_to_keeps_what_a_partial_write_left_and_sends_it_first() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a
        .send_msg(channel, Message::new(vec![b'z'; 900]))
        .unwrap();
    let mut socket = Socket {
        wire: Vec::new(),
        room: 100,
    };
    assert_eq!(pair.a.write_to(&mut socket).unwrap(), 100);
    assert!(pair.a.wants_transmit(), "the rest is still to write");
    // Nothing fits: WouldBlock, and nothing is lost.
    let blocked = pair.a.write_to(&mut socket).unwrap_err();
    assert_eq!(blocked.kind(), std::io::ErrorKind::WouldBlock);
    socket.room = usize::MAX;
    let rest = pair.a.write_to(&mut socket).unwrap();
    assert!(rest > 900 - 100);
    assert!(!pair.a.wants_transmit());
    // The peer reads exactly one whole MSG from what was written.
    pair.b.handle_input(&socket.wire).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| pair.b.poll_event()).collect();
    let messages: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.message.body().len()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, vec![900]);
}

#[test]
fn wants_transmit_is_false_when_the_peer_window_is_full() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    // More than the peer's 4096-octet window: the rest waits for its SEQ.
    pair.a
        .send_msg(channel, Message::new(vec![b'w'; 10_000]))
        .unwrap();
    while pair.a.poll_transmit().is_some() {}
    assert!(pair.a.queued_output() > 0, "part of the message is waiting");
    assert!(!pair.a.wants_transmit(), "nothing can be sent until a SEQ");
    assert_eq!(pair.a.poll_transmit(), None);
}

#[test]
fn a_wrong_reply_is_named_as_such_even_when_the_output_is_full() {
    let mut pair = Pair::with(bounded(), listener_config());
    let channel = pair.open(ECHO);
    while pair.a.has_room() {
        pair.a
            .send_msg(channel, Message::new(vec![b'f'; 3000]))
            .unwrap();
    }
    // No MSG 7 of the peer's awaits a reply: that is the error, not room.
    assert_eq!(
        pair.a.send_rpy(channel, MsgNo(7), Message::new("?")),
        Err(UsageError::NoSuchRequest {
            channel,
            msgno: MsgNo(7)
        })
    );
    // has_room said no: the send is refused.
    assert!(matches!(
        pair.a.send_msg(channel, Message::new("more")),
        Err(UsageError::OutputFull { .. })
    ));
}

/// An empty message costs memory too: the output limit counts each queued
/// message, not only its octets (2 octets of MIME block each used to count
/// as 2, so 2 M empty echoes held 236 MB before backpressure).
#[test]
fn empty_messages_count_against_the_output_limit() {
    let mut pair = Pair::with(bounded(), listener_config());
    let channel = pair.open(ECHO);
    // The peer reads nothing.
    let mut sent = 0;
    while pair.a.send_msg(channel, Message::new("")).is_ok() {
        sent += 1;
        assert!(sent < 1000, "empty messages were never refused");
    }
    // A 10,000 limit holds well under a hundred of them.
    assert!(sent < 100, "{sent} empty messages queued");
}
