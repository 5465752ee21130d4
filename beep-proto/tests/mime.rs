//! MIME entity headers (RFC 3080 2.2) through the public API: whatever
//! `with_header` and `try_with_header` are given, the message that reaches
//! the peer carries exactly the headers that were added, and its body.

use beep_proto::Message;
use beep_proto::mime::HeaderError;
use bytes::Bytes;
use proptest::prelude::*;

/// The payload a peer receives for `m`: the header block (an empty line if
/// there is none) and the body.
fn through_the_wire(m: &Message) -> Message {
    let mut entity = m.raw_headers().to_vec();
    if entity.is_empty() {
        entity.extend_from_slice(b"\r\n");
    }
    entity.extend_from_slice(m.body());
    Message::from_entity(Bytes::from(entity))
}

fn headers(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .map(|(n, v)| (n.to_owned(), v.into_owned()))
        .collect()
}

/// What a reader gets back for `value`: line breaks with the spaces and tabs
/// around them read as one space, and surrounding spaces and tabs drop.
fn as_read(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(|piece| piece.trim_matches([' ', '\t']))
        .filter(|piece| !piece.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// RFC 822 3.1.2 field names: printable ASCII except `:`.
fn field_name() -> impl Strategy<Value = String> {
    "[!-9;-~]{1,16}"
}

/// Values that are exactly one line, without surrounding spaces or tabs.
fn line_value() -> impl Strategy<Value = String> {
    "[ -~\t\u{a0}-\u{17f}]{0,24}".prop_map(|v| v.trim_matches([' ', '\t']).to_owned())
}

/// Anything, line breaks and colons included.
fn any_text() -> impl Strategy<Value = String> {
    "[ -~\t\r\n\u{a0}-\u{17f}]{0,24}"
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[a-zA-Z: \r\n]{0,32}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// RFC 3080 2.2: valid headers added with `try_with_header` reach the
    /// peer exactly as given, in order, and the body after them intact.
    #[test]
    fn rfc3080_2_2_try_with_header_parses_back_exactly(
        given in proptest::collection::vec((field_name(), line_value()), 0..6),
        body in body(),
    ) {
        let mut m = Message::new(body.clone());
        for (name, value) in &given {
            m = m.try_with_header(name, value).unwrap();
        }
        let back = through_the_wire(&m);
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(headers(&back), given);
        prop_assert_eq!(&back.body()[..], &body[..]);
    }

    /// RFC 3080 2.2: `with_header` adds one header per valid name and none
    /// for an invalid one, whatever the value holds; nothing leaks into the
    /// body and no header appears that was not asked for.
    #[test]
    fn rfc3080_2_2_with_header_adds_exactly_the_headers_asked_for(
        given in proptest::collection::vec(
            (prop_oneof![field_name(), any_text()], any_text()),
            0..6,
        ),
        body in body(),
    ) {
        let mut m = Message::new(body.clone());
        for (name, value) in &given {
            m = m.with_header(name, value);
        }
        let expected: Vec<_> = given
            .iter()
            .filter(|(name, _)| is_field_name(name))
            .map(|(name, value)| (name.clone(), as_read(value)))
            .collect();
        let back = through_the_wire(&m);
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(headers(&back), expected);
        prop_assert_eq!(&back.body()[..], &body[..]);
    }

    /// RFC 3080 2.2: `try_with_header` refuses exactly what `with_header`
    /// would have to change, and agrees with it otherwise.
    #[test]
    fn rfc3080_2_2_try_with_header_refuses_what_with_header_mends(
        name in prop_oneof![field_name(), any_text()],
        value in any_text(),
    ) {
        let tried = Message::new("b").try_with_header(&name, &value);
        let mended = Message::new("b").with_header(&name, &value);
        match tried {
            Ok(m) => prop_assert_eq!(m, mended),
            Err(HeaderError::InvalidName { name: n }) => {
                prop_assert!(!is_field_name(&n));
                prop_assert_eq!(mended, Message::new("b"));
            }
            Err(HeaderError::LineBreakInValue { name: n }) => {
                prop_assert!(is_field_name(&n));
                prop_assert!(value.contains(['\r', '\n']));
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

#[test]
fn rfc3080_2_2_folded_content_type_from_a_peer() {
    // RFC 3080 2.2 (RFC 822 3.1.1 folding): the unfolded value and its parameters.
    let m = Message::from_entity(Bytes::from_static(
        b"Content-Type: text/plain;\r\n\tcharset=\"utf-8\"\r\n\r\nhello",
    ));
    assert_eq!(m.content_type(), "text/plain; charset=\"utf-8\"");
    assert_eq!(m.mime_type(), "text/plain");
    assert_eq!(m.content_type_param("Charset").as_deref(), Some("utf-8"));
    assert_eq!(&m.body()[..], b"hello");
}
