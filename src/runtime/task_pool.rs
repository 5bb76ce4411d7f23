//! Recycled task allocations: a list per worker with a shared overflow, like
//! Go's `gFree` lists of dead goroutines.
//!
//! Why: a `Task` is a few hundred bytes. When one worker spawns and another runs
//! (spawn a million tasks, then join them), every task is allocated on one
//! thread and freed on the other, and glibc's malloc then serialises both
//! workers on the spawner's arena lock: futex sleeps and wake-ups were the top
//! of a spawn+join profile. So a worker that finishes a task and holds the last
//! reference to it keeps the allocation: up to `LOCAL_MAX` in its own list, the
//! excess moved in batches of `BATCH` to the runtime's shared list, from which a
//! spawning worker refills its own with one lock per batch.
//!
//! Invariants: a pooled task is uniquely owned (`Arc::get_mut` succeeds), holds
//! no body, no coroutine and no stack (`Task::recycle`), and belongs to the
//! runtime whose pool holds it: it keeps that runtime's `Arc<Shared>` (as its
//! `Arc<dyn Schedule>`), which a reused task keeps as is (sparing a contended
//! reference count per spawn). That is a cycle `Shared -> pool -> Task ->
//! Shared`, broken when the worker exits (its list drops) and at shutdown
//! (`clear`).
//!
//! Layer: scheduler. The task core knows nothing of the pool: `Shared::new_task`
//! takes an allocation here and hands it to `Task::reuse`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::prefetch;
use crate::runtime::shared::Shared;
use crate::runtime::worker;
use crate::task::raw::Task;

/// A worker keeps at most this many tasks...
const LOCAL_MAX: usize = 128;
/// ...and moves this many at a time to or from the shared list.
const BATCH: usize = 64;
/// The shared list holds at most this many; beyond, finished tasks are freed.
const SHARED_MAX: usize = 64 * 1024;

/// A worker's own list.
#[derive(Default)]
pub(crate) struct LocalPool(RefCell<Vec<Arc<Task>>>);

/// The runtime's shared list.
#[derive(Default)]
/// In cache lines of its own (written by every worker: see `Idle`).
#[repr(align(128))]
pub(crate) struct SharedPool {
    list: Mutex<Vec<Arc<Task>>>,
    /// `list.len()`, readable without the lock.
    len: AtomicUsize,
}

impl SharedPool {
    /// Frees every pooled task (shutdown, once the workers have exited).
    pub(crate) fn clear(&self) {
        let list = std::mem::take(&mut *self.list.lock().unwrap_or_else(|e| e.into_inner()));
        self.len.store(0, Ordering::Relaxed);
        drop(list);
    }
}

/// A pooled task for a spawn on `shared`, if the caller is one of its workers
/// and a task is available.
pub(crate) fn take(shared: &Arc<Shared>) -> Option<Arc<Task>> {
    worker::try_with_current(|w| {
        if !Arc::ptr_eq(&w.shared, shared) {
            return None;
        }
        let mut local = w.task_pool.0.borrow_mut();
        if local.is_empty() && shared.task_pool.len.load(Ordering::Relaxed) != 0 {
            let mut list = shared
                .task_pool
                .list
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let n = list.len().min(BATCH);
            let at = list.len() - n;
            local.extend(list.drain(at..));
            shared.task_pool.len.store(list.len(), Ordering::Relaxed);
        }
        let task = local.pop();
        // Spawns come in bursts, and a pooled task's lines are cold (it was
        // given back a while ago, often after another worker ran it): the
        // next one's fetch overlaps this spawn (`prefetch.rs`).
        if let Some(next) = local.last() {
            prefetch::write_object(Arc::as_ptr(next));
        }
        task
    })
    .flatten()
}

/// Called by the worker `w` when `task` has finished: keeps the allocation if
/// this was the last reference.
pub(crate) fn give(w: &worker::Worker, mut task: Arc<Task>) {
    let Some(t) = Arc::get_mut(&mut task) else {
        return; // someone still holds it (a `Current`, a scope's child list...)
    };
    t.recycle();
    let mut local = w.task_pool.0.borrow_mut();
    local.push(task);
    if local.len() > LOCAL_MAX {
        let pool = &w.shared.task_pool;
        let mut list = pool.list.lock().unwrap_or_else(|e| e.into_inner());
        let at = local.len() - BATCH;
        if list.len() < SHARED_MAX {
            list.extend(local.drain(at..));
            pool.len.store(list.len(), Ordering::Relaxed);
        } else {
            drop(list);
            local.truncate(at);
        }
    }
}
