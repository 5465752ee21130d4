//! Messages as MIME entities (RFC 3080 2.2): a header block, an empty
//! line, and the body.
//!
//! A [`Message`] keeps its header block and its body as two [`Bytes`], so a
//! body given by the application goes to the wire without being copied into
//! a new buffer, and a received body is a zero-copy slice of what arrived.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// `Content-Type` when a message has none (RFC 3080 2.2, CHECKLIST 18).
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// `Content-Transfer-Encoding` when a message has none (RFC 3080 2.2).
pub const DEFAULT_TRANSFER_ENCODING: &str = "binary";
/// The content type of every channel-0 message (RFC 3080 2.3.1).
pub const BEEP_XML: &str = "application/beep+xml";

/// The empty header block: just the line that ends it.
const EMPTY_HEADERS: &[u8] = b"\r\n";
/// The header block of every channel-0 message.
pub(crate) const BEEP_XML_HEADERS: &[u8] = b"Content-Type: application/beep+xml\r\n\r\n";

/// A message payload: MIME headers and a body.
///
/// ```
/// use beep_proto::Message;
/// let m = Message::new("hello").with_header("Content-Type", "text/plain");
/// assert_eq!(m.content_type(), "text/plain");
/// assert_eq!(&m.body()[..], b"hello");
/// assert_eq!(m.entity_len(), "Content-Type: text/plain\r\n\r\nhello".len());
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The raw header block including its terminating empty line, or empty
    /// when the entity carried no header block at all.
    headers: Bytes,
    body: Bytes,
}

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
        }
    }

    /// The same message with one more MIME header line.
    ///
    /// ```
    /// let m = beep_proto::Message::new("x").with_header("Content-Type", "text/plain");
    /// assert_eq!(m.header("content-type"), Some("text/plain"));
    /// ```
    pub fn with_header(self, name: &str, value: &str) -> Self {
        let mut block = BytesMut::with_capacity(self.headers.len() + name.len() + value.len() + 6);
        // Drop the terminating empty line, add ours, end the block again.
        let existing = self
            .headers
            .strip_suffix(EMPTY_HEADERS)
            .unwrap_or(&self.headers);
        block.put_slice(existing);
        block.put_slice(name.as_bytes());
        block.put_slice(b": ");
        block.put_slice(value.as_bytes());
        block.put_slice(b"\r\n\r\n");
        Message {
            headers: block.freeze(),
            body: self.body,
        }
    }

    /// A channel-0 message: `Content-Type: application/beep+xml`.
    pub(crate) fn beep_xml(body: Vec<u8>) -> Self {
        Message {
            headers: Bytes::from_static(BEEP_XML_HEADERS),
            body: body.into(),
        }
    }

    /// Splits a received entity into headers and body without copying.
    ///
    /// An entity that does not start with a well-formed header block is
    /// taken as all body with default headers: peers that omit the block
    /// entirely exist, and guessing otherwise would corrupt their data.
    ///
    /// ```
    /// use beep_proto::Message;
    /// let m = Message::from_entity(bytes::Bytes::from_static(b"Content-Type: text/plain\r\n\r\nhi"));
    /// assert_eq!((m.content_type(), &m.body()[..]), ("text/plain", &b"hi"[..]));
    /// let m = Message::from_entity(bytes::Bytes::from_static(b"\r\nhi"));
    /// assert_eq!(&m.body()[..], b"hi");
    /// ```
    pub fn from_entity(mut entity: Bytes) -> Self {
        let headers = match header_block_len(&entity) {
            None => Bytes::new(),
            // An empty block and no block mean the same; store one form so
            // that a message compares equal to itself after a round trip.
            Some(2) => {
                entity.advance(2);
                Bytes::new()
            }
            Some(split) => entity.split_to(split),
        };
        Message {
            headers,
            body: entity,
        }
    }

    /// The header block as it goes on the wire, and the body.
    pub(crate) fn into_wire_parts(self) -> [Bytes; 2] {
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

    /// The raw header block as received or built (empty if there was none).
    ///
    /// ```
    /// let m = beep_proto::Message::new("x").with_header("A", "b");
    /// assert_eq!(&m.raw_headers()[..], b"A: b\r\n\r\n");
    /// ```
    pub fn raw_headers(&self) -> &Bytes {
        &self.headers
    }

    /// The header lines as `(name, value)` pairs, in order. Folded
    /// continuation lines are joined to the value they continue.
    ///
    /// ```
    /// let m = beep_proto::Message::new("x").with_header("A", "1").with_header("B", "2");
    /// let all: Vec<_> = m.headers().collect();
    /// assert_eq!(all, vec![("A", "1"), ("B", "2")]);
    /// ```
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        std::str::from_utf8(&self.headers)
            .unwrap_or("")
            .split("\r\n")
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                Some((name.trim(), value.trim()))
            })
    }

    /// The value of the first header named `name` (case-insensitive).
    ///
    /// ```
    /// let m = beep_proto::Message::new("x").with_header("Content-Type", "text/xml");
    /// assert_eq!(m.header("CONTENT-TYPE"), Some("text/xml"));
    /// assert_eq!(m.header("Other"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// `Content-Type`, or its default `application/octet-stream`.
    ///
    /// ```
    /// assert_eq!(beep_proto::Message::new("").content_type(), "application/octet-stream");
    /// ```
    pub fn content_type(&self) -> &str {
        self.header("Content-Type").unwrap_or(DEFAULT_CONTENT_TYPE)
    }

    /// `Content-Transfer-Encoding`, or its default `binary`.
    ///
    /// ```
    /// assert_eq!(beep_proto::Message::new("").transfer_encoding(), "binary");
    /// ```
    pub fn transfer_encoding(&self) -> &str {
        self.header("Content-Transfer-Encoding")
            .unwrap_or(DEFAULT_TRANSFER_ENCODING)
    }

    /// Octets this message takes as a frame payload: the header block (an
    /// empty line if there are no headers) plus the body.
    ///
    /// ```
    /// assert_eq!(beep_proto::Message::new("abc").entity_len(), 5);
    /// ```
    pub fn entity_len(&self) -> usize {
        // The header block is never absent on the wire: RFC 3080 2.2 makes
        // every payload a MIME entity.
        self.headers.len().max(EMPTY_HEADERS.len()) + self.body.len()
    }
}

/// Length of the header block at the start of `entity`, its terminating
/// empty line included, or `None` if the entity does not start with one.
pub(crate) fn header_block_len(entity: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let rest = &entity[pos..];
        if rest.starts_with(b"\r\n") {
            return Some(pos + 2);
        }
        let line_len = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..line_len];
        // A header line is `name: value` or a folded continuation.
        let continuation = pos > 0 && matches!(line.first(), Some(b' ' | b'\t'));
        let is_field = line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| colon > 0 && line[..colon].iter().all(|b| b.is_ascii_graphic()));
        if !(continuation || is_field) {
            return None;
        }
        pos += line_len + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checklist_18_defaults() {
        let m = Message::from_entity(Bytes::from_static(b"\r\nbody"));
        assert_eq!(m.content_type(), DEFAULT_CONTENT_TYPE);
        assert_eq!(m.transfer_encoding(), DEFAULT_TRANSFER_ENCODING);
        assert_eq!(&m.body()[..], b"body");
    }

    #[test]
    fn parses_beep_xml_headers() {
        let m = Message::from_entity(Bytes::from_static(
            b"Content-Type: application/beep+xml\r\n\r\n<ok />",
        ));
        assert_eq!(m.content_type(), BEEP_XML);
        assert_eq!(&m.body()[..], b"<ok />");
    }

    #[test]
    fn folded_and_multiple_headers() {
        let m = Message::from_entity(Bytes::from_static(
            b"Content-Type: text/plain;\r\n charset=utf-8\r\nX-A: 1\r\n\r\nbody",
        ));
        assert_eq!(m.header("x-a"), Some("1"));
        assert_eq!(&m.body()[..], b"body");
    }

    #[test]
    fn entity_without_header_block_is_all_body() {
        for raw in [
            &b"hello"[..],
            b"no colon\r\nhere",
            b"",
            b"Header: but no end",
        ] {
            let m = Message::from_entity(Bytes::copy_from_slice(raw));
            assert_eq!(&m.body()[..], raw);
            assert_eq!(m.content_type(), DEFAULT_CONTENT_TYPE);
        }
    }

    #[test]
    fn body_is_a_zero_copy_slice() {
        let entity = Bytes::from(b"\r\npayload".to_vec());
        let start = entity.as_ptr() as usize;
        let m = Message::from_entity(entity);
        assert_eq!(m.body().as_ptr() as usize, start + 2);
    }

    #[test]
    fn built_headers_round_trip() {
        let m = Message::new("b").with_header("Content-Type", "text/plain");
        let wire = m.clone().into_wire_parts().concat();
        assert_eq!(Message::from_entity(Bytes::from(wire)), m);
    }
}
