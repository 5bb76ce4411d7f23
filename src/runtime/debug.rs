//! Introspection and debug mode: asyncio's `all_tasks()`, debug mode and its
//! slow-callback warning.
//!
//! * `Handle::tasks()` snapshots every live task: id, name, scheduling state,
//!   home worker, whether it was cancelled, and what it is blocked on (a
//!   `WaitReason` each blocking primitive records before it parks: one relaxed
//!   byte store, so it is always on). `Handle::dump()` formats it.
//! * `Handle::metrics()`: live, spawned and completed task counts.
//! * Debug mode (`Builder::debug(true)` or `IVY_DEBUG=1`): every resume of a task
//!   is timed, and one that runs longer than the threshold without suspending
//!   (`Builder::slow_task_threshold`, `IVY_DEBUG_SLOW_MS`, default 100 ms) is
//!   reported on stderr — it stalled every other task queued on its worker. At
//!   shutdown, the tasks still alive (about to be cancelled) are listed.
//!   A panic in a task whose handle was dropped is always reported.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::task::raw::{self, Task};
use crate::task::TaskId;

/// What a parked task waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WaitReason {
    /// Not waiting (running or queued).
    None = 0,
    /// `ivy::park` or an unspecified primitive.
    Park,
    /// `sleep` / `sleep_until`.
    Sleep,
    /// `JoinHandle::join`, `join_all`, `wait_any`, a scope's children.
    Join,
    /// A `Mutex` or `RwLock`.
    Lock,
    /// A `Semaphore` permit.
    Semaphore,
    /// An `Event`, `Condition`, `WaitGroup` or `Barrier`.
    Event,
    /// A queue or channel.
    Queue,
    /// Socket or file-descriptor readiness.
    Io,
    /// A job on the blocking pool.
    Blocking,
}

impl WaitReason {
    pub(crate) fn from_u8(v: u8) -> WaitReason {
        use WaitReason::*;
        [
            None, Park, Sleep, Join, Lock, Semaphore, Event, Queue, Io, Blocking,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Park)
    }
}

/// Scheduling state of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// In a run queue.
    Scheduled,
    /// Running on its worker now.
    Running,
    /// Suspended until something wakes it.
    Parked,
    /// Finished.
    Done,
}

/// A snapshot of one live task, from [`crate::Handle::tasks`].
#[derive(Clone, Debug)]
pub struct TaskSnapshot {
    pub id: TaskId,
    pub name: Option<String>,
    pub state: TaskState,
    /// What it waits for when parked.
    pub waiting_on: WaitReason,
    /// The worker it is bound to (`None` before its first run).
    pub worker: Option<usize>,
    pub cancelled: bool,
}

impl TaskSnapshot {
    pub(crate) fn of(task: &Task) -> TaskSnapshot {
        let state = match task.state() {
            raw::SCHEDULED => TaskState::Scheduled,
            raw::RUNNING => TaskState::Running,
            raw::PARKED => TaskState::Parked,
            _ => TaskState::Done,
        };
        let home = task.home();
        TaskSnapshot {
            id: TaskId(task.id),
            name: task.name().map(str::to_owned),
            state,
            waiting_on: if state == TaskState::Parked {
                WaitReason::from_u8(task.wait_reason.load(Ordering::Relaxed))
            } else {
                WaitReason::None
            },
            worker: (home != raw::NO_HOME).then_some(home),
            cancelled: task.is_cancelled(),
        }
    }
}

impl fmt::Display for TaskSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {:>6} {:<24} {:?}",
            self.id,
            self.name.as_deref().unwrap_or("<unnamed>"),
            self.state
        )?;
        if self.waiting_on != WaitReason::None {
            write!(f, " on {:?}", self.waiting_on)?;
        }
        if let Some(w) = self.worker {
            write!(f, " (worker {w})")?;
        }
        if self.cancelled {
            f.write_str(" [cancelled]")?;
        }
        Ok(())
    }
}

/// Counters of a runtime, from [`crate::Handle::metrics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metrics {
    pub workers: usize,
    pub live_tasks: usize,
    pub spawned_tasks: u64,
    pub completed_tasks: u64,
}

/// Debug-mode settings of a runtime.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DebugConfig {
    /// Report resumes longer than this (debug mode on).
    pub(crate) slow_task: Option<Duration>,
}

pub(crate) const DEFAULT_SLOW_TASK: Duration = Duration::from_millis(100);

/// Debug mode: reports a task that ran `took` without suspending.
pub(crate) fn report_slow(task: &Task, took: Duration) {
    eprintln!(
        "ivy debug: task '{}' (id {}) ran {:.1} ms without yielding; tasks queued behind it on its worker waited",
        task.name().unwrap_or("<unnamed>"),
        task.id,
        took.as_secs_f64() * 1e3
    );
}

/// Debug mode: lists the tasks shutdown is about to cancel.
pub(crate) fn report_leftovers(tasks: &[std::sync::Arc<Task>]) {
    if tasks.is_empty() {
        return;
    }
    eprintln!(
        "ivy debug: shutdown cancels {} leftover task(s):",
        tasks.len()
    );
    for t in tasks.iter().take(50) {
        eprintln!("  {}", TaskSnapshot::of(t));
    }
}
