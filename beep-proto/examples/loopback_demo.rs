//! A listener and a client on loopback TCP, each a `Session` driven by hand
//! with `std::net`: greeting, channel start, MSG/RPY, ANS/NUL, channel
//! close, session release. Every frame header on the wire is printed.
//!
//! Run: `cargo run -p beep-proto --example loopback_demo`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use beep_proto::frame::{Header, parse_header};
use beep_proto::xml::Profile;
use beep_proto::{Config, Event, Message, MessageKind, ReplyCode, Session, SessionEnd};

const ECHO: &str = "http://example.org/beep/echo";

/// A session on a socket: writes what the session has to send, reads when
/// asked for more, and prints the frame headers going each way.
struct Peer {
    name: &'static str,
    stream: TcpStream,
    session: Session,
}

impl Peer {
    fn flush(&mut self) -> std::io::Result<()> {
        while let Some(bytes) = self.session.poll_transmit() {
            print_headers(self.name, &bytes);
            self.stream.write_all(&bytes)?;
        }
        Ok(())
    }

    /// The next event, reading from the socket as long as needed.
    fn next_event(&mut self) -> std::io::Result<Option<Event>> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            self.flush()?;
            if let Some(event) = self.session.poll_event() {
                return Ok(Some(event));
            }
            if self.session.is_ended() {
                return Ok(None);
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Ok(None);
            }
            if let Err(e) = self.session.handle_input(&buf[..n]) {
                eprintln!("{}: protocol error, closing: {e}", self.name);
                return Ok(None);
            }
        }
    }
}

/// Prints the header line of every frame in a transmitted chunk.
fn print_headers(who: &str, mut bytes: &[u8]) {
    while let Ok(Some((header, used))) = parse_header(bytes, 128) {
        let line = String::from_utf8_lossy(&bytes[..used - 2]).into_owned();
        bytes = &bytes[used..];
        if let Header::Frame(h) = header {
            let end = (h.size as usize + 5).min(bytes.len());
            bytes = &bytes[end..];
        }
        println!("    {who:>8} wire> {line}");
    }
}

fn serve(listener: TcpListener) -> std::io::Result<()> {
    let (stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    let config = Config {
        profiles: vec![ECHO.into()],
        ..Config::default()
    };
    let mut peer = Peer {
        name: "listener",
        stream,
        session: Session::listener(config),
    };
    while let Some(event) = peer.next_event()? {
        match event {
            Event::StartRequested(request) => {
                println!("listener: start requested on channel {}", request.channel);
                peer.session
                    .accept_start(request.channel, Profile::new(ECHO))
                    .expect("pending start");
            }
            Event::Message(m) if m.kind == MessageKind::Msg => {
                let text = String::from_utf8_lossy(m.message.body()).into_owned();
                println!("listener: MSG {} {:?}", m.msgno, text);
                if text == "count to three" {
                    for word in ["one", "two", "three"] {
                        peer.session
                            .send_ans(m.channel, m.msgno, Message::new(word))
                            .expect("open request");
                    }
                    peer.session
                        .send_nul(m.channel, m.msgno)
                        .expect("open request");
                } else {
                    peer.session
                        .send_rpy(m.channel, m.msgno, m.message)
                        .expect("open request");
                }
            }
            Event::CloseRequested { channel, .. } => {
                println!("listener: close of channel {channel} requested: agreeing");
                peer.session.accept_close(channel).expect("pending close");
            }
            Event::SessionEnded(_) => break,
            other => println!("listener: {other:?}"),
        }
    }
    peer.flush()?;
    println!("listener: session released");
    Ok(())
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    let server = thread::spawn(move || serve(listener));

    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut client = Peer {
        name: "client",
        stream,
        session: Session::initiator(Config::default()),
    };
    let expect = |client: &mut Peer| -> std::io::Result<Event> {
        client
            .next_event()?
            .ok_or_else(|| std::io::Error::other("session ended early"))
    };

    let Event::Greeting(greeting) = expect(&mut client)? else {
        return Err(std::io::Error::other("expected a greeting"));
    };
    println!("client: listener offers {:?}", greeting.profiles);

    let channel = client
        .session
        .open_channel(vec![Profile::new(ECHO)], Some("localhost".into()))
        .map_err(std::io::Error::other)?;
    if let Event::ChannelOpened { channel, profile } = expect(&mut client)? {
        println!("client: channel {channel} open with {}", profile.uri);
    }

    client
        .session
        .send_msg(channel, Message::new("hello, BEEP"))
        .map_err(std::io::Error::other)?;
    if let Event::Message(reply) = expect(&mut client)? {
        println!(
            "client: {:?} {:?}",
            reply.kind,
            String::from_utf8_lossy(reply.message.body())
        );
    }

    client
        .session
        .send_msg(channel, Message::new("count to three"))
        .map_err(std::io::Error::other)?;
    loop {
        let Event::Message(answer) = expect(&mut client)? else {
            continue;
        };
        println!(
            "client: {:?} {:?}",
            answer.kind,
            String::from_utf8_lossy(answer.message.body())
        );
        if answer.kind == MessageKind::Nul {
            break;
        }
    }

    client
        .session
        .close_channel(channel, ReplyCode::SUCCESS, "done")
        .map_err(std::io::Error::other)?;
    if let Event::ChannelClosed { channel } = expect(&mut client)? {
        println!("client: channel {channel} closed");
    }
    client
        .session
        .close_session(ReplyCode::SUCCESS, "bye")
        .map_err(std::io::Error::other)?;
    if let Event::SessionEnded(SessionEnd::Released) = expect(&mut client)? {
        println!("client: session released");
    }
    server.join().expect("listener thread")?;
    Ok(())
}
