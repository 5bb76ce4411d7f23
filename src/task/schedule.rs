//! What a task needs from its scheduler, and nothing more (tokio's
//! `runtime::task::Schedule`, async-task's `schedule` closure): the task core
//! calls up through this trait object, so it never names the scheduler.
//!
//! A task holds its runtime as `Arc<dyn Schedule>` (`Task::scheduler`). The
//! calls are off the switch path: `schedule` on a wake-up of a parked task
//! (the PARKED -> SCHEDULED edge only), `release` once at the task's end,
//! `is_closing` only when a `panic = "abort"` build meets a cancellation.
//!
//! Layer: task core. Implemented by the scheduler (`runtime::shared::Shared`).

use std::sync::Arc;

use crate::task::raw::Task;

pub(crate) trait Schedule: Send + Sync {
    /// `task`, started and just woken (PARKED -> SCHEDULED), must run again:
    /// queue it on its home worker. Called from any thread.
    fn schedule(&self, task: Arc<Task>);

    /// `task` has finished (it is DONE, its result is stored, its joiner not
    /// woken yet): it is no longer live. Called once, on the thread that ends it
    /// (the task's own stack, or the thread that settles a task that never ran),
    /// before the joiner is woken, so that a joiner sees the runtime's live
    /// tasks without it.
    fn release(&self, task: &Task);

    /// Whether the runtime is shutting down (new and remaining tasks are
    /// cancelled).
    fn is_closing(&self) -> bool;

    /// Bytes set aside at the top of each task's stack (`Builder::stack_top_reserve`).
    fn stack_top_reserve(&self) -> usize {
        0
    }
}
