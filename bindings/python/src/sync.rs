//! asyncio's synchronisation primitives in sync form: `Lock`, `Semaphore`,
//! `BoundedSemaphore`, `Event`, `Condition`, `Barrier`, over `ivy::sync`.
//!
//! Design decisions:
//! - **The fast path never releases the GIL.** Each blocking method first tries
//!   the ivy primitive's non-blocking form while holding the GIL (an uncontended
//!   `Lock.acquire` is one CAS); only a call that would wait goes through
//!   `block::blocking`, which saves the task's thread state, parks the task and
//!   re-takes the GIL. One PyO3 call per operation, no Python wrapper.
//! - **`Lock` is a `BoundedSemaphore(1)`, not an `ivy::sync::Mutex`.** asyncio's
//!   `Lock` is released by an explicit `release()` (any task may call it; a
//!   release of an unlocked lock is `RuntimeError`), which has no RAII guard to
//!   hold, and ivy's `Mutex` is reachable only through its guard. The bounded
//!   semaphore gives exactly that: a checked release, FIFO hand-off to waiters
//!   (asyncio's lock is FIFO too), and a one-CAS fast path.
//! - **`Condition` keeps its own FIFO of per-waiter `ivy::sync::Event`s** (as
//!   CPython's `threading.Condition` keeps per-waiter locks), because ivy's
//!   `Condition` is tied to `MutexGuard`. A waiter re-takes the lock under
//!   `ivy::shield` whatever ended its wait (notify, timeout, cancellation), as
//!   asyncio's `Condition.wait` does, so `with cond:` always exits holding the
//!   lock; a waiter interrupted after it was notified passes the notification on.
//!   `notify(n)` wakes the `n` longest-waiting tasks; the order in which they
//!   then re-take the lock is the scheduler's (as for any woken tasks).
//! - **`Barrier` is built here** from a per-generation `ivy::sync::Event`,
//!   because asyncio's barrier can be `abort()`ed and `reset()`, which break the
//!   waiters with `BrokenBarrierError`; ivy's `Barrier` has no broken state. As in
//!   asyncio, a cancelled (or timed-out) waiter withdraws from its generation
//!   without breaking the barrier.
//! - Every blocking method takes an optional `timeout=` (seconds) of its own,
//!   like `threading`'s (`False` when it passes), besides honouring cancellation
//!   (`CancelledError`) and enclosing `ivyrt.timeout()` scopes (`TimeoutError`),
//!   which `block::blocking` maps.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Instant;

use ivy::sync::{BoundedSemaphore as IvyBounded, Event as IvyEvent, Semaphore as IvySemaphore};
use ivy::WaitError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::block::{blocking, deadline_after};
use crate::errors::BrokenBarrierError;

/// `Ok(true)` for done, `Ok(false)` for the call's own deadline, the rest as
/// errors for `blocking` to raise.
fn timed(r: Result<(), WaitError>) -> Result<bool, WaitError> {
    match r {
        Ok(()) => Ok(true),
        Err(WaitError::TimedOut) => Ok(false),
        Err(e) => Err(e),
    }
}

fn lock_of<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The state behind these mutexes is updated in single statements that cannot
    // panic half-way: a poisoned one is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes a permit of `sem`: without releasing the GIL when one is free (the
/// uncontended path), else parking until `deadline`. False when it elapsed.
fn acquire_bounded(py: Python<'_>, sem: &IvyBounded, deadline: Option<Instant>) -> PyResult<bool> {
    if sem.try_acquire() {
        return Ok(true);
    }
    blocking(py, || timed(sem.acquire_deadline(deadline)))
}

/// A mutual exclusion lock (asyncio.Lock). `with lock:` acquires and releases it.
///
/// Not reentrant; any task may release it; FIFO: waiters get it in arrival order.
#[pyclass(module = "ivyrt", frozen)]
pub struct Lock {
    sem: IvyBounded,
}

impl Lock {
    fn acquire_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        acquire_bounded(py, &self.sem, deadline)
    }

    fn release_checked(&self) -> PyResult<()> {
        self.sem
            .release()
            .map_err(|_| PyRuntimeError::new_err("Lock is not acquired."))
    }
}

#[pymethods]
impl Lock {
    #[new]
    fn new() -> Self {
        Lock {
            sem: IvyBounded::new(1),
        }
    }

    /// Acquires the lock, parking the task until it is free. Returns True, or
    /// False if `timeout` seconds passed first.
    #[pyo3(signature = (timeout=None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.acquire_until(py, deadline_after(timeout)?)
    }

    /// Releases the lock; RuntimeError if it is not locked.
    fn release(&self) -> PyResult<()> {
        self.release_checked()
    }

    /// Whether the lock is held.
    fn locked(&self) -> bool {
        self.sem.available_permits() == 0
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
        self.acquire_until(py, None).map(|_| ())
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.release_checked().map(|()| false)
    }

    fn __repr__(&self) -> String {
        let state = if self.locked() { "locked" } else { "unlocked" };
        format!("<ivyrt.Lock [{state}]>")
    }
}

/// A counting semaphore (asyncio.Semaphore): `acquire()` takes one of `value`
/// permits, parking while none is free; `release()` returns one.
#[pyclass(module = "ivyrt", frozen)]
pub struct Semaphore {
    sem: IvySemaphore,
}

fn semaphore_value(value: i64) -> PyResult<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v <= IvySemaphore::MAX_PERMITS)
        .ok_or_else(|| PyValueError::new_err("Semaphore initial value must be >= 0"))
}

/// Takes a permit of `sem` and keeps it (released by an explicit `release`).
fn acquire_permit(py: Python<'_>, sem: &IvySemaphore, deadline: Option<Instant>) -> PyResult<bool> {
    if let Some(permit) = sem.try_acquire() {
        permit.forget();
        return Ok(true);
    }
    blocking(py, || {
        timed(sem.acquire_deadline(deadline).map(|permit| permit.forget()))
    })
}

#[pymethods]
impl Semaphore {
    #[new]
    #[pyo3(signature = (value=1))]
    fn new(value: i64) -> PyResult<Self> {
        Ok(Semaphore {
            sem: IvySemaphore::new(semaphore_value(value)?),
        })
    }

    /// Takes a permit, parking until one is free. True, or False if `timeout`
    /// seconds passed first.
    #[pyo3(signature = (timeout=None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        acquire_permit(py, &self.sem, deadline_after(timeout)?)
    }

    /// Returns a permit (waking the first waiter).
    fn release(&self) {
        self.sem.add_permits(1);
    }

    /// Whether `acquire()` would have to wait.
    fn locked(&self) -> bool {
        self.sem.available_permits() == 0 || self.sem.waiters() > 0
    }

    /// The number of free permits.
    #[getter]
    fn value(&self) -> usize {
        self.sem.available_permits()
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
        acquire_permit(py, &self.sem, None).map(|_| ())
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        self.sem.add_permits(1);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<ivyrt.Semaphore [value={}, waiters={}]>",
            self.sem.available_permits(),
            self.sem.waiters()
        )
    }
}

/// A semaphore whose `release()` raises ValueError rather than raise the count
/// above its initial value (asyncio.BoundedSemaphore).
#[pyclass(module = "ivyrt", frozen)]
pub struct BoundedSemaphore {
    sem: IvyBounded,
}

impl BoundedSemaphore {
    fn acquire_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        acquire_bounded(py, &self.sem, deadline)
    }

    fn release_checked(&self) -> PyResult<()> {
        self.sem
            .release()
            .map_err(|_| PyValueError::new_err("BoundedSemaphore released too many times"))
    }
}

#[pymethods]
impl BoundedSemaphore {
    #[new]
    #[pyo3(signature = (value=1))]
    fn new(value: i64) -> PyResult<Self> {
        Ok(BoundedSemaphore {
            sem: IvyBounded::new(semaphore_value(value)?),
        })
    }

    /// Takes a permit, parking until one is free. True, or False if `timeout`
    /// seconds passed first.
    #[pyo3(signature = (timeout=None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.acquire_until(py, deadline_after(timeout)?)
    }

    /// Returns a permit; ValueError if that would exceed the initial value.
    fn release(&self) -> PyResult<()> {
        self.release_checked()
    }

    /// Whether `acquire()` would have to wait.
    fn locked(&self) -> bool {
        self.sem.available_permits() == 0
    }

    /// The number of free permits.
    #[getter]
    fn value(&self) -> usize {
        self.sem.available_permits()
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
        self.acquire_until(py, None).map(|_| ())
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.release_checked().map(|()| false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<ivyrt.BoundedSemaphore [value={}/{}]>",
            self.sem.available_permits(),
            self.sem.bound()
        )
    }
}

/// An event flag (asyncio.Event): `wait()` parks until `set()`; `clear()`
/// resets it.
#[pyclass(module = "ivyrt", frozen)]
pub struct Event {
    ev: IvyEvent,
}

#[pymethods]
impl Event {
    #[new]
    fn new() -> Self {
        Event {
            ev: IvyEvent::new(),
        }
    }

    /// Whether the flag is set.
    fn is_set(&self) -> bool {
        self.ev.is_set()
    }

    /// Sets the flag and wakes every waiter.
    fn set(&self) {
        self.ev.set();
    }

    /// Clears the flag.
    fn clear(&self) {
        self.ev.clear();
    }

    /// Parks until the flag is set. True, or False if `timeout` seconds passed
    /// first.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.ev.is_set() {
            return Ok(true);
        }
        let deadline = deadline_after(timeout)?;
        blocking(py, || timed(self.ev.wait_deadline(deadline)))
    }

    fn __repr__(&self) -> String {
        let state = if self.ev.is_set() { "set" } else { "unset" };
        format!("<ivyrt.Event [{state}]>")
    }
}

/// A condition variable (asyncio.Condition) over a `Lock` (a new one by
/// default). `with cond:` holds the lock; `wait()` releases it while parked.
#[pyclass(module = "ivyrt", frozen)]
pub struct Condition {
    lock: Py<Lock>,
    /// One event per parked waiter, in arrival order.
    waiters: StdMutex<VecDeque<Arc<IvyEvent>>>,
}

impl Condition {
    fn held(&self) -> PyResult<&Lock> {
        let lock = self.lock.get();
        if lock.locked() {
            Ok(lock)
        } else {
            Err(PyRuntimeError::new_err("cannot wait on un-acquired lock"))
        }
    }

    fn wake(&self, n: usize) -> usize {
        let mut waiters = lock_of(&self.waiters);
        let n = n.min(waiters.len());
        for ev in waiters.drain(..n) {
            ev.set();
        }
        n
    }

    fn wait_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        let lock = self.held()?;
        let me = Arc::new(IvyEvent::new());
        // Queued before the release, so that no notify can fall in between.
        lock_of(&self.waiters).push_back(me.clone());
        if let Err(e) = lock.release_checked() {
            // Released by someone else since the check (a misuse): no wait.
            lock_of(&self.waiters).retain(|w| !Arc::ptr_eq(w, &me));
            return Err(e);
        }
        blocking(py, || {
            let waited = me.wait_deadline(deadline);
            self.after_wait(lock, &me, waited)
        })
    }

    /// What `wait_until` does once its wait ended, however it ended. Out of
    /// line: the closure that parks is a frame of every waiting task's stack
    /// page (findings/pystack.md), and this part's locals, inlined, made it
    /// deeper than the page.
    #[inline(never)]
    fn after_wait(
        &self,
        lock: &Lock,
        me: &Arc<IvyEvent>,
        waited: Result<(), WaitError>,
    ) -> Result<bool, WaitError> {
        if waited.is_err() {
            let mut waiters = lock_of(&self.waiters);
            match waiters.iter().position(|w| Arc::ptr_eq(w, me)) {
                Some(at) => drop(waiters.remove(at)),
                // Notified in the race with the interruption: pass it on.
                None => {
                    drop(waiters);
                    self.wake(1);
                }
            }
        }
        // Re-take the lock whatever ended the wait, out of reach of the
        // cancellation or deadline that may have ended it.
        ivy::shield(|| lock.sem.acquire_deadline(None))?;
        timed(waited)
    }
}

#[pymethods]
impl Condition {
    #[new]
    #[pyo3(signature = (lock=None))]
    fn new(py: Python<'_>, lock: Option<Py<Lock>>) -> PyResult<Self> {
        let lock = match lock {
            Some(lock) => lock,
            None => Py::new(py, Lock::new())?,
        };
        Ok(Condition {
            lock,
            waiters: StdMutex::new(VecDeque::new()),
        })
    }

    /// Acquires the underlying lock (see `Lock.acquire`).
    #[pyo3(signature = (timeout=None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.lock.get().acquire_until(py, deadline_after(timeout)?)
    }

    /// Releases the underlying lock.
    fn release(&self) -> PyResult<()> {
        self.lock.get().release_checked()
    }

    /// Whether the underlying lock is held.
    fn locked(&self) -> bool {
        self.lock.get().locked()
    }

    /// Releases the lock, parks until notified, re-acquires the lock. The lock
    /// must be held (RuntimeError). True, or False if `timeout` seconds passed
    /// first. The lock is held again on return, also when it raises.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.wait_until(py, deadline_after(timeout)?)
    }

    /// Waits until `predicate()` is true and returns its last value (which may
    /// be false if `timeout` seconds passed first).
    #[pyo3(signature = (predicate, timeout=None))]
    fn wait_for(
        &self,
        py: Python<'_>,
        predicate: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let deadline = deadline_after(timeout)?;
        let mut result = predicate.call0()?;
        while !result.is_truthy()? {
            let notified = self.wait_until(py, deadline)?;
            result = predicate.call0()?;
            if !notified {
                break;
            }
        }
        Ok(result.unbind())
    }

    /// Wakes up to `n` waiters (the lock must be held).
    #[pyo3(signature = (n=1))]
    fn notify(&self, n: usize) -> PyResult<()> {
        self.held()?;
        self.wake(n);
        Ok(())
    }

    /// Wakes every waiter (the lock must be held).
    fn notify_all(&self) -> PyResult<()> {
        self.held()?;
        self.wake(usize::MAX);
        Ok(())
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<()> {
        self.lock.get().acquire_until(py, None).map(|_| ())
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.lock.get().release_checked().map(|()| false)
    }

    fn __repr__(&self) -> String {
        let state = if self.locked() { "locked" } else { "unlocked" };
        let waiters = lock_of(&self.waiters).len();
        format!("<ivyrt.Condition [{state}, waiters={waiters}]>")
    }
}

/// One filling of a barrier: its waiters park on `done`; `broken` says whether
/// it ended by `abort()`/`reset()` rather than by the last arrival.
struct Generation {
    done: IvyEvent,
    broken: AtomicBool,
}

impl Generation {
    fn new() -> Arc<Generation> {
        Arc::new(Generation {
            done: IvyEvent::new(),
            broken: AtomicBool::new(false),
        })
    }

    fn end(&self, broken: bool) {
        self.broken.store(broken, Ordering::Release);
        self.done.set();
    }
}

struct BarrierState {
    arrived: usize,
    generation: Arc<Generation>,
    /// Set by `abort()` until `reset()`.
    broken: bool,
}

/// A barrier (asyncio.Barrier): `wait()` parks until `parties` tasks wait,
/// then releases them all. `abort()` and `reset()` break the waiting ones
/// with BrokenBarrierError.
#[pyclass(module = "ivyrt", frozen)]
pub struct Barrier {
    parties: usize,
    state: StdMutex<BarrierState>,
}

fn broken_barrier() -> PyErr {
    BrokenBarrierError::new_err("the barrier is broken")
}

impl Barrier {
    fn wait_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<usize> {
        let (index, generation) = {
            let mut state = lock_of(&self.state);
            if state.broken {
                return Err(broken_barrier());
            }
            let index = state.arrived;
            state.arrived += 1;
            if state.arrived == self.parties {
                state.arrived = 0;
                let filled = std::mem::replace(&mut state.generation, Generation::new());
                filled.end(false);
                return Ok(index);
            }
            (index, state.generation.clone())
        };
        let waited = blocking(py, || {
            let waited = generation.done.wait_deadline(deadline);
            if waited.is_err() {
                // Withdraw from a generation still filling, as asyncio does.
                let mut state = lock_of(&self.state);
                if Arc::ptr_eq(&state.generation, &generation) {
                    state.arrived -= 1;
                }
            }
            timed(waited)
        })?;
        if !waited {
            return Err(pyo3::exceptions::PyTimeoutError::new_err(
                "Barrier.wait timed out",
            ));
        }
        if generation.broken.load(Ordering::Acquire) {
            return Err(broken_barrier());
        }
        Ok(index)
    }

    fn end_generation(&self, state: &mut BarrierState, broken: bool) {
        state.arrived = 0;
        let ended = std::mem::replace(&mut state.generation, Generation::new());
        ended.end(broken);
    }
}

#[pymethods]
impl Barrier {
    #[new]
    fn new(parties: i64) -> PyResult<Self> {
        let parties = usize::try_from(parties)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| PyValueError::new_err("parties must be > 0"))?;
        Ok(Barrier {
            parties,
            state: StdMutex::new(BarrierState {
                arrived: 0,
                generation: Generation::new(),
                broken: false,
            }),
        })
    }

    /// Parks until `parties` tasks wait, then returns this caller's arrival
    /// index (0 .. parties-1). BrokenBarrierError if the barrier is or gets
    /// broken; TimeoutError if `timeout` seconds pass first (the caller
    /// withdraws, the barrier stays usable).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<usize> {
        self.wait_until(py, deadline_after(timeout)?)
    }

    /// Breaks the barrier: waiters and later `wait()`s raise
    /// BrokenBarrierError until `reset()`.
    fn abort(&self) {
        let mut state = lock_of(&self.state);
        state.broken = true;
        self.end_generation(&mut state, true);
    }

    /// Returns the barrier to its empty state; current waiters raise
    /// BrokenBarrierError.
    fn reset(&self) {
        let mut state = lock_of(&self.state);
        state.broken = false;
        if state.arrived > 0 {
            self.end_generation(&mut state, true);
        }
    }

    /// The number of tasks needed to pass the barrier.
    #[getter]
    fn parties(&self) -> usize {
        self.parties
    }

    /// The number of tasks waiting now.
    #[getter]
    fn n_waiting(&self) -> usize {
        lock_of(&self.state).arrived
    }

    /// Whether the barrier is broken (aborted and not reset).
    #[getter]
    fn broken(&self) -> bool {
        lock_of(&self.state).broken
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<usize> {
        self.wait_until(py, None)
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> bool {
        false
    }

    fn __repr__(&self) -> String {
        let state = lock_of(&self.state);
        format!(
            "<ivyrt.Barrier [parties={}, waiting={}{}]>",
            self.parties,
            state.arrived,
            if state.broken { ", broken" } else { "" }
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lock>()?;
    m.add_class::<Semaphore>()?;
    m.add_class::<BoundedSemaphore>()?;
    m.add_class::<Event>()?;
    m.add_class::<Condition>()?;
    m.add_class::<Barrier>()?;
    Ok(())
}
