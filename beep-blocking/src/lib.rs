//! # beep-blocking
//!
//! BEEP over `std::net` for scripts and threaded programs: connections,
//! channels, listeners with a profile registry (start, close and message
//! handlers, as in PyVortex), request/reply helpers that wait, and
//! connection-close notification. All protocol rules live in
//! [`beep_proto`]; this crate moves bytes and runs handlers.
//!
//! Each connection runs a writer thread and two workers that share
//! reading the socket and running handlers (one at a time, in order): the
//! worker that read a message runs its handler itself, and a thread
//! waiting for a reply reads the socket itself when nobody else does, so
//! a request/reply costs no more thread switches than over a plain
//! socket. Handlers may block (a reply into a full queue waits; the `try_`
//! sends return [`Error::QueueFull`] instead): whenever a thread waits on
//! the peer, the other worker reads meanwhile. They
//! get whole messages ([`Channel::set_message_handler`], or as a queue:
//! [`Channel::incoming`]) or frames as they arrive
//! ([`Channel::set_frame_handler`]), and may return a `Result`
//! whose error answers the MSG with an ERR. A connection made by
//! [`Connection::connect`] is released when the last handle to it is
//! dropped. Every handle of one connection, those handlers get included,
//! shares its [`Connection::id`]. A client made with
//! [`Connection::connect_with_registry`] serves profiles too: the
//! listener may start channels on it.
//!
//! TLS (RFC 3080 3.1) runs inside the session: a listener offers it with
//! [`Registry::set_tls`] (and may serve profiles only over it,
//! [`Registry::register_tls_only`], or require it,
//! [`Registry::require_tls`]; or decide per connection,
//! [`Registry::set_tls_with_connection`]); an initiator asks for it with
//! [`Connection::start_tls`]. The same connection then carries encrypted
//! bytes; [`Connection::tls_info`] tells the peer's certificate.
//!
//! SASL (RFC 3080 4.1) too: a listener offers mechanisms with
//! [`Registry::set_sasl`] and a handler that decides
//! ([`Registry::set_sasl_with_connection`]: one that also gets the
//! connection), and may serve profiles only to authenticated peers
//! ([`Registry::register_auth_only`]); an initiator authenticates with
//! [`Connection::start_sasl`], after TLS if it wants the credentials
//! encrypted. [`Connection::auth_info`] tells who authenticated.
//!
//! Besides TCP, a connection runs over any [`transport::Transport`]: a
//! Unix socket as it is, or any blocking reader and writer as a
//! [`transport::Split`] ([`Connection::connect_transport`],
//! [`Connection::accept_transport`], as in beep-tokio). A socket's read
//! timeouts are what lets a waiting thread read its reply itself; without
//! them the workers read, and a reply costs a thread switch more.
//!
//! ```no_run
//! use std::time::Duration;
//! use beep_blocking::{Connection, Options};
//! use beep_proto::{Message, xml::Profile};
//!
//! let conn = Connection::connect("127.0.0.1:10288", Options::default())?;
//! let channel = conn.open_channel(Profile::new("http://example.org/beep/echo"), None)?;
//! let reply = channel.request(Message::new("hello"), Duration::from_secs(5))?;
//! println!("{reply:?}");
//! conn.close()?;
//! # Ok::<(), beep_blocking::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod channel;
mod connection;
mod deadline;
mod error;
mod feeder;
mod incoming;
mod io;
mod listener;
mod pool;
mod profile;
mod reply;
mod roles;
pub mod transport;

pub use channel::Channel;
pub use connection::{Connection, DEFAULT_LISTENER_REASSEMBLY, Options};
pub use error::{CloseReason, Error};
pub use feeder::{Feeder, RequestFeeder};
pub use incoming::Incoming;
pub use listener::{Listener, ShutdownHandle};
pub use pool::{ChannelPool, PooledChannel};
pub use profile::{CloseDecision, CloseRequest, ProfileHandler, Registry, StartDecision};

pub use beep_proto::dispatch::{HandlerResult, Reply};

/// TLS (RFC 3080 3.1), run by the session itself: a listener offers it
/// with a [`TlsAcceptor`] ([`Registry::set_tls`]), an initiator asks for
/// it with a [`TlsClient`] ([`Connection::start_tls`]), and both read
/// what the handshake settled ([`TlsInfo`], [`Connection::tls_info`]).
///
/// ```
/// use beep_blocking::{TlsAcceptor, TlsClient, TlsError};
/// // A listener's: the certificate for each request (here none: refused).
/// let refuse_all = TlsAcceptor::with(|_request| None);
/// # drop(refuse_all);
/// // An initiator's: the authorities it trusts, and the name it asks for.
/// let client = TlsClient::with_ca_pem(b"not PEM", "beep.example.org");
/// assert!(matches!(client, Err(TlsError::Config(_))));
/// ```
pub use beep_proto::dispatch::TlsAcceptor;
pub use beep_proto::tls::{CertificateProblem, TlsClient, TlsError, TlsInfo, TlsServer};

/// SASL (RFC 3080 4.1), run by the session itself: a listener offers
/// [`Mechanism`]s and decides each [`AuthRequest`] with an [`AuthAnswer`]
/// ([`Registry::set_sasl`]), an initiator authenticates with a
/// [`SaslClient`] ([`Connection::start_sasl`]), and both read who
/// authenticated ([`AuthInfo`], [`Connection::auth_info`]).
///
/// ```
/// use beep_blocking::{AuthAnswer, AuthNeed, Mechanism, SaslClient};
/// let client = SaslClient::scram_sha256("bob", "secret");
/// assert_eq!(client.mechanism(), Mechanism::ScramSha256);
/// let decide = |need: AuthNeed| match need {
///     AuthNeed::Secret => AuthAnswer::Secret("secret".into()),
///     AuthNeed::Decide => AuthAnswer::Deny,
/// };
/// assert_eq!(decide(AuthNeed::Decide), AuthAnswer::Deny);
/// ```
pub use beep_proto::sasl::{AuthAnswer, AuthInfo, AuthNeed, AuthRequest, Mechanism, SaslClient};

/// Compiles and runs the README's examples as doc tests, so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
