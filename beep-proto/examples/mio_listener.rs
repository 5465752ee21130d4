//! A BEEP echo listener on one thread with mio: non-blocking sockets, many
//! connections at once. This is the reference way to embed the core in an
//! event loop (the rules are in `beep_proto::driver_guide`):
//!
//! * after every socket event, `Conn::pump` drains events and writes
//!   output until a whole round moves nothing;
//! * read interest while the peer may send, write interest exactly while
//!   `Session::wants_transmit()` is true;
//! * a refused reply (`UsageError::OutputFull`) waits in a backlog for
//!   `Event::Writable`, and its receive window is given back only once the
//!   reply is queued, so a peer that does not read cannot grow our memory;
//! * an ended session writes what remains, shuts its sending half, and
//!   reads until the peer closes, so that no reset wipes the final `<ok/>`.
//!
//! It serves `http://example.org/beep/echo`: every MSG is answered with a
//! RPY carrying the same message.
//!
//! Run: `cargo run -p beep-proto --example mio_listener -- --port 10288`
//!
//! Options: `--port N` (on 127.0.0.1; default 0: a free port; the bound
//! address is printed as `listening on ADDR`), `--max-connections N`.
//! On stderr it logs one line per ended session (peer and reason), and one
//! when a connection's echoes start waiting for room in the output queue.
//!
//! Stopping: the listener stops when its standard input reaches end of file
//! (Ctrl-D, or the parent process closing the pipe): it accepts no more,
//! asks every live session to release, and gives the connections at most
//! 5 s to finish. With `--max-connections N` it also stops accepting after N
//! connections and exits once those N have ended. Either way it prints
//! `served N connections` and exits with status 0. (With stdin at end of
//! file from the start, e.g. `< /dev/null`, it stops at once.)

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beep_proto::xml::Profile;
use beep_proto::{
    Config, Event, IncomingMessage, MessageKind, ReplyCode, Session, SessionEnd, UsageError,
};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

const ECHO: &str = "http://example.org/beep/echo";
const LISTENER: Token = Token(0);
const STDIN_CLOSED: Token = Token(1);
/// How long an ended connection (or a stopping listener) may take to send
/// what remains and see the peer close.
const LINGER: Duration = Duration::from_secs(5);

/// One connection: a socket and the session it carries.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    session: Session,
    /// What is registered with the poll.
    interest: Interest,
    /// MSGs whose echo was refused with `OutputFull`, in arrival order:
    /// sent again on `Event::Writable`.
    backlog: VecDeque<IncomingMessage>,
    /// An echo was refused and `Event::Writable` has not come yet.
    output_full: bool,
    /// The peer closed its sending half (or the connection broke).
    read_closed: bool,
    /// We shut our sending half down.
    write_closed: bool,
    /// The socket failed: close it now.
    broken: bool,
    /// Set when the session or the input ended: close the socket by then
    /// at the latest.
    deadline: Option<Instant>,
}

impl Conn {
    /// Reads all the socket has (mio is edge-triggered), feeding each chunk
    /// to the session and acting on it at once, so events stay few. (A
    /// loop that must be fair to many busy peers would cap the reads per
    /// wake-up and come back to this connection later.)
    fn on_readable(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        while !self.read_closed {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.read_closed = true;
                    self.session.handle_eof();
                }
                // A violation is reported by Event::SessionEnded; after the
                // end, input is discarded (handle_input ignores it).
                Ok(n) => drop(self.session.handle_input(&buf[..n])),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    (self.read_closed, self.broken) = (true, true);
                    self.session.handle_eof();
                }
            }
            self.pump();
        }
        self.pump();
    }

    /// The loop that is always right: events can queue output (replies,
    /// credit) and writing can queue events (`Writable`, the end of a
    /// release), so repeat until a whole round moved nothing.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(event) = self.session.poll_event() {
                moved = true;
                self.on_event(event);
            }
            if !self.broken {
                match self.session.write_to(&mut self.stream) {
                    Ok(n) => moved |= n > 0,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        self.broken = true;
                        self.session.handle_eof();
                        moved = true; // SessionEnded is queued
                    }
                }
            }
            if !moved {
                break;
            }
        }
        // Everything sent after the end: say so with a FIN, keep reading.
        if self.session.is_ended() && !self.session.wants_transmit() && !self.write_closed {
            self.write_closed = true;
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }

    fn on_event(&mut self, event: Event) {
        // Calls below may be refused because the session ended after the
        // event was queued (a later frame broke a rule): nothing to do then.
        match event {
            Event::StartRequested(request) => {
                let _ = if request.profiles.iter().any(|p| p.uri == ECHO) {
                    self.session
                        .accept_start(request.channel, Profile::new(ECHO))
                } else {
                    let code = ReplyCode::REQUESTED_ACTION_NOT_TAKEN;
                    let text = "only the echo profile is served here";
                    self.session.deny_start(request.channel, code, text)
                };
            }
            Event::Message(m) if m.kind == MessageKind::Msg => {
                self.backlog.push_back(m);
                self.send_backlog();
            }
            // We send no MSGs, so this is not expected; give its window back.
            Event::Message(m) => self.session.consumed(m.channel, m.credit),
            // Streaming is never switched on here.
            Event::Frame(f) => self.session.consumed(f.channel, f.payload.len() as u32),
            Event::CloseRequested { channel, .. } => {
                let _ = self.session.accept_close(channel);
            }
            Event::Writable => {
                self.output_full = false;
                self.send_backlog();
            }
            Event::ChannelClosed { channel } => self.backlog.retain(|m| m.channel != channel),
            Event::SessionEnded(end) => eprintln!("{}: {end}", self.peer),
            Event::Greeting(_)
            | Event::ChannelOpened { .. }
            | Event::ChannelRefused { .. }
            | Event::CloseRefused { .. } => {}
            _ => {} // `Event` is non-exhaustive: newer events need nothing here
        }
    }

    /// Echoes the waiting MSGs in order until the output queue is full.
    /// A message's window goes back to the peer only once its reply is
    /// queued (`auto_credit` is off): that is what bounds the backlog.
    fn send_backlog(&mut self) {
        while let Some(m) = self.backlog.front() {
            let (channel, msgno, credit) = (m.channel, m.msgno, m.credit);
            match self.session.send_rpy(channel, msgno, m.message.clone()) {
                Err(UsageError::OutputFull { queued, .. }) => {
                    if !self.output_full {
                        self.output_full = true;
                        eprintln!("{}: {queued} octets queued, echoes wait", self.peer);
                    }
                    return; // Event::Writable follows
                }
                // Ok, or a reply that became moot (channel or session gone).
                _ => {
                    self.backlog.pop_front();
                    self.session.consumed(channel, credit);
                }
            }
        }
    }

    /// The interest this connection needs now, if any.
    fn wanted(&self) -> Option<Interest> {
        let write = !self.broken && self.session.wants_transmit();
        match (!self.read_closed, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// True when the socket can be closed without losing anything.
    fn is_done(&self, now: Instant) -> bool {
        let violated = matches!(self.session.end_reason(), Some(SessionEnd::Violation(_)));
        self.broken
            // Nothing more will be sent, so a reset loses nothing.
            || violated
            // Both halves finished: no unread input, no reset.
            || (self.write_closed && self.read_closed)
            || self.deadline.is_some_and(|d| now >= d)
    }
}

struct Args {
    port: u16,
    max_connections: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        max_connections: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--port" => args.port = value.parse().map_err(bad)?,
            "--max-connections" => args.max_connections = Some(value.parse().map_err(bad)?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

fn main() -> std::io::Result<()> {
    let args = parse_args().map_err(std::io::Error::other)?;
    let mut poll = Poll::new()?;
    let mut listener = Some(TcpListener::bind(([127, 0, 0, 1], args.port).into())?);
    if let Some(l) = listener.as_mut() {
        poll.registry().register(l, LISTENER, Interest::READABLE)?;
        println!("listening on {}", l.local_addr()?);
        std::io::stdout().flush()?;
    }
    // The only other thread: it waits for stdin's end and wakes the loop.
    // The loop keeps a reference to the waker: closing its descriptor
    // before `poll` has reported the wake-up would lose the wake-up.
    let waker = Arc::new(Waker::new(poll.registry(), STDIN_CLOSED)?);
    let stdin_waker = waker.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        while let Ok(1..) = std::io::stdin().read(&mut sink) {}
        let _ = stdin_waker.wake();
    });

    let config = Config {
        profiles: vec![ECHO.into()],
        auto_credit: false,
        ..Config::default()
    };
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    // Every deadline is "now + LINGER" when set, so a FIFO is in order.
    let mut timers: VecDeque<(Instant, Token)> = VecDeque::new();
    let (mut next_token, mut accepted) = (2, 0usize);
    let mut stopping: Option<Instant> = None;
    let mut events = Events::with_capacity(1024);
    let mut touched = Vec::new();
    loop {
        let now = Instant::now();
        let accepting = listener.is_some();
        if (conns.is_empty() && !accepting) || stopping.is_some_and(|d| now >= d) {
            break;
        }
        let next = timers
            .front()
            .map(|t| t.0)
            .into_iter()
            .chain(stopping)
            .min();
        let timeout = next.map(|d| d.saturating_duration_since(now));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let now = Instant::now();
        for event in events.iter() {
            match event.token() {
                LISTENER => {
                    while let Some(l) = listener.as_ref() {
                        let (mut stream, peer) = match l.accept() {
                            Ok(pair) => pair,
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            // WouldBlock: all taken. Other errors (out of
                            // descriptors...): the next connection retries.
                            Err(_) => break,
                        };
                        let _ = stream.set_nodelay(true);
                        let token = Token(next_token);
                        next_token += 1;
                        if poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE)
                            .is_err()
                        {
                            continue; // dropped: closed
                        }
                        let mut conn = Conn {
                            stream,
                            peer,
                            session: Session::listener(config.clone()),
                            interest: Interest::READABLE,
                            backlog: VecDeque::new(),
                            output_full: false,
                            read_closed: false,
                            write_closed: false,
                            broken: false,
                            deadline: None,
                        };
                        conn.pump(); // the greeting
                        conns.insert(token, conn);
                        touched.push(token);
                        accepted += 1;
                        if Some(accepted) == args.max_connections {
                            stop_accepting(&poll, &mut listener)?;
                        }
                    }
                }
                STDIN_CLOSED => {
                    stop_accepting(&poll, &mut listener)?;
                    stopping = Some(now + LINGER);
                    for (token, conn) in &mut conns {
                        // Refused if it is already closing or over: fine.
                        let _ = conn.session.close_session(ReplyCode::SUCCESS, "stopping");
                        conn.pump();
                        touched.push(*token);
                    }
                }
                token => {
                    if let Some(conn) = conns.get_mut(&token) {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            conn.on_readable();
                        }
                        if event.is_writable() {
                            conn.pump();
                        }
                        touched.push(token);
                    }
                }
            }
        }
        while timers.front().is_some_and(|t| t.0 <= now) {
            touched.extend(timers.pop_front().map(|t| t.1));
        }
        // Bring each touched connection's registration up to date.
        for token in touched.drain(..) {
            let Some(conn) = conns.get_mut(&token) else {
                continue;
            };
            // From the end of the session, or of the input (a session may
            // wait for an answer that can no longer go out), the connection
            // has LINGER to finish.
            if (conn.session.is_ended() || conn.read_closed) && conn.deadline.is_none() {
                conn.deadline = Some(now + LINGER);
                timers.push_back((now + LINGER, token));
            }
            let keep = match conn.wanted() {
                _ if conn.is_done(now) => false,
                Some(interest) if interest != conn.interest => {
                    conn.interest = interest;
                    let registry = poll.registry();
                    registry
                        .reregister(&mut conn.stream, token, interest)
                        .is_ok()
                }
                _ => true,
            };
            if !keep {
                // Dropping the stream closes it; deregistering first is tidy.
                let _ = poll.registry().deregister(&mut conn.stream);
                conns.remove(&token);
            }
        }
    }
    drop(waker);
    println!("served {accepted} connections");
    Ok(())
}

/// Closes the listening socket: no more connections are accepted.
fn stop_accepting(poll: &Poll, listener: &mut Option<TcpListener>) -> std::io::Result<()> {
    if let Some(mut l) = listener.take() {
        poll.registry().deregister(&mut l)?;
    }
    Ok(())
}
