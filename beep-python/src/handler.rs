//! Python handlers as the drivers call them: a callable and its user data
//! (PyVortex passes `data` last to every handler), run on the drivers'
//! threads with the GIL taken, an exception reported and turned into the
//! answer the Rust drivers give a failing handler.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors;

/// A Python handler and the user data PyVortex hands back to it.
pub(crate) struct PyHandler {
    /// The callable.
    pub(crate) func: Py<PyAny>,
    /// The user data (`None` when not given).
    pub(crate) data: Py<PyAny>,
}

impl PyHandler {
    /// A handler from an optional callable (`None` and Python's `None`
    /// give no handler) and its optional data.
    pub(crate) fn new(
        py: Python<'_>,
        func: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<Option<Self>> {
        let Some(func) = func.filter(|f| !f.is_none(py)) else {
            return Ok(None);
        };
        if !func.bind(py).is_callable() {
            return Err(errors::usage(py, "a handler must be callable"));
        }
        Ok(Some(PyHandler {
            func,
            data: data.unwrap_or_else(|| py.None()),
        }))
    }

    /// The same handler, for another owner.
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Self {
        PyHandler {
            func: self.func.clone_ref(py),
            data: self.data.clone_ref(py),
        }
    }

    /// Calls the handler with `args` followed by its data; an exception
    /// is reported (naming `what`) and gives `None`.
    pub(crate) fn call<'py>(
        &self,
        py: Python<'py>,
        what: &str,
        args: Vec<Bound<'py, PyAny>>,
    ) -> Option<Bound<'py, PyAny>> {
        let mut args = args;
        args.push(self.data.bind(py).clone());
        let called = PyTuple::new(py, args).and_then(|args| self.func.bind(py).call1(args));
        match called {
            Ok(value) => Some(value),
            Err(e) => {
                errors::report(py, what, e);
                None
            }
        }
    }
}

/// Set once the interpreter exits (`atexit`): driver threads no longer
/// enter Python.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Driver threads inside [`with_gil`].
static IN_PYTHON: AtomicUsize = AtomicUsize::new(0);

/// Counts a driver thread in [`IN_PYTHON`] while it lives.
struct InPython;

impl InPython {
    fn enter() -> Self {
        IN_PYTHON.fetch_add(1, Ordering::SeqCst);
        InPython
    }
}

impl Drop for InPython {
    fn drop(&mut self) {
        IN_PYTHON.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f` with the GIL taken, from a driver thread; `None` when the
/// interpreter is exiting: the handler is then skipped, and the driver
/// answers as for a failed handler.
pub(crate) fn with_gil<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    if EXITING.load(Ordering::SeqCst) {
        return None;
    }
    let _inside = InPython::enter();
    // Checked again once counted: `_shutdown` either sees this thread
    // counted, or this thread sees the flag.
    if EXITING.load(Ordering::SeqCst) {
        return None;
    }
    Python::try_attach(f)
}

/// Called at interpreter exit (`atexit`, registered by `vortex`): from now
/// on driver threads stay out of Python, and the handlers still running
/// are waited for (GIL released, at most 5 s), so that no driver thread is
/// inside Python when the interpreter finalizes.
#[pyfunction]
pub(crate) fn _shutdown(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while IN_PYTHON.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
