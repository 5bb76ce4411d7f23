//! `run`: a runtime per call, its main task, Ctrl-C, shutdown.
//!
//! Design decisions:
//! - One worker by default: with one worker, Python code between two blocking
//!   calls is atomic, as in asyncio (a shared sqlite3 connection, a dict being
//!   updated in two steps...). `workers=N` is an explicit opt-in to parallel
//!   scheduling (tasks still take turns on the GIL).
//! - Ctrl-C: CPython runs signal handlers only on the main OS thread, between
//!   bytecodes (`_Py_ThreadCanHandleSignals` compares the OS thread, so calling
//!   `PyErr_CheckSignals` from a worker -- even with the main task's thread
//!   state -- runs nothing). The main thread is the one inside `run`, waiting
//!   for the main task with the GIL released; it wakes every `SIGNAL_POLL` to
//!   run `PyErr_CheckSignals`. If a handler raises (the default SIGINT handler
//!   raises KeyboardInterrupt), `run` cancels the main task (its `finally`
//!   blocks run, and may block: cancellation is one-shot), waits for it, and
//!   raises that exception -- unless the main task swallowed the cancellation
//!   and returned, as asyncio's Runner does. A second Ctrl-C stops waiting.
//!   Polling costs one wake-up per `SIGNAL_POLL` on an otherwise idle thread
//!   and bounds the reaction time with every task parked; a wakeup fd would
//!   need the main thread to wait on two things, which ivy's plain-thread
//!   waits do not offer. Other threads' `run` do not poll (no handler could
//!   run there).
//! - Shutdown when the main task returns: the runtime is dropped with the GIL
//!   released; ivy cancels the remaining tasks (their `CancelledError` is then
//!   sticky, so shutdown ends) and waits for them, asyncio.run's behaviour.
//! - Stack size: Python tasks default to `DEFAULT_STACK` (8 MiB, a main
//!   thread's stack, which CPython's default limits are tuned for) or more when
//!   `sys.getrecursionlimit()` asks for more (`STACK_PER_LEVEL` bytes a
//!   level, measured on C-recursive code like nested `repr`), so a runaway
//!   recursion is a `RecursionError`, not an overflow of the guard page. Only
//!   touched pages use memory. An explicit `stack_size=` is honoured as given,
//!   and counts the whole stack: ivy's stack size below the top reserve that
//!   holds the root data chunk (`ivy_stack_size`), so that a Python size is
//!   not rounded up to the next power of two by the reserve added on top:
//!   ivy's guard page then ends the process with a stack-overflow report if
//!   the recursion limit allows more than it holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::{CancelledError, IvyError};
use crate::task::{self, RtCtx, Task};
use crate::tstate;

/// How often the main thread checks for signals while `run` waits.
const SIGNAL_POLL: Duration = Duration::from_millis(20);
/// The default stack of a Python task.
pub const DEFAULT_STACK: usize = 8 << 20;
/// Stack bytes a recursion level may take (C-recursive code), with margin.
pub const STACK_PER_LEVEL: usize = 2048;

static NEXT_RT: AtomicU64 = AtomicU64::new(1);

/// The stack the current recursion limit needs (`STACK_PER_LEVEL` a level).
pub fn stack_for_recursion_limit() -> usize {
    // SAFETY: called with the GIL held (from a #[pyfunction]); reads an int.
    let limit = unsafe { pyo3::ffi::Py_GetRecursionLimit() };
    usize::try_from(limit)
        .unwrap_or(0)
        .saturating_mul(STACK_PER_LEVEL)
}

/// Bytes of a task's stack set aside at its top for its data stack's root
/// chunk (swap.rs); none on interpreters without the per-task state swap.
#[cfg(ivyrt_swap)]
pub const STACK_TOP_RESERVE: usize = crate::swap::STACK_TOP_RESERVE;
#[cfg(not(ivyrt_swap))]
pub const STACK_TOP_RESERVE: usize = 0;

/// ivy's stack size (the task's frames, below the top reserve) for a Python
/// `stack_size`, which counts the whole stack, root chunk included: so that a
/// Python task's stack is what it asked for, not a power of two more.
pub fn ivy_stack_size(python_stack: usize) -> usize {
    python_stack.saturating_sub(STACK_TOP_RESERVE).max(16 << 10)
}

/// The default stack of a Python task: `DEFAULT_STACK`, or more when the
/// recursion limit asks for more.
pub fn default_stack_size() -> usize {
    DEFAULT_STACK.max(stack_for_recursion_limit())
}

fn is_main_thread(py: Python<'_>) -> PyResult<bool> {
    let threading = py.import("threading")?;
    let cur = threading.call_method0("current_thread")?;
    let main = threading.call_method0("main_thread")?;
    Ok(cur.is(&main))
}

/// Starts a runtime of `workers` threads, runs `main(*args)` as its main task,
/// shuts the runtime down (cancelling and waiting for the tasks left) and
/// returns `main`'s result or raises its exception (asyncio's `run`).
/// `stack_size`: bytes of stack per task; `debug`: ivy's debug reports (slow
/// tasks, leftover tasks; default: the `IVY_DEBUG` environment variable).
/// Ctrl-C cancels the main task, then raises KeyboardInterrupt.
#[pyfunction]
#[pyo3(signature = (main, /, *args, workers=1, stack_size=None, debug=None))]
pub fn run(
    py: Python<'_>,
    main: Py<PyAny>,
    args: Py<PyTuple>,
    workers: usize,
    stack_size: Option<usize>,
    debug: Option<bool>,
) -> PyResult<Py<PyAny>> {
    if ivy::task::current().is_some() {
        return Err(PyRuntimeError::new_err(
            "ivyrt.run() cannot be called from a running task: use create_task and join",
        ));
    }
    if workers == 0 {
        return Err(PyValueError::new_err("workers must be at least 1"));
    }
    let stack = match stack_size {
        Some(s) => s,
        None => default_stack_size(),
    };
    let mut builder = ivy::Builder::new()
        .workers(workers)
        .stack_size(ivy_stack_size(stack))
        .stack_top_reserve(STACK_TOP_RESERVE)
        .thread_name("ivyrt")
        .fifo_spawns(true)
        .hook_park_guard(tstate::hook_park_guard);
    if let Some(d) = debug {
        builder = builder.debug(d);
    }
    let rt = py
        .detach(move || builder.build())
        .map_err(|e| IvyError::new_err(format!("cannot start the runtime: {e}")))?;
    let ctx = Arc::new(RtCtx {
        id: NEXT_RT.fetch_add(1, Ordering::Relaxed),
        handle: rt.handle(),
        stack_size: stack,
        stack_size_given: stack_size.is_some(),
    });
    let name = "main".into_pyobject(py)?.into_any().unbind();
    let spawned = task::spawn(py, &ctx, main, args, None, Some(name), None);
    let interrupt = match &spawned {
        Ok(main_task) => wait_main(py, main_task)?,
        Err(_) => None,
    };
    py.detach(move || drop(rt));
    task::forget_runtime(ctx.id);
    let main_task = spawned?;
    let outcome = main_task.get().result(py);
    match (interrupt, outcome) {
        (Some(e), Err(c)) if c.is_instance_of::<CancelledError>(py) => Err(e),
        (_, outcome) => outcome,
    }
}

/// Waits for the main task, running signal handlers on the main thread.
/// Returns the exception a handler raised (the main task was cancelled).
fn wait_main(py: Python<'_>, main_task: &Bound<'_, Task>) -> PyResult<Option<PyErr>> {
    let finished = main_task.get().finished();
    if !is_main_thread(py)? {
        py.detach(|| finished.wait_deadline(None))
            .map_err(|e| IvyError::new_err(e.to_string()))?;
        return Ok(None);
    }
    let mut interrupt: Option<PyErr> = None;
    loop {
        let done = py.detach(|| {
            finished
                .wait_deadline(Some(Instant::now() + SIGNAL_POLL))
                .is_ok()
        });
        if done {
            return Ok(interrupt);
        }
        if let Err(e) = py.check_signals() {
            if interrupt.is_some() {
                return Err(e); // a second Ctrl-C: stop waiting
            }
            main_task.get().cancel(py, None);
            interrupt = Some(e);
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    Ok(())
}
