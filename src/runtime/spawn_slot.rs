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
use std::sync::Arc;
use std::time::Duration;

use crate::loom::{AtomicPtr, AtomicU64, Ordering};
use crate::task::raw::Task;

/// How long a peer leaves a worker's newest spawn alone (Go: 3 µs). Well above
/// the time a spawner takes to reach its next blocking call in a ping-pong
/// (under 1 µs here), well below a sleeping peer's wake-up (~45 µs).
pub(crate) const GRACE: Duration = Duration::from_micros(10);

/// How many times `peek` reads the slot again when a `replace` tore its look.
const PEEK_TRIES: u32 = 4;

/// In cache lines of its own: the owner writes it at every spawn, and peers
/// read it whenever they look for work.
///
/// Generic over what it holds only for its model check
/// (`model_check::loom_spawn_slot`); the runtime holds tasks.
#[repr(align(128))]
pub(crate) struct SpawnSlot<T = Task> {
    /// Null, or a pointer from `Arc::into_raw` that the slot owns.
    task: AtomicPtr<T>,
    /// How many tasks the owner has put here; written by the owner only, before
    /// the pointer (`peek` says why). A peer knows a held task by this number
    /// and its address together: a recycled allocation comes back at the same
    /// address, and a peer's record of an earlier task there must not count as
    /// having waited (regression: in a probe that spawned its ping-pong partner
    /// 300 times, 39 pairs ended split, the peer taking the new partner at once).
    seq: AtomicU64,
}

impl<T> Default for SpawnSlot<T> {
    fn default() -> SpawnSlot<T> {
        SpawnSlot {
            task: AtomicPtr::new(ptr::null_mut()),
            seq: AtomicU64::new(0),
        }
    }
}

/// What a peer saw in a slot: the held task's address and number.
#[derive(Debug)]
pub(crate) struct Seen<T = Task> {
    pub(crate) task: *const T,
    pub(crate) seq: u64,
}

impl<T> Clone for Seen<T> {
    fn clone(&self) -> Seen<T> {
        *self
    }
}

impl<T> Copy for Seen<T> {}

impl<T> PartialEq for Seen<T> {
    fn eq(&self, other: &Seen<T>) -> bool {
        std::ptr::eq(self.task, other.task) && self.seq == other.seq
    }
}

impl<T> Seen<T> {
    pub(crate) const NONE: Seen<T> = Seen {
        task: ptr::null(),
        seq: 0,
    };
}

impl<T> SpawnSlot<T> {
    /// The owning worker: holds `task`, returns the task it displaces.
    pub(crate) fn replace(&self, task: Arc<T>) -> Option<Arc<T>> {
        let new = Arc::into_raw(task) as *mut T;
        // The number first (`peek`). The owner is its only writer: no
        // read-modify-write needed.
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Release);
        let old = self.task.swap(new, Ordering::AcqRel);
        // SAFETY: a non-null pointer in the slot came from `Arc::into_raw` and
        // its reference belonged to the slot; the swap gave it to us alone.
        (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
    }

    /// The owning worker: takes the held task, if any.
    #[inline]
    pub(crate) fn take(&self) -> Option<Arc<T>> {
        // A load first: most pops find it empty, and a swap would write.
        if self.task.load(Ordering::Relaxed).is_null() {
            return None;
        }
        let old = self.task.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: as in `replace`.
        (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
    }

    /// What a peer sees: the held task's address (never dereferenced) and
    /// number. The owner writes the number before the pointer; a peer reads
    /// the number, the pointer, and the number again, and keeps the look only
    /// if both reads of the number agree (a seqlock's read). The pointer of a
    /// kept look with number n was read after the n-th `replace` wrote n and
    /// before the next one did, so it is the task of the n-th `replace`, the
    /// one before it if that is still held (another address: both are alive at
    /// that swap), or null; never a later task. The same pair seen twice is
    /// therefore the same holding, even when a recycled allocation comes back
    /// at the same address under a later number. (With the number written
    /// after the pointer, a look between a re-put's swap and its number saw the
    /// old number with the new task, and a stale record matched it.) A look
    /// torn by `replace`s on every try sees nothing (`Seen::NONE`): the owner is
    /// spawning, and the next look will do.
    pub(crate) fn peek(&self) -> Seen<T> {
        for _ in 0..PEEK_TRIES {
            let seq = self.seq.load(Ordering::Acquire);
            let task = self.task.load(Ordering::Acquire);
            if self.seq.load(Ordering::Acquire) == seq {
                return Seen { task, seq };
            }
        }
        Seen::NONE
    }

    /// A peer: takes the held task if it is still the one at `seen`.
    pub(crate) fn take_if(&self, seen: Seen<T>) -> Option<Arc<T>> {
        if seen.task.is_null() {
            return None;
        }
        self.task
            .compare_exchange(
                seen.task as *mut T,
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

impl<T> Drop for SpawnSlot<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}
