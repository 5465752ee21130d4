//! Profiles a peer serves, with the PyVortex handler set: start, close and
//! message received. Message handlers are async; start and close handlers
//! decide at once, so they are plain closures.

use std::future::Future;
use std::sync::Arc;

use beep_proto::ReplyCode;
use beep_proto::dispatch::{
    CloseHook, Handled, HandlerResult, ProfileHooks, Profiles, TlsAcceptor,
};
use beep_proto::sasl::{AuthAnswer, AuthRequest, Mechanism};
use beep_proto::tls::TlsServer;
use beep_proto::xml::Profile;
use beep_proto::{IncomingFrame, IncomingMessage, StartRequest, TlsRequest};

use crate::runtime::BoxFuture;
use crate::{Channel, Connection};

pub use beep_proto::dispatch::{CloseDecision, CloseRequest, StartDecision};

/// A close handler.
pub(crate) type CloseHandler = CloseHook<Channel>;
/// Every handler of one profile.
pub(crate) type Hooks = ProfileHooks<Connection, Channel, MessageHandler, FrameHandler>;
/// A handler of items `T` (whole messages or frames) with its result
/// erased, so handlers of any future type live in one registry.
pub(crate) type Handler<T> = dyn Fn(Channel, T) -> BoxFuture<'static, Handled> + Send + Sync;
pub(crate) type MessageHandler = Handler<IncomingMessage>;
pub(crate) type FrameHandler = Handler<IncomingFrame>;

/// Erases what a close handler returns (a [`CloseDecision`] or a `bool`).
pub(crate) fn erase_close<R: Into<CloseDecision>>(
    f: impl Fn(&Channel, &CloseRequest) -> R + Send + Sync + 'static,
) -> Arc<CloseHandler> {
    Arc::new(move |channel, request| f(channel, request).into())
}

/// Boxes an async handler whose future gives `()` or a `Result`.
pub(crate) fn erase<T, F, Fut>(f: F) -> Arc<Handler<T>>
where
    F: Fn(Channel, T) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    Arc::new(move |channel, item| {
        let future = f(channel, item);
        Box::pin(async move { future.await.into_handled() })
    })
}

/// What to do for one profile: an async message handler (required) and
/// optional start and close handlers (default: accept).
///
/// The message handler gets the channel (a cheap handle) and the message
/// by value and returns a future; the connection runs its handlers one at
/// a time, in arrival order, and gives the message's receive window back
/// to the peer when the future completes. Rust 2024 `async |channel, m|
/// { ... }` closures work as well as closures returning `async move`
/// blocks.
///
/// ```
/// use beep_tokio::ProfileHandler;
/// let echo = ProfileHandler::new(|channel, m| async move {
///     let _ = channel.reply_rpy(m.msgno, m.message).await;
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
    /// The handler's future gives `()` or a `Result<(), E: Display>`: an
    /// error answers a MSG the handler left unanswered with an ERR carrying
    /// the error's text (so write errors meant for the peer), and the
    /// channel stays open. A panic also gets the MSG an ERR, and closes the
    /// channel.
    ///
    /// ```
    /// use beep_proto::Message;
    /// let lookup = beep_tokio::ProfileHandler::new(|channel, m| async move {
    ///     let key = std::str::from_utf8(m.message.body()).map_err(|_| "keys are UTF-8")?;
    ///     let value = Message::new(format!("value of {key}"));
    ///     channel.reply_rpy(m.msgno, value).await.map_err(|e| e.to_string())?;
    ///     Ok::<(), String>(())
    /// });
    /// # let _ = lookup;
    /// ```
    ///
    /// ```
    /// let sink = beep_tokio::ProfileHandler::new(|channel, m| async move {
    ///     let _ = channel.reply_rpy(m.msgno, beep_proto::Message::default()).await;
    /// });
    /// # let _ = sink;
    /// ```
    pub fn new<F, Fut>(on_message: F) -> Self
    where
        F: Fn(Channel, IncomingMessage) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        ProfileHandler {
            hooks: ProfileHooks::new(erase(on_message)),
        }
    }

    /// Decides on start requests (with the peer's request and the offer
    /// of this profile, piggybacked content included).
    ///
    /// ```
    /// use beep_tokio::{ProfileHandler, StartDecision};
    /// use beep_proto::ReplyCode;
    /// let picky = ProfileHandler::new(|_, _| async {}).on_start(|request, _offer| {
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
    /// use beep_tokio::{ProfileHandler, StartDecision};
    /// use beep_proto::ReplyCode;
    /// let local_only = ProfileHandler::new(|_, _| async {}).on_start_with_connection(|connection, _request, _offer| {
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
    /// use beep_tokio::{Channel, ProfileHandler};
    /// let (tx, opened) = std::sync::mpsc::channel::<Channel>();
    /// let tx = std::sync::Mutex::new(tx);
    /// let push = ProfileHandler::new(|_, _| async {}).on_channel_added(move |channel| {
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
    /// use beep_tokio::{CloseDecision, ProfileHandler};
    /// use beep_proto::ReplyCode;
    /// let stubborn = ProfileHandler::new(|_, _| async {}).on_close(|_| false);
    /// let busy = ProfileHandler::new(|_, _| async {}).on_close(|_| {
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
    /// use beep_tokio::{CloseDecision, ProfileHandler};
    /// use beep_proto::ReplyCode;
    /// let polite = ProfileHandler::new(|_, _| async {}).on_close_request(|_channel, request| {
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
    /// use beep_proto::{Message, MessageKind};
    /// // Acknowledges each upload, however large, without holding it.
    /// let upload = beep_tokio::ProfileHandler::new(|_, _| async {}).on_frame(|channel, frame| async move {
    ///     if !frame.more && frame.kind == MessageKind::Msg {
    ///         let _ = channel.reply_rpy(frame.msgno, Message::new("stored")).await;
    ///     }
    /// });
    /// # let _ = upload;
    /// ```
    pub fn on_frame<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Channel, IncomingFrame) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.hooks.frame = Some(erase(f));
        self
    }
}

/// The profiles a connection serves (PyVortex `register_profile`).
///
/// ```
/// use beep_tokio::{ProfileHandler, Registry};
/// let mut registry = Registry::new();
/// registry.register("http://example.org/beep/echo", ProfileHandler::new(|ch, m| async move {
///     let _ = ch.reply_rpy(m.msgno, m.message).await;
/// }));
/// assert_eq!(registry.uris(), vec!["http://example.org/beep/echo".to_string()]);
/// ```
#[derive(Clone, Default, Debug)]
pub struct Registry {
    pub(crate) profiles: Profiles<Hooks>,
}

impl Registry {
    /// An empty registry.
    ///
    /// ```
    /// assert!(beep_tokio::Registry::new().uris().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `uri` with `handler` (replacing an earlier registration).
    ///
    /// ```
    /// let mut r = beep_tokio::Registry::new();
    /// r.register("u", beep_tokio::ProfileHandler::new(|_, _| async {}));
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
    /// let mut r = beep_tokio::Registry::new();
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

    /// Serves `uri` with `handler` only once TLS protects the session
    /// (PyVortex's profile masks for TLS-only profiles): before, it is
    /// left out of the greeting and a start of it is refused with 538
    /// (encryption required); after the TLS handshake the new greeting
    /// offers it (RFC 3080 3: the greeting after a tuning reset may
    /// differ). Needs [`Registry::set_tls`] to be reachable at all.
    ///
    /// ```
    /// use beep_tokio::{ProfileHandler, Registry};
    /// let mut r = Registry::new();
    /// r.register_tls_only("http://example.org/beep/secret", ProfileHandler::new(|_, _| async {}));
    /// assert!(r.uris().is_empty(), "not advertised before TLS");
    /// ```
    pub fn register_tls_only(
        &mut self,
        uri: impl Into<String>,
        handler: ProfileHandler,
    ) -> &mut Self {
        self.profiles.register_tls_only(uri, handler.hooks);
        self
    }

    /// Offers TLS (RFC 3080 3.1, PyVortex `vortex.tls.accept_tls`):
    /// the greeting advertises `http://iana.org/beep/TLS`, and each
    /// peer's request is answered as `acceptor` decides (the certificate
    /// for its `serverName`, or a refusal). The handshake itself runs
    /// inside the session: connections of this registry need nothing
    /// else.
    ///
    /// ```no_run
    /// use beep_tokio::{Registry, TlsAcceptor, TlsServer};
    /// let server = TlsServer::from_pem_files("server.pem", "server.key").unwrap();
    /// let mut r = Registry::new();
    /// r.set_tls(TlsAcceptor::new(server));
    /// assert_eq!(r.uris(), vec![beep_proto::tls::TLS_URI.to_string()]);
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
    /// or remember its id. `choose` runs on the runtime's blocking pool
    /// (see [`Runtime::run_blocking`](crate::runtime::Runtime::run_blocking)), so
    /// it may read files or block; the connection waits for it, others do
    /// not. A panic refuses.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use beep_tokio::{Registry, TlsServer};
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let server = TlsServer::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes()).unwrap();
    /// // TLS for local peers only, noting which connections asked.
    /// let asked = Arc::new(Mutex::new(Vec::new()));
    /// let noted = asked.clone();
    /// let mut r = Registry::new();
    /// r.set_tls_with_connection(move |conn, _request| {
    ///     noted.lock().unwrap().push(conn.id());
    ///     let local = conn.peer_addr().is_some_and(|addr| addr.ip().is_loopback());
    ///     local.then(|| server.clone())
    /// });
    /// assert_eq!(r.uris(), vec![beep_proto::tls::TLS_URI.to_string()]);
    /// ```
    pub fn set_tls_with_connection(
        &mut self,
        choose: impl Fn(&Connection, &TlsRequest) -> Option<TlsServer> + Send + Sync + 'static,
    ) -> &mut Self {
        self.profiles
            .set_tls(TlsAcceptor::with_connection::<Connection>(choose));
        self
    }

    /// Requires TLS before anything else (RFC 3080 3.1): until the
    /// handshake is over the greeting offers only TLS and every other
    /// start is refused with 538. Use with [`Registry::set_tls`].
    ///
    /// ```
    /// use beep_tokio::{ProfileHandler, Registry, TlsAcceptor};
    /// let mut r = Registry::new();
    /// r.register("http://example.org/beep/echo", ProfileHandler::new(|_, _| async {}))
    ///     .set_tls(TlsAcceptor::with(|_request| None))
    ///     .require_tls(true);
    /// ```
    pub fn require_tls(&mut self, required: bool) -> &mut Self {
        self.profiles.require_tls(required);
        self
    }

    /// Offers SASL authentication (RFC 3080 4.1, PyVortex
    /// `vortex.sasl.accept_mech` with `sasl_auth_handler`): the greeting
    /// advertises one profile per mechanism of `mechanisms` this build can
    /// run (`http://iana.org/beep/SASL/<NAME>`), and `handler` decides each
    /// peer's authentication. The exchange itself runs inside the session.
    ///
    /// `handler` runs on the runtime's blocking pool (see
    /// [`Runtime::run_blocking`](crate::runtime::Runtime::run_blocking)), so it may
    /// block, e.g. on a user database: the connection waits for it, other
    /// connections do not.
    /// For [`AuthNeed::Decide`](crate::AuthNeed::Decide) (PLAIN, ANONYMOUS,
    /// EXTERNAL) it accepts or denies the credentials in the request; for
    /// [`AuthNeed::Secret`](crate::AuthNeed::Secret) (SCRAM-SHA-256,
    /// CRAM-MD5, DIGEST-MD5) it gives the user's password, and the session
    /// checks the client's proof. A denial, an unknown user or a panic all
    /// reach the client as 535 "authentication failure". Once a peer has
    /// authenticated, [`Connection::auth_info`](crate::Connection::auth_info)
    /// tells who it is.
    ///
    /// ```
    /// use beep_tokio::{AuthAnswer, AuthNeed, Mechanism, Registry};
    /// let mut r = Registry::new();
    /// r.set_sasl(&[Mechanism::Plain, Mechanism::ScramSha256], |request| {
    ///     match (request.need, request.authcid.as_deref()) {
    ///         (AuthNeed::Decide, Some("bob")) if request.password.as_deref() == Some("secret") => {
    ///             AuthAnswer::Accept
    ///         }
    ///         (AuthNeed::Secret, Some("bob")) => AuthAnswer::Secret("secret".into()),
    ///         (_, Some("bob")) => AuthAnswer::Deny,
    ///         _ => AuthAnswer::NoSuchUser,
    ///     }
    /// });
    /// assert_eq!(r.uris(), vec![Mechanism::Plain.uri().to_string(), Mechanism::ScramSha256.uri().to_string()]);
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
    /// runtime's blocking pool, as [`Registry::set_sasl`]'s does; a panic
    /// denies.
    ///
    /// ```
    /// use beep_tokio::{AuthAnswer, AuthNeed, Mechanism, Registry};
    /// let mut r = Registry::new();
    /// // The administrator only from this machine.
    /// r.set_sasl_with_connection(&[Mechanism::ScramSha256], |conn, request| {
    ///     let local = conn.peer_addr().is_some_and(|addr| addr.ip().is_loopback());
    ///     match (request.need, request.authcid.as_deref()) {
    ///         (AuthNeed::Secret, Some("admin")) if local => AuthAnswer::Secret("root-secret".into()),
    ///         (AuthNeed::Secret, Some("bob")) => AuthAnswer::Secret("secret".into()),
    ///         (_, Some("admin" | "bob")) => AuthAnswer::Deny,
    ///         _ => AuthAnswer::NoSuchUser,
    ///     }
    /// });
    /// assert_eq!(r.uris(), vec![Mechanism::ScramSha256.uri().to_string()]);
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
    /// (PyVortex's profile masks for authenticated sessions): until then a
    /// start of it is refused with 530 (authentication required, RFC 3080
    /// 8); once the peer has authenticated ([`Registry::set_sasl`]) it is
    /// served like any other profile. It is advertised in the greeting
    /// throughout (the greeting comes before authentication, and SASL
    /// without a security layer does not greet again).
    ///
    /// ```
    /// use beep_tokio::{AuthAnswer, Mechanism, ProfileHandler, Registry};
    /// let mut r = Registry::new();
    /// r.register_auth_only("http://example.org/beep/private", ProfileHandler::new(|_, _| async {}))
    ///     .set_sasl(&[Mechanism::Plain], |_request| AuthAnswer::Deny);
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
    /// offered.
    ///
    /// ```
    /// assert!(beep_tokio::Registry::new().uris().is_empty());
    /// ```
    pub fn uris(&self) -> Vec<String> {
        self.profiles.uris()
    }
}
