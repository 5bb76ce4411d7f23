//! `Condition`: a condition variable working with ivy's [`Mutex`] (asyncio's
//! `Condition`, std's `Condvar`).
//!
//! `wait(guard)` queues the caller on the condition *before* unlocking the mutex,
//! so a `notify` issued by anyone who takes the mutex after that cannot be missed.
//! Notifications are grants: `notify_one` unlinks the first waiter and marks it
//! notified. A waiter interrupted (cancelled, scope elapsed) after being notified
//! passes the notification on to the next waiter, so `notify_one` is never lost.
//! A waiter whose own deadline races with a notification counts as notified.
//!
//! On interruption the Rust API unwinds *without* re-taking the mutex: the guard
//! was moved into `wait`, so no frame up the stack believes it holds the lock.
//! The C-facing `wait_raw_deadline` re-takes the lock in every case (pthread and
//! asyncio semantics), shielded from the interruption it then reports.
//!
//! Any number of mutexes may be used with one condition; the usual discipline
//! (check the predicate under the mutex, wait in a loop) applies, as spurious
//! returns are possible in principle (`wait_while` does the loop).

use crate::runtime::debug::WaitReason;
use std::fmt;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::mutex::{Mutex, MutexGuard, RawMutex};
use super::waiters::{wait_solo, WaitList, Woken};
use super::{deadline_after, lock_state, or_raise, WaitError};
use crate::park;

/// A condition variable for tasks and threads. See the module docs.
///
/// ```
/// use std::sync::Arc;
/// use ivy::sync::{Condition, Mutex};
/// ivy::run(|| {
///     let pair = Arc::new((Mutex::new(false), Condition::new()));
///     let p = pair.clone();
///     let h = ivy::spawn(move || { *p.0.lock() = true; p.1.notify_one(); });
///     let (m, c) = &*pair;
///     let g = c.wait_while(m.lock(), |ready| !*ready);
///     assert!(*g);
///     drop(g);
///     h.join().unwrap();
/// });
/// ```
pub struct Condition {
    waiters: StdMutex<WaitList<()>>,
}

/// Whether a timed condition wait returned because its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl Condition {
    pub fn new() -> Condition {
        Condition {
            waiters: StdMutex::new(WaitList::new()),
        }
    }

    /// Unlocks the guard's mutex, parks until notified, re-locks and returns the
    /// guard. A cancellation point: on cancellation it unwinds with the mutex
    /// *unlocked*.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        or_raise(self.wait_deadline(guard, None))
    }

    /// Like [`wait`](Self::wait), returning after `timeout` at the latest (with the
    /// mutex locked again in both cases).
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        self.wait_until_opt(guard, deadline_after(timeout))
    }

    /// Like [`wait`](Self::wait), returning at `deadline` at the latest.
    pub fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Instant,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        self.wait_until_opt(guard, Some(deadline))
    }

    fn wait_until_opt<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let mutex = MutexGuard::mutex(&guard);
        match self.wait_deadline(guard, deadline) {
            Ok(g) => (g, WaitTimeoutResult(false)),
            // Re-taken as `wait` would (a cancellation point).
            Err(WaitError::TimedOut) => (mutex.lock(), WaitTimeoutResult(true)),
            Err(e) => {
                let e = e.raise_interrupt();
                unreachable!("ivy: unexpected {e:?} from Condition::wait_timeout")
            }
        }
    }

    /// The `Result` form of [`wait`](Self::wait) (see "Two forms of every
    /// blocking call" in [`crate::sync`]): unlocks the guard's mutex, waits for
    /// a notification until `deadline` (`None`: no deadline of its own), and
    /// re-locks it. `Ok` gives the guard back (notified, or woken spuriously:
    /// re-check the predicate). On every error -- `TimedOut`, `Cancelled`,
    /// `Elapsed` -- the mutex is **not** held on return (the guard was
    /// consumed): lock it again if needed. A passed deadline gives
    /// `Err(TimedOut)` without parking.
    pub fn wait_deadline<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, T>, WaitError> {
        let mutex: &'a Mutex<T> = MutexGuard::leak(guard);
        self.wait_unlocked(mutex.raw(), deadline)?;
        mutex.lock_deadline(None)
    }

    /// Waits while `condition` holds for the protected value (checked first, under
    /// the lock), and returns the guard once it does not.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Like [`wait_while`](Self::wait_while), giving up after `timeout`; the result
    /// says whether it timed out with the condition still true.
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let deadline = deadline_after(timeout);
        while condition(&mut *guard) {
            let (g, r) = self.wait_until_opt(guard, deadline);
            guard = g;
            if r.timed_out() {
                let still = condition(&mut *guard);
                return (guard, WaitTimeoutResult(still));
            }
        }
        (guard, WaitTimeoutResult(false))
    }

    /// Wakes the longest-waiting waiter, if any.
    pub fn notify_one(&self) {
        let next = lock_state(&self.waiters).grant_front(()).ok();
        if let Some(u) = next {
            u.unpark();
        }
    }

    /// Wakes up to `n` waiters (asyncio's `notify(n)`).
    pub fn notify(&self, n: usize) {
        let mut wakes = super::waiters::Wakeups::new();
        {
            let mut list = lock_state(&self.waiters);
            for _ in 0..n {
                match list.grant_front(()) {
                    Ok(u) => wakes.push(u),
                    Err(()) => break,
                }
            }
        }
        wakes.wake();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let mut wakes = super::waiters::Wakeups::new();
        lock_state(&self.waiters).grant_all(|| (), &mut wakes);
        wakes.wake();
    }

    /// Closes the condition (the C ABI's `ivy_cond_free`): queued and later
    /// waiters get `Err(Closed)` (see "Closing" in `waiters.rs`).
    pub(crate) fn close(&self) {
        let mut wakes = super::waiters::Wakeups::new();
        lock_state(&self.waiters).close(&mut wakes);
        wakes.wake();
    }

    /// Raw form (for `Condition::wait_owned`, the C ABI): the caller holds `mutex`. Unlocks it, waits for a
    /// notification until `deadline`, and re-locks it. **In every case, also on
    /// `Err`, the mutex is held again on return** (re-taken shielded from
    /// cancellation and scope deadlines), as pthread_cond_timedwait does, with one
    /// exception: a closed mutex (freed through the C ABI) cannot be re-taken
    /// once someone else holds it. The second value says whether the mutex is
    /// held; when it is not, the result is `Err(Closed)`.
    pub(crate) fn wait_raw_deadline(
        &self,
        mutex: &RawMutex,
        deadline: Option<Instant>,
    ) -> (Result<(), WaitError>, bool) {
        let r = self.wait_unlocked(mutex, deadline);
        match crate::cancel_scope::shield(|| mutex.lock_deadline(None)) {
            Ok(()) => (r, true),
            // Shielded and without deadline, the lock fails only when closed.
            Err(e) => {
                debug_assert_eq!(e, WaitError::Closed);
                (Err(WaitError::Closed), false)
            }
        }
    }

    /// Queues the caller, unlocks `mutex` (owned by the caller), waits. Returns
    /// with the mutex unlocked.
    fn wait_unlocked(&self, mutex: &RawMutex, deadline: Option<Instant>) -> Result<(), WaitError> {
        let mut list = lock_state(&self.waiters);
        let key = list.push(park::current_unparker(), 0);
        drop(list);
        // SAFETY: the caller owns the lock (it gave up its guard, or holds the raw
        // lock per this function's contract).
        unsafe { mutex.unlock() };
        let list = lock_state(&self.waiters);
        let (list, woken) = wait_solo(&self.waiters, list, |l| l, key, deadline, WaitReason::Event);
        match woken {
            Woken::Granted(()) => Ok(()),
            Woken::Abandoned(e) => Err(e),
            Woken::Interrupted((), e) => {
                // Pass the notification on rather than swallow it.
                let mut list = list.lock();
                let next = list.grant_front(()).ok();
                drop(list);
                if let Some(u) = next {
                    u.unpark();
                }
                Err(e)
            }
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").finish_non_exhaustive()
    }
}
