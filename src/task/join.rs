//! `JoinHandle`: the result of a task, like asyncio's `Task`. (`JoinError`, the
//! result's packet and the join wake-up live in the task core, `task::body` and
//! `task::header`: the task's end writes and signals them.)
//!
//! Layer: api.
//!
//! The result travels in the task body's typed slot (`body::Stage`), written by
//! the task's own stack (before the coroutine returns, under the join lock) and
//! read by the joiner after it observes the task DONE (release/acquire on
//! `JoinCore::is_done`, a bit of the id's word), or taken by the handle's drop
//! under the join lock once the task marked it STORED. Whoever comes last of the
//! task and a dropped handle drops the result, so user destructors in a result
//! run either where the handle is dropped or on the task's own stack, guarded,
//! and never on a worker's stack when it recycles the task (as std's `Packet`).
//!
//! Who waits, and whether anyone will ever look at a panic, is tracked in the
//! task's `JoinSlot` (its `Joiner`), so that a panic nobody joins is reported
//! exactly once: either by the worker when the task ends after its handle was
//! dropped, or by the handle's drop when the task had ended.
//!
//! A `JoinHandle` is also a `Future` (`Output = Result<T, JoinError>`), for
//! async code on any executor (another runtime, `futures::executor::block_on`,
//! or `ivy::block_on`): a poll never blocks; it registers the poll's waker in
//! the join slot (`Waiter::Waker`, replacing any earlier one unless it
//! `will_wake` the same task), and the task's end wakes it. Ready spends the
//! handle, as `join` does; polling it again panics, like std's futures.
//!
//! `join_deadline` / `wait_deadline` are the non-unwinding `Result` forms
//! (`ivy::sync`'s "Two forms of every blocking call"); `join` and the
//! `wait_*` methods wrap them. Layering: api; uses the task core (`raw`) and
//! park.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::WaitError;
use crate::park;
use crate::sync::{deadline_after, or_raise, or_timed_out};
pub use crate::task::body::JoinError;
use crate::task::body::ResultSlot;
use crate::task::header::{report_unjoined_panic, Waiter};

use crate::task::raw::{JoinCore, Joiner, Task};
use crate::task::TaskId;

/// An owned permission to join a task (wait for its result), like
/// `std::thread::JoinHandle`. Dropping it detaches the task, which keeps running.
///
/// The handle holds the task's `Body` (closure, result, join state), not the
/// task itself: a finished task's stack and scheduler state are freed at once,
/// and only the result waits here for `join`.
pub struct JoinHandle<T> {
    // Joined (spent) is: the task is done and its result is taken, which only
    // the handle does: no flag of its own, so a handle is two words.
    packet: Arc<dyn ResultSlot<T>>,
    _marker: PhantomData<T>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(packet: Arc<dyn ResultSlot<T>>) -> JoinHandle<T> {
        JoinHandle {
            packet,
            _marker: PhantomData,
        }
    }

    /// Waits for the task to finish and returns its result.
    ///
    /// From an ivy task this parks the task (a cancellation point: if the *caller*
    /// is cancelled while waiting, it unwinds, and the joined task is detached);
    /// from a plain thread it blocks the thread.
    pub fn join(mut self) -> Result<T, JoinError> {
        or_raise(self.join_deadline(None))
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
        // A joined handle's task is done: the wait returns at once, and the
        // result is gone.
        self.wait_deadline(deadline)?;
        // SAFETY: `wait_deadline` returned Ok, so the task was observed DONE.
        Ok(unsafe { self.packet.take() }.expect("ivy: JoinHandle joined twice"))
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
            if let Err(e) = park::park_for(deadline, crate::task::wait_reason::WaitReason::Join) {
                self.clear_waiter();
                return Err(e);
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
        drop(slot.joiner.wait(w));
        true
    }

    /// Registers `waker` as who to wake when the task finishes (keeping the
    /// registered one if it wakes the same task). Returns `false` (and
    /// registers nothing) if it has already finished.
    fn set_waker(&self, waker: &Waker) -> bool {
        let core = self.core();
        if core.is_done() {
            return false;
        }
        let old = {
            let mut slot = core.lock();
            if core.is_done() {
                return false;
            }
            match &slot.joiner {
                Joiner::Waiting(Waiter::Waker(w)) if w.will_wake(waker) => None,
                _ => slot.joiner.wait(Waiter::Waker(waker.clone())),
            }
        };
        // Outside the lock: dropping a foreign waker runs its executor's code.
        drop(old);
        true
    }

    pub(crate) fn clear_waiter(&self) {
        drop(self.core().lock().joiner.take_waiter());
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
        TaskId(self.core().id())
    }

    /// The name of the task, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.core().name()
    }
}

/// The handle as a future of the task's outcome, for async code on any
/// executor. Polling never blocks: it registers the waker, which the task's end
/// wakes (from the task's worker). `Ready` spends the handle like
/// [`join`](JoinHandle::join); polling it again panics. Dropping a handle that
/// was polled but not finished detaches the task, as dropping any handle does.
///
/// ```
/// ivy::run(|| {
///     let h = ivy::spawn(|| 6 * 7);
///     assert_eq!(ivy::block_on(h).unwrap(), 42);
/// });
/// ```
impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.set_waker(cx.waker()) {
            return Poll::Pending;
        }
        // SAFETY: `set_waker` returned false, so the task was observed DONE.
        let result =
            unsafe { this.packet.take() }.expect("ivy: JoinHandle polled after completion");
        // A waker registered by an earlier poll is not needed any more.
        let old = this.core().lock().joiner.take_waiter();
        drop(old);
        Poll::Ready(result)
    }
}

// The handle holds its result behind an `Arc` and never pins it.
impl<T> Unpin for JoinHandle<T> {}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let core = self.core();
        // SAFETY: the task was observed DONE (`is_done` is an Acquire load of the
        // flag set after the result was stored), and only this handle takes it.
        if core.is_done() && !unsafe { self.packet.has_result() } {
            return; // joined: nothing left to drop or report
        }
        let (report, result, _waker) = {
            let mut slot = core.lock();
            // Dropped outside the lock (a future's waker is foreign code).
            let waker = slot.joiner.drop_handle();
            // SAFETY: we hold the join lock. A result stored by now is ours to
            // drop; one not stored yet will be dropped by the task (`task::body`).
            let result = unsafe { self.packet.take_stored(&slot) };
            let report = if core.is_done() {
                slot.panic_message.take()
            } else {
                None
            };
            (report, result, waker)
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
            .field("id", &self.core().id())
            .field("name", &self.core().name())
            .field("finished", &self.is_finished())
            .finish()
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
