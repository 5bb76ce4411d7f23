//! A worker: one OS thread that runs tasks, and the scheduler's design.
//!
//! # Queues
//! Each worker has four sources of work, checked in this order:
//!
//! 1. `lifo`: a one-task slot for a task woken *by a task running on this worker*.
//!    When a task wakes another and then blocks (ping-pong, a producer handing an
//!    item to a consumer), the woken task runs next on the warm cache, with no
//!    cross-thread hand-off. Capped at `MAX_LIFO_STREAK` consecutive uses so two
//!    tasks waking each other cannot starve the rest.
//! 2. `ready`: a private FIFO of *started* tasks that are runnable again (yielded,
//!    woken on this thread, or pulled from `inbox`).
//! 3. `spawned`: a crossbeam-deque LIFO of *unstarted* tasks spawned here. Peers
//!    steal from its other end.
//! 4. `inbox`: an MPSC queue (a crossbeam `Injector` only this worker pops) of
//!    started tasks woken from other threads, and the runtime-wide `injector` of
//!    unstarted tasks spawned from outside the runtime.
//!
//! Every `FAIRNESS_INTERVAL` ticks the worker looks at `inbox`, the injector and
//! its timers first, so neither remote wake-ups nor timers starve behind a busy
//! local queue; a yielding task goes to the back of `ready`, and `spawned` gets a
//! turn every few ticks even when `ready` never empties.
//!
//! # A started task never changes thread
//! Stealing moves only *unstarted* tasks (they have no stack yet: cheap to move,
//! and no thread-local has been observed). Once a task has run, the worker that ran
//! it is its home for life: wake-ups route it back to its home's `lifo`/`ready`
//! (same thread) or `inbox` (other threads). This is what keeps `thread_local!`,
//! std's own thread-locals, `errno` and C libraries' thread state coherent inside a
//! task, where `may` and other stackful runtimes that migrate are unsound.
//!
//! The price: a woken task waits for its own worker. If a task computes for a long
//! time without a blocking call, tasks *started* on the same worker wait for it
//! (unstarted ones are stolen by idle peers). Call `ivy::yield_now()` in long loops;
//! `IVY_DEBUG` will flag tasks that do not, while they run: in debug mode each
//! resume publishes which task runs since when for the watchdog (debug.rs); with
//! debug mode off the switch path does not touch it.
//!
//! # Idle, and I/O
//! A worker with nothing to run searches its peers for a while (see `idle.rs`),
//! then sleeps in its `mio::Poll` with a timeout set to its next timer. That poll
//! is also the worker's I/O reactor (`crate::io::reactor`): events wake the
//! tasks that registered the fds, which live on this worker. A busy worker polls
//! it without sleeping every `FAIRNESS_INTERVAL` ticks, if it has registrations.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult};
use crossbeam_deque::{Steal, Stealer, Worker as Deque};

use crate::io::reactor::{Reactor, ReactorHandle};
use crate::runtime::debug;
use crate::runtime::Shared;
use crate::stack::overflow;
use crate::stack::TaskStack;
use crate::task::raw::{CoroSlot, Suspend, Task};
use crate::task::thread_state;
use crate::time::wheel::{TimerKey, TimerWheel};

const FAIRNESS_INTERVAL: u32 = 61;
/// I/O operations a task may complete without suspending before the next one
/// yields first (tokio's coop budget): a connection whose peer always has data
/// ready must not keep the other tasks of its worker, and the worker's poll,
/// waiting (regression: on an echo server with 100 connections, one connection
/// got 8x the round trips of another, and under load a single one starved 92).
const IO_BUDGET: u32 = 128;
const MAX_LIFO_STREAK: u32 = 3;
/// Finished tasks spawned on other shards that a worker keeps before removing
/// them from the registry with one lock per shard (registry.rs).
pub(crate) const UNLIST_BATCH: usize = 32;
/// Every this many ticks a spawned task runs before the ready queue.
const SPAWN_INTERVAL: u32 = 8;
/// How long a searching worker spins before it goes to sleep, in microseconds:
/// long enough to catch the next wake-up of a ping-pong between workers (a
/// sleeping vCPU takes ~45 us to wake here: chan_pingpong went from ~0.45 us to
/// 93 us a round trip without the spin), short enough not to take the core from
/// another process (an echo server's client on the same 2 cores: 100
/// connections served 165k msgs/s with 5 us, 138k with 20 us, 111k with 100 us;
/// the previous fixed 32 rounds of up to 128 `pause`s were ~120 us on this
/// Xeon, where a `pause` is ~140 cycles). Measured by time, not by rounds, so
/// the budget does not depend on the CPU's `pause` latency.
const SEARCH_SPIN_US: u64 = 5;
/// `spin_loop` hints between two looks at the queues while searching.
const SEARCH_PAUSES: u32 = 16;

/// The thread-owned part of a worker. Lives on the worker thread's stack for the
/// thread's lifetime; reached through `CURRENT`.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    spawned: Deque<Arc<Task>>,
    ready: RefCell<VecDeque<Arc<Task>>>,
    lifo: Cell<Option<Arc<Task>>>,
    wheel: RefCell<TimerWheel<Arc<Task>>>,
    parker: RefCell<Reactor>,
    /// The task being resumed right now, null between tasks. Points to the task
    /// that `run_task` holds an `Arc` of for the whole resume.
    current: Cell<*const Task>,
    tick: Cell<u32>,
    /// What is left of the running task's `IO_BUDGET` (reset at every resume).
    io_budget: Cell<u32>,
    lifo_streak: Cell<u32>,
    searching: Cell<bool>,
    /// Finished tasks' allocations, for reuse by spawns here (task_pool.rs).
    pub(crate) task_pool: crate::runtime::task_pool::LocalPool,
    /// Finished tasks still listed in another worker's registry shard, removed
    /// in a batch (`unlist_finished`).
    unlisted: RefCell<Vec<Arc<Task>>>,
    /// Tasks of this worker suspended in the middle of an unwind (a destructor
    /// that blocks). See `task_is_unwinding`.
    parked_unwinding: Cell<usize>,
    /// This thread's errno, C++ exception globals and (under ASan) stack
    /// bounds, swapped with the task's own around every resume
    /// (`task::thread_state`).
    thread_slots: thread_state::Slots,
}

/// The per-worker parts other threads may touch.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Arc<Task>>,
    pub(crate) inbox: crossbeam_deque::Injector<Arc<Task>>,
    pub(crate) unparker: Arc<ReactorHandle>,
    /// What this worker resumes now, for the debug watchdog (debug.rs).
    pub(crate) now_running: debug::NowRunning,
}

thread_local! {
    static CURRENT: Cell<*const Worker> = const { Cell::new(std::ptr::null()) };
}

/// The worker running on this thread, if any.
///
/// Not inlined, and re-read after every switch by its callers: a task's code must
/// never cache the address of a thread-local across a suspension point (LLVM may
/// assume it constant within a function). Tasks do not migrate, but keeping this
/// discipline in the runtime costs nothing and keeps the invariant local.
#[inline(never)]
fn current_ptr() -> *const Worker {
    CURRENT.with(|c| c.get())
}

/// Runs `f` with the current worker. Panics if called off a worker thread, which
/// only runtime-internal callers that know they are on one do.
pub(crate) fn with_current<R>(f: impl FnOnce(&Worker) -> R) -> R {
    let ptr = current_ptr();
    assert!(!ptr.is_null(), "ivy: not on a worker thread");
    // SAFETY: CURRENT is set only by `Worker::run` to a worker that lives on this
    // thread's stack until `run` returns, and is cleared before that.
    f(unsafe { &*ptr })
}

/// Runs `f` with the current worker, if this thread is one.
pub(crate) fn try_with_current<R>(f: impl FnOnce(&Worker) -> R) -> Option<R> {
    let ptr = current_ptr();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as in `with_current`.
    Some(f(unsafe { &*ptr }))
}

/// The task running on this thread, if any (a new reference; the hot paths use
/// `with_current_task`, which borrows).
pub(crate) fn current_task() -> Option<Arc<Task>> {
    with_current_task(Arc::clone)
}

/// Charges one I/O operation to the running task's budget. Returns `true` when
/// the budget is spent: the caller should yield before doing the operation.
/// Always `false` on plain threads.
pub(crate) fn io_budget_spent() -> bool {
    try_with_current(|w| {
        if w.current.get().is_null() {
            return false;
        }
        match w.io_budget.get() {
            0 => true,
            b => {
                w.io_budget.set(b - 1);
                false
            }
        }
    })
    .unwrap_or(false)
}

/// Whether the caller is an ivy task (not a plain thread, not a worker between
/// tasks).
pub(crate) fn in_task() -> bool {
    try_with_current(|w| !w.current.get().is_null()).unwrap_or(false)
}

/// Runs `f` with the task running on this thread, if any, without touching its
/// reference count (two atomic operations saved per blocking call).
pub(crate) fn with_current_task<R>(f: impl FnOnce(&Arc<Task>) -> R) -> Option<R> {
    with_task_or_thread(|task| task.map(f))
}

/// Runs `f` with the running task, or with `None` on a plain thread (or a worker
/// between tasks): for callers that fall back to thread state with the same `f`.
///
/// The reference is the coroutine's own `Arc` of its task (`TaskCtx::this`),
/// which lives on the task's stack from its first instruction to its last, so it
/// stays valid while `f` runs even if `f` suspends the task: `f` runs on that
/// same stack.
pub(crate) fn with_task_or_thread<R>(f: impl FnOnce(Option<&Arc<Task>>) -> R) -> R {
    let w = current_ptr();
    if w.is_null() {
        return f(None);
    }
    // SAFETY: as in `with_current`.
    let t = unsafe { (*w).current.get() };
    if t.is_null() {
        return f(None);
    }
    // SAFETY: `current` is non-null only while `run_task` resumes that task and
    // holds an `Arc` of it, so `t` points to a live task. We are running on its
    // stack (only task code runs while `current` is set), after its coroutine body
    // stored `this`, which points to the body's own `Arc` and stays valid until
    // the body's last statement (it is reset to null before the `Arc` is dropped).
    let this = unsafe { (*t).ctx.this.get() };
    debug_assert!(!this.is_null());
    // SAFETY: see above.
    f(Some(unsafe { &*this }))
}

/// Whether the current task `task` is in the middle of an unwind.
///
/// `std::thread::panicking()` answers for the OS thread, and the thread is shared:
/// while one task is suspended inside a destructor during its unwind, every other
/// task on the worker would see `true`. So the worker counts the tasks suspended
/// mid-unwind. With none, `panicking()` is exact for the running task. With some,
/// the running task relies on its own record: whether ivy raised a cancellation
/// or deadline in it that has not been caught yet (a user panic started while
/// another task is suspended mid-unwind is the one case this misses).
pub(crate) fn task_is_unwinding(task: &Task) -> bool {
    let others = with_current(|w| w.parked_unwinding.get());
    if others == 0 {
        let p = std::thread::panicking();
        if !p {
            task.ctx.raised.set(false);
        }
        p
    } else {
        task.ctx.raised.get()
    }
}

/// Suspends `task` (which must be the current task) back to its worker.
#[inline]
pub(crate) fn suspend(task: &Task, why: Suspend) {
    // Off the switch path's common case: while no unwind is in flight on this
    // thread, no task here is parked mid-unwind, so `task_is_unwinding` would
    // only clear the record and answer `false` (without reaching the worker).
    let unwinding = if std::thread::panicking() {
        task_is_unwinding(task)
    } else {
        task.ctx.raised.set(false);
        false
    };
    if unwinding {
        with_current(|w| w.parked_unwinding.set(w.parked_unwinding.get() + 1));
    }
    suspend_raw(task, why);
    if unwinding {
        with_current(|w| w.parked_unwinding.set(w.parked_unwinding.get() - 1));
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
        task.id
    );
    suspend_raw(task, Suspend::Abandon);
    unreachable!("ivy: an abandoned task was resumed");
}

#[inline(always)]
fn suspend_raw(task: &Task, why: Suspend) {
    let yielder = task.ctx.yielder.get();
    debug_assert!(!yielder.is_null());
    // SAFETY: `yielder` was set by the coroutine's own body when it started and
    // points into this coroutine's stack, which is live while the task runs; we are
    // running on that coroutine (the caller is the current task).
    unsafe { (*yielder).suspend(why) };
}

impl Worker {
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared>,
        spawned: Deque<Arc<Task>>,
        parker: Reactor,
    ) -> Worker {
        let origin = shared.origin;
        Worker {
            index,
            shared,
            spawned,
            ready: RefCell::new(VecDeque::new()),
            lifo: Cell::new(None),
            wheel: RefCell::new(TimerWheel::new(origin)),
            parker: RefCell::new(parker),
            current: Cell::new(std::ptr::null()),
            tick: Cell::new(0),
            io_budget: Cell::new(IO_BUDGET),
            lifo_streak: Cell::new(0),
            parked_unwinding: Cell::new(0),
            unlisted: RefCell::new(Vec::new()),
            task_pool: Default::default(),
            searching: Cell::new(false),
            // `new` runs on the worker's own thread.
            thread_slots: thread_state::Slots::current(true),
        }
    }

    pub(crate) fn insert_timer(&self, deadline: Instant, task: Arc<Task>) -> TimerKey {
        self.wheel.borrow_mut().insert(deadline, task)
    }

    pub(crate) fn remove_timer(&self, key: TimerKey) {
        self.wheel.borrow_mut().remove(key);
    }

    /// Queues an unstarted task spawned on this worker.
    pub(crate) fn push_spawned(&self, task: Arc<Task>) {
        self.spawned.push(task);
        self.shared.notify_idle();
    }

    /// Queues a started task that was woken on its home thread. `lifo`: it was
    /// woken by the running task, so it should run next.
    pub(crate) fn push_woken(&self, task: Arc<Task>, lifo: bool) {
        if lifo {
            if let Some(prev) = self.lifo.replace(Some(task)) {
                self.ready.borrow_mut().push_back(prev);
            }
        } else {
            self.ready.borrow_mut().push_back(task);
        }
    }

    fn now_running(&self) -> &debug::NowRunning {
        &self.shared.remotes[self.index].now_running
    }

    pub(crate) fn is_running_task(&self) -> bool {
        !self.current.get().is_null()
    }

    /// The worker thread's main loop. Returns at runtime shutdown.
    pub(crate) fn run(&self) {
        CURRENT.with(|c| c.set(self as *const Worker));
        // io reaches this worker's reactor through it until `run` returns.
        let _reactor = self.parker.borrow().enter();
        let _altstack = overflow::install_altstack();
        loop {
            match self.next_task() {
                Some(task) => self.run_task(task),
                // Shutdown comes after the last task finished, so a worker sees
                // it with empty queues: checking here keeps it off the switch path.
                None if self.shared.is_shutdown() => break,
                None => self.idle(),
            }
        }
        // Drop timers and queued references; by now every task has finished.
        self.unlist_finished();
        self.wheel
            .borrow_mut()
            .poll(Instant::now() + Duration::from_secs(1 << 40), drop);
        CURRENT.with(|c| c.set(std::ptr::null()));
    }

    fn next_task(&self) -> Option<Arc<Task>> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick % FAIRNESS_INTERVAL == 0 {
            self.poll_timers();
            // I/O hook: a busy worker still collects socket readiness (a zero-timeout
            // poll, skipped when no fd is registered here); see io/reactor.rs.
            let _ = self.parker.borrow_mut().poll_io();
            if let Some(t) = self.pop_inbox().or_else(|| self.pop_injector()) {
                return Some(t);
            }
        }
        if self.lifo_streak.get() < MAX_LIFO_STREAK {
            if let Some(t) = self.lifo.take() {
                self.lifo_streak.set(self.lifo_streak.get() + 1);
                return Some(t);
            }
        } else if let Some(t) = self.lifo.take() {
            self.ready.borrow_mut().push_back(t);
        }
        self.lifo_streak.set(0);
        if tick % SPAWN_INTERVAL == 0 {
            if let Some(t) = self.spawned.pop() {
                return Some(t);
            }
        }
        if let Some(t) = self.ready.borrow_mut().pop_front() {
            return Some(t);
        }
        if let Some(t) = self.pop_inbox() {
            return Some(t);
        }
        if self.poll_timers() > 0 {
            return self.ready.borrow_mut().pop_front();
        }
        self.spawned.pop().or_else(|| self.pop_injector())
    }

    fn pop_inbox(&self) -> Option<Arc<Task>> {
        let inbox = &self.shared.remotes[self.index].inbox;
        loop {
            match inbox.steal() {
                Steal::Success(t) => {
                    // Drain a few more so one remote wake does not cost a steal each.
                    let mut ready = self.ready.borrow_mut();
                    for _ in 0..16 {
                        match inbox.steal() {
                            Steal::Success(u) => ready.push_back(u),
                            Steal::Empty => break,
                            Steal::Retry => continue,
                        }
                    }
                    return Some(t);
                }
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    fn pop_injector(&self) -> Option<Arc<Task>> {
        loop {
            match self.shared.injector.steal_batch_and_pop(&self.spawned) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Steals an unstarted task from a peer (random start, to spread contention).
    fn steal(&self) -> Option<Arc<Task>> {
        let n = self.shared.remotes.len();
        let start = fastrand_index(n);
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            loop {
                match self.shared.remotes[victim]
                    .stealer
                    .steal_batch_and_pop(&self.spawned)
                {
                    Steal::Success(t) => return Some(t),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        None
    }

    /// Fires due timers, queueing their tasks. Returns how many fired.
    fn poll_timers(&self) -> usize {
        let mut wheel = self.wheel.borrow_mut();
        if wheel.is_empty() {
            return 0;
        }
        wheel.poll(Instant::now(), |task| Task::unpark(&task))
    }

    fn idle(&self) {
        let shared = &self.shared;
        let workers = shared.remotes.len();
        if !self.searching.get() {
            self.searching.set(shared.idle.try_start_searching(workers));
        }
        if self.searching.get() {
            let until = Instant::now() + Duration::from_micros(SEARCH_SPIN_US);
            loop {
                if let Some(t) = self.steal().or_else(|| self.pop_injector()) {
                    self.finish_searching(true);
                    self.run_task(t);
                    return;
                }
                // I/O hook: readiness that arrives while we spin is picked up here,
                // not only once we sleep in the poll.
                if !shared.remotes[self.index].inbox.is_empty()
                    || self.poll_timers() > 0
                    || self.parker.borrow_mut().poll_io()
                {
                    self.finish_searching(false);
                    return;
                }
                // Spin only; no `sched_yield`: on a loaded machine yielding hands
                // the core to another process (say, the client of an echo server)
                // and costs it a scheduler round trip (regression: p50 round trip
                // 104 us across processes, 25 us without the yields).
                for _ in 0..SEARCH_PAUSES {
                    std::hint::spin_loop();
                }
                if Instant::now() >= until {
                    break;
                }
            }
            self.finish_searching(false);
        }

        // Going to sleep: unlist finished tasks and return idle stacks' memory
        // now, off the hot path.
        self.unlist_finished();
        let trim_again = crate::stack::trim_free_stacks();
        // Final check after registering as a sleeper: see idle.rs for why this
        // cannot miss a push.
        let found = shared.idle.sleep_after_final_check(self.index, || {
            self.pop_inbox()
                .or_else(|| self.pop_injector())
                .or_else(|| self.steal())
        });
        if let Some(t) = found {
            self.wake_from_sleep();
            self.push_front_ready(t);
            return;
        }
        if shared.is_shutdown() {
            self.wake_from_sleep();
            return;
        }
        let timer = self.wheel.borrow().next_deadline().map(|d| {
            let now = Instant::now();
            d.saturating_duration_since(now)
        });
        // Free stacks still hold memory: wake in time to discard it (pool.rs).
        let timeout = match (timer, trim_again) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        };
        if timeout != Some(Duration::ZERO) {
            // Sleeps in the worker's mio::Poll and dispatches the I/O events it gets.
            self.parker.borrow_mut().park(timeout);
        } else {
            let _ = self.parker.borrow_mut().poll_io();
        }
        self.wake_from_sleep();
        self.poll_timers();
    }

    fn push_front_ready(&self, t: Arc<Task>) {
        self.ready.borrow_mut().push_front(t);
    }

    /// After a sleep: if a producer picked us (removing us from the sleepers), we
    /// are counted as searching and must behave as a searcher.
    fn wake_from_sleep(&self) {
        if !self.shared.idle.wake_self(self.index) {
            self.searching.set(true);
        }
    }

    fn finish_searching(&self, found: bool) {
        if self.searching.replace(false) && self.shared.idle.stop_searching() && found {
            self.shared.notify_idle();
        }
    }

    // Inlined into the run loop: the prologue and epilogue of a separate call were
    // ~10% of the instructions of a switch.
    #[inline(always)]
    fn run_task(&self, task: Arc<Task>) {
        if self.searching.get() {
            self.finish_searching(true);
        }
        // SAFETY: we popped `task` from one of our queues, so we own it exclusively
        // (task/raw.rs). Started tasks are only ever queued on their home worker,
        // which is us; unstarted ones become ours here.
        let slot = unsafe { task.coro_slot() };
        if slot.coroutine.is_none() && !self.start_task(&task, slot) {
            return;
        }
        task.transition_to_running();
        self.io_budget.set(IO_BUDGET);
        self.current.set(Arc::as_ptr(&task));
        let running: *const overflow::RunningTask = slot.running.as_ref().expect("stack described");
        // SAFETY: `running` lives in the task's CoroSlot, which the task (kept alive
        // by our `task` Arc) does not move or change while it runs; we reset it to
        // null as soon as the coroutine suspends.
        unsafe { overflow::set_running(running) };
        // Debug mode only: time the resume, and publish it for the watchdog.
        let started = self.shared.debug.slow_task.map(|limit| {
            let t0 = Instant::now();
            let since = debug::nanos_since(self.shared.origin, t0);
            self.now_running().publish(&task, since);
            (limit, t0)
        });
        // Per-task errno, C++ exception state and ASan stack bounds: the task's
        // in, the worker's out, and back after the resume, whatever way the task
        // left it (`task::thread_state`).
        // SAFETY: the slots were made on this thread (`Worker::new`), which
        // runs this worker until it ends.
        unsafe { self.thread_slots.swap(&mut slot.thread_state) };
        let result = slot
            .coroutine
            .as_mut()
            .expect("coroutine present")
            .resume(());
        // SAFETY: as above.
        unsafe { self.thread_slots.swap(&mut slot.thread_state) };
        if let Some((limit, t0)) = started {
            self.now_running().clear();
            let took = t0.elapsed();
            if took > limit {
                debug::report_slow(&task, took, self.index);
            }
        }
        // SAFETY: null is always valid.
        unsafe { overflow::set_running(std::ptr::null()) };
        self.current.set(std::ptr::null());
        match result {
            CoroutineResult::Yield(Suspend::Yield) => {
                task.transition_to_scheduled();
                self.ready.borrow_mut().push_back(task);
            }
            CoroutineResult::Yield(Suspend::Park) => {
                if !task.transition_to_parked() {
                    self.ready.borrow_mut().push_back(task);
                }
            }
            CoroutineResult::Yield(Suspend::Abandon) => {
                // Never resumed again: its stack, and whatever lives on it, is
                // leaked, not unwound (`abandon`).
                std::mem::forget(slot.coroutine.take());
                slot.running = None;
                task.body().abandon();
                self.complete(task);
            }
            CoroutineResult::Return(()) => {
                // Frees the stack back to this thread's pool.
                slot.coroutine = None;
                self.complete(task);
            }
        }
    }

    /// A task's first run: give it a stack, make this worker its home, create its
    /// coroutine. Returns `false` if it must not be resumed (no stack could be
    /// allocated: it completed with that error; or it was a stale entry).
    #[inline(never)]
    fn start_task(&self, task: &Arc<Task>, slot: &mut CoroSlot) -> bool {
        if std::mem::replace(&mut slot.started, true) {
            return false; // already finished: a stale queue entry cannot exist, but be safe
        }
        if self.shared.is_closing() {
            // Spawned after shutdown's last look at the registry: stop it here.
            task.cancel();
        }
        task.set_home(self.index);
        match TaskStack::allocate_for(task.stack_size, self.shared.unguarded_stacks) {
            Ok(stack) => {
                slot.running = Some(overflow::RunningTask::new(&stack, task.id, task.name()));
                slot.thread_state = thread_state::Saved::for_stack(&stack);
                let t = task.clone();
                slot.coroutine = Some(Coroutine::with_stack(stack, move |yielder, ()| {
                    t.ctx.yielder.set(yielder as *const _);
                    // `t` stays at this address until the body ends.
                    t.ctx.this.set(&t as *const Arc<Task>);
                    // All of the task's end (task-locals, a detached result)
                    // happens in `start`, on this stack, guarded (task/mod.rs).
                    t.body().start(None);
                    t.ctx.this.set(std::ptr::null());
                    drop(t);
                }));
                true
            }
            Err(e) => {
                // The closure will never run, but dropping it is user code that may
                // block: that happens on the blocking pool, never on this worker's
                // stack, and the task completes there. Nothing else touches the
                // task meanwhile: it is SCHEDULED and in no queue (an unpark only
                // sets NOTIFIED), and its slot says it has started.
                let (task, shared) = (task.clone(), self.shared.clone());
                self.shared.blocking.run_detached(move || {
                    shared.settle_unrun(&task, crate::task::raw::NotRun::NoStack(e))
                });
                false
            }
        }
    }

    fn complete(&self, task: Arc<Task>) {
        task.transition_to_done();
        // Leave the registry before waking the joiner, so that a joiner sees
        // `live_tasks` without this task (regression: the count lagged the join).
        let registry = &self.shared.registry;
        let own_shard = registry.shard_of(&task) == Some(self.index);
        if own_shard {
            registry.unlist(&task);
        }
        registry.finished();
        crate::task::join::notify_done(&task);
        if own_shard {
            crate::runtime::task_pool::give(self, task);
        } else {
            // Spawned elsewhere: removed from its spawner's shard in a batch
            // (registry.rs), then recycled.
            let full = {
                let mut unlisted = self.unlisted.borrow_mut();
                unlisted.push(task);
                unlisted.len() >= UNLIST_BATCH
            };
            if full {
                self.unlist_finished();
            }
        }
    }

    /// Removes the finished tasks of other shards from the registry, then
    /// recycles them.
    fn unlist_finished(&self) {
        let mut tasks = self.unlisted.borrow_mut();
        if tasks.is_empty() {
            return;
        }
        self.shared.registry.unlist_all(&mut tasks);
        // Recycling runs no user code (task_pool.rs), so the buffer stays
        // borrowed and keeps its capacity.
        for task in tasks.drain(..) {
            crate::runtime::task_pool::give(self, task);
        }
    }
}

/// A cheap per-thread xorshift for choosing steal victims.
fn fastrand_index(n: usize) -> usize {
    thread_local! {
        static RNG: Cell<u64> = const { Cell::new(0) };
    }
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            x = (r as *const _ as u64) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x % n as u64) as usize
    })
}
