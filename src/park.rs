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
//! `Err(Interrupted::Cancelled)` once the task has been cancelled.

use std::sync::Arc;
use std::time::Instant;

use crate::cancel::Interrupted;
use crate::runtime::worker;
use crate::task::raw::{Suspend, Task};

/// A handle that wakes one parked task or thread.
#[derive(Clone)]
pub struct Unparker(Target);

#[derive(Clone)]
enum Target {
    Task(Arc<Task>),
    Thread(std::thread::Thread),
}

impl Unparker {
    /// Wakes the task or thread this unparker belongs to. If it is not parked, its
    /// next park returns immediately.
    pub fn unpark(&self) {
        match &self.0 {
            Target::Task(t) => Task::unpark(t),
            Target::Thread(t) => t.unpark(),
        }
    }

    /// Whether both unparkers wake the same task or thread.
    pub fn same_target(&self, other: &Unparker) -> bool {
        match (&self.0, &other.0) {
            (Target::Task(a), Target::Task(b)) => Arc::ptr_eq(a, b),
            (Target::Thread(a), Target::Thread(b)) => a.id() == b.id(),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Target::Task(t) => write!(f, "Unparker(task {})", t.id),
            Target::Thread(t) => write!(f, "Unparker(thread {:?})", t.id()),
        }
    }
}

/// The unparker of the caller: the current task, or the current thread.
pub fn current_unparker() -> Unparker {
    match worker::current_task() {
        Some(task) => Unparker(Target::Task(task)),
        None => Unparker(Target::Thread(std::thread::current())),
    }
}

/// Parks the caller until unparked, or until `deadline` passes, or (in a task)
/// until it is cancelled. May return `Ok` spuriously.
pub(crate) fn park_until(deadline: Option<Instant>) -> Result<(), Interrupted> {
    match worker::current_task() {
        Some(task) => park_task(&task, deadline),
        None => {
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if d > now {
                        std::thread::park_timeout(d - now);
                    }
                }
            }
            Ok(())
        }
    }
}

/// Returns `Err` if the current task has a pending interruption. Plain threads
/// never do.
pub(crate) fn check_interrupt() -> Result<(), Interrupted> {
    match worker::current_task() {
        Some(task) if task.cancellation_pending() => Err(Interrupted::Cancelled),
        _ => Ok(()),
    }
}

fn park_task(task: &Arc<Task>, deadline: Option<Instant>) -> Result<(), Interrupted> {
    if task.cancellation_pending() {
        return Err(Interrupted::Cancelled);
    }
    if task.take_notified() {
        return Ok(());
    }
    if let Some(d) = deadline {
        let key = worker::with_current(|w| w.insert_timer(d, task.clone()));
        task.ctx.timer.set(Some(key));
    }
    worker::suspend(task, Suspend::Park);
    if let Some(key) = task.ctx.timer.take() {
        worker::with_current(|w| w.remove_timer(key));
    }
    if task.cancellation_pending() {
        return Err(Interrupted::Cancelled);
    }
    Ok(())
}

/// Suspends the current task and puts it at the back of its worker's queue; on a
/// plain thread, yields the OS thread. A cancellation point.
pub(crate) fn yield_now() -> Result<(), Interrupted> {
    match worker::current_task() {
        Some(task) => {
            if task.cancellation_pending() {
                return Err(Interrupted::Cancelled);
            }
            worker::suspend(&task, Suspend::Yield);
            if task.cancellation_pending() {
                return Err(Interrupted::Cancelled);
            }
            Ok(())
        }
        None => {
            std::thread::yield_now();
            Ok(())
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
