//! `Mutex<T>`: a FIFO-fair lock for tasks and threads (asyncio's `Lock`).
//!
//! `RawMutex` is the lock without data: an atomic byte plus a wait list.
//!
//! * `state` bit `LOCKED`: somebody owns the lock. Bit `QUEUED`: the wait list is
//!   not empty. `QUEUED` is only changed with the wait-list mutex held, and under
//!   that mutex `QUEUED` is set exactly when the list has queued waiters.
//! * Fast path: lock is one CAS `0 -> LOCKED`, unlock one CAS `LOCKED -> 0`. Both
//!   fail as soon as anybody waits, which sends them to the slow path.
//! * Slow unlock *hands the lock off*: it stays `LOCKED` and ownership passes to
//!   the first waiter, which is unparked. Newcomers cannot barge (their CAS from 0
//!   fails), so once the lock is contended it is granted in strict FIFO order:
//!   no waiter starves. The price is a convoy under heavy contention (each hand-off
//!   waits for the next owner to be scheduled); a short spin before queueing lets
//!   an uncontended-but-busy lock be taken without parking.
//! * A waiter that gives up removes itself and clears `QUEUED` if it was the last.
//!   If the lock was handed to it in the race, it hands the lock on (see
//!   `waiters.rs`), so an interrupted waiter never leaves the lock held.
//!
//! The lock is not tied to a thread: a guard may be dropped on another thread
//! than the one that locked (tasks never move, but C code may unlock anywhere).

use crate::runtime::debug::WaitReason;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::waiters::{wait_solo, WaitList, Woken};
use super::{deadline_after, lock_state, or_raise_wait, or_timed_out, TimedOut, WaitError};
use crate::park;

const LOCKED: u8 = 1;
const QUEUED: u8 = 2;
/// Spin iterations (doubling pause lengths) before queueing on a held lock.
const SPIN_ROUNDS: u32 = 6;

/// The lock of a [`Mutex`], without data or guard. Crate-internal: the C ABI
/// wraps it (`lock_deadline` / `unlock`).
pub(crate) struct RawMutex {
    state: AtomicU8,
    waiters: StdMutex<WaitList<()>>,
}

impl RawMutex {
    pub(crate) fn new() -> RawMutex {
        RawMutex {
            state: AtomicU8::new(0),
            waiters: StdMutex::new(WaitList::new()),
        }
    }

    /// Takes the lock if it is free and nobody waits. Never blocks.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, parking the caller until it is granted, `deadline` passes
    /// (`Err(TimedOut)`), the task is cancelled (`Err(Cancelled)`) or an enclosing
    /// scope elapses (`Err(Elapsed)`). On `Ok` the caller owns the lock and must
    /// `unlock` it exactly once; on `Err` it does not own it.
    #[inline]
    pub(crate) fn lock_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        if self.try_lock() {
            return Ok(());
        }
        self.lock_slow(deadline)
    }

    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        // Spin while the holder is (probably) running elsewhere and nobody queues.
        for round in 0..SPIN_ROUNDS {
            let s = self.state.load(Ordering::Relaxed);
            if s & QUEUED != 0 {
                break;
            }
            if s == 0 && self.try_lock() {
                return Ok(());
            }
            for _ in 0..(1u32 << round) {
                std::hint::spin_loop();
            }
        }
        let mut list = lock_state(&self.waiters);
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & LOCKED == 0 {
                if self
                    .state
                    .compare_exchange(s, s | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(());
                }
            } else if s & QUEUED != 0
                || self
                    .state
                    .compare_exchange(s, s | QUEUED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
        }
        let key = list.push(park::current_unparker(), 0);
        let (mut list, woken) =
            wait_solo(&self.waiters, list, |l| l, key, deadline, WaitReason::Lock);
        match woken {
            Woken::Granted(()) => Ok(()),
            Woken::Abandoned(e) => {
                if list.is_empty() {
                    self.state.fetch_and(!QUEUED, Ordering::Relaxed);
                }
                Err(e)
            }
            Woken::Interrupted((), e) => {
                // The lock was handed to us as we gave up: hand it on.
                let next = self.hand_off(&mut list);
                drop(list);
                if let Some(u) = next {
                    u.unpark();
                }
                Err(e)
            }
        }
    }

    /// Releases the lock, handing it to the first waiter if there is one.
    ///
    /// # Safety
    /// The caller owns the lock (a successful `lock_deadline` / `try_lock` not yet
    /// matched by an `unlock`). The lock is not thread-affine: any thread may
    /// release it on the owner's behalf.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.unlock_slow();
        }
    }

    #[cold]
    fn unlock_slow(&self) {
        let mut list = lock_state(&self.waiters);
        let next = self.hand_off(&mut list);
        drop(list);
        if let Some(u) = next {
            u.unpark();
        }
    }

    /// With the wait list locked and the lock owned: give the lock to the first
    /// waiter (it stays LOCKED), or release it. Returns whom to unpark.
    fn hand_off(&self, list: &mut WaitList<()>) -> Option<park::Unparker> {
        match list.grant_front(()) {
            Ok(u) => {
                if list.is_empty() {
                    // Only the owner (us) writes the state while LOCKED and the
                    // list lock is held, so a store is enough.
                    self.state.store(LOCKED, Ordering::Release);
                }
                Some(u)
            }
            Err(()) => {
                self.state.store(0, Ordering::Release);
                None
            }
        }
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }
}

/// A mutual-exclusion lock for tasks and threads, protecting a `T`.
///
/// `lock()` parks the calling task (or blocks the calling thread) until the lock
/// is free. **Fairness:** strictly FIFO once contended: the releaser hands the lock
/// to the longest waiter and newcomers cannot barge, so nobody starves. While
/// uncontended, lock and unlock are one atomic CAS each.
///
/// **No poisoning:** ivy cancellation unwinds through guards routinely, so a
/// guard dropped during an unwind just unlocks (see the module docs of
/// [`crate::sync`]).
///
/// ```
/// use std::sync::Arc;
/// let total = ivy::run(|| {
///     let m = Arc::new(ivy::sync::Mutex::new(0));
///     let hs: Vec<_> = (0..10).map(|_| {
///         let m = m.clone();
///         ivy::spawn(move || *m.lock() += 1)
///     }).collect();
///     for h in hs { h.join().unwrap(); }
///     let n = *m.lock();
///     n
/// });
/// assert_eq!(total, 10);
/// ```
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one owner at a time access to `data`, so sharing the
// mutex across threads only ever moves `T` between threads (T: Send).
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: owning the mutex owns the T.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, parking the task (or blocking the thread) until the lock is free. A
    /// cancellation point when it has to wait.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        or_raise_wait(self.raw.lock_deadline(None));
        self.guard()
    }

    /// Locks if the lock is free and nobody waits; never blocks.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if self.raw.try_lock() {
            Some(self.guard())
        } else {
            None
        }
    }

    /// Like [`lock`](Self::lock), giving up with `Err(TimedOut)` after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, TimedOut> {
        self.lock_until_opt(deadline_after(timeout))
    }

    /// Like [`lock`](Self::lock), giving up with `Err(TimedOut)` at `deadline`.
    pub fn lock_until(&self, deadline: Instant) -> Result<MutexGuard<'_, T>, TimedOut> {
        self.lock_until_opt(Some(deadline))
    }

    fn lock_until_opt(&self, deadline: Option<Instant>) -> Result<MutexGuard<'_, T>, TimedOut> {
        or_timed_out(self.raw.lock_deadline(deadline))?;
        Ok(self.guard())
    }

    /// Internal layer: lock with a deadline, reporting interruptions as errors.
    #[allow(dead_code)] // for the C ABI
    pub(crate) fn lock_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'_, T>, WaitError> {
        self.raw.lock_deadline(deadline)?;
        Ok(self.guard())
    }

    /// Whether the lock is currently held (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn guard(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            mutex: self,
            _marker: PhantomData,
        }
    }

    pub(crate) fn raw(&self) -> &RawMutex {
        &self.raw
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

/// Proof of holding a [`Mutex`]; unlocks when dropped (also during an unwind).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    /// Send iff T: Send; Sync iff T: Sync (plus the mutex reference's bounds).
    _marker: PhantomData<&'a mut T>,
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Gives up the guard without unlocking; the caller now owns the lock.
    pub(crate) fn leak(this: Self) -> &'a Mutex<T> {
        let m = this.mutex;
        std::mem::forget(this);
        m
    }

    /// Rebuilds a guard for a lock the caller owns.
    pub(crate) fn relocked(mutex: &'a Mutex<T>) -> Self {
        mutex.guard()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we own the lock, so no other reference to the
        // data exists.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only while its owner holds the lock, and each
        // guard unlocks exactly once.
        unsafe { self.mutex.raw.unlock() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
