//! The wait list every primitive in `ivy::sync` parks its waiters on.
//!
//! A `WaitList<D>` is a FIFO of blocked operations kept in a slab with intrusive
//! `prev`/`next` indices, so a waiter that gives up (cancelled, scope elapsed, own
//! deadline) unlinks itself in O(1). It always lives *inside* the state mutex of
//! its primitive: every read and write of a node happens under that lock, which is
//! what makes the protocol below race-free without atomics on the node itself.
//!
//! # Direct hand-off
//! A releaser does not "notify and hope": it *grants* the resource (a lock, some
//! permits, an item, a free slot) to the first waiter by unlinking its node and
//! storing the grant `D` in it, then unparks the waiter after dropping the lock
//! (the unparker is moved out, so nothing is cloned). The node stays in the slab
//! until its waiter removes it, so the waiter's key stays valid. Late arrivals
//! cannot barge past a granted waiter, which is what makes the primitives FIFO.
//! (`Mutex` uses the same list with a second kind of grant, "woken to retry",
//! and [`WaitList::push_front`] to put a waiter that lost its retry back in
//! front: see `mutex.rs`.)
//!
//! # Grant cells: a granted waiter wakes without the lock
//! A plain waiter (see [`wait_solo`]) attaches a [`GrantCell`] on its own stack
//! to its node. Granting (or closing) such a node removes it from the slab at
//! once, moves the grant into the cell and publishes the outcome with one
//! Release store, the granter's last touch of the cell (the unparker was moved
//! out first). The waiter, back from its park, reads the cell with Acquire: a
//! grant needs no lock, so a hand-off costs the state lock twice (queue, grant)
//! instead of three times; across two workers each lock is a cache-line
//! transfer (findings/sync.md). Only when the cell still says "waiting" does
//! the waiter take the lock, where the cell is stable (it is only written under
//! the lock) and, while it says waiting, its node is still in the slab under
//! its key. The cell outlives every access: the waiter leaves only after
//! seeing a final state, or after removing its node under the lock (also when
//! its park unwinds: `Detach`). Select arms keep their grants in their nodes.
//!
//! # Waking up
//! The waiter (see [`wait_solo`]) loops: park, read its cell, and if that does
//! not settle it take the state lock and look again. Exactly one of three
//! things happened, decided by whoever took the lock first:
//! * granted, and the park returned normally (or at the waiter's own deadline):
//!   success; the grant wins over a deadline that raced with it.
//! * not granted and the wait must end (interruption or own deadline): the waiter
//!   removes its node; nothing was handed to it.
//! * granted, but the park reported an interruption (cancellation or an elapsed
//!   `ivy::timeout` scope): the caller *undoes* the grant under the same lock
//!   (unlocks and hands the lock on, returns the permits, gives the item back to
//!   the next getter or to the front of the buffer, passes the slot on). An
//!   interrupted caller must not keep the resource: the scope that interrupted it
//!   would discard the result, and the item or permit would be lost.
//!
//! After removing an *ungranted* node the caller re-runs its grant logic when a
//! removed waiter could have been blocking others (a large semaphore request at
//! the front, a writer ahead of readers, a select's dead node ahead of a putter).
//!
//! # Closing
//! [`WaitList::close`] is how an object freed through the C ABI wakes the tasks
//! and threads blocked on it (every `ivy_*_free` follows one rule: waiters return
//! `IVY_ECLOSED`). It unlinks every queued waiter, marks its node *closed* (a
//! third outcome besides granted and queued, decided under the same lock) and
//! returns the unparkers; a woken waiter whose node is closed gets
//! `Woken::Abandoned(WaitError::Closed)`, so each primitive's existing "gave up
//! without a grant" path (re-run the hand-off, withdraw a barrier arrival, clear
//! the mutex's `QUEUED` bit) cleans up after it, and nothing was handed to it. The
//! list stays closed: a waiter that queues afterwards (a call that fetched the
//! object just before the free) gets a closed node at once and never parks, so no
//! call can block on a freed object. Granted-but-not-yet-woken waiters keep their
//! grants. Lists with select arms (the queue's getters and putters) are never
//! closed this way: the queue's own `close` refuses them through grants.
//!
//! # Select
//! One `Select` waits on several queues at once with one node per arm, all sharing
//! a [`SelectShared`]. Granting to such a node first claims the select with a CAS
//! on its shared state (WAITING -> arm index); if the CAS fails the select already
//! fired on another arm or gave up, so the releaser unlinks the dead node and moves
//! on to the next waiter. An arm therefore fires at most once, and a losing arm
//! never receives an item.
//!
//! # Model checking
//! The list is generic over what wakes a waiter (`U`, ivy's `Unparker` in the
//! runtime) and the decision a woken waiter takes is [`WaitList::settle`], a
//! function of the list alone, so that loom can drive this very code with its own
//! threads, lock and park (`model_check::loom_wait_list`): a waiter giving up
//! (timeout, cancellation) racing a notifier neither loses the grant nor gets
//! it twice.

use crate::loom::{AtomicUsize, Ordering, UnsafeCell};
use crate::runtime::debug::WaitReason;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::time::Instant;

use slab::Slab;

use super::{lock_state, WaitError};
use crate::park::{self, Unparker};

const NIL: usize = usize::MAX;

/// State shared by the nodes of one `Select` waiting on several lists.
pub(crate) struct SelectShared<U = Unparker> {
    /// `WAITING`, `ABANDONED`, or the index of the arm that fired.
    state: AtomicUsize,
    unparker: U,
}

pub(crate) const SELECT_WAITING: usize = usize::MAX;
pub(crate) const SELECT_ABANDONED: usize = usize::MAX - 1;

impl<U> SelectShared<U> {
    pub(crate) fn new(unparker: U) -> SelectShared<U> {
        SelectShared {
            state: AtomicUsize::new(SELECT_WAITING),
            unparker,
        }
    }

    /// Claims the select for `arm`. Succeeds for exactly one caller, ever.
    pub(crate) fn claim(&self, arm: usize) -> bool {
        self.state
            .compare_exchange(SELECT_WAITING, arm, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The select gives up. Fails if an arm was claimed first.
    pub(crate) fn abandon(&self) -> Result<(), usize> {
        self.state
            .compare_exchange(
                SELECT_WAITING,
                SELECT_ABANDONED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
    }

    /// The arm that fired, if any.
    pub(crate) fn fired(&self) -> Option<usize> {
        match self.state.load(Ordering::Acquire) {
            SELECT_WAITING | SELECT_ABANDONED => None,
            arm => Some(arm),
        }
    }
}

enum Wake<U> {
    /// A plain waiter; the unparker is moved out when granted.
    Solo(Option<U>),
    /// One arm of a select.
    Select(Arc<SelectShared<U>>, usize),
}

struct Node<D, U> {
    prev: usize,
    next: usize,
    linked: bool,
    wake: Wake<U>,
    /// What the waiter asks for (a permit count, a read/write kind); 0 if unused.
    req: usize,
    grant: Option<D>,
    /// The list was closed while this waiter was queued (or when it queued).
    closed: bool,
    /// The waiter's cell, once attached (plain waiters of `wait_solo`): then a
    /// grant or a close goes there and the node leaves the slab at once.
    cell: Option<CellRef<D>>,
}

const CELL_WAITING: usize = 0;
const CELL_GRANTED: usize = 1;
const CELL_CLOSED: usize = 2;

/// How a plain waiter's wait ended, on the waiter's stack (see "Grant cells"
/// in the module comment). Written only under the list's lock: `grant` first,
/// then `state` (Release), the writer's last access.
pub(crate) struct GrantCell<D> {
    state: AtomicUsize,
    grant: UnsafeCell<Option<D>>,
}

impl<D> GrantCell<D> {
    pub(crate) fn new() -> GrantCell<D> {
        GrantCell {
            state: AtomicUsize::new(CELL_WAITING),
            grant: UnsafeCell::new(None),
        }
    }

    /// The grant, if one was published. Lock-free: the Acquire load pairs with
    /// the granter's Release store, after which nobody writes the cell again.
    pub(crate) fn take_granted(&self) -> Option<D> {
        if self.state.load(Ordering::Acquire) != CELL_GRANTED {
            return None;
        }
        // SAFETY: GRANTED is final and was stored (Release) after `grant` was
        // written, and no one writes the cell after it; only its waiter reads
        // it, and only once (`take`).
        self.grant.with_mut(|g| unsafe { (*g).take() })
    }

    pub(crate) fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == CELL_WAITING
    }
}

/// A node's pointer to its waiter's cell.
struct CellRef<D>(NonNull<GrantCell<D>>);

impl<D> Clone for CellRef<D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D> Copy for CellRef<D> {}

// SAFETY: the cell is only dereferenced under the list's lock, while its waiter
// still waits for it (see "Grant cells": it leaves only once the cell is final
// or its node is gone); what moves through it is a `D`, which the list already
// hands across threads (`D: Send`).
unsafe impl<D: Send> Send for CellRef<D> {}

impl<D> CellRef<D> {
    /// Publishes the end of the wait: `grant` (with `CELL_GRANTED`) or nothing
    /// (`CELL_CLOSED`).
    ///
    /// # Safety
    /// Called under the list's lock on the cell of a node just removed from the
    /// slab, at most once per cell; nothing may touch the cell afterwards.
    unsafe fn publish(self, grant: Option<D>) {
        // SAFETY: the waiter is still waiting (its node was in the slab, under
        // our lock), so the cell lives and nobody else accesses `grant`.
        let cell = unsafe { self.0.as_ref() };
        let state = if grant.is_some() {
            CELL_GRANTED
        } else {
            CELL_CLOSED
        };
        // SAFETY: as above: the only writer, before the waiter may read.
        cell.grant.with_mut(|g| unsafe { *g = grant });
        cell.state.store(state, Ordering::Release);
    }
}

/// A FIFO of parked waiters whose grants are of type `D`, woken through `U`.
/// See the module comment.
pub(crate) struct WaitList<D, U = Unparker> {
    nodes: Slab<Node<D, U>>,
    head: usize,
    tail: usize,
    linked: usize,
    /// Set by [`WaitList::close`]; new waiters get a closed node at once.
    closed: bool,
}

impl<D, U: Clone> Default for WaitList<D, U> {
    fn default() -> Self {
        WaitList::new()
    }
}

impl<D, U: Clone> WaitList<D, U> {
    pub(crate) fn new() -> WaitList<D, U> {
        WaitList {
            nodes: Slab::new(),
            head: NIL,
            tail: NIL,
            linked: 0,
            closed: false,
        }
    }

    /// No waiter is queued (granted waiters that have not woken yet do not count).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.linked == 0
    }

    /// Number of queued (not yet granted) waiters.
    pub(crate) fn len(&self) -> usize {
        self.linked
    }

    /// Queues the caller at the back; returns its key.
    pub(crate) fn push(&mut self, unparker: U, req: usize) -> usize {
        self.push_node(Wake::Solo(Some(unparker)), req)
    }

    /// Queues the caller at the *front*: for a waiter that was woken to retry
    /// (not granted), lost the race and must keep its place (see `mutex.rs`).
    pub(crate) fn push_front(&mut self, unparker: U, req: usize) -> usize {
        if self.closed {
            return self.push_closed(req);
        }
        let key = self.nodes.insert(Node {
            prev: NIL,
            next: self.head,
            linked: true,
            wake: Wake::Solo(Some(unparker)),
            req,
            grant: None,
            closed: false,
            cell: None,
        });
        if self.head == NIL {
            self.tail = key;
        } else {
            self.nodes[self.head].prev = key;
        }
        self.head = key;
        self.linked += 1;
        key
    }

    /// Queues one arm of a select at the back.
    pub(crate) fn push_select(&mut self, shared: Arc<SelectShared<U>>, arm: usize) -> usize {
        self.push_node(Wake::Select(shared, arm), 0)
    }

    fn push_node(&mut self, wake: Wake<U>, req: usize) -> usize {
        if self.closed {
            debug_assert!(matches!(wake, Wake::Solo(_)), "select arm on a closed list");
            return self.push_closed(req);
        }
        let key = self.nodes.insert(Node {
            prev: self.tail,
            next: NIL,
            linked: true,
            wake,
            req,
            grant: None,
            closed: false,
            cell: None,
        });
        if self.tail == NIL {
            self.head = key;
        } else {
            self.nodes[self.tail].next = key;
        }
        self.tail = key;
        self.linked += 1;
        key
    }

    /// A node for a waiter arriving at a closed list: never linked, closed from
    /// the start, so its waiter settles with `Closed` without parking.
    fn push_closed(&mut self, req: usize) -> usize {
        self.nodes.insert(Node {
            prev: NIL,
            next: NIL,
            linked: false,
            wake: Wake::Solo(None),
            req,
            grant: None,
            closed: true,
            cell: None,
        })
    }

    /// Closes the list (see "Closing" in the module comment): every queued waiter
    /// is unlinked and marked closed, and its unparker handed to `wake` (call it
    /// after dropping the state lock, as for grants); later waiters are closed on
    /// arrival. Idempotent.
    pub(crate) fn close_with(&mut self, mut wake: impl FnMut(U)) {
        self.closed = true;
        while self.head != NIL {
            let key = self.head;
            self.unlink(key);
            let node = &mut self.nodes[key];
            match &mut node.wake {
                Wake::Solo(u) => {
                    node.closed = true;
                    let u = u.take();
                    if let Some(cell) = node.cell {
                        self.nodes.remove(key);
                        // SAFETY: under the lock, the node just left the slab.
                        unsafe { cell.publish(None) };
                    }
                    if let Some(u) = u {
                        wake(u);
                    }
                }
                // Not reachable (see the module comment); a dead arm needs no
                // wake-up, and a live one is left to its other arms.
                Wake::Select(..) => {}
            }
        }
    }

    /// Attaches the plain waiter `key`'s cell (see "Grant cells"). A node that
    /// was already settled leaves at once, its outcome moved to the cell: one
    /// closed on arrival, or one granted or closed between its push and now
    /// (`Condition` queues its waiter, then drops the list's lock to unlock
    /// the user's mutex, then waits).
    ///
    /// # Safety
    /// `cell` must stay where it is until it reads final or the waiter removed
    /// its node under the lock (`settle`, `detach`).
    pub(crate) unsafe fn attach(&mut self, key: usize, cell: &GrantCell<D>) {
        let cell = CellRef(NonNull::from(cell));
        let node = &mut self.nodes[key];
        debug_assert!(node.cell.is_none());
        if node.closed || node.grant.is_some() {
            let grant = self.nodes.remove(key).grant;
            // SAFETY: under the lock, the node just left the slab.
            unsafe { cell.publish(grant) };
        } else {
            node.cell = Some(cell);
        }
    }

    /// A waiter whose park unwound leaves: removes its node if it still waits.
    fn detach(&mut self, key: usize, cell: &GrantCell<D>) {
        if cell.is_waiting() {
            self.remove(key);
        }
    }

    #[inline]
    fn unlink(&mut self, key: usize) {
        let (prev, next) = {
            let n = &mut self.nodes[key];
            if !n.linked {
                return;
            }
            n.linked = false;
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
        self.linked -= 1;
    }

    /// What the first queued waiter asks for. Only for lists without select arms.
    pub(crate) fn front_req(&self) -> Option<usize> {
        if self.head == NIL {
            return None;
        }
        let n = &self.nodes[self.head];
        debug_assert!(matches!(n.wake, Wake::Solo(_)));
        Some(n.req)
    }

    /// Grants `data` to the first live waiter: unlinks it, stores the grant, and
    /// returns the unparker to call once the state lock is dropped. Dead select
    /// arms met on the way are unlinked. `Err(data)` if nobody can take it.
    pub(crate) fn grant_front(&mut self, data: D) -> Result<U, D> {
        loop {
            let key = self.head;
            if key == NIL {
                return Err(data);
            }
            self.unlink(key);
            let node = &mut self.nodes[key];
            let unparker = match &mut node.wake {
                Wake::Solo(u) => {
                    let u = u.take().expect("ivy: waiter granted twice");
                    if let Some(cell) = node.cell {
                        self.nodes.remove(key);
                        // SAFETY: under the lock, the node just left the slab.
                        unsafe { cell.publish(Some(data)) };
                        return Ok(u);
                    }
                    u
                }
                Wake::Select(shared, arm) => {
                    if !shared.claim(*arm) {
                        continue; // the select fired elsewhere or gave up
                    }
                    shared.unparker.clone()
                }
            };
            node.grant = Some(data);
            return Ok(unparker);
        }
    }

    /// Removes the caller's node (linked or already granted) and returns its grant.
    pub(crate) fn remove(&mut self, key: usize) -> Option<D> {
        self.unlink(key);
        self.nodes.remove(key).grant
    }

    /// The waiter of node `key` with `cell` attached, woken from its park
    /// (with `parked`, what the park reported) and holding the state lock
    /// again: decides how the wait ends, or `None` to park again.
    /// `own_deadline_passed` is asked only when nothing else decides. See
    /// "Waking up" in the module comment.
    pub(crate) fn settle(
        &mut self,
        key: usize,
        cell: &GrantCell<D>,
        parked: Result<(), WaitError>,
        own_deadline_passed: impl FnOnce() -> bool,
    ) -> Option<Woken<D>> {
        // Under the lock the cell is stable; while it waits, `key` is ours.
        if !cell.is_waiting() {
            return Some(match (cell.take_granted(), parked) {
                (Some(grant), Ok(())) => Woken::Granted(grant),
                (Some(grant), Err(e)) => Woken::Interrupted(grant, e),
                (None, _) => Woken::Abandoned(WaitError::Closed),
            });
        }
        let err = match parked {
            Err(e) => e,
            Ok(()) if own_deadline_passed() => WaitError::TimedOut,
            Ok(()) => return None, // spurious, or a stale token: wait on
        };
        self.remove(key);
        Some(Woken::Abandoned(err))
    }
}

impl<D> WaitList<D> {
    /// Grants every queued waiter, collecting their unparkers into `wakes`.
    pub(crate) fn grant_all(&mut self, mut data: impl FnMut() -> D, wakes: &mut Wakeups) {
        while self.head != NIL {
            if let Ok(u) = self.grant_front(data()) {
                wakes.push(u);
            }
        }
    }

    /// [`close_with`](Self::close_with), collecting the unparkers into `wakes`.
    pub(crate) fn close(&mut self, wakes: &mut Wakeups) {
        self.close_with(|u| wakes.push(u));
    }
}

/// Unparkers collected under a state lock, called after it is dropped. Holds one
/// inline, so the common single wake-up allocates nothing; the others go to a
/// vector made only when there are some. Every queue and semaphore operation
/// makes one, and most wake nobody: `new` and the empty `wake` are inline and
/// drop nothing (an out-of-line `wake` dropping an empty `Vec` was 44
/// instructions an operation, ~6% of a channel round trip, by callgrind).
pub(crate) struct Wakeups {
    /// Filled first: `first.is_none()` implies `rest.is_none()`.
    first: Option<Unparker>,
    rest: Option<Vec<Unparker>>,
}

impl Wakeups {
    #[inline]
    pub(crate) fn new() -> Wakeups {
        Wakeups {
            first: None,
            rest: None,
        }
    }

    pub(crate) fn push(&mut self, u: Unparker) {
        if self.first.is_none() {
            self.first = Some(u);
        } else {
            self.rest.get_or_insert_with(Vec::new).push(u);
        }
    }

    pub(crate) fn push_opt(&mut self, u: Option<Unparker>) {
        if let Some(u) = u {
            self.push(u);
        }
    }

    /// Wakes everyone collected. Call after dropping the state lock.
    #[inline]
    pub(crate) fn wake(self) {
        if self.first.is_none() {
            debug_assert!(self.rest.is_none(), "ivy: Wakeups filled out of order");
            // Nothing to wake and nothing to drop (see `first`): skip the drop glue.
            std::mem::forget(self);
            return;
        }
        self.wake_all();
    }

    #[inline(never)]
    fn wake_all(self) {
        let Wakeups { first, rest } = self;
        if let Some(u) = first {
            u.unpark();
        }
        if let Some(rest) = rest {
            wake_rest(rest);
        }
    }
}

#[cold]
#[inline(never)]
fn wake_rest(rest: Vec<Unparker>) {
    for u in rest {
        u.unpark();
    }
}

/// How a [`wait_solo`] ended.
pub(crate) enum Woken<D> {
    /// Granted; the node is removed.
    Granted(D),
    /// Not granted; the node is removed and nothing was handed over. Also how a
    /// waiter learns that the list was closed (`WaitError::Closed`).
    Abandoned(WaitError),
    /// Granted, but the park reported an interruption (cancellation or an elapsed
    /// scope). The node is removed; the caller must undo the grant before
    /// returning the error.
    Interrupted(D, WaitError),
}

/// The state lock after a [`wait_solo`]: held when the wait was settled under
/// it, not when the grant was read from the cell alone.
pub(crate) enum Held<'a, S> {
    Locked(StdGuard<'a, S>),
    Unlocked(&'a StdMutex<S>),
}

impl<'a, S> Held<'a, S> {
    /// The state lock, taken now if it is not held.
    pub(crate) fn lock(self) -> StdGuard<'a, S> {
        match self {
            Held::Locked(guard) => guard,
            Held::Unlocked(lock) => lock_state(lock),
        }
    }
}

/// Removes a waiting node whose waiter unwinds out of its park, so that no
/// granter writes to the cell of a frame that is gone.
struct Detach<'a, 'l, S, D, L: Fn(&mut S) -> &mut WaitList<D>> {
    lock: &'a StdMutex<S>,
    list: &'l L,
    key: usize,
    cell: &'l GrantCell<D>,
}

impl<S, D, L: Fn(&mut S) -> &mut WaitList<D>> Drop for Detach<'_, '_, S, D, L> {
    fn drop(&mut self) {
        (self.list)(&mut lock_state(self.lock)).detach(self.key, self.cell);
    }
}

/// Parks the caller until its node `key` in the list selected by `list` is
/// granted, it is interrupted, or `deadline` passes. Called with the state lock
/// held (the node was pushed under it). A grant read from the waiter's cell
/// returns without the lock (`Held::Unlocked`); every other end returns with
/// the lock held, so the caller can finish or undo under it.
pub(crate) fn wait_solo<'a, S, D, L>(
    lock: &'a StdMutex<S>,
    mut guard: StdGuard<'a, S>,
    list: L,
    key: usize,
    deadline: Option<Instant>,
    reason: WaitReason,
) -> (Held<'a, S>, Woken<D>)
where
    L: Fn(&mut S) -> &mut WaitList<D>,
{
    let cell = GrantCell::new();
    // SAFETY: `cell` stays in this frame until the wait is settled: every
    // return below comes after a final read of it or after `settle` removed
    // the node, and an unwinding park removes it (`Detach`).
    unsafe { list(&mut guard).attach(key, &cell) };
    loop {
        // A waiter queued on a closed list settles at once, without parking;
        // so does one whose deadline has passed (a passed deadline makes the
        // call a non-blocking try: no switch, no timer).
        let parked = if !cell.is_waiting() || deadline.is_some_and(|d| Instant::now() >= d) {
            Ok(())
        } else {
            drop(guard);
            let detach = Detach {
                lock,
                list: &list,
                key,
                cell: &cell,
            };
            let parked = park::park_for(deadline, reason);
            std::mem::forget(detach);
            if parked.is_ok() {
                if let Some(grant) = cell.take_granted() {
                    return (Held::Unlocked(lock), Woken::Granted(grant));
                }
            }
            guard = lock_state(lock);
            parked
        };
        let own_deadline_passed = || deadline.is_some_and(|d| Instant::now() >= d);
        if let Some(woken) = list(&mut guard).settle(key, &cell, parked, own_deadline_passed) {
            return (Held::Locked(guard), woken);
        }
    }
}
