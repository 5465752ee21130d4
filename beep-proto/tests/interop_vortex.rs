//! Interoperability with LibVortex 1.1: replays of its wire transcripts
//! (`interop/vortex/*.raw.jsonl` at the repository root, copied from the
//! shared interop folder; see `interop/README.md`).
//!
//! Each transcript is replayed twice:
//!
//! * **listener replay**: the initiator's bytes (`C`) go into
//!   [`Session::listener`], which reacts the way LibVortex's regression
//!   listener did (see [`vortex_listener`]); what it sends must be frame for
//!   frame equivalent to the recorded listener side (`S`).
//! * **initiator replay**: [`Session::initiator`] issues the requests
//!   LibVortex's initiator issued, the listener's bytes (`S`) go in, and what
//!   it sends must be byte-identical to the recorded `C` side, channel-0 SEQ
//!   frames aside (see [`assert_initiator_output`]).
//!
//! Every replay is run with the input fed as recorded, one byte at a time,
//! and cut at pseudo-random points; events, output and outcome must be the
//! same each time (the Sans-IO contract of `handle_input`, conformance item 84).
//! Cuts never cross the boundary between a *run* of chunks of one direction
//! and the other direction's next chunk: there the peer was waiting for what
//! we send in reaction, and feeding its next bytes before we reacted would
//! replay something the peer never did (e.g. a SEQ acknowledging octets we
//! have not sent yet).
//!
//! Every replay also checks flow control from the recorded timeline: our
//! frames stay within 4096 payload octets and within the window the peer
//! advertised, and our SEQ frames never acknowledge octets we have not
//! received (RFC 3081 3.1.1, RFC 3081 3.1.4).
//!
//! SEQ frames and octet counts. The recorded SEQ frames acknowledge the
//! other side's octets, so they are only valid for us if we sent as many.
//! Our listener advertises LibVortex's 34 profiles in LibVortex's order: its
//! greeting is then byte-identical (2574 octets, asserted), and so are its
//! plain `<profile uri='...' />` start replies, so LibVortex's `SEQ 0 2680
//! 4096` is valid as recorded. Only where our serialization is shorter (the
//! SASL reply, see [`sasl_plain_listener_rfc3080_2_3_1_2`]) is the fed
//! SEQ rewritten, to the count our listener really sent. On the initiator
//! side no rewrite is needed: LibVortex's listener sends SEQ only on the
//! data channel (seq_large), acknowledging MSG frames of ours that are
//! byte-identical to LibVortex's, and our `<start>`/`<close>` bodies are
//! byte-identical too (asserted by [`assert_initiator_output`]).
//!
//! Test names cite the RFC section they prove; CONFORMANCE.md lists every
//! requirement with its tests.

use std::collections::HashMap;
use std::path::PathBuf;

use beep_proto::frame::{FrameHeader, FrameType, Header, SeqFrame, TRAILER, parse_header};
use beep_proto::reply_code::ReplyCode;
use beep_proto::sasl::{AuthAnswer, AuthInfo, AuthNeed, Mechanism, SaslClient};
use beep_proto::xml::{ChannelZeroMessage, ContentEncoding, Greeting, Profile};
use beep_proto::{
    AnsNo, Config, Event, IncomingMessage, Message, MessageKind, MsgNo, ProtocolError, Session,
    SessionEnd, StartRequest,
};
use bytes::Bytes;

// ---------------------------------------------------------------------------
// Constants taken from the transcripts
// ---------------------------------------------------------------------------

/// The regression profile LibVortex's tests run on (echo, serverName...).
const REGRESSION: &str = "http://iana.org/beep/transient/vortex-regression";
/// The regression profile that answers a MSG with 30 ANS and a NUL.
const ANS_NUL: &str = "http://iana.org/beep/transient/vortex-regression/simple-ans-nul";
const TLS: &str = "http://iana.org/beep/TLS";
const SASL_PLAIN: &str = "http://iana.org/beep/SASL/PLAIN";

/// The profiles LibVortex's regression listener advertises, in its order.
/// Our listener advertises the same list so that its greeting can be
/// compared byte for byte (and so that the initiator's SEQ frames, which
/// count the greeting's octets, stay valid for it).
const VORTEX_PROFILES: [&str; 34] = [
    "http://iana.org/beep/transient/vortex-regression/stats",
    "http://iana.org/beep/transient/vortex-regression/2",
    "http://iana.org/beep/transient/vortex-regression/3",
    "http://iana.org/beep/transient/vortex-regression/simple-ans-nul",
    "http://iana.org/beep/transient/vortex-regression/4",
    "http://iana.org/beep/transient/vortex-regression/5",
    "http://iana.org/beep/transient/vortex-regression/6",
    "http://iana.org/beep/transient/vortex-regression/6bis",
    "http://iana.org/beep/transient/vortex-regression/zero",
    "http://iana.org/beep/transient/vortex-regression/fake-listener",
    "http://iana.org/beep/transient/vortex-regression/block-tls",
    "http://iana.org/beep/transient/vortex-regression/fast-send",
    "http://iana.org/beep/transient/vortex-regression/deny_supported",
    "http://iana.org/beep/transient/vortex-regression/close-after-large-reply",
    "http://iana.org/beep/transient/vortex-regression/mime",
    "http://iana.org/beep/transient/vortex-regression/ordered-delivery",
    "http://iana.org/beep/transient/vortex-regression/suddently-close",
    "http://iana.org/beep/transient/vortex-regression/mixing-replies",
    "http://iana.org/beep/transient/vortex-regression/ans-nul-reply-close",
    "http://iana.org/beep/transient/vortex-regression/close-after-ans-nul-replies",
    "http://iana.org/beep/transient/vortex-regression/nothing",
    "http://iana.org/beep/transient/vortex-regression/seqno-exceeded",
    "urn:aspl.es:beep:profiles:ALIVE",
    "http://iana.org/beep/TLS",
    "http://iana.org/beep/SASL/ANONYMOUS",
    "http://iana.org/beep/SASL/EXTERNAL",
    "http://iana.org/beep/SASL/PLAIN",
    "http://iana.org/beep/SASL/CRAM-MD5",
    "http://iana.org/beep/SASL/DIGEST-MD5",
    "http://iana.org/beep/TUNNEL",
    "http://iana.org/beep/xmlrpc",
    "http://iana.org/beep/transient/close-in-transit",
    "http://iana.org/beep/transient/vortex-regression/ans-nul-wait",
    "http://iana.org/beep/transient/vortex-regression",
];

/// Octets of LibVortex's listener greeting on channel 0 (`RPY 0 0 . 0 2574`).
const VORTEX_GREETING_LEN: u32 = 2574;

/// The MIME header block of every channel-0 message, ours and LibVortex's.
const BEEP_XML_HEADERS: &str = "Content-Type: application/beep+xml\r\n\r\n";

/// How many random cuttings of each replay to try.
const RANDOM_SPLITS: u64 = 12;

// ---------------------------------------------------------------------------
// Transcripts
// ---------------------------------------------------------------------------

/// Which side wrote a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// The initiator (client), LibVortex's `C`.
    C,
    /// The listener (server), LibVortex's `S`.
    S,
}

/// One `write` as captured on the wire.
#[derive(Debug, Clone)]
struct Chunk {
    dir: Dir,
    bytes: Vec<u8>,
}

/// A parsed `*.raw.jsonl` file.
#[derive(Debug, Clone)]
struct Transcript {
    name: String,
    chunks: Vec<Chunk>,
    /// Directions that ended with EOF/FIN (`"hex": null`).
    eof: Vec<Dir>,
}

/// Where the transcripts live: `$BEEP_VORTEX_TRANSCRIPTS`, or
/// the repository's `interop/vortex`.
fn transcript_dir() -> PathBuf {
    std::env::var_os("BEEP_VORTEX_TRANSCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/vortex"))
}

impl Transcript {
    /// Loads `<name>.raw.jsonl`: one `{"dir", "t", "hex"}` object per line,
    /// `hex` null marking the direction's EOF.
    fn load(name: &str) -> Self {
        let path = transcript_dir().join(format!("{name}.raw.jsonl"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read transcript {}: {e}", path.display()));
        let mut chunks = Vec::new();
        let mut eof = Vec::new();
        let mut last_t = 0.0;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}.raw.jsonl:{}: {e}", n + 1));
            let dir = match value["dir"].as_str() {
                Some("C") => Dir::C,
                Some("S") => Dir::S,
                other => panic!("{name}.raw.jsonl:{}: bad dir {other:?}", n + 1),
            };
            let t = value["t"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}.raw.jsonl:{}: no time", n + 1));
            assert!(t >= last_t, "{name}.raw.jsonl:{}: time goes back", n + 1);
            last_t = t;
            match &value["hex"] {
                serde_json::Value::Null => eof.push(dir),
                serde_json::Value::String(h) => {
                    assert!(!eof.contains(&dir), "{name}: data after EOF");
                    let bytes = hex::decode(h)
                        .unwrap_or_else(|e| panic!("{name}.raw.jsonl:{}: {e}", n + 1));
                    chunks.push(Chunk { dir, bytes });
                }
                other => panic!("{name}.raw.jsonl:{}: bad hex {other:?}", n + 1),
            }
        }
        Transcript {
            name: name.to_owned(),
            chunks,
            eof,
        }
    }

    /// Drops everything from the first chunk that is a TLS record on: the
    /// records are encrypted with LibVortex's keys, which no replay has.
    fn until_tls(mut self) -> Self {
        let is_tls = |b: &[u8]| b.len() >= 5 && (0x14..=0x17).contains(&b[0]) && b[1] == 0x03;
        let cut = self
            .chunks
            .iter()
            .position(|c| is_tls(&c.bytes))
            .unwrap_or_else(|| panic!("{}: no TLS record", self.name));
        self.chunks.truncate(cut);
        self.eof.clear();
        self
    }

    /// All bytes one side wrote, in order.
    fn stream(&self, dir: Dir) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|c| c.dir == dir)
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    /// The chunks of `dir` grouped in runs: maximal sequences not
    /// interrupted by a chunk of the other side. Within a run the writer did
    /// not wait for us; between runs it may have.
    fn runs(&self, dir: Dir) -> Vec<Vec<&[u8]>> {
        let mut runs: Vec<Vec<&[u8]>> = Vec::new();
        let mut previous = None;
        for chunk in &self.chunks {
            if chunk.dir == dir {
                if previous != Some(dir) {
                    runs.push(Vec::new());
                }
                runs.last_mut().unwrap().push(&chunk.bytes);
            }
            previous = Some(chunk.dir);
        }
        runs
    }

    /// Replaces the one `SEQ <channel> <from> ` line written by `dir` with
    /// ackno `to`. Used where our octet counts legitimately differ from
    /// LibVortex's and its SEQ would otherwise acknowledge octets we never
    /// sent (see the callers for why each rewrite is needed).
    fn rewrite_seq_ackno(&mut self, dir: Dir, channel: u32, from: u32, to: u32) {
        let old = format!("SEQ {channel} {from} ").into_bytes();
        let new = format!("SEQ {channel} {to} ").into_bytes();
        let mut found = 0;
        for chunk in self.chunks.iter_mut().filter(|c| c.dir == dir) {
            while let Some(at) = find(&chunk.bytes, &old) {
                chunk.bytes.splice(at..at + old.len(), new.iter().copied());
                found += 1;
            }
        }
        assert_eq!(
            found, 1,
            "{}: SEQ {channel} {from} occurs {found} times",
            self.name
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Splitting input
// ---------------------------------------------------------------------------

/// How to cut one side's bytes into `handle_input` calls.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// As the chunks were captured.
    Recorded,
    /// One byte per call.
    Bytewise,
    /// Pseudo-random cuts (seeded), which also join chunks of one run.
    Random(u64),
}

/// A small deterministic PRNG (xorshift64*): no dependency, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A piece length: mostly tiny (cuts inside header lines and trailers),
    /// sometimes large (several frames in one call).
    fn piece_len(&mut self) -> usize {
        let max = match self.next() % 4 {
            0 => 3,
            1 => 20,
            2 => 300,
            _ => 6000,
        };
        1 + (self.next() % max) as usize
    }
}

/// The `handle_input` calls for one side of `t`; no piece spans two runs.
fn pieces(t: &Transcript, dir: Dir, split: Split) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rng = Rng::new(match split {
        Split::Random(seed) => seed,
        _ => 0,
    });
    for run in t.runs(dir) {
        match split {
            Split::Recorded => out.extend(run.iter().map(|c| c.to_vec())),
            Split::Bytewise => out.extend(run.concat().into_iter().map(|b| vec![b])),
            Split::Random(_) => {
                let all = run.concat();
                let mut at = 0;
                while at < all.len() {
                    let n = rng.piece_len().min(all.len() - at);
                    out.push(all[at..at + n].to_vec());
                    at += n;
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Replaying
// ---------------------------------------------------------------------------

/// How the application reacts to each event (LibVortex's behaviour).
type React<'a> = &'a dyn Fn(&mut Session, &Event);

/// One step of a replay's timeline.
#[derive(Debug, Clone)]
enum Step {
    /// Bytes fed to `handle_input`.
    In(Vec<u8>),
    /// Bytes returned by `poll_transmit`.
    Out(Vec<u8>),
}

/// What a replay produced; must not depend on how the input was cut.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    events: Vec<Event>,
    sent: Vec<u8>,
    error: Option<ProtocolError>,
    ended: bool,
    unparsed: Vec<u8>,
}

/// Feeds `input` piece by piece; after every call, polls events (reacting
/// to each) and transmits until the session is idle, as a driver would.
fn replay(mut session: Session, input: &[Vec<u8>], react: React) -> (Outcome, Vec<Step>) {
    let mut outcome = Outcome {
        events: Vec::new(),
        sent: Vec::new(),
        error: None,
        ended: false,
        unparsed: Vec::new(),
    };
    let mut log = Vec::new();
    settle(&mut session, react, &mut outcome, &mut log);
    for piece in input {
        log.push(Step::In(piece.clone()));
        let result = session.handle_input(piece);
        settle(&mut session, react, &mut outcome, &mut log);
        if let Err(e) = result {
            outcome.error = Some(e);
            break;
        }
    }
    outcome.ended = session.is_ended();
    outcome.unparsed = session.unparsed_input().to_vec();
    (outcome, log)
}

fn settle(session: &mut Session, react: React, outcome: &mut Outcome, log: &mut Vec<Step>) {
    loop {
        let mut busy = false;
        while let Some(event) = session.poll_event() {
            react(session, &event);
            outcome.events.push(event);
            busy = true;
        }
        while let Some(bytes) = session.poll_transmit() {
            outcome.sent.extend_from_slice(&bytes);
            log.push(Step::Out(bytes.to_vec()));
            busy = true;
        }
        if !busy {
            return;
        }
    }
}

/// Replays `dir`'s side of `t` into fresh sessions made by `make`, cut in
/// every [`Split`]; asserts all cuttings give the same [`Outcome`] and that
/// flow control holds on every timeline. Returns the recorded-chunk run.
fn replay_all_splits(
    t: &Transcript,
    dir: Dir,
    make: &dyn Fn() -> Session,
    react: React,
) -> (Outcome, Vec<Step>) {
    let reference = replay(make(), &pieces(t, dir, Split::Recorded), react);
    check_flow(&t.name, &reference.1);
    let splits = [Split::Bytewise]
        .into_iter()
        .chain((1..=RANDOM_SPLITS).map(Split::Random));
    for split in splits {
        let (outcome, log) = replay(make(), &pieces(t, dir, split), react);
        let what = format!("{} ({dir:?} side fed {split:?})", t.name);
        assert_eq!(outcome.error, reference.0.error, "{what}: error differs");
        assert_eq!(outcome.events, reference.0.events, "{what}: events differ");
        assert!(
            outcome.sent == reference.0.sent,
            "{what}: transmitted bytes differ from the recorded-chunk replay:\n{}\nvs\n{}",
            summary(&parse_stream(&outcome.sent)),
            summary(&parse_stream(&reference.0.sent)),
        );
        assert_eq!(outcome, reference.0, "{what}: outcome differs");
        check_flow(&what, &log);
    }
    reference
}

// ---------------------------------------------------------------------------
// Frames on the wire
// ---------------------------------------------------------------------------

/// One frame of a byte stream, with the exact bytes it took.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    Seq(SeqFrame),
    Data {
        header: FrameHeader,
        payload: Vec<u8>,
    },
}

/// Parses the complete frames at the start of `buf` and removes them; a
/// partial frame stays. Panics on anything poorly formed: the streams
/// parsed here (ours and LibVortex's) must be valid.
fn drain_frames(buf: &mut Vec<u8>) -> Vec<(Wire, Vec<u8>)> {
    let mut frames = Vec::new();
    loop {
        let Some((header, used)) = parse_header(buf, 128)
            .unwrap_or_else(|e| panic!("bad frame header {e}: {:?}", lossy_prefix(buf)))
        else {
            return frames;
        };
        let (wire, len) = match header {
            Header::Seq(seq) => (Wire::Seq(seq), used),
            Header::Frame(header) => {
                let end = used + header.size as usize;
                if buf.len() < end + TRAILER.len() {
                    return frames;
                }
                assert_eq!(&buf[end..end + TRAILER.len()], TRAILER, "missing END");
                let payload = buf[used..end].to_vec();
                (Wire::Data { header, payload }, end + TRAILER.len())
            }
        };
        let raw: Vec<u8> = buf.drain(..len).collect();
        frames.push((wire, raw));
    }
}

/// Parses a whole stream, which must end on a frame boundary.
fn parse_stream(bytes: &[u8]) -> Vec<(Wire, Vec<u8>)> {
    let mut buf = bytes.to_vec();
    let frames = drain_frames(&mut buf);
    assert!(
        buf.is_empty(),
        "stream ends inside a frame: {:?}",
        lossy_prefix(&buf)
    );
    frames
}

fn lossy_prefix(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned()
}

/// The header lines of a stream, for readable assertion messages.
fn summary(frames: &[(Wire, Vec<u8>)]) -> String {
    frames
        .iter()
        .map(|(_, raw)| {
            let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
            String::from_utf8_lossy(line).trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Flow control on a replay's timeline (RFC 3081 3.1.1, RFC 3081 3.1.4): each of our data
/// frames carries at most 4096 octets (LibVortex's frame size, and our
/// default) and ends within the window the peer had advertised by then
/// (4096 from seqno 0 until its first SEQ); each of our SEQ frames
/// acknowledges no more than we had received on that channel.
fn check_flow(what: &str, log: &[Step]) {
    let mut inbuf = Vec::new();
    let mut outbuf = Vec::new();
    // Per channel: one past the last octet the peer lets us send.
    let mut limit: HashMap<u32, u32> = HashMap::new();
    // Per channel: octets received from the peer.
    let mut received: HashMap<u32, u32> = HashMap::new();
    for step in log {
        match step {
            Step::In(bytes) => {
                inbuf.extend_from_slice(bytes);
                for (wire, _) in drain_frames(&mut inbuf) {
                    match wire {
                        Wire::Seq(seq) => {
                            limit.insert(seq.channel, seq.ackno.wrapping_add(seq.window));
                        }
                        Wire::Data { header, .. } => {
                            received.insert(header.channel, header.seqno.wrapping_add(header.size));
                        }
                    }
                }
            }
            Step::Out(bytes) => {
                outbuf.extend_from_slice(bytes);
                for (wire, raw) in drain_frames(&mut outbuf) {
                    match wire {
                        Wire::Seq(seq) => {
                            let got = received.get(&seq.channel).copied().unwrap_or(0);
                            assert!(
                                seq.ackno <= got,
                                "{what}: our {seq:?} acknowledges more than the {got} octets received"
                            );
                        }
                        Wire::Data { header, .. } => {
                            let end = header.seqno as u64 + header.size as u64;
                            let allowed = limit.get(&header.channel).copied().unwrap_or(4096);
                            assert!(
                                header.size <= 4096,
                                "{what}: frame of {} octets: {}",
                                header.size,
                                summary(&[(wire.clone(), raw.clone())])
                            );
                            assert!(
                                end <= allowed as u64,
                                "{what}: {} goes past the peer's window edge {allowed}",
                                summary(&[(wire.clone(), raw.clone())])
                            );
                        }
                    }
                }
                assert!(
                    outbuf.is_empty(),
                    "{what}: poll_transmit returned part of a frame"
                );
            }
        }
    }
}

/// Asserts our listener's output is equivalent to LibVortex's listener
/// side, frame by frame: same keyword, channel, msgno, continuation and
/// ansno everywhere; on channel 0 the same MIME type and the same element
/// (our XML layout differs: `<ok />` CRLF, no space before `>`, so sizes
/// and later channel-0 seqnos differ); on data channels the same seqno and
/// payload octets, except that our NUL is empty where LibVortex's carries
/// an empty MIME block (RFC 3080 2.2.1.1; README).
fn assert_listener_equivalent(name: &str, ours: &[u8], theirs: &[u8]) {
    let (ours, theirs) = (parse_stream(ours), parse_stream(theirs));
    let context = || {
        format!(
            "{name}\n ours:   {}\n theirs: {}",
            summary(&ours),
            summary(&theirs)
        )
    };
    assert_eq!(ours.len(), theirs.len(), "{}", context());
    for ((a, _), (b, _)) in ours.iter().zip(&theirs) {
        match (a, b) {
            (Wire::Seq(a), Wire::Seq(b)) => assert_eq!(a, b, "{}", context()),
            (
                Wire::Data {
                    header: ha,
                    payload: pa,
                },
                Wire::Data {
                    header: hb,
                    payload: pb,
                },
            ) => {
                let shape = |h: &FrameHeader| (h.frame_type, h.channel, h.msgno, h.more, h.ansno);
                assert_eq!(shape(ha), shape(hb), "{}", context());
                if ha.channel == 0 {
                    let (ma, mb) = (entity(pa), entity(pb));
                    assert_eq!(ma.content_type(), mb.content_type(), "{}", context());
                    assert_eq!(
                        ChannelZeroMessage::parse(ma.body()),
                        ChannelZeroMessage::parse(mb.body()),
                        "{}",
                        context()
                    );
                    continue;
                }
                assert_eq!(ha.seqno, hb.seqno, "{}", context());
                if ha.frame_type == FrameType::Nul {
                    assert!(pa.is_empty(), "our NUL must be empty: {}", context());
                    assert_eq!(pb, b"\r\n", "{}", context());
                } else {
                    assert!(pa == pb, "payloads differ: {}", context());
                }
            }
            _ => panic!("frame kinds differ: {}", context()),
        }
    }
}

/// Asserts our initiator's output is byte-identical to LibVortex's
/// initiator side once channel-0 SEQ frames are set aside, and returns
/// ours and theirs.
///
/// Channel-0 SEQ frames differ legitimately: we acknowledge LibVortex's
/// 2574-octet greeting as soon as it is consumed (more than half the
/// window, RFC 3081 3.1), LibVortex acknowledges it later, after the start
/// reply (`SEQ 0 2680 4096`).
fn assert_initiator_output(
    name: &str,
    ours: &[u8],
    theirs: &[u8],
) -> (Vec<SeqFrame>, Vec<SeqFrame>) {
    fn split(bytes: &[u8]) -> (Vec<(Wire, Vec<u8>)>, Vec<SeqFrame>) {
        let (mut rest, mut seq0) = (Vec::new(), Vec::new());
        for (wire, raw) in parse_stream(bytes) {
            match wire {
                Wire::Seq(seq) if seq.channel == 0 => seq0.push(seq),
                _ => rest.push((wire, raw)),
            }
        }
        (rest, seq0)
    }
    let (ours, our_seq0) = split(ours);
    let (theirs, their_seq0) = split(theirs);
    let context = || {
        format!(
            "{name}\n ours:   {}\n theirs: {}",
            summary(&ours),
            summary(&theirs)
        )
    };
    assert_eq!(ours.len(), theirs.len(), "{}", context());
    for ((_, a), (_, b)) in ours.iter().zip(&theirs) {
        assert!(
            a == b,
            "{}\n frame differs:\n  ours:   {:?}\n  theirs: {:?}",
            context(),
            lossy_prefix(a),
            lossy_prefix(b)
        );
    }
    (our_seq0, their_seq0)
}

fn entity(payload: &[u8]) -> Message {
    Message::from_entity(Bytes::copy_from_slice(payload))
}

/// The payload octets of a channel-0 message as we serialize it.
fn our_channel0_len(message: &ChannelZeroMessage) -> u32 {
    (BEEP_XML_HEADERS.len() + message.to_vec().len()) as u32
}

// ---------------------------------------------------------------------------
// Expected events
// ---------------------------------------------------------------------------

fn greeting(profiles: &[&str]) -> Event {
    Event::Greeting(Greeting {
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        features: None,
        localize: None,
    })
}

fn start_requested(channel: u32, server_name: Option<&str>, profile: Profile) -> Event {
    Event::StartRequested(StartRequest {
        channel,
        server_name: server_name.map(str::to_owned),
        profiles: vec![profile],
    })
}

fn close_requested(channel: u32) -> Event {
    Event::CloseRequested {
        channel,
        code: ReplyCode::SUCCESS,
        lang: None,
        text: String::new(),
    }
}

/// A message event whose payload was an empty MIME block and `body`;
/// `credit` is the size of its last frame (earlier frames are credited as
/// they arrive).
fn message(channel: u32, msgno: u32, kind: MessageKind, body: &[u8], credit: u32) -> Event {
    Event::Message(IncomingMessage {
        channel,
        msgno: MsgNo(msgno),
        kind,
        message: Message::new(body.to_vec()),
        credit,
    })
}

/// LibVortex's NUL: size 2, an empty MIME block; no body.
fn nul(channel: u32, msgno: u32) -> Event {
    Event::Message(IncomingMessage {
        channel,
        msgno: MsgNo(msgno),
        kind: MessageKind::Nul,
        message: Message::default(),
        credit: 2,
    })
}

/// The 10,000-octet body of seq_large: the alphabet, repeated.
fn large_body() -> Vec<u8> {
    (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

// ---------------------------------------------------------------------------
// LibVortex's behaviour, as applications reacting to events
// ---------------------------------------------------------------------------

/// A listener configured like LibVortex's regression listener.
fn vortex_listener_session() -> Session {
    Session::listener(Config {
        profiles: VORTEX_PROFILES.iter().map(|p| p.to_string()).collect(),
        ..fixed_windows()
    })
}

/// LibVortex's regression listener: accepts every start with the first
/// profile offered (TLS answers `<proceed />`; SASL runs in the session,
/// and every authentication request is accepted, as LibVortex's
/// regression listener accepts bob);
/// the regression profile echoes, except `GET serverName` which answers
/// the session's serverName; simple-ans-nul answers with 30 copies as ANS
/// and a NUL; every close is accepted.
fn vortex_listener(session: &mut Session, event: &Event) {
    match event {
        Event::StartRequested(req) => {
            let uri = &req.profiles[0].uri;
            let reply = match uri.as_str() {
                TLS => Profile::new(TLS).with_content("<proceed />"),
                other => Profile::new(other),
            };
            session.accept_start(req.channel, reply).unwrap();
        }
        Event::Message(m) if m.kind == MessageKind::Msg => {
            let profile = session.channel_profile(m.channel).unwrap().to_owned();
            if profile == ANS_NUL {
                for _ in 0..30 {
                    session
                        .send_ans(m.channel, m.msgno, m.message.clone())
                        .unwrap();
                }
                session.send_nul(m.channel, m.msgno).unwrap();
            } else if &m.message.body()[..] == b"GET serverName" {
                let name = session.server_name().unwrap_or_default().to_owned();
                session
                    .send_rpy(m.channel, m.msgno, Message::new(name))
                    .unwrap();
            } else {
                session
                    .send_rpy(m.channel, m.msgno, m.message.clone())
                    .unwrap();
            }
        }
        Event::CloseRequested { channel, .. } => session.accept_close(*channel).unwrap(),
        Event::TlsRequested(req) => session
            .accept_tls(req.channel, vortex_tls_server())
            .unwrap(),
        Event::AuthRequested(req) => session
            .answer_auth(req.channel, AuthAnswer::Accept)
            .unwrap(),
        _ => {}
    }
}

/// The listener's certificate in the TLS replays (generated once per run:
/// no private key is committed).
fn vortex_tls_server() -> &'static beep_proto::tls::TlsServer {
    static SERVER: std::sync::OnceLock<beep_proto::tls::TlsServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key = cert.signing_key.serialize_pem();
        beep_proto::tls::TlsServer::from_pem(cert.cert.pem().as_bytes(), key.as_bytes()).unwrap()
    })
}

/// An initiator that has asked (as LibVortex's does, once the greeting is
/// in) for channel 3 with `profile` and serverName `server_name`.
fn initiator_session(profile: Profile, server_name: &str) -> Session {
    let mut session = Session::initiator(fixed_windows());
    let channel = session
        .open_channel_number(3, vec![profile], Some(server_name.to_owned()))
        .unwrap();
    assert_eq!(channel, 3);
    session
}

/// LibVortex's client in the channel-3 scenarios: once channel 3 is open,
/// sends `messages` one at a time, each after the complete reply to the
/// previous one (RPY, or NUL ending ANS), then closes channel 3, then the
/// session.
fn sequential_client(messages: Vec<Vec<u8>>) -> impl Fn(&mut Session, &Event) {
    move |session, event| {
        let next = match event {
            Event::ChannelOpened { channel: 3, .. } => 0,
            Event::Message(m)
                if m.channel == 3 && matches!(m.kind, MessageKind::Rpy | MessageKind::Nul) =>
            {
                m.msgno.0 as usize + 1
            }
            Event::ChannelClosed { channel: 3 } => {
                session.close_session(ReplyCode::SUCCESS, "").unwrap();
                return;
            }
            _ => return,
        };
        match messages.get(next) {
            Some(body) => {
                let msgno = session.send_msg(3, Message::new(body.clone())).unwrap();
                assert_eq!(msgno.0 as usize, next);
            }
            None => session.close_channel(3, ReplyCode::SUCCESS, "").unwrap(),
        }
    }
}

// ---------------------------------------------------------------------------
// Shared assertions
// ---------------------------------------------------------------------------

/// The listener replay must end cleanly: no error, released, nothing left.
fn assert_clean_end(name: &str, outcome: &Outcome, released: bool) {
    assert_eq!(outcome.error, None, "{name}: protocol error");
    assert_eq!(outcome.ended, released, "{name}: session ended?");
    assert!(outcome.unparsed.is_empty(), "{name}: input left unparsed");
}

/// Our listener's greeting is byte-identical to LibVortex's: same profiles
/// in the same order, same layout (RFC 3080 2.3.1.1, conformance item 34).
fn assert_same_greeting(t: &Transcript, ours: &[u8]) {
    let theirs = &t.chunks.iter().find(|c| c.dir == Dir::S).unwrap().bytes;
    assert_eq!(theirs.len(), 2597, "{}: LibVortex's greeting frame", t.name);
    assert!(
        ours.starts_with(theirs),
        "{}: our greeting differs from LibVortex's:\n{}",
        t.name,
        lossy_prefix(ours)
    );
}

/// Runs the listener replay of `t` and checks events, outcome and output.
fn listener_case(t: &Transcript, expected: &[Event], released: bool) -> Outcome {
    let (outcome, _) = replay_all_splits(t, Dir::C, &vortex_listener_session, &vortex_listener);
    assert_clean_end(&t.name, &outcome, released);
    assert_eq!(outcome.events, expected, "{}: listener events", t.name);
    assert_same_greeting(t, &outcome.sent);
    assert_listener_equivalent(&t.name, &outcome.sent, &t.stream(Dir::S));
    outcome
}

/// Runs the initiator replay of `t` and checks events, outcome and output;
/// returns our channel-0 SEQ frames.
fn initiator_case(
    t: &Transcript,
    make: &dyn Fn() -> Session,
    react: React,
    expected: &[Event],
    released: bool,
) -> (Outcome, Vec<SeqFrame>) {
    let (outcome, _) = replay_all_splits(t, Dir::S, make, react);
    assert_clean_end(&t.name, &outcome, released);
    assert_eq!(outcome.events, expected, "{}: initiator events", t.name);
    let (ours, theirs) = assert_initiator_output(&t.name, &outcome.sent, &t.stream(Dir::C));
    // LibVortex sends at most one channel-0 SEQ, later than ours: after
    // the first start reply, acknowledging the greeting and that reply
    // (none at all in greeting.txt and before TLS).
    assert!(
        theirs.len() <= 1
            && theirs
                .iter()
                .all(|s| s.ackno > VORTEX_GREETING_LEN && s.window == 4096),
        "{}: LibVortex's channel-0 SEQ frames {theirs:?}",
        t.name
    );
    (outcome, ours)
}

/// Our initiator's only channel-0 SEQ: LibVortex's greeting acknowledged
/// once consumed, since it fills more than half of the 4096 window
/// (RFC 3081 3.1).
fn expect_greeting_ack(name: &str, seq0: &[SeqFrame]) {
    assert_eq!(
        seq0,
        [SeqFrame {
            channel: 0,
            ackno: VORTEX_GREETING_LEN,
            window: 4096
        }],
        "{name}: our channel-0 SEQ frames"
    );
}

// ---------------------------------------------------------------------------
// greeting.txt: greetings, then release
// ---------------------------------------------------------------------------

/// RFC 3080 2.3.1.1, conformance item 34, RFC 3080 2.4, RFC 3081 2: LibVortex's empty `<greeting />`, then
/// `<close number='0'>`; we release with `<ok />`.
#[test]
fn greeting_listener_rfc3080_2_3_1_1() {
    let t = Transcript::load("greeting");
    let expected = [
        greeting(&[]),
        close_requested(0),
        Event::SessionEnded(SessionEnd::Released),
    ];
    listener_case(&t, &expected, true);
}

/// RFC 3080 2.3.1.1, conformance item 34, RFC 3080 2.4, conformance item 67: all 34 profiles of LibVortex's greeting, and
/// its `<ok />` without CRLF before END releases the session.
#[test]
fn greeting_initiator_rfc3080_2_3_1_1() {
    let t = Transcript::load("greeting");
    let react = |s: &mut Session, e: &Event| {
        if matches!(e, Event::Greeting(_)) {
            s.close_session(ReplyCode::SUCCESS, "").unwrap();
        }
    };
    let make = || Session::initiator(fixed_windows());
    let expected = [
        greeting(&VORTEX_PROFILES),
        Event::SessionEnded(SessionEnd::Released),
    ];
    let (_, seq0) = initiator_case(&t, &make, &react, &expected, true);
    expect_greeting_ack(&t.name, &seq0);
}

// ---------------------------------------------------------------------------
// start.txt: start channel 3, close it, release
// ---------------------------------------------------------------------------

/// RFC 3080 2.3.1.2, RFC 3080 2.3.1.3: LibVortex starts channel 3 (odd, but
/// not channel 1) with serverName, then closes it; its `SEQ 0 2680 4096`
/// acknowledges exactly our greeting and start reply, which have
/// LibVortex's length.
#[test]
fn start_listener_rfc3080_2_3_1_2() {
    let t = Transcript::load("start");
    let expected = [
        greeting(&[]),
        start_requested(3, Some("127.0.0.1"), Profile::new(REGRESSION)),
        close_requested(3),
        Event::ChannelClosed { channel: 3 },
        close_requested(0),
        Event::SessionEnded(SessionEnd::Released),
    ];
    listener_case(&t, &expected, true);
}

/// RFC 3080 2.3.1.2, RFC 3080 2.3.1.3: our `<start number='3' serverName=...>` and
/// `<close>` are byte-identical to LibVortex's.
#[test]
fn start_initiator_rfc3080_2_3_1_2() {
    let t = Transcript::load("start");
    let make = || initiator_session(Profile::new(REGRESSION), "127.0.0.1");
    let react = sequential_client(vec![]);
    let expected = [
        greeting(&VORTEX_PROFILES),
        Event::ChannelOpened {
            channel: 3,
            profile: Profile::new(REGRESSION),
        },
        Event::ChannelClosed { channel: 3 },
        Event::SessionEnded(SessionEnd::Released),
    ];
    let (_, seq0) = initiator_case(&t, &make, &react, &expected, true);
    expect_greeting_ack(&t.name, &seq0);
}

// ---------------------------------------------------------------------------
// start_servername.txt: serverName and base64 piggyback
// ---------------------------------------------------------------------------

/// The base64 piggyback LibVortex sends in start_servername.
const PIGGYBACK: &[u8] = b"hey dude, this is base64";

/// RFC 3080 2.3.1.2: `encoding='base64'` content in CDATA is decoded; the
/// serverName binds the session and `GET serverName` answers it.
#[test]
fn start_servername_listener_rfc3080_2_3_1_2() {
    let t = Transcript::load("start_servername");
    let offered = Profile {
        uri: REGRESSION.into(),
        content: Some(Bytes::from_static(PIGGYBACK)),
        encoding: ContentEncoding::Base64,
    };
    let expected = [
        greeting(&[]),
        start_requested(3, Some("beep.example.test"), offered),
        message(3, 0, MessageKind::Msg, b"GET serverName", 16),
        close_requested(3),
        Event::ChannelClosed { channel: 3 },
        close_requested(0),
        Event::SessionEnded(SessionEnd::Released),
    ];
    listener_case(&t, &expected, true);
}

/// RFC 3080 2.3.1.2: our base64 piggyback is written exactly as LibVortex
/// writes it (`encoding='base64'><![CDATA[...]]>`).
#[test]
fn start_servername_initiator_rfc3080_2_3_1_2() {
    let t = Transcript::load("start_servername");
    let make = || {
        let offered = Profile {
            uri: REGRESSION.into(),
            content: Some(Bytes::from_static(PIGGYBACK)),
            encoding: ContentEncoding::Base64,
        };
        initiator_session(offered, "beep.example.test")
    };
    let react = sequential_client(vec![b"GET serverName".to_vec()]);
    let expected = [
        greeting(&VORTEX_PROFILES),
        Event::ChannelOpened {
            channel: 3,
            profile: Profile::new(REGRESSION),
        },
        message(3, 0, MessageKind::Rpy, b"beep.example.test", 19),
        Event::ChannelClosed { channel: 3 },
        Event::SessionEnded(SessionEnd::Released),
    ];
    let (_, seq0) = initiator_case(&t, &make, &react, &expected, true);
    expect_greeting_ack(&t.name, &seq0);
}

// ---------------------------------------------------------------------------
// echo.txt: three MSG/RPY
// ---------------------------------------------------------------------------

const HELLO: &[u8] = b"hello BEEP world";

/// RFC 3080 2.2, RFC 3080 2.2.1.1, RFC 3080 2.2.1.2, RFC 3080 2.6: data messages with an empty MIME block
/// (size 18 for 16 octets of body); our RPY frames are byte-identical to
/// LibVortex's, seqnos included.
#[test]
fn echo_listener_rfc3080_2_2() {
    let t = Transcript::load("echo");
    let expected = [
        greeting(&[]),
        start_requested(3, Some("127.0.0.1"), Profile::new(REGRESSION)),
        message(3, 0, MessageKind::Msg, HELLO, 18),
        message(3, 1, MessageKind::Msg, HELLO, 18),
        message(3, 2, MessageKind::Msg, HELLO, 18),
        close_requested(3),
        Event::ChannelClosed { channel: 3 },
        close_requested(0),
        Event::SessionEnded(SessionEnd::Released),
    ];
    listener_case(&t, &expected, true);
}

/// RFC 3080 2.2, RFC 3080 2.2.1.1, RFC 3080 2.2.1.2: our MSG frames (empty MIME block, msgno 0..2,
/// seqno 0/18/36) are byte-identical to LibVortex's.
#[test]
fn echo_initiator_rfc3080_2_2() {
    let t = Transcript::load("echo");
    let make = || initiator_session(Profile::new(REGRESSION), "127.0.0.1");
    let react = sequential_client(vec![HELLO.to_vec(); 3]);
    let expected = [
        greeting(&VORTEX_PROFILES),
        Event::ChannelOpened {
            channel: 3,
            profile: Profile::new(REGRESSION),
        },
        message(3, 0, MessageKind::Rpy, HELLO, 18),
        message(3, 1, MessageKind::Rpy, HELLO, 18),
        message(3, 2, MessageKind::Rpy, HELLO, 18),
        Event::ChannelClosed { channel: 3 },
        Event::SessionEnded(SessionEnd::Released),
    ];
    let (_, seq0) = initiator_case(&t, &make, &react, &expected, true);
    expect_greeting_ack(&t.name, &seq0);
}

// ---------------------------------------------------------------------------
// ans_nul.txt: one MSG, 30 ANS, NUL
// ---------------------------------------------------------------------------

const ANS_PLEASE: &[u8] = b"ans please";

/// RFC 3080 2.2.1.1, RFC 3080 2.1.1: we answer with 30 ANS (ansno 0..29, frames
/// identical to LibVortex's) and an empty NUL, where LibVortex's NUL has
/// size 2 (equivalence allows exactly that difference).
#[test]
fn ans_nul_listener_rfc3080_2_2_1_1() {
    let t = Transcript::load("ans_nul");
    let expected = [
        greeting(&[]),
        start_requested(3, Some("127.0.0.1"), Profile::new(ANS_NUL)),
        message(3, 0, MessageKind::Msg, ANS_PLEASE, 12),
        close_requested(3),
        Event::ChannelClosed { channel: 3 },
        close_requested(0),
        Event::SessionEnded(SessionEnd::Released),
    ];
    listener_case(&t, &expected, true);
}

/// RFC 3080 2.2.1.1, RFC 3080 2.1.1: 30 ANS events in ansno order, then LibVortex's
/// NUL with size 2 and an empty MIME block is accepted (README) and ends
/// the reply.
#[test]
fn ans_nul_initiator_rfc3080_2_2_1_1() {
    let t = Transcript::load("ans_nul");
    let make = || initiator_session(Profile::new(ANS_NUL), "127.0.0.1");
    let react = sequential_client(vec![ANS_PLEASE.to_vec()]);
    let mut expected = vec![
        greeting(&VORTEX_PROFILES),
        Event::ChannelOpened {
            channel: 3,
            profile: Profile::new(ANS_NUL),
        },
    ];
    expected.extend(
        (0..30)
            .map(AnsNo)
            .map(|ansno| message(3, 0, MessageKind::Ans { ansno }, ANS_PLEASE, 12)),
    );
    expected.extend([
        nul(3, 0),
        Event::ChannelClosed { channel: 3 },
        Event::SessionEnded(SessionEnd::Released),
    ]);
    let (_, seq0) = initiator_case(&t, &make, &react, &expected, true);
    expect_greeting_ack(&t.name, &seq0);
}

// ---------------------------------------------------------------------------
// seq_large.txt: 10,000 octets each way, stop-and-wait per 4 KiB
// ---------------------------------------------------------------------------

/// RFC 3080 2.2.1.1, RFC 3080 2.2.1.2, RFC 3081 3.1.3, RFC 3081 3.1.2, RFC 3081 3.1: LibVortex's 3-frame MSG is reassembled;
/// we send `SEQ 3 4096 4096` and `SEQ 3 8192 4096` exactly when LibVortex
/// did (each half window), and frame our 10,002-octet RPY as 4096 + 4096 +
/// 1810, each frame only after LibVortex's SEQ opened the window
/// (checked on the timeline by `check_flow`), byte-identical to its RPY.
#[test]
fn seq_large_listener_rfc3080_2_2_1_1() {
    let t = Transcript::load("seq_large");
    let expected = [
        greeting(&[]),
        start_requested(3, Some("127.0.0.1"), Profile::new(REGRESSION)),
        message(3, 0, MessageKind::Msg, &large_body(), 1810),
        close_requested(3),
        Event::ChannelClosed { channel: 3 },
        close_requested(0),
        Event::SessionEnded(SessionEnd::Released),
    ];
    let outcome = listener_case(&t, &expected, true);
    // The data-channel part of our output, SEQ frames included, is
    // byte-identical to LibVortex's.
    let data = |bytes: &[u8]| -> Vec<Vec<u8>> {
        parse_stream(bytes)
            .into_iter()
            .filter(|(w, _)| match w {
                Wire::Seq(s) => s.channel == 3,
                Wire::Data { header, .. } => header.channel == 3,
            })
            .map(|(_, raw)| raw)
            .collect()
    };
    let ours = data(&outcome.sent);
    assert_eq!(ours.len(), 5, "SEQ, SEQ, RPY*, RPY*, RPY.");
    assert!(
        ours == data(&t.stream(Dir::S)),
        "seq_large: channel-3 bytes differ"
    );
}

/// RFC 3080 2.2.1.1, RFC 3080 2.2.1.2, RFC 3081 3.1.3, RFC 3081 3.1.2, RFC 3081 3.1: our 10,002-octet MSG goes out as
/// 4096 + 4096 + 1810, each frame only once LibVortex's SEQ allowed it
/// (byte-identical to LibVortex's frames); LibVortex's 3-frame RPY is
/// reassembled and acknowledged with the same SEQ frames LibVortex sent.
#[test]
fn seq_large_initiator_rfc3080_2_2_1_1() {
    let t = Transcript::load("seq_large");
    let make = || initiator_session(Profile::new(REGRESSION), "127.0.0.1");
    let react = sequential_client(vec![large_body()]);
    let expected = [
        greeting(&VORTEX_PROFILES),
        Event::ChannelOpened {
            channel: 3,
            profile: Profile::new(REGRESSION),
        },
        message(3, 0, MessageKind::Rpy, &large_body(), 1810),
        Event::ChannelClosed { channel: 3 },
        Event::SessionEnded(SessionEnd::Released),
    ];
    let (outcome, seq0) = initiator_case(&t, &make, &react, &expected, true);
    expect_greeting_ack(&t.name, &seq0);
    let frames = parse_stream(&outcome.sent);
    let msg_sizes: Vec<u32> = frames
        .iter()
        .filter_map(|(w, _)| match w {
            Wire::Data { header, .. } if header.channel == 3 => Some(header.size),
            _ => None,
        })
        .collect();
    assert_eq!(msg_sizes, [4096, 4096, 1810]);
}

// ---------------------------------------------------------------------------
// close.txt: one echo, channel close, release
// ---------------------------------------------------------------------------

/// RFC 3080 2.3.1.3, RFC 3080 2.4, RFC 3081 2: the close of channel 3 is accepted once our
/// reply is out; then the release.
#[test]
fn close_listener_rfc3080_2_3_1_3() {
    let t = Transcript::load("close");
    let expected = [
        greeting(&[]),
        start_requested(3, Some("127.0.0.1"), Profile::new(REGRESSION)),
        message(3, 0, MessageKind::Msg, b"ping", 6),
        close_requested(3),
        Event::ChannelClosed { channel: 3 },
        close_requested(0),
        Event::SessionEnded(SessionEnd::Released),
    ];
    listener_case(&t, &expected, true);
}

/// RFC 3080 2.3.1.3, RFC 3080 2.4, RFC 3081 2: we close channel 3 after its reply, then
/// release; LibVortex's `<ok />` (no CRLF) answers both.
#[test]
fn close_initiator_rfc3080_2_3_1_3() {
    let t = Transcript::load("close");
    let make = || initiator_session(Profile::new(REGRESSION), "127.0.0.1");
    let react = sequential_client(vec![b"ping".to_vec()]);
    let expected = [
        greeting(&VORTEX_PROFILES),
        Event::ChannelOpened {
            channel: 3,
            profile: Profile::new(REGRESSION),
        },
        message(3, 0, MessageKind::Rpy, b"ping", 6),
        Event::ChannelClosed { channel: 3 },
        Event::SessionEnded(SessionEnd::Released),
    ];
    let (_, seq0) = initiator_case(&t, &make, &react, &expected, true);
    expect_greeting_ack(&t.name, &seq0);
}

// ---------------------------------------------------------------------------
// sasl_plain.txt: SASL PLAIN piggybacked, then a data channel
// ---------------------------------------------------------------------------

const SASL_BLOB: &[u8] = b"<blob>AGJvYgBzZWNyZXQ=</blob>";
const SASL_COMPLETE: &[u8] = b"<blob status='complete' />";

/// RFC 3080 4.1, 4.1.1, 4.1.2: LibVortex's initial `<blob>` rides in
/// CDATA in the start; the session runs SASL PLAIN itself: the start never
/// reaches the application, which is asked to decide
/// ([`Event::AuthRequested`], with bob's password) and accepts; our start
/// reply piggybacks `<blob status='complete' />`, equivalent to
/// LibVortex's, and both sides know bob ([`Event::Authenticated`]). The
/// SASL channel stays open, LibVortex closes it later as any other. The
/// second start (channel 5) has no serverName (LibVortex sends it in the
/// first start only).
///
/// Our reply `<profile uri='...'><![CDATA[...]]></profile>` is one octet
/// shorter than LibVortex's `<profile uri='...' ><![CDATA[...]]></profile>`
/// (its space before `>`), so LibVortex's `SEQ 0 2710 4096`, which
/// acknowledges LibVortex's listener octets (2574 + 136), would acknowledge
/// an octet we never sent (RFC 3081 3.1.3: a protocol error). The replay
/// rewrites its ackno to the octets our listener sent at that point,
/// 2574 + 135, which is what LibVortex would have sent to us.
#[test]
fn sasl_plain_listener_rfc3080_2_3_1_2() {
    let mut t = Transcript::load("sasl_plain");
    let reply = ChannelZeroMessage::Profile(Profile::new(SASL_PLAIN).with_content(SASL_COMPLETE));
    let ours = VORTEX_GREETING_LEN + our_channel0_len(&reply);
    assert_eq!(ours, 2574 + 135);
    t.rewrite_seq_ackno(Dir::C, 0, VORTEX_GREETING_LEN + 136, ours);
    let (outcome, _) = replay_all_splits(&t, Dir::C, &vortex_listener_session, &vortex_listener);
    assert_clean_end(&t.name, &outcome, true);

    // The request the application answered: PLAIN's credentials, from
    // the start that asked for channel 3 with serverName 127.0.0.1.
    let Some(Event::AuthRequested(request)) = outcome.events.get(1) else {
        panic!("{}: {:?}", t.name, outcome.events);
    };
    assert_eq!(
        (request.channel, request.mechanism, request.need),
        (3, Mechanism::Plain, AuthNeed::Decide)
    );
    assert_eq!(request.authcid.as_deref(), Some("bob"));
    assert_eq!(request.password.as_deref(), Some("secret"));
    assert_eq!(request.authzid, None);
    assert_eq!(request.server_name.as_deref(), Some("127.0.0.1"));
    let bob = AuthInfo {
        mechanism: Mechanism::Plain,
        authcid: "bob".into(),
        authzid: None,
    };
    let expected = [
        greeting(&[]),
        outcome.events[1].clone(),
        Event::Authenticated(bob),
        start_requested(5, None, Profile::new(REGRESSION)),
        message(5, 0, MessageKind::Msg, b"after sasl", 12),
        close_requested(5),
        Event::ChannelClosed { channel: 5 },
        close_requested(3),
        Event::ChannelClosed { channel: 3 },
        close_requested(0),
        Event::SessionEnded(SessionEnd::Released),
    ];
    assert_eq!(outcome.events, expected, "{}: listener events", t.name);
    assert_same_greeting(&t, &outcome.sent);
    assert_listener_equivalent(&t.name, &outcome.sent, &t.stream(Dir::S));
}

/// RFC 3080 4.1, 4.1.1, 4.1.2: [`Session::start_sasl_number`] with PLAIN
/// for bob sends a start byte-identical to LibVortex's (the initial
/// response `AGJvYgBzZWNyZXQ=`, "\0bob\0secret", in CDATA, serverName
/// 127.0.0.1 on channel 3); LibVortex's `<profile uri='...' >` reply
/// (space before `>`) with `<blob status='complete' />` in CDATA completes
/// the exchange: [`Event::Authenticated`] for bob, and no channel event
/// (the SASL channel is the session's). Channel 5 then starts without
/// serverName (RFC 3080 2.3.1.2: only the first start carries it).
#[test]
fn sasl_plain_initiator_rfc3080_2_3_1_2() {
    let t = Transcript::load("sasl_plain");
    let make = || {
        let mut session = Session::initiator(fixed_windows());
        let client = SaslClient::plain("bob", "secret").with_server_name("127.0.0.1");
        assert_eq!(session.start_sasl_number(3, client), Ok(3));
        session
    };
    let react = |s: &mut Session, e: &Event| match e {
        Event::Authenticated(_) => {
            s.open_channel_number(5, vec![Profile::new(REGRESSION)], None)
                .unwrap();
        }
        Event::ChannelOpened { channel: 5, .. } => {
            s.send_msg(5, Message::new("after sasl")).unwrap();
        }
        Event::Message(m) if m.channel == 5 && m.kind == MessageKind::Rpy => {
            s.close_channel(5, ReplyCode::SUCCESS, "").unwrap();
        }
        Event::ChannelClosed { channel: 5 } => s.close_channel(3, ReplyCode::SUCCESS, "").unwrap(),
        Event::ChannelClosed { channel: 3 } => s.close_session(ReplyCode::SUCCESS, "").unwrap(),
        _ => {}
    };
    let expected = [
        greeting(&VORTEX_PROFILES),
        Event::Authenticated(AuthInfo {
            mechanism: Mechanism::Plain,
            authcid: "bob".into(),
            authzid: None,
        }),
        Event::ChannelOpened {
            channel: 5,
            profile: Profile::new(REGRESSION),
        },
        message(5, 0, MessageKind::Rpy, b"after sasl", 12),
        Event::ChannelClosed { channel: 5 },
        Event::ChannelClosed { channel: 3 },
        Event::SessionEnded(SessionEnd::Released),
    ];
    let (_, seq0) = initiator_case(&t, &make, &react, &expected, true);
    expect_greeting_ack(&t.name, &seq0);
    // The blob of the transcript is exactly PLAIN's "\0bob\0secret".
    let start = SaslClient::plain("bob", "secret");
    assert_eq!(start.mechanism().uri(), SASL_PLAIN);
    assert!(
        t.stream(Dir::C)
            .windows(SASL_BLOB.len())
            .any(|w| w == SASL_BLOB)
    );
}

// ---------------------------------------------------------------------------
// tls.txt: up to <proceed />
// ---------------------------------------------------------------------------

/// RFC 3080 3.1, RFC 3080 3.1.3.2: LibVortex's `<start>` piggybacks
/// `<ready />` in the TLS profile content; the session asks the
/// application ([`Event::TlsRequested`], with the start's serverName),
/// which accepts: our reply piggybacks `<proceed />` (exactly, as
/// LibVortex compares it, conformance item 67), every channel is gone
/// ([`Event::TuningReset`]) and nothing plain follows it. The replay stops
/// at LibVortex's ClientHello ([`tls_listener_answers_vortex_client_hello`]
/// takes it).
#[test]
fn tls_listener_up_to_proceed_rfc3080_3_1() {
    let t = Transcript::load("tls").until_tls();
    let expected = [
        greeting(&[]),
        Event::TlsRequested(beep_proto::TlsRequest {
            channel: 3,
            server_name: Some("127.0.0.1".into()),
            version: None,
        }),
        Event::TuningReset,
    ];
    let outcome = listener_case(&t, &expected, false);
    let proceed = b"<![CDATA[<proceed />]]>";
    assert!(
        outcome.sent.ends_with(b"]]></profile>\r\nEND\r\n")
            && outcome.sent.windows(proceed.len()).any(|w| w == proceed),
        "tls: our reply must end the plain stream with <proceed />"
    );
}

/// RFC 3080 3.1.3.2: after our `<proceed />`, LibVortex's ClientHello (an
/// OpenSSL 3 TLS 1.3 hello) goes to rustls inside the session, which
/// answers with its ServerHello: the byte path switched in the right
/// place, whatever the split.
#[test]
fn tls_listener_answers_vortex_client_hello() {
    let full = Transcript::load("tls");
    let plain = Transcript::load("tls").until_tls();
    let hello = &full.chunks[plain.chunks.len()];
    assert_eq!(
        (hello.dir, hello.bytes[0]),
        (Dir::C, 0x16),
        "the ClientHello"
    );
    for split in [Split::Recorded, Split::Bytewise, Split::Random(3)] {
        let mut input = pieces(&plain, Dir::C, split);
        input.push(hello.bytes.clone());
        let (outcome, log) = replay(vortex_listener_session(), &input, &vortex_listener);
        assert_eq!(outcome.error, None, "{split:?}");
        let Some(Step::Out(last)) = log.last() else {
            panic!("{split:?}: no answer to the ClientHello")
        };
        assert_eq!(
            &last[..3],
            &[0x16, 0x03, 0x03],
            "{split:?}: a TLS handshake record"
        );
        assert!(
            !outcome
                .events
                .iter()
                .any(|e| matches!(e, Event::SessionEnded(_)))
        );
    }
}

/// RFC 3080 3.1, RFC 3080 3.1.3.1, RFC 3080 3.1.3.2: our
/// [`Session::start_tls`] against LibVortex's listener bytes: the start
/// piggybacks `<ready />` exactly as LibVortex's does, nothing is sent
/// after it until the answer, and LibVortex's `<proceed />` (with its
/// `<profile uri='...' >` spacing) switches the session: every channel
/// gone, and then only TLS records leave (our ClientHello first, the new
/// greeting inside TLS).
#[test]
fn tls_initiator_start_tls_switches_at_vortex_proceed_rfc3080_3_1_3_2() {
    let t = Transcript::load("tls").until_tls();
    for split in [Split::Recorded, Split::Bytewise, Split::Random(5)] {
        let mut session = Session::initiator(fixed_windows());
        let client = beep_proto::tls::TlsClient::dangerous_accept_any_certificate("127.0.0.1");
        session.start_tls(client.unwrap()).unwrap();
        let (outcome, log) = replay(session, &pieces(&t, Dir::S, split), &|_, _| {});
        assert_eq!(outcome.error, None, "{split:?}");
        assert_eq!(
            outcome.events[1..],
            [Event::TuningReset],
            "{split:?}: {:?}",
            outcome.events
        );
        let outs: Vec<&Vec<u8>> = log
            .iter()
            .filter_map(|s| match s {
                Step::Out(b) => Some(b),
                Step::In(_) => None,
            })
            .collect();
        // Our greeting, our start with <ready />, then the ClientHello.
        let plain: Vec<u8> = outs[..outs.len() - 1]
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect();
        assert!(plain.ends_with(b"<![CDATA[<ready />]]></profile>\r\n</start>\r\nEND\r\n"));
        let hello = outs.last().unwrap();
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01], "{split:?}: a ClientHello");
        assert!(
            !hello.windows(8).any(|w| w == b"greeting"),
            "greeting sent in plain"
        );
    }
}

/// RFC 3080 3.1, RFC 3080 3.1.3.1, RFC 3080 3.1.3.2, conformance item 67: our `<ready />` start is byte-identical to
/// LibVortex's; its `<profile uri='...' >` reply with `<proceed />` in CDATA
/// opens channel 3 with that content; nothing is left unparsed and we send
/// nothing after it, so TLS can start right after its `END\r\n`.
#[test]
fn tls_initiator_up_to_proceed_rfc3080_3_1() {
    let t = Transcript::load("tls").until_tls();
    let make = || initiator_session(Profile::new(TLS).with_content("<ready />"), "127.0.0.1");
    let react = |_: &mut Session, _: &Event| {};
    let expected = [
        greeting(&VORTEX_PROFILES),
        Event::ChannelOpened {
            channel: 3,
            profile: Profile::new(TLS).with_content("<proceed />"),
        },
    ];
    let (_, seq0) = initiator_case(&t, &make, &react, &expected, false);
    expect_greeting_ack(&t.name, &seq0);
    // Nothing sent after <proceed /> arrived: the byte path is TLS's now.
    let (_, log) = replay(make(), &pieces(&t, Dir::S, Split::Recorded), &react);
    let last_in = log.iter().rposition(|s| matches!(s, Step::In(_))).unwrap();
    assert!(
        log[last_in..].iter().all(|s| !matches!(s, Step::Out(_))),
        "tls: we sent something after <proceed />"
    );
}

// ---------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------

/// Every transcript parses, its two sides are valid frame streams, and the
/// splits cover each side's bytes exactly once (a sanity check of the
/// helpers the replays rely on).
#[test]
fn transcripts_parse_and_splits_cover_the_stream() {
    for name in [
        "greeting",
        "start",
        "start_servername",
        "echo",
        "ans_nul",
        "seq_large",
        "close",
        "sasl_plain",
        "tls",
    ] {
        let mut t = Transcript::load(name);
        if name == "tls" {
            t = t.until_tls();
            assert!(t.eof.is_empty());
        } else {
            assert_eq!(t.eof, [Dir::S, Dir::C], "{name}: listener closes first");
        }
        for dir in [Dir::C, Dir::S] {
            let stream = t.stream(dir);
            parse_stream(&stream);
            for split in [Split::Recorded, Split::Bytewise, Split::Random(7)] {
                assert_eq!(pieces(&t, dir, split).concat(), stream, "{name} {split:?}");
            }
        }
    }
}

/// LibVortex keeps every window at 4096 octets, and the replays compare
/// SEQ frames with its own: our windows are fixed at that size here too
/// (they grow by themselves otherwise, when a peer uses them up: RFC 3081
/// 3.1.4 lets a window change with any SEQ).
fn fixed_windows() -> Config {
    Config {
        max_receive_window: 4096,
        ..Config::default()
    }
}
