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
//! # Waking up
//! The waiter (see [`wait_solo`]) loops: park, take the state lock, look at its
//! node. Exactly one of three things happened, decided by whoever took the lock
//! first:
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

use crate::loom::{AtomicUsize, Ordering};
use crate::runtime::debug::WaitReason;
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
                    if let Some(u) = u.take() {
                        wake(u);
                    }
                }
                // Not reachable (see the module comment); a dead arm needs no
                // wake-up, and a live one is left to its other arms.
                Wake::Select(..) => {}
            }
        }
    }

    /// The node `key` was closed: its waiter must not park.
    pub(crate) fn is_closed_node(&self, key: usize) -> bool {
        self.nodes[key].closed
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
                Wake::Solo(u) => u.take().expect("ivy: waiter granted twice"),
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

    pub(crate) fn is_granted(&self, key: usize) -> bool {
        self.nodes[key].grant.is_some()
    }

    /// Removes the caller's node (linked or already granted) and returns its grant.
    pub(crate) fn remove(&mut self, key: usize) -> Option<D> {
        self.unlink(key);
        self.nodes.remove(key).grant
    }

    /// The waiter of node `key`, woken from its park (with `parked`, what the
    /// park reported) and holding the state lock again: decides how the wait
    /// ends, or `None` to park again. `own_deadline_passed` is asked only when
    /// nothing else decides. See "Waking up" in the module comment.
    pub(crate) fn settle(
        &mut self,
        key: usize,
        parked: Result<(), WaitError>,
        own_deadline_passed: impl FnOnce() -> bool,
    ) -> Option<Woken<D>> {
        if self.is_closed_node(key) {
            self.remove(key);
            return Some(Woken::Abandoned(WaitError::Closed));
        }
        if self.is_granted(key) {
            let grant = self.remove(key).expect("granted node holds its grant");
            return Some(match parked {
                Ok(()) => Woken::Granted(grant),
                Err(e) => Woken::Interrupted(grant, e),
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

/// Parks the caller until its node `key` in the list selected by `list` is
/// granted, it is interrupted, or `deadline` passes. Called with the state lock
/// held (the node was pushed under it); returns with the lock held again so the
/// caller can finish or undo under it.
pub(crate) fn wait_solo<'a, S, D>(
    lock: &'a StdMutex<S>,
    mut guard: StdGuard<'a, S>,
    list: impl Fn(&mut S) -> &mut WaitList<D>,
    key: usize,
    deadline: Option<Instant>,
    reason: WaitReason,
) -> (StdGuard<'a, S>, Woken<D>) {
    loop {
        // A waiter queued on a closed list settles at once, without parking;
        // so does one whose deadline has passed (a passed deadline makes the
        // call a non-blocking try: no switch, no timer).
        let parked = if list(&mut guard).is_closed_node(key)
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            Ok(())
        } else {
            drop(guard);
            let parked = park::park_for(deadline, reason);
            guard = lock_state(lock);
            parked
        };
        let own_deadline_passed = || deadline.is_some_and(|d| Instant::now() >= d);
        if let Some(woken) = list(&mut guard).settle(key, parked, own_deadline_passed) {
            return (guard, woken);
        }
    }
}
