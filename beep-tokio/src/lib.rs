//! # beep-tokio
//!
//! Async BEEP (RFC 3080/3081): connections, channels, listeners with a
//! profile registry (start, close and async message handlers, as in
//! PyVortex), request/reply helpers that await, and connection-close
//! notification. All protocol rules and event routing live in
//! [`beep_proto`] (`dispatch::Core`); this crate moves bytes, wakes
//! waiting futures and runs handlers.
//!
//! Each connection runs three tasks: a reader, a writer and a dispatcher
//! that runs handlers one at a time. A handler may await (a reply into a
//! full queue, a request of its own; the `try_` sends return
//! [`Error::QueueFull`] instead of waiting) without stopping the connection
//! from reading the peer's window updates and replies. Handlers get whole
//! messages ([`Channel::set_message_handler`], or as a `Stream`:
//! [`Channel::incoming`]) or frames as they arrive
//! ([`Channel::set_frame_handler`]), and may return a `Result` whose error
//! answers the MSG with an ERR. A connection made by
//! [`Connection::connect`] is released when the last handle to it is
//! dropped. Every handle of one connection, those handlers get included,
//! shares its [`Connection::id`]. A client made with
//! [`Connection::connect_with_registry`] serves profiles too: the
//! listener may start channels on it.
//!
//! ## Runtimes
//!
//! The connection machinery is written against `futures-io`'s
//! `AsyncRead`/`AsyncWrite`, futures channels and `event-listener`, so it
//! runs on any executor. What a runtime must supply (spawn, sleep, TCP) is
//! the [`runtime::Runtime`] trait: `runtime::Tokio` (feature `tokio`, on
//! by default) and `runtime::AsyncStd` (feature `async-std`). Inside a
//! tokio runtime tokio is used; elsewhere async-std, if enabled; or name
//! one in [`Options::runtime`]. Streams of your own (TLS, in-memory pipes,
//! another runtime's sockets) go through [`Connection::connect_transport`]
//! and [`Connection::accept_transport`].
//!
//! ## TLS
//!
//! The TLS profile (RFC 3080 3.1, PyVortex `vortex.tls`) runs inside the
//! session: a listener offers it with [`Registry::set_tls`] (and may keep
//! profiles for TLS sessions only, [`Registry::register_tls_only`], or
//! require it, [`Registry::require_tls`]; or decide per connection,
//! [`Registry::set_tls_with_connection`]); an initiator asks with
//! [`Connection::start_tls`]. The connection's tasks keep moving bytes,
//! encrypted from `<proceed/>` on.
//!
//! ## SASL
//!
//! SASL authentication (RFC 3080 4.1, PyVortex `vortex.sasl`) runs inside
//! the session too: a listener offers mechanisms and decides with
//! [`Registry::set_sasl`], or with the connection that asks,
//! [`Registry::set_sasl_with_connection`] (and may keep profiles for
//! authenticated peers only, [`Registry::register_auth_only`]); an
//! initiator authenticates with [`Connection::start_sasl`]; both ends
//! read who authenticated with
//! [`Connection::auth_info`].
//!
//! ```no_run
//! use std::time::Duration;
//! use beep_tokio::{Connection, Listener, Options, ProfileHandler, Registry, Reply};
//! use beep_proto::{Message, xml::Profile};
//!
//! const ECHO: &str = "http://example.org/beep/echo";
//!
//! #[tokio::main]
//! async fn main() -> Result<(), beep_tokio::Error> {
//!     let mut registry = Registry::new();
//!     registry.register(ECHO, ProfileHandler::new(|channel, m| async move {
//!         let _ = channel.reply_rpy(m.msgno, m.message).await;
//!     }));
//!     let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).await?;
//!     let addr = listener.local_addrs()[0];
//!     let stop = listener.shutdown_handle();
//!     let server = tokio::spawn(listener.serve());
//!
//!     let conn = Connection::connect(addr, Options::default()).await?;
//!     let channel = conn.open_channel(Profile::new(ECHO), None).await?;
//!     let reply = channel.request(Message::new("hello"), Duration::from_secs(5)).await?;
//!     assert!(matches!(reply, Reply::Rpy(m) if m.body() == "hello"));
//!     conn.close().await?;
//!
//!     stop.shutdown();
//!     server.await.unwrap()?;
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod channel;
mod connection;
mod dispatch;
mod error;
mod feeder;
mod inbox;
mod incoming;
mod io;
mod listener;
mod options;
mod pool;
mod profile;
pub mod runtime;
mod shared;
mod writer;

pub use channel::Channel;
pub use connection::Connection;
pub use error::{CloseReason, Error};
pub use feeder::{Feeder, RequestFeeder};
pub use incoming::Incoming;
pub use listener::{Listener, ShutdownHandle};
pub use options::{DEFAULT_LISTENER_REASSEMBLY, Options};
pub use pool::{ChannelPool, PooledChannel};
pub use profile::{CloseDecision, CloseRequest, ProfileHandler, Registry, StartDecision};
pub use runtime::{Addrs, ToAddrs};

pub use beep_proto;
/// TLS (RFC 3080 3.1), run inside the session: the listener's
/// [`TlsAcceptor`] ([`Registry::set_tls`]) chooses a [`TlsServer`] per
/// request, the initiator's [`TlsClient`] goes to
/// [`Connection::start_tls`], and both ends read [`TlsInfo`]
/// ([`Connection::tls_info`]); a failed handshake ends the connection with
/// [`CloseReason::Tls`] and a [`TlsError`].
///
/// ```no_run
/// use beep_tokio::{Connection, Listener, Options, Registry, TlsAcceptor, TlsClient, TlsServer};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::new();
/// registry.set_tls(TlsAcceptor::new(TlsServer::from_pem_files("server.pem", "server.key")?));
/// let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).await?;
/// let addr = listener.local_addrs()[0];
/// tokio::spawn(listener.serve());
///
/// let conn = Connection::connect(addr, Options::default()).await?;
/// let info = conn.start_tls(TlsClient::with_ca_pem(&std::fs::read("ca.pem")?, "localhost")?).await?;
/// assert_eq!(conn.tls_info(), Some(info));
/// # Ok(()) }
/// ```
pub use beep_proto::dispatch::TlsAcceptor;
pub use beep_proto::dispatch::{HandlerResult, Reply};
/// SASL authentication (RFC 3080 4.1, PyVortex `vortex.sasl`), run inside
/// the session: a listener offers [`Mechanism`]s and decides each
/// [`AuthRequest`] with an [`AuthAnswer`] ([`Registry::set_sasl`]; what
/// the request needs is its [`AuthNeed`]); an initiator authenticates with
/// a [`SaslClient`] ([`Connection::start_sasl`]); both ends read the
/// [`AuthInfo`] ([`Connection::auth_info`]).
///
/// ```no_run
/// use beep_tokio::{AuthAnswer, AuthNeed, Connection, Listener, Mechanism, Options, Registry, SaslClient};
/// # async fn run() -> Result<(), beep_tokio::Error> {
/// let mut registry = Registry::new();
/// registry.set_sasl(&[Mechanism::ScramSha256], |request| match (request.need, request.authcid.as_deref()) {
///     (AuthNeed::Secret, Some("bob")) => AuthAnswer::Secret("secret".into()),
///     _ => AuthAnswer::NoSuchUser,
/// });
/// let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).await?;
/// let addr = listener.local_addrs()[0];
/// tokio::spawn(listener.serve());
///
/// let conn = Connection::connect(addr, Options::default()).await?;
/// let info = conn.start_sasl(SaslClient::scram_sha256("bob", "secret")).await?;
/// assert_eq!(conn.auth_info(), Some(info));
/// # Ok(()) }
/// ```
pub use beep_proto::sasl::{AuthAnswer, AuthInfo, AuthNeed, AuthRequest, Mechanism, SaslClient};
pub use beep_proto::tls::{TlsClient, TlsError, TlsInfo, TlsServer};
