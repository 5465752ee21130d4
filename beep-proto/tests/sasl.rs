//! The SASL family of profiles (RFC 3080 4, 4.1) between two in-memory
//! sessions: each runs its side of the exchange itself (rsasl inside the
//! session); the "drivers" here only move bytes, and the listener's
//! application answers the authentication requests from a user table.

use beep_proto::reply_code::ReplyCode;
use beep_proto::sasl::{
    AuthAnswer, AuthInfo, AuthNeed, AuthRequest, Mechanism, SaslClient, SaslError,
};
use beep_proto::tls::{TLS_URI, TlsClient, TlsServer};
use beep_proto::xml::{ErrorElement, Profile, SaslElement, XmlError};
use beep_proto::{Config, Event, Message, MessageKind, ProtocolError, Session, UsageError};

const ECHO: &str = "http://example.org/beep/echo";
/// A profile open only to an authenticated peer.
const SECRET: &str = "http://example.org/beep/secret";

/// The listener's users.
const USERS: &[(&str, &str)] = &[("bob", "secret"), ("carol", "pässwörd")];

/// Every mechanism the session runs today.
fn wired() -> Vec<Mechanism> {
    Mechanism::ALL
        .into_iter()
        .filter(|m| m.is_available())
        .collect()
}

fn listener_config() -> Config {
    let mut profiles: Vec<String> = wired().iter().map(|m| m.uri().to_owned()).collect();
    profiles.push(ECHO.into());
    profiles.push(TLS_URI.into());
    Config {
        profiles,
        auth_profiles: vec![SECRET.into()],
        ..Config::default()
    }
}

/// How the bytes travel between the two sessions.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// Each `poll_transmit` result whole.
    Whole,
    /// One byte at a time.
    Bytewise,
    /// Pieces of pseudo-random sizes from this seed.
    Random(u64),
}

const SPLITS: [Split; 5] = [
    Split::Whole,
    Split::Bytewise,
    Split::Random(7919),
    Split::Random(104_729),
    Split::Random(1_299_709),
];

/// What the listener's application answers to an authentication
/// request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    /// From [`USERS`]: the password checked (PLAIN) or given (the rest);
    /// ANONYMOUS and EXTERNAL accepted.
    Users,
    /// Everything refused.
    Deny,
    /// Not answered: requests wait in `requests`.
    Manual,
}

fn lookup(user: Option<&str>) -> Option<&'static str> {
    USERS
        .iter()
        .find(|(u, _)| Some(*u) == user)
        .map(|(_, p)| *p)
}

fn answer(policy: Policy, request: &AuthRequest) -> AuthAnswer {
    if policy == Policy::Deny {
        return AuthAnswer::Deny;
    }
    let password = lookup(request.authcid.as_deref());
    match (request.need, request.mechanism) {
        (AuthNeed::Secret, _) => match password {
            Some(p) => AuthAnswer::Secret(p.into()),
            None => AuthAnswer::NoSuchUser,
        },
        (AuthNeed::Decide, Mechanism::Plain) => match password {
            Some(p) if request.password.as_deref() == Some(p) => AuthAnswer::Accept,
            Some(_) => AuthAnswer::Deny,
            None => AuthAnswer::NoSuchUser,
        },
        (AuthNeed::Decide, _) => AuthAnswer::Accept,
    }
}

struct Pair {
    a: Session,
    b: Session,
    a_events: Vec<Event>,
    b_events: Vec<Event>,
    split: Split,
    rng: u64,
    policy: Policy,
    /// The requests the listener was asked (all policies).
    requests: Vec<AuthRequest>,
    /// The listener's answer to a TLS request: accept with this server.
    tls: Option<TlsServer>,
}

impl Pair {
    fn new(split: Split, policy: Policy) -> Self {
        Self::with(split, policy, Config::default(), listener_config())
    }

    fn with(split: Split, policy: Policy, a: Config, b: Config) -> Self {
        Self::of(Session::initiator(a), Session::listener(b), split, policy)
    }

    fn of(a: Session, b: Session, split: Split, policy: Policy) -> Self {
        let mut pair = Pair {
            a,
            b,
            a_events: Vec::new(),
            b_events: Vec::new(),
            split,
            rng: match split {
                Split::Random(seed) => seed | 1,
                _ => 1,
            },
            policy,
            requests: Vec::new(),
            tls: None,
        };
        pair.pump();
        pair
    }

    fn next_len(&mut self, left: usize) -> usize {
        match self.split {
            Split::Whole => left,
            Split::Bytewise => 1,
            Split::Random(_) => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                (self.rng % 700) as usize % left + 1
            }
        }
    }

    /// Feeds `bytes` to one side in pieces; stops at the first error.
    fn deliver(&mut self, to_listener: bool, bytes: &[u8]) -> Result<(), ProtocolError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.next_len(rest.len());
            let target = if to_listener {
                &mut self.b
            } else {
                &mut self.a
            };
            target.handle_input(&rest[..n])?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Moves bytes and reacts (both echo MSGs; the listener accepts
    /// starts with the first profile, closes, and answers authentication
    /// requests by its policy) until nothing moves. Returns the first
    /// input error of each side.
    fn pump(&mut self) -> (Option<ProtocolError>, Option<ProtocolError>) {
        let (mut a_err, mut b_err) = (None, None);
        loop {
            let mut moved = false;
            while let Some(bytes) = self.a.poll_transmit() {
                moved = true;
                if let Err(e) = self.deliver(true, &bytes) {
                    b_err.get_or_insert(e);
                }
            }
            while let Some(bytes) = self.b.poll_transmit() {
                moved = true;
                if let Err(e) = self.deliver(false, &bytes) {
                    a_err.get_or_insert(e);
                }
            }
            while let Some(e) = self.a.poll_event() {
                moved = true;
                if let Event::Message(m) = &e
                    && m.kind == MessageKind::Msg
                {
                    self.a
                        .send_rpy(m.channel, m.msgno, m.message.clone())
                        .unwrap();
                }
                self.a_events.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                moved = true;
                match &e {
                    Event::AuthRequested(request) => {
                        self.requests.push(request.clone());
                        if self.policy != Policy::Manual {
                            let answer = answer(self.policy, request);
                            self.b.answer_auth(request.channel, answer).unwrap();
                        }
                    }
                    Event::StartRequested(req) => {
                        let profile = Profile::new(req.profiles[0].uri.clone());
                        self.b.accept_start(req.channel, profile).unwrap();
                    }
                    Event::Message(m) if m.kind == MessageKind::Msg => {
                        self.b
                            .send_rpy(m.channel, m.msgno, m.message.clone())
                            .unwrap();
                    }
                    Event::CloseRequested { channel, .. } => self.b.accept_close(*channel).unwrap(),
                    Event::TlsRequested(req) => {
                        let server = self.tls.as_ref().expect("a TLS server");
                        self.b.accept_tls(req.channel, server).unwrap();
                    }
                    _ => {}
                }
                self.b_events.push(e);
            }
            if !moved {
                return (a_err, b_err);
            }
        }
    }
}

fn authenticated(events: &[Event]) -> Vec<&AuthInfo> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Authenticated(info) => Some(info),
            _ => None,
        })
        .collect()
}

fn auth_failed(events: &[Event]) -> Vec<(u32, &ErrorElement)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::AuthFailed { channel, error } => Some((*channel, error)),
            _ => None,
        })
        .collect()
}

fn refused(events: &[Event], channel: u32) -> Option<&ErrorElement> {
    events.iter().find_map(|e| match e {
        Event::ChannelRefused { channel: c, error } if *c == channel => Some(error),
        _ => None,
    })
}

/// The client of each mechanism with good credentials, and what both
/// sides must report.
fn good_client(mechanism: Mechanism) -> (SaslClient, AuthInfo) {
    let info = |authcid: &str, authzid: Option<&str>| AuthInfo {
        mechanism,
        authcid: authcid.into(),
        authzid: authzid.map(str::to_owned),
    };
    match mechanism {
        Mechanism::Anonymous => (
            SaslClient::anonymous("bob@example.org"),
            info("anonymous", None),
        ),
        Mechanism::Plain => (
            SaslClient::plain("bob", "secret").with_authzid("alice"),
            info("bob", Some("alice")),
        ),
        Mechanism::External => (
            SaslClient::external().with_authzid("alice"),
            info("", Some("alice")),
        ),
        Mechanism::ScramSha256 => (
            SaslClient::scram_sha256("carol", "pässwörd").with_authzid("alice"),
            info("carol", Some("alice")),
        ),
        Mechanism::ScramSha256Plus => (
            SaslClient::scram_sha256_plus("bob", "secret"),
            info("bob", None),
        ),
        Mechanism::CramMd5 => (SaslClient::cram_md5("bob", "secret"), info("bob", None)),
        Mechanism::DigestMd5 => (
            SaslClient::digest_md5("bob", "secret").with_authzid("alice"),
            info("bob", Some("alice")),
        ),
        other => panic!("no test client for {other}"),
    }
}

/// A client of `mechanism` whose credentials are wrong (`unknown`: its
/// user is not in the table, else its password is wrong).
fn bad_client(mechanism: Mechanism, unknown: bool) -> SaslClient {
    let (user, password) = if unknown {
        ("mallory", "secret")
    } else {
        ("bob", "wrong")
    };
    match mechanism {
        Mechanism::Plain => SaslClient::plain(user, password),
        Mechanism::ScramSha256 => SaslClient::scram_sha256(user, password),
        Mechanism::ScramSha256Plus => SaslClient::scram_sha256_plus(user, password),
        Mechanism::CramMd5 => SaslClient::cram_md5(user, password),
        Mechanism::DigestMd5 => SaslClient::digest_md5(user, password),
        other => panic!("{other} has no password"),
    }
}

/// A pair whose session is under TLS 1.3 already (what
/// SCRAM-SHA-256-PLUS needs), the listener's certificate self-signed for
/// `localhost`.
fn tls_pair(split: Split, policy: Policy) -> Pair {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let server = TlsServer::from_pem(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut pair = Pair::new(split, policy);
    pair.tls = Some(server);
    let tls = TlsClient::dangerous_accept_any_certificate("localhost").unwrap();
    pair.a.start_tls(tls).unwrap();
    assert_eq!(pair.pump(), (None, None));
    assert!(pair.a.is_tls_active() && pair.b.is_tls_active());
    pair
}

/// The pair a `mechanism` runs on: under TLS for those that bind to it.
fn pair_for(mechanism: Mechanism, split: Split, policy: Policy) -> Pair {
    if mechanism.needs_channel_binding() {
        tls_pair(split, policy)
    } else {
        Pair::new(split, policy)
    }
}

/// Authenticates with `mechanism` over `split`; checks both sides.
fn authenticate(mechanism: Mechanism, split: Split) {
    let what = format!("{mechanism} {split:?}");
    let mut pair = pair_for(mechanism, split, Policy::Users);
    let (client, expected) = good_client(mechanism);
    let channel = pair.a.start_sasl(client).unwrap();
    assert_eq!(pair.pump(), (None, None), "{what}");

    // RFC 3080 4: both sides know who authenticated, from then on.
    assert_eq!(
        authenticated(&pair.a_events),
        [&expected],
        "{what}: initiator"
    );
    assert_eq!(
        authenticated(&pair.b_events),
        [&expected],
        "{what}: listener"
    );
    assert_eq!(pair.a.authenticated(), Some(&expected), "{what}");
    assert_eq!(pair.b.authenticated(), Some(&expected), "{what}");
    assert!(auth_failed(&pair.a_events).is_empty(), "{what}");

    // The listener's application was asked once, with what it needs.
    assert_eq!(pair.requests.len(), 1, "{what}: {:?}", pair.requests);
    let request = &pair.requests[0];
    assert_eq!((request.channel, request.mechanism), (channel, mechanism));
    match mechanism {
        Mechanism::Plain => {
            assert_eq!(request.need, AuthNeed::Decide);
            assert_eq!(request.password.as_deref(), Some("secret"));
            assert_eq!(request.authzid.as_deref(), Some("alice"));
        }
        Mechanism::Anonymous => {
            assert_eq!(request.need, AuthNeed::Decide);
            assert_eq!(request.anonymous_token.as_deref(), Some("bob@example.org"));
            assert_eq!(request.authcid, None);
        }
        Mechanism::External => {
            assert_eq!(request.need, AuthNeed::Decide);
            assert_eq!(request.authzid.as_deref(), Some("alice"));
        }
        _ => {
            assert_eq!(request.need, AuthNeed::Secret, "{what}");
            assert_eq!(request.password, None, "{what}: the secret never travels");
            assert_eq!(request.authcid.as_deref(), Some(&expected.authcid[..]));
        }
    }

    // The SASL channel's messages were the sessions' own: the
    // application saw none, and it may not use the channel.
    let app_message = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.channel == channel))
    };
    assert!(!app_message(&pair.a_events) && !app_message(&pair.b_events));
    assert_eq!(
        pair.a.send_msg(channel, Message::new("x")),
        Err(UsageError::SaslChannel { channel })
    );
    assert!(
        pair.a.is_channel_open(channel),
        "the SASL channel stays open"
    );

    // The profile that needs authentication now starts, and echoes.
    let secret = pair
        .a
        .open_channel(vec![Profile::new(SECRET)], None)
        .unwrap();
    pair.pump();
    let msgno = pair.a.send_msg(secret, Message::new("hello")).unwrap();
    assert_eq!(pair.pump(), (None, None));
    assert!(
        pair.a_events.iter().any(|e| matches!(e,
            Event::Message(m) if m.channel == secret && m.msgno == msgno && &m.message.body()[..] == b"hello")),
        "{what}: echo on the authenticated profile"
    );

    // The SASL channel closes like any other.
    pair.a
        .close_channel(channel, ReplyCode::SUCCESS, "")
        .unwrap();
    pair.pump();
    assert!(!pair.a.is_channel_open(channel) && !pair.b.is_channel_open(channel));
    assert!(
        pair.b.authenticated().is_some(),
        "authentication outlives its channel"
    );
}

/// RFC 3080 4.1, 4.1.1: each mechanism authenticates, its initial
/// response piggybacked on the start, later rounds as MSG/RPY blobs;
/// the same whatever the cut of the byte stream.
#[test]
fn rfc3080_4_1_every_mechanism_authenticates_whole_writes() {
    for mechanism in wired() {
        authenticate(mechanism, Split::Whole);
    }
}

#[test]
fn rfc3080_4_1_every_mechanism_authenticates_bytewise() {
    for mechanism in wired() {
        authenticate(mechanism, Split::Bytewise);
    }
}

#[test]
fn rfc3080_4_1_every_mechanism_authenticates_random_splits() {
    for mechanism in wired() {
        for split in &SPLITS[2..] {
            authenticate(mechanism, *split);
        }
    }
}

/// Runs `client` against a listener of `policy`; returns the pair after
/// the exchange, checking that it failed with 535 and nothing else said.
fn fails(client: SaslClient, policy: Policy, split: Split) -> Pair {
    let what = format!("{client:?} {policy:?} {split:?}");
    let mut pair = pair_for(client.mechanism(), split, policy);
    let channel = pair.a.start_sasl(client).unwrap();
    assert_eq!(pair.pump(), (None, None), "{what}");
    let failed = auth_failed(&pair.a_events);
    assert_eq!(failed.len(), 1, "{what}: {:?}", pair.a_events);
    let (on, error) = failed[0];
    // RFC 3080 4.1: an <error>; never which part was wrong.
    assert_eq!(on, channel);
    assert_eq!(error.code, ReplyCode::AUTHENTICATION_FAILURE, "{what}");
    assert_eq!(error.text, "authentication failure", "{what}");
    assert!(authenticated(&pair.a_events).is_empty(), "{what}");
    assert!(authenticated(&pair.b_events).is_empty(), "{what}");
    assert_eq!(
        (pair.a.authenticated(), pair.b.authenticated()),
        (None, None)
    );
    pair
}

/// RFC 3080 4.1.3: a wrong password fails with 535 "authentication
/// failure", and so does an unknown user: the client cannot tell them
/// apart. A failed exchange may be tried again.
#[test]
fn rfc3080_4_1_3_wrong_password_and_unknown_user_fail_alike() {
    let password_mechanisms: Vec<Mechanism> = wired()
        .into_iter()
        .filter(|m| !matches!(m, Mechanism::Anonymous | Mechanism::External))
        .collect();
    for mechanism in password_mechanisms {
        for split in [Split::Whole, Split::Bytewise, Split::Random(31)] {
            for unknown in [false, true] {
                let mut pair = fails(bad_client(mechanism, unknown), Policy::Users, split);
                // And again, right this time.
                let (client, expected) = good_client(mechanism);
                pair.a.start_sasl(client).unwrap();
                assert_eq!(pair.pump(), (None, None));
                assert_eq!(pair.a.authenticated(), Some(&expected), "{mechanism} retry");
                assert_eq!(pair.b.authenticated(), Some(&expected), "{mechanism} retry");
            }
        }
    }
}

/// RFC 5802 5.1: SCRAM plays an unknown user's exchange to the end (a
/// challenge comes, as for a known user) before it fails.
#[test]
fn rfc5802_scram_unknown_user_gets_a_challenge_then_fails() {
    let pair = fails(
        SaslClient::scram_sha256("mallory", "secret"),
        Policy::Users,
        Split::Whole,
    );
    assert_eq!(pair.requests[0].need, AuthNeed::Secret);
    assert_eq!(pair.requests[0].authcid.as_deref(), Some("mallory"));
}

/// RFC 3080 4: the application may refuse anyone, ANONYMOUS and EXTERNAL
/// included (RFC 3080 4.1.3: EXTERNAL needs an external service the
/// application vouches for).
#[test]
fn rfc3080_4_denied_authentication_fails() {
    for mechanism in wired() {
        let (client, _) = good_client(mechanism);
        fails(client, Policy::Deny, Split::Random(5));
    }
}

/// An answer must fit the request: a secret is not a decision.
#[test]
fn answer_must_fit_the_request() {
    let mut pair = Pair::new(Split::Whole, Policy::Manual);
    let channel = pair
        .a
        .start_sasl(SaslClient::plain("bob", "secret"))
        .unwrap();
    pair.pump();
    assert_eq!(pair.requests.len(), 1);
    assert_eq!(
        pair.b
            .answer_auth(channel, AuthAnswer::Secret("secret".into())),
        Err(UsageError::AuthAnswerMismatch {
            channel,
            need: AuthNeed::Decide
        })
    );
    assert_eq!(
        pair.b.answer_auth(channel + 2, AuthAnswer::Accept),
        Err(UsageError::NoPendingAuth {
            channel: channel + 2
        })
    );
    // The session's own start: not the application's to accept.
    assert!(
        pair.b
            .accept_start(channel, Profile::new(Mechanism::Plain.uri()))
            .is_err()
    );
    pair.b.answer_auth(channel, AuthAnswer::Accept).unwrap();
    pair.pump();
    assert_eq!(pair.a.authenticated().unwrap().authcid, "bob");
    assert!(
        pair.b.answer_auth(channel, AuthAnswer::Accept).is_err(),
        "answered once"
    );
}

/// RFC 3080 4.1.1: a mechanism the listener does not offer is refused:
/// at once when its greeting is known, else by the listener (504).
#[test]
fn rfc3080_4_1_1_mechanism_not_offered_is_refused() {
    let offered = Config {
        profiles: vec![Mechanism::Plain.uri().into()],
        ..Config::default()
    };
    let mut pair = Pair::with(
        Split::Whole,
        Policy::Users,
        Config::default(),
        offered.clone(),
    );
    assert_eq!(
        pair.a.start_sasl(SaslClient::scram_sha256("bob", "secret")),
        Err(UsageError::AuthNotPossible {
            reason: "the peer does not offer this mechanism"
        })
    );

    // Before the greeting the start goes; the listener refuses it.
    let mut a = Session::initiator(Config::default());
    let channel = a
        .start_sasl(SaslClient::scram_sha256("bob", "secret"))
        .unwrap();
    let pair = Pair::of(a, Session::listener(offered), Split::Whole, Policy::Users);
    let failed = auth_failed(&pair.a_events);
    assert_eq!(failed.len(), 1, "{:?}", pair.a_events);
    assert_eq!(failed[0].1.code, ReplyCode::PARAMETER_NOT_IMPLEMENTED);
    assert_eq!(
        refused(&pair.a_events, channel).map(|e| e.code),
        Some(ReplyCode::PARAMETER_NOT_IMPLEMENTED)
    );
    assert!(pair.requests.is_empty(), "the application was not asked");
    assert!(
        !pair
            .b_events
            .iter()
            .any(|e| matches!(e, Event::StartRequested(_)))
    );
}

/// RFC 3080 4.1.2: a blob's content is base64; what is not is refused
/// (a typed parse error; the listener answers 501, the client side ends
/// the session).
#[test]
fn rfc3080_4_1_2_malformed_base64_is_refused() {
    assert!(matches!(
        SaslElement::parse(b"<blob>AGJvYgBz@@@ZWNyZXQ=</blob>"),
        Err(XmlError::InvalidBlobBase64 { .. })
    ));
    assert!(matches!(
        SaslElement::parse(b"<blob status='maybe' />"),
        Err(XmlError::InvalidAttribute { .. })
    ));

    // A client's malformed initial blob: the start is refused.
    let mut pair = Pair::new(Split::Whole, Policy::Users);
    let profile = Profile::new(Mechanism::Plain.uri()).with_content("<blob>@@@</blob>");
    let channel = pair.a.open_channel(vec![profile], None).unwrap();
    pair.pump();
    assert_eq!(
        refused(&pair.a_events, channel).map(|e| e.code),
        Some(ReplyCode::PARAMETER_SYNTAX_ERROR)
    );
    assert!(pair.requests.is_empty());

    // A listener's malformed answer: the initiator ends the session.
    let mut b = Session::listener(listener_config());
    let mut a = Session::initiator(Config::default());
    let greeting = b.poll_transmit().unwrap();
    a.handle_input(&greeting).unwrap();
    let greeting_size: u32 =
        std::str::from_utf8(&greeting[..greeting.iter().position(|&c| c == b'\r').unwrap()])
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
    a.start_sasl(SaslClient::plain("bob", "secret")).unwrap();
    let out = a.poll_transmit().unwrap();
    let text = String::from_utf8_lossy(&out);
    let msg = text.find("MSG 0 ").unwrap();
    let msgno: u32 = text[msg + 6..].split(' ').next().unwrap().parse().unwrap();
    let payload = format!(
        "Content-Type: application/beep+xml\r\n\r\n<profile uri='{}'><![CDATA[<blob>@@@@</blob>]]></profile>\r\n",
        Mechanism::Plain.uri()
    );
    let frame = format!(
        "RPY 0 {msgno} . {greeting_size} {}\r\n{payload}END\r\n",
        payload.len()
    );
    let error = a.handle_input(frame.as_bytes()).unwrap_err();
    assert!(
        matches!(
            &error,
            ProtocolError::Sasl(SaslError::Malformed(XmlError::InvalidBlobBase64 { .. }))
        ),
        "{error:?}"
    );
    assert!(a.is_ended());
}

/// RFC 3080 4.1.3: the client aborts with `<blob status='abort'/>`; the
/// listener answers it, and the client reports that answer. Another
/// attempt may follow.
#[test]
fn rfc3080_4_1_3_client_abort() {
    // SCRAM: the abort goes instead of the client's second message.
    for split in [Split::Whole, Split::Bytewise] {
        let mut pair = Pair::new(split, Policy::Users);
        let client = SaslClient::scram_sha256("bob", "secret");
        let channel = pair.a.start_sasl(client).unwrap();
        pair.a.abort_sasl(channel).unwrap();
        assert_eq!(
            pair.a.abort_sasl(channel),
            Err(UsageError::NoPendingAuth { channel }),
            "once"
        );
        assert_eq!(pair.pump(), (None, None));
        let failed = auth_failed(&pair.a_events);
        assert_eq!(failed.len(), 1, "{:?}", pair.a_events);
        assert_eq!(failed[0].1.code, ReplyCode::ACTION_ABORTED);
        assert_eq!(
            (pair.a.authenticated(), pair.b.authenticated()),
            (None, None)
        );
        let (client, expected) = good_client(Mechanism::ScramSha256);
        pair.a.start_sasl(client).unwrap();
        pair.pump();
        assert_eq!(pair.b.authenticated(), Some(&expected));
    }
}

/// An abort that crosses the listener's success arrives too late: the
/// listener authenticated the session, and the client says so too.
#[test]
fn rfc3080_4_1_3_abort_crossing_success_authenticates() {
    let mut pair = Pair::new(Split::Whole, Policy::Users);
    let channel = pair
        .a
        .start_sasl(SaslClient::plain("bob", "secret"))
        .unwrap();
    pair.a.abort_sasl(channel).unwrap();
    assert_eq!(pair.pump(), (None, None));
    assert_eq!(pair.a.authenticated().map(|i| &i.authcid[..]), Some("bob"));
    assert_eq!(pair.b.authenticated().map(|i| &i.authcid[..]), Some("bob"));
    assert!(auth_failed(&pair.a_events).is_empty());
}

/// An abort while the listener's application is still deciding: the
/// pending request is gone (its answer is refused), the step it paused
/// fails, and the client reports that failure.
#[test]
fn rfc3080_4_1_3_abort_while_the_listener_decides() {
    let mut pair = Pair::new(Split::Random(3), Policy::Manual);
    let mechanism = if Mechanism::CramMd5.is_available() {
        Mechanism::CramMd5
    } else {
        Mechanism::Plain
    };
    let (client, _) = good_client(mechanism);
    let channel = pair.a.start_sasl(client).unwrap();
    pair.pump();
    assert_eq!(pair.requests.len(), 1);
    if mechanism.client_first() {
        // PLAIN: paused on the start itself; the channel is not open, so
        // the abort waits and the answer decides.
        return;
    }
    pair.a.abort_sasl(channel).unwrap();
    assert_eq!(pair.pump(), (None, None));
    assert_eq!(
        pair.b
            .answer_auth(channel, AuthAnswer::Secret("secret".into())),
        Err(UsageError::NoPendingAuth { channel })
    );
    let failed = auth_failed(&pair.a_events);
    assert_eq!(failed.len(), 1, "{:?}", pair.a_events);
    assert_eq!(failed[0].1.code, ReplyCode::AUTHENTICATION_FAILURE);
    assert_eq!(
        (pair.a.authenticated(), pair.b.authenticated()),
        (None, None)
    );
}

/// RFC 3080 4: after a success no further authentication is allowed,
/// from either side.
#[test]
fn rfc3080_4_a_session_authenticates_once() {
    let mut pair = Pair::new(Split::Whole, Policy::Users);
    pair.a
        .start_sasl(SaslClient::plain("bob", "secret"))
        .unwrap();
    pair.pump();
    assert!(pair.b.authenticated().is_some());
    for session in [&mut pair.a, &mut pair.b] {
        assert_eq!(
            session.start_sasl(SaslClient::anonymous("")),
            Err(UsageError::AlreadyAuthenticated)
        );
    }
    // A peer that tries anyway is refused (550), without asking anyone.
    let profile = Profile::new(Mechanism::Anonymous.uri()).with_content("<blob />");
    let channel = pair.a.open_channel(vec![profile], None).unwrap();
    pair.pump();
    assert_eq!(
        refused(&pair.a_events, channel).map(|e| e.code),
        Some(ReplyCode::REQUESTED_ACTION_NOT_TAKEN)
    );
    assert_eq!(pair.requests.len(), 1);
    assert_eq!(pair.b.authenticated().unwrap().mechanism, Mechanism::Plain);
}

/// One exchange at a time.
#[test]
fn one_exchange_at_a_time() {
    let mut pair = Pair::new(Split::Whole, Policy::Manual);
    pair.a
        .start_sasl(SaslClient::plain("bob", "secret"))
        .unwrap();
    assert_eq!(
        pair.a.start_sasl(SaslClient::anonymous("")),
        Err(UsageError::AuthInProgress)
    );
    pair.pump();
    // The listener refuses a second start while the first is undecided
    // (the refusal goes out after the first start's answer: channel-0
    // replies keep their order, RFC 3080 2.6.1).
    let profile = Profile::new(Mechanism::Anonymous.uri()).with_content("<blob />");
    let channel = pair.a.open_channel(vec![profile], None).unwrap();
    pair.pump();
    assert_eq!(refused(&pair.a_events, channel), None);
    let first = pair.requests[0].channel;
    pair.b.answer_auth(first, AuthAnswer::Accept).unwrap();
    pair.pump();
    assert_eq!(pair.b.authenticated().unwrap().authcid, "bob");
    assert_eq!(
        refused(&pair.a_events, channel).map(|e| e.code),
        Some(ReplyCode::ACTION_NOT_TAKEN)
    );
}

/// `max_sasl_blob`: the listener refuses a larger client blob (553),
/// piggybacked or as a MSG; the client ends a session whose listener
/// sends one (a typed protocol error).
#[test]
fn sasl_blob_over_the_limit_is_refused() {
    // PLAIN's "\0bob\0secret" is 11 octets.
    let small = Config {
        max_sasl_blob: 8,
        ..listener_config()
    };
    let mut pair = Pair::with(Split::Whole, Policy::Users, Config::default(), small);
    let channel = pair
        .a
        .start_sasl(SaslClient::plain("bob", "secret"))
        .unwrap();
    pair.pump();
    assert_eq!(
        refused(&pair.a_events, channel).map(|e| e.code),
        Some(ReplyCode::PARAMETER_INVALID)
    );
    assert_eq!(
        auth_failed(&pair.a_events)[0].1.code,
        ReplyCode::PARAMETER_INVALID
    );

    // SCRAM: the client-first message (about 40 octets) fits, the
    // client-final one (about 110) does not.
    let limit = Config {
        max_sasl_blob: 80,
        ..listener_config()
    };
    let mut pair = Pair::with(Split::Whole, Policy::Users, Config::default(), limit);
    pair.a
        .start_sasl(SaslClient::scram_sha256("bob", "secret"))
        .unwrap();
    assert_eq!(pair.pump(), (None, None));
    let failed = auth_failed(&pair.a_events);
    assert_eq!(failed.len(), 1, "{:?}", pair.a_events);
    assert_eq!(failed[0].1.code, ReplyCode::PARAMETER_INVALID);
    assert_eq!(pair.b.authenticated(), None);

    // The server-first message (about 90 octets) is over the client's
    // limit.
    let client = Config {
        max_sasl_blob: 50,
        ..Config::default()
    };
    let mut pair = Pair::with(Split::Whole, Policy::Users, client, listener_config());
    pair.a
        .start_sasl(SaslClient::scram_sha256("bob", "secret"))
        .unwrap();
    let (a_err, _) = pair.pump();
    assert!(
        matches!(
            a_err,
            Some(ProtocolError::Sasl(SaslError::BlobTooLarge {
                limit: 50,
                ..
            }))
        ),
        "{a_err:?}"
    );
    assert!(pair.a.is_ended());
}

/// `max_sasl_rounds` bounds an exchange on both sides.
#[test]
fn sasl_rounds_are_bounded() {
    let one = Config {
        max_sasl_rounds: 1,
        ..listener_config()
    };
    let mut pair = Pair::with(Split::Whole, Policy::Users, Config::default(), one);
    pair.a
        .start_sasl(SaslClient::scram_sha256("bob", "secret"))
        .unwrap();
    pair.pump();
    assert_eq!(
        auth_failed(&pair.a_events)[0].1.code,
        ReplyCode::TRANSACTION_FAILED
    );

    let none = Config {
        max_sasl_rounds: 0,
        ..Config::default()
    };
    let mut pair = Pair::with(Split::Whole, Policy::Users, none, listener_config());
    pair.a
        .start_sasl(SaslClient::scram_sha256("bob", "secret"))
        .unwrap();
    let (a_err, _) = pair.pump();
    assert_eq!(
        a_err,
        Some(ProtocolError::Sasl(SaslError::TooManyRounds { limit: 0 }))
    );
}

/// RFC 3080 4.1: once SASL succeeded, no transport security begins:
/// `start_tls` is refused, and so is the peer's TLS start.
#[test]
fn rfc3080_4_1_no_tls_after_sasl() {
    let mut pair = Pair::new(Split::Whole, Policy::Users);
    pair.a
        .start_sasl(SaslClient::plain("bob", "secret"))
        .unwrap();
    pair.pump();
    let tls = TlsClient::dangerous_accept_any_certificate("localhost").unwrap();
    assert!(matches!(
        pair.a.start_tls(tls),
        Err(UsageError::TuningNotPossible { reason }) if reason.contains("4.1")
    ));
    // The peer's <ready/> piggybacked on a start: refused, not asked.
    let profile = Profile::new(TLS_URI).with_content("<ready />");
    let channel = pair.a.open_channel(vec![profile], None).unwrap();
    pair.pump();
    let error = refused(&pair.a_events, channel).unwrap();
    assert_eq!(error.code, ReplyCode::REQUESTED_ACTION_NOT_TAKEN);
    assert!(error.text.contains("4.1"), "{error:?}");
    assert!(
        !pair
            .b_events
            .iter()
            .any(|e| matches!(e, Event::TlsRequested(_)))
    );
    assert!(!pair.a.is_tls_active() && !pair.b.is_tls_active());
}

/// `auth_profiles` (RFC 3080 4, 8: 530 authentication required): advertised
/// from the greeting on, refused before the peer authenticated, served
/// after, without the application seeing the refused start.
#[test]
fn rfc3080_4_auth_profiles_refused_with_530_before_and_served_after() {
    let mut pair = Pair::new(Split::Random(11), Policy::Users);
    let advertised = &pair.a.peer_greeting().unwrap().profiles;
    assert!(advertised.contains(&SECRET.to_string()), "{advertised:?}");
    let early = pair
        .a
        .open_channel(vec![Profile::new(SECRET)], None)
        .unwrap();
    pair.pump();
    assert_eq!(
        refused(&pair.a_events, early).map(|e| e.code),
        Some(ReplyCode::AUTHENTICATION_REQUIRED)
    );
    assert!(
        !pair
            .b_events
            .iter()
            .any(|e| matches!(e, Event::StartRequested(_)))
    );
    // An open profile is still served meanwhile.
    pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    pair.pump();
    assert!(
        pair.a_events
            .iter()
            .any(|e| matches!(e, Event::ChannelOpened { .. }))
    );

    pair.a.start_sasl(SaslClient::anonymous("")).unwrap();
    pair.pump();
    let late = pair
        .a
        .open_channel(vec![Profile::new(SECRET)], None)
        .unwrap();
    pair.pump();
    assert!(pair.a.is_channel_open(late), "{:?}", pair.a_events);
}

/// The profiles of `auth_profiles` open to a peer that authenticated to
/// us, not because we authenticated to it.
#[test]
fn rfc3080_4_auth_profiles_need_the_peer_authenticated() {
    let initiator = Config {
        profiles: wired().iter().map(|m| m.uri().to_owned()).collect(),
        auth_profiles: vec![SECRET.into()],
        ..Config::default()
    };
    let mut pair = Pair::with(Split::Whole, Policy::Users, initiator, listener_config());
    // The listener authenticates to the initiator (which serves).
    pair.b.start_sasl(SaslClient::anonymous("")).unwrap();
    pair.pump();
    // The harness answers only the listener's requests: answer this one.
    let request = pair
        .a_events
        .iter()
        .find_map(|e| match e {
            Event::AuthRequested(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    pair.a
        .answer_auth(request.channel, AuthAnswer::Accept)
        .unwrap();
    pair.pump();
    assert!(pair.a.authenticated().is_some() && pair.b.authenticated().is_some());
    // The initiator's SECRET is open to the listener now...
    let theirs = pair
        .b
        .open_channel(vec![Profile::new(SECRET)], None)
        .unwrap();
    // ...but the listener's is not open to the initiator.
    let ours = pair
        .a
        .open_channel(vec![Profile::new(SECRET)], None)
        .unwrap();
    pair.pump();
    assert_eq!(
        refused(&pair.a_events, ours).map(|e| e.code),
        Some(ReplyCode::AUTHENTICATION_REQUIRED)
    );
    assert!(refused(&pair.b_events, theirs).is_none());
}

/// The credentials never show in debug output, and an empty PLAIN user
/// is refused before anything is sent.
#[test]
fn credentials_stay_out_of_debug_output_and_bad_ones_are_refused() {
    let mut pair = Pair::new(Split::Whole, Policy::Manual);
    pair.a
        .start_sasl(SaslClient::plain("bob", "hunter2"))
        .unwrap();
    pair.pump();
    let request = format!("{:?}", pair.requests[0]);
    assert!(
        request.contains("bob") && !request.contains("hunter2"),
        "{request}"
    );
    assert!(matches!(
        Session::initiator(Config::default()).start_sasl(SaslClient::plain("", "x")),
        Err(UsageError::Sasl(SaslError::Mechanism(_)))
    ));
}

/// RFC 3080 4.1.1: a start may offer several SASL profiles; the listener
/// runs the first it offers, in the peer's order (here after one it does
/// not know, which is left out).
#[test]
fn rfc3080_4_1_1_a_start_may_offer_several_mechanisms() {
    let mut pair = Pair::new(Split::Whole, Policy::Users);
    let profiles = vec![
        Profile::new("http://iana.org/beep/SASL/OTP"),
        Profile::new(Mechanism::Anonymous.uri()).with_content("<blob>dHJhY2U=</blob>"),
        Profile::new(Mechanism::Plain.uri()),
    ];
    let channel = pair.a.open_channel(profiles, None).unwrap();
    assert_eq!(pair.pump(), (None, None));
    let opened = pair.a_events.iter().find_map(|e| match e {
        Event::ChannelOpened {
            channel: c,
            profile,
        } if *c == channel => Some(profile),
        _ => None,
    });
    let opened = opened.expect("the channel started");
    assert_eq!(opened.uri, Mechanism::Anonymous.uri());
    assert_eq!(
        opened.content.as_deref(),
        Some(&b"<blob status='complete' />"[..])
    );
    assert_eq!(pair.requests[0].anonymous_token.as_deref(), Some("trace"));
    assert_eq!(
        pair.b.authenticated().unwrap().mechanism,
        Mechanism::Anonymous
    );
}

/// RFC 3080 4.1, 4.1.3: SASL after TLS authenticates (no SASL security
/// layer is negotiated, which is what RFC 3080 4.1 forbids then); EXTERNAL
/// takes its identity from the TLS service, which the listener's
/// application checks ([`Session::tls_info`]) before it accepts.
#[test]
fn rfc3080_4_1_3_external_over_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let server = TlsServer::from_pem(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut pair = Pair::new(Split::Random(17), Policy::Manual);
    pair.tls = Some(server);
    let tls = TlsClient::dangerous_accept_any_certificate("localhost").unwrap();
    pair.a.start_tls(tls).unwrap();
    assert_eq!(pair.pump(), (None, None));
    assert!(pair.a.is_tls_active() && pair.b.is_tls_active());
    let offered = &pair.a.peer_greeting().unwrap().profiles;
    assert!(
        offered.contains(&Mechanism::External.uri().to_string()),
        "{offered:?}"
    );

    let channel = pair.a.start_sasl(SaslClient::external()).unwrap();
    pair.pump();
    let request = pair.requests.last().unwrap().clone();
    assert_eq!(
        (request.mechanism, request.need),
        (Mechanism::External, AuthNeed::Decide)
    );
    assert_eq!(request.authzid, None);
    // The external service vouches for the peer: TLS is up, with its
    // server name.
    let tls_info = pair.b.tls_info().unwrap();
    assert_eq!(tls_info.server_name.as_deref(), Some("localhost"));
    // ... and the request carries it, for a handler that has no session.
    assert_eq!(request.tls.as_ref(), Some(tls_info));
    pair.b.answer_auth(channel, AuthAnswer::Accept).unwrap();
    assert_eq!(pair.pump(), (None, None));
    let expected = AuthInfo {
        mechanism: Mechanism::External,
        authcid: String::new(),
        authzid: None,
    };
    assert_eq!(pair.a.authenticated(), Some(&expected));
    assert_eq!(pair.b.authenticated(), Some(&expected));
}

/// RFC 9266, RFC 5802 6: SCRAM-SHA-256-PLUS binds to TLS, so it is
/// advertised only once TLS (1.3) is active, and a client cannot start it
/// before: a typed refusal, nothing sent.
#[test]
fn rfc9266_plus_is_offered_and_started_only_over_tls() {
    let plus = Mechanism::ScramSha256Plus;
    let mut pair = Pair::new(Split::Whole, Policy::Users);
    pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    assert_eq!(pair.pump(), (None, None));
    let offered = &pair.a.peer_greeting().unwrap().profiles;
    assert!(!offered.contains(&plus.uri().to_string()), "{offered:?}");
    assert!(offered.contains(&Mechanism::ScramSha256.uri().to_string()));
    let refused = pair
        .a
        .start_sasl(SaslClient::scram_sha256_plus("bob", "secret"));
    assert!(
        matches!(refused, Err(UsageError::AuthNotPossible { .. })),
        "{refused:?}"
    );

    let mut pair = tls_pair(Split::Whole, Policy::Users);
    let offered = &pair.a.peer_greeting().unwrap().profiles;
    assert!(offered.contains(&plus.uri().to_string()), "{offered:?}");
    pair.a
        .start_sasl(SaslClient::scram_sha256_plus("bob", "secret"))
        .unwrap();
    assert_eq!(pair.pump(), (None, None));
    assert_eq!(pair.b.authenticated().map(|i| i.mechanism), Some(plus));
    // Plain SCRAM still works where -PLUS is offered: a client that does
    // not bind says so (`n`) and is not taken for a downgrade.
    let mut pair = tls_pair(Split::Whole, Policy::Users);
    pair.a
        .start_sasl(SaslClient::scram_sha256("bob", "secret"))
        .unwrap();
    assert_eq!(pair.pump(), (None, None));
    assert_eq!(
        pair.b.authenticated().map(|i| i.mechanism),
        Some(Mechanism::ScramSha256)
    );
}

/// RFC 4422 3.8 (the server may limit attempts): after
/// `Config::max_auth_failures` failed exchanges, further SASL starts on
/// the session are refused with 554 without asking the application.
#[test]
fn rfc4422_failed_attempts_per_session_are_bounded() {
    let mut pair = Pair::new(Split::Whole, Policy::Users);
    let limit = Config::default().max_auth_failures;
    assert_eq!(limit, 3);
    for attempt in 0..limit {
        pair.a
            .start_sasl(SaslClient::plain("bob", "guess"))
            .unwrap();
        assert_eq!(pair.pump(), (None, None));
        assert_eq!(auth_failed(&pair.a_events).len(), attempt as usize + 1);
    }
    let asked = pair.requests.len();
    let channel = pair
        .a
        .start_sasl(SaslClient::plain("bob", "secret"))
        .unwrap();
    assert_eq!(pair.pump(), (None, None));
    let error = refused(&pair.a_events, channel).expect("the fourth start is refused");
    assert_eq!(error.code, ReplyCode::TRANSACTION_FAILED);
    assert_eq!(pair.requests.len(), asked, "the application is not asked");
    assert_eq!(pair.b.authenticated(), None);
    // Other profiles are still served.
    pair.a.open_channel(vec![Profile::new(ECHO)], None).unwrap();
    assert_eq!(pair.pump(), (None, None));
}

/// RFC 3080 4.1.2-4.1.3: either side can abort. The client's abort is
/// tested above; a listener that aborts (with `<blob status='abort'/>`,
/// where RFC 3080 4.1.2 would have an `<error>`) fails the exchange as
/// an error would (451), and the session goes on.
#[test]
fn rfc3080_4_1_3_listener_abort_fails_the_exchange() {
    let mut b = Session::listener(listener_config());
    let mut a = Session::initiator(Config::default());
    let greeting = b.poll_transmit().unwrap();
    a.handle_input(&greeting).unwrap();
    let greeting_size = greeting
        .split(|&c| c == b'\r')
        .next()
        .and_then(|line| std::str::from_utf8(line).ok())
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap();
    let channel = a.start_sasl(SaslClient::plain("bob", "secret")).unwrap();
    let out = a.poll_transmit().unwrap();
    let text = String::from_utf8_lossy(&out);
    let msg = text.find("MSG 0 ").unwrap();
    let msgno: u32 = text[msg + 6..].split(' ').next().unwrap().parse().unwrap();
    let payload = format!(
        "Content-Type: application/beep+xml\r\n\r\n<profile uri='{}'><![CDATA[<blob status='abort'/>]]></profile>\r\n",
        Mechanism::Plain.uri()
    );
    let frame = format!(
        "RPY 0 {msgno} . {greeting_size} {}\r\n{payload}END\r\n",
        payload.len()
    );
    a.handle_input(frame.as_bytes()).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
    let failed = auth_failed(&events);
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].0, channel);
    assert_eq!(failed[0].1.code, ReplyCode::ACTION_ABORTED);
    assert!(!a.is_ended());
    assert_eq!(a.authenticated(), None);
}
