//! `vortex.tls`: TLS (RFC 3080 3.1) as PyVortex offers it. A listener's
//! accept, certificate and key handlers (`accept_tls`), and a client's
//! `start_tls` (with `tls_notify`) and `start_tls_sync`; the session runs
//! TLS itself (beep-proto, rustls), so the connection stays the same
//! object.

use std::sync::Arc;

use beep_blocking::{Error, TlsClient, TlsInfo, TlsServer};
use beep_proto::TlsRequest;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::connection::{ConnInner, ConnRef, Connection, STATUS_ERROR, STATUS_OK};
use crate::ctx::{Ctx, TlsHandlers, TlsVerification, lock};
use crate::errors;
use crate::handler::{PyHandler, with_gil};

/// Asks one of the `accept_tls` handlers, `handler(conn, server_name,
/// data)`, with the Python connection that asks.
fn ask<'py>(
    py: Python<'py>,
    handler: &PyHandler,
    what: &str,
    conn: &Bound<'py, Connection>,
    server_name: Option<&str>,
) -> Option<Bound<'py, PyAny>> {
    let name = server_name.map_or_else(
        || py.None().into_bound(py),
        |n| PyString::new(py, n).into_any(),
    );
    handler.call(py, what, vec![conn.clone().into_any(), name])
}

/// The path a certificate or key handler returned (`str` or `os.PathLike`).
fn path(value: Option<Bound<'_, PyAny>>) -> Option<String> {
    let value = value?;
    if value.is_none() {
        return None;
    }
    let value = value
        .py()
        .import("os")
        .and_then(|os| os.getattr("fspath"))
        .and_then(|fspath| fspath.call1((value,)))
        .ok()?;
    value.extract().ok()
}

/// The certificate to present for a request on `conn`, or `None` to
/// refuse.
fn choose(
    handlers: &TlsHandlers,
    connref: &ConnRef,
    conn: &beep_blocking::Connection,
    server_name: Option<&str>,
) -> Option<TlsServer> {
    with_gil(|py| {
        let conn = match Connection::wrap(py, connref.resolve(py, conn)) {
            Ok(conn) => conn,
            Err(e) => {
                errors::report(py, "TLS accept handler", e);
                return None;
            }
        };
        if let Some(accept) = &handlers.accept {
            let accepted = ask(py, accept, "TLS accept handler", &conn, server_name)
                .is_some_and(|a| a.is_truthy().unwrap_or(false));
            if !accepted {
                return None;
            }
        }
        let cert = match &handlers.cert {
            Some(h) => path(ask(py, h, "TLS certificate handler", &conn, server_name)),
            None => handlers.cert_file.clone(),
        }?;
        let key = match &handlers.key {
            Some(h) => path(ask(py, h, "TLS key handler", &conn, server_name)),
            None => handlers.key_file.clone(),
        }?;
        match TlsServer::from_pem_files(&cert, &key) {
            Ok(server) => Some(server),
            Err(e) => {
                let err = errors::exception(
                    py,
                    "TLSError",
                    format!("cannot use {cert} and {key}: {e}"),
                    None,
                );
                errors::report(py, "TLS certificate handler", err);
                None
            }
        }
    })
    .flatten()
}

/// The driver's TLS decider for the context's TLS handlers, which get
/// the Python connection `connref` finds for the one that asks: a
/// request is refused when the accept handler says no, a handler raises,
/// or the certificate cannot be read.
pub(crate) fn chooser(
    handlers: Arc<TlsHandlers>,
    connref: Arc<ConnRef>,
) -> impl Fn(&beep_blocking::Connection, &TlsRequest) -> Option<TlsServer> + Send + Sync + 'static {
    move |conn, request| choose(&handlers, &connref, conn, request.server_name.as_deref())
}

/// Offers TLS on the listeners created from now on (PyVortex
/// `vortex.tls.accept_tls`): `accept_handler(conn, server_name, data)`
/// returns True to go on, `cert_handler` and `key_handler` return the
/// paths of the PEM certificate chain and private key (or give
/// `cert_file` and `key_file`). `conn` is the listener's
/// `vortex.Connection` that asks (the one its frame handlers get).
#[pyfunction]
#[pyo3(signature = (ctx, accept_handler=None, accept_handler_data=None, cert_handler=None, cert_handler_data=None, key_handler=None, key_handler_data=None, cert_file=None, key_file=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn accept_tls(
    py: Python<'_>,
    ctx: &Ctx,
    accept_handler: Option<Py<PyAny>>,
    accept_handler_data: Option<Py<PyAny>>,
    cert_handler: Option<Py<PyAny>>,
    cert_handler_data: Option<Py<PyAny>>,
    key_handler: Option<Py<PyAny>>,
    key_handler_data: Option<Py<PyAny>>,
    cert_file: Option<Bound<'_, PyAny>>,
    key_file: Option<Bound<'_, PyAny>>,
) -> PyResult<bool> {
    let handlers = TlsHandlers {
        accept: PyHandler::new(py, accept_handler, accept_handler_data)?,
        cert: PyHandler::new(py, cert_handler, cert_handler_data)?,
        key: PyHandler::new(py, key_handler, key_handler_data)?,
        cert_file: path(cert_file),
        key_file: path(key_file),
    };
    if (handlers.cert.is_none() && handlers.cert_file.is_none())
        || (handlers.key.is_none() && handlers.key_file.is_none())
    {
        return Err(errors::usage(
            py,
            "accept_tls needs a certificate and a key: cert_handler/key_handler or cert_file/key_file",
        ));
    }
    *lock(&ctx.inner.tls) = Some(Arc::new(handlers));
    Ok(true)
}

/// How `start_tls` verifies listeners when a call does not say: against
/// the CA certificates of `ca_file`, or not at all with `insecure=True`
/// (PyVortex's behaviour; for tests). The default verifies against the
/// system's CAs.
#[pyfunction]
#[pyo3(signature = (ctx, ca_file=None, insecure=false))]
pub(crate) fn set_verification(ctx: &Ctx, ca_file: Option<Bound<'_, PyAny>>, insecure: bool) {
    *lock(&ctx.inner.tls_verification) = TlsVerification {
        ca_file: path(ca_file),
        insecure,
    };
}

/// The client side's TLS configuration for `conn`.
fn client(
    conn: &ConnInner,
    server_name: Option<String>,
    ca_file: Option<Bound<'_, PyAny>>,
    insecure: Option<bool>,
) -> Result<TlsClient, Error> {
    let defaults = conn
        .ctx
        .as_ref()
        .map(|c| lock(&c.get().inner.tls_verification).clone())
        .unwrap_or_default();
    let ca_file = path(ca_file).or(defaults.ca_file);
    let insecure = insecure.unwrap_or(defaults.insecure);
    let name = server_name
        .or_else(|| conn.server_name.clone())
        .or_else(|| conn.handle.as_ref().and_then(|h| h.server_name()))
        .unwrap_or_else(|| conn.host().to_string());
    let tls = |e| Error::Closed(beep_blocking::CloseReason::Tls(e));
    if insecure {
        return TlsClient::dangerous_accept_any_certificate(&name).map_err(tls);
    }
    match ca_file {
        Some(file) => {
            let pem = std::fs::read(&file)?;
            TlsClient::with_ca_pem(&pem, &name).map_err(tls)
        }
        None => TlsClient::with_system_roots(&name).map_err(tls),
    }
}

/// What `tls_notify` and `start_tls_sync` report for a result.
fn status(result: &Result<TlsInfo, Error>) -> (i32, String) {
    match result {
        Ok(info) => (
            STATUS_OK,
            format!(
                "TLS active: {:?}, {:?}",
                info.protocol_version
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default(),
                info.cipher_suite
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_default()
            ),
        ),
        Err(e) => (STATUS_ERROR, e.to_string()),
    }
}

/// Starts TLS without waiting (PyVortex `vortex.tls.start_tls`):
/// `tls_notify(conn, status, status_msg, data)` runs once the handshake
/// is over and the peer greeted again (status `status_OK`), or it failed
/// (`status_ERROR`). Returns True once asked (False, and the reason in
/// `pop_channel_error()`, when it could not be). The listener is verified
/// against `ca_file`, the system's CAs, or not at all with `insecure=True`
/// (see `set_verification`).
#[pyfunction]
#[pyo3(signature = (conn, serverName=None, tls_notify=None, tls_notify_data=None, *, ca_file=None, insecure=None))]
#[allow(non_snake_case)]
pub(crate) fn start_tls(
    py: Python<'_>,
    conn: &Bound<'_, Connection>,
    serverName: Option<String>,
    tls_notify: Option<Py<PyAny>>,
    tls_notify_data: Option<Py<PyAny>>,
    ca_file: Option<Bound<'_, PyAny>>,
    insecure: Option<bool>,
) -> PyResult<bool> {
    let inner = conn.get().inner.clone();
    let notify = PyHandler::new(py, tls_notify, tls_notify_data)?;
    let started = client(&inner, serverName, ca_file, insecure).and_then(|client| {
        let handle = inner.handle()?.clone();
        let notified = inner.clone();
        py.detach(move || {
            handle.start_tls_with(client, move |result| {
                let Some(notify) = notify else { return };
                let (code, text) = status(&result);
                with_gil(|py| match Connection::wrap(py, notified) {
                    Ok(conn) => {
                        let args = (|| -> PyResult<_> {
                            Ok(vec![
                                conn.into_any(),
                                code.into_pyobject(py)?.into_any(),
                                PyString::new(py, &text).into_any(),
                            ])
                        })();
                        match args {
                            Ok(args) => {
                                notify.call(py, "tls_notify handler", args);
                            }
                            Err(e) => errors::report(py, "tls_notify handler", e),
                        }
                    }
                    Err(e) => errors::report(py, "tls_notify handler", e),
                });
            })
        })
    });
    match started {
        Ok(()) => Ok(true),
        Err(e) => {
            inner.push_error(&e);
            Ok(false)
        }
    }
}

/// Starts TLS and waits (GIL released): `(conn, status, status_msg)` as
/// PyVortex's `vortex.tls.start_tls_sync` returns it; `conn` is the same
/// connection, now over TLS when `status == status_OK`.
#[pyfunction]
#[pyo3(signature = (conn, serverName=None, *, ca_file=None, insecure=None))]
#[allow(non_snake_case)]
pub(crate) fn start_tls_sync<'py>(
    py: Python<'py>,
    conn: &Bound<'py, Connection>,
    serverName: Option<String>,
    ca_file: Option<Bound<'py, PyAny>>,
    insecure: Option<bool>,
) -> (Bound<'py, Connection>, i32, String) {
    let result = run(py, conn, serverName, ca_file, insecure);
    let (code, text) = status(&result);
    (conn.clone(), code, text)
}

/// Starts TLS and waits.
fn run(
    py: Python<'_>,
    conn: &Bound<'_, Connection>,
    server_name: Option<String>,
    ca_file: Option<Bound<'_, PyAny>>,
    insecure: Option<bool>,
) -> Result<TlsInfo, Error> {
    let inner = conn.get().inner.clone();
    let client = client(&inner, server_name, ca_file, insecure)?;
    let handle = inner.handle()?.clone();
    py.detach(move || handle.start_tls(client))
}

/// Starts TLS and waits, raising on failure (`vortex.TLSError`,
/// `vortex.RefusedError`, ...): the Pythonic twin of `start_tls_sync`.
/// Returns `info(conn)`.
#[pyfunction]
#[pyo3(signature = (conn, server_name=None, *, ca_file=None, insecure=None))]
pub(crate) fn secure<'py>(
    py: Python<'py>,
    conn: &Bound<'py, Connection>,
    server_name: Option<String>,
    ca_file: Option<Bound<'py, PyAny>>,
    insecure: Option<bool>,
) -> PyResult<Bound<'py, PyDict>> {
    match run(py, conn, server_name, ca_file, insecure) {
        Ok(info) => info_dict(py, &info),
        Err(e) => Err(errors::to_pyerr(py, &e)),
    }
}

/// True once TLS protects the connection (PyVortex `vortex.tls.is_enabled`).
#[pyfunction]
pub(crate) fn is_enabled(conn: &Connection) -> bool {
    conn.inner
        .handle
        .as_ref()
        .is_some_and(|h| h.is_tls_active())
}

/// What the TLS handshake settled, as a dict (`protocol_version`,
/// `cipher_suite`, `server_name`, `peer_certificates` as DER `bytes`), or
/// None before TLS.
#[pyfunction]
pub(crate) fn info<'py>(
    py: Python<'py>,
    conn: &Connection,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    match conn.inner.handle.as_ref().and_then(|h| h.tls_info()) {
        Some(info) => Ok(Some(info_dict(py, &info)?)),
        None => Ok(None),
    }
}

/// A dict for a [`TlsInfo`].
fn info_dict<'py>(py: Python<'py>, info: &TlsInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(
        "protocol_version",
        info.protocol_version.map(|v| format!("{v:?}")),
    )?;
    dict.set_item("cipher_suite", info.cipher_suite.map(|c| format!("{c:?}")))?;
    dict.set_item("server_name", info.server_name.clone())?;
    let certs: Vec<_> = info
        .peer_certificates
        .iter()
        .map(|c| PyBytes::new(py, c.as_ref()))
        .collect();
    dict.set_item("peer_certificates", certs)?;
    Ok(dict)
}
