//! Helpers for the Python test suite only.

use pyo3::prelude::*;

use crate::errors;

/// A throw-away self-signed certificate for `name` (rcgen):
/// `(certificate_pem, private_key_pem)`. For tests only.
#[pyfunction]
pub(crate) fn _test_certificate(py: Python<'_>, name: String) -> PyResult<(String, String)> {
    match rcgen::generate_simple_self_signed(vec![name]) {
        Ok(cert) => Ok((cert.cert.pem(), cert.signing_key.serialize_pem())),
        Err(e) => Err(errors::usage(
            py,
            format!("cannot generate a certificate: {e}"),
        )),
    }
}
