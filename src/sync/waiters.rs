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
//! # Select
//! One `Select` waits on several queues at once with one node per arm, all sharing
//! a [`SelectShared`]. Granting to such a node first claims the select with a CAS
//! on its shared state (WAITING -> arm index); if the CAS fails the select already
//! fired on another arm or gave up, so the releaser unlinks the dead node and moves
//! on to the next waiter. An arm therefore fires at most once, and a losing arm
//! never receives an item.

use crate::runtime::debug::WaitReason;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::time::Instant;

use slab::Slab;

use super::{lock_state, WaitError};
use crate::park::{self, Unparker};

const NIL: usize = usize::MAX;

/// State shared by the nodes of one `Select` waiting on several lists.
pub(crate) struct SelectShared {
    /// `WAITING`, `ABANDONED`, or the index of the arm that fired.
    state: AtomicUsize,
    unparker: Unparker,
}

pub(crate) const SELECT_WAITING: usize = usize::MAX;
pub(crate) const SELECT_ABANDONED: usize = usize::MAX - 1;

impl SelectShared {
    pub(crate) fn new(unparker: Unparker) -> SelectShared {
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

enum Wake {
    /// A plain waiter; the unparker is moved out when granted.
    Solo(Option<Unparker>),
    /// One arm of a select.
    Select(Arc<SelectShared>, usize),
}

struct Node<D> {
    prev: usize,
    next: usize,
    linked: bool,
    wake: Wake,
    /// What the waiter asks for (a permit count, a read/write kind); 0 if unused.
    req: usize,
    grant: Option<D>,
}

/// A FIFO of parked waiters whose grants are of type `D`. See the module comment.
pub(crate) struct WaitList<D> {
    nodes: Slab<Node<D>>,
    head: usize,
    tail: usize,
    linked: usize,
}

impl<D> Default for WaitList<D> {
    fn default() -> Self {
        WaitList::new()
    }
}

impl<D> WaitList<D> {
    pub(crate) fn new() -> WaitList<D> {
        WaitList {
            nodes: Slab::new(),
            head: NIL,
            tail: NIL,
            linked: 0,
        }
    }

    /// No waiter is queued (granted waiters that have not woken yet do not count).
    pub(crate) fn is_empty(&self) -> bool {
        self.linked == 0
    }

    /// Number of queued (not yet granted) waiters.
    pub(crate) fn len(&self) -> usize {
        self.linked
    }

    /// Queues the caller at the back; returns its key.
    pub(crate) fn push(&mut self, unparker: Unparker, req: usize) -> usize {
        self.push_node(Wake::Solo(Some(unparker)), req)
    }

    /// Queues one arm of a select at the back.
    pub(crate) fn push_select(&mut self, shared: Arc<SelectShared>, arm: usize) -> usize {
        self.push_node(Wake::Select(shared, arm), 0)
    }

    fn push_node(&mut self, wake: Wake, req: usize) -> usize {
        let key = self.nodes.insert(Node {
            prev: self.tail,
            next: NIL,
            linked: true,
            wake,
            req,
            grant: None,
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
    pub(crate) fn grant_front(&mut self, data: D) -> Result<Unparker, D> {
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

    /// Grants every queued waiter, collecting their unparkers into `wakes`.
    pub(crate) fn grant_all(&mut self, mut data: impl FnMut() -> D, wakes: &mut Wakeups) {
        while self.head != NIL {
            if let Ok(u) = self.grant_front(data()) {
                wakes.push(u);
            }
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
}

/// Unparkers collected under a state lock, called after it is dropped. Holds one
/// inline, so the common single wake-up allocates nothing.
#[derive(Default)]
pub(crate) struct Wakeups {
    first: Option<Unparker>,
    rest: Vec<Unparker>,
}

impl Wakeups {
    pub(crate) fn new() -> Wakeups {
        Wakeups::default()
    }

    pub(crate) fn push(&mut self, u: Unparker) {
        if self.first.is_none() {
            self.first = Some(u);
        } else {
            self.rest.push(u);
        }
    }

    pub(crate) fn push_opt(&mut self, u: Option<Unparker>) {
        if let Some(u) = u {
            self.push(u);
        }
    }

    /// Wakes everyone collected. Call after dropping the state lock.
    pub(crate) fn wake(self) {
        if let Some(u) = self.first {
            u.unpark();
        }
        if !self.rest.is_empty() {
            for u in self.rest {
                u.unpark();
            }
        }
    }
}

/// How a [`wait_solo`] ended.
pub(crate) enum Woken<D> {
    /// Granted; the node is removed.
    Granted(D),
    /// Not granted; the node is removed and nothing was handed over.
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
        drop(guard);
        let parked = park::park_for(deadline, reason);
        guard = lock_state(lock);
        let l = list(&mut guard);
        if l.is_granted(key) {
            let grant = l.remove(key).expect("granted node holds its grant");
            let woken = match parked {
                Ok(()) => Woken::Granted(grant),
                Err(e) => Woken::Interrupted(grant, e.into()),
            };
            return (guard, woken);
        }
        let err = match parked {
            Err(e) => e.into(),
            Ok(()) if deadline.is_some_and(|d| Instant::now() >= d) => WaitError::TimedOut,
            Ok(()) => continue, // spurious, or a stale token: wait on
        };
        l.remove(key);
        return (guard, Woken::Abandoned(err));
    }
}
