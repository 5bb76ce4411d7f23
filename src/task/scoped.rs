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

use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::cancel::{CancelUnwind, Interrupted};
use crate::park::{self, Unparker};
use crate::runtime::Handle;
use crate::task::join::payload_str;
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

/// Held by each child; dropped when the child's closure (and everything it
/// borrowed) is gone — also when the child never ran (cancelled before its first
/// run, or no stack).
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

/// A handle to a task spawned on a [`Scope`].
pub struct ScopedJoinHandle<'scope, T> {
    inner: JoinHandle<()>,
    result: Arc<Mutex<Option<Result<T, JoinError>>>>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the child and returns its value (a cancellation point).
    pub fn join(self) -> Result<T, JoinError> {
        let id = self.inner.id();
        // The inner task only ever reports cancellation-before-start here.
        let inner = self.inner.join();
        let taken = self.result.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (taken, inner) {
            (Some(r), _) => r,
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(JoinError::cancelled(id)),
        }
    }

    /// Whether the child has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// Requests cancellation of the child.
    pub fn cancel(&self) {
        self.inner.cancel()
    }

    /// The child's task id.
    pub fn id(&self) -> TaskId {
        self.inner.id()
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
        let token = ChildToken(self.shared.clone());
        let result: Arc<Mutex<Option<Result<T, JoinError>>>> = Arc::new(Mutex::new(None));
        let slot = result.clone();
        let shared = self.shared.clone();
        let body = move || {
            let token = token;
            let id = crate::current().map(|c| c.id()).expect("runs as a task");
            let outcome = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(v) => Ok(v),
                Err(p) if p.is::<CancelUnwind>() => Err(JoinError::cancelled(id)),
                Err(p) => {
                    // The first failure's payload goes to the scope's result; its
                    // handle gets a copy of the message.
                    let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    if s.failure.is_none() {
                        let msg = payload_str(p.as_ref())
                            .unwrap_or("<non-string panic payload>")
                            .to_owned();
                        s.failure = Some(JoinError::panicked(id, p));
                        drop(s);
                        shared.cancel_children();
                        Err(JoinError::panicked(id, Box::new(msg)))
                    } else {
                        Err(JoinError::panicked(id, p))
                    }
                }
            };
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            drop(token);
        };
        let body: Box<dyn FnOnce() + Send + 'scope> = Box::new(body);
        // SAFETY: the closure and its result slot borrow only data that outlives
        // 'scope, and `scope()` does not return (by any path) before every child's
        // `ChildToken` has dropped, which happens after the closure ran or was
        // dropped unrun. So nothing borrowed is touched after 'scope ends.
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
fn wait_children(shared: &Arc<ScopeShared>) -> Option<Interrupted> {
    let mut interrupted = None;
    let deadline = crate::scope::current_deadline();
    crate::scope::shield(|| loop {
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
            if cancelled || elapsed {
                interrupted = Some(if cancelled {
                    Interrupted::Cancelled
                } else {
                    Interrupted::Elapsed
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
