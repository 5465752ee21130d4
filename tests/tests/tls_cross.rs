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
