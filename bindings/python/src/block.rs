//! TEMPORARY stand-in for py-core's `block.rs` (same API: `blocking`,
//! `blocking_with`, `wait_error`, `deadline_after`), so that py-lib builds
//! before py-core's branch lands; replaced by py-core's file on merging it.
//! It lacks the one-shot cancellation (py-core's `cancel.rs`).

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::{timed_out, CancelledError, IvyError};

/// Runs an ivy blocking call from Python with the GIL released and maps its
/// `WaitError`.
pub fn blocking<R: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<R, ivy::WaitError> + Send,
) -> PyResult<R> {
    blocking_with(py, f, |_| IvyError::new_err("closed while waiting"))
}

/// `blocking` with the caller's own exception for `WaitError::Closed`.
pub fn blocking_with<R: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<R, ivy::WaitError> + Send,
    on_closed: impl FnOnce(Python<'_>) -> PyErr,
) -> PyResult<R> {
    match py.detach(f) {
        Ok(v) => Ok(v),
        Err(e) => Err(wait_error(py, e, on_closed)),
    }
}

/// The Python exception for `e`.
pub fn wait_error(
    py: Python<'_>,
    e: ivy::WaitError,
    on_closed: impl FnOnce(Python<'_>) -> PyErr,
) -> PyErr {
    match e {
        ivy::WaitError::Cancelled => CancelledError::new_err(()),
        ivy::WaitError::TimedOut | ivy::WaitError::Elapsed => timed_out(),
        ivy::WaitError::Closed => on_closed(py),
        other => IvyError::new_err(other.to_string()),
    }
}

/// A relative timeout in seconds (`None`: none) as an absolute deadline.
pub fn deadline_after(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout must not be NaN")),
        Some(t) if t <= 0.0 => Ok(Some(Instant::now())),
        Some(t) => Ok(Some(
            Instant::now() + Duration::try_from_secs_f64(t).unwrap_or(Duration::from_secs(1 << 40)),
        )),
    }
}
