//! The live tasks of a runtime: for shutdown (cancel everything left, then wait
//! until nothing is left) and for introspection.
//!
//! `live` counts tasks from spawn to completion. The set itself holds only
//! *started* tasks, one shard per worker: a task is inserted by its home worker
//! at its first run and removed by the same worker when it finishes (started
//! tasks never migrate), so a shard's lock is uncontended except by a dump or a
//! shutdown (regression: a shared registry touched at spawn and at completion on
//! different workers cost ~10% of spawn+join). Unstarted tasks sit in run queues;
//! shutdown reaches them as they start (`Worker::run_task` cancels a task that
//! starts while the runtime is closing).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use slab::Slab;

use crate::task::raw::Task;

const SHARD_BITS: usize = 12;

pub(crate) struct Registry {
    shards: Box<[Mutex<Slab<Arc<Task>>>]>,
    live: AtomicUsize,
    spawned: AtomicU64,
    drained_lock: Mutex<()>,
    drained: Condvar,
}

impl Registry {
    pub(crate) fn new(workers: usize) -> Registry {
        assert!(workers <= 1 << SHARD_BITS);
        Registry {
            shards: (0..workers).map(|_| Mutex::new(Slab::new())).collect(),
            live: AtomicUsize::new(0),
            spawned: AtomicU64::new(0),
            drained_lock: Mutex::new(()),
            drained: Condvar::new(),
        }
    }

    /// Counts a newly spawned task. SeqCst: it pairs with the `closing` flag in
    /// `Shared::schedule_new` and `Runtime::shutdown_now` (Dekker's handshake).
    pub(crate) fn spawned(&self) {
        self.live.fetch_add(1, Ordering::SeqCst);
        self.spawned.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a task at its first run, to the shard of its home `worker`.
    pub(crate) fn insert(&self, task: &Arc<Task>, worker: usize) {
        let mut slab = self.shards[worker]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = slab.insert(task.clone());
        task.registry_key
            .store((key << SHARD_BITS) | worker, Ordering::Release);
    }

    /// Forgets a finished task (started or not) and counts it out of `live`.
    pub(crate) fn remove(&self, task: &Task) {
        let key = task.registry_key.load(Ordering::Acquire);
        if key != usize::MAX {
            let mut slab = self.shards[key & ((1 << SHARD_BITS) - 1)]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            slab.try_remove(key >> SHARD_BITS);
        }
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.drained_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.drained.notify_all();
        }
    }

    /// Tasks ever spawned, and ever finished.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let live = self.live() as u64;
        let spawned = self.spawned.load(Ordering::Acquire);
        (spawned, spawned.saturating_sub(live))
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// A snapshot of the live, started tasks.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Task>> {
        let mut all = Vec::with_capacity(self.live());
        for shard in self.shards.iter() {
            let slab = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(slab.iter().map(|(_, t)| t.clone()));
        }
        all
    }

    /// Blocks the calling (non-worker) thread until no task is live.
    pub(crate) fn wait_drained(&self) {
        let mut g = self.drained_lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.live() != 0 {
            g = self.drained.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}
