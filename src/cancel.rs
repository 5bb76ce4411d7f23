//! Interruption of blocking calls: cancellation (and, later, deadline scopes).
//!
//! Every blocking primitive in ivy is built on `park::park_until`, which returns
//! `Err(Interrupted)` when the calling task has been cancelled. The internal,
//! `Result`-returning layer is what the C ABI uses: a C task sees `IVY_ECANCELED`
//! and unwinds nothing, so no Rust unwind ever crosses C frames.
//!
//! Rust tasks get the asyncio / tokio behaviour instead: the blocking call
//! *unwinds* (with [`resume_unwind`], so no panic hook fires) carrying a private
//! `CancelUnwind` payload. Destructors run on the way up, and the task's root
//! recognises the payload and reports `JoinError::Cancelled`. This is the stackful
//! equivalent of tokio dropping a future at its `.await`: cleanup is RAII.
//!
//! While a task is already unwinding (`std::thread::panicking()`), cancellation is
//! not raised again, so destructors that block (flush a queue, join a child) run to
//! completion instead of aborting the process with a double panic.

use std::fmt;
use std::panic::resume_unwind;

/// Why a blocking call returned early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// The task was cancelled.
    Cancelled,
}

/// The unwind payload that carries a cancellation up a Rust task's stack.
pub(crate) struct CancelUnwind;

impl Interrupted {
    /// Turns an interruption into the Rust-side behaviour: unwind the task.
    pub(crate) fn raise(self) -> ! {
        match self {
            Interrupted::Cancelled => resume_unwind(Box::new(CancelUnwind)),
        }
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupted::Cancelled => f.write_str("task cancelled"),
        }
    }
}

/// Unwraps an internal result, unwinding the Rust task on interruption.
pub(crate) fn or_raise<T>(r: Result<T, Interrupted>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => e.raise(),
    }
}
