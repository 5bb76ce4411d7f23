//! `JoinHandle` and `JoinError`: the result of a task, like asyncio's `Task`.
//!
//! The result travels in a typed `Packet<T>` written by the task's own stack
//! (before the coroutine returns, under the join lock) and read by the joiner
//! after it observes the task DONE (release/acquire on `JoinCore::done`), or
//! taken by the handle's drop under the join lock. Whoever comes last of the task
//! and a dropped handle drops the result, so user destructors in a result run
//! either where the handle is dropped or on the task's own stack, guarded, and
//! never on a worker's stack when it recycles the task (as std's `Packet`).
//!
//! Who waits, and whether anyone will ever look at a panic, is tracked in the
//! task's `JoinSlot`, so that a panic nobody joins is reported exactly once:
//! either by the worker when the task ends after its handle was dropped, or by
//! the handle's drop when the task had ended.
//!
//! `join_deadline` / `wait_deadline` are the non-unwinding `Result` forms
//! (`ivy::sync`'s "Two forms of every blocking call"); `join` and the
//! `wait_*` methods wrap them. Layering: api; uses the task core (`raw`) and
//! park.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::WaitError;
use crate::park;
use crate::sync::{deadline_after, or_raise_wait, or_timed_out};
use crate::task::raw::{JoinCore, Task};
use crate::task::TaskId;
use std::sync::atomic::Ordering;

pub(crate) struct Packet<T> {
    result: UnsafeCell<Option<Result<T, JoinError>>>,
}

// SAFETY: `result` is written once by the task, under the join lock, before it is
// marked DONE; it is taken by the joiner after it observed DONE with Acquire
// ordering, or by the handle's drop under the join lock. Those accesses are
// ordered by the lock or by `done`, and never concurrent.
unsafe impl<T: Send> Sync for Packet<T> {}
// SAFETY: as above; `T: Send` because the value moves from the task to the joiner.
unsafe impl<T: Send> Send for Packet<T> {}

impl<T> Packet<T> {
    pub(crate) fn new() -> Packet<T> {
        Packet {
            result: UnsafeCell::new(None),
        }
    }

    /// # Safety
    /// Called once, by the task, holding the join lock, before it is marked DONE.
    pub(crate) unsafe fn set(&self, r: Result<T, JoinError>) {
        // SAFETY: see the `Sync` impl; the caller upholds the write-once rule.
        unsafe { *self.result.get() = Some(r) };
    }

    /// # Safety
    /// Called only after the task was observed DONE, or holding the join lock.
    pub(crate) unsafe fn take(&self) -> Option<Result<T, JoinError>> {
        // SAFETY: see the `Sync` impl.
        unsafe { (*self.result.get()).take() }
    }
}

/// Where a `JoinHandle` reads its task's result: the packet inside the task's
/// `Body`, whose closure type the handle does not know.
pub(crate) trait ResultSlot<T>: crate::task::raw::Start {
    /// # Safety
    /// Called only after the task was observed DONE, or holding the join lock.
    unsafe fn take(&self) -> Option<Result<T, JoinError>>;
}

/// Why a task produced no value.
pub struct JoinError {
    id: TaskId,
    repr: Repr,
}

enum Repr {
    Cancelled,
    Panicked(Box<dyn Any + Send + 'static>),
    NoStack(std::io::Error),
}

impl JoinError {
    pub(crate) fn cancelled(id: TaskId) -> JoinError {
        JoinError {
            id,
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn panicked(id: TaskId, payload: Box<dyn Any + Send>) -> JoinError {
        JoinError {
            id,
            repr: Repr::Panicked(payload),
        }
    }

    pub(crate) fn no_stack(id: TaskId, e: std::io::Error) -> JoinError {
        JoinError {
            id,
            repr: Repr::NoStack(e),
        }
    }

    /// The task was cancelled (before it started, or at a blocking call).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// The task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panicked(_))
    }

    /// The task could not start because no stack could be allocated for it.
    pub fn is_no_stack(&self) -> bool {
        matches!(self.repr, Repr::NoStack(_))
    }

    /// The id of the task that failed.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The panic message, if the task panicked with a string.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            Repr::Panicked(p) => payload_str(p.as_ref()),
            _ => None,
        }
    }

    /// The panic payload, to resume it with `std::panic::resume_unwind`.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panicked(p) => Ok(p),
            repr => Err(JoinError { id: self.id, repr }),
        }
    }
}

pub(crate) fn payload_str(p: &(dyn Any + Send)) -> Option<&str> {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        Some(s)
    } else {
        p.downcast_ref::<String>().map(|s| s.as_str())
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "task {} was cancelled", self.id),
            Repr::Panicked(p) => match payload_str(p.as_ref()) {
                Some(m) => write!(f, "task {} panicked: {m}", self.id),
                None => write!(f, "task {} panicked", self.id),
            },
            Repr::NoStack(e) => write!(f, "task {} could not get a stack: {e}", self.id),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "JoinError::Cancelled({})", self.id),
            Repr::Panicked(p) => write!(
                f,
                "JoinError::Panicked({}, {:?})",
                self.id,
                payload_str(p.as_ref()).unwrap_or("<non-string payload>")
            ),
            Repr::NoStack(e) => write!(f, "JoinError::NoStack({}, {e})", self.id),
        }
    }
}

impl std::error::Error for JoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.repr {
            Repr::NoStack(e) => Some(e),
            _ => None,
        }
    }
}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> std::io::Error {
        let kind = match e.repr {
            Repr::NoStack(_) => std::io::ErrorKind::OutOfMemory,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

/// An owned permission to join a task (wait for its result), like
/// `std::thread::JoinHandle`. Dropping it detaches the task, which keeps running.
///
/// The handle holds the task's `Body` (closure, result, join state), not the
/// task itself: a finished task's stack and scheduler state are freed at once,
/// and only the result waits here for `join`.
pub struct JoinHandle<T> {
    packet: Arc<dyn ResultSlot<T>>,
    joined: bool,
    _marker: PhantomData<T>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(packet: Arc<dyn ResultSlot<T>>) -> JoinHandle<T> {
        JoinHandle {
            packet,
            joined: false,
            _marker: PhantomData,
        }
    }

    /// Waits for the task to finish and returns its result.
    ///
    /// From an ivy task this parks the task (a cancellation point: if the *caller*
    /// is cancelled while waiting, it unwinds, and the joined task is detached);
    /// from a plain thread it blocks the thread.
    pub fn join(mut self) -> Result<T, JoinError> {
        or_raise_wait(self.join_deadline(None))
    }

    /// The `Result` form of [`join`](Self::join) (see "Two forms of every
    /// blocking call" in [`crate::sync`]): waits until the task finished or
    /// `deadline` passed (`None`: no deadline of its own). `Ok` carries the
    /// task's outcome, and the handle is spent (its task is joined: calling this
    /// again panics). On `Err` (`TimedOut`, `Cancelled`, `Elapsed`) the handle
    /// is untouched and may be joined again; the task runs on. A passed
    /// deadline makes it a try that never parks.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// ivy::run(|| {
    ///     let mut h = ivy::spawn(|| { ivy::sleep(Duration::from_millis(20)); 7 });
    ///     let soon = Instant::now() + Duration::from_millis(1);
    ///     assert_eq!(h.join_deadline(Some(soon)).unwrap_err(), ivy::WaitError::TimedOut);
    ///     assert_eq!(h.join_deadline(None).unwrap().unwrap(), 7);
    /// });
    /// ```
    pub fn join_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Result<T, JoinError>, WaitError> {
        assert!(!self.joined, "ivy: JoinHandle joined twice");
        self.wait_deadline(deadline)?;
        self.joined = true;
        // SAFETY: `wait_deadline` returned Ok, so the task was observed DONE.
        Ok(unsafe { self.packet.take() }.expect("ivy: task result taken twice"))
    }

    /// The `Result` form of [`wait_until`](Self::wait_until): waits until the
    /// task finished (`Ok`) or `deadline` passed (`Err(TimedOut)`), without
    /// taking its result. `None`: no deadline of its own.
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        loop {
            if !self.set_waiter(Waiter::Unpark(park::current_unparker())) {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.clear_waiter();
                return if self.core().is_done() {
                    Ok(())
                } else {
                    Err(WaitError::TimedOut)
                };
            }
            if let Err(e) = park::park_for(deadline, crate::runtime::debug::WaitReason::Join) {
                self.clear_waiter();
                return Err(e.into());
            }
        }
    }

    /// Registers who to wake when the task finishes. Returns `false` (and registers
    /// nothing) if it has already finished.
    pub(crate) fn set_waiter(&self, w: Waiter) -> bool {
        let core = self.core();
        if core.is_done() {
            return false;
        }
        let mut slot = core.lock();
        if core.is_done() {
            return false;
        }
        slot.waiter = Some(w);
        true
    }

    pub(crate) fn clear_waiter(&self) {
        self.core().lock().waiter = None;
    }

    fn core(&self) -> &JoinCore {
        self.packet.core()
    }

    /// The task's identity and join state, which outlive the task (for the C
    /// ABI's handle table, which needs them while a join holds the handle).
    pub(crate) fn shared_core(&self) -> TaskCore<T> {
        TaskCore(self.packet.clone())
    }

    /// The task, unless it has finished (then it may be freed already).
    pub(crate) fn raw_task(&self) -> Option<Arc<Task>> {
        self.core().lock().task.clone()
    }

    /// Waits up to `timeout` for the task to finish, without consuming the handle.
    /// Returns whether it has finished. A cancellation point.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        or_timed_out(self.wait_deadline(deadline_after(timeout))).is_ok()
    }

    /// Waits until `deadline` for the task to finish, without consuming the handle.
    /// Returns whether it has finished. A cancellation point.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        or_timed_out(self.wait_deadline(Some(deadline))).is_ok()
    }

    /// Whether the task has finished (then `join` returns without waiting).
    pub fn is_finished(&self) -> bool {
        self.core().is_done()
    }

    /// Requests cancellation: the task sees it at its next blocking call (at once if
    /// it is sleeping or parked; before it runs at all if it has not started), runs
    /// its destructors, and `join` returns a cancelled `JoinError`. Cancelling a
    /// finished task does nothing.
    pub fn cancel(&self) {
        self.core().cancel();
    }

    /// The id of the task.
    pub fn id(&self) -> TaskId {
        TaskId(self.core().id)
    }

    /// The name of the task, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.core().name.as_deref()
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if self.joined {
            return;
        }
        let core = self.core();
        let (report, result) = {
            let mut slot = core.lock();
            slot.handle_dropped = true;
            slot.waiter = None;
            // SAFETY: we hold the join lock. A result stored by now is ours to
            // drop; one not stored yet will be dropped by the task (task::Body).
            let result = unsafe { self.packet.take() };
            let report = if core.is_done() {
                slot.panic_message.take()
            } else {
                None
            };
            (report, result)
        };
        if let Some(msg) = report {
            report_unjoined_panic(core, &msg);
        }
        // Outside the lock: a destructor in the result may use the task's handle
        // state (`is_finished`) or block.
        drop(result);
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.core().id)
            .field("name", &self.core().name)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Worker: the task is DONE; wake its joiner, or report a panic nobody will see.
pub(crate) fn notify_done(task: &Arc<Task>) {
    let core = task.body().core();
    let (waiter, report, me) = {
        let mut slot = core.lock();
        core.done.store(true, Ordering::Release);
        let report = if slot.handle_dropped {
            slot.panic_message.take()
        } else {
            None
        };
        (slot.waiter.take(), report, slot.task.take())
    };
    // The caller holds its own reference: this does not free the task.
    drop(me);
    match waiter {
        Some(Waiter::Unpark(u)) => u.unpark(),
        Some(Waiter::Group(signal, index)) => signal.complete(index),
        None => {}
    }
    if let Some(msg) = report {
        report_unjoined_panic(core, &msg);
    }
}

fn report_unjoined_panic(task: &JoinCore, msg: &str) {
    match &task.name {
        Some(name) => eprintln!(
            "ivy: task '{name}' (id {}) panicked and nobody joined it: {msg}",
            task.id
        ),
        None => eprintln!(
            "ivy: task <unnamed> (id {}) panicked and nobody joined it: {msg}",
            task.id
        ),
    }
}

/// A task's identity and join state, shared with its `JoinHandle`.
pub(crate) struct TaskCore<T>(Arc<dyn ResultSlot<T>>);

impl<T> std::ops::Deref for TaskCore<T> {
    type Target = JoinCore;
    fn deref(&self) -> &JoinCore {
        self.0.core()
    }
}

/// Who a finishing task wakes.
pub(crate) enum Waiter {
    /// The one task or thread waiting in `join` / `wait_*`.
    Unpark(park::Unparker),
    /// A set of handles waited on together (`wait_any`, `as_completed`): the task
    /// reports its index, so the waiter finds it without scanning the set.
    Group(Arc<CompletionSignal>, usize),
}

/// Completion order of a set of tasks, and who to wake on each completion.
#[derive(Default)]
pub(crate) struct CompletionSignal {
    inner: Mutex<SignalState>,
}

#[derive(Default)]
struct SignalState {
    completed: std::collections::VecDeque<usize>,
    waiter: Option<park::Unparker>,
}

impl CompletionSignal {
    pub(crate) fn complete(&self, index: usize) {
        let waiter = {
            let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            s.completed.push_back(index);
            s.waiter.clone()
        };
        if let Some(w) = waiter {
            w.unpark();
        }
    }

    /// Registers the caller as the one to wake, then returns the next completed
    /// index if there is one.
    pub(crate) fn poll(&self) -> Option<usize> {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.waiter = Some(park::current_unparker());
        s.completed.pop_front()
    }
}
