//! Errors both ways: driver errors as typed Python exceptions (the classes
//! live in `vortex/_errors.py`, so they can inherit from Python's own
//! `ValueError`, `TimeoutError` and `ConnectionError`), as PyVortex's
//! `(code, text)` channel errors, and Python exceptions raised by handlers
//! reported through the `logging` module.

use beep_blocking::{CloseReason, Error};
use beep_proto::ReplyCode;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The Python module that defines the exception classes.
const ERRORS_MODULE: &str = "vortex._errors";

/// Builds an instance of the exception class `name` of `vortex._errors`
/// with `text` and `code` (falls back to `RuntimeError` when the module
/// cannot be imported, e.g. when the native module is used alone).
pub(crate) fn exception(py: Python<'_>, name: &str, text: String, code: Option<u16>) -> PyErr {
    let class = py
        .import(ERRORS_MODULE)
        .and_then(|module| module.getattr(name));
    match class {
        Ok(class) => match class.call1((text.clone(), code)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        },
        Err(_) => PyRuntimeError::new_err(text),
    }
}

/// `vortex.UsageError`: a call that does not fit (bad arguments, a closed
/// connection, a channel number in use).
pub(crate) fn usage(py: Python<'_>, text: impl Into<String>) -> PyErr {
    exception(py, "UsageError", text.into(), None)
}

/// The exception class that stands for `error`, and the reply code it
/// carries.
fn class_of(error: &Error) -> &'static str {
    match error {
        Error::Protocol(_) => "ProtocolError",
        Error::Usage(_) | Error::QueueFull { .. } => "UsageError",
        Error::Refused { .. } => "RefusedError",
        Error::Timeout => "TimeoutError",
        Error::Closed(CloseReason::Tls(_)) => "TLSError",
        Error::Closed(CloseReason::Violation(_)) => "ProtocolError",
        Error::Io(_)
        | Error::Closed(_)
        | Error::ChannelClosed
        | Error::TuningReset
        | Error::NoRuntime => "ConnectionClosedError",
        _ => "VortexError",
    }
}

/// The typed Python exception for a driver error.
pub(crate) fn to_pyerr(py: Python<'_>, error: &Error) -> PyErr {
    let (code, text) = channel_error(error);
    exception(py, class_of(error), text, Some(code))
}

/// PyVortex's channel error for a driver error: the peer's reply code and
/// diagnostic when it refused, else a reply code of RFC 3080 section 8
/// that says what went wrong locally (421 closed, 451 aborted, 553 bad
/// parameter) with the error's text.
pub(crate) fn channel_error(error: &Error) -> (u16, String) {
    let code = match error {
        Error::Refused { code, text } => return (code.get(), text.clone()),
        Error::Timeout | Error::ChannelClosed | Error::ReplyTooLarge { .. } => {
            ReplyCode::ACTION_ABORTED
        }
        Error::Usage(_) | Error::QueueFull { .. } => ReplyCode::PARAMETER_INVALID,
        _ => ReplyCode::SERVICE_NOT_AVAILABLE,
    };
    (code.get(), error.to_string())
}

/// Reports an exception raised by a Python handler: logged on the
/// `vortex` logger with its traceback (`vortex._errors._report`), or
/// through `sys.unraisablehook` if logging itself fails. Never exits the
/// process, whatever the exception (`SystemExit` included).
pub(crate) fn report(py: Python<'_>, what: &str, error: PyErr) {
    let logged = py
        .import(ERRORS_MODULE)
        .and_then(|module| module.getattr("_report"))
        .and_then(|report| report.call1((what, error.value(py), error.traceback(py))));
    if logged.is_err() {
        error.write_unraisable(py, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_errors_keep_the_peers_code_and_name_local_failures() {
        let refused = Error::Refused {
            code: ReplyCode::REQUESTED_ACTION_NOT_TAKEN,
            text: "no".into(),
        };
        assert_eq!(channel_error(&refused), (550, "no".to_string()));
        assert_eq!(channel_error(&Error::Timeout).0, 451);
        assert_eq!(channel_error(&Error::Closed(CloseReason::Shutdown)).0, 421);
        assert_eq!(class_of(&Error::Timeout), "TimeoutError");
        assert_eq!(class_of(&refused), "RefusedError");
    }
}
