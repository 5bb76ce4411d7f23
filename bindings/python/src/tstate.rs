//! Python on ivy task stacks: each task's interpreter state, entered and left
//! with raw `pyo3::ffi` calls.
//!
//! # Why each task needs a Python state of its own
//! CPython keeps the frame stack, the exception being handled, the recursion
//! depth and the current `contextvars` context in the *thread state*. Several
//! Python tasks interleave on one worker thread (each parks at its blocking
//! calls), so each needs its own copy of those, or they would push and pop
//! each other's frames. Two ways, chosen by build.rs:
//! - **CPython 3.11 (cfg `ivyrt_swap`): one thread state per worker**, made by
//!   the worker before anything else (so it is the thread's gilstate), and a
//!   small saved Python state per task (`swap.rs`, `pystate.c`: greenlet's
//!   field list), swapped into the worker's state when the task runs and out
//!   of it at each park (`detach_parking`). A task costs no thread state, and
//!   its data stack's root chunk lives on its own ivy stack: creating and
//!   deleting pooled thread states (their 16 KiB chunks `mmap`ed and
//!   `munmap`ed) was a third of the 10k-sleeps row's profile.
//! - **Other versions: one thread state per running task**, from a per-worker
//!   pool (at most `POOL_MAX` idle ones), since their layouts differ and are
//!   not tested here. A task enters with `PyEval_RestoreThread(its state)` and
//!   leaves at each park with `PyEval_SaveThread()`.
//!
//! # Why never `PyGILState_Ensure` / `Python::attach` inside a task
//! `PyGILState_Ensure` uses *the OS thread's* gilstate: with pooled states,
//! one state every task of the worker would share; with the swap, the
//! worker's state but without the task's Python state loaded when entered
//! from ivyrt's own code. PyO3's `Python::attach` calls it whenever the
//! thread's attach count is 0. So the task entry (`run_task`) does not use
//! PyO3: it takes the GIL with raw `PyEval_RestoreThread` and calls the
//! `_task_main` `#[pyfunction]` through `PyObject_CallOneArg`. PyO3 is reached
//! only through its trampolines (`#[pyfunction]`, `#[pymethods]`), entered
//! from Python. (A C callback entering Python with `PyGILState_Ensure` from
//! inside a task -- ctypes -- is fine with the swap: it lands on the worker's
//! state with the calling task's Python state loaded, as on a plain thread;
//! with pooled states it lands on the worker's *anchor*, below.)
//!
//! # Why PyO3's per-thread attach count stays right (checked against PyO3 0.27.2)
//! PyO3 keeps `ATTACH_COUNT` per OS thread (`internal/state.rs`). A trampoline
//! (`impl_/trampoline.rs`, `AttachGuard::assume`) increments it on entry and
//! decrements it on exit; `Python::detach` (`SuspendAttach`) *replaces* it by
//! 0, calls `PyEval_SaveThread`, and on drop puts the saved count back and calls
//! `PyEval_RestoreThread(saved state)`; both saved values live in the guard, on
//! the stack of the task that detached. The invariant: *on a worker thread,
//! whenever no task holds the GIL, `ATTACH_COUNT` is 0.* It holds because
//! 1. a task starts (`run_task`) with the count at 0 and calls `_task_main`,
//!    whose trampoline counts 0 -> 1, and it ends after that trampoline
//!    returned (1 -> 0), before `PyEval_SaveThread`;
//! 2. a task switches away only inside an ivy park, and every park a Python
//!    task reaches is inside `detach_parking` (`block.rs`'s `blocking`,
//!    `generator.rs`'s resumes and yields), i.e. inside `detach`, which set
//!    the count to 0 and will restore this task's own count when the task
//!    resumes -- on the same thread, since a started task never migrates;
//! 3. the tasks that ran meanwhile on this thread were balanced (1 and 2).
//!
//! With the swap, the state `detach` saves and restores is always the
//! worker's one state; what differs per task is the Python state, which
//! `detach_parking` unloads (GIL still held) right before `detach` and
//! reloads right after it returned (GIL held again), from a slot on the
//! parking task's own stack -- so the count and the Python state travel
//! together with the task. Between the two, the worker's state holds its
//! *idle* Python state, on which PyO3's deferred decrefs (run as `detach`
//! returns) execute any `__del__`.
//!
//! One park is not ivyrt's own: a libc call interposed by ivy's hook layer
//! (`libivy_hook.so` preloaded) parks the task from inside CPython's own
//! GIL-released section (`socket.recv`, `time.sleep`), with this task's
//! count still on the thread (and, with the swap, its Python state loaded).
//! The runtime therefore installs `hook_park_guard`
//! (`ivy::Builder::hook_park_guard`), which re-takes the GIL -- on the
//! worker's state to unload the task's Python state when the swap is on, else
//! on a per-worker *parker* state no Python code runs on -- and parks inside
//! `detach_parking` there, so the count is saved and zeroed as at every other
//! park (without it, the next task to start found a count of -1 and PyO3
//! aborted the process: `tests/test_hook.py`). A `Py<T>` dropped while the
//! count is 0 (an ivy closure dropped without running) goes to PyO3's
//! deferred reference pool, released at the next `detach` return.
//!
//! # Pooled states (not 3.11): a pool per worker, created lazily
//! `PyThreadState_New` + `PyThreadState_Clear/Delete` cost more than the rest of
//! a spawn together (the old ctypes binding: 36 µs a spawn). A thread state is
//! taken from the worker's pool when a task first runs and returned when it
//! ends, so a spawn costs one ivy spawn and a few object allocations. A state
//! is only ever used on the worker that created it (started tasks never
//! migrate; the pool is thread-local): CPython binds a thread state to its
//! creating OS thread (`thread_id`, and from 3.12 the gilstate binding done on
//! attach), so creating it on the thread that runs it is the correct order.
//! The pool keeps at most `POOL_MAX` states (a task that ends with the pool full
//! deletes its state while still attached); the rest
//! are deleted when the worker thread exits (runtime shutdown, which `run`
//! does with the GIL released), each by the canonical sequence: attach it,
//! `PyThreadState_Clear`, `PyThreadState_DeleteCurrent`.
//! Each worker also makes an *anchor* state before any task's, which no task
//! uses (`anchor_thread`): the state a C callback entering Python with
//! `PyGILState_Ensure` from inside a task lands on up to 3.11. (With the swap
//! the anchor *is* the worker's state every task runs on.)
//! What a reused state carries over: its `threading.local` dict and a
//! `sys.settrace`/`setprofile` function set inside a task; with the swap these
//! are the worker thread's, shared by its tasks as by the code of one thread.
//! Task-local state belongs in `contextvars` (copied at spawn, entered per task).
//!
//! # Version-specific (CPython 3.11 is what this machine runs and tests)
//! - 3.11: the recursion limit is effectively interpreter-wide
//!   (`_Py_CheckRecursiveCall` resets a state's count to the global limit), so
//!   the overflow story is a stack sized for the limit (`runtime.rs`); the
//!   swap saves each task's depth (limit - remaining), as greenlet does.
//! - 3.12/3.13: attaching a thread state rebinds the thread's gilstate to it
//!   (`tstate_activate` -> `bind_gilstate_tstate`) and debug builds assert the
//!   state belongs to the current OS thread: satisfied by the per-worker pool.
//!   The C recursion budget (`c_recursion_remaining`) is per state and assumes
//!   a main-thread-sized stack, which the default task stack (8 MiB) is.
//! - 3.14: the C-stack limits are computed once per thread state from the OS
//!   thread's stack bounds (`pthread_getattr_np`); a task stack lies outside
//!   them. greenlet switches the state's `c_stack_soft_limit/hard_limit/top`
//!   per greenlet; here each task start would set them to the task's stack
//!   (3.15 adds `PyUnstable_ThreadState_SetStackProtection` for exactly this).
//!   Not done yet: untestable here; see the README's known limitations.
//! - Swapping on 3.12+ (greenlet's lists for them are known) is the next step
//!   once an interpreter of each version is at hand to test it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{c_int, CStr};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;

#[cfg(ivyrt_swap)]
use crate::swap;
use crate::task::Task;

/// The interpreter every task's thread state belongs to (set at module init).
static INTERP: AtomicPtr<ffi::PyInterpreterState> = AtomicPtr::new(ptr::null_mut());
/// `_ivyrt._task_main`, the Python-visible body every task runs (a strong
/// reference kept for the life of the process).
static TASK_MAIN: AtomicPtr<ffi::PyObject> = AtomicPtr::new(ptr::null_mut());

/// How a Python user avoids the overflow ivy reported (ivy's report names
/// the task and its stack size before it).
const OVERFLOW_HINT: &str = "a Python task: pass a larger stack_size= to ivyrt.run() or \
create_task(), or lower sys.setrecursionlimit() (the default stack grows with it)";

/// Thread states kept per worker beyond that are deleted when released.
#[cfg(not(ivyrt_swap))]
const POOL_MAX: usize = 1024;

/// A worker's idle thread states, its anchor (see `anchor_thread`) and the
/// state hooked parks detach on (`hook_park_guard`).
struct Pool {
    #[cfg(not(ivyrt_swap))]
    idle: Vec<*mut ffi::PyThreadState>,
    anchor: *mut ffi::PyThreadState,
    parker: *mut ffi::PyThreadState,
}

impl Drop for Pool {
    fn drop(&mut self) {
        #[cfg(not(ivyrt_swap))]
        for ts in self.idle.drain(..) {
            destroy(ts);
        }
        if !self.anchor.is_null() {
            #[cfg(ivyrt_swap)]
            let _ = WORKER_STATE.try_with(|w| w.set(ptr::null_mut()));
            destroy(std::mem::replace(&mut self.anchor, ptr::null_mut()));
        }
        if !self.parker.is_null() {
            destroy(std::mem::replace(&mut self.parker, ptr::null_mut()));
        }
    }
}

thread_local! {
    /// Every thread state made on this thread and not yet deleted (tasks',
    /// the anchor, the parker, generators'): `holds_gil` asks whether the
    /// state holding the GIL is one of them.
    static OWNED: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
}

/// Records `ts`, just made on this thread, as this thread's (`holds_gil`).
pub fn own(ts: *mut ffi::PyThreadState) {
    if !ts.is_null() {
        let _ = OWNED.try_with(|o| o.borrow_mut().insert(ts as usize));
    }
}

/// Forgets `ts` before it is deleted. (At thread exit the set may be gone
/// before the pool that deletes the last states: nothing is left to ask.)
pub fn disown(ts: *mut ffi::PyThreadState) {
    let _ = OWNED.try_with(|o| o.borrow_mut().remove(&(ts as usize)));
}

/// Whether this OS thread holds the GIL. `current_unchecked` alone cannot
/// say: up to 3.11 it reads the *process's* GIL holder (`tstate_current`),
/// which is another worker's or the main thread's state as often as ours
/// (CI caught the guard detaching a GIL this thread did not hold); a state
/// only ever attaches on the thread that made it (the pool invariant), so the
/// holder is ours exactly when it is one of ours.
fn holds_gil() -> bool {
    let cur = current_unchecked();
    !cur.is_null()
        && OWNED
            .try_with(|o| o.borrow().contains(&(cur as usize)))
            .unwrap_or(false)
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            #[cfg(not(ivyrt_swap))]
            idle: Vec::new(),
            anchor: ptr::null_mut(),
            parker: ptr::null_mut(),
        })
    };
}

/// Gives this worker thread a thread state of its own that no task uses,
/// made before any task's. Why: up to 3.11, the first thread state created
/// on an OS thread becomes that thread's "gilstate", the one
/// `PyGILState_Ensure` attaches when C code calls back into Python (a ctypes
/// callback, a C library's callback) while the task released the GIL around
/// the C call. Were it a pooled task state, the callback would run on a state
/// another (parked) task owns. With the anchor, such a callback runs on the
/// worker's own state, like on any non-Python thread. (3.12+ rebind the
/// gilstate to whichever state was attached last, i.e. the calling task's: the
/// anchor is then merely unused.)
fn anchor_thread(pool: &mut Pool) {
    if pool.anchor.is_null() {
        let interp = INTERP.load(Ordering::Acquire);
        // SAFETY: as in `take`.
        pool.anchor = unsafe { ffi::PyThreadState_New(interp) };
        own(pool.anchor);
        #[cfg(ivyrt_swap)]
        WORKER_STATE.with(|w| w.set(pool.anchor));
    }
}

#[cfg(ivyrt_swap)]
thread_local! {
    /// `Pool::anchor`, the worker's one thread state, read without the
    /// pool's `RefCell` at every park (`detach_parking`).
    static WORKER_STATE: std::cell::Cell<*mut ffi::PyThreadState> =
        const { std::cell::Cell::new(ptr::null_mut()) };
}

/// `ivy::Builder::hook_park_guard` of every ivyrt runtime: runs a park of a
/// hooked libc call inside `detach`, so that PyO3's per-thread attach count
/// is saved on this task's stack and zeroed while other tasks run (module
/// comment). Called by ivy on the parking task's own stack and thread.
pub fn hook_park_guard(park: &mut dyn FnMut()) {
    park_detached(park);
    crate::cancel::after_hooked_park();
}

/// `hook_park_guard`'s park, with PyO3's count saved (module comment).
fn park_detached(park: &mut dyn FnMut()) {
    /// `park` moved into `detach`, which asks for `Send`: it runs on this very
    /// thread, before `detach` returns.
    struct OnThisThread<'a>(&'a mut dyn FnMut());
    // SAFETY: `detach` runs the closure on the calling thread (PyO3 0.27:
    // `SuspendAttach` then `f()`), so nothing crosses a thread.
    unsafe impl Send for OnThisThread<'_> {}

    let park = OnThisThread(park);
    if holds_gil() {
        // C code made the blocking call with the GIL held (it did not release
        // it around the call): this task's state is attached. Park with the
        // GIL released, or every other Python task of the worker would block
        // on it.
        // SAFETY: a thread state is attached to this thread: it holds the GIL.
        let py = unsafe { Python::assume_attached() };
        detach_parking(py, move || {
            let park = park;
            (park.0)()
        });
        return;
    }
    #[cfg(ivyrt_swap)]
    if swap::task_loaded() {
        // CPython released the GIL around the hooked call (a socket read,
        // time.sleep) with this task's Python state loaded in the worker's
        // thread state. Other tasks of the worker will run on that state:
        // re-take it to unload this task's state, park, reload, and release
        // it again as CPython left it.
        let ts = worker_state();
        // SAFETY: `ts` is this worker's state, made on this thread; no state
        // is attached to this thread (checked above).
        unsafe { ffi::PyEval_RestoreThread(ts) };
        // SAFETY: the GIL is held with `ts`.
        let py = unsafe { Python::assume_attached() };
        detach_parking(py, move || {
            let park = park;
            (park.0)()
        });
        // SAFETY: `detach_parking` re-attached `ts` with this task's state
        // reloaded; release it, back to CPython's GIL-released section.
        unsafe { ffi::PyEval_SaveThread() };
        return;
    }
    let ts = POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.parker.is_null() {
            let interp = INTERP.load(Ordering::Acquire);
            // SAFETY: as in `take`: the live interpreter; no GIL needed.
            p.parker = unsafe { ffi::PyThreadState_New(interp) };
            own(p.parker);
        }
        p.parker
    });
    if ts.is_null() {
        // Out of memory for a thread state: park as is. The count is then
        // this task's while others run (PyO3 may complain), which beats
        // blocking the worker.
        (park.0)();
        return;
    }
    // SAFETY: `ts` is this worker's parker state, created on this thread and
    // never attached elsewhere; no state is attached to this thread (checked
    // above: CPython released the GIL around the hooked call). No Python code
    // runs on it: it only carries the GIL into `detach` and back out.
    unsafe { ffi::PyEval_RestoreThread(ts) };
    // SAFETY: the GIL is held with `ts`.
    let py = unsafe { Python::assume_attached() };
    py.detach(move || {
        let park = park;
        (park.0)()
    });
    // SAFETY: `detach` re-attached `ts`; release it again, back to the state
    // CPython left this thread in around the hooked call.
    unsafe { ffi::PyEval_SaveThread() };
}

/// The thread state attached to this thread, or null (no GIL held):
/// `PyThreadState_GetUnchecked` (3.13+) or `_PyThreadState_UncheckedGet`
/// (before), found at run time so that one build serves every version.
fn current_unchecked() -> *mut ffi::PyThreadState {
    type F = unsafe extern "C" fn() -> *mut ffi::PyThreadState;
    static FN: OnceLock<Option<F>> = OnceLock::new();
    let f = FN.get_or_init(|| {
        for name in [
            c"PyThreadState_GetUnchecked",
            c"_PyThreadState_UncheckedGet",
        ] {
            let name: &CStr = name;
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            if !p.is_null() {
                // SAFETY: both symbols have the signature `PyThreadState *(void)`.
                return Some(unsafe { std::mem::transmute::<*mut libc::c_void, F>(p) });
            }
        }
        None
    });
    // SAFETY: a CPython function taking nothing, callable without the GIL.
    f.map_or(ptr::null_mut(), |f| unsafe { f() })
}

/// Records the interpreter and the task body. Called at module init, with
/// the GIL. Fails (ImportError) if the thread-state layout this build swaps
/// is not the running interpreter's.
pub fn init(task_main: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: the GIL is held (module init), as PyInterpreterState_Get requires.
    let interp = unsafe { ffi::PyInterpreterState_Get() };
    #[cfg(ivyrt_swap)]
    if !swap::layout_ok(interp) {
        return Err(pyo3::exceptions::PyImportError::new_err(
            "ivyrt was built against CPython 3.11 headers whose thread-state layout \
             is not this interpreter's: rebuild it for this interpreter",
        ));
    }
    INTERP.store(interp, Ordering::Release);
    let fun = task_main.clone().unbind().into_ptr(); // kept forever
    TASK_MAIN.store(fun, Ordering::Release);
    Ok(())
}

/// Runs the Python task `task` on the calling ivy task's stack (`stack_size`
/// bytes), on the worker's thread state with a Python state of its own
/// (`swap.rs`). Gives `task` back, without running it, if out of memory.
#[cfg(ivyrt_swap)]
pub fn run_task(task: Py<Task>, stack_size: usize) -> Result<(), Py<Task>> {
    ivy::task::set_stack_overflow_hint(OVERFLOW_HINT);
    let ts = worker_state();
    if ts.is_null() {
        return Err(task);
    }
    let mut task = Some(task);
    let ran = swap::with_root_chunk(stack_size, |chunk| {
        let task = task.take().expect("the body runs once");
        let mut saved = swap::fresh(ts, chunk);
        // SAFETY: `ts` is this worker's own state, made on this OS thread and
        // only ever attached here; the calling thread holds no thread state
        // (ivy workers never keep one attached between tasks: module comment).
        unsafe { ffi::PyEval_RestoreThread(ts) };
        // SAFETY: the GIL is held with `ts`, which holds the idle state (no
        // task's is loaded between tasks); `saved` lives on this task's stack
        // until the `unload` below.
        unsafe { swap::load(ts, &mut saved) };
        call_task_main(task);
        // SAFETY: the GIL is held with `ts`; this task's state is the loaded
        // one (every park in between unloaded and reloaded it), and is
        // finished after its frames all returned.
        unsafe {
            let unloaded = swap::unload(ts);
            debug_assert!(std::ptr::eq(unloaded, &saved));
            swap::finish(&mut saved);
        }
        // SAFETY: the GIL is held with `ts`; this releases it and detaches `ts`.
        let released = unsafe { ffi::PyEval_SaveThread() };
        debug_assert_eq!(released, ts);
    });
    match task {
        Some(task) if !ran => Err(task),
        _ => Ok(()),
    }
}

/// Calls `_task_main(task)` (GIL held), reporting an internal error (a NULL
/// without the task's own report) as unraisable.
fn call_task_main(task: Py<Task>) {
    let obj = task.into_ptr();
    let fun = TASK_MAIN.load(Ordering::Acquire);
    // SAFETY: the GIL is held; `fun` and `obj` are live objects we own
    // references to. `_task_main` reports every exception of the task itself.
    unsafe {
        let r = ffi::PyObject_CallOneArg(fun, obj);
        if r.is_null() {
            ffi::PyErr_WriteUnraisable(fun);
        } else {
            ffi::Py_DECREF(r);
        }
        ffi::Py_DECREF(obj);
    }
}

/// This worker's own thread state (made on first use: the first state made
/// on this thread, hence its gilstate), or null if out of memory.
#[cfg(ivyrt_swap)]
fn worker_state() -> *mut ffi::PyThreadState {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        anchor_thread(&mut p);
        p.anchor
    })
}

/// `Python::detach` around a call that may park this task (`block.rs`,
/// `generator.rs`): on 3.11 it also swaps this task's Python state out of
/// the worker's thread state and back in (`swap.rs`).
pub fn detach_parking<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    #[cfg(ivyrt_swap)]
    {
        let worker = WORKER_STATE.with(std::cell::Cell::get);
        // A task's state loaded means the worker's state is the attached one
        // (a generator body runs on its own only after its caller unloaded);
        // otherwise ask (the idle state's finalizers, rare).
        if !worker.is_null() && (swap::task_loaded() || current_unchecked() == worker) {
            // SAFETY: `py`: the GIL is held, with `worker` (just checked).
            return unsafe { swap::detach_parking(py, worker, f) };
        }
    }
    // Not a worker's state: a generator body's own, or a thread outside
    // any task (`run`'s), whose state no one else uses.
    py.detach(f)
}

/// Runs the Python task `task` on the calling ivy task's stack with a pooled
/// thread state. Gives `task` back, without running it, if no thread state
/// could be made (out of memory).
#[cfg(not(ivyrt_swap))]
pub fn run_task(task: Py<Task>, _stack_size: usize) -> Result<(), Py<Task>> {
    ivy::task::set_stack_overflow_hint(OVERFLOW_HINT);
    let Some(ts) = take() else {
        return Err(task);
    };
    // SAFETY: `ts` is an idle thread state of this interpreter created on this
    // OS thread (pool invariant), not attached anywhere; the calling thread
    // holds no thread state (ivy workers never keep one attached between
    // tasks: module comment, invariant above), so attaching it is valid.
    unsafe { ffi::PyEval_RestoreThread(ts) };
    call_task_main(task);
    if POOL.with(|p| p.borrow().idle.len()) >= POOL_MAX {
        disown(ts);
        // SAFETY: `ts` is current, with the GIL, and has no frame left: clear
        // and delete it while attached, which also releases the GIL (the
        // sequence of `PyGILState_Release`), saving a GIL round trip.
        unsafe {
            ffi::PyThreadState_Clear(ts);
            ffi::PyThreadState_DeleteCurrent();
        }
        return Ok(());
    }
    // SAFETY: the GIL is held with `ts`; this releases it and detaches `ts`.
    let saved = unsafe { ffi::PyEval_SaveThread() };
    debug_assert_eq!(saved, ts);
    give_back(ts);
    Ok(())
}

/// An idle thread state of this worker, made if the pool is empty.
#[cfg(not(ivyrt_swap))]
fn take() -> Option<*mut ffi::PyThreadState> {
    let pooled = POOL.with(|p| {
        let mut p = p.borrow_mut();
        anchor_thread(&mut p);
        p.idle.pop()
    });
    if let Some(ts) = pooled {
        return Some(ts);
    }
    let interp = INTERP.load(Ordering::Acquire);
    // SAFETY: `interp` is the live main interpreter (set at module init; the
    // module lives as long as it). PyThreadState_New does not need the GIL.
    let ts = unsafe { ffi::PyThreadState_New(interp) };
    own(ts);
    (!ts.is_null()).then_some(ts)
}

#[cfg(not(ivyrt_swap))]
fn give_back(ts: *mut ffi::PyThreadState) {
    let extra = POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.idle.len() < POOL_MAX {
            p.idle.push(ts);
            None
        } else {
            Some(ts)
        }
    });
    if let Some(ts) = extra {
        destroy(ts);
    }
}

/// Deletes an idle thread state created on this thread, unless the
/// interpreter is finalizing (then it is left to the interpreter's teardown:
/// attaching would block this thread forever).
fn destroy(ts: *mut ffi::PyThreadState) {
    if is_finalizing() {
        return;
    }
    disown(ts);
    // SAFETY: `ts` is idle and belongs to this thread; this thread holds no
    // thread state (it is outside any task). Attach, clear, delete: the
    // sequence `PyGILState_Release` uses for its own states.
    unsafe {
        ffi::PyEval_RestoreThread(ts);
        ffi::PyThreadState_Clear(ts);
        ffi::PyThreadState_DeleteCurrent();
    }
}

/// `Py_IsFinalizing()` (3.13+) or `_Py_IsFinalizing()` (before), found at run
/// time so that one build serves every version.
fn is_finalizing() -> bool {
    type F = unsafe extern "C" fn() -> c_int;
    static FN: OnceLock<Option<F>> = OnceLock::new();
    let f = FN.get_or_init(|| {
        for name in [c"Py_IsFinalizing", c"_Py_IsFinalizing"] {
            let name: &CStr = name;
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            if !p.is_null() {
                // SAFETY: both symbols have the signature `int (void)`.
                return Some(unsafe { std::mem::transmute::<*mut libc::c_void, F>(p) });
            }
        }
        None
    });
    // SAFETY: a CPython function taking nothing, callable without the GIL.
    f.is_some_and(|f| unsafe { f() } != 0)
}
