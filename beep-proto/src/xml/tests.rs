//! Tests of the channel-0 elements: every element, every error, the
//! LibVortex transcripts' bodies, and round trips.
use super::*;
use proptest::prelude::*;

fn parse(s: &str) -> Result<ChannelZeroMessage, XmlError> {
    ChannelZeroMessage::parse(s.as_bytes())
}

fn code(v: u16) -> ReplyCode {
    ReplyCode::new(v).unwrap()
}

/// Undoes the transcript escapes (`\r` `\n` `\t` `\\` `\xNN`).
fn unescape_transcript(line: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'x' => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                other => out.push(other),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The body of every channel-0 message in a LibVortex transcript
/// (interop/vortex, copied from shared/interop): what follows the beep+xml MIME header block,
/// up to `END`.
fn transcript_bodies(name: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/../interop/vortex/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("LibVortex transcript {path}: {e}"));
    let mut bodies = Vec::new();
    for dir in ["C: ", "S: "] {
        let stream: Vec<u8> = text
            .lines()
            .filter_map(|l| l.strip_prefix(dir))
            .flat_map(unescape_transcript)
            .collect();
        let stream = String::from_utf8_lossy(&stream).into_owned();
        for part in stream
            .split("Content-Type: application/beep+xml\r\n\r\n")
            .skip(1)
        {
            let end = part.find("END\r\n").expect("END after body");
            bodies.push(part.as_bytes()[..end].to_vec());
        }
    }
    assert!(!bodies.is_empty(), "no channel-0 body in {path}");
    bodies
}

// -- greeting (RFC 3080 2.3.1.1, conformance item 34) ------------------------------------

#[test]
fn rfc3080_2_3_1_1_empty_greeting_vortex() {
    let m = parse("<greeting />\r\n").unwrap();
    assert_eq!(m, ChannelZeroMessage::Greeting(Greeting::default()));
    assert_eq!(m.to_vec(), b"<greeting />\r\n");
}

#[test]
fn rfc3080_2_3_1_1_vortex_greeting_many_profiles() {
    let bodies = transcript_bodies("greeting.txt");
    let big = bodies
        .iter()
        .find(|b| b.len() > 2000)
        .expect("listener greeting in greeting.txt");
    let ChannelZeroMessage::Greeting(g) = ChannelZeroMessage::parse(big).unwrap() else {
        panic!("not a greeting");
    };
    assert!(g.profiles.len() >= 30, "{}", g.profiles.len());
    assert!(g.profiles.iter().any(|p| p == "http://iana.org/beep/TLS"));
    assert!(
        g.profiles
            .iter()
            .any(|p| p == "urn:aspl.es:beep:profiles:ALIVE")
    );
    assert_eq!((g.features, g.localize), (None, None));
    // Our canonical writer reproduces LibVortex's layout byte for byte.
    let msg = ChannelZeroMessage::parse(big).unwrap();
    assert_eq!(&msg.to_vec(), big);
}

#[test]
fn hardening_greeting_attributes_and_layout() {
    let g = Greeting {
        profiles: vec!["http://iana.org/beep/TLS".into(), "urn:a&b".into()],
        features: Some("x-foo x-bar".into()),
        localize: Some("fr en-US".into()),
    };
    let out = ChannelZeroMessage::Greeting(g.clone()).to_vec();
    assert_eq!(
        out,
        b"<greeting features='x-foo x-bar' localize='fr en-US'>\r\n   \
          <profile uri='http://iana.org/beep/TLS' />\r\n   \
          <profile uri='urn:a&amp;b' />\r\n</greeting>\r\n"
    );
    assert_eq!(
        ChannelZeroMessage::parse(&out).unwrap(),
        ChannelZeroMessage::Greeting(g)
    );
    // Attributes only: still self-closing.
    let g = Greeting {
        localize: Some("en".into()),
        ..Greeting::default()
    };
    assert_eq!(
        ChannelZeroMessage::Greeting(g).to_vec(),
        b"<greeting localize='en' />\r\n"
    );
}

#[test]
fn hardening_greeting_rfc_example_double_quotes_unknown_attribute() {
    let m = parse(
        "<greeting x-new=\"1\">\n   <profile uri=\"http://iana.org/beep/TLS\"></profile>\n</greeting>",
    )
    .unwrap();
    let ChannelZeroMessage::Greeting(g) = m else {
        panic!()
    };
    assert_eq!(g.profiles, ["http://iana.org/beep/TLS"]);
}

#[test]
fn hardening_greeting_profile_content_rejected() {
    for body in [
        "<greeting><profile uri='urn:x'>hello</profile></greeting>",
        "<greeting><profile uri='urn:x'><![CDATA[]]></profile></greeting>",
    ] {
        assert_eq!(
            parse(body),
            Err(XmlError::GreetingProfileContent {
                uri: "urn:x".into()
            })
        );
    }
    // Whitespace is not content.
    assert!(parse("<greeting><profile uri='urn:x'>\r\n </profile></greeting>").is_ok());
}

#[test]
fn greeting_unknown_child_and_text_rejected() {
    assert_eq!(
        parse("<greeting><feature/></greeting>"),
        Err(XmlError::UnexpectedElement {
            parent: "greeting",
            element: "feature".into()
        })
    );
    assert_eq!(
        parse("<greeting>hi</greeting>"),
        Err(XmlError::UnexpectedText {
            element: "greeting"
        })
    );
    assert_eq!(
        parse("<greeting><![CDATA[ ]]></greeting>"),
        Err(XmlError::UnexpectedText {
            element: "greeting"
        })
    );
}

// -- start (RFC 3080 2.3.1.2) -----------------------------------

#[test]
fn rfc3080_2_3_1_2_start_rfc_example() {
    let m = parse(
        "<start number='1'>\r\n   <profile uri='http://iana.org/beep/SASL/OTP' />\r\n   \
         <profile uri='http://iana.org/beep/SASL/ANONYMOUS' />\r\n</start>\r\n",
    )
    .unwrap();
    let expected = Start {
        number: 1,
        server_name: None,
        profiles: vec![
            Profile::new("http://iana.org/beep/SASL/OTP"),
            Profile::new("http://iana.org/beep/SASL/ANONYMOUS"),
        ],
    };
    assert_eq!(m, ChannelZeroMessage::Start(expected));
}

#[test]
fn rfc3080_2_3_1_2_vortex_start_with_server_name_and_base64() {
    let bodies = transcript_bodies("start_servername.txt");
    let body = bodies
        .iter()
        .find(|b| b.starts_with(b"<start"))
        .expect("start in start_servername.txt");
    let ChannelZeroMessage::Start(s) = ChannelZeroMessage::parse(body).unwrap() else {
        panic!()
    };
    assert_eq!(s.number, 3);
    assert_eq!(s.server_name.as_deref(), Some("beep.example.test"));
    let p = &s.profiles[0];
    assert_eq!(p.uri, "http://iana.org/beep/transient/vortex-regression");
    assert_eq!(p.encoding, ContentEncoding::Base64);
    assert_eq!(p.content.as_deref(), Some(&b"hey dude, this is base64"[..]));
    // We write it exactly as LibVortex does.
    assert_eq!(&ChannelZeroMessage::Start(s).to_vec(), body);
}

#[test]
fn rfc3080_2_3_1_2_base64_whitespace_ignored_and_plain_text() {
    let m = parse(
        "<profile uri='urn:x' encoding='base64'>\r\n  aGV5IGR1ZGUs\r\n  IHRoaXMgaXMgYmFzZTY0\r\n</profile>",
    )
    .unwrap();
    let ChannelZeroMessage::Profile(p) = m else {
        panic!()
    };
    assert_eq!(p.content.as_deref(), Some(&b"hey dude, this is base64"[..]));
    let m = parse("<profile uri='urn:x' encoding='none'>a &lt;b&gt; &#x41;&#66;&amp;</profile>")
        .unwrap();
    let ChannelZeroMessage::Profile(p) = m else {
        panic!()
    };
    assert_eq!(p.content.as_deref(), Some(&b"a <b> AB&"[..]));
    assert_eq!(p.encoding, ContentEncoding::None);
}

#[test]
fn rfc3080_2_3_1_2_invalid_base64() {
    let err =
        parse("<start number='1'><profile uri='urn:x' encoding='base64'>@@@</profile></start>")
            .unwrap_err();
    assert!(
        matches!(err, XmlError::InvalidBase64 { ref uri, .. } if uri == "urn:x"),
        "{err}"
    );
}

#[test]
fn rfc3080_2_3_1_2_invalid_encoding_attribute() {
    assert_eq!(
        parse("<profile uri='urn:x' encoding='BASE64' />"),
        Err(XmlError::InvalidAttribute {
            element: "profile",
            attribute: "encoding",
            value: "BASE64".into()
        })
    );
}

#[test]
fn rfc3080_2_3_1_2_start_number_range() {
    let start = |n: &str| parse(&format!("<start number='{n}'><profile uri='u'/></start>"));
    assert!(start("1").is_ok());
    assert!(start("2147483647").is_ok());
    for n in ["0", "2147483648", "4294967296", "99999999999999999999"] {
        assert_eq!(
            start(n),
            Err(XmlError::ChannelNumberOutOfRange {
                element: "start",
                value: n.into()
            })
        );
    }
    for n in ["", "-1", "+1", " 1", "1x", "0x10"] {
        assert_eq!(
            start(n),
            Err(XmlError::InvalidAttribute {
                element: "start",
                attribute: "number",
                value: n.into()
            }),
            "{n:?}"
        );
    }
}

#[test]
fn rfc3080_2_3_1_2_start_missing_number_and_no_profile() {
    assert_eq!(
        parse("<start><profile uri='u'/></start>"),
        Err(XmlError::MissingAttribute {
            element: "start",
            attribute: "number"
        })
    );
    assert_eq!(
        parse("<start number='1'>\r\n</start>"),
        Err(XmlError::NoProfile)
    );
    assert_eq!(parse("<start number='1'/>"), Err(XmlError::NoProfile));
}

#[test]
fn rfc3080_2_3_1_2_profile_missing_or_empty_uri() {
    assert_eq!(
        parse("<start number='1'><profile/></start>"),
        Err(XmlError::MissingAttribute {
            element: "profile",
            attribute: "uri"
        })
    );
    assert_eq!(
        parse("<profile uri=''/>"),
        Err(XmlError::InvalidAttribute {
            element: "profile",
            attribute: "uri",
            value: String::new()
        })
    );
}

#[test]
fn start_unexpected_child_and_text() {
    assert_eq!(
        parse("<start number='1'><profile uri='u'/><blob/></start>"),
        Err(XmlError::UnexpectedElement {
            parent: "start",
            element: "blob".into()
        })
    );
    assert_eq!(
        parse("<start number='1'>x<profile uri='u'/></start>"),
        Err(XmlError::UnexpectedText { element: "start" })
    );
    assert_eq!(
        parse("<start number='1'><profile uri='u'><blob/></profile></start>"),
        Err(XmlError::UnexpectedElement {
            parent: "profile",
            element: "blob".into()
        })
    );
}

// -- piggybacked content: SASL, TLS (RFC 3080 2.3.1.2, RFC 3080 3.1, conformance item 67, RFC 3080 4) ------

#[test]
fn rfc3080_4_vortex_sasl_plain_cdata_blob() {
    let bodies = transcript_bodies("sasl_plain.txt");
    let start = bodies
        .iter()
        .find(|b| b.starts_with(b"<start number='3'"))
        .unwrap();
    let ChannelZeroMessage::Start(s) = ChannelZeroMessage::parse(start).unwrap() else {
        panic!()
    };
    assert_eq!(s.profiles[0].uri, "http://iana.org/beep/SASL/PLAIN");
    assert_eq!(
        s.profiles[0].content.as_deref(),
        Some(&b"<blob>AGJvYgBzZWNyZXQ=</blob>"[..])
    );
    assert_eq!(s.profiles[0].encoding, ContentEncoding::None);
    // The reply: `<profile uri='...' >` with a space before `>`.
    let reply = bodies
        .iter()
        .find(|b| b.starts_with(b"<profile uri='http://iana.org/beep/SASL"));
    let reply = reply.unwrap();
    let m = ChannelZeroMessage::parse(reply).unwrap();
    assert_eq!(
        m,
        ChannelZeroMessage::Profile(
            Profile::new("http://iana.org/beep/SASL/PLAIN")
                .with_content("<blob status='complete' />")
        )
    );
}

#[test]
fn rfc3080_4_sasl_literal_bodies() {
    let m = parse(
        "<start number='3' serverName='127.0.0.1'>\r\n   <profile uri='http://iana.org/beep/SASL/PLAIN'>\
         <![CDATA[<blob>AGJvYgBzZWNyZXQ=</blob>]]></profile>\r\n</start>\r\n",
    )
    .unwrap();
    let ChannelZeroMessage::Start(s) = &m else {
        panic!()
    };
    assert_eq!(s.server_name.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        s.profiles[0].content.as_deref(),
        Some(&b"<blob>AGJvYgBzZWNyZXQ=</blob>"[..])
    );
    let reply = parse(
        "<profile uri='http://iana.org/beep/SASL/PLAIN' ><![CDATA[<blob status='complete' />]]></profile>\r\n",
    )
    .unwrap();
    let ChannelZeroMessage::Profile(p) = reply else {
        panic!()
    };
    assert_eq!(
        p.content.as_deref(),
        Some(&b"<blob status='complete' />"[..])
    );
}

#[test]
fn rfc3080_3_1_vortex_tls_ready_proceed() {
    let bodies = transcript_bodies("tls_decrypted.txt");
    let ready = bodies.iter().find(|b| b.windows(5).any(|w| w == b"ready"));
    let proceed = bodies
        .iter()
        .find(|b| b.windows(7).any(|w| w == b"proceed"));
    let ready = ChannelZeroMessage::parse(ready.unwrap()).unwrap();
    let ChannelZeroMessage::Start(s) = ready else {
        panic!()
    };
    assert_eq!(s.profiles[0].content.as_deref(), Some(&b"<ready />"[..]));
    let proceed = ChannelZeroMessage::parse(proceed.unwrap()).unwrap();
    assert_eq!(
        proceed,
        ChannelZeroMessage::Profile(
            Profile::new("http://iana.org/beep/TLS").with_content("<proceed />")
        )
    );
}

#[test]
fn rfc3080_2_3_1_2_rfc_tls_example_whitespace_around_cdata_ignored() {
    let m = parse(
        "<start number='1'>\r\n   <profile uri='http://iana.org/beep/TLS'>\r\n       \
         <![CDATA[<ready />]]>\r\n   </profile>\r\n</start>\r\n",
    )
    .unwrap();
    let ChannelZeroMessage::Start(s) = m else {
        panic!()
    };
    assert_eq!(s.profiles[0].content.as_deref(), Some(&b"<ready />"[..]));
    let m = parse(
        "<profile uri='http://iana.org/beep/TLS'>\r\n    <![CDATA[<proceed />]]>\r\n</profile>\r\n",
    )
    .unwrap();
    let ChannelZeroMessage::Profile(p) = m else {
        panic!()
    };
    assert_eq!(p.content.as_deref(), Some(&b"<proceed />"[..]));
    // Whitespace-only text is no content; CDATA is kept exactly.
    let ChannelZeroMessage::Profile(p) = parse("<profile uri='u'>\r\n  </profile>").unwrap() else {
        panic!()
    };
    assert_eq!(p.content, None);
    let ChannelZeroMessage::Profile(p) =
        parse("<profile uri='u'><![CDATA[ a\r\n]]><![CDATA[b]]></profile>").unwrap()
    else {
        panic!()
    };
    assert_eq!(p.content.as_deref(), Some(&b" a\r\nb"[..]));
}

#[test]
fn rfc3080_2_3_1_2_every_vortex_channel_zero_body_parses() {
    let files = [
        "ans_nul.txt",
        "close.txt",
        "echo.txt",
        "greeting.txt",
        "regression_test_01.txt",
        "sasl_plain.txt",
        "seq_large.txt",
        "start.txt",
        "start_servername.txt",
        "tls.txt",
        "tls_decrypted.txt",
    ];
    for file in files {
        for body in transcript_bodies(file) {
            let m = ChannelZeroMessage::parse(&body);
            assert!(
                m.is_ok(),
                "{file}: {:?}: {m:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    let m = parse("<profile uri='http://iana.org/beep/transient/vortex-regression' />\r\n");
    assert_eq!(
        m,
        Ok(ChannelZeroMessage::Profile(Profile::new(
            "http://iana.org/beep/transient/vortex-regression"
        )))
    );
}

// -- close, ok, error (RFC 3080 2.3.1.3) -------------------------

#[test]
fn rfc3080_2_3_1_3_vortex_close_and_ok() {
    assert_eq!(
        parse("<close number='3' code='200' />\r\n"),
        Ok(ChannelZeroMessage::Close(Close::new(3, ReplyCode::SUCCESS)))
    );
    assert_eq!(
        ChannelZeroMessage::Close(Close::new(0, ReplyCode::SUCCESS)).to_vec(),
        b"<close number='0' code='200' />\r\n"
    );
    for ok in [
        "<ok />",
        "<ok/>",
        "<ok />\r\n",
        "<ok></ok>",
        "<ok>\r\n</ok>",
        "\r\n<ok\r\n/>",
    ] {
        assert_eq!(parse(ok), Ok(ChannelZeroMessage::Ok), "{ok:?}");
    }
}

#[test]
fn rfc3080_2_3_1_3_close_rfc_example_number_defaults_to_zero() {
    assert_eq!(
        parse("<close code='200' />"),
        Ok(ChannelZeroMessage::Close(Close::new(0, ReplyCode::SUCCESS)))
    );
}

#[test]
fn rfc3080_2_3_1_3_close_with_lang_and_text() {
    let c = Close {
        number: 5,
        code: ReplyCode::ACTION_ABORTED,
        lang: Some("en".into()),
        text: "bye <now> & \"forever\"".into(),
    };
    let out = ChannelZeroMessage::Close(c.clone()).to_vec();
    assert_eq!(
        out,
        &b"<close number='5' code='451' xml:lang='en'>bye &lt;now&gt; &amp; \"forever\"</close>\r\n"[..]
    );
    assert_eq!(
        parse(std::str::from_utf8(&out).unwrap()),
        Ok(ChannelZeroMessage::Close(c))
    );
}

#[test]
fn rfc3080_2_3_1_3_close_number_range_and_code() {
    assert_eq!(
        parse("<close number='2147483648' code='200'/>"),
        Err(XmlError::ChannelNumberOutOfRange {
            element: "close",
            value: "2147483648".into()
        })
    );
    assert_eq!(
        parse("<close number='1'/>"),
        Err(XmlError::MissingAttribute {
            element: "close",
            attribute: "code"
        })
    );
    assert_eq!(
        parse("<close code='200'><x/></close>"),
        Err(XmlError::UnexpectedElement {
            parent: "close",
            element: "x".into()
        })
    );
}

#[test]
fn rfc3080_2_3_1_3_error_rfc_examples() {
    assert_eq!(
        parse("<error code='550'>all requested profiles are\nunsupported</error>"),
        Ok(ChannelZeroMessage::Error(ErrorElement::new(
            code(550),
            "all requested profiles are\nunsupported"
        )))
    );
    // On the wire the line break is CRLF; XML reads it as LF.
    assert_eq!(
        parse(
            "<error code='501'>number attribute\r\nin &lt;start&gt; element must be odd-valued</error>\r\n"
        ),
        Ok(ChannelZeroMessage::Error(ErrorElement::new(
            code(501),
            "number attribute\nin <start> element must be odd-valued"
        )))
    );
    let e = ErrorElement {
        code: code(550),
        lang: Some("fr".into()),
        text: "still working".into(),
    };
    let out = ChannelZeroMessage::Error(e.clone()).to_vec();
    assert_eq!(
        out,
        b"<error code='550' xml:lang='fr'>still working</error>\r\n"
    );
    assert_eq!(
        ChannelZeroMessage::parse(&out),
        Ok(ChannelZeroMessage::Error(e))
    );
    assert_eq!(
        ChannelZeroMessage::Error(ErrorElement::new(code(421), "")).to_vec(),
        b"<error code='421' />\r\n"
    );
}

#[test]
fn rfc3080_2_3_1_3_bad_reply_codes() {
    for bad in ["55", "abcd", "1000", "099", "", " 200", "2O0", "+20"] {
        assert_eq!(
            parse(&format!("<error code='{bad}'/>")),
            Err(XmlError::InvalidReplyCode {
                element: "error",
                value: bad.into()
            }),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse("<close number='1' code='55'/>"),
        Err(XmlError::InvalidReplyCode {
            element: "close",
            value: "55".into()
        })
    );
    assert_eq!(
        parse("<error>x</error>"),
        Err(XmlError::MissingAttribute {
            element: "error",
            attribute: "code"
        })
    );
    // An unknown but three-digit code is fine.
    assert!(parse("<error code='299'/>").is_ok());
}

#[test]
fn ok_with_content_rejected() {
    assert_eq!(
        parse("<ok>x</ok>"),
        Err(XmlError::UnexpectedText { element: "ok" })
    );
    assert_eq!(
        parse("<ok><ok/></ok>"),
        Err(XmlError::UnexpectedElement {
            parent: "ok",
            element: "ok".into()
        })
    );
}

// -- the XML subset of RFC 3080 6.4 (RFC 3080 6.4) -------------------

#[test]
fn rfc3080_6_4_doctype_and_entity_attack_rejected() {
    let billion = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]>\
                   <error code='550'>&lol2;</error>";
    assert_eq!(parse(billion), Err(XmlError::Doctype));
    assert_eq!(
        parse("<!DOCTYPE greeting><greeting/>"),
        Err(XmlError::Doctype)
    );
    let xxe =
        "<!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><error code='550'>&x;</error>";
    assert_eq!(parse(xxe), Err(XmlError::Doctype));
}

#[test]
fn rfc3080_6_4_unknown_entity_rejected() {
    assert_eq!(
        parse("<error code='550'>&nbsp;</error>"),
        Err(XmlError::UnknownEntity {
            name: "nbsp".into()
        })
    );
    assert_eq!(
        parse("<profile uri='&foo;'/>"),
        Err(XmlError::UnknownEntity { name: "foo".into() })
    );
    // The five predefined ones and numeric references are fine.
    assert_eq!(
        parse(
            "<error code='550' xml:lang='&#x65;n'>&amp;&lt;&gt;&apos;&quot;&#233;&#x1F600;</error>"
        ),
        Ok(ChannelZeroMessage::Error(ErrorElement {
            code: code(550),
            lang: Some("en".into()),
            text: "&<>'\"é😀".into()
        }))
    );
}

#[test]
fn rfc3080_6_4_xml_declaration_tolerated_never_written() {
    assert_eq!(
        parse("<?xml version='1.0'?>\r\n<ok />"),
        Ok(ChannelZeroMessage::Ok)
    );
    assert_eq!(
        parse("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ok/>"),
        Ok(ChannelZeroMessage::Ok)
    );
    assert_eq!(
        parse("<?xml version='1.0' encoding='ISO-8859-1'?><ok/>"),
        Err(XmlError::UnsupportedEncoding {
            encoding: "ISO-8859-1".into()
        })
    );
    assert!(matches!(
        parse(" <?xml version='1.0'?><ok/>"),
        Err(XmlError::Malformed { .. })
    ));
    assert!(!ChannelZeroMessage::Ok.to_vec().starts_with(b"<?xml"));
}

#[test]
fn rfc3080_6_4_not_utf8_and_illegal_characters() {
    assert_eq!(
        ChannelZeroMessage::parse(b"<error code='550'>\xff</error>"),
        Err(XmlError::NotUtf8 { valid_up_to: 18 })
    );
    assert_eq!(
        parse("<error code='550'>\u{1}</error>"),
        Err(XmlError::IllegalCharacter { code: 1 })
    );
    assert_eq!(
        parse("<error code='550'>&#1;</error>"),
        Err(XmlError::IllegalCharacter { code: 1 })
    );
    assert_eq!(
        parse("<error code='550' xml:lang='&#xFFFE;'/>"),
        Err(XmlError::IllegalCharacter { code: 0xFFFE })
    );
    assert!(matches!(
        parse("<error code='550'>&#0;</error>"),
        Err(XmlError::Malformed { .. })
    ));
}

#[test]
fn rfc3080_6_4_comments_pis_whitespace_around_root() {
    assert_eq!(
        parse("<!-- hi -->\r\n<?pi x?>\n<ok /><!-- bye -->\r\n"),
        Ok(ChannelZeroMessage::Ok)
    );
    assert_eq!(
        parse("<close code='200'>a<!-- c -->b</close>"),
        Ok(ChannelZeroMessage::Close(Close {
            text: "ab".into(),
            ..Close::new(0, ReplyCode::SUCCESS)
        }))
    );
}

#[test]
fn document_structure_errors() {
    assert_eq!(parse(""), Err(XmlError::Empty));
    assert_eq!(parse(" \r\n<!-- only a comment -->"), Err(XmlError::Empty));
    assert_eq!(
        parse("<blob/>"),
        Err(XmlError::UnknownRoot {
            name: "blob".into()
        })
    );
    assert_eq!(
        parse("<ok/><ok/>"),
        Err(XmlError::MultipleRoots { name: "ok".into() })
    );
    assert_eq!(parse("<ok/>garbage"), Err(XmlError::TextOutsideRoot));
    assert_eq!(parse("junk<ok/>"), Err(XmlError::TextOutsideRoot));
    assert_eq!(parse("<ok/><![CDATA[x]]>"), Err(XmlError::TextOutsideRoot));
    assert_eq!(parse("<ok/>&amp;"), Err(XmlError::TextOutsideRoot));
    for bad in [
        "<ok>",
        "<ok",
        "<ok/></ok>",
        "<greeting></start>",
        "<error code='550'>a & b</error>",
        "<error code='550' code='551'/>",
        "<error code=550/>",
        "<error code='550' x='<'/>",
        "<!-- a -- b --><ok/>",
        "<start number='1'><profile uri='u'>",
        "<start number='1'><profile uri='u'>]]></profile></start>",
        "<error code='550'>a]]>b</error>",
        "<ok a='1' a='2'/>",
        "<ok a='&'/>",
    ] {
        assert!(
            matches!(parse(bad), Err(XmlError::Malformed { .. })),
            "{bad:?}: {:?}",
            parse(bad)
        );
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = "<greeting>".repeat(10_000);
    assert_eq!(
        parse(&deep),
        Err(XmlError::UnexpectedElement {
            parent: "greeting",
            element: "greeting".into()
        })
    );
    let deep = format!("<close code='200'>{}", "<a>".repeat(10_000));
    assert!(matches!(
        parse(&deep),
        Err(XmlError::UnexpectedElement {
            parent: "close",
            ..
        })
    ));
}

#[test]
fn attribute_whitespace_normalized_and_escaped_on_write() {
    let ChannelZeroMessage::Start(s) =
        parse("<start number='1' serverName='a\r\nb\tc'><profile uri='u'/></start>").unwrap()
    else {
        panic!()
    };
    assert_eq!(s.server_name.as_deref(), Some("a b c"));
    let s = Start {
        server_name: Some("a\r\n\t'\"b".into()),
        ..s
    };
    let out = ChannelZeroMessage::Start(s.clone()).to_vec();
    assert!(out.starts_with(b"<start number='1' serverName='a&#13;&#10;&#9;&apos;&quot;b'>"));
    assert_eq!(
        ChannelZeroMessage::parse(&out),
        Ok(ChannelZeroMessage::Start(s))
    );
}

#[test]
fn writer_forces_base64_when_cdata_cannot_carry_content() {
    for content in [&b"a]]>b"[..], b"\xff\x00", b"line\r\n", b"nul\x00"] {
        let p = Profile::new("urn:x").with_content(Bytes::copy_from_slice(content));
        let out = ChannelZeroMessage::Profile(p.clone()).to_vec();
        assert!(out.starts_with(b"<profile uri='urn:x' encoding='base64'><![CDATA["));
        let expected = Profile {
            encoding: ContentEncoding::Base64,
            ..p
        };
        assert_eq!(
            ChannelZeroMessage::parse(&out),
            Ok(ChannelZeroMessage::Profile(expected))
        );
    }
}

#[test]
fn writer_replaces_characters_xml_cannot_carry() {
    let e = ErrorElement::new(code(550), "a\u{0}b\u{FFFF}");
    let out = ChannelZeroMessage::Error(e).to_vec();
    assert_eq!(
        ChannelZeroMessage::parse(&out),
        Ok(ChannelZeroMessage::Error(ErrorElement::new(
            code(550),
            "a\u{FFFD}b\u{FFFD}"
        )))
    );
}

#[test]
fn empty_content_round_trips() {
    for encoding in [ContentEncoding::None, ContentEncoding::Base64] {
        for content in [None, Some(Bytes::new())] {
            let p = Profile {
                uri: "u".into(),
                content,
                encoding,
            };
            let m = ChannelZeroMessage::Profile(p);
            assert_eq!(ChannelZeroMessage::parse(&m.to_vec()), Ok(m));
        }
    }
}

#[test]
fn error_messages_are_readable() {
    let e = parse("<start number='0'><profile uri='u'/></start>").unwrap_err();
    assert_eq!(e.to_string(), "channel number 0 in <start> is out of range");
    let e = parse("<error code='55'/>").unwrap_err();
    assert_eq!(
        e.to_string(),
        "reply code \"55\" in <error> is not a three-digit code"
    );
}

// -- properties --------------------------------------------------------

/// Strings with characters that need escaping, CR/LF/tab and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 <>&'\"\\]\\[\t\r\n\u{e9}\u{1F600}:/=;#!?-]{0,24}"
}

fn uri() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9<>&'\"\\] \t\r\n\u{e9}:/=;#-]{1,24}"
}

fn profile() -> impl Strategy<Value = Profile> {
    let content = prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| Some(Bytes::from(v))),
        text().prop_map(|s| Some(Bytes::from(s))),
    ];
    let encoding = prop_oneof![Just(ContentEncoding::None), Just(ContentEncoding::Base64)];
    (uri(), content, encoding).prop_map(|(uri, content, encoding)| Profile {
        uri,
        content,
        encoding,
    })
}

fn reply_code() -> impl Strategy<Value = ReplyCode> {
    (100u16..=999).prop_map(|v| ReplyCode::new(v).unwrap())
}

fn message() -> impl Strategy<Value = ChannelZeroMessage> {
    prop_oneof![
        (
            proptest::collection::vec(uri(), 0..4),
            proptest::option::of(text()),
            proptest::option::of(text())
        )
            .prop_map(|(profiles, features, localize)| {
                ChannelZeroMessage::Greeting(Greeting {
                    profiles,
                    features,
                    localize,
                })
            }),
        (
            1..=MAX_CHANNEL,
            proptest::option::of(text()),
            proptest::collection::vec(profile(), 1..4)
        )
            .prop_map(
                |(number, server_name, profiles)| ChannelZeroMessage::Start(Start {
                    number,
                    server_name,
                    profiles
                })
            ),
        (
            0..=MAX_CHANNEL,
            reply_code(),
            proptest::option::of(text()),
            text()
        )
            .prop_map(
                |(number, code, lang, text)| ChannelZeroMessage::Close(Close {
                    number,
                    code,
                    lang,
                    text
                })
            ),
        Just(ChannelZeroMessage::Ok),
        (reply_code(), proptest::option::of(text()), text()).prop_map(|(code, lang, text)| {
            ChannelZeroMessage::Error(ErrorElement { code, lang, text })
        }),
        profile().prop_map(ChannelZeroMessage::Profile),
    ]
}

/// What a message reads back as: the writer may switch to base64.
fn as_written(m: &ChannelZeroMessage) -> ChannelZeroMessage {
    let fix = |p: &Profile| Profile {
        encoding: p.wire_encoding(),
        ..p.clone()
    };
    match m {
        ChannelZeroMessage::Profile(p) => ChannelZeroMessage::Profile(fix(p)),
        ChannelZeroMessage::Start(s) => ChannelZeroMessage::Start(Start {
            profiles: s.profiles.iter().map(fix).collect(),
            ..s.clone()
        }),
        other => other.clone(),
    }
}

fn fragment() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "<greeting",
        "<start",
        "<close",
        "<ok",
        "<error",
        "<profile",
        "</greeting>",
        "</start>",
        "</close>",
        "</ok>",
        "</error>",
        "</profile>",
        ">",
        "/>",
        " />",
        " ",
        "\r\n",
        " uri='u'",
        " number='1'",
        " number='0'",
        " code='200'",
        " code='5'",
        " encoding='base64'",
        " encoding='x'",
        " xml:lang='en'",
        " serverName=\"s\"",
        "<![CDATA[",
        "]]>",
        "aGV5",
        "&amp;",
        "&lt;",
        "&#65;",
        "&#0;",
        "&x;",
        "&",
        "<!--",
        "-->",
        "<?xml version='1.0'?>",
        "<?pi?>",
        "<!DOCTYPE x>",
        "<!ENTITY",
        "'",
        "\"",
        "=",
        "text",
        "\u{e9}",
        "\u{1}",
    ])
}

/// Inserts `fragment` into `body` at byte `at` (modulo its length),
/// dropping the rest of `body` when `truncate`.
fn mutate(body: &[u8], at: usize, fragment: &str, truncate: bool) -> Vec<u8> {
    let at = at % (body.len() + 1);
    let mut out = body[..at].to_vec();
    out.extend_from_slice(fragment.as_bytes());
    if !truncate {
        out.extend_from_slice(&body[at..]);
    }
    out
}

proptest! {
    /// RFC 3080 6.4, RFC 3080 2.3.1.2, RFC 3080 2.3.1.3: whatever is written reads back the same.
    #[test]
    fn round_trip(m in message()) {
        let out = m.to_vec();
        prop_assert!(out.ends_with(b"\r\n"));
        prop_assert_eq!(ChannelZeroMessage::parse(&out), Ok(as_written(&m)));
    }

    /// Nothing panics on arbitrary bytes.
    #[test]
    fn no_panic_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ChannelZeroMessage::parse(&body);
    }

    /// Nothing panics on damaged valid messages; what still parses can
    /// be rewritten and reread.
    #[test]
    fn no_panic_on_mutated_messages(
        m in message(),
        at in any::<usize>(),
        fragment in fragment(),
        truncate in any::<bool>(),
    ) {
        let body = mutate(&m.to_vec(), at, fragment, truncate);
        if let Ok(m) = ChannelZeroMessage::parse(&body) {
            let again = ChannelZeroMessage::parse(&m.to_vec());
            prop_assert_eq!(again, Ok(as_written(&m)));
        }
    }

    /// Nothing panics on XML-ish soup.
    #[test]
    fn no_panic_on_fragments(parts in proptest::collection::vec(fragment(), 0..40)) {
        let body = parts.concat();
        if let Ok(m) = ChannelZeroMessage::parse(body.as_bytes()) {
            // Anything accepted can be rewritten and reread.
            let again = ChannelZeroMessage::parse(&m.to_vec());
            prop_assert_eq!(again, Ok(as_written(&m)));
        }
    }
}

/// XML 1.0 3.1 (unique attributes) without quadratic work: an element with
/// thousands of attributes is refused after a few (it used to cost 0.2 s
/// of CPU in the duplicate check for 9,354 of them).
#[test]
fn an_element_with_too_many_attributes_is_refused_early() {
    let attrs: String = (0..9354).map(|i| format!(" a{i}='x'")).collect();
    let doc = format!("<start number='1'{attrs}><profile uri='http://x' /></start>");
    assert_eq!(
        parse(&doc),
        Err(XmlError::TooManyAttributes {
            element: "start".into(),
            limit: MAX_ATTRIBUTES
        })
    );
}

#[test]
fn xml_1_0_3_1_duplicate_attributes_are_still_malformed() {
    let err = parse("<start number='1' number='3'><profile uri='http://x' /></start>").unwrap_err();
    assert!(
        matches!(&err, XmlError::Malformed { reason, .. } if reason.contains("duplicate attribute number")),
        "{err:?}"
    );
    // Unknown attributes up to the limit are ignored.
    let extra: String = (0..MAX_ATTRIBUTES - 2)
        .map(|i| format!(" x-{i}='y'"))
        .collect();
    assert!(
        parse(&format!(
            "<start number='1'{extra}><profile uri='http://x' /></start>"
        ))
        .is_ok()
    );
}
