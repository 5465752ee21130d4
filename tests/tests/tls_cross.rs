//! TLS across drivers (RFC 3080 3.1): a beep-tokio initiator with a
//! beep-blocking listener and the other way round. Both run the same core,
//! so this proves the drivers' byte paths, not two TLS stacks: each side's
//! handshake bytes must leave in reaction to input, on each driver.

mod tls_support;

use std::time::Duration;

use beep_proto::dispatch::TlsAcceptor;
use beep_proto::xml::Profile;
use beep_proto::{Message, tls::TLS_URI};
use tls_support::Pki;

const ECHO: &str = "http://example.org/beep/echo";
const SECRET: &str = "http://example.org/beep/secret";
const T: Duration = Duration::from_secs(10);

/// The test PKI itself: a leaf loads as a listener certificate, a client
/// trusts its CA, and a stranger's CA has another name.
#[test]
fn test_certificates_load() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
    let _server = leaf.server();
    assert_eq!(pki.client("localhost").server_name(), "localhost");
    assert_ne!(Pki::new().ca_pem, pki.ca_pem);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A beep-tokio client starts TLS with a beep-blocking listener, then
/// uses a profile the listener serves only over TLS.
#[test]
fn tokio_initiator_blocking_listener() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let mut registry = beep_blocking::Registry::new();
    let echo = beep_blocking::ProfileHandler::new(|channel, m| {
        let _ = channel.reply_rpy(m.msgno, m.message);
    });
    registry.register(ECHO, echo.clone());
    registry.register_tls_only(SECRET, echo);
    registry.set_tls(TlsAcceptor::new(leaf.server()));
    let listener =
        beep_blocking::Listener::bind("127.0.0.1:0", registry, beep_blocking::Options::default())
            .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let server = std::thread::spawn(move || listener.serve());

    runtime().block_on(async {
        let conn = beep_tokio::Connection::connect(addr, beep_tokio::Options::default())
            .await
            .unwrap();
        assert!(conn.peer_greeting().profiles.contains(&TLS_URI.to_string()));
        let info = conn.start_tls(pki.client("localhost")).await.unwrap();
        assert_eq!(info.peer_certificates[0].as_ref(), &leaf.der[..]);
        assert!(conn.peer_greeting().profiles.contains(&SECRET.to_string()));
        let channel = conn.open_channel(Profile::new(SECRET), None).await.unwrap();
        let body = vec![7u8; 100_000];
        let reply = channel
            .request(Message::new(body.clone()), T)
            .await
            .unwrap();
        assert!(matches!(reply, beep_proto::dispatch::Reply::Rpy(m) if m.body()[..] == body[..]));
        conn.close().await.unwrap();
    });
    stop.shutdown();
    server.join().unwrap().unwrap();
}

/// A beep-blocking client starts TLS with a beep-tokio listener.
#[test]
fn blocking_initiator_tokio_listener() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let rt = runtime();
    let (addr, stop) = rt.block_on(async {
        let mut registry = beep_tokio::Registry::new();
        registry.register(
            ECHO,
            beep_tokio::ProfileHandler::new(|channel, m| async move {
                let _ = channel.reply_rpy(m.msgno, m.message).await;
            }),
        );
        registry.set_tls(TlsAcceptor::new(leaf.server()));
        registry.require_tls(true);
        let listener =
            beep_tokio::Listener::bind("127.0.0.1:0", registry, beep_tokio::Options::default())
                .await
                .unwrap();
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        tokio::spawn(listener.serve());
        (addr, stop)
    });

    let conn = beep_blocking::Connection::connect(addr, beep_blocking::Options::default()).unwrap();
    assert_eq!(conn.peer_greeting().profiles, vec![TLS_URI.to_string()]);
    let info = conn.start_tls(pki.client("localhost")).unwrap();
    assert_eq!(info.peer_certificates[0].as_ref(), &leaf.der[..]);
    assert_eq!(conn.peer_greeting().profiles, vec![ECHO.to_string()]);
    let channel = conn.open_channel(Profile::new(ECHO), None).unwrap();
    let body = vec![9u8; 100_000];
    let reply = channel.request(Message::new(body.clone()), T).unwrap();
    assert!(matches!(reply, beep_proto::dispatch::Reply::Rpy(m) if m.body()[..] == body[..]));
    conn.close().unwrap();
    stop.shutdown();
}

/// What a raw peer does after the listener's `<proceed />`.
#[derive(Clone, Copy, Debug)]
enum AfterProceed {
    /// Nothing: no handshake, no close.
    Silent,
    /// Half a ClientHello (LibVortex's), then it closes.
    HalfHelloThenClose,
}

/// A raw peer that greets, asks for TLS with `<ready />` piggybacked and
/// then does `then`; returns how long after `<proceed />` the listener
/// closed the connection (within `limit`, or an error).
fn raw_tls_peer(
    addr: std::net::SocketAddr,
    then: AfterProceed,
    limit: Duration,
) -> Result<Duration, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(limit)).unwrap();
    let xml = "Content-Type: application/beep+xml\r\n\r\n";
    let greeting = format!("{xml}<greeting />\r\n");
    let start = format!(
        "{xml}<start number='1'><profile uri='{TLS_URI}'><![CDATA[<ready />]]></profile></start>\r\n"
    );
    let script = format!(
        "RPY 0 0 . 0 {}\r\n{greeting}END\r\nMSG 0 0 . {} {}\r\n{start}END\r\n",
        greeting.len(),
        greeting.len(),
        start.len()
    );
    stream.write_all(script.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(11).any(|w| w == b"<proceed />") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "no <proceed />: {}",
                    String::from_utf8_lossy(&seen)
                ));
            }
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    if let AfterProceed::HalfHelloThenClose = then {
        // The first 100 octets of a TLS 1.3 ClientHello record.
        let mut hello = vec![
            0x16, 0x03, 0x01, 0x01, 0x24, 0x01, 0x00, 0x01, 0x20, 0x03, 0x03,
        ];
        hello.resize(100, 0x42);
        stream.write_all(&hello).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let proceeded = std::time::Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(proceeded.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "the listener kept the connection open for {limit:?}"
                ));
            }
            Err(_) => return Ok(proceeded.elapsed()),
        }
    }
}

/// A blocking listener with TLS and a 300 ms greeting timeout, which
/// reports how its connections ended.
fn blocking_tls_listener(
    leaf: &tls_support::Leaf,
) -> (
    std::net::SocketAddr,
    beep_blocking::ShutdownHandle,
    std::sync::mpsc::Receiver<beep_blocking::CloseReason>,
) {
    let mut registry = beep_blocking::Registry::new();
    registry.set_tls(TlsAcceptor::new(leaf.server()));
    let options = beep_blocking::Options {
        greeting_timeout: Duration::from_millis(300),
        ..beep_blocking::Options::default()
    };
    let mut listener = beep_blocking::Listener::bind("127.0.0.1:0", registry, options).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    listener.on_connection_end(move |_, reason| {
        let _ = tx.lock().unwrap().send(reason.clone());
    });
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    std::thread::spawn(move || listener.serve());
    (addr, stop, rx)
}

/// The same with beep-tokio, on `rt`.
fn tokio_tls_listener(
    rt: &tokio::runtime::Runtime,
    leaf: &tls_support::Leaf,
) -> (
    std::net::SocketAddr,
    beep_tokio::ShutdownHandle,
    std::sync::mpsc::Receiver<beep_tokio::CloseReason>,
) {
    rt.block_on(async {
        let mut registry = beep_tokio::Registry::new();
        registry.set_tls(TlsAcceptor::new(leaf.server()));
        let options = beep_tokio::Options {
            greeting_timeout: Duration::from_millis(300),
            ..beep_tokio::Options::default()
        };
        let mut listener = beep_tokio::Listener::bind("127.0.0.1:0", registry, options)
            .await
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        listener.on_connection_end(move |_, reason| {
            let _ = tx.lock().unwrap().send(reason.clone());
        });
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        tokio::spawn(listener.serve());
        (addr, stop, rx)
    })
}

/// RFC 3080 3.1.3.2 and the hostile-peer bound on a TLS handshake: a peer
/// that gets `<proceed />` and never starts its handshake is dropped once
/// the greeting timeout has passed again (the reset restarts it), on both
/// listeners; one that closes in the middle of its ClientHello ends with
/// `TlsError::ClosedDuringHandshake`.
#[test]
fn a_stalled_or_broken_tls_handshake_ends_the_connection() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let rt = runtime();
    let (addr_b, stop_b, ends_b) = blocking_tls_listener(&leaf);
    let (addr_t, stop_t, ends_t) = tokio_tls_listener(&rt, &leaf);
    for (name, addr) in [("blocking", addr_b), ("tokio", addr_t)] {
        let closed = raw_tls_peer(addr, AfterProceed::Silent, Duration::from_secs(5));
        let closed = closed.unwrap_or_else(|e| panic!("{name}: {e}"));
        // 300 ms from the reset (blocking), at most two periods (tokio).
        assert!(closed < Duration::from_secs(2), "{name}: {closed:?}");
        let closed = raw_tls_peer(
            addr,
            AfterProceed::HalfHelloThenClose,
            Duration::from_secs(5),
        );
        closed.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let reasons_b: Vec<String> = (0..2)
        .map(|_| ends_b.recv_timeout(T).unwrap().to_string())
        .collect();
    let reasons_t: Vec<String> = (0..2)
        .map(|_| ends_t.recv_timeout(T).unwrap().to_string())
        .collect();
    for reasons in [&reasons_b, &reasons_t] {
        assert!(
            reasons.iter().any(|r| r.contains("no greeting")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("closed during the TLS handshake")),
            "{reasons:?}"
        );
    }
    stop_b.shutdown();
    stop_t.shutdown();
}
