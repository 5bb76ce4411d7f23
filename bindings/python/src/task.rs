//! `Task`: a Python function running as an ivy task; `create_task`,
//! `current_task`, `all_tasks`, `sleep`, `yield_now`.
//!
//! Design decisions:
//! - The outcome lives on the `Task` object, written by the task itself
//!   (`_task_main`) before it signals an `ivy::sync::Event`: so a task can be
//!   joined any number of times, by any number of waiters (`gather(t, t)`),
//!   from tasks or plain threads. ivy's own `JoinHandle` has one waiter slot
//!   and one `join`; here it serves only to cancel.
//! - `Task` is a frozen pyclass whose Python references sit in `GilCell`s
//!   (gil_cell.rs: guarded by the GIL, no atomics: the collector traverses
//!   every task several times), not `&mut self` methods: a waiter parked in
//!   `join` must not hold a PyO3 borrow that would make a concurrent
//!   `cancel()` from another task fail. No borrow of a cell is held across a
//!   call into Python code or the drop of a Python object.
//! - contextvars are copied at spawn (`PyContext_CopyCurrent`, what asyncio
//!   does) and entered around the call with `PyContext_Enter/Exit`: no tuple,
//!   no `Context.run` call.
//! - A task nobody joins: its exception is reported on stderr with its
//!   traceback when the `Task` is freed (asyncio's "Task exception was never
//!   retrieved"), at once when it ends if it was `detach()`ed. A finished task
//!   is referenced only by the user: fire-and-forget tasks are freed as they end.
//! - `current_task()` finds the running task through a registry keyed by ivy's
//!   task id (one lookup under a mutex the GIL makes uncontended), which also
//!   answers `all_tasks()`. `join`'s self-join check needs no lookup: it
//!   compares ivy ids (the id is stored before the task can run Python).
//! - The end event (`Finish`) is plain Rust inline in the frozen `Task`, not
//!   an `Arc` of its own: one allocation less per spawn. The closure of a task
//!   ivy never ran reaches it through its `Py<Task>` without the GIL
//!   (`Py::get` on a frozen class touches no reference count).
//! - Cancellation before the task started: `cancel()` only records it, and
//!   the task, when it starts, ends cancelled without calling its function
//!   (asyncio's semantics), running its done callbacks. A task ivy never ran
//!   (no stack; or its closure dropped by a shutdown) is signalled by its
//!   closure's drop guard (its `Py` reference goes to PyO3's deferred pool,
//!   see tstate.rs); its `Pending` outcome is then settled from ivy's
//!   `JoinError` when first observed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::block::{blocking, deadline_after};
use crate::errors::{CancelledError, InvalidStateError, IvyError};
use crate::gil_cell::GilCell;
use crate::tstate;

/// One `run`: its ivy handle and the stack size its Python tasks get.
pub struct RtCtx {
    pub id: u64,
    pub handle: ivy::Handle,
    /// The runtime's default task stack, in bytes.
    pub stack_size: usize,
    /// Whether `run(stack_size=)` set it (then it is not grown for the
    /// recursion limit: the user's size is honoured).
    pub stack_size_given: bool,
}

/// Signals a task's end: to its joiners (an Event, any number of waiters)
/// and to the completion queues of `as_completed`/`wait`/`gather` watching it.
/// Plain Rust, so that a task that never ran is signalled without the GIL.
pub struct Finish {
    event: ivy::sync::Event,
    watchers: Mutex<Vec<(Arc<ivy::sync::Queue<usize>>, usize)>>,
}

impl Finish {
    fn new() -> Finish {
        Finish {
            event: ivy::sync::Event::new(),
            watchers: Mutex::new(Vec::new()),
        }
    }

    fn set(&self) {
        let watchers = {
            let mut w = lock(&self.watchers);
            self.event.set();
            std::mem::take(&mut *w)
        };
        for (queue, index) in watchers {
            let _ = queue.put(index); // unbounded: never parks
        }
    }

    pub fn is_set(&self) -> bool {
        self.event.is_set()
    }

    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), ivy::WaitError> {
        self.event.wait_deadline(deadline)
    }

    /// Puts `index` into `queue` when the task ends (at once if it has).
    fn watch(&self, queue: &Arc<ivy::sync::Queue<usize>>, index: usize) {
        let mut w = lock(&self.watchers);
        if self.event.is_set() {
            drop(w);
            let _ = queue.put(index);
        } else {
            w.push((queue.clone(), index));
        }
    }
}

/// What the task's function did.
enum Outcome {
    /// Not started yet (or never: cancelled before it started).
    Pending,
    Running,
    Returned(Py<PyAny>),
    Raised(Py<PyAny>),
    /// Ended by a `CancelledError` (this instance).
    Cancelled(Py<PyAny>),
}

/// The call a task makes, taken by `_task_main`.
struct Call {
    fun: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
    context: Py<PyAny>,
}

/// A running Python function, like asyncio's Task. Made by `create_task`.
#[pyclass(frozen, weakref, module = "ivyrt", name = "Task")]
pub struct Task {
    rt: Arc<RtCtx>,
    number: u64,
    name: GilCell<Option<Py<PyAny>>>,
    call: GilCell<Option<Call>>,
    outcome: GilCell<Outcome>,
    finished: Finish,
    handle: GilCell<Option<ivy::JoinHandle<()>>>,
    ivy_id: AtomicU64,
    cancel_requests: AtomicUsize,
    cancel_msg: GilCell<Option<Py<PyAny>>>,
    retrieved: AtomicBool,
    detached: AtomicBool,
    callbacks: GilCell<Vec<Py<PyAny>>>,
}

/// Tasks spawned and not finished, by ivy task id.
static LIVE: LazyLock<Mutex<LiveTasks>> = LazyLock::new(Default::default);

type LiveTasks = HashMap<u64, Py<Task>, BuildHasherDefault<IdHasher>>;

/// ivy's task ids are distinct counters, and tasks are mostly spawned and
/// finished in id order: the id itself is the hash's low bits, so that
/// consecutive tasks take consecutive buckets (an insert or a removal touches
/// the cache lines the previous one did, where a mixed hash missed the cache
/// on both: 81% of `finish`'s samples in a 100k-task `spawn_join`), and a
/// multiplication fills the top 7 bits, which hashbrown matches 16 buckets at
/// a time with (all zero, every bucket of a group would match).
#[derive(Default)]
struct IdHasher(u64);

impl IdHasher {
    const TAG_BITS: u32 = 7;

    fn hash_id(n: u64) -> u64 {
        let tag = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - Self::TAG_BITS);
        (n & (u64::MAX >> Self::TAG_BITS)) | tag << (64 - Self::TAG_BITS)
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = Self::hash_id(n);
    }
}
static NEXT_NUMBER: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Python task running on this ivy task, if any.
pub fn current(py: Python<'_>) -> Option<Py<Task>> {
    let id = ivy::task::current()?.id().as_u64();
    lock(&LIVE).get(&id).map(|t| t.clone_ref(py))
}

/// The message given to `cancel(msg)` of the running task.
pub fn current_cancel_message(py: Python<'_>) -> Option<Py<PyAny>> {
    let task = current(py)?;
    let msg = task
        .get()
        .cancel_msg
        .borrow(py)
        .as_ref()
        .map(|m| m.clone_ref(py));
    msg
}

/// Forgets the tasks of runtime `rt` that never ran (called when it ends).
pub fn forget_runtime(rt: u64) {
    let gone: Vec<Py<Task>> = {
        let mut live = lock(&LIVE);
        let ids: Vec<u64> = live
            .iter()
            .filter(|(_, t)| t.get().rt.id == rt)
            .map(|(&id, _)| id)
            .collect();
        ids.iter().filter_map(|id| live.remove(id)).collect()
    };
    drop(gone); // outside the lock: freeing a Task may run Python code
}

/// Spawns `fun(*args, **kwargs)` as a task on `rt`.
pub fn spawn<'py>(
    py: Python<'py>,
    rt: &Arc<RtCtx>,
    fun: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
    name: Option<Py<PyAny>>,
    stack_size: Option<usize>,
) -> PyResult<Bound<'py, Task>> {
    // SAFETY: the GIL is held; a new reference or NULL with an exception set.
    let context = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())? };
    // Names are kept as `str(name)`, as asyncio does.
    let name = match name {
        Some(n) => Some(n.bind(py).str()?.into_any().unbind()),
        None => None,
    };
    let ivy_name = name.as_ref().map(|n| n.bind(py).to_string());
    // A recursion limit raised after `run` started gets the stack it needs.
    let stack_size = stack_size.or_else(|| {
        let need = crate::runtime::stack_for_recursion_limit();
        (!rt.stack_size_given && need > rt.stack_size).then_some(need)
    });
    let task = Bound::new(
        py,
        Task {
            rt: rt.clone(),
            number: NEXT_NUMBER.fetch_add(1, Ordering::Relaxed),
            name: GilCell::new(name),
            call: GilCell::new(Some(Call {
                fun,
                args,
                kwargs,
                context: context.unbind(),
            })),
            outcome: GilCell::new(Outcome::Pending),
            finished: Finish::new(),
            handle: GilCell::new(None),
            ivy_id: AtomicU64::new(0),
            cancel_requests: AtomicUsize::new(0),
            cancel_msg: GilCell::new(None),
            retrieved: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            callbacks: GilCell::new(Vec::new()),
        },
    )?;
    let entry = Entry {
        task: Some(task.clone().unbind()),
        stack_size: stack_size.unwrap_or(rt.stack_size),
    };
    let body = move || entry.run();
    let handle = if ivy_name.is_none() && stack_size.is_none() {
        rt.handle.spawn(body)
    } else {
        let mut b = ivy::task::Builder::new();
        if let Some(n) = ivy_name {
            b = b.name(n);
        }
        if let Some(s) = stack_size {
            b = b.stack_size(crate::runtime::ivy_stack_size(s));
        }
        b.spawn_on(&rt.handle, body)
            .map_err(|e| IvyError::new_err(format!("cannot spawn the task: {e}")))?
    };
    let t = task.get();
    let id = handle.id().as_u64();
    t.ivy_id.store(id, Ordering::Relaxed);
    t.handle.replace(py, Some(handle));
    lock(&LIVE).insert(id, task.clone().unbind());
    Ok(task)
}

/// The closure an ivy task runs; its drop guard signals a task that never ran.
struct Entry {
    task: Option<Py<Task>>,
    /// The ivy task's stack size (`tstate::run_task` may keep the task's
    /// Python data stack on it).
    stack_size: usize,
}

impl Entry {
    fn run(mut self) {
        let task = self.task.take().expect("an entry runs once");
        // Given back if it could not run (out of memory): `drop` signals it.
        self.task = tstate::run_task(task, self.stack_size).err();
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Never ran (cancelled before it started, shutdown, out of
            // memory): wake the joiners (`Finish` is plain Rust in a frozen
            // Task, reachable without the GIL through the reference held
            // here); then the `Py` goes to PyO3's deferred pool.
            task.get().finished.set();
        }
    }
}

/// The body of every task: called by `tstate::run_task` with the task's own
/// thread state, through Python, so that PyO3's trampoline keeps its count.
#[pyfunction]
pub fn _task_main(py: Python<'_>, task: Bound<'_, Task>) {
    // The frame that stays on the stack while the function runs is kept to
    // what the call needs: the parts before and after it are out of line, as
    // their locals would sit in every parked task's one stack page
    // (findings/pystack.md).
    let Some(call) = task_start(py, &task) else {
        return;
    };
    let ctx = call.context.as_ptr();
    // SAFETY: the GIL is held; `ctx` is a fresh copy nobody else entered.
    let entered = unsafe { ffi::PyContext_Enter(ctx) } == 0;
    if !entered {
        // SAFETY: PyContext_Enter failed and set an exception; clear it, the
        // call then runs in the thread state's current context.
        unsafe { ffi::PyErr_Clear() };
    }
    let r = call
        .fun
        .bind(py)
        .call(call.args.bind(py), call.kwargs.as_ref().map(|k| k.bind(py)));
    if entered {
        // SAFETY: exits the context entered above, on the same thread state.
        unsafe { ffi::PyContext_Exit(ctx) };
    }
    drop(call);
    task_end(py, &task, r);
}

/// `_task_main`'s start: the call to make, or `None` if there is none to
/// make (already taken, or the task was cancelled before it started: then it
/// is finished here).
#[inline(never)]
fn task_start(py: Python<'_>, task: &Bound<'_, Task>) -> Option<Call> {
    let t = task.get();
    let call = t.call.take(py)?;
    if t.cancel_requests.load(Ordering::Relaxed) > 0
        || ivy::task::current().is_some_and(|c| c.is_cancelled())
    {
        // Cancelled before its first instruction, by `cancel()` (which does
        // not ask ivy to drop an unstarted task, so that this path runs its
        // callbacks) or by a shutdown (ivy starts the unstarted tasks of a
        // closing runtime, cancelled): as in asyncio, the function never runs.
        drop(call);
        let msg = t.cancel_msg.borrow(py).as_ref().map(|m| m.clone_ref(py));
        let err = match msg {
            Some(m) => CancelledError::new_err((m,)),
            None => CancelledError::new_err("the task was cancelled before it started"),
        };
        finish(py, task, Outcome::Cancelled(err.into_value(py).into_any()));
        return None;
    }
    t.outcome.replace(py, Outcome::Running); // was Pending
    Some(call)
}

/// `_task_main`'s end: the outcome of the call, recorded.
#[inline(never)]
fn task_end(py: Python<'_>, task: &Bound<'_, Task>, r: PyResult<Bound<'_, PyAny>>) {
    let t = task.get();
    let detached = t.detached.load(Ordering::Relaxed);
    let outcome = match r {
        Ok(_) if detached => Outcome::Returned(py.None()),
        Ok(v) => Outcome::Returned(v.unbind()),
        Err(e) if e.is_instance_of::<CancelledError>(py) => {
            Outcome::Cancelled(e.into_value(py).into_any())
        }
        Err(e) if crate::cancel::take_hook_delivery(e.value(py).as_any()) => {
            // A hooked call's OSError(ECANCELED) delivered the cancellation
            // (cancel.rs): the task ends cancelled, that error as the cause.
            let msg = t.cancel_msg.borrow(py).as_ref().map(|m| m.clone_ref(py));
            let err = crate::cancel::cancelled_error(msg);
            err.set_cause(py, Some(e));
            Outcome::Cancelled(err.into_value(py).into_any())
        }
        Err(e) => Outcome::Raised(e.into_value(py).into_any()),
    };
    finish(py, task, outcome);
}

/// Records a task's outcome, wakes its joiners and watchers, reports its
/// exception if it was detached, and runs its done callbacks (on its own
/// stack, as the last thing it does).
fn finish(py: Python<'_>, task: &Bound<'_, Task>, outcome: Outcome) {
    let t = task.get();
    let report = t.detached.load(Ordering::Relaxed) && matches!(outcome, Outcome::Raised(_));
    t.outcome.replace(py, outcome); // was Pending or Running
    let removed = lock(&LIVE).remove(&t.ivy_id.load(Ordering::Relaxed));
    drop(removed);
    t.finished.set();
    if report {
        t.report_unretrieved(py);
    }
    let callbacks = t.callbacks.take(py);
    for cb in callbacks {
        if let Err(e) = cb.bind(py).call1((task,)) {
            e.write_unraisable(py, Some(cb.bind(py)));
        }
    }
}

impl Task {
    /// The event set when the task has finished.
    pub fn finished(&self) -> &Finish {
        &self.finished
    }

    fn is_done(&self) -> bool {
        self.finished.is_set()
    }

    /// Whether this task is the one calling: compares ivy task ids, without
    /// the registry (`current`). `ivy_id` is set before the task can run any
    /// Python code: `spawn` stores it with the GIL held, which the task needs.
    fn is_running_here(&self) -> bool {
        ivy::task::current().is_some_and(|c| c.id().as_u64() == self.ivy_id.load(Ordering::Relaxed))
    }

    fn state_name(&self, py: Python<'_>) -> &'static str {
        match &*self.outcome.borrow(py) {
            Outcome::Pending if self.is_done() => "cancelled",
            Outcome::Pending => "pending",
            Outcome::Running => "running",
            Outcome::Returned(_) => "done",
            Outcome::Raised(_) => "failed",
            Outcome::Cancelled(_) => "cancelled",
        }
    }

    fn repr(&self, py: Python<'_>) -> String {
        // Cloned out first: `repr` of a str subclass may run Python code.
        let name = self.name.borrow(py).as_ref().map(|n| n.clone_ref(py));
        let name = match name {
            Some(n) => n.bind(py).repr().map(|r| r.to_string()),
            None => Ok(format!("'Task-{}'", self.number)),
        };
        format!(
            "<Task name={} state={}>",
            name.unwrap_or_else(|_| "?".into()),
            self.state_name(py)
        )
    }

    /// Records why a finished task never ran, from ivy's `JoinError`: it was
    /// cancelled before it started (by `cancel()` or by its runtime's
    /// shutdown), or no stack could be allocated for it. Joins ivy's handle,
    /// which the task's end reaches a moment after its closure was dropped;
    /// `Err` only if the caller is cancelled meanwhile.
    fn settle_never_ran(&self, py: Python<'_>) -> PyResult<()> {
        if !self.is_done() || !matches!(&*self.outcome.borrow(py), Outcome::Pending) {
            return Ok(());
        }
        let handle = self.handle.take(py);
        let cancelled = || CancelledError::new_err("the task was cancelled before it started");
        let outcome = match handle {
            Some(mut h) => match blocking(py, move || h.join_deadline(None))? {
                Err(e) if e.is_no_stack() => {
                    self.retrieved.store(true, Ordering::Relaxed);
                    let err = IvyError::new_err(format!("the task never ran: {e}"));
                    Outcome::Raised(err.into_value(py).into_any())
                }
                _ => Outcome::Cancelled(cancelled().into_value(py).into_any()),
            },
            None => Outcome::Cancelled(cancelled().into_value(py).into_any()),
        };
        let unused = {
            let mut slot = self.outcome.borrow_mut(py);
            if matches!(&*slot, Outcome::Pending) {
                *slot = outcome;
                None
            } else {
                Some(outcome)
            }
        };
        drop(unused); // after the borrow: it holds a Python object
        Ok(())
    }

    /// The outcome of a finished task as a return value or exception.
    fn outcome_now(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        // The common case first, with one lock: a value returned.
        if let Outcome::Returned(v) = &*self.outcome.borrow(py) {
            return Ok(v.clone_ref(py));
        }
        self.settle_never_ran(py)?;
        match &*self.outcome.borrow(py) {
            Outcome::Returned(v) => Ok(v.clone_ref(py)),
            Outcome::Raised(e) => {
                self.retrieved.store(true, Ordering::Relaxed);
                Err(PyErr::from_value(e.bind(py).clone()))
            }
            Outcome::Cancelled(e) => Err(PyErr::from_value(e.bind(py).clone())),
            Outcome::Pending | Outcome::Running => {
                Err(InvalidStateError::new_err("Result is not set."))
            }
        }
    }

    /// "Task exception was never retrieved", with the traceback, on stderr.
    fn report_unretrieved(&self, py: Python<'_>) {
        if self.retrieved.swap(true, Ordering::Relaxed) {
            return;
        }
        let exc = match &*self.outcome.borrow(py) {
            Outcome::Raised(e) => e.clone_ref(py),
            _ => return,
        };
        let mut header = String::new();
        let _ = writeln!(
            header,
            "ivyrt: Task exception was never retrieved\ntask: {}",
            self.repr(py)
        );
        let printed = (|| -> PyResult<()> {
            let sys = py.import("sys")?;
            let stderr = sys.getattr("stderr")?;
            stderr.call_method1("write", (header,))?;
            py.import("traceback")?
                .call_method1("print_exception", (exc.bind(py),))?;
            stderr.call_method0("flush")?;
            Ok(())
        })();
        if let Err(e) = printed {
            e.write_unraisable(py, None);
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // A Task is freed by its tp_dealloc, entered through PyO3's trampoline:
        // attached, with PyO3's count raised, so `attach` takes no gilstate.
        if matches!(self.outcome.get_mut(), Outcome::Raised(_))
            && !self.retrieved.load(Ordering::Relaxed)
        {
            Python::attach(|py| self.report_unretrieved(py));
        }
    }
}

#[pymethods]
impl Task {
    /// The garbage collector's view: a Task holds its function and arguments
    /// (until it starts), its result or exception, its name, its cancel
    /// message and callbacks, any of which may refer back to it. A field
    /// locked by the code the collection interrupted is skipped (never waited
    /// for: `__traverse__` must not block). A task not finished is always
    /// held by its ivy task, so only finished tasks are ever collected.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY (each `peek_in_traverse`): this is tp_traverse, called by the
        // collector with the GIL held.
        if let Some(n) = unsafe { self.name.peek_in_traverse() } {
            visit.call(n.as_ref())?;
        }
        if let Some(c) = unsafe { self.call.peek_in_traverse() } {
            if let Some(c) = &*c {
                visit.call(&c.fun)?;
                visit.call(&c.args)?;
                visit.call(c.kwargs.as_ref())?;
                visit.call(&c.context)?;
            }
        }
        if let Some(o) = unsafe { self.outcome.peek_in_traverse() } {
            match &*o {
                Outcome::Returned(v) | Outcome::Raised(v) | Outcome::Cancelled(v) => {
                    visit.call(v)?
                }
                Outcome::Pending | Outcome::Running => {}
            }
        }
        if let Some(m) = unsafe { self.cancel_msg.peek_in_traverse() } {
            visit.call(m.as_ref())?;
        }
        if let Some(cbs) = unsafe { self.callbacks.peek_in_traverse() } {
            for cb in cbs.iter() {
                visit.call(cb)?;
            }
        }
        Ok(())
    }

    /// Breaks a reference cycle through an unreachable (finished) task. Its
    /// outcome goes too, so an unretrieved exception is reported first.
    fn __clear__(&self, py: Python<'_>) {
        if matches!(&*self.outcome.borrow(py), Outcome::Raised(_))
            && !self.retrieved.load(Ordering::Relaxed)
        {
            self.report_unretrieved(py);
        }
        let name = self.name.take(py);
        let call = self.call.take(py);
        let msg = self.cancel_msg.take(py);
        let callbacks = self.callbacks.take(py);
        let outcome = {
            let mut o = self.outcome.borrow_mut(py);
            match &*o {
                Outcome::Pending | Outcome::Running => None,
                _ => Some(std::mem::replace(&mut *o, Outcome::Returned(py.None()))),
            }
        };
        drop((name, call, msg, callbacks, outcome)); // outside the borrows
    }

    /// Waits for the task and returns its result, or raises its exception
    /// (`CancelledError` if it was cancelled). Any number of times, by any
    /// number of waiters. `timeout` (seconds): raises the builtin TimeoutError
    /// if it passes first; the task runs on.
    #[pyo3(signature = (timeout=None))]
    fn join(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let t = slf.get();
        if !t.is_done() {
            if t.is_running_here() {
                return Err(PyRuntimeError::new_err("a task cannot join itself"));
            }
            let deadline = deadline_after(timeout)?;
            let ev = &t.finished;
            blocking(py, move || ev.wait_deadline(deadline))?;
        }
        t.outcome_now(py)
    }

    /// The result of a finished task (raises its exception); InvalidStateError
    /// if it is not done.
    pub fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.outcome_now(py)
    }

    /// The exception of a finished task, or None; raises CancelledError if it
    /// was cancelled, InvalidStateError if it is not done.
    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.settle_never_ran(py)?;
        match &*self.outcome.borrow(py) {
            Outcome::Returned(_) => Ok(None),
            Outcome::Raised(e) => {
                self.retrieved.store(true, Ordering::Relaxed);
                Ok(Some(e.clone_ref(py)))
            }
            Outcome::Cancelled(e) => Err(PyErr::from_value(e.bind(py).clone())),
            _ => Err(InvalidStateError::new_err("Exception is not set.")),
        }
    }

    /// Whether the task has finished (returned, raised or was cancelled).
    fn done(&self) -> bool {
        self.is_done()
    }

    /// Whether the task ended cancelled.
    fn cancelled(&self, py: Python<'_>) -> bool {
        self.is_done() && self.state_name(py) == "cancelled"
    }

    /// Requests cancellation: the task's current or next blocking call raises
    /// CancelledError(msg), once. False if the task is already done.
    #[pyo3(signature = (msg=None))]
    pub fn cancel(&self, py: Python<'_>, msg: Option<Py<PyAny>>) -> bool {
        if self.is_done() {
            return false;
        }
        self.cancel_requests.fetch_add(1, Ordering::Relaxed);
        drop(self.cancel_msg.replace(py, msg)); // the old one after the borrow
        if matches!(&*self.outcome.borrow(py), Outcome::Pending) {
            // Not started: `_task_main` sees the request and never calls the
            // function (the GIL orders this check against its start).
            return true;
        }
        if let Some(h) = &*self.handle.borrow(py) {
            h.cancel(); // ivy's: wakes the task, runs no Python code
        }
        true
    }

    /// The number of pending cancellation requests (asyncio 3.11).
    fn cancelling(&self) -> usize {
        self.cancel_requests.load(Ordering::Relaxed)
    }

    /// Decrements the cancellation request count; returns what remains. When
    /// none remains and the task calls this on itself, a cancellation not yet
    /// delivered is withdrawn too (3.12's semantics: `timeout()` leaves no
    /// stray cancellation behind).
    fn uncancel(slf: &Bound<'_, Self>) -> usize {
        let t = slf.get();
        let n = t.cancel_requests.load(Ordering::Relaxed);
        let left = n.saturating_sub(1);
        t.cancel_requests.store(left, Ordering::Relaxed);
        if left == 0 && current(slf.py()).is_some_and(|c| c.is(slf)) {
            if let Some(me) = ivy::task::current() {
                me.uncancel();
            }
        }
        left
    }

    /// The task's name (`Task-N` unless one was given).
    fn get_name(&self, py: Python<'_>) -> Py<PyAny> {
        let name = self.name.borrow(py).as_ref().map(|n| n.clone_ref(py));
        match name {
            Some(n) => n,
            None => format!("Task-{}", self.number)
                .into_pyobject(py)
                .expect("a str")
                .into_any()
                .unbind(),
        }
    }

    /// Renames the task.
    fn set_name(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let name = value.str()?.into_any().unbind();
        drop(self.name.replace(value.py(), Some(name))); // the old one after the borrow
        Ok(())
    }

    /// The task's name (`Task-N` unless given).
    #[getter(name)]
    fn name_attr(&self, py: Python<'_>) -> Py<PyAny> {
        self.get_name(py)
    }

    #[setter(name)]
    fn set_name_attr(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_name(value)
    }

    /// Fire-and-forget: the task is freed when it ends (once nothing else
    /// holds it), its result dropped, its exception reported on stderr.
    fn detach(&self, py: Python<'_>) {
        self.detached.store(true, Ordering::Relaxed);
        if self.is_done() {
            self.report_unretrieved(py);
        }
    }

    /// Calls `fn(task)` when the task is done (at once if it is).
    fn add_done_callback(slf: &Bound<'_, Self>, fun: Py<PyAny>) -> PyResult<()> {
        let t = slf.get();
        {
            let mut cbs = t.callbacks.borrow_mut(slf.py());
            if !t.is_done() {
                cbs.push(fun);
                return Ok(());
            }
        }
        fun.bind(slf.py()).call1((slf,))?;
        Ok(())
    }

    /// Removes every registration of `fn`; returns how many.
    fn remove_done_callback(&self, py: Python<'_>, fun: Py<PyAny>) -> PyResult<usize> {
        // The comparisons run Python code (`__eq__`), which may add or remove
        // callbacks, or let the task finish: they run on a copy, without a
        // borrow, and what compared equal is then removed by identity.
        let snapshot: Vec<Py<PyAny>> = self
            .callbacks
            .borrow(py)
            .iter()
            .map(|cb| cb.clone_ref(py))
            .collect();
        let mut equal = Vec::new();
        for cb in &snapshot {
            if cb.bind(py).eq(fun.bind(py))? {
                equal.push(cb.as_ptr());
            }
        }
        let removed = {
            let mut cbs = self.callbacks.borrow_mut(py);
            let before = cbs.len();
            // `snapshot` still holds every removed one: none is freed here.
            cbs.retain(|cb| !equal.contains(&cb.as_ptr()));
            before - cbs.len()
        };
        drop(snapshot);
        Ok(removed)
    }

    /// `<Task name='w1' state=pending|running|done|cancelled|failed>`.
    fn __repr__(&self, py: Python<'_>) -> String {
        self.repr(py)
    }
}

/// Runs `fn(*args, **kwargs)` as a new task of the running runtime and returns
/// its Task (asyncio's `create_task`; `spawn` is an alias). `name`: the task's
/// name; `stack_size`: bytes of stack (default: the runtime's).
#[pyfunction]
#[pyo3(signature = (fn_, /, *args, name=None, stack_size=None, **kwargs))]
pub fn create_task<'py>(
    py: Python<'py>,
    fn_: Py<PyAny>,
    args: Py<PyTuple>,
    name: Option<Py<PyAny>>,
    stack_size: Option<usize>,
    kwargs: Option<Py<PyDict>>,
) -> PyResult<Bound<'py, Task>> {
    let rt = match current(py) {
        Some(t) => t.get().rt.clone(),
        None => {
            return Err(PyRuntimeError::new_err(
                "no running ivyrt runtime: call create_task from inside ivyrt.run",
            ))
        }
    };
    spawn(py, &rt, fn_, args, kwargs, name, stack_size)
}

/// The running Task, or None outside a task.
#[pyfunction]
pub fn current_task(py: Python<'_>) -> Option<Py<Task>> {
    current(py)
}

/// The set of not-yet-finished tasks of the running runtime.
#[pyfunction]
pub fn all_tasks<'py>(py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PySet>> {
    let set = pyo3::types::PySet::empty(py)?;
    let Some(me) = current(py) else {
        return Err(PyRuntimeError::new_err("no running ivyrt runtime"));
    };
    let rt = me.get().rt.id;
    let tasks: Vec<Py<Task>> = lock(&LIVE)
        .values()
        .filter(|t| t.get().rt.id == rt && !t.get().is_done())
        .map(|t| t.clone_ref(py))
        .collect();
    for t in tasks {
        set.add(t)?;
    }
    Ok(set)
}

/// Parks the calling task for `seconds` and returns `result`; `sleep(0)`
/// yields to the other ready tasks. A plain thread sleeps.
#[pyfunction]
#[pyo3(signature = (seconds, result=None))]
pub fn sleep(py: Python<'_>, seconds: f64, result: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    if seconds.is_nan() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "sleep length must not be NaN",
        ));
    }
    if seconds <= 0.0 {
        blocking(py, ivy::time::yield_now_checked)?;
    } else {
        let deadline = deadline_after(Some(seconds))?;
        blocking(py, move || ivy::time::sleep_deadline(deadline))?;
    }
    Ok(result.unwrap_or_else(|| py.None()))
}

/// Lets the other ready tasks run (asyncio's `sleep(0)`).
#[pyfunction]
pub fn yield_now(py: Python<'_>) -> PyResult<()> {
    blocking(py, ivy::time::yield_now_checked)
}

/// Finished tasks in completion order: the base of `as_completed`, `wait` and
/// `gather`'s fail-fast. `next(timeout)` gives the index (in the list given)
/// of the next task to finish, None when every one was given, or raises
/// TimeoutError.
#[pyclass(frozen, module = "ivyrt")]
pub struct Completions {
    queue: Arc<ivy::sync::Queue<usize>>,
    left: AtomicUsize,
}

#[pymethods]
impl Completions {
    #[new]
    fn new(tasks: Vec<Bound<'_, Task>>) -> Completions {
        let queue = Arc::new(ivy::sync::Queue::unbounded());
        for (i, t) in tasks.iter().enumerate() {
            t.get().finished.watch(&queue, i);
        }
        Completions {
            queue,
            left: AtomicUsize::new(tasks.len()),
        }
    }

    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<usize>> {
        if self.left.load(Ordering::Relaxed) == 0 {
            return Ok(None);
        }
        let deadline = deadline_after(timeout)?;
        let queue = self.queue.clone();
        let index = blocking(py, move || queue.get_deadline(deadline))?;
        self.left.fetch_sub(1, Ordering::Relaxed);
        Ok(Some(index))
    }

    /// How many tasks have not been given yet.
    fn remaining(&self) -> usize {
        self.left.load(Ordering::Relaxed)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Task>()?;
    m.add_class::<Completions>()?;
    let main = wrap_pyfunction!(_task_main, m)?;
    tstate::init(main.as_any())?;
    m.add_function(main)?;
    m.add_function(wrap_pyfunction!(create_task, m)?)?;
    m.add("spawn", m.getattr("create_task")?)?;
    m.add_function(wrap_pyfunction!(current_task, m)?)?;
    m.add_function(wrap_pyfunction!(all_tasks, m)?)?;
    m.add_function(wrap_pyfunction!(sleep, m)?)?;
    m.add_function(wrap_pyfunction!(yield_now, m)?)?;
    m.add_function(wrap_pyfunction!(crate::cancel::_hook_cancel, m)?)?;
    Ok(())
}
