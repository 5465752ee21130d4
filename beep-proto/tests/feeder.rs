//! The payload feeder: one message sent in pieces as the application
//! produces them (`Session::open_msg`, `open_rpy`, `open_ans`, `feed`),
//! framed like whole messages: continuation frames within the peer's
//! window (RFC 3080 2.2.1, RFC 3081 3.1.4), in MSG order (RFC 3080 2.6.1).

mod common;

use beep_proto::bytes::Bytes;
use beep_proto::frame::{DEFAULT_MAX_HEADER_LEN, FrameHeader, FrameType, Header, parse_header};
use beep_proto::reply_code::ReplyCode;
use beep_proto::xml::Profile;
use beep_proto::{
    AnsNo, Config, Event, IncomingFrame, Message, MessageKind, MsgNo, Session, SessionEnd,
    UsageError,
};
use common::{ECHO, OTHER, Pair, listener_config, take_messages};

/// The data frames in `wire`, with their payloads.
fn frames(wire: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut rest = wire;
    let mut out = Vec::new();
    while let Ok(Some((header, used))) = parse_header(rest, DEFAULT_MAX_HEADER_LEN) {
        rest = &rest[used..];
        if let Header::Frame(h) = header {
            let size = h.size as usize;
            out.push((h, rest[..size].to_vec()));
            rest = &rest[size + 5..];
        }
    }
    out
}

/// The data frames of `channel` in `wire`.
fn frames_on(wire: &[u8], channel: u32) -> Vec<(FrameHeader, Vec<u8>)> {
    frames(wire)
        .into_iter()
        .filter(|(h, _)| h.channel == channel)
        .collect()
}

/// Moves what `from` has to send into `to`; returns the bytes.
fn deliver(from: &mut Session, to: &mut Session) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(bytes) = from.poll_transmit() {
        to.handle_input(&bytes).unwrap();
        wire.extend_from_slice(&bytes);
    }
    wire
}

/// Pumps both ways until quiet, returning what `a` sent.
fn pump_a(pair: &mut Pair) -> Vec<u8> {
    let mut wire = Vec::new();
    loop {
        let sent = deliver(&mut pair.a, &mut pair.b);
        let back = deliver(&mut pair.b, &mut pair.a);
        wire.extend_from_slice(&sent);
        if sent.is_empty() && back.is_empty() {
            break;
        }
    }
    pair.pump();
    wire
}

fn frame_events(events: &mut Vec<Event>) -> Vec<IncomingFrame> {
    let mut out = Vec::new();
    events.retain(|e| match e {
        Event::Frame(f) => {
            out.push(f.clone());
            false
        }
        _ => true,
    });
    out
}

#[test]
fn rfc3080_2_2_1_a_msg_fed_in_three_pieces_arrives_as_one_message_with_the_same_bytes() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let feed = pair
        .a
        .open_msg(
            channel,
            Message::new("one,").with_header("Content-Type", "text/plain"),
        )
        .unwrap();
    let mut wire = pump_a(&mut pair);
    pair.a.feed(feed, "two,", false).unwrap();
    wire.extend(pump_a(&mut pair));
    // Not finished: nothing is delivered yet.
    assert!(take_messages(&mut pair.b_events).is_empty());
    pair.a
        .feed(feed, Bytes::from_static(b"three"), true)
        .unwrap();
    wire.extend(pump_a(&mut pair));
    let got = take_messages(&mut pair.b_events);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].msgno, feed.msgno());
    assert_eq!(got[0].message.content_type(), "text/plain");
    assert_eq!(&got[0].message.body()[..], b"one,two,three");
    // On the wire: one frame per piece, `*` until the last.
    let sent = frames_on(&wire, channel);
    let more: Vec<bool> = sent.iter().map(|(h, _)| h.more).collect();
    assert_eq!(more, [true, true, false]);
    assert!(
        sent.iter()
            .all(|(h, p)| h.frame_type == FrameType::Msg && !p.is_empty())
    );
    assert!(
        sent[0]
            .1
            .starts_with(b"Content-Type: text/plain\r\n\r\none,")
    );
}

#[test]
fn rfc3080_2_2_1_a_reading_peer_sees_continuation_frames_and_a_possibly_empty_last_one() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.b.set_streaming(channel, true).unwrap();
    // Verbatim: no header block goes first.
    let feed = pair.a.open_msg(channel, Message::verbatim("")).unwrap();
    // Opened with nothing: no empty intermediate frame goes out.
    assert!(frames_on(&pump_a(&mut pair), channel).is_empty());
    for piece in ["alpha", "beta", "gamma"] {
        pair.a.feed(feed, piece, false).unwrap();
        pair.pump();
    }
    // All fed is out: still nothing more, and nothing to write.
    assert!(frames_on(&pump_a(&mut pair), channel).is_empty());
    assert!(!pair.a.wants_transmit());
    pair.a.feed(feed, "", true).unwrap();
    pair.pump();
    let got = frame_events(&mut pair.b_events);
    let seen: Vec<(bool, &[u8])> = got.iter().map(|f| (f.more, &f.payload[..])).collect();
    assert_eq!(
        seen,
        [
            (true, &b"alpha"[..]),
            (true, b"beta"),
            (true, b"gamma"),
            (false, b"")
        ]
    );
    assert!(
        got.iter()
            .all(|f| f.kind == MessageKind::Msg && f.msgno == feed.msgno())
    );
}

#[test]
fn rfc3080_2_6_1_a_fed_rpy_arrives_whole_and_holds_later_replies_behind_it() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let first = pair.a.send_msg(channel, Message::new("first")).unwrap();
    let second = pair.a.send_msg(channel, Message::new("second")).unwrap();
    pair.pump();
    let requests = take_messages(&mut pair.b_events);
    assert_eq!(requests.len(), 2);
    let feed = pair
        .b
        .open_rpy(channel, first, Message::new("part 1, "))
        .unwrap();
    // The reply to the second MSG is ready first, but waits its turn.
    pair.b
        .send_rpy(channel, second, Message::new("short"))
        .unwrap();
    pair.pump();
    assert!(take_messages(&mut pair.a_events).is_empty());
    pair.b.feed(feed, "part 2, ", false).unwrap();
    pair.pump();
    pair.b.feed(feed, "part 3", true).unwrap();
    pair.pump();
    let replies = take_messages(&mut pair.a_events);
    let got: Vec<(MsgNo, MessageKind, &[u8])> = replies
        .iter()
        .map(|m| (m.msgno, m.kind, &m.message.body()[..]))
        .collect();
    assert_eq!(
        got,
        [
            (first, MessageKind::Rpy, &b"part 1, part 2, part 3"[..]),
            (second, MessageKind::Rpy, b"short"),
        ]
    );
}

#[test]
fn rfc3080_2_6_1_a_fed_rpy_produced_early_is_held_with_its_pieces_until_its_turn() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let first = pair.a.send_msg(channel, Message::new("first")).unwrap();
    let second = pair.a.send_msg(channel, Message::new("second")).unwrap();
    pair.pump();
    take_messages(&mut pair.b_events);
    let queued = pair.b.queued_output();
    let feed = pair.b.open_rpy(channel, second, Message::new("")).unwrap();
    pair.b.feed(feed, vec![b'h'; 5000], true).unwrap();
    // Held for reply order: not queued output (RFC 3080 2.6.1).
    assert_eq!(pair.b.queued_output(), queued);
    pair.pump();
    assert!(take_messages(&mut pair.a_events).is_empty());
    pair.b
        .send_rpy(channel, first, Message::new("first reply"))
        .unwrap();
    pair.pump();
    let replies = take_messages(&mut pair.a_events);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1].msgno, second);
    assert_eq!(replies[1].message.body().len(), 5000);
    assert_eq!(pair.b.queued_output(), 0);
}

#[test]
fn rfc3080_2_6_2_answers_may_be_fed_and_the_nul_follows_them() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let msgno = pair.a.send_msg(channel, Message::new("watch")).unwrap();
    pair.pump();
    take_messages(&mut pair.b_events);
    let one = pair.b.open_ans(channel, msgno, Message::new("a")).unwrap();
    let two = pair.b.open_ans(channel, msgno, Message::new("x")).unwrap();
    assert_eq!((one.ansno(), two.ansno()), (Some(AnsNo(0)), Some(AnsNo(1))));
    pair.b.send_nul(channel, msgno).unwrap();
    pair.b.feed(two, "y", true).unwrap();
    pair.b.feed(one, "b", false).unwrap();
    pair.pump();
    assert!(take_messages(&mut pair.a_events).is_empty());
    pair.b.feed(one, "c", true).unwrap();
    pair.pump();
    let got: Vec<(MessageKind, Vec<u8>)> = take_messages(&mut pair.a_events)
        .into_iter()
        .map(|m| (m.kind, m.message.body().to_vec()))
        .collect();
    assert_eq!(
        got,
        [
            (MessageKind::Ans { ansno: AnsNo(0) }, b"abc".to_vec()),
            (MessageKind::Ans { ansno: AnsNo(1) }, b"xy".to_vec()),
            (MessageKind::Nul, Vec::new()),
        ]
    );
}

#[test]
fn rfc3081_3_1_4_a_piece_larger_than_the_window_is_split_and_waits_for_seq() {
    let small_frames = Config {
        max_frame_size: 1000,
        ..Config::default()
    };
    let mut pair = Pair::with(small_frames, listener_config());
    let channel = pair.open(ECHO);
    let feed = pair.a.open_msg(channel, Message::verbatim("")).unwrap();
    let big: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    pair.a.feed(feed, big.clone(), true).unwrap();
    // Without the peer's SEQ, one window (4096 octets) goes out.
    let first = deliver(&mut pair.a, &mut pair.b);
    let sent = frames_on(&first, channel);
    let octets: usize = sent.iter().map(|(_, p)| p.len()).sum();
    assert_eq!(octets, 4096);
    assert!(sent.iter().all(|(h, _)| h.size <= 1000 && h.more));
    assert!(pair.a.poll_transmit().is_none(), "sent beyond the window");
    // The peer's SEQ opens the window: the rest follows.
    pair.pump();
    let got = take_messages(&mut pair.b_events);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].message.body()[..], &big[..]);
}

#[test]
fn large_pieces_are_framed_without_copying() {
    let big_frames = Config {
        max_frame_size: 1 << 20,
        ..Config::default()
    };
    let wide = Config {
        receive_window: 1 << 20,
        ..listener_config()
    };
    let mut pair = Pair::with(big_frames, wide);
    let channel = pair.open(ECHO);
    let feed = pair.a.open_msg(channel, Message::verbatim("")).unwrap();
    let piece = Bytes::from(vec![7u8; 64 << 10]);
    let range = piece.as_ptr() as usize..piece.as_ptr() as usize + piece.len();
    pair.a.feed(feed, piece.clone(), true).unwrap();
    let mut chunks = Vec::new();
    assert!(pair.a.poll_transmit_vectored(&mut chunks));
    assert!(
        chunks
            .iter()
            .any(|c| c.len() >= 8 << 10 && range.contains(&(c.as_ptr() as usize))),
        "no chunk is a slice of the fed piece"
    );
    for chunk in chunks {
        pair.b.handle_input(&chunk).unwrap();
    }
    pair.pump();
    let got = take_messages(&mut pair.b_events);
    assert_eq!(got[0].message.body(), &piece);
}

#[test]
fn feeding_is_refused_above_the_output_limit_and_an_empty_last_piece_never_is() {
    const LIMIT: usize = 10_000;
    let bounded = Config {
        max_queued_output: LIMIT,
        ..Config::default()
    };
    let mut pair = Pair::with(bounded, listener_config());
    let channel = pair.open(ECHO);
    let feed = pair.a.open_msg(channel, Message::new("")).unwrap();
    // The peer reads nothing: feed until refused.
    let mut fed = 0;
    let refusal = loop {
        let before = pair.a.queued_output();
        match pair.a.feed(feed, vec![b'x'; 3000], false) {
            Ok(()) => {
                fed += 1;
                assert_eq!(pair.a.queued_output(), before + 3000, "fed pieces count");
            }
            Err(e) => break e,
        }
        assert!(fed < 100, "never refused");
    };
    assert!(matches!(
        refusal,
        UsageError::OutputFull { limit: LIMIT, queued } if queued > LIMIT
    ));
    assert!(!pair.a.has_room());
    // The same for whole messages: one limit for both.
    assert!(matches!(
        pair.a.send_msg(channel, Message::new("x")),
        Err(UsageError::OutputFull { .. })
    ));
    // Ending it is always possible.
    pair.a.feed(feed, "", true).unwrap();
    pair.pump();
    assert!(pair.a_events.iter().any(|e| matches!(e, Event::Writable)));
    let got = take_messages(&mut pair.b_events);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.body().len(), fed * 3000);
    assert_eq!(pair.a.queued_output(), 0);
}

#[test]
fn every_misuse_of_the_feeder_is_a_typed_error() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let msgno = pair.a.send_msg(channel, Message::new("q")).unwrap();
    pair.pump();
    take_messages(&mut pair.b_events);
    let b = &mut pair.b;
    // Channel 0 and channels that are not open.
    assert_eq!(
        b.open_msg(0, Message::new("")),
        Err(UsageError::UnknownChannel { channel: 0 })
    );
    assert_eq!(
        b.open_msg(9, Message::new("")),
        Err(UsageError::UnknownChannel { channel: 9 })
    );
    assert_eq!(
        b.open_rpy(0, MsgNo(0), Message::new("")),
        Err(UsageError::UnknownChannel { channel: 0 })
    );
    // A reply for a MSG that is not awaiting one.
    assert_eq!(
        b.open_rpy(channel, MsgNo(msgno.0 + 1), Message::new("")),
        Err(UsageError::NoSuchRequest {
            channel,
            msgno: MsgNo(msgno.0 + 1)
        })
    );
    let rpy = b.open_rpy(channel, msgno, Message::new("")).unwrap();
    // One reply per MSG: no second RPY, nor ANS, nor ERR beside it.
    let mismatch = |frame_type| UsageError::ReplyMismatch {
        channel,
        msgno,
        frame_type,
    };
    assert_eq!(
        b.open_rpy(channel, msgno, Message::new("")),
        Err(mismatch(FrameType::Rpy))
    );
    assert_eq!(
        b.open_ans(channel, msgno, Message::new("")),
        Err(mismatch(FrameType::Ans))
    );
    assert_eq!(
        b.send_err(channel, msgno, Message::new("")),
        Err(mismatch(FrameType::Err))
    );
    b.feed(rpy, "done", true).unwrap();
    // Finished: the handle names nothing any more.
    let gone = UsageError::NoSuchFeed { channel, msgno };
    assert_eq!(b.feed(rpy, "late", false), Err(gone.clone()));
    assert_eq!(b.feed(rpy, "", true), Err(gone));
    // Once complete, the reply takes nothing more.
    assert_eq!(
        b.open_rpy(channel, msgno, Message::new("")),
        Err(UsageError::NoSuchRequest { channel, msgno })
    );
    // A handle of another session.
    let other = pair.a.open_msg(channel, Message::new("")).unwrap();
    assert!(matches!(
        pair.b.feed(other, "x", false),
        Err(UsageError::NoSuchFeed { .. })
    ));
    // No new MSG, fed or whole, on a channel we are closing.
    pair.a
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    assert_eq!(
        pair.a.open_msg(channel, Message::new("")),
        Err(UsageError::ChannelClosing { channel })
    );
    // The close waits for the open MSG (RFC 3080 2.3.1.3).
    pair.pump();
    assert!(pair.a.is_channel_open(channel));
    pair.a.feed(other, "", true).unwrap();
    pair.pump();
    pair.echo_all();
    pair.b.accept_close(channel).unwrap();
    pair.pump();
    assert!(!pair.a.is_channel_open(channel));
}

#[test]
fn rfc3080_2_6_2_a_fed_msg_does_not_hold_up_other_channels() {
    let mut pair = Pair::new();
    let slow = pair.open(ECHO);
    let fast = pair.open(OTHER);
    let feed = pair.a.open_msg(slow, Message::new("begun")).unwrap();
    pair.pump();
    pair.a.send_msg(fast, Message::new("meanwhile")).unwrap();
    pair.pump();
    let got = take_messages(&mut pair.b_events);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].channel, &got[0].message.body()[..]),
        (fast, &b"meanwhile"[..])
    );
    pair.a.feed(feed, " and ended", true).unwrap();
    pair.pump();
    let got = take_messages(&mut pair.b_events);
    assert_eq!(
        (got[0].channel, &got[0].message.body()[..]),
        (slow, &b"begun and ended"[..])
    );
}

#[test]
fn rfc3080_2_6_1_a_msg_sent_after_an_open_fed_msg_on_its_channel_waits_for_it() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let feed = pair.a.open_msg(channel, Message::new("long ")).unwrap();
    let whole = pair.a.send_msg(channel, Message::new("short")).unwrap();
    let wire = pump_a(&mut pair);
    // Only the fed MSG's first frame: MSGs on a channel never interleave.
    let sent = frames_on(&wire, channel);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.msgno, sent[0].0.more), (feed.msgno(), true));
    assert!(take_messages(&mut pair.b_events).is_empty());
    pair.a.feed(feed, "story", true).unwrap();
    pair.pump();
    let got: Vec<(MsgNo, Vec<u8>)> = take_messages(&mut pair.b_events)
        .into_iter()
        .map(|m| (m.msgno, m.message.body().to_vec()))
        .collect();
    assert_eq!(
        got,
        [
            (feed.msgno(), b"long story".to_vec()),
            (whole, b"short".to_vec())
        ]
    );
}

#[test]
fn rfc3080_2_6_3_a_peer_answering_a_fed_msg_early_ends_it() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.b.set_streaming(channel, true).unwrap();
    let feed = pair
        .a
        .open_msg(channel, Message::verbatim("upload"))
        .unwrap();
    let next = pair.a.send_msg(channel, Message::new("next")).unwrap();
    pair.pump();
    let first = frame_events(&mut pair.b_events);
    assert_eq!(first.len(), 1);
    // The peer has seen enough: it answers before the end.
    pair.b
        .send_err(channel, feed.msgno(), Message::new("too big"))
        .unwrap();
    let wire = pump_a(&mut pair);
    // The MSG is ended with an empty last frame; the next one follows.
    let sent = frames_on(&wire, channel);
    let msgs: Vec<(MsgNo, bool, usize)> = sent
        .iter()
        .filter(|(h, _)| h.frame_type == FrameType::Msg)
        .map(|(h, p)| (h.msgno, h.more, p.len()))
        .collect();
    assert_eq!(msgs, [(feed.msgno(), false, 0), (next, false, 6)]);
    // The application hears of it at its next piece, once.
    assert_eq!(
        pair.a.feed(feed, "more", false),
        Err(UsageError::FeedAbandoned {
            channel,
            msgno: feed.msgno()
        })
    );
    assert!(matches!(
        pair.a.feed(feed, "more", false),
        Err(UsageError::NoSuchFeed { .. })
    ));
    assert_eq!(pair.a.queued_output(), 0);
}

#[test]
fn rfc3080_2_6_3_a_peer_answering_while_pieces_wait_drops_them() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.b.set_streaming(channel, true).unwrap();
    let feed = pair
        .a
        .open_msg(channel, Message::verbatim("upload"))
        .unwrap();
    pair.pump();
    pair.b
        .send_rpy(channel, feed.msgno(), Message::new("enough"))
        .unwrap();
    // The reply arrives; a piece is fed before anything is sent.
    deliver(&mut pair.b, &mut pair.a);
    assert_eq!(
        pair.a.feed(feed, vec![0u8; 100_000], false),
        Err(UsageError::FeedAbandoned {
            channel,
            msgno: feed.msgno()
        })
    );
    let sent = frames_on(&pump_a(&mut pair), channel);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.more, sent[0].1.len()), (false, 0));
    assert_eq!(pair.a.queued_output(), 0);
}

#[test]
fn a_session_ending_with_a_feed_open_drops_its_pieces_and_never_completes_it() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let feed = pair.a.open_msg(channel, Message::new("begun")).unwrap();
    pair.pump();
    pair.a.feed(feed, vec![1u8; 3000], false).unwrap();
    pair.a.feed(feed, vec![2u8; 3000], true).unwrap();
    assert!(pair.a.queued_output() >= 6000);
    pair.a.handle_eof();
    assert_eq!(pair.a.end_reason(), Some(&SessionEnd::TransportClosed));
    assert_eq!(
        pair.a.feed(feed, "x", false),
        Err(UsageError::SessionClosed)
    );
    assert!(pair.a.queued_output() < 6000, "the pieces were kept");
    // What goes out after the end (the peer may still read) never says
    // the message is complete.
    let mut wire = Vec::new();
    while let Some(bytes) = pair.a.poll_transmit() {
        wire.extend_from_slice(&bytes);
    }
    assert!(frames_on(&wire, channel).iter().all(|(h, _)| h.more));
}

#[test]
fn a_channel_closed_under_an_open_feed_forgets_it() {
    // A peer that wrongly agrees to our close while it still awaits our
    // reply (RFC 3080 2.3.1.3 says it must wait): nothing may panic or
    // stay counted.
    let mut a = Session::initiator(Config::default());
    let mut b = Session::listener(listener_config());
    // The listener's channel-0 octets so far: the seqno of its next frame.
    let mut zero_seqno = 0;
    let mut pump = |a: &mut Session, b: &mut Session| loop {
        let sent = deliver(a, b);
        let back = deliver(b, a);
        zero_seqno += frames_on(&back, 0).iter().map(|(h, _)| h.size).sum::<u32>();
        if sent.is_empty() && back.is_empty() {
            return zero_seqno;
        }
    };
    let channel = a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pump(&mut a, &mut b);
    b.accept_start(channel, Profile::new(ECHO)).unwrap();
    pump(&mut a, &mut b);
    b.send_msg(channel, Message::new("q")).unwrap();
    pump(&mut a, &mut b);
    let request = std::iter::from_fn(|| a.poll_event())
        .find_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .unwrap();
    let feed = a
        .open_rpy(channel, request.msgno, Message::new("begun"))
        .unwrap();
    let seqno = pump(&mut a, &mut b);
    a.close_channel(channel, ReplyCode::SUCCESS, "").unwrap();
    let wire = deliver(&mut a, &mut b);
    let close = frames_on(&wire, 0)
        .into_iter()
        .find(|(_, p)| p.windows(6).any(|w| w == b"<close"))
        .expect("no <close> sent")
        .0;
    a.feed(feed, vec![3u8; 3000], false).unwrap();
    assert!(a.queued_output() >= 3000);
    // Fake the peer's <ok/> on channel 0.
    let body = b"Content-Type: application/beep+xml\r\n\r\n<ok />";
    let mut ok = format!("RPY 0 {} . {seqno} {}\r\n", close.msgno, body.len()).into_bytes();
    ok.extend_from_slice(body);
    ok.extend_from_slice(b"END\r\n");
    a.handle_input(&ok).map_err(|e| e.to_string()).unwrap();
    assert!(!a.is_channel_open(channel));
    assert!(
        std::iter::from_fn(|| a.poll_event())
            .any(|e| matches!(e, Event::ChannelClosed { channel: c } if c == channel))
    );
    assert_eq!(
        a.feed(feed, "more", true),
        Err(UsageError::UnknownChannel { channel })
    );
    while a.poll_transmit().is_some() {}
    assert_eq!(a.queued_output(), 0);
    assert!(!a.wants_transmit());
}
