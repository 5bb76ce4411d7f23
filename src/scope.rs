//! Deadline scopes (`timeout`, `deadline`) and cancellation shields (`shield`).
//!
//! asyncio's `wait_for` / `asyncio.timeout()` cancel the awaited work when the
//! deadline passes. A stackful runtime has no future to drop, so ivy scopes the
//! deadline instead: while `timeout(d, f)` runs `f`, every blocking ivy call made
//! by the *same* task or thread (sleep, lock, queue, join, socket I/O) also waits
//! for the scope's deadline, and once it has passed fails with "elapsed". In Rust
//! that failure unwinds up to the scope, which returns `Err(Elapsed)`; I/O calls
//! return an `io::ErrorKind::TimedOut` error instead (so `std::io` code sees an
//! ordinary error), and the scope still reports `Err(Elapsed)` on exit, because
//! its deadline interrupted the work.
//!
//! State, per task (or per plain thread): the effective deadline and the id of the
//! scope that set it, a shield depth, and which scope has elapsed. Nested scopes
//! take the minimum, so the earliest deadline wins and that scope, not an inner
//! one, catches the unwind. Tasks spawned inside a scope do not inherit it: a
//! scope bounds the work of its own caller, like asyncio's.
//!
//! `shield(f)` hides outer cancellation *and* outer deadlines from `f` (Trio's
//! shielded cancel scope; asyncio's `shield` keeps the inner work alive in the
//! same spirit). Both are seen by the first blocking call after the shield ends.
//! Deadline scopes opened inside a shield work normally.

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cancel::ElapsedUnwind;
use crate::runtime::worker;

/// The error of a deadline scope whose deadline passed (asyncio's `TimeoutError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline elapsed")
    }
}

/// Deadline and shield state of one task or thread. `Copy`, so it lives in a
/// `Cell` that only its owner touches.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScopeState {
    /// The effective deadline and the id of the scope that set it.
    deadline: Option<(Instant, u64)>,
    /// How many `shield` scopes are open.
    shield: u32,
    /// The scope whose deadline interrupted a blocking call, until it exits.
    elapsed: Option<u64>,
}

thread_local! {
    static THREAD_SCOPE: Cell<ScopeState> = const { Cell::new(ScopeState {
        deadline: None, shield: 0, elapsed: None,
    }) };
}

/// Runs `f` on the scope cell of the caller: its task's, or its thread's.
fn with_state<R>(f: impl FnOnce(&Cell<ScopeState>) -> R) -> R {
    worker::with_task_or_thread(|task| match task {
        Some(task) => f(&task.ctx.scope),
        None => THREAD_SCOPE.with(f),
    })
}

#[allow(dead_code)] // used by the I/O layer
/// The caller's effective scope deadline, if any.
pub(crate) fn current_deadline() -> Option<Instant> {
    with_state(|s| s.get().deadline.map(|(at, _)| at))
}

/// Whether a shield is open for the caller.
pub(crate) fn is_shielded(state: &Cell<ScopeState>) -> bool {
    state.get().shield > 0
}

/// Called by the park layer when the scope deadline has passed: records which
/// scope elapsed, so that scope (and no other) reports `Err(Elapsed)`.
pub(crate) fn mark_elapsed(state: &Cell<ScopeState>) {
    let mut s = state.get();
    if let Some((_, id)) = s.deadline {
        s.elapsed = Some(id);
        state.set(s);
    }
}

/// Whether the scope deadline of `state` has passed. Reads the clock only when
/// there is a deadline: every park calls this, so it is a hot path.
pub(crate) fn deadline_passed(state: &Cell<ScopeState>) -> bool {
    matches!(state.get().deadline, Some((at, _)) if at <= Instant::now())
}

/// Whether the caller is inside a deadline scope (no clock read).
#[inline(always)]
pub(crate) fn has_deadline(state: &Cell<ScopeState>) -> bool {
    state.get().deadline.is_some()
}

pub(crate) fn scope_deadline(state: &Cell<ScopeState>) -> Option<Instant> {
    state.get().deadline.map(|(at, _)| at)
}

pub(crate) fn thread_state<R>(f: impl FnOnce(&Cell<ScopeState>) -> R) -> R {
    THREAD_SCOPE.with(f)
}

/// Restores the caller's previous scope state when a scope exits, even by unwinding.
struct Restore {
    prev: ScopeState,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.prev;
        with_state(|s| {
            let cur = s.get();
            // An elapsed mark for an outer scope must survive the inner scope's exit.
            let elapsed = match (cur.elapsed, prev.deadline) {
                (Some(id), Some((_, outer))) if id == outer => Some(id),
                _ => prev.elapsed,
            };
            s.set(ScopeState { elapsed, ..prev });
        });
    }
}

/// Runs `f` with a deadline `d` from now (asyncio's `wait_for` / `timeout`). Every
/// blocking ivy call in `f` fails once the deadline passes; the scope then
/// returns `Err(Elapsed)`. Nested scopes: the earliest deadline wins.
///
/// ```
/// use std::time::Duration;
/// let r = ivy::run(|| ivy::timeout(Duration::from_millis(20), || ivy::sleep(Duration::from_secs(10))));
/// assert!(r.is_err());
/// ```
pub fn timeout<T>(d: Duration, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    match Instant::now().checked_add(d) {
        Some(at) => deadline(at, f),
        None => Ok(f()),
    }
}

/// Runs `f` with an absolute deadline; see [`timeout`].
pub fn deadline<T>(at: Instant, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let prev = with_state(|s| {
        let prev = s.get();
        let deadline = match prev.deadline {
            Some((outer, oid)) if outer <= at => Some((outer, oid)),
            _ => Some((at, id)),
        };
        s.set(ScopeState { deadline, ..prev });
        prev
    });
    let result = {
        let _restore = Restore { prev };
        let r = catch_unwind(AssertUnwindSafe(f));
        let elapsed_here = with_state(|s| s.get().elapsed == Some(id));
        (r, elapsed_here)
    };
    match result {
        (Ok(v), false) => Ok(v),
        (Ok(_), true) => Err(Elapsed(())),
        (Err(p), true) if p.is::<ElapsedUnwind>() => {
            crate::cancel::caught();
            Err(Elapsed(()))
        }
        (Err(p), _) => resume_unwind(p),
    }
}

/// Runs `f` out of reach of outer cancellation and outer deadlines; they take
/// effect at the first blocking call after `f` returns.
pub fn shield<T>(f: impl FnOnce() -> T) -> T {
    let prev = with_state(|s| {
        let prev = s.get();
        s.set(ScopeState {
            deadline: None,
            shield: prev.shield + 1,
            elapsed: prev.elapsed,
        });
        prev
    });
    let _restore = Restore { prev };
    f()
}
