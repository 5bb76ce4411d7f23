//! Tasks in the C ABI: spawn, join, cancel, detach, and the current task.
//!
//! A C task is `void *entry(void *arg)` run as an ivy task; its return value is
//! what `ivy_task_join` hands back. The handle (`ivy_task_t`) names a slot of the task
//! table holding the task's `JoinHandle`; `ivy_task_join` (once it succeeds) and
//! `ivy_task_detach` remove the slot, so every later use of the handle is `IVY_EBADF`.
//! A join holds its entry's join slot while it waits (`claim`), so a second,
//! concurrent join of the same task is `IVY_EBUSY` rather than a lost wake-up;
//! the wait itself is `JoinHandle::join_deadline`, which leaves the handle in
//! place when it times out or is interrupted: nothing to put back.
//!
//! Cancellation (`ivy_task_cancel`) is cooperative: the task's next blocking ivy call
//! (or the one it is parked in) returns `IVY_ECANCELED`, and the C code is
//! expected to clean up and return. Like asyncio, a task that swallows the
//! cancellation and returns normally is not "cancelled": `ivy_task_join` reports its
//! return value and `0`. `IVY_ECANCELED` from `ivy_task_join` means the task never ran
//! (cancelled before it started) -- or that the *caller* was cancelled while
//! waiting, in which case the handle stays valid.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use super::error::*;
use super::handle::{HandleTable, Kind};
use super::{guard, out_ptr, write_c_str, write_out};
use crate::runtime::{check_stack_size, Handle};
use crate::task::JoinHandle;

/// The entry point of a C task: called once with the `arg` given at spawn; its
/// return value is what `ivy_task_join` reports.
pub type ivy_task_fn_t = Option<unsafe extern "C" fn(arg: *mut c_void) -> *mut c_void>;

/// A hook run on a task's own stack (see `ivy_spawn_opts_t`).
pub type ivy_hook_fn_t = Option<unsafe extern "C" fn(arg: *mut c_void)>;

/// A handle to a task, valid from spawn until it is joined or detached. A
/// zero-initialised handle is never valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_task_t {
    pub id: u64,
}

/// Options of `ivy_task_spawn` / `ivy_runtime_spawn`. Zero-initialise it and set what
/// you need; passing `NULL` instead means all defaults.
#[repr(C)]
pub struct ivy_spawn_opts_t {
    /// The task's name (UTF-8, copied; `NULL` for none), shown by
    /// `ivy_task_current_name` and in panic and stack-overflow reports.
    pub name: *const c_char,
    /// Stack size in bytes, rounded up to a power of two of at least 16 KiB
    /// (whose top 128 bytes hold the task's descriptor, as a thread's stack does);
    /// `0` for the runtime's default (`IVY_DEFAULT_STACK_SIZE` for runtimes made
    /// through this API). At most 1 GiB.
    pub stack_size: usize,
    /// Called on the task's stack just before `entry` (not at all if the task is
    /// cancelled before it starts). For language bindings that must set up
    /// per-task interpreter state, e.g. acquire a Python thread state.
    pub on_start: ivy_hook_fn_t,
    /// The argument of `on_start`.
    pub on_start_arg: *mut c_void,
    /// Called on the task's stack just after `entry` returns (only if `on_start`
    /// ran, or would have): the place to undo what `on_start` did.
    pub on_exit: ivy_hook_fn_t,
    /// The argument of `on_exit`.
    pub on_exit_arg: *mut c_void,
}

/// A `void *` moved between threads. C owns what it points to; ivy only passes
/// it along, so sending it is the C program's business (as with `pthread_create`).
#[derive(Clone, Copy)]
pub(crate) struct CPtr(pub(crate) *mut c_void);
// SAFETY: ivy never dereferences the pointer; it is an opaque value handed from
// one C call to another, exactly as pthread_create/pthread_join pass theirs.
unsafe impl Send for CPtr {}

pub(crate) struct TaskEntry {
    pub(super) task: crate::task::join::TaskCore<CPtr>,
    /// Locked (with `try_lock` only, see `claim`) by the one call joining,
    /// waiting on or detaching the task; `None` once it was joined or detached
    /// (a call that looked the entry up before that finds it empty).
    pub(super) join: Mutex<Option<JoinHandle<CPtr>>>,
}

pub(super) static TASKS: HandleTable<TaskEntry> = HandleTable::new(Kind::Task);

/// The join slot of a task, held by the call that joins, waits on or detaches
/// it.
pub(super) type Claim<'a> = MutexGuard<'a, Option<JoinHandle<CPtr>>>;

/// Claims the join slot of `entry` for the calling join, wait or detach:
/// `IVY_EBUSY` while another call holds it (one waiter per task: a second would
/// steal the first one's wake-up), `IVY_EBADF` once the task was joined or
/// detached. Only ever `try_lock`ed, so nobody blocks a thread on it; the
/// holder keeps it across its park (a task never changes thread, so it
/// unlocks it on the thread that locked it).
pub(super) fn claim(entry: &TaskEntry) -> Result<Claim<'_>, c_int> {
    let slot = match entry.join.try_lock() {
        Ok(slot) => slot,
        Err(TryLockError::WouldBlock) => return Err(IVY_EBUSY),
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
    };
    if slot.is_none() {
        return Err(IVY_EBADF);
    }
    Ok(slot)
}

/// The handle in a claimed slot (`claim` checked it is there).
pub(super) fn claimed<'s>(slot: &'s mut Claim<'_>) -> &'s mut JoinHandle<CPtr> {
    slot.as_mut().expect("a claimed slot holds its handle")
}

/// The task of a claimed slot has finished and was joined: frees the handle
/// (every copy is `IVY_EBADF` from now on).
pub(super) fn release_joined(id: u64, mut slot: Claim<'_>) {
    *slot = None;
    drop(slot);
    TASKS.remove(id);
}

/// What `ivy_task_join` reports for a finished task: its value and a code.
pub(super) fn outcome(r: Result<CPtr, crate::task::JoinError>) -> (*mut c_void, c_int) {
    match r {
        Ok(p) => (p.0, 0),
        Err(e) if e.is_cancelled() => (std::ptr::null_mut(), IVY_ECANCELED),
        Err(e) if e.is_no_stack() => (std::ptr::null_mut(), IVY_ENOMEM),
        Err(_) => (std::ptr::null_mut(), IVY_EPANIC),
    }
}

/// Everything a C task's body needs, captured by its closure.
struct CTask {
    entry: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    arg: CPtr,
    on_start: ivy_hook_fn_t,
    on_start_arg: CPtr,
    on_exit: ivy_hook_fn_t,
    on_exit_arg: CPtr,
}

impl CTask {
    fn run(self) -> CPtr {
        // An overflow report names the C way to raise this stack.
        crate::stack::overflow::mark_running(crate::stack::overflow::Origin::CTask);
        // The three calls: the C caller of ivy_task_spawn promised these are
        // valid functions taking these arguments; running them on this task's
        // stack is what it asked for. They are `extern "C"` and cannot unwind
        // into Rust (an attempt aborts, which is Rust's rule for C frames).
        if let Some(f) = self.on_start {
            // SAFETY: see above (the `on_start` hook and its argument).
            unsafe { f(self.on_start_arg.0) };
        }
        // SAFETY: see above (the task's entry and its argument).
        let result = unsafe { (self.entry)(self.arg.0) };
        if let Some(f) = self.on_exit {
            // SAFETY: see above (the `on_exit` hook and its argument).
            unsafe { f(self.on_exit_arg.0) };
        }
        CPtr(result)
    }
}

/// Cancels `task` and waits for it, shielded from the caller's own cancellation
/// and deadlines, then frees its handle and discards its value: for a caller
/// that started the task and must not leave it running with no handle
/// (`ivy_runtime_block_on` interrupted). Does nothing for a handle that is gone.
pub(crate) fn cancel_and_reap(task: ivy_task_t) {
    let Some(entry) = TASKS.get(task.id) else {
        return;
    };
    let Ok(mut slot) = claim(&entry) else {
        return;
    };
    let jh = claimed(&mut slot);
    jh.cancel();
    // Its value (a C pointer) is discarded.
    if crate::cancel_scope::shield(|| jh.join_deadline(None)).is_ok() {
        release_joined(task.id, slot);
    }
}

/// Validates the arguments of a spawn, spawns on `handle`, stores the handle.
///
/// # Safety
/// `opts` is `NULL` or points to a valid `ivy_spawn_opts_t` whose `name` is
/// `NULL` or a NUL-terminated string.
pub(crate) unsafe fn spawn_c(
    handle: &Handle,
    entry: ivy_task_fn_t,
    arg: *mut c_void,
    opts: *const ivy_spawn_opts_t,
) -> Result<ivy_task_t, c_int> {
    let entry = entry.ok_or(IVY_EINVAL)?;
    if handle.shared.is_closing() {
        // Shutting down: the task would never run. (A spawn that races with the
        // start of shutdown past this check gets a handle that joins with
        // IVY_ECANCELED: see runtime/mod.rs.)
        return Err(IVY_ECLOSED);
    }

    // SAFETY: the caller's contract: NULL or a valid options struct.
    let opts = unsafe { opts.as_ref() };
    let mut ctask = CTask {
        entry,
        arg: CPtr(arg),
        on_start: None,
        on_start_arg: CPtr(std::ptr::null_mut()),
        on_exit: None,
        on_exit_arg: CPtr(std::ptr::null_mut()),
    };
    let stack_size = match opts.map_or(0, |o| o.stack_size) {
        0 => None,
        bytes => {
            check_stack_size(bytes).map_err(|_| IVY_EINVAL)?;
            Some(bytes)
        }
    };
    let stack = stack_size.unwrap_or(handle.default_stack_size());
    if crate::stack::check_available(stack, handle.shared.unguarded_stacks).is_err() {
        // No guarded stack left (stack/guard.rs): as `ivy_task_join` reports a task
        // that got no stack.
        return Err(IVY_ENOMEM);
    }
    let mut name = None;
    if let Some(o) = opts {
        if !o.name.is_null() {
            // SAFETY: the caller's contract: a NUL-terminated string.
            let s = unsafe { CStr::from_ptr(o.name) };
            name = Some(s.to_str().map_err(|_| IVY_EINVAL)?.into());
        }
        ctask.on_start = o.on_start;
        ctask.on_start_arg = CPtr(o.on_start_arg);
        ctask.on_exit = o.on_exit;
        ctask.on_exit_arg = CPtr(o.on_exit_arg);
    }
    let jh = handle.spawn_named(name, stack_size, move || ctask.run());
    let entry = Arc::new(TaskEntry {
        task: jh.shared_core(),
        join: Mutex::new(Some(jh)),
    });
    // A full table (2^32 live handles) is not reachable in practice; the task
    // then runs detached and the caller learns it cannot be joined.
    let id = TASKS.insert(entry).ok_or(IVY_ENOMEM)?;
    Ok(ivy_task_t { id })
}

/// Spawns `entry(arg)` as a new task on the runtime of the calling task.
///
/// `opts` may be `NULL` (defaults). On success stores the new task's handle in
/// `*out` and returns 0; the caller owns the handle and must eventually pass it to
/// `ivy_task_join` or `ivy_task_detach` (a runtime's shutdown cancels and waits for every
/// task, but only join/detach free the handle's slot).
///
/// Errors: `IVY_EPERM` when called outside an ivy task (use `ivy_runtime_spawn`
/// from plain threads); `IVY_EINVAL` for a `NULL` `entry` or `out`, a name that
/// is not UTF-8, or a stack size above 1 GiB; `IVY_ECLOSED` when the runtime is
/// shutting down (a spawn racing with the start of shutdown may instead succeed
/// with a handle that joins with `IVY_ECANCELED`: the task never runs);
/// `IVY_ENOMEM` when no stack with a guard page is left (only on kernels before
/// Linux 6.13 or with `IVY_STACK_GUARD=mprotect`, past the mprotect budget,
/// unless the environment has `IVY_UNGUARDED_STACKS=1`; a spawn racing others
/// may instead get a handle that joins with `IVY_ENOMEM`).
///
/// # Safety
/// `opts` is `NULL` or valid; `out` is valid for writes; `entry` and the hooks
/// are valid functions.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_spawn(
    entry: ivy_task_fn_t,
    arg: *mut c_void,
    opts: *const ivy_spawn_opts_t,
    out: *mut ivy_task_t,
) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let handle = Handle::try_current().ok_or(IVY_EPERM)?;
        // SAFETY: forwarded caller contract.
        let task = unsafe { spawn_c(&handle, entry, arg, opts)? };
        // SAFETY: checked non-null; the caller's contract makes it writable.
        unsafe { write_out(out, task) };
        Ok(())
    })
}

/// Waits until `task` finishes or `deadline` passes, then frees the handle and
/// stores the task's return value in `*result` (if `result` is not `NULL`).
///
/// From a task this parks the task; from a plain thread it blocks the thread.
/// Returns 0 when the task returned (even if it had been cancelled and chose to
/// return normally: its value is reported).
///
/// Errors (the handle stays valid unless noted): `IVY_ETIMEDOUT` when the
/// deadline passed first; `IVY_ECANCELED` when the *calling* task was cancelled
/// while waiting; `IVY_EBADF` for a stale, joined or detached handle;
/// `IVY_EBUSY` when another call is joining the same task; `IVY_EDEADLK` when a
/// task joins itself; `IVY_EINVAL` for a bad deadline. When the *joined* task
/// never ran because it was cancelled first, the handle is freed and the result
/// is `IVY_ECANCELED` with `*result` set to `NULL`; `IVY_ENOMEM` likewise when no
/// stack could be allocated for it.
///
/// # Safety
/// `result` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_join(
    task: ivy_task_t,
    result: *mut *mut c_void,
    deadline: i64,
) -> c_int {
    guard(|| {
        let deadline = super::time::to_instant(deadline)?;
        // A task joining itself would wait forever (checked before the handle is
        // taken, so it is reported even while another call joins the task).
        let entry = TASKS.get(task.id).ok_or(IVY_EBADF)?;
        let me = crate::task::current::with_current_task(|me| me.id());
        if me == Some(entry.task.id()) {
            return Err(IVY_EDEADLK);
        }
        let mut slot = claim(&entry)?;
        let joined = claimed(&mut slot)
            .join_deadline(deadline)
            .map_err(wait_error)?;
        release_joined(task.id, slot);
        let (value, code) = outcome(joined);
        if !result.is_null() {
            // SAFETY: non-null, and the caller's contract makes it writable.
            unsafe { write_out(result, value) };
        }
        if code == 0 {
            Ok(())
        } else {
            Err(code)
        }
    })
}

/// Requests cancellation of `task`: its next blocking ivy call (or the one it is
/// parked in, at once) returns `IVY_ECANCELED`; a task that has not started never
/// runs. Cancelling a finished task does nothing. Does not free the handle.
/// Errors: `IVY_EBADF` for a stale handle.
#[no_mangle]
pub extern "C" fn ivy_task_cancel(task: ivy_task_t) -> c_int {
    guard(|| {
        TASKS.get(task.id).ok_or(IVY_EBADF)?.task.cancel();
        Ok(())
    })
}

/// Stores 1 in `*finished` if `task` has finished (then `ivy_task_join` returns at
/// once), else 0. Errors: `IVY_EBADF`, `IVY_EINVAL` (`finished` is `NULL`).
///
/// # Safety
/// `finished` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_is_finished(task: ivy_task_t, finished: *mut c_int) -> c_int {
    guard(|| {
        let finished = out_ptr(finished)?;
        let done = TASKS.get(task.id).ok_or(IVY_EBADF)?.task.is_done();
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(finished, c_int::from(done)) };
        Ok(())
    })
}

/// Frees the handle without waiting: the task runs on, and its return value is
/// discarded. Errors: `IVY_EBADF` for a stale handle; `IVY_EBUSY` while another
/// call is joining it.
#[no_mangle]
pub extern "C" fn ivy_task_detach(task: ivy_task_t) -> c_int {
    guard(|| {
        let entry = TASKS.get(task.id).ok_or(IVY_EBADF)?;
        let mut slot = claim(&entry)?;
        let jh = slot.take();
        drop(slot);
        TASKS.remove(task.id);
        drop(jh); // detaches the task
        Ok(())
    })
}

/// Stores the id of `task` (the same number `ivy_task_current_id` gives inside it,
/// unique for the life of the process) in `*id`. Errors: `IVY_EBADF`,
/// `IVY_EINVAL` (`id` is `NULL`).
///
/// # Safety
/// `id` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_id(task: ivy_task_t, id: *mut u64) -> c_int {
    guard(|| {
        let id = out_ptr(id)?;
        let entry = TASKS.get(task.id).ok_or(IVY_EBADF)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(id, entry.task.id()) };
        Ok(())
    })
}

/// Copies the name of `task` (as given at spawn; empty if none), NUL-terminated,
/// into `buf` of `cap` bytes, and its length into `*len` if `len` is not NULL.
/// Errors: `IVY_EBADF`; `IVY_EINVAL` (`buf` NULL, `cap` 0); `IVY_ERANGE` (too
/// small: `*len` is set, `buf` untouched).
///
/// # Safety
/// `buf` is writable for `cap` bytes; `len` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_name(
    task: ivy_task_t,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let buf = out_ptr(buf)?;
        if cap == 0 {
            return Err(IVY_EINVAL);
        }
        let entry = TASKS.get(task.id).ok_or(IVY_EBADF)?;
        let name = entry.task.name().unwrap_or("");
        if !len.is_null() {
            // SAFETY: non-null and writable by the caller's contract.
            unsafe { write_out(len, name.len()) };
        }
        // SAFETY: `buf` is writable for `cap` bytes (caller's contract).
        unsafe { write_c_str(name, buf, cap) }
    })
}

/// Runs `f(arg)` shielded from cancellation (asyncio's `shield`, Trio's shielded
/// cancel scope) and stores its return value in `*result` (if not NULL): inside
/// `f`, blocking calls of a cancelled task wait normally instead of returning
/// `IVY_ECANCELED`, so cleanup that must block (flush a buffer, say goodbye on a
/// socket, join a child) can complete. The cancellation is still pending: the
/// first blocking call after `f` returns reports it. Deadlines passed to calls
/// inside `f` still apply, so bound the cleanup with them. Works on plain
/// threads too (where there is nothing to shield from). Errors: `IVY_EINVAL`
/// (`f` NULL).
///
/// # Safety
/// `f` is a valid function; `result` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_shield(
    f: ivy_task_fn_t,
    arg: *mut c_void,
    result: *mut *mut c_void,
) -> c_int {
    guard(|| {
        let f = f.ok_or(IVY_EINVAL)?;
        // SAFETY: the caller's contract; `f` is `extern "C"` and cannot unwind.
        let value = crate::cancel_scope::shield(|| unsafe { f(arg) });
        if !result.is_null() {
            // SAFETY: non-null and writable by the caller's contract.
            unsafe { write_out(result, value) };
        }
        Ok(())
    })
}

/// Stores the id of the calling task in `*id`. Errors: `IVY_EPERM` outside a
/// task, `IVY_EINVAL` (`id` is `NULL`).
///
/// # Safety
/// `id` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_current_id(id: *mut u64) -> c_int {
    guard(|| {
        let id = out_ptr(id)?;
        let me = crate::task::current().ok_or(IVY_EPERM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(id, me.id().as_u64()) };
        Ok(())
    })
}

/// Copies the calling task's name, NUL-terminated, into `buf` (capacity `cap`
/// bytes) and its length without the NUL into `*len` (if `len` is not `NULL`).
/// An unnamed task has the empty name.
///
/// Errors: `IVY_EPERM` outside a task; `IVY_EINVAL` for a `NULL` `buf` or a zero
/// `cap`; `IVY_ERANGE` when the name and its NUL do not fit (then `*len` is still
/// set, so the caller can retry with `*len + 1` bytes, and `buf` is untouched).
///
/// # Safety
/// `buf` is valid for `cap` bytes of writes; `len` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_current_name(
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let buf = out_ptr(buf)?;
        if cap == 0 {
            return Err(IVY_EINVAL);
        }
        let me = crate::task::current().ok_or(IVY_EPERM)?;
        let name = me.name().unwrap_or("");
        if !len.is_null() {
            // SAFETY: non-null and writable by the caller's contract.
            unsafe { write_out(len, name.len()) };
        }
        // SAFETY: `buf` is writable for `cap` bytes (caller's contract).
        unsafe { write_c_str(name, buf, cap) }
    })
}

/// Whether the calling task has been asked to cancel: stores 1 or 0 in
/// `*cancelled`. Lets a C task that runs long without blocking poll for it.
/// Errors: `IVY_EPERM` outside a task; `IVY_EINVAL` (`cancelled` is `NULL`).
///
/// # Safety
/// `cancelled` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_task_is_cancelled(cancelled: *mut c_int) -> c_int {
    guard(|| {
        let cancelled = out_ptr(cancelled)?;
        let me = crate::task::current().ok_or(IVY_EPERM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(cancelled, c_int::from(me.is_cancelled())) };
        Ok(())
    })
}
