//! The machinery shared by `Queue`, `PriorityQueue` and `LifoQueue`.
//!
//! One `std::sync::Mutex` protects the buffer, the counters and three wait lists
//! (getters, putters, joiners). Items and slots are handed off directly:
//!
//! * A put that finds a getter waiting grants the item to it (the buffer is then
//!   necessarily empty, so that is also the item the buffer would have served).
//!   Until the getter wakes up, the item is `in_flight` and still counts against
//!   the capacity, so a getter interrupted before it collects the item can put it
//!   back (to the next getter, or to the front of the buffer) without the queue
//!   ever holding more than `capacity` items.
//! * A get that frees a slot grants it to the first waiting putter (`reserved`);
//!   the putter then delivers its value itself. A putter interrupted after the
//!   grant passes the slot on.
//! * So `occupied = buffer + in_flight + reserved <= capacity` at all times, and a
//!   put may proceed at once exactly when `occupied < capacity`.
//!
//! `unfinished` counts items put and not yet marked `task_done` (asyncio's
//! `_unfinished_tasks`); reaching zero grants every joiner.
//!
//! `close()` grants every waiting putter a refusal (they get their value back)
//! and every waiting getter `Closed` (getters only wait on an empty buffer, and no
//! item can arrive after a close). Items already buffered stay to be drained; a
//! putter that was granted a slot before the close and wakes after it is refused
//! too: after `close` returns, no put succeeds.
//!
//! The `SelectCore` trait lets a `Select` register one node per arm on these wait
//! lists (see `waiters.rs` for the claim protocol).
//!
//! A small bounded FIFO queue keeps its items in a lock-free ring (`ring.rs`)
//! instead of a `VecDeque`. While nobody waits, `put` and `get` (and their
//! `try_` forms) use the ring alone and never take the lock, so producers on
//! one worker and consumers on another share no lock line. Every section under
//! the lock that may queue a waiter, grant, give an item back or close first
//! *marks* the ring (`Buffer::enter_locked`), which turns the lock-free side
//! off, and clears the mark at its end (`State::leave`) only when no waiter is
//! queued and the queue is open, so hand-offs stay FIFO and undoable exactly as
//! above. Items and slots granted but not yet collected are the ring's *debt*:
//! the lock-free puts leave that many slots free, so `occupied <= capacity`
//! holds on both sides. A get on an empty ring, or a put on a full one, in a
//! task, yields to the worker's other tasks a few times before it queues
//! (`SPINS`); the lock-free side of a busy queue would otherwise be switched
//! off by the first consumer to catch up with its producers.

use crate::runtime::debug::WaitReason;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::time::Instant;

use super::ring::{Padded, Ring};
use super::{GetError, PutError, TaskDoneError};
use crate::park;
use crate::sync::waiters::{wait_solo, SelectShared, WaitList, Wakeups, Woken};
use crate::sync::{lock_state, WaitError};
use crate::task::current;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The item store of a queue flavour.
pub(crate) trait Buffer<T>: Send {
    fn push(&mut self, v: T);
    fn pop(&mut self) -> Option<T>;
    /// Puts back an item `pop` returned (for an interrupted getter), so that it is
    /// the next one `pop` returns.
    fn unpop(&mut self, v: T);
    fn len(&self) -> usize;
    /// The lock-free ring under this buffer, if it has one (`ring.rs`).
    fn ring(&self) -> Option<Arc<Ring<T>>> {
        None
    }
    /// Called first in every locked section that may change the buffer or
    /// the wait lists: turns the ring's lock-free side off.
    fn enter_locked(&mut self) {}
    /// Called last in such a section. `plain`: no waiter and not closed, so
    /// the lock-free side may run again; `debt`: the slots owed to granted
    /// getters and putters, which it must leave free.
    fn leave_locked(&mut self, _plain: bool, _debt: usize) {}
}

/// First in, first out: a lock-free ring for a small bounded queue, a
/// `VecDeque` otherwise.
pub(crate) enum Fifo<T> {
    Deque(VecDeque<T>),
    Ring {
        ring: Arc<Ring<T>>,
        /// Items given back by interrupted getters: they come before the
        /// ring's (a ring cannot take an item at its front).
        front: VecDeque<T>,
        /// Whether this section's holder has set the ring's mark.
        marked: bool,
    },
}

/// The largest ring, in bytes of slots: a bounded queue allocates its ring
/// whole at creation, so a huge capacity (a "practically unbounded" queue)
/// keeps the growable `VecDeque` instead.
const RING_MAX_BYTES: usize = 256 * 1024;

impl<T: Send> Buffer<T> for Fifo<T> {
    fn push(&mut self, v: T) {
        match self {
            Fifo::Deque(d) => d.push_back(v),
            Fifo::Ring { ring, .. } => {
                if ring.push_locked(v).is_err() {
                    // `occupied < cap` was checked under the lock, with the
                    // lock-free side off: the ring has a free slot.
                    unreachable!("ivy: a queue ring full below its capacity");
                }
            }
        }
    }
    fn pop(&mut self) -> Option<T> {
        match self {
            Fifo::Deque(d) => d.pop_front(),
            Fifo::Ring { ring, front, .. } => front.pop_front().or_else(|| ring.pop_locked()),
        }
    }
    fn unpop(&mut self, v: T) {
        match self {
            Fifo::Deque(d) => d.push_front(v),
            Fifo::Ring { front, .. } => front.push_front(v),
        }
    }
    fn len(&self) -> usize {
        match self {
            Fifo::Deque(d) => d.len(),
            Fifo::Ring { ring, front, .. } => front.len() + ring.len(),
        }
    }
    fn ring(&self) -> Option<Arc<Ring<T>>> {
        match self {
            Fifo::Deque(_) => None,
            Fifo::Ring { ring, .. } => Some(ring.clone()),
        }
    }
    fn enter_locked(&mut self) {
        if let Fifo::Ring { ring, marked, .. } = self {
            if !*marked {
                ring.set_marked(true);
                *marked = true;
            }
        }
    }
    fn leave_locked(&mut self, plain: bool, debt: usize) {
        if let Fifo::Ring {
            ring,
            front,
            marked,
        } = self
        {
            // Before the mark goes: a put that sees the ring unmarked sees
            // this debt.
            ring.set_debt(debt);
            if *marked && plain && front.is_empty() {
                ring.set_marked(false);
                *marked = false;
            }
        }
    }
}

impl<T> Fifo<T> {
    /// The buffer of a queue of capacity `cap` (`usize::MAX`: unbounded).
    pub(crate) fn new(cap: usize) -> Self {
        let slot = std::mem::size_of::<T>().max(1) + std::mem::size_of::<usize>();
        if cap <= Ring::<T>::MAX_CAPACITY && cap.saturating_mul(slot) <= RING_MAX_BYTES {
            Fifo::Ring {
                ring: Arc::new(Ring::new(cap)),
                front: VecDeque::new(),
                marked: false,
            }
        } else {
            Fifo::Deque(VecDeque::new())
        }
    }
}

/// Last in, first out.
pub(crate) struct Lifo<T>(Vec<T>);

impl<T: Send> Buffer<T> for Lifo<T> {
    fn push(&mut self, v: T) {
        self.0.push(v)
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn unpop(&mut self, v: T) {
        self.0.push(v)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Lifo<T> {
    pub(crate) fn new(_cap: usize) -> Self {
        Lifo(Vec::new())
    }
}

/// Smallest first (a min-heap, like `heapq`).
pub(crate) struct Heap<T>(BinaryHeap<Reverse<T>>);

impl<T: Ord + Send> Buffer<T> for Heap<T> {
    fn push(&mut self, v: T) {
        self.0.push(Reverse(v))
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop().map(|r| r.0)
    }
    fn unpop(&mut self, v: T) {
        self.0.push(Reverse(v))
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> Heap<T> {
    pub(crate) fn new(_cap: usize) -> Self {
        Heap(BinaryHeap::new())
    }
}

struct State<T, B> {
    buf: B,
    cap: usize,
    /// Items granted to getters that have not collected them yet.
    in_flight: usize,
    /// Slots granted to putters that have not filled them yet.
    reserved: usize,
    closed: bool,
    /// Grant: `Some(item)`, or `None` for "closed".
    getters: WaitList<Option<T>>,
    /// Grant: `true` for a slot, `false` for "closed".
    putters: WaitList<bool>,
    joiners: WaitList<()>,
}

impl<T, B: Buffer<T>> State<T, B> {
    fn occupied(&self) -> usize {
        self.buf.len() + self.in_flight + self.reserved
    }

    /// Ends a locked section that began with `buf.enter_locked()`: with no
    /// waiter queued and the queue open, the ring's lock-free side may run
    /// again, leaving free the slots of the grants not yet collected (its
    /// debt).
    fn leave(&mut self) {
        let plain = self.getters.is_empty() && self.putters.is_empty() && !self.closed;
        self.buf.leave_locked(plain, self.in_flight + self.reserved);
    }

    /// Adds an item (capacity already checked): to the first live getter, else to
    /// the buffer. `unfinished` is the queue's count (`Core::unfinished`).
    fn deliver(&mut self, v: T, unfinished: &AtomicUsize, wakes: &mut Wakeups) {
        unfinished.fetch_add(1, Ordering::Relaxed);
        if self.getters.is_empty() {
            // The common case of a busy queue, checked inline: `grant_front` is
            // an out-of-line call that would find nobody.
            self.buf.push(v);
            return;
        }
        match self.getters.grant_front(Some(v)) {
            Ok(u) => {
                self.in_flight += 1;
                wakes.push(u);
            }
            Err(v) => self.buf.push(v.expect("an item was offered")),
        }
    }

    /// Grants free slots to waiting putters.
    fn free_slots(&mut self, wakes: &mut Wakeups) {
        // Every get passes here; with no putter waiting (the common case) it is
        // this one inline check.
        while !self.putters.is_empty() && self.occupied() < self.cap {
            match self.putters.grant_front(true) {
                Ok(u) => {
                    self.reserved += 1;
                    wakes.push(u);
                }
                Err(_) => break,
            }
        }
    }

    fn take_buffered(&mut self, wakes: &mut Wakeups) -> Option<T> {
        let v = self.buf.pop()?;
        self.free_slots(wakes);
        Some(v)
    }

    /// Finishes a getter whose node is gone: `grant` is what it was handed (None:
    /// nothing), `err` the interruption or deadline that ended its wait, if any.
    fn settle_get(
        &mut self,
        grant: Option<Option<T>>,
        err: Option<WaitError>,
        wakes: &mut Wakeups,
    ) -> Result<T, WaitError> {
        match (grant, err) {
            (Some(Some(v)), None) => {
                self.in_flight -= 1;
                self.free_slots(wakes);
                Ok(v)
            }
            (Some(None), None) => Err(WaitError::Closed),
            (Some(Some(v)), Some(e)) => {
                // Interrupted after the hand-off: the item goes to the next getter
                // or back to the front. `in_flight` and the buffer trade one item,
                // so the occupancy does not change.
                self.in_flight -= 1;
                match self.getters.grant_front(Some(v)) {
                    Ok(u) => {
                        self.in_flight += 1;
                        wakes.push(u);
                    }
                    Err(v) => self.buf.unpop(v.expect("an item was offered")),
                }
                Err(e)
            }
            (Some(None), Some(e)) | (None, Some(e)) => Err(e),
            (None, None) => unreachable!("ivy: a getter without grant or error"),
        }
    }

    /// Finishes a putter whose node is gone; see `settle_get`.
    fn settle_put(
        &mut self,
        grant: Option<bool>,
        v: T,
        err: Option<WaitError>,
        unfinished: &AtomicUsize,
        wakes: &mut Wakeups,
    ) -> Result<(), (WaitError, T)> {
        match (grant, err) {
            (Some(true), None) => {
                self.reserved -= 1;
                if self.closed {
                    self.free_slots(wakes);
                    Err((WaitError::Closed, v))
                } else {
                    self.deliver(v, unfinished, wakes);
                    Ok(())
                }
            }
            (Some(false), None) => Err((WaitError::Closed, v)),
            (Some(true), Some(e)) => {
                self.reserved -= 1;
                self.free_slots(wakes);
                Err((e, v))
            }
            (None, Some(e)) => {
                // A dead select arm ahead of us may have held a slot back.
                self.free_slots(wakes);
                Err((e, v))
            }
            (Some(false), Some(e)) => Err((e, v)),
            (None, None) => unreachable!("ivy: a putter without grant or error"),
        }
    }
}

/// How many times a put on a full ring, or a get on an empty one, lets its
/// worker's other tasks run and looks again before it queues as a waiter.
///
/// A waiter marks the ring, and every operation then takes the lock until
/// nobody waits. Consumers that keep up with their producers find the ring
/// empty often; parking at once would keep the queue marked (some consumer is
/// nearly always waiting), so the ring would never be used. A producer on
/// another worker refills the ring within a few hundred nanoseconds; 32 yields
/// of a task alone on its worker are a few microseconds. Two tasks of one
/// worker passing items back and forth meet in those yields, with no park and
/// no mark. A plain thread does not spin (its yield is a system call).
const SPINS: u32 = 32;

/// How many of its `SPINS` yields a put on a full ring makes between two
/// attempts: one for a ring of up to 64 slots, one more per 64 slots above,
/// at most 16 (a 1,024-slot ring's).
///
/// Why not retry after every yield. On a full ring the slot a put claims is
/// the one the consumers have just freed, in the cache line they are still
/// reading, and a failed attempt reads that line and the consumers' `head`.
/// With producers on one worker and consumers on another (`mpmc_bounded`, 4
/// and 4 tasks, 1,024 slots), producers retrying after every yield kept
/// pulling the consumers' lines to their core, and the slots they freed
/// were refilled while the consumers still read their line: 28-33 ns per
/// item (medians of interleaved runs), 200k-450k failed puts a run. Waiting 16
/// yields lets the consumers get lines ahead first: 20-22 ns, against Go's
/// 29-30 (benches/compare/NOTES.md, round 18). Doubling waits (1, 2, 4, ...)
/// kept the early refills and gained nothing. The price is on one worker,
/// where producers wait out yields that their consumers did not need: 10.6
/// -> 11.7 ns per item. A small ring keeps one yield: its consumer frees the
/// only slots there are, and a longer wait would add switches to every item.
/// A deadline is looked at between attempts, so a put may see it a few yields
/// (microseconds) late before it queues, where it is then honoured exactly.
fn put_yields(capacity: usize) -> u32 {
    (capacity / 64).clamp(1, 16) as u32
}

/// Whether a put or get that found the ring full or empty after `spins`
/// yields stops yielding and takes the lock: after `SPINS` yields, once a
/// waiter has marked the ring (read on the caller's side's counter: `put`),
/// at once outside a task (a thread's yield is a system call; asked only
/// after a failed attempt, as it reads a thread-local), or when its deadline
/// has passed.
fn stop_spinning<T>(r: &Ring<T>, put: bool, spins: u32, deadline: Option<Instant>) -> bool {
    spins >= SPINS
        || r.is_marked(put)
        || (spins == 0 && !current::in_task())
        || deadline.is_some_and(|d| Instant::now() >= d)
}

/// The queue machinery, parameterised by its buffer.
pub(crate) struct Core<T, B> {
    /// The buffer's lock-free ring, if it has one: the fast path of put and
    /// get while nobody waits (`ring.rs`).
    ring: Option<Arc<Ring<T>>>,
    /// Items put and not yet marked done (asyncio's `_unfinished_tasks`);
    /// outside the lock, as the ring's puts count here. Reaching zero in
    /// `task_done` grants the joiners under the lock; `join` reads it under the
    /// lock, so no zero is missed.
    ///
    /// On a line of its own: every put writes it, and beside `ring`, which
    /// every get reads, it cost a getter on another worker a miss per item
    /// (`mpmc_bounded` 4 producers / 4 consumers on 2 workers: 70 -> 30 ns per
    /// item, benches/compare/NOTES.md round 14).
    unfinished: Padded<AtomicUsize>,
    state: StdMutex<State<T, B>>,
}

impl<T, B: Buffer<T>> Core<T, B> {
    /// `cap == usize::MAX` means unbounded.
    pub(crate) fn new(cap: usize, buf: B) -> Self {
        Core {
            ring: buf.ring(),
            unfinished: Padded(AtomicUsize::new(0)),
            state: StdMutex::new(State {
                buf,
                cap,
                in_flight: 0,
                reserved: 0,
                closed: false,
                getters: WaitList::new(),
                putters: WaitList::new(),
                joiners: WaitList::new(),
            }),
        }
    }

    fn lock(&self) -> StdGuard<'_, State<T, B>> {
        lock_state(&self.state)
    }

    /// The lock, for a section that may change the buffer or the wait lists:
    /// the ring's lock-free side is off until `State::leave`.
    fn lock_for_change(&self) -> StdGuard<'_, State<T, B>> {
        let mut s = self.lock();
        s.buf.enter_locked();
        s
    }

    /// The lock-free put, when the queue has a ring and nobody waits.
    #[inline]
    fn put_fast(&self, v: T) -> Result<(), T> {
        match &self.ring {
            Some(r) => r.try_push(v, || {
                self.unfinished.0.fetch_add(1, Ordering::Relaxed);
            }),
            None => Err(v),
        }
    }

    /// The lock-free get, when the queue has a ring and nobody waits.
    #[inline]
    fn get_fast(&self) -> Option<T> {
        self.ring.as_ref().and_then(|r| r.try_pop())
    }

    /// `put_fast` for a put that may wait: on a full, unmarked ring it lets
    /// the worker's other tasks run and tries again, up to `SPINS` times,
    /// before it queues as a waiter (which marks the ring: see `SPINS`).
    fn put_fast_spinning(
        &self,
        mut v: T,
        deadline: Option<Instant>,
    ) -> Result<Result<(), T>, (WaitError, T)> {
        let Some(r) = &self.ring else {
            return Ok(Err(v));
        };
        let mut spins = 0;
        loop {
            v = match self.put_fast(v) {
                Ok(()) => return Ok(Ok(())),
                Err(v) => v,
            };
            if stop_spinning(r, true, spins, deadline) {
                return Ok(Err(v));
            }
            for _ in 0..put_yields(r.capacity()) {
                spins += 1;
                if let Err(e) = park::yield_now() {
                    return Err((e, v));
                }
            }
        }
    }

    /// `get_fast` for a get that may wait; see `put_fast_spinning`.
    fn get_fast_spinning(&self, deadline: Option<Instant>) -> Result<Option<T>, WaitError> {
        let Some(r) = &self.ring else { return Ok(None) };
        let mut spins = 0;
        loop {
            if let Some(v) = self.get_fast() {
                return Ok(Some(v));
            }
            if stop_spinning(r, false, spins, deadline) {
                return Ok(None);
            }
            spins += 1;
            park::yield_now()?;
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.lock().cap
    }

    /// Items put and not yet taken by a getter.
    pub(crate) fn len(&self) -> usize {
        let s = self.lock();
        s.buf.len() + s.in_flight
    }

    pub(crate) fn is_full(&self) -> bool {
        let s = self.lock();
        s.occupied() >= s.cap
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn unfinished(&self) -> usize {
        self.unfinished.0.load(Ordering::Acquire)
    }

    pub(crate) fn try_put(&self, v: T) -> Result<(), PutError<T>> {
        let v = match self.put_fast(v) {
            Ok(()) => return Ok(()),
            Err(v) => v,
        };
        let mut wakes = Wakeups::new();
        let mut s = self.lock_for_change();
        let r = if s.closed {
            Err(PutError::Closed(v))
        } else if s.occupied() >= s.cap {
            Err(PutError::Full(v))
        } else {
            s.deliver(v, &self.unfinished.0, &mut wakes);
            Ok(())
        };
        s.leave();
        drop(s);
        wakes.wake();
        r
    }

    /// Internal layer: puts `v`, parking while the queue is full, until
    /// `deadline`. On failure the value comes back with the reason: Closed,
    /// TimedOut, Cancelled or Elapsed.
    pub(crate) fn put_deadline(
        &self,
        v: T,
        deadline: Option<Instant>,
    ) -> Result<(), (WaitError, T)> {
        let v = match self.put_fast_spinning(v, deadline)? {
            Ok(()) => return Ok(()),
            Err(v) => v,
        };
        let mut wakes = Wakeups::new();
        let mut s = self.lock_for_change();
        if s.closed {
            s.leave();
            return Err((WaitError::Closed, v));
        }
        if s.occupied() < s.cap {
            s.deliver(v, &self.unfinished.0, &mut wakes);
            s.leave();
            drop(s);
            wakes.wake();
            return Ok(());
        }
        let key = s.putters.push(park::current_unparker(), 0);
        let (held, woken) = wait_solo(
            &self.state,
            s,
            |s| &mut s.putters,
            key,
            deadline,
            WaitReason::Queue,
        );
        let mut s = held.lock();
        s.buf.enter_locked();
        let r = match woken {
            Woken::Granted(g) => s.settle_put(Some(g), v, None, &self.unfinished.0, &mut wakes),
            Woken::Abandoned(e) => s.settle_put(None, v, Some(e), &self.unfinished.0, &mut wakes),
            Woken::Interrupted(g, e) => {
                s.settle_put(Some(g), v, Some(e), &self.unfinished.0, &mut wakes)
            }
        };
        s.leave();
        drop(s);
        wakes.wake();
        r
    }

    pub(crate) fn try_get(&self) -> Result<T, GetError> {
        if let Some(v) = self.get_fast() {
            return Ok(v);
        }
        let mut wakes = Wakeups::new();
        let mut s = self.lock_for_change();
        let r = match s.take_buffered(&mut wakes) {
            Some(v) => Ok(v),
            None if s.closed => Err(GetError::Closed),
            None => Err(GetError::Empty),
        };
        s.leave();
        drop(s);
        wakes.wake();
        r
    }

    /// Internal layer: takes the next item, parking while the queue is empty,
    /// until `deadline`. Errors: Closed (closed and drained), TimedOut,
    /// Cancelled, Elapsed.
    pub(crate) fn get_deadline(&self, deadline: Option<Instant>) -> Result<T, WaitError> {
        if let Some(v) = self.get_fast_spinning(deadline)? {
            return Ok(v);
        }
        let mut wakes = Wakeups::new();
        let mut s = self.lock_for_change();
        if let Some(v) = s.take_buffered(&mut wakes) {
            s.leave();
            drop(s);
            wakes.wake();
            return Ok(v);
        }
        if s.closed {
            s.leave();
            return Err(WaitError::Closed);
        }
        let key = s.getters.push(park::current_unparker(), 0);
        let (held, woken) = wait_solo(
            &self.state,
            s,
            |s| &mut s.getters,
            key,
            deadline,
            WaitReason::Queue,
        );
        let mut s = held.lock();
        if !matches!(woken, Woken::Granted(_)) {
            // Collecting a grant needs no mark: it lowers `in_flight`, and
            // grants a slot only to a waiting putter, whose queueing marked
            // the ring. Every other end may give an item back.
            s.buf.enter_locked();
        }
        let r = match woken {
            Woken::Granted(g) => s.settle_get(Some(g), None, &mut wakes),
            Woken::Abandoned(e) => s.settle_get(None, Some(e), &mut wakes),
            Woken::Interrupted(g, e) => s.settle_get(Some(g), Some(e), &mut wakes),
        };
        s.leave();
        drop(s);
        wakes.wake();
        r
    }

    pub(crate) fn close(&self) {
        let mut wakes = Wakeups::new();
        {
            let mut s = self.lock_for_change();
            s.closed = true;
            s.putters.grant_all(|| false, &mut wakes);
            s.getters.grant_all(|| None, &mut wakes);
            // Closed: the lock-free side stays off for good.
            s.leave();
        }
        wakes.wake();
    }

    /// `close`, then drop what is buffered and close the joiners' list (see
    /// "Closing" in `waiters.rs`): the end of a queue freed through the C ABI.
    /// Items granted to getters that have not collected them yet stay theirs.
    pub(crate) fn shutdown(&self) {
        self.close();
        let mut wakes = Wakeups::new();
        let drained = {
            let mut s = self.lock_for_change();
            s.joiners.close(&mut wakes);
            let mut drained = Vec::with_capacity(s.buf.len());
            while let Some(v) = s.buf.pop() {
                drained.push(v);
            }
            s.leave();
            drained
        };
        wakes.wake();
        // Items may have destructors (not in the C ABI, but keep them outside
        // the lock as everywhere else).
        drop(drained);
    }

    pub(crate) fn task_done(&self) -> Result<(), TaskDoneError> {
        let before = self
            .unfinished
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_sub(1))
            .map_err(|_| TaskDoneError)?;
        if before == 1 {
            // Zero reached: every joiner parked so far is done waiting (as
            // asyncio's `_finished` event is set), even if a put follows.
            let mut wakes = Wakeups::new();
            self.lock().joiners.grant_all(|| (), &mut wakes);
            wakes.wake();
        }
        Ok(())
    }

    /// Internal layer: parks until every item put has been marked done.
    pub(crate) fn join_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        let mut s = self.lock();
        // Read under the lock: a `task_done` reaching zero after this read
        // takes the lock after the node is queued, and grants it.
        if self.unfinished.0.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let key = s.joiners.push(park::current_unparker(), 0);
        let (_s, woken) = wait_solo(
            &self.state,
            s,
            |s| &mut s.joiners,
            key,
            deadline,
            WaitReason::Queue,
        );
        match woken {
            Woken::Granted(()) => Ok(()),
            Woken::Abandoned(e) | Woken::Interrupted((), e) => Err(e),
        }
    }
}

/// The outcome of registering a select arm.
pub(crate) enum Registered<R> {
    /// Queued with this node key.
    Queued(usize),
    /// The arm was ready and this select claimed it: the operation is done.
    Fired(R),
    /// Another arm of the select was claimed meanwhile; nothing was done.
    Lost,
}

/// What `Select` needs from a queue, object-safe so one select can mix queue
/// flavours and item types. Each call takes the queue's lock once.
pub(crate) trait SelectCore<T> {
    fn try_get(&self) -> Result<T, GetError>;
    fn try_put(&self, v: T) -> Result<(), PutError<T>>;
    fn register_get(
        &self,
        shared: &Arc<SelectShared>,
        arm: usize,
    ) -> Registered<Result<T, GetError>>;
    /// On `Fired` the value was consumed (or is inside the error); otherwise it is
    /// still in `v`.
    fn register_put(
        &self,
        shared: &Arc<SelectShared>,
        arm: usize,
        v: &mut Option<T>,
    ) -> Registered<Result<(), PutError<T>>>;
    /// The select's claimed get arm: collect the grant (`err`: the select was
    /// interrupted as the grant came; then the item is given back).
    fn complete_get(&self, key: usize, err: Option<WaitError>) -> Result<T, WaitError>;
    fn complete_put(&self, key: usize, v: T, err: Option<WaitError>) -> Result<(), (WaitError, T)>;
    /// Removes an arm that did not fire.
    fn deregister_get(&self, key: usize);
    fn deregister_put(&self, key: usize);
}

impl<T, B: Buffer<T>> SelectCore<T> for Core<T, B> {
    fn try_get(&self) -> Result<T, GetError> {
        Core::try_get(self)
    }

    fn try_put(&self, v: T) -> Result<(), PutError<T>> {
        Core::try_put(self, v)
    }

    fn register_get(
        &self,
        shared: &Arc<SelectShared>,
        arm: usize,
    ) -> Registered<Result<T, GetError>> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock_for_change();
        let r = if s.buf.len() == 0 && !s.closed {
            Registered::Queued(s.getters.push_select(shared.clone(), arm))
        } else if !shared.claim(arm) {
            Registered::Lost
        } else {
            Registered::Fired(match s.take_buffered(&mut wakes) {
                Some(v) => Ok(v),
                None => Err(GetError::Closed),
            })
        };
        s.leave();
        drop(s);
        wakes.wake();
        r
    }

    fn register_put(
        &self,
        shared: &Arc<SelectShared>,
        arm: usize,
        v: &mut Option<T>,
    ) -> Registered<Result<(), PutError<T>>> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock_for_change();
        let r = if !s.closed && s.occupied() >= s.cap {
            Registered::Queued(s.putters.push_select(shared.clone(), arm))
        } else if !shared.claim(arm) {
            Registered::Lost
        } else {
            let v = v.take().expect("a put arm holds its value until it fires");
            Registered::Fired(if s.closed {
                Err(PutError::Closed(v))
            } else {
                s.deliver(v, &self.unfinished.0, &mut wakes);
                Ok(())
            })
        };
        s.leave();
        drop(s);
        wakes.wake();
        r
    }

    fn complete_get(&self, key: usize, err: Option<WaitError>) -> Result<T, WaitError> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock_for_change();
        let grant = s.getters.remove(key);
        debug_assert!(grant.is_some(), "the claimed arm holds a grant");
        let r = s.settle_get(grant, err, &mut wakes);
        s.leave();
        drop(s);
        wakes.wake();
        r
    }

    fn complete_put(&self, key: usize, v: T, err: Option<WaitError>) -> Result<(), (WaitError, T)> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock_for_change();
        let grant = s.putters.remove(key);
        debug_assert!(grant.is_some(), "the claimed arm holds a grant");
        let r = s.settle_put(grant, v, err, &self.unfinished.0, &mut wakes);
        s.leave();
        drop(s);
        wakes.wake();
        r
    }

    fn deregister_get(&self, key: usize) {
        let mut s = self.lock_for_change();
        let grant = s.getters.remove(key);
        debug_assert!(grant.is_none(), "a losing arm never holds a grant");
        s.leave();
    }

    fn deregister_put(&self, key: usize) {
        let mut wakes = Wakeups::new();
        {
            let mut s = self.lock_for_change();
            let grant = s.putters.remove(key);
            debug_assert!(grant.is_none(), "a losing arm never holds a grant");
            s.free_slots(&mut wakes);
            s.leave();
        }
        wakes.wake();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    /// The count every put writes has a cache line (a 128-byte block: two lines on CPUs
    /// that fetch adjacent pairs) to itself, away from `ring`, which every get reads, and
    /// from the lock. Regression: beside them it cost a getter on another worker a miss per
    /// item (`mpmc_bounded` 70 -> 30 ns, NOTES.md round 14).
    #[test]
    fn the_put_count_has_a_line_of_its_own() {
        type C = Core<u64, Fifo<u64>>;
        let at = offset_of!(C, unfinished);
        assert!(
            align_of::<C>() >= 128,
            "Core is {}-aligned",
            align_of::<C>()
        );
        assert_eq!(at % 128, 0, "unfinished at {at}");
        let apart = |from: usize, size: usize| from + size <= at || from >= at + 128;
        assert!(apart(
            offset_of!(C, ring),
            size_of::<Option<Arc<Ring<u64>>>>()
        ));
        assert!(apart(
            offset_of!(C, state),
            size_of::<StdMutex<State<u64, Fifo<u64>>>>()
        ));
    }
}
