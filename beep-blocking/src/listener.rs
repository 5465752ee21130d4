//! Accepting connections: bind one or more addresses, serve the registered
//! profiles until told to stop, then release every session gracefully.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use beep_proto::dispatch::{AcceptBackoff, ListenerHooks, Served};

use crate::connection::{Connection, Options};
use crate::error::{CloseReason, Error};
use crate::profile::Registry;

/// A BEEP listener (PyVortex `create_listener`).
///
/// ```no_run
/// use beep_blocking::{Listener, Options, ProfileHandler, Registry};
/// let mut registry = Registry::new();
/// registry.register("http://example.org/beep/echo", ProfileHandler::new(|channel, m| {
///     let _ = channel.reply_rpy(m.msgno, m.message);
/// }));
/// let listener = Listener::bind("127.0.0.1:0", registry, Options::default())?;
/// println!("listening on {:?}", listener.local_addrs());
/// listener.serve()?;
/// # Ok::<(), beep_blocking::Error>(())
/// ```
///
/// # What a connection costs
///
/// Each connection has three threads of its own while it lives: two
/// workers (reading, and running handlers) and a writer; a fourth runs
/// only while a released session flushes its last bytes. Measured with
/// 200 and with 1,000 idle connections (each greeted, with an echo channel
/// and one 100-octet round trip behind it), on Linux x86-64 in a release
/// build, one idle connection costs the listener:
///
/// | | per idle connection |
/// |---|---|
/// | threads | 3 |
/// | resident memory (`Rss`, all of it private) | 45 KiB |
/// | of which thread stacks | about 10 KiB per thread |
/// | address space (`VmSize`) | 4.3 MiB (2 MiB per worker stack, 256 KiB writer stack) |
///
/// Before the read buffer started at 4 KiB (it doubles while reads fill
/// it, up to 64 KiB, and stays there) and the writer had a stack of its
/// own size, it was 105 KiB resident and 6.1 MiB of address space. So
/// 10,000 idle connections take 30,000 threads (mind `ulimit -u` and
/// `kernel.threads-max`) and about 450 MB; a connection that has carried
/// bulk traffic holds 60 KiB more. The measurement, which prints these
/// figures from `/proc/self`:
///
/// ```text
/// cargo test -p beep-blocking --release --test idle_cost -- --ignored --nocapture
/// ```
///
/// (`BEEP_IDLE_CONNECTIONS=1000` for another count.) When a thread
/// cannot be started, the connection is closed at once and the listener
/// goes on.
pub struct Listener {
    sockets: Vec<TcpListener>,
    registry: Registry,
    options: Options,
    hooks: ListenerHooks<CloseReason>,
    stop: Arc<Stop>,
}

/// Stops a running [`Listener::serve`] from another thread or a signal
/// handler's thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<Stop>,
}

struct Stop {
    requested: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    addrs: Vec<SocketAddr>,
    /// Wakes the accepting threads without a new descriptor: at the
    /// descriptor limit a shutdown must still get through.
    wakeup: wakeup::Wakeup,
}

impl ShutdownHandle {
    /// Asks the listener to stop accepting and release its sessions.
    ///
    /// Needs no descriptor, so it works when the process has none left.
    ///
    /// ```no_run
    /// # use beep_blocking::{Listener, Options, Registry};
    /// let listener = Listener::bind("127.0.0.1:0", Registry::new(), Options::default())?;
    /// let stop = listener.shutdown_handle();
    /// std::thread::spawn(move || stop.shutdown());
    /// listener.serve()?;
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn shutdown(&self) {
        self.stop.requested.store(true, Ordering::SeqCst);
        let _guard = self.stop.lock.lock();
        self.stop.wake.notify_all();
        self.stop.wakeup.wake(&self.stop.addrs);
    }
}

impl Listener {
    /// Binds every address `addrs` resolves to.
    pub fn bind(
        addrs: impl ToSocketAddrs,
        registry: Registry,
        options: Options,
    ) -> Result<Self, Error> {
        let addrs: Vec<SocketAddr> = addrs.to_socket_addrs()?.collect();
        Self::bind_all(&addrs, registry, options)
    }

    /// Binds several addresses (e.g. IPv4 and IPv6) served together.
    pub fn bind_all(
        addrs: &[SocketAddr],
        registry: Registry,
        mut options: Options,
    ) -> Result<Self, Error> {
        options.config.validate()?;
        // One budget for all the connections it serves.
        options.shared_reassembly.get_or_insert_with(|| {
            beep_proto::SharedBudget::new(crate::connection::DEFAULT_LISTENER_REASSEMBLY)
        });
        let sockets = addrs
            .iter()
            .map(TcpListener::bind)
            .collect::<Result<Vec<_>, _>>()?;
        let bound = sockets
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()?;
        let wakeup = wakeup::Wakeup::new(&sockets)?;
        Ok(Listener {
            sockets,
            registry,
            options,
            hooks: ListenerHooks::default(),
            stop: Arc::new(Stop {
                requested: AtomicBool::new(false),
                lock: Mutex::new(()),
                wake: Condvar::new(),
                addrs: bound,
                wakeup,
            }),
        })
    }

    /// The bound addresses (with the real port when bound to port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.stop.addrs.clone()
    }

    /// Serves at most `total` connections at once, and at most
    /// `per_address` from one source address (defaults 10,000 and 256:
    /// `beep_proto::dispatch::DEFAULT_MAX_CONNECTIONS` and
    /// `DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`). A peer beyond either is
    /// answered with an `<error>` (421, naming the limit) in place of a
    /// greeting (RFC 3080 2.4) and disconnected; it is not reported to
    /// [`Listener::on_connection_end`], since it was never served.
    ///
    /// ```no_run
    /// # use beep_blocking::{Listener, Options, Registry};
    /// let mut listener = Listener::bind("127.0.0.1:0", Registry::new(), Options::default())?;
    /// listener.set_max_connections(1_000, 16);
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn set_max_connections(&mut self, total: usize, per_address: usize) {
        self.hooks.set_limits(total, per_address);
    }

    /// Accepts only the connections for which `filter` returns true; the
    /// others are closed at once.
    ///
    /// ```no_run
    /// # use beep_blocking::{Listener, Options, Registry};
    /// let mut listener = Listener::bind("127.0.0.1:0", Registry::new(), Options::default())?;
    /// listener.set_accept_filter(|peer| peer.ip().is_loopback());
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn set_accept_filter(
        &mut self,
        filter: impl Fn(SocketAddr) -> bool + Send + Sync + 'static,
    ) {
        self.hooks.set_filter(filter);
    }

    /// Calls `f` with the peer's address and the reason whenever a served
    /// connection ends: to log why a peer was dropped (a protocol
    /// violation, a message above the limit, no greeting in time).
    ///
    /// ```no_run
    /// # use beep_blocking::{CloseReason, Listener, Options, Registry};
    /// let mut listener = Listener::bind("127.0.0.1:0", Registry::new(), Options::default())?;
    /// listener.on_connection_end(|peer, reason| {
    ///     if *reason != CloseReason::Released {
    ///         eprintln!("{peer}: {reason}");
    ///     }
    /// });
    /// # Ok::<(), beep_blocking::Error>(())
    /// ```
    pub fn on_connection_end(
        &mut self,
        f: impl Fn(SocketAddr, &CloseReason) + Send + Sync + 'static,
    ) {
        self.hooks.set_on_end(f);
    }

    /// A handle that stops [`Listener::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: self.stop.clone(),
        }
    }

    /// Serves until [`ShutdownHandle::shutdown`]; then stops accepting and
    /// releases each session, which completes the replies in flight.
    ///
    /// A connection is forgotten as soon as it ends, so its socket and
    /// memory are freed then, not at the next accept. Accept errors are
    /// survived: a shortage of descriptors (EMFILE, ENFILE) backs off (see
    /// [`AcceptBackoff`]) and the listener serves again once connections
    /// have ended.
    pub fn serve(self) -> Result<(), Error> {
        let served: Arc<Mutex<Served<Connection>>> = Arc::default();
        let mut threads = Vec::new();
        for (index, socket) in self.sockets.into_iter().enumerate() {
            let (registry, options) = (self.registry.clone(), self.options.clone());
            let (hooks, stop, served) = (self.hooks.clone(), self.stop.clone(), served.clone());
            threads.push(std::thread::spawn(move || {
                let accepting = Accepting {
                    socket: &socket,
                    index,
                    stop: &stop,
                };
                accepting.run(&registry, &options, &hooks, &served)
            }));
        }
        {
            let guard = self.stop.lock.lock().unwrap_or_else(|p| p.into_inner());
            let _guard = self
                .stop
                .wake
                .wait_while(guard, |_| !self.stop.requested.load(Ordering::SeqCst))
                .unwrap_or_else(|p| p.into_inner());
        }
        for t in threads {
            let _ = t.join();
        }
        let open = served.lock().unwrap_or_else(|p| p.into_inner()).take_all();
        let releases: Vec<_> = open
            .into_iter()
            .map(|conn| {
                std::thread::spawn(move || {
                    if conn.close().is_err() {
                        conn.shutdown();
                    }
                })
            })
            .collect();
        for r in releases {
            let _ = r.join();
        }
        Ok(())
    }
}

/// One accepting thread: its socket, and the index of its poller.
struct Accepting<'a> {
    socket: &'a TcpListener,
    index: usize,
    stop: &'a Stop,
}

impl Accepting<'_> {
    fn run(
        &self,
        registry: &Registry,
        options: &Options,
        hooks: &ListenerHooks<CloseReason>,
        served: &Arc<Mutex<Served<Connection>>>,
    ) {
        let mut backoff = AcceptBackoff::default();
        while !self.stop.requested.load(Ordering::SeqCst) {
            let (stream, peer) = match self.socket.accept() {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if !self.stop.wakeup.wait_acceptable(self.index) {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    // Out of descriptors and the like: ended connections
                    // free theirs meanwhile (they are forgotten as they
                    // end), so pause, then accept again.
                    let wait = backoff.failed(&e);
                    if !wait.is_zero() && !self.stop.wakeup.pause(self.index, wait) {
                        return;
                    }
                    continue;
                }
            };
            if !hooks.accepts(peer) {
                continue;
            }
            let admission = match hooks.admit(peer) {
                Ok(admission) => admission,
                Err(refused) => {
                    refuse(stream, &refused);
                    continue;
                }
            };
            // The listening socket is non-blocking (see `wakeup`); some
            // systems pass that on to accepted sockets.
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            if let Ok(conn) = Connection::accept(stream, registry.clone(), options.clone()) {
                // Forgotten as it ends: its socket and buffers go with it,
                // and it stops counting against the limits.
                let ended = hooks.serve(served, conn.clone(), peer);
                conn.on_close(move |reason| {
                    drop(admission);
                    ended(reason);
                });
            }
        }
    }
}

/// Answers a peer beyond the listener's limits with an `<error>` in place
/// of a greeting and closes: without blocking the accepting thread (the
/// few octets fit in a fresh socket's buffer, or are not sent at all).
fn refuse(stream: std::net::TcpStream, refused: &beep_proto::dispatch::Refusal) {
    use std::io::Write;
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&stream).write(&beep_proto::dispatch::refusal(refused));
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// Waiting for connections to accept, and waking the accepting threads.
///
/// On Unix each listening socket is non-blocking and registered with a
/// poller of its own together with a waker, both made at bind time; a
/// shutdown wakes them, so it needs no free descriptor. Elsewhere a
/// blocking accept is woken by connecting to the listener.
mod wakeup {
    use std::net::{SocketAddr, TcpListener};
    use std::time::{Duration, Instant};

    #[cfg(unix)]
    pub(super) struct Wakeup {
        pollers: Vec<std::sync::Mutex<Poller>>,
        wakers: Vec<mio::Waker>,
    }

    #[cfg(unix)]
    pub(super) struct Poller {
        poll: mio::Poll,
        events: mio::Events,
    }

    #[cfg(unix)]
    const SOCKET: mio::Token = mio::Token(0);
    #[cfg(unix)]
    const WAKE: mio::Token = mio::Token(1);

    #[cfg(unix)]
    impl Wakeup {
        pub(super) fn new(sockets: &[TcpListener]) -> std::io::Result<Self> {
            use std::os::fd::AsRawFd;
            let (mut pollers, mut wakers) = (Vec::new(), Vec::new());
            for socket in sockets {
                socket.set_nonblocking(true)?;
                let poll = mio::Poll::new()?;
                let fd = socket.as_raw_fd();
                poll.registry().register(
                    &mut mio::unix::SourceFd(&fd),
                    SOCKET,
                    mio::Interest::READABLE,
                )?;
                wakers.push(mio::Waker::new(poll.registry(), WAKE)?);
                pollers.push(std::sync::Mutex::new(Poller {
                    poll,
                    events: mio::Events::with_capacity(4),
                }));
            }
            Ok(Wakeup { pollers, wakers })
        }

        pub(super) fn wake(&self, _addrs: &[SocketAddr]) {
            for waker in &self.wakers {
                let _ = waker.wake();
            }
        }

        /// Waits until the `index`th socket may have a connection to accept
        /// (true) or a shutdown was asked for (false). Readiness is edge
        /// triggered: call only after an accept said `WouldBlock`.
        pub(super) fn wait_acceptable(&self, index: usize) -> bool {
            self.wait(index, None)
        }

        /// Sleeps `limit` unless a shutdown comes first (then false).
        pub(super) fn pause(&self, index: usize, limit: Duration) -> bool {
            match crate::deadline::after(limit) {
                Some(until) => self.wait(index, Some(until)),
                // Too long for a deadline: only a shutdown ends the pause.
                None => {
                    while self.wait(index, None) {}
                    false
                }
            }
        }

        fn wait(&self, index: usize, until: Option<Instant>) -> bool {
            let mut poller = self.pollers[index]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let Poller { poll, events } = &mut *poller;
            loop {
                let left = crate::deadline::left(until);
                if crate::deadline::passed(left) {
                    return true;
                }
                // An error (EINTR) counts as a spurious wake-up.
                let _ = poll.poll(events, left);
                if events.iter().any(|e| e.token() == WAKE) {
                    return false;
                }
                if until.is_none() {
                    return true;
                }
                // Pausing: a new connection does not cut the pause short
                // (its accept would fail the same way).
            }
        }
    }

    #[cfg(not(unix))]
    pub(super) struct Wakeup;

    #[cfg(not(unix))]
    impl Wakeup {
        pub(super) fn new(_sockets: &[TcpListener]) -> std::io::Result<Self> {
            Ok(Wakeup)
        }

        pub(super) fn wake(&self, addrs: &[SocketAddr]) {
            for addr in addrs {
                let _ = std::net::TcpStream::connect_timeout(addr, Duration::from_millis(200));
            }
        }

        pub(super) fn wait_acceptable(&self, _index: usize) -> bool {
            true
        }

        pub(super) fn pause(&self, _index: usize, limit: Duration) -> bool {
            std::thread::sleep(limit);
            true
        }
    }
}
