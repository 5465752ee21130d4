//! The native half of the `vortex` Python package (issue 13): PyVortex's
//! API on [`beep_blocking`].
//!
//! The classes and functions here are re-exported by the pure-Python
//! package `vortex` (`python/vortex/`), which adds what is simpler in
//! Python (the exception classes, `AsyncQueue`, `ChannelPool`). Blocking
//! calls release the GIL; Python handlers run on the drivers' threads
//! with the GIL taken, and an exception in one is logged and answered as
//! the Rust drivers answer a failing handler.
//!
//! * [`ctx`] holds `Ctx`, `register_profile`, `wait_listeners` and
//!   `unlock_listeners`;
//! * [`connection`] holds `Connection` and `connect`;
//! * [`channel`] holds `Channel`;
//! * [`frame`] holds `Frame` and the payload conversions;
//! * [`listener`] holds `create_listener` and `Listener`;
//! * [`tls`] and [`sasl`] hold the `vortex.tls` and `vortex.sasl`
//!   functions.
#![warn(missing_docs)]

use pyo3::prelude::*;

pub mod channel;
pub mod connection;
pub mod ctx;
mod errors;
pub mod frame;
mod handler;
pub mod listener;
pub mod sasl;
mod testing;
pub mod tls;

/// The extension module `vortex._beep`, with its submodules `tls` and
/// `sasl`.
#[pymodule]
fn _beep(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<ctx::Ctx>()?;
    m.add_class::<connection::Connection>()?;
    m.add_class::<channel::Channel>()?;
    m.add_class::<frame::Frame>()?;
    m.add_class::<listener::Listener>()?;
    m.add_function(wrap_pyfunction!(ctx::register_profile, m)?)?;
    m.add_function(wrap_pyfunction!(ctx::wait_listeners, m)?)?;
    m.add_function(wrap_pyfunction!(ctx::unlock_listeners, m)?)?;
    m.add_function(wrap_pyfunction!(listener::create_listener, m)?)?;
    m.add_function(wrap_pyfunction!(connection::connect_or_raise, m)?)?;
    m.add_function(wrap_pyfunction!(testing::_test_certificate, m)?)?;
    m.add_function(wrap_pyfunction!(handler::_shutdown, m)?)?;
    m.add("status_OK", connection::STATUS_OK)?;
    m.add("status_ERROR", connection::STATUS_ERROR)?;

    let tls = PyModule::new(py, "tls")?;
    tls.add_function(wrap_pyfunction!(tls::accept_tls, &tls)?)?;
    tls.add_function(wrap_pyfunction!(tls::set_verification, &tls)?)?;
    tls.add_function(wrap_pyfunction!(tls::start_tls, &tls)?)?;
    tls.add_function(wrap_pyfunction!(tls::start_tls_sync, &tls)?)?;
    tls.add_function(wrap_pyfunction!(tls::secure, &tls)?)?;
    tls.add_function(wrap_pyfunction!(tls::is_enabled, &tls)?)?;
    tls.add_function(wrap_pyfunction!(tls::info, &tls)?)?;
    m.add_submodule(&tls)?;

    let sasl = PyModule::new(py, "sasl")?;
    sasl.add_function(wrap_pyfunction!(sasl::accept_mech, &sasl)?)?;
    sasl.add_function(wrap_pyfunction!(sasl::start_auth, &sasl)?)?;
    sasl.add_function(wrap_pyfunction!(sasl::start_auth_sync, &sasl)?)?;
    sasl.add_function(wrap_pyfunction!(sasl::authenticate, &sasl)?)?;
    sasl.add_function(wrap_pyfunction!(sasl::is_authenticated, &sasl)?)?;
    sasl.add_function(wrap_pyfunction!(sasl::method_used, &sasl)?)?;
    sasl.add_function(wrap_pyfunction!(sasl::auth_id, &sasl)?)?;
    sasl.add_function(wrap_pyfunction!(sasl::authorization_id, &sasl)?)?;
    sasl.add_function(wrap_pyfunction!(sasl::auth_info, &sasl)?)?;
    m.add_submodule(&sasl)?;
    Ok(())
}
