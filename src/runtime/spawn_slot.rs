//! The newest task a worker spawned, kept out of its peers' reach for a moment.
//!
//! Why: a task that spawns another and then talks to it (a ping-pong, a
//! producer and its consumer, a request and its handler) wants it started on
//! its own worker. A started task never moves (worker.rs), and a pair split
//! across two workers pays a cross-core wake-up on every exchange:
//! `chan_pingpong` took ~1.8 µs a round trip instead of ~0.22 in the runs where
//! that happened. With the new task in the stealable deque, a peer that
//! happened to be spinning stole it in the microsecond before the spawner
//! parked: in a probe of 300 runs of "spawn, then ping-pong" on 2 workers, 1 to
//! 50 runs ended split, depending on whether the peer spun. Go keeps the newest
//! goroutine in its P's `runnext`, which a thief takes only once it has sat
//! there ~3 µs; this slot is that rule.
//!
//! Rules:
//! - Each spawn on a worker goes here (`Worker::push_spawned`); the task it
//!   displaces goes to the deque. So one task at most is held, and spawn order
//!   is kept: with newest-first spawns the owner pops the slot before the
//!   deque, with oldest-first (`Builder::fifo_spawns`) after it.
//! - A peer takes it only once that worker's deque had nothing to steal, and
//!   only after it has seen the same task in the slot for `GRACE` by its own
//!   clock (`Worker::steal_held`): the owner reads no clock, so a spawn stays
//!   cheap. A task that sits there longer (its spawner computes instead of
//!   blocking) is taken like any unstarted task; a searching peer spins until
//!   the grace of a task it saw has passed.
//! - Ownership moves with one atomic swap or compare-exchange of the pointer
//!   (an `Arc` turned into a raw pointer and back), so whoever gets a task owns
//!   it alone. A peer compares addresses only, with the slot's count of
//!   spawns (`seq`: a recycled allocation returns at the same address), and
//!   never dereferences what it has not taken.
//!
//! Layer: scheduler. Uses the task header only.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::task::raw::Task;

/// How long a peer leaves a worker's newest spawn alone (Go: 3 µs). Well above
/// the time a spawner takes to reach its next blocking call in a ping-pong
/// (under 1 µs here), well below a sleeping peer's wake-up (~45 µs).
pub(crate) const GRACE: Duration = Duration::from_micros(10);

/// In cache lines of its own: the owner writes it at every spawn, and peers
/// read it whenever they look for work.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct SpawnSlot {
    /// Null, or a pointer from `Arc::into_raw` that the slot owns.
    task: AtomicPtr<Task>,
    /// How many tasks the owner has put here; written by the owner only, after
    /// the pointer. A peer knows a held task by this number and its address
    /// together: a recycled allocation comes back at the same address, and a
    /// peer's record of an earlier task there must not count as having waited
    /// (regression: in a probe that spawned its ping-pong partner 300 times,
    /// 39 pairs ended split, the peer taking the new partner at once).
    seq: AtomicU64,
}

/// What a peer saw in a slot: the held task's address and number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Seen {
    pub(crate) task: *const Task,
    pub(crate) seq: u64,
}

impl Seen {
    pub(crate) const NONE: Seen = Seen {
        task: ptr::null(),
        seq: 0,
    };
}

impl SpawnSlot {
    /// The owning worker: holds `task`, returns the task it displaces.
    pub(crate) fn replace(&self, task: Arc<Task>) -> Option<Arc<Task>> {
        let new = Arc::into_raw(task) as *mut Task;
        let old = self.task.swap(new, Ordering::AcqRel);
        // The owner is the only writer: no read-modify-write needed.
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Release);
        // SAFETY: a non-null pointer in the slot came from `Arc::into_raw` and
        // its reference belonged to the slot; the swap gave it to us alone.
        (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
    }

    /// The owning worker: takes the held task, if any.
    #[inline]
    pub(crate) fn take(&self) -> Option<Arc<Task>> {
        // A load first: most pops find it empty, and a swap would write.
        if self.task.load(Ordering::Relaxed).is_null() {
            return None;
        }
        let old = self.task.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: as in `replace`.
        (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
    }

    /// What a peer sees: the held task's address (never dereferenced) and
    /// number. The number is read first: torn between two `replace`s, the pair
    /// names the newer task with the older number, which no later look sees
    /// again, so a torn pair can only delay a take, never hurry one.
    pub(crate) fn peek(&self) -> Seen {
        let seq = self.seq.load(Ordering::Acquire);
        Seen {
            task: self.task.load(Ordering::Relaxed),
            seq,
        }
    }

    /// A peer: takes the held task if it is still the one at `seen`.
    pub(crate) fn take_if(&self, seen: Seen) -> Option<Arc<Task>> {
        if seen.task.is_null() {
            return None;
        }
        self.task
            .compare_exchange(
                seen.task as *mut Task,
                ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()
            // SAFETY: as in `replace`: the exchange gave us the slot's reference.
            .map(|p| unsafe { Arc::from_raw(p) })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.task.load(Ordering::Relaxed).is_null()
    }
}

impl Drop for SpawnSlot {
    fn drop(&mut self) {
        drop(self.take());
    }
}
