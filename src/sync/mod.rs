//! Synchronization for tasks *and* threads: locks, semaphores, events, conditions,
//! wait groups, barriers, queues, one-shot channels and `Select`.
//!
//! asyncio's `Lock`, `Semaphore`, `Event`, `Condition` and `Queue` for stackful
//! tasks. Every blocking call parks the calling *task* (its worker goes on running
//! others) via `park::park_until`; called from a plain OS thread outside the
//! runtime it blocks the thread. So tasks and threads can share one `Mutex` or one
//! `Queue`.
//!
//! # Design
//! Each primitive is a small state behind a `std::sync::Mutex` (held for a few
//! instructions, never across a park, never while running user code) plus one or
//! more [`waiters::WaitList`]s. Releasers hand the resource *directly* to the first
//! waiter (see `waiters.rs`), so every primitive is FIFO-fair and a waiter woken by
//! a release never finds the resource stolen. `Semaphore` also has an atomic fast
//! path (one CAS) that is taken only while nobody waits, so it cannot break the
//! FIFO order. `Mutex` is the exception: like Go's `sync.Mutex` it releases and
//! wakes rather than hands off, letting running tasks barge in, until a waiter has
//! waited 1 ms (starvation mode, strict hand-off); a hand-off per lock would cost a
//! cross-worker wake-up per lock under contention (see `mutex.rs`). A wake-up of a task by a task on the same worker goes to
//! that worker's LIFO slot: a ping-pong between two tasks over two queues involves
//! no thread wake-up and no syscall.
//!
//! # Interruption
//! Blocking calls are cancellation points. A task cancelled (or whose
//! `ivy::timeout` scope elapses) while it waits unwinds from the call (Rust API)
//! and leaves nothing behind: it is removed from the wait list, and a lock,
//! permit, slot or item granted to it in the race is handed on or put back.
//! Tests count this.
//!
//! # No poisoning
//! Cancellation in ivy unwinds through guards routinely: a task cancelled while
//! holding a `MutexGuard` and blocked on something else unwinds and drops the
//! guard. Poisoning on every unwind would make cancellation poison locks, and
//! poisoning only on "real" panics would make the same code behave differently
//! depending on why it unwound. So, like `parking_lot` and tokio, nothing is
//! poisoned: a guard dropped during an unwind simply unlocks. Code that can leave
//! shared data half-updated must restore its invariant in a destructor.
//!
//! # Two forms of every blocking call
//! Every blocking call `x(args) -> R` -- here (`Mutex::lock`, `RwLock::read` /
//! `write`, `Semaphore::acquire(_many)`, `BoundedSemaphore::acquire`,
//! `Event::wait`, `Condition::wait`, `WaitGroup::wait`, `Barrier::wait`,
//! `oneshot::Receiver::recv`, the queues' `put` / `get` / `join`,
//! `Select::run`) and for tasks (`JoinHandle::join` / `wait_until`,
//! `ScopedJoinHandle::join`, `join_all`, `join_all_settled`, `wait_any`,
//! `AsCompleted::next`) -- has a public twin
//!
//! ```text
//! x_deadline(args, deadline: Option<Instant>) -> Result<R, ivy::WaitError>
//! ```
//!
//! that never unwinds. `deadline` is the call's own (`None`: none); when it
//! passes first the result is `Err(TimedOut)`, and a deadline already passed
//! makes the call a try that does what it can at once and never parks.
//! Cancellation of the calling task is `Err(Cancelled)`, the deadline of an
//! enclosing [`crate::timeout`] / [`crate::deadline`] scope `Err(Elapsed)`;
//! both as values, the task going on (its cancellation stays pending: its next
//! blocking call reports it again, unless inside [`crate::shield`]). A closed
//! queue or channel is `Err(Closed)`. On every error nothing was taken: no lock
//! is held, no permit or item is consumed (a `put` gives its value back beside
//! the error), and a `JoinHandle` stays joinable (`join_deadline` takes
//! `&mut self`). This is the layer the C ABI is built on, and the one for
//! programs built with `panic = "abort"` (where an unwind cannot happen) or
//! that handle cancellation explicitly.
//!
//! The unwinding API is a thin wrapper over it: plain calls unwind on
//! cancellation or an elapsed scope, `*_timeout` / `*_until` return a precise
//! error of their own (`TimedOut`, `PutError::TimedOut`, ...) at their
//! deadline, `try_*` never block.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ivy::sync::Queue;
//! use ivy::WaitError;
//!
//! ivy::run(|| {
//!     let q = Queue::<u32>::unbounded();
//!     // Nothing queued: a passed deadline gives up at once.
//!     assert_eq!(q.get_deadline(Some(Instant::now())), Err(WaitError::TimedOut));
//!     // An enclosing timeout ends the wait as a value, not an unwind.
//!     let mut got = None;
//!     let scope = ivy::timeout(Duration::from_millis(5), || got = Some(q.get_deadline(None)));
//!     assert!(scope.is_err());
//!     assert_eq!(got, Some(Err(WaitError::Elapsed)));
//!     q.put(1).unwrap();
//!     q.close();
//!     assert_eq!(q.get_deadline(None), Ok(1));
//!     assert_eq!(q.get_deadline(None), Err(WaitError::Closed));
//! });
//! ```
//!
//! The C ABI also needs a few raw forms that have no safe-Rust use and stay
//! crate-internal: `RawMutex`, `Condition::wait_raw_deadline`,
//! `Semaphore::acquire_raw`, and the owner-checked locks of `owned.rs`.
//!
//! Each primitive also has a crate-internal `close()` (`Queue::shutdown` for
//! queues), used only by the C ABI's `ivy_*_free`: it wakes every waiter with
//! `Closed`, and later waits on the object end the same way instead of parking.
//! Rust code never closes a primitive (its values are freed by ownership, so
//! nobody can be waiting on them), hence the Rust API never sees `Closed` from
//! a lock or an event.
//!
//! # Layering
//! api: uses park (parking, cancellation, cancel scopes), the task core's
//! current task, and the scheduler's `debug::WaitReason`; nothing of `ffi`,
//! which is built on it.

pub(crate) mod waiters;

mod barrier;
mod condition;
mod event;
mod mutex;
pub mod oneshot;
mod owned;
pub(crate) mod queue;
mod rwlock;
mod select;
mod semaphore;
mod wait_group;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condition::{Condition, WaitTimeoutResult};
pub use event::Event;
pub use mutex::{Mutex, MutexGuard};
pub use queue::{
    CapacityError, GetError, LifoQueue, PriorityQueue, PutError, Queue, SelectQueue, TaskDoneError,
};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use select::Select;
pub use semaphore::{BoundedSemaphore, OverReleaseError, Semaphore, SemaphorePermit};
pub use wait_group::{WaitGroup, WaitGroupError};

pub(crate) use owned::{owner_token, OwnedLockError, OwnedRawMutex, OwnedRwLock};

use std::fmt;
use std::sync::{Mutex as StdMutex, MutexGuard as StdGuard, PoisonError};
use std::time::{Duration, Instant};

pub use crate::error::WaitError;

/// The error of a `*_timeout` / `*_until` call whose own deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for TimedOut {}

impl From<TimedOut> for std::io::Error {
    fn from(_: TimedOut) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
    }
}

/// Locks a primitive's internal state. Poison is ignored: the state is kept
/// consistent at every point where user code (an `Ord` impl) could panic.
pub(crate) fn lock_state<S>(m: &StdMutex<S>) -> StdGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `now + d`, or `None` ("never") if that is not representable.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

// The unwinding form of a plain blocking call (one that cannot time out or be
// closed) is `cancel::or_raise` over its `Result` form; re-exported beside
// `or_timed_out` for the primitives here.
pub(crate) use crate::cancel::or_raise;

/// Result of a `*_timeout` call of the `Result` layer: unwinds on interruption.
pub(crate) fn or_timed_out<T>(r: Result<T, WaitError>) -> Result<T, TimedOut> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => match e.raise_interrupt() {
            WaitError::TimedOut => Err(TimedOut),
            e => unreachable!("ivy: unexpected {e:?} from a timed wait"),
        },
    }
}
