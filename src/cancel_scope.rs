//! Cancel scopes: deadline scopes (`timeout`, `deadline`) and cancellation
//! shields (`shield`), Trio's names for them. (Not to be confused with
//! `task::scoped`, the nurseries of `ivy::scope`, which bound tasks' lifetimes.)
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
//!
//! Generator bodies (`generator.rs`) run on the caller's task but have a scope
//! layer of their own, swapped in on every resume and out on every yield, return
//! or unwind ([`enter_body`] / [`leave_body`]): a scope the body opens around a
//! `yield_` must not bound or shield the caller's code while the body is
//! suspended. What the body *inherits* is the caller's effective deadline and
//! whether it is shielded, taken afresh at each resume (the body runs on behalf
//! of whoever resumes it, as any function it calls would). So the state has two
//! parts: the own layer (`deadline`, `shield`, `elapsed`), which scopes save and
//! restore, and `inherited`, which only the generator sets; the park layer sees
//! their combination. A shield in the body hides the inherited deadline, as it
//! hides any outer one. When the inherited deadline interrupts the body, the
//! "elapsed" mark is handed back to the caller on the way out, so the caller's
//! scope, not one of the body's, reports it.
//!
//! Layer: park. Its state lives in the task core (`task::raw::ScopeState`, carried
//! by each task); its logic is here. Uses `task::current` and `cancel`.

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::WaitError;
use crate::task::body::interruption_of;
use crate::task::current;
use crate::task::reported;

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

use crate::task::raw::Inherited;
pub(crate) use crate::task::raw::ScopeState;

impl ScopeState {
    /// The deadline blocking calls obey: this layer's, and the inherited one
    /// unless a shield of this layer hides it.
    #[inline(always)]
    fn effective_deadline(&self) -> Option<(Instant, u64)> {
        if self.shield > 0 {
            return self.deadline;
        }
        match (self.deadline, self.inherited.deadline) {
            (Some(own), Some(inherited)) if inherited.0 < own.0 => Some(inherited),
            (Some(own), _) => Some(own),
            (None, inherited) => inherited,
        }
    }

    /// Whether cancellation is hidden: by a shield of this layer or the caller's.
    fn shielded(&self) -> bool {
        self.shield > 0 || self.inherited.shielded
    }
}

thread_local! {
    static THREAD_SCOPE: Cell<ScopeState> = const { Cell::new(ScopeState {
        deadline: None, shield: 0, elapsed: None,
        inherited: Inherited {
            deadline: None, shielded: false, caller_unwinding: false, closing: false,
        },
        open_top: 0,
    }) };
}

/// Runs `f` on the scope cell of the caller: its task's, or its thread's.
fn with_state<R>(f: impl FnOnce(&Cell<ScopeState>) -> R) -> R {
    current::with_task_or_thread(|task| match task {
        Some(task) => {
            // Every write to a task's scope state comes through here or
            // `with_cells`: from now on its blocking calls look at it (park.rs).
            task.mark_scope_used();
            f(&task.frame().scope)
        }
        None => THREAD_SCOPE.with(f),
    })
}

#[allow(dead_code)] // used by the I/O layer
/// The caller's effective scope deadline, if any.
pub(crate) fn current_deadline() -> Option<Instant> {
    with_state(|s| s.get().effective_deadline().map(|(at, _)| at))
}

/// Whether a shield is open for the caller.
pub(crate) fn is_shielded(state: &Cell<ScopeState>) -> bool {
    state.get().shielded()
}

/// Called by the park layer when the scope deadline has passed: records which
/// scope elapsed, so that scope (and no other) reports `Err(Elapsed)`.
pub(crate) fn mark_elapsed(state: &Cell<ScopeState>) {
    let mut s = state.get();
    if let Some((_, id)) = s.effective_deadline() {
        s.elapsed = Some(id);
        state.set(s);
    }
}

/// Whether the scope deadline of `state` has passed. Reads the clock only when
/// there is a deadline: every park calls this, so it is a hot path.
pub(crate) fn deadline_passed(state: &Cell<ScopeState>) -> bool {
    matches!(state.get().effective_deadline(), Some((at, _)) if at <= Instant::now())
}

/// Whether the caller is inside a deadline scope (no clock read).
#[inline(always)]
pub(crate) fn has_deadline(state: &Cell<ScopeState>) -> bool {
    let s = state.get();
    // Every blocking call asks this twice, and the answer is almost always
    // "no deadline anywhere": two compares decide it, the shield is read only
    // when an inherited deadline exists (findings/switch.md).
    if s.deadline.is_none() && s.inherited.deadline.is_none() {
        return false;
    }
    s.deadline.is_some() || s.shield == 0
}

pub(crate) fn scope_deadline(state: &Cell<ScopeState>) -> Option<Instant> {
    state.get().effective_deadline().map(|(at, _)| at)
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
        restore(self.prev);
    }
}

/// Reinstates the caller's scope state `prev` as a scope exits.
fn restore(prev: ScopeState) {
    with_state(|s| {
        let cur = s.get();
        // An elapsed mark for an outer scope must survive the inner scope's
        // exit; so must one for the caller of a generator body (inherited).
        let outer = |id: u64| {
            let is = |d: Option<(Instant, u64)>| d.is_some_and(|(_, o)| o == id);
            is(prev.deadline) || is(cur.inherited.deadline)
        };
        let elapsed = match cur.elapsed {
            Some(id) if outer(id) => Some(id),
            _ => prev.elapsed,
        };
        // Only this layer is restored: the inherited part is the generator's
        // to set, and may have changed since the scope opened.
        s.set(ScopeState {
            elapsed,
            inherited: cur.inherited,
            ..prev
        });
    });
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
    let id = next_scope_id();
    let prev = enter_deadline(at, id);
    let result = {
        let _restore = Restore { prev };
        let r = catch_unwind(AssertUnwindSafe(f));
        let elapsed_here = with_state(|s| s.get().elapsed == Some(id));
        (r, elapsed_here)
    };
    match result {
        (Ok(v), false) => Ok(v),
        (Ok(_), true) => {
            reported::clear_elapsed();
            Err(Elapsed(()))
        }
        (Err(p), true) if interruption_of(p.as_ref()) == Some(WaitError::Elapsed) => {
            // ivy's own unwind, or a panic on the deadline the hook reported as
            // an error (`task::reported`): its payload is user data.
            reported::clear_elapsed();
            crate::task::current::caught();
            crate::task::body::drop_payload(p);
            Err(Elapsed(()))
        }
        (Err(p), _) => resume_unwind(p),
    }
}

/// A fresh scope id, unique in the process (never 0).
fn next_scope_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Opens scope `id` with deadline `at` in the caller's layer (the earliest
/// deadline wins); returns the state to restore when it exits.
fn enter_deadline(at: Instant, id: u64) -> ScopeState {
    with_state(|s| {
        let prev = s.get();
        let deadline = match prev.deadline {
            Some((outer, oid)) if outer <= at => Some((outer, oid)),
            _ => Some((at, id)),
        };
        s.set(ScopeState { deadline, ..prev });
        prev
    })
}

/// Deadline scopes without a closure, for the C ABI (`ivy_deadline_push/pop`): C
/// cannot pass its call tree as a closure, so it opens a scope, calls on, and
/// closes it. Same semantics as [`deadline`] -- every blocking call of the
/// caller fails once the earliest open deadline passed -- with the LIFO order
/// checked instead of implied: each layer (a task, a plain thread, a generator
/// body) records its innermost open scope, and only that one may close. The
/// states to restore are kept per task (or thread) in a task-local; a scope
/// still open when its task ends dies with the task's state, and one opened
/// inside a closure scope ([`deadline`], [`shield`]) is closed when that exits.
pub(crate) mod open {
    use std::cell::RefCell;
    use std::time::Instant;

    use super::{enter_deadline, next_scope_id, restore, with_state, ScopeState};

    crate::task_local! {
        /// Open scopes of the caller: id and the state to restore.
        static OPEN: RefCell<Vec<(u64, ScopeState)>> = RefCell::new(Vec::new());
    }

    /// Why a scope could not be closed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum CloseError {
        /// Not open in this task or thread: never opened here, or closed already.
        NotOpen,
        /// Open, but not the innermost open scope of the caller's layer.
        NotInnermost,
    }

    /// Opens a scope with deadline `at` (`None`: no deadline of its own, only a
    /// LIFO mark) and returns its id; `None` if the caller's task-locals are
    /// gone for good (a task-local destructor in the last round).
    pub(crate) fn open(at: Option<Instant>) -> Option<u64> {
        let id = next_scope_id();
        OPEN.try_with(|o| {
            let prev = match at {
                Some(at) => enter_deadline(at, id),
                None => with_state(|s| s.get()),
            };
            with_state(|s| {
                s.set(ScopeState {
                    open_top: id,
                    ..s.get()
                })
            });
            o.borrow_mut().push((id, prev));
            id
        })
    }

    /// Closes scope `id`, which must be the innermost open one of the caller's
    /// layer, restoring the state from before it opened (an elapsed mark of an
    /// outer scope survives).
    pub(crate) fn close(id: u64) -> Result<(), CloseError> {
        let prev = OPEN
            .try_with(|o| {
                let mut o = o.borrow_mut();
                let at = o.iter().rposition(|&(open, _)| open == id)?;
                if with_state(|s| s.get().open_top) != id {
                    return Some(Err(CloseError::NotInnermost));
                }
                Some(Ok(o.remove(at).1))
            })
            .flatten()
            .ok_or(CloseError::NotOpen)??;
        restore(prev);
        Ok(())
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
            ..prev
        });
        prev
    });
    let _restore = Restore { prev };
    f()
}

/// A generator body's own scope layer and unwinding record, kept by the
/// generator while the body is suspended (and the caller's, while it runs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BodyScope {
    state: ScopeState,
    /// `Task::raised` of the layer (always `false` on a plain thread).
    raised: bool,
}

/// Runs `f` on the caller's scope cell and, in a task, its `raised` cell.
fn with_cells<R>(f: impl FnOnce(&Cell<ScopeState>, Option<&Cell<bool>>) -> R) -> R {
    current::with_task_or_thread(|task| match task {
        Some(task) => {
            task.mark_scope_used(); // as in `with_state`
            f(&task.frame().scope, Some(&task.raised))
        }
        None => THREAD_SCOPE.with(|s| f(s, None)),
    })
}

/// Called right before a generator resumes its body: installs the body's layer
/// `body`, inheriting the caller's effective deadline and shield, and returns the
/// caller's layer for [`leave_body`]. `closing`: the body is resumed only to be
/// unwound (its generator is being dropped).
///
/// The body also inherits "unwinding" (`raised`): a body resumed by a destructor
/// of an unwinding caller must not raise a cancellation into it.
pub(crate) fn enter_body(body: &BodyScope, closing: bool) -> BodyScope {
    // Read before the body's layer is installed: `task_is_unwinding` consults
    // the caller's `raised` record.
    let caller_unwinding = std::thread::panicking()
        && current::with_task_or_thread(|task| {
            task.map_or(true, |t| current::task_is_unwinding(t))
        });
    with_cells(|scope, raised| {
        let caller = BodyScope {
            state: scope.get(),
            raised: raised.is_some_and(Cell::get),
        };
        let inherited = Inherited {
            deadline: caller.state.effective_deadline(),
            shielded: caller.state.shielded(),
            caller_unwinding,
            closing,
        };
        scope.set(ScopeState {
            inherited,
            ..body.state
        });
        if let Some(raised) = raised {
            raised.set(body.raised || caller.raised);
        }
        caller
    })
}

/// Called when the body yields, returns or unwinds (`unwinding`): saves the body's
/// layer into `body` and reinstalls `caller` (from [`enter_body`]). An elapsed mark
/// for the inherited deadline goes to the caller, whose scope owns it; an unwind
/// leaving the body keeps its "raised by ivy" record, as it goes on in the caller.
pub(crate) fn leave_body(body: &mut BodyScope, caller: BodyScope, unwinding: bool) {
    with_cells(|scope, raised| {
        let mut own = scope.get();
        let mut back = caller.state;
        if let (Some(id), Some((_, inherited))) = (own.elapsed, own.inherited.deadline) {
            if id == inherited {
                back.elapsed = Some(id);
                own.elapsed = None;
            }
        }
        body.state = own;
        scope.set(back);
        if let Some(raised) = raised {
            let now = raised.get();
            // While the caller was unwinding the body only inherited the record.
            if !caller.raised {
                body.raised = now;
            }
            raised.set(caller.raised || (unwinding && now));
        }
    })
}

/// Whether a yield of the running generator body would carry an unwind out to
/// its caller: the body is unwinding on its own account (a panic or an ivy
/// interruption in the body, or the unwind of its generator being dropped), not
/// merely running on behalf of an unwinding caller. Suspending then would leave
/// the unwind in flight while the caller goes on (`std::thread::panicking()`
/// true there, ivy treating the caller as unwinding), and dropping the generator
/// would re-throw corosensei's unwind out of a destructor during an unwind, an
/// abort. So such a yield does not suspend (`Yielder::yield_`).
pub(crate) fn body_unwinding() -> bool {
    if !std::thread::panicking() {
        return false; // the common case: one thread-local read
    }
    current::with_task_or_thread(|task| {
        let inherited = match task {
            Some(t) => t.frame().scope.get().inherited,
            None => THREAD_SCOPE.with(Cell::get).inherited,
        };
        if inherited.closing {
            return true;
        }
        let now = task.map_or(true, |t| current::task_is_unwinding(t));
        now && !inherited.caller_unwinding
    })
}
