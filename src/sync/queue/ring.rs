//! The lock-free ring under a bounded FIFO `Queue`: Dmitry Vyukov's bounded
//! MPMC array (the algorithm of crossbeam-channel's `array` flavour), plus a
//! *mark* that switches its lock-free side off.
//!
//! Why: a bounded queue whose producers sit on one worker and consumers on
//! another moved the queue lock's cache line, and the state under it, across
//! cores twice per item. On the ring a producer writes only `tail` and a
//! consumer only `head`, each on its own cache line, and they meet in the slots
//! (four `u64` items to a line): producers on one worker and consumers on the
//! other exchange far fewer lines per item.
//!
//! The mark. The queue (`core.rs`) keeps everything else under its lock: the
//! wait lists, the items granted to getters, the slots granted to putters, the
//! items put back to the front, the closed flag. While a waiter is queued, an
//! item was put back or the queue is closed, every operation must go through
//! the lock (that is what makes hand-offs FIFO and undoable), so the lock
//! holder sets `MARK` in both `head` and `tail`. Grants not yet collected do
//! not need the lock: they are the ring's *debt*, slots the lock-free puts
//! leave free. `try_push` and `try_pop`, the lock-free side, refuse a
//! marked ring; `push_locked` and `pop_locked`, called only under the queue's
//! lock, ignore the mark. Because the mark lives in the very words the
//! lock-free side compares-and-swaps, no such operation can start after both
//! marks are set: one that read an unmarked counter fails its swap. Ones that
//! won their swap before the mark may still be writing or reading their slot;
//! the locked side sees their counter moved and waits for the slot's stamp, as
//! any ring operation does.
//!
//! Invariants, with `head` and `tail` without their mark:
//! * `tail - head` (in laps and indices) is the number of claimed slots, `<= cap`;
//! * slot `i`'s stamp is `tail_at_claim + 1` once its item is written, and
//!   `head_at_claim + one_lap` once its item has been read (free for the next
//!   lap);
//! * only the holder of the queue's lock sets or clears the mark.

use crate::loom::{fence, AtomicUsize, Ordering, UnsafeCell};
use std::mem::MaybeUninit;

/// A 128-byte block to itself (two lines on CPUs that fetch adjacent pairs), so
/// that a counter one side writes shares no line with what the other side reads:
/// producers' `tail` and consumers' `head` here, the queue's put count in
/// `core.rs`.
#[repr(align(128))]
pub(super) struct Padded<T>(pub(super) T);

struct Slot<T> {
    stamp: AtomicUsize,
    item: UnsafeCell<MaybeUninit<T>>,
}

pub(crate) struct Ring<T> {
    head: Padded<AtomicUsize>,
    tail: Padded<AtomicUsize>,
    /// Slots the queue owes outside the ring: items granted to getters not
    /// yet collected, slots granted to putters not yet filled. The lock-free
    /// put keeps `claimed + debt <= cap`. Written only under the queue's
    /// lock; it grows only while the ring is marked (a grant needs a waiter),
    /// so the lock-free side ever reads it only shrinking: a stale value is a
    /// larger one, which is safe. It shares a line with the constants below,
    /// which every operation reads and nothing writes.
    debt: AtomicUsize,
    slots: Box<[Slot<T>]>,
    cap: usize,
    /// The bit above every index: `MARK` (see the module comment).
    mark: usize,
    /// One lap of the ring in counter units: `2 * mark`.
    one_lap: usize,
}

// SAFETY: items move between threads through the slots (hence `T: Send`); a
// slot's item is touched only by the one thread whose compare-and-swap claimed
// it, between that swap and its stamp store (the stamps' release/acquire pairs
// order the hand-overs).
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; `&Ring` hands out no `&T`.
unsafe impl<T: Send> Sync for Ring<T> {}

/// Spins while another thread finishes a slot it claimed (a few instructions,
/// unless the OS preempted it there: then let it run).
struct Backoff(u32);

impl Backoff {
    fn wait(&mut self) {
        self.0 += 1;
        #[cfg(all(loom, test))]
        ::loom::thread::yield_now();
        #[cfg(not(all(loom, test)))]
        if self.0 < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

impl<T> Ring<T> {
    /// A ring of `cap` slots, unmarked. `cap` must be at least 1 and small
    /// enough that its mark bit fits (`bounded` refuses the rest).
    pub(crate) fn new(cap: usize) -> Ring<T> {
        assert!(cap >= 1, "ivy: a ring of no slots");
        let mark = (cap + 1).next_power_of_two();
        let one_lap = mark.checked_mul(2).expect("ivy: ring capacity too large");
        let slots = (0..cap)
            .map(|i| Slot {
                stamp: AtomicUsize::new(i),
                item: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ring {
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
            debt: AtomicUsize::new(0),
            slots,
            cap,
            mark,
            one_lap,
        }
    }

    /// The largest capacity a ring supports (its mark and lap bits must fit).
    pub(crate) const MAX_CAPACITY: usize = usize::MAX / 8;

    /// The counter after `c` (without mark): the next index, or the next lap.
    fn next(&self, c: usize) -> usize {
        let index = c & (self.mark - 1);
        if index + 1 < self.cap {
            c + 1
        } else {
            (c & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// The lock-free put: `Err(v)` if the ring is marked or full. `on_claim`
    /// runs after the slot is claimed and before the item becomes visible to a
    /// getter (the queue counts the unfinished item there).
    #[inline]
    pub(crate) fn try_push(&self, v: T, on_claim: impl FnOnce()) -> Result<(), T> {
        self.push(v, false, on_claim)
    }

    /// The lock-free get: `None` if the ring is marked or empty.
    #[inline]
    pub(crate) fn try_pop(&self) -> Option<T> {
        self.pop(false)
    }

    /// A put under the queue's lock, marked or not: `Err(v)` only if full.
    pub(crate) fn push_locked(&self, v: T) -> Result<(), T> {
        self.push(v, true, || {})
    }

    /// A get under the queue's lock, marked or not: `None` only if empty.
    pub(crate) fn pop_locked(&self) -> Option<T> {
        self.pop(true)
    }

    /// How many items the ring holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Whether the lock-free side is off (a hint: it may change at once).
    /// `put`: asked by a putter, which reads the putters' counter, so that a
    /// putter waiting for room does not pull the getters' line to its core.
    pub(crate) fn is_marked(&self, put: bool) -> bool {
        let counter = if put { &self.tail } else { &self.head };
        counter.0.load(Ordering::Relaxed) & self.mark != 0
    }

    /// Sets or clears the mark in both counters. Only the holder of the
    /// queue's lock calls this.
    pub(crate) fn set_marked(&self, on: bool) {
        if on {
            self.tail.0.fetch_or(self.mark, Ordering::SeqCst);
            self.head.0.fetch_or(self.mark, Ordering::SeqCst);
        } else {
            self.tail.0.fetch_and(!self.mark, Ordering::SeqCst);
            self.head.0.fetch_and(!self.mark, Ordering::SeqCst);
        }
    }

    fn push(&self, v: T, locked: bool, on_claim: impl FnOnce()) -> Result<(), T> {
        let mut backoff = Backoff(0);
        // Acquire: a put that reads the counter unmarked sees the debt that
        // was published before the mark was cleared.
        let mut tail = self.tail.0.load(Ordering::Acquire);
        loop {
            if tail & self.mark != 0 && !locked {
                return Err(v);
            }
            let marked = tail & self.mark;
            let t = tail & !self.mark;
            if !locked {
                let debt = self.debt.load(Ordering::Acquire);
                if debt > 0 {
                    let head = self.head.0.load(Ordering::Acquire) & !self.mark;
                    if self.claimed(head, t) + debt >= self.cap {
                        return Err(v);
                    }
                }
            }
            let slot = &self.slots[t & (self.mark - 1)];
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == t {
                // The slot is free for this lap: claim it.
                let new = self.next(t) | marked;
                match self.tail.0.compare_exchange_weak(
                    tail,
                    new,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        on_claim();
                        // SAFETY: the swap gave this thread slot `t` for this
                        // lap; no other thread touches its item until the stamp
                        // below says it is written.
                        slot.item.with_mut(|p| unsafe { (*p).write(v) });
                        slot.stamp.store(t + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(_) => {
                        tail = self.tail.0.load(Ordering::Acquire);
                        backoff.wait();
                    }
                }
            } else if stamp.wrapping_add(self.one_lap) == t + 1 {
                // The slot still holds last lap's item: full, unless a getter
                // has claimed it and is reading it.
                fence(Ordering::SeqCst);
                let head = self.head.0.load(Ordering::Relaxed) & !self.mark;
                if head.wrapping_add(self.one_lap) == t {
                    return Err(v);
                }
                backoff.wait();
                tail = self.tail.0.load(Ordering::Acquire);
            } else {
                // Another putter claimed this slot and the counter moved on.
                backoff.wait();
                tail = self.tail.0.load(Ordering::Acquire);
            }
        }
    }

    fn pop(&self, locked: bool) -> Option<T> {
        let mut backoff = Backoff(0);
        let mut head = self.head.0.load(Ordering::Relaxed);
        loop {
            if head & self.mark != 0 && !locked {
                return None;
            }
            let marked = head & self.mark;
            let h = head & !self.mark;
            let slot = &self.slots[h & (self.mark - 1)];
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == h + 1 {
                // The slot holds this lap's item: claim it.
                let new = self.next(h) | marked;
                match self.head.0.compare_exchange_weak(
                    head,
                    new,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the swap gave this thread slot `h` for this
                        // lap, and its stamp (acquired above) says the item is
                        // written; it is read out once, then the slot is freed.
                        let v = slot.item.with_mut(|p| unsafe { (*p).assume_init_read() });
                        slot.stamp
                            .store(h.wrapping_add(self.one_lap), Ordering::Release);
                        return Some(v);
                    }
                    Err(now) => {
                        head = now;
                        backoff.wait();
                    }
                }
            } else if stamp == h {
                // Not written this lap: empty, unless a putter has claimed the
                // slot and is writing it.
                fence(Ordering::SeqCst);
                let tail = self.tail.0.load(Ordering::Relaxed) & !self.mark;
                if tail == h {
                    return None;
                }
                backoff.wait();
                head = self.head.0.load(Ordering::Relaxed);
            } else {
                // Another getter took this slot and the counter moved on.
                backoff.wait();
                head = self.head.0.load(Ordering::Relaxed);
            }
        }
    }

    /// The queue's debt (see the field); under the queue's lock only.
    pub(crate) fn set_debt(&self, debt: usize) {
        if self.debt.load(Ordering::Relaxed) != debt {
            self.debt.store(debt, Ordering::SeqCst);
        }
    }

    /// Slots claimed between `head` and `tail` (both without mark), given
    /// `head <= tail <= head + cap` in ring order.
    fn claimed(&self, head: usize, tail: usize) -> usize {
        let hix = head & (self.mark - 1);
        let tix = tail & (self.mark - 1);
        if hix < tix {
            tix - hix
        } else if hix > tix {
            self.cap - hix + tix
        } else if tail == head {
            0
        } else {
            self.cap
        }
    }

    /// Claimed slots (items written or being written, not yet claimed by a
    /// getter). Exact when no lock-free operation runs, as under the mark.
    pub(crate) fn len(&self) -> usize {
        loop {
            let tail = self.tail.0.load(Ordering::SeqCst) & !self.mark;
            let head = self.head.0.load(Ordering::SeqCst) & !self.mark;
            if self.tail.0.load(Ordering::SeqCst) & !self.mark == tail {
                return self.claimed(head, tail);
            }
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // `&mut self`: no operation is in flight, every claimed slot between
        // head and tail holds a written item.
        while self.pop(true).is_some() {}
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Ring;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn fills_to_capacity_and_drains_in_order_over_many_laps() {
        for cap in [1, 2, 3, 4, 7, 64] {
            let r = Ring::new(cap);
            let mut next_in = 0u64;
            let mut next_out = 0u64;
            for _lap in 0..5 {
                while r.try_push(next_in, || {}).is_ok() {
                    next_in += 1;
                }
                assert_eq!(r.len(), cap);
                assert_eq!(next_in - next_out, cap as u64);
                while let Some(v) = r.try_pop() {
                    assert_eq!(v, next_out);
                    next_out += 1;
                }
                assert_eq!(r.len(), 0);
                assert_eq!(next_in, next_out);
            }
        }
    }

    #[test]
    fn a_marked_ring_refuses_the_lock_free_side_only() {
        let r = Ring::new(4);
        assert!(r.try_push(1, || {}).is_ok());
        r.set_marked(true);
        assert!(r.is_marked(false) && r.is_marked(true));
        assert_eq!(r.try_push(2, || {}), Err(2));
        assert_eq!(r.try_pop(), None);
        assert!(r.push_locked(3).is_ok());
        assert_eq!(r.len(), 2);
        assert_eq!(r.pop_locked(), Some(1));
        r.set_marked(false);
        assert!(!r.is_marked(false) && !r.is_marked(true));
        assert!(r.try_push(4, || {}).is_ok());
        assert_eq!(r.try_pop(), Some(3));
        assert_eq!(r.try_pop(), Some(4));
        assert_eq!(r.try_pop(), None);
    }

    #[test]
    fn lock_free_puts_leave_the_debt_free_and_locked_ones_may_use_it() {
        let r = Ring::new(3);
        r.set_debt(2);
        assert!(r.try_push(1, || {}).is_ok());
        assert_eq!(
            r.try_push(2, || {}),
            Err(2),
            "claimed 1 + debt 2 = capacity"
        );
        assert!(r.push_locked(2).is_ok());
        assert!(r.push_locked(3).is_ok());
        assert_eq!(r.push_locked(4), Err(4), "full");
        r.set_debt(0);
        assert_eq!(r.try_pop(), Some(1));
        assert!(r.try_push(4, || {}).is_ok());
        assert_eq!(r.try_push(5, || {}), Err(5));
    }

    #[test]
    fn dropping_a_ring_drops_its_items() {
        let item = Arc::new(());
        let r = Ring::new(3);
        for _ in 0..5 {
            let _ = r.try_push(item.clone(), || {});
        }
        assert_eq!(Arc::strong_count(&item), 4);
        drop(r);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[test]
    fn threads_pushing_and_popping_lose_and_duplicate_nothing() {
        const PER: u64 = if cfg!(miri) { 200 } else { 50_000 };
        for cap in [1, 2, 16] {
            let r = Arc::new(Ring::new(cap));
            let claimed = Arc::new(AtomicUsize::new(0));
            let producers: Vec<_> = (0..2u64)
                .map(|k| {
                    let (r, claimed) = (r.clone(), claimed.clone());
                    std::thread::spawn(move || {
                        for i in 0..PER {
                            let mut v = k * PER + i;
                            loop {
                                match r.try_push(v, || {
                                    claimed.fetch_add(1, Ordering::Relaxed);
                                }) {
                                    Ok(()) => break,
                                    Err(back) => {
                                        v = back;
                                        std::thread::yield_now();
                                    }
                                }
                            }
                        }
                    })
                })
                .collect();
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let r = r.clone();
                    std::thread::spawn(move || {
                        let mut got = Vec::new();
                        let mut last = [None::<u64>; 2];
                        while (got.len() as u64) < PER {
                            match r.try_pop() {
                                Some(v) => {
                                    // Each producer's items come out in its order.
                                    let k = (v / PER) as usize;
                                    assert!(last[k].map_or(true, |l| l < v));
                                    last[k] = Some(v);
                                    got.push(v);
                                }
                                None => std::thread::yield_now(),
                            }
                        }
                        got
                    })
                })
                .collect();
            for p in producers {
                p.join().unwrap();
            }
            let mut all: Vec<u64> = consumers
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..2 * PER).collect::<Vec<_>>());
            assert_eq!(claimed.load(Ordering::Relaxed), 2 * PER as usize);
            assert_eq!(r.len(), 0);
        }
    }
}
