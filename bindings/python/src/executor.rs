//! `to_thread` and the default executor of `run_in_executor`: a Python call on
//! ivy's blocking pool (`ivy::spawn_blocking`), the calling task parked until
//! it is done.
//!
//! Design decisions:
//! - **The pool thread takes the GIL with its own thread state** (`Python::attach`,
//!   i.e. `PyGILState_Ensure`): a pool thread is a plain OS thread, where the
//!   GIL-state API is right, unlike a task's stack. The calling task parks
//!   through `block::blocking` with the GIL released, so the pool thread can
//!   run Python meanwhile.
//! - **contextvars are copied** (`contextvars.copy_context().run(...)`) for
//!   `to_thread`, as asyncio's `to_thread` does; `run_in_executor` does not
//!   copy them (asyncio's does not either).
//! - **Cancellation detaches the call**, as in asyncio: the task's wait raises
//!   `CancelledError` (or `TimeoutError` for an elapsed `timeout()` scope) at
//!   once, and the function runs on to its end on the pool thread; its result
//!   is dropped there. The exception of the function propagates with its
//!   traceback (the `PyErr` crosses threads whole).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::block::blocking;
use crate::errors::IvyError;

static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Runs `func(*args, **kwargs)` on the blocking pool and parks until it is done.
fn call_on_pool(
    py: Python<'_>,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
) -> PyResult<Py<PyAny>> {
    let job = ivy::spawn_blocking(move || {
        Python::attach(|py| {
            func.bind(py)
                .call(args.bind(py), kwargs.as_ref().map(|k| k.bind(py)))
                .map(Bound::unbind)
        })
    });
    match blocking(py, || job.join_deadline(None))? {
        Ok(result) => result,
        // The job is a closure of ours that only calls Python: it cannot panic
        // unless PyO3 does.
        Err(e) => Err(IvyError::new_err(format!("to_thread job failed: {e}"))),
    }
}

/// Runs `func(*args, **kwargs)` in a thread of ivy's blocking pool, in a copy
/// of the caller's contextvars context, and returns its result (or raises its
/// exception). The calling task parks meanwhile; other tasks run.
#[pyfunction]
#[pyo3(signature = (func, /, *args, **kwargs))]
fn to_thread(
    py: Python<'_>,
    func: Py<PyAny>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<Py<PyDict>>,
) -> PyResult<Py<PyAny>> {
    let copy_context = COPY_CONTEXT.get_or_try_init(py, || {
        py.import("contextvars")?
            .getattr("copy_context")
            .map(Bound::unbind)
    })?;
    let run = copy_context.call0(py)?.getattr(py, "run")?;
    let mut call = Vec::with_capacity(args.len() + 1);
    call.push(func.into_bound(py));
    call.extend(args.iter());
    let args = PyTuple::new(py, call)?.unbind();
    call_on_pool(py, run, args, kwargs)
}

/// `run_in_executor(None, func, *args)`: `func(*args)` on ivy's blocking pool
/// (the caller's contextvars are not copied, as in asyncio).
#[pyfunction]
#[pyo3(signature = (func, /, *args))]
fn _run_on_pool(py: Python<'_>, func: Py<PyAny>, args: Py<PyTuple>) -> PyResult<Py<PyAny>> {
    call_on_pool(py, func, args, None)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(to_thread, m)?)?;
    m.add_function(wrap_pyfunction!(_run_on_pool, m)?)?;
    Ok(())
}
