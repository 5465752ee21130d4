//! Frame header grammar and codec (RFC 3080 2.2.1, RFC 3081 3.1.3).
//!
//! A BEEP frame is a header line, a payload of exactly `size` octets and the
//! trailer `END\r\n`; a SEQ frame is a header line only. This module parses
//! and writes the header lines. Parsing is streaming: [`parse_header`] says
//! how many bytes a complete header took, or that more are needed, and it
//! rejects a malformed or over-long header as soon as the bytes seen so far
//! prove it, so a hostile peer can never make us buffer a header forever.

use bytes::{BufMut, BytesMut};
use nom::{
    IResult, Parser, branch::alt, bytes::complete::tag, character::complete::char as byte,
    combinator::value, sequence::preceded,
};
use thiserror::Error;

use crate::{AnsNo, MsgNo};

/// Largest value of `channel`, `msgno` and `size` (RFC 3080 2.2.1: 0..2147483647).
pub const MAX_31BIT: u32 = 0x7fff_ffff;

/// The trailer that ends every data frame (RFC 3080 2.2.1).
pub const TRAILER: &[u8] = b"END\r\n";

/// The default cap on a header line, CRLF included.
///
/// The longest legal header is 62 octets (`ANS` with every number at its
/// maximum); LibVortex reads up to 99. We allow some slack and no more.
pub const DEFAULT_MAX_HEADER_LEN: usize = 128;

/// The keyword of a data frame: what kind of message it belongs to.
///
/// ```
/// use beep_proto::frame::FrameType;
/// assert_eq!(FrameType::Ans.keyword(), "ANS");
/// assert!(FrameType::Rpy.is_reply());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// A request (`MSG`).
    Msg,
    /// A positive reply (`RPY`).
    Rpy,
    /// A negative reply (`ERR`).
    Err,
    /// One answer of a one-to-many reply (`ANS`).
    Ans,
    /// The end of a one-to-many reply (`NUL`).
    Nul,
}

impl FrameType {
    /// The three-letter keyword written on the wire.
    ///
    /// ```
    /// assert_eq!(beep_proto::frame::FrameType::Nul.keyword(), "NUL");
    /// ```
    pub const fn keyword(self) -> &'static str {
        match self {
            FrameType::Msg => "MSG",
            FrameType::Rpy => "RPY",
            FrameType::Err => "ERR",
            FrameType::Ans => "ANS",
            FrameType::Nul => "NUL",
        }
    }

    /// True for every type but `MSG`.
    ///
    /// ```
    /// assert!(!beep_proto::frame::FrameType::Msg.is_reply());
    /// ```
    pub const fn is_reply(self) -> bool {
        !matches!(self, FrameType::Msg)
    }
}

/// The header of a MSG, RPY, ERR, ANS or NUL frame.
///
/// ```
/// use beep_proto::{MsgNo, frame::{FrameHeader, FrameType}};
/// let h = FrameHeader::new(FrameType::Msg, 1, MsgNo(0), false, 0, 5);
/// let mut out = bytes::BytesMut::new();
/// h.encode(&mut out);
/// assert_eq!(&out[..], b"MSG 1 0 . 0 5\r\n");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// The keyword.
    pub frame_type: FrameType,
    /// Channel number, 0..=2147483647.
    pub channel: u32,
    /// Message number, 0..=2147483647.
    pub msgno: MsgNo,
    /// Continuation indicator: `*` (more frames follow) is `true`, `.` is `false`.
    pub more: bool,
    /// Sequence number of the first payload octet, modulo 2^32.
    pub seqno: u32,
    /// Payload size in octets, 0..=2147483647.
    pub size: u32,
    /// Answer number; meaningful for `ANS` only (0 otherwise).
    pub ansno: AnsNo,
}

impl FrameHeader {
    /// A header with `ansno` 0 (use [`FrameHeader::with_ansno`] for ANS).
    ///
    /// ```
    /// use beep_proto::{MsgNo, frame::{FrameHeader, FrameType}};
    /// let h = FrameHeader::new(FrameType::Rpy, 0, MsgNo(0), false, 0, 52);
    /// assert_eq!(h.size, 52);
    /// ```
    pub const fn new(
        frame_type: FrameType,
        channel: u32,
        msgno: MsgNo,
        more: bool,
        seqno: u32,
        size: u32,
    ) -> Self {
        FrameHeader {
            frame_type,
            channel,
            msgno,
            more,
            seqno,
            size,
            ansno: AnsNo(0),
        }
    }

    /// The same header with an answer number.
    ///
    /// ```
    /// use beep_proto::{AnsNo, MsgNo, frame::{FrameHeader, FrameType}};
    /// let h = FrameHeader::new(FrameType::Ans, 3, MsgNo(0), false, 0, 12).with_ansno(AnsNo(7));
    /// assert_eq!(h.ansno, AnsNo(7));
    /// ```
    pub const fn with_ansno(mut self, ansno: AnsNo) -> Self {
        self.ansno = ansno;
        self
    }

    /// Appends the header line, CRLF included, to `out`.
    ///
    /// ```
    /// use beep_proto::{AnsNo, MsgNo, frame::{FrameHeader, FrameType}};
    /// let mut out = bytes::BytesMut::new();
    /// FrameHeader::new(FrameType::Ans, 3, MsgNo(0), true, 12, 12).with_ansno(AnsNo(1)).encode(&mut out);
    /// assert_eq!(&out[..], b"ANS 3 0 * 12 12 1\r\n");
    /// ```
    pub fn encode(&self, out: &mut BytesMut) {
        let mut nums = itoa::Buffer::new();
        out.reserve(64);
        out.put_slice(self.frame_type.keyword().as_bytes());
        for n in [self.channel, self.msgno.0] {
            out.put_u8(b' ');
            out.put_slice(nums.format(n).as_bytes());
        }
        out.put_slice(if self.more { b" *" } else { b" ." });
        for n in [self.seqno, self.size] {
            out.put_u8(b' ');
            out.put_slice(nums.format(n).as_bytes());
        }
        if self.frame_type == FrameType::Ans {
            out.put_u8(b' ');
            out.put_slice(nums.format(self.ansno.0).as_bytes());
        }
        out.put_slice(b"\r\n");
    }
}

/// A SEQ frame (RFC 3081 3.1.3): the receiver may now accept octets
/// `ackno .. ackno + window` (modulo 2^32) on `channel`.
///
/// ```
/// use beep_proto::frame::SeqFrame;
/// let mut out = bytes::BytesMut::new();
/// SeqFrame { channel: 0, ackno: 2680, window: 4096 }.encode(&mut out);
/// assert_eq!(&out[..], b"SEQ 0 2680 4096\r\n");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqFrame {
    /// Channel number, 0..=2147483647.
    pub channel: u32,
    /// Sequence number of the next octet the receiver expects.
    pub ackno: u32,
    /// Octets the receiver can accept from `ackno`, 0..=2147483647.
    pub window: u32,
}

impl SeqFrame {
    /// Appends the SEQ line, CRLF included, to `out`.
    ///
    /// ```
    /// use beep_proto::frame::SeqFrame;
    /// let mut out = bytes::BytesMut::new();
    /// SeqFrame { channel: 3, ackno: 4096, window: 4096 }.encode(&mut out);
    /// assert_eq!(&out[..], b"SEQ 3 4096 4096\r\n");
    /// ```
    pub fn encode(&self, out: &mut BytesMut) {
        let mut nums = itoa::Buffer::new();
        out.reserve(48);
        out.put_slice(b"SEQ");
        for n in [self.channel, self.ackno, self.window] {
            out.put_u8(b' ');
            out.put_slice(nums.format(n).as_bytes());
        }
        out.put_slice(b"\r\n");
    }
}

/// A parsed header line.
///
/// ```
/// use beep_proto::frame::{parse_header, Header};
/// let (h, used) = parse_header(b"SEQ 3 0 8192\r\n", 128).unwrap().unwrap();
/// assert!(matches!(h, Header::Seq(s) if s.window == 8192));
/// assert_eq!(used, 14);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Header {
    /// A data frame header; `size` payload octets and `END\r\n` follow.
    Frame(FrameHeader),
    /// A SEQ frame; nothing follows.
    Seq(SeqFrame),
}

/// The field of a header line that an error is about.
///
/// ```
/// use beep_proto::frame::Field;
/// assert_eq!(Field::Seqno.to_string(), "seqno");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The keyword.
    Keyword,
    /// The channel number.
    Channel,
    /// The message number.
    Msgno,
    /// The continuation indicator.
    More,
    /// The sequence number.
    Seqno,
    /// The payload size.
    Size,
    /// The answer number.
    Ansno,
    /// The acknowledgement number of a SEQ frame.
    Ackno,
    /// The window of a SEQ frame.
    Window,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Keyword => "keyword",
            Field::Channel => "channel",
            Field::Msgno => "msgno",
            Field::More => "continuation indicator",
            Field::Seqno => "seqno",
            Field::Size => "size",
            Field::Ansno => "ansno",
            Field::Ackno => "ackno",
            Field::Window => "window",
        })
    }
}

/// Why a header line is poorly formed (RFC 3080 2.2.1.1, RFC 3080 2.2.1.1, conformance item 7).
///
/// ```
/// use beep_proto::frame::{parse_header, FrameError};
/// assert_eq!(parse_header(b"RPY\n", 128), Err(FrameError::BareLineFeed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// No CRLF within the configured header length (conformance item 6).
    #[error("header line longer than {limit} octets without CRLF")]
    HeaderTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// A byte that can never appear in a header line (conformance item 7).
    #[error("invalid byte 0x{byte:02x} at offset {offset} of the header line")]
    InvalidByte {
        /// The offending byte.
        byte: u8,
        /// Its offset from the start of the line.
        offset: usize,
    },
    /// A line ended by LF without CR (conformance item 7).
    #[error("header line ends with a bare LF instead of CRLF")]
    BareLineFeed,
    /// The keyword is not MSG, RPY, ERR, ANS, NUL or SEQ (RFC 3080 2.2.1.1).
    #[error("unknown frame keyword (expected MSG, RPY, ERR, ANS, NUL or SEQ)")]
    UnknownKeyword,
    /// A field is missing, empty, not made of digits, or not separated by
    /// exactly one space (RFC 3080 2.2.1.1, conformance item 7).
    #[error("{field} is missing or not a plain decimal number after a single space")]
    Malformed {
        /// The first field that could not be read.
        field: Field,
    },
    /// A number is beyond the range the RFC allows (RFC 3080 2.2.1).
    #[error("{field} is out of range (at most {max})")]
    OutOfRange {
        /// The field.
        field: Field,
        /// Its largest legal value.
        max: u32,
    },
    /// Something follows the last field, e.g. an `ansno` on a frame other
    /// than ANS (RFC 3080 2.2.1.1).
    #[error("unexpected text after the {after} field")]
    TrailingJunk {
        /// The last field read.
        after: Field,
    },
}

/// Parses one header line at the start of `input`.
///
/// Returns `Ok(None)` when more bytes are needed, or the header and the
/// number of bytes it took (CRLF included). Fails as soon as the bytes seen
/// prove the line poorly formed, and when `max_len` bytes contain no CRLF.
///
/// ```
/// use beep_proto::{MsgNo, frame::{parse_header, Header, FrameType}};
/// assert_eq!(parse_header(b"MSG 0 1 . 52 1", 128), Ok(None));
/// let (h, used) = parse_header(b"MSG 0 1 . 52 120\r\n<start", 128).unwrap().unwrap();
/// let Header::Frame(h) = h else { panic!() };
/// assert_eq!((h.frame_type, h.msgno, h.seqno, h.size, used), (FrameType::Msg, MsgNo(1), 52, 120, 18));
/// ```
pub fn parse_header(input: &[u8], max_len: usize) -> Result<Option<(Header, usize)>, FrameError> {
    let window = &input[..input.len().min(max_len)];
    let Some(end) = memchr::memchr(b'\n', window) else {
        // Say now what can never become a valid header, rather than at max_len.
        if let Some(e) = first_invalid_byte(window) {
            return Err(e);
        }
        return if input.len() >= max_len {
            Err(FrameError::HeaderTooLong { limit: max_len })
        } else {
            Ok(None)
        };
    };
    // The fast path checks nothing byte by byte: the grammar rejects every
    // stray byte. Only a failure pays for finding the most precise reason.
    let parsed = match end.checked_sub(1) {
        Some(cr) if window[cr] == b'\r' => parse_line(&window[..cr]),
        _ => Err(FrameError::BareLineFeed),
    };
    parsed
        .map(|h| Some((h, end + 1)))
        .map_err(|e| first_invalid_byte(&window[..end]).unwrap_or(e))
}

/// Letters, digits, separators and CR can start a header line or appear in
/// one (the grammar then decides); any other byte never can.
fn first_invalid_byte(bytes: &[u8]) -> Option<FrameError> {
    bytes
        .iter()
        .position(|b| {
            !matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b' ' | b'.' | b'*' | b'\r' | b'+' | b'-')
        })
        .map(|offset| FrameError::InvalidByte {
            byte: bytes[offset],
            offset,
        })
}

/// Parses a complete header line without its CRLF.
fn parse_line(line: &[u8]) -> Result<Header, FrameError> {
    let (rest, keyword) = keyword(line).map_err(|_| FrameError::UnknownKeyword)?;
    match keyword {
        Keyword::Seq => {
            let (rest, channel) = field(rest, Field::Channel, MAX_31BIT)?;
            let (rest, ackno) = field(rest, Field::Ackno, u32::MAX)?;
            let (rest, window) = field(rest, Field::Window, MAX_31BIT)?;
            end(rest, Field::Window)?;
            Ok(Header::Seq(SeqFrame {
                channel,
                ackno,
                window,
            }))
        }
        Keyword::Data(frame_type) => {
            let (rest, channel) = field(rest, Field::Channel, MAX_31BIT)?;
            let (rest, msgno) = field(rest, Field::Msgno, MAX_31BIT)?;
            let (rest, more) = continuation(rest)?;
            let (rest, seqno) = field(rest, Field::Seqno, u32::MAX)?;
            let (rest, size) = field(rest, Field::Size, MAX_31BIT)?;
            let mut header = FrameHeader::new(frame_type, channel, MsgNo(msgno), more, seqno, size);
            if frame_type == FrameType::Ans {
                // RFC 3080 2.2.1: the ABNF says 2^31-1, the prose 2^32-1; accept the wider.
                let (rest, ansno) = field(rest, Field::Ansno, u32::MAX)?;
                end(rest, Field::Ansno)?;
                header.ansno = AnsNo(ansno);
            } else {
                end(rest, Field::Size)?;
            }
            Ok(Header::Frame(header))
        }
    }
}

#[derive(Clone, Copy)]
enum Keyword {
    Data(FrameType),
    Seq,
}

fn keyword(input: &[u8]) -> IResult<&[u8], Keyword> {
    alt((
        value(Keyword::Data(FrameType::Msg), tag(&b"MSG"[..])),
        value(Keyword::Data(FrameType::Rpy), tag(&b"RPY"[..])),
        value(Keyword::Data(FrameType::Err), tag(&b"ERR"[..])),
        value(Keyword::Data(FrameType::Ans), tag(&b"ANS"[..])),
        value(Keyword::Data(FrameType::Nul), tag(&b"NUL"[..])),
        value(Keyword::Seq, tag(&b"SEQ"[..])),
    ))
    .parse(input)
}

/// One space and 1 to 10 decimal digits, no sign, within `max`.
///
/// Written as a plain loop rather than nom combinators: this runs five or
/// six times per frame and is the hottest code of the parser.
fn field(input: &[u8], name: Field, max: u32) -> Result<(&[u8], u32), FrameError> {
    let Some((b' ', rest)) = input.split_first() else {
        return Err(FrameError::Malformed { field: name });
    };
    let mut value = 0u64;
    let mut digits = 0;
    for &b in rest.iter().take(11) {
        if !b.is_ascii_digit() {
            break;
        }
        value = value * 10 + u64::from(b - b'0');
        digits += 1;
    }
    match (digits, u32::try_from(value)) {
        (0, _) => Err(FrameError::Malformed { field: name }),
        (1..=10, Ok(v)) if v <= max => Ok((&rest[digits..], v)),
        _ => Err(FrameError::OutOfRange { field: name, max }),
    }
}

fn continuation(input: &[u8]) -> Result<(&[u8], bool), FrameError> {
    let parsed: IResult<&[u8], bool> = preceded(
        byte(' '),
        alt((value(true, byte('*')), value(false, byte('.')))),
    )
    .parse(input);
    parsed.map_err(|_| FrameError::Malformed { field: Field::More })
}

fn end(rest: &[u8], after: Field) -> Result<(), FrameError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(FrameError::TrailingJunk { after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<(Header, usize)>, FrameError> {
        parse_header(input, DEFAULT_MAX_HEADER_LEN)
    }

    fn frame(input: &[u8]) -> FrameHeader {
        match parse(input).unwrap().unwrap().0 {
            Header::Frame(h) => h,
            Header::Seq(s) => panic!("expected a data frame, got {s:?}"),
        }
    }

    #[test]
    fn rfc3080_2_2_1_parses_every_keyword() {
        for (text, ty) in [
            ("MSG", FrameType::Msg),
            ("RPY", FrameType::Rpy),
            ("ERR", FrameType::Err),
            ("NUL", FrameType::Nul),
        ] {
            let line = format!("{text} 1 2 . 3 4\r\n");
            let h = frame(line.as_bytes());
            assert_eq!(h, FrameHeader::new(ty, 1, MsgNo(2), false, 3, 4));
        }
        assert_eq!(
            frame(b"ANS 1 2 * 3 4 5\r\n"),
            FrameHeader::new(FrameType::Ans, 1, MsgNo(2), true, 3, 4).with_ansno(AnsNo(5))
        );
    }

    #[test]
    fn rfc3080_2_2_1_accepts_the_extremes() {
        let h = frame(b"ANS 2147483647 2147483647 . 4294967295 2147483647 4294967295\r\n");
        assert_eq!(h.channel, MAX_31BIT);
        assert_eq!(h.msgno, MsgNo::MAX);
        assert_eq!(h.seqno, u32::MAX);
        assert_eq!(h.size, MAX_31BIT);
        assert_eq!(h.ansno, AnsNo(u32::MAX));
    }

    #[test]
    fn rfc3080_2_2_1_rejects_numbers_out_of_range() {
        let cases: [(&[u8], Field); 5] = [
            (b"MSG 0 2147483648 . 0 0\r\n", Field::Msgno),
            (b"MSG 2147483648 0 . 0 0\r\n", Field::Channel),
            (b"MSG 0 0 . 4294967296 0\r\n", Field::Seqno),
            (b"MSG 0 0 . 0 2147483648\r\n", Field::Size),
            (b"MSG 0 0 . 0 99999999999\r\n", Field::Size),
        ];
        for (input, field) in cases {
            assert!(
                matches!(parse(input), Err(FrameError::OutOfRange { field: f, .. }) if f == field),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(matches!(
            parse(b"SEQ 0 4294967296 0\r\n"),
            Err(FrameError::OutOfRange {
                field: Field::Ackno,
                ..
            })
        ));
        assert!(matches!(
            parse(b"SEQ 0 0 2147483648\r\n"),
            Err(FrameError::OutOfRange {
                field: Field::Window,
                ..
            })
        ));
    }

    #[test]
    fn hardening_rejects_bare_lf_and_missing_fields() {
        assert_eq!(parse(b"RPY\n"), Err(FrameError::BareLineFeed));
        assert_eq!(parse(b"\n"), Err(FrameError::BareLineFeed));
        assert_eq!(
            parse(b"RPY\r\n"),
            Err(FrameError::Malformed {
                field: Field::Channel
            })
        );
        assert_eq!(
            parse(b"RPY 0 0 .\r\n"),
            Err(FrameError::Malformed {
                field: Field::Seqno
            })
        );
    }

    #[test]
    fn hardening_rejects_nul_bytes_at_once() {
        assert_eq!(
            parse(b"\0"),
            Err(FrameError::InvalidByte { byte: 0, offset: 0 })
        );
        assert_eq!(
            parse(b"RPY 1234123\0\r\n"),
            Err(FrameError::InvalidByte {
                byte: 0,
                offset: 11
            })
        );
        // Without the CRLF it is still rejected: no waiting for more bytes.
        assert!(parse(b"RPY 0\0").is_err());
    }

    #[test]
    fn hardening_rejects_signs_spaces_and_lowercase() {
        for input in [
            &b"MSG +1 0 . 0 0\r\n"[..],
            b"MSG -1 0 . 0 0\r\n",
            b"MSG  1 0 . 0 0\r\n",
            b" MSG 1 0 . 0 0\r\n",
            b"MSG 1 0 . 0 0 \r\n",
            b"MSG 1 0 , 0 0\r\n",
            b"msg 1 0 . 0 0\r\n",
            b"Rpy 1 0 . 0 0\r\n",
            b"FOO 1 0 . 0 0\r\n",
            b"MSG 1 0 . 0 0\r\r\n",
            b"MSG 1 0 .. 0 0\r\n",
        ] {
            assert!(
                parse(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn rfc3080_2_2_1_1_ansno_only_on_ans() {
        assert_eq!(
            parse(b"RPY 1 0 . 0 0 5\r\n"),
            Err(FrameError::TrailingJunk { after: Field::Size })
        );
        assert_eq!(
            parse(b"ANS 1 0 . 0 0\r\n"),
            Err(FrameError::Malformed {
                field: Field::Ansno
            })
        );
    }

    #[test]
    fn hardening_caps_the_header_length() {
        let long = vec![b'1'; 200];
        assert_eq!(
            parse(&long),
            Err(FrameError::HeaderTooLong {
                limit: DEFAULT_MAX_HEADER_LEN
            })
        );
        assert_eq!(parse(&long[..100]), Ok(None));
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let full = b"ANS 1 2 * 3 4 5\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn seq_frames_round_trip() {
        let s = SeqFrame {
            channel: 7,
            ackno: u32::MAX,
            window: MAX_31BIT,
        };
        let mut out = BytesMut::new();
        s.encode(&mut out);
        assert_eq!(parse(&out), Ok(Some((Header::Seq(s), out.len()))));
    }

    proptest::proptest! {
        #[test]
        fn encode_then_parse_is_identity(
            ty in 0..5u8, channel in 0..=MAX_31BIT, msgno in 0..=MAX_31BIT, more: bool,
            seqno: u32, size in 0..=MAX_31BIT, ansno: u32,
        ) {
            let frame_type = [FrameType::Msg, FrameType::Rpy, FrameType::Err, FrameType::Ans, FrameType::Nul][ty as usize];
            let mut h = FrameHeader::new(frame_type, channel, MsgNo(msgno), more, seqno, size);
            if frame_type == FrameType::Ans { h.ansno = AnsNo(ansno); }
            let mut out = BytesMut::new();
            h.encode(&mut out);
            proptest::prop_assert!(out.len() <= 62);
            proptest::prop_assert_eq!(parse(&out), Ok(Some((Header::Frame(h), out.len()))));
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&input);
        }
    }
}
