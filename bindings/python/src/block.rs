//! TEMPORARY stand-in for py-core's `block.rs` (the contract of issue 14):
//! replaced by py-core's file when its branch is merged. Releases the GIL
//! around an ivy blocking call and maps `ivy::WaitError` to Python exceptions.

use pyo3::prelude::*;

use crate::errors::CancelledError;

/// Runs an ivy blocking call from Python with the GIL released and maps its
/// `WaitError` (Cancelled -> CancelledError, TimedOut/Elapsed -> TimeoutError,
/// Closed -> IvyError).
pub fn blocking<R: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<R, ivy::WaitError> + Send,
) -> PyResult<R> {
    py.detach(f).map_err(wait_error)
}

/// The Python exception for a `WaitError`.
pub fn wait_error(e: ivy::WaitError) -> PyErr {
    match e {
        ivy::WaitError::Cancelled => CancelledError::new_err(()),
        ivy::WaitError::Closed => crate::errors::IvyError::new_err("closed"),
        _ => pyo3::exceptions::PyTimeoutError::new_err(()),
    }
}
