//! Locks, semaphores, events and conditions in the C ABI, over `ivy::sync`'s
//! `Result` layer (`OwnedRawMutex::lock_deadline`, `Semaphore::acquire_raw`,
//! `Event::wait_deadline`, ...): a cancelled C task gets `IVY_ECANCELED`
//! from the call it is blocked in, never an unwind.
//!
//! Every blocking call takes a deadline (`-1`: none; a passed one makes it a
//! try that returns `IVY_ETIMEDOUT` instead of waiting, and never parks: see
//! `wait_solo` in `sync/waiters.rs`). All of them work from
//! tasks and from plain threads alike, and they may be shared between the two.
//!
//! Ownership checks that C's `pthread` leaves undefined are errors here: the
//! mutex and rwlock are `sync::OwnedRawMutex` / `sync::OwnedRwLock`, which record
//! who holds them (task id, or a per-thread id for plain threads), so unlocking
//! a lock one does not hold is `IVY_EPERM` rather than corrupting the lock; this
//! file only maps their `OwnedLockError` to codes.
//!
//! # Freeing: one rule for every primitive (and queues, and sockets)
//! `ivy_*_free` always succeeds on a live handle: it removes the handle from its
//! table (every copy is `IVY_EBADF` from then on) and *closes* the object, which
//! wakes every task and thread blocked on it with `IVY_ECLOSED` (the Rust layer's
//! `close()`, built on `WaitList::close`: see `sync/waiters.rs`). Calls already
//! inside the object hold an `Arc` of it, so its memory goes when the last of
//! them returns. Why not pthread's "undefined if in use" or the `IVY_EBUSY` of
//! earlier versions: a C program tearing down (a server shutting a subsystem)
//! would otherwise have to know and unblock every waiter first, and the rules
//! differed per primitive. Closing a socket (`ivy_tcp_close`) follows the same
//! rule. A holder of a freed lock keeps it (nothing to release: its unlock is
//! `IVY_EBADF`), and a waiter that races with the free may still get the lock if
//! it is free at that instant: the free then happened after its call.

use std::os::raw::c_int;
use std::sync::Arc;

use super::error::*;
use super::handle::{HandleTable, Kind};
use super::time::to_instant;
use super::{guard, out_ptr, write_out};
use crate::sync::{Barrier, Condition, Event, Semaphore, WaitGroup};
use crate::sync::{OwnedLockError, OwnedRawMutex, OwnedRwLock};

fn lock_error(e: OwnedLockError) -> c_int {
    match e {
        OwnedLockError::Wait(e) => wait_error(e),
        OwnedLockError::Relock => IVY_EDEADLK,
        OwnedLockError::NotOwner => IVY_EPERM,
    }
}

// ---------------------------------------------------------------------------
// Mutex

/// A handle to a mutex (asyncio's `Lock`), not recursive, with Go's
/// `sync.Mutex` fairness policy: waiters queue in FIFO order, but an unlock
/// releases the lock and wakes the first waiter rather than handing it over, so
/// a running task or thread may take the lock first (barging: no cross-worker
/// wake-up per lock). Once a waiter has waited more than 1 ms the mutex hands
/// the lock directly to the first waiter (strict FIFO, no barging) until the
/// queue drains, so no waiter starves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_mutex_t {
    pub id: u64,
}

static MUTEXES: HandleTable<OwnedRawMutex> = HandleTable::new(Kind::Mutex);

/// Creates an unlocked mutex. Errors: `IVY_EINVAL` (`out` `NULL`).
///
/// # Safety
/// `out` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_mutex_new(out: *mut ivy_mutex_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let id = MUTEXES
            .insert(Arc::new(OwnedRawMutex::new()))
            .ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_mutex_t { id }) };
        Ok(())
    })
}

/// Locks the mutex, waiting until `deadline` (see `ivy_mutex_t` for the order
/// in which waiters get it). Errors: `IVY_ETIMEDOUT`; `IVY_ECANCELED` (the
/// calling task was cancelled while waiting: it does not hold the lock);
/// `IVY_ECLOSED` (the mutex was freed while waiting; not held); `IVY_EDEADLK`
/// (the caller already holds it); `IVY_EBADF`; `IVY_EINVAL` (bad deadline).
#[no_mangle]
pub extern "C" fn ivy_mutex_lock(m: ivy_mutex_t, deadline: i64) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        let mutex = MUTEXES.get(m.id).ok_or(IVY_EBADF)?;
        mutex.lock_deadline(d).map_err(lock_error)
    })
}

/// Unlocks the mutex and wakes the longest waiter, if any (which takes it unless
/// a running caller takes it first; past 1 ms of waiting the lock is handed to
/// it directly: see `ivy_mutex_t`). Errors: `IVY_EPERM` (the caller does not
/// hold it); `IVY_EBADF` (also after `ivy_mutex_free`, even for the holder).
#[no_mangle]
pub extern "C" fn ivy_mutex_unlock(m: ivy_mutex_t) -> c_int {
    guard(|| {
        let mutex = MUTEXES.get(m.id).ok_or(IVY_EBADF)?;
        mutex.unlock().map_err(lock_error)
    })
}

/// Frees the mutex, locked or not (the rule of every `ivy_*_free`, see the top
/// of this header): the handle is invalid at once; every task or thread waiting
/// in `ivy_mutex_lock` (or re-locking in `ivy_cond_wait`) on it returns
/// `IVY_ECLOSED` without the lock; the holder's later `ivy_mutex_unlock` is
/// `IVY_EBADF`. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_mutex_free(m: ivy_mutex_t) -> c_int {
    guard(|| {
        MUTEXES.remove(m.id).ok_or(IVY_EBADF)?.close();
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// RwLock

/// A handle to a reader-writer lock: many readers or one writer, FIFO-fair (a
/// waiting writer holds back later readers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_rwlock_t {
    pub id: u64,
}

static RWLOCKS: HandleTable<OwnedRwLock> = HandleTable::new(Kind::RwLock);

/// Creates an unlocked rwlock. Errors: `IVY_EINVAL` (`out` `NULL`).
///
/// # Safety
/// `out` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_rwlock_new(out: *mut ivy_rwlock_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let id = RWLOCKS
            .insert(Arc::new(OwnedRwLock::new()))
            .ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_rwlock_t { id }) };
        Ok(())
    })
}

fn rw_acquire(l: ivy_rwlock_t, deadline: i64, write: bool) -> Result<(), c_int> {
    let d = to_instant(deadline)?;
    let lock = RWLOCKS.get(l.id).ok_or(IVY_EBADF)?;
    lock.lock_deadline(write, d).map_err(lock_error)
}

/// Takes the lock for reading (shared), waiting until `deadline`. Errors as
/// `ivy_mutex_lock`; `IVY_EDEADLK` if the caller already holds it (either way).
#[no_mangle]
pub extern "C" fn ivy_rwlock_rdlock(l: ivy_rwlock_t, deadline: i64) -> c_int {
    guard(|| rw_acquire(l, deadline, false))
}

/// Takes the lock for writing (exclusive), waiting until `deadline`. Errors as
/// `ivy_rwlock_rdlock`.
#[no_mangle]
pub extern "C" fn ivy_rwlock_wrlock(l: ivy_rwlock_t, deadline: i64) -> c_int {
    guard(|| rw_acquire(l, deadline, true))
}

/// Releases the caller's hold (read or write). Errors: `IVY_EPERM` (the caller
/// holds nothing); `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_rwlock_unlock(l: ivy_rwlock_t) -> c_int {
    guard(|| {
        let lock = RWLOCKS.get(l.id).ok_or(IVY_EBADF)?;
        lock.unlock().map_err(lock_error)
    })
}

/// Frees the rwlock, held or not (the rule of every `ivy_*_free`): the handle
/// is invalid at once; every task or thread waiting in `ivy_rwlock_rdlock` /
/// `ivy_rwlock_wrlock` on it returns `IVY_ECLOSED` without the lock; holders'
/// later `ivy_rwlock_unlock` is `IVY_EBADF`. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_rwlock_free(l: ivy_rwlock_t) -> c_int {
    guard(|| {
        RWLOCKS.remove(l.id).ok_or(IVY_EBADF)?.close();
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Semaphore

/// A handle to a counting semaphore (asyncio's `Semaphore`): FIFO-fair.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_semaphore_t {
    pub id: u64,
}

static SEMAPHORES: HandleTable<Semaphore> = HandleTable::new(Kind::Semaphore);

/// Creates a semaphore with `permits` permits. Errors: `IVY_EINVAL` (`out`
/// `NULL`, or `permits` above the maximum, 2^62 - 1).
///
/// # Safety
/// `out` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_semaphore_new(permits: usize, out: *mut ivy_semaphore_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        if permits > Semaphore::MAX_PERMITS {
            return Err(IVY_EINVAL);
        }
        let id = SEMAPHORES
            .insert(Arc::new(Semaphore::new(permits)))
            .ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_semaphore_t { id }) };
        Ok(())
    })
}

/// Takes one permit, waiting until `deadline`. Errors: `IVY_ETIMEDOUT`,
/// `IVY_ECANCELED`, `IVY_ECLOSED` (freed while waiting) -- no permit taken in
/// any error case --, `IVY_EBADF`, `IVY_EINVAL`.
#[no_mangle]
pub extern "C" fn ivy_semaphore_acquire(s: ivy_semaphore_t, deadline: i64) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        let sem = SEMAPHORES.get(s.id).ok_or(IVY_EBADF)?;
        sem.acquire_raw(1, d).map_err(wait_error)
    })
}

/// Returns one permit (`sem_post`), waking the longest waiter. Any caller may
/// release; releasing more than was acquired raises the count, up to the
/// maximum of `ivy_semaphore_new`. Errors: `IVY_EINVAL` (the count is at that
/// maximum: nothing changes), `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_semaphore_release(s: ivy_semaphore_t) -> c_int {
    guard(|| {
        SEMAPHORES
            .get(s.id)
            .ok_or(IVY_EBADF)?
            .release_checked(1, Semaphore::MAX_PERMITS)
            .map_err(|_| IVY_EINVAL)
    })
}

/// Stores the number of free permits in `*permits`. Errors: `IVY_EBADF`,
/// `IVY_EINVAL`.
///
/// # Safety
/// `permits` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_semaphore_available(s: ivy_semaphore_t, permits: *mut usize) -> c_int {
    guard(|| {
        let permits = out_ptr(permits)?;
        let n = SEMAPHORES.get(s.id).ok_or(IVY_EBADF)?.available_permits();
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(permits, n) };
        Ok(())
    })
}

/// Frees the semaphore (the rule of every `ivy_*_free`): the handle is invalid
/// at once; every task or thread waiting in `ivy_semaphore_acquire` on it
/// returns `IVY_ECLOSED` without a permit. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_semaphore_free(s: ivy_semaphore_t) -> c_int {
    guard(|| {
        SEMAPHORES.remove(s.id).ok_or(IVY_EBADF)?.close();
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Event

/// A handle to an event (asyncio's `Event`): a flag tasks wait for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_event_t {
    pub id: u64,
}

static EVENTS: HandleTable<Event> = HandleTable::new(Kind::Event);

/// Creates an event, initially clear. Errors: `IVY_EINVAL` (`out` `NULL`).
///
/// # Safety
/// `out` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_event_new(out: *mut ivy_event_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let id = EVENTS.insert(Arc::new(Event::new())).ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_event_t { id }) };
        Ok(())
    })
}

/// Sets the event, waking every waiter. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_event_set(e: ivy_event_t) -> c_int {
    guard(|| {
        EVENTS.get(e.id).ok_or(IVY_EBADF)?.set();
        Ok(())
    })
}

/// Clears the event. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_event_clear(e: ivy_event_t) -> c_int {
    guard(|| {
        EVENTS.get(e.id).ok_or(IVY_EBADF)?.clear();
        Ok(())
    })
}

/// Stores 1 in `*is_set` if the event is set, else 0. Errors: `IVY_EBADF`,
/// `IVY_EINVAL`.
///
/// # Safety
/// `is_set` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_event_is_set(e: ivy_event_t, is_set: *mut c_int) -> c_int {
    guard(|| {
        let is_set = out_ptr(is_set)?;
        let set = EVENTS.get(e.id).ok_or(IVY_EBADF)?.is_set();
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(is_set, c_int::from(set)) };
        Ok(())
    })
}

/// Waits until the event is set (returns at once if it is), or `deadline`.
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_ECLOSED` (freed while
/// waiting), `IVY_EBADF`, `IVY_EINVAL`.
#[no_mangle]
pub extern "C" fn ivy_event_wait(e: ivy_event_t, deadline: i64) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        let ev = EVENTS.get(e.id).ok_or(IVY_EBADF)?;
        ev.wait_deadline(d).map_err(wait_error)
    })
}

/// Frees the event (the rule of every `ivy_*_free`): the handle is invalid at
/// once; every task or thread waiting in `ivy_event_wait` on it returns
/// `IVY_ECLOSED`. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_event_free(e: ivy_event_t) -> c_int {
    guard(|| {
        EVENTS.remove(e.id).ok_or(IVY_EBADF)?.close();
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Condition

/// A handle to a condition variable, used with an `ivy_mutex_t` (asyncio's
/// `Condition`, pthread's `pthread_cond_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_cond_t {
    pub id: u64,
}

static CONDITIONS: HandleTable<Condition> = HandleTable::new(Kind::Condition);

/// Creates a condition variable. Errors: `IVY_EINVAL` (`out` `NULL`).
///
/// # Safety
/// `out` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_cond_new(out: *mut ivy_cond_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let id = CONDITIONS
            .insert(Arc::new(Condition::new()))
            .ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_cond_t { id }) };
        Ok(())
    })
}

/// Atomically unlocks `m` (which the caller must hold) and waits for a
/// notification or `deadline`; then re-locks `m`. **On every return, errors
/// included, the caller holds `m` again** (as with `pthread_cond_timedwait`),
/// except when `m` itself was freed meanwhile (then nobody can hold it: its
/// handle is `IVY_EBADF`). May wake spuriously: wait in a loop that re-checks
/// the predicate. A passed deadline gives `IVY_ETIMEDOUT` after releasing and
/// re-taking `m` once, without parking on the condition.
///
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED` (`m` is held again);
/// `IVY_ECLOSED` (`c` was freed while waiting, `m` is held again; or `m` was
/// freed while being re-taken, and is not); `IVY_EPERM` (the caller does not
/// hold `m`: nothing happens); `IVY_EBADF`; `IVY_EINVAL`.
#[no_mangle]
pub extern "C" fn ivy_cond_wait(c: ivy_cond_t, m: ivy_mutex_t, deadline: i64) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        let cond = CONDITIONS.get(c.id).ok_or(IVY_EBADF)?;
        let mutex = MUTEXES.get(m.id).ok_or(IVY_EBADF)?;
        cond.wait_owned(&mutex, d).map_err(lock_error)
    })
}

/// Wakes one waiter, if any. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_cond_notify_one(c: ivy_cond_t) -> c_int {
    guard(|| {
        CONDITIONS.get(c.id).ok_or(IVY_EBADF)?.notify_one();
        Ok(())
    })
}

/// Wakes every waiter. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_cond_notify_all(c: ivy_cond_t) -> c_int {
    guard(|| {
        CONDITIONS.get(c.id).ok_or(IVY_EBADF)?.notify_all();
        Ok(())
    })
}

/// Frees the condition variable (the rule of every `ivy_*_free`): the handle
/// is invalid at once; every task or thread waiting in `ivy_cond_wait` on it
/// re-takes its mutex and returns `IVY_ECLOSED`. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_cond_free(c: ivy_cond_t) -> c_int {
    guard(|| {
        CONDITIONS.remove(c.id).ok_or(IVY_EBADF)?.close();
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// WaitGroup

/// A handle to a wait group (Go's `sync.WaitGroup`): a counter of outstanding
/// jobs that tasks can wait to reach zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_waitgroup_t {
    pub id: u64,
}

static WAITGROUPS: HandleTable<WaitGroup> = HandleTable::new(Kind::WaitGroup);

/// Creates a wait group with a count of 0. Errors: `IVY_EINVAL` (`out` NULL).
///
/// # Safety
/// `out` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_waitgroup_new(out: *mut ivy_waitgroup_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let id = WAITGROUPS
            .insert(Arc::new(WaitGroup::new()))
            .ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_waitgroup_t { id }) };
        Ok(())
    })
}

/// Adds `n` outstanding jobs. Errors: `IVY_EINVAL` (the count would overflow:
/// nothing changes), `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_waitgroup_add(wg: ivy_waitgroup_t, n: usize) -> c_int {
    guard(|| {
        let wg = WAITGROUPS.get(wg.id).ok_or(IVY_EBADF)?;
        // Checked under the wait group's lock: concurrent adds cannot overflow.
        wg.try_add(n).map_err(|()| IVY_EINVAL)
    })
}

/// Marks one job finished; when the count reaches 0 every waiter wakes.
/// Errors: `IVY_EINVAL` (the count is already 0), `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_waitgroup_done(wg: ivy_waitgroup_t) -> c_int {
    guard(|| {
        let wg = WAITGROUPS.get(wg.id).ok_or(IVY_EBADF)?;
        wg.done().map_err(|_| IVY_EINVAL)
    })
}

/// Waits until the count is 0 (at once if it is), or `deadline`. Errors:
/// `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_ECLOSED` (freed while waiting),
/// `IVY_EBADF`, `IVY_EINVAL`.
#[no_mangle]
pub extern "C" fn ivy_waitgroup_wait(wg: ivy_waitgroup_t, deadline: i64) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        let wg = WAITGROUPS.get(wg.id).ok_or(IVY_EBADF)?;
        wg.wait_deadline(d).map_err(wait_error)
    })
}

/// Frees the wait group (the rule of every `ivy_*_free`): the handle is invalid
/// at once; every task or thread waiting in `ivy_waitgroup_wait` on it returns
/// `IVY_ECLOSED`. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_waitgroup_free(wg: ivy_waitgroup_t) -> c_int {
    guard(|| {
        WAITGROUPS.remove(wg.id).ok_or(IVY_EBADF)?.close();
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Barrier

/// A handle to a barrier: `parties` tasks or threads wait until all have
/// arrived.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_barrier_t {
    pub id: u64,
}

static BARRIERS: HandleTable<Barrier> = HandleTable::new(Kind::Barrier);

/// Creates a barrier for `parties` parties (reusable: it resets each time it
/// trips). Errors: `IVY_EINVAL` (`out` NULL, `parties` 0).
///
/// # Safety
/// `out` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_barrier_new(parties: usize, out: *mut ivy_barrier_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        if parties == 0 {
            return Err(IVY_EINVAL);
        }
        let id = BARRIERS
            .insert(Arc::new(Barrier::new(parties)))
            .ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_barrier_t { id }) };
        Ok(())
    })
}

/// Waits until `parties` callers have arrived, or `deadline` (a caller that
/// gives up withdraws its arrival). Stores 1 in `*leader` (if not NULL) for
/// exactly one caller of each trip, 0 for the others. Errors: `IVY_ETIMEDOUT`,
/// `IVY_ECANCELED`, `IVY_ECLOSED` (freed while waiting; arrival withdrawn),
/// `IVY_EBADF`, `IVY_EINVAL`.
///
/// # Safety
/// `leader` is `NULL` (the role is not reported) or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_barrier_wait(
    b: ivy_barrier_t,
    leader: *mut c_int,
    deadline: i64,
) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        let barrier = BARRIERS.get(b.id).ok_or(IVY_EBADF)?;
        let r = barrier.wait_deadline(d).map_err(wait_error)?;
        if !leader.is_null() {
            // SAFETY: non-null and writable by the caller's contract.
            unsafe { write_out(leader, c_int::from(r.is_leader())) };
        }
        Ok(())
    })
}

/// Frees the barrier (the rule of every `ivy_*_free`): the handle is invalid at
/// once; every task or thread waiting in `ivy_barrier_wait` on it returns
/// `IVY_ECLOSED` (its arrival withdrawn). Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_barrier_free(b: ivy_barrier_t) -> c_int {
    guard(|| {
        BARRIERS.remove(b.id).ok_or(IVY_EBADF)?.close();
        Ok(())
    })
}
