//! `Event`: a flag tasks and threads can wait for (asyncio's `Event`).
//!
//! `set` stores the flag and grants every queued waiter under the state lock, so
//! a waiter queued before `set` is released even if `clear` follows at once (as
//! in asyncio, where waiters woken by `set` return `True` regardless of a later
//! `clear`). `is_set` and the waiter's first check read an atomic: no lock when
//! the event is already set.

use crate::runtime::debug::WaitReason;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::waiters::{wait_solo, WaitList, Wakeups, Woken};
use super::{deadline_after, lock_state, or_raise, or_timed_out, TimedOut, WaitError};
use crate::park;

/// A settable flag; `wait` parks until it is set.
pub struct Event {
    flag: AtomicBool,
    waiters: StdMutex<WaitList<()>>,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event {
            flag: AtomicBool::new(false),
            waiters: StdMutex::new(WaitList::new()),
        }
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut wakes = Wakeups::new();
        {
            let mut list = lock_state(&self.waiters);
            self.flag.store(true, Ordering::Release);
            list.grant_all(|| (), &mut wakes);
        }
        wakes.wake();
    }

    /// Clears the flag; later `wait`s park until the next `set`.
    pub fn clear(&self) {
        let _list = lock_state(&self.waiters);
        self.flag.store(false, Ordering::Release);
    }

    /// Closes the event (the C ABI's `ivy_event_free`): queued and later waiters
    /// of a clear event get `Err(Closed)` (see "Closing" in `waiters.rs`).
    pub(crate) fn close(&self) {
        let mut wakes = Wakeups::new();
        lock_state(&self.waiters).close(&mut wakes);
        wakes.wake();
    }

    /// Parks until the flag is set (returns at once if it is). A cancellation point
    /// when it has to wait.
    pub fn wait(&self) {
        or_raise(self.wait_deadline(None))
    }

    /// Like [`wait`](Self::wait), giving up with `Err(TimedOut)` after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        or_timed_out(self.wait_deadline(deadline_after(timeout)))
    }

    /// Like [`wait`](Self::wait), giving up with `Err(TimedOut)` at `deadline`.
    pub fn wait_until(&self, deadline: Instant) -> Result<(), TimedOut> {
        or_timed_out(self.wait_deadline(Some(deadline)))
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): waits until the flag is set or
    /// `deadline` passes (`None`: no deadline of its own).
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        if self.is_set() {
            return Ok(());
        }
        let mut list = lock_state(&self.waiters);
        if self.is_set() {
            return Ok(());
        }
        let key = list.push(park::current_unparker(), 0);
        let (_list, woken) =
            wait_solo(&self.waiters, list, |l| l, key, deadline, WaitReason::Event);
        match woken {
            Woken::Granted(()) => Ok(()),
            // Nothing to give back: a set event stays set for everyone else.
            Woken::Abandoned(e) | Woken::Interrupted((), e) => Err(e),
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
