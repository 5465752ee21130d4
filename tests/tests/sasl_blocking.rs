//! SASL (RFC 3080 4.1) with beep-blocking on both sides, over loopback
//! TCP: PyVortex's `vortex.sasl` (accept_mech with an auth handler,
//! start_auth with and without a status callback, is_authenticated and
//! the authenticated identity on both sides, profiles served only to
//! authenticated peers).

mod tls_support;

use std::net::SocketAddr;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use beep_blocking::{
    AuthAnswer, AuthInfo, AuthNeed, AuthRequest, Connection, Error, Listener, Mechanism, Options,
    ProfileHandler, Registry, Reply, SaslClient, ShutdownHandle, TlsAcceptor,
};
use beep_proto::xml::Profile;
use beep_proto::{Message, ReplyCode, UsageError};
use tls_support::Pki;

const ECHO: &str = "http://example.org/beep/echo";
const PRIVATE: &str = "http://example.org/beep/private";
const T: Duration = Duration::from_secs(10);

/// The users the listeners know.
const USERS: [(&str, &str); 2] = [("bob", "secret"), ("alice", "wonderland")];

/// What the auth handler was asked: mechanism, need, authcid, password,
/// anonymous token.
type Asked = (
    Mechanism,
    AuthNeed,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A listener served on its own thread, stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
    /// What the auth handler was asked, in order.
    asked: mpsc::Receiver<Asked>,
    /// What the listener's side of each echo channel saw at a message:
    /// authenticated, who, TLS active.
    seen: mpsc::Receiver<(bool, Option<AuthInfo>, bool)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An echo handler that reports what its connection (the listener's
/// side) knows of the peer's authentication.
fn echo(seen: mpsc::Sender<(bool, Option<AuthInfo>, bool)>) -> ProfileHandler {
    let seen = Mutex::new(seen);
    ProfileHandler::new(move |channel, m| {
        let conn = channel.connection();
        let _ = seen.lock().unwrap().send((
            conn.is_authenticated(),
            conn.auth_info(),
            conn.is_tls_active(),
        ));
        let _ = channel.reply_rpy(m.msgno, m.message);
    })
}

/// The handler of the `beep serve --sasl-user` kind: PLAIN's password is
/// checked, the others get the stored secret; user `panic` panics, and
/// ANONYMOUS and EXTERNAL are accepted.
fn decide(request: &AuthRequest) -> AuthAnswer {
    if request.authcid.as_deref() == Some("panic") {
        panic!("the auth handler panics");
    }
    if request.authcid.as_deref() == Some("slow") {
        // Longer than the patient client's channel timeout, below.
        std::thread::sleep(Duration::from_millis(800));
        return AuthAnswer::Deny;
    }
    if matches!(
        request.mechanism,
        Mechanism::Anonymous | Mechanism::External
    ) {
        return AuthAnswer::Accept;
    }
    let stored = USERS
        .iter()
        .find(|(user, _)| Some(*user) == request.authcid.as_deref())
        .map(|(_, password)| *password);
    match (request.need, stored) {
        (_, None) => AuthAnswer::NoSuchUser,
        (AuthNeed::Secret, Some(password)) => AuthAnswer::Secret(password.into()),
        (AuthNeed::Decide, Some(password)) if request.password.as_deref() == Some(password) => {
            AuthAnswer::Accept
        }
        (AuthNeed::Decide, Some(_)) => AuthAnswer::Deny,
    }
}

/// Serves `ECHO` (to anyone), `PRIVATE` (only to authenticated peers) and
/// every mechanism with [`decide`], and whatever `setup` adds.
fn serve(setup: impl FnOnce(&mut Registry)) -> Server {
    let (seen_tx, seen) = mpsc::channel();
    let (asked_tx, asked) = mpsc::channel();
    let asked_tx = Mutex::new(asked_tx);
    let handler = echo(seen_tx);
    let mut registry = Registry::new();
    registry
        .register(ECHO, handler.clone())
        .register_auth_only(PRIVATE, handler)
        .set_sasl(&Mechanism::ALL, move |request| {
            let _ = asked_tx.lock().unwrap().send((
                request.mechanism,
                request.need,
                request.authcid.clone(),
                request.password.clone(),
                request.anonymous_token.clone(),
            ));
            decide(request)
        });
    setup(&mut registry);
    let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = Some(std::thread::spawn(move || listener.serve()));
    Server {
        addr,
        stop,
        thread,
        asked,
        seen,
    }
}

fn connect(addr: SocketAddr) -> Connection {
    Connection::connect(addr, Options::default()).unwrap()
}

/// Opens a channel of `uri` and checks one echo.
fn echo_round_trip(conn: &Connection, uri: &str) {
    let channel = conn.open_channel(Profile::new(uri), None).unwrap();
    match channel.request(Message::new("ping"), T).unwrap() {
        Reply::Rpy(reply) => assert_eq!(&reply.body()[..], b"ping"),
        other => panic!("expected RPY, got {other:?}"),
    }
    channel.close().unwrap();
}

/// A client of `mechanism` as `user` with `password`.
fn client(mechanism: Mechanism, user: &str, password: &str) -> SaslClient {
    match mechanism {
        Mechanism::Plain => SaslClient::plain(user, password),
        Mechanism::CramMd5 => SaslClient::cram_md5(user, password),
        Mechanism::DigestMd5 => SaslClient::digest_md5(user, password),
        Mechanism::ScramSha256 => SaslClient::scram_sha256(user, password),
        Mechanism::Anonymous => SaslClient::anonymous(user),
        Mechanism::External => SaslClient::external(),
        other => panic!("no client for {other}"),
    }
}

fn assert_refused(result: Result<AuthInfo, Error>, expected: ReplyCode) {
    match result {
        Err(Error::Refused { code, .. }) => assert_eq!(code, expected),
        other => panic!("expected a refusal with {expected}, got {other:?}"),
    }
}

const PASSWORD_MECHANISMS: [Mechanism; 4] = [
    Mechanism::Plain,
    Mechanism::CramMd5,
    Mechanism::DigestMd5,
    Mechanism::ScramSha256,
];

/// Every mechanism authenticates; both sides then report the same
/// identity (`anonymous` for ANONYMOUS), and the handler was asked what
/// the mechanism needs: PLAIN's password to decide, the others' secret,
/// ANONYMOUS's trace to decide.
#[test]
fn each_mechanism_authenticates_and_both_sides_know_who() {
    let server = serve(|_| {});
    for (mechanism, user) in PASSWORD_MECHANISMS.iter().map(|m| (*m, "bob")).chain([
        (Mechanism::ScramSha256, "alice"),
        (Mechanism::Anonymous, "bob@example.org"),
    ]) {
        let password = USERS
            .iter()
            .find(|(u, _)| *u == user)
            .map_or("", |(_, p)| *p);
        let conn = connect(server.addr);
        assert!(
            conn.peer_greeting()
                .profiles
                .contains(&mechanism.uri().to_string())
        );
        assert!(!conn.is_authenticated());
        assert_eq!(conn.auth_info(), None);
        let info = conn.start_sasl(client(mechanism, user, password)).unwrap();
        let authcid = if mechanism == Mechanism::Anonymous {
            "anonymous"
        } else {
            user
        };
        assert_eq!(
            info,
            AuthInfo {
                mechanism,
                authcid: authcid.into(),
                authzid: None
            }
        );
        assert!(conn.is_authenticated());
        assert_eq!(conn.auth_info(), Some(info.clone()));

        let (asked_mechanism, need, asked_user, asked_password, token) =
            server.asked.recv_timeout(T).unwrap();
        assert_eq!(asked_mechanism, mechanism);
        match mechanism {
            Mechanism::Plain => {
                assert_eq!(need, AuthNeed::Decide);
                assert_eq!(asked_user.as_deref(), Some(user));
                assert_eq!(asked_password.as_deref(), Some(password));
            }
            Mechanism::Anonymous => {
                assert_eq!(need, AuthNeed::Decide);
                assert_eq!((asked_user, asked_password), (None, None));
                assert_eq!(token.as_deref(), Some(user));
            }
            _ => {
                assert_eq!(need, AuthNeed::Secret, "{mechanism}");
                assert_eq!(asked_user.as_deref(), Some(user));
                assert_eq!(asked_password, None, "only PLAIN sends the password");
            }
        }

        // The listener's side, read from a handler, knows the peer.
        echo_round_trip(&conn, ECHO);
        let (authenticated, peer, tls) = server.seen.recv_timeout(T).unwrap();
        assert!(authenticated && !tls);
        assert_eq!(peer, Some(info));
        conn.close().unwrap();
    }
    assert!(
        server.asked.try_recv().is_err(),
        "one question per exchange"
    );
}

/// A wrong password and an unknown user are both refused with 535, for
/// every password mechanism; the connection goes on unauthenticated (an
/// echo works) and a second attempt with the right password succeeds.
#[test]
fn bad_credentials_are_refused_with_535_and_the_connection_goes_on() {
    let server = serve(|_| {});
    for mechanism in PASSWORD_MECHANISMS {
        let conn = connect(server.addr);
        assert_refused(
            conn.start_sasl(client(mechanism, "bob", "wrong")),
            ReplyCode::AUTHENTICATION_FAILURE,
        );
        assert!(conn.is_ok() && !conn.is_authenticated());
        assert_refused(
            conn.start_sasl(client(mechanism, "mallory", "secret")),
            ReplyCode::AUTHENTICATION_FAILURE,
        );
        assert!(conn.is_ok() && !conn.is_authenticated());
        assert_eq!(conn.auth_info(), None);
        echo_round_trip(&conn, ECHO);
        let (authenticated, peer, _) = server.seen.recv_timeout(T).unwrap();
        assert!(!authenticated && peer.is_none(), "{mechanism}");

        let info = conn.start_sasl(client(mechanism, "bob", "secret")).unwrap();
        assert_eq!((info.mechanism, info.authcid.as_str()), (mechanism, "bob"));
        echo_round_trip(&conn, ECHO);
        let (authenticated, peer, _) = server.seen.recv_timeout(T).unwrap();
        assert!(authenticated);
        assert_eq!(peer, Some(info));
        conn.close().unwrap();
    }
}

/// A profile registered with `register_auth_only` is refused with 530
/// before the peer authenticated, and served after.
#[test]
fn an_auth_only_profile_is_served_only_after_authentication() {
    let server = serve(|_| {});
    let conn = connect(server.addr);
    match conn.open_channel(Profile::new(PRIVATE), None) {
        Err(Error::Refused { code, .. }) => {
            assert_eq!(code, ReplyCode::AUTHENTICATION_REQUIRED);
            assert_eq!(code.get(), 530);
        }
        other => panic!("expected 530, got {other:?}"),
    }
    // A failed attempt does not open it either.
    assert_refused(
        conn.start_sasl(SaslClient::plain("bob", "wrong")),
        ReplyCode::AUTHENTICATION_FAILURE,
    );
    assert!(matches!(
        conn.open_channel(Profile::new(PRIVATE), None),
        Err(Error::Refused { code, .. }) if code == ReplyCode::AUTHENTICATION_REQUIRED
    ));
    conn.start_sasl(SaslClient::digest_md5("alice", "wonderland"))
        .unwrap();
    echo_round_trip(&conn, PRIVATE);
    let (authenticated, peer, _) = server.seen.recv_timeout(T).unwrap();
    assert!(authenticated);
    assert_eq!(peer.unwrap().authcid, "alice");
    conn.close().unwrap();
}

/// start_sasl_with: the callback runs on the connection's dispatcher (not
/// the caller's thread) with the identity, or with the refusal.
#[test]
fn start_sasl_with_calls_back_with_the_outcome() {
    let server = serve(|_| {});
    let conn = connect(server.addr);
    let caller = std::thread::current().id();
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    conn.start_sasl_with(SaslClient::cram_md5("bob", "wrong"), move |result| {
        let _ = tx2.send((std::thread::current().id(), result));
    })
    .unwrap();
    let (thread, result) = rx.recv_timeout(T).unwrap();
    assert_ne!(thread, caller);
    assert_refused(result, ReplyCode::AUTHENTICATION_FAILURE);

    conn.start_sasl_with(SaslClient::scram_sha256("bob", "secret"), move |result| {
        let _ = tx.send((std::thread::current().id(), result));
    })
    .unwrap();
    let (thread, result) = rx.recv_timeout(T).unwrap();
    assert_ne!(thread, caller);
    let info = result.unwrap();
    assert_eq!(
        (info.mechanism, info.authcid.as_str()),
        (Mechanism::ScramSha256, "bob")
    );
    assert_eq!(conn.auth_info(), Some(info));

    // Once authenticated, nothing is sent and the callback is not called.
    let again = conn.start_sasl_with(SaslClient::plain("bob", "secret"), |_| panic!("not called"));
    assert!(
        matches!(again, Err(Error::Usage(UsageError::AlreadyAuthenticated))),
        "{again:?}"
    );
    conn.close().unwrap();
}

/// A second authentication on an authenticated session is a usage error,
/// and the first identity stays.
#[test]
fn a_second_authentication_is_a_usage_error() {
    let server = serve(|_| {});
    let conn = connect(server.addr);
    let info = conn.start_sasl(SaslClient::plain("bob", "secret")).unwrap();
    let again = conn.start_sasl(SaslClient::plain("alice", "wonderland"));
    assert!(
        matches!(again, Err(Error::Usage(UsageError::AlreadyAuthenticated))),
        "{again:?}"
    );
    assert_eq!(conn.auth_info(), Some(info));
    echo_round_trip(&conn, PRIVATE);
    conn.close().unwrap();
}

/// A mechanism the listener does not offer is not even tried.
#[test]
fn a_mechanism_not_offered_is_a_usage_error() {
    let plain_only = {
        let (seen_tx, _seen) = mpsc::channel();
        let mut registry = Registry::new();
        registry
            .register(ECHO, echo(seen_tx))
            .set_sasl(&[Mechanism::Plain], decide);
        assert!(
            registry
                .uris()
                .contains(&Mechanism::Plain.uri().to_string())
        );
        assert!(
            !registry
                .uris()
                .contains(&Mechanism::CramMd5.uri().to_string())
        );
        registry
    };
    let listener = Listener::bind("127.0.0.1:0", plain_only, Options::default()).unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let thread = std::thread::spawn(move || listener.serve());
    let conn = connect(addr);
    let result = conn.start_sasl(SaslClient::cram_md5("bob", "secret"));
    assert!(
        matches!(
            result,
            Err(Error::Usage(UsageError::AuthNotPossible { .. }))
        ),
        "{result:?}"
    );
    conn.start_sasl(SaslClient::plain("bob", "secret")).unwrap();
    conn.close().unwrap();
    stop.shutdown();
    thread.join().unwrap().unwrap();
}

/// An auth handler that panics denies (535); the connection and the
/// listener go on serving (another user then authenticates, on the same
/// connection and on a new one).
#[test]
fn a_panicking_auth_handler_denies_and_the_listener_goes_on() {
    let server = serve(|_| {});
    for mechanism in [Mechanism::Plain, Mechanism::ScramSha256] {
        let conn = connect(server.addr);
        assert_refused(
            conn.start_sasl(client(mechanism, "panic", "x")),
            ReplyCode::AUTHENTICATION_FAILURE,
        );
        assert!(conn.is_ok());
        echo_round_trip(&conn, ECHO);
        conn.start_sasl(client(mechanism, "alice", "wonderland"))
            .unwrap();
        conn.close().unwrap();
    }
    let conn = connect(server.addr);
    conn.start_sasl(SaslClient::cram_md5("bob", "secret"))
        .unwrap();
    echo_round_trip(&conn, PRIVATE);
    conn.close().unwrap();
}

/// SASL over TLS: TLS first (RFC 3080 3.1), then PLAIN (its password now
/// encrypted); the listener's handlers see both. EXTERNAL (RFC 3080
/// 4.1.3) after TLS is accepted by a handler that says Accept (the
/// handler's request names no connection, so it cannot look at the
/// client's certificate itself), with an empty identity; and
/// SCRAM-SHA-256-PLUS, bound to the TLS session (RFC 9266).
#[test]
fn sasl_over_tls_plain_external_and_scram_plus() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let server = serve(|registry| {
        registry.set_tls(TlsAcceptor::new(leaf.server()));
    });
    let conn = connect(server.addr);
    conn.start_tls(pki.client("localhost")).unwrap();
    // The greeting over TLS still offers the mechanisms.
    assert!(
        conn.peer_greeting()
            .profiles
            .contains(&Mechanism::Plain.uri().to_string())
    );
    let info = conn.start_sasl(SaslClient::plain("bob", "secret")).unwrap();
    assert_eq!(info.authcid, "bob");
    assert!(conn.is_tls_active() && conn.is_authenticated());
    echo_round_trip(&conn, PRIVATE);
    let (authenticated, peer, tls) = server.seen.recv_timeout(T).unwrap();
    assert!(authenticated && tls);
    assert_eq!(peer, Some(info));
    conn.close().unwrap();

    let conn = connect(server.addr);
    conn.start_tls(pki.client("localhost")).unwrap();
    let info = conn.start_sasl(SaslClient::external()).unwrap();
    assert_eq!(
        info,
        AuthInfo {
            mechanism: Mechanism::External,
            authcid: String::new(),
            authzid: None
        }
    );
    let asked = std::iter::from_fn(|| server.asked.recv_timeout(T).ok())
        .find(|a| a.0 == Mechanism::External)
        .unwrap();
    assert_eq!(asked.1, AuthNeed::Decide);
    echo_round_trip(&conn, PRIVATE);
    let (authenticated, peer, tls) = server.seen.recv_timeout(T).unwrap();
    assert!(authenticated && tls);
    assert_eq!(peer, Some(info));
    conn.close().unwrap();

    // RFC 9266: SCRAM-SHA-256-PLUS, bound to this TLS session; offered
    // only over TLS.
    let plus = Mechanism::ScramSha256Plus;
    let conn = connect(server.addr);
    assert!(
        !conn
            .peer_greeting()
            .profiles
            .contains(&plus.uri().to_string())
    );
    conn.start_tls(pki.client("localhost")).unwrap();
    assert!(
        conn.peer_greeting()
            .profiles
            .contains(&plus.uri().to_string())
    );
    let info = conn
        .start_sasl(SaslClient::scram_sha256_plus("bob", "secret"))
        .unwrap();
    assert_eq!((info.mechanism, info.authcid.as_str()), (plus, "bob"));
    echo_round_trip(&conn, PRIVATE);
    let (authenticated, peer, tls) = server.seen.recv_timeout(T).unwrap();
    assert!(authenticated && tls);
    assert_eq!(peer, Some(info));
    conn.close().unwrap();
}

/// A caller that stops waiting (its `channel_timeout` passed while the
/// listener's handler still decides) gets `Error::Timeout`, and the
/// connection is not wedged: once the listener's late answer is in (the
/// driver aborted the exchange, RFC 3080 4.1 `status='abort'`), a new
/// attempt on the same connection succeeds.
#[test]
fn a_timed_out_authentication_can_be_tried_again() {
    let server = serve(|_| {});
    let options = Options {
        channel_timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let conn = Connection::connect(server.addr, options).unwrap();
    let slow = conn.start_sasl(SaslClient::plain("slow", "x"));
    assert!(matches!(slow, Err(Error::Timeout)), "{slow:?}");
    // The listener's late answer (a denial) meets our abort; once it is in,
    // a new exchange may start.
    let deadline = std::time::Instant::now() + T;
    let info = loop {
        match conn.start_sasl(SaslClient::plain("alice", "wonderland")) {
            Ok(info) => break info,
            Err(Error::Usage(UsageError::AuthInProgress))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(info.authcid, "alice");
    conn.close().unwrap();
}
