//! The running task: who it is, how it suspends, whether it is unwinding.
//!
//! Owner of the context's `task` slot (`crate::context`): the worker stores
//! there, for the length of each resume, the task it resumes (`set_running`),
//! and everything else reads it through the accessors here. The hot paths
//! borrow the task (`with_current_task`) rather than clone its `Arc`: two
//! atomic operations saved per blocking call. Each accessor reads the slot once
//! (one thread-local access) and never caches it across a switch.
//!
//! Layer: task core. Uses `context` and the task header (`raw`); knows no
//! worker, no timer, no reactor.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::{self, Context};
use crate::task::raw::{Suspend, Task, TaskYielder};

/// I/O operations a task may complete without suspending before the next one
/// yields first (tokio's coop budget): a connection whose peer always has data
/// ready must not keep the other tasks of its worker, and the worker's poll,
/// waiting (regression: on an echo server with 100 connections, one connection
/// got 8x the round trips of another, and under load a single one starved 92).
pub(crate) const IO_BUDGET: u32 = 128;

/// The worker, before each resume of `task` on the thread of `ctx`: publishes
/// the running task and resets its I/O budget.
///
/// # Safety
/// `task` stays alive (the caller holds an `Arc` of it) until `clear_running`,
/// and only that task's code runs on this thread meanwhile (the resume).
#[inline(always)]
pub(crate) unsafe fn set_running(ctx: &Context, task: &Arc<Task>) {
    ctx.set_io_budget(IO_BUDGET);
    ctx.set_task(Arc::as_ptr(task) as *const ());
    // Null at the task's first resume: its body publishes it as it starts
    // (`started`).
    ctx.set_yielder(task.yielder() as *const ());
}

/// The running task's body, as it starts: `yielder` is what it suspends
/// through, from now on and at every later resume (`set_running`).
///
/// # Safety
/// Called by `task`'s own body, on its coroutine, with its coroutine's yielder.
pub(crate) unsafe fn started(task: &Task, yielder: &TaskYielder) {
    // SAFETY: forwarded.
    unsafe { task.set_yielder(yielder) };
    context::with(|c| c.set_yielder(yielder as *const TaskYielder as *const ()));
}

/// The worker, after each resume: no task runs on this thread any more.
#[inline(always)]
pub(crate) fn clear_running(ctx: &Context) {
    ctx.set_task(std::ptr::null());
    ctx.set_yielder(std::ptr::null());
}

/// Whether a task is being resumed on the thread of `ctx`.
#[inline(always)]
pub(crate) fn is_running(ctx: &Context) -> bool {
    !ctx.task().is_null()
}

/// The task running on this thread, if any (a new reference; the hot paths use
/// `with_current_task`, which borrows).
pub(crate) fn current_task() -> Option<Arc<Task>> {
    with_current_task(Arc::clone)
}

/// Whether the caller is an ivy task (not a plain thread, not a worker between
/// tasks).
pub(crate) fn in_task() -> bool {
    !context::task().is_null()
}

/// Charges one I/O operation to the running task's budget. Returns `true` when
/// the budget is spent: the caller should yield before doing the operation.
/// Always `false` on plain threads.
pub(crate) fn io_budget_spent() -> bool {
    context::with(|c| {
        if c.task().is_null() {
            return false;
        }
        match c.io_budget() {
            0 => true,
            b => {
                c.set_io_budget(b - 1);
                false
            }
        }
    })
}

/// Runs `f` with the task running on this thread, if any, without touching its
/// reference count (two atomic operations saved per blocking call).
pub(crate) fn with_current_task<R>(f: impl FnOnce(&Arc<Task>) -> R) -> Option<R> {
    with_task_or_thread(|task| task.map(f))
}

/// Runs `f` with the running task's header, if any: for the paths that need no
/// `Arc` of it (a yield). The slot holds the header's address itself, so this
/// is one load after the thread-local read (a yield was three loads in a row
/// when the `Arc` was reached through a pointer in the header, and the profile
/// put its stall there: benches/compare/findings/switch.md); since
/// `with_current_task` rebuilds the `Arc` from the same address, the two cost
/// the same now.
#[inline(always)]
pub(crate) fn with_current_task_header<R>(f: impl FnOnce(&Task) -> R) -> Option<R> {
    let t = context::task() as *const Task;
    if t.is_null() {
        return None;
    }
    // SAFETY: the slot is non-null only while the worker resumes that task and
    // holds an `Arc` of it (`set_running`), so `t` points to a live task. It
    // stays live while `f` runs even if `f` suspends the task: `f` runs on the
    // task's stack, whose coroutine body holds its own `Arc` of the task from
    // its first statement to its last (`task::body::run`).
    Some(f(unsafe { &*t }))
}

/// Runs `f` with the running task, or with `None` on a plain thread (or a worker
/// between tasks): for callers that fall back to thread state with the same `f`.
///
/// The `Arc` lent to `f` is rebuilt from the slot's pointer and never dropped,
/// so it costs no count: the task stays alive while `f` runs, even if `f`
/// suspends it, because its coroutine body holds an `Arc` of its own from its
/// first statement to its last (`task::body::run`), and `f` runs on that
/// body's stack. (It was a pointer to that `Arc`, in the header: 8 bytes a
/// task, and a dependent load per call.)
pub(crate) fn with_task_or_thread<R>(f: impl FnOnce(Option<&Arc<Task>>) -> R) -> R {
    let t = context::task() as *const Task;
    if t.is_null() {
        return f(None);
    }
    // SAFETY: `t` is the context's non-null task slot, read on this thread.
    let task = unsafe { lend_running(t) };
    f(Some(&task))
}

/// The running task's `Arc`, rebuilt from the context's task slot `t` and lent
/// without a count of its own (`with_task_or_thread`, `with_running`).
///
/// # Safety
/// `t` is the task slot of this thread's context, non-null, and the caller
/// lends the result only to code that runs before the task ends: the slot is
/// non-null only while the worker resumes that task, and only that task's code
/// runs meanwhile, on its stack, so its body's own `Arc` keeps it alive (even
/// if that code suspends the task). `t` is `Arc::as_ptr` of an `Arc<Task>`
/// (`set_running`), which is what `Arc::from_raw` takes, and the `ManuallyDrop`
/// keeps us from giving back a count we never took; the borrower gets a shared
/// reference only, so it can clone the `Arc` (a count of its own) but not
/// consume this one.
#[inline(always)]
unsafe fn lend_running(t: *const Task) -> std::mem::ManuallyDrop<Arc<Task>> {
    // SAFETY: the caller's contract above.
    std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(t) })
}

/// The running task's yielder, read together with the task (`with_running`):
/// what `suspend` switches through. Only `with_running` makes one, for the
/// length of the closure it calls (the lifetime), on the task it describes.
pub(crate) struct YielderRef<'a>(*const TaskYielder, PhantomData<&'a Task>);

/// Runs `f` with the running task and its yielder, from one read of the
/// thread's context (`context::task_and_yielder`), or returns `None` on a plain
/// thread: the park and yield paths, which suspend. The `Arc` is lent as by
/// `with_task_or_thread` (`lend_running`).
#[inline(always)]
pub(crate) fn with_running<R>(
    f: impl for<'a> FnOnce(&'a Arc<Task>, YielderRef<'a>) -> R,
) -> Option<R> {
    let (t, y) = context::task_and_yielder();
    if t.is_null() {
        return None;
    }
    // SAFETY: `t` is the context's non-null task slot, read on this thread.
    let task = unsafe { lend_running(t as *const Task) };
    Some(f(&task, YielderRef(y as *const TaskYielder, PhantomData)))
}

/// Whether the current task `task` is in the middle of an unwind.
///
/// `std::thread::panicking()` answers for the OS thread, and the thread is shared:
/// while one task is suspended inside a destructor during its unwind, every other
/// task on the worker would see `true`. So the thread counts the tasks suspended
/// mid-unwind (`suspend`). With none, `panicking()` is exact for the running
/// task. With some, the running task relies on its own record: whether ivy
/// raised a cancellation or deadline in it, or ivy's panic hook saw it panic
/// (`task::panic_hook`), and nothing has caught that yet.
pub(crate) fn task_is_unwinding(task: &Task) -> bool {
    let others = context::with(|c| c.parked_unwinding());
    if others == 0 {
        let p = std::thread::panicking();
        if !p {
            task.raised.set(false);
        }
        p
    } else {
        task.raised.get()
    }
}

/// Suspends `task` (which must be the current task) back to its worker.
/// Inlined: recording the stack pointer (`suspend_raw`) made it too big for the
/// compiler's taste, and the call cost the switch row 6 instructions.
#[inline(always)]
pub(crate) fn suspend(task: &Task, yielder: YielderRef<'_>, why: Suspend) {
    // Off the switch path's common case: while no unwind is in flight on this
    // thread, no task here is parked mid-unwind, so `task_is_unwinding` would
    // only clear the record and answer `false` (without reading the counter).
    let unwinding = if std::thread::panicking() {
        task_is_unwinding(task)
    } else {
        task.raised.set(false);
        false
    };
    if unwinding {
        context::with(|c| c.set_parked_unwinding(c.parked_unwinding() + 1));
    }
    suspend_raw(task, yielder.0, why);
    if unwinding {
        context::with(|c| c.set_parked_unwinding(c.parked_unwinding() - 1));
    }
}

/// Shutdown of a `panic = "abort"` build met `task` (the current task) still
/// running: it cannot be unwound, so it is never resumed again. Its stack is
/// leaked with everything on it, without running its destructors; the worker
/// completes it as cancelled, so shutdown goes on (cancel.rs).
pub(crate) fn abandon(task: &Task) -> ! {
    eprintln!(
        "ivy: shutdown: task '{}' (id {}) was still running; this program is built with \
         panic = \"abort\", so ivy cannot unwind it: its stack is leaked without running \
         its destructors",
        task.name().unwrap_or("<unnamed>"),
        task.id()
    );
    let (_, yielder) = context::task_and_yielder();
    suspend_raw(task, yielder as *const TaskYielder, Suspend::Abandon);
    unreachable!("ivy: an abandoned task was resumed");
}

/// `yielder`: the context's yielder slot, read while `task` runs.
#[inline(always)]
fn suspend_raw(task: &Task, yielder: *const TaskYielder, why: Suspend) {
    task.ctx.suspended_sp.set(crate::prefetch::stack_pointer());
    debug_assert!(!yielder.is_null() && yielder == task.yielder());
    // SAFETY: `yielder` is the running task's, read from the context's slot
    // while it runs (`set_running`, `started`): it was set by the coroutine's
    // own body when it started and points into this coroutine's stack, which is
    // live while the task runs; we are running on that coroutine (the caller is
    // the current task, and a `YielderRef` lives only inside `with_running`'s
    // call on it).
    unsafe { (*yielder).suspend(why) };
}

/// Called where an ivy unwind is caught and the task goes on running (a deadline
/// scope, the task's end): the task is no longer unwinding.
pub(crate) fn caught() {
    with_current_task(|task| task.raised.set(false));
}
