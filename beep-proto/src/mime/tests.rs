use super::*;

fn entity(raw: &'static [u8]) -> Message {
    Message::from_entity(Bytes::from_static(raw))
}

fn all_headers(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .map(|(n, v)| (n.to_owned(), v.into_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn rfc3080_2_2_defaults() {
    let m = Message::from_entity(Bytes::from_static(b"\r\nbody"));
    assert_eq!(m.content_type(), DEFAULT_CONTENT_TYPE);
    assert_eq!(m.mime_type(), DEFAULT_CONTENT_TYPE);
    assert_eq!(m.content_type_param("charset"), None);
    assert_eq!(m.transfer_encoding(), DEFAULT_TRANSFER_ENCODING);
    assert_eq!(&m.body()[..], b"body");
}

#[test]
fn parses_beep_xml_headers() {
    // RFC 3080 2.3.1: channel-0 messages are application/beep+xml.
    let m = Message::from_entity(Bytes::from_static(
        b"Content-Type: application/beep+xml\r\n\r\n<ok />",
    ));
    assert_eq!(m.content_type(), BEEP_XML);
    assert_eq!(&m.body()[..], b"<ok />");
}

#[test]
fn rfc3080_2_2_folded_header_joins_value() {
    // RFC 822 3.1.1: CRLF followed by a space continues the field.
    let m = entity(b"Content-Type: text/plain;\r\n charset=utf-8\r\nX-A: 1\r\n\r\nbody");
    assert_eq!(
        all_headers(&m),
        pairs(&[("Content-Type", "text/plain; charset=utf-8"), ("X-A", "1")])
    );
    assert_eq!(m.content_type(), "text/plain; charset=utf-8");
    assert_eq!(m.header("x-a").as_deref(), Some("1"));
    assert_eq!(m.content_type_param("charset").as_deref(), Some("utf-8"));
    assert_eq!(m.mime_type(), "text/plain");
    assert_eq!(&m.body()[..], b"body");
}

#[test]
fn rfc3080_2_2_folded_header_with_lf_only_line_ends() {
    // RFC 822 3.1.1 folding, with the bare LF line ends some peers send.
    let m = entity(b"Content-Type: text/plain;\n charset=utf-8\nX-A: 1\n\nbody");
    assert_eq!(
        all_headers(&m),
        pairs(&[("Content-Type", "text/plain; charset=utf-8"), ("X-A", "1")])
    );
    assert_eq!(m.content_type_param("charset").as_deref(), Some("utf-8"));
    assert_eq!(&m.body()[..], b"body");
    assert_eq!(
        &m.raw_headers()[..],
        b"Content-Type: text/plain;\n charset=utf-8\nX-A: 1\n\n"
    );
}

#[test]
fn rfc3080_2_2_mixed_crlf_and_lf_line_ends() {
    // RFC 3080 2.2: the entity's header block ends at its first empty line.
    let m = entity(b"A: 1\nB: 2\r\n more\n\r\nbody\n\nC: 3\n\n");
    assert_eq!(all_headers(&m), pairs(&[("A", "1"), ("B", "2 more")]));
    assert_eq!(&m.body()[..], b"body\n\nC: 3\n\n");
}

#[test]
fn rfc3080_2_2_several_folded_lines_join_with_single_spaces() {
    // RFC 822 3.1.1: any number of continuation lines; blank ones add nothing.
    let m = entity(b"X-Long: a\r\n b  \r\n    c\r\n \t \r\n d\r\nX-Next: e\r\n\r\n");
    assert_eq!(
        all_headers(&m),
        pairs(&[("X-Long", "a b c d"), ("X-Next", "e")])
    );
    // A value that starts on the next line.
    let m = entity(b"X-Empty:\r\n  value\r\n\r\n");
    assert_eq!(m.header("x-empty").as_deref(), Some("value"));
}

#[test]
fn rfc3080_2_2_tab_continuation_joins_value() {
    // RFC 822 3.1.1: LWSP-char is a space or a horizontal tab.
    let m = entity(b"Content-Type: text/plain;\r\n\tcharset=\"iso-8859-1\"\r\n\r\n");
    assert_eq!(m.content_type(), "text/plain; charset=\"iso-8859-1\"");
    assert_eq!(
        m.content_type_param("CHARSET").as_deref(),
        Some("iso-8859-1")
    );
}

#[test]
fn rfc3080_2_2_unfolded_values_are_not_copied() {
    // RFC 3080 2.2 entity headers: values without folding borrow the block.
    let m = entity(b"A:  one \r\nB: two\r\n three\r\n\r\n");
    let block = m.raw_headers().as_ptr_range();
    let got: Vec<_> = m.headers().collect();
    let Cow::Borrowed(one) = &got[0].1 else {
        panic!("an unfolded value is borrowed: {got:?}")
    };
    assert_eq!(*one, "one");
    assert!(block.contains(&one.as_ptr()));
    assert!(matches!(&got[1].1, Cow::Owned(v) if v == "two three"));
}

#[test]
fn rfc3080_2_2_non_utf8_header_is_left_out_and_others_kept() {
    // RFC 3080 2.2 entity headers: one bad header hides no other.
    let m = entity(b"X-Bin: \xff\r\nContent-Type: text/plain\r\nX-Fold: a\r\n \xfe\r\n\r\n");
    assert_eq!(all_headers(&m), pairs(&[("Content-Type", "text/plain")]));
}

#[test]
fn rfc3080_2_2_entity_without_header_block_is_all_body() {
    for raw in [
        &b"hello"[..],
        b"no colon\r\nhere",
        b"",
        b"Header: but no end",
        b"Header: but no end\n",
        b" leading: continuation\r\n\r\n",
        b"Bad Name: x\r\n\r\n",
        b":no name\r\n\r\n",
        b"A: 1\nnot a header\n\n",
    ] {
        let m = Message::from_entity(Bytes::copy_from_slice(raw));
        assert_eq!(&m.body()[..], raw);
        assert_eq!(m.content_type(), DEFAULT_CONTENT_TYPE);
    }
}

#[test]
fn rfc3080_2_2_empty_header_block_in_either_line_end_is_no_block() {
    // RFC 3080 2.2: no entity-headers means the defaults.
    let crlf = entity(b"\r\nhi");
    let lf = entity(b"\nhi");
    assert_eq!(crlf, lf);
    assert_eq!(crlf, Message::new("hi"));
}

#[test]
fn body_is_a_zero_copy_slice() {
    // RFC 3080 2.2: the body after the header block is not copied.
    let entity = Bytes::from(b"\r\npayload".to_vec());
    let start = entity.as_ptr() as usize;
    let m = Message::from_entity(entity);
    assert_eq!(m.body().as_ptr() as usize, start + 2);
}

#[test]
fn built_headers_round_trip() {
    // RFC 3080 2.2: a built message reads back equal after the wire.
    let m = Message::new("b").with_header("Content-Type", "text/plain");
    let wire = m.clone().into_wire_parts().concat();
    assert_eq!(Message::from_entity(Bytes::from(wire)), m);
}

#[test]
fn rfc822_3_1_2_with_header_on_lf_block_keeps_the_header_in_the_block() {
    // RFC 822 3.1.2 fields, added to a received block whose lines end in LF.
    let m = entity(b"A: 1\n\nbody").with_header("B", "2");
    assert_eq!(all_headers(&m), pairs(&[("A", "1"), ("B", "2")]));
    let wire = m.clone().into_wire_parts().concat();
    let back = Message::from_entity(Bytes::from(wire));
    assert_eq!(back, m);
    assert_eq!(&back.body()[..], b"body");
}

#[test]
fn rfc822_3_1_2_try_with_header_refuses_line_breaks_in_values() {
    // RFC 822 3.1.2: a field is one line, unless folded.
    for value in [
        "1\r\nX-B: 2",
        "1\nX-B: 2",
        "1\rX-B: 2",
        "1\r\n\r\nbody",
        "\n",
    ] {
        let got = Message::new("x").try_with_header("X-A", value);
        assert_eq!(
            got,
            Err(HeaderError::LineBreakInValue { name: "X-A".into() }),
            "{value:?}"
        );
    }
}

#[test]
fn rfc822_3_1_2_try_with_header_refuses_names_that_are_not_field_names() {
    // RFC 822 3.1.2: printable ASCII except ':', at least one.
    for name in [
        "", "A B", "A:B", ":", "A\r\nB", "A\n", "\tA", "Ä", "A\u{7f}",
    ] {
        let got = Message::new("x").try_with_header(name, "1");
        assert_eq!(
            got,
            Err(HeaderError::InvalidName { name: name.into() }),
            "{name:?}"
        );
    }
    let m = Message::new("x").try_with_header("!#$%&'*+-.^_`|~09AZaz", "1");
    assert!(m.is_ok());
}

#[test]
fn rfc822_3_1_2_with_header_cannot_inject_a_header_or_end_the_block() {
    // RFC 822 3.1.2: one call, at most one field line.
    let m = Message::new("body")
        .with_header("X-A", "1\r\nX-B: 2")
        .with_header("X-C", "3\n\nnot body")
        .with_header("X-D", "\r\n\t4 \r ")
        .with_header("X-E\r\nX-F", "5")
        .with_header("", "6")
        .with_header("X-G", "7");
    assert_eq!(
        all_headers(&m),
        pairs(&[
            ("X-A", "1 X-B: 2"),
            ("X-C", "3 not body"),
            ("X-D", "4"),
            ("X-G", "7"),
        ])
    );
    let back = Message::from_entity(Bytes::from(m.clone().into_wire_parts().concat()));
    assert_eq!(back, m);
    assert_eq!(&back.body()[..], b"body");
}

#[test]
fn rfc2045_5_1_unquoted_parameter() {
    let ct = ContentType::new("text/plain;charset=utf-8 ; format = flowed;");
    assert_eq!(ct.mime_type(), "text/plain");
    assert_eq!(ct.param("charset").as_deref(), Some("utf-8"));
    assert_eq!(ct.param("format").as_deref(), Some("flowed"));
    assert!(matches!(ct.param("charset"), Some(Cow::Borrowed(_))));
}

#[test]
fn rfc2045_5_1_quoted_parameter_with_escapes() {
    let ct =
        ContentType::new(r#"multipart/mixed; boundary="a; b=c"; title="say \"hi\" \\ \x" ; z="""#);
    assert_eq!(ct.param("boundary").as_deref(), Some("a; b=c"));
    assert!(matches!(ct.param("boundary"), Some(Cow::Borrowed(_))));
    assert_eq!(ct.param("title").as_deref(), Some(r#"say "hi" \ x"#));
    assert_eq!(ct.param("z").as_deref(), Some(""));
    assert_eq!(ct.params().count(), 3);
}

#[test]
fn rfc2045_5_1_parameter_names_are_case_insensitive() {
    let ct = ContentType::new("Text/HTML; CharSet=UTF-8");
    assert_eq!(ct.param("charset").as_deref(), Some("UTF-8"));
    assert_eq!(ct.param("CHARSET").as_deref(), Some("UTF-8"));
    assert!(ct.mime_type().eq_ignore_ascii_case("text/html"));
}

#[test]
fn rfc2045_5_1_missing_and_malformed_parameters() {
    let ct = ContentType::new("text/plain");
    assert_eq!(ct.param("charset"), None);
    assert_eq!(ct.params().count(), 0);
    // Skipped: no `=`, empty name. Kept: the first of two.
    let ct = ContentType::new("text/plain; flowed; =x; a=1; a=2");
    let params: Vec<_> = ct.params().collect();
    assert_eq!(params, [("a", Cow::from("1")), ("a", Cow::from("2"))]);
    assert_eq!(ct.param("a").as_deref(), Some("1"));
    assert_eq!(ct.param("flowed"), None);
    // An unterminated quoted-string ends the parameters.
    let ct = ContentType::new(r#"text/plain; a=1; b="2; c=3"#);
    assert_eq!(ct.param("a").as_deref(), Some("1"));
    assert_eq!(ct.param("b"), None);
    assert_eq!(ct.param("c"), None);
    let ct = ContentType::new(r#"text/plain; b="2\"#);
    assert_eq!(ct.param("b"), None);
}

#[test]
fn rfc2045_5_1_parameter_of_a_folded_content_type() {
    let m = entity(
        b"Content-Type: multipart/mixed;\r\n boundary=\"x y\";\r\n\tcharset=us-ascii\r\n\r\n",
    );
    assert_eq!(m.mime_type(), "multipart/mixed");
    assert_eq!(m.content_type_param("boundary").as_deref(), Some("x y"));
    assert_eq!(m.content_type_param("charset").as_deref(), Some("us-ascii"));
}
