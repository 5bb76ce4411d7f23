//! Interruption of blocking calls: cancellation and deadline scopes.
//!
//! Every blocking primitive in ivy is built on `park::park_until`, which returns
//! `Err(Interrupted)` when the calling task has been cancelled or when the
//! deadline of an enclosing [`crate::timeout`] scope has passed. That internal,
//! `Result`-returning layer is what the C ABI uses: a C task sees `IVY_ECANCELED`
//! or `IVY_ETIMEDOUT` and unwinds nothing, so no Rust unwind ever crosses C frames.
//!
//! Rust code gets the asyncio / tokio behaviour instead: the blocking call
//! *unwinds* (with [`resume_unwind`], so no panic hook fires) carrying a private
//! payload. Destructors run on the way up. A cancellation is recognised by the
//! task's root, which reports `JoinError::Cancelled`; an elapsed deadline is
//! caught by the scope that owns it, which returns `Err(Elapsed)`. This is the
//! stackful equivalent of tokio dropping a future at its `.await`: cleanup is RAII.
//!
//! While the caller is already unwinding, neither is raised again, so destructors
//! that block (flush a queue, join a child) run to completion instead of aborting
//! the process with a double panic. "Already unwinding" is per task, not per OS
//! thread: see `worker::task_is_unwinding`.

use std::fmt;
use std::panic::resume_unwind;

/// Why a blocking call returned early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// The task was cancelled.
    Cancelled,
    /// The deadline of an enclosing timeout scope passed.
    Elapsed,
}

/// The unwind payload that carries a cancellation up a Rust task's stack.
pub(crate) struct CancelUnwind;

/// The unwind payload that carries an elapsed deadline up to its scope. Which
/// scope it belongs to is recorded in the caller's scope state (`scope.rs`).
pub(crate) struct ElapsedUnwind;

impl Interrupted {
    /// Turns an interruption into the Rust-side behaviour: unwind.
    pub(crate) fn raise(self) -> ! {
        crate::runtime::worker::with_current_task(|task| task.ctx.raised.set(true));
        match self {
            Interrupted::Cancelled => resume_unwind(Box::new(CancelUnwind)),
            Interrupted::Elapsed => resume_unwind(Box::new(ElapsedUnwind)),
        }
    }

    #[allow(dead_code)] // used by the I/O layer
    /// The `io::Error` an I/O call reports for this interruption.
    pub(crate) fn into_io(self) -> std::io::Error {
        match self {
            Interrupted::Cancelled => {
                std::io::Error::new(std::io::ErrorKind::Interrupted, "task cancelled")
            }
            Interrupted::Elapsed => {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline elapsed")
            }
        }
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupted::Cancelled => f.write_str("task cancelled"),
            Interrupted::Elapsed => f.write_str("deadline elapsed"),
        }
    }
}

/// Unwraps an internal result, unwinding on interruption.
pub(crate) fn or_raise<T>(r: Result<T, Interrupted>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => e.raise(),
    }
}

/// Called where an ivy unwind is caught and the task goes on running (a deadline
/// scope): the task is no longer unwinding.
pub(crate) fn caught() {
    crate::runtime::worker::with_current_task(|task| task.ctx.raised.set(false));
}
