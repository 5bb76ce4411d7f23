//! Interruption of blocking calls: cancellation and deadline scopes.
//!
//! Every blocking primitive in ivy is built on `park::park_until`, which returns
//! `Err(WaitError::Cancelled | WaitError::Elapsed)` when the calling task has been cancelled or when the
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
//! thread: see `task::current::task_is_unwinding`.
//!
//! `panic = "abort"` builds cannot unwind, so `raise` cannot work there. Where
//! nothing needs to run afterwards it does without: a task cancelled by shutdown
//! is abandoned (never resumed again, its stack leaked, its destructors not run;
//! `task::current::abandon` lists it on stderr) and shutdown completes. Everywhere else
//! (an explicit `cancel`, an elapsed `timeout`) the task's code after the
//! blocking call must not run, and there is no way to skip it but unwinding: ivy
//! names the task and the cause on stderr, then aborts. Never a silent abort.
//!
//! Layer: park. Uses the task core (`current`, the unwind payloads in `body`)
//! and `error`; not the scheduler (shutdown is asked of the task's `Schedule`).

use std::panic::resume_unwind;

use crate::error::WaitError;
use crate::task::body::{CancelUnwind, ElapsedUnwind};

impl WaitError {
    /// Turns an interruption (`Cancelled` or `Elapsed`) into the Rust-side
    /// behaviour: unwind. Only those two variants may be raised.
    pub(crate) fn raise(self) -> ! {
        if cfg!(panic = "abort") {
            self.cannot_unwind();
        }
        crate::task::current::with_current_task(|task| task.raised.set(true));
        match self {
            WaitError::Cancelled => resume_unwind(Box::new(CancelUnwind)),
            WaitError::Elapsed => resume_unwind(Box::new(ElapsedUnwind)),
            other => unreachable!("ivy: {other:?} is not an interruption"),
        }
    }

    /// The Rust behaviour for an interruption: unwind. Returns the error for the
    /// variants the caller reports itself (TimedOut, Closed).
    pub(crate) fn raise_interrupt(self) -> WaitError {
        match self {
            WaitError::Cancelled | WaitError::Elapsed => self.raise(),
            e => e,
        }
    }

    /// `raise` in a `panic = "abort"` build: see the module comment.
    #[cold]
    fn cannot_unwind(self) -> ! {
        use crate::task::current;
        if self == WaitError::Cancelled {
            current::with_current_task(|task| {
                if task.scheduler.is_closing() {
                    current::abandon(task);
                }
            });
        }
        let who = match current::current_task() {
            Some(t) => format!("task '{}' (id {})", t.name().unwrap_or("<unnamed>"), t.id()),
            None => format!(
                "thread '{}'",
                std::thread::current().name().unwrap_or("<unnamed>")
            ),
        };
        let what = match self {
            WaitError::Cancelled => "was cancelled",
            _ => "reached the deadline of an ivy::timeout/ivy::deadline scope",
        };
        eprintln!(
            "ivy: {who} {what}, but this program is built with panic = \"abort\", so ivy \
             cannot unwind it (cancellation and deadlines unwind the task's stack); \
             aborting. Build with panic = \"unwind\" to use cancel and timeout (see \
             README.md, \"panic = abort\")."
        );
        std::process::abort();
    }
}

/// Unwraps an internal result, unwinding on interruption.
pub(crate) fn or_raise<T>(r: Result<T, WaitError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => e.raise(),
    }
}
