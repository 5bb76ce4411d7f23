//! `WaitGroup`: wait for a counted set of jobs to finish (Go's `sync.WaitGroup`).
//!
//! A counter and a wait list under one lock. `done` bringing the counter to zero
//! grants every waiter; `wait` returns at once when the counter is zero. Unlike
//! Go, a `done` without a matching `add` is an error value, not a panic.

use crate::runtime::debug::WaitReason;
use std::fmt;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::waiters::{wait_solo, WaitList, Wakeups, Woken};
use super::{deadline_after, lock_state, or_raise, or_timed_out, TimedOut, WaitError};
use crate::park;

struct State {
    count: usize,
    waiters: WaitList<()>,
}

/// A counter of outstanding jobs; `wait` parks until it is zero.
///
/// ```
/// use std::sync::Arc;
/// ivy::run(|| {
///     let wg = Arc::new(ivy::sync::WaitGroup::new());
///     for _ in 0..4 {
///         wg.add(1);
///         let wg = wg.clone();
///         ivy::spawn(move || wg.done().unwrap());
///     }
///     wg.wait();
///     assert_eq!(wg.count(), 0);
/// });
/// ```
pub struct WaitGroup {
    state: StdMutex<State>,
}

/// `WaitGroup::done` called more times than `add` counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitGroupError;

impl fmt::Display for WaitGroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WaitGroup::done called more times than add counted")
    }
}

impl std::error::Error for WaitGroupError {}

impl Default for WaitGroup {
    fn default() -> Self {
        WaitGroup::new()
    }
}

impl WaitGroup {
    pub fn new() -> WaitGroup {
        WaitGroup {
            state: StdMutex::new(State {
                count: 0,
                waiters: WaitList::new(),
            }),
        }
    }

    /// Adds `n` outstanding jobs.
    ///
    /// # Panics
    /// If the counter would overflow `usize`.
    pub fn add(&self, n: usize) {
        let mut s = lock_state(&self.state);
        s.count = s
            .count
            .checked_add(n)
            .expect("ivy: WaitGroup counter overflow");
    }

    /// Internal layer (C ABI): `add` that reports an overflow (and changes
    /// nothing) instead of panicking.
    pub(crate) fn try_add(&self, n: usize) -> Result<(), ()> {
        let mut s = lock_state(&self.state);
        s.count = s.count.checked_add(n).ok_or(())?;
        Ok(())
    }

    /// Marks one job finished; wakes the waiters when none is left. `Err` (and no
    /// change) if the counter is already zero.
    pub fn done(&self) -> Result<(), WaitGroupError> {
        let mut wakes = Wakeups::new();
        {
            let mut s = lock_state(&self.state);
            if s.count == 0 {
                return Err(WaitGroupError);
            }
            s.count -= 1;
            if s.count == 0 {
                s.waiters.grant_all(|| (), &mut wakes);
            }
        }
        wakes.wake();
        Ok(())
    }

    /// The number of outstanding jobs (a snapshot).
    pub fn count(&self) -> usize {
        lock_state(&self.state).count
    }

    /// Closes the wait group (the C ABI's `ivy_waitgroup_free`): queued and later
    /// waiters of a non-zero count get `Err(Closed)` (see "Closing" in
    /// `waiters.rs`).
    pub(crate) fn close(&self) {
        let mut wakes = Wakeups::new();
        lock_state(&self.state).waiters.close(&mut wakes);
        wakes.wake();
    }

    /// Parks until the counter is zero. A cancellation point when it has to wait.
    pub fn wait(&self) {
        or_raise(self.wait_deadline(None))
    }

    /// Like [`wait`](Self::wait), giving up with `Err(TimedOut)` after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        or_timed_out(self.wait_deadline(deadline_after(timeout)))
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): waits until the counter is zero
    /// or `deadline` passes (`None`: no deadline of its own).
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        let mut s = lock_state(&self.state);
        if s.count == 0 {
            return Ok(());
        }
        let key = s.waiters.push(park::current_unparker(), 0);
        let (_s, woken) = wait_solo(
            &self.state,
            s,
            |s| &mut s.waiters,
            key,
            deadline,
            WaitReason::Event,
        );
        match woken {
            Woken::Granted(()) => Ok(()),
            Woken::Abandoned(e) | Woken::Interrupted((), e) => Err(e),
        }
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish()
    }
}
