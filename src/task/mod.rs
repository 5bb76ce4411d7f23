//! Tasks: spawning, naming, identity, and the handle to a task's result.
//!
//! A task is any `FnOnce() -> T` run as a stackful coroutine: it may call blocking
//! ivy functions anywhere in its call tree, no `async` colouring. Tasks start
//! without a stack; the stack is taken from the worker's pool at the first run and
//! returned when the task ends, so a million queued tasks cost no stack memory.

pub(crate) mod gather;
pub(crate) mod join;
pub(crate) mod local;
pub(crate) mod raw;
pub(crate) mod scoped;
pub(crate) mod state;

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cancel::CancelUnwind;
use crate::runtime::worker;
use crate::runtime::{check_stack_size, Handle, Shared};
pub use gather::{as_completed, join_all, join_all_settled, wait_any, AsCompleted};
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
// (queues hand a task to one thread at a time, and `start` is called once); the
// packet has its own protocol (join.rs). `F: Send` because the closure moves to the
// worker; `T: Send` because the value moves to the joiner.
unsafe impl<F: Send, T: Send> Sync for Body<F, T> {}

impl<F, T> raw::Start for Body<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn start(&self, no_stack: Option<io::Error>) {
        // SAFETY: see the `Sync` impl: this is the one call, on the running thread.
        let f = unsafe { (*self.f.get()).take() };
        let id = TaskId(self.core.id);
        let result = match (no_stack, f) {
            (Some(e), _) => Err(JoinError::no_stack(id, e)),
            (None, Some(f)) => run_body(&self.core, f),
            (None, None) => unreachable!("a task's entry starts once"),
        };
        // SAFETY: the entry runs once, before the worker marks the task DONE.
        unsafe { self.packet.set(result) };
    }

    fn core(&self) -> &JoinCore {
        &self.core
    }
}

impl<F, T> join::ResultSlot<T> for Body<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    unsafe fn take(&self) -> Option<Result<T, JoinError>> {
        // SAFETY: forwarded: the caller observed the task DONE.
        unsafe { self.packet.take() }
    }
}

/// Runs a task's body on its own stack, turning unwinds into a `JoinError`.
fn run_body<F, T>(core: &JoinCore, f: F) -> Result<T, JoinError>
where
    F: FnOnce() -> T,
{
    let tid = TaskId(core.id);
    let cancelled =
        worker::with_current_task(|me| me.is_cancelled()).expect("task body runs inside its task");
    if cancelled {
        // Cancelled before it ever ran: user code never starts.
        return Err(JoinError::cancelled(tid));
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Ok(v),
        Err(p) if p.is::<CancelUnwind>() => Err(JoinError::cancelled(tid)),
        Err(p) => {
            let msg = payload_str(p.as_ref())
                .unwrap_or("<non-string panic payload>")
                .to_string();
            core.lock().panic_message = Some(msg);
            Err(JoinError::panicked(tid, p))
        }
    }
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
    /// (`ErrorKind::NotFound`), invalid stack size (`InvalidInput`).
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
