//! One-shot cancellation, asyncio's semantics on top of ivy's sticky one.
//!
//! ivy records a cancellation as a flag on the task that stays set: every later
//! blocking call fails too, which is right for Rust (the task unwinds and its
//! destructors run) but wrong for Python, where `except CancelledError:` /
//! `finally:` blocks routinely need one more blocking call (flush, put,
//! sleep). asyncio delivers a cancellation once: the `CancelledError` is thrown
//! into the coroutine at one await, and later awaits run normally unless
//! `cancel()` is called again.
//!
//! So the binding *withdraws* ivy's flag (`ivy::task::Current::uncancel`) at
//! the moment it raises `CancelledError` from a blocking call. The request
//! counter asyncio exposes (`cancelling()` / `uncancel()`) lives on the Python
//! `Task` (task.rs); ivy's flag is only the wake-up. A runtime shutting down
//! keeps its flag (ivy refuses to withdraw it), so shutdown always ends.

use pyo3::prelude::*;

use crate::errors::CancelledError;

/// The `CancelledError` for the running task's pending cancellation, after
/// withdrawing that cancellation from ivy (one-shot). Carries the message given
/// to `Task.cancel(msg)`, if any.
pub fn raise_once(py: Python<'_>) -> PyErr {
    if let Some(current) = ivy::task::current() {
        current.uncancel();
    }
    match crate::task::current_cancel_message(py) {
        Some(msg) => CancelledError::new_err((msg,)),
        None => CancelledError::new_err(()),
    }
}
