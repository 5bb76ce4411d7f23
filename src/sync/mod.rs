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
//! # The `Result` layer (for the C ABI)
//! Every blocking operation has a crate-internal entry point taking an optional
//! absolute deadline and returning [`WaitError`] (Cancelled / Elapsed / TimedOut /
//! Closed) instead of unwinding: `RawMutex::lock_deadline` / `unlock`,
//! `RwLock::{read,write}_deadline`, `Semaphore::acquire_deadline`,
//! `Event::wait_deadline`, `Condition::wait_raw_deadline`,
//! `WaitGroup::wait_deadline`, `Barrier::wait_deadline`,
//! `Queue::{get,put,join}_deadline` (and the Priority / LIFO variants),
//! `oneshot::Receiver::recv_deadline`, `Select::run_deadline`. The public Rust
//! API wraps them: plain calls unwind on interruption, `try_*` never block,
//! `*_timeout` / `*_until` return a precise error at their own deadline.
//!
//! Each primitive also has a crate-internal `close()` (`Queue::shutdown` for
//! queues), used only by the C ABI's `ivy_*_free`: it wakes every waiter with
//! `Closed`, and later waits on the object end the same way instead of parking.
//! Rust code never closes a primitive (its values are freed by ownership, so
//! nobody can be waiting on them), hence the Rust API never sees `Closed` from
//! a lock or an event.

pub(crate) mod waiters;

mod barrier;
mod condition;
mod event;
mod mutex;
pub mod oneshot;
mod owned;
mod queue;
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

use crate::cancel::Interrupted;

pub(crate) use crate::error::WaitError;

impl From<Interrupted> for WaitError {
    fn from(i: Interrupted) -> WaitError {
        match i {
            Interrupted::Cancelled => WaitError::Cancelled,
            Interrupted::Elapsed => WaitError::Elapsed,
        }
    }
}

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

/// Result of a plain blocking call of the internal layer that cannot time out
/// and cannot be closed: unwinds on interruption.
pub(crate) fn or_raise_wait<T>(r: Result<T, WaitError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            let e = e.raise_interrupt();
            unreachable!("ivy: unexpected {e:?} from a call without deadline")
        }
    }
}

/// Result of a `*_timeout` call of the internal layer: unwinds on interruption.
pub(crate) fn or_timed_out<T>(r: Result<T, WaitError>) -> Result<T, TimedOut> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => match e.raise_interrupt() {
            WaitError::TimedOut => Err(TimedOut),
            e => unreachable!("ivy: unexpected {e:?} from a timed wait"),
        },
    }
}
