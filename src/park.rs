//! The parking primitive every blocking operation in ivy is built on.
//!
//! `park_until` suspends the *caller*: inside an ivy task it parks the task (its
//! worker goes on running other tasks); on a plain OS thread it parks the thread.
//! `Unparker::unpark` wakes either kind from any thread, inside or outside a runtime.
//! This is what lets ivy's locks and queues be shared between tasks and ordinary
//! threads.
//!
//! The contract is `std::thread::park`'s: an unpark that happens before the park
//! makes the park return at once (a one-token semaphore), and a park may return
//! spuriously. Callers therefore loop: check the condition, park, check again.
//!
//! Inside a task a park is also a cancellation point: it returns
//! `Err(WaitError::Cancelled)` once the task has been cancelled.
//!
//! Layer: park, above the task core and `timer`: it suspends the current task
//! (`task::current`) and arms its deadline on the wheel its worker lent to the
//! thread (`timer::insert`, one thread-local read, as before). It does not import
//! the scheduler.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::cancel_scope as scope;
use crate::error::WaitError;
use crate::task::current;
use crate::task::raw::ScopeState;
use crate::task::raw::{Suspend, Task};
use crate::task::state::CANCELLED;
use crate::task::wait_reason::WaitReason;
use crate::timer;

pub use crate::task::unparker::{current_unparker, Unparker};

/// Parks the caller until unparked, or until `deadline` passes, or (in a task)
/// until it is cancelled, or until the deadline of an enclosing timeout scope
/// passes. May return `Ok` spuriously; `Ok` also when `deadline` is reached (the
/// caller checks its own deadline), `Err` for cancellation or an elapsed scope.
pub(crate) fn park_until(deadline: Option<Instant>) -> Result<(), WaitError> {
    park_for(deadline, WaitReason::Park)
}

/// `park_until`, recording what the caller waits for (shown by `Handle::dump`).
pub(crate) fn park_for(deadline: Option<Instant>, reason: WaitReason) -> Result<(), WaitError> {
    match current::with_running(|task, yielder| park_task(task, yielder, deadline, reason)) {
        Some(r) => r,
        None => scope::thread_state(|state| {
            thread_interrupt(state)?;
            match earliest(deadline, scope::scope_deadline(state)) {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if d > now {
                        std::thread::park_timeout(d - now);
                    }
                }
            }
            thread_interrupt(state)
        }),
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The interruption pending for `task`, the caller. The common case (not
/// cancelled, no deadline scope ever opened in this task) is decided by one
/// load from the task's header, without reaching its frame context
/// (`Task::interrupt`): every blocking call passes here twice.
#[inline(always)]
fn task_interrupt(task: &Task) -> Result<(), WaitError> {
    let interrupt = task.interrupt();
    if interrupt == 0 {
        return Ok(());
    }
    let cancelled = interrupt & CANCELLED != 0;
    let state = &task.frame().scope;
    if !cancelled && !scope::has_deadline(state) {
        return Ok(());
    }
    interrupt_slow(state, Some(task), cancelled)
}

/// The interruption pending for a plain thread whose scope state is `state`:
/// an elapsed deadline scope (threads are never cancelled).
#[inline(always)]
fn thread_interrupt(state: &Cell<ScopeState>) -> Result<(), WaitError> {
    if !scope::has_deadline(state) {
        return Ok(());
    }
    interrupt_slow(state, None, false)
}

/// The rest of `task_interrupt` and `thread_interrupt`, out of line. Nothing
/// is raised while the caller unwinds, so blocking destructors run to
/// completion.
#[cold]
#[inline(never)]
fn interrupt_slow(
    state: &Cell<ScopeState>,
    task: Option<&Task>,
    cancelled: bool,
) -> Result<(), WaitError> {
    // Reads the clock only when a scope deadline exists.
    let deadline_passed = scope::deadline_passed(state);
    if !cancelled && !deadline_passed {
        return Ok(());
    }
    let unwinding = match task {
        Some(t) => current::task_is_unwinding(t),
        None => std::thread::panicking(),
    };
    if unwinding {
        return Ok(());
    }
    if cancelled && !scope::is_shielded(state) {
        return Err(WaitError::Cancelled);
    }
    if deadline_passed {
        scope::mark_elapsed(state);
        return Err(WaitError::Elapsed);
    }
    Ok(())
}

/// Returns `Err` if the caller has a pending interruption: cancellation (tasks
/// only) or an elapsed deadline scope.
pub(crate) fn check_interrupt() -> Result<(), WaitError> {
    match current::with_current_task(|task| task_interrupt(task)) {
        Some(r) => r,
        None => scope::thread_state(thread_interrupt),
    }
}

fn park_task(
    task: &Arc<Task>,
    yielder: current::YielderRef<'_>,
    deadline: Option<Instant>,
    reason: WaitReason,
) -> Result<(), WaitError> {
    task_interrupt(task)?;
    if task.take_notified() {
        return Ok(());
    }
    // The timer lives in this frame: the task's own stack, which stays put
    // while it is parked.
    let scope_deadline = if task.scope_used() {
        scope::scope_deadline(&task.frame().scope)
    } else {
        None
    };
    let timer = earliest(deadline, scope_deadline).map(|d| timer::insert(d, task.clone()));
    task.wait_reason.store(reason as u8, Ordering::Relaxed);
    current::suspend(task, yielder, Suspend::Park);
    task.wait_reason.store(0, Ordering::Relaxed);
    if let Some(key) = timer {
        timer::remove(key);
    }
    task_interrupt(task)
}

/// Suspends the current task and puts it at the back of its worker's queue; on a
/// plain thread, yields the OS thread. A cancellation point.
pub(crate) fn yield_now() -> Result<(), WaitError> {
    let in_task = current::with_running(|task, yielder| {
        task_interrupt(task)?;
        current::suspend(task, yielder, Suspend::Yield);
        task_interrupt(task)
    });
    match in_task {
        Some(r) => r,
        None => {
            std::thread::yield_now();
            check_interrupt()
        }
    }
}

/// Parks the current task (or thread) until unparked. May return spuriously:
/// call it in a loop that re-checks the condition. A cancellation point.
pub fn park() {
    crate::cancel::or_raise(park_until(None));
}

/// Like [`park`], returning after `timeout` at the latest.
pub fn park_timeout(timeout: std::time::Duration) {
    let deadline = Instant::now().checked_add(timeout);
    crate::cancel::or_raise(park_until(deadline));
}
