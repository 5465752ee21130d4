//! A BEEP session on a TCP connection (or any [`Transport`]), driven by
//! two workers that share reading the socket and running application
//! handlers (see [`crate::roles`]), a writer thread (session to socket),
//! and application threads that write their own output and read their own
//! replies when nobody else reads. The session's lock is never held across
//! socket I/O or application code.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use beep_proto::dispatch::{self, Done, Driver, Layer, Room};
use beep_proto::sasl::{AuthInfo, SaslClient};
use beep_proto::tls::{TlsClient, TlsInfo};
use beep_proto::xml::{Greeting, Profile};
use beep_proto::{Config, Role};

use crate::channel::Channel;
use crate::deadline;
use crate::error::{CloseReason, Error};
use crate::io;
use crate::profile::{CloseHandler, FrameHandler, MessageHandler, Registry};
use crate::reply;
use crate::roles::{self, Wait, Workers};
use crate::transport::Transport;

/// How a connection behaves.
///
/// ```
/// use std::time::Duration;
/// let options = beep_blocking::Options {
///     connect_timeout: Duration::from_secs(2),
///     ..Default::default()
/// };
/// assert_eq!(options.max_queued_output, 4 << 20);
/// assert_eq!(options.greeting_timeout, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// The session configuration (windows, limits, greeting extras). A
    /// listener's greeting profiles, those it serves only over TLS and
    /// whether it requires TLS come from its registry.
    pub config: Config,
    /// Longest wait for the TCP connection and, as the initiator, for the
    /// peer's greeting.
    pub connect_timeout: Duration,
    /// Longest wait for the peer's answer to a channel start or close,
    /// and for TLS ([`Connection::start_tls`]: the handshake and the new
    /// greeting) (then [`Error::Timeout`](crate::Error::Timeout)).
    /// Default 10 s.
    ///
    /// ```
    /// let patient = beep_blocking::Options {
    ///     channel_timeout: std::time::Duration::from_secs(60),
    ///     ..Default::default()
    /// };
    /// # drop(patient);
    /// ```
    pub channel_timeout: Duration,
    /// How long a session release may take: the wait for the peer's
    /// answer to our `<close>` of channel 0, and after a release the wait
    /// for the peer to close its side (our last bytes flushed, its
    /// remaining input read) before the connection is dropped. Also bounds
    /// the wait for our answer when the peer asks for a release and closes
    /// its sending side at once. Also bounds the flush of the TLS alert
    /// sent when a handshake fails (RFC 3080 3.1). Default 10 s.
    pub release_timeout: Duration,
    /// As the listener ([`Listener`](crate::Listener),
    /// [`Connection::accept_transport`]): how long a connected peer may
    /// take to send its greeting. A peer that has not greeted by then is
    /// disconnected with [`CloseReason::Lost`] ("no greeting within 30
    /// s"), so that sockets which connect and stay silent do not pile up,
    /// each holding a connection's three threads. The default, 30 s, is
    /// far more than any honest peer needs (its greeting is its first
    /// bytes, sent as soon as it is connected: one round trip over the
    /// slowest link) and short enough that idle sockets are soon gone.
    /// `Duration::MAX` waits for ever. (The initiator's wait for the
    /// listener's greeting is bounded by `connect_timeout`.)
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = beep_blocking::Options {
    ///     greeting_timeout: Duration::from_secs(5),
    ///     ..Default::default()
    /// };
    /// # drop(options);
    /// ```
    pub greeting_timeout: Duration,
    /// How long a connection may stay idle before it is ended with
    /// [`CloseReason::Lost`] ("idle for 600 s"): nothing received and
    /// nothing sent, and nothing under way (no request of either side
    /// awaiting its reply, however long a handler takes: see
    /// `beep_proto::Session::is_quiet`). Default `Duration::MAX`: never,
    /// as in LibVortex, whose applications keep idle connections in pools;
    /// a listener facing the open network sets it (and bounds the number
    /// of connections: see [`Listener`](crate::Listener)).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = beep_blocking::Options {
    ///     idle_timeout: Duration::from_secs(600),
    ///     ..Default::default()
    /// };
    /// # drop(options);
    /// ```
    pub idle_timeout: Duration,
    /// A budget for unfinished messages shared by connections (see
    /// [`beep_proto::Session::share_reassembly_budget`]), beside each
    /// session's own `config.max_reassembly`. A listener gives its
    /// connections one of [`DEFAULT_LISTENER_REASSEMBLY`] (256 MiB) when
    /// this is `None`, so that many connections, each within its own
    /// limit, cannot add up to more; clients may share one too.
    ///
    /// ```
    /// let options = beep_blocking::Options {
    ///     shared_reassembly: Some(beep_proto::SharedBudget::new(64 << 20)),
    ///     ..Default::default()
    /// };
    /// # drop(options);
    /// ```
    pub shared_reassembly: Option<beep_proto::SharedBudget>,
    /// Octets of unsent output above which sending calls wait (from the
    /// application's threads), so a peer that stops reading cannot make us
    /// buffer without bound.
    pub max_queued_output: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: Config::default(),
            connect_timeout: Duration::from_secs(10),
            channel_timeout: Duration::from_secs(10),
            release_timeout: Duration::from_secs(10),
            greeting_timeout: Duration::from_secs(30),
            idle_timeout: Duration::MAX,
            shared_reassembly: None,
            max_queued_output: 4 << 20,
        }
    }
}

/// What a listener's connections may hold in unfinished messages all
/// together, unless [`Options::shared_reassembly`] says otherwise: four
/// times one session's `max_reassembly`, so a few peers sending large
/// messages at once are served, while 10,000 connections cannot hold
/// 64 MiB each.
pub const DEFAULT_LISTENER_REASSEMBLY: usize = 256 << 20;

/// Where a waiting caller gets its result: a blocked thread
/// ([`Waiter::pair`]) or a callback.
pub(crate) type Notify = dispatch::Notify<Wake>;

/// How a blocked thread is woken: its result slot, which carries its
/// ticket in the workers' bookkeeping.
pub(crate) type Wake = reply::Sender;

/// A thread's end of [`Notify::Wait`], for [`wait`].
pub(crate) struct Waiter(reply::Receiver);

impl Waiter {
    /// A result that [`wait`] waits for.
    pub(crate) fn pair() -> (Notify, Waiter) {
        let (tx, rx) = reply::pair();
        (Notify::Wait(tx), Waiter(rx))
    }
}

/// Work for whichever worker dispatches (one action at a time, in order).
pub(crate) use beep_proto::dispatch::Action;

/// Handlers of one open channel.
pub(crate) type ChannelHandlers =
    dispatch::ChannelHandlers<MessageHandler, FrameHandler, CloseHandler>;

/// The session, its waiters and the channels' handlers (the shared
/// driver layer), behind [`Shared::state`].
pub(crate) type State = Layer<Wake, ChannelHandlers>;

pub(crate) struct Shared {
    /// This, for threads started where only `&self` is at hand.
    me: Weak<Shared>,
    /// What [`Connection::id`] tells.
    id: u64,
    pub(crate) state: Mutex<State>,
    /// Signalled whenever the session changed: results, room, closure.
    pub(crate) changed: Condvar,
    /// Threads waiting on `changed`: notifying nobody costs a syscall.
    pub(crate) waiters: AtomicUsize,
    /// Senders waiting for room in the outbound queue.
    pub(crate) room: Condvar,
    pub(crate) room_waiters: AtomicUsize,
    /// Wakes the writer thread.
    pub(crate) output: Condvar,
    /// The writer thread sleeps on `output`.
    pub(crate) writer_idle: AtomicBool,
    /// Set by every [`Shared::flush_direct`] before it tries the socket:
    /// a thread that finds it held leaves its output to the holder, who
    /// looks again when it sees this set after letting go.
    flush_wanted: AtomicBool,
    /// The writer thread has stopped (set under the state lock, then
    /// `changed` is notified).
    pub(crate) writer_done: AtomicBool,
    /// The right to write to the socket. Whoever holds it polls and
    /// writes, so bytes reach the socket in the order the session produced
    /// them. (A lock, not a second descriptor: one connection costs one.)
    /// It holds the chunk list a write is made of, kept between writes.
    pub(crate) writer: Mutex<Vec<bytes::Bytes>>,
    /// The workers' roles and the actions they run.
    pub(crate) workers: Workers,
    /// The reading thread's buffers.
    pub(crate) read_buf: Mutex<io::ReadBuffers>,
    /// The socket's read timeout in nanoseconds, 0 for none (see
    /// [`io::read_guarded`]).
    pub(crate) read_timeout: AtomicU64,
    /// The socket, read by the reading thread, written by the holder of
    /// `writer`, shut down from anywhere.
    pub(crate) stream: Box<dyn Transport>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) registry: Registry,
    pub(crate) options: Options,
    /// When the connection started, and when it last moved a byte (see
    /// [`Options::idle_timeout`]).
    pub(crate) activity: dispatch::Activity,
}

/// A BEEP session over TCP, or over any stream (PyVortex `Connection`).
/// Cheap to clone; every clone is the same connection, with the same
/// [`id`](Connection::id) (handles compare equal, and hash, by it).
///
/// ```no_run
/// use beep_blocking::{Connection, Options};
/// let conn = Connection::connect("localhost:10288", Options::default())?;
/// println!("the listener offers {:?}", conn.peer_greeting().profiles);
/// conn.close()?;
/// # Ok::<(), beep_blocking::Error>(())
/// ```
///
/// A connection made by [`Connection::connect`],
/// [`Connection::connect_transport`] or [`Connection::accept_transport`]
/// lives while the application holds a handle to it (this, a clone, a
/// [`Channel`] or a pool opened on it): when the last one is dropped, the
/// session is released in the background (and shut down if the peer
/// refuses or does not answer within the release timeout). Handles that
/// handlers receive do not keep it alive. A closure the connection keeps
/// that captures a handle keeps it alive as long as the closure lives: a
/// message handler for ever (use the `&Channel` it is given instead), an
/// `on_close`, `open_channel_with`, `start_tls_with`, `start_sasl_with`
/// or `request_with` callback until it ran.
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
        // A release waits for the peer; never in the dropping thread.
        let releaser = conn.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("beep-release {}", conn.shared.label()))
            .spawn(move || {
                if releaser.close().is_err() {
                    releaser.shutdown();
                }
            });
        if spawned.is_err() {
            conn.shutdown();
        }
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
/// `beep_blocking::Connection` in its `ignore-interior-mutability`.)
impl std::hash::Hash for Connection {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.shared.id.hash(state);
    }
}

impl Connection {
    /// A handle for the driver's own threads: it does not keep the
    /// connection alive.
    pub(crate) fn internal(shared: Arc<Shared>) -> Self {
        Connection {
            shared,
            _owner: None,
        }
    }

    /// Connects to a BEEP listener (IPv4 or IPv6; each resolved address is
    /// tried in turn within the connect timeout) and waits for its greeting.
    ///
    /// ```no_run
    /// let conn = beep_blocking::Connection::connect("[::1]:10288", Default::default())?;
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn connect(addr: impl ToSocketAddrs, options: Options) -> Result<Connection, Error> {
        Self::connect_serving(addr, None, options)
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
    /// use beep_blocking::{Connection, Options, ProfileHandler, Registry};
    /// use beep_proto::Message;
    ///
    /// // The listener pushes notifications to us on channels it starts.
    /// let mut registry = Registry::new();
    /// registry.register("http://example.org/beep/notify", ProfileHandler::new(|channel, m| {
    ///     println!("notified: {:?}", m.message.body());
    ///     let _ = channel.reply_rpy(m.msgno, Message::new("seen"));
    /// }));
    /// let conn = Connection::connect_with_registry("127.0.0.1:10288", registry, Options::default())?;
    /// assert!(conn.is_ok());
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn connect_with_registry(
        addr: impl ToSocketAddrs,
        registry: Registry,
        options: Options,
    ) -> Result<Connection, Error> {
        Self::connect_serving(addr, Some(registry), options)
    }

    /// Connects, serving `registry` if given.
    fn connect_serving(
        addr: impl ToSocketAddrs,
        registry: Option<Registry>,
        options: Options,
    ) -> Result<Connection, Error> {
        options.config.validate()?;
        let mut last = None;
        for addr in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, options.connect_timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    let stream = Box::new(stream);
                    let conn = Self::start(stream, Role::Initiator, registry, options)?;
                    conn.wait_greeting()?;
                    return Ok(conn);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| std::io::Error::other("the address resolved to nothing"))
            .into())
    }

    /// Runs the initiator's side of a session over a stream of the
    /// caller's (a Unix socket, a TCP stream set up its own way, a child
    /// process's pipes in a [`Split`](crate::transport::Split)) and waits
    /// for the peer's greeting. The connection is released when the last
    /// handle to it is dropped, as with [`Connection::connect`].
    ///
    /// A [`TcpStream`] is used as it is: turn Nagle's algorithm off
    /// (`set_nodelay(true)`), as `connect` does, or small messages wait
    /// for the peer's delayed acknowledgement.
    ///
    /// ```no_run
    /// use std::os::unix::net::UnixStream;
    /// use beep_blocking::{Connection, Options};
    ///
    /// let stream = UnixStream::connect("/run/beep.sock")?;
    /// let conn = Connection::connect_transport(stream, Options::default())?;
    /// assert_eq!(conn.peer_addr(), None);
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn connect_transport(
        stream: impl Transport,
        options: Options,
    ) -> Result<Connection, Error> {
        options.config.validate()?;
        let conn = Self::start(Box::new(stream), Role::Initiator, None, options)?;
        conn.wait_greeting()?;
        Ok(conn)
    }

    /// Like [`Connection::connect_transport`], serving the profiles of
    /// `registry` to the peer, as [`Connection::connect_with_registry`]
    /// does.
    ///
    /// ```no_run
    /// use std::os::unix::net::UnixStream;
    /// use beep_blocking::{Connection, Options, ProfileHandler, Registry};
    ///
    /// let mut registry = Registry::new();
    /// registry.register("http://example.org/beep/echo", ProfileHandler::new(|channel, m| {
    ///     let _ = channel.reply_rpy(m.msgno, m.message);
    /// }));
    /// let stream = UnixStream::connect("/run/beep.sock")?;
    /// let conn = Connection::connect_transport_with_registry(stream, registry, Options::default())?;
    /// # drop(conn);
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn connect_transport_with_registry(
        stream: impl Transport,
        registry: Registry,
        options: Options,
    ) -> Result<Connection, Error> {
        options.config.validate()?;
        let conn = Self::start(Box::new(stream), Role::Initiator, Some(registry), options)?;
        conn.wait_greeting()?;
        Ok(conn)
    }

    /// Runs the listener's side of a session over a stream of the
    /// caller's, serving the profiles of `registry`; returns at once (the
    /// greeting is sent in the background). The connection is released
    /// when the last handle to it is dropped: keep one while it serves,
    /// e.g. to [`Connection::wait_closed`].
    ///
    /// ```no_run
    /// use std::os::unix::net::UnixListener;
    /// use std::time::Duration;
    /// use beep_blocking::{Connection, Options, ProfileHandler, Registry};
    ///
    /// let mut registry = Registry::new();
    /// registry.register("http://example.org/beep/echo", ProfileHandler::new(|channel, m| {
    ///     let _ = channel.reply_rpy(m.msgno, m.message);
    /// }));
    /// let socket = UnixListener::bind("/run/beep.sock")?;
    /// for stream in socket.incoming() {
    ///     let conn = Connection::accept_transport(stream?, registry.clone(), Options::default())?;
    ///     std::thread::spawn(move || conn.wait_closed(Duration::MAX));
    /// }
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn accept_transport(
        stream: impl Transport,
        registry: Registry,
        options: Options,
    ) -> Result<Connection, Error> {
        options.config.validate()?;
        let conn = Self::start(Box::new(stream), Role::Listener, Some(registry), options)?;
        Ok(conn.owned())
    }

    /// Serves an accepted TCP connection as the listener (which owns it).
    pub(crate) fn accept(
        stream: TcpStream,
        registry: Registry,
        options: Options,
    ) -> Result<Connection, Error> {
        stream.set_nodelay(true)?;
        Self::start(Box::new(stream), Role::Listener, Some(registry), options)
    }

    /// This handle, keeping the connection alive (see [`Connection`]).
    fn owned(self) -> Self {
        let owner = Some(Arc::new(Owner(self.shared.clone())));
        Connection {
            shared: self.shared,
            _owner: owner,
        }
    }

    /// Starts the connection's threads, serving `registry` (none: an
    /// initiator that serves nothing); an initiator's handle keeps it
    /// alive, a listener's does not.
    fn start(
        stream: Box<dyn Transport>,
        role: Role,
        registry: Option<Registry>,
        mut options: Options,
    ) -> Result<Connection, Error> {
        let peer = stream.peer_addr();
        // A stream without read timeouts is read by the workers alone.
        let app_reads = stream.set_read_timeout(None).is_ok();
        let session = dispatch::driver_session(
            role,
            registry.as_ref().map(|r| &r.profiles),
            &mut options.config,
            options.shared_reassembly.as_ref(),
        );
        let registry = registry.unwrap_or_default();
        let activity = dispatch::Activity::new(std::time::Instant::now(), options.idle_timeout);
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            id: dispatch::next_connection_id(),
            state: Mutex::new(named(State::new(session), peer)),
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
            room: Condvar::new(),
            room_waiters: AtomicUsize::new(0),
            output: Condvar::new(),
            writer_idle: AtomicBool::new(false),
            flush_wanted: AtomicBool::new(false),
            writer_done: AtomicBool::new(false),
            writer: Mutex::new(Vec::new()),
            workers: Workers::new(app_reads),
            read_buf: Mutex::new(io::ReadBuffers::default()),
            read_timeout: AtomicU64::new(0),
            stream,
            peer,
            registry,
            options,
            activity,
        });
        if let Err(e) = io::spawn(&shared) {
            // The threads that did start end with the connection.
            shared.finish(CloseReason::Lost(format!(
                "no thread for the connection: {e}"
            )));
            return Err(e.into());
        }
        let conn = Connection::internal(shared);
        // The listener owns the connections it accepts.
        Ok(match role {
            Role::Initiator => conn.owned(),
            Role::Listener => conn,
        })
    }

    fn wait_greeting(&self) -> Result<(), Error> {
        let timeout = self.shared.options.connect_timeout;
        let st = self
            .shared
            .wait_changed(Some(timeout), |st| matches!(st.greeting_state(), Ok(false)));
        let state = st.greeting_state();
        drop(st);
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
    /// ([`Channel::connection`], the `Connection` of
    /// [`ProfileHandler::on_start_with_connection`](crate::ProfileHandler::on_start_with_connection),
    /// [`Registry::set_tls_with_connection`](crate::Registry::set_tls_with_connection)
    /// and [`Registry::set_sasl_with_connection`](crate::Registry::set_sasl_with_connection)).
    /// Handles compare equal and hash by it, so a listener's handlers can
    /// keep per-connection state in a map keyed by the connection (or its
    /// id), which a peer address cannot do (two peers behind one address,
    /// or none at all over a Unix socket).
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use beep_blocking::{Connection, Options, Registry};
    ///
    /// let (a, b) = UnixStream::pair()?;
    /// let listener_side = Connection::accept_transport(b, Registry::new(), Options::default())?;
    /// let conn = Connection::connect_transport(a, Options::default())?;
    /// assert_eq!(conn.id(), conn.clone().id());
    /// assert_eq!(conn, conn.clone());
    /// assert_ne!(conn.id(), listener_side.id()); // two connections, one per side
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The peer's address, for an IP connection (`None` over a Unix
    /// socket, a [`Split`](crate::transport::Split) stream, or a TCP
    /// stream that had lost its peer when the connection started).
    ///
    /// ```no_run
    /// let conn = beep_blocking::Connection::connect("127.0.0.1:10288", Default::default())?;
    /// println!("connected to {:?}", conn.peer_addr());
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.peer
    }

    /// The peer's greeting (profiles, features, localize); empty until it
    /// arrived, which `connect` waits for.
    pub fn peer_greeting(&self) -> Greeting {
        self.shared.lock().peer_greeting()
    }

    /// The `serverName` bound to the session by the first accepted start.
    pub fn server_name(&self) -> Option<String> {
        self.shared.lock().server_name()
    }

    /// Octets handed to the connection and not yet written to the socket.
    pub fn queued_output(&self) -> usize {
        self.shared.lock().core.session().queued_output()
    }

    /// True while the connection is usable (PyVortex `is_ok`).
    pub fn is_ok(&self) -> bool {
        self.shared.lock().core.ended().is_none()
    }

    /// `Ok` while the connection lives, else why it ended.
    pub(crate) fn live(&self) -> Result<(), Error> {
        Ok(self.shared.lock().core.live()?)
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.lock().core.ended().cloned()
    }

    /// Runs `f` once when the connection ends, whatever the cause (at once
    /// if it already has).
    pub fn on_close(&self, f: impl FnOnce(&CloseReason) + Send + 'static) {
        State::on_close(self.shared.lock(), Box::new(f));
    }

    /// Waits until the connection ends and tells why; `None` if it has
    /// not ended within `timeout` (`Duration::MAX`: no limit). beep-tokio's
    /// `wait_closed` is the same without the timeout, which async code
    /// puts around the future with its runtime's timer. `on_close`
    /// callbacks may still be running when this returns.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # fn run(conn: beep_blocking::Connection) {
    /// match conn.wait_closed(Duration::from_secs(5)) {
    ///     Some(reason) => println!("closed: {reason}"),
    ///     None => println!("still open"),
    /// }
    /// # }
    /// ```
    pub fn wait_closed(&self, timeout: Duration) -> Option<CloseReason> {
        let st = self
            .shared
            .wait_changed(Some(timeout), |st| st.core.ended().is_none());
        st.core.ended().cloned()
    }

    /// Opens a channel running `profile` and waits for the peer's answer.
    /// `server_name` goes in the start request; `content` (in `profile`)
    /// is piggybacked.
    pub fn open_channel(
        &self,
        profile: Profile,
        server_name: Option<String>,
    ) -> Result<Channel, Error> {
        self.open_and_wait(None, vec![profile], server_name)
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
    /// use beep_blocking::{Connection, Options};
    /// use beep_proto::xml::Profile;
    /// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
    /// let channel = conn.open_channel_number(7, vec![Profile::new("http://example.org/beep/echo")], None)?;
    /// assert_eq!(channel.number(), 7);
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn open_channel_number(
        &self,
        number: u32,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<Channel, Error> {
        self.open_and_wait(Some(number), profiles, server_name)
    }

    /// Opens a channel offering several profiles in one `<start>`, in
    /// order of preference (RFC 3080 2.3.1.2), and waits for the peer's
    /// answer: the channel runs the one the peer chose
    /// ([`Channel::profile`]). Each profile's content is piggybacked.
    ///
    /// ```no_run
    /// use beep_blocking::{Connection, Options};
    /// use beep_proto::xml::Profile;
    /// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
    /// let offer = vec![Profile::new("http://example.org/beep/echo2"), Profile::new("http://example.org/beep/echo")];
    /// let channel = conn.open_channel_any(offer, None)?;
    /// println!("the peer chose {:?}", channel.profile());
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn open_channel_any(
        &self,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<Channel, Error> {
        self.open_and_wait(None, profiles, server_name)
    }

    fn open_and_wait(
        &self,
        number: Option<u32>,
        profiles: Vec<Profile>,
        server_name: Option<String>,
    ) -> Result<Channel, Error> {
        let (notify, waiter) = Waiter::pair();
        self.open_channel_notify(number, profiles, server_name, notify)?;
        let done = wait(&self.shared, waiter, self.shared.options.channel_timeout)?;
        self.opened(done)
    }

    /// Opens a channel without waiting: `done` runs with the channel or the
    /// peer's refusal (PyVortex `open_channel` with `on_channel`).
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

    /// Asks the peer to begin TLS (RFC 3080 3.1) and waits until the
    /// handshake is over and the peer has greeted again over it (PyVortex
    /// `vortex.tls.start_tls` without a `tls_notify`): what `client` says
    /// decides whether the listener's certificate is trusted. The wait is
    /// bounded by [`Options::channel_timeout`], like
    /// [`Connection::open_channel`].
    ///
    /// TLS is an initial tuning (RFC 3080 3): call it while no channel is
    /// open. Once it begins every channel is gone and both peers greet
    /// again, so [`Connection::peer_greeting`] then lists what the peer
    /// offers over TLS (profiles it serves only over TLS included). This
    /// handle, its clones, and the bytes the driver moves stay the same:
    /// the session encrypts and decrypts them.
    ///
    /// Returns what the handshake settled ([`TlsInfo`]): the listener's
    /// certificate chain, the TLS version and cipher suite.
    ///
    /// # Errors
    ///
    /// * [`Error::Refused`]: the peer refused TLS; the session goes on in
    ///   plain.
    /// * [`Error::Closed`] with [`CloseReason::Tls`]: the handshake failed
    ///   (e.g. [`TlsError::Certificate`](beep_proto::tls::TlsError::Certificate)
    ///   for a certificate `client` does not trust, or one not valid for
    ///   its server name); a half-negotiated session cannot go on in
    ///   plain, so the connection is closed.
    /// * [`Error::Usage`]: nothing was sent, because
    ///   [`UsageError::TuningNotPossible`](beep_proto::UsageError::TuningNotPossible)
    ///   (channels are open, TLS is active already, or the peer's greeting
    ///   does not offer it) or
    ///   [`UsageError::TuningInProgress`](beep_proto::UsageError::TuningInProgress).
    /// * [`Error::Timeout`]: no answer, or no new greeting, in time. The
    ///   connection is shut down: after `<ready/>` nothing may be sent
    ///   until the answer (RFC 3080 3.1.3.1).
    ///
    /// ```no_run
    /// use beep_blocking::{Connection, Options, TlsClient};
    /// use beep_proto::xml::Profile;
    ///
    /// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
    /// let ca = std::fs::read("/etc/beep/ca.pem")?;
    /// let info = conn.start_tls(TlsClient::with_ca_pem(&ca, "beep.example.org")?)?;
    /// println!("{:?}, {} certificates", info.protocol_version, info.peer_certificates.len());
    /// // Channels opened from now on run over TLS.
    /// let channel = conn.open_channel(Profile::new("http://example.org/beep/echo"), None)?;
    /// # drop(channel);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_tls(&self, client: TlsClient) -> Result<TlsInfo, Error> {
        let (notify, waiter) = Waiter::pair();
        self.start_tls_notify(client, notify)?;
        let waited = wait(&self.shared, waiter, self.shared.options.channel_timeout);
        dispatch::tls_waited(waited, || self.shutdown())
    }

    /// Asks the peer to begin TLS without waiting: `done` runs on the
    /// connection's dispatcher with what [`Connection::start_tls`] would
    /// return, once the handshake is over and the peer has greeted again,
    /// or with the refusal or failure (PyVortex `vortex.tls.start_tls`
    /// with its `tls_notify`). Errors that prevent sending the request
    /// are returned at once, as [`Connection::start_tls`]'s
    /// [`Error::Usage`]; `done` is then not called.
    ///
    /// `done` keeps the connection alive until it ran (see
    /// [`Connection`]). No timeout applies: the answer, or the end of the
    /// connection, calls it.
    ///
    /// ```no_run
    /// use beep_blocking::{Connection, Options, TlsClient};
    ///
    /// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
    /// let ca = std::fs::read("/etc/beep/ca.pem")?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// conn.start_tls_with(TlsClient::with_ca_pem(&ca, "beep.example.org")?, move |result| {
    ///     let _ = tx.send(result.map(|info| info.protocol_version));
    /// })?;
    /// // ... other work; then:
    /// println!("TLS: {:?}", rx.recv()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
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

    /// True once TLS protects the session (PyVortex `tls.is_enabled`):
    /// from the `<proceed/>` on, nothing goes out unencrypted, the
    /// handshake may still be running. On both sides of the connection.
    ///
    /// ```no_run
    /// # fn run(conn: beep_blocking::Connection) {
    /// if !conn.is_tls_active() {
    ///     eprintln!("refusing to send secrets in the clear");
    /// }
    /// # }
    /// ```
    pub fn is_tls_active(&self) -> bool {
        self.shared.lock().core.session().is_tls_active()
    }

    /// What the TLS handshake settled, once it is over: the peer's
    /// certificate chain (leaf first; empty on a listener whose initiator
    /// sent none), the TLS version, the cipher suite and, on the
    /// listener, the name the initiator asked for (SNI). `None` before
    /// TLS. A listener reads it from its handlers'
    /// [`Channel::connection`].
    ///
    /// ```no_run
    /// # fn run(conn: beep_blocking::Connection) {
    /// if let Some(info) = conn.tls_info() {
    ///     let leaf = info.peer_certificates.first();
    ///     println!("{:?} with {:?}, peer presented {:?} octets", info.protocol_version,
    ///         info.cipher_suite, leaf.map(|der| der.len()));
    /// }
    /// # }
    /// ```
    pub fn tls_info(&self) -> Option<TlsInfo> {
        self.shared.lock().core.session().tls_info().cloned()
    }

    /// Authenticates to the peer with SASL (RFC 3080 4.1) and waits for
    /// the outcome (PyVortex `vortex.sasl.start_auth` without a
    /// `sasl_status`): `client` names the mechanism and carries the
    /// credentials; the session runs the whole exchange on a channel of
    /// its own, which is gone when this returns. The wait is bounded by
    /// [`Options::channel_timeout`], like [`Connection::open_channel`].
    ///
    /// Call it after [`Connection::start_tls`] when the mechanism sends
    /// the password in the clear (PLAIN). Success holds for the whole
    /// session (RFC 3080 4): channels opened from now on may be of
    /// profiles the peer serves only to authenticated peers. No security
    /// layer is negotiated, so channels and greeting stay as they were.
    ///
    /// Returns who we are now ([`AuthInfo`]), as
    /// [`Connection::auth_info`] will tell.
    ///
    /// # Errors
    ///
    /// * [`Error::Refused`]: the peer refused, 535 for bad credentials
    ///   (never saying whether the user or the password was wrong). The
    ///   session goes on unauthenticated, and may try again.
    /// * [`Error::Usage`]: nothing was sent, because
    ///   [`UsageError::AlreadyAuthenticated`](beep_proto::UsageError::AlreadyAuthenticated),
    ///   [`UsageError::AuthInProgress`](beep_proto::UsageError::AuthInProgress),
    ///   or [`UsageError::AuthNotPossible`](beep_proto::UsageError::AuthNotPossible)
    ///   (the peer's greeting does not offer the mechanism).
    /// * [`Error::Timeout`]: no outcome in time; the exchange is aborted
    ///   (`status='abort'`, RFC 3080 4.1) and the connection stays up (a
    ///   listener's success crossing the abort still counts: see
    ///   [`Connection::is_authenticated`]).
    /// * [`Error::Closed`]: the connection ended meanwhile (e.g. the
    ///   peer broke the SASL exchange).
    ///
    /// ```no_run
    /// use beep_blocking::{Connection, Error, Options, SaslClient};
    /// use beep_proto::xml::Profile;
    ///
    /// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
    /// match conn.start_sasl(SaslClient::scram_sha256("bob", "secret")) {
    ///     Ok(info) => println!("authenticated as {} with {}", info.authcid, info.mechanism),
    ///     Err(Error::Refused { code, text }) => eprintln!("refused: {code} {text}"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// let channel = conn.open_channel(Profile::new("http://example.org/beep/private"), None)?;
    /// # drop(channel);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_sasl(&self, client: SaslClient) -> Result<AuthInfo, Error> {
        let (notify, waiter) = Waiter::pair();
        let channel = self.start_sasl_notify(client, notify)?;
        let waited = wait(&self.shared, waiter, self.shared.options.channel_timeout);
        dispatch::auth_waited(waited, || {
            let _ = self.shared.with_session(|st| {
                st.core.abort_sasl(channel);
                Ok(())
            });
        })
    }

    /// Authenticates to the peer without waiting: `done` runs on the
    /// connection's dispatcher with what [`Connection::start_sasl`] would
    /// return, once the exchange is over (PyVortex `vortex.sasl.start_auth`
    /// with its `sasl_status` handler). Errors that prevent starting the
    /// exchange are returned at once, as [`Connection::start_sasl`]'s
    /// [`Error::Usage`]; `done` is then not called.
    ///
    /// `done` keeps the connection alive until it ran (see
    /// [`Connection`]). No timeout applies: the outcome, or the end of the
    /// connection, calls it.
    ///
    /// ```no_run
    /// use beep_blocking::{Connection, Options, SaslClient};
    ///
    /// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// conn.start_sasl_with(SaslClient::cram_md5("bob", "secret"), move |result| {
    ///     let _ = tx.send(result.map(|info| info.authcid));
    /// })?;
    /// // ... other work; then:
    /// println!("SASL: {:?}", rx.recv()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
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

    /// True once a SASL exchange succeeded on this session (PyVortex
    /// `vortex.sasl.is_authenticated`): on an initiator, our own
    /// ([`Connection::start_sasl`]); on a listener, the peer's.
    ///
    /// ```no_run
    /// # fn run(conn: beep_blocking::Connection) {
    /// if !conn.is_authenticated() {
    ///     eprintln!("anonymous session");
    /// }
    /// # }
    /// ```
    pub fn is_authenticated(&self) -> bool {
        self.shared.lock().core.session().authenticated().is_some()
    }

    /// Who authenticated on this session (PyVortex
    /// `vortex.sasl.auth_id`, `authorization_id` and `method_used`): the
    /// mechanism, the authentication identity and the authorization
    /// identity granted. On an initiator it is our own identity; on a
    /// listener, the peer's, which handlers read from their
    /// [`Channel::connection`](crate::Channel::connection). `None` before
    /// a success.
    ///
    /// ```no_run
    /// use beep_blocking::ProfileHandler;
    /// let whoami = ProfileHandler::new(|channel, m| {
    ///     let who = match channel.connection().auth_info() {
    ///         Some(info) => format!("{} ({})", info.authcid, info.mechanism),
    ///         None => "nobody".to_string(),
    ///     };
    ///     let _ = channel.reply_rpy(m.msgno, beep_proto::Message::new(who));
    /// });
    /// # let _ = whoami;
    /// ```
    pub fn auth_info(&self) -> Option<AuthInfo> {
        self.shared.lock().core.session().authenticated().cloned()
    }

    /// Releases the session (RFC 3080 2.4): waits for the peer's `<ok/>`
    /// and the end of the connection. A refusal leaves it open.
    pub fn close(&self) -> Result<(), Error> {
        let (notify, waiter) = Waiter::pair();
        self.shared
            .with_session(|st| Ok(st.core.close(0, notify)?))?;
        match wait(&self.shared, waiter, self.shared.options.release_timeout) {
            Ok(_) | Err(Error::Closed(CloseReason::Released)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` with this thread's output held back, then writes it in
    /// one go: many small messages sent in `f` leave in few socket writes
    /// instead of one each (like `TCP_CORK`). Waits for room still work:
    /// a full queue drains as usual.
    ///
    /// ```no_run
    /// use beep_blocking::{Connection, Options};
    /// use beep_proto::{Message, xml::Profile};
    /// let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
    /// let channel = conn.open_channel(Profile::new("http://example.org/beep/sink"), None)?;
    /// conn.batch(|| {
    ///     for i in 0..100 {
    ///         channel.send_msg(Message::new(format!("event {i}")))?;
    ///     }
    ///     Ok::<(), beep_blocking::Error>(())
    /// })?;
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn batch<T>(&self, f: impl FnOnce() -> T) -> T {
        cork::batch(f)
    }

    /// Writes what this thread holds back: the output of a
    /// [`Connection::batch`] so far, or of the handlers of a burst of
    /// messages (see [`ProfileHandler::new`](crate::ProfileHandler::new)).
    /// Calls of this crate that wait do this themselves; call it before
    /// blocking on anything else that needs the peer to have read it.
    ///
    /// ```no_run
    /// use beep_blocking::ProfileHandler;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let rx = std::sync::Mutex::new(rx);
    /// let handler = ProfileHandler::new(move |channel, m| {
    ///     let _ = channel.reply_rpy(m.msgno, m.message);
    ///     // Another thread signals once the peer has reacted to the reply.
    ///     channel.connection().flush();
    ///     let _ = rx.lock().unwrap().recv();
    /// });
    /// # drop((handler, tx));
    /// ```
    pub fn flush(&self) {
        cork::release_held();
    }

    /// Ends the connection at once, without a release handshake (also
    /// cutting short the last flush of a released one).
    pub fn shutdown(&self) {
        if self.shared.lock().core.ended().is_some() {
            // Released and still flushing: the socket first, or the flush
            // below could block this thread on a peer that stops reading.
            self.shared.stream.shutdown();
        }
        // (Any other end shuts the socket down while the reason is set, so
        // the reader's EOF cannot report itself as the reason.)
        self.shared.finish(CloseReason::Shutdown);
        self.shared.stream.shutdown();
    }
}

thread_local! {
    /// Output the session produced while this application thread read
    /// for its reply: written as soon as it stops reading (see
    /// [`Shared::push_output`]).
    static OUTPUT_OWED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Waits for a result from the peer; a vanished connection or a timeout
/// is an error (a timeout too long for a deadline waits for ever). When
/// nobody reads the socket, the waiting thread reads it itself until its
/// result is there (see [`Workers::enter_wait`]).
pub(crate) fn wait(shared: &Arc<Shared>, waiter: Waiter, timeout: Duration) -> Result<Done, Error> {
    cork::release_held();
    let deadline = deadline::after(timeout);
    let slot = &waiter.0;
    loop {
        if let Some(result) = slot.try_take() {
            return result;
        }
        let left = deadline::left(deadline);
        if deadline::passed(left) {
            return Err(Error::Timeout);
        }
        match shared.workers.enter_wait(slot.ticket()) {
            Wait::Read => {
                // Without a deadline, a read without a timeout.
                let ended = io::read_guarded(shared, Some(left.unwrap_or(Duration::MAX)));
                shared.workers.leave_read(ended);
                // Before anything else may block: the peer may wait for it.
                if OUTPUT_OWED.replace(false) {
                    shared.push_output();
                }
            }
            Wait::Ready => {}
            Wait::Blocked(_waiting) => return slot.take_within(left),
        }
    }
}

impl Shared {
    /// The connection in thread names: the peer's address, or "stream".
    pub(crate) fn label(&self) -> String {
        self.peer
            .map_or_else(|| "stream".into(), |peer| peer.to_string())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is caught around handlers, which
        // never run under it; recover the state rather than cascade.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the session, then routes the events it produced and
    /// wakes the writer: every session call goes through here.
    pub(crate) fn with_session<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.with_session_locked(self.lock(), f)
    }

    /// [`Shared::with_session`] under a lock already taken.
    fn with_session_locked<T>(
        self: &Arc<Self>,
        mut st: MutexGuard<'_, State>,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if let Err(failure) = st.core.live() {
            return Err(failure.into());
        }
        let mut actions = Vec::new();
        let result = f(&mut st);
        self.route(&mut st, &mut actions);
        drop(st);
        self.after(&mut actions);
        result
    }

    /// Like [`Shared::with_session`], first waiting until queued output is
    /// below the limit. Only application threads call this: the I/O
    /// threads never wait on the peer.
    pub(crate) fn with_room<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let room = self.room_policy();
        let mut st = self.lock();
        if room.full(&st.core) {
            // Held batch output goes first: it may be what the peer awaits.
            drop(st);
            cork::release_held();
            st = self.lock();
            // The peer's window updates free the room: read them.
            let _waiting = self.workers.waiting_on_peer();
            // Counted under the lock before the check (see `room_made`).
            self.room_waiters.fetch_add(1, Ordering::SeqCst);
            // Resume at three quarters of the limit (see `Room`).
            while !room.made(&st.core) {
                st = self.room.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            self.room_waiters.fetch_sub(1, Ordering::SeqCst);
        }
        // Under the lock that saw the room: nobody fills it in between.
        self.with_session_locked(st, f)
    }

    /// Runs `f` on the session if queued output is within the limit, else
    /// [`Error::QueueFull`] at once (the non-blocking sends). The output
    /// goes to the writer thread, never written from this one: a socket
    /// write blocks while the peer is not reading.
    pub(crate) fn try_room<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let room = self.room_policy();
        let mut actions = Vec::new();
        let result = {
            let mut st = self.lock();
            room.check(&st.core)?;
            let result = f(&mut st);
            self.route(&mut st, &mut actions);
            result
        };
        self.send_actions(&mut actions);
        self.wake_writer();
        result
    }

    /// After output left the session (`roomy`: the queue is at 3/4 of the
    /// limit or less, or the connection ended), wakes the senders waiting
    /// for room. Read with the state lock released, after the change.
    pub(crate) fn room_made(&self, roomy: bool) {
        if roomy && self.room_waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_all();
        }
    }

    /// True when senders waiting for room may go on (lock held).
    pub(crate) fn roomy(&self, st: &State) -> bool {
        self.room_policy().made(&st.core)
    }

    /// The backpressure policy for [`Options::max_queued_output`].
    pub(crate) fn room_policy(&self) -> Room {
        Room::new(self.options.max_queued_output)
    }

    /// Waits on `changed` while `condition` holds (at most `timeout`; for
    /// ever without one, or with one too long for a deadline).
    pub(crate) fn wait_changed(
        &self,
        timeout: Option<Duration>,
        mut condition: impl FnMut(&mut State) -> bool,
    ) -> MutexGuard<'_, State> {
        let deadline = timeout.and_then(deadline::after);
        let mut st = self.lock();
        if !condition(&mut st) {
            return st;
        }
        // About to block: output a batch holds back goes out first (the
        // peer may be waiting for it), without the lock it needs.
        drop(st);
        cork::release_held();
        let _waiting = self.workers.waiting_on_peer();
        st = self.lock();
        // Counted under the lock, before the condition is checked: a
        // notifier that changes the state after this sees the count.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        while condition(&mut st) {
            st = match deadline::left(deadline) {
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(left) if left.is_zero() => break,
                Some(left) => {
                    let waited = self.changed.wait_timeout(st, left);
                    waited.unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        st
    }

    /// After a session call: hands actions to the dispatcher, writes what
    /// the session has to send (from application threads directly, saving
    /// a thread switch), and wakes whoever waits.
    /// `actions` is left empty with its room (the reading thread keeps one
    /// list: an allocation per message less).
    pub(crate) fn after(self: &Arc<Self>, actions: &mut Vec<Action>) {
        self.send_actions(actions);
        // What a read produced (window updates) is never held back, even
        // when a handler or a batch waits for its reply by reading itself:
        // the peer may be waiting for that window.
        if roles::on_reader() || !cork::hold(self) {
            self.push_output();
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }

    /// Gets the session's output on its way: written by this thread, or by
    /// the writer thread when this is the reader or someone else writes.
    pub(crate) fn push_output(self: &Arc<Self>) {
        if roles::reads_for_app() {
            // An application thread reading for its own reply writes it
            // itself right after this read, once it has left the reading
            // role (see `wait`): the window updates a reply frees would
            // otherwise cost a switch to the writer thread and back.
            OUTPUT_OWED.set(true);
        } else if roles::on_reader() {
            self.wake_writer();
        } else {
            self.flush_direct();
        }
    }

    /// Hands work to the dispatcher and wakes waiters on the session.
    /// Leaves `actions` empty, with its room.
    pub(crate) fn send_actions(&self, actions: &mut Vec<Action>) {
        self.workers.push(actions);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }

    pub(crate) fn wake_writer(&self) {
        if self.writer_idle.load(Ordering::SeqCst) {
            // Under the lock, so the wake-up cannot fall between the
            // writer's last look at the session and its wait; and only when
            // there is something to write (a wake-up is a thread switch).
            let wants = {
                let st = self.lock();
                st.core.session().wants_transmit() || st.core.ended().is_some()
            };
            if wants {
                self.output.notify_one();
            }
        }
    }

    /// Takes the session's next output into `chunks` (the socket's holder
    /// calls it, under the writer lock), routes what taking it caused and
    /// wakes the senders it made room for. `None` when there was nothing
    /// to take; else whether the session has more after it (it frames in
    /// batches).
    pub(crate) fn take_output(self: &Arc<Self>, chunks: &mut Vec<bytes::Bytes>) -> Option<bool> {
        let mut actions = Vec::new();
        let ((took, more), roomy, tls_began) = {
            let mut st = self.lock();
            let plain = !st.core.session().is_tls_active();
            let taken = st.take_output(chunks, &self.activity, &**self, &mut actions);
            let tls_began = plain && st.core.session().is_tls_active();
            (taken, self.roomy(&st), tls_began)
        };
        if tls_began {
            // Taking our <proceed/> switched to TLS (RFC 3080 3.1.3.2): the
            // writer keeps the listener's greeting timer, which starts
            // again from the reset. When another thread wrote it, the
            // writer may be asleep without a deadline (the peer had
            // greeted) and nothing else would wake it: the handshake
            // waits for the peer, so there is no output to announce.
            self.output.notify_one();
        }
        self.send_actions(&mut actions);
        self.room_made(roomy);
        took.then_some(more)
    }

    /// Writes the session's output from the calling thread. If another
    /// thread holds the socket, it writes our output too: every holder
    /// looks again after letting go, so output added by a thread that found
    /// the socket busy is never stranded.
    fn flush_direct(self: &Arc<Self>) {
        loop {
            // Raised before trying: if the socket is held, its holder
            // lowered the flag before its last look at the session, so it
            // either sees our output or sees the flag after letting go.
            self.flush_wanted.store(true, Ordering::SeqCst);
            let Ok(mut writing) = self.writer.try_lock() else {
                return;
            };
            self.flush_wanted.store(false, Ordering::SeqCst);
            let chunks = &mut *writing;
            // Output others add after the last look raises `flush_wanted`
            // (or wakes the writer thread, from a reader).
            while let Some(again) = self.take_output(chunks) {
                if let Err(e) = io::write_chunks(&*self.stream, &self.workers, chunks) {
                    chunks.clear();
                    drop(writing);
                    self.finish(CloseReason::Lost(e.to_string()));
                    return;
                }
                chunks.clear();
                if !again {
                    break;
                }
            }
            drop(writing);
            // Output queued meanwhile by a thread that found the socket
            // held (the writer thread waits for the socket, it needs no
            // look on its behalf).
            if !self.flush_wanted.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Turns session events into results for waiters and work for the
    /// dispatcher. Called with the lock held; runs no application code.
    pub(crate) fn route(&self, st: &mut State, actions: &mut Vec<Action>) {
        st.route(self, actions);
    }

    /// A released session's writer flushes the last bytes (the final
    /// `<ok/>`) before it closes the socket; a peer that stops reading must
    /// not keep the threads and the socket for ever, so a thread that never
    /// writes (whoever is stuck writing may be the dispatcher or an
    /// application thread) shuts the socket down under the writer after the
    /// release timeout, which fails its write.
    fn linger(&self) {
        let Some(shared) = self.me.upgrade() else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name(format!("beep-linger {}", self.label()))
            .spawn(move || {
                let limit = Some(shared.options.release_timeout);
                let writing = |_: &mut State| !shared.writer_done.load(Ordering::SeqCst);
                drop(shared.wait_changed(limit, writing));
                if !shared.writer_done.load(Ordering::SeqCst) {
                    shared.stream.shutdown();
                }
            });
    }

    /// Feeds input from the socket.
    pub(crate) fn input(&self, st: &mut State, bytes: &[u8], actions: &mut Vec<Action>) {
        st.input(bytes, self, actions);
    }

    /// The peer closed the socket: the session ends as the core decides
    /// (a release whose `<ok/>` is queued still completes; anything else
    /// is a lost connection).
    pub(crate) fn eof(self: &Arc<Self>) {
        let mut actions = Vec::new();
        self.lock().eof(&**self, &mut actions);
        self.after(&mut actions);
        if self.lock().core.ended().is_none() {
            // A release the peer asked for just before closing its side
            // waits for our answer; if that never comes (or our <ok/>
            // cannot go out), give up after the release timeout.
            let shared = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("beep-eof {}", self.label()))
                .spawn(move || {
                    let limit = Some(shared.options.release_timeout);
                    drop(shared.wait_changed(limit, |st| st.core.ended().is_none()));
                    shared.finish(CloseReason::Lost("the peer closed the connection".into()));
                });
            if spawned.is_err() {
                self.finish(CloseReason::Lost("the peer closed the connection".into()));
            }
        }
    }

    /// Ends the connection once: every waiter gets the reason, close
    /// handlers run on the dispatcher, the socket closes.
    pub(crate) fn finish(self: &Arc<Self>, reason: CloseReason) {
        let mut actions = Vec::new();
        self.lock().end(reason, &**self, &mut actions);
        self.after(&mut actions);
    }
}

/// The blocking driver's part of the shared layer: a blocked thread is
/// woken through the workers, actions go to the workers' queue, and the
/// end closes the socket (after the last flush, for a release).
impl Driver for Shared {
    type Wait = Wake;
    type Handlers = ChannelHandlers;

    /// A blocked caller is woken at once.
    fn wake(&self, wake: Wake, result: Result<Done, Error>) {
        wake.send(result, |ticket| self.workers.answered(ticket));
    }

    fn ended(&self, reason: &CloseReason) {
        if matches!(reason, CloseReason::Released | CloseReason::Tls(_)) {
            // The writer flushes the final <ok/>, or the TLS alert that
            // tells the peer why its handshake failed (a certificate we
            // refused, bytes that are not TLS), then closes, within a
            // bound.
            self.linger();
        } else {
            self.stream.shutdown();
        }
        // The writer must wake to flush and close, even with nothing left
        // to send (the lock is held: it cannot miss it).
        self.output.notify_one();
        self.room.notify_all();
    }

    fn dispatch(&self, st: &State, actions: &mut Vec<Action>) {
        self.workers.push(actions);
        // Room can also appear without a write (a channel forgotten with
        // its queue): never leave a sender waiting on it.
        self.room_made(self.roomy(st));
    }
}

/// Output held back while a thread runs a batch ([`Connection::batch`],
/// and the dispatcher between the handlers of one read's worth of
/// messages): the connections it touched are flushed when it ends.
pub(crate) mod cork {
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;

    use super::Shared;

    /// The connections a batch touched. A batch nearly always touches
    /// one (a dispatcher's batch, its own): it is kept apart from the
    /// list, which then never allocates.
    #[derive(Default)]
    struct Held {
        first: Option<Arc<Shared>>,
        others: Vec<Arc<Shared>>,
    }

    thread_local! {
        static DEPTH: Cell<usize> = const { Cell::new(0) };
        static HELD: RefCell<Held> = const {
            RefCell::new(Held { first: None, others: Vec::new() })
        };
    }

    /// Inside a batch, remembers `shared` for the flush and returns true.
    pub(crate) fn hold(shared: &Arc<Shared>) -> bool {
        if DEPTH.get() == 0 {
            return false;
        }
        HELD.with_borrow_mut(|held| match &held.first {
            None => held.first = Some(shared.clone()),
            Some(first) if Arc::ptr_eq(first, shared) => {}
            Some(_) => {
                if !held.others.iter().any(|h| Arc::ptr_eq(h, shared)) {
                    held.others.push(shared.clone());
                }
            }
        });
        true
    }

    /// Writes what this thread holds back, before it blocks waiting for
    /// the peer (who would otherwise wait for those bytes for ever).
    pub(crate) fn release_held() {
        // Taken before any flush: a flush may hold again.
        let held = HELD.take();
        if let Some(first) = held.first {
            first.push_output();
        }
        for shared in held.others {
            shared.push_output();
        }
    }

    /// Runs `f` as a batch; nested batches flush with the outermost.
    pub(crate) fn batch<T>(f: impl FnOnce() -> T) -> T {
        struct Guard;
        impl Drop for Guard {
            fn drop(&mut self) {
                let depth = DEPTH.get() - 1;
                DEPTH.set(depth);
                if depth == 0 {
                    release_held();
                }
            }
        }
        DEPTH.set(DEPTH.get() + 1);
        let _guard = Guard;
        f()
    }
}

/// A connection's layer, with the peer named in its tracing events.
fn named(mut state: State, peer: Option<SocketAddr>) -> State {
    if let Some(peer) = peer {
        state.name_peer(&peer);
    }
    state
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::{Duration, Instant};

    use beep_proto::dispatch::Room;
    use beep_proto::{Config, Message, xml::Profile};

    use crate::{Connection, Options, ProfileHandler, Registry};

    const SLOW: &str = "http://example.org/beep/slow";
    const LIMIT: usize = 32 << 10;
    /// What one 1000-octet message costs in the queue (with its entry).
    const COST: usize = 1000 + 2 + 128;
    const T: Duration = Duration::from_secs(10);

    /// Waits until `queued` stops changing for a moment; returns it.
    fn settled(conn: &Connection) -> usize {
        let mut last = conn.queued_output();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = conn.queued_output();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// RFC 3081 3.1.4 leaves the sender's buffering to the implementation:
    /// a sender that waits for room resumes once the queue is down to
    /// three quarters of `max_queued_output` (the shared `Room` policy),
    /// not as soon as it is below the limit.
    #[test]
    fn senders_waiting_for_room_resume_at_three_quarters_of_the_limit() {
        // The peer handles one message per token: the credit of each goes
        // back only then, so our queue drains a message or two at a time.
        let (go, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let mut registry = Registry::new();
        registry.register(
            SLOW,
            ProfileHandler::new(move |_, _| {
                let _ = gate.lock().unwrap().recv();
            }),
        );
        let (ours, theirs) = UnixStream::pair().unwrap();
        let peer_options = Options {
            // The peer's window stays at 4096 (it would grow as the handler
            // takes messages), so each token drains a message or two.
            config: Config {
                receive_window: 4096,
                max_receive_window: 4096,
                ..Config::default()
            },
            ..Options::default()
        };
        let peer = Connection::accept_transport(theirs, registry, peer_options).unwrap();
        let options = Options {
            max_queued_output: LIMIT,
            ..Options::default()
        };
        let conn = Connection::connect_transport(ours, options).unwrap();
        let channel = conn.open_channel(Profile::new(SLOW), None).unwrap();
        let message = Message::new(vec![0u8; 1000]);
        // Full, and the writer has taken all the peer's window allows.
        loop {
            while channel.try_send_msg(message.clone()).is_ok() {}
            if settled(&conn) > LIMIT {
                break;
            }
        }

        let resumed = Arc::new(AtomicBool::new(false));
        let sender = {
            let (channel, message, resumed) = (channel.clone(), message.clone(), resumed.clone());
            std::thread::spawn(move || {
                let sent = channel.send_msg(message);
                let queued = channel.connection().queued_output();
                resumed.store(true, Ordering::SeqCst);
                (sent, queued)
            })
        };
        // The queue drains a message or two per token, from above the limit.
        let deadline = Instant::now() + T;
        while !resumed.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the sender never resumed");
            go.send(()).unwrap();
            settled(&conn);
        }
        let (sent, queued) = sender.join().unwrap();
        assert!(sent.is_ok());
        // Queued when it resumed: its own message, and no more than three
        // quarters of the limit (resuming at the limit leaves 30 KiB).
        let resume_at = Room::new(LIMIT).resume_at();
        assert!(
            queued <= resume_at + 2 * COST,
            "resumed with {queued} queued"
        );
        drop(go);
        conn.shutdown();
        peer.shutdown();
    }
}
