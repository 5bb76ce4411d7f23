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
//!
//! With `libivy_hook.so` preloaded, a task cancelled inside a hooked libc call
//! (`time.sleep`, a `socket` read) learns it from the call's error: CPython
//! raises `OSError(ECANCELED)`, which the binding cannot turn into a
//! `CancelledError` where it is raised. That error is the cancellation's one
//! delivery: after the hooked park the binding withdraws ivy's flag there too
//! (`after_hooked_park`, so `finally:` blocks may block again, hooked or not)
//! and remembers it, and where asyncio's semantics look for a
//! `CancelledError` (the task's end, a `timeout()` scope, a `TaskGroup`) that
//! `OSError` counts as one (`take_hook_delivery`).

use std::cell::Cell;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::errors::CancelledError;

ivy::task_local! {
    /// The running task's cancellation was delivered as a hooked call's
    /// `OSError(ECANCELED)`, not yet taken by `take_hook_delivery`.
    static HOOK_DELIVERED: Cell<bool> = Cell::new(false);
}

/// After the park of a hooked libc call (`tstate::hook_park_guard`), on the
/// task's own stack: if the hook reported the task's cancellation to the
/// call as its error, that was the one delivery (see the module comment).
pub fn after_hooked_park() {
    let Some(me) = ivy::task::current() else {
        return;
    };
    if me.take_hook_interruption() == Some(ivy::WaitError::Cancelled) {
        me.uncancel();
        HOOK_DELIVERED.with(|d| d.set(true));
    }
}

/// Whether `exc` is the `OSError(ECANCELED)` by which a hooked call delivered
/// the running task's cancellation (see the module comment); consumes the
/// record, so one delivery counts once.
pub fn take_hook_delivery(exc: &Bound<'_, PyAny>) -> bool {
    hook_delivery(exc, true)
}

/// `take_hook_delivery`, consuming the record only if `take`.
fn hook_delivery(exc: &Bound<'_, PyAny>, take: bool) -> bool {
    if !exc.is_instance_of::<PyOSError>() {
        return false;
    }
    let ecanceled = exc
        .getattr("errno")
        .and_then(|e| e.extract::<i32>())
        .is_ok_and(|e| e == libc::ECANCELED);
    ecanceled
        && ivy::task::current().is_some()
        && HOOK_DELIVERED.with(|d| if take { d.replace(false) } else { d.get() })
}

/// `hook_delivery` for the Python layer (`Timeout` and `TaskGroup` exits).
#[pyfunction]
#[pyo3(signature = (exc, take = true))]
pub fn _hook_cancel(exc: &Bound<'_, PyAny>, take: bool) -> bool {
    hook_delivery(exc, take)
}

/// The `CancelledError` for the running task's pending cancellation, after
/// withdrawing that cancellation from ivy (one-shot). Carries the message given
/// to `Task.cancel(msg)`, if any.
pub fn raise_once(py: Python<'_>) -> PyErr {
    if let Some(current) = ivy::task::current() {
        current.uncancel();
    }
    cancelled_error(crate::task::current_cancel_message(py))
}

/// The `CancelledError` of a task cancelled with `Task.cancel(msg)`: it carries
/// `msg`, if one was given.
pub fn cancelled_error(msg: Option<Py<PyAny>>) -> PyErr {
    match msg {
        Some(msg) => CancelledError::new_err((msg,)),
        None => CancelledError::new_err(()),
    }
}
