//! Runtimes in the C ABI: `ivy_runtime_run` (asyncio.run), and explicit runtimes for
//! programs that keep one alive and spawn onto it from their own threads.
//!
//! Runtimes made here give tasks `IVY_DEFAULT_STACK_SIZE` (1 MiB) by default,
//! four times Rust's default: C libraries use far more stack than Rust code
//! (glibc's resolver, `printf` with big buffers, deep recursion in parsers). Only
//! the pages a task touches use memory; the rest is address space.
//!
//! `ivy_runtime_current` hands out *borrowed* handles: code deep in a task (a
//! library) may need its runtime to spawn onto from a helper thread, but must not
//! be able to shut down a runtime it does not own -- and the runtime of
//! `ivy_runtime_run` has no owner handle at all. So each runtime gets one extra
//! table entry without the `Runtime` in it, on which `ivy_runtime_free` is
//! `IVY_EPERM`; it is removed when the runtime shuts down.
//!
//! `ivy_runtime_block_on` never leaves its task running with no handle: when the
//! wait is interrupted (the calling task cancelled, a deadline scope passed), it
//! cancels the task and waits for it, shielded, as `asyncio.run` cancels what is
//! left before it returns.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::*;
use super::handle::{HandleTable, Kind};
use super::task::{ivy_spawn_opts_t, ivy_task_fn_t, ivy_task_t, spawn_c};
use super::{guard, out_ptr, write_out};
use crate::runtime::{Builder, Handle, Runtime};

/// Default stack size, in bytes, of tasks on runtimes created through the C ABI.
pub const IVY_DEFAULT_STACK_SIZE: usize = 1 << 20;

/// Runtime configuration. Zero-initialise it: every zero field means "default".
/// Passing `NULL` instead of a config means all defaults.
///
/// The workers run under Linux's `SCHED_BATCH` policy unless the environment
/// has `IVY_SCHED_BATCH=0` (README, "Kernel scheduling policy"); another value
/// than 0, 1, true or false makes the runtime's creation fail with `IVY_EINVAL`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ivy_config_t {
    /// Worker threads; 0: the `IVY_WORKERS` environment variable, else the
    /// number of CPUs. At most 4096.
    pub workers: usize,
    /// Default task stack size in bytes; 0: the `IVY_STACK_SIZE` environment
    /// variable, else `IVY_DEFAULT_STACK_SIZE`. At most 1 GiB.
    pub stack_size: usize,
    /// Most threads the blocking pool (`ivy_blocking_spawn`, name resolution)
    /// runs at once; jobs beyond it queue. 0: 512.
    pub max_blocking_threads: usize,
    /// How long, in milliseconds, an idle blocking-pool thread waits for work
    /// before it exits. 0: 10 seconds.
    pub blocking_keep_alive_ms: u64,
    /// Name prefix of the runtime's threads (UTF-8, copied; `NULL`: `ivy-worker`):
    /// workers are `PREFIX-0`, `PREFIX-1`, ..., blocking-pool threads
    /// `PREFIX-blocking`, as shown by `top -H` and in `/proc/self/task/N/comm`
    /// (Linux keeps the first 15 bytes).
    pub thread_name: *const c_char,
    /// Debug mode (reports tasks that run long without suspending, and the tasks
    /// left at shutdown, on stderr): 0: the `IVY_DEBUG` environment variable;
    /// positive: on; negative: off.
    pub debug: c_int,
    /// In debug mode, report a task that runs longer than this many milliseconds
    /// without suspending. Non-zero turns debug mode on (unless `debug` is
    /// negative); 0: the
    /// `IVY_DEBUG_SLOW_MS` environment variable, else 100.
    pub slow_task_ms: u64,
}

impl Default for ivy_config_t {
    fn default() -> ivy_config_t {
        ivy_config_t {
            workers: 0,
            stack_size: 0,
            max_blocking_threads: 0,
            blocking_keep_alive_ms: 0,
            thread_name: std::ptr::null(),
            debug: 0,
            slow_task_ms: 0,
        }
    }
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
    /// The runtime, for `ivy_runtime_free` to shut down; `None` in a borrowed
    /// entry (`ivy_runtime_current`), which cannot free it.
    runtime: Mutex<Option<Runtime>>,
    borrowed: bool,
}

static RUNTIMES: HandleTable<RuntimeEntry> = HandleTable::new(Kind::Runtime);

/// The borrowed handle of each runtime `ivy_runtime_current` was asked about, so
/// every call on one runtime gives the same value and the table holds one entry
/// per runtime. Entries go when the runtime is freed through the C ABI, or, for
/// runtimes made elsewhere (Rust), at the next call after their shutdown. The
/// entry's `Handle` keeps the runtime's shared state alive, so its address (the
/// key) is never reused while the entry exists.
static BORROWED: Mutex<Vec<(Handle, u64)>> = Mutex::new(Vec::new());

fn borrowed_list() -> std::sync::MutexGuard<'static, Vec<(Handle, u64)>> {
    BORROWED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The borrowed handle of `handle`'s runtime, made on first use.
fn borrowed_id(handle: &Handle) -> Result<u64, c_int> {
    let mut list = borrowed_list();
    list.retain(|(h, id)| {
        let live = !h.shared.is_shutdown();
        if !live {
            RUNTIMES.remove(*id);
        }
        live
    });
    if let Some((_, id)) = list
        .iter()
        .find(|(h, _)| Arc::ptr_eq(&h.shared, &handle.shared))
    {
        return Ok(*id);
    }
    let entry = Arc::new(RuntimeEntry {
        handle: handle.clone(),
        runtime: Mutex::new(None),
        borrowed: true,
    });
    let id = RUNTIMES.insert(entry).ok_or(IVY_ENOMEM)?;
    list.push((handle.clone(), id));
    Ok(id)
}

/// Drops the borrowed handle of a runtime that was just shut down.
fn forget_borrowed(handle: &Handle) {
    borrowed_list().retain(|(h, id)| {
        let this = Arc::ptr_eq(&h.shared, &handle.shared);
        if this {
            RUNTIMES.remove(*id);
        }
        !this
    });
}

/// Builds a runtime from a C config.
///
/// # Safety
/// `config` is `NULL` or points to a valid `ivy_config_t` whose `thread_name`
/// is `NULL` or a NUL-terminated string.
unsafe fn build(config: *const ivy_config_t) -> Result<Runtime, c_int> {
    // SAFETY: the caller's contract.
    let config = unsafe { config.as_ref() }.copied().unwrap_or_default();
    let mut b = Builder::new();
    if config.workers != 0 {
        b = b.workers(config.workers);
    }
    if config.max_blocking_threads != 0 {
        b = b.max_blocking_threads(config.max_blocking_threads);
    }
    if config.blocking_keep_alive_ms != 0 {
        b = b.blocking_keep_alive(Duration::from_millis(config.blocking_keep_alive_ms));
    }
    if !config.thread_name.is_null() {
        // SAFETY: the caller's contract: a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(config.thread_name) };
        let name = name.to_str().map_err(|_| IVY_EINVAL)?;
        if name.is_empty() {
            return Err(IVY_EINVAL);
        }
        b = b.thread_name(name);
    }
    if config.slow_task_ms != 0 {
        b = b.slow_task_threshold(Duration::from_millis(config.slow_task_ms));
    }
    match config.debug {
        0 => {}
        on => b = b.debug(on > 0),
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
    crate::task::current::in_task()
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
        let handle = rt.handle();
        drop(rt);
        forget_borrowed(&handle);
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
            borrowed: false,
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
/// `rt`'s own tasks (it would wait for itself), or for a borrowed handle from
/// `ivy_runtime_current` (the runtime is its owner's to free): the runtime stays
/// up.
#[no_mangle]
pub extern "C" fn ivy_runtime_free(rt: ivy_runtime_t) -> c_int {
    guard(|| {
        let entry = RUNTIMES.get(rt.id).ok_or(IVY_EBADF)?;
        if entry.borrowed {
            return Err(IVY_EPERM);
        }
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
        forget_borrowed(&entry.handle);
        Ok(())
    })
}

/// Stores a handle to the runtime of the calling task in `*out`. The handle is
/// *borrowed*: it works with `ivy_runtime_spawn`, `ivy_runtime_block_on` and
/// `ivy_runtime_workers` -- from any thread, e.g. handed to a plain thread that
/// must spawn back onto this runtime -- but `ivy_runtime_free` on it is
/// `IVY_EPERM`: only the owner (`ivy_runtime_new`'s caller; for the runtime of
/// `ivy_runtime_run`, that call itself) shuts a runtime down. Every call on one
/// runtime gives the same handle, distinct from the owner's, and nothing needs
/// to be released. It stays valid while the runtime runs: spawns during
/// shutdown are `IVY_ECLOSED`, and once the runtime is gone the handle is
/// `IVY_EBADF`.
///
/// Errors: `IVY_EPERM` outside a task (a plain thread has no runtime);
/// `IVY_EINVAL` (`out` is `NULL`).
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_runtime_current(out: *mut ivy_runtime_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        if !in_task() {
            return Err(IVY_EPERM);
        }
        let handle = Handle::try_current().ok_or(IVY_EPERM)?;
        let id = borrowed_id(&handle)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_runtime_t { id }) };
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
