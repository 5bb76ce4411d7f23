//! Per-task storage for C: `ivy_task_local_*`, `pthread_key_create` for tasks.
//!
//! `__thread` (and `pthread_getspecific`) is per OS thread, and many tasks share a
//! worker thread, so C state that belongs to one flow of work needs storage that
//! follows the task. A key (`ivy_task_local_key_t`) names a slot that every task
//! has; its values live in the Rust task-locals (task/local.rs, `raw`), so they
//! die the same way: on the task's own stack, after its entry returned (also
//! when it was cancelled and returned early), for a bounded number of rounds.
//!
//! Design decisions:
//! * **pthread's semantics**, since C programmers know them: a value starts as
//!   `NULL`; the destructor runs once for each non-null value, with that value;
//!   `ivy_task_local_key_free` runs no destructors and stops them for the values
//!   still set (the program frees those itself, as after `pthread_key_delete`).
//! * **On a plain thread the values are per thread** (destroyed when the thread
//!   exits), rather than `IVY_EPERM`: a C library that keeps its state under a
//!   key then works the same in tasks and outside, as the Rust task-locals do.
//! * The destructor gets the value only, not the task's handle: a task may be
//!   detached or joined already when it ends.

use std::os::raw::{c_int, c_void};

use super::error::*;
use super::handle::{HandleTable, Kind};
use super::{guard, out_ptr, write_out};
use crate::task::local::raw::{self, RawKey};

/// A value's destructor, run on the task's own stack when the task ends.
pub type ivy_task_local_dtor_t = Option<unsafe extern "C" fn(value: *mut c_void)>;

/// A task-local key, valid until `ivy_task_local_key_free`. A zero-initialised
/// handle is never valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_task_local_key_t {
    pub id: u64,
}

static KEYS: HandleTable<RawKey> = HandleTable::new(Kind::TaskLocalKey);

/// Creates a task-local key (`pthread_key_create` for tasks) and stores it in
/// `*out`. Every task (and plain thread) has its own value for the key, `NULL`
/// until it sets one. When a task ends -- after its entry returned, on its own
/// stack, also when it was cancelled -- `dtor` (if not `NULL`) is called once
/// with each non-null value the task left set; the slot is `NULL` by then. A
/// destructor may set values again: they are destroyed in a further round.
/// After 4 such rounds (`PTHREAD_DESTRUCTOR_ITERATIONS`) comes a last one, in
/// which `ivy_task_local_set` fails with `IVY_ECLOSED`, so a destructor that
/// always sets a value again is called 5 times. On a plain thread the values
/// are per thread and destroyed when the thread exits (never for the main
/// thread, as with pthread keys).
///
/// Errors: `IVY_EINVAL` (`out` is `NULL`); `IVY_ENOMEM` (no handle left).
///
/// # Safety
/// `out` is valid for writes; `dtor` is `NULL` or a valid function.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_local_key_new(
    dtor: ivy_task_local_dtor_t,
    out: *mut ivy_task_local_key_t,
) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let id = KEYS.insert(RawKey::new(dtor)).ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_task_local_key_t { id }) };
        Ok(())
    })
}

/// Frees `key` (`pthread_key_delete`): no destructor runs for its values any
/// more, in any task; values still set are the program's to free. Every later use
/// of the handle is `IVY_EBADF`. Errors: `IVY_EBADF` (stale handle).
#[no_mangle]
pub extern "C" fn ivy_task_local_key_free(key: ivy_task_local_key_t) -> c_int {
    guard(|| {
        KEYS.remove(key.id).ok_or(IVY_EBADF)?.retire();
        Ok(())
    })
}

/// Sets the calling task's (or plain thread's) value for `key` to `value`. The
/// value it replaces gets no destructor call. Ownership of `value` stays with
/// the caller until the task ends, when the key's destructor gets it.
///
/// Errors: `IVY_EBADF` (stale key); `IVY_ECLOSED` when called by a destructor in
/// the last round (see `ivy_task_local_key_new`), or on a plain thread whose
/// thread-locals are being destroyed.
#[no_mangle]
pub extern "C" fn ivy_task_local_set(key: ivy_task_local_key_t, value: *mut c_void) -> c_int {
    guard(|| {
        let key = KEYS.get(key.id).ok_or(IVY_EBADF)?;
        raw::set(&key, value).ok_or(IVY_ECLOSED)
    })
}

/// Stores the calling task's (or plain thread's) value for `key` in `*value`:
/// `NULL` if it set none.
///
/// Errors: `IVY_EINVAL` (`value` is `NULL`); `IVY_EBADF` (stale key);
/// `IVY_ECLOSED` as for `ivy_task_local_set`.
///
/// # Safety
/// `value` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_local_get(
    key: ivy_task_local_key_t,
    value: *mut *mut c_void,
) -> c_int {
    guard(|| {
        let value = out_ptr(value)?;
        let key = KEYS.get(key.id).ok_or(IVY_EBADF)?;
        let v = raw::get(&key).ok_or(IVY_ECLOSED)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(value, v) };
        Ok(())
    })
}
