//! An async BEEP client on a small runtime: async-io's reactor and
//! `block_on`, and futures-lite. It shows the core embedded in async code
//! (the rules are in `beep_proto::driver_guide`): one task owns the socket
//! and the `Session`, writes whenever the session has output, and waits
//! for the socket to be readable, or also writable exactly while
//! `Session::wants_transmit()` is true.
//!
//! It connects to `--addr`, opens a channel with the echo profile
//! `http://example.org/beep/echo`, sends `--messages N` messages (default
//! 10) of `--size` octets (default 1000) as fast as the output limit
//! allows, checks that the replies come back in order with the bodies sent,
//! closes the channel, releases the session, and prints a summary. The
//! exit status is 1 on any mismatch or error, or if it all takes longer
//! than `--timeout` seconds (default 30).
//!
//! Run (with a listener, e.g. `cargo run -p beep-proto --example mio_listener`):
//! `cargo run -p beep-proto --example async_client -- --addr 127.0.0.1:PORT`

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use beep_proto::xml::Profile;
use beep_proto::{Config, Event, Message, MessageKind, ReplyCode, Session, SessionEnd, UsageError};
use futures_lite::future;

const ECHO: &str = "http://example.org/beep/echo";
/// How long, after the release, we wait for the peer to close.
const LINGER: Duration = Duration::from_secs(5);

/// A session on a non-blocking socket.
struct Client {
    stream: Async<TcpStream>,
    session: Session,
    buf: Vec<u8>,
}

impl Client {
    /// The next event, moving bytes both ways meanwhile. Output the caller
    /// queued (a send, a close) goes out here, as does the credit that
    /// polling a message gives back.
    async fn next_event(&mut self) -> Result<Event, String> {
        loop {
            if let Some(event) = self.session.poll_event() {
                return Ok(event);
            }
            if self.session.is_ended() {
                return Err("the session is over".into());
            }
            let mut socket: &TcpStream = self.stream.get_ref();
            match self.session.write_to(&mut socket) {
                // Writing may have queued events (Writable): look again.
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("write: {e}")),
            }
            // Read interest always; write interest only while there is
            // something the peer's windows let us send.
            let ready = if self.session.wants_transmit() {
                future::or(self.stream.readable(), self.stream.writable()).await
            } else {
                self.stream.readable().await
            };
            ready.map_err(|e| format!("poll: {e}"))?;
            match socket.read(&mut self.buf) {
                Ok(0) => self.session.handle_eof(),
                // A violation ends the session: SessionEnded reports it.
                Ok(n) => drop(self.session.handle_input(&self.buf[..n])),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The next event other than `Writable` (which only matters while
    /// sending), failing if the session ends.
    async fn expect(&mut self, what: &str) -> Result<Event, String> {
        loop {
            match self.next_event().await? {
                Event::Writable => {}
                Event::SessionEnded(end) => return Err(format!("waiting for {what}: {end}")),
                event => return Ok(event),
            }
        }
    }

    /// After the end: write what remains, shut our sending half, and read
    /// until the peer closes (closing with unread input would make the
    /// kernel send a reset, which can wipe data the peer has not read).
    async fn finish(self) -> io::Result<()> {
        let Client {
            stream,
            mut session,
            mut buf,
        } = self;
        while session.wants_transmit() {
            stream.write_with(|mut s| session.write_to(&mut s)).await?;
        }
        stream.get_ref().shutdown(Shutdown::Write)?;
        let drain = async {
            // Ok(0): the peer closed; an error: it is gone anyway.
            while let Ok(1..) = stream.read_with(|mut s| s.read(&mut buf)).await {}
        };
        let linger = async {
            Timer::after(LINGER).await;
        };
        future::or(drain, linger).await;
        Ok(())
    }
}

/// The body of message `i`: `size` octets that differ from one message to
/// the next.
fn body(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect()
}

struct Args {
    addr: SocketAddr,
    messages: usize,
    size: usize,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let (mut addr, mut messages, mut size, mut timeout) = (None, 10, 1000, 30);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().map_err(|e| bad(&e))?),
            "--messages" => messages = value.parse().map_err(|e| bad(&e))?,
            "--size" => size = value.parse().map_err(|e| bad(&e))?,
            "--timeout" => timeout = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Args {
        addr: addr.ok_or("--addr ADDR is required")?,
        messages,
        size,
        timeout: Duration::from_secs(timeout),
    })
}

/// What a run found.
struct Summary {
    matched: usize,
    mismatched: usize,
}

async fn run(args: &Args) -> Result<Summary, String> {
    let stream = Async::<TcpStream>::connect(args.addr)
        .await
        .map_err(|e| format!("connect to {}: {e}", args.addr))?;
    let _ = stream.get_ref().set_nodelay(true);
    let mut client = Client {
        stream,
        session: Session::initiator(Config::default()),
        buf: vec![0; 64 * 1024],
    };
    let Event::Greeting(greeting) = client.expect("the greeting").await? else {
        return Err("the first event was not the greeting".into());
    };
    if !greeting.profiles.iter().any(|p| p == ECHO) {
        return Err(format!("the peer does not offer {ECHO}"));
    }
    let use_err = |e: UsageError| e.to_string();
    let channel = client
        .session
        .open_channel(vec![Profile::new(ECHO)], None)
        .map_err(use_err)?;
    match client.expect("the channel").await? {
        Event::ChannelOpened { channel: c, .. } if c == channel => {}
        Event::ChannelRefused { error, .. } => {
            return Err(format!("echo refused: {} {}", error.code, error.text));
        }
        other => return Err(format!("waiting for the channel: {other:?}")),
    }

    // Send while the output queue has room; replies drain it.
    let mut outstanding = VecDeque::new();
    let (mut sent, mut blocked) = (0, false);
    let mut summary = Summary {
        matched: 0,
        mismatched: 0,
    };
    while summary.matched + summary.mismatched < args.messages {
        while sent < args.messages && !blocked {
            let message = Message::new(body(sent, args.size));
            match client.session.send_msg(channel, message) {
                Ok(msgno) => {
                    outstanding.push_back((msgno, sent));
                    sent += 1;
                }
                // Nothing was queued; Event::Writable says when to retry.
                Err(UsageError::OutputFull { .. }) => blocked = true,
                Err(e) => return Err(e.to_string()),
            }
        }
        match client.next_event().await? {
            Event::Writable => blocked = false,
            Event::Message(m) if m.channel == channel => {
                let Some((msgno, i)) = outstanding.pop_front() else {
                    return Err(format!("a reply to no request: {m:?}"));
                };
                let good = m.kind == MessageKind::Rpy
                    && m.msgno == msgno
                    && m.message.body()[..] == body(i, args.size)[..];
                if good {
                    summary.matched += 1;
                } else {
                    eprintln!("message {i}: {:?} {} does not echo it", m.kind, m.msgno);
                    summary.mismatched += 1;
                }
            }
            Event::SessionEnded(end) => return Err(format!("while sending: {end}")),
            _ => {}
        }
    }

    client
        .session
        .close_channel(channel, ReplyCode::SUCCESS, "done")
        .map_err(use_err)?;
    match client.expect("the channel close").await? {
        Event::ChannelClosed { .. } => {}
        other => return Err(format!("closing the channel: {other:?}")),
    }
    client
        .session
        .close_session(ReplyCode::SUCCESS, "bye")
        .map_err(use_err)?;
    match client.next_event().await? {
        Event::SessionEnded(SessionEnd::Released) => {}
        other => return Err(format!("releasing the session: {other:?}")),
    }
    client.finish().await.map_err(|e| format!("closing: {e}"))?;
    Ok(summary)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("async_client: {e}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let timeout = async {
        Timer::after(args.timeout).await;
        Err(format!("no result in {:?}", args.timeout))
    };
    match async_io::block_on(future::or(run(&args), timeout)) {
        Ok(Summary {
            matched,
            mismatched,
        }) => {
            println!(
                "{} messages of {} octets to {}: {matched} echoed, {mismatched} mismatched, \
                 released in {:?}",
                args.messages,
                args.size,
                args.addr,
                start.elapsed()
            );
            if mismatched == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("async_client: {e}");
            ExitCode::FAILURE
        }
    }
}
