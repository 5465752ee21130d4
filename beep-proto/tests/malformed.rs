//! Every poorly-formed input of RFC 3080 2.2.1.1 ends the session with a
//! typed error naming the rule; nothing panics, and events accepted before
//! the violation are not lost. Test names cite the RFC section they prove
//! (see CONFORMANCE.md).

use beep_proto::frame::{Field, FrameError, FrameType};
use beep_proto::xml::Profile;
use beep_proto::{
    AnsNo, Config, Event, Message, MessageKind, MsgNo, ProtocolError, Session, SessionEnd,
};

const ECHO: &str = "http://example.org/beep/echo";

/// LibVortex's initiator greeting: 52 octets of channel 0.
const GREETING: &[u8] =
    b"RPY 0 0 . 0 52\r\nContent-Type: application/beep+xml\r\n\r\n<greeting />\r\nEND\r\n";

fn greeted_listener() -> Session {
    let mut s = Session::listener(Config {
        profiles: vec![ECHO.into()],
        ..Config::default()
    });
    s.handle_input(GREETING).unwrap();
    while s.poll_transmit().is_some() {}
    assert!(matches!(s.poll_event(), Some(Event::Greeting(_))));
    s
}

/// A listener with channel 1 open; channel 1 expects seqno 0 next.
fn listener_with_channel() -> Session {
    let mut s = greeted_listener();
    let body = format!(
        "Content-Type: application/beep+xml\r\n\r\n<start number='1'><profile uri='{ECHO}' /></start>\r\n"
    );
    let start = format!("MSG 0 0 . 52 {}\r\n{body}END\r\n", body.len());
    s.handle_input(start.as_bytes()).unwrap();
    let Some(Event::StartRequested(req)) = s.poll_event() else {
        panic!()
    };
    s.accept_start(req.channel, Profile::new(ECHO)).unwrap();
    while s.poll_transmit().is_some() {}
    s
}

fn frame_error(s: &mut Session, input: &[u8]) -> FrameError {
    match s.handle_input(input) {
        Err(ProtocolError::Frame(e)) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn hardening_issue_inputs_are_rejected_with_the_rule() {
    let cases: [(&[u8], FrameError); 6] = [
        (b"RPY\n", FrameError::BareLineFeed),
        (b"\n", FrameError::BareLineFeed),
        (
            b"RPY\r\n",
            FrameError::Malformed {
                field: Field::Channel,
            },
        ),
        (b"\0", FrameError::InvalidByte { byte: 0, offset: 0 }),
        (
            b"RPY 1234123\0\r\n",
            FrameError::InvalidByte {
                byte: 0,
                offset: 11,
            },
        ),
        (
            b"MSG 0\0 1 . 0 0\r\n",
            FrameError::InvalidByte { byte: 0, offset: 5 },
        ),
    ];
    for (input, expected) in cases {
        let mut s = greeted_listener();
        assert_eq!(frame_error(&mut s, input), expected);
        assert!(s.is_ended());
        assert_eq!(s.handle_input(b"MSG"), Ok(()));
    }
}

#[test]
fn rfc3080_2_2_1_numbers_out_of_range() {
    let mut s = greeted_listener();
    assert_eq!(
        frame_error(&mut s, b"MSG 0 2147483648 . 52 0\r\n"),
        FrameError::OutOfRange {
            field: Field::Msgno,
            max: 2147483647
        }
    );
    let mut s = greeted_listener();
    assert_eq!(
        frame_error(&mut s, b"MSG 0 1 . 4294967296 0\r\n"),
        FrameError::OutOfRange {
            field: Field::Seqno,
            max: u32::MAX
        }
    );
}

#[test]
fn hardening_signs_spaces_and_lowercase() {
    for input in [
        &b"MSG 0 +1 . 52 0\r\n"[..],
        b"MSG 0 -1 . 52 0\r\n",
        b"MSG  0 1 . 52 0\r\n",
        b" MSG 0 1 . 52 0\r\n",
        b"msg 0 1 . 52 0\r\n",
    ] {
        let mut s = greeted_listener();
        assert!(
            matches!(s.handle_input(input), Err(ProtocolError::Frame(_))),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn rfc3080_2_2_1_3_missing_end_is_detected_at_its_first_byte() {
    let mut s = listener_with_channel();
    assert_eq!(
        s.handle_input(b"MSG 1 0 . 0 4\r\n\r\nabX"),
        Err(ProtocolError::MissingTrailer { channel: 1 })
    );
    let mut s = listener_with_channel();
    assert_eq!(
        s.handle_input(b"MSG 1 0 . 0 4\r\n\r\nabENX\r\n"),
        Err(ProtocolError::MissingTrailer { channel: 1 })
    );
}

#[test]
fn rfc3080_2_2_1_1_wrong_seqno() {
    let mut s = listener_with_channel();
    assert_eq!(
        s.handle_input(b"MSG 1 0 . 7 2\r\n\r\nEND\r\n"),
        Err(ProtocolError::UnexpectedSeqno {
            channel: 1,
            expected: 0,
            got: 7
        })
    );
}

#[test]
fn rfc3080_2_2_1_1_msg_on_a_channel_not_open() {
    let mut s = greeted_listener();
    assert_eq!(
        s.handle_input(b"MSG 5 0 . 0 2\r\n"),
        Err(ProtocolError::ChannelNotOpen { channel: 5 }),
        "decided at the header, before any payload"
    );
}

#[test]
fn rfc3080_2_2_1_1_reply_for_a_msgno_never_sent() {
    let mut s = listener_with_channel();
    assert_eq!(
        s.handle_input(b"RPY 1 0 . 0 2\r\n"),
        Err(ProtocolError::UnsolicitedReply {
            channel: 1,
            frame_type: FrameType::Rpy,
            msgno: MsgNo(0)
        })
    );
}

#[test]
fn rfc3080_2_2_1_1_reply_out_of_order() {
    let mut s = listener_with_channel();
    s.send_msg(1, Message::new("a")).unwrap();
    s.send_msg(1, Message::new("b")).unwrap();
    while s.poll_transmit().is_some() {}
    assert_eq!(
        s.handle_input(b"RPY 1 1 . 0 2\r\n"),
        Err(ProtocolError::ReplyOutOfOrder {
            channel: 1,
            msgno: MsgNo(1),
            expected: MsgNo(0)
        })
    );
}

#[test]
fn rfc3080_2_2_1_1_nul_with_continuation_or_payload() {
    for input in [&b"NUL 1 0 * 0 0\r\n"[..], b"NUL 1 0 . 0 3\r\n"] {
        let mut s = listener_with_channel();
        s.send_msg(1, Message::new("q")).unwrap();
        while s.poll_transmit().is_some() {}
        assert_eq!(
            s.handle_input(input),
            Err(ProtocolError::InvalidNul {
                channel: 1,
                msgno: MsgNo(0)
            })
        );
    }
}

#[test]
fn nul_with_libvortex_empty_mime_block_is_accepted() {
    let mut s = listener_with_channel();
    s.send_msg(1, Message::new("q")).unwrap();
    while s.poll_transmit().is_some() {}
    s.handle_input(b"ANS 1 0 . 0 3 0\r\n\r\nxEND\r\nNUL 1 0 . 3 2\r\n\r\nEND\r\n")
        .unwrap();
    let kinds: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(kinds.len(), 2);
    // But a two-octet NUL with other content is still wrong.
    let mut s = listener_with_channel();
    s.send_msg(1, Message::new("q")).unwrap();
    while s.poll_transmit().is_some() {}
    assert!(s.handle_input(b"NUL 1 0 . 0 2\r\nabEND\r\n").is_err());
}

#[test]
fn rfc3080_2_2_1_1_nul_after_rpy_and_rpy_after_ans() {
    let mut s = listener_with_channel();
    s.send_msg(1, Message::new("q")).unwrap();
    while s.poll_transmit().is_some() {}
    assert!(matches!(
        s.handle_input(b"ANS 1 0 . 0 2 0\r\n\r\nEND\r\nRPY 1 0 . 2 2\r\n"),
        Err(ProtocolError::MixedReply {
            previous: FrameType::Ans,
            got: FrameType::Rpy,
            ..
        })
    ));
}

#[test]
fn rfc3080_2_2_1_1_interleaved_message_inside_a_multi_frame_message() {
    let mut s = listener_with_channel();
    assert!(matches!(
        s.handle_input(b"MSG 1 0 * 0 2\r\n\r\nEND\r\nMSG 1 1 . 2 2\r\n"),
        Err(ProtocolError::InterleavedFrame {
            previous: FrameType::Msg,
            previous_msgno: MsgNo(0),
            got_msgno: MsgNo(1),
            ..
        })
    ));
    // The first frame's MSG is still pending; no event was produced for
    // it, only the end of the session.
    assert!(matches!(
        s.poll_event(),
        Some(Event::SessionEnded(SessionEnd::Violation(
            ProtocolError::InterleavedFrame { .. }
        )))
    ));
    assert!(s.poll_event().is_none());
}

#[test]
fn rfc3080_2_2_1_1_msgno_reused_while_unanswered() {
    let mut s = listener_with_channel();
    s.handle_input(b"MSG 1 0 . 0 2\r\n\r\nEND\r\n").unwrap();
    assert_eq!(
        s.handle_input(b"MSG 1 0 . 2 2\r\n"),
        Err(ProtocolError::MsgnoInUse {
            channel: 1,
            msgno: MsgNo(0)
        })
    );
    // Nothing already accepted is lost: the first MSG is still there.
    assert!(matches!(s.poll_event(), Some(Event::Message(m)) if m.msgno == MsgNo(0)));
}

#[test]
fn rfc3080_2_2_1_1_msgno_reusable_after_the_reply() {
    let mut s = listener_with_channel();
    s.handle_input(b"MSG 1 0 . 0 2\r\n\r\nEND\r\n").unwrap();
    let Some(Event::Message(m)) = s.poll_event() else {
        panic!()
    };
    s.send_rpy(1, m.msgno, Message::new("")).unwrap();
    s.handle_input(b"MSG 1 0 . 2 2\r\n\r\nEND\r\n").unwrap();
}

#[test]
fn rfc3081_3_1_2_frame_beyond_the_window_is_refused_at_the_header() {
    let mut s = listener_with_channel();
    // 200 MB announced: refused before a single payload octet arrives.
    assert_eq!(
        s.handle_input(b"MSG 1 0 . 0 200000000\r\n"),
        Err(ProtocolError::WindowExceeded {
            channel: 1,
            size: 200_000_000,
            available: 4096
        })
    );
}

#[test]
fn message_beyond_the_size_limit_is_refused_at_the_header() {
    let mut s = Session::listener(Config {
        max_message_size: 3000,
        ..Config::default()
    });
    s.handle_input(GREETING).unwrap();
    let body = "Content-Type: application/beep+xml\r\n\r\n<start number='1'><profile uri='p' /></start>\r\n";
    let start = format!("MSG 0 0 . 52 {}\r\n{body}END\r\n", body.len());
    s.handle_input(start.as_bytes()).unwrap();
    let _ = s.poll_event();
    let Some(Event::StartRequested(_)) = s.poll_event() else {
        panic!()
    };
    s.accept_start(1, Profile::new("p")).unwrap();
    let mut first = b"MSG 1 0 * 0 2000\r\n".to_vec();
    first.extend(std::iter::repeat_n(b'x', 2000));
    first.extend_from_slice(b"END\r\n");
    s.handle_input(&first).unwrap();
    assert_eq!(
        s.handle_input(b"MSG 1 0 . 2000 1500\r\n"),
        Err(ProtocolError::MessageTooLarge {
            channel: 1,
            limit: 3000
        })
    );
}

#[test]
fn rfc3081_3_1_3_seq_acknowledging_octets_never_sent() {
    let mut s = listener_with_channel();
    assert_eq!(
        s.handle_input(b"SEQ 1 10 4096\r\n"),
        Err(ProtocolError::AckBeyondSent {
            channel: 1,
            ackno: 10,
            sent: 0
        })
    );
}

#[test]
fn rfc3080_2_3_1_1_first_frame_must_be_the_greeting() {
    let mut s = Session::listener(Config::default());
    assert_eq!(
        s.handle_input(b"MSG 0 1 . 0 5\r\n"),
        Err(ProtocolError::GreetingExpected)
    );
}

#[test]
fn rfc3080_2_2_2_1_poorly_formed_reply_on_channel_zero_ends_the_session() {
    let mut s = Session::initiator(Config::default());
    let body = "Content-Type: application/beep+xml\r\n\r\n<greeting><bogus/></greeting>";
    let input = format!("RPY 0 0 . 0 {}\r\n{body}END\r\n", body.len());
    assert!(matches!(
        s.handle_input(input.as_bytes()),
        Err(ProtocolError::Xml(_))
    ));
    let mut s = Session::initiator(Config::default());
    let body = "Content-Type: application/beep+xml\r\n\r\n<ok />";
    let input = format!("RPY 0 0 . 0 {}\r\n{body}END\r\n", body.len());
    assert!(matches!(
        s.handle_input(input.as_bytes()),
        Err(ProtocolError::BadChannelZeroReply { .. })
    ));
}

#[test]
fn rfc3080_2_3_1_3_malformed_request_on_channel_zero_gets_an_error_reply() {
    let mut s = greeted_listener();
    let mut seqno = 52;
    for (msgno, body) in [
        (0, "<start number='2'><profile uri='p'/></start>"),
        (1, "<nonsense/>"),
    ] {
        let entity = format!("Content-Type: application/beep+xml\r\n\r\n{body}");
        let input = format!(
            "MSG 0 {msgno} . {seqno} {}\r\n{entity}END\r\n",
            entity.len()
        );
        seqno += entity.len();
        s.handle_input(input.as_bytes()).unwrap();
        let out = s.poll_transmit().unwrap();
        assert!(
            out.starts_with(format!("ERR 0 {msgno} . ").as_bytes()),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(!s.is_ended(), "a bad request is answered, not fatal");
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_errors() {
    let input = b"MSG 1 0 . 0 2\r\n\r\nEND\r\nMSG 1 0 . 2 2\r\n";
    let mut whole = listener_with_channel();
    let expected = whole.handle_input(input).unwrap_err();
    let mut split = listener_with_channel();
    let mut got = None;
    for b in input {
        if let Err(e) = split.handle_input(std::slice::from_ref(b)) {
            got = Some(e);
            break;
        }
    }
    assert_eq!(got, Some(expected));
}

#[test]
fn hardening_answers_in_progress_at_once_are_collated_by_ansno() {
    let mut s = listener_with_channel();
    s.send_msg(1, Message::new("q")).unwrap();
    while s.poll_transmit().is_some() {}
    s.handle_input(
        b"ANS 1 0 * 0 4 0\r\n\r\na0END\r\n\
          ANS 1 0 * 4 4 1\r\n\r\nb0END\r\n\
          ANS 1 0 . 8 2 1\r\nb1END\r\n\
          ANS 1 0 . 10 2 0\r\na1END\r\n\
          NUL 1 0 . 12 0\r\nEND\r\n",
    )
    .unwrap();
    let got: Vec<(MessageKind, Vec<u8>)> = std::iter::from_fn(|| s.poll_event())
        .map(|e| match e {
            Event::Message(m) => (m.kind, m.message.body().to_vec()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (MessageKind::Ans { ansno: AnsNo(1) }, b"b0b1".to_vec()),
            (MessageKind::Ans { ansno: AnsNo(0) }, b"a0a1".to_vec()),
            (MessageKind::Nul, Vec::new()),
        ]
    );
}

#[test]
fn rfc3080_2_2_1_1_a_violation_ends_the_session_without_a_word() {
    let mut s = listener_with_channel();
    // A reply is queued, then the peer misbehaves: nothing more goes out.
    s.handle_input(b"MSG 1 0 . 0 2\r\n\r\nEND\r\n").unwrap();
    let Some(Event::Message(m)) = s.poll_event() else {
        panic!()
    };
    s.send_rpy(1, m.msgno, Message::new("late")).unwrap();
    assert!(s.handle_input(b"BOGUS\r\n").is_err());
    assert!(!s.wants_transmit());
    assert_eq!(s.poll_transmit(), None);
}

#[test]
fn junk_requests_on_channel_zero_cannot_grow_our_output() {
    let mut s = Session::listener(Config {
        max_pipelined: 8,
        ..Config::default()
    });
    s.handle_input(GREETING).unwrap();
    // Empty MSGs on channel 0, each answered with an <error> that the
    // peer never grants window for.
    let mut result = Ok(());
    for msgno in 0..100 {
        result = s.handle_input(format!("MSG 0 {msgno} . 52 0\r\nEND\r\n").as_bytes());
        if result.is_err() {
            break;
        }
        // Take nothing out: the peer grants no window on channel 0 anyway.
    }
    assert!(
        matches!(
            result,
            Err(ProtocolError::TooManyPipelined { channel: 0, .. })
        ),
        "{result:?}"
    );
}

#[test]
fn answers_in_progress_are_capped() {
    let mut s = listener_with_channel();
    s.send_msg(1, Message::new("q")).unwrap();
    while s.poll_transmit().is_some() {}
    let mut result = Ok(());
    for ansno in 0..1000u32 {
        result = s.handle_input(format!("ANS 1 0 * 0 0 {ansno}\r\nEND\r\n").as_bytes());
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(
            result,
            Err(ProtocolError::TooManyAnswers { channel: 1, .. })
        ),
        "{result:?}"
    );
}
