//! Waiting on sets of C tasks: `ivy_task_wait_any` (asyncio's `wait(FIRST_COMPLETED)`)
//! and `ivy_task_join_all` (`gather(..., return_exceptions=True)`).
//!
//! Both take the `JoinHandle`s out of their slots for the duration of the wait
//! (so a concurrent `ivy_task_join` of one of them is `IVY_EBUSY`, as for two joins),
//! register one completion signal as the waiter of every handle (the mechanism
//! of `ivy::wait_any` / `ivy::as_completed`: O(1) per completion, no rescans),
//! and put the handles back before returning unless they were joined.
//!
//! Why there is no fail-fast `join_all` for C: a C task cannot panic, so the only
//! ways it "fails" are being cancelled before it ran and getting no stack; the
//! errors of its own work are in its return value, which only the caller can
//! interpret. `ivy_task_join_all` reports every task's code; to fail fast on a result,
//! loop over `ivy_task_wait_any`, join the finished task, and `ivy_task_cancel` the rest.

use std::os::raw::{c_int, c_void};
use std::sync::Arc;
use std::time::Instant;

use super::error::*;
use super::task::{ivy_task_t, CPtr, Taken};
use super::{guard, out_ptr, write_out};
use crate::park;
use crate::runtime::debug::WaitReason;
use crate::task::join::{CompletionSignal, Waiter};
use crate::task::JoinHandle;

/// Reads the C array and takes every handle: `IVY_EINVAL` for a `NULL` array, an
/// empty set or a handle listed twice, else as `Taken::take`.
///
/// # Safety
/// `tasks` is `NULL` or valid for `n` reads.
unsafe fn take_all(tasks: *const ivy_task_t, n: usize) -> Result<Taken, c_int> {
    if tasks.is_null() || n == 0 {
        return Err(IVY_EINVAL);
    }
    // SAFETY: the caller's contract: `n` readable handles.
    let ids: Vec<u64> = unsafe { std::slice::from_raw_parts(tasks, n) }
        .iter()
        .map(|t| t.id)
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(IVY_EINVAL);
    }
    Taken::take(&ids)
}

/// Registers one signal as the waiter of every handle; finished ones are
/// reported on it at once.
fn register(handles: &[JoinHandle<CPtr>]) -> Arc<CompletionSignal> {
    let signal = Arc::new(CompletionSignal::default());
    for (i, h) in handles.iter().enumerate() {
        if !h.set_waiter(Waiter::Group(signal.clone(), i)) {
            signal.complete(i);
        }
    }
    signal
}

/// Parks until the signal reports a completion (`Ok(index)`), or fails with
/// `IVY_ETIMEDOUT` at `deadline` / `IVY_ECANCELED` when the caller is cancelled.
fn next_completed(signal: &CompletionSignal, deadline: Option<Instant>) -> Result<usize, c_int> {
    loop {
        if let Some(i) = signal.poll() {
            return Ok(i);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(IVY_ETIMEDOUT);
        }
        park::park_for(deadline, WaitReason::Join).map_err(interrupted)?;
    }
}

/// Waits until at least one of the `n` tasks has finished, or `deadline`, and
/// stores the index (in `tasks`) of a finished one in `*index` -- the first to
/// finish while waiting, or the lowest index among those already finished.
/// Joins nothing: every handle stays valid (join the finished one next).
///
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED` (the caller was cancelled);
/// `IVY_EINVAL` (`tasks` or `index` `NULL`, `n` zero, a handle listed twice, a
/// bad deadline); `IVY_EBADF` (a stale handle); `IVY_EBUSY` (a handle being
/// joined elsewhere).
///
/// # Safety
/// `tasks` is valid for `n` reads (or `NULL`: `IVY_EINVAL`); `index` is valid
/// for writes (or `NULL`: `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_task_wait_any(
    tasks: *const ivy_task_t,
    n: usize,
    index: *mut usize,
    deadline: i64,
) -> c_int {
    guard(|| {
        let index = out_ptr(index)?;
        let deadline = super::time::to_instant(deadline)?;
        // SAFETY: forwarded caller contract.
        let taken = unsafe { take_all(tasks, n)? };
        let first_done = taken.handles.iter().position(|h| h.is_finished());
        let i = match first_done {
            Some(i) => i,
            None => next_completed(&register(&taken.handles), deadline)?,
        };
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(index, i) };
        Ok(())
    })
}

/// Waits until all `n` tasks have finished, or `deadline`. On success frees
/// every handle, stores each task's return value in `results[i]` and its code in
/// `codes[i]` (0, or `IVY_ECANCELED` if it was cancelled before it ran,
/// `IVY_ENOMEM` if it got no stack) -- either array may be `NULL` -- and returns
/// 0 if every code is 0, else the first non-zero code. asyncio's
/// `gather(..., return_exceptions=True)`.
///
/// On `IVY_ETIMEDOUT` or `IVY_ECANCELED` (the caller was cancelled) nothing is
/// freed and the tasks keep running: every handle stays valid. Other errors as
/// `ivy_task_wait_any`.
///
/// # Safety
/// `tasks` is valid for `n` reads; `results` and `codes` are `NULL` or valid for
/// `n` writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_join_all(
    tasks: *const ivy_task_t,
    n: usize,
    results: *mut *mut c_void,
    codes: *mut c_int,
    deadline: i64,
) -> c_int {
    guard(|| {
        let deadline = super::time::to_instant(deadline)?;
        // SAFETY: forwarded caller contract.
        let taken = unsafe { take_all(tasks, n)? };
        let signal = register(&taken.handles);
        for _ in 0..n {
            next_completed(&signal, deadline)?;
        }
        // Every task has finished: join (without waiting) and free them all.
        let mut first_error = 0;
        for (i, (value, code)) in taken.finish().into_iter().enumerate() {
            if first_error == 0 {
                first_error = code;
            }
            // SAFETY (both writes): `i < n`, and the caller's contract makes
            // non-null arrays writable for `n` elements.
            if !results.is_null() {
                unsafe { write_out(results.add(i), value) };
            }
            if !codes.is_null() {
                unsafe { write_out(codes.add(i), code) };
            }
        }
        if first_error == 0 {
            Ok(())
        } else {
            Err(first_error)
        }
    })
}
