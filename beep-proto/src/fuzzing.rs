//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and
//! the corpus replay test (`tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes, drives one part of the crate with
//! them and checks invariants, panicking when one is violated: a panic is
//! what the fuzzer reports. None of this is API; it is public only so that
//! the fuzz crate can call it.
//!
//! The session targets read their first byte as a set of options (see
//! [`Options`]) and the rest as what the peer sends.

use std::collections::{HashMap, HashSet};

use bytes::BytesMut;

use crate::config::DEFAULT_WINDOW;
use crate::frame::{
    DEFAULT_MAX_HEADER_LEN, FrameError, FrameHeader, FrameType, Header, MAX_31BIT, TRAILER,
    parse_header,
};
use crate::reply_code::ReplyCode;
use crate::xml::{ChannelZeroMessage, Profile, Start};
use crate::{AnsNo, Config, Event, Message, MessageKind, MsgNo, Session, UsageError};

/// The profile the fuzzed sessions advertise, offer and start.
const PROFILE: &str = "http://example.org/p";
/// The profile LibVortex's regression transcripts start.
const VORTEX_PROFILE: &str = "http://iana.org/beep/transient/vortex-regression";
/// The header block of every channel-0 message.
const BEEP_XML: &str = "Content-Type: application/beep+xml\r\n\r\n";
/// Rounds of polling after which a session that still produces events or
/// bytes is taken to be looping.
const MAX_PUMP_ROUNDS: usize = 10_000;

// ---------------------------------------------------------------------------
// Frame headers
// ---------------------------------------------------------------------------

/// Fuzzes [`parse_header`]: it never panics; a header it returns re-encodes
/// to a line that parses to the same header (byte for byte the same line
/// when the input had no leading zeros); it consumes at most `max_len`
/// bytes, up to and including the first LF; and every prefix of the input
/// gives either `Ok(None)` (undecided) or exactly the result for the whole
/// input, undecided prefixes coming first.
pub fn frame_header(data: &[u8]) {
    let small = data.first().map_or(0, |&b| usize::from(b % 72));
    for max_len in [DEFAULT_MAX_HEADER_LEN, small, 4096] {
        check_header(data, max_len);
    }
}

fn check_header(data: &[u8], max_len: usize) {
    let full = parse_header(data, max_len);
    let scanned = &data[..data.len().min(max_len)];
    match &full {
        Ok(Some((header, used))) => {
            let used = *used;
            assert!(used <= max_len, "consumed {used} > max_len {max_len}");
            assert!(
                (2..=data.len()).contains(&used),
                "consumed {used} of {}",
                data.len()
            );
            assert_eq!(
                &data[used - 2..used],
                b"\r\n",
                "a header line ends with CRLF"
            );
            assert!(
                !data[..used - 1].contains(&b'\n'),
                "the line ends at the first LF"
            );
            check_header_ranges(header);
            let line = encode_header(header);
            assert!(line.len() <= 62, "an encoded header is at most 62 octets");
            assert_eq!(
                parse_header(&line, line.len()),
                Ok(Some((*header, line.len()))),
                "re-encoding {header:?} as {:?} does not parse back",
                String::from_utf8_lossy(&line)
            );
            if !has_leading_zero(&data[..used - 2]) {
                assert_eq!(
                    &line[..],
                    &data[..used],
                    "canonical line re-encoded differently"
                );
            }
            // What follows the line plays no part.
            assert_eq!(parse_header(&data[..used], max_len), full);
        }
        Ok(None) => {
            assert!(data.len() < max_len, "undecided at or beyond max_len");
            assert!(!data.contains(&b'\n'), "undecided although a LF was seen");
        }
        Err(FrameError::HeaderTooLong { limit }) => {
            assert_eq!(*limit, max_len);
            assert!(data.len() >= max_len);
            assert!(!scanned.contains(&b'\n'), "too long although a LF was seen");
        }
        Err(FrameError::InvalidByte { byte, offset }) => {
            assert!(
                *offset < scanned.len(),
                "invalid byte beyond the scanned window"
            );
            assert_eq!(
                data[*offset], *byte,
                "invalid byte reported at the wrong offset"
            );
            assert!(!data[..*offset].contains(&b'\n'));
        }
        Err(FrameError::BareLineFeed) => {
            let lf = scanned.iter().position(|&b| b == b'\n');
            assert!(lf.is_some(), "bare LF reported without a LF");
            assert!(lf == Some(0) || lf.is_some_and(|i| data[i - 1] != b'\r'));
        }
        Err(_) => {
            assert!(
                scanned.contains(&b'\n'),
                "a field error before the line is complete"
            );
        }
    }
    // Prefixes: undecided, then decided exactly as the whole input is.
    // Beyond max_len + 1 octets nothing new is scanned.
    let mut decided = false;
    for cut in 0..=data.len().min(max_len + 1) {
        let partial = parse_header(&data[..cut], max_len);
        if partial == Ok(None) {
            assert!(
                !decided,
                "prefix of {cut} octets undecided after a shorter one was decided"
            );
        } else {
            decided = true;
            assert_eq!(partial, full, "prefix of {cut} octets decided differently");
        }
    }
}

fn check_header_ranges(header: &Header) {
    match header {
        Header::Frame(h) => {
            assert!(h.channel <= MAX_31BIT && h.msgno <= MsgNo::MAX && h.size <= MAX_31BIT);
            assert!(
                h.frame_type == FrameType::Ans || h.ansno == AnsNo(0),
                "ansno on a non-ANS frame"
            );
        }
        Header::Seq(s) => assert!(s.channel <= MAX_31BIT && s.window <= MAX_31BIT),
    }
}

fn encode_header(header: &Header) -> BytesMut {
    let mut line = BytesMut::new();
    match header {
        Header::Frame(h) => h.encode(&mut line),
        Header::Seq(s) => s.encode(&mut line),
    }
    line
}

/// True if a number of the line has a superfluous leading zero ("007").
fn has_leading_zero(line: &[u8]) -> bool {
    line.split(|&b| b == b' ')
        .any(|t| t.len() > 1 && t[0] == b'0' && t.iter().all(u8::is_ascii_digit))
}

// ---------------------------------------------------------------------------
// Channel-0 XML
// ---------------------------------------------------------------------------

/// Fuzzes [`ChannelZeroMessage::parse`]: it never panics, and what it
/// accepts writes out to a body that parses back to the same value (with
/// piggybacked content in the encoding the writer chose) and rewrites to
/// the same bytes.
pub fn channel_zero_xml(data: &[u8]) {
    let Ok(message) = ChannelZeroMessage::parse(data) else {
        return;
    };
    let mut written = Vec::new();
    message.write(&mut written);
    assert!(written.ends_with(b"\r\n"), "a written body ends with CRLF");
    let reread = ChannelZeroMessage::parse(&written);
    assert_eq!(
        reread,
        Ok(as_written(&message)),
        "{:?} does not read back",
        String::from_utf8_lossy(&written)
    );
    let mut again = Vec::new();
    reread.unwrap().write(&mut again);
    assert_eq!(
        again, written,
        "rewriting what was read back changed the bytes"
    );
}

/// What a message reads back as once written: the writer may switch
/// piggybacked content to base64 ([`Profile::wire_encoding`]).
fn as_written(message: &ChannelZeroMessage) -> ChannelZeroMessage {
    let fix = |p: &Profile| Profile {
        encoding: p.wire_encoding(),
        ..p.clone()
    };
    match message {
        ChannelZeroMessage::Profile(p) => ChannelZeroMessage::Profile(fix(p)),
        ChannelZeroMessage::Start(s) => ChannelZeroMessage::Start(Start {
            profiles: s.profiles.iter().map(fix).collect(),
            ..s.clone()
        }),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

/// Fuzzes a listener [`Session`] with `data[1..]` as everything the
/// initiator sends, from its greeting on (see [`Options`] for `data[0]`).
///
/// Checks, besides "no panic":
/// * split invariance: without application calls between chunks, feeding
///   the input in chunks (sizes drawn from `data[0]`) gives the same
///   events, the same error or success, the same unparsed rest and the same
///   bytes to transmit as feeding it in one piece;
/// * a session that reported an error reports one for any further input;
/// * with an application that accepts every start (first profile), echoes
///   every MSG as RPY and accepts every close, all polled after every chunk:
///   those calls succeed while the session is active, everything transmitted
///   is well-framed (greeting first, consecutive seqnos, frames within the
///   configured size), unparsed input stays within one header or one window
///   plus trailer, output stays proportionate to input, and polling settles.
pub fn session_listener(data: &[u8]) {
    check_session(Side::Listener, data);
}

/// Like [`session_listener`] for an initiator: it first receives a fixed
/// listener greeting (one profile), asks to start a channel on it, and then
/// receives `data[1..]` from the listener. The application also sends a MSG
/// when its channel opens and after each reply, up to
/// [`Options::initiator_msgs`], then closes the channel and, once it is
/// closed, the session.
///
/// With [`Options::preamble`], the start reply is part of the fixed
/// preamble and the first MSG is already out before `data[1..]`.
pub fn session_initiator(data: &[u8]) {
    check_session(Side::Initiator, data);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Listener,
    Initiator,
}

/// The meaning of the first input byte of the session targets.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bits 0-2: the largest chunk, one of 1, 2, 3, 5, 8, 17, 64, 4096.
    pub max_chunk: usize,
    /// Bit 3: before the fuzz data, a fixed preamble opens channel 1 (the
    /// listener receives the initiator's greeting and a start, which it
    /// accepts; the initiator receives the start reply and sends a MSG).
    pub preamble: bool,
    /// Bit 4: a receive window of 1 MiB instead of 4096.
    pub big_window: bool,
    /// Bit 5: frames we send carry at most 16 octets.
    pub small_frames: bool,
    /// Bit 6: data channels deliver frames (streaming mode), not messages.
    pub streaming: bool,
    /// Bit 7: the initiator sends three MSGs (one after each reply) on its
    /// channel before closing it, instead of one.
    pub initiator_msgs: u32,
    /// The whole byte seeds the chunk sizes.
    pub seed: u8,
}

impl Options {
    /// Decodes the option byte.
    pub fn from_byte(b: u8) -> Self {
        Options {
            max_chunk: [1, 2, 3, 5, 8, 17, 64, 4096][usize::from(b & 7)],
            preamble: b & 8 != 0,
            big_window: b & 16 != 0,
            small_frames: b & 32 != 0,
            streaming: b & 64 != 0,
            initiator_msgs: if b & 128 != 0 { 3 } else { 1 },
            seed: b,
        }
    }

    fn config(&self, auto_credit: bool) -> Config {
        Config {
            profiles: vec![PROFILE.into(), VORTEX_PROFILE.into()],
            receive_window: if self.big_window {
                1 << 20
            } else {
                DEFAULT_WINDOW
            },
            max_frame_size: if self.small_frames {
                16
            } else {
                DEFAULT_WINDOW
            },
            auto_credit,
            ..Config::default()
        }
    }

    /// Splits `data` into chunks of pseudo-random sizes in 1..=max_chunk.
    fn chunks<'a>(&self, mut data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        let mut state = 0x9e37_79b9 ^ u32::from(self.seed).wrapping_mul(0x0101_0101) | 1;
        let max = self.max_chunk;
        std::iter::from_fn(move || {
            if data.is_empty() {
                return None;
            }
            // xorshift32
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let size = (1 + state as usize % max).min(data.len());
            let (chunk, rest) = data.split_at(size);
            data = rest;
            Some(chunk)
        })
    }
}

fn check_session(side: Side, data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let options = Options::from_byte(first);
    split_invariance(side, &options, input);
    interactive(side, &options, input);
}

/// A whole frame: header, payload, trailer.
fn frame(frame_type: FrameType, channel: u32, msgno: MsgNo, seqno: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameHeader::new(
        frame_type,
        channel,
        msgno,
        false,
        seqno,
        payload.len() as u32,
    )
    .encode(&mut out);
    out.extend_from_slice(payload);
    out.extend_from_slice(TRAILER);
    out.to_vec()
}

fn drain_events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn drain_transmit(session: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..MAX_PUMP_ROUNDS {
        match session.poll_transmit() {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => return out,
        }
    }
    panic!("poll_transmit never returns None");
}

/// A session of `side` brought to where the fuzz data starts, and the
/// bytes it transmitted so far.
fn setup(side: Side, options: &Options, auto_credit: bool) -> (Session, Vec<u8>) {
    let config = options.config(auto_credit);
    let mut out = Vec::new();
    let mut session = match side {
        Side::Listener => {
            // The listener offers TLS too: the fuzzer reaches the TLS request
            // paths (the application here refuses them; what follows a
            // <proceed/> is `tls_after_proceed`'s).
            let mut config = config;
            config.profiles.push(crate::tls::TLS_URI.into());
            // And SASL: the engine's replay of rsasl runs on whatever the
            // fuzzer sends (the application answers every request).
            for mechanism in crate::sasl::Mechanism::ALL {
                config.profiles.push(mechanism.uri().into());
            }
            let mut s = Session::listener(config);
            out.extend(drain_transmit(&mut s));
            if options.preamble {
                let greeting = format!("{BEEP_XML}<greeting />\r\n");
                let start = format!(
                    "{BEEP_XML}<start number='1'>\r\n   <profile uri='{PROFILE}' />\r\n</start>\r\n"
                );
                let mut bytes = frame(FrameType::Rpy, 0, MsgNo(0), 0, greeting.as_bytes());
                let seqno = greeting.len() as u32;
                bytes.extend(frame(FrameType::Msg, 0, MsgNo(0), seqno, start.as_bytes()));
                s.handle_input(&bytes).expect("listener preamble");
                let events = drain_events(&mut s);
                assert!(
                    matches!(&events[..], [Event::Greeting(_), Event::StartRequested(r)] if r.channel == 1),
                    "listener preamble gave {events:?}"
                );
                s.accept_start(1, Profile::new(PROFILE))
                    .expect("accept preamble start");
                if options.streaming {
                    s.set_streaming(1, true).expect("streaming");
                }
            }
            s
        }
        Side::Initiator => {
            let mut s = Session::initiator(config);
            out.extend(drain_transmit(&mut s));
            let greeting =
                format!("{BEEP_XML}<greeting><profile uri='{PROFILE}' /></greeting>\r\n");
            s.handle_input(&frame(FrameType::Rpy, 0, MsgNo(0), 0, greeting.as_bytes()))
                .expect("initiator greeting");
            let events = drain_events(&mut s);
            assert!(
                matches!(&events[..], [Event::Greeting(_)]),
                "initiator greeting gave {events:?}"
            );
            let channel = s
                .open_channel(vec![Profile::new(PROFILE)], None)
                .expect("open_channel");
            assert_eq!(channel, 1);
            if options.preamble {
                out.extend(drain_transmit(&mut s));
                let reply = format!("{BEEP_XML}<profile uri='{PROFILE}' />\r\n");
                let seqno = greeting.len() as u32;
                s.handle_input(&frame(FrameType::Rpy, 0, MsgNo(0), seqno, reply.as_bytes()))
                    .expect("initiator preamble");
                let events = drain_events(&mut s);
                assert!(
                    matches!(&events[..], [Event::ChannelOpened { channel: 1, .. }]),
                    "initiator preamble gave {events:?}"
                );
                if options.streaming {
                    s.set_streaming(1, true).expect("streaming");
                }
                s.send_msg(1, Message::new("ping")).expect("first MSG");
            }
            s
        }
    };
    out.extend(drain_transmit(&mut session));
    (session, out)
}

/// One piece versus chunks, without application calls in between (and
/// without automatic credit, so that polling events changes nothing).
fn split_invariance(side: Side, options: &Options, input: &[u8]) {
    let (mut whole, _) = setup(side, options, false);
    let whole_result = whole.handle_input(input);
    let whole_events = drain_events(&mut whole);

    let (mut split, _) = setup(side, options, false);
    let mut split_result = Ok(());
    let mut split_events = Vec::new();
    for chunk in options.chunks(input) {
        let result = split.handle_input(chunk);
        split_events.extend(drain_events(&mut split));
        if split_result.is_err() {
            assert_eq!(result, Ok(()), "input after an error is ignored");
        } else {
            split_result = result;
        }
    }

    assert_eq!(
        whole_result, split_result,
        "one piece and chunks end differently"
    );
    assert_eq!(
        whole_events, split_events,
        "one piece and chunks give different events"
    );
    assert_eq!(whole.is_ended(), split.is_ended());
    assert_eq!(whole.unparsed_input(), split.unparsed_input());
    assert_eq!(
        drain_transmit(&mut whole),
        drain_transmit(&mut split),
        "one piece and chunks leave different bytes to send"
    );
}

/// Chunks with an application answering after each one.
/// Returns what the application saw, for tests of the harness itself: the
/// MSGs delivered, and the data frames sent (type, channel, msgno, size).
fn interactive(
    side: Side,
    options: &Options,
    input: &[u8],
) -> (usize, Vec<(FrameType, u32, MsgNo, u32)>) {
    let (mut session, sent) = setup(side, options, true);
    let mut wire = Wire::new(options.config(true).max_frame_size);
    wire.push(&sent);
    let mut app = App::new(side, options);
    let max_buffered =
        DEFAULT_MAX_HEADER_LEN.max(session.config().receive_window as usize + TRAILER.len());
    let mut error = None;
    let mut fed = 0usize;
    for chunk in options.chunks(input) {
        fed += chunk.len();
        let result = session.handle_input(chunk);
        match (&error, result) {
            (Some(_), result) => {
                assert_eq!(result, Ok(()), "input after an error is ignored")
            }
            (None, Err(e)) => {
                assert!(session.is_ended(), "an error did not end the session");
                error = Some(e);
            }
            (None, Ok(())) => {}
        }
        let buffered = session.unparsed_input().len();
        // Windows grow (up to `max_receive_window`) while the peer fills
        // them and we keep up: a frame may then be as large as the
        // largest window we advertised.
        let config = session.config();
        assert!(
            wire.max_window <= config.max_receive_window.max(config.receive_window),
            "we advertised a window of {} octets",
            wire.max_window
        );
        let max_buffered = max_buffered.max(wire.max_window as usize + TRAILER.len());
        assert!(
            buffered <= max_buffered,
            "{buffered} octets of input held at {fed}"
        );
        app.pump(&mut session, &mut wire);
        let limit = 64 * 1024 + 16 * fed;
        assert!(
            wire.total <= limit,
            "{} octets sent for {fed} received",
            wire.total
        );
    }
    if error.is_some() {
        assert_eq!(session.handle_input(b"SEQ 0 0 4096\r\n"), Ok(()));
        assert!(matches!(
            session.end_reason(),
            Some(crate::SessionEnd::Violation(e)) if Some(e) == error.as_ref()
        ));
        assert!(session.is_ended());
    }
    // A last round of application work (it may have freed more to send).
    app.pump(&mut session, &mut wire);
    wire.finish();
    (app.delivered, wire.data_frames)
}

/// The application of the interactive runs.
struct App {
    side: Side,
    streaming: bool,
    /// MSGs the initiator sent on its channel (1), and how many it sends.
    sent: u32,
    max_sent: u32,
    /// Channels whose close we accepted.
    peer_closing: HashSet<u32>,
    close_asked: bool,
    release_asked: bool,
    /// `Event::SessionEnded` was seen: nothing may follow it.
    ended: bool,
    /// MSGs delivered (whole, or their last frame).
    delivered: usize,
}

impl App {
    fn new(side: Side, options: &Options) -> Self {
        App {
            side,
            streaming: options.streaming,
            sent: u32::from(side == Side::Initiator && options.preamble),
            max_sent: options.initiator_msgs,
            peer_closing: HashSet::new(),
            close_asked: false,
            release_asked: false,
            ended: false,
            delivered: 0,
        }
    }

    /// Polls events (answering each) and bytes until neither comes.
    fn pump(&mut self, session: &mut Session, wire: &mut Wire) {
        let mut chunks = Vec::new();
        for round in 0..MAX_PUMP_ROUNDS {
            let mut busy = false;
            while let Some(event) = session.poll_event() {
                busy = true;
                assert!(!self.ended, "{event:?} after the session ended");
                if let Event::SessionEnded(end) = &event {
                    self.ended = true;
                    assert_eq!(session.end_reason(), Some(end), "end reasons differ");
                }
                self.on_event(session, event);
            }
            // Both output paths, interleaved: the wire checks the stream.
            if round % 2 == 1 {
                while session.poll_transmit_vectored(&mut chunks) {
                    busy = true;
                    for chunk in chunks.drain(..) {
                        wire.push(&chunk);
                    }
                }
            }
            while let Some(bytes) = session.poll_transmit() {
                busy = true;
                wire.push(&bytes);
            }
            if !busy {
                return;
            }
        }
        panic!("the session keeps producing events or bytes");
    }

    fn on_event(&mut self, s: &mut Session, event: Event) {
        match event {
            Event::StartRequested(request) => {
                let channel = request.channel;
                match request.profiles.into_iter().next() {
                    Some(profile) => {
                        let r = s.accept_start(channel, profile);
                        usage(s, r, "accept_start");
                        if self.streaming && s.is_channel_open(channel) {
                            let r = s.set_streaming(channel, true);
                            usage(s, r, "set_streaming");
                        }
                    }
                    None => {
                        let r = s.deny_start(channel, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "");
                        usage(s, r, "deny_start");
                    }
                }
            }
            Event::Message(m) => match m.kind {
                MessageKind::Msg => {
                    self.delivered += 1;
                    let r = s.send_rpy(m.channel, m.msgno, m.message);
                    usage(s, r, "send_rpy");
                }
                MessageKind::Rpy | MessageKind::Err | MessageKind::Nul => {
                    self.replied(s, m.channel)
                }
                MessageKind::Ans { .. } => {}
            },
            Event::Frame(f) if !f.more => match f.kind {
                MessageKind::Msg => {
                    self.delivered += 1;
                    let r = s.send_rpy(f.channel, f.msgno, Message::new(f.payload));
                    usage(s, r, "send_rpy");
                }
                MessageKind::Rpy | MessageKind::Err | MessageKind::Nul => {
                    self.replied(s, f.channel)
                }
                MessageKind::Ans { .. } => {}
            },
            Event::TlsRequested(request) => {
                let r = s.deny_tls(request.channel, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "");
                usage(s, r, "deny_tls");
            }
            Event::AuthRequested(request) => {
                use crate::sasl::{AuthAnswer, AuthNeed};
                // A user "bob" exists; every other name does not.
                let answer = match (request.need, request.authcid.as_deref()) {
                    (AuthNeed::Secret, Some("bob")) => AuthAnswer::Secret("secret".into()),
                    (AuthNeed::Decide, Some("bob")) => AuthAnswer::Accept,
                    (AuthNeed::Decide, _) => AuthAnswer::Deny,
                    _ => AuthAnswer::NoSuchUser,
                };
                let r = s.answer_auth(request.channel, answer);
                usage(s, r, "answer_auth");
            }
            Event::CloseRequested { channel, .. } => {
                self.peer_closing.insert(channel);
                let r = s.accept_close(channel);
                usage(s, r, "accept_close");
            }
            Event::ChannelOpened { channel: 1, .. } if self.side == Side::Initiator => {
                if self.streaming {
                    let r = s.set_streaming(1, true);
                    usage(s, r, "set_streaming");
                }
                self.send(s);
            }
            Event::ChannelClosed { channel: 1 } if self.close_asked && !self.release_asked => {
                self.release_asked = true;
                let r = s.close_session(ReplyCode::SUCCESS, "");
                usage(s, r, "close_session");
            }
            _ => {}
        }
    }

    /// A reply to one of our MSGs is complete.
    fn replied(&mut self, s: &mut Session, channel: u32) {
        if self.side != Side::Initiator || channel != 1 || self.peer_closing.contains(&1) {
            return;
        }
        if self.sent < self.max_sent {
            self.send(s);
        } else if !self.close_asked {
            self.close_asked = true;
            let r = s.close_channel(1, ReplyCode::SUCCESS, "");
            usage(s, r, "close_channel");
        }
    }

    fn send(&mut self, s: &mut Session) {
        self.sent += 1;
        let body = format!("message {}", self.sent);
        let r = s.send_msg(1, Message::new(body));
        usage(s, r, "send_msg");
    }
}

/// An application call must succeed while the session is active (but
/// for new work while a peer's TLS request awaits its answer, which the
/// session refuses on purpose, RFC 3080 3.1.3).
fn usage<T>(session: &Session, result: Result<T, UsageError>, what: &str) {
    if let Err(e) = result {
        assert!(
            session.is_ended() || e == UsageError::TuningInProgress,
            "{what} failed on an active session: {e:?}"
        );
    }
}

/// Checks the framing of everything a session transmits.
struct Wire {
    buf: Vec<u8>,
    total: usize,
    max_frame: u32,
    frames: usize,
    next_seqno: HashMap<u32, u32>,
    /// The largest window we advertised in a SEQ.
    max_window: u32,
    /// Data frames (not channel 0): type, channel, msgno, payload size.
    data_frames: Vec<(FrameType, u32, MsgNo, u32)>,
}

impl Wire {
    fn new(max_frame: u32) -> Self {
        Wire {
            buf: Vec::new(),
            total: 0,
            max_frame,
            frames: 0,
            next_seqno: HashMap::new(),
            max_window: 0,
            data_frames: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            let header = match parse_header(rest, DEFAULT_MAX_HEADER_LEN) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => panic!(
                    "we sent a malformed header ({e}): {:?}",
                    String::from_utf8_lossy(rest)
                ),
            };
            match header {
                (Header::Seq(seq), used) => {
                    assert!(self.frames > 0, "SEQ before the greeting");
                    assert!(seq.window <= MAX_31BIT);
                    self.max_window = self.max_window.max(seq.window);
                    at += used;
                }
                (Header::Frame(h), used) => {
                    let end = used + h.size as usize + TRAILER.len();
                    if rest.len() < end {
                        break;
                    }
                    assert_eq!(
                        &rest[end - TRAILER.len()..end],
                        TRAILER,
                        "we sent {h:?} without END"
                    );
                    if self.frames == 0 {
                        assert!(
                            h.channel == 0
                                && h.msgno == MsgNo(0)
                                && h.seqno == 0
                                && matches!(h.frame_type, FrameType::Rpy | FrameType::Err),
                            "the first frame we sent is {h:?}, not a greeting"
                        );
                    }
                    assert!(
                        h.size <= self.max_frame,
                        "we sent {h:?} beyond max_frame_size"
                    );
                    let next = self.next_seqno.entry(h.channel).or_insert(0);
                    assert_eq!(h.seqno, *next, "we sent {h:?} out of sequence");
                    *next = next.wrapping_add(h.size);
                    self.frames += 1;
                    if h.channel != 0 {
                        self.data_frames
                            .push((h.frame_type, h.channel, h.msgno, h.size));
                    }
                    at += end;
                }
            }
        }
        self.buf.drain(..at);
    }

    /// Once the session has nothing more to send, no frame is left half sent.
    fn finish(&self) {
        assert!(
            self.buf.is_empty(),
            "transmitted bytes end inside a frame: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

// ---------------------------------------------------------------------------
// TLS: whatever arrives after <proceed/>
// ---------------------------------------------------------------------------

/// Most output a session may have queued after fuzz input: its new
/// greeting and TLS records (with an alert) are a few KiB; anything near
/// this means the input made it pile up.
const MAX_TLS_OUTPUT: usize = 1 << 20;

/// Fuzzes the byte path after `<proceed/>` (RFC 3080 3.1.3.2): the first
/// byte chooses the role (bit 0: initiator) and the chunk sizes (as
/// [`Options::max_chunk`], bits 1-3); a session of that role is brought
/// past `<proceed/>` with scripted peer bytes (the listener presenting
/// `server`'s certificate; the initiator trusting any), then `data[1..]`
/// arrives as the peer's TLS records, in chunks. Checked: no panic; an
/// input error ends the session (typed: TLS failed, or a BEEP violation
/// inside TLS) and later input is ignored; output stays bounded; polling
/// settles; the tuning reset was reported once, before anything TLS.
pub fn tls_after_proceed(data: &[u8], server: &crate::tls::TlsServer) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let initiator = first & 1 != 0;
    let options = Options::from_byte(first >> 1);
    let mut session = if initiator {
        proceeded_initiator()
    } else {
        proceeded_listener(server)
    };
    assert!(session.is_tls_active(), "the switch happened");
    let mut failed = false;
    for chunk in options.chunks(input) {
        let result = session.handle_input(chunk);
        if failed {
            assert!(result.is_ok(), "input after the end is ignored");
        }
        if let Err(e) = result {
            failed = true;
            assert!(session.is_ended(), "an input error ends the session: {e}");
        }
        for _ in 0..MAX_PUMP_ROUNDS {
            if session.poll_event().is_none() {
                break;
            }
        }
        drain_transmit(&mut session);
        assert!(
            session.queued_output() <= MAX_TLS_OUTPUT,
            "output piles up: {}",
            session.queued_output()
        );
    }
    session.handle_eof();
    assert!(session.is_ended());
    drain_transmit(&mut session);
}

/// A listener that offered TLS, was asked for it by a scripted initiator
/// (`<ready />` piggybacked, as LibVortex does) and wrote `<proceed />`.
fn proceeded_listener(server: &crate::tls::TlsServer) -> Session {
    let mut s = Session::listener(Config {
        profiles: vec![PROFILE.into(), crate::tls::TLS_URI.into()],
        ..Config::default()
    });
    drain_transmit(&mut s);
    let greeting = format!("{BEEP_XML}<greeting />\r\n");
    let start = format!(
        "{BEEP_XML}<start number='1'>\r\n   <profile uri='{}'><![CDATA[<ready />]]></profile>\r\n</start>\r\n",
        crate::tls::TLS_URI
    );
    let mut bytes = frame(FrameType::Rpy, 0, MsgNo(0), 0, greeting.as_bytes());
    let seqno = greeting.len() as u32;
    bytes.extend(frame(FrameType::Msg, 0, MsgNo(0), seqno, start.as_bytes()));
    s.handle_input(&bytes).expect("TLS preamble");
    let events = drain_events(&mut s);
    assert!(
        matches!(&events[..], [Event::Greeting(_), Event::TlsRequested(r)] if r.channel == 1),
        "TLS preamble gave {events:?}"
    );
    s.accept_tls(1, server).expect("accept_tls");
    drain_transmit(&mut s);
    assert_eq!(drain_events(&mut s), [Event::TuningReset]);
    s
}

/// An initiator that asked for TLS and got LibVortex-style `<proceed />`.
fn proceeded_initiator() -> Session {
    let mut s = Session::initiator(Config::default());
    let client = crate::tls::TlsClient::dangerous_accept_any_certificate("localhost")
        .expect("client configuration");
    s.start_tls(client).expect("start_tls");
    drain_transmit(&mut s);
    let greeting = format!(
        "{BEEP_XML}<greeting><profile uri='{}' /></greeting>\r\n",
        crate::tls::TLS_URI
    );
    let proceed = format!(
        "{BEEP_XML}<profile uri='{}' ><![CDATA[<proceed />]]></profile>\r\n",
        crate::tls::TLS_URI
    );
    // Our start goes out once the greeting is in: the greeting first.
    s.handle_input(&frame(FrameType::Rpy, 0, MsgNo(0), 0, greeting.as_bytes()))
        .expect("greeting");
    drain_transmit(&mut s);
    s.handle_input(&frame(
        FrameType::Rpy,
        0,
        MsgNo(0),
        greeting.len() as u32,
        proceed.as_bytes(),
    ))
    .expect("proceed");
    let events = drain_events(&mut s);
    assert!(
        matches!(&events[..], [Event::Greeting(_), Event::TuningReset]),
        "TLS preamble gave {events:?}"
    );
    s
}

// ---------------------------------------------------------------------------
// SASL: arbitrary <blob> content to the listener's side of an exchange
// ---------------------------------------------------------------------------

/// The decoded size of the largest blob [`sasl_listener`] sends (its
/// length is one input byte).
const MAX_FUZZ_BLOB: usize = 255;

/// Fuzzes the listener's side of a SASL exchange (RFC 3080 4.1) with
/// arbitrary `<blob>` content. `data[0]`: bits 0-2 the mechanism (an
/// index into [`crate::sasl::Mechanism::ALL`], modulo its length; -PLUS
/// is not offered without TLS, so its start is refused), bit 3 whether
/// the first record rides on the `<start>` (else it goes as the first
/// MSG), bits 4-5 what the application answers (`AuthPolicy`). The rest
/// is records, each `[kind, len, len bytes]`: kind & 3 is 0 for a
/// `continue` blob of those bytes (base64-encoded here, so any octets
/// reach the mechanism), 1 `complete`, 2 `abort`, 3 the bytes as the raw
/// MSG body (the blob parser's turn).
///
/// Checked, besides "no panic": output stays bounded; polling settles;
/// and no one authenticates without the application's consent: with a
/// policy that refuses everyone nobody is, and otherwise only `bob`
/// (PLAIN with his password; the challenge-response mechanisms would need
/// a proof the fuzzer cannot compute without the password, so a success
/// there is a finding) or the identity-less ANONYMOUS and EXTERNAL.
pub fn sasl_listener(data: &[u8]) {
    run_sasl_listener(data);
}

/// [`sasl_listener`]; true if the peer authenticated.
fn run_sasl_listener(data: &[u8]) -> bool {
    use crate::sasl::Mechanism;
    let Some((&first, mut input)) = data.split_first() else {
        return false;
    };
    let mechanism = Mechanism::ALL[usize::from(first & 7) % Mechanism::ALL.len()];
    let piggyback = first & 8 != 0;
    let policy = AuthPolicy::from_bits(first >> 4);

    let mut records = Vec::new();
    while let [kind, len, rest @ ..] = input {
        let len = usize::from(*len).min(rest.len()).min(MAX_FUZZ_BLOB);
        records.push((kind & 3, &rest[..len]));
        input = &rest[len..];
    }

    let mut session = Session::listener(Config {
        profiles: Mechanism::ALL.iter().map(|m| m.uri().to_owned()).collect(),
        receive_window: 1 << 20,
        ..Config::default()
    });
    drain_transmit(&mut session);
    let mut peer = ScriptedPeer::default();
    let greeting = format!("{BEEP_XML}<greeting />\r\n");
    peer.send(&mut session, 0, greeting.as_bytes(), FrameType::Rpy);

    let mut records = records.into_iter();
    let mut content = String::new();
    if piggyback && let Some((kind, bytes)) = records.next() {
        content = format!("<![CDATA[{}]]>", blob_body(kind, bytes));
    }
    let start = format!(
        "{BEEP_XML}<start number='1'><profile uri='{}'>{content}</profile></start>\r\n",
        mechanism.uri()
    );
    peer.send(&mut session, 0, start.as_bytes(), FrameType::Msg);
    let mut watch = AuthWatch {
        policy,
        mechanism,
        authenticated: false,
    };
    watch.settle(&mut session);
    for (kind, bytes) in records {
        let body = format!("{BEEP_XML}{}", blob_body(kind, bytes));
        peer.send(&mut session, 1, body.as_bytes(), FrameType::Msg);
        watch.settle(&mut session);
        if session.is_ended() {
            break;
        }
    }
    session.handle_eof();
    watch.settle(&mut session);
    watch.authenticated
}

/// The body of one [`sasl_listener`] record.
fn blob_body(kind: u8, bytes: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    match kind {
        0 => format!("<blob>{encoded}</blob>"),
        1 => format!("<blob status='complete'>{encoded}</blob>"),
        2 => "<blob status='abort'/>".to_owned(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The initiator of [`sasl_listener`]: frames with the right numbers.
#[derive(Default)]
struct ScriptedPeer {
    /// Next msgno and seqno per channel (0 and 1).
    msgno: [u32; 2],
    seqno: [u32; 2],
}

impl ScriptedPeer {
    fn send(&mut self, session: &mut Session, channel: u32, body: &[u8], kind: FrameType) {
        let c = channel as usize;
        // Channel 0's greeting is RPY 0; its requests count from 0 too.
        let msgno = if kind == FrameType::Msg {
            let n = self.msgno[c];
            self.msgno[c] += 1;
            n
        } else {
            0
        };
        let bytes = frame(kind, channel, MsgNo(msgno), self.seqno[c], body);
        self.seqno[c] = self.seqno[c].wrapping_add(body.len() as u32);
        // Errors are the session's verdict on the input; checked below.
        let _ = session.handle_input(&bytes);
    }
}

/// What [`sasl_listener`]'s application answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthPolicy {
    /// User `bob`, password `secret`; everyone else unknown; ANONYMOUS
    /// and EXTERNAL accepted.
    Users,
    /// Everything refused.
    Deny,
    /// Every user unknown.
    NoSuchUser,
    /// Every request left unanswered.
    Silent,
}

impl AuthPolicy {
    fn from_bits(bits: u8) -> Self {
        [Self::Users, Self::Deny, Self::NoSuchUser, Self::Silent][usize::from(bits & 3)]
    }
}

/// The application of [`sasl_listener`] and its invariants.
struct AuthWatch {
    policy: AuthPolicy,
    mechanism: crate::sasl::Mechanism,
    authenticated: bool,
}

impl AuthWatch {
    /// Polls until quiet, answering as the policy says; checks every
    /// success and the output's bound.
    fn settle(&mut self, session: &mut Session) {
        use crate::sasl::{AuthAnswer, AuthNeed, Mechanism};
        for _ in 0..MAX_PUMP_ROUNDS {
            let Some(event) = session.poll_event() else {
                drain_transmit(session);
                assert!(
                    session.queued_output() <= MAX_TLS_OUTPUT,
                    "output piles up: {}",
                    session.queued_output()
                );
                return;
            };
            match event {
                Event::AuthRequested(request) => {
                    let answer = match (self.policy, request.need) {
                        (AuthPolicy::Silent, _) => continue,
                        (AuthPolicy::Deny, _) => AuthAnswer::Deny,
                        (AuthPolicy::NoSuchUser, _) => AuthAnswer::NoSuchUser,
                        (AuthPolicy::Users, need) => match (need, request.authcid.as_deref()) {
                            (AuthNeed::Secret, Some("bob")) => AuthAnswer::Secret("secret".into()),
                            (AuthNeed::Decide, _)
                                if matches!(
                                    request.mechanism,
                                    Mechanism::Anonymous | Mechanism::External
                                ) =>
                            {
                                AuthAnswer::Accept
                            }
                            (AuthNeed::Decide, Some("bob"))
                                if request.password.as_deref() == Some("secret") =>
                            {
                                AuthAnswer::Accept
                            }
                            (AuthNeed::Decide, _) => AuthAnswer::Deny,
                            (AuthNeed::Secret, _) => AuthAnswer::NoSuchUser,
                        },
                    };
                    let r = session.answer_auth(request.channel, answer);
                    usage(session, r, "answer_auth");
                }
                Event::Authenticated(info) => {
                    assert!(!self.authenticated, "authenticated twice");
                    self.authenticated = true;
                    assert_eq!(
                        self.policy,
                        AuthPolicy::Users,
                        "authenticated against a refusal: {info:?}"
                    );
                    assert_eq!(info.mechanism, self.mechanism);
                    match info.mechanism {
                        Mechanism::Anonymous | Mechanism::External | Mechanism::Plain => {}
                        other => panic!("{other} succeeded without the password: {info:?}"),
                    }
                    if info.mechanism == Mechanism::Plain {
                        assert_eq!(info.authcid, "bob");
                    }
                }
                _ => {}
            }
        }
        panic!("polling does not settle");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SASL harness reaches both outcomes: its seeds authenticate
    /// where the credentials and the policy allow it, and only there.
    #[test]
    fn sasl_listener_reaches_success_and_refusal() {
        let record = |kind: u8, bytes: &[u8]| {
            let mut r = vec![kind, bytes.len() as u8];
            r.extend_from_slice(bytes);
            r
        };
        let case = |first: u8, records: &[Vec<u8>]| {
            let mut data = vec![first];
            data.extend(records.concat());
            run_sasl_listener(&data)
        };
        let bob = record(0, b"\0bob\0secret");
        // PLAIN (index 1), piggybacked (8) or as the first MSG.
        assert!(case(0x09, std::slice::from_ref(&bob)));
        assert!(case(0x01, std::slice::from_ref(&bob)));
        assert!(!case(0x09, &[record(0, b"\0bob\0wrong")]));
        // Policies that refuse, or never answer.
        assert!(!case(0x19, std::slice::from_ref(&bob)));
        assert!(!case(0x29, std::slice::from_ref(&bob)));
        assert!(!case(0x39, &[bob]));
        // ANONYMOUS (index 0) takes any trace.
        assert!(case(0x08, &[record(0, b"trace")]));
        // A malformed body, an abort: no success, no panic.
        assert!(!case(0x09, &[record(3, b"<blob>@@</blob>")]));
        assert!(!case(0x0c, &[record(0, b"n,,n=bob,r=abc"), record(2, b"")]));
    }

    #[test]
    fn options_cover_every_chunk_size() {
        let data = [7u8; 100];
        for b in 0..=255u8 {
            let o = Options::from_byte(b);
            let chunks: Vec<_> = o.chunks(&data).collect();
            assert_eq!(chunks.concat(), data);
            assert!(
                chunks
                    .iter()
                    .all(|c| !c.is_empty() && c.len() <= o.max_chunk)
            );
        }
    }

    #[test]
    fn entry_points_accept_trivial_inputs() {
        for data in [
            &b""[..],
            b"\0",
            b"\x08",
            b"RPY\r\n",
            b"\x09RPY 0 0 . 0 0\r\n",
        ] {
            frame_header(data);
            channel_zero_xml(data);
            session_listener(data);
            session_initiator(data);
        }
    }

    #[test]
    fn a_whole_echo_conversation_passes() {
        let greeting = format!("{BEEP_XML}<greeting />\r\n");
        let start = format!(
            "{BEEP_XML}<start number='1'>\r\n   <profile uri='{PROFILE}' />\r\n</start>\r\n"
        );
        let mut data = vec![0x00];
        data.extend(frame(FrameType::Rpy, 0, MsgNo(0), 0, greeting.as_bytes()));
        data.extend(frame(
            FrameType::Msg,
            0,
            MsgNo(0),
            greeting.len() as u32,
            start.as_bytes(),
        ));
        data.extend(frame(FrameType::Msg, 1, MsgNo(0), 0, b"\r\nhello"));
        // Without the preamble (bit 3) the conversation starts channel 1
        // itself; its MSG must then arrive after the application accepted
        // the start, so one octet at a time (bits 0-2 zero). With the
        // preamble, channel 1 is open and the data is the MSG alone. (Large
        // chunks without the preamble would send the MSG on a channel not
        // yet open: a violation, and no MSG delivered.)
        let msg = frame(FrameType::Msg, 1, MsgNo(0), 0, b"\r\nhello");
        let mut cases = vec![data.clone()];
        for b in [0x08, 0x0f, 0x1f, 0x2f, 0x4f, 0x6d, 0xff] {
            let mut case = vec![b];
            case.extend_from_slice(&msg);
            cases.push(case);
        }
        for case in cases {
            let b = case[0];
            session_listener(&case);
            let options = Options::from_byte(b);
            let (delivered, sent) = interactive(Side::Listener, &options, &case[1..]);
            assert_eq!(delivered, 1, "options {b:#x}: the MSG was not delivered");
            // The echo: one RPY to MSG 0 on channel 1, "\r\nhello" in all
            // its frames (small frames split it).
            let echoed: u32 = sent
                .iter()
                .filter(|f| f.0 == FrameType::Rpy && f.1 == 1 && f.2 == MsgNo(0))
                .map(|f| f.3)
                .sum();
            // (In streaming mode the application echoes the raw frame,
            // MIME block included, as a new message's body: 2 more.)
            let expected = if options.streaming { 9 } else { 7 };
            assert_eq!(echoed, expected, "options {b:#x}: {sent:?}");
        }
    }
}
