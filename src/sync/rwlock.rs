//! `RwLock<T>`: a FIFO, phase-fair reader-writer lock for tasks and threads.
//!
//! State under one small lock: the number of active readers, whether a writer is
//! active, and one FIFO of waiting readers and writers (`req` says which).
//!
//! * A reader enters at once only if no writer is active *and nobody queues*; a
//!   writer only if the lock is idle and nobody queues. Otherwise they queue.
//! * On release the lock is handed to the front of the queue: a writer alone, or
//!   the whole run of readers up to the next writer (they share the phase).
//!
//! So readers and writers alternate in arrival order: no writer starves behind a
//! stream of readers, and no reader starves behind a stream of writers.
//! A waiter that gives up re-runs the hand-off (a departing writer at the front may
//! release the readers behind it); one granted in the race releases what it got.
//!
//! No poisoning, for the reason given in the [`crate::sync`] docs.

use crate::runtime::debug::WaitReason;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::waiters::{wait_solo, WaitList, Wakeups, Woken};
use super::{deadline_after, lock_state, or_raise, or_timed_out, TimedOut, WaitError};
use crate::park;

const READ: usize = 0;
const WRITE: usize = 1;

struct State {
    readers: usize,
    writer: bool,
    waiters: WaitList<()>,
}

impl State {
    /// Hands the lock to the front of the queue while it fits.
    fn grant(&mut self, wakes: &mut Wakeups) {
        if self.writer {
            return;
        }
        while let Some(req) = self.waiters.front_req() {
            if req == WRITE {
                if self.readers == 0 {
                    self.writer = true;
                    wakes.push_opt(self.waiters.grant_front(()).ok());
                }
                return;
            }
            self.readers += 1;
            wakes.push_opt(self.waiters.grant_front(()).ok());
        }
    }

    fn release(&mut self, kind: usize, wakes: &mut Wakeups) {
        if kind == WRITE {
            self.writer = false;
        } else {
            self.readers -= 1;
        }
        self.grant(wakes);
    }
}

/// A reader-writer lock protecting a `T`. See the module docs for fairness.
pub struct RwLock<T: ?Sized> {
    state: StdMutex<State>,
    data: UnsafeCell<T>,
}

// SAFETY: readers share `&T` across threads (T: Sync), a writer gets `&mut T`
// possibly on another thread than the creator (T: Send).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}
// SAFETY: owning the lock owns the T.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}

impl<T> RwLock<T> {
    pub fn new(value: T) -> RwLock<T> {
        RwLock {
            state: StdMutex::new(State {
                readers: 0,
                writer: false,
                waiters: WaitList::new(),
            }),
            data: UnsafeCell::new(value),
        }
    }

    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access, parking while a writer holds or waits ahead. A cancellation
    /// point when it has to wait.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        or_raise(self.read_deadline(None))
    }

    /// Exclusive access, parking until every earlier holder is gone.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        or_raise(self.write_deadline(None))
    }

    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.try_acquire(READ).then(|| self.read_guard())
    }

    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.try_acquire(WRITE).then(|| self.write_guard())
    }

    /// Like [`read`](Self::read), giving up with `Err(TimedOut)` after `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> Result<RwLockReadGuard<'_, T>, TimedOut> {
        or_timed_out(self.read_deadline(deadline_after(timeout)))
    }

    /// Like [`write`](Self::write), giving up with `Err(TimedOut)` after `timeout`.
    pub fn write_timeout(&self, timeout: Duration) -> Result<RwLockWriteGuard<'_, T>, TimedOut> {
        or_timed_out(self.write_deadline(deadline_after(timeout)))
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): shared access, waiting until
    /// `deadline` (`None`: no deadline of its own); nothing is held on any error.
    pub fn read_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<RwLockReadGuard<'_, T>, WaitError> {
        self.acquire(READ, deadline)?;
        Ok(self.read_guard())
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): exclusive access, waiting until
    /// `deadline` (`None`: no deadline of its own); nothing is held on any error.
    pub fn write_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<RwLockWriteGuard<'_, T>, WaitError> {
        self.acquire(WRITE, deadline)?;
        Ok(self.write_guard())
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn read_guard(&self) -> RwLockReadGuard<'_, T> {
        RwLockReadGuard {
            lock: self,
            _marker: PhantomData,
        }
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, T> {
        RwLockWriteGuard {
            lock: self,
            _marker: PhantomData,
        }
    }

    fn try_acquire(&self, kind: usize) -> bool {
        let mut s = lock_state(&self.state);
        Self::enter_now(&mut s, kind)
    }

    fn enter_now(s: &mut State, kind: usize) -> bool {
        if s.writer || !s.waiters.is_empty() {
            return false;
        }
        if kind == READ {
            s.readers += 1;
            true
        } else if s.readers == 0 {
            s.writer = true;
            true
        } else {
            false
        }
    }

    fn acquire(&self, kind: usize, deadline: Option<Instant>) -> Result<(), WaitError> {
        let mut s = lock_state(&self.state);
        if Self::enter_now(&mut s, kind) {
            return Ok(());
        }
        let key = s.waiters.push(park::current_unparker(), kind);
        let (held, woken) = wait_solo(
            &self.state,
            s,
            |s| &mut s.waiters,
            key,
            deadline,
            WaitReason::Lock,
        );
        let mut wakes = Wakeups::new();
        let r = match woken {
            Woken::Granted(()) => return Ok(()),
            Woken::Abandoned(e) => {
                held.lock().grant(&mut wakes);
                Err(e)
            }
            Woken::Interrupted((), e) => {
                held.lock().release(kind, &mut wakes);
                Err(e)
            }
        };
        wakes.wake();
        r
    }

    /// Closes the lock (the C ABI's `ivy_rwlock_free`): queued and later waiting
    /// readers and writers get `Err(Closed)` (see "Closing" in `waiters.rs`);
    /// holders keep their hold.
    pub(crate) fn close(&self) {
        let mut wakes = Wakeups::new();
        lock_state(&self.state).waiters.close(&mut wakes);
        wakes.wake();
    }

    fn release(&self, kind: usize) {
        let mut wakes = Wakeups::new();
        lock_state(&self.state).release(kind, &mut wakes);
        wakes.wake();
    }
}

/// Holds without guards, for the owner-checked lock of the C ABI
/// (`sync::owned`), which keeps its holders in a table of its own. Only on a
/// lock with no data: a release that matches no hold corrupts the counts (the
/// caller's bug) but cannot give access to anything.
impl RwLock<()> {
    /// Takes a hold (`write`: exclusive), waiting until `deadline`.
    pub(crate) fn acquire_raw(
        &self,
        write: bool,
        deadline: Option<Instant>,
    ) -> Result<(), WaitError> {
        self.acquire(if write { WRITE } else { READ }, deadline)
    }

    /// Releases a hold taken by `acquire_raw` with the same `write`.
    pub(crate) fn release_raw(&self, write: bool) {
        self.release(if write { WRITE } else { READ })
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

/// Shared access to an [`RwLock`]; released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _marker: PhantomData<&'a T>,
}

/// Exclusive access to an [`RwLock`]; released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _marker: PhantomData<&'a mut T>,
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while its phase has no writer, so only
        // shared references to the data exist.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(READ);
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard is the only holder of the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: a write guard is the only holder; `&mut self` is the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(WRITE);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
