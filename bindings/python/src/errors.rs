//! The exception types of `ivyrt`, and the mapping of ivy's `WaitError` to them.
//!
//! Design decisions:
//! - `CancelledError` derives from `BaseException`, as asyncio's does since 3.8:
//!   `except Exception:` in user code must not swallow a cancellation.
//! - A passed deadline is the *builtin* `TimeoutError` (asyncio's since 3.11), so
//!   the package never defines a `TimeoutError` of its own and
//!   `from ivyrt import *` cannot shadow the builtin.
//! - `IncompleteReadError` derives from `EOFError` and `LimitOverrunError` from
//!   `Exception`, as asyncio's; their attributes (`partial`/`expected`,
//!   `consumed`) are set by the constructors below, so Rust code raises them
//!   complete.
//! - `IvyError` is everything else ivy reports (a closed object, no stack...).

use pyo3::create_exception;
use pyo3::exceptions::{PyBaseException, PyEOFError, PyException, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

create_exception!(
    ivyrt,
    CancelledError,
    PyBaseException,
    "The task was cancelled (asyncio.CancelledError's counterpart; a BaseException). \
     Raised once per `Task.cancel()` by the task's current or next blocking call."
);
create_exception!(
    ivyrt,
    InvalidStateError,
    PyException,
    "An operation is not valid in the object's state (e.g. Task.result() before it is done)."
);
create_exception!(
    ivyrt,
    IvyError,
    PyException,
    "An error reported by the ivy runtime."
);
create_exception!(
    ivyrt,
    QueueEmpty,
    PyException,
    "get_nowait() on an empty queue."
);
create_exception!(
    ivyrt,
    QueueFull,
    PyException,
    "put_nowait() on a full queue."
);
create_exception!(
    ivyrt,
    IncompleteReadError,
    PyEOFError,
    "The stream ended before the requested bytes arrived (attributes `partial`, `expected`)."
);
create_exception!(
    ivyrt,
    LimitOverrunError,
    PyException,
    "A separator was not found within the stream's buffer limit (attribute `consumed`)."
);
create_exception!(
    ivyrt,
    BrokenBarrierError,
    PyException,
    "A Barrier was reset or aborted while tasks waited on it."
);

/// `IncompleteReadError(partial, expected)` with asyncio's attributes.
pub fn incomplete_read(py: Python<'_>, partial: &[u8], expected: Option<usize>) -> PyErr {
    let partial = PyBytes::new(py, partial);
    let msg = format!(
        "{} bytes read on a total of {} expected bytes",
        partial.len().unwrap_or(0),
        expected.map_or("undefined".to_string(), |n| n.to_string())
    );
    let err = IncompleteReadError::new_err(msg);
    let value = err.value(py);
    let _ = value.setattr("partial", partial);
    let _ = value.setattr("expected", expected);
    err
}

/// `LimitOverrunError(message, consumed)` with asyncio's attribute.
pub fn limit_overrun(py: Python<'_>, message: &str, consumed: usize) -> PyErr {
    let err = LimitOverrunError::new_err(message.to_string());
    let _ = err.value(py).setattr("consumed", consumed);
    err
}

/// The builtin `TimeoutError`.
pub fn timed_out() -> PyErr {
    PyTimeoutError::new_err("timed out")
}

/// Registers the exception types on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    m.add("InvalidStateError", py.get_type::<InvalidStateError>())?;
    m.add("IvyError", py.get_type::<IvyError>())?;
    m.add("QueueEmpty", py.get_type::<QueueEmpty>())?;
    m.add("QueueFull", py.get_type::<QueueFull>())?;
    m.add("IncompleteReadError", py.get_type::<IncompleteReadError>())?;
    m.add("LimitOverrunError", py.get_type::<LimitOverrunError>())?;
    m.add("BrokenBarrierError", py.get_type::<BrokenBarrierError>())?;
    Ok(())
}
