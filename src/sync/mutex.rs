//! `Mutex<T>`: a lock for tasks and threads (asyncio's `Lock`), with Go's
//! `sync.Mutex` policy: barging in normal mode, hand-off in starvation mode.
//!
//! `RawMutex` is the lock without data: an atomic byte plus a wait list.
//!
//! # Why not strict FIFO hand-off
//! Handing the lock to the first waiter on every contended unlock is fair but
//! slow across workers: the next owner is usually a task on *another* worker,
//! asleep in epoll, so every lock pays a cross-thread wake-up (~4-5 us, against
//! ~6 ns uncontended) and the lock stays held-but-idle while the owner-to-be is
//! being scheduled (a convoy). Go's answer, adopted here: the lock is *released*
//! and the first waiter merely *woken*; whoever is running may take the lock
//! meanwhile, and hand-off is used only once a waiter has starved.
//!
//! # State
//! * `LOCKED`: somebody owns the lock.
//! * `QUEUED`: the wait list has parked (linked) waiters.
//! * `WOKEN`: one waiter was unlinked and woken to retry and has not finished its
//!   retry yet. At most one at a time; unlockers do not wake another meanwhile.
//! * `STARVING`: starvation mode. Implies `LOCKED` (the lock is handed over
//!   without ever being released) and no `WOKEN` waiter.
//!
//! `QUEUED`, `WOKEN` and `STARVING` only change with the wait-list mutex held;
//! `LOCKED` changes by CAS from anywhere (fast paths, barging), so every update
//! of the other bits is an atomic read-modify-write too.
//!
//! # Normal mode
//! * Fast path: lock is one CAS `0 -> LOCKED`, unlock one CAS `LOCKED -> 0`.
//! * Anybody running may take a free lock (`LOCKED` clear) with a CAS, even with
//!   waiters queued: barging. A short spin before queueing lets a busy lock be
//!   taken without parking.
//! * A contended unlock clears `LOCKED`, then, if waiters are queued, none is
//!   already woken and nobody barged in meanwhile, unlinks the first waiter with a
//!   "retry" grant, sets `WOKEN` and unparks it.
//! * The woken waiter retries: it takes the lock if free, or else goes back to
//!   the **front** of the queue (clearing `WOKEN` in the same CAS that sees the
//!   lock held, so the holder's unlock will wake it again) and parks.
//!
//! Waiters are thus served in FIFO order among themselves; only running
//! newcomers can overtake them, and only for a bounded time:
//!
//! # Starvation mode
//! A woken waiter that has waited more than [`STARVATION_THRESHOLD`] (1 ms) in
//! total and loses its retry sets `STARVING` as it re-queues. From then on unlock
//! *hands the lock off*: `LOCKED` stays set and the first waiter gets a "lock"
//! grant (strict FIFO, as before this policy); newcomers cannot barge (their CAS
//! needs `LOCKED` clear) and queue at the back. A waiter handed the lock returns
//! the mutex to normal mode if it waited less than the threshold or is the last
//! waiter; so is it when the list empties. Hence no waiter waits longer than the
//! threshold plus the hold times of the waiters ahead of it and one barger.
//!
//! # Giving up
//! A waiter interrupted or timed out removes itself (clearing `QUEUED`, and
//! `STARVING`, if it was the last). If it had been handed the lock in the race,
//! it unlocks (handing on as above); if it had been woken to retry, it clears
//! `WOKEN` and wakes the next waiter when the lock is free, so no wake-up is lost
//! (see `waiters.rs` for the grant/interruption protocol).
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

use super::waiters::{wait_solo, WaitList, Wakeups, Woken};
use super::{deadline_after, lock_state, or_raise, or_timed_out, TimedOut, WaitError};
use crate::park;

const LOCKED: u8 = 1;
const QUEUED: u8 = 2;
const WOKEN: u8 = 4;
const STARVING: u8 = 8;
/// Spin iterations (doubling pause lengths) before queueing on a held lock.
const SPIN_ROUNDS: u32 = 6;
/// A waiter that has waited longer than this switches the lock to hand-off.
pub(crate) const STARVATION_THRESHOLD: Duration = Duration::from_millis(1);

/// What an unlocker gives the first waiter.
enum Grant {
    /// Normal mode: the lock was released; try to take it (`WOKEN` is ours).
    Retry,
    /// Starvation mode: the lock is yours.
    Owned,
}

/// The lock of a [`Mutex`], without data or guard. Crate-internal: the C ABI
/// wraps it (`lock_deadline` / `unlock`).
pub(crate) struct RawMutex {
    state: AtomicU8,
    waiters: StdMutex<WaitList<Grant>>,
}

impl RawMutex {
    pub(crate) fn new() -> RawMutex {
        RawMutex {
            state: AtomicU8::new(0),
            waiters: StdMutex::new(WaitList::new()),
        }
    }

    /// Takes the lock if it is free and not in starvation mode (then the lock
    /// belongs to the waiters). Never blocks.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        match self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(s) => self.try_barge(s),
        }
    }

    /// Takes the lock if `LOCKED` and `STARVING` are clear, whatever the other
    /// bits, retrying while only they change.
    fn try_barge(&self, mut s: u8) -> bool {
        while s & (LOCKED | STARVING) == 0 {
            match self.state.compare_exchange_weak(
                s,
                s | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// Takes the lock, parking the caller until it gets it, `deadline` passes
    /// (`Err(TimedOut)`), the task is cancelled (`Err(Cancelled)`) or an enclosing
    /// scope elapses (`Err(Elapsed)`). On `Ok` the caller owns the lock and must
    /// `unlock` it exactly once; on `Err` it does not own it.
    #[inline]
    pub(crate) fn lock_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(());
        }
        self.lock_slow(deadline)
    }

    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        // Spin while the holder is (probably) running elsewhere.
        for round in 0..SPIN_ROUNDS {
            let s = self.state.load(Ordering::Relaxed);
            if s & STARVING != 0 {
                break;
            }
            if self.try_barge(s) {
                return Ok(());
            }
            for _ in 0..(1u32 << round) {
                std::hint::spin_loop();
            }
        }
        let mut list = lock_state(&self.waiters);
        // When we first queued (for the starvation test).
        let mut since: Option<Instant> = None;
        // We were woken to retry and hold the WOKEN bit.
        let mut woken = false;
        loop {
            // Take the lock, or queue (front if we were woken, back otherwise).
            let s = self.state.load(Ordering::Relaxed);
            let starving = woken && since.is_some_and(|t| t.elapsed() > STARVATION_THRESHOLD);
            let drop_woken = if woken { !WOKEN } else { !0 };
            if s & (LOCKED | STARVING) == 0 {
                if self
                    .state
                    .compare_exchange(
                        s,
                        (s | LOCKED) & drop_woken,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return Ok(());
                }
                continue;
            }
            if woken && deadline.is_some_and(|d| Instant::now() >= d) {
                // Our own deadline passed while we were being woken: give up
                // without re-queueing, passing the wake-up on.
                self.give_up_woken(list);
                return Err(WaitError::TimedOut);
            }
            // The lock is held (STARVING implies LOCKED): queue. The CAS fails
            // if it was released meanwhile, so the releaser's unlock either saw
            // QUEUED (and will wake somebody) or we retry and take it.
            let mut new = (s | QUEUED) & drop_woken;
            if starving {
                new |= STARVING;
            }
            if self
                .state
                .compare_exchange(s, new, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let me = park::current_unparker();
            let key = if woken {
                list.push_front(me, 0)
            } else {
                list.push(me, 0)
            };
            let since = *since.get_or_insert_with(Instant::now);
            let (l, outcome) =
                wait_solo(&self.waiters, list, |l| l, key, deadline, WaitReason::Lock);
            list = l.lock();
            match outcome {
                Woken::Granted(Grant::Retry) => woken = true,
                Woken::Granted(Grant::Owned) => {
                    // Handed off in starvation mode. Leave it when starvation is
                    // over (for us, or for everybody).
                    if list.is_empty() || since.elapsed() < STARVATION_THRESHOLD {
                        self.state.fetch_and(!STARVING, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Woken::Abandoned(e) => {
                    if list.is_empty() {
                        self.state
                            .fetch_and(!(QUEUED | STARVING), Ordering::Relaxed);
                    }
                    return Err(e);
                }
                Woken::Interrupted(Grant::Owned, e) => {
                    // The lock was handed to us as we gave up: release it.
                    let next = self.release_locked(&mut list);
                    drop(list);
                    if let Some(u) = next {
                        u.unpark();
                    }
                    return Err(e);
                }
                Woken::Interrupted(Grant::Retry, e) => {
                    self.give_up_woken(list);
                    return Err(e);
                }
            }
        }
    }

    /// A woken waiter leaves without retrying: it drops `WOKEN` and wakes the next
    /// waiter if the lock is free (else the holder's unlock will), so the wake-up
    /// it received is not lost.
    fn give_up_woken(&self, mut list: std::sync::MutexGuard<'_, WaitList<Grant>>) {
        self.state.fetch_and(!WOKEN, Ordering::Relaxed);
        let next = self.wake_front(&mut list);
        drop(list);
        if let Some(u) = next {
            u.unpark();
        }
    }

    /// Releases the lock.
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
        let mut s = self.state.load(Ordering::Relaxed);
        // Normal mode: release without the list lock. (STARVING can only be
        // set while we hold the lock, and the CAS fails if it was.)
        while s & STARVING == 0 {
            match self.state.compare_exchange_weak(
                s,
                s & !LOCKED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if s & QUEUED != 0 && s & WOKEN == 0 {
                        let mut list = lock_state(&self.waiters);
                        let next = self.wake_front(&mut list);
                        drop(list);
                        if let Some(u) = next {
                            u.unpark();
                        }
                    }
                    return;
                }
                Err(now) => s = now,
            }
        }
        let mut list = lock_state(&self.waiters);
        let next = self.release_locked(&mut list);
        drop(list);
        if let Some(u) = next {
            u.unpark();
        }
    }

    /// With the wait list locked and the lock owned: release the lock, handing it
    /// to the first waiter in starvation mode or waking it in normal mode.
    /// Returns whom to unpark once the list lock is dropped.
    fn release_locked(&self, list: &mut WaitList<Grant>) -> Option<park::Unparker> {
        if self.state.load(Ordering::Relaxed) & STARVING != 0 {
            if let Ok(u) = list.grant_front(Grant::Owned) {
                // LOCKED stays set: the lock passes to the waiter.
                if list.is_empty() {
                    self.state
                        .fetch_and(!(QUEUED | STARVING), Ordering::Relaxed);
                }
                return Some(u);
            }
            // (Unreachable: the waiter emptying the list clears STARVING.)
            self.state.fetch_and(!STARVING, Ordering::Relaxed);
        }
        let before = self.state.fetch_and(!LOCKED, Ordering::Release);
        if before & WOKEN != 0 {
            return None; // the woken waiter will retry
        }
        self.wake_front(list)
    }

    /// With the wait list locked: if the lock is free in normal mode, waiters are
    /// queued and none is woken yet, wake the first one to retry.
    fn wake_front(&self, list: &mut WaitList<Grant>) -> Option<park::Unparker> {
        // QUEUED / WOKEN / STARVING are stable under the list lock; LOCKED is not,
        // but a barger that takes the lock after this load will see QUEUED on
        // unlock and wake somebody then.
        let s = self.state.load(Ordering::Relaxed);
        if s & (LOCKED | WOKEN | STARVING) != 0 {
            return None;
        }
        let u = list.grant_front(Grant::Retry).ok()?;
        let clear = if list.is_empty() { QUEUED } else { 0 };
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((s | WOKEN) & !clear)
            });
        Some(u)
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }

    /// Closes the lock (the C ABI's `ivy_mutex_free`): every queued waiter wakes
    /// with `Err(Closed)`, and so does every later `lock_deadline` that has to
    /// wait (see "Closing" in `waiters.rs`). The holder, if any, keeps the lock;
    /// a waiter woken to retry that finds it free may still take it. Each closed
    /// waiter clears `QUEUED` / `STARVING` on its way out, as one giving up does.
    pub(crate) fn close(&self) {
        let mut wakes = Wakeups::new();
        lock_state(&self.waiters).close(&mut wakes);
        wakes.wake();
    }
}

/// A mutual-exclusion lock for tasks and threads, protecting a `T`.
///
/// `lock()` parks the calling task (or blocks the calling thread) until the lock
/// is free. **Fairness:** waiters are served in FIFO order among themselves, but
/// a running task may take a just-released lock before the woken waiter runs
/// (barging: no cross-worker wake-up per lock). Once a waiter has waited more than
/// 1 ms the lock switches to strict FIFO hand-off until the queue drains, so
/// nobody starves (see the module source for the protocol). While uncontended,
/// lock and unlock are one atomic CAS each.
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
        or_raise(self.lock_deadline(None))
    }

    /// Locks if the lock is free (and not reserved for a starving waiter); never
    /// blocks.
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
        or_timed_out(self.lock_deadline(deadline_after(timeout)))
    }

    /// Like [`lock`](Self::lock), giving up with `Err(TimedOut)` at `deadline`.
    pub fn lock_until(&self, deadline: Instant) -> Result<MutexGuard<'_, T>, TimedOut> {
        or_timed_out(self.lock_deadline(Some(deadline)))
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): locks, waiting until `deadline`
    /// (`None`: no deadline of its own). `Err(TimedOut)` when it passes first,
    /// `Err(Cancelled)` / `Err(Elapsed)` when the caller is interrupted (then
    /// the lock is not held, and a grant that raced with the interruption was
    /// passed on). A passed deadline makes it a try that never parks.
    ///
    /// ```
    /// use ivy::WaitError;
    /// ivy::run(|| {
    ///     let m = ivy::sync::Mutex::new(0);
    ///     let held = m.lock();
    ///     // Already held: a passed deadline gives up at once, without parking.
    ///     let now = Some(std::time::Instant::now());
    ///     assert_eq!(m.lock_deadline(now).unwrap_err(), WaitError::TimedOut);
    ///     drop(held);
    ///     *m.lock_deadline(None).unwrap() += 1;
    /// });
    /// ```
    #[inline]
    pub fn lock_deadline(&self, deadline: Option<Instant>) -> Result<MutexGuard<'_, T>, WaitError> {
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

    /// The mutex this guard holds.
    pub(crate) fn mutex(this: &Self) -> &'a Mutex<T> {
        this.mutex
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
