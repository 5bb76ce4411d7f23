//! Tasks: spawning, naming, identity, and the handle to a task's result.
//!
//! A task is any `FnOnce() -> T` run as a stackful coroutine: it may call blocking
//! ivy functions anywhere in its call tree, no `async` colouring. Tasks start
//! without a stack; the stack is taken from the worker's pool at the first run and
//! returned when the task ends, so a million queued tasks cost no stack memory.
//!
//! The task itself — header, state machine, body and end, the current task,
//! task-locals — is the task core (`raw`, `state`, `header`, `body`, `current`,
//! `local`, `unparker`, `schedule`, `wait_reason`, `thread_state`), below the
//! scheduler: it knows no worker, no timer and no reactor, and reaches its
//! runtime only through the `Schedule` trait. A task's end happens in one place,
//! on the task's own stack and inside `catch_unwind` (`body.rs`).
//!
//! Layer: this file and `join`, `gather`, `scoped`, `block_on` are the api layer:
//! spawning, the handle, task groups, futures inside tasks. They may use everything below.

pub(crate) mod block_on;
pub(crate) mod body;
pub(crate) mod current;
pub(crate) mod gather;
pub(crate) mod header;
pub(crate) mod join;
pub(crate) mod local;
pub(crate) mod panic_hook;
pub(crate) mod raw;
pub(crate) mod reported;
pub(crate) mod schedule;
pub(crate) mod scoped;
pub(crate) mod state;
pub(crate) mod thread_state;
pub(crate) mod unparker;
pub(crate) mod wait_reason;

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;

use crate::error::WaitError;
use crate::runtime::{check_stack_size, Handle, Shared};
use body::Body;

pub use block_on::{block_on, block_on_deadline};
pub use gather::{
    as_completed, join_all, join_all_deadline, join_all_settled, join_all_settled_deadline,
    wait_any, wait_any_deadline, AsCompleted,
};
pub use join::{JoinError, JoinHandle};
pub use local::LocalKey;
use raw::Task;
pub use scoped::{scope, Scope, ScopedJoinHandle};

use header::next_task_id;
pub use header::TaskId;

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
    // Written straight into the allocation (as `Task::new`): `Arc::new`
    // built the body on the stack and copied it. (`Arc::new_uninit` is newer
    // than the MSRV, 1.80: this is what it does.)
    let mut body: Arc<MaybeUninit<Body<F, T>>> = Arc::new(MaybeUninit::uninit());
    Arc::get_mut(&mut body)
        .expect("ivy: a new allocation is unique")
        .write(Body::new(id, name, f));
    // SAFETY: written just above; `MaybeUninit<Body>` is `repr(transparent)`
    // over `Body`, so the allocation is that of an `Arc<Body>`.
    let body = unsafe { Arc::from_raw(Arc::into_raw(body).cast::<Body<F, T>>()) };
    let handle = JoinHandle::new(body.clone());
    shared.schedule_new(shared.new_task(stack_size, body));
    handle
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

    /// Stack size in bytes (default: the runtime's), rounded up to a power of two
    /// of at least 16 KiB. Its top 128 bytes hold the task's descriptor, as a
    /// thread's stack holds its own (the `stack` module: what a stack overflow
    /// report names, the task's saved errno).
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
        handle.shared.check_stack_available(stack)?;
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
        TaskId(self.task.id())
    }

    pub fn name(&self) -> Option<&str> {
        self.task.name()
    }

    /// Whether cancellation of this task has been requested.
    pub fn is_cancelled(&self) -> bool {
        self.task.is_cancelled()
    }

    /// Withdraws this task's pending cancellation request, so that its next
    /// blocking call runs normally; returns whether one was pending. This is
    /// what makes a cancellation *one-shot* (asyncio's semantics, which the
    /// Python binding offers: after `CancelledError` is raised once, cleanup
    /// may block). Rust and C tasks keep ivy's sticky cancellation unless
    /// they call this. A runtime that is shutting down keeps its
    /// cancellation: shutdown must be able to end every task.
    pub fn uncancel(&self) -> bool {
        if self.task.scheduler.is_closing() {
            return false;
        }
        self.task.clear_cancelled()
    }

    /// For language bindings: takes the interruption ([`WaitError::Cancelled`]
    /// or [`WaitError::Elapsed`]) that a hooked libc call of this task (the
    /// `hook` feature, or `libivy_hook.so` preloaded) reported to its caller as
    /// an error (`ECANCELED`, `ETIMEDOUT`) since it was last taken, if any, and
    /// clears the record. A Rust task needs none of this: a panic on such an
    /// error is taken as the interruption where it is caught. A binding whose
    /// runtime turns the error into its own exception (CPython's `OSError`)
    /// uses it to treat that exception as the interruption.
    pub fn take_hook_interruption(&self) -> Option<WaitError> {
        // `Current` can be sent anywhere: only the task's own code takes it.
        reported::take(&self.task)
    }
}

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current")
            .field("id", &self.task.id())
            .field("name", &self.task.name())
            .finish()
    }
}

/// For language bindings: marks the running task as running another
/// language's code, so that a stack overflow report ends with `hint` (how that
/// language's users raise a task's stack) instead of the Rust API's name. The
/// first hint given in the process is the one reported. Does nothing on a
/// plain thread.
pub fn set_stack_overflow_hint(hint: &'static str) {
    crate::stack::overflow::mark_binding(hint);
}

/// For language bindings: the running task's stack top reserve
/// ([`Builder::stack_top_reserve`](crate::Builder::stack_top_reserve)) as a
/// pointer to its first byte (16-aligned) and its length, or `None` on a plain
/// thread, in a task without a reserve, or when not called from the task's own
/// stack (a generator body runs on a stack of its own).
///
/// The memory is the task's, valid until the task ends, and holds garbage at
/// its start (a reused stack's). Nothing in ivy uses it: it is for the runtime
/// creator's own code running in the task (one user per runtime, by
/// convention); using it is `unsafe` code's business.
pub fn stack_top_reserve() -> Option<(std::ptr::NonNull<u8>, usize)> {
    let reserve = current::with_current_task_header(|t| t.scheduler.stack_top_reserve())?;
    let running = crate::stack::overflow::running();
    if reserve == 0 || running.is_null() {
        return None;
    }
    // SAFETY: a non-null running task set on this thread is valid while it is
    // set (`overflow::set_running`'s contract), i.e. for this resume of it, and
    // it describes the task `with_current_task_header` saw (the worker sets both
    // around each resume).
    let t = unsafe { &*running };
    let top = t.usable_lo + t.stack_size();
    let lo = top - reserve; // rounded by `Builder::build`
    let here = std::ptr::addr_of!(running) as usize;
    if !(t.usable_lo..lo).contains(&here) {
        return None; // not on the task's own stack: a generator body's
    }
    std::ptr::NonNull::new(lo as *mut u8).map(|p| (p, top - lo))
}

/// The running task, or `None` on a plain thread (asyncio's `current_task()`).
pub fn current() -> Option<Current> {
    current::current_task().map(|task| Current { task })
}
