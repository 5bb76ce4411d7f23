//! A worker's private FIFO of started tasks that are runnable again (worker.rs,
//! "Queues"): a growable power-of-two ring the worker reaches through `&self`.
//!
//! Why not `RefCell<VecDeque<_>>`, which it replaced: every switch pops one
//! task and pushes one (a yield goes to the back), and those two operations
//! were ~45 of the ~210 instructions of a switch (callgrind,
//! benches/compare/findings/switch.md): the `RefCell` flag checked, set and
//! reset on each, and `VecDeque`'s wrap-around arithmetic (a compare and a
//! conditional move per index). Here the indices run free (wrapping) and are
//! masked into the buffer, and the one-thread access needs no flag: the queue
//! is `!Sync`, and no method runs foreign code (no `T` is dropped, no callback
//! called) while it holds its `&mut` to the ring, so two borrows never
//! overlap.
//!
//! Layer: scheduler (worker.rs's queue). Generic: knows no task.

use std::cell::UnsafeCell;

/// Capacity of a new queue; it doubles when full and never shrinks (a worker's
/// queue keeps its high-water mark, as the `VecDeque` did).
const INITIAL_CAPACITY: usize = 64;

struct Ring<T> {
    /// `slots.len()` is a power of two; the slots from `head` to `tail` (masked)
    /// are `Some`, all others `None`.
    slots: Box<[Option<T>]>,
    /// `slots.len() - 1`: an index masked with it is in bounds.
    mask: usize,
    /// Free-running indices: `tail - head` is the length.
    head: usize,
    tail: usize,
}

/// The FIFO. `!Sync` (an `UnsafeCell`): only its worker's thread touches it.
pub(crate) struct ReadyQueue<T> {
    ring: UnsafeCell<Ring<T>>,
}

impl<T> ReadyQueue<T> {
    pub(crate) fn new() -> ReadyQueue<T> {
        ReadyQueue {
            ring: UnsafeCell::new(Ring {
                slots: empty_slots(INITIAL_CAPACITY),
                mask: INITIAL_CAPACITY - 1,
                head: 0,
                tail: 0,
            }),
        }
    }

    /// Runs `f` with the ring. `f` must not call back into this queue or run
    /// foreign code, which every method below keeps to.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut Ring<T>) -> R) -> R {
        // SAFETY: the queue is `!Sync`, so only this thread reaches the ring,
        // and no `&mut` to it outlives a call of `with` whose `f` (the methods
        // below) neither re-enters the queue nor runs foreign code (no `T` is
        // dropped inside: values are moved in and out only).
        f(unsafe { &mut *self.ring.get() })
    }

    #[inline(always)]
    pub(crate) fn push_back(&self, value: T) {
        self.with(|r| {
            if r.tail.wrapping_sub(r.head) == r.slots.len() {
                r.grow();
            }
            put(r.slot(r.tail), value);
            r.tail = r.tail.wrapping_add(1);
        })
    }

    /// Puts `value` first: it runs before everything already queued.
    pub(crate) fn push_front(&self, value: T) {
        self.with(|r| {
            if r.tail.wrapping_sub(r.head) == r.slots.len() {
                r.grow();
            }
            r.head = r.head.wrapping_sub(1);
            put(r.slot(r.head), value);
        })
    }

    /// Takes the first value (tests; the worker pops with `pop_front_looking_ahead`).
    #[cfg(test)]
    pub(crate) fn pop_front(&self) -> Option<T> {
        self.pop_front_looking_ahead(|_, _| {})
    }

    /// Takes the first value, and looks at what runs after it: `ahead` is called with the next two
    /// values, if two or more remain, before the popped one is returned (worker.rs prefetches
    /// them). `ahead` must not reach this queue or run foreign code (`with`'s rule): it gets
    /// borrows into the ring.
    #[inline(always)]
    pub(crate) fn pop_front_looking_ahead(&self, ahead: impl FnOnce(&T, &T)) -> Option<T> {
        self.with(|r| {
            if r.head == r.tail {
                return None;
            }
            let value = r.slot(r.head).take();
            r.head = r.head.wrapping_add(1);
            debug_assert!(value.is_some());
            if r.tail.wrapping_sub(r.head) >= 2 {
                let mask = r.mask;
                let (i, j) = (r.head & mask, r.head.wrapping_add(1) & mask);
                if let (Some(next), Some(after)) = (&r.slots[i], &r.slots[j]) {
                    ahead(next, after);
                }
            }
            value
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.with(|r| r.tail.wrapping_sub(r.head))
    }
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> ReadyQueue<T> {
        ReadyQueue::new()
    }
}

/// Stores `value` in an empty slot without a drop check for what was there
/// (nothing: the ring's invariant), so no foreign code can run here.
#[inline(always)]
fn put<T>(slot: &mut Option<T>, value: T) {
    let old = slot.replace(value);
    debug_assert!(old.is_none(), "ready queue: slot in use");
    std::mem::forget(old);
}

fn empty_slots<T>(n: usize) -> Box<[Option<T>]> {
    debug_assert!(n.is_power_of_two());
    (0..n).map(|_| None).collect()
}

impl<T> Ring<T> {
    /// The slot of free-running index `i`.
    #[inline(always)]
    fn slot(&mut self, i: usize) -> &mut Option<T> {
        let at = i & self.mask;
        debug_assert!(at < self.slots.len());
        // SAFETY: `mask` is `slots.len() - 1` with `slots.len()` a power of two
        // (`new`, `grow` keep both), so `i & mask < slots.len()`.
        unsafe { self.slots.get_unchecked_mut(at) }
    }

    /// Doubles the capacity, keeping the order; moves values only.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let len = self.tail.wrapping_sub(self.head);
        let old_mask = self.slots.len() - 1;
        let mut slots = empty_slots(self.slots.len() * 2);
        for (i, slot) in slots.iter_mut().take(len).enumerate() {
            *slot = self.slots[self.head.wrapping_add(i) & old_mask].take();
        }
        // The old slots are all `None` now: dropping them runs no `T` drop.
        self.mask = slots.len() - 1;
        self.slots = slots;
        self.head = 0;
        self.tail = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::rc::Rc;

    /// Against `VecDeque` as the model, through growth and index wrap-around
    /// (the indices start near `usize::MAX`), with every operation mixed.
    #[test]
    fn behaves_as_a_deque_through_growth_and_wrap_around() {
        let q = ReadyQueue::new();
        q.with(|r| {
            r.head = usize::MAX - 100;
            r.tail = usize::MAX - 100;
        });
        let mut model = VecDeque::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 7 {
                0..=2 => {
                    q.push_back(i);
                    model.push_back(i);
                }
                3 => {
                    q.push_front(i);
                    model.push_front(i);
                }
                _ => assert_eq!(q.pop_front(), model.pop_front()),
            }
            assert_eq!(q.len(), model.len());
        }
        while let Some(v) = model.pop_front() {
            assert_eq!(q.pop_front(), Some(v));
        }
        assert_eq!(q.pop_front(), None);
    }

    /// Every value pushed is dropped exactly once: popped, or with the queue.
    #[test]
    fn drops_every_value_exactly_once() {
        let token = Rc::new(());
        {
            let q = ReadyQueue::new();
            for _ in 0..1000 {
                q.push_back(token.clone());
                q.push_front(token.clone());
            }
            for _ in 0..700 {
                drop(q.pop_front().expect("queued"));
            }
            assert_eq!(Rc::strong_count(&token), 1 + 1300);
        }
        assert_eq!(Rc::strong_count(&token), 1);
    }

    /// The look-ahead sees the two values that come next, in order, and only when two remain;
    /// it takes nothing (the deque test above runs every pop through it too).
    #[test]
    fn looking_ahead_sees_the_next_two_values_in_order() {
        let q = ReadyQueue::new();
        q.with(|r| {
            r.head = usize::MAX - 3;
            r.tail = usize::MAX - 3;
        });
        for i in 0..100u32 {
            q.push_back(i);
        }
        for i in 0..100u32 {
            let mut seen = None;
            assert_eq!(
                q.pop_front_looking_ahead(|a, b| seen = Some((*a, *b))),
                Some(i)
            );
            let expected = (i + 2 < 100).then_some((i + 1, i + 2));
            assert_eq!(seen, expected, "after popping {i}");
            assert_eq!(q.len(), 99 - i as usize);
        }
        let mut called = false;
        assert_eq!(q.pop_front_looking_ahead(|_, _| called = true), None);
        assert!(!called);
    }
}
