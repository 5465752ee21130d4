//! How a session ends, as an embedder sees it: one `Event::SessionEnded`
//! with the reason, last, whatever ended it (release, refusal, violation,
//! end of the transport), input after the end ignored, and the start
//! answers the RFC allows.

mod common;

use beep_proto::xml::Profile;
use beep_proto::{
    Event, Message, MessageKind, ProtocolError, ReplyCode, Session, SessionEnd, UsageError,
};
use common::{ECHO, OTHER, Pair, take_messages, take_start};

fn drain(session: &mut Session) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(bytes) = session.poll_transmit() {
        wire.extend_from_slice(&bytes);
    }
    wire
}

fn ended_events(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::SessionEnded(_)))
        .count()
}

#[test]
fn rfc3080_2_3_1_2_accepting_a_start_with_a_profile_not_offered_is_refused() {
    let mut pair = Pair::new();
    let channel = pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    let start = take_start(&mut pair.b_events);
    // OTHER is registered on the listener, but the peer did not offer it:
    // answering with it would make the peer end the session.
    assert_eq!(
        pair.b.accept_start(start.channel, Profile::new(OTHER)),
        Err(UsageError::ProfileNotOffered {
            channel,
            profile: OTHER.into()
        })
    );
    // The request still awaits its answer, and a right one works.
    pair.b
        .accept_start(start.channel, Profile::new(ECHO))
        .unwrap();
    pair.pump();
    assert!(
        pair.a_events
            .iter()
            .any(|e| matches!(e, Event::ChannelOpened { channel: c, .. } if *c == channel))
    );
    assert!(!pair.a.is_ended() && !pair.b.is_ended());
}

#[test]
fn rfc3081_eof_before_release_ends_the_session_after_everything_received() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a.send_msg(channel, Message::new("whole")).unwrap();
    let mut wire = drain(&mut pair.a);
    pair.a.send_msg(channel, Message::new("second")).unwrap();
    let second = drain(&mut pair.a);
    // The whole MSG, then part of a second frame, then the end of stream.
    wire.extend_from_slice(&second[..second.len() - 4]);
    pair.b.handle_input(&wire).unwrap();
    pair.b.handle_eof();
    let events: Vec<Event> = std::iter::from_fn(|| pair.b.poll_event()).collect();
    let [Event::Message(m), Event::SessionEnded(end)] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(
        (m.kind, &m.message.body()[..]),
        (MessageKind::Msg, &b"whole"[..])
    );
    assert_eq!(end, &SessionEnd::TransportClosed);
    assert_eq!(pair.b.end_reason(), Some(&SessionEnd::TransportClosed));
    // Later input and a second EOF change nothing and report nothing.
    assert_eq!(pair.b.handle_input(b"garbage\r\n"), Ok(()));
    pair.b.handle_eof();
    assert_eq!(pair.b.poll_event(), None);
    assert_eq!(
        pair.b.send_rpy(channel, m.msgno, Message::new("late")),
        Err(UsageError::SessionClosed)
    );
}

#[test]
fn rfc3080_2_3_1_3_eof_after_our_ok_is_queued_is_a_release_and_the_ok_goes_out() {
    let mut pair = Pair::new();
    pair.a.close_session(ReplyCode::SUCCESS, "bye").unwrap();
    pair.pump();
    assert!(matches!(
        &pair.b_events[..],
        [Event::CloseRequested { channel: 0, .. }]
    ));
    pair.b.accept_close(0).unwrap();
    // The peer half-closes before our <ok/> is written.
    pair.b.handle_eof();
    assert_eq!(
        pair.b.poll_event(),
        Some(Event::SessionEnded(SessionEnd::Released))
    );
    let wire = drain(&mut pair.b);
    assert!(
        String::from_utf8_lossy(&wire).contains("<ok />")
            || String::from_utf8_lossy(&wire).contains("<ok/>"),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    // ...and releases the peer too.
    pair.a.handle_input(&wire).unwrap();
    let a_events: Vec<Event> = std::iter::from_fn(|| pair.a.poll_event()).collect();
    assert_eq!(a_events, vec![Event::SessionEnded(SessionEnd::Released)]);
    // Nothing more is reported on either side.
    assert_eq!(pair.b.poll_event(), None);
}

#[test]
fn rfc3080_2_2_1_1_a_violation_is_reported_once_as_the_last_event() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    pair.a.send_msg(channel, Message::new("first")).unwrap();
    pair.a.send_msg(channel, Message::new("second")).unwrap();
    let mut wire = drain(&mut pair.a);
    wire.extend_from_slice(b"MSG 1 junk\r\n");
    let error: ProtocolError = pair.b.handle_input(&wire).unwrap_err();
    let events: Vec<Event> = std::iter::from_fn(|| pair.b.poll_event()).collect();
    assert_eq!(take_messages(&mut events.clone()).len(), 2);
    assert_eq!(
        events.last(),
        Some(&Event::SessionEnded(SessionEnd::Violation(error.clone())))
    );
    assert_eq!(ended_events(&events), 1);
    // Input after the end is ignored like after any other end (the error
    // was reported once, by the call that found it).
    assert_eq!(pair.b.handle_input(b"SEQ 0 0 4096\r\n"), Ok(()));
    assert_eq!(pair.b.poll_event(), None);
    // Nothing is sent after a violation (RFC 3080 2.2.1.1).
    assert_eq!(pair.b.poll_transmit(), None);
}

#[test]
fn a_refusing_listener_reports_its_own_end_and_still_sends_the_refusal() {
    let mut s = Session::refusing(Default::default(), ReplyCode::SERVICE_NOT_AVAILABLE, "full");
    assert!(matches!(
        s.poll_event(),
        Some(Event::SessionEnded(SessionEnd::Refused(e)))
            if e.code == ReplyCode::SERVICE_NOT_AVAILABLE && e.text == "full"
    ));
    assert!(s.poll_transmit().unwrap().starts_with(b"ERR 0 0 . 0 "));
    assert!(s.handle_input(b"anything").is_ok());
    assert_eq!(s.poll_event(), None);
}

#[test]
fn a_release_ends_each_side_with_exactly_one_event() {
    let mut pair = Pair::new();
    pair.open(ECHO);
    pair.a.close_session(ReplyCode::SUCCESS, "").unwrap();
    pair.pump();
    pair.b.accept_close(0).unwrap();
    pair.pump();
    // EOF after the release changes nothing.
    pair.a.handle_eof();
    pair.b.handle_eof();
    pair.pump();
    assert_eq!(ended_events(&pair.a_events), 1);
    assert_eq!(ended_events(&pair.b_events), 1);
    assert_eq!(pair.a.end_reason(), Some(&SessionEnd::Released));
    assert_eq!(pair.b.end_reason(), Some(&SessionEnd::Released));
}

#[test]
fn rfc3080_2_3_1_3_eof_while_the_peer_release_awaits_our_answer_waits_for_it() {
    let mut pair = Pair::new();
    pair.a.close_session(ReplyCode::SUCCESS, "bye").unwrap();
    pair.pump();
    pair.b_events.clear();
    // The peer asked, then closed its sending half: the answer is ours.
    pair.b.handle_eof();
    assert!(!pair.b.is_ended());
    assert_eq!(pair.b.poll_event(), None);
    pair.b.accept_close(0).unwrap();
    assert_eq!(
        pair.b.poll_event(),
        Some(Event::SessionEnded(SessionEnd::Released))
    );
    pair.a.handle_input(&drain(&mut pair.b)).unwrap();
    assert_eq!(
        pair.a.poll_event(),
        Some(Event::SessionEnded(SessionEnd::Released))
    );
}

#[test]
fn eof_while_the_peer_release_awaits_our_answer_then_a_refusal_ends_it_as_closed() {
    let mut pair = Pair::new();
    pair.a.close_session(ReplyCode::SUCCESS, "bye").unwrap();
    pair.pump();
    pair.b.handle_eof();
    pair.b
        .deny_close(0, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "busy")
        .unwrap();
    assert_eq!(pair.b.end_reason(), Some(&SessionEnd::TransportClosed));
}

#[test]
fn eof_while_the_peer_release_awaits_our_answer_ends_it_if_a_reply_is_still_awaited() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    // b asks a question the peer will never answer, the peer asks for the
    // release, then its stream ends: the release could never complete.
    pair.b.send_msg(channel, Message::new("question")).unwrap();
    pair.a.close_session(ReplyCode::SUCCESS, "bye").unwrap();
    pair.pump();
    pair.b.handle_eof();
    assert_eq!(pair.b.end_reason(), Some(&SessionEnd::TransportClosed));
}
