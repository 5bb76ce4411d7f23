//! Deadline scopes for C: `ivy_deadline_push` / `ivy_deadline_pop`, and the
//! callback form `ivy_deadline_run`.
//!
//! A library deep in a call tree must be bounded without a deadline threaded
//! through every call. Rust has `ivy::deadline(at, || ...)`; C has no closures
//! that carry a call tree, so it opens a scope, makes its calls, and closes it:
//! every blocking ivy call of the task in between also waits for the scope's
//! deadline and returns `IVY_ETIMEDOUT` once it has passed (scope.rs, `open`).
//!
//! Design decisions:
//! * **LIFO is checked, not trusted**: popping a scope that is not the caller's
//!   innermost open one is `IVY_EINVAL` and changes nothing, so a library that
//!   forgets a pop is caught at its caller's pop instead of silently widening or
//!   narrowing someone else's deadline.
//! * **Handles are the scope's id tagged with its kind**, not a table slot:
//!   scopes are per task and short-lived, and their state lives in the task. A
//!   popped scope's handle is stale (`IVY_EBADF`), as is one from another task.
//! * **A scope left open when its task ends dies with the task** (its state is
//!   the task's); on a plain thread it stays open until popped.
//! * **The callback form is Rust's `ivy::deadline`** and reports, like it,
//!   whether *its* deadline interrupted a call (`IVY_ETIMEDOUT`), which push/pop
//!   cannot say; it also closes whatever scopes the callback left open.

use std::os::raw::c_int;

use super::error::*;
use super::handle::Kind;
use super::{guard, out_ptr, write_out};
use crate::cancel_scope::open::{self, CloseError};

/// A deadline scope opened by `ivy_deadline_push`, valid until popped. A
/// zero-initialised handle is never valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_deadline_scope_t {
    pub id: u64,
}

const KIND_SHIFT: u32 = 56;

/// Opens a deadline scope for the calling task (or plain thread) and stores its
/// handle in `*out`: until `ivy_deadline_pop`, every blocking ivy call it makes
/// (sleeps, joins, locks, queue operations, socket I/O, ...) also waits for
/// `deadline` and returns `IVY_ETIMEDOUT` once it has passed. Scopes nest: the
/// effective deadline is the earliest of the call's own and every open scope's
/// (so an inner scope cannot extend an outer one). `IVY_FOREVER` opens a scope
/// with no deadline of its own. A passed deadline makes every blocking call in
/// the scope a non-blocking try. Tasks spawned inside a scope do not inherit
/// it; `ivy_task_shield` hides it, as it hides cancellation. A scope still open
/// when its task ends is closed with it; on a plain thread it stays open until
/// popped.
///
/// Errors: `IVY_EINVAL` (`out` is `NULL`, or `deadline` below -1); `IVY_ECLOSED`
/// when called by a task-local destructor in the last round (see
/// `ivy_task_local_key_new`).
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_deadline_push(deadline: i64, out: *mut ivy_deadline_scope_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let at = super::time::to_instant(deadline)?;
        let id = open::open(at).ok_or(IVY_ECLOSED)?;
        let id = ((Kind::DeadlineScope as u64) << KIND_SHIFT) | id;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_deadline_scope_t { id }) };
        Ok(())
    })
}

/// Closes `scope`, which must be the innermost scope the caller has open: the
/// deadline in force before it was pushed applies again.
///
/// Errors: `IVY_EINVAL` when `scope` is open but not the innermost (scopes pop
/// in LIFO order; nothing changes); `IVY_EBADF` for a handle that names no open
/// scope of the caller (popped already, another task's, zeroed, or of another
/// kind).
#[no_mangle]
pub extern "C" fn ivy_deadline_pop(scope: ivy_deadline_scope_t) -> c_int {
    guard(|| {
        if scope.id >> KIND_SHIFT != Kind::DeadlineScope as u64 {
            return Err(IVY_EBADF);
        }
        match open::close(scope.id & ((1 << KIND_SHIFT) - 1)) {
            Ok(()) => Ok(()),
            Err(CloseError::NotInnermost) => Err(IVY_EINVAL),
            Err(CloseError::NotOpen) => Err(IVY_EBADF),
        }
    })
}

/// Runs `f(arg)` inside a deadline scope -- the callback form of
/// `ivy_deadline_push` / `ivy_deadline_pop`, which cannot be left unbalanced --
/// and stores its return value in `*result` (if `result` is not `NULL`). Every
/// blocking ivy call `f` makes (however deep) also waits for `deadline` and
/// returns `IVY_ETIMEDOUT` once it has passed; scopes nest as for
/// `ivy_deadline_push`, and scopes `f` pushed and left open are closed on return.
///
/// Returns 0, or `IVY_ETIMEDOUT` when this scope's deadline interrupted a
/// blocking call inside `f` (Rust's `ivy::deadline` gives `Err(Elapsed)` then);
/// `f` ran to its end either way and its value is stored. Errors: `IVY_EINVAL`
/// (`f` is `NULL`, or `deadline` below -1).
///
/// # Safety
/// `f` is a valid function; `result` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_deadline_run(
    f: super::task::ivy_task_fn_t,
    arg: *mut std::os::raw::c_void,
    result: *mut *mut std::os::raw::c_void,
    deadline: i64,
) -> c_int {
    guard(|| {
        let f = f.ok_or(IVY_EINVAL)?;
        let at = super::time::to_instant(deadline)?;
        let mut value = std::ptr::null_mut();
        // SAFETY: the caller's contract; `f` is `extern "C"` and cannot unwind,
        // so the scope ends by `f` returning.
        let mut call = || value = unsafe { f(arg) };
        let elapsed = match at {
            Some(at) => crate::cancel_scope::deadline(at, call).is_err(),
            None => {
                call();
                false
            }
        };
        if !result.is_null() {
            // SAFETY: non-null and writable by the caller's contract.
            unsafe { write_out(result, value) };
        }
        if elapsed {
            Err(IVY_ETIMEDOUT)
        } else {
            Ok(())
        }
    })
}
