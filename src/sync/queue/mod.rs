//! MPMC queues for tasks and threads: asyncio's `Queue`, `PriorityQueue` and
//! `LifoQueue`, plus Go's `close`.
//!
//! * `Queue::bounded(n)` applies back-pressure: `put` parks while `n` items are
//!   queued. `n == 0` is refused (`bounded` panics, `try_bounded` returns
//!   [`CapacityError`]): ivy has no rendezvous queue, because a rendezvous hand-off
//!   cannot be undone when the receiving task is cancelled mid-way, and undoing is
//!   what guarantees that no item is ever lost. (Python's `Queue(0)` means
//!   *unbounded*: that is [`Queue::unbounded`].)
//! * `close()`: later puts fail and hand the value back inside the error; parked
//!   putters are woken with their value back; getters drain the remaining items,
//!   then get [`GetError::Closed`].
//! * `task_done()` / `join()` as asyncio: every successful put counts one
//!   unfinished item, `task_done` marks one finished, `join` parks until none is
//!   left; one `task_done` too many is a [`TaskDoneError`].
//! * FIFO among waiting getters and among waiting putters (direct hand-off, see
//!   `core.rs`); a cancelled or timed-out getter or putter leaves no item, slot or
//!   waiter behind. The one exception to FIFO order: an item handed to a waiting
//!   getter that is cancelled or times out before it runs goes back to the
//!   front, and items put after it that other getters took meanwhile have then
//!   overtaken it.
//! * Speed: one short critical section per operation; a task that wakes another
//!   on its own worker puts it in that worker's LIFO slot, so ping-pong between
//!   two tasks involves no thread wake-up and no syscall. A bounded `Queue`
//!   whose slots fit in 256 KiB runs on a lock-free ring while nobody waits
//!   (`core.rs`, `ring.rs`): no lock at all on its common path. Its slots are
//!   allocated when the queue is made (a larger one grows as it fills).
//!
//! Queues are not reference-counted: share one with an `Arc` (or borrow it in a
//! scope). Dropping a queue drops the items still in it.

mod core;
pub(crate) mod ring;

use std::fmt;
use std::time::{Duration, Instant};

use self::core::{Core, Fifo, Heap, Lifo, SelectCore};
use super::{deadline_after, or_raise, or_timed_out, TimedOut, WaitError};

/// Why a put failed. Each variant carries the value back.
///
/// `put` fails only with `Closed`; `try_put` with `Full` or `Closed`;
/// `put_timeout` / `put_until` with `TimedOut` or `Closed`.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum PutError<T> {
    /// The queue is full (`try_put` only).
    Full(T),
    /// The queue is closed.
    Closed(T),
    /// The deadline passed while the queue stayed full.
    TimedOut(T),
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Closed(v) | PutError::TimedOut(v) => v,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_))
    }

    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_))
    }

    pub fn is_timed_out(&self) -> bool {
        matches!(self, PutError::TimedOut(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PutError::Full(_) => "Full(..)",
            PutError::Closed(_) => "Closed(..)",
            PutError::TimedOut(_) => "TimedOut(..)",
        })
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PutError::Full(_) => "queue is full",
            PutError::Closed(_) => "queue is closed",
            PutError::TimedOut(_) => "timed out waiting for room in the queue",
        })
    }
}

impl<T> std::error::Error for PutError<T> {}

/// Why a get failed.
///
/// `get` fails only with `Closed` (closed *and* drained); `try_get` with `Empty`
/// or `Closed`; `get_timeout` / `get_until` with `TimedOut` or `Closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetError {
    /// Nothing queued right now (`try_get` only).
    Empty,
    /// The queue is closed and every item has been taken.
    Closed,
    /// The deadline passed while the queue stayed empty.
    TimedOut,
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GetError::Empty => "queue is empty",
            GetError::Closed => "queue is closed and drained",
            GetError::TimedOut => "timed out waiting for an item",
        })
    }
}

impl std::error::Error for GetError {}

/// `task_done()` called more times than items were put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than items were put")
    }
}

impl std::error::Error for TaskDoneError {}

/// A bounded queue needs a capacity of at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityError;

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bounded queue needs a capacity of at least 1 (use unbounded() for no limit)")
    }
}

impl std::error::Error for CapacityError {}

fn put_error<T>((e, v): (WaitError, T)) -> PutError<T> {
    match e.raise_interrupt() {
        WaitError::Closed => PutError::Closed(v),
        WaitError::TimedOut => PutError::TimedOut(v),
        e => unreachable!("ivy: unexpected {e:?} from a put"),
    }
}

fn get_error(e: WaitError) -> GetError {
    match e.raise_interrupt() {
        WaitError::Closed => GetError::Closed,
        WaitError::TimedOut => GetError::TimedOut,
        e => unreachable!("ivy: unexpected {e:?} from a get"),
    }
}

mod sealed {
    pub trait Sealed<T> {
        fn select_core(&self) -> super::CoreRef<'_, T>;
    }
}

/// A queue `Select` can wait on: [`Queue`], [`PriorityQueue`], [`LifoQueue`].
pub trait SelectQueue<T>: sealed::Sealed<T> {}

/// Opaque handle a `Select` uses to reach a queue's machinery.
#[doc(hidden)]
pub struct CoreRef<'a, T>(pub(crate) &'a dyn SelectCore<T>);

pub(crate) use self::core::{Registered, SelectCore as SelectOps};

macro_rules! queue_type {
    (
        $(#[$doc:meta])*
        $name:ident, $buf:ident, [$($bound:tt)*]
    ) => {
        $(#[$doc])*
        pub struct $name<T> {
            core: Core<T, $buf<T>>,
        }

        impl<T: Send + $($bound)*> $name<T> {
            /// A queue holding at most `capacity` items.
            ///
            /// # Panics
            /// If `capacity` is 0 (see [`try_bounded`](Self::try_bounded)).
            pub fn bounded(capacity: usize) -> Self {
                match Self::try_bounded(capacity) {
                    Ok(q) => q,
                    Err(e) => panic!("ivy: {}::bounded(0): {e}", stringify!($name)),
                }
            }

            /// A queue holding at most `capacity` items; `Err` if `capacity` is 0.
            pub fn try_bounded(capacity: usize) -> Result<Self, CapacityError> {
                if capacity == 0 {
                    return Err(CapacityError);
                }
                Ok($name { core: Core::new(capacity, $buf::new(capacity)) })
            }

            /// A queue without a limit: `put` never waits.
            pub fn unbounded() -> Self {
                $name { core: Core::new(usize::MAX, $buf::new(usize::MAX)) }
            }

            /// Adds `value`, parking while the queue is full. A cancellation point
            /// when it has to wait. `Err(PutError::Closed(value))` if the queue is
            /// closed (also when it closes while this call waits).
            pub fn put(&self, value: T) -> Result<(), PutError<T>> {
                self.put_deadline(value, None).map_err(put_error)
            }

            /// Adds `value` if there is room right now; never blocks.
            pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
                self.core.try_put(value)
            }

            /// Like [`put`](Self::put), giving up with `PutError::TimedOut(value)`
            /// after `timeout`.
            pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
                self.put_deadline(value, deadline_after(timeout)).map_err(put_error)
            }

            /// Like [`put`](Self::put), giving up at `deadline`.
            pub fn put_until(&self, value: T, deadline: Instant) -> Result<(), PutError<T>> {
                self.put_deadline(value, Some(deadline)).map_err(put_error)
            }

            /// Takes the next item, parking while the queue is empty. A
            /// cancellation point when it has to wait. `Err(GetError::Closed)`
            /// once the queue is closed and drained.
            pub fn get(&self) -> Result<T, GetError> {
                self.get_deadline(None).map_err(get_error)
            }

            /// Takes the next item if there is one; never blocks.
            pub fn try_get(&self) -> Result<T, GetError> {
                self.core.try_get()
            }

            /// Like [`get`](Self::get), giving up with `GetError::TimedOut` after
            /// `timeout`.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
                self.get_deadline(deadline_after(timeout)).map_err(get_error)
            }

            /// Like [`get`](Self::get), giving up at `deadline`.
            pub fn get_until(&self, deadline: Instant) -> Result<T, GetError> {
                self.get_deadline(Some(deadline)).map_err(get_error)
            }

            /// Closes the queue: no put succeeds any more, waiting putters get
            /// their value back, getters drain what is left and then get `Closed`.
            pub fn close(&self) {
                self.core.close()
            }

            pub fn is_closed(&self) -> bool {
                self.core.is_closed()
            }

            /// Marks one item as processed (asyncio's `task_done`).
            pub fn task_done(&self) -> Result<(), TaskDoneError> {
                self.core.task_done()
            }

            /// Parks until every item put has been marked with
            /// [`task_done`](Self::task_done). A cancellation point.
            pub fn join(&self) {
                or_raise(self.join_deadline(None))
            }

            /// Like [`join`](Self::join), giving up after `timeout`.
            pub fn join_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
                or_timed_out(self.join_deadline(deadline_after(timeout)))
            }

            /// Items put and not yet marked done.
            pub fn unfinished_tasks(&self) -> usize {
                self.core.unfinished()
            }

            /// Items queued (put and not yet taken).
            pub fn len(&self) -> usize {
                self.core.len()
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Whether a `put` would have to wait now.
            pub fn is_full(&self) -> bool {
                self.core.is_full()
            }

            /// The capacity; `None` for an unbounded queue.
            pub fn capacity(&self) -> Option<usize> {
                match self.core.capacity() {
                    usize::MAX => None,
                    n => Some(n),
                }
            }

            /// The `Result` form of [`put`](Self::put) (see "Two forms of every
            /// blocking call" in [`crate::sync`]): waits for room until `deadline`
            /// (`None`: no deadline of its own). On failure the value comes back
            /// beside the reason: `Closed`, `TimedOut`, `Cancelled`, `Elapsed`.
            pub fn put_deadline(
                &self,
                value: T,
                deadline: Option<Instant>,
            ) -> Result<(), (WaitError, T)> {
                self.core.put_deadline(value, deadline)
            }

            /// The `Result` form of [`get`](Self::get): waits for an item until
            /// `deadline` (`None`: no deadline of its own). `Err(Closed)` once
            /// the queue is closed and drained.
            pub fn get_deadline(&self, deadline: Option<Instant>) -> Result<T, WaitError> {
                self.core.get_deadline(deadline)
            }

            /// The `Result` form of [`join`](Self::join): waits until every item
            /// put was marked done, or `deadline` (`None`: no deadline of its own).
            pub fn join_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
                self.core.join_deadline(deadline)
            }

            /// Internal layer (C ABI, `ivy_queue_free`): closes the queue, drops
            /// the items left in it, and wakes every joiner with `Closed` (later
            /// joins that would wait get it too): after a free nothing waits on
            /// the queue.
            #[allow(dead_code)]
            pub(crate) fn shutdown(&self) {
                self.core.shutdown()
            }
        }

        impl<T: Send + $($bound)*> sealed::Sealed<T> for $name<T> {
            fn select_core(&self) -> CoreRef<'_, T> {
                CoreRef(&self.core)
            }
        }

        impl<T: Send + $($bound)*> SelectQueue<T> for $name<T> {}

        impl<T: Send + $($bound)*> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("len", &self.len())
                    .field("capacity", &self.capacity())
                    .field("closed", &self.is_closed())
                    .finish()
            }
        }
    };
}

queue_type! {
    /// A FIFO multi-producer multi-consumer queue for tasks and threads
    /// (asyncio's `Queue`). See the [module docs](self) for semantics.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ivy::sync::Queue;
    /// let sum = ivy::run(|| {
    ///     let q = Arc::new(Queue::bounded(2));
    ///     let p = q.clone();
    ///     ivy::spawn(move || { for i in 1..=10 { p.put(i).unwrap(); } p.close(); });
    ///     let mut sum = 0;
    ///     while let Ok(v) = q.get() { sum += v; }
    ///     sum
    /// });
    /// assert_eq!(sum, 55);
    /// ```
    Queue, Fifo, []
}

queue_type! {
    /// A queue that hands out the *smallest* item first (asyncio's
    /// `PriorityQueue`, a min-heap like `heapq`). Use `std::cmp::Reverse` for
    /// largest first, `(priority, seq, item)` tuples for stable order.
    PriorityQueue, Heap, [Ord]
}

queue_type! {
    /// A queue that hands out the most recently put item first (asyncio's
    /// `LifoQueue`).
    LifoQueue, Lifo, []
}
