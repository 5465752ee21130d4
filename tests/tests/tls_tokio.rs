//! beep-tokio's TLS (RFC 3080 3.1, PyVortex `vortex.tls`) over loopback
//! TCP: beep-tokio initiators against beep-tokio listeners, with
//! certificates generated at test time. Every scenario runs twice: on
//! tokio and on async-std.

mod async_support;
mod tls_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_support::{ECHO, Env, T, body};
use beep_proto::tls::{CertificateProblem, TLS_URI};
use beep_proto::xml::Profile;
use beep_proto::{Message, ReplyCode, UsageError};
use beep_tokio::{
    CloseReason, Connection, Error, Listener, ProfileHandler, Registry, ShutdownHandle,
    TlsAcceptor, TlsClient, TlsError, TlsInfo,
};
use futures_channel::oneshot;
use futures_util::future::{RemoteHandle, join_all};
use tls_support::Pki;

on_both_runtimes!(
    start_tls_then_a_large_echo_with_tls_info_on_both_sides,
    start_tls_with_calls_back_once_tls_is_active,
    a_listener_refusing_tls_leaves_the_session_plain,
    a_certificate_for_another_name_ends_the_connection_with_a_typed_error,
    a_certificate_from_an_untrusted_ca_ends_the_connection_with_a_typed_error,
    the_listener_presents_the_certificate_of_the_server_name_asked_for,
    a_tls_only_profile_is_offered_and_served_only_after_tls,
    a_listener_requiring_tls_serves_nothing_else_before_it,
    start_tls_with_a_channel_open_is_a_usage_error,
    junk_after_proceed_ends_that_connection_and_the_listener_serves_on,
    eight_concurrent_tls_connections_each_echo,
);

/// A profile served only over TLS.
const SECRET: &str = "http://example.org/beep/secret";

/// What the listener's echo handlers saw: the TLS state of the
/// connection each message came on.
type Seen = Arc<Mutex<Vec<Option<TlsInfo>>>>;

/// Echoes, noting the connection's TLS state first.
fn echo(seen: &Seen) -> ProfileHandler {
    let seen = seen.clone();
    ProfileHandler::new(move |channel, m| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(channel.connection().tls_info());
            let _ = channel.reply_rpy(m.msgno, m.message).await;
        }
    })
}

/// A beep-tokio listener on loopback serving [`ECHO`], configured further
/// by the scenario.
struct Served {
    addr: SocketAddr,
    stop: ShutdownHandle,
    serving: Option<RemoteHandle<Result<(), Error>>>,
    seen: Seen,
    /// Why each served connection ended.
    ends: Arc<Mutex<Vec<CloseReason>>>,
}

async fn serve(env: &Env, configure: impl FnOnce(&mut Registry, &Seen)) -> Served {
    let seen = Seen::default();
    let mut registry = Registry::new();
    registry.register(ECHO, echo(&seen));
    configure(&mut registry, &seen);
    let mut listener = Listener::bind("127.0.0.1:0", registry, env.options())
        .await
        .unwrap();
    let ends: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let noted = ends.clone();
    listener.on_connection_end(move |_, reason| noted.lock().unwrap().push(reason.clone()));
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let serving = Some(env.spawn(listener.serve()));
    Served {
        addr,
        stop,
        serving,
        seen,
        ends,
    }
}

/// A listener offering TLS with one certificate for every request.
async fn serve_tls(env: &Env, leaf: &tls_support::Leaf) -> Served {
    let server = leaf.server();
    serve(env, |r, _| {
        r.set_tls(TlsAcceptor::new(server));
    })
    .await
}

impl Served {
    /// Stops the listener and waits until it has released its sessions.
    async fn stop(mut self, env: &Env) {
        self.stop.shutdown();
        if let Some(serving) = self.serving.take() {
            env.within(T * 2, "listener shutdown", serving)
                .await
                .unwrap();
        }
    }

    /// The TLS state of the connection the last echoed message came on.
    fn last_seen(&self) -> Option<TlsInfo> {
        let seen = self.seen.lock().unwrap();
        seen.last().cloned().expect("the listener echoed a message")
    }

    /// Waits until a served connection has ended in a way `wanted` likes;
    /// returns that reason.
    async fn ended(&self, env: &Env, wanted: impl Fn(&CloseReason) -> bool) -> CloseReason {
        let found = async {
            loop {
                let ends = self.ends.lock().unwrap().clone();
                if let Some(reason) = ends.into_iter().find(&wanted) {
                    return reason;
                }
                env.sleep(Duration::from_millis(10)).await;
            }
        };
        env.within(T, "the listener's connection end", found).await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(serving) = self.serving.take() {
            serving.forget();
        }
    }
}

async fn connect(env: &Env, addr: SocketAddr) -> Connection {
    env.within(T, "connect", Connection::connect(addr, env.options()))
        .await
        .unwrap()
}

async fn start_tls(env: &Env, conn: &Connection, client: TlsClient) -> Result<TlsInfo, Error> {
    env.within(T, "start_tls", conn.start_tls(client)).await
}

/// Opens `profile` and has `payload` echoed on it.
async fn echo_on(env: &Env, conn: &Connection, profile: &str, payload: Vec<u8>) {
    let channel = env
        .within(
            T,
            "open_channel",
            conn.open_channel(Profile::new(profile), None),
        )
        .await
        .unwrap();
    let request = channel.request(Message::new(payload.clone()), T);
    let reply = env.within(T, "request", request).await.unwrap();
    assert_eq!(body(reply), payload, "echoed on {profile}");
}

async fn close(env: &Env, conn: Connection) {
    env.within(T, "close", conn.close()).await.unwrap();
}

fn uris(list: &[&str]) -> Vec<String> {
    list.iter().map(|u| u.to_string()).collect()
}

fn leaf_of(info: &TlsInfo) -> &[u8] {
    info.peer_certificates
        .first()
        .expect("the listener presented a certificate")
        .as_ref()
}

/// RFC 3080 3.1: `start_tls` returns once the handshake is over and the
/// listener has greeted again over TLS; a 200 KB message then goes both
/// ways encrypted, and each end reports what the handshake settled.
async fn start_tls_then_a_large_echo_with_tls_info_on_both_sides(env: Env) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
    let server = serve_tls(&env, &leaf).await;
    let conn = connect(&env, server.addr).await;
    assert_eq!(conn.peer_greeting().profiles, uris(&[ECHO, TLS_URI]));
    assert!(!conn.is_tls_active());
    assert_eq!(conn.tls_info(), None);

    let info = start_tls(&env, &conn, pki.client("localhost"))
        .await
        .unwrap();
    assert_eq!(leaf_of(&info), &leaf.der[..]);
    assert!(info.protocol_version.is_some() && info.cipher_suite.is_some());
    assert!(conn.is_tls_active());
    assert_eq!(conn.tls_info().as_ref(), Some(&info));
    // The greeting after the reset came with it, without TLS (RFC 3080 3).
    assert_eq!(conn.peer_greeting().profiles, uris(&[ECHO]));
    let again = conn.start_tls(pki.client("localhost")).await;
    assert!(
        matches!(
            again,
            Err(Error::Usage(UsageError::TuningNotPossible { .. }))
        ),
        "{again:?}"
    );

    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    echo_on(&env, &conn, ECHO, payload).await;
    let theirs = server
        .last_seen()
        .expect("the listener's connection is under TLS");
    assert!(
        theirs.peer_certificates.is_empty(),
        "the initiator presents no certificate"
    );
    assert_eq!(theirs.server_name.as_deref(), Some("localhost"), "by SNI");
    assert_eq!(
        (theirs.protocol_version, theirs.cipher_suite),
        (info.protocol_version, info.cipher_suite)
    );
    close(&env, conn).await;
    server.stop(&env).await;
}

/// PyVortex `enable_tls` with `tls_notify`: `start_tls_with` returns at
/// once and its callback gets the outcome once TLS is active and the
/// peer's new greeting is in.
async fn start_tls_with_calls_back_once_tls_is_active(env: Env) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve_tls(&env, &leaf).await;
    let conn = connect(&env, server.addr).await;
    let (tx, rx) = oneshot::channel();
    let seen_by_callback = conn.clone();
    conn.start_tls_with(pki.client("localhost"), move |result| {
        let state = (
            seen_by_callback.is_tls_active(),
            seen_by_callback.peer_greeting().profiles,
        );
        let _ = tx.send((result, state));
    })
    .unwrap();
    let (result, (active, greeting)) = env.within(T, "tls callback", rx).await.unwrap();
    let info = result.unwrap();
    assert_eq!(leaf_of(&info), &leaf.der[..]);
    assert!(active, "TLS is active when the callback runs");
    assert_eq!(greeting, uris(&[ECHO]), "the greeting over TLS is in");
    assert_eq!(conn.tls_info(), Some(info));
    echo_on(&env, &conn, ECHO, b"over TLS".to_vec()).await;
    assert!(server.last_seen().is_some());
    close(&env, conn).await;
    server.stop(&env).await;
}

/// RFC 3080 3.1.3.2: a refusal leaves the session as it was, in plain;
/// both calls report it as [`Error::Refused`]. A listener that does not
/// offer TLS at all is not asked: the call fails at once.
async fn a_listener_refusing_tls_leaves_the_session_plain(env: Env) {
    let pki = Pki::new();
    let server = serve(&env, |r, _| {
        r.set_tls(TlsAcceptor::with(|_request| None));
    })
    .await;
    let conn = connect(&env, server.addr).await;
    let refused = start_tls(&env, &conn, pki.client("localhost")).await;
    assert!(
        matches!(&refused, Err(Error::Refused { code, .. }) if *code == ReplyCode::REQUESTED_ACTION_NOT_TAKEN),
        "{refused:?}"
    );
    assert!(conn.is_ok() && !conn.is_tls_active() && conn.tls_info().is_none());
    echo_on(&env, &conn, ECHO, b"still plain".to_vec()).await;
    assert_eq!(server.last_seen(), None);

    // The same through the callback (a fresh connection: the echo channel
    // above is still open).
    let conn = {
        close(&env, conn).await;
        connect(&env, server.addr).await
    };
    let (tx, rx) = oneshot::channel();
    conn.start_tls_with(pki.client("localhost"), move |result| {
        let _ = tx.send(result);
    })
    .unwrap();
    let refused = env.within(T, "tls callback", rx).await.unwrap();
    assert!(matches!(refused, Err(Error::Refused { .. })), "{refused:?}");
    echo_on(&env, &conn, ECHO, b"plain again".to_vec()).await;
    close(&env, conn).await;
    server.stop(&env).await;

    let plain = serve(&env, |_, _| {}).await;
    let conn = connect(&env, plain.addr).await;
    assert_eq!(conn.peer_greeting().profiles, uris(&[ECHO]));
    let not_offered = conn.start_tls(pki.client("localhost")).await;
    assert!(
        matches!(
            not_offered,
            Err(Error::Usage(UsageError::TuningNotPossible { .. }))
        ),
        "{not_offered:?}"
    );
    echo_on(&env, &conn, ECHO, b"plain".to_vec()).await;
    close(&env, conn).await;
    plain.stop(&env).await;
}

/// A failed handshake ends the connection with a typed reason; the
/// listener, told by the initiator's alert, ends its side for TLS too
/// and serves on.
async fn failed_handshake(
    env: &Env,
    client: impl FnOnce(&Pki) -> TlsClient,
    problem: CertificateProblem,
) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
    let server = serve_tls(env, &leaf).await;
    let conn = connect(env, server.addr).await;
    let client = client(&pki);
    let expected = CloseReason::Tls(TlsError::Certificate(problem));
    let result = start_tls(env, &conn, client).await;
    assert!(
        matches!(&result, Err(Error::Closed(reason)) if *reason == expected),
        "{result:?}"
    );
    let reason = env.within(T, "wait_closed", conn.wait_closed()).await;
    assert_eq!(reason, expected);
    assert!(!conn.is_ok());
    // The alert rustls wrote was flushed before the connection closed.
    let theirs = server
        .ended(env, |r| matches!(r, CloseReason::Tls(_)))
        .await;
    assert!(
        matches!(theirs, CloseReason::Tls(TlsError::Alert(_))),
        "{theirs:?}"
    );
    let other = connect(env, server.addr).await;
    let info = start_tls(env, &other, pki.client("localhost")).await;
    assert_eq!(leaf_of(&info.unwrap()), &leaf.der[..]);
    close(env, other).await;
    server.stop(env).await;
}

async fn a_certificate_for_another_name_ends_the_connection_with_a_typed_error(env: Env) {
    // The right CA, a name the leaf lacks.
    let wrong_name = |pki: &Pki| pki.client("wrong.example");
    failed_handshake(&env, wrong_name, CertificateProblem::NotValidForName).await;
}

async fn a_certificate_from_an_untrusted_ca_ends_the_connection_with_a_typed_error(env: Env) {
    // The right name, a stranger's CA.
    let stranger = |_: &Pki| Pki::new().client("localhost");
    failed_handshake(&env, stranger, CertificateProblem::UnknownIssuer).await;
}

/// RFC 3080 2.3.1.2: the `serverName` of the TLS start selects the
/// certificate. The initiator connects to 127.0.0.1 each time: only the
/// name it asks for (serverName and SNI) tells the two apart.
async fn the_listener_presents_the_certificate_of_the_server_name_asked_for(env: Env) {
    let pki = Pki::new();
    let a = pki.leaf(&["a.localhost"]);
    let b = pki.leaf(&["b.localhost"]);
    let servers = [
        ("a.localhost".to_string(), a.server()),
        ("b.localhost".to_string(), b.server()),
    ];
    let server = serve(&env, |r, _| {
        r.set_tls(TlsAcceptor::by_server_name(servers, None));
    })
    .await;
    for (name, leaf) in [("a.localhost", &a), ("b.localhost", &b)] {
        let conn = connect(&env, server.addr).await;
        let info = start_tls(&env, &conn, pki.client(name)).await.unwrap();
        assert_eq!(leaf_of(&info), &leaf.der[..], "{name}");
        echo_on(&env, &conn, ECHO, name.as_bytes().to_vec()).await;
        let theirs = server.last_seen().expect("under TLS");
        assert_eq!(theirs.server_name.as_deref(), Some(name));
        close(&env, conn).await;
    }
    // A name without a certificate, and no default: refused.
    let conn = connect(&env, server.addr).await;
    let refused = start_tls(&env, &conn, pki.client("c.localhost")).await;
    assert!(matches!(refused, Err(Error::Refused { .. })), "{refused:?}");
    echo_on(&env, &conn, ECHO, b"plain".to_vec()).await;
    close(&env, conn).await;
    server.stop(&env).await;
}

/// RFC 3080 3: a profile registered for TLS only is neither advertised
/// nor startable (538) before TLS, and both after it.
async fn a_tls_only_profile_is_offered_and_served_only_after_tls(env: Env) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let tls = leaf.server();
    let server = serve(&env, |r, seen| {
        r.register_tls_only(SECRET, echo(seen))
            .set_tls(TlsAcceptor::new(tls));
    })
    .await;
    let conn = connect(&env, server.addr).await;
    assert_eq!(conn.peer_greeting().profiles, uris(&[ECHO, TLS_URI]));
    let open = conn.open_channel(Profile::new(SECRET), None);
    let refused = env.within(T, "open_channel", open).await;
    assert!(
        matches!(&refused, Err(Error::Refused { code, .. }) if *code == ReplyCode::MECHANISM_REQUIRES_ENCRYPTION),
        "{refused:?}"
    );
    start_tls(&env, &conn, pki.client("localhost"))
        .await
        .unwrap();
    assert_eq!(conn.peer_greeting().profiles, uris(&[ECHO, SECRET]));
    echo_on(&env, &conn, SECRET, b"for your eyes only".to_vec()).await;
    assert!(server.last_seen().is_some());
    close(&env, conn).await;
    server.stop(&env).await;
}

/// RFC 3080 3.1: a listener requiring TLS offers only TLS before it and
/// refuses every other start (538); over TLS it serves its profiles.
async fn a_listener_requiring_tls_serves_nothing_else_before_it(env: Env) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let tls = leaf.server();
    let server = serve(&env, |r, _| {
        r.set_tls(TlsAcceptor::new(tls)).require_tls(true);
    })
    .await;
    let conn = connect(&env, server.addr).await;
    assert_eq!(conn.peer_greeting().profiles, uris(&[TLS_URI]));
    let open = conn.open_channel(Profile::new(ECHO), None);
    let refused = env.within(T, "open_channel", open).await;
    assert!(
        matches!(&refused, Err(Error::Refused { code, .. }) if *code == ReplyCode::MECHANISM_REQUIRES_ENCRYPTION),
        "{refused:?}"
    );
    start_tls(&env, &conn, pki.client("localhost"))
        .await
        .unwrap();
    assert_eq!(conn.peer_greeting().profiles, uris(&[ECHO]));
    echo_on(&env, &conn, ECHO, b"now".to_vec()).await;
    close(&env, conn).await;
    server.stop(&env).await;
}

/// RFC 3080 3: TLS is an initial tuning, it would close every channel;
/// with one open, `start_tls` is refused at once and nothing changes.
async fn start_tls_with_a_channel_open_is_a_usage_error(env: Env) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve_tls(&env, &leaf).await;
    let conn = connect(&env, server.addr).await;
    let open = conn.open_channel(Profile::new(ECHO), None);
    let channel = env.within(T, "open_channel", open).await.unwrap();
    let result = conn.start_tls(pki.client("localhost")).await;
    assert!(
        matches!(
            result,
            Err(Error::Usage(UsageError::TuningNotPossible { .. }))
        ),
        "{result:?}"
    );
    let callback = conn.start_tls_with(pki.client("localhost"), |_| {
        panic!("not called when refused at once")
    });
    assert!(matches!(callback, Err(Error::Usage(_))), "{callback:?}");
    assert!(!conn.is_tls_active());
    let request = channel.request(Message::new("still here"), T);
    let reply = env.within(T, "request", request).await.unwrap();
    assert_eq!(body(reply), b"still here");
    // Once the channel is closed, TLS may begin.
    env.within(T, "channel close", channel.close())
        .await
        .unwrap();
    start_tls(&env, &conn, pki.client("localhost"))
        .await
        .unwrap();
    echo_on(&env, &conn, ECHO, b"over TLS".to_vec()).await;
    close(&env, conn).await;
    server.stop(&env).await;
}

/// Reads from `stream` until `pattern` has been seen; false on EOF, an
/// error or the read timeout.
fn read_until_seen(stream: &mut TcpStream, pattern: &[u8]) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(pattern.len()).any(|w| w == pattern) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A hand-written initiator: greets, asks for TLS with `<ready />`
/// piggybacked (as LibVortex does), and after `<proceed />` writes bytes
/// that are no TLS record. Returns how long the listener took to close
/// the connection after that, or why it did not.
fn junk_after_proceed(addr: SocketAddr) -> Result<Duration, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if !read_until_seen(&mut stream, b"</greeting>") {
        return Err("no greeting".into());
    }
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
    if !read_until_seen(&mut stream, b"<proceed />") {
        return Err("no <proceed />".into());
    }
    // Not a TLS record: 0xff is no content type.
    stream.write_all(&[0xff; 64]).map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            // The listener's alert, then the end.
            Ok(0) => return Ok(sent.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("the listener kept the connection open".into());
            }
            // A reset ends it too.
            Err(_) => return Ok(sent.elapsed()),
        }
    }
}

/// RFC 3080 3.1.3.2: after `<proceed/>` only TLS may follow; a peer that
/// sends anything else loses its connection at once (no hang), with a
/// TLS reason, and the listener goes on serving the others.
async fn junk_after_proceed_ends_that_connection_and_the_listener_serves_on(env: Env) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve_tls(&env, &leaf).await;
    let before = connect(&env, server.addr).await;
    start_tls(&env, &before, pki.client("localhost"))
        .await
        .unwrap();

    let (tx, rx) = oneshot::channel();
    let addr = server.addr;
    std::thread::spawn(move || {
        let _ = tx.send(junk_after_proceed(addr));
    });
    let closed_after = env.within(T, "the raw peer", rx).await.unwrap();
    let closed_after = closed_after.unwrap();
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");
    let reason = server
        .ended(&env, |r| matches!(r, CloseReason::Tls(_)))
        .await;
    assert!(
        matches!(reason, CloseReason::Tls(TlsError::Protocol(_))),
        "{reason:?}"
    );

    // The connection under TLS before goes on, and new ones are served.
    echo_on(&env, &before, ECHO, b"still served".to_vec()).await;
    let after = connect(&env, server.addr).await;
    start_tls(&env, &after, pki.client("localhost"))
        .await
        .unwrap();
    echo_on(&env, &after, ECHO, b"served too".to_vec()).await;
    close(&env, before).await;
    close(&env, after).await;
    server.stop(&env).await;
}

/// Eight initiators negotiate TLS with one listener at once, each then
/// echoing a message of its own.
async fn eight_concurrent_tls_connections_each_echo(env: Env) {
    let pki = Arc::new(Pki::new());
    let leaf = pki.leaf(&["localhost"]);
    let server = serve_tls(&env, &leaf).await;
    let runs = (0..8u8).map(|i| {
        let (env2, pki, addr) = (env.clone(), pki.clone(), server.addr);
        env.spawn(async move {
            let env = env2;
            let conn = connect(&env, addr).await;
            let info = start_tls(&env, &conn, pki.client("localhost"))
                .await
                .unwrap();
            let payload: Vec<u8> = (0..20_000u32).map(|n| (n as u8) ^ i).collect();
            echo_on(&env, &conn, ECHO, payload).await;
            close(&env, conn).await;
            leaf_of(&info).to_vec()
        })
    });
    let presented = env.within(T * 2, "eight connections", join_all(runs)).await;
    assert_eq!(presented.len(), 8);
    for der in presented {
        assert_eq!(der, leaf.der);
    }
    let under_tls = server.seen.lock().unwrap().iter().flatten().count();
    assert_eq!(under_tls, 8);
    server.stop(&env).await;
}
