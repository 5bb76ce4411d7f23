//! The live tasks of a runtime: for shutdown (cancel everything left, then wait
//! until nothing is left) and for introspection (`Handle::tasks`, debug mode).
//!
//! Every task is in the set from spawn to completion, started or not, so a
//! dump or shutdown report tells the whole truth (asyncio lists every pending
//! task). Regression: the set used to hold only *started* tasks, so
//! `Handle::tasks()` right after spawning 100k sleepers listed none of them on
//! one worker (they were all still queued), a freshly spawned leftover was
//! missing from the shutdown report, and a count of parked tasks read 0 or all
//! depending on how far the workers had got.
//!
//! Sharded by the *spawning* thread, because registration happens at spawn:
//! one shard per worker (a task spawned by a task lands in its worker's shard)
//! plus a few for plain threads, picked by a per-thread hash. A shard's lock is
//! taken once at spawn and once at completion. No global lock and no shared
//! counter cache line beyond `live`: spawn-heavy code on different workers
//! never touches the same shard (regression: one shared registry touched at
//! spawn and at completion on different workers cost ~10% of spawn+join).
//! A task that finishes on another worker (it was stolen) is counted out of
//! `live` at once, but its entry is removed in batches: the finishing worker
//! keeps up to `worker::UNLIST_BATCH` such tasks and removes them with one lock
//! of each shard (`unlist_all`), when the batch is full, before it sleeps and
//! when it exits, and only then recycles them. Regression: removing each stolen
//! task from its spawner's shard at once made the two workers of skynet fight
//! over each other's shard locks (`Registry::remove` was 28% of the profile,
//! skynet 1M ~320 -> ~450 ms). A finished task still listed is skipped by
//! `snapshot`.
//!
//! A shard's set is a `ThinSlab` (below): 8 bytes a listed task, not
//! `slab::Slab`'s 16 (an enum of the value and the next vacant index), and each
//! listed task pays it (`idle_memory`). An entry is the `Option<Arc<Task>>`
//! alone (the `Arc`'s niche marks a vacant slot); vacant indexes wait on a
//! separate stack of `u32`s, which holds only slots freed and not yet reused.
//!
//! A task's key (`Task::registry_key`) is its slab index and shard; with its id
//! it lets the debug watchdog look a running task up without ever holding a
//! pointer to it (`name_of`).
//!
//! Layer: scheduler. Uses the task header only.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::task::raw::Task;

const SHARD_BITS: usize = 13;
/// Shards for tasks spawned from threads that are not workers of this runtime.
const EXTERNAL_SHARDS: usize = 8;

/// One shard, alone on its cache lines: two workers locking their own shards
/// must not bounce one line between them (regression: adjacent shard mutexes
/// shared a line, and the lock's `cmpxchg` was half of `Registry::unlist`'s
/// time in skynet).
#[repr(align(128))]
struct Shard(Mutex<ThinSlab<Arc<Task>>>);

impl std::ops::Deref for Shard {
    type Target = Mutex<ThinSlab<Arc<Task>>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// In cache lines of its own: `live` and `spawned` are written at every spawn
/// and end, by every worker, and `Shared`'s read-mostly fields (read at every
/// spawn and start) must not share their lines (regression: a new `Shared` field
/// moved one into them, and skynet on 2 workers took 30% longer).
#[repr(align(128))]
pub(crate) struct Registry {
    /// `workers` shards for the workers, then `EXTERNAL_SHARDS` for other threads.
    shards: Box<[Shard]>,
    workers: usize,
    live: AtomicUsize,
    spawned: AtomicU64,
    drained_lock: Mutex<()>,
    drained: Condvar,
}

impl Registry {
    pub(crate) fn new(workers: usize) -> Registry {
        assert!(workers + EXTERNAL_SHARDS <= 1 << SHARD_BITS);
        Registry {
            shards: (0..workers + EXTERNAL_SHARDS)
                .map(|_| Shard(Mutex::new(ThinSlab::default())))
                .collect(),
            workers,
            live: AtomicUsize::new(0),
            spawned: AtomicU64::new(0),
            drained_lock: Mutex::new(()),
            drained: Condvar::new(),
        }
    }

    /// Adds a newly spawned task and counts it. `worker`: the index of the
    /// spawning worker of this runtime, `None` for any other thread. SeqCst: the
    /// count pairs with the `closing` flag in `Shared::schedule_new` and
    /// `Runtime::shutdown_now` (Dekker's handshake).
    pub(crate) fn spawned(&self, task: &Arc<Task>, worker: Option<usize>) {
        let shard = match worker {
            Some(w) => w,
            None => self.workers + external_shard(),
        };
        self.live.fetch_add(1, Ordering::SeqCst);
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let mut slab = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        let key = slab.insert(task.clone());
        // Under the shard lock: `remove` of the same task (which needs the key)
        // can only come after the task ran, which is after this spawn returned.
        task.registry_key
            .store((key << SHARD_BITS) | shard, Ordering::Release);
    }

    /// Counts a finished task out of `live`. Its entry may stay in the set a
    /// little longer (`unlist_all`): `snapshot` skips finished tasks.
    pub(crate) fn finished(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.drained_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.drained.notify_all();
        }
    }

    /// The shard `task` is listed in, if it is listed.
    pub(crate) fn shard_of(&self, task: &Task) -> Option<usize> {
        listed_at(task).map(|(shard, _)| shard)
    }

    /// Removes `task`'s entry from the set.
    pub(crate) fn unlist(&self, task: &Task) {
        if let Some((shard, index)) = listed_at(task) {
            let removed = {
                let mut slab = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
                slab.try_remove(index)
            };
            // The set's reference is let go after the lock (`unlist_all`).
            drop(removed);
        }
    }

    /// Removes the entries of finished tasks, taking each shard's lock once
    /// (a worker batches the tasks it finished for other shards: module comment).
    ///
    /// The set's references are dropped after the shard's lock is released:
    /// each is an atomic decrement on a task's line, and under the lock they
    /// were half of the time the spawning worker waited for its own shard
    /// (`lock_contended`, 3% of a 2-worker spawn+join, whose spawner is the
    /// bottleneck).
    pub(crate) fn unlist_all(&self, tasks: &mut [Arc<Task>]) {
        const CHUNK: usize = 64;
        tasks.sort_unstable_by_key(|t| self.shard_of(t));
        for group in tasks.chunk_by(|a, b| self.shard_of(a) == self.shard_of(b)) {
            let Some(shard) = self.shard_of(&group[0]) else {
                continue;
            };
            for chunk in group.chunks(CHUNK) {
                let mut removed: [Option<Arc<Task>>; CHUNK] = [const { None }; CHUNK];
                {
                    let mut slab = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
                    let listed = chunk.iter().filter_map(|t| listed_at(t));
                    for (slot, (_, index)) in removed.iter_mut().zip(listed) {
                        *slot = slab.try_remove(index);
                    }
                }
                drop(removed);
            }
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

    /// A snapshot of the live tasks, started or not (finished tasks whose
    /// entries are still waiting for `unlist_all` are skipped).
    pub(crate) fn snapshot(&self) -> Vec<Arc<Task>> {
        let mut all = Vec::with_capacity(self.live());
        for shard in self.shards.iter() {
            let slab = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(
                slab.iter()
                    .filter(|(_, t)| !t.is_done())
                    .map(|(_, t)| t.clone()),
            );
        }
        all
    }

    /// The name of live task `id` registered under `key`: `None` if that task
    /// has finished (the slot is empty or reused by another task), else its
    /// name if it has one. Never touches a freed task: the registry's own
    /// `Arc` keeps the task alive while the shard lock is held.
    pub(crate) fn name_of(&self, key: usize, id: u64) -> Option<Option<String>> {
        let (shard, index) = split_key(key);
        let slab = self
            .shards
            .get(shard)?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let task = slab.get(index)?;
        (task.id() == id).then(|| task.name().map(str::to_owned))
    }

    /// Blocks the calling (non-worker) thread until no task is live.
    pub(crate) fn wait_drained(&self) {
        let mut g = self.drained_lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.live() != 0 {
            g = self.drained.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A slab whose entry is the value alone (`Option<T>`: 8 bytes for an `Arc`);
/// the subset of `slab::Slab` the registry uses. Keys are reused after removal.
struct ThinSlab<T> {
    entries: Vec<Option<T>>,
    /// Indexes of vacant entries, reused last-freed first.
    vacant: Vec<u32>,
}

impl<T> Default for ThinSlab<T> {
    fn default() -> ThinSlab<T> {
        ThinSlab {
            entries: Vec::new(),
            vacant: Vec::new(),
        }
    }
}

impl<T> ThinSlab<T> {
    /// Stores `value`; returns its key (an index, until `try_remove`).
    fn insert(&mut self, value: T) -> usize {
        match self.vacant.pop() {
            Some(index) => {
                debug_assert!(self.entries[index as usize].is_none());
                self.entries[index as usize] = Some(value);
                index as usize
            }
            None => {
                assert!(
                    self.entries.len() < u32::MAX as usize,
                    "ivy: too many live tasks"
                );
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    /// Removes and returns the value at `key`, if one is there.
    fn try_remove(&mut self, key: usize) -> Option<T> {
        let value = self.entries.get_mut(key)?.take()?;
        self.vacant.push(key as u32);
        Some(value)
    }

    fn get(&self, key: usize) -> Option<&T> {
        self.entries.get(key)?.as_ref()
    }

    /// The stored values with their keys.
    fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(key, v)| Some((key, v.as_ref()?)))
    }
}

/// Where `task` is listed: its shard and its index in that shard's slab.
fn listed_at(task: &Task) -> Option<(usize, usize)> {
    let key = task.registry_key.load(Ordering::Acquire);
    (key != usize::MAX).then(|| split_key(key))
}

/// A registry key (`Task::registry_key`) as shard and slab index.
fn split_key(key: usize) -> (usize, usize) {
    (key & ((1 << SHARD_BITS) - 1), key >> SHARD_BITS)
}

/// The external shard of the calling thread: a per-thread pick, so that two
/// plain threads spawning at once usually lock different shards.
fn external_shard() -> usize {
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            // The address of a thread-local differs between live threads.
            let addr = s as *const Cell<usize> as usize;
            s.set((addr >> 6).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58);
        }
        s.get() % EXTERNAL_SHARDS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_task_costs_one_pointer() {
        assert_eq!(
            std::mem::size_of::<Option<Arc<Task>>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn thin_slab_reuses_keys_and_forgets_removed_values() {
        let mut slab = ThinSlab::default();
        let a = slab.insert(Arc::new(1u32));
        let b = slab.insert(Arc::new(2u32));
        assert_ne!(a, b);
        assert_eq!(slab.try_remove(a).as_deref(), Some(&1));
        assert_eq!(slab.try_remove(a), None, "a removed key is vacant");
        assert!(slab.get(a).is_none());
        let c = slab.insert(Arc::new(3u32));
        assert_eq!(c, a, "the vacant entry is reused");
        let mut all: Vec<_> = slab.iter().map(|(k, v)| (k, **v)).collect();
        all.sort();
        assert_eq!(all, [(a, 3), (b, 2)]);
        assert_eq!(slab.get(b).map(|v| **v), Some(2));
        assert_eq!(slab.try_remove(99), None);
        assert_eq!(slab.entries.len(), 2);
    }
}
