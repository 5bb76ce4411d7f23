//! Generators: asyncio's async generators, as plain iterators.
//!
//! `Generator::new(|y| { ...; y.yield_(v); ... })` runs its body on a coroutine
//! of its own (corosensei, on an ivy stack with a guard page) and implements
//! `Iterator`: each `next` resumes the body until it yields a value or returns.
//!
//! The body may block — sleep, lock, read a socket. Those calls park the *task
//! that is iterating*: they suspend the task's coroutine from inside the nested
//! generator coroutine, so the task's saved context points into the generator's
//! stack, and resuming the task resumes the body exactly there. This is sound
//! because the generator is `!Send` (it cannot leave the task that iterates it,
//! and a started task never changes thread).
//!
//! Cancellation and deadlines reach the body through those same blocking calls;
//! the unwind crosses the generator boundary (corosensei propagates it to
//! `next`'s caller) and continues up the task. Dropping an unfinished generator
//! unwinds its body so its destructors run.
//!
//! Limitation: the stack-overflow report names the generator while `next` runs
//! the body directly; after the body has parked and the task is resumed by its
//! worker, a generator overflow is still caught by the guard page but reported
//! as a plain SIGSEGV.

use std::marker::PhantomData;

use corosensei::{Coroutine, CoroutineResult};

use crate::stack::overflow::{self, RunningTask};
use crate::stack::TaskStack;

type Body<'a, T> = Box<dyn FnOnce(&Yielder<T>) + 'a>;

/// The handle a generator body uses to produce values.
#[repr(transparent)]
pub struct Yielder<T> {
    inner: corosensei::Yielder<(), T>,
}

impl<T> Yielder<T> {
    /// Hands `value` to the iterating caller and suspends the body until the
    /// next call to `next`.
    pub fn yield_(&self, value: T) {
        self.inner.suspend(value)
    }
}

/// A lazily evaluated sequence produced by a body that may block; see the module
/// documentation.
///
/// ```
/// let squares: Vec<u32> = ivy::run(|| {
///     ivy::Generator::new(|y| {
///         for i in 1..=4 {
///             ivy::sleep(std::time::Duration::from_millis(1)); // parks the iterating task
///             y.yield_(i * i);
///         }
///     })
///     .unwrap()
///     .collect()
/// });
/// assert_eq!(squares, [1, 4, 9, 16]);
/// ```
pub struct Generator<'a, T> {
    coroutine: Option<Coroutine<(), T, (), TaskStack>>,
    running: Box<RunningTask>,
    _body: PhantomData<&'a ()>,
}

impl<'a, T> Generator<'a, T> {
    /// Creates a generator with the runtime's default stack size (ivy's default
    /// outside a runtime). Fails only if no stack can be allocated.
    pub fn new<F>(body: F) -> std::io::Result<Generator<'a, T>>
    where
        F: FnOnce(&Yielder<T>) + 'a,
    {
        let size = crate::Handle::try_current()
            .map(|h| h.default_stack_size())
            .unwrap_or(crate::runtime::DEFAULT_STACK_SIZE);
        Generator::with_stack_size(size, body)
    }

    /// Creates a generator whose body runs on a stack of at least `bytes`.
    pub fn with_stack_size<F>(bytes: usize, body: F) -> std::io::Result<Generator<'a, T>>
    where
        F: FnOnce(&Yielder<T>) + 'a,
    {
        crate::runtime::check_stack_size(bytes)?;
        let stack = TaskStack::allocate(bytes)?;
        let id = crate::current().map_or(0, |c| c.id().as_u64());
        let running = Box::new(RunningTask::new(&stack, id, Some("<generator>")));
        let body: Body<'a, T> = Box::new(body);
        let func = move |y: &corosensei::Yielder<(), T>, ()| {
            // SAFETY: `Yielder<T>` is `repr(transparent)` over corosensei's
            // yielder, so the reference casts to it with the same lifetime.
            let y = unsafe { &*(y as *const corosensei::Yielder<(), T> as *const Yielder<T>) };
            body(y)
        };
        // SAFETY: `body` borrows data for 'a, and the coroutine lives inside the
        // returned `Generator<'a, T>`, so it is dropped (which unwinds or has
        // finished the body) within 'a. If the generator is leaked instead, its
        // body is never resumed again, so nothing borrowed is touched after 'a;
        // the stack is owned (not borrowed), so leaking it is only a leak.
        let coroutine = unsafe { Coroutine::with_stack_unchecked(stack, func) };
        Ok(Generator {
            coroutine: Some(coroutine),
            running,
            _body: PhantomData,
        })
    }

    /// Whether the body has returned.
    pub fn is_done(&self) -> bool {
        self.coroutine.is_none()
    }
}

impl<T> Iterator for Generator<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let coroutine = self.coroutine.as_mut()?;
        let prev = overflow::running();
        let this: *const RunningTask = &*self.running;
        // SAFETY: `self.running` is boxed (never moves) and outlives this call; the
        // previous pointer is restored before we return, by any path.
        unsafe { overflow::set_running(this) };
        struct Restore(*const RunningTask);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: the pointer was valid when it was published and its
                // owner (the worker or an outer generator) is still alive.
                unsafe { overflow::set_running(self.0) };
            }
        }
        let _restore = Restore(prev);
        match coroutine.resume(()) {
            CoroutineResult::Yield(v) => Some(v),
            CoroutineResult::Return(()) => {
                self.coroutine = None;
                None
            }
        }
    }
}
