//! Shared by the hostile-peer test files: a raw TCP peer speaking BEEP by
//! hand ([`Peer`]), writing frames of its own and reading the listener's
//! with a parser of the test's own (RFC 3080 2.2.1, RFC 3081 3.1.3), so
//! that it checks the listener's output independently of the core.

#![allow(dead_code)] // each test file uses a different part

use std::collections::HashMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The longest wait for anything that should happen: no test hangs.
pub const BOUND: Duration = Duration::from_secs(10);

pub const XML: &str = "Content-Type: application/beep+xml\r\n\r\n";

/// A data frame (RFC 3080 2.2.1): header, payload, trailer.
pub fn data_frame(keyword: &str, channel: u32, msgno: u32, seqno: u32, payload: &[u8]) -> Vec<u8> {
    data_frame_more(keyword, channel, msgno, false, seqno, payload)
}

/// A data frame, with `*` (more to come) if `more` (RFC 3080 2.2.1.1).
pub fn data_frame_more(
    keyword: &str,
    channel: u32,
    msgno: u32,
    more: bool,
    seqno: u32,
    payload: &[u8],
) -> Vec<u8> {
    let more = if more { '*' } else { '.' };
    let mut frame = format!(
        "{keyword} {channel} {msgno} {more} {seqno} {}\r\n",
        payload.len()
    )
    .into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"END\r\n");
    frame
}

/// Our greeting, RPY 0 0 (RFC 3080 2.3.1.1), advertising nothing.
pub fn greeting_frame() -> Vec<u8> {
    data_frame("RPY", 0, 0, 0, greeting_payload().as_bytes())
}

pub fn greeting_payload() -> String {
    format!("{XML}<greeting />\r\n")
}

/// A `<start>` of `channel` on `profile` (RFC 3080 2.3.1.2).
pub fn start_payload(channel: u32, profile: &str) -> String {
    format!("{XML}<start number='{channel}'>\r\n<profile uri='{profile}' />\r\n</start>\r\n")
}

/// The `code` attribute of an `<error>` element (RFC 3080 2.3.1.5), if any.
pub fn error_code(text: &str) -> Option<u16> {
    let at = text.find("code=")? + "code=".len();
    text.get(at + 1..at + 4)?.parse().ok()
}

/// The keyword of a data frame the listener sent (RFC 3080 2.2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Msg,
    Rpy,
    Err,
    Ans,
    Nul,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Msg, Kind::Rpy, Kind::Err, Kind::Ans, Kind::Nul];

    /// The keyword as it stands in a frame header.
    pub fn keyword(self) -> &'static str {
        match self {
            Kind::Msg => "MSG",
            Kind::Rpy => "RPY",
            Kind::Err => "ERR",
            Kind::Ans => "ANS",
            Kind::Nul => "NUL",
        }
    }
}

/// Shows the keyword (`RPY`), as in the frame.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A data frame's header, as far as the hostile peers care.
#[derive(Debug, Clone, Copy)]
pub struct Data {
    pub kind: Kind,
    pub channel: u32,
    pub msgno: u32,
    /// `*`: more frames of this message to come.
    pub more: bool,
}

/// A frame received by a [`Peer`].
#[derive(Debug)]
pub enum Frame {
    Data(Data, Vec<u8>),
    /// SEQ (RFC 3081 3.1.3): channel, ackno, window.
    Seq(u32, u32, u32),
}

/// A header line at the start of `inbox`: the frame's header, the header
/// line's length, and the payload size (0 for SEQ); None while incomplete.
fn parse_line(inbox: &[u8]) -> Option<(Frame, usize, usize)> {
    let end = inbox.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&inbox[..end]).expect("an ASCII header");
    let fields: Vec<&str> = line.split(' ').collect();
    let num = |i: usize| -> u32 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("the listener sent a bad header: {line:?}"))
    };
    if fields[0] == "SEQ" {
        return Some((Frame::Seq(num(1), num(2), num(3)), end + 2, 0));
    }
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.keyword() == fields[0])
        .unwrap_or_else(|| panic!("the listener sent a bad header: {line:?}"));
    let data = Data {
        kind,
        channel: num(1),
        msgno: num(2),
        more: fields.get(3) == Some(&"*"),
    };
    Some((Frame::Data(data, Vec::new()), end + 2, num(5) as usize))
}

/// A hostile peer's socket, with just enough BEEP to get where it attacks.
pub struct Peer {
    pub stream: TcpStream,
    /// Our end's address: the peer the listener reports.
    pub local: SocketAddr,
    /// What was read from the listener; `inbox[..at]` is parsed.
    inbox: Vec<u8>,
    at: usize,
    /// The next seqno we send, per channel (RFC 3080 2.2.1.2).
    pub sent: HashMap<u32, u32>,
    /// The next msgno we use, per channel.
    pub msgnos: HashMap<u32, u32>,
    /// ackno + window of the listener's last SEQ, per channel (RFC 3081
    /// 3.1.3); 4096 until one came (RFC 3081 3.1.1).
    pub allowed: HashMap<u32, u32>,
    /// Payload octets received, per channel: the ackno of our SEQs.
    pub received: HashMap<u32, u32>,
    /// SEQ frames the listener sent.
    pub seqs: usize,
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        Peer::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    pub fn from_stream(stream: TcpStream) -> Peer {
        Peer {
            local: stream.local_addr().expect("local addr"),
            stream,
            inbox: Vec::new(),
            at: 0,
            sent: HashMap::new(),
            msgnos: HashMap::from([(0, 1)]),
            allowed: HashMap::new(),
            received: HashMap::new(),
            seqs: 0,
        }
    }

    /// Another peer on the same socket, which reads from where this one
    /// stopped: what this one read and has not parsed yet is handed over.
    pub fn reader(&mut self) -> Peer {
        let mut reader = Peer::from_stream(self.stream.try_clone().expect("clone"));
        reader.inbox = self.inbox.split_off(self.at);
        self.inbox.clear();
        self.at = 0;
        reader
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes unless the listener closed the connection.
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends our greeting (RFC 3080 2.3.1.1), advertising nothing.
    pub fn greet(&mut self) {
        let frame = greeting_frame();
        self.write(&frame);
        self.sent.insert(0, greeting_payload().len() as u32);
    }

    /// Greets and reads the listener's greeting (or its ERR).
    pub fn greeting(&mut self) -> (Kind, Vec<u8>) {
        self.greet();
        self.reply(0, 0)
    }

    /// Connects, greets and waits for the listener's greeting.
    pub fn greeted(addr: SocketAddr) -> Peer {
        let mut peer = Peer::connect(addr);
        peer.greeting();
        peer
    }

    /// The next MSG on `channel`, numbered and sequenced.
    pub fn msg_frame(&mut self, channel: u32, payload: &[u8]) -> (u32, Vec<u8>) {
        let msgno = self.msgnos.entry(channel).or_insert(0);
        let this = *msgno;
        *msgno += 1;
        let seqno = self.sent.entry(channel).or_insert(0);
        let frame = data_frame("MSG", channel, this, *seqno, payload);
        *seqno = seqno.wrapping_add(payload.len() as u32);
        (this, frame)
    }

    pub fn send_msg(&mut self, channel: u32, payload: &[u8]) -> u32 {
        let (msgno, frame) = self.msg_frame(channel, payload);
        self.write(&frame);
        msgno
    }

    /// The next frame of an unfinished message (`*`) on `channel`,
    /// sequenced.
    pub fn partial_frame(
        &mut self,
        keyword: &str,
        channel: u32,
        msgno: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let seqno = self.sent.entry(channel).or_insert(0);
        let frame = data_frame_more(keyword, channel, msgno, true, *seqno, payload);
        *seqno = seqno.wrapping_add(payload.len() as u32);
        frame
    }

    /// A SEQ letting the listener send `window` octets beyond what we
    /// received on `channel` (RFC 3081 3.1.3).
    pub fn seq_frame(&self, channel: u32, window: u32) -> Vec<u8> {
        let ackno = self.received.get(&channel).copied().unwrap_or(0);
        format!("SEQ {channel} {ackno} {window}\r\n").into_bytes()
    }

    /// Sends [`Peer::seq_frame`].
    pub fn grant(&mut self, channel: u32, window: u32) {
        let seq = self.seq_frame(channel, window);
        self.write(&seq);
    }

    /// Octets we may still send on `channel` (RFC 3081 3.1.2): 0 once we
    /// are at (or beyond) what the listener allowed.
    pub fn room(&self, channel: u32) -> u32 {
        let allowed = self
            .allowed
            .get(&channel)
            .copied()
            .unwrap_or(beep_proto::config::DEFAULT_WINDOW);
        let room = allowed.wrapping_sub(self.sent.get(&channel).copied().unwrap_or(0));
        if room <= i32::MAX as u32 { room } else { 0 }
    }

    /// Starts `channel` on `profile` (RFC 3080 2.3.1.2); panics unless the
    /// listener accepts.
    pub fn open(&mut self, channel: u32, profile: &str) {
        let msgno = self.send_msg(0, start_payload(channel, profile).as_bytes());
        let (kind, payload) = self.reply(0, msgno);
        assert_eq!(
            kind,
            Kind::Rpy,
            "start refused: {}",
            String::from_utf8_lossy(&payload)
        );
    }

    /// The next frame from the listener, or an error (a timeout after
    /// `limit`, the connection closed: EOF or reset).
    pub fn frame(&mut self, limit: Duration) -> std::io::Result<Frame> {
        let deadline = Instant::now() + limit;
        loop {
            let rest = &self.inbox[self.at..];
            match parse_line(rest) {
                Some((Frame::Seq(channel, ackno, window), used, _)) => {
                    self.at += used;
                    self.seqs += 1;
                    self.allowed.insert(channel, ackno.wrapping_add(window));
                    return Ok(Frame::Seq(channel, ackno, window));
                }
                Some((Frame::Data(data, _), used, size)) if rest.len() >= used + size + 5 => {
                    let end = used + size;
                    assert_eq!(&rest[end..end + 5], b"END\r\n", "trailer");
                    let payload = rest[used..end].to_vec();
                    self.at += end + 5;
                    let got = self.received.entry(data.channel).or_insert(0);
                    *got = got.wrapping_add(size as u32);
                    return Ok(Frame::Data(data, payload));
                }
                Some(_) | None => {}
            }
            if self.at > 0 {
                self.inbox.drain(..self.at);
                self.at = 0;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut buf = [0u8; 64 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(ErrorKind::TimedOut.into());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The complete reply to our `msgno` on `channel` (every frame of it),
    /// other frames skipped; panics after [`BOUND`].
    pub fn reply(&mut self, channel: u32, msgno: u32) -> (Kind, Vec<u8>) {
        match self.try_reply(channel, msgno, BOUND) {
            Ok(reply) => reply,
            Err(e) => panic!("no reply to MSG {channel} {msgno}: {e}"),
        }
    }

    /// As [`Peer::reply`], an error after `limit`.
    pub fn try_reply(
        &mut self,
        channel: u32,
        msgno: u32,
        limit: Duration,
    ) -> std::io::Result<(Kind, Vec<u8>)> {
        let deadline = Instant::now() + limit;
        let mut payload = Vec::new();
        loop {
            match self.frame(deadline.saturating_duration_since(Instant::now()))? {
                Frame::Data(h, p)
                    if h.kind != Kind::Msg && h.channel == channel && h.msgno == msgno =>
                {
                    payload.extend_from_slice(&p);
                    if !h.more {
                        return Ok((h.kind, payload));
                    }
                }
                Frame::Data(..) | Frame::Seq(..) => {}
            }
        }
    }

    /// How long until the listener closed the connection (a read of 0 or
    /// an error), or None if it is open after `limit`. Reads and drops
    /// whatever it sent meanwhile.
    pub fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        loop {
            match self.frame(limit.saturating_sub(started.elapsed())) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
                    return None;
                }
                Err(_) => return Some(started.elapsed()),
            }
        }
    }
}
