//! Structured concurrency: `ivy::scope` (asyncio's `TaskGroup`, Trio's nursery).
//!
//! Children spawned on a scope may borrow from the caller's stack, because the
//! scope does not return — by any path: normal return, panic of the body,
//! cancellation or deadline of the caller — before every child has finished.
//! That wait is what makes the lifetime erasure in `Scope::spawn` sound (the same
//! argument as `std::thread::scope`), so it is never interruptible: while it lasts,
//! a cancellation or elapsed deadline of the caller is passed on to the children
//! (they are cancelled) and raised in the caller only after they are all done.
//!
//! Failure policy: the first child that *panics* (or gets no stack) cancels its
//! siblings; the scope returns that first error once everyone is done. Children
//! cancelled as a consequence do not count as failures. The body itself is not
//! interrupted by a child's failure (it runs on the caller's task; cancel it with
//! a deadline scope if needed); if the body panics, every child is cancelled and
//! the panic continues after they finished. A child returning `Err` is an ordinary
//! value: `join` its handle to see it.
//!
//! A child's end obeys the rule std's scoped threads follow: the scope's count
//! is released last (`ChildToken`, the last field of `Child`), after the
//! closure (run, or dropped unrun when the child was cancelled before it
//! started) and after the result (stored for the handle, which drops it inside
//! the scope's body, or dropped by the child when the handle is gone). Drops of
//! user values there run under `catch_unwind`, and a panic counts as the child's
//! panic. Otherwise a destructor reading borrowed data could run after `scope`
//! returned (issue 10, items 2 and 3).

use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::WaitError;
use crate::park::{self, Unparker};
use crate::runtime::Handle;
use crate::sync::or_raise;
use crate::task::body::delivers_cancel;
use crate::task::raw::Task;
use crate::task::{JoinError, JoinHandle, TaskId};

/// A scope for spawning borrowing tasks; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    shared: Arc<ScopeShared>,
    handle: Handle,
    /// Invariance over both lifetimes, as in `std::thread::Scope`.
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

struct ScopeShared {
    /// Children spawned and not yet finished with their borrowed data.
    pending: AtomicUsize,
    state: Mutex<ScopeState>,
}

#[derive(Default)]
struct ScopeState {
    failure: Option<JoinError>,
    /// Children, for cancelling the siblings of a failed one.
    children: Vec<Arc<Task>>,
    waiter: Option<Unparker>,
}

impl ScopeShared {
    fn cancel_children(&self) {
        let children: Vec<Arc<Task>> = {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.children.clone()
        };
        for c in children {
            c.cancel();
        }
    }
}

impl ScopeShared {
    /// A child's panic: the first one goes to the scope's result (and cancels
    /// the siblings); the child's handle gets a copy of its message.
    fn record_panic(&self, id: TaskId, p: Box<dyn std::any::Any + Send>) -> JoinError {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.failure.is_some() {
            return JoinError::panicked(id, p);
        }
        let msg = crate::task::body::message_of(p.as_ref());
        s.failure = Some(JoinError::panicked(id, p));
        drop(s);
        self.cancel_children();
        JoinError::panicked(id, Box::new(msg))
    }
}

/// Held by each child; released last, after the child's closure and result
/// (everything that may borrow from the scope's caller) are gone: also when the
/// child never ran (cancelled before its first run, or no stack).
struct ChildToken(Arc<ScopeShared>);

impl Drop for ChildToken {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let w = self
                .0
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiter
                .clone();
            if let Some(w) = w {
                w.unpark();
            }
        }
    }
}

/// A child's result, shared by the child and its handle. Whichever lets go
/// last drops a value the handle did not take: the handle (where it is dropped,
/// inside the scope's body) or the child (on its own stack, before its token).
struct ChildSlot<T> {
    result: Option<Result<T, JoinError>>,
    handle_dropped: bool,
}

type SharedSlot<T> = Arc<Mutex<ChildSlot<T>>>;

fn lock<T>(slot: &SharedSlot<T>) -> std::sync::MutexGuard<'_, ChildSlot<T>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a scope child's task runs. Its fields drop in order, the token last:
/// that is what makes the scope wait for the closure's captures and the result
/// (std's scoped `Packet` does the same), whichever way the child ends.
struct Child<F, T> {
    f: Option<F>,
    slot: SharedSlot<T>,
    token: ChildToken,
}

impl<F: FnOnce() -> T, T> Child<F, T> {
    fn run(mut self) {
        let f = self.f.take().expect("a child runs once");
        let id = crate::current().map(|c| c.id()).expect("runs as a task");
        let outcome = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => Ok(v),
            Err(p) if delivers_cancel(p.as_ref()) => Err(JoinError::cancelled(id)),
            Err(p) => Err(self.token.0.record_panic(id, p)),
        };
        self.deliver(id, outcome);
        // `self` drops here: the slot, then the token.
    }

    /// Stores the outcome for the handle, or drops it here if the handle is gone.
    fn deliver(&self, id: TaskId, outcome: Result<T, JoinError>) {
        let orphan = {
            let mut slot = lock(&self.slot);
            if slot.handle_dropped {
                Some(outcome)
            } else {
                slot.result = Some(outcome);
                None
            }
        };
        if let Some(orphan) = orphan {
            if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(orphan))) {
                if delivers_cancel(p.as_ref()) {
                    crate::task::body::drop_payload(p);
                } else {
                    crate::task::body::drop_payload(Box::new(self.token.0.record_panic(id, p)));
                }
            }
        }
    }
}

impl<F, T> Drop for Child<F, T> {
    /// A child that never ran drops its closure here, before its token: on its
    /// own stack when it was cancelled before it started, on a blocking-pool thread when it
    /// got no stack. A panic there is the child's panic.
    fn drop(&mut self) {
        let Some(f) = self.f.take() else { return };
        if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(f))) {
            if delivers_cancel(p.as_ref()) {
                return crate::task::body::drop_payload(p);
            }
            // Off a task only on the no-stack path, where the child's own id is
            // not at hand (its handle reports the `NoStack` error with it).
            let id = crate::current().map_or(TaskId(0), |c| c.id());
            let e = self.token.0.record_panic(id, p);
            let mut slot = lock(&self.slot);
            if !slot.handle_dropped {
                slot.result = Some(Err(e));
            }
        }
    }
}

/// A handle to a task spawned on a [`Scope`].
///
/// It cannot leave its scope, so the child's result (which may borrow from the
/// scope's caller) is joined or dropped before the scope returns, or leaked:
///
/// ```compile_fail
/// ivy::run(|| {
///     let data = vec![1u64];
///     let h = ivy::scope(|s| s.spawn(|| data.len())).unwrap();
///     h.join().unwrap();
/// });
/// ```
pub struct ScopedJoinHandle<'scope, T> {
    /// Spent (joined) once `join_deadline` returned `Ok`.
    inner: JoinHandle<()>,
    result: SharedSlot<T>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    fn inner(&self) -> &JoinHandle<()> {
        &self.inner
    }

    /// Waits for the child and returns its value (a cancellation point).
    pub fn join(mut self) -> Result<T, JoinError> {
        or_raise(self.join_deadline(None))
    }

    /// The `Result` form of [`join`](Self::join) (see "Two forms of every
    /// blocking call" in [`crate::sync`]), as [`JoinHandle::join_deadline`]:
    /// `Ok` spends the handle (calling again panics); on `Err` (`TimedOut`,
    /// `Cancelled`, `Elapsed`) it is untouched and the child runs on.
    pub fn join_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Result<T, JoinError>, WaitError> {
        let id = self.inner.id();
        // The inner task only ever reports cancellation-before-start (or no
        // stack) here; everything else is in the slot.
        let inner = self.inner.join_deadline(deadline)?;
        let taken = lock(&self.result).result.take();
        Ok(match (taken, inner) {
            (Some(r), _) => r,
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(JoinError::cancelled(id)),
        })
    }

    /// Whether the child has finished.
    pub fn is_finished(&self) -> bool {
        self.inner().is_finished()
    }

    /// Requests cancellation of the child.
    pub fn cancel(&self) {
        self.inner().cancel()
    }

    /// The child's task id.
    pub fn id(&self) -> TaskId {
        self.inner().id()
    }
}

/// The child's outcome as a future, as [`JoinHandle`]'s: a poll never blocks
/// (it registers the waker, which the child's end wakes), `Ready` spends the
/// handle, and polling it again panics.
impl<T> std::future::Future for ScopedJoinHandle<'_, T> {
    type Output = Result<T, JoinError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let id = this.inner.id();
        let inner = match std::pin::Pin::new(&mut this.inner).poll(cx) {
            std::task::Poll::Pending => return std::task::Poll::Pending,
            std::task::Poll::Ready(r) => r,
        };
        // As in `join_deadline`.
        let taken = lock(&this.result).result.take();
        std::task::Poll::Ready(match (taken, inner) {
            (Some(r), _) => r,
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(JoinError::cancelled(id)),
        })
    }
}

impl<T> Drop for ScopedJoinHandle<'_, T> {
    /// Takes a result the child already stored and drops it here, inside the
    /// scope's body; a result stored later is dropped by the child itself.
    fn drop(&mut self) {
        let result = {
            let mut slot = lock(&self.result);
            slot.handle_dropped = true;
            slot.result.take()
        };
        drop(result);
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a child that may borrow anything that outlives the scope.
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        self.spawn_named(None, f)
    }

    /// Spawns a named child.
    pub fn spawn_named<F, T>(&'scope self, name: Option<&str>, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        let result: SharedSlot<T> = Arc::new(Mutex::new(ChildSlot {
            result: None,
            handle_dropped: false,
        }));
        let child = Child {
            f: Some(f),
            slot: result.clone(),
            token: ChildToken(self.shared.clone()),
        };
        // The closure captures only `child`: dropping it, run or not, drops the
        // child's fields in their declared order, the token last.
        let body: Box<dyn FnOnce() + Send + 'scope> = Box::new(move || child.run());
        // SAFETY: the closure and its result slot borrow only data that outlives
        // 'scope, and `scope()` does not return (by any path) before every child's
        // `ChildToken` has dropped, which happens after the closure ran or was
        // dropped unrun, and after its result was stored for the handle (which
        // drops it inside the scope's body, or leaks it if forgotten) or dropped.
        // So nothing borrowed is touched after 'scope ends.
        let body: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(body) };
        let mut builder = crate::task::Builder::new();
        if let Some(n) = name {
            builder = builder.name(n);
        }
        let inner = builder
            .spawn_on(&self.handle, body)
            .expect("spawning with the runtime's default stack size cannot fail");
        {
            let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            s.children.retain(|t| !t.is_done());
            if let Some(t) = inner.raw_task() {
                s.children.push(t);
            }
            if s.failure.is_some() {
                inner.cancel();
            }
        }
        ScopedJoinHandle {
            inner,
            result,
            _scope: PhantomData,
        }
    }
}

/// Runs `f` with a [`Scope`] on which it can spawn children that borrow from the
/// caller; returns when `f` and every child are done. Returns the first child
/// failure (which cancelled the others), else `f`'s value.
///
/// ```
/// let total = ivy::run(|| {
///     let data = vec![1u64, 2, 3, 4];
///     let total = std::sync::atomic::AtomicU64::new(0);
///     ivy::scope(|s| {
///         for x in &data {
///             s.spawn(|| total.fetch_add(*x, std::sync::atomic::Ordering::SeqCst));
///         }
///     })
///     .unwrap();
///     total.into_inner()
/// });
/// assert_eq!(total, 10);
/// ```
///
/// # Panics
/// Outside an ivy runtime (children need one).
pub fn scope<'env, F, R>(f: F) -> Result<R, JoinError>
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let handle = Handle::current();
    let scope = Scope {
        shared: Arc::new(ScopeShared {
            pending: AtomicUsize::new(0),
            state: Mutex::new(ScopeState::default()),
        }),
        handle,
        _scope: PhantomData,
        _env: PhantomData,
    };
    let body = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    if body.is_err() {
        scope.shared.cancel_children();
    }
    let interrupted = wait_children(&scope.shared);
    let failure = scope
        .shared
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .failure
        .take();
    match body {
        Err(p) => resume_unwind(p),
        Ok(v) => {
            if interrupted.is_some() {
                // Outside the shield now: this raises the cancellation, or marks
                // and raises the elapsed deadline for its scope.
                crate::cancel::or_raise(park::check_interrupt());
            }
            match failure {
                Some(e) => Err(e),
                None => Ok(v),
            }
        }
    }
}

/// Waits, uninterruptibly, until every child has dropped its token. Returns the
/// caller's interruption, if one arrived meanwhile (then the children were cancelled).
fn wait_children(shared: &Arc<ScopeShared>) -> Option<WaitError> {
    let mut interrupted = None;
    let deadline = crate::cancel_scope::current_deadline();
    crate::cancel_scope::shield(|| loop {
        {
            let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if shared.pending.load(Ordering::Acquire) == 0 {
                s.waiter = None;
                return;
            }
            s.waiter = Some(park::current_unparker());
        }
        if interrupted.is_none() {
            let cancelled = crate::current().is_some_and(|c| c.is_cancelled());
            let elapsed = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            if cancelled && cfg!(panic = "abort") {
                // No unwind possible: at shutdown the caller is abandoned (its
                // stack, which the children borrow, is leaked, so they stay
                // sound wherever they are); otherwise ivy aborts with a message.
                // Either way nothing runs after this in the caller (cancel.rs).
                shared.cancel_children();
                WaitError::Cancelled.raise();
            }
            if cancelled || elapsed {
                interrupted = Some(if cancelled {
                    WaitError::Cancelled
                } else {
                    WaitError::Elapsed
                });
                shared.cancel_children();
            }
        }
        let d = if interrupted.is_none() {
            deadline
        } else {
            None
        };
        // Inside the shield nothing interrupts this park.
        let _ = park::park_for(d, crate::runtime::debug::WaitReason::Join);
    });
    interrupted
}
