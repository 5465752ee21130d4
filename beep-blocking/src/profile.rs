//! Profiles a peer serves, with the PyVortex handler set: start, close and
//! message (frame) received.

use std::sync::Arc;

use beep_proto::ReplyCode;
use beep_proto::dispatch::{
    CloseHook, Handled, HandlerResult, ProfileHooks, Profiles, TlsAcceptor,
};
use beep_proto::sasl::{AuthAnswer, AuthRequest, Mechanism};
use beep_proto::tls::TlsServer;
use beep_proto::xml::Profile;
use beep_proto::{IncomingFrame, IncomingMessage, StartRequest, TlsRequest};

use crate::{Channel, Connection};

pub use beep_proto::dispatch::{CloseDecision, CloseRequest, StartDecision};

/// A close handler.
pub(crate) type CloseHandler = CloseHook<Channel>;
/// Every handler of one profile.
pub(crate) type Hooks = ProfileHooks<Connection, Channel, MessageHandler, FrameHandler>;
/// A handler of items `T` (whole messages or frames) with its result
/// erased.
pub(crate) type Handler<T> = dyn Fn(&Channel, T) -> Handled + Send + Sync;
pub(crate) type MessageHandler = Handler<IncomingMessage>;
pub(crate) type FrameHandler = Handler<IncomingFrame>;

/// Erases what a close handler returns (a [`CloseDecision`] or a `bool`).
pub(crate) fn erase_close<R: Into<CloseDecision>>(
    f: impl Fn(&Channel, &CloseRequest) -> R + Send + Sync + 'static,
) -> Arc<CloseHandler> {
    Arc::new(move |channel, request| f(channel, request).into())
}

/// Erases what a handler returns (`()` or a `Result`).
pub(crate) fn erase<T, R: HandlerResult>(
    f: impl Fn(&Channel, T) -> R + Send + Sync + 'static,
) -> Arc<Handler<T>> {
    Arc::new(move |channel, item| f(channel, item).into_handled())
}

/// What to do for one profile: a message handler (required) and optional
/// start and close handlers (default: accept).
///
/// ```
/// use beep_blocking::ProfileHandler;
/// let echo = ProfileHandler::new(|channel, m| {
///     let _ = channel.reply_rpy(m.msgno, m.message);
/// })
/// .on_close(|_channel| true);
/// # let _ = echo;
/// ```
#[derive(Clone, Debug)]
pub struct ProfileHandler {
    pub(crate) hooks: Hooks,
}

impl ProfileHandler {
    /// A profile whose messages go to `on_message` (MSGs to answer, and
    /// replies nobody waits for).
    ///
    /// The handler returns `()` or a `Result<(), E: Display>`: an error
    /// answers a MSG the handler left unanswered with an ERR carrying the
    /// error's text (so write errors meant for the peer), and the channel
    /// stays open. A panic also gets the MSG an ERR, and closes the
    /// channel.
    ///
    /// ```
    /// use beep_blocking::{Error, ProfileHandler};
    /// use beep_proto::Message;
    /// let lookup = ProfileHandler::new(|channel, m| -> Result<(), String> {
    ///     let key = std::str::from_utf8(m.message.body()).map_err(|_| "keys are UTF-8")?;
    ///     channel
    ///         .reply_rpy(m.msgno, Message::new(format!("value of {key}")))
    ///         .map_err(|e: Error| e.to_string())
    /// });
    /// # let _ = lookup;
    /// ```
    ///
    /// Handlers of a connection run one at a time, and what the handlers
    /// of one burst of messages send is written in one go when the burst
    /// is done, or earlier when a handler waits in a call of this crate. A
    /// handler that blocks on something else (its own channel or lock)
    /// until the peer has seen what it sent calls
    /// [`Connection::flush`](crate::Connection::flush) first. While a
    /// handler runs, the socket is read only when some thread waits on
    /// the peer through this crate (a reply, room to send): what else
    /// arrives, such as the peer hanging up, is seen when the handler
    /// returns, as the messages behind it always were.
    ///
    /// ```
    /// let sink = beep_blocking::ProfileHandler::new(|channel, m| {
    ///     let _ = channel.reply_rpy(m.msgno, beep_proto::Message::default());
    /// });
    /// # let _ = sink;
    /// ```
    pub fn new<R: HandlerResult>(
        on_message: impl Fn(&Channel, IncomingMessage) -> R + Send + Sync + 'static,
    ) -> Self {
        ProfileHandler {
            hooks: ProfileHooks::new(erase(on_message)),
        }
    }

    /// Decides on start requests (with the peer's request and the offer
    /// of this profile, piggybacked content included).
    ///
    /// ```
    /// use beep_blocking::{ProfileHandler, StartDecision};
    /// use beep_proto::ReplyCode;
    /// let picky = ProfileHandler::new(|_, _| {}).on_start(|request, _offer| {
    ///     if request.server_name.as_deref() == Some("example.org") {
    ///         StartDecision::Accept(None)
    ///     } else {
    ///         StartDecision::Deny(ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "wrong host".into())
    ///     }
    /// });
    /// # let _ = picky;
    /// ```
    pub fn on_start(
        self,
        f: impl Fn(&StartRequest, &Profile) -> StartDecision + Send + Sync + 'static,
    ) -> Self {
        self.on_start_with_connection(move |_connection, request, offer| f(request, offer))
    }

    /// Like [`ProfileHandler::on_start`], with the connection the request
    /// came on (PyVortex's start handler gets it too): to read its
    /// [`server_name`](Connection::server_name) or
    /// [`peer_addr`](Connection::peer_addr), or to
    /// [`shutdown`](Connection::shutdown) it. The handle does not keep the
    /// connection alive, like the ones message handlers get.
    ///
    /// ```
    /// use beep_blocking::{ProfileHandler, StartDecision};
    /// use beep_proto::ReplyCode;
    /// let local_only = ProfileHandler::new(|_, _| {}).on_start_with_connection(|connection, _request, _offer| {
    ///     match connection.peer_addr() {
    ///         Some(addr) if addr.ip().is_loopback() => StartDecision::Accept(None),
    ///         _ => StartDecision::Deny(ReplyCode::REQUESTED_ACTION_NOT_TAKEN, "local peers only".into()),
    ///     }
    /// });
    /// # let _ = local_only;
    /// ```
    pub fn on_start_with_connection(
        mut self,
        f: impl Fn(&Connection, &StartRequest, &Profile) -> StartDecision + Send + Sync + 'static,
    ) -> Self {
        self.hooks.start = Some(Arc::new(f));
        self
    }

    /// Runs `f` with each channel of this profile the peer opened, once it
    /// is open on our side (our positive reply to its `<start>` is queued
    /// ahead of anything sent on the channel): LibVortex's channel-added
    /// handler. The [`Channel`] may be kept and used like one the
    /// application opened, e.g. to send MSGs to the peer on it. `f` runs
    /// where the start handler does, before the channel's first message is
    /// handled; a panic in it is confined.
    ///
    /// ```
    /// use beep_blocking::{Channel, ProfileHandler};
    /// let (tx, opened) = std::sync::mpsc::channel::<Channel>();
    /// let tx = std::sync::Mutex::new(tx);
    /// let push = ProfileHandler::new(|_, _| {}).on_channel_added(move |channel| {
    ///     // The application pushes to the peer on this channel later.
    ///     let _ = tx.lock().unwrap().send(channel.clone());
    /// });
    /// # let _ = (push, opened);
    /// ```
    pub fn on_channel_added(mut self, f: impl Fn(&Channel) + Send + Sync + 'static) -> Self {
        self.hooks.added = Some(Arc::new(f));
        self
    }

    /// Decides on the peer's requests to close a channel of this profile
    /// (default: agree): `true` agrees, `false` refuses with 550 "close
    /// refused", and a [`CloseDecision`] refuses with a code and
    /// diagnostic of its own. A panic agrees. To see the peer's code and
    /// diagnostic, use [`ProfileHandler::on_close_request`].
    ///
    /// ```
    /// use beep_blocking::{CloseDecision, ProfileHandler};
    /// use beep_proto::ReplyCode;
    /// let stubborn = ProfileHandler::new(|_, _| {}).on_close(|_| false);
    /// let busy = ProfileHandler::new(|_, _| {}).on_close(|_| {
    ///     CloseDecision::Deny(ReplyCode::SERVICE_NOT_AVAILABLE, "a transfer is running".into())
    /// });
    /// # let _ = (stubborn, busy);
    /// ```
    pub fn on_close<R: Into<CloseDecision>>(
        self,
        f: impl Fn(&Channel) -> R + Send + Sync + 'static,
    ) -> Self {
        self.on_close_request(move |channel, _| f(channel))
    }

    /// Like [`ProfileHandler::on_close`], with the peer's request: the
    /// reply code and diagnostic it gave when it asked to close (RFC 3080
    /// 2.3.1.3).
    ///
    /// ```
    /// use beep_blocking::{CloseDecision, ProfileHandler};
    /// use beep_proto::ReplyCode;
    /// let polite = ProfileHandler::new(|_, _| {}).on_close_request(|_channel, request| {
    ///     if request.code == ReplyCode::SUCCESS {
    ///         CloseDecision::Accept
    ///     } else {
    ///         CloseDecision::Deny(ReplyCode::REQUESTED_ACTION_NOT_TAKEN, format!("why {}?", request.code))
    ///     }
    /// });
    /// # let _ = polite;
    /// ```
    pub fn on_close_request<R: Into<CloseDecision>>(
        mut self,
        f: impl Fn(&Channel, &CloseRequest) -> R + Send + Sync + 'static,
    ) -> Self {
        self.hooks.close = Some(erase_close(f));
        self
    }

    /// Channels of this profile deliver frames from the start: each goes
    /// to `on_frame` as it arrives (see
    /// [`Channel::set_frame_handler`](crate::Channel::set_frame_handler)),
    /// and the message handler gets nothing.
    ///
    /// ```
    /// use beep_blocking::ProfileHandler;
    /// use beep_proto::Message;
    /// // Counts the octets of each upload, however large, without holding it.
    /// let upload = ProfileHandler::new(|_, _| {}).on_frame(|channel, frame| {
    ///     if !frame.more && frame.kind == beep_proto::MessageKind::Msg {
    ///         let _ = channel.reply_rpy(frame.msgno, Message::new("stored"));
    ///     }
    /// });
    /// # let _ = upload;
    /// ```
    pub fn on_frame<R: HandlerResult>(
        mut self,
        f: impl Fn(&Channel, IncomingFrame) -> R + Send + Sync + 'static,
    ) -> Self {
        self.hooks.frame = Some(erase(f));
        self
    }
}

/// The profiles a connection serves (PyVortex `register_profile`).
///
/// ```
/// use beep_blocking::{ProfileHandler, Registry};
/// let mut registry = Registry::new();
/// registry.register("http://example.org/beep/echo", ProfileHandler::new(|ch, m| {
///     let _ = ch.reply_rpy(m.msgno, m.message);
/// }));
/// assert_eq!(registry.uris(), vec!["http://example.org/beep/echo".to_string()]);
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    pub(crate) profiles: Profiles<Hooks>,
}

impl Registry {
    /// An empty registry.
    ///
    /// ```
    /// assert!(beep_blocking::Registry::new().uris().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `uri` with `handler` (replacing an earlier registration).
    ///
    /// ```
    /// let mut r = beep_blocking::Registry::new();
    /// r.register("u", beep_blocking::ProfileHandler::new(|_, _| {}));
    /// ```
    pub fn register(&mut self, uri: impl Into<String>, handler: ProfileHandler) -> &mut Self {
        self.profiles.register(uri, handler.hooks);
        self
    }

    /// Decides the answer to a start request none of whose profiles is
    /// registered (RFC 3080 2.3.1.2): `f` gives the reply code and
    /// diagnostic of the refusal. Without it the answer is 550 "none of
    /// the requested profiles is supported"; a panic answers 554.
    ///
    /// ```
    /// use beep_proto::ReplyCode;
    /// let mut r = beep_blocking::Registry::new();
    /// r.on_unknown_profile(|request| {
    ///     let asked: Vec<_> = request.profiles.iter().map(|p| p.uri.as_str()).collect();
    ///     (ReplyCode::PARAMETER_INVALID, format!("not served here: {}", asked.join(" ")))
    /// });
    /// ```
    pub fn on_unknown_profile(
        &mut self,
        f: impl Fn(&StartRequest) -> (ReplyCode, String) + Send + Sync + 'static,
    ) -> &mut Self {
        self.profiles.on_unknown(f);
        self
    }

    /// Offers TLS (RFC 3080 3.1): the TLS profile is advertised in the
    /// greeting, and each peer's request is answered as `acceptor` says,
    /// with the certificate it chooses for the request's `serverName`,
    /// or refused (550) when it gives none. It is PyVortex's
    /// `vortex.tls.accept_tls` with its accept, certificate and key
    /// handlers in one ([`TlsAcceptor::with`] decides per request). The
    /// acceptor runs on the connection's dispatcher, like start handlers.
    ///
    /// Once the handshake is over every channel is gone and both peers
    /// greet again (RFC 3080 3.1.3.2); the connection stays the same
    /// [`Connection`](crate::Connection), whose
    /// [`tls_info`](crate::Connection::tls_info) tells the peer's
    /// certificate.
    ///
    /// ```
    /// use beep_blocking::{Registry, TlsAcceptor, TlsServer};
    /// let mut registry = Registry::new();
    /// // Read at each request, so a renewed certificate is used at once.
    /// registry.set_tls(TlsAcceptor::with(|_request| {
    ///     TlsServer::from_pem_files("/etc/beep/cert.pem", "/etc/beep/key.pem").ok()
    /// }));
    /// assert_eq!(registry.uris(), vec![beep_proto::tls::TLS_URI.to_string()]);
    /// ```
    pub fn set_tls(&mut self, acceptor: TlsAcceptor) -> &mut Self {
        self.profiles.set_tls(acceptor);
        self
    }

    /// Offers TLS like [`Registry::set_tls`], each request decided by
    /// `choose` with the [`Connection`] it came on (PyVortex's TLS accept,
    /// certificate and key handlers get it as `conn`): the certificate to
    /// present, or `None` to refuse (550). The connection is the one the
    /// profile handlers of the same session see (the same
    /// [`Connection::id`]): read its [`peer_addr`](Connection::peer_addr),
    /// or remember its id. `choose` runs on the connection's dispatcher; a
    /// panic refuses.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use beep_blocking::{Registry, TlsServer};
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let server = TlsServer::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
    /// // TLS for local peers only, noting which connections asked.
    /// let asked = Arc::new(Mutex::new(Vec::new()));
    /// let noted = asked.clone();
    /// let mut registry = Registry::new();
    /// registry.set_tls_with_connection(move |conn, _request| {
    ///     noted.lock().unwrap().push(conn.id());
    ///     let local = conn.peer_addr().is_some_and(|addr| addr.ip().is_loopback());
    ///     local.then(|| server.clone())
    /// });
    /// assert_eq!(registry.uris(), vec![beep_proto::tls::TLS_URI.to_string()]);
    /// ```
    pub fn set_tls_with_connection(
        &mut self,
        choose: impl Fn(&Connection, &TlsRequest) -> Option<TlsServer> + Send + Sync + 'static,
    ) -> &mut Self {
        self.profiles
            .set_tls(TlsAcceptor::with_connection::<Connection>(choose));
        self
    }

    /// Serves `uri` with `handler` only once TLS is active (RFC 3080
    /// 3.1): it is left out of the greeting before TLS, and a start of
    /// it is refused with 538 ("requires encryption"); the greeting sent
    /// over TLS advertises it. Offer TLS too ([`Registry::set_tls`]), or
    /// the profile can never be started.
    ///
    /// ```
    /// use beep_blocking::{ProfileHandler, Registry, TlsAcceptor};
    /// let mut registry = Registry::new();
    /// registry.set_tls(TlsAcceptor::with(|_| None));
    /// registry.register_tls_only("http://example.org/beep/secret", ProfileHandler::new(|ch, m| {
    ///     let _ = ch.reply_rpy(m.msgno, m.message);
    /// }));
    /// // Before TLS, only TLS itself is advertised.
    /// assert_eq!(registry.uris(), vec![beep_proto::tls::TLS_URI.to_string()]);
    /// ```
    pub fn register_tls_only(
        &mut self,
        uri: impl Into<String>,
        handler: ProfileHandler,
    ) -> &mut Self {
        self.profiles.register_tls_only(uri, handler.hooks);
        self
    }

    /// Requires TLS for the whole session (`true`): before TLS the
    /// greeting advertises TLS alone and a start of any other profile is
    /// refused with 538; after it, every registered profile is served.
    /// For peers that must not exchange anything in the clear (RFC 3080
    /// 3.1). Offer TLS too ([`Registry::set_tls`]).
    ///
    /// ```
    /// use beep_blocking::{ProfileHandler, Registry, TlsAcceptor};
    /// let mut registry = Registry::new();
    /// registry
    ///     .register("http://example.org/beep/echo", ProfileHandler::new(|_, _| {}))
    ///     .set_tls(TlsAcceptor::with(|_| None))
    ///     .require_tls(true);
    /// ```
    pub fn require_tls(&mut self, required: bool) -> &mut Self {
        self.profiles.require_tls(required);
        self
    }

    /// Offers SASL authentication (RFC 3080 4.1) with `mechanisms`, each
    /// peer's attempt decided by `handler` (PyVortex's
    /// `vortex.sasl.accept_mech` and its `sasl_auth_handler` in one). The
    /// mechanisms' profiles are advertised in the greeting (those this
    /// build cannot run are left out); the session runs the exchange
    /// itself and asks `handler` only for a decision:
    ///
    /// * [`AuthNeed::Decide`](crate::AuthNeed::Decide) (PLAIN, ANONYMOUS,
    ///   EXTERNAL): the request carries the credentials; answer
    ///   [`AuthAnswer::Accept`](crate::AuthAnswer::Accept),
    ///   [`Deny`](crate::AuthAnswer::Deny) or
    ///   [`NoSuchUser`](crate::AuthAnswer::NoSuchUser).
    /// * [`AuthNeed::Secret`](crate::AuthNeed::Secret) (CRAM-MD5,
    ///   DIGEST-MD5, SCRAM-SHA-256): give the user's password with
    ///   [`AuthAnswer::Secret`](crate::AuthAnswer::Secret) (the session
    ///   checks the client's proof), or `NoSuchUser`/`Deny`.
    ///
    /// `handler` runs on the connection's dispatcher, like start
    /// handlers; a panic denies. The peer learns only "authentication
    /// failure" (535). Once a peer authenticated, every channel of its
    /// connection sees who it is in
    /// [`Connection::auth_info`](crate::Connection::auth_info).
    ///
    /// ```
    /// use beep_blocking::{AuthAnswer, AuthNeed, Mechanism, Registry};
    /// let mut registry = Registry::new();
    /// registry.set_sasl(&[Mechanism::Plain, Mechanism::ScramSha256], |request| {
    ///     let stored = (request.authcid.as_deref() == Some("bob")).then_some("secret");
    ///     match (request.need, stored) {
    ///         (_, None) => AuthAnswer::NoSuchUser,
    ///         (AuthNeed::Secret, Some(password)) => AuthAnswer::Secret(password.into()),
    ///         (AuthNeed::Decide, Some(password)) if request.password.as_deref() == Some(password) => {
    ///             AuthAnswer::Accept
    ///         }
    ///         (AuthNeed::Decide, Some(_)) => AuthAnswer::Deny,
    ///     }
    /// });
    /// assert!(registry.uris().contains(&Mechanism::Plain.uri().to_string()));
    /// ```
    pub fn set_sasl(
        &mut self,
        mechanisms: &[Mechanism],
        handler: impl Fn(&AuthRequest) -> AuthAnswer + Send + Sync + 'static,
    ) -> &mut Self {
        self.profiles.set_sasl(mechanisms, handler);
        self
    }

    /// Offers SASL like [`Registry::set_sasl`], each attempt decided by
    /// `handler` with the [`Connection`] it came on (PyVortex's
    /// `sasl_auth_handler` gets it as `conn`): the one the profile
    /// handlers of the same session see (the same [`Connection::id`]),
    /// e.g. to allow some users only from some addresses, or to count the
    /// failed attempts of each connection. `handler` runs on the
    /// connection's dispatcher; a panic denies.
    ///
    /// ```
    /// use beep_blocking::{AuthAnswer, AuthNeed, Mechanism, Registry};
    /// let mut registry = Registry::new();
    /// // The administrator only from this machine.
    /// registry.set_sasl_with_connection(&[Mechanism::ScramSha256], |conn, request| {
    ///     let local = conn.peer_addr().is_some_and(|addr| addr.ip().is_loopback());
    ///     match (request.need, request.authcid.as_deref()) {
    ///         (AuthNeed::Secret, Some("admin")) if local => AuthAnswer::Secret("root-secret".into()),
    ///         (AuthNeed::Secret, Some("bob")) => AuthAnswer::Secret("secret".into()),
    ///         (_, Some("admin" | "bob")) => AuthAnswer::Deny,
    ///         _ => AuthAnswer::NoSuchUser,
    ///     }
    /// });
    /// assert_eq!(registry.uris(), vec![Mechanism::ScramSha256.uri().to_string()]);
    /// ```
    pub fn set_sasl_with_connection(
        &mut self,
        mechanisms: &[Mechanism],
        handler: impl Fn(&Connection, &AuthRequest) -> AuthAnswer + Send + Sync + 'static,
    ) -> &mut Self {
        self.profiles
            .set_sasl_with_connection::<Connection>(mechanisms, handler);
        self
    }

    /// Serves `uri` with `handler` only to a peer that has authenticated
    /// (RFC 3080 4.1): before that a start of it is refused with 530
    /// ("authentication required"); once the peer's SASL exchange
    /// succeeded it is served like any other. Offer SASL too
    /// ([`Registry::set_sasl`]), or the profile can never be started.
    ///
    /// ```
    /// use beep_blocking::{AuthAnswer, Mechanism, ProfileHandler, Registry};
    /// let mut registry = Registry::new();
    /// registry
    ///     .set_sasl(&[Mechanism::Anonymous], |_| AuthAnswer::Accept)
    ///     .register_auth_only("http://example.org/beep/private", ProfileHandler::new(|ch, m| {
    ///         let who = ch.connection().auth_info().map(|info| info.authcid);
    ///         let _ = ch.reply_rpy(m.msgno, beep_proto::Message::new(format!("hello {who:?}")));
    ///     }));
    /// ```
    pub fn register_auth_only(
        &mut self,
        uri: impl Into<String>,
        handler: ProfileHandler,
    ) -> &mut Self {
        self.profiles.register_auth_only(uri, handler.hooks);
        self
    }

    /// The URIs advertised in the greeting before TLS: the registered
    /// ones but those served only over TLS, and TLS itself when it is
    /// offered. (With [`Registry::require_tls`] the greeting narrows this
    /// to TLS.)
    ///
    /// ```
    /// assert!(beep_blocking::Registry::new().uris().is_empty());
    /// ```
    pub fn uris(&self) -> Vec<String> {
        self.profiles.uris()
    }
}
