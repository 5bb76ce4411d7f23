//! Timers below the scheduler: the timer wheel (`wheel.rs`, a pure data
//! structure) and the current thread's wheel, which its worker lends here.
//!
//! Each worker owns one wheel of the deadlines of its tasks' parks. A started
//! task never leaves its worker, so the wheel needs no lock: only its worker's
//! thread inserts, removes and fires. The worker lends the wheel to its thread's
//! context (`lend`) for as long as it runs, so `park` arms and disarms a task's
//! timer with one thread-local read and without knowing the scheduler.
//!
//! Layer: timer, above the task core (it stores `Arc<Task>`s), below `park`.
//! It uses `context` (it owns the `timers` slot) and the task core only.

pub(crate) mod wheel;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use crate::context;
use crate::task::raw::Task;
pub(crate) use wheel::{TimerKey, TimerWheel};

/// A worker's wheel: the tasks to wake at their park deadlines.
pub(crate) type TaskTimers = RefCell<TimerWheel<Arc<Task>>>;

/// Lends `wheel` to this thread until `unlend`: `insert` and `remove` use it.
///
/// # Safety
/// `wheel` stays at its address, alive, until `unlend` is called on this thread.
pub(crate) unsafe fn lend(wheel: &TaskTimers) {
    context::with(|c| c.set_timers(wheel as *const TaskTimers as *const ()));
}

/// Ends the loan of `lend`.
pub(crate) fn unlend() {
    context::with(|c| c.set_timers(std::ptr::null()));
}

/// Runs `f` with the wheel lent to this thread. Panics off a worker thread:
/// only a task (which runs on a worker) arms timers.
fn with_lent<R>(f: impl FnOnce(&TaskTimers) -> R) -> R {
    let p = context::timers() as *const TaskTimers;
    assert!(!p.is_null(), "ivy: no timer wheel on this thread");
    // SAFETY: the slot is only set by `lend`, whose caller keeps the wheel alive
    // at that address until `unlend` on this thread; we are on this thread.
    f(unsafe { &*p })
}

/// Arms a timer on this thread's wheel: `task` is unparked at `deadline`.
///
/// Never inlined, nor is `remove`: their caller is `park`, whose frame is part of
/// every parked task's stack, with a timer or without. Inlined, their locals
/// grew that frame by 56 bytes, and the deepest park path of the Python binding
/// (`Queue.get`) spilled into a second page (findings/round10.md).
#[inline(never)]
pub(crate) fn insert(deadline: Instant, task: Arc<Task>) -> TimerKey {
    with_lent(|w| w.borrow_mut().insert(deadline, task))
}

/// Disarms a timer of this thread's wheel (a fired one's key is stale: no-op).
#[inline(never)]
pub(crate) fn remove(key: TimerKey) {
    // The removed entry's `Arc<Task>` is dropped after the borrow ends.
    let removed = with_lent(|w| w.borrow_mut().remove(key));
    drop(removed);
}
