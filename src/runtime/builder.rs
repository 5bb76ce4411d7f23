//! `Builder`: a runtime's configuration, from explicit calls and from the
//! environment (`IVY_WORKERS`, `IVY_STACK_SIZE`, ...). Bad values are an
//! `io::Error` from `build`, never a panic.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::idle::Idle;
use super::placement::Homes;
use super::registry::Registry;
use super::worker::{Remote, Worker};
use super::{debug, HookParkGuard, Runtime, Shared, DEFAULT_STACK_SIZE, MAX_STACK_SIZE};
use crate::io::reactor::Reactor;
use crossbeam_deque::{Injector, Worker as Deque};

/// Configures and builds a [`Runtime`].
///
/// Environment: `IVY_WORKERS` sets the default worker count, `IVY_STACK_SIZE`
/// the default task stack size in bytes and `IVY_UNGUARDED_STACKS=1` allows
/// unguarded stacks and `IVY_SCHED_BATCH=0` keeps the workers' scheduling policy
/// (see [`batch_scheduling`](Builder::batch_scheduling)); explicit builder
/// calls win over them. `IVY_STACK_GUARD` and
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
    fifo_spawns: bool,
    batch_scheduling: Option<bool>,
    stack_top_reserve: usize,
    hook_park_guard: Option<HookParkGuard>,
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
    /// [`DEFAULT_STACK_SIZE`]). Rounded up to a power of two of at least 16 KiB,
    /// whose top 128 bytes hold each task's descriptor; tasks may override it.
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

    /// For language bindings: sets `bytes` aside at the very top of every task's
    /// stack, above the task's first frame (default: 0, none), for the code the
    /// task runs to find with [`task::stack_top_reserve`](crate::task::stack_top_reserve)
    /// and use as memory of its own while it runs; it is freed with the stack.
    /// The Python binding keeps its per-task interpreter data there, so that it
    /// shares a page with the task's first frames (one page per parked task
    /// rather than two). The reserve comes on top of the stack size (a task still
    /// gets its stack size for its frames and its 128-byte descriptor, which sits
    /// between them and the reserve); `build` refuses more than 1 MiB.
    pub fn stack_top_reserve(mut self, bytes: usize) -> Builder {
        self.stack_top_reserve = bytes;
        self
    }

    /// Starts tasks spawned by a task in the order they were spawned (default:
    /// off, newest first).
    ///
    /// By default a worker runs the unstarted tasks spawned on it newest first
    /// (a LIFO deque, as Go's and tokio's "next task" slot): a tree of spawns
    /// then runs depth-first, with few stacks live at once and warm caches.
    /// Runtimes that promise their users FIFO starts, as asyncio does (the
    /// Python binding), turn this on; peers still steal the oldest tasks.
    /// With it on, a task woken by a task that then ends (a joiner) runs after
    /// the worker's unstarted tasks, up to a bound, as in asyncio's one FIFO:
    /// joining n tasks in spawn order then parks about once per 64 tasks
    /// instead of once per task.
    pub fn fifo_spawns(mut self, on: bool) -> Builder {
        self.fifo_spawns = on;
        self
    }

    /// Runs the worker threads under Linux's `SCHED_BATCH` policy (default: on,
    /// or the `IVY_SCHED_BATCH` environment variable: `0`/`false` off,
    /// `1`/`true` on).
    ///
    /// A woken batch thread does not preempt the thread running on its CPU; it
    /// runs when that one blocks or its slice ends (sched(7)). On an idle CPU
    /// nothing changes. When a server shares its cores with its clients, this
    /// keeps each side's batch of messages together instead of one message per
    /// context switch: an echo server on 2 cores with its load generator
    /// served 23% more messages and cut its p99 in half
    /// (`src/runtime/sched_policy.rs`). Only a worker whose inherited policy is
    /// `SCHED_OTHER` changes; one started under `SCHED_IDLE` or a real-time
    /// policy keeps it, and so do the blocking pool's threads. If the kernel
    /// refuses the change, the worker runs on under `SCHED_OTHER`.
    ///
    /// Turn it off for a latency-bound server whose cores are shared with
    /// CPU-bound work it must preempt.
    pub fn batch_scheduling(mut self, on: bool) -> Builder {
        self.batch_scheduling = Some(on);
        self
    }

    /// For language bindings: runs every park of a *hooked libc call* (README,
    /// "Hooked libc calls") made by this runtime's tasks inside `guard`, which
    /// must call `park` exactly once, on the calling thread.
    ///
    /// Why: a binding keeps per-thread state of its own that must be saved
    /// and restored around every switch of its tasks; its own blocking calls
    /// do that, but a libc call interposed by the hook parks the task from
    /// inside foreign code (a socket call of the Python `socket` module),
    /// behind the binding's back. The Python package (PyO3) saves PyO3's
    /// per-thread attach count this way. Other parks (ivy's own API) are not
    /// wrapped: the binding calls those itself.
    pub fn hook_park_guard(mut self, guard: HookParkGuard) -> Builder {
        self.hook_park_guard = Some(guard);
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
        if self.stack_top_reserve > crate::stack::MAX_TOP_RESERVE {
            return Err(invalid(format!(
                "ivy: a stack top reserve must be at most {} bytes, not {}",
                crate::stack::MAX_TOP_RESERVE,
                self.stack_top_reserve
            )));
        }
        let reserve = crate::stack::round_reserve(self.stack_top_reserve);
        if crate::stack::with_top_reserve(stack_size, reserve) > MAX_STACK_SIZE {
            return Err(invalid(format!(
                "ivy: a stack size plus its top reserve must be at most {MAX_STACK_SIZE} bytes"
            )));
        }
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
            None => env_bool("IVY_UNGUARDED_STACKS")?.unwrap_or(false),
        };
        // The workers leave `SCHED_OTHER` only if the builder's thread runs
        // under it (sched_policy.rs); the pool's threads then return to it.
        let batch_scheduling = match self.batch_scheduling {
            Some(on) => on,
            None => env_bool("IVY_SCHED_BATCH")?.unwrap_or(true),
        } && super::sched_policy::is_other();
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
            batch_scheduling,
        );

        crate::stack::overflow::install_handler();
        // Before the first task: a loaded libivy_hook (or the `hook` feature)
        // gets this copy's services, so hooked calls in its tasks park.
        crate::hook::attach();
        let mut deques = Vec::with_capacity(workers);
        let parkers = Reactor::group(workers)?;
        let mut remotes = Vec::with_capacity(workers);
        for parker in &parkers {
            let deque = if self.fifo_spawns {
                Deque::new_fifo()
            } else {
                Deque::new_lifo()
            };
            remotes.push(Remote {
                stealer: deque.stealer(),
                inbox: Injector::new(),
                unparker: parker.handle(),
                now_running: Default::default(),
                newest_spawn: Default::default(),
            });
            deques.push(deque);
        }
        let shared = Arc::new(Shared {
            remotes: remotes.into_boxed_slice(),
            injector: Injector::new(),
            idle: Idle::new(workers),
            homes: Homes::new(workers),
            registry: Registry::new(workers),
            origin: Instant::now(),
            default_stack_size: stack_size,
            blocking,
            debug: debug_config,
            task_pool: Default::default(),
            unguarded_stacks,
            stack_top_reserve: reserve,
            hook_park_guard: self.hook_park_guard,
            closing: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        });
        let mut rt = Runtime {
            shared: shared.clone(),
            threads: Vec::with_capacity(workers),
            watchdog: debug::Watchdog::start(&shared, format!("{prefix}-watchdog"))?,
        };
        // Which task unwinds, as std's per-thread panic count cannot tell
        // (task/panic_hook.rs): before any task can run.
        crate::task::panic_hook::install();
        // Oldest-first spawns also decide where in-order joins ping-pong
        // (worker.rs, `behind_spawned`).
        let fifo_spawns = self.fifo_spawns;
        for (index, (deque, parker)) in deques.into_iter().zip(parkers).enumerate() {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{prefix}-{index}"))
                .spawn(move || Worker::new(index, shared, deque, parker, fifo_spawns).run())?;
            if batch_scheduling {
                super::sched_policy::enter_batch(&thread);
            }
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

/// `0`, `1`, `false`, `true`; unset or empty: `None`.
fn env_bool(name: &str) -> io::Result<Option<bool>> {
    match std::env::var(name).as_deref() {
        Err(_) | Ok("") => Ok(None),
        Ok("0") | Ok("false") => Ok(Some(false)),
        Ok("1") | Ok("true") => Ok(Some(true)),
        Ok(v) => Err(invalid(format!(
            "ivy: {name}={v:?} is not one of 0, 1, true, false"
        ))),
    }
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
