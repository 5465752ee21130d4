//! The server's side of one exchange: rsasl's synchronous callbacks
//! bridged to an event the application answers later.
//!
//! rsasl asks its callback, in the middle of a step, for what it needs
//! (a stored secret, or the decision on what the client sent). The
//! session cannot wait for the application there, so:
//!
//! 1. every step runs with a callback that records what it was asked
//!    and, when it needs the application, marks the exchange paused and
//!    makes the step fail (our own error, recognised by the mark);
//! 2. the session reports [`AuthRequest`] and keeps the client's messages;
//! 3. on the answer, a fresh rsasl session runs from the start over all
//!    the client's messages with a callback that now has the answer, and
//!    only the output of the last step (the one that paused) is sent.
//!
//! # Why the replay is sound
//!
//! Steps before the paused one produced output that was sent already;
//! the replay must produce it again, octet for octet, or the client's
//! later messages (computed from it) would not fit. It does:
//!
//! * PLAIN, ANONYMOUS and EXTERNAL have one step: nothing was sent before
//!   the pause (their decision is asked in that step's `validate`).
//! * SCRAM-SHA-256 asks for the secret in its first step, before it has
//!   written anything or drawn its random nonce and salt; its second
//!   step's `validate` comes after the proof was checked against the
//!   secret, which the application gave already, so it never pauses.
//!   Nothing sent is replayed.
//! * CRAM-MD5 (and DIGEST-MD5) send a challenge first and ask for the
//!   password in the next step. Their only randomness is the challenge
//!   (nonce), which they ask of the callback (`ServerNonce`) before
//!   generating one: the callback records the value it gave the first
//!   time and gives the same again, so the replayed challenge is the one
//!   the client answered.
//!
//! And it is checked: each replayed output is compared with what was
//! sent; a difference fails the exchange ("authentication failure")
//! instead of sending something inconsistent.
//!
//! Once answered, the exchange keeps its rsasl session for the next
//! steps (SCRAM's second, DIGEST-MD5's third): the answer stays in the
//! callback, so they do not pause again. The replay costs one re-run of
//! earlier steps, at most `max_sasl_rounds` messages of at most
//! `max_sasl_blob` octets each, once per exchange.

use std::sync::{Arc, Mutex, MutexGuard};

use rand::RngCore;
use rsasl::callback::{CallbackError, Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::anonymous::AnonymousToken;
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::prelude::{MessageSent, SASLConfig, SASLServer, Session, SessionError, State};
use rsasl::property::{AuthId, AuthzId, ChannelBindingName, ChannelBindings, Hostname, Password};
use rsasl::validate::{Validate, Validation, ValidationError};

use super::client::{ChannelBinding, TLS_EXPORTER};
use super::cram_md5::ServerNonce;
use super::scram::{self, ScramKeys};
use super::{AuthAnswer, AuthInfo, AuthNeed, AuthRequest, Mechanism, identity, registry};

/// The verdict the callback's `validate` gives rsasl.
struct Verdict;
impl Validation for Verdict {
    type Value = bool;
}

/// The mark of a step stopped to ask the application.
#[derive(Debug, thiserror::Error)]
#[error("the exchange waits for the application")]
struct Paused;

/// What the client sent, as the callback saw it.
#[derive(Default)]
struct Seen {
    authcid: Option<String>,
    authzid: Option<String>,
    password: Option<String>,
    /// Refused without asking, since the application could not compare
    /// it: PLAIN's password was not UTF-8 (RFC 4616 2 requires it), or a
    /// SCRAM name was not a valid `saslname` (RFC 5802 5.1).
    malformed: bool,
    anonymous_token: Option<String>,
}

/// What the callback shares with the exchange across steps and replays.
struct Shared {
    mechanism: Mechanism,
    /// The application's answer, once given.
    answer: Option<AuthAnswer>,
    /// SCRAM: the keys derived from the answer's secret.
    scram: Option<ScramKeys>,
    /// CRAM-MD5, DIGEST-MD5: the nonce given the first time, given again
    /// in a replay.
    nonce: Option<String>,
    /// The host for a CRAM-MD5 challenge (`<random.random@host>`).
    host: String,
    /// The session's `tls-exporter` binding, for SCRAM-SHA-256-PLUS.
    binding: Option<ChannelBinding>,
    seen: Seen,
    /// Set by the callback when the step must wait for the application.
    paused: Option<AuthNeed>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // Nothing panics while holding it; a poisoned lock is still usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// rsasl's callback for one exchange.
struct Callback(Arc<Mutex<Shared>>);

impl Callback {
    fn see(&self, context: &Context) {
        let mut shared = lock(&self.0);
        let scram = shared.mechanism.is_scram();
        let seen = &mut shared.seen;
        // SCRAM's names come escaped (RFC 5802 5.1); the application
        // gets, and the session reports, the names the user typed.
        let mut name = |raw: &str| {
            if !scram {
                return Some(raw.to_owned());
            }
            let name = scram::unescape_name(raw);
            seen.malformed |= name.is_none();
            name
        };
        if let Some(authcid) = context.get_ref::<AuthId>() {
            let authcid = name(authcid);
            seen.authcid = authcid;
        }
        if let Some(authzid) = context.get_ref::<AuthzId>() {
            // PLAIN and EXTERNAL give "" for "none".
            let authzid = if authzid.is_empty() {
                None
            } else {
                name(authzid)
            };
            seen.authzid = authzid;
        }
        if let Some(password) = context.get_ref::<Password>() {
            match std::str::from_utf8(password) {
                Ok(p) => seen.password = Some(p.to_owned()),
                Err(_) => seen.malformed = true,
            }
        }
        if let Some(token) = context.get_ref::<AnonymousToken>() {
            seen.anonymous_token = (!token.is_empty()).then(|| token.to_owned());
        }
    }

    /// The secret asked for (`Password` by CRAM-MD5 and DIGEST-MD5,
    /// `ScramStoredPassword` by SCRAM), once the application gave it.
    fn secret(&self, request: &mut Request<'_>) -> Result<(), SessionError> {
        let mut shared = lock(&self.0);
        match &shared.answer {
            Some(AuthAnswer::Secret(secret)) => {
                if request.is::<Password>() {
                    let secret = secret.clone();
                    drop(shared);
                    request.satisfy::<Password>(secret.as_bytes())?;
                } else if let Some(keys) = &shared.scram {
                    let stored = ScramStoredPassword::new(
                        keys.iterations,
                        &keys.salt,
                        &keys.stored_key,
                        &keys.server_key,
                    );
                    request.satisfy::<ScramStoredPassword>(&stored)?;
                }
                Ok(())
            }
            // No such user (or refused): "no value", which the mechanisms
            // treat as a failure they do not reveal early (SCRAM plays
            // its exchange to the end, RFC 5802 5.1).
            Some(_) => Err(CallbackError::NoValue.into()),
            // A name no user can have: failed the same way, unasked.
            None if shared.seen.malformed => Err(CallbackError::NoValue.into()),
            None => {
                shared.paused = Some(AuthNeed::Secret);
                Err(SessionError::Boxed(Box::new(Paused)))
            }
        }
    }

    fn nonce(&self, request: &mut Request<'_>) -> Result<(), SessionError> {
        let nonce = {
            let mut shared = lock(&self.0);
            let (mechanism, host) = (shared.mechanism, shared.host.clone());
            shared
                .nonce
                .get_or_insert_with(|| fresh_nonce(mechanism, &host))
                .clone()
        };
        request.satisfy::<ServerNonce>(&nonce)?;
        Ok(())
    }
}

impl SessionCallback for Callback {
    fn callback(
        &self,
        _session: &SessionData,
        context: &Context,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        self.see(context);
        if request.is::<ChannelBindings>() {
            // SCRAM-SHA-256-PLUS, for the type the client named: only
            // `tls-exporter` is answered; another type, or no TLS 1.3,
            // fails the exchange.
            let binding = lock(&self.0).binding;
            if let (Some(binding), Some(TLS_EXPORTER)) =
                (binding, context.get_ref::<ChannelBindingName>())
            {
                request.satisfy::<ChannelBindings>(&binding)?;
            }
            return Ok(());
        }
        if request.is::<ServerNonce>() {
            return self.nonce(request);
        }
        if request.is::<Hostname>() {
            // DIGEST-MD5 checks its digest-uri against our name.
            let host = lock(&self.0).host.clone();
            request.satisfy::<Hostname>(&host)?;
            return Ok(());
        }
        if request.is::<Password>() || request.is::<ScramStoredPassword>() {
            return self.secret(request);
        }
        Ok(())
    }

    fn validate(
        &self,
        _session: &SessionData,
        context: &Context,
        validate: &mut Validate<'_>,
    ) -> Result<(), ValidationError> {
        self.see(context);
        let mut shared = lock(&self.0);
        let verdict = match &shared.answer {
            // A mechanism that checks a secret validates only once the
            // proof held: the secret was the answer.
            Some(AuthAnswer::Accept | AuthAnswer::Secret(_)) => !shared.seen.malformed,
            Some(AuthAnswer::Deny | AuthAnswer::NoSuchUser) => false,
            None if shared.seen.malformed => false,
            None => {
                shared.paused = Some(AuthNeed::Decide);
                return Err(ValidationError::Boxed(Box::new(Paused)));
            }
        };
        validate.finalize::<Verdict>(verdict);
        Ok(())
    }
}

/// A fresh server nonce: CRAM-MD5's whole challenge (RFC 2195 2, a
/// msg-id: `<random.random@host>`), DIGEST-MD5's `nonce` directive.
fn fresh_nonce(mechanism: Mechanism, host: &str) -> String {
    let mut rng = rand::thread_rng();
    match mechanism {
        Mechanism::CramMd5 => format!("<{}.{}@{host}>", rng.next_u64(), rng.next_u64()),
        _ => {
            let mut bytes = [0u8; 16];
            rng.fill_bytes(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// What a step led to.
#[derive(Debug)]
pub(crate) enum ServerOutcome {
    /// A challenge: send it as a `continue` blob.
    Continue(Vec<u8>),
    /// Success, with the mechanism's additional data (maybe empty).
    Success {
        /// Who authenticated.
        info: AuthInfo,
        /// The final message, if the mechanism has one.
        data: Vec<u8>,
    },
    /// Failure, whatever the reason (never said to the client).
    Failure,
    /// The application must answer this first.
    Ask(AuthRequest),
}

/// The server's side of one exchange.
pub(crate) struct ServerExchange {
    mechanism: Mechanism,
    channel: u32,
    server_name: Option<String>,
    /// The client's messages so far (`None`: the exchange began without
    /// one, as server-first mechanisms do).
    received: Vec<Option<Vec<u8>>>,
    /// Our challenges, one per step that went on, to check the replay.
    sent: Vec<Vec<u8>>,
    /// This session offered SCRAM-SHA-256-PLUS (see `registry.rs`).
    plus_offered: bool,
    /// The rsasl session between steps (none while paused).
    live: Option<Session<Verdict>>,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for ServerExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerExchange")
            .field("mechanism", &self.mechanism)
            .field("channel", &self.channel)
            .field("rounds", &self.received.len())
            .finish_non_exhaustive()
    }
}

impl ServerExchange {
    /// An exchange of `mechanism` on `channel`; `server_name` names the
    /// host (a CRAM-MD5 challenge carries it) and goes in the requests;
    /// `binding` is the session's `tls-exporter` channel binding (TLS 1.3
    /// active), and SCRAM-SHA-256-PLUS was offered when it is `Some`.
    pub(crate) fn new(
        mechanism: Mechanism,
        channel: u32,
        server_name: Option<String>,
        binding: Option<ChannelBinding>,
    ) -> Self {
        let host = server_name
            .as_deref()
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 253
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            })
            .unwrap_or("localhost")
            .to_owned();
        let shared = Shared {
            mechanism,
            answer: None,
            scram: None,
            nonce: None,
            host,
            binding,
            seen: Seen::default(),
            paused: None,
        };
        ServerExchange {
            mechanism,
            channel,
            server_name,
            received: Vec::new(),
            sent: Vec::new(),
            plus_offered: binding.is_some(),
            live: None,
            shared: Arc::new(Mutex::new(shared)),
        }
    }

    /// The client messages received so far.
    pub(crate) fn rounds(&self) -> usize {
        self.received.len()
    }

    fn session(&self) -> Option<Session<Verdict>> {
        let mechanism = registry::mechanism(self.mechanism)?;
        let config = SASLConfig::builder()
            .with_registry(registry::registry(self.plus_offered))
            .with_callback(Callback(Arc::clone(&self.shared)))
            .ok()?;
        SASLServer::<Verdict>::new(config)
            .start_suggested(mechanism.mechanism)
            .ok()
    }

    /// The client's next message (`None`: begin a server-first
    /// mechanism without one).
    pub(crate) fn receive(&mut self, message: Option<Vec<u8>>) -> ServerOutcome {
        let session = match self.live.take() {
            Some(session) => session,
            None if self.received.is_empty() => match self.session() {
                Some(session) => session,
                None => return ServerOutcome::Failure,
            },
            // Paused: the client must wait for our answer.
            None => return ServerOutcome::Failure,
        };
        // rsasl's SCRAM parsers panic on short attributes: checked first.
        if self.mechanism.is_scram()
            && !message
                .as_deref()
                .is_some_and(|m| scram::attributes_well_formed(m, self.received.is_empty()))
        {
            return ServerOutcome::Failure;
        }
        if self.mechanism.needs_channel_binding()
            && self.received.is_empty()
            && !message.as_deref().is_some_and(scram::binds_to_tls_exporter)
        {
            return ServerOutcome::Failure;
        }
        self.received.push(message);
        self.advance(session)
    }

    /// Runs the step of the last message received.
    fn advance(&mut self, mut session: Session<Verdict>) -> ServerOutcome {
        let input = self.received.last().cloned().flatten();
        let mut out = Vec::new();
        lock(&self.shared).paused = None;
        let result = session.step(input.as_deref(), &mut out);
        let paused = lock(&self.shared).paused.take();
        if let Some(need) = paused {
            // The session is dropped: rsasl's sessions may not step again
            // after an error. The answer replays into a fresh one.
            return ServerOutcome::Ask(self.request(need));
        }
        match result {
            Ok(State::Running) => {
                self.sent.push(out.clone());
                self.live = Some(session);
                ServerOutcome::Continue(out)
            }
            Ok(State::Finished(sent)) => {
                let data = if sent == MessageSent::Yes {
                    out
                } else {
                    Vec::new()
                };
                match session.validation() {
                    Some(true) => ServerOutcome::Success {
                        info: self.info(),
                        data,
                    },
                    _ => ServerOutcome::Failure,
                }
            }
            Err(_) => ServerOutcome::Failure,
        }
    }

    /// The application's answer to the request this exchange made: the
    /// steps before run again (their output checked against what was
    /// sent), then the one that paused.
    pub(crate) fn answer(&mut self, answer: AuthAnswer) -> ServerOutcome {
        {
            let mut shared = lock(&self.shared);
            if let (true, AuthAnswer::Secret(secret)) = (self.mechanism.is_scram(), &answer) {
                let mut salt = vec![0u8; 16];
                rand::thread_rng().fill_bytes(&mut salt);
                shared.scram = scram::derive(secret.as_bytes(), salt, scram::ITERATIONS);
            }
            shared.answer = Some(answer);
        }
        let Some(mut session) = self.session() else {
            return ServerOutcome::Failure;
        };
        let earlier = self.received.len().saturating_sub(1);
        for i in 0..earlier {
            let mut out = Vec::new();
            let input = self.received[i].clone();
            let replayed = session.step(input.as_deref(), &mut out);
            let paused = lock(&self.shared).paused.take().is_some();
            let same =
                matches!(replayed, Ok(State::Running)) && !paused && self.sent.get(i) == Some(&out);
            if !same {
                return ServerOutcome::Failure;
            }
        }
        self.advance(session)
    }

    /// What the application is asked, from what the callback saw.
    fn request(&self, need: AuthNeed) -> AuthRequest {
        let shared = lock(&self.shared);
        let seen = &shared.seen;
        let mechanism = self.mechanism;
        let has_user = !matches!(mechanism, Mechanism::Anonymous | Mechanism::External);
        AuthRequest {
            channel: self.channel,
            mechanism,
            authcid: seen.authcid.clone().filter(|_| has_user),
            authzid: seen.authzid.clone(),
            password: seen
                .password
                .clone()
                .filter(|_| mechanism == Mechanism::Plain),
            anonymous_token: seen.anonymous_token.clone(),
            server_name: self.server_name.clone(),
            need,
            tls: None,
        }
    }

    fn info(&self) -> AuthInfo {
        let shared = lock(&self.shared);
        let mechanism = self.mechanism;
        let authzid = match mechanism {
            Mechanism::Anonymous | Mechanism::CramMd5 => None,
            _ => shared.seen.authzid.clone(),
        };
        AuthInfo {
            mechanism,
            authcid: identity(mechanism, shared.seen.authcid.as_deref()),
            authzid,
        }
    }
}

#[cfg(test)]
mod tests {
    //! SCRAM-SHA-256-PLUS's channel binding (RFC 5802 6, RFC 9266) at the
    //! level of one exchange: the two sides' bindings are given here, as
    //! two TLS sessions would give them.
    use super::*;
    use crate::sasl::SaslClient;
    use crate::sasl::client::ClientExchange;

    const CLIENT_SIDE: ChannelBinding = [1; 32];
    const RELAYED_SIDE: ChannelBinding = [2; 32];

    /// Runs SCRAM between `client` (its TLS session's binding) and a
    /// server of `mechanism` (its own binding); the server knows bob.
    fn run(client: &SaslClient, client_tls: ChannelBinding, server_tls: ChannelBinding) -> bool {
        let mut client = ClientExchange::start(client, Some(client_tls)).unwrap();
        let mechanism = client_mechanism(&client);
        let mut server = ServerExchange::new(mechanism, 1, None, Some(server_tls));
        let mut outcome = server.receive(client.initial().map(<[u8]>::to_vec));
        loop {
            outcome = match outcome {
                ServerOutcome::Ask(request) => {
                    assert_eq!(request.authcid.as_deref(), Some("bob"));
                    server.answer(AuthAnswer::Secret("secret".into()))
                }
                ServerOutcome::Continue(challenge) => match client.challenge(&challenge) {
                    Ok(response) => server.receive(Some(response)),
                    Err(_) => return false,
                },
                ServerOutcome::Success { data, .. } => return client.complete(&data).is_ok(),
                ServerOutcome::Failure => return false,
            }
        }
    }

    fn client_mechanism(client: &ClientExchange) -> Mechanism {
        client.info().mechanism
    }

    /// RFC 9266, RFC 5802 6: the same TLS session on both sides binds.
    #[test]
    fn rfc5802_6_plus_with_one_tls_session_authenticates() {
        let client = SaslClient::scram_sha256_plus("bob", "secret");
        assert!(run(&client, CLIENT_SIDE, CLIENT_SIDE));
    }

    /// RFC 5802 6: an exchange relayed from one TLS session into another
    /// (a man in the middle holding both) fails, though the password is
    /// right: the client's proof covers its session's binding.
    #[test]
    fn rfc5802_6_plus_relayed_into_another_tls_session_fails() {
        let client = SaslClient::scram_sha256_plus("bob", "secret");
        assert!(!run(&client, CLIENT_SIDE, RELAYED_SIDE));
        // Plain SCRAM binds to nothing: the same relay succeeds, which is
        // what -PLUS is for.
        let plain = SaslClient::scram_sha256("bob", "secret");
        assert!(run(&plain, CLIENT_SIDE, RELAYED_SIDE));
    }

    /// RFC 5802 6 / 7: a -PLUS exchange must bind: a client-first that
    /// says `n` (no binding) or names a type we do not give is refused
    /// before rsasl sees it.
    #[test]
    fn rfc5802_6_plus_without_binding_is_refused() {
        for first in [
            &b"n,,n=bob,r=abcdefgh"[..],
            b"y,,n=bob,r=abcdefgh",
            b"p=tls-unique,,n=bob,r=abcdefgh",
        ] {
            let mut server =
                ServerExchange::new(Mechanism::ScramSha256Plus, 1, None, Some(CLIENT_SIDE));
            assert!(
                matches!(server.receive(Some(first.to_vec())), ServerOutcome::Failure),
                "{:?}",
                String::from_utf8_lossy(first)
            );
        }
    }

    /// RFC 5802 6: plain SCRAM from a client that says "I could bind, you
    /// do not offer it" (`y`) fails where -PLUS was offered (its offer was
    /// stripped on the way); `n` is a client that does not bind, and goes
    /// on.
    #[test]
    fn rfc5802_6_downgrade_from_plus_is_detected() {
        let offered = |first: &[u8]| {
            let mut server =
                ServerExchange::new(Mechanism::ScramSha256, 1, None, Some(CLIENT_SIDE));
            server.receive(Some(first.to_vec()))
        };
        assert!(matches!(
            offered(b"y,,n=bob,r=abcdefgh"),
            ServerOutcome::Failure
        ));
        assert!(matches!(
            offered(b"n,,n=bob,r=abcdefgh"),
            ServerOutcome::Ask(_)
        ));
        // Not offered (no TLS): `y` is the honest answer and goes on.
        let mut server = ServerExchange::new(Mechanism::ScramSha256, 1, None, None);
        assert!(matches!(
            server.receive(Some(b"y,,n=bob,r=abcdefgh".to_vec())),
            ServerOutcome::Ask(_)
        ));
    }

    /// RFC 5802 5.1: the application is asked about the user the client
    /// named, unescaped; a malformed escape fails without asking.
    #[test]
    fn rfc5802_5_1_scram_names_are_unescaped() {
        let mut server = ServerExchange::new(Mechanism::ScramSha256, 1, None, None);
        match server.receive(Some(b"n,a=ad=2Cmin,n=b=3Dob=2C,r=abcdefgh".to_vec())) {
            ServerOutcome::Ask(request) => {
                assert_eq!(request.authcid.as_deref(), Some("b=ob,"));
                assert_eq!(request.authzid.as_deref(), Some("ad,min"));
            }
            other => panic!("{other:?}"),
        }
        let mut server = ServerExchange::new(Mechanism::ScramSha256, 1, None, None);
        assert!(!matches!(
            server.receive(Some(b"n,,n=b=41ob,r=abcdefgh".to_vec())),
            ServerOutcome::Ask(_)
        ));
    }
}
