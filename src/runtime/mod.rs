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
//! `Handle` can keep `Shared` alive much longer (parker.rs).

pub mod debug;
pub(crate) mod idle;
pub(crate) mod parker;
pub(crate) mod registry;
pub(crate) mod task_pool;
pub(crate) mod worker;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Worker as Deque};

use crate::task::raw::{NotRun, Task};
use crate::task::JoinHandle;
use idle::Idle;
use parker::Parker;
use registry::Registry;
use worker::{Remote, Worker};

pub use crate::stack::{guard_mode as stack_guard_mode, GuardMode as StackGuardMode};
pub use crate::stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE};

/// State shared by all workers of one runtime and every handle to it.
pub(crate) struct Shared {
    pub(crate) remotes: Box<[Remote]>,
    pub(crate) injector: Injector<Arc<Task>>,
    pub(crate) idle: Idle,
    pub(crate) registry: Registry,
    /// Time origin of the workers' timer wheels.
    pub(crate) origin: Instant,
    pub(crate) default_stack_size: usize,
    /// Threads for blocking work (`ivy::spawn_blocking`, `ivy::fs`).
    pub(crate) blocking: crate::blocking::BlockingPool,
    pub(crate) debug: debug::DebugConfig,
    /// Finished tasks' allocations, for reuse (task_pool.rs).
    pub(crate) task_pool: task_pool::SharedPool,
    /// Tasks may run on stacks without a guard page (`Builder::unguarded_stacks`).
    pub(crate) unguarded_stacks: bool,
    /// Set at the start of shutdown: new tasks are cancelled before they run.
    closing: AtomicBool,
    /// Set once every task has finished: workers exit.
    shutdown: AtomicBool,
}

impl Shared {
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Whether a task just counted live (`Registry::spawned`) must not be queued
    /// (the handshake in the module comment).
    fn refuses_spawns(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Completes a task that will never run, on the calling thread (never a
    /// worker's stack: dropping the closure is user code that may block): its
    /// closure is dropped guarded, its joiner gets `why`.
    pub(crate) fn settle_unrun(&self, task: &Arc<Task>, why: NotRun) {
        task.body().start(Some(why));
        task.transition_to_done();
        self.registry.remove(task);
        crate::task::join::notify_done(task);
    }

    /// Wakes a sleeping worker if stealable work appeared and nobody is searching.
    pub(crate) fn notify_idle(&self) {
        if let Some(i) = self.idle.worker_to_notify() {
            self.remotes[i].unparker.unpark();
        }
    }

    /// Queues a freshly spawned (unstarted) task.
    pub(crate) fn schedule_new(self: &Arc<Self>, task: Arc<Task>) {
        let local = worker::try_with_current(|w| {
            if Arc::ptr_eq(&w.shared, self) {
                Some(w.index)
            } else {
                None
            }
        })
        .flatten();
        self.registry.spawned(&task, local);
        let refused = if self.refuses_spawns() {
            Some(NotRun::Closed)
        } else {
            crate::stack::check_available(task.stack_size, self.unguarded_stacks)
                .err()
                .map(NotRun::NoStack)
        };
        if let Some(why) = refused {
            // Nothing may run it: complete it here, cancelled before it started, or
            // refused a stack (no guarded one left: stack/guard.rs).
            return self.settle_unrun(&task, why);
        }
        match local {
            Some(_) => worker::with_current(|w| w.push_spawned(task)),
            None => {
                self.injector.push(task);
                self.notify_idle();
            }
        }
    }
}

/// Queues a woken, started task on its home worker.
pub(crate) fn schedule_woken(task: Arc<Task>) {
    let home = task.home();
    let shared = task.shared.clone();
    let task =
        match worker::try_with_current(|w| Arc::ptr_eq(&w.shared, &shared) && w.index == home) {
            Some(true) => {
                // Woken by a task (or timer) on its own home thread: no hand-off needed.
                return worker::with_current(|w| {
                    let lifo = w.is_running_task();
                    w.push_woken(task, lifo)
                });
            }
            _ => task,
        };
    let remote = &shared.remotes[home];
    remote.inbox.push(task);
    remote.unparker.unpark();
}

/// Configures and builds a [`Runtime`].
///
/// Environment: `IVY_WORKERS` sets the default worker count, `IVY_STACK_SIZE`
/// the default task stack size in bytes and `IVY_UNGUARDED_STACKS=1` allows
/// unguarded stacks; explicit builder calls win over them. `IVY_STACK_GUARD` and
/// `IVY_STACK_GUARD_BUDGET` choose the process's guard mechanism (see
/// [`unguarded_stacks`](Builder::unguarded_stacks)); `build` rejects bad values.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: Option<usize>,
    thread_name: Option<String>,
    max_blocking_threads: Option<usize>,
    blocking_keep_alive: Option<Duration>,
    debug: Option<bool>,
    slow_task: Option<Duration>,
    unguarded_stacks: Option<bool>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Number of worker threads (default: the number of available cores).
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = Some(n);
        self
    }

    /// Default stack size of tasks spawned on this runtime, in bytes (default:
    /// [`DEFAULT_STACK_SIZE`]). Rounded up to whole pages; tasks may override it.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Name prefix of the worker threads (default `ivy-worker`; threads are
    /// named `PREFIX-0`, `PREFIX-1`, ...).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Builder {
        self.thread_name = Some(prefix.into());
        self
    }

    /// Maximum number of threads of the blocking pool (`ivy::spawn_blocking`,
    /// `ivy::fs`, name resolution); default 512. Jobs beyond it queue.
    pub fn max_blocking_threads(mut self, n: usize) -> Builder {
        self.max_blocking_threads = Some(n);
        self
    }

    /// How long an idle blocking-pool thread waits for work before it exits
    /// (default 10 s).
    pub fn blocking_keep_alive(mut self, d: Duration) -> Builder {
        self.blocking_keep_alive = Some(d);
        self
    }

    /// Debug mode (default: off, or `IVY_DEBUG=1`): reports tasks that run too
    /// long without suspending (a watchdog thread names them while they still
    /// run) and the tasks left at shutdown; see
    /// [`debug`](crate::runtime::debug).
    pub fn debug(mut self, on: bool) -> Builder {
        self.debug = Some(on);
        self
    }

    /// In debug mode, report a task that runs longer than this without
    /// suspending (default 100 ms, or `IVY_DEBUG_SLOW_MS`). Implies debug mode.
    pub fn slow_task_threshold(mut self, d: Duration) -> Builder {
        self.slow_task = Some(d);
        self.debug = Some(true);
        self
    }

    /// Lets tasks of this runtime run on stacks **without a guard page** when no
    /// guarded one is left (default: off, or `IVY_UNGUARDED_STACKS=1`).
    ///
    /// Only kernels without `MADV_GUARD_INSTALL` (before Linux 6.13), or a process
    /// run with `IVY_STACK_GUARD=mprotect`, ever run short of guards: there each
    /// guard is an `mprotect`ed page that costs VMAs, within a budget from
    /// `vm.max_map_count` (`IVY_STACK_GUARD_BUDGET=N` sets it). By default, a task
    /// that would need a new stack past the budget is refused: `task::Builder`'s
    /// spawn returns the error, `spawn`'s `JoinHandle` reports it
    /// ([`JoinError::is_no_stack`](crate::JoinError::is_no_stack)). With this
    /// option such tasks run instead, and the risk is yours: a stack overflow in
    /// one is not caught, it silently corrupts the memory below the stack (another
    /// task's stack) instead of stopping the process with a report. Prefer raising
    /// `vm.max_map_count`.
    pub fn unguarded_stacks(mut self, allow: bool) -> Builder {
        self.unguarded_stacks = Some(allow);
        self
    }

    /// Starts the worker threads.
    pub fn build(self) -> io::Result<Runtime> {
        let workers = match self.workers {
            Some(n) => n,
            None => match env_usize("IVY_WORKERS")? {
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
        };
        if workers == 0 || workers > 4096 {
            return Err(invalid(format!(
                "ivy: the worker count must be between 1 and 4096, not {workers}"
            )));
        }
        let stack_size = match self.stack_size {
            Some(n) => n,
            None => env_usize("IVY_STACK_SIZE")?.unwrap_or(DEFAULT_STACK_SIZE),
        };
        check_stack_size(stack_size)?;
        let debug_on = match self.debug {
            Some(on) => on,
            None => matches!(std::env::var("IVY_DEBUG").as_deref(), Ok("1") | Ok("true")),
        };
        let slow = match self.slow_task {
            Some(d) => d,
            None => env_usize("IVY_DEBUG_SLOW_MS")?.map_or(debug::DEFAULT_SLOW_TASK, |ms| {
                Duration::from_millis(ms as u64)
            }),
        };
        let debug_config = debug::DebugConfig {
            slow_task: debug_on.then_some(slow),
        };
        crate::stack::guard_env_config()?;
        let unguarded_stacks = match self.unguarded_stacks {
            Some(allow) => allow,
            None => match std::env::var("IVY_UNGUARDED_STACKS").as_deref() {
                Err(_) | Ok("") | Ok("0") | Ok("false") => false,
                Ok("1") | Ok("true") => true,
                Ok(v) => {
                    return Err(invalid(format!(
                        "ivy: IVY_UNGUARDED_STACKS={v:?} is not one of 0, 1, true, false"
                    )))
                }
            },
        };
        let prefix = self.thread_name.unwrap_or_else(|| "ivy-worker".to_string());
        let max_blocking = self
            .max_blocking_threads
            .unwrap_or(crate::blocking::DEFAULT_MAX_THREADS);
        if max_blocking == 0 {
            return Err(invalid(
                "ivy: max_blocking_threads must be at least 1".to_string(),
            ));
        }
        let blocking = crate::blocking::BlockingPool::new(
            max_blocking,
            self.blocking_keep_alive
                .unwrap_or(crate::blocking::DEFAULT_KEEP_ALIVE),
            format!("{prefix}-blocking"),
        );

        crate::stack::overflow::install_handler();
        let mut deques = Vec::with_capacity(workers);
        let mut parkers = Vec::with_capacity(workers);
        let mut remotes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let deque = Deque::new_lifo();
            let parker = Parker::new()?;
            remotes.push(Remote {
                stealer: deque.stealer(),
                inbox: Injector::new(),
                unparker: parker.unparker(),
                now_running: Default::default(),
            });
            deques.push(deque);
            parkers.push(parker);
        }
        let shared = Arc::new(Shared {
            remotes: remotes.into_boxed_slice(),
            injector: Injector::new(),
            idle: Idle::new(workers),
            registry: Registry::new(workers),
            origin: Instant::now(),
            default_stack_size: stack_size,
            blocking,
            debug: debug_config,
            task_pool: Default::default(),
            unguarded_stacks,
            closing: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        });
        let mut rt = Runtime {
            shared: shared.clone(),
            threads: Vec::with_capacity(workers),
            watchdog: debug::Watchdog::start(&shared, format!("{prefix}-watchdog"))?,
        };
        for (index, (deque, parker)) in deques.into_iter().zip(parkers).enumerate() {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{prefix}-{index}"))
                .spawn(move || Worker::new(index, shared, deque, parker).run())?;
            rt.threads.push(thread);
        }
        Ok(rt)
    }
}

pub(crate) fn check_stack_size(bytes: usize) -> io::Result<()> {
    if bytes == 0 || bytes > MAX_STACK_SIZE {
        return Err(invalid(format!(
            "ivy: a stack size must be between 1 byte and {MAX_STACK_SIZE} bytes, not {bytes}"
        )));
    }
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn env_usize(name: &str) -> io::Result<Option<usize>> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| invalid(format!("ivy: {name}={v:?} is not a whole number"))),
    }
}

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

/// A cheap, cloneable reference to a runtime, for spawning onto it from any thread.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    /// The runtime of the current task, if the caller is one.
    pub fn try_current() -> Option<Handle> {
        worker::try_with_current(|w| Handle {
            shared: w.shared.clone(),
        })
    }

    /// The runtime of the current task.
    ///
    /// # Panics
    /// When called outside an ivy task; use [`Handle::try_current`] to check.
    pub fn current() -> Handle {
        Handle::try_current().expect("ivy: Handle::current() called outside an ivy runtime")
    }

    /// Spawns a task onto the runtime.
    ///
    /// On a runtime that is shutting down or gone (this handle outlived its
    /// `Runtime`), the task never runs: its closure is dropped and the handle's
    /// `join` returns `Cancelled` at once. A task refused a stack (no guarded one
    /// left: [`Builder::unguarded_stacks`]) joins with `is_no_stack()`.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_named(None, None, f)
    }

    pub(crate) fn spawn_named<F, T>(
        &self,
        name: Option<Box<str>>,
        stack_size: Option<usize>,
        f: F,
    ) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let stack = stack_size.unwrap_or(self.shared.default_stack_size);
        crate::task::spawn_on(&self.shared, name, stack, f)
    }

    /// The stack size tasks get when they do not ask for one.
    pub fn default_stack_size(&self) -> usize {
        self.shared.default_stack_size
    }

    /// Number of tasks spawned and not yet finished.
    pub fn live_tasks(&self) -> usize {
        self.shared.registry.live()
    }

    /// A snapshot of every live task (asyncio's `all_tasks()`), ordered by id:
    /// tasks still queued for their first run too (`Scheduled`, `started:
    /// false`), so it lists as many tasks as `live_tasks` counts.
    pub fn tasks(&self) -> Vec<debug::TaskSnapshot> {
        let mut v: Vec<_> = self
            .shared
            .registry
            .snapshot()
            .iter()
            .map(|t| debug::TaskSnapshot::of(t))
            .collect();
        v.sort_by_key(|t| t.id);
        v
    }

    /// `tasks()` formatted one per line: what every task is doing.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for t in self.tasks() {
            out.push_str(&t.to_string());
            out.push('\n');
        }
        out
    }

    /// Task counters of this runtime.
    pub fn metrics(&self) -> debug::Metrics {
        let (spawned, completed) = self.shared.registry.totals();
        debug::Metrics {
            workers: self.shared.remotes.len(),
            live_tasks: self.shared.registry.live(),
            spawned_tasks: spawned,
            completed_tasks: completed,
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.shared.remotes.len())
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
