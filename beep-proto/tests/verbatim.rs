//! Payloads sent exactly as given, and received messages relayed byte for
//! byte (LibVortex applications send and expect payloads without MIME
//! headers, or with LF-only header lines; RFC 3080 2.2 makes the header
//! block optional in practice: an entity without one is all body).

mod common;

use beep_proto::frame::{DEFAULT_MAX_HEADER_LEN, Header, parse_header};
use beep_proto::{Message, Session};
use common::{ECHO, Pair, take_messages};

/// The payloads of the data frames in `wire`, channel by channel.
fn payloads(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = wire;
    let mut out = Vec::new();
    while let Ok(Some((header, used))) = parse_header(rest, DEFAULT_MAX_HEADER_LEN) {
        rest = &rest[used..];
        if let Header::Frame(h) = header {
            let size = h.size as usize;
            if h.channel != 0 {
                out.push(rest[..size].to_vec());
            }
            rest = &rest[size + 5..];
        }
    }
    out
}

fn drain(s: &mut Session) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(bytes) = s.poll_transmit() {
        wire.extend_from_slice(&bytes);
    }
    wire
}

#[test]
fn rfc3080_2_2_a_verbatim_message_goes_out_exactly_as_given() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    for entity in [&b"hello"[..], b"Content-Type: text/plain\n\nLF only", b""] {
        pair.a.send_msg(channel, Message::verbatim(entity)).unwrap();
        let wire = drain(&mut pair.a);
        assert_eq!(payloads(&wire), vec![entity.to_vec()]);
        pair.b.handle_input(&wire).unwrap();
    }
    // An ordinary message still gets its header block.
    pair.a.send_msg(channel, Message::new("x")).unwrap();
    assert_eq!(payloads(&drain(&mut pair.a)), vec![b"\r\nx".to_vec()]);
}

#[test]
fn rfc3080_2_2_a_received_message_is_relayed_byte_for_byte() {
    let mut pair = Pair::new();
    let channel = pair.open(ECHO);
    let sent: [&[u8]; 3] = [
        b"no header block at all",
        b"Content-Type: text/plain\nX-Lf: only\n\nbody",
        b"Content-Type: application/x-thing\r\n\r\nbody",
    ];
    for entity in sent {
        pair.a.send_msg(channel, Message::verbatim(entity)).unwrap();
    }
    pair.b.handle_input(&drain(&mut pair.a)).unwrap();
    while let Some(e) = pair.b.poll_event() {
        pair.b_events.push(e);
    }
    for m in take_messages(&mut pair.b_events) {
        // An echo: the message as it came.
        pair.b.send_rpy(m.channel, m.msgno, m.message).unwrap();
    }
    let echoed = payloads(&drain(&mut pair.b));
    assert_eq!(echoed, sent.iter().map(|e| e.to_vec()).collect::<Vec<_>>());
}

#[test]
fn adding_a_header_to_a_verbatim_message_makes_it_an_ordinary_one() {
    let m = Message::verbatim("body").with_header("X-A", "1");
    assert_eq!(m.entity_len(), "X-A: 1\r\n\r\nbody".len());
    // Equality compares headers and body, not how they were written.
    assert_eq!(Message::verbatim("\r\nbody"), Message::new("body"));
}
