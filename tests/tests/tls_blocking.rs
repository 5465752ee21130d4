//! The TLS profile (RFC 3080 3.1) with beep-blocking on both sides, over
//! loopback TCP: PyVortex's `vortex.tls` (start_tls, accept handlers,
//! certificate per serverName, profiles offered only over TLS).

mod tls_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use beep_blocking::{
    CertificateProblem, CloseReason, Connection, Error, Listener, Options, ProfileHandler,
    Registry, Reply, ShutdownHandle, TlsAcceptor, TlsError, TlsInfo,
};
use beep_proto::tls::TLS_URI;
use beep_proto::xml::Profile;
use beep_proto::{Config, Message, ReplyCode, UsageError};
use tls_support::Pki;

const ECHO: &str = "http://example.org/beep/echo";
const SECRET: &str = "http://example.org/beep/secret";
const T: Duration = Duration::from_secs(10);

/// A listener served on its own thread, stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
    /// How each served connection ended (`on_connection_end`).
    ends: mpsc::Receiver<CloseReason>,
    /// What the listener's side of each echo channel saw at its first
    /// message: TLS active, and the TLS information.
    seen: mpsc::Receiver<(bool, Option<TlsInfo>)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An echo handler that reports, with each message, what its connection
/// (the listener's side) knows of TLS.
fn echo(seen: mpsc::Sender<(bool, Option<TlsInfo>)>) -> ProfileHandler {
    let seen = Mutex::new(seen);
    ProfileHandler::new(move |channel, m| {
        let conn = channel.connection();
        let _ = seen
            .lock()
            .unwrap()
            .send((conn.is_tls_active(), conn.tls_info()));
        let _ = channel.reply_rpy(m.msgno, m.message);
    })
}

/// Serves `ECHO` (and whatever `setup` adds to the registry).
fn serve(options: Options, setup: impl FnOnce(&mut Registry, &ProfileHandler)) -> Server {
    let (seen_tx, seen) = mpsc::channel();
    let handler = echo(seen_tx);
    let mut registry = Registry::new();
    registry.register(ECHO, handler.clone());
    setup(&mut registry, &handler);
    let mut listener = Listener::bind("127.0.0.1:0", registry, options).unwrap();
    let (end_tx, ends) = mpsc::channel();
    let end_tx = Mutex::new(end_tx);
    listener.on_connection_end(move |_, reason| {
        let _ = end_tx.lock().unwrap().send(reason.clone());
    });
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = Some(std::thread::spawn(move || listener.serve()));
    Server {
        addr,
        stop,
        thread,
        ends,
        seen,
    }
}

/// A listener offering TLS with `acceptor`.
fn serve_tls(acceptor: TlsAcceptor) -> Server {
    serve(Options::default(), |registry, _| {
        registry.set_tls(acceptor);
    })
}

fn connect(addr: SocketAddr) -> Connection {
    Connection::connect(addr, Options::default()).unwrap()
}

/// Opens an echo channel and checks one round trip of `payload`.
fn echo_round_trip(conn: &Connection, uri: &str, payload: Vec<u8>) {
    let channel = conn.open_channel(Profile::new(uri), None).unwrap();
    match channel.request(Message::new(payload.clone()), T).unwrap() {
        Reply::Rpy(reply) => assert!(reply.body() == &payload[..], "echoed intact"),
        other => panic!("expected RPY, got {other:?}"),
    }
    channel.close().unwrap();
}

/// Copies `from` to `to` until EOF, recording what passed in `record`
/// and, with `trickle`, writing it in pieces of that many octets a
/// millisecond apart (a slow link: TLS records and greetings then arrive
/// in separate reads).
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    record: Option<Arc<Mutex<Vec<u8>>>>,
    trickle: Option<usize>,
) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if let Some(record) = &record {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let piece = trickle.unwrap_or(n);
            for chunk in buf[..n].chunks(piece) {
                if to.write_all(chunk).is_err() {
                    return;
                }
                if trickle.is_some() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// A TCP relay to `to` for one connection, recording what the client
/// sends (what went over the wire), and passing the listener's bytes on
/// in pieces of `trickle` octets when it is set.
fn relay(to: SocketAddr, trickle: Option<usize>) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let record = recorded.clone();
    std::thread::spawn(move || {
        let (client, _) = socket.accept().unwrap();
        let server = TcpStream::connect(to).unwrap();
        let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        pump(c, s, Some(record), None);
        pump(server, client, None, trickle);
    });
    (addr, recorded)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// start_tls, then a 200 KB echo over TLS: both sides report TLS with the
/// same version and suite; the initiator sees the listener's leaf, the
/// listener the name asked for; the new greeting (RFC 3080 3.1.3.2) no
/// longer offers TLS; and the payload never crossed the wire in plain.
#[test]
fn start_tls_then_a_large_echo_runs_encrypted_with_tls_info_on_both_sides() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
    let server = serve_tls(TlsAcceptor::new(leaf.server()));
    let (addr, wire) = relay(server.addr, None);
    let conn = connect(addr);
    assert!(conn.peer_greeting().profiles.contains(&TLS_URI.to_string()));
    assert!(!conn.is_tls_active());
    assert_eq!(conn.tls_info(), None);

    let info = conn.start_tls(pki.client("localhost")).unwrap();
    assert_eq!(info.peer_certificates.len(), 1);
    assert_eq!(info.peer_certificates[0].as_ref(), &leaf.der[..]);
    assert!(info.protocol_version.is_some());
    assert!(info.cipher_suite.is_some());
    assert!(conn.is_tls_active());
    assert_eq!(conn.tls_info(), Some(info.clone()));
    // start_tls returns once the peer greeted again, over TLS.
    let profiles = conn.peer_greeting().profiles;
    assert!(profiles.contains(&ECHO.to_string()), "{profiles:?}");
    assert!(!profiles.contains(&TLS_URI.to_string()), "{profiles:?}");

    let payload: Vec<u8> = b"secret-payload-"
        .iter()
        .copied()
        .cycle()
        .take(200_000)
        .collect();
    echo_round_trip(&conn, ECHO, payload);

    let (active, theirs) = server.seen.recv_timeout(T).unwrap();
    assert!(active, "the listener's connection reports TLS");
    let theirs = theirs.expect("the listener's connection has TLS information");
    assert!(theirs.peer_certificates.is_empty(), "no client certificate");
    assert_eq!(theirs.protocol_version, info.protocol_version);
    assert_eq!(theirs.cipher_suite, info.cipher_suite);
    assert_eq!(theirs.server_name.as_deref(), Some("localhost"));

    conn.close().unwrap();
    assert_eq!(conn.wait_closed(T), Some(CloseReason::Released));
    let wire = wire.lock().unwrap().clone();
    assert!(contains(&wire, b"<ready"), "the request went in plain");
    assert!(wire.len() > 200_000, "the payload went through the relay");
    assert!(
        !contains(&wire, b"secret-payload-"),
        "the payload never crossed the wire in plain"
    );
}

/// start_tls_with: the callback runs on the connection's dispatcher with
/// the TLS information, once the peer greeted again.
#[test]
fn start_tls_with_calls_back_on_the_dispatcher() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
    let server = serve_tls(TlsAcceptor::new(leaf.server()));
    let conn = connect(server.addr);
    let (tx, rx) = mpsc::channel();
    let watched = conn.clone();
    conn.start_tls_with(pki.client("127.0.0.1"), move |result| {
        let thread = std::thread::current().name().map(str::to_owned);
        let greeting = watched.peer_greeting().profiles;
        let _ = tx.send((result, thread, greeting));
    })
    .unwrap();
    let (result, thread, greeting) = rx.recv_timeout(T).expect("the callback ran");
    let info = result.unwrap();
    assert_eq!(info.peer_certificates[0].as_ref(), &leaf.der[..]);
    assert!(info.protocol_version.is_some());
    assert!(
        thread
            .as_deref()
            .is_some_and(|t| t.starts_with("beep-work")),
        "{thread:?}"
    );
    assert!(greeting.contains(&ECHO.to_string()), "{greeting:?}");
    assert_eq!(conn.tls_info(), Some(info));
    echo_round_trip(&conn, ECHO, b"over TLS".to_vec());
    let (active, _) = server.seen.recv_timeout(T).unwrap();
    assert!(active);
    // Asked again, once active: refused at once, nothing sent.
    let again = conn.start_tls_with(pki.client("127.0.0.1"), |_| panic!("not called"));
    assert!(
        matches!(
            again,
            Err(Error::Usage(UsageError::TuningNotPossible { .. }))
        ),
        "{again:?}"
    );
    conn.close().unwrap();
}

/// A listener whose acceptor says no refuses with 550, and a listener
/// without TLS does not offer it (the request is not even sent): either
/// way the connection goes on in plain.
#[test]
fn a_listener_without_tls_refuses_and_the_connection_stays_plain() {
    let refusing = serve_tls(TlsAcceptor::with(|_| None));
    let conn = connect(refusing.addr);
    let pki = Pki::new();
    for _ in 0..2 {
        match conn.start_tls(pki.client("localhost")) {
            Err(Error::Refused { code, .. }) => {
                assert_eq!(code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(conn.is_ok());
        assert!(!conn.is_tls_active());
        assert_eq!(conn.tls_info(), None);
        echo_round_trip(&conn, ECHO, b"in plain".to_vec());
        let (active, info) = refusing.seen.recv_timeout(T).unwrap();
        assert!(!active && info.is_none());
    }
    conn.close().unwrap();

    let plain = serve(Options::default(), |_, _| {});
    let conn = connect(plain.addr);
    assert!(!conn.peer_greeting().profiles.contains(&TLS_URI.to_string()));
    let result = conn.start_tls(pki.client("localhost"));
    assert!(
        matches!(
            result,
            Err(Error::Usage(UsageError::TuningNotPossible { .. }))
        ),
        "{result:?}"
    );
    assert!(conn.is_ok() && !conn.is_tls_active());
    echo_round_trip(&conn, ECHO, b"still plain".to_vec());
    conn.close().unwrap();
}

/// The listener's certificate names another host: the handshake fails
/// with NotValidForName, which ends the connection on both sides.
#[test]
fn a_certificate_for_another_name_fails_the_handshake() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["elsewhere.example"]);
    let server = serve_tls(TlsAcceptor::new(leaf.server()));
    let conn = connect(server.addr);
    let expected = CloseReason::Tls(TlsError::Certificate(CertificateProblem::NotValidForName));
    match conn.start_tls(pki.client("localhost")) {
        Err(Error::Closed(reason)) => assert_eq!(reason, expected),
        other => panic!("{other:?}"),
    }
    assert!(!conn.is_ok());
    assert_eq!(conn.wait_closed(T), Some(expected));
    // Our alert told the listener why (it goes out before the close).
    let theirs = server.ends.recv_timeout(T).expect("the listener ended");
    assert_eq!(
        theirs,
        CloseReason::Tls(TlsError::Alert("BadCertificate".into()))
    );
}

/// A certificate from a CA the client does not trust: UnknownIssuer.
#[test]
fn an_untrusted_authority_fails_the_handshake() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve_tls(TlsAcceptor::new(leaf.server()));
    let conn = connect(server.addr);
    let stranger = Pki::new();
    match conn.start_tls(stranger.client("localhost")) {
        Err(Error::Closed(CloseReason::Tls(TlsError::Certificate(problem)))) => {
            assert_eq!(problem, CertificateProblem::UnknownIssuer)
        }
        other => panic!("{other:?}"),
    }
    assert!(conn.wait_closed(T).is_some());
    let theirs = server.ends.recv_timeout(T).expect("the listener ended");
    assert_eq!(
        theirs,
        CloseReason::Tls(TlsError::Alert("UnknownCA".into()))
    );
}

/// The serverName chooses the certificate (RFC 3080 2.3.1.2): each client
/// sees the leaf of the name it asked for, the listener the name; a name
/// with no certificate (and no default) is refused.
#[test]
fn the_server_name_chooses_the_certificate() {
    let pki = Pki::new();
    let a = pki.leaf(&["a.localhost"]);
    let b = pki.leaf(&["b.localhost"]);
    let acceptor = TlsAcceptor::by_server_name(
        [
            ("a.localhost".to_string(), a.server()),
            ("b.localhost".to_string(), b.server()),
        ],
        None,
    );
    let server = serve_tls(acceptor);
    for (name, leaf) in [("a.localhost", &a), ("b.localhost", &b)] {
        let conn = connect(server.addr);
        let info = conn.start_tls(pki.client(name)).unwrap();
        assert_eq!(info.peer_certificates[0].as_ref(), &leaf.der[..], "{name}");
        echo_round_trip(&conn, ECHO, name.as_bytes().to_vec());
        let (_, theirs) = server.seen.recv_timeout(T).unwrap();
        assert_eq!(theirs.unwrap().server_name.as_deref(), Some(name));
        conn.close().unwrap();
    }
    let conn = connect(server.addr);
    let result = conn.start_tls(pki.client("c.localhost"));
    assert!(matches!(result, Err(Error::Refused { .. })), "{result:?}");
    assert!(conn.is_ok());
    conn.close().unwrap();
}

/// A profile served only over TLS: not in the first greeting, its start
/// refused with 538; advertised in the greeting over TLS, and served.
#[test]
fn a_tls_only_profile_is_advertised_and_served_only_over_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve(Options::default(), |registry, handler| {
        registry
            .set_tls(TlsAcceptor::new(leaf.server()))
            .register_tls_only(SECRET, handler.clone());
    });
    let conn = connect(server.addr);
    let before = conn.peer_greeting().profiles;
    assert_eq!(before, vec![ECHO.to_string(), TLS_URI.to_string()]);
    match conn.open_channel(Profile::new(SECRET), None) {
        Err(Error::Refused { code, .. }) => {
            assert_eq!(code, ReplyCode::MECHANISM_REQUIRES_ENCRYPTION);
            assert_eq!(code.get(), 538);
        }
        other => panic!("expected 538, got {other:?}"),
    }
    conn.start_tls(pki.client("localhost")).unwrap();
    let after = conn.peer_greeting().profiles;
    assert_eq!(after, vec![ECHO.to_string(), SECRET.to_string()]);
    echo_round_trip(&conn, SECRET, b"for TLS eyes only".to_vec());
    let (active, _) = server.seen.recv_timeout(T).unwrap();
    assert!(active);
    conn.close().unwrap();
}

/// require_tls: only TLS is advertised and nothing else starts before
/// it; after it every profile is served.
#[test]
fn require_tls_serves_nothing_in_plain() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve(Options::default(), |registry, _| {
        registry
            .set_tls(TlsAcceptor::new(leaf.server()))
            .require_tls(true);
    });
    let conn = connect(server.addr);
    assert_eq!(conn.peer_greeting().profiles, vec![TLS_URI.to_string()]);
    match conn.open_channel(Profile::new(ECHO), None) {
        Err(Error::Refused { code, .. }) => {
            assert_eq!(code, ReplyCode::MECHANISM_REQUIRES_ENCRYPTION)
        }
        other => panic!("expected 538, got {other:?}"),
    }
    conn.start_tls(pki.client("localhost")).unwrap();
    assert_eq!(conn.peer_greeting().profiles, vec![ECHO.to_string()]);
    echo_round_trip(&conn, ECHO, b"now it may".to_vec());
    conn.close().unwrap();
}

/// TLS is an initial tuning (RFC 3080 3): with a data channel open it is
/// refused at once and nothing changes; once the channel is closed it
/// goes ahead.
#[test]
fn start_tls_with_an_open_channel_is_a_usage_error() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve_tls(TlsAcceptor::new(leaf.server()));
    let conn = connect(server.addr);
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let result = conn.start_tls(pki.client("localhost"));
    assert!(
        matches!(
            result,
            Err(Error::Usage(UsageError::TuningNotPossible { .. }))
        ),
        "{result:?}"
    );
    assert!(!conn.is_tls_active());
    match channel.request(Message::new("still here"), T).unwrap() {
        Reply::Rpy(m) => assert_eq!(&m.body()[..], b"still here"),
        other => panic!("{other:?}"),
    }
    channel.close().unwrap();
    conn.start_tls(pki.client("localhost")).unwrap();
    assert!(conn.is_tls_active());
    conn.close().unwrap();
}

/// One BEEP frame as the initiator's channel 0 sends it.
fn frame(kind: &str, msgno: u32, seqno: usize, xml: &str) -> (Vec<u8>, usize) {
    let payload = format!("Content-Type: application/beep+xml\r\n\r\n{xml}\r\n");
    let header = format!("{kind} 0 {msgno} . {seqno} {}\r\n", payload.len());
    let bytes = [header.as_bytes(), payload.as_bytes(), b"END\r\n"].concat();
    (bytes, payload.len())
}

/// Reads until `pattern` was seen; false on EOF or timeout.
fn read_until(stream: &mut TcpStream, pattern: &[u8]) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !contains(&seen, pattern) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A peer that asks for TLS by hand, then sends garbage where the TLS
/// handshake belongs: the listener ends that connection with a TLS
/// failure (closing the socket; nothing hangs) and keeps serving others.
#[test]
fn garbage_after_proceed_ends_that_connection_and_the_listener_goes_on() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve_tls(TlsAcceptor::new(leaf.server()));

    let mut raw = TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(T)).unwrap();
    assert!(read_until(&mut raw, b"</greeting>"), "the listener greets");
    let (greeting, len) = frame("RPY", 0, 0, "<greeting />");
    let start = "<start number='1' serverName='localhost'><profile uri='http://iana.org/beep/TLS'><![CDATA[<ready />]]></profile></start>";
    let (start, _) = frame("MSG", 0, len, start);
    raw.write_all(&[greeting, start].concat()).unwrap();
    assert!(read_until(&mut raw, b"proceed"), "the listener proceeds");
    let started = Instant::now();
    let junk = b"this is not a TLS record at all\r\n".repeat(128);
    // The listener may close while we write: only the outcome matters.
    let _ = raw.write_all(&junk);
    let mut buf = [0u8; 4096];
    let mut answer = Vec::new();
    loop {
        match raw.read(&mut buf) {
            // Its alert, then the end.
            Ok(n @ 1..) => answer.extend_from_slice(&buf[..n]),
            Ok(0) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the listener kept the connection open")
            }
            Err(_) => break,
        }
    }
    assert!(started.elapsed() < T);
    // A TLS alert record (content type 21) said why, unless the kernel
    // reset the connection first (our junk may be left unread).
    if let Some(&kind) = answer.first() {
        assert_eq!(kind, 21, "{answer:?}");
    }
    let reason = server.ends.recv_timeout(T).expect("the connection ended");
    assert!(
        matches!(reason, CloseReason::Tls(TlsError::Protocol(_))),
        "{reason:?}"
    );

    // Others are served, over TLS too.
    let conn = connect(server.addr);
    conn.start_tls(pki.client("localhost")).unwrap();
    echo_round_trip(&conn, ECHO, b"after the garbage".to_vec());
    conn.close().unwrap();
}

/// The listener's options still apply to TLS sessions: a small window
/// and frame size carry a message many times their size over TLS.
#[test]
fn small_windows_carry_a_large_message_over_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let small = Options {
        config: Config {
            receive_window: 4096,
            max_receive_window: 4096,
            ..Config::default()
        },
        ..Options::default()
    };
    let server = serve(small.clone(), |registry, _| {
        registry.set_tls(TlsAcceptor::new(leaf.server()));
    });
    let conn = Connection::connect(server.addr, small).unwrap();
    conn.start_tls(pki.client("localhost")).unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    echo_round_trip(&conn, ECHO, payload);
    conn.close().unwrap();
}

/// Over a slow link that splits every record (the handshake's, the new
/// greeting's) into separate reads, both start_tls and start_tls_with
/// still wait for the handshake and the greeting that follows it.
#[test]
fn start_tls_waits_for_the_new_greeting_over_a_slow_link() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve_tls(TlsAcceptor::new(leaf.server()));

    let (slow, _) = relay(server.addr, Some(64));
    let conn = connect(slow);
    let info = conn.start_tls(pki.client("localhost")).unwrap();
    assert_eq!(info.peer_certificates[0].as_ref(), &leaf.der[..]);
    assert_eq!(conn.peer_greeting().profiles, vec![ECHO.to_string()]);
    echo_round_trip(&conn, ECHO, vec![7u8; 20_000]);
    conn.close().unwrap();

    let (slow, _) = relay(server.addr, Some(64));
    let conn = connect(slow);
    let (tx, rx) = mpsc::channel();
    let watched = conn.clone();
    conn.start_tls_with(pki.client("localhost"), move |result| {
        let _ = tx.send((result, watched.peer_greeting().profiles));
    })
    .unwrap();
    let (result, greeting) = rx.recv_timeout(T).expect("the callback ran");
    assert_eq!(result.unwrap().peer_certificates[0].as_ref(), &leaf.der[..]);
    assert_eq!(greeting, vec![ECHO.to_string()]);
    echo_round_trip(&conn, ECHO, vec![9u8; 20_000]);
    conn.close().unwrap();
}
