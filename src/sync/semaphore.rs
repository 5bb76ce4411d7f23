//! `Semaphore` (RAII permits) and `BoundedSemaphore` (asyncio's, with an
//! over-release check).
//!
//! `state` packs the number of available permits (`state >> 1`) with a `QUEUED`
//! bit (bit 0) that is set exactly when the wait list has queued waiters; like the
//! mutex's, it only changes with the wait-list mutex held.
//!
//! * Fast paths (one CAS): acquire when `QUEUED` is clear and enough permits are
//!   available; release when `QUEUED` is clear.
//! * While `QUEUED` is set no fast path touches `state`, so under the list mutex
//!   it is stable: a release adds its permits and grants waiters *in FIFO order*
//!   while the first one's request fits. A large `acquire_many` at the front
//!   blocks later small ones (no starvation of large requests, as tokio's).
//! * A waiter that gives up without a grant re-runs the grants (it may have been
//!   the large request holding the others back); one granted in the race returns
//!   its permits the same way. Either way no permit is lost.

use crate::runtime::debug::WaitReason;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::waiters::{wait_solo, WaitList, Wakeups, Woken};
use super::{deadline_after, lock_state, or_raise, or_timed_out, TimedOut, WaitError};
use crate::park;

const QUEUED: usize = 1;
const SHIFT: u32 = 1;

/// A counting semaphore for tasks and threads (asyncio's `Semaphore`).
///
/// `acquire()` parks until a permit is available and returns a
/// [`SemaphorePermit`] that gives it back when dropped (also when the task is
/// cancelled and unwinds). FIFO-fair: permits go to waiters in arrival order.
pub struct Semaphore {
    state: AtomicUsize,
    waiters: StdMutex<WaitList<()>>,
}

impl Semaphore {
    /// The largest number of permits a semaphore can hold.
    pub const MAX_PERMITS: usize = usize::MAX >> 2;

    /// # Panics
    /// If `permits > Semaphore::MAX_PERMITS`.
    pub fn new(permits: usize) -> Semaphore {
        assert!(
            permits <= Self::MAX_PERMITS,
            "ivy: a semaphore holds at most {} permits, not {permits}",
            Self::MAX_PERMITS
        );
        Semaphore {
            state: AtomicUsize::new(permits << SHIFT),
            waiters: StdMutex::new(WaitList::new()),
        }
    }

    /// Permits available right now (a snapshot).
    pub fn available_permits(&self) -> usize {
        self.state.load(Ordering::Acquire) >> SHIFT
    }

    /// Takes one permit, parking until one is available. A cancellation point.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.acquire_many(1)
    }

    /// Takes `n` permits at once (all or nothing), parking until they are.
    ///
    /// # Panics
    /// If `n > Semaphore::MAX_PERMITS` (it could never be satisfied).
    pub fn acquire_many(&self, n: usize) -> SemaphorePermit<'_> {
        or_raise(self.acquire_many_deadline(n, None))
    }

    /// Takes one permit if one is available and nobody waits; never blocks.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if available and nobody waits; never blocks.
    pub fn try_acquire_many(&self, n: usize) -> Option<SemaphorePermit<'_>> {
        if n <= Self::MAX_PERMITS && self.try_fast(n) {
            Some(self.permit(n))
        } else {
            None
        }
    }

    /// Like [`acquire`](Self::acquire), giving up with `Err(TimedOut)` after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>, TimedOut> {
        or_timed_out(self.acquire_deadline(deadline_after(timeout)))
    }

    /// Like [`acquire_many`](Self::acquire_many), giving up after `timeout`.
    pub fn acquire_many_timeout(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<SemaphorePermit<'_>, TimedOut> {
        or_timed_out(self.acquire_many_deadline(n, deadline_after(timeout)))
    }

    /// Like [`acquire`](Self::acquire), giving up at `deadline`.
    pub fn acquire_until(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, TimedOut> {
        or_timed_out(self.acquire_deadline(Some(deadline)))
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): takes one permit, waiting until
    /// `deadline` (`None`: no deadline of its own). `Err(TimedOut)` when it
    /// passes first, `Err(Cancelled)` / `Err(Elapsed)` when the caller is
    /// interrupted; no permit is taken on any error.
    pub fn acquire_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<SemaphorePermit<'_>, WaitError> {
        self.acquire_many_deadline(1, deadline)
    }

    /// The `Result` form of [`acquire_many`](Self::acquire_many): as
    /// [`acquire_deadline`](Self::acquire_deadline), for `n` permits at once.
    ///
    /// # Panics
    /// If `n > Semaphore::MAX_PERMITS` (it could never be satisfied).
    pub fn acquire_many_deadline(
        &self,
        n: usize,
        deadline: Option<Instant>,
    ) -> Result<SemaphorePermit<'_>, WaitError> {
        check_request(n);
        self.acquire_raw(n, deadline)?;
        Ok(self.permit(n))
    }

    /// Adds `n` permits (waking waiters they satisfy).
    ///
    /// # Panics
    /// If the total would exceed `Semaphore::MAX_PERMITS`.
    pub fn add_permits(&self, n: usize) {
        if let Err(total) = self.release_checked(n, Self::MAX_PERMITS) {
            panic!(
                "ivy: adding {n} permits to a semaphore would exceed MAX_PERMITS ({} > {})",
                total,
                Self::MAX_PERMITS
            );
        }
    }

    fn permit(&self, n: usize) -> SemaphorePermit<'_> {
        SemaphorePermit { sem: self, n }
    }

    fn try_fast(&self, n: usize) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & QUEUED != 0 || (s >> SHIFT) < n {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                s - (n << SHIFT),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Takes `n` permits without a permit guard (the caller keeps them, and
    /// gives them back with `release`), waiting until `deadline`: for the C ABI
    /// and `BoundedSemaphore`. `n` must be at most `MAX_PERMITS`.
    pub(crate) fn acquire_raw(&self, n: usize, deadline: Option<Instant>) -> Result<(), WaitError> {
        debug_assert!(n <= Self::MAX_PERMITS);
        if self.try_fast(n) {
            return Ok(());
        }
        let mut list = lock_state(&self.waiters);
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & QUEUED == 0 {
                if (s >> SHIFT) >= n {
                    if self
                        .state
                        .compare_exchange(s, s - (n << SHIFT), Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Ok(());
                    }
                } else if self
                    .state
                    .compare_exchange(s, s | QUEUED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
            } else {
                break;
            }
        }
        let key = list.push(park::current_unparker(), n);
        let (held, woken) = wait_solo(
            &self.waiters,
            list,
            |l| l,
            key,
            deadline,
            WaitReason::Semaphore,
        );
        let (give_back, result) = match woken {
            Woken::Granted(()) => return Ok(()),
            // Our departure may unblock the waiters behind us: re-run the grants.
            Woken::Abandoned(e) => (0, Err(e)),
            Woken::Interrupted((), e) => (n, Err(e)),
        };
        let mut list = held.lock();
        let mut wakes = Wakeups::new();
        self.release_locked(&mut list, give_back, &mut wakes);
        drop(list);
        wakes.wake();
        result
    }

    /// Returns `n` permits taken by `acquire_raw` (crate-internal, as that).
    pub(crate) fn release(&self, n: usize) {
        // Permits handed out by this semaphore cannot overflow it when returned.
        let _ = self.release_checked(n, usize::MAX >> SHIFT);
    }

    /// Returns `n` permits unless the total would exceed `bound`; `Err(total)`
    /// then, with nothing changed.
    pub(crate) fn release_checked(&self, n: usize, bound: usize) -> Result<(), usize> {
        loop {
            let mut s = self.state.load(Ordering::Relaxed);
            while s & QUEUED == 0 {
                let total = (s >> SHIFT).saturating_add(n);
                if total > bound {
                    return Err(total);
                }
                match self.state.compare_exchange_weak(
                    s,
                    total << SHIFT,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(()),
                    Err(actual) => s = actual,
                }
            }
            let mut list = lock_state(&self.waiters);
            if list.is_empty() {
                // The waiters left meanwhile; back to the fast path.
                continue;
            }
            // QUEUED is set and stable while we hold the list.
            let total = (self.state.load(Ordering::Relaxed) >> SHIFT).saturating_add(n);
            if total > bound {
                return Err(total);
            }
            let mut wakes = Wakeups::new();
            self.release_locked(&mut list, n, &mut wakes);
            drop(list);
            wakes.wake();
            return Ok(());
        }
    }

    /// With the wait list locked: add `n` permits and grant queued waiters in FIFO
    /// order while the first one's request fits.
    fn release_locked(&self, list: &mut WaitList<()>, n: usize, wakes: &mut Wakeups) {
        if list.is_empty() {
            // QUEUED may still be set by the waiter that just left, or be clear
            // with fast paths racing with us: add and clear QUEUED atomically.
            let _ = self
                .state
                .fetch_update(Ordering::Release, Ordering::Relaxed, |s| {
                    Some(((s >> SHIFT) + n) << SHIFT)
                });
            return;
        }
        // QUEUED is set: nobody else writes `state` while we hold the list.
        let mut avail = (self.state.load(Ordering::Relaxed) >> SHIFT) + n;
        while let Some(req) = list.front_req() {
            if req > avail {
                break;
            }
            avail -= req;
            if let Ok(u) = list.grant_front(()) {
                wakes.push(u);
            }
        }
        let queued = if list.is_empty() { 0 } else { QUEUED };
        self.state
            .store((avail << SHIFT) | queued, Ordering::Release);
    }

    /// Closes the semaphore (the C ABI's `ivy_semaphore_free`): queued and later
    /// waiting acquirers get `Err(Closed)` (see "Closing" in `waiters.rs`); the
    /// now empty list clears `QUEUED`, so the fast paths work on as before.
    pub(crate) fn close(&self) {
        let mut wakes = Wakeups::new();
        {
            let mut list = lock_state(&self.waiters);
            list.close(&mut wakes);
            self.release_locked(&mut list, 0, &mut wakes);
        }
        wakes.wake();
    }

    /// Number of tasks and threads waiting for permits (a snapshot).
    pub fn waiters(&self) -> usize {
        lock_state(&self.waiters).len()
    }
}

fn check_request(n: usize) {
    assert!(
        n <= Semaphore::MAX_PERMITS,
        "ivy: cannot acquire {n} permits: more than Semaphore::MAX_PERMITS ({})",
        Semaphore::MAX_PERMITS
    );
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .finish()
    }
}

/// Permits taken from a [`Semaphore`]; returned when dropped.
#[must_use = "the permit is returned as soon as it is dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    n: usize,
}

impl SemaphorePermit<'_> {
    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.n
    }

    /// Keeps the permits out of the semaphore for good (they are not returned on
    /// drop); use [`Semaphore::add_permits`] to put them back by hand.
    pub fn forget(mut self) {
        self.n = 0;
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.sem.release(self.n);
        }
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("permits", &self.n)
            .finish()
    }
}

/// asyncio's `BoundedSemaphore`: explicit `acquire` / `release`, where a release
/// that would raise the count above the initial value is refused with
/// [`OverReleaseError`] (asyncio raises `ValueError`) and changes nothing.
pub struct BoundedSemaphore {
    sem: Semaphore,
    bound: usize,
}

/// `BoundedSemaphore::release` beyond the initial count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverReleaseError {
    /// The initial (and maximum) permit count.
    pub bound: usize,
}

impl fmt::Display for OverReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BoundedSemaphore released too many times (would exceed its initial value {})",
            self.bound
        )
    }
}

impl std::error::Error for OverReleaseError {}

impl BoundedSemaphore {
    /// # Panics
    /// If `permits > Semaphore::MAX_PERMITS`.
    pub fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            sem: Semaphore::new(permits),
            bound: permits,
        }
    }

    /// Takes a permit, parking until one is available. A cancellation point.
    pub fn acquire(&self) {
        or_raise(self.acquire_deadline(None))
    }

    /// Takes a permit if one is available and nobody waits; never blocks.
    pub fn try_acquire(&self) -> bool {
        self.sem.try_fast(1)
    }

    /// Like [`acquire`](Self::acquire), giving up with `Err(TimedOut)` after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        or_timed_out(self.acquire_deadline(deadline_after(timeout)))
    }

    /// Returns a permit. `Err` (and no change) if that would make the available
    /// count exceed the initial value.
    pub fn release(&self) -> Result<(), OverReleaseError> {
        self.sem
            .release_checked(1, self.bound)
            .map_err(|_| OverReleaseError { bound: self.bound })
    }

    pub fn available_permits(&self) -> usize {
        self.sem.available_permits()
    }

    /// The initial (and maximum) number of permits.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): takes a permit, waiting until
    /// `deadline` (`None`: no deadline of its own). No permit is taken on any
    /// error.
    pub fn acquire_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        self.sem.acquire_raw(1, deadline)
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("available_permits", &self.available_permits())
            .field("bound", &self.bound)
            .finish()
    }
}
