//! Messages as MIME entities (RFC 3080 2.2): a header block, an empty
//! line, and the body.
//!
//! A [`Message`] keeps its header block and its body as two [`Bytes`], so a
//! body given by the application goes to the wire without being copied into
//! a new buffer, and a received body is a zero-copy slice of what arrived.
//!
//! Reading headers follows RFC 822 and RFC 2045 leniently: lines may end in
//! CRLF or in a bare LF, folded values are unfolded ([`Message::headers`]),
//! and the parameters of `Content-Type` can be read ([`ContentType`]).
//! Writing is strict: [`Message::try_with_header`] refuses what would not be
//! exactly one header line, and [`Message::with_header`] cannot add more
//! than one.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// `Content-Type` when a message has none (RFC 3080 2.2, RFC 3080 2.2).
///
/// ```
/// use beep_proto::{Message, mime::DEFAULT_CONTENT_TYPE};
/// assert_eq!(Message::new("x").content_type(), DEFAULT_CONTENT_TYPE);
/// ```
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// `Content-Transfer-Encoding` when a message has none (RFC 3080 2.2).
///
/// ```
/// use beep_proto::{Message, mime::DEFAULT_TRANSFER_ENCODING};
/// assert_eq!(Message::new("x").transfer_encoding(), DEFAULT_TRANSFER_ENCODING);
/// ```
pub const DEFAULT_TRANSFER_ENCODING: &str = "binary";
/// The content type of every channel-0 message (RFC 3080 2.3.1).
///
/// ```
/// assert_eq!(beep_proto::mime::BEEP_XML, "application/beep+xml");
/// ```
pub const BEEP_XML: &str = "application/beep+xml";

/// The empty header block: just the line that ends it.
const EMPTY_HEADERS: &[u8] = b"\r\n";
/// The header block of every channel-0 message.
pub(crate) const BEEP_XML_HEADERS: &[u8] = b"Content-Type: application/beep+xml\r\n\r\n";

/// A header that [`Message::try_with_header`] refuses to write, because it
/// would not be exactly one header line.
///
/// ```
/// use beep_proto::{Message, mime::HeaderError};
/// let e = Message::new("x").try_with_header("X-A", "1\r\nX-B: 2").unwrap_err();
/// assert_eq!(e, HeaderError::LineBreakInValue { name: "X-A".into() });
/// assert!(e.to_string().contains("line break"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The name is empty, or has an octet other than the printable ASCII
    /// characters except `:` that RFC 822 3.1.2 allows in a field name.
    #[error(
        "header name {name:?} is not an RFC 822 field name (3.1.2): one or more printable ASCII characters other than ':'"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The value has a CR or a LF, which would end the header line and
    /// could start another header or the body.
    #[error("the value of header {name:?} contains a line break (CR or LF)")]
    LineBreakInValue {
        /// The name of the header.
        name: String,
    },
}

/// A message payload: MIME headers and a body.
///
/// ```
/// use beep_proto::Message;
/// let m = Message::new("hello").with_header("Content-Type", "text/plain");
/// assert_eq!(m.content_type(), "text/plain");
/// assert_eq!(&m.body()[..], b"hello");
/// assert_eq!(m.entity_len(), "Content-Type: text/plain\r\n\r\nhello".len());
/// ```
#[derive(Clone, Default)]
pub struct Message {
    /// The raw header block including its terminating empty line, or empty
    /// when the entity carried no header block at all.
    headers: Bytes,
    body: Bytes,
    /// The entity exactly as received or given to [`Message::verbatim`]:
    /// what goes on the wire instead of the header block and the body, so
    /// a relayed message is sent byte for byte (a missing header block is
    /// not added, LF-only lines stay LF-only). Same buffer, no copy.
    wire: Option<Bytes>,
}

/// Messages are equal when their headers and bodies are; how the header
/// block was written on the wire is not compared.
impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.headers == other.headers && self.body == other.body
    }
}

impl Eq for Message {}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Message {
    /// A message with default headers and the given body.
    ///
    /// ```
    /// let m = beep_proto::Message::new(vec![1u8, 2, 3]);
    /// assert_eq!(m.content_type(), "application/octet-stream");
    /// ```
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message {
            headers: Bytes::new(),
            body: body.into(),
            wire: None,
        }
    }

    /// The same message with one more MIME header line, `name: value`.
    ///
    /// This never fails and never adds more than one header, whatever it is
    /// given; it stays infallible so that a message built from literals
    /// reads as one expression. For names and values that come from
    /// elsewhere, [`Message::try_with_header`] says what is wrong instead.
    ///
    /// * A line break in the value cannot start another header or end the
    ///   block: each run of CR and LF, with the spaces and tabs around it,
    ///   becomes one space. That is the value a reader gets back from a
    ///   folded header ([`Message::headers`]), so nothing is lost that
    ///   folding would have kept.
    /// * A name that is not an RFC 822 field name (3.1.2: printable ASCII
    ///   other than `:`, at least one) leaves the message unchanged. There
    ///   is no safe spelling to replace it with: mending `Content Type`
    ///   into `Content-Type` would give the value a meaning its writer may
    ///   not have checked it for.
    ///
    /// ```
    /// use beep_proto::Message;
    /// let m = Message::new("x").with_header("Content-Type", "text/plain");
    /// assert_eq!(m.header("content-type").as_deref(), Some("text/plain"));
    /// let m = Message::new("x").with_header("X-A", "1\r\nX-B: 2\r\n\r\n");
    /// assert_eq!(m.headers().collect::<Vec<_>>(), [("X-A", "1 X-B: 2".into())]);
    /// assert_eq!(Message::new("x").with_header("Bad Name", "1"), Message::new("x"));
    /// ```
    pub fn with_header(self, name: &str, value: &str) -> Self {
        if !is_field_name(name.as_bytes()) {
            return self;
        }
        if value.contains(['\r', '\n']) {
            let mut joined = Cow::Borrowed("");
            for piece in value.split(['\r', '\n']) {
                push_piece(&mut joined, piece);
            }
            return self.push_header(name, &joined);
        }
        self.push_header(name, value)
    }

    /// The same message with one more MIME header line, `name: value`, or
    /// why that would not be one header line: the name must be an RFC 822
    /// field name (3.1.2: printable ASCII other than `:`, at least one) and
    /// the value must not contain CR or LF.
    ///
    /// Spaces and tabs around the value are not part of it: a reader drops
    /// them.
    ///
    /// ```
    /// use beep_proto::{Message, mime::HeaderError};
    /// let m = Message::new("x").try_with_header("Content-Type", "text/plain")?;
    /// assert_eq!(m.content_type(), "text/plain");
    /// assert!(matches!(
    ///     Message::new("x").try_with_header("X-A\r\nX-B", "1"),
    ///     Err(HeaderError::InvalidName { .. })
    /// ));
    /// # Ok::<(), HeaderError>(())
    /// ```
    pub fn try_with_header(self, name: &str, value: &str) -> Result<Self, HeaderError> {
        if !is_field_name(name.as_bytes()) {
            return Err(HeaderError::InvalidName { name: name.into() });
        }
        if value.contains(['\r', '\n']) {
            return Err(HeaderError::LineBreakInValue { name: name.into() });
        }
        Ok(self.push_header(name, value))
    }

    /// Appends `name: value` to the block; both are valid.
    fn push_header(self, name: &str, value: &str) -> Self {
        let mut block = BytesMut::with_capacity(self.headers.len() + name.len() + value.len() + 6);
        // Drop the terminating empty line, add ours, end the block again.
        // A received block may end its lines with a bare LF.
        let existing = self
            .headers
            .strip_suffix(b"\r\n")
            .or_else(|| self.headers.strip_suffix(b"\n"))
            .unwrap_or(&self.headers);
        block.put_slice(existing);
        block.put_slice(name.as_bytes());
        block.put_slice(b": ");
        block.put_slice(value.as_bytes());
        block.put_slice(b"\r\n\r\n");
        Message {
            headers: block.freeze(),
            body: self.body,
            wire: None,
        }
    }

    /// A channel-0 message: `Content-Type: application/beep+xml`.
    pub(crate) fn beep_xml(body: Vec<u8>) -> Self {
        Message {
            headers: Bytes::from_static(BEEP_XML_HEADERS),
            body: body.into(),
            wire: None,
        }
    }

    /// Splits a received entity into headers and body without copying.
    ///
    /// The header block ends at the first empty line; its lines may end in
    /// CRLF or in a bare LF. An entity that does not start with a
    /// well-formed header block is taken as all body with default headers:
    /// peers that omit the block entirely exist, and guessing otherwise
    /// would corrupt their data.
    ///
    /// ```
    /// use beep_proto::Message;
    /// use bytes::Bytes;
    /// let m = Message::from_entity(Bytes::from_static(b"Content-Type: text/plain\r\n\r\nhi"));
    /// assert_eq!(m.content_type(), "text/plain");
    /// assert_eq!(&m.body()[..], b"hi");
    /// let m = Message::from_entity(Bytes::from_static(b"Content-Type: text/plain\n\nhi"));
    /// assert_eq!(m.content_type(), "text/plain");
    /// let m = Message::from_entity(Bytes::from_static(b"\r\nhi"));
    /// assert_eq!(&m.body()[..], b"hi");
    /// ```
    pub fn from_entity(mut entity: Bytes) -> Self {
        let wire = Some(entity.clone());
        let headers = match header_block_len(&entity) {
            None => Bytes::new(),
            // An empty block and no block mean the same; store one form so
            // that a message compares equal to itself after a round trip.
            // A block with a header line has at least `a:\n`, 3 octets.
            Some(split @ (1 | 2)) => {
                entity.advance(split);
                Bytes::new()
            }
            Some(split) => entity.split_to(split),
        };
        Message {
            headers,
            body: entity,
            wire,
        }
    }

    /// A message sent exactly as `entity`, with no header block put in
    /// front: for peers that send and expect payloads without MIME headers
    /// (LibVortex applications often do), or with LF-only header lines.
    /// Read, it is parsed like a received entity ([`Message::from_entity`];
    /// a received message is relayed byte for byte the same way).
    /// Adding a header makes it an ordinary message again.
    ///
    /// ```
    /// use beep_proto::Message;
    /// let m = Message::verbatim("hello");
    /// assert_eq!(m.entity_len(), 5); // no "\r\n" in front
    /// assert_eq!(&m.body()[..], b"hello");
    /// assert_eq!(Message::new("hello").entity_len(), 7);
    /// ```
    pub fn verbatim(entity: impl Into<Bytes>) -> Self {
        Self::from_entity(entity.into())
    }

    /// The header block as it goes on the wire, and the body.
    pub(crate) fn into_wire_parts(self) -> [Bytes; 2] {
        if let Some(wire) = self.wire {
            return [Bytes::new(), wire];
        }
        let headers = if self.headers.is_empty() {
            Bytes::from_static(EMPTY_HEADERS)
        } else {
            self.headers
        };
        [headers, self.body]
    }

    /// The body, after the header block.
    ///
    /// ```
    /// assert_eq!(&beep_proto::Message::new("abc").body()[..], b"abc");
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Takes the body out of the message.
    ///
    /// ```
    /// assert_eq!(&beep_proto::Message::new("abc").into_body()[..], b"abc");
    /// ```
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The raw header block as received or built (empty if there was none),
    /// folded lines and line ends as they were.
    ///
    /// ```
    /// let m = beep_proto::Message::new("x").with_header("A", "b");
    /// assert_eq!(&m.raw_headers()[..], b"A: b\r\n\r\n");
    /// ```
    pub fn raw_headers(&self) -> &Bytes {
        &self.headers
    }

    /// The headers as `(name, value)` pairs, in order.
    ///
    /// Values are unfolded (RFC 822 3.1.1, RFC 2045 3): a line that starts
    /// with a space or a tab continues the value above it. Each line break,
    /// with the spaces and tabs around it, reads as one space, as in HTTP
    /// (RFC 7230 3.2.4); blank continuation lines add nothing. Spaces and
    /// tabs around a value are not part of it.
    ///
    /// A value that was not folded is a slice of the header block
    /// ([`Cow::Borrowed`]); only a folded value is copied. Lines may end in
    /// CRLF or in a bare LF. A header whose name or value is not UTF-8 is
    /// left out; [`Message::raw_headers`] still has it.
    ///
    /// ```
    /// use beep_proto::Message;
    /// let m = Message::new("x").with_header("A", "1").with_header("B", "2");
    /// let all: Vec<_> = m.headers().collect();
    /// assert_eq!(all, [("A", "1".into()), ("B", "2".into())]);
    ///
    /// let m = Message::from_entity(bytes::Bytes::from_static(
    ///     b"Content-Type: text/plain;\r\n\tcharset=utf-8\r\nB: 2\r\n\r\nbody",
    /// ));
    /// let all: Vec<_> = m.headers().collect();
    /// assert_eq!(all, [("Content-Type", "text/plain; charset=utf-8".into()), ("B", "2".into())]);
    /// ```
    pub fn headers(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        Headers {
            rest: &self.headers,
        }
    }

    /// The unfolded value of the first header named `name`
    /// (case-insensitive), as [`Message::headers`] reads it.
    ///
    /// ```
    /// use beep_proto::Message;
    /// let m = Message::new("x").with_header("Content-Type", "text/xml");
    /// assert_eq!(m.header("CONTENT-TYPE").as_deref(), Some("text/xml"));
    /// assert_eq!(m.header("Other"), None);
    /// let m = Message::from_entity(bytes::Bytes::from_static(b"X-Long: a\r\n b\r\n\r\n"));
    /// assert_eq!(m.header("x-long").as_deref(), Some("a b"));
    /// ```
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The whole `Content-Type` value, parameters included and unfolded,
    /// or its default `application/octet-stream` (RFC 3080 2.2). See
    /// [`Message::mime_type`] and [`Message::content_type_param`] for its
    /// parts.
    ///
    /// ```
    /// use beep_proto::Message;
    /// assert_eq!(Message::new("").content_type(), "application/octet-stream");
    /// let m = Message::new("").with_header("Content-Type", "text/plain; charset=utf-8");
    /// assert_eq!(m.content_type(), "text/plain; charset=utf-8");
    /// ```
    pub fn content_type(&self) -> Cow<'_, str> {
        self.header("Content-Type")
            .unwrap_or(Cow::Borrowed(DEFAULT_CONTENT_TYPE))
    }

    /// The `type/subtype` of `Content-Type`, without its parameters, or the
    /// default `application/octet-stream` (RFC 3080 2.2). It is as written:
    /// compare it with [`str::eq_ignore_ascii_case`] (RFC 2045 5.1).
    ///
    /// ```
    /// use beep_proto::Message;
    /// let m = Message::new("").with_header("Content-Type", "text/plain; charset=utf-8");
    /// assert_eq!(m.mime_type(), "text/plain");
    /// assert_eq!(Message::new("").mime_type(), "application/octet-stream");
    /// ```
    pub fn mime_type(&self) -> Cow<'_, str> {
        match self.content_type() {
            Cow::Borrowed(value) => Cow::Borrowed(ContentType::new(value).mime_type()),
            Cow::Owned(value) => Cow::Owned(ContentType::new(&value).mime_type().to_owned()),
        }
    }

    /// The value of the `Content-Type` parameter `name` (case-insensitive),
    /// unquoted, as [`ContentType::param`] reads it; `None` if there is no
    /// such parameter (the default `Content-Type` has none).
    ///
    /// ```
    /// use beep_proto::Message;
    /// let m = Message::new("").with_header("Content-Type", r#"text/plain; Charset="utf-8""#);
    /// assert_eq!(m.content_type_param("charset").as_deref(), Some("utf-8"));
    /// assert_eq!(m.content_type_param("format"), None);
    /// ```
    pub fn content_type_param(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.content_type() {
            Cow::Borrowed(value) => ContentType::new(value).param(name),
            Cow::Owned(value) => ContentType::new(&value)
                .param(name)
                .map(|v| Cow::Owned(v.into_owned())),
        }
    }

    /// `Content-Transfer-Encoding`, unfolded, or its default `binary`
    /// (RFC 3080 2.2).
    ///
    /// ```
    /// assert_eq!(beep_proto::Message::new("").transfer_encoding(), "binary");
    /// ```
    pub fn transfer_encoding(&self) -> Cow<'_, str> {
        self.header("Content-Transfer-Encoding")
            .unwrap_or(Cow::Borrowed(DEFAULT_TRANSFER_ENCODING))
    }

    /// Octets this message takes as a frame payload: the header block (an
    /// empty line if there are no headers) plus the body.
    ///
    /// ```
    /// assert_eq!(beep_proto::Message::new("abc").entity_len(), 5);
    /// ```
    pub fn entity_len(&self) -> usize {
        if let Some(wire) = &self.wire {
            return wire.len();
        }
        // A header block we write is never absent: RFC 3080 2.2 makes
        // every payload a MIME entity.
        self.headers.len().max(EMPTY_HEADERS.len()) + self.body.len()
    }
}

mod content_type;
mod headers;
#[cfg(test)]
mod tests;

pub use content_type::ContentType;
use headers::{Headers, header_block_len, is_field_name, push_piece};
