//! `blocking`: the one path by which Python code makes an ivy blocking call.
//!
//! A task that parks must not hold the GIL (every other Python task, on this
//! worker or another, would wait for it forever with one worker), and must
//! leave the interpreter with *its own* thread state saved so that it comes
//! back to it. `Python::detach` does exactly that: `PyEval_SaveThread()` before
//! the call, `PyEval_RestoreThread(saved)` after, with the saved state and
//! PyO3's attach count kept in the guard on *this task's* stack (see
//! `tstate.rs` for why that keeps PyO3's per-thread count consistent while
//! other tasks run on the same OS thread in between); on CPython 3.11,
//! `tstate::detach_parking` also swaps the task's Python state out of the
//! worker's thread state around it (`swap.rs`).
//!
//! Errors: ivy's `WaitError` becomes the Python exception asyncio would raise:
//! - `Cancelled` -> `CancelledError`, *one-shot*: the pending cancellation is
//!   withdrawn from ivy as it is raised (`cancel.rs`), so a `finally` or an
//!   `except CancelledError` block may block again (sleep, put, join);
//! - `TimedOut` (the call's own deadline) and `Elapsed` (an enclosing deadline
//!   scope) -> the builtin `TimeoutError`;
//! - `Closed` -> `IvyError("closed while waiting")` unless the caller maps it
//!   (`blocking_with`).

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::cancel;
use crate::errors::{timed_out, IvyError};

/// Runs an ivy blocking call from Python: releases the GIL (saving this task's
/// thread state), runs `f` (which may park the task), re-takes the GIL, and maps
/// `ivy::WaitError` to the Python exception (Cancelled -> CancelledError,
/// one-shot; Elapsed/TimedOut -> TimeoutError; Closed -> IvyError).
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
    match crate::tstate::detach_parking(py, f) {
        Ok(v) => Ok(v),
        Err(e) => Err(wait_error(py, e, on_closed)),
    }
}

/// The Python exception for `e` (see the module comment). Call it with the
/// GIL held, right after the failed call, on the task that made it.
///
/// Out of line: `blocking_with` is on every park path, and its frame is part
/// of every parked task's stack page (findings/pystack.md); inlined, this
/// error path's locals made that frame 320 bytes.
#[cold]
#[inline(never)]
pub fn wait_error(
    py: Python<'_>,
    e: ivy::WaitError,
    on_closed: impl FnOnce(Python<'_>) -> PyErr,
) -> PyErr {
    match e {
        ivy::WaitError::Cancelled => cancel::raise_once(py),
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
