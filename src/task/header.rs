//! A task's identity and the join side of its header: its id (`TaskId`,
//! public as `ivy::TaskId`, drawn from one process-wide id space shared with the
//! blocking pool's jobs), and who its end wakes (`Waiter`, `notify_done`).
//!
//! Layer: task core. Uses the task header (`raw`) and `unparker`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::task::raw::{JoinCore, Task};
use crate::task::unparker::{self, Unparker};

/// A task's unique id (unique across runtimes for the life of the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Ids are handed to each thread in blocks, so that spawning on several workers
/// does not bounce one counter's cache line between them.
const ID_BLOCK: u64 = 1024;

/// A fresh id from the task id space (also used for blocking-pool jobs).
pub(crate) fn next_task_id() -> u64 {
    thread_local! {
        /// The next id of this thread's block, and the block's end.
        static BLOCK: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    BLOCK
        .try_with(|b| {
            let (mut next, mut end) = b.get();
            if next == end {
                next = NEXT_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
                end = next + ID_BLOCK;
            }
            b.set((next + 1, end));
            next
        })
        .unwrap_or_else(|_| NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// The task is DONE (`body::end`, on the task's own stack, or the thread that
/// settled a task that never ran): wake its joiner, or report a panic nobody will see.
pub(crate) fn notify_done(task: &Arc<Task>) {
    let core = task.body().core();
    let (waiter, report, me) = {
        let mut slot = core.lock();
        core.set_done(&slot);
        let report = if slot.joiner.handle_dropped() {
            slot.panic_message.take()
        } else {
            None
        };
        (slot.joiner.take_waiter(), report, slot.task.take())
    };
    // The caller holds its own reference: this does not free the task.
    drop(me);
    match waiter {
        Some(Waiter::Unpark(u)) => u.unpark(),
        Some(Waiter::Group(signal, index)) => signal.complete(index),
        // A `JoinHandle` polled as a future: its waker may be any executor's.
        Some(Waiter::Waker(w)) => w.wake(),
        None => {}
    }
    if let Some(msg) = report {
        report_unjoined_panic(core, &msg);
    }
}

pub(crate) fn report_unjoined_panic(task: &JoinCore, msg: &str) {
    match task.name() {
        Some(name) => eprintln!(
            "ivy: task '{name}' (id {}) panicked and nobody joined it: {msg}",
            task.id()
        ),
        None => eprintln!(
            "ivy: task <unnamed> (id {}) panicked and nobody joined it: {msg}",
            task.id()
        ),
    }
}

/// Who a finishing task wakes.
pub(crate) enum Waiter {
    /// The one task or thread waiting in `join` / `wait_*`.
    Unpark(Unparker),
    /// A set of handles waited on together (`wait_any`, `as_completed`): the task
    /// reports its index, so the waiter finds it without scanning the set.
    Group(Arc<CompletionSignal>, usize),
    /// The waker of the last poll of a `JoinHandle` used as a `Future`
    /// (`task::join`), from any executor.
    Waker(std::task::Waker),
}

/// Completion order of a set of tasks, and who to wake on each completion.
#[derive(Default)]
pub(crate) struct CompletionSignal {
    inner: Mutex<SignalState>,
}

#[derive(Default)]
struct SignalState {
    completed: std::collections::VecDeque<usize>,
    waiter: Option<Unparker>,
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
        s.waiter = Some(unparker::current_unparker());
        s.completed.pop_front()
    }
}
