//! Backpressure for embedders: a bound on queued output that the send
//! calls report, and `Event::Writable` once the queue has drained.

mod common;

use beep_proto::{Config, Event, Message, UsageError};
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
    assert_eq!(
        pair.a.send_rpy(channel, 0, Message::new("no room")),
        Err(UsageError::OutputFull {
            queued: pair.a.queued_output(),
            limit: LIMIT
        })
    );
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
