//! Whole conversations between two in-memory sessions. Test names cite the
//! RFC section they prove (`rfc3080_2_3_1_2_...`); CONFORMANCE.md lists
//! every requirement with its tests.

mod common;

use beep_proto::frame::{FrameType, Header, parse_header};
use beep_proto::xml::{ContentEncoding, Profile};
use beep_proto::{
    AnsNo, Config, Event, Message, MessageKind, MsgNo, ReplyCode, Session, SessionEnd, UsageError,
};
use bytes::Bytes;
use common::{ECHO, OTHER, Pair, take_messages, take_start};

#[test]
fn rfc3080_2_3_1_1_greetings_are_exchanged_at_once() {
    let config = Config {
        features: Some("x-fast".into()),
        localize: Some("en-US".into()),
        ..Config::default()
    };
    let mut a = Session::initiator(config);
    let mut b = Session::listener(common::listener_config());
    // Each side speaks first, without waiting for the other (RFC 3080 2.3.1.1).
    let from_a = a.poll_transmit().unwrap();
    let from_b = b.poll_transmit().unwrap();
    assert!(from_a.starts_with(b"RPY 0 0 . 0 ") && from_b.starts_with(b"RPY 0 0 . 0 "));
    a.handle_input(&from_b).unwrap();
    b.handle_input(&from_a).unwrap();
    let Some(Event::Greeting(seen_by_a)) = a.poll_event() else {
        panic!()
    };
    assert_eq!(
        seen_by_a.profiles,
        vec![ECHO.to_string(), OTHER.to_string()]
    );
    let Some(Event::Greeting(seen_by_b)) = b.poll_event() else {
        panic!()
    };
    assert_eq!(seen_by_b.features.as_deref(), Some("x-fast"));
    assert_eq!(seen_by_b.localize.as_deref(), Some("en-US"));
    assert!(seen_by_b.profiles.is_empty());
    assert_eq!(a.peer_greeting(), Some(&seen_by_a));
}

#[test]
fn rfc3080_2_4_unavailable_listener_refuses_the_session() {
    let mut a = Session::initiator(Config::default());
    let mut b = Session::refusing(
        Config::default(),
        ReplyCode::SERVICE_NOT_AVAILABLE,
        "maintenance",
    );
    let bytes = b.poll_transmit().unwrap();
    assert!(b.is_ended());
    // The refusing side learns its own end the same way.
    assert!(matches!(
        b.poll_event(),
        Some(Event::SessionEnded(SessionEnd::Refused(e))) if e.text == "maintenance"
    ));
    a.handle_input(&bytes).unwrap();
    match a.poll_event() {
        Some(Event::SessionEnded(SessionEnd::Refused(error))) => {
            assert_eq!(error.code, ReplyCode::SERVICE_NOT_AVAILABLE);
            assert_eq!(error.text, "maintenance");
        }
        other => panic!("{other:?}"),
    }
    assert!(a.is_ended());
    assert_eq!(
        a.open_channel(vec![Profile::new(ECHO)], None),
        Err(UsageError::SessionClosed)
    );
}

#[test]
fn rfc3080_2_3_1_2_start_with_piggyback_and_server_name() {
    let mut pair = Pair::new();
    let offer = Profile::new(ECHO).with_content(Bytes::from_static(b"\x00\x01binary init"));
    let channel = pair
        .a
        .open_channel(
            vec![Profile::new("http://example.org/unknown"), offer.clone()],
            Some("beep.example.test".into()),
        )
        .unwrap();
    assert_eq!(
        channel % 2,
        1,
        "RFC 3080 2.3.1.2: initiator channels are odd"
    );
    pair.pump();
    let request = take_start(&mut pair.b_events);
    assert_eq!(request.server_name.as_deref(), Some("beep.example.test"));
    assert_eq!(request.profiles.len(), 2);
    assert_eq!(request.profiles[1].content, offer.content);
    let reply = Profile::new(ECHO).with_content(Bytes::from_static(b"<ready-ack/>"));
    pair.b.accept_start(channel, reply.clone()).unwrap();
    pair.pump();
    assert_eq!(pair.b.server_name(), Some("beep.example.test"));
    match &pair.a_events[..] {
        [
            Event::ChannelOpened {
                channel: c,
                profile,
            },
        ] => {
            assert_eq!(*c, channel);
            assert_eq!(profile.uri, ECHO);
            assert_eq!(profile.content, reply.content);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pair.a.channel_profile(channel), Some(ECHO));
    assert_eq!(pair.b.channel_profile(channel), Some(ECHO));
}

#[test]
fn base64_piggyback_round_trips() {
    let mut pair = Pair::new();
    let mut offer =
        Profile::new(ECHO).with_content(Bytes::from_static(b"hey dude, this is base64"));
    offer.encoding = ContentEncoding::Base64;
    let channel = pair.a.open_channel(vec![offer], None).unwrap();
    pair.pump();
    let request = take_start(&mut pair.b_events);
    assert_eq!(
        request.profiles[0].content.as_deref(),
        Some(&b"hey dude, this is base64"[..])
    );
    pair.b.accept_start(channel, Profile::new(ECHO)).unwrap();
    pair.pump();
}

#[test]
fn rfc3080_2_3_1_2_start_denied() {
    let mut pair = Pair::new();
    let channel = pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    take_start(&mut pair.b_events);
    pair.b
        .deny_start(
            channel,
            ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
            "all requested profiles are unsupported",
        )
        .unwrap();
    pair.pump();
    match &pair.a_events[..] {
        [Event::ChannelRefused { channel: c, error }] => {
            assert_eq!(*c, channel);
            assert_eq!(error.code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN);
        }
        other => panic!("{other:?}"),
    }
    assert!(!pair.a.is_channel_open(channel));
    assert!(pair.a.send_msg(channel, Message::new("x")).is_err());
}

#[test]
fn listener_channels_are_even_and_both_sides_may_start() {
    let mut pair = Pair::new();
    let channel = pair.b.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    assert_eq!(
        channel % 2,
        0,
        "RFC 3080 2.3.1.2: listener channels are even"
    );
    pair.pump();
    let request = take_start(&mut pair.a_events);
    pair.a
        .accept_start(request.channel, Profile::new(ECHO))
        .unwrap();
    pair.pump();
    assert!(pair.b.is_channel_open(channel));
    let msgno = pair
        .b
        .send_msg(channel, Message::new("from the listener"))
        .unwrap();
    pair.pump();
    let got = take_messages(&mut pair.a_events);
    assert_eq!(
        (got[0].msgno, &got[0].message.body()[..]),
        (msgno, &b"from the listener"[..])
    );
}

#[test]
fn msg_rpy_err_and_mime_headers() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let msg = Message::new("<q/>").with_header("Content-Type", "application/xml");
    let first = pair.a.send_msg(channel, msg.clone()).unwrap();
    let second = pair
        .a
        .send_msg(channel, Message::new("fail please"))
        .unwrap();
    pair.pump();
    let got = take_messages(&mut pair.b_events);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].message, msg,
        "headers and body arrive separately and intact"
    );
    assert_eq!(got[0].message.content_type(), "application/xml");
    assert_eq!(
        got[1].message.content_type(),
        "application/octet-stream",
        "RFC 3080 2.2"
    );
    pair.b.send_rpy(channel, first, Message::new("ok")).unwrap();
    pair.b
        .send_err(channel, second, Message::new("failed"))
        .unwrap();
    pair.pump();
    let replies = take_messages(&mut pair.a_events);
    assert_eq!(replies[0].kind, MessageKind::Rpy);
    assert_eq!(replies[0].msgno, first);
    assert_eq!(replies[1].kind, MessageKind::Err);
    assert_eq!(&replies[1].message.body()[..], b"failed");
}

#[test]
fn rfc3080_2_1_1_ans_then_nul() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let msgno = pair.a.send_msg(channel, Message::new("many")).unwrap();
    pair.pump();
    take_messages(&mut pair.b_events);
    for i in 0..30 {
        let ansno = pair
            .b
            .send_ans(channel, msgno, Message::new(format!("answer {i}")))
            .unwrap();
        assert_eq!(ansno, AnsNo(i));
    }
    assert!(matches!(
        pair.b.send_rpy(channel, msgno, Message::new("x")),
        Err(UsageError::ReplyMismatch { .. })
    ));
    pair.b.send_nul(channel, msgno).unwrap();
    pair.pump();
    let replies = take_messages(&mut pair.a_events);
    assert_eq!(replies.len(), 31);
    for (i, r) in replies[..30].iter().enumerate() {
        let ansno = AnsNo(i as u32);
        assert_eq!(r.kind, MessageKind::Ans { ansno });
        assert_eq!(r.message.body(), format!("answer {i}").as_bytes());
    }
    assert_eq!(replies[30].kind, MessageKind::Nul);
    // The MSG is answered: its msgno is free, and a late reply is refused.
    assert!(pair.b.send_nul(channel, msgno).is_err());
}

#[test]
fn rfc3080_2_6_pipelined_replies_are_delivered_in_msg_order() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let msgnos: Vec<MsgNo> = (0..5)
        .map(|i| {
            pair.a
                .send_msg(channel, Message::new(format!("req {i}")))
                .unwrap()
        })
        .collect();
    pair.pump();
    let received = take_messages(&mut pair.b_events);
    assert_eq!(received.len(), 5);
    // The application answers in reverse order; ANS for one of them.
    for m in received.iter().rev() {
        if m.msgno == msgnos[2] {
            pair.b
                .send_ans(channel, m.msgno, Message::new("a0"))
                .unwrap();
            pair.b
                .send_ans(channel, m.msgno, Message::new("a1"))
                .unwrap();
            pair.b.send_nul(channel, m.msgno).unwrap();
        } else {
            pair.b
                .send_rpy(channel, m.msgno, Message::new(format!("re {}", m.msgno)))
                .unwrap();
        }
        pair.pump();
        if m.msgno != msgnos[0] {
            assert!(
                take_messages(&mut pair.a_events).is_empty(),
                "RFC 3080 2.6.1: held until its turn"
            );
        }
    }
    let replies = take_messages(&mut pair.a_events);
    let order: Vec<MsgNo> = replies.iter().map(|r| r.msgno).collect();
    assert_eq!(
        order,
        vec![
            msgnos[0], msgnos[1], msgnos[2], msgnos[2], msgnos[2], msgnos[3], msgnos[4]
        ]
    );
}

#[test]
fn rfc3081_3_1_2_large_messages_are_framed_within_the_window() {
    // The receiver's window stays at 4096 (growing windows:
    // tests/windows.rs).
    let receiver = Config {
        max_receive_window: 4096,
        ..common::listener_config()
    };
    let mut pair = Pair::with(Config::default(), receiver);
    let channel = pair.open(ECHO);
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    pair.a
        .send_msg(channel, Message::new(body.clone()))
        .unwrap();
    // Frames never exceed 4096 octets, the default window and frame size.
    let mut frames = 0;
    loop {
        let mut progressed = false;
        while let Some(bytes) = pair.a.poll_transmit() {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let (header, used) = parse_header(rest, 128).unwrap().unwrap();
                rest = &rest[used..];
                if let Header::Frame(h) = header {
                    assert!(h.size <= 4096, "{h:?}");
                    rest = &rest[h.size as usize + 5..];
                    frames += 1;
                }
            }
            pair.b.handle_input(&bytes).unwrap();
            progressed = true;
        }
        while let Some(e) = pair.b.poll_event() {
            pair.b_events.push(e);
        }
        while let Some(bytes) = pair.b.poll_transmit() {
            pair.a.handle_input(&bytes).unwrap();
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    assert!(frames >= 25, "{frames} frames");
    let got = take_messages(&mut pair.b_events);
    assert_eq!(&got[0].message.body()[..], &body[..]);
}

#[test]
fn rfc3081_3_1_2_a_slow_reader_stops_the_sender() {
    let receiver = Config {
        auto_credit: false,
        max_receive_window: 4096,
        ..common::listener_config()
    };
    let mut pair = Pair::with(Config::default(), receiver);
    let channel = pair.open(ECHO);
    for _ in 0..10 {
        pair.a
            .send_msg(channel, Message::new(vec![7u8; 998]))
            .unwrap();
    }
    pair.pump();
    // 1000 octets each (with the empty MIME block): four fit in 4096.
    let first = take_messages(&mut pair.b_events);
    assert_eq!(first.len(), 4, "the sender must stop at the window");
    for m in &first {
        pair.b.consumed(channel, m.credit);
    }
    pair.pump();
    // Half a window or more reopened: three or four more, never all six.
    let second = take_messages(&mut pair.b_events);
    assert!((3..=4).contains(&second.len()), "{}", second.len());
    let mut total = first.len() + second.len();
    let mut pending = second;
    while total < 10 {
        for m in pending.drain(..) {
            pair.b.consumed(channel, m.credit);
        }
        pair.pump();
        pending = take_messages(&mut pair.b_events);
        assert!(!pending.is_empty(), "stalled at {total}");
        total += pending.len();
    }
    assert_eq!(total, 10);
}

#[test]
fn rfc3081_3_1_2_a_slow_application_bounds_buffered_messages_to_the_window() {
    // Messages larger than the window arrive in several frames. While the
    // application holds a finished message, the frames of the next one
    // are not credited, so the peer cannot pile up message after message.
    let receiver = Config {
        auto_credit: false,
        max_receive_window: 4096,
        ..common::listener_config()
    };
    let mut pair = Pair::with(Config::default(), receiver);
    let channel = pair.open(ECHO);
    for _ in 0..20 {
        pair.a
            .send_msg(channel, Message::new(vec![1u8; 10_000]))
            .unwrap();
    }
    pair.pump();
    let held = take_messages(&mut pair.b_events);
    assert_eq!(
        held.len(),
        1,
        "one finished message, then the window is closed"
    );
    assert!(
        pair.a.queued_output() > 10 * 10_000,
        "the rest waits at the sender"
    );
    // Giving it back lets exactly the next one through, and so on.
    let mut delivered = held.len();
    let mut pending = held;
    while delivered < 20 {
        for m in pending.drain(..) {
            pair.b.consumed(channel, m.credit);
        }
        pair.pump();
        pending = take_messages(&mut pair.b_events);
        assert!(
            !pending.is_empty() && pending.len() <= 2,
            "{}",
            pending.len()
        );
        delivered += pending.len();
    }
}

#[test]
fn rfc3081_3_1_4_large_window_is_announced_and_used() {
    let big = Config {
        receive_window: 1 << 20,
        max_frame_size: 64 << 10,
        ..common::listener_config()
    };
    let sender = Config {
        max_frame_size: 64 << 10,
        ..Config::default()
    };
    let mut pair = Pair::with(sender, big);
    let channel = pair.open(ECHO);
    for _ in 0..8 {
        pair.a
            .send_msg(channel, Message::new(vec![1u8; 64 << 10]))
            .unwrap();
    }
    // All eight 64 KiB messages fit the 1 MiB window without any SEQ.
    let mut sent = 0;
    while let Some(bytes) = pair.a.poll_transmit() {
        sent += bytes.len();
        pair.b.handle_input(&bytes).unwrap();
    }
    assert!(sent > 8 * (64 << 10));
}

#[test]
fn rfc3081_3_1_4_bulk_transfer_does_not_starve_a_small_request() {
    let mut pair = Pair::new();
    let bulk = pair.open(ECHO);
    let small = pair.open(ECHO);
    pair.a
        .send_msg(bulk, Message::new(vec![0u8; 200_000]))
        .unwrap();
    pair.a.send_msg(small, Message::new("tiny")).unwrap();
    // Deliver a few transmit batches only: the small message must already
    // be through while the bulk one is far from complete.
    let mut delivered_small = false;
    for _ in 0..4 {
        if let Some(bytes) = pair.a.poll_transmit() {
            pair.b.handle_input(&bytes).unwrap();
        }
        while let Some(e) = pair.b.poll_event() {
            if let Event::Message(m) = &e {
                assert_eq!(m.channel, small, "bulk cannot be complete yet");
                delivered_small = true;
            }
        }
        while let Some(bytes) = pair.b.poll_transmit() {
            pair.a.handle_input(&bytes).unwrap();
        }
    }
    assert!(delivered_small);
}

#[test]
fn rfc3080_2_3_1_3_close_a_channel() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a
        .close_channel(channel, ReplyCode::SUCCESS, "done")
        .unwrap();
    assert_eq!(
        pair.a.send_msg(channel, Message::new("late")),
        Err(UsageError::ChannelClosing { channel }),
        "RFC 3080 2.3.1.3"
    );
    pair.pump();
    match &pair.b_events[..] {
        [
            Event::CloseRequested {
                channel: c,
                code,
                lang: None,
                text,
            },
        ] => {
            assert_eq!(
                (*c, *code, text.as_str()),
                (channel, ReplyCode::SUCCESS, "done")
            );
        }
        other => panic!("{other:?}"),
    }
    pair.b_events.clear();
    pair.b.accept_close(channel).unwrap();
    pair.pump();
    assert_eq!(pair.a_events, vec![Event::ChannelClosed { channel }]);
    assert_eq!(pair.b_events, vec![Event::ChannelClosed { channel }]);
    assert!(!pair.a.is_channel_open(channel) && !pair.b.is_channel_open(channel));
}

#[test]
fn rfc3080_2_3_1_3_close_refused_keeps_the_channel() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    pair.pump();
    pair.b_events.clear();
    pair.b
        .deny_close(
            channel,
            ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
            "still working",
        )
        .unwrap();
    pair.pump();
    assert!(
        matches!(&pair.a_events[..], [Event::CloseRefused { channel: c, .. }] if *c == channel)
    );
    pair.a
        .send_msg(channel, Message::new("still open"))
        .unwrap();
    pair.pump();
    assert_eq!(take_messages(&mut pair.b_events).len(), 1);
}

#[test]
fn rfc3080_2_3_1_3_close_waits_for_outstanding_replies() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let msgno = pair.b.send_msg(channel, Message::new("from b")).unwrap();
    let _ = msgno;
    pair.pump();
    // a has a MSG to answer; b asks to close; a agrees, but its <ok/> must
    // wait until its reply is out (RFC 3080 2.3.1.3).
    pair.b
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    pair.pump();
    let request = take_messages(&mut pair.a_events);
    assert_eq!(request.len(), 1);
    pair.a_events.clear();
    // b may not send <close> before its MSG is acknowledged (RFC 3080 2.3.1.3).
    assert!(pair.a_events.is_empty());
    pair.a
        .send_rpy(channel, request[0].msgno, Message::new("answer"))
        .unwrap();
    pair.pump();
    assert!(
        pair.a_events
            .iter()
            .any(|e| matches!(e, Event::CloseRequested { .. }))
    );
    pair.a.accept_close(channel).unwrap();
    pair.pump();
    let replies = take_messages(&mut pair.b_events);
    assert_eq!(
        replies.len(),
        1,
        "the reply arrives before the channel closes"
    );
    assert!(pair.b_events.contains(&Event::ChannelClosed { channel }));
}

#[test]
fn rfc3080_2_3_1_3_ok_waits_for_our_own_replies() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a.send_msg(channel, Message::new("question")).unwrap();
    pair.pump();
    let question = take_messages(&mut pair.b_events).remove(0);
    // b got the MSG, then a's close (a's MSG has no reply yet, so a's close
    // is held back: RFC 3080 2.3.1.3).
    pair.a
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    pair.pump();
    assert!(
        pair.b_events.is_empty(),
        "close sent before the MSG was acknowledged"
    );
    pair.b
        .send_rpy(channel, question.msgno, Message::new("answer"))
        .unwrap();
    pair.pump();
    assert!(matches!(&pair.b_events[..], [Event::CloseRequested { .. }]));
    pair.b.accept_close(channel).unwrap();
    pair.pump();
    let events = std::mem::take(&mut pair.a_events);
    assert!(
        matches!(&events[..], [Event::Message(m), Event::ChannelClosed { .. }] if m.kind == MessageKind::Rpy)
    );
}

#[test]
fn rfc3080_2_3_1_3_close_in_transit_closes_once_without_deadlock() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    pair.b
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    pair.pump();
    assert_eq!(pair.a_events, vec![Event::ChannelClosed { channel }]);
    assert_eq!(pair.b_events, vec![Event::ChannelClosed { channel }]);
}

#[test]
fn rfc3080_2_4_session_release() {
    let mut pair = Pair::new();
    pair.open(ECHO);
    pair.a.close_session(ReplyCode::SUCCESS, "bye").unwrap();
    pair.pump();
    assert!(matches!(
        &pair.b_events[..],
        [Event::CloseRequested { channel: 0, .. }]
    ));
    pair.b_events.clear();
    pair.b.accept_close(0).unwrap();
    pair.pump();
    assert_eq!(
        pair.a_events,
        vec![Event::SessionEnded(SessionEnd::Released)]
    );
    assert_eq!(
        pair.b_events,
        vec![Event::SessionEnded(SessionEnd::Released)]
    );
    assert!(pair.a.is_ended() && pair.b.is_ended());
}

#[test]
fn rfc3080_2_4_release_refused_keeps_the_session() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a.close_session(ReplyCode::SUCCESS, "").unwrap();
    pair.pump();
    pair.b_events.clear();
    pair.b
        .deny_close(0, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "still working")
        .unwrap();
    pair.pump();
    assert!(matches!(
        &pair.a_events[..],
        [Event::CloseRefused { channel: 0, .. }]
    ));
    pair.a.send_msg(channel, Message::new("alive")).unwrap();
    pair.pump();
    assert_eq!(take_messages(&mut pair.b_events).len(), 1);
}

#[test]
fn rfc3080_2_3_1_3_session_release_in_transit() {
    let mut pair = Pair::new();
    pair.a.close_session(ReplyCode::SUCCESS, "").unwrap();
    pair.b.close_session(ReplyCode::SUCCESS, "").unwrap();
    pair.pump();
    assert_eq!(
        pair.a_events,
        vec![Event::SessionEnded(SessionEnd::Released)]
    );
    assert_eq!(
        pair.b_events,
        vec![Event::SessionEnded(SessionEnd::Released)]
    );
}

#[test]
fn rfc3080_2_3_three_hundred_channels_at_once() {
    let mut pair = Pair::new();
    let channels: Vec<u32> = (0..300)
        .map(|_| pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap())
        .collect();
    pair.pump();
    for _ in 0..300 {
        let request = take_start(&mut pair.b_events);
        pair.b
            .accept_start(request.channel, Profile::new(ECHO))
            .unwrap();
    }
    pair.pump();
    pair.a_events.clear();
    for &c in &channels {
        pair.a.send_msg(c, Message::new(format!("on {c}"))).unwrap();
    }
    pair.pump();
    pair.echo_all();
    let replies = take_messages(&mut pair.a_events);
    assert_eq!(replies.len(), 300);
    for r in replies {
        assert_eq!(r.message.body(), format!("on {}", r.channel).as_bytes());
    }
}

#[test]
fn channel_limit_refuses_further_starts() {
    let config = Config {
        max_channels: 2,
        ..common::listener_config()
    };
    let mut pair = Pair::with(Config::default(), config);
    pair.open(ECHO);
    pair.open(ECHO);
    pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    assert!(
        matches!(&pair.a_events[..], [Event::ChannelRefused { error, .. }] if error.code == ReplyCode::SERVICE_NOT_AVAILABLE)
    );
}

#[test]
fn streaming_mode_delivers_frames() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.b.set_streaming(channel, true).unwrap();
    pair.a
        .send_msg(channel, Message::new(vec![9u8; 10_000]))
        .unwrap();
    pair.pump();
    let frames: Vec<_> = pair
        .b_events
        .iter()
        .filter_map(|e| match e {
            Event::Frame(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    // 4096 octets (the first window), then the rest in the window that
    // grew when the peer used up the first (RFC 3081 3.1.4).
    assert!(frames.len() >= 2, "{} frames", frames.len());
    let (last, before) = frames.split_last().unwrap();
    assert!(before.iter().all(|f| f.more) && !last.more);
    let total: usize = frames.iter().map(|f| f.payload.len()).sum();
    assert_eq!(total, 10_002);
    // A reply is allowed once the first frame is in (RFC 3080 2.6).
    pair.b
        .send_rpy(channel, frames[0].msgno, Message::new("got it"))
        .unwrap();
    pair.pump();
    assert_eq!(take_messages(&mut pair.a_events).len(), 1);
}

#[test]
fn replies_to_unknown_requests_are_usage_errors() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    assert_eq!(
        pair.b.send_rpy(channel, MsgNo(42), Message::new("x")),
        Err(UsageError::NoSuchRequest {
            channel,
            msgno: MsgNo(42)
        })
    );
    assert_eq!(
        pair.b.send_rpy(99, MsgNo(0), Message::new("x")),
        Err(UsageError::UnknownChannel { channel: 99 })
    );
    assert!(
        pair.a.send_msg(0, Message::new("x")).is_err(),
        "channel 0 is for management only"
    );
}

#[test]
fn nul_is_sent_with_size_zero() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let msgno = pair.a.send_msg(channel, Message::new("q")).unwrap();
    pair.pump();
    take_messages(&mut pair.b_events);
    pair.b.send_nul(channel, msgno).unwrap();
    let bytes = pair.b.poll_transmit().unwrap();
    let (header, _) = parse_header(&bytes, 128).unwrap().unwrap();
    match header {
        Header::Frame(h) => {
            assert_eq!((h.frame_type, h.size, h.more), (FrameType::Nul, 0, false));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rfc3080_2_3_1_2_init_content_is_limited_to_4k() {
    let mut pair = Pair::new();
    let big = Profile::new(ECHO).with_content(vec![b'x'; 4097]);
    assert!(matches!(
        pair.a.open_channel(vec![big], None),
        Err(UsageError::InitContentTooLarge { .. })
    ));
    let fits = Profile::new(ECHO).with_content(vec![b'x'; 4096]);
    pair.a.open_channel(vec![fits], None).unwrap();
    pair.pump();
    assert_eq!(
        take_start(&mut pair.b_events).profiles[0]
            .content
            .as_ref()
            .map(|c| c.len()),
        Some(4096)
    );
}

#[test]
fn rfc3080_2_3_1_3_xml_lang_only_when_not_the_peers_first_choice() {
    // b writes French diagnostics; a asked for French first: no xml:lang.
    let french = Config {
        localize: Some("fr en".into()),
        ..Config::default()
    };
    let b_config = Config {
        diagnostic_language: Some("fr".into()),
        ..common::listener_config()
    };
    let mut pair = Pair::with(french, b_config.clone());
    let channel = pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    take_start(&mut pair.b_events);
    pair.b
        .deny_start(channel, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "non")
        .unwrap();
    pair.pump();
    assert!(
        matches!(&pair.a_events[..], [Event::ChannelRefused { error, .. }] if error.lang.is_none())
    );
    // a prefers English: the French text is labelled.
    let english = Config {
        localize: Some("en".into()),
        ..Config::default()
    };
    let mut pair = Pair::with(english, b_config);
    let channel = pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    take_start(&mut pair.b_events);
    pair.b
        .deny_start(channel, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "non")
        .unwrap();
    pair.pump();
    assert!(
        matches!(&pair.a_events[..], [Event::ChannelRefused { error, .. }] if error.lang.as_deref() == Some("fr"))
    );
}

#[test]
fn rfc3080_2_3_1_3_closing_a_channel_the_peer_asked_to_close_answers_them() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    pair.pump();
    assert!(matches!(&pair.b_events[..], [Event::CloseRequested { .. }]));
    pair.b_events.clear();
    // b closes instead of accepting: that is agreement, and a's request
    // still gets its answer.
    pair.b
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    pair.pump();
    assert_eq!(pair.a_events, vec![Event::ChannelClosed { channel }]);
    assert_eq!(pair.b_events, vec![Event::ChannelClosed { channel }]);
    assert!(
        pair.b.accept_close(channel).is_err(),
        "nothing left to accept"
    );
    // Channel 0 is not wedged: a new channel and a release still work.
    pair.a_events.clear();
    pair.b_events.clear();
    pair.open(ECHO);
    pair.a.close_session(ReplyCode::SUCCESS, "").unwrap();
    pair.pump();
    pair.b.accept_close(0).unwrap();
    pair.pump();
    assert!(pair.a.is_ended() && pair.b.is_ended());
}

#[test]
fn rfc3080_2_3_1_3_no_new_channel_business_after_asking_for_release() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a.close_session(ReplyCode::SUCCESS, "").unwrap();
    assert_eq!(
        pair.a.open_channel(vec![Profile::new(ECHO)], None),
        Err(UsageError::ChannelClosing { channel: 0 })
    );
    assert_eq!(
        pair.a.close_channel(channel, ReplyCode::SUCCESS, ""),
        Err(UsageError::ChannelClosing { channel: 0 })
    );
    // The peer agreed: the agreeing side sends nothing new either.
    pair.pump();
    pair.b.accept_close(0).unwrap();
    assert!(pair.b.send_msg(channel, Message::new("late")).is_err());
    pair.pump();
    assert!(pair.a.is_ended() && pair.b.is_ended());
}

#[test]
fn rfc3080_2_6_an_early_error_cuts_our_message_short() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.b.set_streaming(channel, true).unwrap();
    let msgno = pair
        .a
        .send_msg(channel, Message::new(vec![0u8; 500_000]))
        .unwrap();
    // One frame in, b refuses the whole message.
    let first = pair.a.poll_transmit().unwrap();
    pair.b.handle_input(&first).unwrap();
    let Some(Event::Frame(frame)) = pair.b.poll_event() else {
        panic!()
    };
    assert!(frame.more);
    pair.b
        .send_err(channel, msgno, Message::new("too big"))
        .unwrap();
    pair.pump();
    // a stopped sending: one empty final frame ended the MSG (RFC 3080 2.6).
    let frames: Vec<_> = pair
        .b_events
        .iter()
        .filter_map(|e| match e {
            Event::Frame(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    let last = frames.last().unwrap();
    assert!(!last.more && last.payload.is_empty(), "{last:?}");
    assert!(frames.iter().map(|f| f.payload.len()).sum::<usize>() < 500_000 / 2);
    assert_eq!(pair.a.queued_output(), 0);
    assert!(
        pair.a_events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.kind == MessageKind::Err))
    );
}

#[test]
fn streaming_cannot_be_switched_in_the_middle_of_a_message() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a
        .send_msg(channel, Message::new(vec![0u8; 10_000]))
        .unwrap();
    let first = pair.a.poll_transmit().unwrap();
    let (header, used) = beep_proto::frame::parse_header(&first, 128)
        .unwrap()
        .unwrap();
    let Header::Frame(h) = header else { panic!() };
    // Feed exactly the first frame.
    pair.b
        .handle_input(&first[..used + h.size as usize + 5])
        .unwrap();
    assert_eq!(
        pair.b.set_streaming(channel, true),
        Err(UsageError::MessageInProgress { channel })
    );
}

#[test]
fn a_zero_transmit_batch_still_sends() {
    let config = Config {
        transmit_batch: 0,
        ..Config::default()
    };
    let mut pair = Pair::with(
        config.clone(),
        Config {
            transmit_batch: 0,
            ..common::listener_config()
        },
    );
    let channel = pair.open(ECHO);
    pair.a.send_msg(channel, Message::new("x")).unwrap();
    pair.pump();
    assert_eq!(take_messages(&mut pair.b_events).len(), 1);
    let _ = config;
}

#[test]
fn replies_held_for_their_turn_are_not_queued_output() {
    // A driver waits while queued output is over its limit; a reply held
    // behind an earlier unanswered MSG must not count, or waiting for room
    // could wait for the very reply that releases it.
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let first = pair.a.send_msg(channel, Message::new("1")).unwrap();
    let second = pair.a.send_msg(channel, Message::new("2")).unwrap();
    pair.pump();
    take_messages(&mut pair.b_events);
    pair.b
        .send_rpy(channel, second, Message::new(vec![0u8; 100_000]))
        .unwrap();
    assert_eq!(pair.b.queued_output(), 0, "held, not queued");
    pair.b
        .send_rpy(channel, first, Message::new("one"))
        .unwrap();
    assert!(
        pair.b.queued_output() > 100_000,
        "both released to the queue"
    );
    pair.pump();
    assert_eq!(pair.b.queued_output(), 0);
    assert_eq!(take_messages(&mut pair.a_events).len(), 2);
}

#[test]
fn vectored_output_is_the_same_stream_and_shares_the_payload() {
    let config = Config {
        max_frame_size: 64 << 10,
        ..Config::default()
    };
    let payload = bytes::Bytes::from(vec![7u8; 100_000]);
    let message = Message::new(payload.clone()).with_header("Content-Type", "x/y");
    // Two identical sessions given the same calls.
    // A window that lets 64 KiB frames through (smaller ones are copied).
    let listener = Config {
        receive_window: 1 << 20,
        ..common::listener_config()
    };
    let mut copying = Pair::with(config.clone(), listener.clone());
    let mut vectored = Pair::with(config, listener);
    let (c1, c2) = (copying.open(ECHO), vectored.open(ECHO));
    for (pair, channel) in [(&mut copying, c1), (&mut vectored, c2)] {
        pair.a.send_msg(channel, message.clone()).unwrap();
        pair.a.send_msg(channel, Message::new("small")).unwrap();
    }
    let mut expected = Vec::new();
    while let Some(bytes) = copying.a.poll_transmit() {
        expected.extend_from_slice(&bytes);
    }
    let (mut got, mut chunks) = (Vec::new(), Vec::new());
    let mut shared = false;
    while vectored.a.poll_transmit_vectored(&mut chunks) {
        for chunk in chunks.drain(..) {
            // A chunk inside the application's buffer was not copied.
            let range = payload.as_ptr_range();
            shared |= chunk.len() >= 8 << 10 && range.contains(&chunk.as_ptr());
            got.extend_from_slice(&chunk);
        }
    }
    assert_eq!(got, expected);
    assert!(shared, "the large payload was copied");
    vectored.b.handle_input(&got).unwrap();
}

/// Sends one 60,000-octet MSG from `a` and returns the payload octets that
/// can go out before `b` says anything more (`b` reads them).
fn octets_sent_at_once(pair: &mut Pair, channel: u32) -> usize {
    pair.a
        .send_msg(channel, Message::new(vec![7u8; 60_000]))
        .unwrap();
    let mut sent = 0;
    while let Some(bytes) = pair.a.poll_transmit() {
        // The peer receives it all (and answers only when pumped).
        pair.b.handle_input(&bytes).unwrap();
        let mut rest = &bytes[..];
        while let Ok(Some((header, used))) = parse_header(rest, 128) {
            rest = &rest[used..];
            if let Header::Frame(h) = header {
                sent += h.size as usize;
                rest = &rest[h.size as usize + 5..];
            }
        }
    }
    sent
}

#[test]
fn rfc3081_3_1_4_a_channel_window_raised_later_is_advertised_at_once() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    assert_eq!(octets_sent_at_once(&mut pair, channel), 4096);
    pair.pump();
    take_messages(&mut pair.b_events);
    // The listener raises its window on this channel: a SEQ says so.
    pair.b.set_receive_window(channel, 1 << 20).unwrap();
    pair.pump();
    take_messages(&mut pair.b_events);
    // The whole entity: 60,000 octets of body and its 2-octet header block.
    assert_eq!(octets_sent_at_once(&mut pair, channel), 60_002);
    // Out of range, or not a channel: refused, nothing changed.
    assert!(pair.b.set_receive_window(channel, 100).is_err());
    assert_eq!(
        pair.b.set_receive_window(99, 1 << 20),
        Err(UsageError::UnknownChannel { channel: 99 })
    );
}
