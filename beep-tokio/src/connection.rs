//! A BEEP session over a byte stream, driven by three tasks: a reader
//! (stream to session), a writer (session to stream) and a dispatcher that
//! runs application handlers one at a time (see `io.rs` and `dispatch.rs`;
//! the state they share is in `shared.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use beep_proto::Role;
use beep_proto::dispatch::Done;
use beep_proto::sasl::{AuthInfo, SaslClient};
use beep_proto::tls::{TlsClient, TlsInfo};
use beep_proto::xml::{Greeting, Profile};
use futures_channel::oneshot;

use crate::channel::Channel;
use crate::error::{CloseReason, Error};
use crate::io;
use crate::options::Options;
use crate::profile::Registry;
use crate::runtime::{self, Runtime, ToAddrs, Transport};
use crate::shared::{Notify, Shared};

/// A BEEP session (PyVortex `Connection`). Cheap to clone; every clone is
/// the same connection, with the same [`id`](Connection::id) (handles
/// compare equal, and hash, by it). Its tasks run until the session ends:
/// release it with [`Connection::close`] or drop it with
/// [`Connection::shutdown`].
///
/// ```no_run
/// use beep_tokio::{Connection, Options};
/// # async fn run() -> Result<(), beep_tokio::Error> {
/// let conn = Connection::connect("localhost:10288", Options::default()).await?;
/// println!("the listener offers {:?}", conn.peer_greeting().profiles);
/// conn.close().await?;
/// # Ok(()) }
/// ```
///
/// A connection made by [`Connection::connect`], `connect_transport` or
/// `accept_transport` lives while the application holds a handle to it
/// (this, a clone, a [`Channel`](crate::Channel) or a pool opened on it):
/// when the last one is dropped, the session is released in a background
/// task (and shut down if the peer refuses or does not answer within the
/// release timeout). Handles that handlers receive do not keep it alive.
/// A closure the connection keeps that captures a handle keeps it alive as
/// long as the closure lives: a message handler for ever (use the `Channel`
/// it is given instead), an `on_close`, `open_channel_with` or
/// `request_with` callback until it ran.
#[derive(Clone)]
pub struct Connection {
    pub(crate) shared: Arc<Shared>,
    /// Set in the application's handles (see above).
    _owner: Option<Arc<Owner>>,
}

/// The application's stake in a connection it made.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        let conn = Connection::internal(self.0.clone());
        if !conn.is_ok() {
            return;
        }
        let runtime = conn.shared.runtime.clone();
        runtime.spawn(Box::pin(async move {
            if conn.close().await.is_err() {
                conn.shutdown();
            }
        }));
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.id)
            .field("peer", &self.shared.peer)
            .finish_non_exhaustive()
    }
}

/// Handles are equal when they are of the same connection (the same
/// [`Connection::id`]).
impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        self.shared.id == other.shared.id
    }
}

impl Eq for Connection {}

/// Hashes [`Connection::id`], so connections key maps and sets. (The
/// id never changes, so Clippy's `mutable_key_type` lint, which sees the
/// connection's locks, does not apply: allow it, or list
/// `beep_tokio::Connection` in its `ignore-interior-mutability`.)
impl std::hash::Hash for Connection {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.shared.id.hash(state);
    }
}

impl Connection {
    /// A handle for the driver's own tasks: it does not keep the
    /// connection alive.
    pub(crate) fn internal(shared: Arc<Shared>) -> Self {
        Connection {
            shared,
            _owner: None,
        }
    }

    /// This handle, keeping the connection alive (see [`Connection`]).
    fn owned(self) -> Self {
        let owner = Some(Arc::new(Owner(self.shared.clone())));
        Connection {
            shared: self.shared,
            _owner: owner,
        }
    }

    /// Connects to a BEEP listener (IPv4 or IPv6; each resolved address is
    /// tried in turn, each within the connect timeout) and waits for its
    /// greeting.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), beep_tokio::Error> {
    /// let conn = beep_tokio::Connection::connect("[::1]:10288", Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(addr: impl ToAddrs, options: Options) -> Result<Connection, Error> {
        Self::connect_serving(addr, None, options).await
    }

    /// Like [`Connection::connect`], serving the profiles of `registry`
    /// to the listener: a channel the listener starts on this connection
    /// is answered and handled by the registry's handlers (PyVortex's
    /// clients serve the profiles registered on their context), where
    /// `connect`'s connections refuse every start (550). The greeting
    /// advertises the registry's profiles, as a listener's does (RFC 3080
    /// 2.3.1.1), in place of [`Options::config`]'s.
    ///
    /// ```no_run
    /// use beep_tokio::{Connection, Options, ProfileHandler, Registry};
    /// use beep_proto::Message;
    /// # async fn run() -> Result<(), beep_tokio::Error> {
    /// // The listener pushes notifications to us on channels it starts.
    /// let mut registry = Registry::new();
    /// registry.register("http://example.org/beep/notify", ProfileHandler::new(|channel, m| async move {
    ///     println!("notified: {:?}", m.message.body());
    ///     let _ = channel.reply_rpy(m.msgno, Message::new("seen")).await;
    /// }));
    /// let conn = Connection::connect_with_registry("127.0.0.1:10288", registry, Options::default()).await?;
    /// assert!(conn.is_ok());
    /// # Ok(()) }
    /// ```
    pub async fn connect_with_registry(
        addr: impl ToAddrs,
        registry: Registry,
        options: Options,
    ) -> Result<Connection, Error> {
        Self::connect_serving(addr, Some(registry), options).await
    }

    /// Connects, serving `registry` if given.
    async fn connect_serving(
        addr: impl ToAddrs,
        registry: Option<Registry>,
        options: Options,
    ) -> Result<Connection, Error> {
        options.config.validate()?;
        let runtime = options.resolve_runtime()?;
        let addrs = addr.to_addrs().resolve(&*runtime).await?;
        let mut last = Error::Timeout;
        for addr in addrs {
            let attempt = runtime.connect(addr);
            match runtime::timeout(&*runtime, options.connect_timeout, attempt).await {
                Some(Ok(stream)) => {
                    let conn = Self::start(
                        stream,
                        Some(addr),
                        Role::Initiator,
                        registry.clone(),
                        options.clone(),
                        runtime.clone(),
                    )
                    .owned();
                    conn.wait_greeting().await?;
                    return Ok(conn);
                }
                Some(Err(e)) => last = e.into(),
                None => last = Error::Timeout,
            }
        }
        Err(last)
    }

    /// Runs the initiator's side of a session over a stream of the caller's
    /// (an in-memory pipe, a TLS stream, a socket of any runtime) and waits
    /// for the peer's greeting.
    ///
    /// ```no_run
    /// use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # async fn run() -> Result<(), beep_tokio::Error> {
    /// let stream = tokio::net::TcpStream::connect("127.0.0.1:10288").await?;
    /// let conn = beep_tokio::Connection::connect_transport(stream.compat(), Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_transport(
        stream: impl Transport,
        options: Options,
    ) -> Result<Connection, Error> {
        Self::connect_transport_serving(stream, None, options).await
    }

    /// Like [`Connection::connect_transport`], serving the profiles of
    /// `registry` to the peer, as [`Connection::connect_with_registry`]
    /// does.
    ///
    /// ```no_run
    /// use beep_tokio::{Connection, Options, ProfileHandler, Registry};
    /// use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # async fn run() -> Result<(), beep_tokio::Error> {
    /// let mut registry = Registry::new();
    /// registry.register("http://example.org/beep/echo", ProfileHandler::new(|channel, m| async move {
    ///     let _ = channel.reply_rpy(m.msgno, m.message).await;
    /// }));
    /// let stream = tokio::net::TcpStream::connect("127.0.0.1:10288").await?;
    /// let conn = Connection::connect_transport_with_registry(stream.compat(), registry, Options::default()).await?;
    /// # drop(conn);
    /// # Ok(()) }
    /// ```
    pub async fn connect_transport_with_registry(
        stream: impl Transport,
        registry: Registry,
        options: Options,
    ) -> Result<Connection, Error> {
        Self::connect_transport_serving(stream, Some(registry), options).await
    }

    /// Runs the initiator's side over `stream`, serving `registry` if
    /// given.
    async fn connect_transport_serving(
        stream: impl Transport,
        registry: Option<Registry>,
        options: Options,
    ) -> Result<Connection, Error> {
        options.config.validate()?;
        let runtime = options.resolve_runtime()?;
        let conn = Self::start(
            Box::new(stream),
            None,
            Role::Initiator,
            registry,
            options,
            runtime,
        )
        .owned();
        conn.wait_greeting().await?;
        Ok(conn)
    }

    /// Runs the listener's side of a session over a stream of the caller's,
    /// serving the profiles of `registry`.
    ///
    /// ```no_run
    /// use beep_tokio::{Connection, Options, Registry};
    /// use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # async fn run() -> Result<(), beep_tokio::Error> {
    /// let socket = tokio::net::TcpListener::bind("127.0.0.1:10288").await?;
    /// let (stream, _) = socket.accept().await?;
    /// let conn = Connection::accept_transport(stream.compat(), Registry::new(), Options::default())?;
    /// conn.wait_closed().await;
    /// # Ok(()) }
    /// ```
    pub fn accept_transport(
        stream: impl Transport,
        registry: Registry,
        options: Options,
    ) -> Result<Connection, Error> {
        options.config.validate()?;
        let runtime = options.resolve_runtime()?;
        let conn = Self::start(
            Box::new(stream),
            None,
            Role::Listener,
            Some(registry),
            options,
            runtime,
        );
        Ok(conn.owned())
    }

    /// Serves a connection accepted by a [`Listener`](crate::Listener).
    pub(crate) fn accept(
        stream: Box<dyn Transport>,
        peer: SocketAddr,
        registry: Registry,
        options: Options,
        runtime: Arc<dyn Runtime>,
    ) -> Connection {
        Self::start(
            stream,
            Some(peer),
            Role::Listener,
            Some(registry),
            options,
            runtime,
        )
    }

    /// Starts the connection's tasks, serving `registry` (none: an
    /// initiator that serves nothing).
    fn start(
        stream: Box<dyn Transport>,
        peer: Option<SocketAddr>,
        role: Role,
        registry: Option<Registry>,
        mut options: Options,
        runtime: Arc<dyn Runtime>,
    ) -> Connection {
        let session = beep_proto::dispatch::driver_session(
            role,
            registry.as_ref().map(|r| &r.profiles),
            &mut options.config,
            options.shared_reassembly.as_ref(),
        );
        let registry = registry.unwrap_or_default();
        let shared = Arc::new(Shared::new(session, peer, registry, options, runtime));
        io::spawn(&shared, stream);
        Connection::internal(shared)
    }

    async fn wait_greeting(&self) -> Result<(), Error> {
        let shared = &self.shared;
        let settled = shared.wait_until(|st| !matches!(st.greeting_state(), Ok(false)));
        let _ = runtime::timeout(&*shared.runtime, shared.options.connect_timeout, settled).await;
        let state = shared.lock().greeting_state();
        if let Ok(false) = state {
            self.shutdown();
            return Err(Error::Timeout);
        }
        state.map(drop)
    }

    /// A number that tells this connection apart from every other one of
    /// this process (PyVortex's `conn.id`): given when the connection is
    /// made, never reused, and the same for every handle of it, its
    /// clones and the handles handlers get
    /// ([`Channel::connection`](crate::Channel::connection), the
    /// `Connection` of
    /// [`ProfileHandler::on_start_with_connection`](crate::ProfileHandler::on_start_with_connection),
    /// [`Registry::set_tls_with_connection`](crate::Registry::set_tls_with_connection)
    /// and [`Registry::set_sasl_with_connection`](crate::Registry::set_sasl_with_connection)).
    /// Handles compare equal and hash by it, so a listener's handlers can
    /// keep per-connection state in a map keyed by the connection (or its
    /// id), which a peer address cannot do (two peers behind one address,
    /// or none at all over an in-memory stream).
    ///
    /// ```
    /// use beep_tokio::{Connection, Options, Registry};
    /// use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), beep_tokio::Error> {
    /// let (a, b) = tokio::io::duplex(4096);
    /// let listener_side = Connection::accept_transport(b.compat(), Registry::new(), Options::default())?;
    /// let conn = Connection::connect_transport(a.compat(), Options::default()).await?;
    /// assert_eq!(conn.id(), conn.clone().id());
    /// assert_eq!(conn, conn.clone());
    /// assert_ne!(conn.id(), listener_side.id()); // two connections, one per side
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The peer's address, for TCP connections.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// println!("connected to {:?}", conn.peer_addr());
    /// # }
    /// ```
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.peer
    }

    /// The peer's greeting (profiles, features, localize); empty until it
    /// arrived, which `connect` waits for.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// for uri in conn.peer_greeting().profiles {
    ///     println!("offered: {uri}");
    /// }
    /// # }
    /// ```
    pub fn peer_greeting(&self) -> Greeting {
        self.shared.lock().peer_greeting()
    }

    /// The `serverName` bound to the session by the first accepted start.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// assert_eq!(conn.server_name(), None);
    /// # }
    /// ```
    pub fn server_name(&self) -> Option<String> {
        self.shared.lock().server_name()
    }

    /// Octets handed to the connection and not yet given to the stream.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// assert!(conn.queued_output() <= conn_limit());
    /// # }
    /// # fn conn_limit() -> usize { 4 << 20 }
    /// ```
    pub fn queued_output(&self) -> usize {
        self.shared.lock().core.session().queued_output()
    }

    /// True while the connection is usable (PyVortex `is_ok`).
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// conn.shutdown();
    /// assert!(!conn.is_ok());
    /// # }
    /// ```
    pub fn is_ok(&self) -> bool {
        self.shared.lock().core.ended().is_none()
    }

    /// Why the connection ended, once it has.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// conn.shutdown();
    /// assert_eq!(conn.close_reason(), Some(beep_tokio::CloseReason::Shutdown));
    /// # }
    /// ```
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.lock().core.ended().cloned()
    }

    /// Runs `f` once when the connection ends, whatever the cause (at once
    /// if it already has). It runs on the connection's dispatcher task,
    /// after the handlers queued before the end.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// conn.on_close(|reason| eprintln!("connection ended: {reason}"));
    /// # }
    /// ```
    pub fn on_close(&self, f: impl FnOnce(&CloseReason) + Send + 'static) {
        self.shared.on_close(Box::new(f));
    }

    /// Waits until the connection ends and tells why. Wrap it in your
    /// runtime's timeout to bound the wait.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// let reason = conn.wait_closed().await;
    /// println!("closed: {reason}");
    /// # }
    /// ```
    pub async fn wait_closed(&self) -> CloseReason {
        self.shared.wait_until(|st| st.core.ended().is_some()).await;
        self.close_reason().unwrap_or(CloseReason::Shutdown)
    }

    /// Opens a channel running `profile` and waits (at most the connect
    /// timeout) for the peer's answer. `server_name` goes in the start
    /// request; the profile's content is piggybacked. A refusal is
    /// [`Error::Refused`] with the peer's code.
    ///
    /// ```no_run
    /// use beep_proto::xml::Profile;
    /// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// let channel = conn.open_channel(Profile::new("http://example.org/beep/echo"), None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open_channel(
        &self,
        profile: Profile,
        server_name: Option<String>,
    ) -> Result<Channel, Error> {
        self.open_and_wait(None, vec![profile], server_name).await
    }

    /// Opens channel `number` running `profiles` (one of them, see
    /// [`Connection::open_channel_any`]) and waits for the peer's answer.
    /// The number must be of our parity (odd for the initiator, even for
    /// the listener: RFC 3080 2.3.1.2) and not in use; anything else is
    /// refused at once with [`Error::Usage`]
    /// ([`UsageError::ChannelNumberUnavailable`](beep_proto::UsageError::ChannelNumberUnavailable)),
    /// and nothing is sent.
    ///
    /// ```no_run
    /// use beep_proto::xml::Profile;
    /// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// let channel = conn.open_channel_number(7, vec![Profile::new("http://example.org/beep/echo")], None).await?;
    /// assert_eq!(channel.number(), 7);
    /// # Ok(()) }
    /// ```
    pub async fn open_channel_number(
        &self,
        number: u32,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<Channel, Error> {
        self.open_and_wait(Some(number), profiles, server_name)
            .await
    }

    /// Opens a channel offering several profiles in one `<start>`, in
    /// order of preference (RFC 3080 2.3.1.2), and waits for the peer's
    /// answer: the channel runs the one the peer chose
    /// ([`Channel::profile`]). Each profile's content is piggybacked.
    ///
    /// ```no_run
    /// use beep_proto::xml::Profile;
    /// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// let offer = vec![Profile::new("http://example.org/beep/echo2"), Profile::new("http://example.org/beep/echo")];
    /// let channel = conn.open_channel_any(offer, None).await?;
    /// println!("the peer chose {:?}", channel.profile());
    /// # Ok(()) }
    /// ```
    pub async fn open_channel_any(
        &self,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<Channel, Error> {
        self.open_and_wait(None, profiles, server_name).await
    }

    async fn open_and_wait(
        &self,
        number: Option<u32>,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<Channel, Error> {
        let (tx, rx) = oneshot::channel();
        self.open_channel_notify(number, profiles, server_name, Notify::Wait(tx))?;
        let done = self
            .shared
            .wait(rx, self.shared.options.channel_timeout)
            .await?;
        self.opened(done)
    }

    /// Opens a channel without waiting: `done` runs (on the dispatcher)
    /// with the channel or the peer's refusal (PyVortex `open_channel` with
    /// `on_channel`). Returns the proposed channel number.
    ///
    /// ```no_run
    /// use beep_proto::xml::Profile;
    /// # fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// conn.open_channel_with(Profile::new("http://example.org/beep/echo"), None, |result| {
    ///     match result {
    ///         Ok(channel) => println!("opened {}", channel.number()),
    ///         Err(e) => eprintln!("refused: {e}"),
    ///     }
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn open_channel_with(
        &self,
        profile: Profile,
        server_name: Option<String>,
        done: impl FnOnce(Result<Channel, Error>) + Send + 'static,
    ) -> Result<u32, Error> {
        let conn = self.clone();
        let notify = Notify::Call(Box::new(move |result| {
            done(result.and_then(|d| conn.opened(d)))
        }));
        self.open_channel_notify(None, vec![profile], server_name, notify)
    }

    fn opened(&self, done: Done) -> Result<Channel, Error> {
        match done {
            Done::Opened { channel, .. } => Ok(Channel::new(self.clone(), channel)),
            other => Err(Error::Closed(CloseReason::Lost(format!(
                "unexpected {other:?}"
            )))),
        }
    }

    fn open_channel_notify(
        &self,
        number: Option<u32>,
        profiles: Vec<Profile>,
        server_name: Option<String>,
        notify: Notify,
    ) -> Result<u32, Error> {
        self.shared.with_session(|st| {
            Ok(st
                .core
                .start_channel(number, profiles, server_name, notify)?)
        })
    }

    /// Asks the peer to begin TLS (RFC 3080 3.1, PyVortex
    /// `vortex.tls.enable_tls`) and waits until it protects the session:
    /// `<ready/>` goes out on a new TLS channel, and once the peer answers
    /// `<proceed/>` every channel is gone (the tuning reset, RFC 3080 3),
    /// the handshake runs inside the session, and both peers greet again
    /// over TLS. Returns once the handshake is over and the peer's new
    /// greeting has arrived, so [`Connection::peer_greeting`] then lists
    /// what it offers over TLS; bounded by
    /// [`Options::channel_timeout`](crate::Options::channel_timeout).
    ///
    /// # Errors
    ///
    /// * [`Error::Usage`] at once, nothing sent: the peer does not offer
    ///   TLS, TLS is active already, or channels are open
    ///   ([`UsageError::TuningNotPossible`](beep_proto::UsageError::TuningNotPossible):
    ///   TLS is an initial tuning), or a negotiation is under way.
    /// * [`Error::Refused`]: the peer said no; the session goes on in
    ///   plain.
    /// * [`Error::Closed`] with [`CloseReason::Tls`]: the handshake failed
    ///   (the certificate was refused, say); the connection has ended.
    /// * [`Error::Timeout`]: no answer in time. The connection is shut
    ///   down: after `<ready/>` nothing may be sent until the answer
    ///   (RFC 3080 3.1.3.1), so a session left waiting is of no use.
    ///
    /// ```no_run
    /// use beep_tokio::{Connection, Options, TlsClient};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = Connection::connect("beep.example.org:10288", Options::default()).await?;
    /// let client = TlsClient::with_ca_pem(&std::fs::read("ca.pem")?, "beep.example.org")?;
    /// let info = conn.start_tls(client).await?;
    /// println!("TLS {:?}, {} certificates", info.protocol_version, info.peer_certificates.len());
    /// assert!(conn.is_tls_active());
    /// # Ok(()) }
    /// ```
    pub async fn start_tls(&self, client: TlsClient) -> Result<TlsInfo, Error> {
        let (tx, rx) = oneshot::channel();
        self.start_tls_notify(client, Notify::Wait(tx))?;
        let waited = self
            .shared
            .wait(rx, self.shared.options.channel_timeout)
            .await;
        beep_proto::dispatch::tls_waited(waited, || self.shutdown())
    }

    /// Like [`Connection::start_tls`], without waiting (PyVortex
    /// `enable_tls` with `tls_notify`): `done` runs on the dispatcher
    /// with the outcome once the handshake is over and the peer's new
    /// greeting has arrived (or with the refusal, or the failure; no
    /// timeout applies). Errors found at once (see `start_tls`) are
    /// returned here, and `done` is not called. The connection is kept
    /// alive until `done` has run.
    ///
    /// ```no_run
    /// use beep_tokio::TlsClient;
    /// # fn run(conn: beep_tokio::Connection) -> Result<(), Box<dyn std::error::Error>> {
    /// let client = TlsClient::with_ca_pem(&std::fs::read("ca.pem")?, "beep.example.org")?;
    /// conn.start_tls_with(client, |result| match result {
    ///     Ok(info) => println!("TLS is on: {:?}", info.cipher_suite),
    ///     Err(e) => eprintln!("no TLS: {e}"),
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn start_tls_with(
        &self,
        client: TlsClient,
        done: impl FnOnce(Result<TlsInfo, Error>) + Send + 'static,
    ) -> Result<(), Error> {
        self.shared
            .with_session(|st| Ok(st.start_tls_calling(client, done).map(drop)?))
    }

    fn start_tls_notify(&self, client: TlsClient, notify: Notify) -> Result<(), Error> {
        self.shared
            .with_session(|st| Ok(st.core.start_tls(client, notify).map(drop)?))
    }

    /// True once TLS protects the session (RFC 3080 3.1): from the
    /// tuning reset on, also while the handshake is still running.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection, client: beep_tokio::TlsClient) -> Result<(), beep_tokio::Error> {
    /// assert!(!conn.is_tls_active());
    /// conn.start_tls(client).await?;
    /// assert!(conn.is_tls_active());
    /// # Ok(()) }
    /// ```
    pub fn is_tls_active(&self) -> bool {
        self.shared.lock().core.session().is_tls_active()
    }

    /// What the TLS handshake settled, once it is over: the peer's
    /// certificate chain (leaf first; empty on a listener whose peer sent
    /// none), the TLS version and cipher suite, and, on the listener, the
    /// server name the initiator asked for by SNI.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection, client: beep_tokio::TlsClient) -> Result<(), beep_tokio::Error> {
    /// assert_eq!(conn.tls_info(), None);
    /// let info = conn.start_tls(client).await?;
    /// assert_eq!(conn.tls_info(), Some(info));
    /// # Ok(()) }
    /// ```
    pub fn tls_info(&self) -> Option<TlsInfo> {
        self.shared.lock().core.session().tls_info().cloned()
    }

    /// Authenticates to the peer with SASL (RFC 3080 4.1, PyVortex
    /// `vortex.sasl.start_auth`) and waits for the outcome: a channel on
    /// the mechanism's profile carries the exchange (the initial response
    /// piggybacked on the `<start>`), and the session runs the mechanism
    /// with `client`'s credentials. Returns who we are to the peer once it
    /// said `<blob status='complete'/>`; from then on
    /// [`Connection::auth_info`] gives the same. No security layer is
    /// negotiated, so the session goes on as it was (open channels stay
    /// open). Bounded by
    /// [`Options::channel_timeout`](crate::Options::channel_timeout).
    ///
    /// # Errors
    ///
    /// * [`Error::Usage`] at once, nothing sent: the peer does not offer
    ///   the mechanism, the session has authenticated already (RFC 3080 4:
    ///   once per session) or an exchange is under way, a TLS negotiation
    ///   is under way, or the mechanism refuses the credentials (an empty
    ///   PLAIN user).
    /// * [`Error::Refused`] with 535: the peer denied the credentials
    ///   (whether the user or the password was wrong, it does not say).
    ///   The session goes on unauthenticated, and may try again.
    /// * [`Error::Timeout`]: no outcome in time; the exchange is aborted
    ///   (`status='abort'`, RFC 3080 4.1) and the connection stays up (a
    ///   listener's success crossing the abort still counts: see
    ///   [`Connection::is_authenticated`]).
    ///
    /// ```no_run
    /// use beep_tokio::{Connection, Options, SaslClient};
    /// # async fn run() -> Result<(), beep_tokio::Error> {
    /// let conn = Connection::connect("beep.example.org:10288", Options::default()).await?;
    /// let info = conn.start_sasl(SaslClient::scram_sha256("bob", "secret")).await?;
    /// assert_eq!(info.authcid, "bob");
    /// assert!(conn.is_authenticated());
    /// # Ok(()) }
    /// ```
    pub async fn start_sasl(&self, client: SaslClient) -> Result<AuthInfo, Error> {
        let (tx, rx) = oneshot::channel();
        let channel = self.start_sasl_notify(client, Notify::Wait(tx))?;
        match self
            .shared
            .wait(rx, self.shared.options.channel_timeout)
            .await
        {
            Ok(done) => done.into_auth_info(),
            Err(Error::Timeout) => {
                // Nobody waits any more: the exchange is given up
                // (`status='abort'`), not left pending, so a later attempt
                // is not refused as one in progress.
                let _ = self.shared.with_session(|st| {
                    st.core.abort_sasl(channel);
                    Ok(())
                });
                Err(Error::Timeout)
            }
            Err(e) => Err(e),
        }
    }

    /// Like [`Connection::start_sasl`], without waiting (PyVortex
    /// `start_auth` with `auth_notify`): `done` runs on the dispatcher
    /// with the outcome (our identity, or the refusal or failure; no
    /// timeout applies). Errors found at once (see `start_sasl`) are
    /// returned here, and `done` is not called. The connection is kept
    /// alive until `done` has run.
    ///
    /// ```no_run
    /// use beep_tokio::SaslClient;
    /// # fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// conn.start_sasl_with(SaslClient::plain("bob", "secret"), |result| match result {
    ///     Ok(info) => println!("authenticated as {}", info.authcid),
    ///     Err(e) => eprintln!("not authenticated: {e}"),
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn start_sasl_with(
        &self,
        client: SaslClient,
        done: impl FnOnce(Result<AuthInfo, Error>) + Send + 'static,
    ) -> Result<(), Error> {
        self.shared
            .with_session(|st| Ok(st.start_sasl_calling(client, done).map(drop)?))
    }

    fn start_sasl_notify(&self, client: SaslClient, notify: Notify) -> Result<u32, Error> {
        self.shared
            .with_session(|st| Ok(st.core.start_sasl(client, notify)?))
    }

    /// True once a SASL exchange on this session has succeeded, either
    /// way: we authenticated to the peer ([`Connection::start_sasl`]), or
    /// the peer to us ([`Registry::set_sasl`](crate::Registry::set_sasl)).
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// assert!(!conn.is_authenticated());
    /// conn.start_sasl(beep_tokio::SaslClient::anonymous("bob@example.org")).await?;
    /// assert!(conn.is_authenticated());
    /// # Ok(()) }
    /// ```
    pub fn is_authenticated(&self) -> bool {
        self.shared.lock().core.session().authenticated().is_some()
    }

    /// Who authenticated on this session, once someone has (RFC 3080 4: it
    /// holds for every channel, present and future): on a listener, the
    /// peer's identity as its auth handler accepted it (read it from a
    /// message handler with `channel.connection().auth_info()`); on an
    /// initiator, our own identity to the peer.
    ///
    /// ```no_run
    /// use beep_tokio::ProfileHandler;
    /// let private = ProfileHandler::new(|channel, m| async move {
    ///     let who = channel.connection().auth_info().map(|info| info.authcid);
    ///     let answer = format!("hello {}", who.unwrap_or_default());
    ///     let _ = channel.reply_rpy(m.msgno, beep_proto::Message::new(answer)).await;
    /// });
    /// # let _ = private;
    /// ```
    pub fn auth_info(&self) -> Option<AuthInfo> {
        self.shared.lock().core.session().authenticated().cloned()
    }

    /// Releases the session (RFC 3080 2.4): waits for the peer's `<ok/>`,
    /// which comes once every channel is quiet. A refusal leaves it open;
    /// releasing a released connection succeeds.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) -> Result<(), beep_tokio::Error> {
    /// conn.close().await?;
    /// assert!(!conn.is_ok());
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let released = match self
            .shared
            .with_session(|st| Ok(st.core.close(0, Notify::Wait(tx))?))
        {
            Ok(()) => {
                self.shared
                    .wait(rx, self.shared.options.release_timeout)
                    .await
            }
            Err(e) => Err(e),
        };
        match released {
            Ok(_) | Err(Error::Closed(CloseReason::Released)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Wakes the writer for output that the handlers of a burst of
    /// messages hold back (they are batched into few writes until the
    /// dispatcher, or a handler, awaits). Call it from a handler or
    /// callback before blocking its thread (`block_in_place`, `block_on`)
    /// on something that needs the peer to have read that output.
    ///
    /// ```no_run
    /// # async fn run(channel: beep_tokio::Channel, m: beep_proto::IncomingMessage) {
    /// let _ = channel.reply_rpy(m.msgno, m.message).await;
    /// channel.connection().flush();
    /// # }
    /// ```
    pub fn flush(&self) {
        crate::shared::cork::release(&self.shared);
    }

    /// Ends the connection at once, without a release handshake: every
    /// waiting call fails, close callbacks run, the stream is dropped.
    ///
    /// ```no_run
    /// # async fn run(conn: beep_tokio::Connection) {
    /// conn.shutdown();
    /// assert_eq!(conn.wait_closed().await, beep_tokio::CloseReason::Shutdown);
    /// # }
    /// ```
    pub fn shutdown(&self) {
        self.shared.finish(CloseReason::Shutdown);
        // Also when it had ended already: a released session may still be
        // flushing to a peer that stopped reading.
        self.shared.abort();
    }
}
