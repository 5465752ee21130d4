//! Accepting connections: bind one or more addresses, serve the registered
//! profiles until told to stop, then release every session gracefully.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use beep_proto::dispatch::{AcceptBackoff, ListenerHooks, Served};
use event_listener::Event;
use futures_util::future::{join_all, select};

use crate::connection::Connection;
use crate::error::{CloseReason, Error};
use crate::options::Options;
use crate::profile::Registry;
use crate::runtime::{self, Acceptor, Runtime, ToAddrs};

/// A BEEP listener (PyVortex `create_listener`).
///
/// ```no_run
/// use beep_tokio::{Listener, Options, ProfileHandler, Registry};
/// # async fn run() -> Result<(), beep_tokio::Error> {
/// let mut registry = Registry::new();
/// registry.register("http://example.org/beep/echo", ProfileHandler::new(|channel, m| async move {
///     let _ = channel.reply_rpy(m.msgno, m.message).await;
/// }));
/// let listener = Listener::bind("127.0.0.1:0", registry, Options::default()).await?;
/// println!("listening on {:?}", listener.local_addrs());
/// listener.serve().await?;
/// # Ok(()) }
/// ```
pub struct Listener {
    sockets: Vec<Box<dyn Acceptor>>,
    addrs: Vec<SocketAddr>,
    registry: Registry,
    options: Options,
    runtime: Arc<dyn Runtime>,
    hooks: ListenerHooks<CloseReason>,
    stop: Arc<Stop>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// Stops a running [`Listener::serve`] from any task or thread.
///
/// ```no_run
/// # async fn run(listener: beep_tokio::Listener) {
/// let stop = listener.shutdown_handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(60));
///     stop.shutdown();
/// });
/// listener.serve().await.unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: Arc<Stop>,
}

#[derive(Debug)]
struct Stop {
    requested: AtomicBool,
    wake: Event,
}

impl Stop {
    async fn wait(&self) {
        loop {
            if self.requested.load(Ordering::Acquire) {
                return;
            }
            let listener = self.wake.listen();
            if self.requested.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }
}

impl ShutdownHandle {
    /// Asks the listener to stop accepting and release its sessions. Plain
    /// function, so a signal-handling thread can call it.
    ///
    /// ```no_run
    /// # fn run(stop: beep_tokio::ShutdownHandle) {
    /// stop.shutdown();
    /// # }
    /// ```
    pub fn shutdown(&self) {
        self.stop.requested.store(true, Ordering::Release);
        self.stop.wake.notify(usize::MAX);
    }
}

impl Listener {
    /// Binds every address `addrs` resolves to (e.g. IPv4 and IPv6,
    /// served together).
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use beep_tokio::{Listener, Options, Registry};
    /// # async fn run() -> Result<(), beep_tokio::Error> {
    /// let both: Vec<SocketAddr> = vec!["127.0.0.1:10288".parse().unwrap(), "[::1]:10288".parse().unwrap()];
    /// let listener = Listener::bind(both, Registry::new(), Options::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn bind(
        addrs: impl ToAddrs,
        registry: Registry,
        mut options: Options,
    ) -> Result<Self, Error> {
        options.config.validate()?;
        // One budget for all the connections it serves.
        options.shared_reassembly.get_or_insert_with(|| {
            beep_proto::SharedBudget::new(crate::options::DEFAULT_LISTENER_REASSEMBLY)
        });
        let runtime = options.resolve_runtime()?;
        let addrs = addrs.to_addrs().resolve(&*runtime).await?;
        let mut sockets = Vec::with_capacity(addrs.len());
        for addr in addrs {
            sockets.push(runtime.bind(addr).await?);
        }
        let addrs = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listener {
            sockets,
            addrs,
            registry,
            options,
            runtime,
            hooks: ListenerHooks::default(),
            stop: Arc::new(Stop {
                requested: AtomicBool::new(false),
                wake: Event::new(),
            }),
        })
    }

    /// The bound addresses (with the real port when bound to port 0).
    ///
    /// ```no_run
    /// # fn run(listener: beep_tokio::Listener) {
    /// let port = listener.local_addrs()[0].port();
    /// # }
    /// ```
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
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
    /// # fn run(mut listener: beep_tokio::Listener) {
    /// listener.set_max_connections(1_000, 16);
    /// # }
    /// ```
    pub fn set_max_connections(&mut self, total: usize, per_address: usize) {
        self.hooks.set_limits(total, per_address);
    }

    /// Accepts only the connections for which `filter` returns true; the
    /// others are closed at once.
    ///
    /// ```no_run
    /// # fn run(mut listener: beep_tokio::Listener) {
    /// listener.set_accept_filter(|peer| peer.ip().is_loopback());
    /// # }
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
    /// # fn run(mut listener: beep_tokio::Listener) {
    /// listener.on_connection_end(|peer, reason| {
    ///     if *reason != beep_tokio::CloseReason::Released {
    ///         eprintln!("{peer}: {reason}");
    ///     }
    /// });
    /// # }
    /// ```
    pub fn on_connection_end(
        &mut self,
        f: impl Fn(SocketAddr, &CloseReason) + Send + Sync + 'static,
    ) {
        self.hooks.set_on_end(f);
    }

    /// A handle that stops [`Listener::serve`].
    ///
    /// ```no_run
    /// # fn run(listener: beep_tokio::Listener) {
    /// let stop = listener.shutdown_handle();
    /// # }
    /// ```
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: self.stop.clone(),
        }
    }

    /// Serves until [`ShutdownHandle::shutdown`]; then stops accepting and
    /// releases each session, which completes the replies in flight (a
    /// session that does not release within the release timeout is shut
    /// down).
    ///
    /// A connection is forgotten as soon as it ends, so its socket and
    /// memory are freed then, not at the next accept. Accept errors are
    /// survived: a shortage of descriptors (EMFILE, ENFILE) backs off (see
    /// [`AcceptBackoff`]) and the listener serves again once connections
    /// have ended.
    ///
    /// ```no_run
    /// # async fn run(listener: beep_tokio::Listener) -> Result<(), beep_tokio::Error> {
    /// listener.serve().await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve(self) -> Result<(), Error> {
        let served: Arc<Mutex<Served<Connection>>> = Arc::default();
        {
            let accepting = join_all(
                self.sockets
                    .iter()
                    .map(|socket| self.accept_loop(&**socket, &served)),
            );
            select(pin!(accepting), pin!(self.stop.wait())).await;
        }
        drop(self.sockets);
        let open = served.lock().unwrap_or_else(|p| p.into_inner()).take_all();
        join_all(open.into_iter().map(|conn| async move {
            if conn.close().await.is_err() {
                conn.shutdown();
            }
        }))
        .await;
        Ok(())
    }

    async fn accept_loop(&self, socket: &dyn Acceptor, served: &Arc<Mutex<Served<Connection>>>) {
        let mut backoff = AcceptBackoff::default();
        loop {
            let (stream, peer) = match socket.accept().await {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(e) => {
                    // Out of descriptors and the like: ended connections
                    // free theirs meanwhile (they are forgotten as they
                    // end), so pause, then accept again.
                    let wait = backoff.failed(&e);
                    if !wait.is_zero() {
                        runtime::sleep(&*self.runtime, wait).await;
                    }
                    continue;
                }
            };
            if !self.hooks.accepts(peer) {
                continue;
            }
            let admission = match self.hooks.admit(peer) {
                Ok(admission) => admission,
                Err(refused) => {
                    self.runtime
                        .spawn(Box::pin(refuse(stream, refused, self.runtime.clone())));
                    continue;
                }
            };
            let conn = Connection::accept(
                stream,
                peer,
                self.registry.clone(),
                self.options.clone(),
                self.runtime.clone(),
            );
            // Forgotten as it ends: its socket and buffers go with it, and
            // it stops counting against the limits.
            let ended = self.hooks.serve(served, conn.clone(), peer);
            conn.on_close(move |reason| {
                drop(admission);
                ended(reason);
            });
        }
    }
}

/// Answers a peer beyond the listener's limits with an `<error>` in place
/// of a greeting (RFC 3080 2.4) and closes, within a second.
async fn refuse(
    mut stream: Box<dyn runtime::Transport>,
    refused: beep_proto::dispatch::Refusal,
    runtime: Arc<dyn Runtime>,
) {
    use futures_util::io::AsyncWriteExt;
    let bytes = beep_proto::dispatch::refusal(&refused);
    let answer = async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.close().await;
    };
    let _ = runtime::timeout(&*runtime, std::time::Duration::from_secs(1), answer).await;
}
