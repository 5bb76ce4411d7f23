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

use crate::runtime::debug::WaitReason;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::time::Instant;

use super::{GetError, PutError, TaskDoneError};
use crate::park;
use crate::sync::waiters::{wait_solo, SelectShared, WaitList, Wakeups, Woken};
use crate::sync::{lock_state, WaitError};

/// The item store of a queue flavour.
pub(crate) trait Buffer<T>: Send {
    fn push(&mut self, v: T);
    fn pop(&mut self) -> Option<T>;
    /// Puts back an item `pop` returned (for an interrupted getter), so that it is
    /// the next one `pop` returns.
    fn unpop(&mut self, v: T);
    fn len(&self) -> usize;
}

/// First in, first out.
pub(crate) struct Fifo<T>(VecDeque<T>);

impl<T: Send> Buffer<T> for Fifo<T> {
    fn push(&mut self, v: T) {
        self.0.push_back(v)
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn unpop(&mut self, v: T) {
        self.0.push_front(v)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Fifo<T> {
    pub(crate) fn new() -> Self {
        Fifo(VecDeque::new())
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
    pub(crate) fn new() -> Self {
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
    pub(crate) fn new() -> Self {
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
    unfinished: usize,
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

    /// Adds an item (capacity already checked): to the first live getter, else to
    /// the buffer.
    fn deliver(&mut self, v: T, wakes: &mut Wakeups) {
        self.unfinished += 1;
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
        wakes: &mut Wakeups,
    ) -> Result<(), (WaitError, T)> {
        match (grant, err) {
            (Some(true), None) => {
                self.reserved -= 1;
                if self.closed {
                    self.free_slots(wakes);
                    Err((WaitError::Closed, v))
                } else {
                    self.deliver(v, wakes);
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

/// The queue machinery, parameterised by its buffer.
pub(crate) struct Core<T, B> {
    state: StdMutex<State<T, B>>,
}

impl<T, B: Buffer<T>> Core<T, B> {
    /// `cap == usize::MAX` means unbounded.
    pub(crate) fn new(cap: usize, buf: B) -> Self {
        Core {
            state: StdMutex::new(State {
                buf,
                cap,
                in_flight: 0,
                reserved: 0,
                closed: false,
                unfinished: 0,
                getters: WaitList::new(),
                putters: WaitList::new(),
                joiners: WaitList::new(),
            }),
        }
    }

    fn lock(&self) -> StdGuard<'_, State<T, B>> {
        lock_state(&self.state)
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
        self.lock().unfinished
    }

    pub(crate) fn try_put(&self, v: T) -> Result<(), PutError<T>> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock();
        if s.closed {
            return Err(PutError::Closed(v));
        }
        if s.occupied() >= s.cap {
            return Err(PutError::Full(v));
        }
        s.deliver(v, &mut wakes);
        drop(s);
        wakes.wake();
        Ok(())
    }

    /// Internal layer: puts `v`, parking while the queue is full, until
    /// `deadline`. On failure the value comes back with the reason: Closed,
    /// TimedOut, Cancelled or Elapsed.
    pub(crate) fn put_deadline(
        &self,
        v: T,
        deadline: Option<Instant>,
    ) -> Result<(), (WaitError, T)> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock();
        if s.closed {
            return Err((WaitError::Closed, v));
        }
        if s.occupied() < s.cap {
            s.deliver(v, &mut wakes);
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
        let r = match woken {
            Woken::Granted(g) => s.settle_put(Some(g), v, None, &mut wakes),
            Woken::Abandoned(e) => s.settle_put(None, v, Some(e), &mut wakes),
            Woken::Interrupted(g, e) => s.settle_put(Some(g), v, Some(e), &mut wakes),
        };
        drop(s);
        wakes.wake();
        r
    }

    pub(crate) fn try_get(&self) -> Result<T, GetError> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock();
        match s.take_buffered(&mut wakes) {
            Some(v) => {
                drop(s);
                wakes.wake();
                Ok(v)
            }
            None if s.closed => Err(GetError::Closed),
            None => Err(GetError::Empty),
        }
    }

    /// Internal layer: takes the next item, parking while the queue is empty,
    /// until `deadline`. Errors: Closed (closed and drained), TimedOut,
    /// Cancelled, Elapsed.
    pub(crate) fn get_deadline(&self, deadline: Option<Instant>) -> Result<T, WaitError> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock();
        if let Some(v) = s.take_buffered(&mut wakes) {
            drop(s);
            wakes.wake();
            return Ok(v);
        }
        if s.closed {
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
        let r = match woken {
            Woken::Granted(g) => s.settle_get(Some(g), None, &mut wakes),
            Woken::Abandoned(e) => s.settle_get(None, Some(e), &mut wakes),
            Woken::Interrupted(g, e) => s.settle_get(Some(g), Some(e), &mut wakes),
        };
        drop(s);
        wakes.wake();
        r
    }

    pub(crate) fn close(&self) {
        let mut wakes = Wakeups::new();
        {
            let mut s = self.lock();
            s.closed = true;
            s.putters.grant_all(|| false, &mut wakes);
            s.getters.grant_all(|| None, &mut wakes);
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
            let mut s = self.lock();
            s.joiners.close(&mut wakes);
            let mut drained = Vec::with_capacity(s.buf.len());
            while let Some(v) = s.buf.pop() {
                drained.push(v);
            }
            drained
        };
        wakes.wake();
        // Items may have destructors (not in the C ABI, but keep them outside
        // the lock as everywhere else).
        drop(drained);
    }

    pub(crate) fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut wakes = Wakeups::new();
        {
            let mut s = self.lock();
            if s.unfinished == 0 {
                return Err(TaskDoneError);
            }
            s.unfinished -= 1;
            if s.unfinished == 0 {
                s.joiners.grant_all(|| (), &mut wakes);
            }
        }
        wakes.wake();
        Ok(())
    }

    /// Internal layer: parks until every item put has been marked done.
    pub(crate) fn join_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        let mut s = self.lock();
        if s.unfinished == 0 {
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
        let mut s = self.lock();
        if s.buf.len() == 0 && !s.closed {
            return Registered::Queued(s.getters.push_select(shared.clone(), arm));
        }
        if !shared.claim(arm) {
            return Registered::Lost;
        }
        let r = match s.take_buffered(&mut wakes) {
            Some(v) => Ok(v),
            None => Err(GetError::Closed),
        };
        drop(s);
        wakes.wake();
        Registered::Fired(r)
    }

    fn register_put(
        &self,
        shared: &Arc<SelectShared>,
        arm: usize,
        v: &mut Option<T>,
    ) -> Registered<Result<(), PutError<T>>> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock();
        if !s.closed && s.occupied() >= s.cap {
            return Registered::Queued(s.putters.push_select(shared.clone(), arm));
        }
        if !shared.claim(arm) {
            return Registered::Lost;
        }
        let v = v.take().expect("a put arm holds its value until it fires");
        let r = if s.closed {
            Err(PutError::Closed(v))
        } else {
            s.deliver(v, &mut wakes);
            Ok(())
        };
        drop(s);
        wakes.wake();
        Registered::Fired(r)
    }

    fn complete_get(&self, key: usize, err: Option<WaitError>) -> Result<T, WaitError> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock();
        let grant = s.getters.remove(key);
        debug_assert!(grant.is_some(), "the claimed arm holds a grant");
        let r = s.settle_get(grant, err, &mut wakes);
        drop(s);
        wakes.wake();
        r
    }

    fn complete_put(&self, key: usize, v: T, err: Option<WaitError>) -> Result<(), (WaitError, T)> {
        let mut wakes = Wakeups::new();
        let mut s = self.lock();
        let grant = s.putters.remove(key);
        debug_assert!(grant.is_some(), "the claimed arm holds a grant");
        let r = s.settle_put(grant, v, err, &mut wakes);
        drop(s);
        wakes.wake();
        r
    }

    fn deregister_get(&self, key: usize) {
        let grant = self.lock().getters.remove(key);
        debug_assert!(grant.is_none(), "a losing arm never holds a grant");
    }

    fn deregister_put(&self, key: usize) {
        let mut wakes = Wakeups::new();
        {
            let mut s = self.lock();
            let grant = s.putters.remove(key);
            debug_assert!(grant.is_none(), "a losing arm never holds a grant");
            s.free_slots(&mut wakes);
        }
        wakes.wake();
    }
}
