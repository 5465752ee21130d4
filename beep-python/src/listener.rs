//! `vortex.create_listener`: a listener serving the context's profiles
//! (and its TLS and SASL settings) with the Python handlers, and the
//! connections it serves as Python sees them.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use beep_blocking::{
    Error, Listener as RustListener, Options, ProfileHandler, Registry, ShutdownHandle,
    StartDecision,
};
use beep_proto::ReplyCode;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::channel;
use crate::connection::{ConnInner, ConnRef, Connection, port_text};
use crate::ctx::{Ctx, CtxInner, ProfileEntry, lock};
use crate::handler::with_gil;
use crate::{errors, sasl, tls};

/// Listener ids.
static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1);

/// The connections a listener serves, by their id
/// ([`beep_blocking::Connection::id`]), each with the state its Python
/// handles share (data, close handlers), forgotten when the connection
/// ends.
pub(crate) struct Served {
    ctx: Py<Ctx>,
    conns: Mutex<HashMap<u64, Arc<ConnInner>>>,
}

impl Served {
    /// The shared state of a connection this listener serves.
    pub(crate) fn resolve(
        self: &Arc<Self>,
        py: Python<'_>,
        conn: &beep_blocking::Connection,
    ) -> Arc<ConnInner> {
        let ctx = Some(self.ctx.clone_ref(py));
        let id = conn.id();
        let (inner, new) = {
            let mut conns = lock(&self.conns);
            match conns.get(&id) {
                Some(inner) => (inner.clone(), false),
                None => {
                    let inner = Arc::new(ConnInner::served(conn.clone(), ctx));
                    conns.insert(id, inner.clone());
                    (inner, true)
                }
            }
        };
        if new {
            // Forgotten when it ends (at once if it has: the table lock is
            // not held here), after its close handlers ran.
            let (served, weak) = (self.clone(), Arc::downgrade(&inner));
            conn.on_close(move |_reason| {
                let Some(inner) = weak.upgrade() else { return };
                {
                    let mut conns = lock(&served.conns);
                    if conns.get(&id).is_some_and(|i| Arc::ptr_eq(i, &inner)) {
                        conns.remove(&id);
                    }
                }
                inner.fire_on_close();
            });
        }
        inner
    }
}

/// A listener (what PyVortex's `create_listener` returns): check
/// `is_ok()` and `error_msg`; `host` and `port` tell where it listens
/// (the port the system chose for "0"). `shutdown()` stops it and
/// releases its connections.
#[pyclass(frozen, name = "Listener", module = "vortex")]
pub struct Listener {
    id: u64,
    host: String,
    port: String,
    error: Option<String>,
    stop: Option<ShutdownHandle>,
}

/// The address to bind: PyVortex's empty host or "0.0.0.0" is every IPv4
/// interface.
fn bind_addrs(host: &str, port: &str) -> Result<Vec<SocketAddr>, Error> {
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| Error::from(std::io::Error::other(format!("bad port {port:?}"))))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Answers a start request with the profile's start handler.
fn decide_start(
    entry: &ProfileEntry,
    connref: &ConnRef,
    conn: &beep_blocking::Connection,
    number: u32,
) -> StartDecision {
    let Some(start) = &entry.start else {
        return StartDecision::Accept(None);
    };
    let accepted = with_gil(|py| {
        let inner = connref.resolve(py, conn);
        let args = (|| -> PyResult<_> {
            Ok(vec![
                number.into_pyobject(py)?.into_any(),
                Connection::wrap(py, inner)?.into_any(),
            ])
        })();
        match args {
            Ok(args) => start
                .call(py, "channel start handler", args)
                .map(|answer| answer.is_truthy().unwrap_or(false)),
            Err(e) => {
                errors::report(py, "channel start handler", e);
                None
            }
        }
    })
    .flatten();
    match accepted {
        Some(true) => StartDecision::Accept(None),
        Some(false) => StartDecision::Deny(
            ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
            "channel start refused".into(),
        ),
        None => StartDecision::Deny(
            ReplyCode::TRANSACTION_FAILED,
            "the channel start handler failed".into(),
        ),
    }
}

/// The driver's registry for the context's profiles, with the Python
/// handlers: a listener's (see [`registry`]), or a client's, which serves
/// them to the listener. `connref` finds the Python connection of the
/// driver's each handler gets.
pub(crate) fn profiles_registry(
    py: Python<'_>,
    ctx: &CtxInner,
    connref: &Arc<ConnRef>,
) -> Registry {
    let mut registry = Registry::new();
    for (uri, entry) in lock(&ctx.profiles).iter() {
        let frame_received = entry.frame_received.as_ref().map(|h| h.clone_ref(py));
        let mut handler =
            ProfileHandler::new(channel::message_handler(frame_received, connref.clone()));
        let (start_entry, start_ref) = (entry.clone(), connref.clone());
        handler = handler.on_start_with_connection(move |conn, request, _offer| {
            decide_start(&start_entry, &start_ref, conn, request.channel)
        });
        if entry.close.is_some() {
            let (close_entry, close_ref) = (entry.clone(), connref.clone());
            handler = handler.on_close(move |chan| match &close_entry.close {
                Some(close) => {
                    channel::ask_close(close, &close_ref, chan.number(), chan.connection())
                }
                None => true,
            });
        }
        registry.register(uri.clone(), handler);
    }
    registry
}

/// The driver's registry for a listener: the context's profiles, TLS and
/// SASL, each handler given the Python connection it runs for.
fn registry(py: Python<'_>, ctx: &CtxInner, served: &Arc<Served>) -> Registry {
    let connref = Arc::new(ConnRef::Served(served.clone()));
    let mut registry = profiles_registry(py, ctx, &connref);
    if let Some(handlers) = lock(&ctx.tls).clone() {
        registry.set_tls_with_connection(tls::chooser(handlers, connref.clone()));
    }
    let mechanisms = lock(&ctx.sasl).clone();
    if !mechanisms.is_empty() {
        let offered: Vec<_> = mechanisms.iter().map(|(m, _)| *m).collect();
        registry.set_sasl_with_connection(&offered, sasl::decider(mechanisms, connref));
    }
    registry
}

/// Creates a listener serving the context's registered profiles
/// (PyVortex `vortex.create_listener`). Never raises for a bind failure:
/// check `is_ok()` and `error_msg`. `port` "0" lets the system choose
/// (read it back from `listener.port`).
#[pyfunction]
pub(crate) fn create_listener(
    py: Python<'_>,
    ctx: &Bound<'_, Ctx>,
    host: String,
    port: &Bound<'_, PyAny>,
) -> PyResult<Listener> {
    let port = port_text(port)?;
    let served = Arc::new(Served {
        ctx: ctx.clone().unbind(),
        conns: Mutex::default(),
    });
    let inner = ctx.get().inner.clone();
    let registry = registry(py, &inner, &served);
    let id = NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed);
    let bound = py.detach(|| {
        let addrs = bind_addrs(&host, &port)?;
        RustListener::bind(&addrs[..], registry, Options::default())
    });
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            return Ok(Listener {
                id,
                host,
                port,
                error: Some(e.to_string()),
                stop: None,
            });
        }
    };
    let addrs = listener.local_addrs();
    let stop = listener.shutdown_handle();
    let serving = std::thread::Builder::new()
        .name("vortex-listener".into())
        .spawn(move || listener.serve());
    if let Err(e) = serving {
        return Ok(Listener {
            id,
            host,
            port,
            error: Some(format!("no thread for the listener: {e}")),
            stop: None,
        });
    }
    lock(&inner.listeners).push(stop.clone());
    let first = addrs.first();
    Ok(Listener {
        id,
        host: first.map_or(host, |a| a.ip().to_string()),
        port: first.map_or(port, |a| a.port().to_string()),
        error: None,
        stop: Some(stop),
    })
}

#[pymethods]
impl Listener {
    /// True when it is listening.
    fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Why it could not listen ("" when it does).
    #[getter]
    fn error_msg(&self) -> String {
        self.error.clone().unwrap_or_default()
    }

    /// `status_OK` (2) when listening, else `status_ERROR` (1).
    #[getter]
    fn status(&self) -> i32 {
        if self.error.is_none() {
            crate::connection::STATUS_OK
        } else {
            crate::connection::STATUS_ERROR
        }
    }

    /// The address listened on.
    #[getter]
    fn host(&self) -> &str {
        &self.host
    }

    /// The port listened on, as a string.
    #[getter]
    fn port(&self) -> &str {
        &self.port
    }

    /// A number that tells listeners apart.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// `"master-listener"`, as PyVortex names it.
    #[getter]
    fn role(&self) -> &'static str {
        "master-listener"
    }

    /// Stops listening and releases the connections it serves.
    fn shutdown(&self, py: Python<'_>) {
        if let Some(stop) = self.stop.clone() {
            py.detach(move || stop.shutdown());
        }
    }

    /// The same as `shutdown()`.
    fn close(&self, py: Python<'_>) {
        self.shutdown(py);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.shutdown(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<vortex.Listener {}:{} {}>",
            self.host,
            self.port,
            if self.error.is_none() { "ok" } else { "failed" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyvortex_empty_host_listens_on_every_ipv4_interface() {
        let addrs = bind_addrs("", "1602").expect("an address");
        assert_eq!(addrs, vec![SocketAddr::from(([0, 0, 0, 0], 1602))]);
        assert!(bind_addrs("127.0.0.1", "no port").is_err());
    }
}
