//! Owner-checked locks, for the C ABI: who holds a lock is recorded, so that an
//! unlock by a caller that holds nothing, or a relock by the holder, is an error
//! (`IVY_EPERM`, `IVY_EDEADLK`) rather than undefined behaviour as in pthread.
//!
//! Rust code needs none of this: its guards prove ownership at compile time.
//! C has no guards, so `ivy_mutex_*`, `ivy_rwlock_*` and `ivy_cond_wait` go
//! through these types, and `src/ffi/sync.rs` only converts handles and codes.
//!
//! The caller is named by [`owner_token`]: the current task's id, or a
//! per-thread number on a plain thread. A task never changes thread, but
//! several tasks share a thread, so a task id (not the thread) is the owner.
//! Owner records sit behind a `std::sync::Mutex` held for a few instructions,
//! never across a park; the wait itself is the Rust layer's (`RawMutex`,
//! `RwLock<()>`), so fairness, closing and interruption are theirs.
//!
//! Layering: api (with the rest of `ivy::sync`); uses `RawMutex`, `RwLock`,
//! `Condition` and the current-task API (`crate::task::current`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::Instant;

use super::condition::Condition;
use super::mutex::RawMutex;
use super::rwlock::RwLock;
use super::{lock_state, WaitError};

/// Who the caller is, for the ownership checks: the current task's id, or on a
/// plain thread a per-thread number with the top bit set (task ids are far
/// below 2^63, so the two never collide).
pub(crate) fn owner_token() -> u64 {
    static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static THREAD_TOKEN: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) | (1 << 63);
    }
    match crate::task::current() {
        Some(c) => c.id().as_u64(),
        None => THREAD_TOKEN.with(|t| *t),
    }
}

/// Why an owner-checked lock operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnedLockError {
    /// The wait ended without the lock (as the Rust layer's `_deadline` calls).
    Wait(WaitError),
    /// The caller already holds the lock (a wait would never end).
    Relock,
    /// The caller does not hold the lock it releases (or waits with).
    NotOwner,
}

impl From<WaitError> for OwnedLockError {
    fn from(e: WaitError) -> OwnedLockError {
        OwnedLockError::Wait(e)
    }
}

/// A [`RawMutex`] that knows its holder (see the module comment).
pub(crate) struct OwnedRawMutex {
    raw: RawMutex,
    /// `owner_token()` of the holder, 0 when unlocked.
    owner: StdMutex<u64>,
}

impl OwnedRawMutex {
    pub(crate) fn new() -> OwnedRawMutex {
        OwnedRawMutex {
            raw: RawMutex::new(),
            owner: StdMutex::new(0),
        }
    }

    /// Locks, waiting until `deadline`; `Relock` if the caller holds it already.
    pub(crate) fn lock_deadline(&self, deadline: Option<Instant>) -> Result<(), OwnedLockError> {
        let me = owner_token();
        if *lock_state(&self.owner) == me {
            return Err(OwnedLockError::Relock);
        }
        self.raw.lock_deadline(deadline)?;
        *lock_state(&self.owner) = me;
        Ok(())
    }

    /// Unlocks; `NotOwner` (and nothing changes) unless the caller holds it.
    pub(crate) fn unlock(&self) -> Result<(), OwnedLockError> {
        let mut owner = lock_state(&self.owner);
        if *owner != owner_token() {
            return Err(OwnedLockError::NotOwner);
        }
        *owner = 0;
        // SAFETY: the caller holds the lock: its token was recorded by a
        // successful `lock_deadline` (or a condition wait's re-lock) and is
        // cleared only here and by `Condition::wait_owned`, under `owner`.
        unsafe { self.raw.unlock() };
        Ok(())
    }

    /// Closes the lock (see `RawMutex::close`): waiters get `Closed`; the
    /// holder keeps it.
    pub(crate) fn close(&self) {
        self.raw.close();
    }
}

impl Condition {
    /// `Condition::wait_raw_deadline` for an owner-checked mutex: `NotOwner`
    /// (nothing happens) unless the caller holds `mutex`; then unlocks it, waits
    /// for a notification until `deadline` and re-locks it, and the caller is
    /// its owner again -- on every return, errors included, except when the
    /// mutex was closed meanwhile (then the result is `Closed` and nobody holds
    /// it).
    pub(crate) fn wait_owned(
        &self,
        mutex: &OwnedRawMutex,
        deadline: Option<Instant>,
    ) -> Result<(), OwnedLockError> {
        let me = owner_token();
        {
            let mut owner = lock_state(&mutex.owner);
            if *owner != me {
                return Err(OwnedLockError::NotOwner);
            }
            *owner = 0;
        }
        let (r, held) = self.wait_raw_deadline(&mutex.raw, deadline);
        if held {
            *lock_state(&mutex.owner) = me;
        }
        Ok(r?)
    }
}

/// A reader-writer lock that knows its holders (see the module comment): each
/// caller holds it at most once, for reading or for writing.
pub(crate) struct OwnedRwLock {
    lock: RwLock<()>,
    /// The holders' tokens, and whether each holds it for writing.
    held: StdMutex<Vec<(u64, bool)>>,
}

impl OwnedRwLock {
    pub(crate) fn new() -> OwnedRwLock {
        OwnedRwLock {
            lock: RwLock::new(()),
            held: StdMutex::new(Vec::new()),
        }
    }

    /// Takes a hold (`write`: exclusive), waiting until `deadline`; `Relock` if
    /// the caller holds it already, either way.
    pub(crate) fn lock_deadline(
        &self,
        write: bool,
        deadline: Option<Instant>,
    ) -> Result<(), OwnedLockError> {
        let me = owner_token();
        if lock_state(&self.held).iter().any(|&(o, _)| o == me) {
            return Err(OwnedLockError::Relock);
        }
        self.lock.acquire_raw(write, deadline)?;
        lock_state(&self.held).push((me, write));
        Ok(())
    }

    /// Releases the caller's hold; `NotOwner` if it holds none.
    pub(crate) fn unlock(&self) -> Result<(), OwnedLockError> {
        let me = owner_token();
        let write = {
            let mut held = lock_state(&self.held);
            let i = held
                .iter()
                .position(|&(o, _)| o == me)
                .ok_or(OwnedLockError::NotOwner)?;
            held.swap_remove(i).1
        };
        // Outside the `held` lock: it wakes waiters.
        self.lock.release_raw(write);
        Ok(())
    }

    /// Closes the lock (see `RwLock::close`): waiters get `Closed`; holders
    /// keep their holds.
    pub(crate) fn close(&self) {
        self.lock.close();
    }
}
