//! Bookkeeping every driver needs between session events and application
//! code: which profile handles a start request, and which waiting caller
//! a reply completes. Pure data structures, no I/O, so the blocking and the
//! async drivers share them instead of writing them twice.
//!
//! For drivers: [`Layer`] is the state behind a driver's lock and what it
//! does with every [`Outcome`], generic over how the driver waits
//! ([`Driver`]); [`Room`] is the one backpressure policy.
//!
//! An application that drives a [`Session`](crate::Session) itself (see
//! [`driver_guide`](crate::driver_guide)) needs none of this: its errors are
//! [`ProtocolError`](crate::ProtocolError) (the peer broke a rule; the
//! session has ended) and [`UsageError`](crate::UsageError) (a call was
//! refused and changed nothing). [`Error`] is what the drivers' calls
//! return, wrapping those two with the failures only a driver has (I/O,
//! timeouts, a vanished connection).

mod activity;
mod core;
mod error;
mod host;
mod layer;
mod pool;
mod room;
mod served;
mod tls;
mod tuning;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

pub use self::activity::Activity;
pub use self::core::{
    CloseDecision, CloseRequest, Core, Done, EndReason, Failure, Handled, HandlerResult,
    MessageDone, Outcome, StartDecision,
};
pub use self::error::Error;
pub use self::host::{
    AddedHook, CloseHook, Delivery, Host, HostHandlers, HostLayer, HostProfile, ProfileHooks,
    StartHook, Step,
};
pub use self::layer::{Action, ChannelHandlers, CloseCallback, Driver, Handlers, Layer, Notify};
pub use self::pool::{PoolState, Take};
pub use self::room::Room;
pub use self::served::{
    AcceptBackoff, Admission, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    ListenerHooks, Refusal, Served, refusal,
};
pub use self::tls::{ErasedTlsChooser, TlsAcceptor, TlsChooser};
pub use self::tuning::{auth_waited, tls_waited};
pub use crate::idmap::{IdHasher, IdKeys};

use crate::event::{IncomingMessage, MessageKind, StartRequest};
use crate::mime::Message;
use crate::numbers::{AnsNo, MsgNo};
use crate::reply_code::ReplyCode;
use crate::xml::Profile;

/// A complete reply to one MSG.
///
/// ```
/// use beep_proto::{dispatch::Reply, Message};
/// let r = Reply::Rpy(Message::new("ok"));
/// assert!(r.is_positive());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A positive reply.
    Rpy(Message),
    /// A negative reply.
    Err(Message),
    /// A one-to-many reply: every ANS with its ansno, in arrival order,
    /// complete once the NUL arrived.
    Answers(Answers),
}

impl Reply {
    /// True for RPY and for ANS/NUL.
    ///
    /// ```
    /// use beep_proto::{dispatch::Reply, Message};
    /// assert!(!Reply::Err(Message::new("no")).is_positive());
    /// ```
    pub fn is_positive(&self) -> bool {
        !matches!(self, Reply::Err(_))
    }
}

/// Callers waiting for replies, keyed by channel and msgno, with the
/// answers of one-to-many replies collected until their NUL.
///
/// ```
/// use beep_proto::dispatch::{Requests, Reply};
/// use beep_proto::{IncomingMessage, Message, MessageKind, MsgNo};
/// let mut waiting = Requests::default();
/// waiting.insert(1, MsgNo(0), "caller");
/// let rpy = IncomingMessage { channel: 1, msgno: MsgNo(0), kind: MessageKind::Rpy, message: Message::new("hi"), credit: 4 };
/// let (caller, reply) = waiting.on_reply(rpy).unwrap().unwrap();
/// assert_eq!((caller, reply), ("caller", Reply::Rpy(Message::new("hi"))));
/// ```
#[derive(Debug)]
pub struct Requests<W> {
    /// (channel, msgno) -> the caller, and the answers collected so far.
    waiting: HashMap<(u32, MsgNo), (W, Answers), IdKeys>,
}

/// ANS messages of a one-to-many reply, with their ansno.
type Answers = Vec<(AnsNo, Message)>;

impl<W> Default for Requests<W> {
    fn default() -> Self {
        Requests {
            waiting: HashMap::default(),
        }
    }
}

impl<W> Requests<W> {
    /// Registers `waiter` for the reply to MSG `msgno` on `channel`.
    ///
    /// ```
    /// let mut r = beep_proto::dispatch::Requests::default();
    /// r.insert(1, beep_proto::MsgNo(7), ());
    /// assert_eq!(r.len(), 1);
    /// ```
    pub fn insert(&mut self, channel: u32, msgno: MsgNo, waiter: W) {
        self.waiting.insert((channel, msgno), (waiter, Vec::new()));
    }

    /// Number of callers waiting.
    ///
    /// ```
    /// assert_eq!(beep_proto::dispatch::Requests::<()>::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True if nobody waits.
    ///
    /// ```
    /// assert!(beep_proto::dispatch::Requests::<()>::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Takes a reply message. Returns the waiter and the reply once it is
    /// complete, `Ok(None)` while answers are still being collected, or the
    /// message back if nobody waits for it (and it is no MSG).
    ///
    /// ```
    /// use beep_proto::dispatch::{Requests, Reply};
    /// use beep_proto::{AnsNo, IncomingMessage, Message, MessageKind, MsgNo};
    /// let mut r = Requests::default();
    /// r.insert(1, MsgNo(0), ());
    /// let ans = IncomingMessage { channel: 1, msgno: MsgNo(0), kind: MessageKind::Ans { ansno: AnsNo(0) }, message: Message::new("a"), credit: 3 };
    /// assert!(r.on_reply(ans).unwrap().is_none());
    /// let nul = IncomingMessage { channel: 1, msgno: MsgNo(0), kind: MessageKind::Nul, message: Message::default(), credit: 0 };
    /// let ((), reply) = r.on_reply(nul).unwrap().unwrap();
    /// assert_eq!(reply, Reply::Answers(vec![(AnsNo(0), Message::new("a"))]));
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn on_reply(&mut self, m: IncomingMessage) -> Result<Option<(W, Reply)>, IncomingMessage> {
        let key = (m.channel, m.msgno);
        let entry = self
            .waiting
            .get_mut(&key)
            .filter(|_| m.kind != MessageKind::Msg);
        let Some((_, answers)) = entry else {
            return Err(m);
        };
        let reply = match m.kind {
            MessageKind::Ans { ansno } => {
                answers.push((ansno, m.message));
                return Ok(None);
            }
            MessageKind::Rpy => Reply::Rpy(m.message),
            MessageKind::Err => Reply::Err(m.message),
            MessageKind::Nul | MessageKind::Msg => Reply::Answers(std::mem::take(answers)),
        };
        Ok(self.waiting.remove(&key).map(|(waiter, _)| (waiter, reply)))
    }

    /// Octets of the answers collected so far for one request.
    ///
    /// ```
    /// use beep_proto::dispatch::Requests;
    /// use beep_proto::{AnsNo, IncomingMessage, Message, MessageKind, MsgNo};
    /// let mut r = Requests::default();
    /// r.insert(1, MsgNo(0), ());
    /// let ans = IncomingMessage { channel: 1, msgno: MsgNo(0), kind: MessageKind::Ans { ansno: AnsNo(0) }, message: Message::new("abc"), credit: 5 };
    /// r.on_reply(ans).unwrap();
    /// assert_eq!(r.collected(1, MsgNo(0)), 3);
    /// ```
    pub fn collected(&self, channel: u32, msgno: MsgNo) -> usize {
        self.waiting
            .get(&(channel, msgno))
            .map_or(0, |(_, answers)| {
                answers.iter().map(|(_, m)| m.body().len()).sum()
            })
    }

    /// Removes the waiter of one request (it gave up waiting); a reply
    /// arriving later is then nobody's.
    ///
    /// ```
    /// let mut r = beep_proto::dispatch::Requests::default();
    /// r.insert(1, beep_proto::MsgNo(0), 'a');
    /// assert_eq!(r.remove(1, beep_proto::MsgNo(0)), Some('a'));
    /// assert!(r.is_empty());
    /// ```
    pub fn remove(&mut self, channel: u32, msgno: MsgNo) -> Option<W> {
        self.waiting.remove(&(channel, msgno)).map(|(w, _)| w)
    }

    /// True if a caller waits for a reply on `channel`.
    ///
    /// ```
    /// let mut r = beep_proto::dispatch::Requests::default();
    /// r.insert(1, beep_proto::MsgNo(0), 'a');
    /// assert!(r.has_channel(1) && !r.has_channel(3));
    /// ```
    pub fn has_channel(&self, channel: u32) -> bool {
        self.waiting.keys().any(|(c, _)| *c == channel)
    }

    /// Removes the waiters of one channel (closed, or refused).
    ///
    /// ```
    /// let mut r = beep_proto::dispatch::Requests::default();
    /// r.insert(1, beep_proto::MsgNo(0), 'a');
    /// r.insert(3, beep_proto::MsgNo(0), 'b');
    /// assert_eq!(r.remove_channel(1), vec!['a']);
    /// ```
    pub fn remove_channel(&mut self, channel: u32) -> Vec<W> {
        let keys: Vec<_> = self
            .waiting
            .keys()
            .filter(|(c, _)| *c == channel)
            .copied()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.waiting.remove(&k).map(|(w, _)| w))
            .collect()
    }

    /// Removes every waiter (the connection is gone).
    ///
    /// ```
    /// let mut r = beep_proto::dispatch::Requests::default();
    /// r.insert(1, beep_proto::MsgNo(0), ());
    /// assert_eq!(r.drain().len(), 1);
    /// ```
    pub fn drain(&mut self) -> Vec<W> {
        self.waiting.drain().map(|(_, (w, _))| w).collect()
    }
}

/// A start handler: sees the request and the offer of its profile
/// (piggybacked content included) and decides.
pub type StartHandler = dyn Fn(&StartRequest, &Profile) -> StartDecision + Send + Sync;

/// An unknown-profile handler: sees a start request none of whose
/// profiles is served and gives the refusal's reply code and diagnostic.
///
/// ```
/// use beep_proto::dispatch::UnknownProfileHandler;
/// use beep_proto::ReplyCode;
/// let handler: Box<UnknownProfileHandler> = Box::new(|request| {
///     (ReplyCode::PARAMETER_INVALID, format!("{} offers nothing we serve", request.channel))
/// });
/// # let _ = handler;
/// ```
pub type UnknownProfileHandler = dyn Fn(&StartRequest) -> (ReplyCode, String) + Send + Sync;

/// The refusal of a start none of whose profiles is served, without an
/// unknown-profile handler.
const UNSERVED: (ReplyCode, &str) = (
    ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
    "none of the requested profiles is supported",
);

/// Profiles a listener serves, each with its handler, in registration
/// order (the order of the greeting), and what to answer a start for a
/// profile that is not served.
///
/// ```
/// use beep_proto::dispatch::Profiles;
/// use beep_proto::{StartRequest, xml::Profile};
/// let mut p = Profiles::default();
/// p.register("http://example.org/echo", "echo handler");
/// let request = StartRequest {
///     channel: 1,
///     server_name: None,
///     profiles: vec![Profile::new("http://example.org/other"), Profile::new("http://example.org/echo")],
/// };
/// let (offer, handler) = p.choose(&request).unwrap();
/// assert_eq!((offer.uri.as_str(), *handler), ("http://example.org/echo", "echo handler"));
/// ```
#[derive(Clone)]
pub struct Profiles<H> {
    registered: Vec<(String, H)>,
    unknown: Option<Arc<UnknownProfileHandler>>,
    /// Registered profiles served only over TLS (see
    /// [`Config::tls_profiles`](crate::Config::tls_profiles)).
    tls_only: Vec<String>,
    /// How TLS requests are answered; none: TLS is not offered.
    tls: Option<TlsAcceptor>,
    require_tls: bool,
    /// The SASL mechanisms offered and who decides (PyVortex's
    /// `sasl_auth_handler`).
    sasl: Vec<crate::sasl::Mechanism>,
    auth: Option<Arc<ErasedAuthHandler>>,
    /// Registered profiles served only to an authenticated peer.
    auth_only: Vec<String>,
}

/// An auth handler (PyVortex's `sasl_auth_handler`): decides a peer's
/// authentication, or gives the stored password of the user it names
/// ([`AuthNeed::Secret`](crate::sasl::AuthNeed::Secret)).
///
/// ```
/// use beep_proto::dispatch::AuthHandler;
/// use beep_proto::sasl::{AuthAnswer, AuthNeed};
/// let handler: Box<AuthHandler> = Box::new(|request| match (request.need, request.authcid.as_deref()) {
///     (AuthNeed::Secret, Some("bob")) => AuthAnswer::Secret("secret".into()),
///     (AuthNeed::Decide, Some("bob")) if request.password.as_deref() == Some("secret") => AuthAnswer::Accept,
///     (AuthNeed::Decide, _) => AuthAnswer::Deny,
///     _ => AuthAnswer::NoSuchUser,
/// });
/// # let _ = handler;
/// ```
pub type AuthHandler = dyn Fn(&crate::sasl::AuthRequest) -> crate::sasl::AuthAnswer + Send + Sync;

/// An auth handler that also gets the connection the request came on
/// (PyVortex's `sasl_auth_handler` gets it as `conn`): the driver's
/// connection handle with its type erased, what [`Profiles`] holds (see
/// [`Profiles::set_sasl_with_connection`]).
///
/// ```
/// use beep_proto::dispatch::ErasedAuthHandler;
/// use beep_proto::sasl::AuthAnswer;
/// // A driver whose connection handle is a number.
/// let handler: Box<ErasedAuthHandler> = Box::new(|connection, _request| {
///     match connection.downcast_ref::<u64>() {
///         Some(1) => AuthAnswer::Accept,
///         _ => AuthAnswer::Deny,
///     }
/// });
/// # let _ = handler;
/// ```
pub type ErasedAuthHandler =
    dyn Fn(&dyn Any, &crate::sasl::AuthRequest) -> crate::sasl::AuthAnswer + Send + Sync;

impl<H> Default for Profiles<H> {
    fn default() -> Self {
        Profiles {
            registered: Vec::new(),
            unknown: None,
            tls_only: Vec::new(),
            tls: None,
            require_tls: false,
            sasl: Vec::new(),
            auth: None,
            auth_only: Vec::new(),
        }
    }
}

impl<H: std::fmt::Debug> std::fmt::Debug for Profiles<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles")
            .field("registered", &self.registered)
            .field("unknown", &self.unknown.is_some())
            .field("tls_only", &self.tls_only)
            .field("tls", &self.tls.is_some())
            .field("require_tls", &self.require_tls)
            .field("sasl", &self.sasl)
            .field("auth", &self.auth.is_some())
            .field("auth_only", &self.auth_only)
            .finish()
    }
}

impl<H> Profiles<H> {
    /// Registers (or replaces) the handler of `uri`.
    ///
    /// ```
    /// let mut p = beep_proto::dispatch::Profiles::default();
    /// p.register("u", 1);
    /// p.register("u", 2);
    /// assert_eq!(p.get("u"), Some(&2));
    /// ```
    pub fn register(&mut self, uri: impl Into<String>, handler: H) {
        let uri = uri.into();
        match self.registered.iter_mut().find(|(u, _)| *u == uri) {
            Some(entry) => entry.1 = handler,
            None => self.registered.push((uri, handler)),
        }
    }

    /// Sets (or replaces) what decides the answer to a start none of
    /// whose profiles is served: `handler` gives the reply code and
    /// diagnostic of the refusal. Without one the answer is 550 "none of
    /// the requested profiles is supported".
    ///
    /// ```
    /// use beep_proto::dispatch::Profiles;
    /// use beep_proto::{ReplyCode, StartRequest, xml::Profile};
    /// let mut p: Profiles<()> = Profiles::default();
    /// p.on_unknown(|request| (ReplyCode::PARAMETER_INVALID, format!("no {}", request.profiles[0].uri)));
    /// let r = StartRequest { channel: 1, server_name: None, profiles: vec![Profile::new("x")] };
    /// let refusal = p.decide_start(&r, |_| None).unwrap_err();
    /// assert_eq!(refusal, (ReplyCode::PARAMETER_INVALID, "no x".to_string()));
    /// ```
    pub fn on_unknown(
        &mut self,
        handler: impl Fn(&StartRequest) -> (ReplyCode, String) + Send + Sync + 'static,
    ) {
        self.unknown = Some(Arc::new(handler));
    }

    /// The handler of `uri`.
    ///
    /// ```
    /// assert_eq!(beep_proto::dispatch::Profiles::<()>::default().get("u"), None);
    /// ```
    pub fn get(&self, uri: &str) -> Option<&H> {
        self.registered
            .iter()
            .find(|(u, _)| u == uri)
            .map(|(_, h)| h)
    }

    /// Registers (or replaces) the handler of `uri`, a profile served
    /// only once TLS is active: not advertised before, and a start of it
    /// refused with 538 (see [`Config::tls_profiles`](crate::Config::tls_profiles)).
    ///
    /// ```
    /// let mut p = beep_proto::dispatch::Profiles::default();
    /// p.register_tls_only("secret", ());
    /// assert!(p.uris().is_empty());
    /// assert_eq!(p.tls_uris(), vec!["secret".to_string()]);
    /// ```
    pub fn register_tls_only(&mut self, uri: impl Into<String>, handler: H) {
        let uri = uri.into();
        if !self.tls_only.contains(&uri) {
            self.tls_only.push(uri.clone());
        }
        self.register(uri, handler);
    }

    /// Offers TLS (RFC 3080 3.1): requests are answered as `acceptor`
    /// says.
    ///
    /// ```
    /// use beep_proto::dispatch::{Profiles, TlsAcceptor};
    /// let mut p: Profiles<()> = Profiles::default();
    /// p.set_tls(TlsAcceptor::with(|_| None));
    /// assert_eq!(p.uris(), vec![beep_proto::tls::TLS_URI.to_string()]);
    /// ```
    pub fn set_tls(&mut self, acceptor: TlsAcceptor) {
        self.tls = Some(acceptor);
    }

    /// Offers SASL with `mechanisms` (RFC 3080 4.1), each peer's
    /// authentication decided by `handler` (PyVortex's `accept_mech` and
    /// `sasl_auth_handler`). Mechanisms this build cannot run are left
    /// out.
    ///
    /// ```
    /// use beep_proto::dispatch::Profiles;
    /// use beep_proto::sasl::{AuthAnswer, Mechanism};
    /// let mut p: Profiles<()> = Profiles::default();
    /// p.set_sasl(&[Mechanism::Plain], |_| AuthAnswer::Deny);
    /// assert_eq!(p.uris(), vec![Mechanism::Plain.uri().to_string()]);
    /// ```
    pub fn set_sasl(
        &mut self,
        mechanisms: &[crate::sasl::Mechanism],
        handler: impl Fn(&crate::sasl::AuthRequest) -> crate::sasl::AuthAnswer + Send + Sync + 'static,
    ) {
        self.set_sasl_erased(mechanisms, move |_connection, request| handler(request));
    }

    /// Like [`Profiles::set_sasl`], with a `handler` that also gets the
    /// connection the request came on: the driver's connection handle, of
    /// type `C`. It is stored type-erased, and a request that comes with
    /// another type (a driver bug) is denied. beep-blocking's and
    /// beep-tokio's `Registry::set_sasl_with_connection` are this with
    /// their `Connection`.
    ///
    /// ```
    /// use beep_proto::dispatch::Profiles;
    /// use beep_proto::sasl::{AuthAnswer, Mechanism};
    /// // A driver whose connection handle is a number: guests on connection 7 only.
    /// let mut p: Profiles<()> = Profiles::default();
    /// p.set_sasl_with_connection(&[Mechanism::Anonymous], |connection: &u64, _request| {
    ///     if *connection == 7 { AuthAnswer::Accept } else { AuthAnswer::Deny }
    /// });
    /// assert_eq!(p.uris(), vec![Mechanism::Anonymous.uri().to_string()]);
    /// ```
    pub fn set_sasl_with_connection<C: Any>(
        &mut self,
        mechanisms: &[crate::sasl::Mechanism],
        handler: impl Fn(&C, &crate::sasl::AuthRequest) -> crate::sasl::AuthAnswer
        + Send
        + Sync
        + 'static,
    ) {
        self.set_sasl_erased(mechanisms, move |connection, request| {
            match connection.downcast_ref::<C>() {
                Some(connection) => handler(connection, request),
                None => crate::sasl::AuthAnswer::Deny,
            }
        });
    }

    fn set_sasl_erased(
        &mut self,
        mechanisms: &[crate::sasl::Mechanism],
        handler: impl Fn(&dyn Any, &crate::sasl::AuthRequest) -> crate::sasl::AuthAnswer
        + Send
        + Sync
        + 'static,
    ) {
        self.sasl = mechanisms
            .iter()
            .copied()
            .filter(|m| m.is_available())
            .collect();
        self.auth = Some(Arc::new(handler));
    }

    /// The auth handler, when SASL is offered.
    ///
    /// ```
    /// assert!(beep_proto::dispatch::Profiles::<()>::default().auth().is_none());
    /// ```
    pub fn auth(&self) -> Option<&Arc<ErasedAuthHandler>> {
        self.auth.as_ref()
    }

    /// What the auth handler answers `request`, which came on
    /// `connection` (the driver's handle); a denial without a handler, or
    /// when it panics (the peer learns only "authentication failure").
    ///
    /// ```
    /// use beep_proto::dispatch::Profiles;
    /// use beep_proto::sasl::{AuthAnswer, AuthRequest};
    /// // A driver whose connection handle is a number answers the session's
    /// // `Event::AuthRequested` so:
    /// fn answer(profiles: &Profiles<()>, connection: &u64, request: &AuthRequest) -> AuthAnswer {
    ///     profiles.decide_auth(connection, request)
    /// }
    /// # let _ = answer;
    /// ```
    pub fn decide_auth(
        &self,
        connection: &dyn Any,
        request: &crate::sasl::AuthRequest,
    ) -> crate::sasl::AuthAnswer {
        let Some(handler) = &self.auth else {
            return crate::sasl::AuthAnswer::Deny;
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler(connection, request)
        }))
        .unwrap_or(crate::sasl::AuthAnswer::Deny)
    }

    /// Registers (or replaces) the handler of `uri`, a profile served only
    /// to a peer that has authenticated (see
    /// [`Config::auth_profiles`](crate::Config::auth_profiles): a start
    /// before is refused with 530).
    ///
    /// ```
    /// let mut p = beep_proto::dispatch::Profiles::default();
    /// p.register_auth_only("private", ());
    /// let mut config = beep_proto::Config::default();
    /// p.configure(&mut config);
    /// assert_eq!(config.auth_profiles, vec!["private".to_string()]);
    /// ```
    pub fn register_auth_only(&mut self, uri: impl Into<String>, handler: H) {
        let uri = uri.into();
        if !self.auth_only.contains(&uri) {
            self.auth_only.push(uri.clone());
        }
        self.register(uri, handler);
    }

    /// How TLS requests are answered, when TLS is offered.
    ///
    /// ```
    /// assert!(beep_proto::dispatch::Profiles::<()>::default().tls().is_none());
    /// ```
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Requires TLS for the whole session (see
    /// [`Config::require_tls`](crate::Config::require_tls)).
    ///
    /// ```
    /// let mut p = beep_proto::dispatch::Profiles::<()>::default();
    /// p.require_tls(true);
    /// let mut config = beep_proto::Config::default();
    /// p.configure(&mut config);
    /// assert!(config.require_tls);
    /// ```
    pub fn require_tls(&mut self, required: bool) {
        self.require_tls = required;
    }

    /// The URIs to advertise in the greeting before TLS: the registered
    /// ones but those served only over TLS, and TLS when it is offered.
    ///
    /// ```
    /// let mut p = beep_proto::dispatch::Profiles::default();
    /// p.register("a", ());
    /// assert_eq!(p.uris(), vec!["a".to_string()]);
    /// ```
    pub fn uris(&self) -> Vec<String> {
        let plain = self
            .registered
            .iter()
            .map(|(u, _)| u)
            .filter(|u| !self.tls_only.contains(u));
        let tls = self.tls.as_ref().map(|_| crate::tls::TLS_URI.to_owned());
        let sasl = self.sasl.iter().map(|m| m.uri().to_owned());
        plain.cloned().chain(tls).chain(sasl).collect()
    }

    /// The URIs served only over TLS.
    ///
    /// ```
    /// assert!(beep_proto::dispatch::Profiles::<()>::default().tls_uris().is_empty());
    /// ```
    pub fn tls_uris(&self) -> Vec<String> {
        self.tls_only.clone()
    }

    /// Sets what `config` advertises and requires from these profiles:
    /// [`Config::profiles`](crate::Config::profiles),
    /// [`Config::tls_profiles`](crate::Config::tls_profiles) and
    /// [`Config::require_tls`](crate::Config::require_tls).
    ///
    /// ```
    /// let mut p = beep_proto::dispatch::Profiles::default();
    /// p.register("a", ());
    /// let mut config = beep_proto::Config::default();
    /// p.configure(&mut config);
    /// assert_eq!(config.profiles, vec!["a".to_string()]);
    /// ```
    pub fn configure(&self, config: &mut crate::Config) {
        config.profiles = self.uris();
        config.tls_profiles = self.tls_uris();
        config.require_tls = self.require_tls;
        config.auth_profiles = self.auth_only.clone();
    }

    /// Decides a start request: the first offered profile we serve, its
    /// handler, and what the handler's start hook (found by `start_hook`)
    /// says: accept when it has none, and refuse (554) when it panics, so a
    /// faulty hook cannot take the connection down. When no offered
    /// profile is served, the refusal (reply code and diagnostic) the
    /// unknown-profile handler ([`Profiles::on_unknown`]) gives, by
    /// default 550 (554 when it panics). Answer with
    /// [`Core::answer_start`] either way.
    ///
    /// ```
    /// use beep_proto::dispatch::{Profiles, StartDecision};
    /// use beep_proto::{StartRequest, xml::Profile};
    /// let mut p = Profiles::default();
    /// p.register("u", ());
    /// let r = StartRequest { channel: 1, server_name: None, profiles: vec![Profile::new("u")] };
    /// let (offer, _, decision) = p.decide_start(&r, |_| None).unwrap();
    /// assert_eq!((offer.uri.as_str(), decision), ("u", StartDecision::Accept(None)));
    /// ```
    pub fn decide_start<'a>(
        &'a self,
        request: &'a StartRequest,
        start_hook: impl Fn(&H) -> Option<&StartHandler>,
    ) -> Result<(&'a Profile, &'a H, StartDecision), (ReplyCode, String)> {
        self.decide_start_with(request, |handler, offer| {
            start_hook(handler).map(|hook| hook(request, offer))
        })
    }

    /// Like [`Profiles::decide_start`], for start hooks that take more
    /// than the request (a driver's hooks also get the connection):
    /// `decide` is given the chosen profile's handler and the offer, and
    /// returns what its hook says, or `None` when it has none (accept).
    /// A panic in `decide` refuses with 554, as in `decide_start`.
    ///
    /// ```
    /// use beep_proto::dispatch::{Profiles, StartDecision};
    /// use beep_proto::{ReplyCode, StartRequest, xml::Profile};
    /// // Each handler is a hook that also wants a (driver's) context: here a host name.
    /// let mut p: Profiles<fn(&str, &Profile) -> StartDecision> = Profiles::default();
    /// p.register("u", |host, _offer| {
    ///     if host == "example.org" {
    ///         StartDecision::Accept(None)
    ///     } else {
    ///         StartDecision::Deny(ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "wrong host".into())
    ///     }
    /// });
    /// let r = StartRequest { channel: 1, server_name: None, profiles: vec![Profile::new("v"), Profile::new("u")] };
    /// let (offer, _, decision) = p.decide_start_with(&r, |hook, offer| Some(hook("example.org", offer))).unwrap();
    /// assert_eq!((offer.uri.as_str(), decision), ("u", StartDecision::Accept(None)));
    /// ```
    pub fn decide_start_with<'a>(
        &'a self,
        request: &'a StartRequest,
        decide: impl FnOnce(&H, &Profile) -> Option<StartDecision>,
    ) -> Result<(&'a Profile, &'a H, StartDecision), (ReplyCode, String)> {
        let Some((offer, handler)) = self.choose(request) else {
            return Err(self.unserved(request));
        };
        let decision =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decide(handler, offer)))
                .unwrap_or_else(|_| {
                    Some(StartDecision::Deny(
                        ReplyCode::TRANSACTION_FAILED,
                        "start handler failed".into(),
                    ))
                })
                .unwrap_or(StartDecision::Accept(None));
        Ok((offer, handler, decision))
    }

    /// The refusal of a start none of whose profiles is served.
    fn unserved(&self, request: &StartRequest) -> (ReplyCode, String) {
        let Some(hook) = &self.unknown else {
            return (UNSERVED.0, UNSERVED.1.to_owned());
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(request))).unwrap_or_else(
            |_| {
                let failed = "unknown-profile handler failed";
                (ReplyCode::TRANSACTION_FAILED, failed.to_owned())
            },
        )
    }

    /// The first profile of the request (the peer's preference order) that
    /// is registered, with its handler.
    ///
    /// ```
    /// use beep_proto::{dispatch::Profiles, StartRequest, xml::Profile};
    /// let p: Profiles<()> = Profiles::default();
    /// let r = StartRequest { channel: 1, server_name: None, profiles: vec![Profile::new("x")] };
    /// assert!(p.choose(&r).is_none());
    /// ```
    pub fn choose<'a>(&'a self, request: &'a StartRequest) -> Option<(&'a Profile, &'a H)> {
        request
            .profiles
            .iter()
            .find_map(|offer| self.get(&offer.uri).map(|h| (offer, h)))
    }
}

/// The session a driver's connection runs, and the configuration it is
/// made from (kept in `config` for the driver's own use). Both drivers
/// set up alike:
///
/// * with `profiles` (a listener, or an initiator that serves some), the
///   greeting, the profiles served only over TLS or only once
///   authenticated, and whether TLS is required come from them (RFC 3080
///   3.1, 4.1);
/// * credit goes back when a handler has finished with a message
///   (`auto_credit` off), so a slow handler slows its peer instead of
///   filling our memory;
/// * the session's own output limit is off: drivers make senders wait
///   for room before they call the session, and a sender that found room
///   may still queue one message past the limit, as documented, which the
///   session's refusal (meant for embedders) must not turn into an error;
/// * `shared_reassembly`, a listener's budget for unfinished messages, is
///   shared with the session.
///
/// ```
/// use beep_proto::{Config, Role, dispatch::{Profiles, driver_session}};
/// let mut profiles: Profiles<()> = Profiles::default();
/// profiles.register("http://example.org/beep/echo", ());
/// let mut config = Config::default();
/// let session = driver_session(Role::Listener, Some(&profiles), &mut config, None);
/// assert_eq!(config.profiles, vec!["http://example.org/beep/echo".to_string()]);
/// assert!(!config.auto_credit && session.config().max_queued_output == usize::MAX);
/// ```
pub fn driver_session<H>(
    role: crate::Role,
    profiles: Option<&Profiles<H>>,
    config: &mut crate::Config,
    shared_reassembly: Option<&crate::SharedBudget>,
) -> crate::Session {
    if let Some(profiles) = profiles {
        profiles.configure(config);
    }
    config.auto_credit = false;
    config.max_queued_output = usize::MAX;
    let mut session = match role {
        crate::Role::Initiator => crate::Session::initiator(config.clone()),
        crate::Role::Listener => crate::Session::listener(config.clone()),
    };
    if let Some(budget) = shared_reassembly {
        session.share_reassembly_budget(budget.clone());
    }
    session
}

/// A new connection id, for the drivers' `Connection::id`: one counter
/// for every driver in the process, so ids are never reused, whichever
/// driver made the connection.
///
/// ```
/// let (a, b) = (beep_proto::dispatch::next_connection_id(), beep_proto::dispatch::next_connection_id());
/// assert!(b > a);
/// ```
pub fn next_connection_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::{AuthAnswer, AuthNeed, AuthRequest, Mechanism};

    /// A PLAIN request for `user`.
    fn plain(user: &str) -> AuthRequest {
        AuthRequest {
            channel: 1,
            mechanism: Mechanism::Plain,
            authcid: Some(user.into()),
            authzid: None,
            password: Some("secret".into()),
            anonymous_token: None,
            server_name: None,
            need: AuthNeed::Decide,
            tls: None,
        }
    }

    #[test]
    fn rfc3080_4_1_the_auth_handler_sees_the_connection_and_a_mismatch_or_panic_denies() {
        let mut profiles: Profiles<()> = Profiles::default();
        assert_eq!(profiles.decide_auth(&7u64, &plain("bob")), AuthAnswer::Deny);
        profiles.set_sasl_with_connection(&[Mechanism::Plain], |connection: &u64, request| match (
            *connection,
            request.authcid.as_deref(),
        ) {
            (7, Some("bob")) => AuthAnswer::Accept,
            (7, Some("panic")) => panic!("handler bug"),
            _ => AuthAnswer::Deny,
        });
        assert_eq!(
            profiles.decide_auth(&7u64, &plain("bob")),
            AuthAnswer::Accept
        );
        assert_eq!(profiles.decide_auth(&8u64, &plain("bob")), AuthAnswer::Deny);
        assert_eq!(profiles.decide_auth(&"7", &plain("bob")), AuthAnswer::Deny);
        assert_eq!(
            profiles.decide_auth(&7u64, &plain("panic")),
            AuthAnswer::Deny
        );
        // The connection-less form ignores the connection.
        profiles.set_sasl(&[Mechanism::Plain], |request| {
            if request.authcid.as_deref() == Some("bob") {
                AuthAnswer::Accept
            } else {
                AuthAnswer::Deny
            }
        });
        assert_eq!(profiles.decide_auth(&(), &plain("bob")), AuthAnswer::Accept);
    }

    #[test]
    fn a_panicking_start_hook_refuses_instead_of_failing() {
        let hook: Box<StartHandler> = Box::new(|_, _| panic!("hook bug"));
        let mut profiles = Profiles::default();
        profiles.register("u", hook);
        let request = StartRequest {
            channel: 1,
            server_name: None,
            profiles: vec![Profile::new("other"), Profile::new("u")],
        };
        let (offer, _, decision) = profiles.decide_start(&request, |h| Some(&**h)).unwrap();
        assert_eq!(offer.uri, "u");
        assert!(
            matches!(decision, StartDecision::Deny(code, _) if code == ReplyCode::TRANSACTION_FAILED)
        );
        let unserved = StartRequest {
            profiles: vec![Profile::new("other")],
            ..request
        };
        assert_eq!(
            profiles.decide_start(&unserved, |h| Some(&**h)).err(),
            Some((ReplyCode::REQUESTED_ACTION_NOT_TAKEN, UNSERVED.1.into()))
        );
        profiles.on_unknown(|_| panic!("hook bug"));
        let refusal = profiles.decide_start(&unserved, |h| Some(&**h)).err();
        assert!(matches!(refusal, Some((code, _)) if code == ReplyCode::TRANSACTION_FAILED));
    }
}
