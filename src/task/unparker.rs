//! Waking one task or thread: `Unparker`, public as `ivy::park::Unparker`.
//!
//! An unparker is what a waiter leaves behind for whoever will wake it (a
//! lock's waiter list, a joiner's slot): either a task (its `Task::unpark`,
//! which the task's scheduler queues) or a plain thread (`Thread::unpark`). So
//! the task core's join wake-up and every primitive above share one handle that
//! works inside and outside a runtime.
//!
//! Layer: task core. Uses the task header and `current`.

use std::sync::Arc;

use crate::task::current;
use crate::task::raw::Task;

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
            Target::Task(t) => write!(f, "Unparker(task {})", t.id()),
            Target::Thread(t) => write!(f, "Unparker(thread {:?})", t.id()),
        }
    }
}

/// The unparker of the caller: the current task, or the current thread.
pub fn current_unparker() -> Unparker {
    match current::current_task() {
        Some(task) => Unparker(Target::Task(task)),
        None => Unparker(Target::Thread(std::thread::current())),
    }
}
