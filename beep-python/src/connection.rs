//! `vortex.Connection`: a BEEP session (PyVortex `vortex.Connection`), its
//! channel errors (`pop_channel_error`), user data and close handlers.
//!
//! A Python `Connection` is a thin handle on a `ConnInner`: the one that
//! a client created, or the one the listener keeps for each connection it
//! serves, so that every handler of a served connection sees the same
//! data and close handlers.

use std::collections::{HashMap, VecDeque};
use std::net::ToSocketAddrs;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use beep_blocking::{Error, Options};
use beep_proto::xml::Profile;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::channel::{self, Channel};
use crate::ctx::{Ctx, lock};
use crate::errors;
use crate::handler::{PyHandler, with_gil};
use crate::listener::{self, Served};

/// PyVortex's `status_OK`.
pub(crate) const STATUS_OK: i32 = 2;
/// PyVortex's `status_ERROR`.
pub(crate) const STATUS_ERROR: i32 = 1;

/// The close handlers of a connection (`set_on_close`).
#[derive(Default)]
struct OnClose {
    next_id: u64,
    handlers: Vec<(u64, PyHandler)>,
    fired: bool,
}

/// What the Python handles of one connection share.
pub(crate) struct ConnInner {
    /// The driver's connection; `None` when connecting failed.
    pub(crate) handle: Option<beep_blocking::Connection>,
    /// The context it belongs to.
    pub(crate) ctx: Option<Py<Ctx>>,
    role: &'static str,
    host: String,
    port: String,
    /// The serverName given at creation, used for channel starts.
    pub(crate) server_name: Option<String>,
    /// Why connecting failed.
    failure: Option<String>,
    errors: Mutex<VecDeque<(u16, String)>>,
    data: Mutex<HashMap<String, Py<PyAny>>>,
    on_close: Mutex<OnClose>,
}

impl ConnInner {
    fn new(
        handle: Option<beep_blocking::Connection>,
        ctx: Option<Py<Ctx>>,
        role: &'static str,
        host: String,
        port: String,
    ) -> Self {
        ConnInner {
            handle,
            ctx,
            role,
            host,
            port,
            server_name: None,
            failure: None,
            errors: Mutex::default(),
            data: Mutex::default(),
            on_close: Mutex::default(),
        }
    }

    /// A connection a listener serves (its host and port are the peer's).
    pub(crate) fn served(handle: beep_blocking::Connection, ctx: Option<Py<Ctx>>) -> Self {
        let (host, port) = handle
            .peer_addr()
            .map_or((String::new(), String::new()), |a| {
                (a.ip().to_string(), a.port().to_string())
            });
        ConnInner::new(Some(handle), ctx, "listener", host, port)
    }

    /// The host connected to (the peer's address on a listener).
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The driver's [`beep_blocking::Connection::id`], which every handle
    /// of the connection shares (on both of its sides in this process:
    /// each side is a connection of its own); 0 for a connection that
    /// failed to connect.
    pub(crate) fn id(&self) -> u64 {
        self.handle.as_ref().map_or(0, |h| h.id())
    }

    /// True if `self` and `other` are the same connection.
    pub(crate) fn same(self: &Arc<Self>, other: &Arc<Self>) -> bool {
        match (&self.handle, &other.handle) {
            (Some(a), Some(b)) => a == b,
            _ => Arc::ptr_eq(self, other),
        }
    }

    /// The driver's connection, or the usage error of a failed one.
    pub(crate) fn handle(&self) -> Result<&beep_blocking::Connection, Error> {
        self.handle.as_ref().ok_or_else(|| {
            Error::Closed(beep_blocking::CloseReason::Lost(
                self.failure
                    .clone()
                    .unwrap_or_else(|| "not connected".into()),
            ))
        })
    }

    /// Records a channel error for `pop_channel_error`.
    pub(crate) fn push_error(&self, error: &Error) {
        let mut errors = lock(&self.errors);
        // Bounded: an application that never pops cannot grow it for ever.
        if errors.len() >= 256 {
            errors.pop_front();
        }
        errors.push_back(errors::channel_error(error));
    }

    /// Calls the close handlers, once, when the connection ended.
    pub(crate) fn fire_on_close(self: &Arc<Self>) {
        let handlers = {
            let mut on_close = lock(&self.on_close);
            on_close.fired = true;
            std::mem::take(&mut on_close.handlers)
        };
        if handlers.is_empty() {
            return;
        }
        with_gil(|py| {
            let Ok(conn) = Connection::wrap(py, self.clone()) else {
                return;
            };
            for (_, handler) in &handlers {
                handler.call(
                    py,
                    "connection close handler",
                    vec![conn.clone().into_any()],
                );
            }
        });
    }

    /// Calls the close handlers when the driver's connection ends (a
    /// client's: the hook holds no strong reference).
    fn watch_close(self: &Arc<Self>) {
        if let Some(handle) = &self.handle {
            let weak = Arc::downgrade(self);
            handle.on_close(move |_reason| {
                if let Some(inner) = weak.upgrade() {
                    inner.fire_on_close();
                }
            });
        }
    }

    /// Opens a channel, waiting for the peer's answer (GIL released).
    pub(crate) fn open(
        &self,
        py: Python<'_>,
        number: u32,
        profile: Profile,
        server_name: Option<String>,
    ) -> Result<beep_blocking::Channel, Error> {
        let handle = self.handle()?.clone();
        let server_name = server_name.or_else(|| self.server_name.clone());
        py.detach(move || {
            if number == 0 {
                handle.open_channel(profile, server_name)
            } else {
                handle.open_channel_number(number, vec![profile], server_name)
            }
        })
    }
}

/// The [`ConnInner`] of a connection the application makes, set once it
/// is made (handlers do not keep it alive).
pub(crate) type OwnedSlot = Arc<OnceLock<Weak<ConnInner>>>;

/// How a handler finds the [`ConnInner`] of the connection it runs for.
pub(crate) enum ConnRef {
    /// A connection the application made.
    Owned(OwnedSlot, Option<Py<Ctx>>),
    /// A connection a listener serves.
    Served(Arc<Served>),
}

impl ConnRef {
    /// The reference for handlers installed on `inner`'s channels.
    pub(crate) fn of(py: Python<'_>, inner: &Arc<ConnInner>) -> Arc<ConnRef> {
        let slot = OwnedSlot::default();
        let _ = slot.set(Arc::downgrade(inner));
        Arc::new(ConnRef::Owned(
            slot,
            inner.ctx.as_ref().map(|c| c.clone_ref(py)),
        ))
    }

    /// The shared state of `conn`, the driver's handle a handler got.
    pub(crate) fn resolve(
        &self,
        py: Python<'_>,
        conn: &beep_blocking::Connection,
    ) -> Arc<ConnInner> {
        match self {
            ConnRef::Owned(slot, ctx) => slot.get().and_then(Weak::upgrade).unwrap_or_else(|| {
                // The application let go of it (it is being released), or
                // does not hold it yet (a channel started by the peer as
                // soon as it greeted): a handle for this call, with the
                // same identity (the driver's id).
                Arc::new(ConnInner::new(
                    Some(conn.clone()),
                    ctx.as_ref().map(|c| c.clone_ref(py)),
                    "initiator",
                    String::new(),
                    String::new(),
                ))
            }),
            ConnRef::Served(served) => served.resolve(py, conn),
        }
    }
}

/// Options for a client connection with a connect timeout.
fn options(timeout: Option<f64>) -> Options {
    let mut options = Options::default();
    if let Some(t) = timeout.and_then(|t| Duration::try_from_secs_f64(t).ok()) {
        options.connect_timeout = t;
    }
    options
}

/// A port given as `str` or `int`.
pub(crate) fn port_text(port: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(port.str()?.to_string())
}

/// Connects (GIL released), serving the profiles registered on `ctx` to
/// the listener (PyVortex's clients do: the listener may start channels
/// of them); the connection, and the error if it failed.
pub(crate) fn connect(
    py: Python<'_>,
    ctx: &Bound<'_, Ctx>,
    host: String,
    port: String,
    server_name: Option<String>,
    timeout: Option<f64>,
) -> (Arc<ConnInner>, Option<Error>) {
    let ctx_ref = Some(ctx.clone().unbind());
    let slot = OwnedSlot::default();
    let connref = Arc::new(ConnRef::Owned(slot.clone(), Some(ctx.clone().unbind())));
    let registry = listener::profiles_registry(py, &ctx.get().inner, &connref);
    let target = (host.clone(), port.clone());
    let result = py.detach(move || {
        let port: u16 =
            target.1.trim().parse().map_err(|_| {
                Error::from(std::io::Error::other(format!("bad port {:?}", target.1)))
            })?;
        let addrs: Vec<_> = (target.0.as_str(), port).to_socket_addrs()?.collect();
        beep_blocking::Connection::connect_with_registry(&addrs[..], registry, options(timeout))
    });
    let (handle, error) = match result {
        Ok(handle) => (Some(handle), None),
        Err(e) => (None, Some(e)),
    };
    let mut inner = ConnInner::new(handle, ctx_ref, "initiator", host, port);
    inner.server_name = server_name;
    inner.failure = error.as_ref().map(|e| e.to_string());
    let inner = Arc::new(inner);
    let _ = slot.set(Arc::downgrade(&inner));
    inner.watch_close();
    (inner, error)
}

/// A BEEP session (PyVortex `vortex.Connection`).
///
/// `vortex.Connection(ctx, host, port)` connects and waits for the
/// listener's greeting with the GIL released; check `is_ok()` (and
/// `error_msg`), as in PyVortex, or use `vortex.connect(...)`, which
/// raises. The profiles registered on `ctx` are served on it too: the
/// listener may start channels of them, handled by their
/// `frame_received` (and `start` and `close`) handlers. Also a context
/// manager that closes the session at the end.
#[pyclass(frozen, name = "Connection", module = "vortex")]
pub struct Connection {
    pub(crate) inner: Arc<ConnInner>,
}

impl Connection {
    /// A Python handle on `inner`.
    pub(crate) fn wrap(py: Python<'_>, inner: Arc<ConnInner>) -> PyResult<Bound<'_, Connection>> {
        Bound::new(py, Connection { inner })
    }
}

/// Connects to a BEEP listener, raising on failure (the Pythonic twin of
/// `vortex.Connection(ctx, host, port)`).
#[pyfunction]
#[pyo3(signature = (ctx, host, port, server_name=None, timeout=None))]
pub(crate) fn connect_or_raise<'py>(
    py: Python<'py>,
    ctx: &Bound<'py, Ctx>,
    host: String,
    port: &Bound<'py, PyAny>,
    server_name: Option<String>,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, Connection>> {
    let (inner, error) = connect(py, ctx, host, port_text(port)?, server_name, timeout);
    match error {
        Some(e) => Err(errors::to_pyerr(py, &e)),
        None => Connection::wrap(py, inner),
    }
}

#[pymethods]
impl Connection {
    #[new]
    #[pyo3(signature = (ctx, host, port, serverName=None, *, timeout=None))]
    #[allow(non_snake_case)]
    fn py_new(
        py: Python<'_>,
        ctx: &Bound<'_, Ctx>,
        host: String,
        port: &Bound<'_, PyAny>,
        serverName: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let (inner, _) = connect(py, ctx, host, port_text(port)?, serverName, timeout);
        Ok(Connection { inner })
    }

    /// True while the session is usable.
    fn is_ok(&self) -> bool {
        self.inner.handle.as_ref().is_some_and(|h| h.is_ok())
    }

    /// `status_OK` (2) while usable, else `status_ERROR` (1).
    #[getter]
    fn status(&self) -> i32 {
        if self.is_ok() {
            STATUS_OK
        } else {
            STATUS_ERROR
        }
    }

    /// Why the connection failed or ended ("" while it is fine).
    #[getter]
    fn error_msg(&self) -> String {
        if let Some(failure) = &self.inner.failure {
            return failure.clone();
        }
        self.inner
            .handle
            .as_ref()
            .and_then(|h| h.close_reason())
            .map_or_else(String::new, |r| r.to_string())
    }

    /// A number that tells connections apart: the same for every handle
    /// of one connection (the one a client made, the ones its handlers
    /// get), never reused within the process; 0 when connecting failed.
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id()
    }

    /// `"initiator"` for a connection made here, `"listener"` for one a
    /// listener accepted.
    #[getter]
    fn role(&self) -> &'static str {
        self.inner.role
    }

    /// The host connected to (the peer's address on a listener).
    #[getter]
    fn host(&self) -> &str {
        &self.inner.host
    }

    /// The port connected to, as a string (the peer's on a listener).
    #[getter]
    fn port(&self) -> &str {
        &self.inner.port
    }

    /// The context.
    #[getter]
    fn ctx(&self, py: Python<'_>) -> Py<PyAny> {
        self.inner
            .ctx
            .as_ref()
            .map_or_else(|| py.None(), |c| c.clone_ref(py).into_any())
    }

    /// The profile URIs the peer's greeting offers.
    #[getter]
    fn remote_profiles(&self) -> Vec<String> {
        self.inner.handle.as_ref().map_or_else(Vec::new, |h| {
            h.peer_greeting().profiles.into_iter().collect()
        })
    }

    /// Opens a channel (PyVortex `open_channel`): `number` 0 picks the
    /// next free one. Waits for the peer and returns the `Channel`, or
    /// None after a failure, whose code and text `pop_channel_error()`
    /// gives. With `on_channel(number, channel, conn, data)` it returns
    /// None at once and the handler gets the channel (or -1 and None).
    /// `frame_received(conn, channel, frame, data)` gets the channel's
    /// messages; `close(channel_num, conn, data)` decides on the peer's
    /// close requests.
    #[pyo3(signature = (number, profile, frame_received=None, frame_received_data=None, on_channel=None, on_channel_data=None, close=None, close_data=None, serverName=None, profile_content=None, encoding=None))]
    #[allow(clippy::too_many_arguments, non_snake_case)]
    fn open_channel<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        number: u32,
        profile: String,
        frame_received: Option<Py<PyAny>>,
        frame_received_data: Option<Py<PyAny>>,
        on_channel: Option<Py<PyAny>>,
        on_channel_data: Option<Py<PyAny>>,
        close: Option<Py<PyAny>>,
        close_data: Option<Py<PyAny>>,
        serverName: Option<String>,
        profile_content: Option<Bound<'py, PyAny>>,
        encoding: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, Channel>>> {
        let _ = encoding; // The encoding of the piggyback is chosen by the driver.
        let inner = slf.get().inner.clone();
        let mut start = Profile::new(profile);
        if let Some(content) = profile_content.filter(|c| !c.is_none()) {
            start = start.with_content(crate::frame::payload(py, &content, None)?.into_body());
        }
        let handlers = channel::Handlers {
            frame_received: PyHandler::new(py, frame_received, frame_received_data)?,
            close: PyHandler::new(py, close, close_data)?,
        };
        if let Some(on_channel) = PyHandler::new(py, on_channel, on_channel_data)? {
            let spawned = std::thread::Builder::new()
                .name("vortex-open-channel".into())
                .spawn(move || open_async(inner, number, start, serverName, handlers, on_channel));
            if let Err(e) = spawned {
                return Err(errors::to_pyerr(py, &Error::from(e)));
            }
            return Ok(None);
        }
        match inner.open(py, number, start, serverName) {
            Ok(chan) => Ok(Some(channel::adopt(py, chan, inner, handlers)?)),
            Err(e) => {
                inner.push_error(&e);
                Ok(None)
            }
        }
    }

    /// Opens a channel like `open_channel`, raising on failure
    /// (`vortex.RefusedError` with the peer's code, ...): the Pythonic
    /// twin.
    #[pyo3(signature = (profile, number=0, *, frame_received=None, frame_received_data=None, close=None, close_data=None, server_name=None, content=None))]
    #[allow(clippy::too_many_arguments)]
    fn new_channel<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        profile: String,
        number: u32,
        frame_received: Option<Py<PyAny>>,
        frame_received_data: Option<Py<PyAny>>,
        close: Option<Py<PyAny>>,
        close_data: Option<Py<PyAny>>,
        server_name: Option<String>,
        content: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Channel>> {
        let inner = slf.get().inner.clone();
        let mut start = Profile::new(profile);
        if let Some(content) = content.filter(|c| !c.is_none()) {
            start = start.with_content(crate::frame::payload(py, &content, None)?.into_body());
        }
        let handlers = channel::Handlers {
            frame_received: PyHandler::new(py, frame_received, frame_received_data)?,
            close: PyHandler::new(py, close, close_data)?,
        };
        match inner.open(py, number, start, server_name) {
            Ok(chan) => channel::adopt(py, chan, inner, handlers),
            Err(e) => Err(errors::to_pyerr(py, &e)),
        }
    }

    /// The oldest channel error not yet popped, as `(code, text)`, or None.
    fn pop_channel_error(&self) -> Option<(u16, String)> {
        lock(&self.inner.errors).pop_front()
    }

    /// Releases the session (waits for the peer's agreement, GIL
    /// released). True once closed.
    fn close(&self, py: Python<'_>) -> bool {
        let Ok(handle) = self.inner.handle() else {
            return false;
        };
        let handle = handle.clone();
        match py.detach(move || handle.close()) {
            Ok(()) => true,
            Err(e) => {
                self.inner.push_error(&e);
                false
            }
        }
    }

    /// Ends the connection at once, without the release handshake.
    fn shutdown(&self, py: Python<'_>) {
        if let Some(handle) = self.inner.handle.clone() {
            py.detach(move || handle.shutdown());
        }
    }

    /// Adds a handler run once when the connection ends, whatever the
    /// cause: `on_close(conn, data)`. Returns an id for `remove_on_close`.
    #[pyo3(signature = (on_close, on_close_data=None))]
    fn set_on_close(
        slf: &Bound<'_, Self>,
        py: Python<'_>,
        on_close: Py<PyAny>,
        on_close_data: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        let Some(handler) = PyHandler::new(py, Some(on_close), on_close_data)? else {
            return Err(errors::usage(py, "on_close must be callable"));
        };
        let inner = &slf.get().inner;
        let mut on_close = lock(&inner.on_close);
        on_close.next_id += 1;
        let id = on_close.next_id;
        if on_close.fired {
            drop(on_close);
            handler.call(py, "connection close handler", vec![slf.clone().into_any()]);
        } else {
            on_close.handlers.push((id, handler));
        }
        Ok(id)
    }

    /// Removes a close handler; True if it was there.
    fn remove_on_close(&self, id: u64) -> bool {
        let mut on_close = lock(&self.inner.on_close);
        let before = on_close.handlers.len();
        on_close.handlers.retain(|(i, _)| *i != id);
        on_close.handlers.len() != before
    }

    /// Stores `value` under `key` on this connection.
    fn set_data(&self, key: String, value: Py<PyAny>) {
        lock(&self.inner.data).insert(key, value);
    }

    /// The value stored under `key`, or None.
    fn get_data(&self, py: Python<'_>, key: &str) -> Py<PyAny> {
        lock(&self.inner.data)
            .get(key)
            .map_or_else(|| py.None(), |v| v.clone_ref(py))
    }

    /// Creates a channel pool (PyVortex `channel_pool_new`, see
    /// `vortex.ChannelPool`).
    #[pyo3(signature = (*args, **kwargs))]
    fn channel_pool_new<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut all = vec![slf.clone().into_any()];
        all.extend(args.iter());
        py.import("vortex._pool")?
            .getattr("channel_pool_new")?
            .call(PyTuple::new(py, all)?, kwargs)
    }

    /// Accepted for compatibility; Python counts references itself.
    fn incref(&self) -> bool {
        true
    }

    /// Accepted for compatibility; Python counts references itself.
    fn decref(&self) -> bool {
        true
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        if self.is_ok() && !self.close(py) {
            self.shutdown(py);
        }
        false
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Connection>()
            .is_ok_and(|o| o.get().inner.same(&self.inner))
    }

    fn __hash__(&self) -> u64 {
        self.inner.id()
    }

    fn __repr__(&self) -> String {
        format!(
            "<vortex.Connection id={} {} {}:{} {}>",
            self.inner.id(),
            self.inner.role,
            self.inner.host,
            self.inner.port,
            if self.is_ok() { "ok" } else { "closed" }
        )
    }
}

/// `open_channel` with `on_channel`: opens on a thread of its own, then
/// calls the handler with the GIL.
fn open_async(
    inner: Arc<ConnInner>,
    number: u32,
    profile: Profile,
    server_name: Option<String>,
    handlers: channel::Handlers,
    on_channel: PyHandler,
) {
    let server_name = server_name.or_else(|| inner.server_name.clone());
    let opened = inner.handle().and_then(|h| {
        if number == 0 {
            h.open_channel(profile, server_name)
        } else {
            h.open_channel_number(number, vec![profile], server_name)
        }
    });
    with_gil(|py| {
        let conn = match Connection::wrap(py, inner.clone()) {
            Ok(conn) => conn,
            Err(e) => return errors::report(py, "on_channel handler", e),
        };
        let (num, chan) = match opened {
            Ok(chan) => {
                let num = chan.number() as i64;
                match channel::adopt(py, chan, inner.clone(), handlers) {
                    Ok(chan) => (num, chan.into_any()),
                    Err(e) => return errors::report(py, "on_channel handler", e),
                }
            }
            Err(e) => {
                inner.push_error(&e);
                (-1, py.None().into_bound(py))
            }
        };
        let Ok(num) = num.into_pyobject(py);
        let num = num.into_any();
        on_channel.call(py, "on_channel handler", vec![num, chan, conn.into_any()]);
    });
}
