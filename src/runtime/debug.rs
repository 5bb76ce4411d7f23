//! Introspection and debug mode: asyncio's `all_tasks()`, debug mode and its
//! slow-callback warning.
//!
//! * `Handle::tasks()` snapshots every live task, started or not: id, name,
//!   scheduling state, home worker, whether it was cancelled, and what it is
//!   blocked on (a `WaitReason` each blocking primitive records before it parks:
//!   one relaxed byte store, so it is always on). `Handle::dump()` formats it.
//!   Unstarted tasks are listed too (`Scheduled`, "not started"): a snapshot
//!   taken right after a burst of spawns must not look empty.
//! * `Handle::metrics()`: live, spawned and completed task counts.
//! * Debug mode (`Builder::debug(true)` or `IVY_DEBUG=1`): every resume of a task
//!   is timed, and one that runs longer than the threshold without suspending
//!   (`Builder::slow_task_threshold`, `IVY_DEBUG_SLOW_MS`, default 100 ms) is
//!   reported on stderr — it stalled every other task queued on its worker. At
//!   shutdown, the tasks still alive (about to be cancelled) are listed, started
//!   or not.
//!   A panic in a task whose handle was dropped is always reported.
//!
//! # The watchdog
//! A report at the end of a long resume comes too late when the resume never
//! ends: a task blocked in `std::thread::sleep`, a `std::net` call, or on a
//! `std::sync::Mutex` whose holder is parked on the same worker (a deadlock)
//! holds its worker forever and the end-of-resume report never comes. So in
//! debug mode a watchdog thread looks at what each worker is running every
//! quarter threshold and names a task that has run past the threshold *while
//! it still runs*: once when it crosses the threshold, then each time its run
//! doubles (so a stuck worker is named again, ever less often).
//!
//! Each worker publishes what it resumes in its `NowRunning` slot: the task's
//! id, registry key and start time, and id 0 when the resume ends (a seqlock
//! with the id as its sequence word: three relaxed stores and a release store
//! per resume, only in debug mode; off, the switch path does nothing more than
//! the one `Option` test it already did). The watchdog never holds a pointer
//! to a task: it looks the name up in the registry by key under the shard lock
//! and checks the id, so a task that finished (and was freed, or its slot
//! reused) in the meantime is simply not reported. It stops at shutdown,
//! after the last task finished (a stuck leftover is what it is there for).
//!
//! Layer: scheduler. `WaitReason` is defined with the task header
//! (`task::wait_reason`) and re-exported here under its public path.

use std::fmt;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::runtime::shared::Shared;
use crate::task::header::TaskId;
use crate::task::raw::{self, Task};
/// Public as `ivy::runtime::debug::WaitReason`; defined with the task header.
pub use crate::task::wait_reason::WaitReason;

/// Scheduling state of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// In a run queue.
    Scheduled,
    /// Running on its worker now.
    Running,
    /// Suspended until something wakes it.
    Parked,
    /// Finished.
    Done,
}

/// A snapshot of one live task, from [`crate::Handle::tasks`].
#[derive(Clone, Debug)]
pub struct TaskSnapshot {
    pub id: TaskId,
    pub name: Option<String>,
    pub state: TaskState,
    /// What it waits for when parked.
    pub waiting_on: WaitReason,
    /// The worker it is bound to (`None` before its first run).
    pub worker: Option<usize>,
    /// Whether it has run yet. An unstarted task is `Scheduled`: queued for its
    /// first run (or, at shutdown, about to be cancelled before it runs).
    pub started: bool,
    pub cancelled: bool,
}

impl TaskSnapshot {
    pub(crate) fn of(task: &Task) -> TaskSnapshot {
        let state = match task.state() {
            raw::SCHEDULED => TaskState::Scheduled,
            raw::RUNNING => TaskState::Running,
            raw::PARKED => TaskState::Parked,
            _ => TaskState::Done,
        };
        let home = task.home();
        TaskSnapshot {
            id: TaskId(task.id()),
            name: task.name().map(str::to_owned),
            state,
            waiting_on: if state == TaskState::Parked {
                WaitReason::from_u8(task.wait_reason.load(Ordering::Relaxed))
            } else {
                WaitReason::None
            },
            worker: (home != raw::NO_HOME).then_some(home),
            started: home != raw::NO_HOME,
            cancelled: task.is_cancelled(),
        }
    }
}

impl fmt::Display for TaskSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {:>6} {:<24} {:?}",
            self.id,
            self.name.as_deref().unwrap_or("<unnamed>"),
            self.state
        )?;
        if !self.started {
            f.write_str(" (not started)")?;
        }
        if self.waiting_on != WaitReason::None {
            write!(f, " on {:?}", self.waiting_on)?;
        }
        if let Some(w) = self.worker {
            write!(f, " (worker {w})")?;
        }
        if self.cancelled {
            f.write_str(" [cancelled]")?;
        }
        Ok(())
    }
}

/// Counters of a runtime, from [`crate::Handle::metrics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metrics {
    pub workers: usize,
    pub live_tasks: usize,
    pub spawned_tasks: u64,
    pub completed_tasks: u64,
}

/// Debug-mode settings of a runtime.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DebugConfig {
    /// Report resumes longer than this (debug mode on).
    pub(crate) slow_task: Option<Duration>,
}

pub(crate) const DEFAULT_SLOW_TASK: Duration = Duration::from_millis(100);

/// Debug mode: reports a task that ran `took` without suspending.
pub(crate) fn report_slow(task: &Task, took: Duration, worker: usize) {
    eprintln!(
        "ivy debug: task '{}' (id {}) ran {:.1} ms without yielding on worker {worker}; tasks queued behind it on its worker waited",
        task.name().unwrap_or("<unnamed>"),
        task.id(),
        took.as_secs_f64() * 1e3
    );
}

/// Debug mode: lists the tasks shutdown is about to cancel.
pub(crate) fn report_leftovers(tasks: &[std::sync::Arc<Task>]) {
    if tasks.is_empty() {
        return;
    }
    eprintln!(
        "ivy debug: shutdown cancels {} leftover task(s):",
        tasks.len()
    );
    for t in tasks.iter().take(50) {
        eprintln!("  {}", TaskSnapshot::of(t));
    }
}

/// What one worker is resuming right now, for the watchdog (debug mode only).
/// Written only by its worker; `id` is 0 between resumes (task ids start at 1).
#[derive(Default)]
pub(crate) struct NowRunning {
    id: AtomicU64,
    key: AtomicUsize,
    /// Start of the resume, in nanoseconds since the runtime's origin.
    since_ns: AtomicU64,
}

impl NowRunning {
    /// The worker, before resuming `task`.
    #[inline]
    pub(crate) fn publish(&self, task: &Task, since_ns: u64) {
        // Seqlock write: `id` is 0 here (cleared at the end of the last resume).
        // The fence orders that 0 before the data, so a reader that sees the new
        // data and then re-reads `id` cannot find the old id still there.
        fence(Ordering::Release);
        self.since_ns.store(since_ns, Ordering::Relaxed);
        self.key
            .store(task.registry_key.load(Ordering::Relaxed), Ordering::Relaxed);
        self.id.store(task.id(), Ordering::Release);
    }

    /// The worker, after the resume returned.
    #[inline]
    pub(crate) fn clear(&self) {
        self.id.store(0, Ordering::Release);
    }

    /// (id, registry key, start) of the running resume, if one is running and
    /// the three were read from the same `publish`.
    fn read(&self) -> Option<(u64, usize, u64)> {
        let id = self.id.load(Ordering::Acquire);
        if id == 0 {
            return None;
        }
        let since = self.since_ns.load(Ordering::Relaxed);
        let key = self.key.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        // Same id: no `publish` overwrote the data in between, except one for
        // the same task (a later resume of it: the start read may then be the
        // later one, which only makes the report later, never wrong).
        (self.id.load(Ordering::Relaxed) == id).then_some((id, key, since))
    }
}

/// The debug-mode watchdog thread of a runtime (see the module comment).
pub(crate) struct Watchdog {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the watchdog of `shared`, if debug mode is on.
    pub(crate) fn start(shared: &Arc<Shared>, name: String) -> std::io::Result<Option<Watchdog>> {
        let Some(limit) = shared.debug.slow_task else {
            return Ok(None);
        };
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = stop.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name)
                .spawn(move || watch(&shared, limit, &stop))?
        };
        Ok(Some(Watchdog {
            stop,
            thread: Some(thread),
        }))
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// How often the watchdog looks: a quarter of the threshold (so a report comes
/// at most 25% late), within 1 ms and 250 ms.
fn watch_period(limit: Duration) -> Duration {
    (limit / 4).clamp(Duration::from_millis(1), Duration::from_millis(250))
}

/// The watchdog's loop: until stopped, names each task that has been running
/// past `limit` (once at `limit`, then whenever its run doubles).
fn watch(shared: &Shared, limit: Duration, stop: &(Mutex<bool>, Condvar)) {
    let period = watch_period(limit);
    let limit_ns = limit.as_nanos().min(u64::MAX as u128) as u64;
    // Per worker: the run (id, start) seen last, and the length of run at which
    // it is reported next.
    let mut seen: Vec<((u64, u64), u64)> = vec![((0, 0), 0); shared.remotes.len()];
    let mut stopped = stop.0.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        stopped = stop
            .1
            .wait_timeout(stopped, period)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        if *stopped {
            return;
        }
        let now_ns = nanos_since(shared.origin, Instant::now());
        for (worker, remote) in shared.remotes.iter().enumerate() {
            let Some((id, key, since)) = remote.now_running.read() else {
                continue;
            };
            let (run, next) = &mut seen[worker];
            if *run != (id, since) {
                *run = (id, since);
                *next = limit_ns;
            }
            let ran = now_ns.saturating_sub(since);
            if ran < *next {
                continue;
            }
            // `None`: it finished since we read the slot; nothing to report.
            if let Some(name) = shared.registry.name_of(key, id) {
                report_stuck(name.as_deref(), id, worker, Duration::from_nanos(ran));
            }
            *next = ran.saturating_mul(2);
        }
    }
}

pub(crate) fn nanos_since(origin: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(origin)
        .as_nanos()
        .min(u64::MAX as u128) as u64
}

/// Debug mode: the watchdog saw a task running for `ran` and not done yet.
fn report_stuck(name: Option<&str>, id: u64, worker: usize, ran: Duration) {
    eprintln!(
        "ivy debug: task '{}' (id {id}) has been running for {:.1} ms on worker {worker} without \
         yielding and is still running; every other task of worker {worker} waits (a long computation \
         without yield_now, or a blocking std call: thread::sleep, std::net, a std::sync lock)",
        name.unwrap_or("<unnamed>"),
        ran.as_secs_f64() * 1e3
    );
}
