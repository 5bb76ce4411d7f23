//! The blocking pool: OS threads for work that really blocks (file I/O, name
//! resolution, CPU-heavy or foreign blocking calls), so it never stalls a worker.
//!
//! `spawn_blocking(f)` queues `f` on the pool of the caller's runtime (callers
//! outside any runtime share a process-wide pool) and returns a
//! [`BlockingHandle`]; `join` parks the calling task, whose worker goes on running
//! other tasks, and the pool thread wakes it through its `Unparker` when `f`
//! returns.
//!
//! The pool is bounded and elastic: a job goes to an idle thread if there is one,
//! else to a new thread while fewer than `max_threads` exist
//! (`Builder::max_blocking_threads`, default 512), else it waits in a FIFO queue.
//! A thread that finds no job for `keep_alive` (default 10 s) exits, so an idle
//! program holds no pool threads. Started jobs cannot be interrupted: a cancelled
//! or timed-out joiner stops waiting and the job finishes on its own (detached),
//! like `std::thread`. At runtime shutdown, idle threads exit at once; jobs
//! already queued still run.
//!
//! Layer: scheduler. Uses the task core (ids, `JoinError`, `current`), `park`
//! and the worker (to find its runtime's pool).

use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::cancel::or_raise;
use crate::error::WaitError;
use crate::park::{self, Unparker};
use crate::runtime::sched_policy;
use crate::runtime::worker;
use crate::task::body::JoinError;
use crate::task::header::{next_task_id, TaskId};

pub(crate) const DEFAULT_MAX_THREADS: usize = 512;
pub(crate) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// A runtime's blocking pool (cheap to clone).
#[derive(Clone)]
pub(crate) struct BlockingPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    state: Mutex<PoolState>,
    work: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    thread_name: String,
    /// Its threads return from `SCHED_BATCH` to `SCHED_OTHER`: the workers
    /// that start them inherited the one from the other (sched_policy.rs).
    leave_batch: bool,
}

struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    shutdown: bool,
}

impl BlockingPool {
    pub(crate) fn new(
        max_threads: usize,
        keep_alive: Duration,
        thread_name: String,
        leave_batch: bool,
    ) -> BlockingPool {
        BlockingPool {
            inner: Arc::new(PoolInner {
                state: Mutex::new(PoolState {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    shutdown: false,
                }),
                work: Condvar::new(),
                max_threads: max_threads.max(1),
                keep_alive,
                thread_name,
                leave_batch,
            }),
        }
    }

    /// The pool of the caller's runtime, or the process-wide one.
    pub(crate) fn current() -> BlockingPool {
        if let Some(pool) = worker::try_with_current(|w| w.shared.blocking.clone()) {
            return pool;
        }
        static GLOBAL: OnceLock<BlockingPool> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                BlockingPool::new(
                    DEFAULT_MAX_THREADS,
                    DEFAULT_KEEP_ALIVE,
                    "ivy-blocking".to_string(),
                    false,
                )
            })
            .clone()
    }

    /// Number of pool threads alive now (running or idle).
    pub(crate) fn threads(&self) -> usize {
        self.lock().threads
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, job: Job) {
        let mut st = self.lock();
        st.queue.push_back(job);
        if st.idle > st.queue.len() - 1 {
            // An idle thread will take it (idle counts threads not yet claimed).
            drop(st);
            self.inner.work.notify_one();
            return;
        }
        if st.threads < self.inner.max_threads {
            st.threads += 1;
            drop(st);
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name(self.inner.thread_name.clone())
                .spawn(move || {
                    if pool.inner.leave_batch {
                        sched_policy::leave_batch();
                    }
                    pool.thread_main()
                });
            if spawned.is_err() {
                // Out of threads: the job stays queued for an existing thread; if
                // there is none, run it on the caller's thread rather than lose it.
                let mut st = self.lock();
                st.threads -= 1;
                if st.threads == 0 {
                    let job = st.queue.pop_back();
                    drop(st);
                    if let Some(job) = job {
                        job();
                    }
                }
            }
        }
        // Else: every thread is busy and the pool is at its cap; the job waits.
    }

    fn thread_main(self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                // Jobs catch their own panics (`spawn`); this is belt and braces
                // so a pool thread never dies with the count still held.
                let _ = catch_unwind(AssertUnwindSafe(job));
                st = self.lock();
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .inner
                .work
                .wait_timeout(st, self.inner.keep_alive)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }

    /// Runtime shutdown: idle threads exit now, busy ones after the queue drains.
    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.inner.work.notify_all();
    }

    /// Runs `f` on a pool thread, with no handle: for the runtime's own jobs,
    /// which settle their outcome themselves (a task that got no stack).
    pub(crate) fn run_detached(&self, f: impl FnOnce() + Send + 'static) {
        self.submit(Box::new(f));
    }

    pub(crate) fn spawn<F, T>(&self, f: F) -> BlockingHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let id = TaskId(next_task_id());
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                result: None,
                waiter: None,
                done: false,
            }),
        });
        let done = slot.clone();
        self.submit(Box::new(move || {
            let result = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(v) => Ok(v),
                Err(p) => Err(JoinError::panicked(id, p)),
            };
            let waiter = {
                let mut st = done.state.lock().unwrap_or_else(|e| e.into_inner());
                st.result = Some(result);
                st.done = true;
                st.waiter.take()
            };
            if let Some(w) = waiter {
                w.unpark();
            }
        }));
        BlockingHandle { id, slot }
    }
}

struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

struct SlotState<T> {
    result: Option<Result<T, JoinError>>,
    waiter: Option<Unparker>,
    done: bool,
}

/// The handle of a job on the blocking pool, returned by [`spawn_blocking`].
/// Dropping it detaches the job, which still runs to completion.
pub struct BlockingHandle<T> {
    id: TaskId,
    slot: Arc<Slot<T>>,
}

impl<T> BlockingHandle<T> {
    /// Waits for the job and returns its value, or a `JoinError` if it panicked
    /// (`JoinError::is_panic`, with the payload). From a task this parks the task
    /// only (its worker keeps running others) and is a cancellation point: a
    /// cancelled caller unwinds and the job is detached. From a plain thread it
    /// blocks the thread.
    pub fn join(self) -> Result<T, JoinError> {
        or_raise(self.join_deadline(None))
    }

    /// Like `join`, but gives up at `deadline` (the job keeps running, and the
    /// handle is returned inside the error for a later join).
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JoinError>, Self> {
        let deadline = Instant::now().checked_add(timeout);
        match self.join_deadline(deadline) {
            Ok(r) => Ok(r),
            Err(WaitError::TimedOut) => Err(self),
            Err(e) => e.raise(),
        }
    }

    /// Whether the job has finished (then `join` returns at once).
    pub fn is_finished(&self) -> bool {
        self.slot
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .done
    }

    /// An id unique among tasks and blocking jobs, used in `JoinError`s.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The `Result` form of [`join`](Self::join) (see "Two forms of every
    /// blocking call" in [`crate::sync`]): waits for the job until `deadline`
    /// (`None`: no deadline of its own; a passed one only looks). A
    /// cancellation or an elapsed enclosing `timeout` scope is
    /// `Err(Cancelled)` / `Err(Elapsed)`, the own deadline `Err(TimedOut)`;
    /// on every `Err` the job keeps running and the handle stays joinable.
    pub fn join_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Result<T, JoinError>, WaitError> {
        loop {
            {
                let mut st = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.done {
                    st.waiter = None;
                    return Ok(st.result.take().expect("ivy: blocking result taken twice"));
                }
                st.waiter = Some(park::current_unparker());
            }
            // A passed deadline is a non-blocking try: look (above), never park.
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            let parked = if timed_out {
                Ok(())
            } else {
                park::park_for(deadline, crate::task::wait_reason::WaitReason::Blocking)
            };
            let timed_out = timed_out || deadline.is_some_and(|d| Instant::now() >= d);
            if parked.is_err() || timed_out {
                let mut st = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
                st.waiter = None;
                if st.done && parked.is_ok() {
                    return Ok(st.result.take().expect("ivy: blocking result taken twice"));
                }
                parked?;
                return Err(WaitError::TimedOut);
            }
        }
    }
}

impl<T> fmt::Debug for BlockingHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Runs `f` on a thread of the blocking pool and returns its result: the
/// `asyncio.to_thread` of ivy. The calling task parks until `f` is done while its
/// worker runs other tasks. Callable from plain threads too (a process-wide pool).
///
/// ```
/// let n = ivy::run(|| ivy::spawn_blocking(|| std::fs::read_dir(".").unwrap().count()).join().unwrap());
/// assert!(n > 0);
/// ```
pub fn spawn_blocking<F, T>(f: F) -> BlockingHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    BlockingPool::current().spawn(f)
}

/// Number of threads the caller's blocking pool has now (running or idle). For
/// diagnostics and tests.
#[doc(hidden)]
pub fn blocking_threads() -> usize {
    BlockingPool::current().threads()
}

/// Runs `f` where it may block: in a task, on the blocking pool (the task parks);
/// on a plain thread, inline. A panic in `f` resumes on the caller. Interruptions
/// (cancellation, an elapsed scope) return `Err` and detach the job.
pub(crate) fn run_blocking<F, T>(f: F) -> Result<T, WaitError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if !crate::task::current::in_task() {
        return Ok(f());
    }
    park::check_interrupt()?;
    let handle = BlockingPool::current().spawn(f);
    match handle.join_deadline(None)? {
        Ok(v) => Ok(v),
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => unreachable!("a blocking job fails only by panicking: {e}"),
        },
    }
}
