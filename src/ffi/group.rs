//! Waiting on sets of C tasks: `ivy_task_wait_any` (asyncio's `wait(FIRST_COMPLETED)`)
//! and `ivy_task_join_all` (`gather(..., return_exceptions=True)`).
//!
//! Both claim the join slot of every handle for the duration of the wait (so a
//! concurrent `ivy_task_join` of one of them is `IVY_EBUSY`, as for two joins:
//! see `claim` in `task.rs`) and wait with the Rust layer's `wait_any_in` /
//! `wait_all_in` (one completion signal registered as the waiter of every
//! handle: O(1) per completion, no rescans), which leave the handles in place.
//!
//! Why there is no fail-fast `join_all` for C: a C task cannot panic, so the only
//! ways it "fails" are being cancelled before it ran and getting no stack; the
//! errors of its own work are in its return value, which only the caller can
//! interpret. `ivy_task_join_all` reports every task's code; to fail fast on a result,
//! loop over `ivy_task_wait_any`, join the finished task, and `ivy_task_cancel` the rest.

use std::os::raw::{c_int, c_void};
use std::sync::Arc;

use super::error::*;
use super::task::{claim, ivy_task_t, outcome, release_joined, Claim, TaskEntry, TASKS};
use super::{guard, out_ptr, write_out};
use crate::task::gather::{wait_all_in, wait_any_in};
use crate::task::JoinHandle;

/// The handles of a C array, looked up.
struct Lookup {
    ids: Vec<u64>,
    /// The entries of `ids`, up to the first stale one.
    entries: Vec<Arc<TaskEntry>>,
    /// Whether one is stale (`entries` is then shorter than `ids`).
    stale: bool,
}

/// Reads the C array and looks every handle up: `IVY_EINVAL` for a `NULL`
/// array, an empty set or a handle listed twice.
///
/// # Safety
/// `tasks` is `NULL` or valid for `n` reads.
unsafe fn lookup_all(tasks: *const ivy_task_t, n: usize) -> Result<Lookup, c_int> {
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
    let entries: Vec<Arc<TaskEntry>> = ids.iter().map_while(|&id| TASKS.get(id)).collect();
    let stale = entries.len() < ids.len();
    Ok(Lookup {
        ids,
        entries,
        stale,
    })
}

/// Claims every entry's join slot, in the order of the C array: the first
/// failure decides the code, `IVY_EBUSY` for a handle being joined elsewhere or
/// `IVY_EBADF` for a stale one (`stale`: one follows the entries). On error
/// nothing stays claimed.
fn claim_all(entries: &[Arc<TaskEntry>], stale: bool) -> Result<Vec<Claim<'_>>, c_int> {
    let slots = entries
        .iter()
        .map(|e| claim(e))
        .collect::<Result<Vec<_>, c_int>>()?;
    if stale {
        return Err(IVY_EBADF);
    }
    Ok(slots)
}

fn handles<'s>(slots: &'s [Claim<'_>]) -> Vec<&'s JoinHandle<super::task::CPtr>> {
    slots
        .iter()
        .map(|s| s.as_ref().expect("a claimed slot holds its handle"))
        .collect()
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
        let found = unsafe { lookup_all(tasks, n)? };
        let slots = claim_all(&found.entries, found.stale)?;
        let handles = handles(&slots);
        let i = match handles.iter().position(|h| h.is_finished()) {
            Some(i) => i,
            None => wait_any_in(&handles, deadline)
                .map_err(wait_error)?
                .expect("a non-empty set"),
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
        let found = unsafe { lookup_all(tasks, n)? };
        let slots = claim_all(&found.entries, found.stale)?;
        wait_all_in(&handles(&slots), deadline).map_err(wait_error)?;
        // Every task has finished: join (without waiting) and free them all.
        let outcomes: Vec<_> = slots
            .into_iter()
            .zip(&found.ids)
            .map(|(mut slot, id)| {
                let jh = slot.as_mut().expect("a claimed slot holds its handle");
                // Finished: this join does not wait, so it cannot fail.
                let joined = jh.join_deadline(None);
                release_joined(*id, slot);
                joined.map_or((std::ptr::null_mut(), IVY_ECANCELED), outcome)
            })
            .collect();
        let mut first_error = 0;
        for (i, (value, code)) in outcomes.into_iter().enumerate() {
            if first_error == 0 {
                first_error = code;
            }
            if !results.is_null() {
                // SAFETY: `i < n`, and the caller's contract makes a non-null
                // `results` writable for `n` elements.
                unsafe { write_out(results.add(i), value) };
            }
            if !codes.is_null() {
                // SAFETY: as above, for `codes`.
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
