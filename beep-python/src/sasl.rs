//! `vortex.sasl`: SASL (RFC 3080 4.1) as PyVortex offers it. A listener's
//! `accept_mech` with its auth handler (True/False, or the user's
//! password for the mechanisms that prove knowledge of it), and a
//! client's `start_auth` (with `sasl_status`) and `start_auth_sync`.

use std::sync::Arc;

use beep_blocking::{AuthAnswer, AuthInfo, AuthNeed, AuthRequest, Error, Mechanism, SaslClient};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::connection::{ConnRef, Connection, STATUS_ERROR, STATUS_OK};
use crate::ctx::{Ctx, lock};
use crate::errors;
use crate::handler::{PyHandler, with_gil};

/// A mechanism from its profile URI (`vortex.sasl.PLAIN`, ...) or its
/// name in any case (`"plain"`, `"CRAM-MD5"`).
pub(crate) fn mechanism(name: &str) -> Option<Mechanism> {
    Mechanism::from_uri(name).or_else(|| {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    })
}

/// The `auth_props` dict PyVortex's auth handler gets.
fn props<'py>(py: Python<'py>, request: &AuthRequest) -> PyResult<Bound<'py, PyDict>> {
    let props = PyDict::new(py);
    props.set_item("mech", request.mechanism.uri())?;
    props.set_item("auth_id", request.authcid.clone())?;
    props.set_item("authorization_id", request.authzid.clone())?;
    props.set_item("password", request.password.clone())?;
    props.set_item("anonymous_token", request.anonymous_token.clone())?;
    props.set_item("serverName", request.server_name.clone())?;
    props.set_item("realm", py.None())?;
    props.set_item("tls", request.tls.is_some())?;
    props.set_item("return_password", request.need == AuthNeed::Secret)?;
    Ok(props)
}

/// The driver's answer for what the handler returned: True accepts, a
/// `str` is the user's password (for PLAIN it is compared with the one
/// sent), None is "no such user", anything false, an exception or no
/// interpreter denies.
fn answer(request: &AuthRequest, value: Option<Bound<'_, PyAny>>) -> AuthAnswer {
    let Some(value) = value else {
        return AuthAnswer::Deny;
    };
    if let Ok(secret) = value.cast::<PyString>() {
        let Ok(secret) = secret.to_cow() else {
            return AuthAnswer::Deny;
        };
        return match request.need {
            AuthNeed::Secret => AuthAnswer::Secret(secret.into_owned()),
            AuthNeed::Decide if request.password.as_deref() == Some(&*secret) => AuthAnswer::Accept,
            AuthNeed::Decide => AuthAnswer::Deny,
        };
    }
    if value.is_none() {
        return AuthAnswer::NoSuchUser;
    }
    match (request.need, value.is_truthy().unwrap_or(false)) {
        (AuthNeed::Decide, true) => AuthAnswer::Accept,
        _ => AuthAnswer::Deny,
    }
}

/// The driver's auth handler for the context's mechanisms: each request
/// goes to its mechanism's Python handler, `auth_handler(conn,
/// auth_props, user_data)`, with the Python connection `connref` finds
/// for the one that asks.
pub(crate) fn decider(
    mechanisms: Vec<(Mechanism, Arc<PyHandler>)>,
    connref: Arc<ConnRef>,
) -> impl Fn(&beep_blocking::Connection, &AuthRequest) -> AuthAnswer + Send + Sync + 'static {
    move |conn, request| {
        let Some((_, handler)) = mechanisms.iter().find(|(m, _)| *m == request.mechanism) else {
            return AuthAnswer::Deny;
        };
        with_gil(|py| {
            let args = (|| -> PyResult<_> {
                let conn = Connection::wrap(py, connref.resolve(py, conn))?;
                Ok(vec![conn.into_any(), props(py, request)?.into_any()])
            })();
            let value = match args {
                Ok(args) => handler.call(py, "SASL auth handler", args),
                Err(e) => {
                    errors::report(py, "SASL auth handler", e);
                    None
                }
            };
            answer(request, value)
        })
        .unwrap_or(AuthAnswer::Deny)
    }
}

/// Offers SASL mechanism `mech` on the listeners created from now on
/// (PyVortex `vortex.sasl.accept_mech`): `auth_handler(conn, auth_props,
/// user_data)` decides; `conn` is the listener's `vortex.Connection` the
/// attempt came on (the one its frame handlers get). False when the
/// mechanism is unknown.
#[pyfunction]
#[pyo3(signature = (ctx, mech, auth_handler=None, auth_handler_data=None))]
pub(crate) fn accept_mech(
    py: Python<'_>,
    ctx: &Ctx,
    mech: &str,
    auth_handler: Option<Py<PyAny>>,
    auth_handler_data: Option<Py<PyAny>>,
) -> PyResult<bool> {
    let Some(mechanism) = mechanism(mech).filter(|m| m.is_available()) else {
        return Ok(false);
    };
    let handler = match PyHandler::new(py, auth_handler, auth_handler_data)? {
        Some(h) => h,
        // No handler: every attempt is denied.
        None => PyHandler {
            func: py.eval(c"lambda *args: False", None, None)?.unbind(),
            data: py.None(),
        },
    };
    let mut sasl = lock(&ctx.inner.sasl);
    sasl.retain(|(m, _)| *m != mechanism);
    sasl.push((mechanism, Arc::new(handler)));
    Ok(true)
}

/// The client credentials for a start.
#[allow(clippy::too_many_arguments)]
fn client(
    py: Python<'_>,
    profile: &str,
    auth_id: Option<String>,
    authorization_id: Option<String>,
    password: Option<String>,
    anonymous_token: Option<String>,
    server_name: Option<String>,
) -> PyResult<SaslClient> {
    let Some(m) = mechanism(profile) else {
        return Err(errors::usage(
            py,
            format!("unknown SASL mechanism {profile:?}"),
        ));
    };
    let user = auth_id.unwrap_or_default();
    let password = password.unwrap_or_default();
    let mut client = match m {
        Mechanism::Anonymous => SaslClient::anonymous(anonymous_token.unwrap_or(user)),
        Mechanism::Plain => SaslClient::plain(user, password),
        Mechanism::CramMd5 => SaslClient::cram_md5(user, password),
        Mechanism::DigestMd5 => SaslClient::digest_md5(user, password),
        Mechanism::ScramSha256 => SaslClient::scram_sha256(user, password),
        Mechanism::ScramSha256Plus => SaslClient::scram_sha256_plus(user, password),
        Mechanism::External => SaslClient::external(),
        _ => {
            return Err(errors::usage(
                py,
                format!("SASL mechanism {profile:?} is not available"),
            ));
        }
    };
    if let Some(authzid) = authorization_id {
        client = client.with_authzid(authzid);
    }
    if let Some(name) = server_name {
        client = client.with_server_name(name);
    }
    Ok(client)
}

/// What `sasl_status` and `start_auth_sync` report for a result.
fn status(result: &Result<AuthInfo, Error>) -> (i32, String) {
    match result {
        Ok(info) => (
            STATUS_OK,
            format!(
                "authenticated as {} with {}",
                info.authcid,
                info.mechanism.name()
            ),
        ),
        Err(e) => (STATUS_ERROR, e.to_string()),
    }
}

/// Authenticates without waiting (PyVortex `vortex.sasl.start_auth`):
/// `auth_notify(conn, status, status_msg, auth_notify_data)` gets the
/// outcome (PyVortex's `sasl_status`). Returns True once started (False,
/// and the reason in `pop_channel_error()`, when it could not be).
#[pyfunction]
#[pyo3(signature = (conn, profile, auth_id=None, authorization_id=None, password=None, realm=None, anonymous_token=None, serverName=None, auth_notify=None, auth_notify_data=None))]
#[allow(clippy::too_many_arguments, non_snake_case)]
pub(crate) fn start_auth(
    py: Python<'_>,
    conn: &Bound<'_, Connection>,
    profile: &str,
    auth_id: Option<String>,
    authorization_id: Option<String>,
    password: Option<String>,
    realm: Option<String>,
    anonymous_token: Option<String>,
    serverName: Option<String>,
    auth_notify: Option<Py<PyAny>>,
    auth_notify_data: Option<Py<PyAny>>,
) -> PyResult<bool> {
    let _ = realm; // DIGEST-MD5's realm is the listener's serverName here.
    let client = client(
        py,
        profile,
        auth_id,
        authorization_id,
        password,
        anonymous_token,
        serverName,
    )?;
    let notify = PyHandler::new(py, auth_notify, auth_notify_data)?;
    let inner = conn.get().inner.clone();
    let notified = inner.clone();
    let started = inner.handle().cloned().and_then(|handle| {
        py.detach(move || {
            handle.start_sasl_with(client, move |result| {
                let Some(notify) = notify else { return };
                let (code, text) = status(&result);
                with_gil(|py| {
                    let args = (|| -> PyResult<_> {
                        Ok(vec![
                            Connection::wrap(py, notified)?.into_any(),
                            code.into_pyobject(py)?.into_any(),
                            PyString::new(py, &text).into_any(),
                        ])
                    })();
                    match args {
                        Ok(args) => {
                            notify.call(py, "sasl_status handler", args);
                        }
                        Err(e) => errors::report(py, "sasl_status handler", e),
                    }
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

/// Authenticates and waits (GIL released): `(status, status_msg)` as
/// PyVortex's `vortex.sasl.start_auth_sync` returns it.
#[pyfunction]
#[pyo3(signature = (conn, profile, auth_id=None, authorization_id=None, password=None, realm=None, anonymous_token=None, serverName=None))]
#[allow(clippy::too_many_arguments, non_snake_case)]
pub(crate) fn start_auth_sync(
    py: Python<'_>,
    conn: &Connection,
    profile: &str,
    auth_id: Option<String>,
    authorization_id: Option<String>,
    password: Option<String>,
    realm: Option<String>,
    anonymous_token: Option<String>,
    serverName: Option<String>,
) -> PyResult<(i32, String)> {
    let _ = realm;
    let client = client(
        py,
        profile,
        auth_id,
        authorization_id,
        password,
        anonymous_token,
        serverName,
    )?;
    let result = conn
        .inner
        .handle()
        .cloned()
        .and_then(|handle| py.detach(move || handle.start_sasl(client)));
    Ok(status(&result))
}

/// Authenticates and waits, raising on failure
/// (`vortex.AuthenticationError` for refused credentials): the Pythonic
/// twin of `start_auth_sync`. Returns `auth_info(conn)`.
#[pyfunction]
#[pyo3(signature = (conn, mech, auth_id=None, password=None, *, authorization_id=None, anonymous_token=None, server_name=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn authenticate<'py>(
    py: Python<'py>,
    conn: &Connection,
    mech: &str,
    auth_id: Option<String>,
    password: Option<String>,
    authorization_id: Option<String>,
    anonymous_token: Option<String>,
    server_name: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let client = client(
        py,
        mech,
        auth_id,
        authorization_id,
        password,
        anonymous_token,
        server_name,
    )?;
    let result = conn
        .inner
        .handle()
        .cloned()
        .and_then(|handle| py.detach(move || handle.start_sasl(client)));
    match result {
        Ok(info) => info_dict(py, &info),
        Err(Error::Refused { code, text }) => Err(errors::exception(
            py,
            "AuthenticationError",
            text,
            Some(code.get()),
        )),
        Err(e) => Err(errors::to_pyerr(py, &e)),
    }
}

/// True once a SASL exchange succeeded on the connection (PyVortex
/// `vortex.sasl.is_authenticated`).
#[pyfunction]
pub(crate) fn is_authenticated(conn: &Connection) -> bool {
    conn.inner
        .handle
        .as_ref()
        .is_some_and(|h| h.is_authenticated())
}

/// The profile URI of the mechanism that authenticated the connection, or
/// None (PyVortex `vortex.sasl.method_used`).
#[pyfunction]
pub(crate) fn method_used(conn: &Connection) -> Option<&'static str> {
    auth(conn).map(|info| info.mechanism.uri())
}

/// The authentication identity, or None (PyVortex `vortex.sasl.auth_id`).
#[pyfunction]
pub(crate) fn auth_id(conn: &Connection) -> Option<String> {
    auth(conn).map(|info| info.authcid)
}

/// The authorization identity granted, or None.
#[pyfunction]
pub(crate) fn authorization_id(conn: &Connection) -> Option<String> {
    auth(conn).and_then(|info| info.authzid)
}

/// Who authenticated, as a dict (`mech`, `auth_id`, `authorization_id`),
/// or None.
#[pyfunction]
pub(crate) fn auth_info<'py>(
    py: Python<'py>,
    conn: &Connection,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    auth(conn).map(|info| info_dict(py, &info)).transpose()
}

/// The connection's authentication.
fn auth(conn: &Connection) -> Option<AuthInfo> {
    conn.inner.handle.as_ref().and_then(|h| h.auth_info())
}

/// A dict for an [`AuthInfo`].
fn info_dict<'py>(py: Python<'py>, info: &AuthInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("mech", info.mechanism.uri())?;
    dict.set_item("auth_id", info.authcid.clone())?;
    dict.set_item("authorization_id", info.authzid.clone())?;
    Ok(dict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_are_named_by_uri_or_by_name_in_any_case() {
        assert_eq!(mechanism("plain"), Some(Mechanism::Plain));
        assert_eq!(
            mechanism("http://iana.org/beep/SASL/CRAM-MD5"),
            Some(Mechanism::CramMd5)
        );
        assert_eq!(mechanism("scram-sha-256"), Some(Mechanism::ScramSha256));
        assert_eq!(mechanism("OTP"), None);
    }
}
