//! What a listener keeps between accepts: the connections it serves (each
//! forgotten the moment it ends, so an ended connection's socket and
//! buffers are freed at once, not at the next accept), and how long to
//! wait after an accept error before trying again.
//!
//! Both drivers' listeners use these, so the rule "survive EMFILE, free
//! what ended, keep serving" is written once.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The connections a listener serves, keyed by an id that the driver's
/// end-of-connection callback uses to remove its entry.
///
/// ```
/// use beep_proto::dispatch::Served;
/// let mut served = Served::new();
/// let id = served.insert("connection");
/// assert_eq!(served.len(), 1);
/// // The connection ended: its entry goes at once.
/// assert_eq!(served.remove(id), Some("connection"));
/// assert!(served.is_empty());
/// ```
#[derive(Debug)]
pub struct Served<C> {
    next: u64,
    open: HashMap<u64, C>,
}

impl<C> Default for Served<C> {
    fn default() -> Self {
        Served {
            next: 0,
            open: HashMap::new(),
        }
    }
}

impl<C> Served<C> {
    /// An empty set.
    ///
    /// ```
    /// let served: beep_proto::dispatch::Served<u8> = beep_proto::dispatch::Served::new();
    /// assert!(served.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a connection; the id removes it again. Ids are never reused,
    /// so a late removal cannot take a newer connection's entry.
    ///
    /// ```
    /// let mut served = beep_proto::dispatch::Served::new();
    /// assert_ne!(served.insert('a'), served.insert('b'));
    /// ```
    pub fn insert(&mut self, connection: C) -> u64 {
        let id = self.next;
        self.next += 1;
        self.open.insert(id, connection);
        id
    }

    /// Forgets the connection `id` (called when it ends); `None` if it was
    /// already taken by [`Served::take_all`] or removed.
    ///
    /// ```
    /// let mut served = beep_proto::dispatch::Served::new();
    /// let id = served.insert(1);
    /// assert_eq!(served.remove(id), Some(1));
    /// assert_eq!(served.remove(id), None);
    /// ```
    pub fn remove(&mut self, id: u64) -> Option<C> {
        self.open.remove(&id)
    }

    /// How many connections are served.
    ///
    /// ```
    /// let mut served = beep_proto::dispatch::Served::new();
    /// served.insert(());
    /// assert_eq!(served.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when no connection is served.
    ///
    /// ```
    /// assert!(beep_proto::dispatch::Served::<()>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Adds `connection` to a shared set and returns what removes it again:
    /// the driver runs that when the connection ends (at once if it already
    /// has), so an ended connection's socket and buffers go with its last
    /// handle instead of waiting for the next accept. The returned closure
    /// holds the set weakly and drops the entry outside the lock.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use beep_proto::dispatch::Served;
    /// let served = Arc::new(Mutex::new(Served::new()));
    /// let forget = Served::keep(&served, "connection");
    /// assert_eq!(served.lock().unwrap().len(), 1);
    /// forget(); // the connection ended
    /// assert!(served.lock().unwrap().is_empty());
    /// ```
    pub fn keep(set: &Arc<Mutex<Self>>, connection: C) -> impl FnOnce() + Send + 'static
    where
        C: Send + 'static,
    {
        let id = set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(connection);
        let set = Arc::downgrade(set);
        move || {
            if let Some(set) = set.upgrade() {
                let gone = set.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
                drop(gone);
            }
        }
    }

    /// Every served connection, leaving the set empty (a listener that
    /// stops releases them).
    ///
    /// ```
    /// let mut served = beep_proto::dispatch::Served::new();
    /// served.insert("a");
    /// assert_eq!(served.take_all(), vec!["a"]);
    /// assert!(served.is_empty());
    /// ```
    pub fn take_all(&mut self) -> Vec<C> {
        self.open.drain().map(|(_, c)| c).collect()
    }
}

/// The application's say in what a listener accepts and what it hears of
/// ended connections, kept the same way by both drivers: which peers to
/// accept, and who to tell (with the peer's address and the end reason
/// `R`) when a served connection ends.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use beep_proto::dispatch::{ListenerHooks, Served};
/// let mut hooks: ListenerHooks<&str> = ListenerHooks::default();
/// hooks.set_filter(|peer| peer.ip().is_loopback());
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// hooks.set_on_end(move |peer, reason| log.lock().unwrap().push((peer, *reason)));
/// let peer = "127.0.0.1:4000".parse().unwrap();
/// assert!(hooks.accepts(peer));
/// let served = Arc::new(Mutex::new(Served::new()));
/// let ended = hooks.serve(&served, "connection", peer);
/// ended(&"lost");
/// assert!(served.lock().unwrap().is_empty());
/// assert_eq!(*seen.lock().unwrap(), [(peer, "lost")]);
/// ```
pub struct ListenerHooks<R> {
    filter: Option<Arc<AcceptFilter>>,
    on_end: Option<Arc<EndObserver<R>>>,
    admitted: Arc<Mutex<Admitted>>,
}

/// The connections a listener serves, in all and by source address, with
/// their limits (see [`ListenerHooks::admit`]).
#[derive(Debug)]
struct Admitted {
    max_total: usize,
    max_per_address: usize,
    total: usize,
    by_address: std::collections::HashMap<std::net::IpAddr, usize>,
}

/// The most connections a listener serves at once, by default: a bound
/// on what idle connections cost (a blocking listener's 10,000 take
/// about 450 MB and 30,000 threads, from the 45 KiB and three threads one
/// idle connection was measured to cost).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The most connections a listener serves at once from one source
/// address, by default: one host cannot take the whole listener, while a
/// gateway with many clients behind it still gets 256.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// A connection counted by [`ListenerHooks::admit`]; dropping it (when the
/// connection ends) makes room for another.
#[derive(Debug)]
#[must_use = "the connection stops counting when this is dropped"]
pub struct Admission {
    admitted: Arc<Mutex<Admitted>>,
    address: std::net::IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        admitted.total = admitted.total.saturating_sub(1);
        if let std::collections::hash_map::Entry::Occupied(mut entry) =
            admitted.by_address.entry(self.address)
        {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

/// Why [`ListenerHooks::admit`] refused a connection: the reply code and
/// text of the `<error>` the driver sends in place of a greeting (RFC 3080
/// 2.4), with [`refusal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 421: the service is not available (to this peer, now).
    pub code: crate::reply_code::ReplyCode,
    /// Which limit it was.
    pub text: String,
}

type AcceptFilter = dyn Fn(SocketAddr) -> bool + Send + Sync;
type EndObserver<R> = dyn Fn(SocketAddr, &R) + Send + Sync;

impl<R> Default for ListenerHooks<R> {
    fn default() -> Self {
        ListenerHooks {
            filter: None,
            on_end: None,
            admitted: Arc::new(Mutex::new(Admitted {
                max_total: DEFAULT_MAX_CONNECTIONS,
                max_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
                total: 0,
                by_address: std::collections::HashMap::new(),
            })),
        }
    }
}

impl<R> Clone for ListenerHooks<R> {
    fn clone(&self) -> Self {
        ListenerHooks {
            filter: self.filter.clone(),
            on_end: self.on_end.clone(),
            admitted: self.admitted.clone(),
        }
    }
}

impl<R> std::fmt::Debug for ListenerHooks<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerHooks")
            .field("filter", &self.filter.is_some())
            .field("on_end", &self.on_end.is_some())
            .finish()
    }
}

impl<R: 'static> ListenerHooks<R> {
    /// Accepts only the peers for which `filter` returns true.
    ///
    /// ```
    /// let mut hooks: beep_proto::dispatch::ListenerHooks<()> = Default::default();
    /// hooks.set_filter(|peer| peer.port() != 9);
    /// assert!(!hooks.accepts("127.0.0.1:9".parse().unwrap()));
    /// ```
    pub fn set_filter(&mut self, filter: impl Fn(SocketAddr) -> bool + Send + Sync + 'static) {
        self.filter = Some(Arc::new(filter));
    }

    /// Calls `f` with the peer and the reason when a served connection ends.
    ///
    /// ```
    /// let mut hooks: beep_proto::dispatch::ListenerHooks<String> = Default::default();
    /// hooks.set_on_end(|peer, reason| eprintln!("{peer}: {reason}"));
    /// ```
    pub fn set_on_end(&mut self, f: impl Fn(SocketAddr, &R) + Send + Sync + 'static) {
        self.on_end = Some(Arc::new(f));
    }

    /// Sets the most connections served at once, in all and from one
    /// source address (defaults [`DEFAULT_MAX_CONNECTIONS`] and
    /// [`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`]).
    ///
    /// ```
    /// let mut hooks: beep_proto::dispatch::ListenerHooks<()> = Default::default();
    /// hooks.set_limits(2, 1);
    /// let a = hooks.admit("127.0.0.1:1".parse().unwrap()).unwrap();
    /// assert!(hooks.admit("127.0.0.1:2".parse().unwrap()).is_err(), "one per address");
    /// let b = hooks.admit("127.0.0.2:1".parse().unwrap()).unwrap();
    /// assert!(hooks.admit("127.0.0.3:1".parse().unwrap()).is_err(), "two in all");
    /// drop(a);
    /// assert!(hooks.admit("127.0.0.1:3".parse().unwrap()).is_ok());
    /// # drop(b);
    /// ```
    pub fn set_limits(&mut self, max_total: usize, max_per_address: usize) {
        let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        admitted.max_total = max_total;
        admitted.max_per_address = max_per_address;
    }

    /// Counts a connection from `peer`, or refuses it when the listener
    /// serves its most connections already, in all or from that address.
    /// The connection counts until the [`Admission`] is dropped.
    ///
    /// ```
    /// let hooks: beep_proto::dispatch::ListenerHooks<()> = Default::default();
    /// let admission = hooks.admit("127.0.0.1:1".parse().unwrap());
    /// assert!(admission.is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// A [`Refusal`] (421) naming the limit.
    pub fn admit(&self, peer: SocketAddr) -> Result<Admission, Refusal> {
        let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        let address = peer.ip();
        let from_address = admitted.by_address.get(&address).copied().unwrap_or(0);
        let refuse = |text: String| Refusal {
            code: crate::reply_code::ReplyCode::SERVICE_NOT_AVAILABLE,
            text,
        };
        if admitted.total >= admitted.max_total {
            return Err(refuse(format!(
                "too many connections: {} at most",
                admitted.max_total
            )));
        }
        if from_address >= admitted.max_per_address {
            return Err(refuse(format!(
                "too many connections from {address}: {} at most",
                admitted.max_per_address
            )));
        }
        admitted.total += 1;
        *admitted.by_address.entry(address).or_insert(0) += 1;
        Ok(Admission {
            admitted: self.admitted.clone(),
            address,
        })
    }

    /// True if a connection from `peer` is to be served.
    ///
    /// ```
    /// let hooks: beep_proto::dispatch::ListenerHooks<()> = Default::default();
    /// assert!(hooks.accepts("127.0.0.1:1".parse().unwrap()));
    /// ```
    pub fn accepts(&self, peer: SocketAddr) -> bool {
        self.filter.as_ref().is_none_or(|f| f(peer))
    }

    /// Keeps `connection` in `set` ([`Served::keep`]) and returns what the
    /// driver runs when it ends: forget it, then tell the application.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use beep_proto::dispatch::{ListenerHooks, Served};
    /// let served = Arc::new(Mutex::new(Served::new()));
    /// let ended = ListenerHooks::<()>::default().serve(&served, 1, "127.0.0.1:1".parse().unwrap());
    /// ended(&());
    /// assert!(served.lock().unwrap().is_empty());
    /// ```
    pub fn serve<C: Send + 'static>(
        &self,
        set: &Arc<Mutex<Served<C>>>,
        connection: C,
        peer: SocketAddr,
    ) -> impl FnOnce(&R) + Send + 'static {
        let forget = Served::keep(set, connection);
        let on_end = self.on_end.clone();
        move |reason: &R| {
            forget();
            if let Some(on_end) = on_end {
                on_end(peer, reason);
            }
        }
    }
}

/// How long a listener waits after a failed accept.
///
/// An error that concerns one connection (aborted or reset before it was
/// accepted, an interrupted call) is retried at once: the next connection
/// in the backlog is unaffected. Anything else is a shortage of resources
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM): the listening socket stays readable,
/// so retrying at once would spin. The wait starts at 5 ms and doubles up
/// to one second, and a successful accept resets it; meanwhile ended
/// connections free their descriptors and the listener serves again.
///
/// ```
/// use std::io::{Error, ErrorKind};
/// use std::time::Duration;
/// use beep_proto::dispatch::AcceptBackoff;
/// let mut backoff = AcceptBackoff::default();
/// let aborted = Error::from(ErrorKind::ConnectionAborted);
/// assert_eq!(backoff.failed(&aborted), Duration::ZERO);
/// let emfile = Error::other("Too many open files");
/// assert_eq!(backoff.failed(&emfile), Duration::from_millis(5));
/// assert_eq!(backoff.failed(&emfile), Duration::from_millis(10));
/// backoff.succeeded();
/// assert_eq!(backoff.failed(&emfile), Duration::from_millis(5));
/// ```
#[derive(Debug, Default, Clone)]
pub struct AcceptBackoff {
    /// Resource failures in a row.
    failures: u32,
}

impl AcceptBackoff {
    /// The first wait after a resource failure.
    pub const FIRST: Duration = Duration::from_millis(5);
    /// The longest wait.
    pub const LONGEST: Duration = Duration::from_secs(1);

    /// Records a failed accept; returns how long to wait before the next.
    ///
    /// ```
    /// use beep_proto::dispatch::AcceptBackoff;
    /// let mut backoff = AcceptBackoff::default();
    /// let emfile = std::io::Error::other("Too many open files");
    /// for _ in 0..20 {
    ///     assert!(backoff.failed(&emfile) <= AcceptBackoff::LONGEST);
    /// }
    /// ```
    pub fn failed(&mut self, error: &io::Error) -> Duration {
        use io::ErrorKind::*;
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
        ) {
            return Duration::ZERO;
        }
        let wait = Self::FIRST.saturating_mul(1 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        wait.min(Self::LONGEST)
    }

    /// Records a successful accept: the next failure waits the least again.
    ///
    /// ```
    /// let mut backoff = beep_proto::dispatch::AcceptBackoff::default();
    /// backoff.succeeded();
    /// ```
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// The bytes a listener sends a peer it refuses before serving it: an
/// `<error>` in place of its greeting (RFC 3080 2.4), after which it closes
/// the connection.
///
/// ```
/// use beep_proto::dispatch::{Refusal, refusal};
/// use beep_proto::reply_code::ReplyCode;
/// let bytes = refusal(&Refusal { code: ReplyCode::SERVICE_NOT_AVAILABLE, text: "busy".into() });
/// assert!(bytes.starts_with(b"ERR 0 0 . 0 "));
/// ```
pub fn refusal(refused: &Refusal) -> Vec<u8> {
    let mut session =
        crate::Session::refusing(crate::Config::default(), refused.code, &refused.text);
    let mut bytes = Vec::new();
    while let Some(chunk) = session.poll_transmit() {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_id_is_never_handed_out_again() {
        let mut served = Served::new();
        let first = served.insert(1);
        served.remove(first);
        let second = served.insert(2);
        assert_ne!(first, second);
        assert_eq!(served.remove(first), None);
        assert_eq!(served.remove(second), Some(2));
    }

    #[test]
    fn resource_failures_back_off_to_a_ceiling_and_reset_on_success() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let waits: Vec<_> = (0..12).map(|_| backoff.failed(&emfile)).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(waits[0], AcceptBackoff::FIRST);
        assert_eq!(*waits.last().unwrap(), AcceptBackoff::LONGEST);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), AcceptBackoff::FIRST);
    }

    #[test]
    fn a_failure_of_one_connection_is_retried_at_once() {
        let mut backoff = AcceptBackoff::default();
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(backoff.failed(&reset), Duration::ZERO);
        // ...and does not count towards the resource back-off.
        let emfile = io::Error::from_raw_os_error(24);
        assert_eq!(backoff.failed(&emfile), AcceptBackoff::FIRST);
    }
}
