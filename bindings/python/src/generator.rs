//! `ivyrt.generator(fn)`: a sync generator whose body runs on a stack of its
//! own (`ivy::Generator`), nested in the iterating task. The body is a plain
//! function that receives a `yield_` callable; it may block (sleep, lock,
//! read a socket: that parks the iterating task) and may yield from any depth
//! of its own calls, which a Python generator cannot. This is what answers
//! asyncio's async generators (`async for` over something that awaits).
//!
//! Design decisions:
//! - **The body has its own interpreter thread state.** CPython keeps the frame
//!   stack, the handled exception and the recursion depth in the thread state;
//!   the body's frames live on another C stack and stay suspended while the
//!   caller runs, so sharing the caller's state would interleave their frames
//!   (greenlet swaps those fields by hand; a state of its own is the supported
//!   way). It is created on the creating thread and deleted by the body itself
//!   when it ends (`PyThreadState_Clear` + `PyThreadState_DeleteCurrent`).
//! - **A generator stays on its creating thread** (checked on every resume:
//!   RuntimeError elsewhere), as ivy's `Generator` is `!Send`: its body's frames
//!   may cache thread-locals (CPython's current thread state among them), and a
//!   started task never changes thread, so a task's generators stay usable by
//!   it. A suspended generator freed on another thread (e.g. by the garbage
//!   collector after `run` returned) can be neither resumed nor freed there: it
//!   is leaked whole and reported on stderr. A finished body frees its stack
//!   at once, on its own thread, so only suspended ones can leak.
//! - **Every switch happens inside `Python::detach`** (py-core's invariant in
//!   `tstate.rs`: whatever parks or switches a Python task does so with PyO3's
//!   attach count saved and zeroed). `next` detaches (saving the caller's state
//!   and count; `tstate::detach_parking`, which on 3.11 also unloads the
//!   caller's Python state from the worker's thread state, as the body may
//!   park and let other tasks of the worker run) and resumes the body; the body attaches its own state with
//!   `PyEval_RestoreThread`; `yield_` detaches (saving the body's state and
//!   count) and suspends; each side's detach guard restores its own state when
//!   control comes back to it. A blocking call in the body is a plain
//!   `blocking` call made with the body's state. The body calls its function
//!   through the C API, not a trampoline, so PyO3's count stays 0 while the
//!   body's own Python runs (the GIL held): PyO3 then defers `Py` drops to its
//!   pool (released at the next trampoline or detach), and nothing here calls
//!   `Python::attach`, which would take the thread's gilstate (`tstate.rs`).
//! - **The body is never unwound.** It has CPython frames on its stack, and a
//!   Rust unwind through them is undefined. So an unfinished body is finished
//!   by resuming it with `GeneratorExit` raised from its `yield_` (`close()`,
//!   as Python does, also when the object is freed). A body that keeps
//!   yielding after `GeneratorExit` (Python: "generator ignored
//!   GeneratorExit") is, when freed, leaked with its stack and thread state
//!   (never resumed again) and reported on stderr.
//! - **`yield_` checks it runs on its own body's stack** (the address of a
//!   local against the body's stack range): called after the body ended, from
//!   the iterating code, from another task or from a nested generator, it
//!   raises RuntimeError instead of suspending a foreign stack.
//! - Python generators' protocol where it makes sense: iteration,
//!   `send(value)` (`yield_` returns it), `throw(exc)` (raised from `yield_`),
//!   `close()`, `StopIteration.value` = the body's return value, "generator
//!   already executing" (ValueError) when re-entered while its body runs (or is
//!   parked). contextvars: the body runs in a copy of the context current at
//!   its first `next`, as a task does at spawn.

use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, ThreadId};

use pyo3::exceptions::{
    PyGeneratorExit, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The body's stack when `stack_size=` is not given: what CPython's default
/// recursion limit may need in C frames (the main thread's usual 8 MiB; pages
/// are committed only when touched).
const DEFAULT_STACK: usize = 8 << 20;

/// The smallest `stack_size=`, and the part of it not counted as the body's in
/// `yield_`'s stack check (the frames between the stack's top and the body).
const MIN_STACK: usize = 64 << 10;
const STACK_MARGIN: usize = 16 << 10;

/// Sends `T` into `Python::detach`, whose closure runs on the calling thread
/// (synchronously): nothing crosses a thread, so `!Send` data is fine there.
struct SameThread<T>(T);

// SAFETY: only used for closures run by `Python::detach`, which calls them on
// the calling thread before it returns; the value never reaches another thread.
unsafe impl<T> Send for SameThread<T> {}

/// What the next resume brings into the body (read by `yield_` on return).
enum Resume {
    Send(Py<PyAny>),
    Throw(PyErr),
    Close,
}

/// State shared by the generator object, its body and its `yield_`.
struct Shared {
    resume: Slot<Resume>,
    /// The contextvars context the body runs in (set by the first resume).
    context: Slot<Py<PyAny>>,
    /// The body's end: its return value or exception.
    outcome: Slot<PyResult<Py<PyAny>>>,
}

/// A value handed from one side of a switch to the other (the lock is never
/// contended: the two sides never run at once).
struct Slot<T>(Mutex<Option<T>>);

impl<T> Slot<T> {
    fn new() -> Self {
        Slot(Mutex::new(None))
    }

    fn put(&self, value: T) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }

    fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The `yield_` callable a body receives.
#[pyclass(module = "ivyrt", name = "Yield", frozen)]
pub struct Yield {
    yielder: *const ivy::Yielder<Py<PyAny>>,
    shared: Arc<Shared>,
    /// An address near the top of the body's stack, and how far below it the
    /// body's frames may lie (its stack size less a margin for the frames above
    /// `top`, so the range never reaches past the stack's bottom).
    top: usize,
    depth: usize,
    /// False once the body returned.
    live: AtomicBool,
}

// SAFETY: the only non-thread-safe field is `yielder`, dereferenced only by
// `__call__` after checking that it runs on the body's own stack, i.e. on the
// body's thread while the body runs; the rest is `Send + Sync`.
unsafe impl Send for Yield {}
// SAFETY: as for `Send`: `yielder` is not touched off the body's stack.
unsafe impl Sync for Yield {}

impl Yield {
    fn on_body_stack(&self) -> bool {
        let here = 0u8;
        let at = ptr::addr_of!(here) as usize;
        at <= self.top && at > self.top.saturating_sub(self.depth)
    }
}

#[pymethods]
impl Yield {
    /// Hands `value` to the caller of `next`/`send` and suspends the body
    /// until the next one; returns the value sent (None for `next`), raises
    /// what `throw` threw, or GeneratorExit on `close()`.
    #[pyo3(signature = (value=None))]
    fn __call__(&self, py: Python<'_>, value: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        if !self.live.load(Ordering::Acquire) || !self.on_body_stack() {
            return Err(PyRuntimeError::new_err(
                "yield_ called outside its generator's body",
            ));
        }
        let value = value.unwrap_or_else(|| py.None());
        let yielder = SameThread(self.yielder);
        py.detach(move || {
            let yielder = yielder;
            // SAFETY: `live` and the stack check above: we run on the body's
            // own stack while the body runs, so its yielder is alive and this
            // is the coroutine it suspends.
            unsafe { (*yielder.0).yield_(value) }
        });
        match self.shared.resume.take() {
            Some(Resume::Send(v)) => Ok(v),
            Some(Resume::Throw(e)) => Err(e),
            Some(Resume::Close) | None => Err(PyGeneratorExit::new_err(())),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Suspended,
    Done,
}

/// A generator running its body on a stack of its own (see `ivyrt.generator`).
#[pyclass(module = "ivyrt", name = "Generator")]
pub struct Generator {
    core: Option<ivy::Generator<Py<PyAny>>>,
    shared: Arc<Shared>,
    /// The thread that created it, the only one that may run its body.
    owner: ThreadId,
    /// The body's thread state until the body has run (it deletes it at its end).
    tstate: *mut ffi::PyThreadState,
    state: State,
    /// Set while a `next`/`send`/`throw`/`close` runs the body.
    running: bool,
    name: String,
}

// SAFETY: the fields that are not thread-safe (the ivy generator, confined to
// its thread, and the thread state pointer) are used only on `owner`: every
// method checks the calling thread first (`on_owner`), and a drop elsewhere
// leaks them untouched (`Drop`).
unsafe impl Send for Generator {}
// SAFETY: as for `Send`; PyO3's borrow flag serialises the methods themselves.
unsafe impl Sync for Generator {}

static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl Generator {
    fn create(py: Python<'_>, func: Py<PyAny>, stack_size: Option<usize>) -> PyResult<Self> {
        let bytes = stack_size.unwrap_or(DEFAULT_STACK);
        if bytes < MIN_STACK {
            return Err(PyValueError::new_err(format!(
                "stack_size must be at least {MIN_STACK} bytes"
            )));
        }
        let name = func
            .bind(py)
            .getattr("__qualname__")
            .and_then(|n| n.extract::<String>())
            .unwrap_or_else(|_| "generator".to_owned());
        let shared = Arc::new(Shared {
            resume: Slot::new(),
            context: Slot::new(),
            outcome: Slot::new(),
        });
        // SAFETY: the GIL is held, as PyInterpreterState_Get requires; the new
        // state belongs to this interpreter and to this thread (see the top).
        let tstate = unsafe { ffi::PyThreadState_New(ffi::PyInterpreterState_Get()) };
        crate::tstate::own(tstate);
        if tstate.is_null() {
            return Err(PyRuntimeError::new_err("no memory for a thread state"));
        }
        let body_shared = shared.clone();
        let body_tstate = SameThread(tstate);
        let core = ivy::Generator::with_stack_size(bytes, move |y: &ivy::Yielder<Py<PyAny>>| {
            let tstate = body_tstate;
            run_body(tstate.0, y, func, body_shared, bytes);
        });
        match core {
            Ok(core) => Ok(Generator {
                core: Some(core),
                shared,
                owner: thread::current().id(),
                tstate,
                state: State::Created,
                running: false,
                name,
            }),
            Err(e) => {
                crate::tstate::disown(tstate);
                // SAFETY: the state was never attached; the GIL is held.
                unsafe {
                    ffi::PyThreadState_Clear(tstate);
                    ffi::PyThreadState_Delete(tstate);
                }
                Err(PyRuntimeError::new_err(format!(
                    "no stack of {bytes} bytes for the generator: {e}"
                )))
            }
        }
    }

    /// Resumes the body with `msg`: `Some(value)` when it yielded, `None` when
    /// it ended (its outcome is then in `shared.outcome`).
    fn resume(&mut self, py: Python<'_>, msg: Resume) -> PyResult<Option<Py<PyAny>>> {
        if thread::current().id() != self.owner {
            return Err(PyRuntimeError::new_err(
                "a generator runs only on the thread that created it",
            ));
        }
        if self.running {
            return Err(PyValueError::new_err("generator already executing"));
        }
        if self.state == State::Created {
            // The body runs in a copy of the context current at its start.
            let ctx = COPY_CONTEXT
                .get_or_try_init(py, || {
                    py.import("contextvars")?
                        .getattr("copy_context")
                        .map(Bound::unbind)
                })?
                .call0(py)?;
            self.shared.context.put(ctx);
        }
        self.shared.resume.put(msg);
        self.running = true;
        let Some(core) = self.core.as_mut() else {
            return Ok(None);
        };
        let core = SameThread(core);
        let next = crate::tstate::detach_parking(py, move || {
            let core = core;
            core.0.next()
        });
        self.running = false;
        match next {
            Some(v) => {
                self.state = State::Suspended;
                Ok(Some(v))
            }
            None => {
                // Free the finished body's stack now, on its own thread.
                self.core = None;
                self.state = State::Done;
                Ok(None)
            }
        }
    }

    /// The body's end as the caller of `next`/`send`/`throw` sees it.
    fn ended(&self) -> PyErr {
        match self.shared.outcome.take() {
            Some(Ok(value)) => PyStopIteration::new_err((value,)),
            Some(Err(e)) => e,
            None => PyStopIteration::new_err(()),
        }
    }

    fn step(&mut self, py: Python<'_>, msg: Resume) -> PyResult<Py<PyAny>> {
        if self.state == State::Done {
            return match msg {
                Resume::Throw(e) => Err(e),
                _ => Err(PyStopIteration::new_err(())),
            };
        }
        match self.resume(py, msg)? {
            Some(v) => Ok(v),
            None => Err(self.ended()),
        }
    }

    fn close_body(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.state {
            State::Done => return Ok(()),
            State::Created => {
                // Never started: finish it at once (the body sees Close before
                // calling the function and ends without running it).
                self.resume(py, Resume::Close)?;
                self.shared.outcome.take();
                return Ok(());
            }
            State::Suspended => {}
        }
        if self.resume(py, Resume::Close)?.is_some() {
            return Err(PyRuntimeError::new_err("generator ignored GeneratorExit"));
        }
        match self.shared.outcome.take() {
            Some(Err(e)) if !e.is_instance_of::<PyGeneratorExit>(py) => Err(e),
            _ => Ok(()),
        }
    }
}

/// The body: attaches its thread state, runs `func(yield_)` in a copy of the
/// starter's context, records the outcome, deletes its state. Runs on the
/// generator's stack inside the first `next`'s `detach` (no GIL, attach
/// count 0).
fn run_body(
    tstate: *mut ffi::PyThreadState,
    yielder: &ivy::Yielder<Py<PyAny>>,
    func: Py<PyAny>,
    shared: Arc<Shared>,
    bytes: usize,
) {
    // SAFETY: `tstate` is this generator's own state, never attached before,
    // created on this thread; the thread holds no state now (inside detach).
    unsafe { ffi::PyEval_RestoreThread(tstate) };
    // SAFETY: the GIL is held with `tstate` until the end of this function
    // (and again after each `yield_`, whose detach restores it).
    let py = unsafe { Python::assume_attached() };
    let func = func.into_bound(py);
    let top_marker = 0u8;
    let top = ptr::addr_of!(top_marker) as usize;
    let ctx = match shared.context.take() {
        Some(ctx) => ctx.into_bound(py),
        None => py.None().into_bound(py),
    };
    let first = shared.resume.take();
    let outcome = match first {
        Some(Resume::Send(v)) if !v.is_none(py) => Err(PyTypeError::new_err(
            "can't send non-None value to a just-started generator",
        )),
        Some(Resume::Throw(e)) => Err(e),
        Some(Resume::Close) | None => Ok(py.None()),
        Some(Resume::Send(_)) => {
            let y = Bound::new(
                py,
                Yield {
                    yielder: yielder as *const _,
                    shared: shared.clone(),
                    top,
                    depth: bytes - STACK_MARGIN,
                    live: AtomicBool::new(true),
                },
            );
            match y {
                Ok(y) => {
                    let r = ctx.call_method1("run", (&func, &y)).map(Bound::unbind);
                    y.get().live.store(false, Ordering::Release);
                    r
                }
                Err(e) => Err(e),
            }
        }
    };
    shared.outcome.put(outcome);
    drop(ctx);
    drop(func);
    drop(shared);
    crate::tstate::disown(tstate);
    // SAFETY: `tstate` is the current state (attached above); clearing and
    // deleting the current state also releases the GIL, leaving the thread
    // as the detach that resumed this body expects it (no state, no GIL).
    unsafe {
        ffi::PyThreadState_Clear(tstate);
        ffi::PyThreadState_DeleteCurrent();
    }
}

#[pymethods]
impl Generator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut g = borrow_idle(slf)?;
        g.step(py, Resume::Send(py.None()))
    }

    /// Resumes the body; its `yield_` returns `value`. Returns the next value
    /// yielded; StopIteration (with the body's return value) at its end.
    fn send(slf: &Bound<'_, Self>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut g = borrow_idle(slf)?;
        g.step(py, Resume::Send(value))
    }

    /// Raises `exc` (an exception instance or class) from the body's `yield_`;
    /// returns the next value yielded, or raises what the body raises.
    fn throw(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let err = PyErr::from_value(exc.clone());
        let mut g = borrow_idle(slf)?;
        g.step(py, Resume::Throw(err))
    }

    /// Finishes the body: GeneratorExit is raised from its `yield_`.
    /// RuntimeError if it yields again.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut g = borrow_idle(slf)?;
        g.close_body(py)
    }

    /// Whether the body is running (or parked in a blocking call) now.
    #[getter]
    fn gi_running(&self) -> bool {
        self.running
    }

    fn __repr__(&self) -> String {
        let state = match self.state {
            State::Created => "created",
            State::Suspended if self.running => "running",
            State::Suspended => "suspended",
            State::Done => "done",
        };
        format!("<ivyrt.Generator {} {state}>", self.name)
    }
}

/// The generator for a method call; ValueError while its body runs (PyO3's
/// borrow flag is held across the body's run, parks included).
fn borrow_idle<'py>(slf: &Bound<'py, Generator>) -> PyResult<PyRefMut<'py, Generator>> {
    slf.try_borrow_mut()
        .map_err(|_| PyValueError::new_err("generator already executing"))
}

impl Drop for Generator {
    fn drop(&mut self) {
        if self.state == State::Done || self.core.is_none() {
            return;
        }
        if thread::current().id() != self.owner {
            // Its stack and thread state belong to another thread (a task's
            // worker, maybe gone): neither can be resumed nor freed here.
            if self.state == State::Suspended {
                eprintln!(
                    "ivyrt: generator {} freed on another thread than its own while \
                     suspended; its stack and frames are leaked",
                    self.name
                );
            }
            std::mem::forget(self.core.take());
            return;
        }
        // SAFETY: a pyclass is dropped with the GIL held (by whichever thread
        // state frees it); `assume_attached` only makes the token.
        let py = unsafe { Python::assume_attached() };
        if self.state == State::Created {
            // Never run: the body's closure is dropped unrun and the thread
            // state was never attached.
            self.core = None;
            crate::tstate::disown(self.tstate);
            // SAFETY: an idle state of this interpreter; the GIL is held.
            unsafe {
                ffi::PyThreadState_Clear(self.tstate);
                ffi::PyThreadState_Delete(self.tstate);
            }
            return;
        }
        for _ in 0..3 {
            match self.close_body(py) {
                Ok(()) if self.state == State::Done => return,
                Ok(()) => {}
                Err(e) if self.state == State::Done => {
                    e.write_unraisable(py, None);
                    return;
                }
                Err(_) => {}
            }
        }
        // The body keeps yielding after GeneratorExit: it can be neither
        // finished nor unwound (CPython frames), so it is leaked whole.
        eprintln!(
            "ivyrt: generator {} ignored GeneratorExit; its stack and frames are leaked",
            self.name
        );
        std::mem::forget(self.core.take());
    }
}

/// Turns `func`, a function taking a `yield_` callable, into a generator whose
/// body runs on a stack of its own (`stack_size` bytes; default 8 MiB,
/// committed only as used). Calling `yield_(value)` hands `value` to the
/// iterating code and suspends the body there, at any call depth; blocking
/// calls in the body park the iterating task.
#[pyfunction]
#[pyo3(signature = (func, /, *, stack_size=None))]
fn generator(py: Python<'_>, func: Py<PyAny>, stack_size: Option<usize>) -> PyResult<Generator> {
    if !func.bind(py).is_callable() {
        return Err(PyTypeError::new_err("generator() needs a callable"));
    }
    Generator::create(py, func, stack_size)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Generator>()?;
    m.add_class::<Yield>()?;
    m.add_function(wrap_pyfunction!(generator, m)?)?;
    Ok(())
}
