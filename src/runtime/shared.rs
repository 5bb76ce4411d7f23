//! What every worker of one runtime and every `Handle` to it share: the queues
//! other threads push to, the idle bookkeeping, the registry of live tasks, the
//! blocking pool, and the closing/shutdown flags (the handshake is described in
//! `runtime/mod.rs`).
//!
//! `Shared` is what a task knows of its runtime: its `Schedule` (the task
//! core's trait), behind which the task core wakes and releases tasks without
//! naming the scheduler.
//!
//! Layer: scheduler. Uses the task core, `stack` and the scheduler's own
//! modules (worker, idle, registry, task_pool, debug) and `blocking`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_deque::Injector;

use super::idle::Idle;
use super::placement::Homes;
use super::registry::Registry;
use super::worker::{self, Remote};
use super::{debug, task_pool};
use crate::task::body;
use crate::task::raw::{Entry, NotRun, Task};
use crate::task::schedule::Schedule;

/// State shared by all workers of one runtime and every handle to it.
/// What [`Builder::hook_park_guard`](crate::Builder::hook_park_guard) takes:
/// wraps one park, which it must run exactly once (`park()`), on the calling
/// thread.
pub type HookParkGuard = fn(park: &mut dyn FnMut());

pub(crate) struct Shared {
    pub(crate) remotes: Box<[Remote]>,
    pub(crate) injector: Injector<Arc<Task>>,
    pub(crate) idle: Idle,
    /// How many live tasks each worker is home to (placement.rs).
    pub(crate) homes: Homes,
    pub(crate) registry: Registry,
    /// Time origin of the workers' timer wheels.
    pub(crate) origin: Instant,
    pub(crate) default_stack_size: usize,
    /// Threads for blocking work (`ivy::spawn_blocking`, `ivy::fs`).
    pub(crate) blocking: crate::blocking::BlockingPool,
    pub(crate) debug: debug::DebugConfig,
    /// Finished tasks' allocations, for reuse (task_pool.rs).
    pub(crate) task_pool: task_pool::SharedPool,
    /// Tasks may run on stacks without a guard page (`Builder::unguarded_stacks`).
    pub(crate) unguarded_stacks: bool,
    /// Bytes set aside at the top of every task's stack (`Builder::stack_top_reserve`), rounded
    /// (`stack::round_reserve`).
    pub(crate) stack_top_reserve: usize,
    /// Wraps the parks of hooked libc calls (`Builder::hook_park_guard`).
    pub(crate) hook_park_guard: Option<HookParkGuard>,
    /// Set at the start of shutdown: new tasks are cancelled before they run.
    pub(super) closing: AtomicBool,
    /// Set once every task has finished: workers exit.
    pub(super) shutdown: AtomicBool,
}

impl Shared {
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Whether a task asking for `stack_size` bytes can get a stack here, top
    /// reserve included (`stack::check_available`): asked at every spawn.
    pub(crate) fn check_stack_available(&self, stack_size: usize) -> std::io::Result<()> {
        crate::stack::check_available(
            crate::stack::with_top_reserve(stack_size, self.stack_top_reserve),
            self.unguarded_stacks,
        )
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Whether a task just counted live (`Registry::spawned`) must not be queued
    /// (the handshake in the module comment).
    fn refuses_spawns(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Completes a task that will never run, on the calling thread (never a
    /// worker's stack: dropping the closure is user code that may block): its
    /// closure is dropped guarded, its joiner gets `why`.
    pub(crate) fn settle_unrun(&self, task: &Arc<Task>, why: NotRun) {
        task.body().start(task, Some(why));
        body::end(task);
    }

    /// A new task running `body`, in a recycled allocation when the calling
    /// worker's pool has one (`task_pool`).
    pub(crate) fn new_task(self: &Arc<Self>, stack_size: usize, body: Entry) -> Arc<Task> {
        match task_pool::take(self) {
            Some(task) => Task::reuse(task, stack_size, body),
            None => Task::new(stack_size, self.clone(), body),
        }
    }

    /// Wakes a sleeping worker if stealable work appeared and nobody is searching.
    pub(crate) fn notify_idle(&self) {
        if let Some(i) = self.idle.worker_to_notify() {
            self.remotes[i].unparker.unpark();
        }
    }

    /// Queues a freshly spawned (unstarted) task.
    pub(crate) fn schedule_new(self: &Arc<Self>, task: Arc<Task>) {
        let local = worker::try_with_current(|w| {
            if Arc::ptr_eq(&w.shared, self) {
                Some(w.index)
            } else {
                None
            }
        })
        .flatten();
        self.registry.spawned(&task, local);
        let refused = if self.refuses_spawns() {
            Some(NotRun::Closed)
        } else {
            self.check_stack_available(task.stack_size())
                .err()
                .map(NotRun::NoStack)
        };
        if let Some(why) = refused {
            // Nothing may run it: complete it here, cancelled before it started, or
            // refused a stack (no guarded one left: stack/guard.rs).
            return self.settle_unrun(&task, why);
        }
        match local {
            Some(_) => worker::with_current(|w| w.push_spawned(task)),
            None => {
                self.injector.push(task);
                self.notify_idle();
            }
        }
    }
}

impl Schedule for Shared {
    /// Queues a woken, started task on its home worker.
    fn schedule(&self, task: Arc<Task>) {
        let home = task.home();
        let on_home = worker::try_with_current(|w| {
            std::ptr::eq(Arc::as_ptr(&w.shared), self) && w.index == home
        });
        if on_home == Some(true) {
            // Woken by a task (or timer) on its own home thread: no hand-off needed.
            return worker::with_current(|w| {
                let lifo = w.is_running_task();
                w.push_woken(task, lifo)
            });
        }
        let remote = &self.remotes[home];
        remote.inbox.push(task);
        remote.unparker.unpark();
    }

    /// Counts the task out of `live` and removes it from the registry, except
    /// on a worker of this runtime for a task listed in another worker's
    /// shard: that worker removes it later, in a batch (registry.rs), once the
    /// coroutine has returned (`Worker::recycle`).
    fn release(&self, task: &Task) {
        let here = worker::try_with_current(|w| {
            std::ptr::eq(Arc::as_ptr(&w.shared), self).then_some(w.index)
        })
        .flatten();
        match (here, self.registry.shard_of(task)) {
            (Some(i), Some(shard)) if shard != i => {}
            _ => self.registry.unlist(task),
        }
        self.registry.finished();
    }

    fn is_closing(&self) -> bool {
        Shared::is_closing(self)
    }

    fn stack_top_reserve(&self) -> usize {
        self.stack_top_reserve
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// The parts of `Shared` that every worker writes (at each spawn and end,
    /// each idle episode, each cross-worker recycle) sit in cache lines of their
    /// own, so the read-mostly fields read at every spawn and start do not share
    /// a line with them. Regression: adding one read-mostly field moved it into
    /// the registry's counters' line, and skynet on 2 workers took 30% longer
    /// (143 -> 190 ms, interleaved runs); the layout is the compiler's, so only
    /// the alignment pins it.
    #[test]
    fn written_parts_have_cache_lines_of_their_own() {
        use crate::runtime::idle::Idle;
        use crate::runtime::registry::Registry;
        use crate::runtime::task_pool::SharedPool;
        use std::mem::{align_of, size_of};
        assert_eq!(align_of::<Registry>(), 128);
        assert_eq!(align_of::<Idle>(), 128);
        assert_eq!(align_of::<SharedPool>(), 128);
        assert_eq!(size_of::<Registry>() % 128, 0);
    }
}
