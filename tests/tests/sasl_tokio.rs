//! beep-tokio's SASL (RFC 3080 4.1, PyVortex `vortex.sasl`) over loopback
//! TCP: beep-tokio initiators authenticating to beep-tokio listeners whose
//! auth handler knows a few users. Every scenario runs twice: on tokio and
//! on async-std.

mod async_support;
mod tls_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_support::{ECHO, Env, T, body};
use beep_proto::tls::TLS_URI;
use beep_proto::xml::Profile;
use beep_proto::{Message, ReplyCode, UsageError};
use beep_tokio::{
    AuthAnswer, AuthInfo, AuthNeed, AuthRequest, Connection, Error, Listener, Mechanism,
    ProfileHandler, Registry, SaslClient, ShutdownHandle, TlsAcceptor,
};
use futures_channel::oneshot;
use futures_util::future::{RemoteHandle, join_all};
use tls_support::Pki;

on_both_runtimes!(
    each_mechanism_authenticates_with_auth_info_on_both_sides,
    a_requested_authorization_identity_is_granted_on_both_sides,
    a_wrong_password_or_unknown_user_is_refused_and_the_session_goes_on,
    an_auth_only_profile_is_refused_before_and_served_after,
    start_sasl_with_calls_back_with_the_outcome,
    sasl_over_tls,
    a_second_authentication_is_a_usage_error,
    a_mechanism_not_offered_is_a_usage_error,
    a_panicking_auth_handler_denies_and_the_listener_serves_on,
    eight_concurrent_connections_each_authenticate_as_their_own_user,
);

/// Replies with the listener's view of who authenticated on the
/// connection (`Debug` of `Connection::auth_info`).
const WHOAMI: &str = "http://example.org/beep/whoami";
/// Served only to authenticated peers; echoes.
const PRIVATE: &str = "http://example.org/beep/private";

/// Every mechanism the listeners offer, in the order offered.
const MECHANISMS: [Mechanism; 5] = [
    Mechanism::Plain,
    Mechanism::CramMd5,
    Mechanism::DigestMd5,
    Mechanism::ScramSha256,
    Mechanism::Anonymous,
];

/// The user whose authentication makes the handler panic.
const PANIC_USER: &str = "mallory";

/// What the auth handler was asked: (mechanism, authcid) per call.
type Calls = Arc<Mutex<Vec<(Mechanism, Option<String>)>>>;

/// The users the listener knows: `bob`/`secret`, `alice`/`wonderland`,
/// and `user0`..`user7` with `pw0`..`pw7`.
fn users() -> HashMap<String, String> {
    let mut users: HashMap<String, String> = [("bob", "secret"), ("alice", "wonderland")]
        .into_iter()
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect();
    for i in 0..8 {
        users.insert(format!("user{i}"), format!("pw{i}"));
    }
    users
}

/// The listener's auth handler (PyVortex `sasl_auth_handler`): accepts
/// ANONYMOUS, checks PLAIN's password, gives the secret for the
/// challenge-response mechanisms; panics for [`PANIC_USER`]. Notes every
/// call.
fn auth_handler(calls: Calls) -> impl Fn(&AuthRequest) -> AuthAnswer + Send + Sync + 'static {
    let users = users();
    move |request| {
        calls
            .lock()
            .unwrap()
            .push((request.mechanism, request.authcid.clone()));
        let user = request.authcid.as_deref().unwrap_or_default();
        if user == PANIC_USER {
            panic!("the auth handler fails for {user}");
        }
        if request.mechanism == Mechanism::Anonymous {
            return AuthAnswer::Accept;
        }
        match (request.need, users.get(user)) {
            (_, None) => AuthAnswer::NoSuchUser,
            (AuthNeed::Decide, Some(password)) => {
                if request.password.as_deref() == Some(password.as_str()) {
                    AuthAnswer::Accept
                } else {
                    AuthAnswer::Deny
                }
            }
            (AuthNeed::Secret, Some(password)) => AuthAnswer::Secret(password.clone()),
        }
    }
}

fn echo() -> ProfileHandler {
    ProfileHandler::new(|channel, m| async move {
        let _ = channel.reply_rpy(m.msgno, m.message).await;
    })
}

fn whoami() -> ProfileHandler {
    ProfileHandler::new(|channel, m| async move {
        let seen = format!("{:?}", channel.connection().auth_info());
        let _ = channel.reply_rpy(m.msgno, Message::new(seen)).await;
    })
}

/// A beep-tokio listener on loopback serving [`ECHO`], [`WHOAMI`],
/// [`PRIVATE`] (authenticated peers only) and SASL with [`MECHANISMS`],
/// configured further by the scenario.
struct Served {
    addr: SocketAddr,
    stop: ShutdownHandle,
    serving: Option<RemoteHandle<Result<(), Error>>>,
    calls: Calls,
}

async fn serve(env: &Env, configure: impl FnOnce(&mut Registry)) -> Served {
    let calls = Calls::default();
    let mut registry = Registry::new();
    registry
        .register(ECHO, echo())
        .register(WHOAMI, whoami())
        .register_auth_only(PRIVATE, echo())
        .set_sasl(&MECHANISMS, auth_handler(calls.clone()));
    configure(&mut registry);
    let listener = Listener::bind("127.0.0.1:0", registry, env.options())
        .await
        .unwrap();
    let addr = listener.local_addrs()[0];
    let stop = listener.shutdown_handle();
    let serving = Some(env.spawn(listener.serve()));
    Served {
        addr,
        stop,
        serving,
        calls,
    }
}

impl Served {
    async fn stop(mut self, env: &Env) {
        self.stop.shutdown();
        if let Some(serving) = self.serving.take() {
            env.within(T * 2, "listener shutdown", serving)
                .await
                .unwrap();
        }
    }

    fn calls(&self) -> Vec<(Mechanism, Option<String>)> {
        self.calls.lock().unwrap().clone()
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

async fn start_sasl(env: &Env, conn: &Connection, client: SaslClient) -> Result<AuthInfo, Error> {
    env.within(T, "start_sasl", conn.start_sasl(client)).await
}

/// Opens `profile` and returns the reply to `payload` on it.
async fn ask(env: &Env, conn: &Connection, profile: &str, payload: &[u8]) -> Vec<u8> {
    let channel = env
        .within(
            T,
            "open_channel",
            conn.open_channel(Profile::new(profile), None),
        )
        .await
        .unwrap();
    let request = channel.request(Message::new(payload.to_vec()), T);
    body(env.within(T, "request", request).await.unwrap())
}

/// The listener's view of who authenticated on `conn`, from a message
/// handler of a new channel.
async fn listener_sees(env: &Env, conn: &Connection) -> String {
    String::from_utf8(ask(env, conn, WHOAMI, b"who?").await).unwrap()
}

async fn echo_on(env: &Env, conn: &Connection, profile: &str, payload: &[u8]) {
    assert_eq!(
        ask(env, conn, profile, payload).await,
        payload,
        "echoed on {profile}"
    );
}

async fn close(env: &Env, conn: Connection) {
    env.within(T, "close", conn.close()).await.unwrap();
}

fn client_for(mechanism: Mechanism, user: &str, password: &str) -> SaslClient {
    match mechanism {
        Mechanism::Plain => SaslClient::plain(user, password),
        Mechanism::CramMd5 => SaslClient::cram_md5(user, password),
        Mechanism::DigestMd5 => SaslClient::digest_md5(user, password),
        Mechanism::ScramSha256 => SaslClient::scram_sha256(user, password),
        Mechanism::Anonymous => SaslClient::anonymous("bob@example.org"),
        other => panic!("not tested: {other}"),
    }
}

fn is_refused(result: &Result<AuthInfo, Error>, wanted: ReplyCode) -> bool {
    matches!(result, Err(Error::Refused { code, .. }) if *code == wanted)
}

fn uris(list: &[&str]) -> Vec<String> {
    list.iter().map(|u| u.to_string()).collect()
}

/// RFC 3080 4.1: each mechanism succeeds as `bob` (ANONYMOUS as
/// `anonymous`); `start_sasl` returns our identity, `auth_info` gives the
/// same on the initiator, and a message handler on the listener reads the
/// same identity from its channel's connection.
async fn each_mechanism_authenticates_with_auth_info_on_both_sides(env: Env) {
    let server = serve(&env, |_| {}).await;
    for mechanism in MECHANISMS {
        let conn = connect(&env, server.addr).await;
        let offered = conn.peer_greeting().profiles;
        assert!(
            offered.contains(&mechanism.uri().to_string()),
            "{offered:?}"
        );
        assert!(!conn.is_authenticated() && conn.auth_info().is_none());
        assert_eq!(listener_sees(&env, &conn).await, "None");

        let info = start_sasl(&env, &conn, client_for(mechanism, "bob", "secret"))
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e:?}"));
        let user = if mechanism == Mechanism::Anonymous {
            "anonymous"
        } else {
            "bob"
        };
        let expected = AuthInfo {
            mechanism,
            authcid: user.into(),
            authzid: None,
        };
        assert_eq!(info, expected, "{mechanism}");
        assert!(conn.is_authenticated());
        assert_eq!(conn.auth_info(), Some(expected.clone()));
        assert_eq!(
            listener_sees(&env, &conn).await,
            format!("{:?}", Some(expected)),
            "{mechanism} on the listener"
        );
        close(&env, conn).await;
    }
    let asked: Vec<Mechanism> = server.calls().into_iter().map(|(m, _)| m).collect();
    assert_eq!(asked, MECHANISMS, "one handler call per authentication");
    server.stop(&env).await;
}

/// RFC 4422 2: PLAIN and DIGEST-MD5 carry an authorization identity;
/// the handler's acceptance grants it, and both ends report it.
async fn a_requested_authorization_identity_is_granted_on_both_sides(env: Env) {
    let server = serve(&env, |_| {}).await;
    for client in [
        SaslClient::plain("bob", "secret").with_authzid("alice"),
        SaslClient::digest_md5("bob", "secret").with_authzid("alice"),
    ] {
        let mechanism = client.mechanism();
        let conn = connect(&env, server.addr).await;
        let info = start_sasl(&env, &conn, client).await.unwrap();
        let expected = AuthInfo {
            mechanism,
            authcid: "bob".into(),
            authzid: Some("alice".into()),
        };
        assert_eq!(info, expected);
        assert_eq!(conn.auth_info(), Some(expected.clone()));
        assert_eq!(
            listener_sees(&env, &conn).await,
            format!("{:?}", Some(expected))
        );
        close(&env, conn).await;
    }
    server.stop(&env).await;
}

/// A wrong password and an unknown user both come back as 535 (the
/// client cannot tell which); the session stays up and unauthenticated,
/// a plain echo works, and a correct authentication then succeeds.
async fn a_wrong_password_or_unknown_user_is_refused_and_the_session_goes_on(env: Env) {
    let server = serve(&env, |_| {}).await;
    for mechanism in [
        Mechanism::Plain,
        Mechanism::CramMd5,
        Mechanism::DigestMd5,
        Mechanism::ScramSha256,
    ] {
        let conn = connect(&env, server.addr).await;
        for (user, password) in [("bob", "wrong"), ("nobody", "secret")] {
            let refused = start_sasl(&env, &conn, client_for(mechanism, user, password)).await;
            assert!(
                is_refused(&refused, ReplyCode::AUTHENTICATION_FAILURE),
                "{mechanism} {user}/{password}: {refused:?}"
            );
            assert!(conn.is_ok(), "{mechanism}: the connection stays up");
            assert!(!conn.is_authenticated() && conn.auth_info().is_none());
            echo_on(&env, &conn, ECHO, b"still here").await;
            assert_eq!(listener_sees(&env, &conn).await, "None");
        }
        let info = start_sasl(&env, &conn, client_for(mechanism, "bob", "secret"))
            .await
            .unwrap_or_else(|e| panic!("{mechanism} after failures: {e:?}"));
        assert_eq!((info.mechanism, info.authcid.as_str()), (mechanism, "bob"));
        assert_eq!(
            listener_sees(&env, &conn).await,
            format!("{:?}", Some(info))
        );
        echo_on(&env, &conn, ECHO, b"authenticated").await;
        close(&env, conn).await;
    }
    server.stop(&env).await;
}

/// PyVortex's profile mask for authenticated sessions: the profile is
/// advertised, a start before authentication is refused with 530, and
/// after it the profile is served.
async fn an_auth_only_profile_is_refused_before_and_served_after(env: Env) {
    let server = serve(&env, |_| {}).await;
    let conn = connect(&env, server.addr).await;
    let offered = conn.peer_greeting().profiles;
    let mut expected = uris(&[ECHO, WHOAMI, PRIVATE]);
    expected.extend(MECHANISMS.iter().map(|m| m.uri().to_string()));
    assert_eq!(offered, expected);
    let open = conn.open_channel(Profile::new(PRIVATE), None);
    let refused = env.within(T, "open_channel", open).await;
    assert!(
        matches!(&refused, Err(Error::Refused { code, .. }) if *code == ReplyCode::AUTHENTICATION_REQUIRED),
        "{refused:?}"
    );
    // A failed attempt does not open it either.
    let failed = start_sasl(&env, &conn, SaslClient::plain("bob", "wrong")).await;
    assert!(is_refused(&failed, ReplyCode::AUTHENTICATION_FAILURE));
    let open = conn.open_channel(Profile::new(PRIVATE), None);
    let refused = env.within(T, "open_channel", open).await;
    assert!(
        matches!(&refused, Err(Error::Refused { code, .. }) if *code == ReplyCode::AUTHENTICATION_REQUIRED),
        "{refused:?}"
    );

    start_sasl(&env, &conn, SaslClient::scram_sha256("bob", "secret"))
        .await
        .unwrap();
    echo_on(&env, &conn, PRIVATE, b"for bob only").await;
    close(&env, conn).await;
    server.stop(&env).await;
}

/// PyVortex `start_auth` with `auth_notify`: `start_sasl_with` returns at
/// once; the callback gets the outcome, a success once the connection
/// reports it, a refusal as 535.
async fn start_sasl_with_calls_back_with_the_outcome(env: Env) {
    let server = serve(&env, |_| {}).await;
    let conn = connect(&env, server.addr).await;

    let (tx, rx) = oneshot::channel();
    conn.start_sasl_with(SaslClient::cram_md5("bob", "nope"), move |result| {
        let _ = tx.send(result);
    })
    .unwrap();
    let refused = env.within(T, "sasl callback", rx).await.unwrap();
    assert!(
        is_refused(&refused, ReplyCode::AUTHENTICATION_FAILURE),
        "{refused:?}"
    );

    let (tx, rx) = oneshot::channel();
    let seen_by_callback = conn.clone();
    conn.start_sasl_with(
        SaslClient::scram_sha256("alice", "wonderland"),
        move |result| {
            let _ = tx.send((result, seen_by_callback.auth_info()));
        },
    )
    .unwrap();
    let (result, seen) = env.within(T, "sasl callback", rx).await.unwrap();
    let info = result.unwrap();
    assert_eq!(
        info,
        AuthInfo {
            mechanism: Mechanism::ScramSha256,
            authcid: "alice".into(),
            authzid: None
        }
    );
    assert_eq!(
        seen.as_ref(),
        Some(&info),
        "authenticated when the callback runs"
    );
    assert_eq!(conn.auth_info(), Some(info.clone()));
    assert_eq!(
        listener_sees(&env, &conn).await,
        format!("{:?}", Some(info))
    );
    close(&env, conn).await;
    server.stop(&env).await;
}

/// TLS first (RFC 3080 3.1), then SCRAM-SHA-256-PLUS inside it, bound to
/// that TLS session (RFC 9266): the greeting over TLS offers the
/// mechanisms again, -PLUS only there, and the listener sees both the TLS
/// state and the identity.
async fn sasl_over_tls(env: Env) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"]);
    let tls = leaf.server();
    let server = serve(&env, |r| {
        r.set_tls(TlsAcceptor::new(tls));
        r.set_sasl(
            &[Mechanism::ScramSha256Plus],
            auth_handler(Calls::default()),
        );
    })
    .await;
    let plus = Mechanism::ScramSha256Plus.uri().to_string();
    let conn = connect(&env, server.addr).await;
    assert!(conn.peer_greeting().profiles.contains(&TLS_URI.to_string()));
    assert!(!conn.peer_greeting().profiles.contains(&plus));
    env.within(T, "start_tls", conn.start_tls(pki.client("localhost")))
        .await
        .unwrap();
    assert!(conn.is_tls_active());
    let offered = conn.peer_greeting().profiles;
    assert!(offered.contains(&plus), "{offered:?}");
    let client = SaslClient::scram_sha256_plus("bob", "secret");
    let info = start_sasl(&env, &conn, client).await.unwrap();
    assert_eq!(
        (info.mechanism, info.authcid.as_str()),
        (Mechanism::ScramSha256Plus, "bob")
    );
    assert!(conn.is_tls_active() && conn.is_authenticated());
    assert_eq!(conn.auth_info(), Some(info.clone()));
    assert_eq!(
        listener_sees(&env, &conn).await,
        format!("{:?}", Some(info))
    );
    echo_on(&env, &conn, PRIVATE, b"encrypted and authenticated").await;
    close(&env, conn).await;
    server.stop(&env).await;
}

/// RFC 3080 4: a session authenticates once. A second `start_sasl` (or
/// `start_sasl_with`) fails at once, nothing sent, and the first
/// identity stands.
async fn a_second_authentication_is_a_usage_error(env: Env) {
    let server = serve(&env, |_| {}).await;
    let conn = connect(&env, server.addr).await;
    let first = start_sasl(&env, &conn, SaslClient::plain("bob", "secret"))
        .await
        .unwrap();
    let again = start_sasl(&env, &conn, SaslClient::plain("alice", "wonderland")).await;
    assert!(
        matches!(again, Err(Error::Usage(UsageError::AlreadyAuthenticated))),
        "{again:?}"
    );
    let called = Arc::new(AtomicUsize::new(0));
    let counted = called.clone();
    let again = conn.start_sasl_with(SaslClient::anonymous(""), move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    assert!(
        matches!(again, Err(Error::Usage(UsageError::AlreadyAuthenticated))),
        "{again:?}"
    );
    assert_eq!(conn.auth_info(), Some(first.clone()));
    assert_eq!(
        listener_sees(&env, &conn).await,
        format!("{:?}", Some(first))
    );
    assert_eq!(
        called.load(Ordering::SeqCst),
        0,
        "no callback for an error returned"
    );
    assert_eq!(server.calls().len(), 1, "the listener was asked once");
    close(&env, conn).await;
    server.stop(&env).await;
}

/// A mechanism the listener does not offer fails at once with a usage
/// error; the session is untouched.
async fn a_mechanism_not_offered_is_a_usage_error(env: Env) {
    let server = serve(&env, |r| {
        r.set_sasl(&[Mechanism::ScramSha256], auth_handler(Calls::default()));
    })
    .await;
    let conn = connect(&env, server.addr).await;
    let offered = conn.peer_greeting().profiles;
    assert!(!offered.contains(&Mechanism::Plain.uri().to_string()));
    let result = start_sasl(&env, &conn, SaslClient::plain("bob", "secret")).await;
    assert!(
        matches!(
            result,
            Err(Error::Usage(UsageError::AuthNotPossible { .. }))
        ),
        "{result:?}"
    );
    echo_on(&env, &conn, ECHO, b"fine").await;
    start_sasl(&env, &conn, SaslClient::scram_sha256("bob", "secret"))
        .await
        .unwrap();
    close(&env, conn).await;
    server.stop(&env).await;
}

/// A panic in the auth handler is a denial (535); that connection stays
/// usable, and the listener serves other connections as before.
async fn a_panicking_auth_handler_denies_and_the_listener_serves_on(env: Env) {
    let server = serve(&env, |_| {}).await;
    for client in [
        SaslClient::plain(PANIC_USER, "x"),
        SaslClient::scram_sha256(PANIC_USER, "x"),
    ] {
        let conn = connect(&env, server.addr).await;
        let refused = start_sasl(&env, &conn, client).await;
        assert!(
            is_refused(&refused, ReplyCode::AUTHENTICATION_FAILURE),
            "{refused:?}"
        );
        assert!(conn.is_ok() && !conn.is_authenticated());
        echo_on(&env, &conn, ECHO, b"after the panic").await;
        let info = start_sasl(&env, &conn, SaslClient::plain("bob", "secret"))
            .await
            .unwrap();
        assert_eq!(
            listener_sees(&env, &conn).await,
            format!("{:?}", Some(info))
        );
        close(&env, conn).await;
    }
    let conn = connect(&env, server.addr).await;
    start_sasl(&env, &conn, SaslClient::cram_md5("alice", "wonderland"))
        .await
        .unwrap();
    echo_on(&env, &conn, PRIVATE, b"served on").await;
    close(&env, conn).await;
    server.stop(&env).await;
}

/// Eight connections authenticate at once, each as its own user, through
/// one handler: it is called once per connection with that connection's
/// user, and each listener-side connection reports its own identity.
async fn eight_concurrent_connections_each_authenticate_as_their_own_user(env: Env) {
    let server = serve(&env, |_| {}).await;
    let addr = server.addr;
    let runs = (0..8).map(|i| {
        let env = env.clone();
        env.clone().spawn(async move {
            let user = format!("user{i}");
            let conn = connect(&env, addr).await;
            let mechanism = MECHANISMS[i % 4];
            let info = start_sasl(&env, &conn, client_for(mechanism, &user, &format!("pw{i}")))
                .await
                .unwrap_or_else(|e| panic!("{user} with {mechanism}: {e:?}"));
            let expected = AuthInfo {
                mechanism,
                authcid: user.clone(),
                authzid: None,
            };
            assert_eq!(info, expected);
            assert_eq!(conn.auth_info(), Some(expected.clone()));
            assert_eq!(
                listener_sees(&env, &conn).await,
                format!("{:?}", Some(expected)),
                "the listener's view of {user}"
            );
            echo_on(&env, &conn, PRIVATE, user.as_bytes()).await;
            close(&env, conn).await;
        })
    });
    join_all(runs.collect::<Vec<_>>()).await;
    let mut asked: Vec<String> = server
        .calls()
        .into_iter()
        .map(|(_, user)| user.expect("every request names its user"))
        .collect();
    asked.sort();
    let expected: Vec<String> = (0..8).map(|i| format!("user{i}")).collect();
    assert_eq!(asked, expected, "one call per connection, with its user");
    server.stop(&env).await;
}

/// Issue 10: an auth handler is a plain function and may block (a user
/// database); while one decides, other connections are served. The
/// runtime here has a single worker thread, so a handler run on it
/// would stall every connection: the handler waits for a signal that
/// is given only after another connection's exchange has completed, so
/// without the blocking pool that exchange (and so this test) would wait
/// for the handler's own 10 s limit and the slow user would be denied.
#[test]
fn a_blocking_auth_handler_stalls_no_other_connection() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (go, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let (deciding, decided) = std::sync::mpsc::channel::<()>();
    let deciding = Mutex::new(deciding);
    runtime.block_on(async move {
        let mut registry = Registry::new();
        registry
            .register(ECHO, echo())
            .set_sasl(&[Mechanism::Plain], move |request| {
                if request.authcid.as_deref() != Some("slow") {
                    return AuthAnswer::Deny;
                }
                let _ = deciding.lock().unwrap().send(());
                match gate
                    .lock()
                    .unwrap()
                    .recv_timeout(std::time::Duration::from_secs(10))
                {
                    Ok(()) => AuthAnswer::Accept,
                    Err(_) => AuthAnswer::Deny,
                }
            });
        let listener = Listener::bind("127.0.0.1:0", registry, Default::default())
            .await
            .unwrap();
        let addr = listener.local_addrs()[0];
        let stop = listener.shutdown_handle();
        let serving = tokio::spawn(listener.serve());

        let slow = Connection::connect(addr, Default::default()).await.unwrap();
        let authenticating =
            tokio::spawn(async move { slow.start_sasl(SaslClient::plain("slow", "secret")).await });
        // The handler is deciding (and holds its thread) ...
        tokio::task::spawn_blocking(move || decided.recv_timeout(T))
            .await
            .unwrap()
            .expect("the auth handler was called");
        // ... while another connection opens a channel and is answered.
        let other = Connection::connect(addr, Default::default()).await.unwrap();
        let channel = other.open_channel(Profile::new(ECHO), None).await.unwrap();
        let reply = channel.request(Message::new("meanwhile"), T).await.unwrap();
        assert_eq!(body(reply), b"meanwhile");
        go.send(()).unwrap();
        let info = authenticating
            .await
            .unwrap()
            .expect("the slow user is accepted");
        assert_eq!(info.authcid, "slow");
        other.close().await.unwrap();
        stop.shutdown();
        let _ = serving.await;
    });
}
