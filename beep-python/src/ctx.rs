//! `vortex.Ctx`: what PyVortex keeps per context. Profiles registered with
//! `register_profile`, TLS and SASL settings of `vortex.tls.accept_tls`
//! and `vortex.sasl.accept_mech`, the listeners, and what
//! `wait_listeners` waits for.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use beep_blocking::{Mechanism, ShutdownHandle};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;

use crate::handler::PyHandler;

/// Locks `m`, whatever a panicking holder left (the data stays usable:
/// every critical section here leaves it consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The handlers of one registered profile (PyVortex `register_profile`).
pub(crate) struct ProfileEntry {
    /// Decides on start requests: `start(channel_num, conn, data)`.
    pub(crate) start: Option<PyHandler>,
    /// Decides on close requests: `close(channel_num, conn, data)`.
    pub(crate) close: Option<PyHandler>,
    /// Gets the messages: `frame_received(conn, channel, frame, data)`.
    pub(crate) frame_received: Option<PyHandler>,
}

/// The handlers of `vortex.tls.accept_tls`, or certificate files.
pub(crate) struct TlsHandlers {
    /// `accept_handler(conn, server_name, data)`: True to go on.
    pub(crate) accept: Option<PyHandler>,
    /// `cert_handler(conn, server_name, data)`: the certificate chain's path.
    pub(crate) cert: Option<PyHandler>,
    /// `key_handler(conn, server_name, data)`: the private key's path.
    pub(crate) key: Option<PyHandler>,
    /// The certificate chain's path when there is no certificate handler.
    pub(crate) cert_file: Option<String>,
    /// The private key's path when there is no key handler.
    pub(crate) key_file: Option<String>,
}

/// How `vortex.tls.start_tls` verifies listeners when the call does not
/// say (`vortex.tls.set_verification`).
#[derive(Clone, Default)]
pub(crate) struct TlsVerification {
    /// The CA certificates (PEM file) to trust instead of the system's.
    pub(crate) ca_file: Option<String>,
    /// Accept any certificate (PyVortex's behaviour; tests only).
    pub(crate) insecure: bool,
}

/// What a context holds, shared by its connections and listeners.
#[derive(Default)]
pub(crate) struct CtxInner {
    /// Registered profiles, in registration order.
    pub(crate) profiles: Mutex<Vec<(String, Arc<ProfileEntry>)>>,
    /// TLS offered by listeners created from now on.
    pub(crate) tls: Mutex<Option<Arc<TlsHandlers>>>,
    /// How clients verify listeners by default.
    pub(crate) tls_verification: Mutex<TlsVerification>,
    /// SASL mechanisms offered by listeners created from now on, each
    /// with its auth handler.
    pub(crate) sasl: Mutex<Vec<(Mechanism, Arc<PyHandler>)>>,
    /// The listeners, to stop at `exit`.
    pub(crate) listeners: Mutex<Vec<ShutdownHandle>>,
    /// Bumped by `unlock_listeners`; `wait_listeners` waits for a change.
    pub(crate) unlocks: Mutex<u64>,
    /// Signalled when `unlocks` changes.
    pub(crate) unlocked: Condvar,
    /// `set_data` / `get_data`.
    pub(crate) data: Mutex<HashMap<String, Py<PyAny>>>,
}

impl CtxInner {
    /// Wakes every `wait_listeners`.
    pub(crate) fn unlock(&self) {
        *lock(&self.unlocks) += 1;
        self.unlocked.notify_all();
    }

    /// Stops every listener (their connections are released).
    fn stop_listeners(&self) {
        let listeners = std::mem::take(&mut *lock(&self.listeners));
        for listener in listeners {
            listener.shutdown();
        }
    }
}

/// A PyVortex context (`vortex.Ctx`): profiles, TLS and SASL settings,
/// listeners. `init()` is accepted for compatibility and does nothing
/// that the constructor has not done; `exit()` stops the listeners. Also
/// a context manager: `with vortex.Ctx() as ctx:` exits at the end.
#[pyclass(frozen, name = "Ctx", module = "vortex")]
pub struct Ctx {
    pub(crate) inner: Arc<CtxInner>,
}

#[pymethods]
impl Ctx {
    #[new]
    fn new() -> Self {
        Ctx {
            inner: Arc::new(CtxInner::default()),
        }
    }

    /// PyVortex's initialisation: always succeeds (True).
    fn init(&self) -> bool {
        true
    }

    /// Stops the context's listeners and wakes `wait_listeners`.
    fn exit(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(move || {
            inner.stop_listeners();
            inner.unlock();
        });
    }

    /// Stores `value` under `key` (PyVortex `set_data`).
    fn set_data(&self, key: String, value: Py<PyAny>) {
        lock(&self.inner.data).insert(key, value);
    }

    /// The value stored under `key`, or None.
    fn get_data(&self, py: Python<'_>, key: &str) -> Py<PyAny> {
        lock(&self.inner.data)
            .get(key)
            .map_or_else(|| py.None(), |v| v.clone_ref(py))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.exit(py);
        false
    }
}

/// Registers a profile (PyVortex `vortex.register_profile`): listeners
/// and client connections (`vortex.Connection`) created afterwards
/// advertise and serve it (a listener may start channels of it on a
/// client). `start(channel_num, conn,
/// data)` and `close(channel_num, conn, data)` return True to accept;
/// `frame_received(conn, channel, frame, data)` gets each message.
#[pyfunction]
#[pyo3(signature = (ctx, uri, start=None, start_data=None, close=None, close_data=None, frame_received=None, frame_received_data=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn register_profile(
    py: Python<'_>,
    ctx: &Ctx,
    uri: String,
    start: Option<Py<PyAny>>,
    start_data: Option<Py<PyAny>>,
    close: Option<Py<PyAny>>,
    close_data: Option<Py<PyAny>>,
    frame_received: Option<Py<PyAny>>,
    frame_received_data: Option<Py<PyAny>>,
) -> PyResult<bool> {
    if uri.trim().is_empty() || uri.chars().any(char::is_whitespace) {
        return Err(crate::errors::usage(
            py,
            format!("{uri:?} is not a profile URI"),
        ));
    }
    let entry = Arc::new(ProfileEntry {
        start: PyHandler::new(py, start, start_data)?,
        close: PyHandler::new(py, close, close_data)?,
        frame_received: PyHandler::new(py, frame_received, frame_received_data)?,
    });
    let mut profiles = lock(&ctx.inner.profiles);
    match profiles.iter_mut().find(|(u, _)| *u == uri) {
        Some(slot) => slot.1 = entry,
        None => profiles.push((uri, entry)),
    }
    Ok(true)
}

/// Blocks until `unlock_listeners(ctx)` or `ctx.exit()` (PyVortex
/// `vortex.wait_listeners`), with the GIL released. Python's signal
/// handlers run every 100 ms: with `unlock_on_signal` a Ctrl-C
/// (`KeyboardInterrupt`) ends the wait and returns normally; without it,
/// the exception propagates.
#[pyfunction]
#[pyo3(signature = (ctx, unlock_on_signal=false))]
pub(crate) fn wait_listeners(py: Python<'_>, ctx: &Ctx, unlock_on_signal: bool) -> PyResult<()> {
    let inner = ctx.inner.clone();
    let start = *lock(&inner.unlocks);
    loop {
        let inner = inner.clone();
        let unlocked = py.detach(move || {
            let guard = lock(&inner.unlocks);
            let (guard, _) = inner
                .unlocked
                .wait_timeout_while(guard, Duration::from_millis(100), |n| *n == start)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *guard != start
        });
        if unlocked {
            return Ok(());
        }
        if let Err(e) = py.check_signals() {
            if unlock_on_signal && e.is_instance_of::<PyKeyboardInterrupt>(py) {
                return Ok(());
            }
            return Err(e);
        }
    }
}

/// Ends every `wait_listeners(ctx)` (PyVortex `vortex.unlock_listeners`);
/// the listeners keep serving until `ctx.exit()` or their `shutdown()`.
#[pyfunction]
pub(crate) fn unlock_listeners(ctx: &Ctx) {
    ctx.inner.unlock();
}
