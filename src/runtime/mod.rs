//! The runtime: worker threads, the queues they share, start-up and shutdown.
//!
//! `Runtime` owns the worker threads; `Handle` is a cheap clone that spawns onto
//! them from anywhere. `run(f)` is `asyncio.run`: build a runtime, run `f` as the
//! main task, then shut down.
//!
//! Shutdown (when a `Runtime` is dropped or `shutdown` is called): new spawns are
//! cancelled before they start, every live task is cancelled (it sees the
//! cancellation at its next blocking call, runs its destructors and finishes), the
//! caller waits until no task is left, and only then are the workers stopped and
//! joined. Nothing is force-unwound, so no unwind can cross C frames. A task that
//! never reaches a blocking call again keeps shutdown waiting, as in asyncio.
//!
//! A spawn that comes once the runtime is closing -- during shutdown, or through a
//! `Handle` that outlived its `Runtime` -- is never queued: the task completes at
//! once, on the spawning thread, as cancelled before it started (its closure is
//! dropped unrun), and `join` says `Cancelled`. Queuing it instead would leave it
//! for workers that may be gone, and its `join` would hang forever. Whether a spawn
//! is queued or refused is decided by a Dekker handshake between the spawn (count
//! the task live, then read `closing`) and the shutdown (set `closing`, then wait
//! for `live == 0`), all SeqCst: a task counted before shutdown looked is waited
//! for (and cancelled as it starts); one counted after sees `closing`.
//!
//! The workers' fds (epoll, eventfd) close when the workers exit, although a
//! `Handle` can keep `Shared` alive much longer (io/reactor.rs).

mod builder;
pub mod debug;
mod handle;
pub(crate) mod idle;
pub(crate) mod placement;
pub(crate) mod ready_queue;
pub(crate) mod registry;
pub(crate) mod sched_policy;
pub(crate) mod shared;
pub(crate) mod spawn_slot;
pub(crate) mod task_pool;
pub(crate) mod worker;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use crate::task::JoinHandle;

pub(crate) use builder::check_stack_size;
pub use builder::Builder;
pub use handle::Handle;
pub use shared::HookParkGuard;
pub(crate) use shared::Shared;

pub use crate::stack::{guard_mode as stack_guard_mode, GuardMode as StackGuardMode};
pub use crate::stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE};

/// An ivy runtime: a set of worker threads running tasks.
///
/// Dropping it shuts it down (see the module documentation): leftover tasks are
/// cancelled and joined, then the workers are joined.
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<ThreadHandle<()>>,
    /// Debug mode's watchdog (debug.rs), stopped once every task finished.
    watchdog: Option<debug::Watchdog>,
}

impl Runtime {
    /// A runtime configured from the environment (`IVY_WORKERS`, `IVY_STACK_SIZE`)
    /// and defaults.
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A handle for spawning onto this runtime from anywhere.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.remotes.len()
    }

    /// Spawns a task onto this runtime.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle().spawn(f)
    }

    /// Runs `f` as a task on this runtime and blocks the calling thread until it
    /// returns, handing back its result. A panic in `f` is resumed on the caller.
    ///
    /// # Panics
    /// If called from a worker thread of this same runtime (it would deadlock), or
    /// if the task is cancelled.
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let on_own_worker =
            worker::try_with_current(|w| Arc::ptr_eq(&w.shared, &self.shared)).unwrap_or(false);
        assert!(
            !on_own_worker,
            "ivy: Runtime::block_on called from one of the runtime's own tasks; \
             spawn the work and join it instead"
        );
        match self
            .handle()
            .spawn_named(Some("main".into()), None, f)
            .join()
        {
            Ok(v) => v,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("ivy: the main task did not finish: {e}"),
            },
        }
    }

    /// Shuts the runtime down now; the same as dropping it.
    pub fn shutdown(self) {}

    fn shutdown_now(&mut self) {
        let on_own_worker =
            worker::try_with_current(|w| Arc::ptr_eq(&w.shared, &self.shared)).unwrap_or(false);
        if on_own_worker {
            // Waiting here would deadlock this worker. Leave the runtime running;
            // its threads exit with the process. Report it: this is a bug in the caller.
            eprintln!("ivy: a Runtime was dropped inside one of its own tasks; it is leaked");
            return;
        }
        let shared = &self.shared;
        shared.closing.store(true, Ordering::SeqCst);
        // The other half of the handshake with `schedule_new` (module comment): the
        // reads of `live` below see every task whose spawn did not see `closing`.
        std::sync::atomic::fence(Ordering::SeqCst);
        if shared.debug.slow_task.is_some() {
            debug::report_leftovers(&shared.registry.snapshot());
        }
        // A spawn racing with `closing` may register a task after a snapshot, so
        // cancel repeatedly until the registry drains.
        while shared.registry.live() != 0 {
            for task in shared.registry.snapshot() {
                task.cancel();
            }
            let deadline = Instant::now() + Duration::from_millis(20);
            while shared.registry.live() != 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        shared.registry.wait_drained();
        shared.shutdown.store(true, Ordering::Release);
        for remote in shared.remotes.iter() {
            remote.unparker.unpark();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
        shared.task_pool.clear();
        shared.blocking.shutdown();
        // The workers' stack caches went with their threads; what they spilled to the
        // global lists is discarded now rather than by a trim that may never come.
        crate::stack::discard_free_stacks();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers())
            .field("live_tasks", &self.shared.registry.live())
            .finish()
    }
}

/// Starts a runtime, runs `f` as its main task, shuts the runtime down (cancelling
/// and joining leftover tasks) and returns `f`'s result. The `asyncio.run` of ivy.
///
/// # Panics
/// If the runtime cannot start (e.g. an invalid `IVY_WORKERS`), and, like
/// `std::thread::scope`, resumes a panic of the main task on the caller.
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("ivy::run: cannot start the runtime: {e}"),
    };
    rt.block_on(f)
}
