//! The set of live tasks of a runtime: for shutdown (cancel everything left, then
//! wait until nothing is left) and for introspection.
//!
//! Sharded by the spawning thread so concurrent spawns on different workers rarely
//! contend; each shard is a `Slab` so removal is O(1) through the key stored in the
//! task. `live` counts tasks from spawn to completion; shutdown waits on `drained`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use slab::Slab;

use crate::task::raw::Task;

const SHARD_BITS: usize = 4;
const SHARDS: usize = 1 << SHARD_BITS;

pub(crate) struct Registry {
    shards: Box<[Mutex<Slab<Arc<Task>>>]>,
    live: AtomicUsize,
    spawned: AtomicU64,
    completed: AtomicU64,
    drained_lock: Mutex<()>,
    drained: Condvar,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(Slab::new())).collect(),
            live: AtomicUsize::new(0),
            spawned: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            drained_lock: Mutex::new(()),
            drained: Condvar::new(),
        }
    }

    /// Adds a task. `hint` picks the shard (the spawning worker's index).
    pub(crate) fn insert(&self, task: &Arc<Task>, hint: usize) {
        self.live.fetch_add(1, Ordering::AcqRel);
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let shard = hint % SHARDS;
        let mut slab = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        let key = slab.insert(task.clone());
        task.registry_key
            .store((key << SHARD_BITS) | shard, Ordering::Release);
    }

    pub(crate) fn remove(&self, task: &Task) {
        let key = task.registry_key.load(Ordering::Acquire);
        if key == usize::MAX {
            return;
        }
        {
            let mut slab = self.shards[key & (SHARDS - 1)]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            slab.try_remove(key >> SHARD_BITS);
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.drained_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.drained.notify_all();
        }
    }

    /// Tasks ever spawned, and ever finished.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.spawned.load(Ordering::Relaxed),
            self.completed.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// A snapshot of the live tasks.
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
