//! How a connection behaves, and which runtime runs it.

use std::sync::Arc;
use std::time::Duration;

use beep_proto::Config;

use crate::error::Error;
use crate::runtime::{self, Runtime};

/// How a connection behaves.
///
/// ```
/// use std::time::Duration;
/// let options = beep_tokio::Options {
///     connect_timeout: Duration::from_secs(2),
///     ..Default::default()
/// };
/// assert_eq!(options.max_queued_output, 4 << 20);
/// assert_eq!(options.greeting_timeout, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// The session configuration (windows, limits, greeting extras). A
    /// listener's greeting profiles, the profiles it serves only over TLS
    /// and whether it requires TLS come from its registry.
    pub config: Config,
    /// Longest wait for the TCP connection and, as the initiator, for the
    /// peer's greeting.
    pub connect_timeout: Duration,
    /// Longest wait for the peer's answer to a channel start or close
    /// (then [`Error::Timeout`](crate::Error::Timeout)). Default 10 s.
    ///
    /// ```
    /// let patient = beep_tokio::Options {
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
    /// its sending side at once. Default 10 s.
    pub release_timeout: Duration,
    /// As the listener ([`Listener`](crate::Listener),
    /// [`Connection::accept_transport`](crate::Connection::accept_transport)):
    /// how long a connected peer may take to send its greeting. A peer
    /// that has not greeted by then is disconnected with
    /// [`CloseReason::Lost`](crate::CloseReason::Lost) ("no greeting
    /// within 30 s"), so that sockets which connect and stay silent do not
    /// pile up, each holding a connection's tasks and buffers. The
    /// default, 30 s, is far more than any honest peer needs (its greeting
    /// is its first bytes, sent as soon as it is connected: one round trip
    /// over the slowest link) and short enough that idle sockets are soon
    /// gone. `Duration::MAX` waits for ever. (The initiator's wait for the
    /// listener's greeting is bounded by `connect_timeout`.)
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = beep_tokio::Options {
    ///     greeting_timeout: Duration::from_secs(5),
    ///     ..Default::default()
    /// };
    /// # drop(options);
    /// ```
    pub greeting_timeout: Duration,
    /// How long a connection may stay idle before it is ended with
    /// [`CloseReason::Lost`](crate::CloseReason::Lost) ("idle for 600 s"):
    /// nothing received and nothing sent, and nothing under way (no
    /// request of either side awaiting its reply, however long a handler
    /// takes: see `beep_proto::Session::is_quiet`). Default
    /// `Duration::MAX`: never, as in LibVortex, whose applications keep
    /// idle connections in pools; a listener facing the open network sets
    /// it (and bounds the number of connections: see
    /// [`Listener`](crate::Listener)).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = beep_tokio::Options {
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
    /// let options = beep_tokio::Options {
    ///     shared_reassembly: Some(beep_proto::SharedBudget::new(64 << 20)),
    ///     ..Default::default()
    /// };
    /// # drop(options);
    /// ```
    pub shared_reassembly: Option<beep_proto::SharedBudget>,
    /// Octets of unsent output above which sending calls wait, so a peer
    /// that stops reading cannot make us buffer without bound.
    pub max_queued_output: usize,
    /// The runtime that runs the connection's tasks; `None` picks tokio
    /// when called inside a tokio runtime, else async-std (feature
    /// `async-std`).
    pub runtime: Option<Arc<dyn Runtime>>,
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
            runtime: None,
        }
    }
}

/// What a listener's connections may hold in unfinished messages all
/// together, unless [`Options::shared_reassembly`] says otherwise: four
/// times one session's `max_reassembly`, so a few peers sending large
/// messages at once are served, while 10,000 connections cannot hold
/// 64 MiB each.
pub const DEFAULT_LISTENER_REASSEMBLY: usize = 256 << 20;

impl Options {
    /// These options on a specific runtime.
    ///
    /// ```
    /// # #[cfg(feature = "async-std")] {
    /// let options = beep_tokio::Options::default().with_runtime(beep_tokio::runtime::AsyncStd);
    /// assert!(options.runtime.is_some());
    /// # }
    /// ```
    pub fn with_runtime(mut self, runtime: impl Runtime) -> Self {
        self.runtime = Some(Arc::new(runtime));
        self
    }

    pub(crate) fn resolve_runtime(&self) -> Result<Arc<dyn Runtime>, Error> {
        match &self.runtime {
            Some(runtime) => Ok(runtime.clone()),
            None => runtime::detect(),
        }
    }
}
