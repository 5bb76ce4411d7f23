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
//! Borrowing bodies are scoped. A suspended body may hold borrows that other
//! threads use (a `std::thread::scope` or `ivy::scope` open across a `yield_`),
//! and only finishing or unwinding the body ends those uses. A value can always
//! be leaked in safe Rust (`mem::forget`), so a generator that owns its body must
//! not borrow anything: `Generator::new` takes a `'static` body (leaking it then
//! leaks its stack too, which keeps everything on it valid forever). A body that
//! borrows runs under [`Generator::scoped`] instead, which owns the generator on
//! its own stack frame and lends it to a closure only by reference, then finishes
//! or unwinds the body before it returns, by any path: the soundness argument of
//! `std::thread::scope` and corosensei's `ScopedCoroutine`.
//!
//! Scope state. The body runs on behalf of whoever resumes it, so the caller's
//! deadline scopes and shields reach the body's blocking calls, as they reach any
//! function the caller calls. The body's *own* scopes stay in the body: each
//! resume swaps in the body's scope layer and each yield, return or unwind swaps
//! it out again (`scope::enter_body` / `leave_body`), so a `timeout` or `shield`
//! the body holds across a `yield_` does not bound or shield the caller's code
//! in between. Task-locals, by contrast, are the task's: the body shares them.
//!
//! Thread state. errno and the C++ exception globals are the body's own, as
//! they are each task's (`task::thread_state`): each resume swaps them in and
//! each yield, return or unwind swaps the caller's back, so a body that holds
//! an errno value or sits in a C++ `catch` across a yield keeps it, and the
//! caller's `catch` blocks are not disturbed by the body's.
//!
//! Cancellation and deadlines reach the body through those same blocking calls;
//! the unwind crosses the generator boundary (corosensei propagates it to
//! `next`'s caller) and continues up the task. A body that ended by unwinding is
//! finished: later `next` calls return `None`. Dropping an unfinished generator
//! unwinds its body so its destructors run (Python's `close()` raising
//! `GeneratorExit` at the yield); as with any unwind in Rust, a destructor that
//! panics during it aborts the process.
//!
//! A yield from a destructor while the body unwinds on its own account (its
//! panic, its cancellation, its generator dropped) returns at once, dropping the
//! value. Suspending there would carry the unwind out to the caller: std's
//! panic count is per thread, so the caller would run on with
//! `std::thread::panicking()` true, and dropping the generator would re-throw
//! the unwind out of that destructor, an abort. A body resumed by an unwinding
//! caller (from a destructor) is not unwinding itself: it yields normally.
//!
//! Owned generators. [`OwnedGenerator`] (crate-internal) confines a generator to
//! its creating task or thread by a run-time check, for the C ABI, whose handles
//! can be copied anywhere; it also closes a body by running it to its end (a
//! body with C frames cannot be unwound), and [`free_with_current_task`] frees
//! what a task leaves behind when it ends. `src/ffi/generator.rs` only maps
//! handles and error codes onto it.
//!
//! Layering: api. Uses the stack, the task core (thread state, task-locals),
//! cancel scopes and `sync::owner_token`.
//!
//! Limitation: the stack-overflow report names the generator while `next` runs
//! the body directly; after the body has parked and the task is resumed by its
//! worker, a generator overflow is still caught by the guard page but reported
//! as a plain SIGSEGV.

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;

use corosensei::{Coroutine, CoroutineResult};

use crate::cancel_scope::{self as scope, BodyScope};
use crate::stack::overflow::{self, RunningTask};
use crate::stack::TaskStack;
use crate::task::thread_state::{Saved, Slots};

/// The handle a generator body uses to produce values.
#[repr(transparent)]
pub struct Yielder<T> {
    inner: corosensei::Yielder<(), T>,
}

impl<T> Yielder<T> {
    /// Hands `value` to the iterating caller and suspends the body until the
    /// next call to `next`.
    ///
    /// While the body itself unwinds (a panic or cancellation in the body, or its
    /// generator being dropped), a yield from a destructor does not suspend: the
    /// value is dropped and the call returns at once, so the unwind runs to its
    /// end instead of leaking into the caller.
    pub fn yield_(&self, value: T) {
        if scope::body_unwinding() {
            return;
        }
        self.inner.suspend(value)
    }
}

/// A lazily evaluated sequence produced by a `'static` body that may block; see
/// the module documentation. For a body that borrows, see [`Generator::scoped`].
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
///
/// The body owns what it uses: it may be leaked with `mem::forget` while it is
/// suspended, and whatever it still uses (here, from a scoped thread) stays alive.
///
/// ```
/// let data = vec![1, 2, 3];
/// let mut g = ivy::Generator::new(move |y| {
///     std::thread::scope(|s| {
///         s.spawn(|| data.iter().sum::<i32>());
///         y.yield_(());
///     })
/// })
/// .unwrap();
/// g.next();
/// std::mem::forget(g); // leaks `data` with the body's stack: nothing is freed under the thread
/// ```
///
/// A body that borrows is rejected: leaking it would let the borrowed data be
/// freed while the scoped thread still reads it.
///
/// ```compile_fail,E0373
/// let data = vec![1, 2, 3];
/// let mut g = ivy::Generator::new(|y| {
///     std::thread::scope(|s| {
///         s.spawn(|| data.iter().sum::<i32>());
///         y.yield_(());
///     })
/// })
/// .unwrap();
/// g.next();
/// std::mem::forget(g);
/// drop(data);
/// ```
///
/// A generator stays with the task (or thread) that iterates it: its body's
/// stack is nested in that task's, which never changes thread.
///
/// ```compile_fail,E0277
/// let g = ivy::Generator::new(|y| y.yield_(1u32)).unwrap();
/// std::thread::spawn(move || g.count());
/// ```
///
/// Nor can the body hand its yielder to another thread, which would suspend the
/// body from a foreign stack:
///
/// ```compile_fail,E0277
/// let g = ivy::Generator::new(|y| {
///     std::thread::scope(|s| {
///         s.spawn(|| y.yield_(1u32));
///     })
/// });
/// ```
pub struct Generator<T> {
    core: Core<T>,
}

impl<T: 'static> Generator<T> {
    /// Creates a generator with the runtime's default stack size (ivy's default
    /// outside a runtime). Fails only if no stack can be allocated.
    pub fn new<F>(body: F) -> std::io::Result<Generator<T>>
    where
        F: FnOnce(&Yielder<T>) + 'static,
    {
        Generator::with_stack_size(default_stack_size(), body)
    }

    /// Creates a generator whose body runs on a stack of at least `bytes`.
    pub fn with_stack_size<F>(bytes: usize, body: F) -> std::io::Result<Generator<T>>
    where
        F: FnOnce(&Yielder<T>) + 'static,
    {
        // SAFETY: `body` and `T` are `'static`: nothing the body or its values
        // use can be freed while the generator lives, or after it was leaked.
        let core = unsafe { Core::new(bytes, body)? };
        Ok(Generator { core })
    }
}

impl<T> Generator<T> {
    /// Runs `f` with a generator whose body may borrow from the caller (and yield
    /// borrowed values), with the runtime's default stack size. The generator is
    /// reachable only through the [`ScopedGenerator`] that `f` receives; when `f`
    /// returns or unwinds, an unfinished body is unwound (its destructors run)
    /// before `scoped` returns, so nothing the body borrows is used afterwards.
    /// Fails only if no stack can be allocated (then neither `body` nor `f` runs).
    ///
    /// ```
    /// let firsts = ivy::run(|| {
    ///     let words = String::from("one two three four");
    ///     let firsts: Vec<&str> = ivy::Generator::scoped(
    ///         |y| {
    ///             for w in words.split(' ') {
    ///                 ivy::sleep(std::time::Duration::from_millis(1)); // may block
    ///                 y.yield_(w); // yields borrows of `words`
    ///             }
    ///         },
    ///         |g| g.take(2).collect(),
    ///     )
    ///     .unwrap();
    ///     firsts.join(" ")
    /// });
    /// assert_eq!(firsts, "one two");
    /// ```
    ///
    /// The generator cannot leave the closure, so it cannot be leaked past the
    /// borrows:
    ///
    /// ```compile_fail,E0521
    /// let data = vec![1, 2, 3];
    /// let mut leaked = None;
    /// ivy::Generator::scoped(|y| y.yield_(data.len()), |g| leaked = Some(g)).unwrap();
    /// std::mem::forget(leaked);
    /// ```
    ///
    /// ```compile_fail
    /// let data = vec![1, 2, 3];
    /// let g = ivy::Generator::scoped(|y| y.yield_(data.len()), |g| g).unwrap();
    /// ```
    ///
    /// Nor can the body yield a borrow of its own stack, which its end frees:
    ///
    /// ```compile_fail,E0597
    /// let first = ivy::Generator::scoped(
    ///     |y| {
    ///         let local = vec![1, 2, 3];
    ///         y.yield_(&local);
    ///     },
    ///     |mut g| g.next().map(|v| v.len()),
    /// );
    /// ```
    pub fn scoped<F, R>(body: F, f: impl FnOnce(ScopedGenerator<'_, T>) -> R) -> std::io::Result<R>
    where
        F: FnOnce(&Yielder<T>),
    {
        Generator::scoped_with_stack_size(default_stack_size(), body, f)
    }

    /// [`Generator::scoped`] with a stack of at least `bytes`.
    pub fn scoped_with_stack_size<F, R>(
        bytes: usize,
        body: F,
        f: impl FnOnce(ScopedGenerator<'_, T>) -> R,
    ) -> std::io::Result<R>
    where
        F: FnOnce(&Yielder<T>),
    {
        // SAFETY: `core` lives in this frame and is dropped before this function
        // returns or finishes unwinding; its `Drop` unwinds an unfinished body (a
        // body that swallows that unwind is unwound again at its next yield, until
        // it returns: corosensei's `force_unwind`). `f` gets only a reference it
        // cannot keep (the lifetime is local to this call) and cannot move or
        // swap the core out through it (`ScopedGenerator` exposes no `&mut Core`).
        // So the body and the values it yields are used only while this call runs,
        // while everything they borrow is alive.
        let mut core = unsafe { Core::new(bytes, body)? };
        Ok(f(ScopedGenerator { core: &mut core }))
    }

    /// Whether the body has returned (or ended by unwinding).
    pub fn is_done(&self) -> bool {
        self.core.is_done()
    }
}

impl<T> Iterator for Generator<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.core.next()
    }
}

/// Once the body has ended (returned or unwound), `next` keeps returning `None`.
impl<T> std::iter::FusedIterator for Generator<T> {}

/// A generator whose body borrows, lent to the closure of [`Generator::scoped`].
/// It iterates like a [`Generator`]; the generator itself stays with `scoped`.
pub struct ScopedGenerator<'s, T> {
    core: &'s mut Core<T>,
}

impl<T> ScopedGenerator<'_, T> {
    /// Whether the body has returned (or ended by unwinding).
    pub fn is_done(&self) -> bool {
        self.core.is_done()
    }
}

impl<T> Iterator for ScopedGenerator<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.core.next()
    }
}

impl<T> std::iter::FusedIterator for ScopedGenerator<'_, T> {}

fn default_stack_size() -> usize {
    crate::Handle::try_current()
        .map(|h| h.default_stack_size())
        .unwrap_or(crate::runtime::DEFAULT_STACK_SIZE)
}

/// The coroutine running a body, and what is swapped in while it runs: the
/// overflow report's identity and the body's scope layer.
struct Core<T> {
    /// `None` once the body has finished (returned or unwound).
    coroutine: Option<Coroutine<(), T, (), TaskStack>>,
    running: Box<RunningTask>,
    scope: BodyScope,
    /// The body's errno, C++ exception globals and ASan stack bounds while it
    /// is suspended (`task::thread_state`).
    thread_state: Saved,
}

impl<T> Core<T> {
    /// # Safety
    /// Everything `body` borrows, and every borrow in the values it yields, must
    /// stay valid until the body has finished: the core must be dropped (which
    /// unwinds a suspended body) or the body run to its end before any of those
    /// borrows ends. Leaking the core is therefore sound only for a `'static`
    /// body: a suspended body (or a thread it lent a borrow to) may still use
    /// what it borrows.
    unsafe fn new<F>(bytes: usize, body: F) -> std::io::Result<Core<T>>
    where
        F: FnOnce(&Yielder<T>),
    {
        crate::runtime::check_stack_size(bytes)?;
        let stack = TaskStack::allocate(bytes)?;
        let id = crate::current().map_or(0, |c| c.id().as_u64());
        let running = Box::new(RunningTask::new(
            &stack,
            id,
            Some(overflow::generator_name()),
        ));
        running
            .origin
            .set(crate::stack::overflow::Origin::RustGenerator);
        let thread_state = Saved::for_stack(&stack);
        let func = move |y: &corosensei::Yielder<(), T>, ()| {
            // SAFETY: `Yielder<T>` is `repr(transparent)` over corosensei's
            // yielder, so the reference casts to it with the same lifetime.
            let y = unsafe { &*(y as *const corosensei::Yielder<(), T> as *const Yielder<T>) };
            body(y)
        };
        // SAFETY: the caller guarantees what `with_stack_unchecked` requires: the
        // data `func` borrows stays valid until the coroutine is finished or
        // dropped (or forever, if it is leaked). The stack is owned, not borrowed.
        let coroutine = unsafe { Coroutine::with_stack_unchecked(stack, func) };
        Ok(Core {
            coroutine: Some(coroutine),
            running,
            scope: BodyScope::default(),
            thread_state,
        })
    }

    fn is_done(&self) -> bool {
        match &self.coroutine {
            Some(c) => c.done(),
            None => true,
        }
    }

    fn next(&mut self) -> Option<T> {
        let coroutine = self.coroutine.as_mut()?;
        if coroutine.done() {
            // The body ended by unwinding out of an earlier `next`.
            self.coroutine = None;
            return None;
        }
        let step = in_body(
            &self.running,
            &mut self.scope,
            &mut self.thread_state,
            false,
            || coroutine.resume(()),
        );
        match step {
            CoroutineResult::Yield(v) => Some(v),
            CoroutineResult::Return(()) => {
                self.coroutine = None;
                None
            }
        }
    }
}

impl<T> Drop for Core<T> {
    fn drop(&mut self) {
        let Some(coroutine) = self.coroutine.as_mut() else {
            return;
        };
        if coroutine.started() && !coroutine.done() {
            // Unwind the suspended body here, with its overflow identity and scope
            // layer in place: its destructors run as body code, and the scopes
            // they close restore the body's layer, not the caller's.
            in_body(
                &self.running,
                &mut self.scope,
                &mut self.thread_state,
                true,
                || coroutine.force_unwind(),
            );
        }
        // An unstarted body is only a closure: dropping it (with the coroutine)
        // runs its captures' destructors as the caller's code.
    }
}

/// Runs `resume` (which switches into the body) with the body's context in
/// place: the overflow handler's identity, the body's scope layer, and its
/// thread state (errno, C++ exception globals, ASan stack bounds). All are put back on every way out, an
/// unwind from the body included. `closing`: the body is resumed only to be
/// unwound.
fn in_body<R>(
    running: &RunningTask,
    scope: &mut BodyScope,
    thread_state: &mut Saved,
    closing: bool,
    resume: impl FnOnce() -> R,
) -> R {
    struct Leave<'a> {
        prev_running: *const RunningTask,
        body: &'a mut BodyScope,
        caller: BodyScope,
        slots: Slots,
        thread_state: &'a mut Saved,
        returned: bool,
    }
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            // SAFETY: the slots were made on this thread, at the entry of this
            // call: a generator never leaves the thread that iterates it.
            unsafe { self.slots.swap(self.thread_state) };
            scope::leave_body(self.body, self.caller, !self.returned);
            // SAFETY: the pointer was valid when it was published and its owner
            // (the worker or an outer generator) is still alive.
            unsafe { overflow::set_running(self.prev_running) };
        }
    }
    let prev_running = overflow::running();
    // SAFETY: `running` is boxed by the core (never moves) and outlives this call;
    // the previous pointer is restored by `Leave` before we return, by any path.
    unsafe { overflow::set_running(running) };
    let caller = scope::enter_body(scope, closing);
    let slots = Slots::current(false);
    // SAFETY: `slots` are this thread's; `Leave` swaps back on every way out.
    unsafe { slots.swap(thread_state) };
    let mut leave = Leave {
        prev_running,
        body: scope,
        caller,
        slots,
        thread_state,
        returned: false,
    };
    let r = resume();
    leave.returned = true;
    r
}

/// A generator confined to the task (or plain thread) that created it, for
/// callers that share it through a handle table (the C ABI's
/// `ivy_generator_*`): every method checks that the caller is the owner
/// (`sync::owner_token`), so the body is only ever resumed, closed and dropped
/// there, although the value itself is reachable from every thread.
///
/// Why: a generator's stack is nested in its owner's (see the module comment),
/// and a suspended body may hold its first thread's thread-locals, so it must
/// never be resumed on another thread. In Rust `!Send` says so; a C handle can
/// be copied anywhere, so the check is at run time.
///
/// Freeing. [`close`](Self::close) (the owner only) runs an unfinished body to
/// its end, with its `closing` flag set so the body's yields can fail (Python's `generator.close()`), then drops it. A generator must not
/// outlive its owner task (nobody else could ever free it), so
/// [`free_with_current_task`] lists it in a task-local whose destructor frees
/// it when the task ends, on the task's own stack. A dropped `OwnedGenerator`
/// that was never closed, off its owner, leaks its generator rather than drop
/// it on the wrong thread.
pub(crate) struct OwnedGenerator<T> {
    /// `owner_token()` of the creating task or thread.
    owner: u64,
    /// `None` once closed. Locked only by the owner, never across a park of
    /// another caller.
    generator: std::sync::Mutex<Option<Generator<T>>>,
    /// `next` or `close` is running the body (re-entry from the body is `Busy`).
    running: AtomicBool,
    /// `close` has begun: the body must return. Shared with whoever makes the
    /// body's yields fail (the C ABI's `ivy_generator_yield` reads it on the
    /// body's side without a handle lookup).
    closing: Arc<AtomicBool>,
}

// SAFETY: the `Generator` inside (which is `!Send`: its stack belongs to its
// owner) is resumed, inspected and dropped only by methods that first checked
// `owner_token() == self.owner`, i.e. on the task or thread that created it (a
// started task never changes thread), or leaked by `Drop` elsewhere. Values of
// `T` cross threads only as `next`'s return value, hence `T: Send`.
unsafe impl<T: Send> Send for OwnedGenerator<T> {}
// SAFETY: as above; shared access only reaches the generator through the
// owner check and the mutex.
unsafe impl<T: Send> Sync for OwnedGenerator<T> {}

/// Why an [`OwnedGenerator`] call did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnedGeneratorError {
    /// The caller is not the task or thread that created the generator.
    NotOwner,
    /// The body itself called (`next` or `close` from inside its own body).
    Busy,
    /// Already closed.
    Closed,
}

/// Clears `running` when a `next` or `close` ends, also by unwinding.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, AtomicOrdering::Release);
    }
}

impl<T> OwnedGenerator<T> {
    /// Confines `generator` to the calling task or thread; `closing` is set
    /// when `close` begins (see the field).
    pub(crate) fn new(generator: Generator<T>, closing: Arc<AtomicBool>) -> OwnedGenerator<T> {
        OwnedGenerator {
            owner: crate::sync::owner_token(),
            generator: std::sync::Mutex::new(Some(generator)),
            running: AtomicBool::new(false),
            closing,
        }
    }

    /// `NotOwner` unless the caller created it.
    pub(crate) fn check_owner(&self) -> Result<(), OwnedGeneratorError> {
        if self.owner == crate::sync::owner_token() {
            Ok(())
        } else {
            Err(OwnedGeneratorError::NotOwner)
        }
    }

    fn enter(&self) -> Result<Running<'_>, OwnedGeneratorError> {
        self.check_owner()?;
        if self.running.swap(true, AtomicOrdering::AcqRel) {
            return Err(OwnedGeneratorError::Busy);
        }
        Ok(Running(&self.running))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Generator<T>>> {
        self.generator.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resumes the body until it yields (`Ok(Some(v))`) or returns
    /// (`Ok(None)`, and so every later call).
    pub(crate) fn next(&self) -> Result<Option<T>, OwnedGeneratorError> {
        let _running = self.enter()?;
        let mut slot = self.lock();
        let g = slot.as_mut().ok_or(OwnedGeneratorError::Closed)?;
        Ok(g.next())
    }

    /// Closes the generator: sets `is_closing`, runs an unfinished body to its
    /// end (each value it still yields is dropped) and drops it. The body must
    /// return once its yields fail, or this call waits on it.
    pub(crate) fn close(&self) -> Result<(), OwnedGeneratorError> {
        let _running = self.enter()?;
        self.closing.store(true, AtomicOrdering::Release);
        let taken = self.lock().take();
        if let Some(mut g) = taken {
            // Run the body to its end, so dropping it unwinds nothing (a body
            // with C frames cannot be unwound).
            while g.next().is_some() {}
            drop(g);
        }
        Ok(())
    }
}

impl<T> Drop for OwnedGenerator<T> {
    fn drop(&mut self) {
        let ours = self.check_owner().is_ok();
        let g = self.generator.get_mut().unwrap_or_else(|e| e.into_inner());
        if g.is_some() && !ours {
            // Not ours to resume or unwind: leak it (see the type's comment).
            std::mem::forget(g.take());
        }
    }
}

/// What the current task must free when it ends: `(id, free)` pairs, newest
/// last. See [`free_with_current_task`].
#[derive(Default)]
struct FreeAtTaskEnd {
    entries: Vec<(u64, fn(u64))>,
}

impl Drop for FreeAtTaskEnd {
    fn drop(&mut self) {
        // Newest first: a generator made inside another's body goes before it.
        for (id, free) in std::mem::take(&mut self.entries).into_iter().rev() {
            free(id);
        }
    }
}

crate::task_local! {
    static FREE_AT_TASK_END: std::cell::RefCell<FreeAtTaskEnd> =
        std::cell::RefCell::new(FreeAtTaskEnd::default());
}

/// Arranges for `free(id)` to run when the current task ends (with its
/// task-local destructors, on its own stack), for an [`OwnedGenerator`] the
/// task created under handle `id`. Nothing to do on a plain thread (its
/// thread-locals die too late to run a body: it frees its generators itself).
/// `Err(())` when called from a task-local destructor in the last round, too
/// late to be freed with the task.
pub(crate) fn free_with_current_task(id: u64, free: fn(u64)) -> Result<(), ()> {
    if crate::task::current().is_none() {
        return Ok(());
    }
    FREE_AT_TASK_END
        .try_with(|l| l.borrow_mut().entries.push((id, free)))
        .ok_or(())
}

/// Undoes [`free_with_current_task`] for `id` (freed early, by its owner).
pub(crate) fn forget_with_current_task(id: u64) {
    if crate::task::current().is_some() {
        // Absent while the list itself is being destroyed.
        FREE_AT_TASK_END.try_with(|l| l.borrow_mut().entries.retain(|&(g, _)| g != id));
    }
}
