//! Tasks: spawning, naming, identity, and the handle to a task's result.
//!
//! A task is any `FnOnce() -> T` run as a stackful coroutine: it may call blocking
//! ivy functions anywhere in its call tree, no `async` colouring. Tasks start
//! without a stack; the stack is taken from the worker's pool at the first run and
//! returned when the task ends, so a million queued tasks cost no stack memory.
//!
//! A task's end happens in one place, `Body::start`, on the task's own stack and
//! inside `catch_unwind`: the body, then its task-locals' destructors, then the
//! drop of its result if nobody can join it any more (or the drop of its closure
//! if it was cancelled before it started). Why: every one of those runs user
//! code, and user code run anywhere else — on the worker's stack when it recycles
//! the task, or after the guard — turned a panicking destructor into a dead
//! worker, stranding every task homed on it and hanging shutdown. On the task's
//! stack a destructor may also block like any task code. A panic there is the
//! task's panic: `join` returns it, or it is reported as unjoined.

pub(crate) mod gather;
pub(crate) mod join;
pub(crate) mod local;
pub(crate) mod raw;
pub(crate) mod scoped;
pub(crate) mod state;
pub(crate) mod thread_state;

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::runtime::worker;
use crate::runtime::{check_stack_size, Handle, Shared};
pub use gather::{
    as_completed, join_all, join_all_deadline, join_all_settled, join_all_settled_deadline,
    wait_any, wait_any_deadline, AsCompleted,
};
use join::{payload_str, Packet};
pub use join::{JoinError, JoinHandle};
pub use local::LocalKey;
use raw::{JoinCore, Task};
pub use scoped::{scope, Scope, ScopedJoinHandle};

/// A task's unique id (unique across runtimes for the life of the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Ids are handed to each thread in blocks, so that spawning on several workers
/// does not bounce one counter's cache line between them.
const ID_BLOCK: u64 = 1024;

/// A fresh id from the task id space (also used for blocking-pool jobs).
pub(crate) fn next_task_id() -> u64 {
    thread_local! {
        /// The next id of this thread's block, and the block's end.
        static BLOCK: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    BLOCK
        .try_with(|b| {
            let (mut next, mut end) = b.get();
            if next == end {
                next = NEXT_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
                end = next + ID_BLOCK;
            }
            b.set((next + 1, end));
            next
        })
        .unwrap_or_else(|_| NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn spawn_on<F, T>(
    shared: &Arc<Shared>,
    name: Option<Box<str>>,
    stack_size: usize,
    f: F,
) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let id = next_task_id();
    let body: Arc<Body<F, T>> = Arc::new(Body {
        core: JoinCore::new(id, name),
        f: UnsafeCell::new(Some(f)),
        packet: Packet::new(),
    });
    let handle = JoinHandle::new(body.clone());
    shared.schedule_new(Task::new(stack_size, shared, body));
    handle
}

/// A task's closure and its result, in one allocation: the task holds it as its
/// `Entry` (to run the closure once), the `JoinHandle` as its `ResultSlot`.
struct Body<F, T> {
    core: JoinCore,
    f: UnsafeCell<Option<F>>,
    packet: Packet<T>,
}

// SAFETY: `f` is taken exactly once, by the one thread that runs the task's entry
// (queues hand a task to one thread at a time, a task refused at spawn is never
// queued and is settled by the spawning thread alone, and `start` is called once); the
// packet has its own protocol (join.rs). `F: Send` because the closure moves to the
// worker; `T: Send` because the value moves to the joiner.
unsafe impl<F: Send, T: Send> Sync for Body<F, T> {}

impl<F, T> raw::Start for Body<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn start(&self, not_run: Option<raw::NotRun>) {
        // SAFETY: see the `Sync` impl: this is the one call, on the running thread.
        let f = unsafe { (*self.f.get()).take() };
        let id = TaskId(self.core.id);
        let result = match not_run {
            Some(why) => {
                // The task will never run: this is a blocking-pool thread (no stack
                // for it: worker.rs) or the spawner's (closed runtime, or no guarded
                // stack left). The closure's captures are user code: a panic in
                // their drop is this task's, not that thread's.
                let mut result = match why {
                    raw::NotRun::NoStack(e) => Err(JoinError::no_stack(id, e)),
                    raw::NotRun::Closed => Err(JoinError::cancelled(id)),
                };
                if let Some(p) = drop_guarded(f) {
                    ended_with_panic(&self.core, &mut result, p);
                }
                result
            }
            None => {
                let f = f.expect("a task's entry starts once");
                let mut result = run_body(&self.core, f);
                // Whatever unwound the body was caught: none is in flight now.
                crate::cancel::caught();
                // Task-locals die on the task's own stack and thread, guarded.
                let panicked =
                    worker::with_current_task(|t| local::LocalMap::clear_all(&t.ctx.locals))
                        .flatten();
                if let Some(p) = panicked {
                    ended_with_panic(&self.core, &mut result, p);
                }
                result
            }
        };
        self.finish(result);
    }

    fn abandon(&self) {
        self.finish(Err(JoinError::cancelled(TaskId(self.core.id))));
    }

    fn core(&self) -> &JoinCore {
        &self.core
    }
}

impl<F, T> Body<F, T> {
    /// The last step of a task: hand the result to the handle, or, if the handle
    /// is gone, drop it here, on the task's own stack and under `catch_unwind`
    /// (a panic there is reported like any panic nobody joined). Decided under
    /// the join lock, so the handle's drop (which takes a stored result under
    /// the same lock) and this never miss each other: a result is never left for
    /// the worker to drop when it recycles the task.
    fn finish(&self, result: Result<T, JoinError>) {
        let slot = self.core.lock();
        if !slot.handle_dropped {
            // SAFETY: written once, by the task, under the join lock, before it is
            // marked DONE (join.rs).
            unsafe { self.packet.set(result) };
            return;
        }
        drop(slot);
        if let Some(p) = drop_guarded(result) {
            let mut slot = self.core.lock();
            if slot.panic_message.is_none() {
                slot.panic_message = Some(message_of(p.as_ref()));
            }
            drop(slot);
            drop_payload(p);
        }
    }
}

impl<F, T> join::ResultSlot<T> for Body<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    unsafe fn take(&self) -> Option<Result<T, JoinError>> {
        // SAFETY: forwarded: the caller observed the task DONE, or holds the lock.
        unsafe { self.packet.take() }
    }
}

/// Drops user data (a closure, a result) under `catch_unwind`, on the current
/// stack. Returns the payload of a panic in its destructor; an ivy cancellation
/// or deadline unwind (a blocking call in the destructor was interrupted) is not
/// a panic and is dropped here.
fn drop_guarded<X>(x: X) -> Option<Box<dyn std::any::Any + Send>> {
    match catch_unwind(AssertUnwindSafe(move || drop(x))) {
        Ok(()) => None,
        Err(p) if crate::cancel::is_ivy_unwind(p.as_ref()) => {
            drop_payload(p);
            None
        }
        Err(p) => Some(p),
    }
}

/// A panic payload's message, for reports.
pub(crate) fn message_of(p: &(dyn std::any::Any + Send)) -> String {
    payload_str(p)
        .unwrap_or("<non-string panic payload>")
        .to_string()
}

/// Drops a caught panic payload; a payload whose own destructor panics is
/// forgotten (it is user data, and nothing is left to report it to).
pub(crate) fn drop_payload(p: Box<dyn std::any::Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(p))) {
        std::mem::forget(again);
    }
}

/// A panic caught at the end of a task (a task-local's destructor): it becomes
/// the task's result unless the body already panicked (the hook printed both).
fn ended_with_panic<T>(
    core: &JoinCore,
    result: &mut Result<T, JoinError>,
    p: Box<dyn std::any::Any + Send>,
) {
    if matches!(result, Err(e) if e.is_panic()) {
        return drop_payload(p);
    }
    core.lock().panic_message = Some(message_of(p.as_ref()));
    let old = std::mem::replace(result, Err(JoinError::panicked(TaskId(core.id), p)));
    // The value the body returned is user data: dropped guarded, here.
    if let Some(p) = drop_guarded(old) {
        drop_payload(p);
    }
}

/// Runs a task's body on its own stack, turning unwinds into a `JoinError`. A
/// task cancelled before it started never runs its closure, but drops it here,
/// on its own stack and guarded like the body.
fn run_body<F, T>(core: &JoinCore, f: F) -> Result<T, JoinError>
where
    F: FnOnce() -> T,
{
    let tid = TaskId(core.id);
    let cancelled =
        worker::with_current_task(|me| me.is_cancelled()).expect("task body runs inside its task");
    if cancelled {
        // Cancelled before it ever ran: user code never starts.
        return match catch_unwind(AssertUnwindSafe(move || drop(f))) {
            Ok(()) => Err(JoinError::cancelled(tid)),
            Err(p) => Err(unwind_error(core, tid, p)),
        };
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Ok(v),
        Err(p) => Err(unwind_error(core, tid, p)),
    }
}

/// The `JoinError` for an unwind caught in a task: a cancellation, or a panic
/// (whose message is kept for the "nobody joined it" report).
fn unwind_error(core: &JoinCore, tid: TaskId, p: Box<dyn std::any::Any + Send>) -> JoinError {
    if p.is::<crate::cancel::CancelUnwind>() {
        drop_payload(p);
        return JoinError::cancelled(tid);
    }
    core.lock().panic_message = Some(message_of(p.as_ref()));
    JoinError::panicked(tid, p)
}

/// Spawns a task on the current runtime, like `std::thread::spawn`.
///
/// # Panics
/// When called outside an ivy runtime: use [`Handle::spawn`] or
/// [`crate::Runtime::spawn`] from plain threads.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Handle::try_current() {
        Some(h) => h.spawn(f),
        None => {
            panic!("ivy::spawn called outside an ivy runtime; use Runtime::spawn or Handle::spawn")
        }
    }
}

/// Task configuration: name and stack size, like `std::thread::Builder`.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the task (shown by `ivy::current()`, in panic and overflow reports).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Stack size in bytes, rounded up to whole pages (default: the runtime's).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns on the current runtime. Errors: not inside a runtime
    /// (`ErrorKind::NotFound`), invalid stack size (`InvalidInput`), no guarded
    /// stack left (`OutOfMemory`; see
    /// [`runtime::Builder::unguarded_stacks`](crate::runtime::Builder::unguarded_stacks)).
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let handle = Handle::try_current().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "ivy: task::Builder::spawn called outside an ivy runtime; use spawn_on",
            )
        })?;
        self.spawn_on(&handle, f)
    }

    /// Spawns on the given runtime, from any thread.
    pub fn spawn_on<F, T>(self, handle: &Handle, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if let Some(s) = self.stack_size {
            check_stack_size(s)?;
        }
        let stack = self.stack_size.unwrap_or(handle.default_stack_size());
        crate::stack::check_available(stack, handle.shared.unguarded_stacks)?;
        Ok(handle.spawn_named(self.name.map(String::into_boxed_str), self.stack_size, f))
    }
}

/// The task that is running: its id and name. See [`current`].
#[derive(Clone)]
pub struct Current {
    task: Arc<Task>,
}

impl Current {
    pub fn id(&self) -> TaskId {
        TaskId(self.task.id)
    }

    pub fn name(&self) -> Option<&str> {
        self.task.name()
    }

    /// Whether cancellation of this task has been requested.
    pub fn is_cancelled(&self) -> bool {
        self.task.is_cancelled()
    }
}

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current")
            .field("id", &self.task.id)
            .field("name", &self.task.name())
            .finish()
    }
}

/// The running task, or `None` on a plain thread (asyncio's `current_task()`).
pub fn current() -> Option<Current> {
    worker::current_task().map(|task| Current { task })
}
