//! The native half of the `vortex` Python package (issue 13).
use pyo3::prelude::*;

/// The extension module `vortex._beep`.
#[pymodule]
fn _beep(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
