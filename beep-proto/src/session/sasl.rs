//! User authentication (RFC 3080 4, 4.1): the SASL family of profiles run
//! inside the session, in the style of TLS (`session/tuning.rs`).
//!
//! A SASL exchange runs on one channel, started on the mechanism's
//! profile. The client's initial response rides on the `<start>`
//! (`<blob>` in the profile's content, as LibVortex sends it); the
//! server answers in the start's reply (a challenge, `complete`, or an
//! `<error>` in a channel that did start, RFC 3080 4.1.1); later rounds
//! are MSG `<blob>` and RPY `<blob>` (or ERR `<error>`) on the channel.
//! Those messages are the session's: they never reach the application,
//! which sees [`Event::AuthRequested`] (server side, answered with
//! [`Session::answer_auth`]), [`Event::Authenticated`] (both sides) and
//! [`Event::AuthFailed`] (client side). The channel stays open afterwards
//! (LibVortex's does); either side may close it as any other.
//!
//! | side   | state              | event                                                  | next |
//! |--------|--------------------|--------------------------------------------------------|------|
//! | client | none               | `start_sasl`: `<start>` with the initial `<blob>`      | `Client` |
//! | client | `Client`           | a `continue` blob (start reply or RPY): our response as MSG | `Client` |
//! | client | `Client`           | `complete` (verified): `Authenticated`                 | none, authenticated |
//! | client | `Client`           | `<error>`, the start refused, or the answer to our abort: `AuthFailed` | none |
//! | client | `Client`           | `abort_sasl`, or our mechanism fails: `<blob status='abort'/>` as MSG | `Client` (aborting) |
//! | server | none               | the peer's start of an offered mechanism               | `Server` |
//! | server | `Server`           | a step needs the application: `AuthRequested`          | `Server` (paused) |
//! | server | `Server` (paused)  | `answer_auth`: the exchange replayed with the answer   | `Server` |
//! | server | `Server`           | the mechanism succeeds: `complete`, `Authenticated`    | none, authenticated |
//! | server | `Server`           | it fails, or the client aborts: `<error>` (535, 451)   | none |
//!
//! Rules kept here:
//!
//! * A session authenticates at most once (RFC 3080 4: "no additional
//!   attempts at authentication are allowed"): once either side has,
//!   `start_sasl` is refused ([`UsageError::AlreadyAuthenticated`]) and a
//!   peer's start of a SASL profile is refused (550). One exchange runs
//!   at a time; a failed one may be tried again on a new channel.
//! * Failures say "authentication failure" (535) and nothing else: not
//!   whether the user, the password or the authorization was wrong.
//!   After [`Config::max_auth_failures`](crate::Config::max_auth_failures)
//!   of them, a peer's SASL starts are refused with 554 (RFC 4422 3.8
//!   leaves the bound to the server).
//! * SCRAM-SHA-256-PLUS is advertised only while TLS is active and runs
//!   only under TLS 1.3, bound by its `tls-exporter` (RFC 9266); a -PLUS
//!   client-first that does not bind to it fails, and where -PLUS is
//!   offered, plain SCRAM from a client that says it could bind (`y`)
//!   fails as a stripped offer (RFC 5802 6).
//! * No security layer is negotiated (none of the mechanisms wired has
//!   one), so a success does not reset the session (RFC 3080 4.1: the
//!   reset and new greetings follow a security layer only).
//! * After a success TLS may not begin (RFC 3080 4.1): `start_tls` and a
//!   peer's TLS start are refused (`session/tuning.rs`). SASL after TLS
//!   is allowed: RFC 3080 4.1 forbids only a SASL *security layer* then.
//! * [`Config::auth_profiles`](crate::Config::auth_profiles) are
//!   advertised from the greeting on, and a start of one of them is
//!   refused with 530 until the peer has authenticated to us. BEEP
//!   greets again only after a security layer (RFC 3080 3, 4.1), which
//!   SASL here never negotiates, so they cannot wait for a second
//!   greeting as TLS-only profiles do; the peer learns of them at once and
//!   of the condition from the 530 (RFC 3080 8: authentication required).
//! * The peer's blobs are bounded ([`Config::max_sasl_blob`](crate::Config::max_sasl_blob),
//!   [`Config::max_sasl_rounds`](crate::Config::max_sasl_rounds)); what
//!   the server keeps for a replay is bounded by both (see
//!   [`crate::sasl::server`]).

use super::channel_zero::{self, MAX_INIT_CONTENT};
use super::tuning::Tuning;
use super::{PendingStart, Session};
use crate::channel::{AfterSend, Awaiting, Outgoing};
use crate::error::{ProtocolError, UsageError};
use crate::event::{Event, MessageKind};
use crate::frame::FrameType;
use crate::idmap::IdSet;
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};
use crate::reply_code::ReplyCode;
use crate::sasl::client::ClientExchange;
use crate::sasl::server::{ServerExchange, ServerOutcome};
use crate::sasl::{
    AuthAnswer, AuthInfo, AuthNeed, Mechanism, SASL_URI_PREFIX, SaslClient, SaslError,
};
use crate::xml::{BlobStatus, ErrorElement, Profile, SaslBlob, SaslElement, Start};

/// What SASL adds to a session.
#[derive(Debug, Default)]
pub(super) struct SaslState {
    /// Channels running a SASL profile, exchange over or not: their
    /// messages are the session's (a set: looked up for every frame).
    channels: IdSet,
    /// The exchange under way, if any (one at a time, either side).
    exchange: Option<Exchange>,
    /// Who authenticated (RFC 3080 4: for the whole session).
    authenticated: Option<AuthInfo>,
    /// True when the peer authenticated to us (we were the server): what
    /// opens [`Config::auth_profiles`](crate::Config::auth_profiles).
    peer_authenticated: bool,
    /// The peer's failed exchanges as client (bounded by
    /// [`Config::max_auth_failures`](crate::Config::max_auth_failures)).
    failures: u32,
}

impl SaslState {
    /// True if `channel` runs a SASL profile.
    #[inline]
    pub(super) fn owns(&self, channel: u32) -> bool {
        !self.channels.is_empty() && self.channels.contains(&channel)
    }

    /// True once either side authenticated.
    pub(super) fn is_authenticated(&self) -> bool {
        self.authenticated.is_some()
    }

    /// True while an exchange runs.
    pub(super) fn in_progress(&self) -> bool {
        self.exchange.is_some()
    }

    /// True if the peer's pending start of `channel` is the engine's.
    fn owns_start(&self, channel: u32) -> bool {
        matches!(&self.exchange, Some(Exchange::Server(s)) if s.channel == channel)
    }
}

#[derive(Debug)]
enum Exchange {
    Server(ServerSide),
    Client(ClientSide),
}

/// We are the server of the exchange.
#[derive(Debug)]
struct ServerSide {
    channel: u32,
    mechanism: Mechanism,
    engine: Box<ServerExchange>,
    /// The message whose answer waits for the application, and what the
    /// application must give.
    paused: Option<(Via, AuthNeed)>,
}

/// How a client message came, so that its answer goes the same way.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// Piggybacked on its start request (channel-0 MSG `msgno`).
    Start(MsgNo),
    /// As MSG `msgno` on the SASL channel.
    Msg(MsgNo),
}

/// We are the client of the exchange.
#[derive(Debug)]
struct ClientSide {
    channel: u32,
    engine: Box<ClientExchange>,
    /// Challenges received (bounded by `max_sasl_rounds`).
    rounds: usize,
    abort: Abort,
}

/// Our abort (RFC 3080 4.1.3: `<blob status='abort'/>`), which the
/// server answers like any message: its answers keep their order, so
/// what crossed the abort (a challenge, a success, an error) still
/// counts, and the exchange ends with the answer to the abort itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abort {
    No,
    /// Asked for before the channel started: it goes with the start's
    /// reply.
    Wanted,
    /// Sent as MSG `msgno`.
    Sent(MsgNo),
}

/// A SASL element as piggybacked profile content: without the line end,
/// as LibVortex sends (`<blob>...</blob>`) and expects it.
fn piggyback(element: &SaslElement) -> Vec<u8> {
    let mut content = element.to_vec();
    content.truncate(content.len().saturating_sub(2));
    content
}

/// The only thing a client learns of a failure (RFC 3080 4.1: an
/// `<error>`; never which part was wrong).
fn failure() -> SaslElement {
    SaslElement::Error(ErrorElement::new(
        ReplyCode::AUTHENTICATION_FAILURE,
        "authentication failure",
    ))
}

fn error_element(code: ReplyCode, text: &str) -> SaslElement {
    SaslElement::Error(ErrorElement::new(code, text))
}

/// Encoded octets beyond which a blob cannot decode within `limit`
/// (base64 is 4/3 of the octets; leave room for the element and
/// whitespace): refused before parsing.
fn encoded_limit(limit: usize) -> usize {
    limit.saturating_mul(2).saturating_add(1024)
}

impl Session {
    /// Authenticates to the peer (RFC 3080 4.1) with `client`'s mechanism
    /// and credentials: a channel starts on the mechanism's profile, with
    /// the initial response piggybacked when the mechanism has one. The
    /// session runs the exchange; [`Event::Authenticated`] or
    /// [`Event::AuthFailed`] follows (and [`Event::ChannelRefused`] if
    /// the peer refuses the channel). Returns the SASL channel's number;
    /// the channel stays open afterwards, to be closed as any other.
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`], [`UsageError::ChannelClosing`]:
    ///   the session has ended or is being released.
    /// * [`UsageError::TuningInProgress`]: a TLS negotiation is under way.
    /// * [`UsageError::AlreadyAuthenticated`]: a session authenticates
    ///   once (RFC 3080 4).
    /// * [`UsageError::AuthInProgress`]: an exchange is under way.
    /// * [`UsageError::AuthNotPossible`]: the peer's greeting does not
    ///   offer the mechanism, or it is not available here.
    /// * [`UsageError::Sasl`]: the mechanism refuses the credentials (an
    ///   empty PLAIN user, a NUL in a name).
    /// * As [`Session::open_channel`] for the channel.
    ///
    /// ```
    /// use beep_proto::{Session, sasl::SaslClient};
    /// let mut s = Session::initiator(Default::default());
    /// assert_eq!(s.start_sasl(SaslClient::plain("bob", "secret")), Ok(1));
    /// ```
    pub fn start_sasl(&mut self, client: SaslClient) -> Result<u32, UsageError> {
        self.begin_sasl(None, client)
    }

    /// Like [`Session::start_sasl`], on a channel number of our choice
    /// (as [`Session::open_channel_number`]).
    ///
    /// # Errors
    ///
    /// As [`Session::start_sasl`], and
    /// [`UsageError::ChannelNumberUnavailable`].
    ///
    /// ```
    /// use beep_proto::{Session, sasl::SaslClient};
    /// let mut s = Session::initiator(Default::default());
    /// assert_eq!(s.start_sasl_number(3, SaslClient::anonymous("")), Ok(3));
    /// ```
    pub fn start_sasl_number(
        &mut self,
        number: u32,
        client: SaslClient,
    ) -> Result<u32, UsageError> {
        self.begin_sasl(Some(number), client)
    }

    fn begin_sasl(&mut self, number: Option<u32>, client: SaslClient) -> Result<u32, UsageError> {
        self.ensure_active()?;
        self.ensure_not_releasing()?;
        self.ensure_not_tuning()?;
        if self.sasl.is_authenticated() {
            return Err(UsageError::AlreadyAuthenticated);
        }
        if self.sasl.in_progress() {
            return Err(UsageError::AuthInProgress);
        }
        let mechanism = client.mechanism();
        if !mechanism.is_available() {
            return Err(UsageError::AuthNotPossible {
                reason: "the mechanism is not available here",
            });
        }
        let binding = self.channel_binding();
        if mechanism.needs_channel_binding() && binding.is_none() {
            return Err(UsageError::AuthNotPossible {
                reason: "the mechanism binds to TLS: it needs TLS 1.3 active (RFC 9266)",
            });
        }
        let uri = mechanism.uri();
        if self
            .peer_greeting
            .as_ref()
            .is_some_and(|g| !g.profiles.iter().any(|p| p == uri))
        {
            return Err(UsageError::AuthNotPossible {
                reason: "the peer does not offer this mechanism",
            });
        }
        if let Some(number) = number {
            self.check_channel_number(number)?;
        }
        let engine = ClientExchange::start(&client, binding).map_err(UsageError::Sasl)?;
        let number = match number {
            Some(number) => number,
            None => self.allocate_channel()?,
        };
        let mut profile = Profile::new(uri);
        if let Some(initial) = engine.initial() {
            let blob = SaslElement::Blob(SaslBlob::new(initial.to_vec(), BlobStatus::Continue));
            let content = piggyback(&blob);
            // Larger ones go as the first MSG once the channel is open.
            if content.len() <= MAX_INIT_CONTENT {
                profile = profile.with_content(content);
            }
        }
        self.start_channel(number, vec![profile], client.server_name.clone())?;
        self.sasl.channels.insert(number);
        self.sasl.exchange = Some(Exchange::Client(ClientSide {
            channel: number,
            engine: Box::new(engine),
            rounds: 0,
            abort: Abort::No,
        }));
        Ok(number)
    }

    /// Answers the peer's authentication request on `channel`
    /// ([`Event::AuthRequested`]): the exchange goes on, to
    /// [`Event::Authenticated`] or to a failure the client learns of.
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::NoPendingAuth`]: no request awaits an answer on
    ///   `channel` (the client may have aborted meanwhile).
    /// * [`UsageError::AuthAnswerMismatch`]: the answer does not fit the
    ///   request's [`AuthNeed`] (a secret for a decision, or the reverse);
    ///   the request still awaits an answer.
    ///
    /// ```
    /// use beep_proto::{Session, sasl::AuthAnswer};
    /// let mut s = Session::listener(Default::default());
    /// assert!(s.answer_auth(1, AuthAnswer::Deny).is_err()); // nobody asked
    /// ```
    pub fn answer_auth(&mut self, channel: u32, answer: AuthAnswer) -> Result<(), UsageError> {
        self.ensure_active()?;
        let Some(Exchange::Server(side)) = &mut self.sasl.exchange else {
            return Err(UsageError::NoPendingAuth { channel });
        };
        let Some((via, need)) = side.paused.filter(|_| side.channel == channel) else {
            return Err(UsageError::NoPendingAuth { channel });
        };
        if !answer.fits(need) {
            return Err(UsageError::AuthAnswerMismatch { channel, need });
        }
        side.paused = None;
        let outcome = side.engine.answer(answer);
        self.server_outcome(channel, via, outcome);
        Ok(())
    }

    /// Gives up our authentication on `channel` (RFC 3080 4.1.3:
    /// `<blob status='abort'/>`). The outcome follows as the server
    /// answers: [`Event::AuthFailed`] with its answer to the abort, or,
    /// if its success crossed the abort, [`Event::Authenticated`] (it
    /// holds: the server has authenticated the session).
    ///
    /// # Errors
    ///
    /// * [`UsageError::SessionClosed`]: the session has ended.
    /// * [`UsageError::NoPendingAuth`]: no exchange of ours runs on
    ///   `channel`, or it is being aborted already.
    ///
    /// ```
    /// use beep_proto::{Session, sasl::SaslClient};
    /// let mut s = Session::initiator(Default::default());
    /// let channel = s.start_sasl(SaslClient::anonymous("")).unwrap();
    /// s.abort_sasl(channel).unwrap();
    /// assert!(s.abort_sasl(channel).is_err());
    /// ```
    pub fn abort_sasl(&mut self, channel: u32) -> Result<(), UsageError> {
        self.ensure_active()?;
        let Some(Exchange::Client(side)) = &mut self.sasl.exchange else {
            return Err(UsageError::NoPendingAuth { channel });
        };
        if side.channel != channel || side.abort != Abort::No {
            return Err(UsageError::NoPendingAuth { channel });
        }
        side.abort = Abort::Wanted;
        if self.is_channel_open(channel) {
            self.send_abort(channel);
        }
        Ok(())
    }

    /// Who authenticated, once an exchange has succeeded (either side):
    /// RFC 3080 4, for every channel of the session.
    ///
    /// ```
    /// assert!(beep_proto::Session::listener(Default::default()).authenticated().is_none());
    /// ```
    pub fn authenticated(&self) -> Option<&AuthInfo> {
        self.sasl.authenticated.as_ref()
    }

    /// True if `channel` runs a SASL profile (its messages are the
    /// session's).
    pub(super) fn is_sasl_channel(&self, channel: u32) -> bool {
        self.sasl.owns(channel)
    }

    /// True if the peer's pending start of `channel` is the session's
    /// (not the application's to accept or deny).
    pub(super) fn is_sasl_start(&self, channel: u32) -> bool {
        self.sasl.owns_start(channel)
    }

    /// Looks at a peer's start request after the TLS screening: SASL
    /// profiles go to the engine, profiles that need authentication are
    /// held back. Returns true when the request was answered or taken.
    pub(super) fn screen_sasl_start(&mut self, msgno: MsgNo, start: &mut Start) -> bool {
        let is_sasl = |uri: &str| uri.starts_with(SASL_URI_PREFIX);
        // RFC 3080 4: once authenticated, no further attempts.
        if self.sasl.is_authenticated() && start.profiles.iter().any(|p| is_sasl(&p.uri)) {
            start.profiles.retain(|p| !is_sasl(&p.uri));
            if start.profiles.is_empty() {
                let text = "the session is authenticated already (RFC 3080 4)";
                self.refuse(msgno, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, text);
                return true;
            }
        }
        // RFC 4422 3.8: the server may bound the attempts.
        if self.sasl.failures >= self.config.max_auth_failures
            && start.profiles.iter().any(|p| is_sasl(&p.uri))
        {
            start.profiles.retain(|p| !is_sasl(&p.uri));
            if start.profiles.is_empty() {
                let text = "too many failed authentications on this session";
                self.refuse(msgno, ReplyCode::TRANSACTION_FAILED, text);
                return true;
            }
        }
        let auth_profiles = &self.config.auth_profiles;
        if !self.sasl.peer_authenticated
            && !auth_profiles.is_empty()
            && start
                .profiles
                .iter()
                .any(|p| auth_profiles.contains(&p.uri))
        {
            start.profiles.retain(|p| !auth_profiles.contains(&p.uri));
            if start.profiles.is_empty() {
                let text = "authentication required (RFC 3080 4)";
                self.refuse(msgno, ReplyCode::AUTHENTICATION_REQUIRED, text);
                return true;
            }
        }
        // The mechanisms the session runs: offered ones go to the engine,
        // the others are refused (a mechanism it does not run is left to
        // the application, as any profile).
        let ours = |uri: &str| Mechanism::from_uri(uri).filter(|m| m.is_available());
        if !start.profiles.iter().any(|p| ours(&p.uri).is_some()) {
            return false;
        }
        let offered = self.advertised_profiles();
        start
            .profiles
            .retain(|p| ours(&p.uri).is_none() || offered.contains(&p.uri));
        if start.profiles.is_empty() {
            let text = "SASL mechanism not offered";
            self.refuse(msgno, ReplyCode::PARAMETER_NOT_IMPLEMENTED, text);
            return true;
        }
        // The first one in the peer's order of preference (RFC 3080
        // 4.1.1: a start may offer several).
        let Some((profile, mechanism)) = start
            .profiles
            .iter()
            .find_map(|p| ours(&p.uri).map(|m| (p.clone(), m)))
        else {
            return false;
        };
        if self.tuning != Tuning::None {
            self.refuse(msgno, ReplyCode::ACTION_NOT_TAKEN, "a tuning is under way");
            return true;
        }
        if self.sasl.in_progress() {
            let text = "an authentication is under way";
            self.refuse(msgno, ReplyCode::ACTION_NOT_TAKEN, text);
            return true;
        }
        if self.config.max_sasl_rounds == 0 {
            self.refuse(msgno, ReplyCode::TRANSACTION_FAILED, "too many SASL rounds");
            return true;
        }
        let first = match profile.content.as_deref().map(SaslElement::parse) {
            None => None,
            Some(Ok(SaslElement::Blob(SaslBlob {
                status: BlobStatus::Continue,
                content,
            }))) => Some(content),
            Some(Ok(_)) => {
                let text = "a SASL start may carry only a <blob> (RFC 3080 4.1.1)";
                self.refuse(msgno, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
                return true;
            }
            Some(Err(_)) => {
                let text = "malformed <blob>: its content must be base64 (RFC 3080 4.1.2)";
                self.refuse(msgno, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
                return true;
            }
        };
        if first
            .as_ref()
            .is_some_and(|c| c.len() > self.config.max_sasl_blob)
        {
            self.refuse(
                msgno,
                ReplyCode::PARAMETER_INVALID,
                "SASL blob over the size limit",
            );
            return true;
        }
        let first = match first {
            // A server-first mechanism has no initial response (RFC 4422
            // 5); an empty blob is taken as none.
            Some(c) if !mechanism.client_first() && !c.is_empty() => {
                let text = "this mechanism begins with the server's challenge";
                self.refuse(msgno, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
                return true;
            }
            Some(_) if !mechanism.client_first() => None,
            first => first,
        };
        let channel = start.number;
        let server_name = start
            .server_name
            .clone()
            .or_else(|| self.server_name.clone());
        self.pending_starts.insert(
            channel,
            PendingStart {
                msgno,
                server_name: start.server_name.clone(),
                offered: vec![profile.uri.clone()],
            },
        );
        // SCRAM-SHA-256-PLUS offered: its binding, which also tells plain
        // SCRAM that a client saying "y" lost the -PLUS offer on the way.
        let plus = Mechanism::ScramSha256Plus.uri();
        let binding = offered
            .iter()
            .any(|p| p == plus)
            .then(|| self.channel_binding())
            .flatten();
        let mut engine = Box::new(ServerExchange::new(
            mechanism,
            channel,
            server_name,
            binding,
        ));
        let outcome = match first {
            Some(data) => Some(engine.receive(Some(data))),
            // Client-first without the initial response: it will come as
            // a MSG on the channel.
            None if mechanism.client_first() => None,
            // Server-first: our challenge rides on the start's reply.
            None => Some(engine.receive(None)),
        };
        self.sasl.exchange = Some(Exchange::Server(ServerSide {
            channel,
            mechanism,
            engine,
            paused: None,
        }));
        match outcome {
            Some(outcome) => self.server_outcome(channel, Via::Start(msgno), outcome),
            None => self.server_reply(channel, mechanism, Via::Start(msgno), None),
        }
        true
    }

    /// Acts on what a server step led to.
    fn server_outcome(&mut self, channel: u32, via: Via, outcome: ServerOutcome) {
        let Some(Exchange::Server(side)) = &mut self.sasl.exchange else {
            return;
        };
        let mechanism = side.mechanism;
        match outcome {
            ServerOutcome::Continue(data) => {
                let blob = SaslElement::Blob(SaslBlob::new(data, BlobStatus::Continue));
                self.server_reply(channel, mechanism, via, Some(blob));
            }
            ServerOutcome::Success { info, data } => {
                self.sasl.exchange = None;
                self.sasl.authenticated = Some(info.clone());
                self.sasl.peer_authenticated = true;
                let blob = SaslElement::Blob(SaslBlob::new(data, BlobStatus::Complete));
                self.server_reply(channel, mechanism, via, Some(blob));
                self.events.push_back(Event::Authenticated(info));
            }
            ServerOutcome::Failure => {
                self.sasl.exchange = None;
                self.sasl.failures = self.sasl.failures.saturating_add(1);
                self.server_reply(channel, mechanism, via, Some(failure()));
            }
            ServerOutcome::Ask(mut request) => {
                side.paused = Some((via, request.need));
                request.tls = self.tls.info.clone();
                self.events.push_back(Event::AuthRequested(request));
            }
        }
    }

    /// Our answer to a client message: in the start's reply (the channel
    /// starts, RFC 3080 4.1.1, even when the answer is an `<error>`), or
    /// as RPY/ERR on the channel.
    fn server_reply(
        &mut self,
        channel: u32,
        mechanism: Mechanism,
        via: Via,
        element: Option<SaslElement>,
    ) {
        match via {
            Via::Start(msgno) => {
                let pending = self.pending_starts.remove(&channel);
                if self.server_name.is_none() {
                    self.server_name = pending.and_then(|p| p.server_name);
                }
                let mut ch = self.new_channel(channel);
                ch.state.accepted();
                ch.profile = mechanism.uri().to_owned();
                self.channels.insert(channel, ch);
                self.sasl.channels.insert(channel);
                let mut profile = Profile::new(mechanism.uri());
                if let Some(element) = &element {
                    profile = profile.with_content(piggyback(element));
                }
                let body = channel_zero::profile_body(profile);
                let activate = Some(AfterSend::Activate(channel));
                self.reply_zero(msgno, FrameType::Rpy, body, activate);
            }
            Via::Msg(msgno) => {
                let element = element.unwrap_or_else(failure);
                let frame_type = match element {
                    SaslElement::Error(_) => FrameType::Err,
                    SaslElement::Blob(_) => FrameType::Rpy,
                };
                let message = Message::beep_xml(element.to_vec());
                // The slot exists: the MSG awaits this very reply.
                let _ = self.queue_reply(channel, msgno, frame_type, message, None);
            }
        }
    }

    /// A complete message on a SASL channel. Never shown to the
    /// application.
    pub(super) fn on_sasl_message(
        &mut self,
        channel: u32,
        kind: MessageKind,
        msgno: MsgNo,
        message: &Message,
        credit: u32,
    ) -> Result<(), ProtocolError> {
        self.give_credit(channel, credit);
        match kind {
            MessageKind::Msg => {
                self.on_sasl_request(channel, msgno, message.body());
                Ok(())
            }
            MessageKind::Rpy | MessageKind::Err => {
                self.on_sasl_answer(channel, Some(msgno), kind, message.body())
            }
            MessageKind::Ans { .. } | MessageKind::Nul => Err(ProtocolError::Sasl(
                SaslError::Unexpected("ANS or NUL on a SASL channel"),
            )),
        }
    }

    /// The client's MSG on a SASL channel we serve.
    fn on_sasl_request(&mut self, channel: u32, msgno: MsgNo, body: &[u8]) {
        let refuse = |s: &mut Self, code: ReplyCode, text: &str| {
            let message = Message::beep_xml(error_element(code, text).to_vec());
            let _ = s.queue_reply(channel, msgno, FrameType::Err, message, None);
        };
        let side = match &mut self.sasl.exchange {
            Some(Exchange::Server(side)) if side.channel == channel => side,
            _ => {
                let text = if self.sasl.is_authenticated() {
                    "the session is authenticated already (RFC 3080 4)"
                } else {
                    "no authentication is under way on this channel"
                };
                return refuse(self, ReplyCode::REQUESTED_ACTION_NOT_TAKEN, text);
            }
        };
        let mechanism = side.mechanism;
        // What ends the exchange here: the client's abort, or a message
        // that has no place in it. The answer the application owes (a
        // paused message) goes first, as a failure (RFC 3080 2.6.1:
        // replies in order).
        let fail = |s: &mut Self, code: ReplyCode, text: &str| {
            if let Some(Exchange::Server(side)) = s.sasl.exchange.take()
                && let Some((via, _)) = side.paused
            {
                s.server_reply(channel, mechanism, via, Some(failure()));
            }
            refuse(s, code, text);
        };
        if side.paused.is_some() {
            let text = "a SASL message before the previous one was answered";
            return fail(self, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
        }
        let limit = self.config.max_sasl_blob;
        if body.len() > encoded_limit(limit) {
            return fail(
                self,
                ReplyCode::PARAMETER_INVALID,
                "SASL blob over the size limit",
            );
        }
        let content = match SaslElement::parse(body) {
            Ok(SaslElement::Blob(SaslBlob {
                status: BlobStatus::Continue,
                content,
            })) => content,
            Ok(SaslElement::Blob(SaslBlob {
                status: BlobStatus::Abort,
                ..
            })) => {
                return fail(self, ReplyCode::ACTION_ABORTED, "authentication aborted");
            }
            Ok(_) => {
                let text = "a SASL client sends only <blob> (RFC 3080 4.1.3)";
                return fail(self, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
            }
            Err(_) => {
                let text = "malformed <blob>: its content must be base64 (RFC 3080 4.1.2)";
                return fail(self, ReplyCode::PARAMETER_SYNTAX_ERROR, text);
            }
        };
        if content.len() > limit {
            return fail(
                self,
                ReplyCode::PARAMETER_INVALID,
                "SASL blob over the size limit",
            );
        }
        if side.engine.rounds() >= self.config.max_sasl_rounds {
            return fail(self, ReplyCode::TRANSACTION_FAILED, "too many SASL rounds");
        }
        let outcome = side.engine.receive(Some(content));
        self.server_outcome(channel, Via::Msg(msgno), outcome);
    }

    /// Our start of a SASL channel was answered with `profile`. Returns
    /// true when the answer was ours to take.
    pub(super) fn sasl_start_answered(
        &mut self,
        channel: u32,
        profile: &Profile,
    ) -> Result<bool, ProtocolError> {
        let abort = match &self.sasl.exchange {
            Some(Exchange::Client(side)) if side.channel == channel => side.abort,
            _ => return Ok(false),
        };
        self.open_started_channel(channel, profile);
        match &profile.content {
            Some(content) => self.on_sasl_answer(channel, None, MessageKind::Rpy, content)?,
            // The peer started the channel without answering the
            // piggyback (or there was none): the exchange goes on as MSGs.
            None if abort == Abort::Wanted => self.send_abort(channel),
            None => {
                let initial = match &self.sasl.exchange {
                    Some(Exchange::Client(side)) => side.engine.initial().map(<[u8]>::to_vec),
                    _ => None,
                };
                // A server-first mechanism: an empty blob asks for the
                // challenge.
                let blob = SaslBlob::new(initial.unwrap_or_default(), BlobStatus::Continue);
                self.send_sasl_msg(channel, &blob);
            }
        }
        Ok(true)
    }

    /// Our start of a SASL channel was refused: the exchange failed.
    pub(super) fn sasl_start_refused(&mut self, channel: u32, error: &ErrorElement) {
        if matches!(&self.sasl.exchange, Some(Exchange::Client(s)) if s.channel == channel) {
            self.sasl.exchange = None;
            self.sasl.channels.remove(&channel);
            self.events.push_back(Event::AuthFailed {
                channel,
                error: error.clone(),
            });
        }
    }

    /// The server's answer on our exchange: in the start's reply
    /// (`msgno` none) or a RPY/ERR to our MSG `msgno`.
    fn on_sasl_answer(
        &mut self,
        channel: u32,
        msgno: Option<MsgNo>,
        kind: MessageKind,
        body: &[u8],
    ) -> Result<(), ProtocolError> {
        let (max_blob, max_rounds) = (self.config.max_sasl_blob, self.config.max_sasl_rounds);
        let Some(abort) = self.client_side(channel).map(|side| side.abort) else {
            // An answer to an exchange that is over (to our abort, after
            // a success or a failure that crossed it): nothing to do.
            return Ok(());
        };
        if body.len() > encoded_limit(max_blob) {
            let len = body.len();
            return Err(SaslError::BlobTooLarge {
                len,
                limit: max_blob,
            }
            .into());
        }
        let element = SaslElement::parse(body).map_err(SaslError::Malformed)?;
        // The answer to our abort ends the exchange, whatever it says.
        if let (Some(msgno), Abort::Sent(aborted)) = (msgno, abort)
            && msgno == aborted
        {
            let error = match element {
                SaslElement::Error(error) => error,
                SaslElement::Blob(_) => {
                    ErrorElement::new(ReplyCode::ACTION_ABORTED, "authentication aborted")
                }
            };
            self.client_failed(channel, error);
            return Ok(());
        }
        let blob = match (kind, element) {
            (_, SaslElement::Error(error)) => {
                self.client_failed(channel, error);
                return Ok(());
            }
            (MessageKind::Rpy, SaslElement::Blob(blob)) => blob,
            _ => return Err(SaslError::Unexpected("a <blob> in a negative reply").into()),
        };
        if blob.content.len() > max_blob {
            let len = blob.content.len();
            return Err(SaslError::BlobTooLarge {
                len,
                limit: max_blob,
            }
            .into());
        }
        let Some(side) = self.client_side(channel) else {
            return Ok(());
        };
        match blob.status {
            // RFC 3080 4.1.2 gives `abort` to the client and `<error>` to
            // the server; a server that aborts anyway ends the exchange
            // as an error would, and the session goes on.
            BlobStatus::Abort => {
                let text = "the listener aborted the authentication";
                self.client_failed(channel, ErrorElement::new(ReplyCode::ACTION_ABORTED, text));
                Ok(())
            }
            BlobStatus::Complete => {
                let verified = side
                    .engine
                    .complete(&blob.content)
                    .map(|()| side.engine.info().clone());
                match verified {
                    Ok(info) => {
                        self.sasl.exchange = None;
                        self.sasl.authenticated = Some(info.clone());
                        self.events.push_back(Event::Authenticated(info));
                    }
                    // The server claims success but did not prove itself
                    // (SCRAM's signature): not authenticated, whatever it
                    // thinks. Closing the session is the application's
                    // call.
                    Err(_) => {
                        let text = "the listener's success does not verify";
                        let error = ErrorElement::new(ReplyCode::AUTHENTICATION_FAILURE, text);
                        self.client_failed(channel, error);
                    }
                }
                Ok(())
            }
            BlobStatus::Continue => {
                side.rounds += 1;
                if side.rounds > max_rounds {
                    return Err(SaslError::TooManyRounds { limit: max_rounds }.into());
                }
                match abort {
                    // Its answer is what we wait for now.
                    Abort::Sent(_) => {}
                    Abort::Wanted => self.send_abort(channel),
                    Abort::No => match side.engine.challenge(&blob.content) {
                        Ok(response) => {
                            let blob = SaslBlob::new(response, BlobStatus::Continue);
                            self.send_sasl_msg(channel, &blob);
                        }
                        // Our mechanism cannot go on (a challenge it
                        // does not accept): we abort (RFC 3080 4.1.3).
                        Err(_) => self.send_abort(channel),
                    },
                }
                Ok(())
            }
        }
    }

    /// Our exchange on `channel`, if one runs there.
    fn client_side(&mut self, channel: u32) -> Option<&mut ClientSide> {
        match &mut self.sasl.exchange {
            Some(Exchange::Client(side)) if side.channel == channel => Some(side),
            _ => None,
        }
    }

    fn client_failed(&mut self, channel: u32, error: ErrorElement) {
        self.sasl.exchange = None;
        self.events.push_back(Event::AuthFailed { channel, error });
    }

    /// Our `<blob status='abort'/>` as a MSG.
    fn send_abort(&mut self, channel: u32) {
        let msgno = self.send_sasl_msg(channel, &SaslBlob::new(Vec::new(), BlobStatus::Abort));
        if let Some(Exchange::Client(side)) = &mut self.sasl.exchange {
            side.abort = Abort::Sent(msgno);
        }
    }

    /// A MSG of our exchange on the SASL channel. It is the session's, so
    /// the application's output limit does not apply (the exchange
    /// bounds it: one message per challenge).
    fn send_sasl_msg(&mut self, channel: u32, blob: &SaslBlob) -> MsgNo {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return MsgNo(0);
        };
        let msgno = ch.allocate_msgno();
        ch.awaiting.push_back(Awaiting {
            msgno,
            reply: None,
            awaited: false,
        });
        let message = Message::beep_xml(SaslElement::Blob(blob.clone()).to_vec());
        let out = Outgoing::new(FrameType::Msg, msgno, AnsNo(0), message);
        self.enqueue(channel, out);
        msgno
    }

    /// A channel closed: if it was a SASL channel, it is forgotten, with
    /// its exchange if one ran on it (a request of ours awaiting the
    /// application is gone: answering it is refused).
    pub(super) fn sasl_channel_removed(&mut self, channel: u32) {
        if !self.sasl.owns(channel) {
            return;
        }
        self.sasl.channels.remove(&channel);
        let on_it = match &self.sasl.exchange {
            Some(Exchange::Server(s)) => s.channel == channel,
            Some(Exchange::Client(s)) => s.channel == channel,
            None => false,
        };
        if on_it {
            self.sasl.exchange = None;
        }
    }
}
