//! `Handle`: a cheap, cloneable reference to a runtime, for spawning onto it,
//! inspecting it and dumping its tasks from any thread.

use std::sync::Arc;

use super::{debug, worker, Shared};
use crate::task::JoinHandle;

/// A cheap, cloneable reference to a runtime, for spawning onto it from any thread.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    /// The runtime of the current task, if the caller is one.
    pub fn try_current() -> Option<Handle> {
        worker::try_with_current(|w| Handle {
            shared: w.shared.clone(),
        })
    }

    /// The runtime of the current task.
    ///
    /// # Panics
    /// When called outside an ivy task; use [`Handle::try_current`] to check.
    pub fn current() -> Handle {
        Handle::try_current().expect("ivy: Handle::current() called outside an ivy runtime")
    }

    /// Spawns a task onto the runtime.
    ///
    /// On a runtime that is shutting down or gone (this handle outlived its
    /// `Runtime`), the task never runs: its closure is dropped and the handle's
    /// `join` returns `Cancelled` at once. A task refused a stack (no guarded one
    /// left: [`Builder::unguarded_stacks`]) joins with `is_no_stack()`.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_named(None, None, f)
    }

    pub(crate) fn spawn_named<F, T>(
        &self,
        name: Option<Box<str>>,
        stack_size: Option<usize>,
        f: F,
    ) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let stack = stack_size.unwrap_or(self.shared.default_stack_size);
        crate::task::spawn_on(&self.shared, name, stack, f)
    }

    /// The stack size tasks get when they do not ask for one.
    pub fn default_stack_size(&self) -> usize {
        self.shared.default_stack_size
    }

    /// Number of tasks spawned and not yet finished.
    pub fn live_tasks(&self) -> usize {
        self.shared.registry.live()
    }

    /// A snapshot of every live task (asyncio's `all_tasks()`), ordered by id:
    /// tasks still queued for their first run too (`Scheduled`, `started:
    /// false`), so it lists as many tasks as `live_tasks` counts.
    pub fn tasks(&self) -> Vec<debug::TaskSnapshot> {
        let mut v: Vec<_> = self
            .shared
            .registry
            .snapshot()
            .iter()
            .map(|t| debug::TaskSnapshot::of(t))
            .collect();
        v.sort_by_key(|t| t.id);
        v
    }

    /// `tasks()` formatted one per line: what every task is doing.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for t in self.tasks() {
            out.push_str(&t.to_string());
            out.push('\n');
        }
        out
    }

    /// Task counters of this runtime.
    pub fn metrics(&self) -> debug::Metrics {
        let (spawned, completed) = self.shared.registry.totals();
        debug::Metrics {
            workers: self.shared.remotes.len(),
            live_tasks: self.shared.registry.live(),
            spawned_tasks: spawned,
            completed_tasks: completed,
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.shared.remotes.len())
            .finish()
    }
}
