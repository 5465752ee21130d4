//! The channel-0 (channel management) messages of RFC 3080 section 2.3.1.
//!
//! These are the `application/beep+xml` bodies exchanged on channel zero:
//! `<greeting>`, `<start>`, `<close>`, `<ok>`, `<error>`, and `<profile>` (the
//! positive reply to a start); and the messages of the tuning profiles,
//! TLS's ([`TlsElement`], RFC 3080 3.1) and SASL's ([`SaslElement`], RFC
//! 3080 4.1). This module only deals with the body that follows the MIME
//! header block; the caller strips and adds the headers.
//!
//! Parsing uses quick-xml and enforces the `application/beep+xml` subset of
//! XML 1.0 (RFC 3080 section 6.4, RFC 3080 6.4): UTF-8 only, no DOCTYPE, and no
//! entity references besides the five predefined ones and numeric character
//! references. An XML declaration is tolerated on input (some toolkits send
//! one) but never written. It is lenient where LibVortex needs it (single
//! quotes, `<profile uri='...' >`, `<ok />` without a trailing CRLF,
//! piggybacked content in CDATA, base64 text inside CDATA) and strict
//! otherwise. Unknown attributes are ignored everywhere for forward
//! compatibility; unknown elements are errors, which also bounds element
//! nesting at two levels whatever the input.
//!
//! Writing produces the canonical layout beep-rs sends: single-quoted
//! attributes, one `<profile>` per CRLF-terminated line indented by three
//! spaces (as LibVortex and the RFC examples do), and a final CRLF.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use quick_xml::Reader;
use quick_xml::escape::{EscapeError, resolve_xml_entity, unescape_with};
use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::reply_code::ReplyCode;

/// The largest channel number RFC 3080 allows (2³¹−1).
const MAX_CHANNEL: u32 = 2_147_483_647;

/// How piggybacked profile content is encoded on the wire (the `encoding`
/// attribute of `<profile>`, RFC 3080 2.3.1.2).
///
/// ```
/// use beep_proto::xml::ContentEncoding;
///
/// assert_eq!(ContentEncoding::default(), ContentEncoding::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentEncoding {
    /// `encoding='none'` or no attribute: the content is the element's text.
    #[default]
    None,
    /// `encoding='base64'`: the element's text is base64 of the content.
    Base64,
}

/// A `<profile>` element: in a greeting (uri only), in a `<start>` (an offer,
/// maybe with initialization content), or as the positive reply to a start.
///
/// `content` holds the decoded bytes: base64 has already been decoded when
/// `encoding` is [`ContentEncoding::Base64`].
///
/// ```
/// use beep_proto::xml::{ContentEncoding, Profile};
///
/// let p = Profile::new("http://iana.org/beep/TLS").with_content("<ready />");
/// assert_eq!(p.uri, "http://iana.org/beep/TLS");
/// assert_eq!(p.content.as_deref(), Some(&b"<ready />"[..]));
/// assert_eq!(p.encoding, ContentEncoding::None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The profile's URI, which authoritatively identifies it.
    pub uri: String,
    /// Piggybacked content (initialization message or its answer), decoded.
    pub content: Option<Bytes>,
    /// How the content travels (or travelled) on the wire.
    pub encoding: ContentEncoding,
}

impl Profile {
    /// A profile with no content and the default encoding.
    ///
    /// ```
    /// use beep_proto::xml::Profile;
    ///
    /// let p = Profile::new("http://iana.org/beep/SASL/PLAIN");
    /// assert!(p.content.is_none());
    /// ```
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            content: None,
            encoding: ContentEncoding::None,
        }
    }

    /// Sets the piggybacked content (raw bytes; the writer encodes them).
    ///
    /// ```
    /// use beep_proto::xml::Profile;
    ///
    /// let p = Profile::new("http://iana.org/beep/SASL/PLAIN")
    ///     .with_content("<blob>AGJvYgBzZWNyZXQ=</blob>");
    /// assert_eq!(p.content.unwrap().len(), 29);
    /// ```
    pub fn with_content(mut self, content: impl Into<Bytes>) -> Self {
        self.content = Some(content.into());
        self
    }

    /// The encoding [`ChannelZeroMessage::write`] uses for this profile:
    /// base64 when asked for, and also when the content cannot travel
    /// verbatim in a CDATA section (not UTF-8, contains `]]>`, a carriage
    /// return, which XML parsers rewrite, or a character XML forbids).
    ///
    /// Parsing what was written gives back this encoding, so this is the
    /// `encoding` a round trip yields.
    ///
    /// ```
    /// use beep_proto::xml::{ContentEncoding, Profile};
    ///
    /// let text = Profile::new("urn:x").with_content("<ready />");
    /// assert_eq!(text.wire_encoding(), ContentEncoding::None);
    /// let binary = Profile::new("urn:x").with_content(vec![0xff, 0x00]);
    /// assert_eq!(binary.wire_encoding(), ContentEncoding::Base64);
    /// ```
    pub fn wire_encoding(&self) -> ContentEncoding {
        match (&self.encoding, &self.content) {
            (ContentEncoding::None, Some(content)) if !cdata_safe(content) => {
                ContentEncoding::Base64
            }
            (encoding, _) => *encoding,
        }
    }
}

/// The `<greeting>` element each peer sends as `RPY 0 0` (RFC 3080 2.3.1.1,
/// RFC 3080 2.3.1.1, conformance item 34).
///
/// ```
/// use beep_proto::xml::Greeting;
///
/// let g = Greeting { profiles: vec!["http://iana.org/beep/TLS".into()], ..Greeting::default() };
/// assert!(g.features.is_none() && g.localize.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Greeting {
    /// URIs of the profiles this peer supports in the server role.
    pub profiles: Vec<String>,
    /// The `features` attribute (space-separated feature tokens), if any.
    pub features: Option<String>,
    /// The `localize` attribute (language tags, most desirable first), if
    /// any; absent means `i-default`.
    pub localize: Option<String>,
}

/// The `<start>` element asking to create a channel (RFC 3080 2.3.1.2,
/// RFC 3080 2.3.1.2).
///
/// ```
/// use beep_proto::xml::{Profile, Start};
///
/// let s = Start { number: 1, server_name: None, profiles: vec![Profile::new("urn:x")] };
/// assert_eq!(s.profiles.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    /// The channel number to create, `1..=2147483647`.
    pub number: u32,
    /// The `serverName` attribute, if any (RFC 3080 2.3.1.2).
    pub server_name: Option<String>,
    /// The offered profiles, in order of preference; at least one.
    pub profiles: Vec<Profile>,
}

/// The `<close>` element asking to close a channel, or the session when
/// `number` is 0 (RFC 3080 2.3.1.3, RFC 3080 2.3.1.3).
///
/// ```
/// use beep_proto::reply_code::ReplyCode;
/// use beep_proto::xml::Close;
///
/// let c = Close::new(0, ReplyCode::SUCCESS);
/// assert_eq!((c.number, c.code, c.text.as_str()), (0, ReplyCode::SUCCESS, ""));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// The channel to close, `0..=2147483647`; 0 releases the session. An
    /// absent attribute parses as 0.
    pub number: u32,
    /// The reply code.
    pub code: ReplyCode,
    /// The `xml:lang` attribute, if any.
    pub lang: Option<String>,
    /// The textual diagnostic (for people, not programs); may be empty.
    pub text: String,
}

impl Close {
    /// A close with no language and no diagnostic.
    ///
    /// ```
    /// use beep_proto::reply_code::ReplyCode;
    /// use beep_proto::xml::Close;
    ///
    /// assert_eq!(Close::new(3, ReplyCode::SUCCESS).number, 3);
    /// ```
    pub fn new(number: u32, code: ReplyCode) -> Self {
        Self {
            number,
            code,
            lang: None,
            text: String::new(),
        }
    }
}

/// The `<error>` element of a negative reply (RFC 3080 2.3.1.5, RFC 3080 2.3.1.3).
///
/// ```
/// use beep_proto::reply_code::ReplyCode;
/// use beep_proto::xml::ErrorElement;
///
/// let e = ErrorElement::new(ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "still working");
/// assert_eq!(e.code.get(), 550);
/// assert!(e.lang.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorElement {
    /// The reply code.
    pub code: ReplyCode,
    /// The `xml:lang` attribute, if any.
    pub lang: Option<String>,
    /// The textual diagnostic (for people, not programs); may be empty.
    pub text: String,
}

impl ErrorElement {
    /// An error with a diagnostic and no language.
    ///
    /// ```
    /// use beep_proto::reply_code::ReplyCode;
    /// use beep_proto::xml::ErrorElement;
    ///
    /// let e = ErrorElement::new(ReplyCode::SERVICE_NOT_AVAILABLE, "");
    /// assert!(e.text.is_empty());
    /// ```
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        Self {
            code,
            lang: None,
            text: text.into(),
        }
    }
}

/// One channel-0 message body (RFC 3080 section 2.3.1).
///
/// ```
/// use beep_proto::xml::ChannelZeroMessage;
///
/// assert_eq!(ChannelZeroMessage::parse(b"<ok />").unwrap(), ChannelZeroMessage::Ok);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelZeroMessage {
    /// `<greeting>`: RPY 0 0 at session start.
    Greeting(Greeting),
    /// `<start>`: MSG asking to create a channel.
    Start(Start),
    /// `<close>`: MSG asking to close a channel or release the session.
    Close(Close),
    /// `<ok />`: positive reply to a close.
    Ok,
    /// `<error>`: negative reply (or an unavailable listener's greeting).
    Error(ErrorElement),
    /// `<profile>`: positive reply to a start, maybe with piggybacked content.
    Profile(Profile),
}

/// Why a channel-0 body was rejected.
///
/// ```
/// use beep_proto::xml::{ChannelZeroMessage, XmlError};
///
/// let err = ChannelZeroMessage::parse(b"<start number='1' />").unwrap_err();
/// assert_eq!(err, XmlError::NoProfile);
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum XmlError {
    /// The body is not UTF-8 (RFC 3080 6.4).
    #[error("body is not valid UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// A character XML 1.0 does not allow (raw or via a character reference).
    #[error("character U+{code:04X} is not allowed in XML")]
    IllegalCharacter {
        /// The offending code point.
        code: u32,
    },
    /// Not well-formed XML.
    #[error("malformed XML at byte {position}: {reason}")]
    Malformed {
        /// Byte offset near the problem.
        position: u64,
        /// What the parser found wrong.
        reason: String,
    },
    /// A `<!DOCTYPE ...>` declaration, forbidden by RFC 3080 6.4 (RFC 3080 6.4).
    #[error("DOCTYPE declarations are not allowed in application/beep+xml")]
    Doctype,
    /// An XML declaration naming an encoding other than UTF-8.
    #[error("XML declaration names encoding {encoding:?}; only UTF-8 is supported")]
    UnsupportedEncoding {
        /// The declared encoding.
        encoding: String,
    },
    /// An entity reference other than the five predefined ones (RFC 3080 6.4).
    #[error(
        "entity reference &{name}; is not allowed (only &amp; &lt; &gt; &apos; &quot; and numeric references)"
    )]
    UnknownEntity {
        /// The entity name.
        name: String,
    },
    /// The body holds no element at all.
    #[error("empty document: no root element")]
    Empty,
    /// The root element is not a channel-0 message.
    #[error("unknown root element <{name}>")]
    UnknownRoot {
        /// The root element's name.
        name: String,
    },
    /// A second element after the root element.
    #[error("more than one root element (found <{name}> after the root)")]
    MultipleRoots {
        /// The second element's name.
        name: String,
    },
    /// Character data before or after the root element.
    #[error("text outside the root element")]
    TextOutsideRoot,
    /// A child element where it is not allowed.
    #[error("unexpected element <{element}> inside <{parent}>")]
    UnexpectedElement {
        /// The enclosing element.
        parent: &'static str,
        /// The unexpected child.
        element: String,
    },
    /// Character data in an element that has none (`greeting`, `start`, `ok`).
    #[error("unexpected text inside <{element}>")]
    UnexpectedText {
        /// The enclosing element.
        element: &'static str,
    },
    /// More attributes on one element than any BEEP element needs (it has
    /// at most three; unknown ones are allowed, up to the limit).
    #[error("<{element}> has more than {limit} attributes")]
    TooManyAttributes {
        /// The element.
        element: String,
        /// The limit.
        limit: usize,
    },
    /// A required attribute is absent.
    #[error("<{element}> lacks the required attribute {attribute}")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The missing attribute.
        attribute: &'static str,
    },
    /// An attribute's value is not one the element allows.
    #[error("<{element}> attribute {attribute} has invalid value {value:?}")]
    InvalidAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
        /// The value found (unescaped).
        value: String,
    },
    /// A channel number outside `1..=2147483647` (start) or `0..=2147483647`
    /// (close) (RFC 3080 2.3.1.2, RFC 3080 2.3.1.3).
    #[error("channel number {value} in <{element}> is out of range")]
    ChannelNumberOutOfRange {
        /// The element.
        element: &'static str,
        /// The number found.
        value: String,
    },
    /// A `code` attribute that is not a three-digit reply code (RFC 3080 2.3.1.3).
    #[error("reply code {value:?} in <{element}> is not a three-digit code")]
    InvalidReplyCode {
        /// The element.
        element: &'static str,
        /// The value found.
        value: String,
    },
    /// A `<start>` without any `<profile>` (RFC 3080 2.3.1.2).
    #[error("<start> offers no profile")]
    NoProfile,
    /// A `<profile>` in a greeting with content (conformance item 34).
    #[error("<profile uri={uri:?}> inside <greeting> has content")]
    GreetingProfileContent {
        /// The profile's URI.
        uri: String,
    },
    /// `encoding='base64'` content that is not base64.
    #[error("content of <profile uri={uri:?}> is not valid base64: {reason}")]
    InvalidBase64 {
        /// The profile's URI.
        uri: String,
        /// What the decoder found wrong.
        reason: String,
    },
    /// A SASL `<blob>` whose content is not base64 (RFC 3080 4.1.2: the
    /// content of a blob is always base64).
    #[error("content of <blob> is not valid base64 (RFC 3080 4.1.2): {reason}")]
    InvalidBlobBase64 {
        /// What the decoder found wrong.
        reason: String,
    },
}

impl ChannelZeroMessage {
    /// Parses one `application/beep+xml` body (without its MIME headers).
    ///
    /// ```
    /// use beep_proto::xml::{ChannelZeroMessage, ContentEncoding};
    ///
    /// let body = b"<start number='3' serverName='beep.example.test'>\r\n   \
    ///     <profile uri='http://iana.org/beep/transient/vortex-regression' encoding='base64'>\
    ///     <![CDATA[aGV5IGR1ZGUsIHRoaXMgaXMgYmFzZTY0]]></profile>\r\n</start>\r\n";
    /// let ChannelZeroMessage::Start(start) = ChannelZeroMessage::parse(body)? else { panic!() };
    /// assert_eq!(start.number, 3);
    /// assert_eq!(start.server_name.as_deref(), Some("beep.example.test"));
    /// let profile = &start.profiles[0];
    /// assert_eq!(profile.encoding, ContentEncoding::Base64);
    /// assert_eq!(profile.content.as_deref(), Some(&b"hey dude, this is base64"[..]));
    /// # Ok::<(), beep_proto::xml::XmlError>(())
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, XmlError> {
        Parser::new(checked_text(body)?).document(Parser::root)
    }

    /// Appends the serialized body (no MIME headers) to `out`.
    ///
    /// The writer does not validate: a [`Start`] without profiles or with
    /// number 0 is written as given. Characters XML cannot carry at all are
    /// replaced by U+FFFD.
    ///
    /// ```
    /// use beep_proto::reply_code::ReplyCode;
    /// use beep_proto::xml::{ChannelZeroMessage, Close, Greeting, Profile, Start};
    ///
    /// let mut out = Vec::new();
    /// ChannelZeroMessage::Close(Close::new(0, ReplyCode::SUCCESS)).write(&mut out);
    /// assert_eq!(out, b"<close number='0' code='200' />\r\n");
    ///
    /// let start = Start {
    ///     number: 1,
    ///     server_name: None,
    ///     profiles: vec![Profile::new("http://iana.org/beep/TLS").with_content("<ready />")],
    /// };
    /// out.clear();
    /// ChannelZeroMessage::Start(start).write(&mut out);
    /// assert_eq!(
    ///     out,
    ///     &b"<start number='1'>\r\n   <profile uri='http://iana.org/beep/TLS'>\
    ///        <![CDATA[<ready />]]></profile>\r\n</start>\r\n"[..]
    /// );
    /// ```
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Greeting(g) => {
                out.extend_from_slice(b"<greeting");
                push_opt_attr(out, "features", g.features.as_deref());
                push_opt_attr(out, "localize", g.localize.as_deref());
                if g.profiles.is_empty() {
                    out.extend_from_slice(b" />\r\n");
                    return;
                }
                out.extend_from_slice(b">\r\n");
                for uri in &g.profiles {
                    out.extend_from_slice(b"   <profile");
                    push_attr(out, "uri", uri);
                    out.extend_from_slice(b" />\r\n");
                }
                out.extend_from_slice(b"</greeting>\r\n");
            }
            Self::Start(s) => {
                out.extend_from_slice(b"<start");
                push_attr(out, "number", &s.number.to_string());
                push_opt_attr(out, "serverName", s.server_name.as_deref());
                out.extend_from_slice(b">\r\n");
                for p in &s.profiles {
                    out.extend_from_slice(b"   ");
                    write_profile(p, out);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"</start>\r\n");
            }
            Self::Close(c) => {
                out.extend_from_slice(b"<close");
                push_attr(out, "number", &c.number.to_string());
                write_diagnostic("close", c.code, c.lang.as_deref(), &c.text, out);
            }
            Self::Ok => out.extend_from_slice(b"<ok />\r\n"),
            Self::Error(e) => {
                out.extend_from_slice(b"<error");
                write_diagnostic("error", e.code, e.lang.as_deref(), &e.text, out);
            }
            Self::Profile(p) => {
                write_profile(p, out);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The serialized body in a new vector (see [`write`](Self::write)).
    ///
    /// ```
    /// use beep_proto::xml::ChannelZeroMessage;
    ///
    /// assert_eq!(ChannelZeroMessage::Ok.to_vec(), b"<ok />\r\n");
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

/// The messages of the TLS profile (RFC 3080 3.1.2, 7.2): `<ready>` asks
/// for TLS, `<proceed>` or `<error>` answers. They travel as profile
/// content piggybacked on a start and its reply, or as MSG and RPY/ERR on
/// the TLS channel.
///
/// ```
/// use beep_proto::xml::TlsElement;
/// assert_eq!(TlsElement::parse(b"<ready />"), Ok(TlsElement::Ready { version: None }));
/// assert_eq!(TlsElement::parse(b"<proceed/>\r\n"), Ok(TlsElement::Proceed));
/// assert_eq!(TlsElement::Proceed.to_vec(), b"<proceed />\r\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsElement {
    /// Asks to begin TLS; `version` is the earliest version acceptable
    /// ("1", the default, when absent).
    Ready {
        /// The `version` attribute.
        version: Option<String>,
    },
    /// Agrees: the TLS handshake follows the reply.
    Proceed,
    /// Refuses, with a reason.
    Error(ErrorElement),
}

impl TlsElement {
    /// Parses a TLS profile message.
    ///
    /// # Errors
    ///
    /// As [`ChannelZeroMessage::parse`]; [`XmlError::UnknownRoot`] for
    /// another element.
    ///
    /// ```
    /// use beep_proto::xml::TlsElement;
    /// let ready = TlsElement::parse(b"<ready version='1' />").unwrap();
    /// assert_eq!(ready, TlsElement::Ready { version: Some("1".into()) });
    /// assert!(TlsElement::parse(b"<greeting />").is_err());
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, XmlError> {
        Parser::new(checked_text(body)?).document(Parser::tls_root)
    }

    /// The serialized element, CRLF-terminated.
    ///
    /// ```
    /// use beep_proto::xml::TlsElement;
    /// assert_eq!(TlsElement::Ready { version: None }.to_vec(), b"<ready />\r\n");
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            TlsElement::Ready { version: None } => b"<ready />\r\n".to_vec(),
            TlsElement::Ready { version: Some(v) } => {
                let mut out = b"<ready".to_vec();
                push_attr(&mut out, "version", v);
                out.extend_from_slice(b" />\r\n");
                out
            }
            TlsElement::Proceed => b"<proceed />\r\n".to_vec(),
            TlsElement::Error(e) => ChannelZeroMessage::Error(e.clone()).to_vec(),
        }
    }
}

/// The `status` attribute of a SASL `<blob>` (RFC 3080 4.1.3).
///
/// ```
/// use beep_proto::xml::BlobStatus;
/// assert_eq!(BlobStatus::default(), BlobStatus::Continue);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BlobStatus {
    /// `continue` (also an absent attribute): a challenge or a response.
    #[default]
    Continue,
    /// `complete`: the server's success, maybe with additional data.
    Complete,
    /// `abort`: the client gives up the exchange.
    Abort,
}

/// A SASL `<blob>` (RFC 3080 4.1.2, 7.3): octets, base64 on the wire, and
/// a status.
///
/// ```
/// use beep_proto::xml::{BlobStatus, SaslBlob};
/// let blob = SaslBlob::new(b"\0bob\0secret".to_vec(), BlobStatus::Continue);
/// assert_eq!(blob.to_vec(), b"<blob>AGJvYgBzZWNyZXQ=</blob>\r\n");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaslBlob {
    /// The octets, decoded.
    pub content: Vec<u8>,
    /// What the blob says about the exchange.
    pub status: BlobStatus,
}

impl SaslBlob {
    /// A blob of `content` with `status`.
    ///
    /// ```
    /// use beep_proto::xml::{BlobStatus, SaslBlob};
    /// assert_eq!(SaslBlob::new(Vec::new(), BlobStatus::Complete).to_vec(), b"<blob status='complete' />\r\n");
    /// ```
    pub fn new(content: Vec<u8>, status: BlobStatus) -> Self {
        SaslBlob { content, status }
    }

    /// The serialized element, CRLF-terminated: the status attribute
    /// only when it is not `continue` (LibVortex writes `<blob>...</blob>`
    /// and `<blob status='complete' />`), the content in base64.
    ///
    /// ```
    /// use beep_proto::xml::{BlobStatus, SaslBlob};
    /// assert_eq!(SaslBlob::new(Vec::new(), BlobStatus::Abort).to_vec(), b"<blob status='abort' />\r\n");
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = b"<blob".to_vec();
        match self.status {
            BlobStatus::Continue => {}
            BlobStatus::Complete => out.extend_from_slice(b" status='complete'"),
            BlobStatus::Abort => out.extend_from_slice(b" status='abort'"),
        }
        if self.content.is_empty() {
            out.extend_from_slice(b" />\r\n");
        } else {
            out.push(b'>');
            out.extend_from_slice(BASE64.encode(&self.content).as_bytes());
            out.extend_from_slice(b"</blob>\r\n");
        }
        out
    }
}

/// The messages of the SASL family of profiles (RFC 3080 4.1.2, 7.3): a
/// `<blob>` carries a challenge, a response or the outcome; an `<error>`
/// is the server's refusal. They travel as profile content piggybacked on
/// a start and its reply, or as MSG and RPY/ERR on the SASL channel.
///
/// ```
/// use beep_proto::xml::{BlobStatus, SaslBlob, SaslElement};
/// let blob = SaslElement::parse(b"<blob>AGJvYgBzZWNyZXQ=</blob>").unwrap();
/// assert_eq!(blob, SaslElement::Blob(SaslBlob::new(b"\0bob\0secret".to_vec(), BlobStatus::Continue)));
/// assert!(SaslElement::parse(b"<blob>not base64!</blob>").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslElement {
    /// `<blob>`.
    Blob(SaslBlob),
    /// `<error>`: the exchange failed.
    Error(ErrorElement),
}

impl SaslElement {
    /// Parses a SASL profile message. Whitespace inside the base64 text
    /// is ignored (RFC 3080 4.1.1 shows a blob broken over two lines).
    ///
    /// # Errors
    ///
    /// As [`ChannelZeroMessage::parse`]; [`XmlError::UnknownRoot`] for
    /// another element, [`XmlError::InvalidAttribute`] for a status other
    /// than `continue`, `complete` and `abort`, and
    /// [`XmlError::InvalidBlobBase64`] for content that is not base64.
    ///
    /// ```
    /// use beep_proto::xml::{BlobStatus, SaslElement, XmlError};
    /// let SaslElement::Blob(done) = SaslElement::parse(b"<blob status='complete' />").unwrap() else { panic!() };
    /// assert_eq!(done.status, BlobStatus::Complete);
    /// assert!(matches!(SaslElement::parse(b"<blob>@@@@</blob>"), Err(XmlError::InvalidBlobBase64 { .. })));
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, XmlError> {
        Parser::new(checked_text(body)?).document(Parser::sasl_root)
    }

    /// The serialized element, CRLF-terminated.
    ///
    /// ```
    /// use beep_proto::reply_code::ReplyCode;
    /// use beep_proto::xml::{ErrorElement, SaslElement};
    /// let error = SaslElement::Error(ErrorElement::new(ReplyCode::AUTHENTICATION_FAILURE, ""));
    /// assert_eq!(error.to_vec(), b"<error code='535' />\r\n");
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            SaslElement::Blob(blob) => blob.to_vec(),
            SaslElement::Error(e) => ChannelZeroMessage::Error(e.clone()).to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// `body` as text, if it is UTF-8 made of XML characters only.
fn checked_text(body: &[u8]) -> Result<&str, XmlError> {
    let text = std::str::from_utf8(body).map_err(|e| XmlError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    if let Some(c) = text.chars().find(|&c| !is_xml_char(c)) {
        return Err(XmlError::IllegalCharacter { code: c.into() });
    }
    Ok(text)
}

/// XML 1.0 `Char` production (surrogates cannot occur in a `char`).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// XML 1.0 `S` production: space, tab, CR, LF only.
fn is_xml_whitespace(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Attributes allowed on one element (BEEP's have at most three; the rest
/// leaves room for extensions, which are ignored).
const MAX_ATTRIBUTES: usize = 16;

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// What a text-bearing element (`profile`, `close`, `error`) contained.
#[derive(Default)]
struct TextContent {
    /// Everything, in order: unescaped text and CDATA verbatim.
    all: String,
    /// The content with whitespace-only text runs around CDATA dropped.
    significant: String,
    /// The text run since the last CDATA section (or the start).
    pending: String,
    saw_cdata: bool,
}

impl TextContent {
    fn push_text(&mut self, s: &str) {
        self.all.push_str(s);
        self.pending.push_str(s);
    }

    fn push_cdata(&mut self, s: &str) {
        self.all.push_str(s);
        self.flush_pending();
        self.significant.push_str(s);
        self.saw_cdata = true;
    }

    fn flush_pending(&mut self) {
        if !is_xml_whitespace(self.pending.as_bytes()) {
            self.significant.push_str(&self.pending);
        }
        self.pending.clear();
    }

    /// Profile content: `None` when there is no CDATA and only whitespace.
    fn into_profile_content(mut self) -> Option<String> {
        self.flush_pending();
        (self.saw_cdata || !self.significant.is_empty()).then_some(self.significant)
    }
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.check_comments = true;
        config.expand_empty_elements = false;
        config.allow_unmatched_ends = false;
        config.allow_dangling_amp = false;
        Self { reader }
    }

    fn malformed(&self, reason: impl Into<String>) -> XmlError {
        XmlError::Malformed {
            position: self.reader.buffer_position(),
            reason: reason.into(),
        }
    }

    fn next(&mut self) -> Result<Event<'a>, XmlError> {
        self.reader.read_event().map_err(|e| XmlError::Malformed {
            position: self.reader.error_position(),
            reason: e.to_string(),
        })
    }

    fn escape_error(&self, e: EscapeError) -> XmlError {
        match e {
            EscapeError::UnrecognizedEntity(_, name) => XmlError::UnknownEntity { name },
            other => self.malformed(other.to_string()),
        }
    }

    /// The whole body: prolog, exactly one root element (read by `root`),
    /// epilogue.
    fn document<T>(
        mut self,
        mut root_element: impl FnMut(&mut Self, &BytesStart<'a>, bool) -> Result<T, XmlError>,
    ) -> Result<T, XmlError> {
        let mut root = None;
        let mut first = true;
        loop {
            match self.next()? {
                Event::Decl(decl) => {
                    if !first {
                        return Err(self.malformed("XML declaration not at the start"));
                    }
                    match decl.encoding() {
                        None => {}
                        Some(Ok(enc)) if enc.eq_ignore_ascii_case(b"utf-8") => {}
                        Some(Ok(enc)) => {
                            return Err(XmlError::UnsupportedEncoding {
                                encoding: lossy(&enc),
                            });
                        }
                        Some(Err(e)) => return Err(self.malformed(e.to_string())),
                    }
                }
                Event::PI(_) | Event::Comment(_) => {}
                Event::DocType(_) => return Err(XmlError::Doctype),
                Event::Text(t) if is_xml_whitespace(&t) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(XmlError::TextOutsideRoot);
                }
                Event::Start(e) | Event::Empty(e) if root.is_some() => {
                    return Err(XmlError::MultipleRoots {
                        name: lossy(e.name().as_ref()),
                    });
                }
                Event::Start(e) => root = Some(root_element(&mut self, &e, false)?),
                Event::Empty(e) => root = Some(root_element(&mut self, &e, true)?),
                Event::End(e) => {
                    let name = lossy(e.name().as_ref());
                    return Err(self.malformed(format!("unmatched end tag </{name}>")));
                }
                Event::Eof => return root.ok_or(XmlError::Empty),
            }
            first = false;
        }
    }

    fn root(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<ChannelZeroMessage, XmlError> {
        Ok(match e.name().as_ref() {
            b"greeting" => ChannelZeroMessage::Greeting(self.greeting(e, empty)?),
            b"start" => ChannelZeroMessage::Start(self.start(e, empty)?),
            b"close" => ChannelZeroMessage::Close(self.close(e, empty)?),
            b"ok" => {
                self.attributes(e, [])?;
                self.no_children("ok", empty)?;
                ChannelZeroMessage::Ok
            }
            b"error" => ChannelZeroMessage::Error(self.error(e, empty)?),
            b"profile" => ChannelZeroMessage::Profile(self.profile(e, empty)?),
            other => return Err(XmlError::UnknownRoot { name: lossy(other) }),
        })
    }

    /// A TLS profile message's element (RFC 3080 7.2).
    fn tls_root(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<TlsElement, XmlError> {
        Ok(match e.name().as_ref() {
            b"ready" => {
                let [version] = self.attributes(e, ["version"])?;
                self.no_children("ready", empty)?;
                TlsElement::Ready { version }
            }
            b"proceed" => {
                self.attributes(e, [])?;
                self.no_children("proceed", empty)?;
                TlsElement::Proceed
            }
            b"error" => TlsElement::Error(self.error(e, empty)?),
            other => return Err(XmlError::UnknownRoot { name: lossy(other) }),
        })
    }

    /// A SASL profile message's element (RFC 3080 7.3).
    fn sasl_root(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<SaslElement, XmlError> {
        Ok(match e.name().as_ref() {
            b"blob" => {
                let [status] = self.attributes(e, ["status"])?;
                let status = match status.as_deref() {
                    None | Some("continue") => BlobStatus::Continue,
                    Some("complete") => BlobStatus::Complete,
                    Some("abort") => BlobStatus::Abort,
                    Some(_) => {
                        return Err(XmlError::InvalidAttribute {
                            element: "blob",
                            attribute: "status",
                            value: status.unwrap_or_default(),
                        });
                    }
                };
                let text = if empty {
                    String::new()
                } else {
                    self.text_content("blob")?.all
                };
                let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                let content =
                    BASE64
                        .decode(compact)
                        .map_err(|err| XmlError::InvalidBlobBase64 {
                            reason: err.to_string(),
                        })?;
                SaslElement::Blob(SaslBlob { content, status })
            }
            b"error" => SaslElement::Error(self.error(e, empty)?),
            other => return Err(XmlError::UnknownRoot { name: lossy(other) }),
        })
    }

    /// Refuses any child element of an element declared empty.
    fn no_children(&mut self, parent: &'static str, empty: bool) -> Result<(), XmlError> {
        if !empty && let Some((child, _)) = self.next_child(parent)? {
            return Err(XmlError::UnexpectedElement {
                parent,
                element: lossy(child.name().as_ref()),
            });
        }
        Ok(())
    }

    /// The values of the attributes `names` of `e`, in that order. Other
    /// attributes are checked for well-formedness, then ignored. Values are
    /// normalized and unescaped.
    fn attributes<const N: usize>(
        &self,
        e: &BytesStart<'a>,
        names: [&str; N],
    ) -> Result<[Option<String>; N], XmlError> {
        let mut values = [const { None }; N];
        // quick-xml's own duplicate check compares every attribute with
        // every other: a peer's element with thousands of attributes would
        // cost quadratic time. BEEP's elements have at most three, so the
        // count is bounded first and duplicates found among those few.
        let mut seen: Vec<&[u8]> = Vec::new();
        for attr in e.attributes().with_checks(false) {
            if seen.len() == MAX_ATTRIBUTES {
                return Err(XmlError::TooManyAttributes {
                    element: lossy(e.name().as_ref()),
                    limit: MAX_ATTRIBUTES,
                });
            }
            let attr = attr.map_err(|err| self.malformed(err.to_string()))?;
            let key = attr.key.into_inner();
            if seen.contains(&key) {
                return Err(self.malformed(format!("duplicate attribute {}", lossy(key))));
            }
            seen.push(key);
            let value = self.attribute_value(&attr.value)?;
            if let Some(i) = names.iter().position(|n| n.as_bytes() == attr.key.as_ref()) {
                values[i] = Some(value);
            }
        }
        Ok(values)
    }

    /// XML 1.0 section 3.3.3 attribute-value normalization, then unescaping.
    fn attribute_value(&self, raw: &[u8]) -> Result<String, XmlError> {
        let raw = std::str::from_utf8(raw).map_err(|e| self.malformed(e.to_string()))?;
        if raw.contains('<') {
            return Err(self.malformed("'<' in an attribute value"));
        }
        let normalized: Cow<'_, str> = if raw.contains(['\t', '\n', '\r']) {
            Cow::Owned(raw.replace("\r\n", " ").replace(['\t', '\n', '\r'], " "))
        } else {
            Cow::Borrowed(raw)
        };
        let value =
            unescape_with(&normalized, resolve_xml_entity).map_err(|e| self.escape_error(e))?;
        if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
            return Err(XmlError::IllegalCharacter { code: c.into() });
        }
        Ok(value.into_owned())
    }

    /// Skips whitespace, comments and processing instructions inside an
    /// element that has element-only content; returns the next child
    /// element (and whether it is empty) or `None` at the end tag.
    fn next_child(
        &mut self,
        parent: &'static str,
    ) -> Result<Option<(BytesStart<'a>, bool)>, XmlError> {
        loop {
            match self.next()? {
                Event::Start(e) => return Ok(Some((e, false))),
                Event::Empty(e) => return Ok(Some((e, true))),
                Event::End(_) => return Ok(None),
                Event::PI(_) | Event::Comment(_) => {}
                Event::Text(t) if is_xml_whitespace(&t) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(XmlError::UnexpectedText { element: parent });
                }
                Event::DocType(_) => return Err(XmlError::Doctype),
                Event::Decl(_) => return Err(self.malformed("XML declaration inside an element")),
                Event::Eof => {
                    return Err(self.malformed(format!("document ends inside <{parent}>")));
                }
            }
        }
    }

    /// Reads the character content of a text-only element up to its end tag.
    fn text_content(&mut self, parent: &'static str) -> Result<TextContent, XmlError> {
        let mut content = TextContent::default();
        loop {
            match self.next()? {
                Event::Text(t) => {
                    if t.windows(3).any(|w| w == b"]]>") {
                        return Err(self.malformed("']]>' in character data"));
                    }
                    // XML 1.0 section 2.11: CRLF and lone CR become LF.
                    let text = t
                        .xml10_content()
                        .map_err(|e| self.malformed(e.to_string()))?;
                    content.push_text(&text);
                }
                Event::GeneralRef(r) => {
                    let resolved = self.resolve_reference(&r)?;
                    content.push_text(resolved.encode_utf8(&mut [0; 4]));
                }
                Event::CData(c) => {
                    let text = c.decode().map_err(|e| self.malformed(e.to_string()))?;
                    content.push_cdata(&text);
                }
                Event::End(_) => return Ok(content),
                Event::PI(_) | Event::Comment(_) => {}
                Event::Start(e) | Event::Empty(e) => {
                    return Err(XmlError::UnexpectedElement {
                        parent,
                        element: lossy(e.name().as_ref()),
                    });
                }
                Event::DocType(_) => return Err(XmlError::Doctype),
                Event::Decl(_) => return Err(self.malformed("XML declaration inside an element")),
                Event::Eof => {
                    return Err(self.malformed(format!("document ends inside <{parent}>")));
                }
            }
        }
    }

    /// `&name;` in text: a character reference or one of the five
    /// predefined entities; anything else is refused, never expanded.
    fn resolve_reference(&self, r: &BytesRef<'a>) -> Result<char, XmlError> {
        if r.is_char_ref() {
            let c = r
                .resolve_char_ref()
                .map_err(|e| self.malformed(e.to_string()))?
                .ok_or_else(|| self.malformed("bad character reference"))?;
            if !is_xml_char(c) {
                return Err(XmlError::IllegalCharacter { code: c.into() });
            }
            return Ok(c);
        }
        let name = r.decode().map_err(|e| self.malformed(e.to_string()))?;
        resolve_xml_entity(&name)
            .and_then(|s| s.chars().next())
            .ok_or_else(|| XmlError::UnknownEntity {
                name: name.into_owned(),
            })
    }

    fn greeting(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<Greeting, XmlError> {
        let [features, localize] = self.attributes(e, ["features", "localize"])?;
        let mut profiles = Vec::new();
        if !empty {
            while let Some((child, child_empty)) = self.next_child("greeting")? {
                if child.name().as_ref() != b"profile" {
                    return Err(XmlError::UnexpectedElement {
                        parent: "greeting",
                        element: lossy(child.name().as_ref()),
                    });
                }
                let (uri, _, content) = self.raw_profile(&child, child_empty)?;
                if content.is_some() {
                    return Err(XmlError::GreetingProfileContent { uri });
                }
                profiles.push(uri);
            }
        }
        Ok(Greeting {
            profiles,
            features,
            localize,
        })
    }

    fn start(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<Start, XmlError> {
        let [number, server_name] = self.attributes(e, ["number", "serverName"])?;
        let number = number.ok_or(XmlError::MissingAttribute {
            element: "start",
            attribute: "number",
        })?;
        let number = parse_channel("start", number, 1)?;
        let mut profiles = Vec::new();
        if !empty {
            while let Some((child, child_empty)) = self.next_child("start")? {
                if child.name().as_ref() != b"profile" {
                    return Err(XmlError::UnexpectedElement {
                        parent: "start",
                        element: lossy(child.name().as_ref()),
                    });
                }
                profiles.push(self.profile(&child, child_empty)?);
            }
        }
        if profiles.is_empty() {
            return Err(XmlError::NoProfile);
        }
        Ok(Start {
            number,
            server_name,
            profiles,
        })
    }

    fn close(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<Close, XmlError> {
        let [number, code, lang] = self.attributes(e, ["number", "code", "xml:lang"])?;
        let number = match number {
            Some(n) => parse_channel("close", n, 0)?,
            None => 0,
        };
        let code = parse_code("close", code)?;
        let text = if empty {
            String::new()
        } else {
            self.text_content("close")?.all
        };
        Ok(Close {
            number,
            code,
            lang,
            text,
        })
    }

    fn error(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<ErrorElement, XmlError> {
        let [code, lang] = self.attributes(e, ["code", "xml:lang"])?;
        let code = parse_code("error", code)?;
        let text = if empty {
            String::new()
        } else {
            self.text_content("error")?.all
        };
        Ok(ErrorElement { code, lang, text })
    }

    /// A `<profile>`'s uri, encoding and (still encoded) content.
    fn raw_profile(
        &mut self,
        e: &BytesStart<'a>,
        empty: bool,
    ) -> Result<(String, ContentEncoding, Option<String>), XmlError> {
        let [uri, encoding] = self.attributes(e, ["uri", "encoding"])?;
        let uri = match uri {
            None => {
                return Err(XmlError::MissingAttribute {
                    element: "profile",
                    attribute: "uri",
                });
            }
            Some(uri) if uri.is_empty() => {
                return Err(XmlError::InvalidAttribute {
                    element: "profile",
                    attribute: "uri",
                    value: uri,
                });
            }
            Some(uri) => uri,
        };
        let encoding = match encoding {
            None => ContentEncoding::None,
            Some(value) if value == "none" => ContentEncoding::None,
            Some(value) if value == "base64" => ContentEncoding::Base64,
            Some(value) => {
                return Err(XmlError::InvalidAttribute {
                    element: "profile",
                    attribute: "encoding",
                    value,
                });
            }
        };
        let content = if empty {
            None
        } else {
            self.text_content("profile")?.into_profile_content()
        };
        Ok((uri, encoding, content))
    }

    fn profile(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<Profile, XmlError> {
        let (uri, encoding, content) = self.raw_profile(e, empty)?;
        let content = match (content, encoding) {
            (None, _) => None,
            (Some(text), ContentEncoding::None) => Some(Bytes::from(text.into_bytes())),
            (Some(text), ContentEncoding::Base64) => {
                let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                match BASE64.decode(compact) {
                    Ok(bytes) => Some(Bytes::from(bytes)),
                    Err(err) => {
                        return Err(XmlError::InvalidBase64 {
                            uri,
                            reason: err.to_string(),
                        });
                    }
                }
            }
        };
        Ok(Profile {
            uri,
            content,
            encoding,
        })
    }
}

/// A channel number: ASCII digits only, in `min..=2147483647`.
fn parse_channel(element: &'static str, value: String, min: u32) -> Result<u32, XmlError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(XmlError::InvalidAttribute {
            element,
            attribute: "number",
            value,
        });
    }
    match value.parse::<u32>() {
        Ok(n) if (min..=MAX_CHANNEL).contains(&n) => Ok(n),
        _ => Err(XmlError::ChannelNumberOutOfRange { element, value }),
    }
}

/// A required `code` attribute: exactly three ASCII digits, `100..=999`.
fn parse_code(element: &'static str, value: Option<String>) -> Result<ReplyCode, XmlError> {
    let value = value.ok_or(XmlError::MissingAttribute {
        element,
        attribute: "code",
    })?;
    let code = (value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<u16>().ok())
        .flatten()
        .and_then(ReplyCode::new);
    code.ok_or(XmlError::InvalidReplyCode { element, value })
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Content that can travel verbatim inside `<![CDATA[...]]>`.
fn cdata_safe(content: &[u8]) -> bool {
    match std::str::from_utf8(content) {
        Ok(s) => !s.contains("]]>") && !s.contains('\r') && s.chars().all(is_xml_char),
        Err(_) => false,
    }
}

/// Appends `s` escaped for an attribute value (`in_attribute`) or for text.
/// Literal tab/LF in attributes and CR anywhere become character references
/// so that the reader's normalization gives them back unchanged.
fn push_escaped(out: &mut Vec<u8>, s: &str, in_attribute: bool) {
    let mut run_start = 0;
    for (i, c) in s.char_indices() {
        let replacement: &str = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '\'' if in_attribute => "&apos;",
            '"' if in_attribute => "&quot;",
            '\t' if in_attribute => "&#9;",
            '\n' if in_attribute => "&#10;",
            '\r' => "&#13;",
            c if !is_xml_char(c) => "\u{FFFD}",
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[run_start..i]);
        out.extend_from_slice(replacement.as_bytes());
        run_start = i + c.len_utf8();
    }
    out.extend_from_slice(&s.as_bytes()[run_start..]);
}

/// Appends ` name='value'`.
fn push_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    push_escaped(out, value, true);
    out.push(b'\'');
}

fn push_opt_attr(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        push_attr(out, name, value);
    }
}

/// The shared tail of `<close>` and `<error>`: code, lang, diagnostic.
fn write_diagnostic(
    element: &str,
    code: ReplyCode,
    lang: Option<&str>,
    text: &str,
    out: &mut Vec<u8>,
) {
    push_attr(out, "code", &code.to_string());
    push_opt_attr(out, "xml:lang", lang);
    if text.is_empty() {
        out.extend_from_slice(b" />\r\n");
    } else {
        out.push(b'>');
        push_escaped(out, text, false);
        out.extend_from_slice(b"</");
        out.extend_from_slice(element.as_bytes());
        out.extend_from_slice(b">\r\n");
    }
}

/// `<profile uri='...' [encoding='base64']>` with content in CDATA (base64
/// text also goes in CDATA, as LibVortex sends it), or `<profile ... />`.
fn write_profile(p: &Profile, out: &mut Vec<u8>) {
    let encoding = p.wire_encoding();
    out.extend_from_slice(b"<profile");
    push_attr(out, "uri", &p.uri);
    if encoding == ContentEncoding::Base64 {
        out.extend_from_slice(b" encoding='base64'");
    }
    let Some(content) = &p.content else {
        out.extend_from_slice(b" />");
        return;
    };
    out.extend_from_slice(b"><![CDATA[");
    match encoding {
        ContentEncoding::Base64 => out.extend_from_slice(BASE64.encode(content).as_bytes()),
        ContentEncoding::None => out.extend_from_slice(content),
    }
    out.extend_from_slice(b"]]></profile>");
}

#[cfg(test)]
mod tests;
