//! Accepting connections: bind one or more addresses, serve the registered
//! profiles until told to stop, then release every session gracefully.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::connection::{Connection, Options};
use crate::error::Error;
use crate::profile::Registry;

type AcceptFilter = dyn Fn(SocketAddr) -> bool + Send + Sync;

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
pub struct Listener {
    sockets: Vec<TcpListener>,
    registry: Registry,
    options: Options,
    filter: Option<Arc<AcceptFilter>>,
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
}

impl ShutdownHandle {
    /// Asks the listener to stop accepting and release its sessions.
    pub fn shutdown(&self) {
        self.stop.requested.store(true, Ordering::SeqCst);
        let _guard = self.stop.lock.lock();
        self.stop.wake.notify_all();
        // Unblock the accepting threads with a connection of our own.
        for addr in &self.stop.addrs {
            let _ = TcpStream::connect_timeout(addr, Duration::from_millis(200));
        }
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
        options: Options,
    ) -> Result<Self, Error> {
        options.config.validate()?;
        let sockets = addrs
            .iter()
            .map(TcpListener::bind)
            .collect::<Result<Vec<_>, _>>()?;
        let bound = sockets
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listener {
            sockets,
            registry,
            options,
            filter: None,
            stop: Arc::new(Stop {
                requested: AtomicBool::new(false),
                lock: Mutex::new(()),
                wake: Condvar::new(),
                addrs: bound,
            }),
        })
    }

    /// The bound addresses (with the real port when bound to port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.stop.addrs.clone()
    }

    /// Accepts only the connections for which `filter` returns true.
    pub fn set_accept_filter(
        &mut self,
        filter: impl Fn(SocketAddr) -> bool + Send + Sync + 'static,
    ) {
        self.filter = Some(Arc::new(filter));
    }

    /// A handle that stops [`Listener::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: self.stop.clone(),
        }
    }

    /// Serves until [`ShutdownHandle::shutdown`]; then stops accepting and
    /// releases each session, which completes the replies in flight.
    pub fn serve(self) -> Result<(), Error> {
        let connections: Arc<Mutex<Vec<Connection>>> = Arc::default();
        let mut threads = Vec::new();
        for socket in self.sockets {
            let (registry, options) = (self.registry.clone(), self.options.clone());
            let (filter, stop, connections) =
                (self.filter.clone(), self.stop.clone(), connections.clone());
            threads.push(std::thread::spawn(move || {
                accept_loop(
                    &socket,
                    &registry,
                    &options,
                    filter.as_deref(),
                    &stop,
                    &connections,
                )
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
        let open: Vec<Connection> =
            std::mem::take(&mut *connections.lock().unwrap_or_else(|p| p.into_inner()));
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

fn accept_loop(
    socket: &TcpListener,
    registry: &Registry,
    options: &Options,
    filter: Option<&AcceptFilter>,
    stop: &Stop,
    connections: &Mutex<Vec<Connection>>,
) {
    loop {
        let accepted = socket.accept();
        if stop.requested.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, peer)) = accepted else {
            // Out of descriptors and the like: back off rather than spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if filter.is_some_and(|f| !f(peer)) {
            continue;
        }
        if let Ok(conn) = Connection::accept(stream, registry.clone(), options.clone()) {
            let mut all = connections.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(Connection::is_ok);
            all.push(conn);
        }
    }
}
