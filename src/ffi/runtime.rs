//! Runtimes in the C ABI: `ivy_runtime_run` (asyncio.run), and explicit runtimes for
//! programs that keep one alive and spawn onto it from their own threads.
//!
//! Runtimes made here give tasks `IVY_DEFAULT_STACK_SIZE` (1 MiB) by default,
//! four times Rust's default: C libraries use far more stack than Rust code
//! (glibc's resolver, `printf` with big buffers, deep recursion in parsers). Only
//! the pages a task touches use memory; the rest is address space.

use std::os::raw::{c_int, c_void};
use std::sync::{Arc, Mutex};

use super::error::*;
use super::handle::{HandleTable, Kind};
use super::task::{ivy_spawn_opts_t, ivy_task_fn_t, ivy_task_t, spawn_c};
use super::{guard, out_ptr, write_out};
use crate::runtime::{worker, Builder, Handle, Runtime};

/// Default stack size, in bytes, of tasks on runtimes created through the C ABI.
pub const IVY_DEFAULT_STACK_SIZE: usize = 1 << 20;

/// Runtime configuration. Zero-initialise it: every zero field means "default".
/// Passing `NULL` instead of a config means all defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ivy_config_t {
    /// Worker threads; 0: the `IVY_WORKERS` environment variable, else the
    /// number of CPUs. At most 4096.
    pub workers: usize,
    /// Default task stack size in bytes; 0: the `IVY_STACK_SIZE` environment
    /// variable, else `IVY_DEFAULT_STACK_SIZE`. At most 1 GiB.
    pub stack_size: usize,
}

/// A handle to a runtime made by `ivy_runtime_new`, valid until
/// `ivy_runtime_free`. A zero-initialised handle is never valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_runtime_t {
    pub id: u64,
}

struct RuntimeEntry {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
}

static RUNTIMES: HandleTable<RuntimeEntry> = HandleTable::new(Kind::Runtime);

/// Builds a runtime from a C config.
///
/// # Safety
/// `config` is `NULL` or points to a valid `ivy_config_t`.
unsafe fn build(config: *const ivy_config_t) -> Result<Runtime, c_int> {
    // SAFETY: the caller's contract.
    let config = unsafe { config.as_ref() }.copied().unwrap_or_default();
    let mut b = Builder::new();
    if config.workers != 0 {
        b = b.workers(config.workers);
    }
    if config.stack_size != 0 {
        b = b.stack_size(config.stack_size);
    } else if std::env::var_os("IVY_STACK_SIZE").is_none() {
        b = b.stack_size(IVY_DEFAULT_STACK_SIZE);
    }
    b.build().map_err(|e| io_error(&e))
}

/// Whether the caller is an ivy task (of any runtime).
fn in_task() -> bool {
    worker::current_task().is_some()
}

/// Waits for a task from a plain thread (or parks a task) and reports it like
/// `ivy_task_join` with no deadline.
fn join_forever(task: ivy_task_t, result: *mut *mut c_void) -> c_int {
    // SAFETY: forwarded caller contract on `result`.
    unsafe { super::task::ivy_task_join(task, result, super::time::IVY_FOREVER) }
}

/// Runs `entry(arg)` as the main task (named "main") of a new runtime, waits for
/// it, shuts the runtime down -- cancelling leftover tasks and waiting for them
/// to finish, as `asyncio.run` does -- and stores the main task's return value in
/// `*result` (if `result` is not `NULL`). `config` may be `NULL` (defaults).
///
/// Errors: `IVY_EPERM` when called from inside an ivy task (like `asyncio.run`
/// inside a running loop: spawn and join instead); `IVY_EINVAL` for a `NULL`
/// `entry` or an invalid config (0 < workers <= 4096, stack size <= 1 GiB, valid
/// `IVY_WORKERS` / `IVY_STACK_SIZE`); an OS error (`-errno`) if threads cannot
/// start; `IVY_ENOMEM` if the main task got no stack.
///
/// # Safety
/// `config` is `NULL` or valid; `result` is `NULL` or valid for writes; `entry`
/// is a valid function.
#[no_mangle]
pub unsafe extern "C" fn ivy_runtime_run(
    config: *const ivy_config_t,
    entry: ivy_task_fn_t,
    arg: *mut c_void,
    result: *mut *mut c_void,
) -> c_int {
    guard(|| {
        if in_task() {
            return Err(IVY_EPERM);
        }
        if entry.is_none() {
            return Err(IVY_EINVAL);
        }
        // SAFETY: forwarded caller contract.
        let rt = unsafe { build(config)? };
        let opts = ivy_spawn_opts_t {
            name: c"main".as_ptr(),
            stack_size: 0,
            on_start: None,
            on_start_arg: std::ptr::null_mut(),
            on_exit: None,
            on_exit_arg: std::ptr::null_mut(),
        };
        // SAFETY: `opts` is valid and its name NUL-terminated; `entry` is the
        // caller's.
        let main = unsafe { spawn_c(&rt.handle(), entry, arg, &opts)? };
        let code = join_forever(main, result);
        drop(rt);
        if code == 0 {
            Ok(())
        } else {
            Err(code)
        }
    })
}

/// Starts a runtime (its worker threads) and stores its handle in `*out`.
/// `config` may be `NULL` (defaults). Free it with `ivy_runtime_free`.
///
/// Errors: `IVY_EINVAL` (`out` is `NULL`, or an invalid config as for
/// `ivy_runtime_run`); an OS error (`-errno`) if threads cannot start.
///
/// # Safety
/// `config` is `NULL` or valid; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_runtime_new(
    config: *const ivy_config_t,
    out: *mut ivy_runtime_t,
) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        // SAFETY: forwarded caller contract.
        let rt = unsafe { build(config)? };
        let entry = Arc::new(RuntimeEntry {
            handle: rt.handle(),
            runtime: Mutex::new(Some(rt)),
        });
        let id = RUNTIMES.insert(entry).ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_runtime_t { id }) };
        Ok(())
    })
}

/// Spawns `entry(arg)` on runtime `rt`, from any thread (a plain thread or a task
/// of any runtime). Handle ownership and errors as `ivy_task_spawn`, except that it
/// works outside tasks; `IVY_EBADF` for a stale runtime handle, and
/// `IVY_ECLOSED` (or `IVY_EBADF`) when `ivy_runtime_free` of `rt` is under way on
/// another thread. A handle it returns always joins (with the task's value, or
/// `IVY_ECANCELED` if shutdown cancelled it): none waits for a runtime that is
/// gone.
///
/// # Safety
/// As `ivy_task_spawn`.
#[no_mangle]
pub unsafe extern "C" fn ivy_runtime_spawn(
    rt: ivy_runtime_t,
    entry: ivy_task_fn_t,
    arg: *mut c_void,
    opts: *const ivy_spawn_opts_t,
    out: *mut ivy_task_t,
) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let rt = RUNTIMES.get(rt.id).ok_or(IVY_EBADF)?;
        // SAFETY: forwarded caller contract.
        let task = unsafe { spawn_c(&rt.handle, entry, arg, opts)? };
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, task) };
        Ok(())
    })
}

/// Runs `entry(arg)` as a task on `rt` and waits for it (blocking a plain
/// thread, parking a task), storing its return value in `*result` if `result` is
/// not `NULL`. The same as `ivy_runtime_spawn` then `ivy_task_join` with no
/// deadline, except that the task never outlives the call: when the wait is
/// interrupted -- the *calling* task is cancelled (`IVY_ECANCELED`) or the
/// deadline of a scope it opened with `ivy_deadline_push` passes
/// (`IVY_ETIMEDOUT`) -- the task it started is cancelled too and waited for
/// (shielded: a task that never blocks again keeps this call waiting, as it keeps
/// `ivy_runtime_free` waiting), its value discarded, and the call returns that
/// code. Errors: those two functions' (`IVY_EBADF`, `IVY_EINVAL`, `IVY_ECLOSED`,
/// `IVY_ECANCELED`, ...).
///
/// # Safety
/// `result` is `NULL` or valid for writes; `entry` is a valid function.
#[no_mangle]
pub unsafe extern "C" fn ivy_runtime_block_on(
    rt: ivy_runtime_t,
    entry: ivy_task_fn_t,
    arg: *mut c_void,
    result: *mut *mut c_void,
) -> c_int {
    guard(|| {
        let rt = RUNTIMES.get(rt.id).ok_or(IVY_EBADF)?;
        // SAFETY: forwarded caller contract; NULL options.
        let task = unsafe { spawn_c(&rt.handle, entry, arg, std::ptr::null())? };
        match join_forever(task, result) {
            0 => Ok(()),
            code => {
                // A join that failed with the handle still valid (the calling
                // task was cancelled while it waited): the task must not run on
                // with no handle. Cancel it and wait for it, shielded.
                super::task::cancel_and_reap(task);
                Err(code)
            }
        }
    })
}

/// Shuts runtime `rt` down and frees the handle: every task still running is
/// cancelled (it sees `IVY_ECANCELED` at its next blocking call) and waited for,
/// then the worker threads exit. A task that never blocks again keeps this
/// waiting. Task handles of that runtime stay valid until joined or detached
/// (they report the tasks' outcomes).
///
/// Errors: `IVY_EBADF` for a stale handle; `IVY_EPERM` when called from one of
/// `rt`'s own tasks (it would wait for itself): the runtime stays up.
#[no_mangle]
pub extern "C" fn ivy_runtime_free(rt: ivy_runtime_t) -> c_int {
    guard(|| {
        let entry = RUNTIMES.get(rt.id).ok_or(IVY_EBADF)?;
        let own_task =
            Handle::try_current().is_some_and(|h| Arc::ptr_eq(&h.shared, &entry.handle.shared));
        if own_task {
            return Err(IVY_EPERM);
        }
        let entry = RUNTIMES.remove(rt.id).ok_or(IVY_EBADF)?;
        let runtime = entry
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(runtime);
        Ok(())
    })
}

/// Stores the number of worker threads of `rt` in `*workers`. Errors:
/// `IVY_EBADF`, `IVY_EINVAL` (`workers` is `NULL`).
///
/// # Safety
/// `workers` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_runtime_workers(rt: ivy_runtime_t, workers: *mut usize) -> c_int {
    guard(|| {
        let workers = out_ptr(workers)?;
        let entry = RUNTIMES.get(rt.id).ok_or(IVY_EBADF)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(workers, entry.handle.shared.remotes.len()) };
        Ok(())
    })
}
