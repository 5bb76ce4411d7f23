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
//!    woken on this thread, or pulled from `inbox`): a flagless ring
//!    (`ready_queue.rs`), since every switch pops it once and pushes it once.
//! 3. `spawned`: a crossbeam-deque LIFO of *unstarted* tasks spawned here. Peers
//!    steal from its other end. The newest spawn waits in front of it, in a
//!    one-task slot its peers may take only after a grace of 10 µs
//!    (`Remote::newest_spawn`, spawn_slot.rs), so a task that spawns a partner
//!    and then blocks on it runs it here.
//! 4. `inbox`: an MPSC queue (a crossbeam `Injector` only this worker pops) of
//!    started tasks woken from other threads, and the runtime-wide `injector` of
//!    unstarted tasks spawned from outside the runtime.
//!
//! A task woken by a task that then *ended* in the same run (a joiner woken by
//! the end of the task it joins) does not keep the LIFO slot while tasks wait
//! unstarted in `spawned`: it waits behind them (`behind_spawned`), for at most
//! `MAX_BEHIND_SPAWNED` ticks. Why: a program that spawns n tasks and joins them
//! in spawn order (`fifo_spawns`, the Python binding's `create_task`s then
//! `join`s, a fan-out that gathers) would otherwise resume the joiner after each
//! task, find the next one unstarted and park again: one park and resume per
//! task. Behind the unstarted ones, it finds up to `MAX_BEHIND_SPAWNED` of them
//! done and joins them without parking (asyncio's single FIFO gives the same
//! order). The slot's reason to exist, a hand-off to a task that continues the
//! waker's work while the waker blocks, does not hold for a waker that ended.
//! The bound keeps the joiner's latency that of a queue of that many tasks; a
//! second such task while one waits keeps the LIFO slot (one waits at a time).
//! Tokio and Go run the joiner next (LIFO slot / `runnext`) and pay the
//! ping-pong. Only with oldest-first spawns (`Builder::fifo_spawns`): with
//! newest-first ones (Rust's default) the task joined first ends after its
//! younger siblings, so there is no ping-pong to save, and where the rule
//! fired there (skynet: a node woken by its last child while its own siblings
//! wait unstarted) it only delayed a task with nothing left to join, +37
//! instructions per task (findings/joinorder.md).
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
//! Since the first run decides the home, it is where the load is balanced: a
//! worker about to start a new task may hand it, unstarted, to a peer home to
//! clearly fewer tasks (`start_task`, `hand_to`; the policy is placement.rs).
//!
//! The price: a woken task waits for its own worker. If a task computes for a long
//! time without a blocking call, tasks *started* on the same worker wait for it
//! (unstarted ones are stolen by idle peers). Call `ivy::yield_now()` in long loops;
//! `IVY_DEBUG` will flag tasks that do not, while they run: in debug mode each
//! resume publishes which task runs since when for the watchdog (debug.rs); with
//! debug mode off the switch path does not touch it.
//!
//! # Idle, and I/O
//! A worker with nothing to run searches its peers for a while (see `idle.rs`;
//! how long is learned per worker, `SpinBudget`), then sleeps in its
//! `mio::Poll` with a timeout set to its next timer. That poll is also the
//! worker's I/O reactor (`crate::io::reactor`): events wake the tasks that
//! registered the fds, which live on this worker. A busy worker polls
//! it without sleeping every `FAIRNESS_INTERVAL` ticks, if it has registrations.
//!
//! Layer: scheduler. Owns the context's worker slot, lends its wheel to the
//! thread (`timer::lend`) and sets the running task (`task::current::set_running`)
//! around each resume. The task's end runs on the task's stack (`task::body`); the
//! worker only does the state transitions, frees the stack and recycles the
//! allocation (and batches the unlisting of tasks of other shards).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corosensei::CoroutineResult;
use crossbeam_deque::{Steal, Stealer, Worker as Deque};

use crate::context::{self, Context};
use crate::io::reactor::{Reactor, ReactorHandle};
use crate::prefetch;
use crate::runtime::debug;
use crate::runtime::idle::SpinBudget;
use crate::runtime::placement::Placement;
use crate::runtime::ready_queue::ReadyQueue;
use crate::runtime::shared::Shared;
use crate::runtime::spawn_slot::{self, Seen, SpawnSlot};
use crate::runtime::task_pool;
use crate::stack::overflow;
use crate::stack::TaskStack;
use crate::task::body;
use crate::task::current;
use crate::task::raw::{CoroSlot, StackHeader, Suspend, Task, TaskCoroutine};
use crate::task::thread_state;
use crate::timer::{self, TaskTimers, TimerWheel};

const FAIRNESS_INTERVAL: u32 = 61;
/// The stack a resumed task touches first, around where it suspended (`pop_ready`): the
/// registers its switch saved below, the frames it returns through above.
const RESUME_BELOW: usize = 64;
const RESUME_ABOVE: usize = 320;
const MAX_LIFO_STREAK: u32 = 3;
/// Finished tasks spawned on other shards that a worker keeps before removing
/// them from the registry with one lock per shard (registry.rs).
pub(crate) const UNLIST_BATCH: usize = 32;
/// Every this many ticks a spawned task runs before the ready queue.
const SPAWN_INTERVAL: u32 = 8;
/// Ticks a task woken by an ending task waits behind unstarted tasks at least
/// before it runs anyway (`behind_spawned`; at the first `SPAWN_INTERVAL` tick
/// that falls through the LIFO slot past it, or the first `FAIRNESS_INTERVAL`
/// tick, whichever comes first).
/// Each deferral saves the joiner up to this many parks (one per task).
pub(crate) const MAX_BEHIND_SPAWNED: u32 = 64;
/// `spin_loop` hints between two looks at the queues while searching.
const SEARCH_PAUSES: u32 = 16;

/// The thread-owned part of a worker. Lives on the worker thread's stack for the
/// thread's lifetime; reached through the context's worker slot, which this
/// module owns (`current_ptr`).
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    spawned: Deque<Arc<Task>>,
    ready: ReadyQueue<Arc<Task>>,
    lifo: Cell<Option<Arc<Task>>>,
    /// A task woken by a task that then ended, waiting for the unstarted tasks
    /// of `spawned` to start first (module comment), and the tick it came in.
    behind_spawned: Cell<Option<Arc<Task>>>,
    behind_spawned_since: Cell<u32>,
    /// Spawns start oldest-first (`Builder::fifo_spawns`): the rule above
    /// applies (with oldest-first spawns only), and the held newest spawn
    /// (spawn_slot.rs) is popped after the deque, not before it.
    fifo_spawns: bool,
    /// Per peer: the held spawn last seen in its slot, and since when
    /// (`steal_held`).
    held_seen: RefCell<Vec<(Seen, Instant)>>,
    /// A peer's held spawn was seen and its grace has not passed: a search
    /// spins on until it has (`idle`).
    held_pending: Cell<bool>,
    /// Lent to the thread's context while `run` runs (`crate::timer`).
    wheel: TaskTimers,
    parker: RefCell<Reactor>,
    /// This thread's context (`crate::context`): the worker never leaves its
    /// thread, so it keeps the pointer instead of reading the thread-local on
    /// every resume. Its task slot holds the task being resumed right now
    /// (null between tasks), which `run_task` holds an `Arc` of for the whole
    /// resume; it also holds the running task's I/O budget.
    context: *const Context,
    tick: Cell<u32>,
    lifo_streak: Cell<u32>,
    searching: Cell<bool>,
    /// How long this worker spins when it runs out of work (idle.rs).
    spin: SpinBudget,
    /// Where new tasks start: here or on a less loaded peer (placement.rs).
    placement: Placement,
    /// Finished tasks' allocations, for reuse by spawns here (task_pool.rs).
    pub(crate) task_pool: task_pool::LocalPool,
    /// Finished tasks still listed in another worker's registry shard, removed
    /// in a batch (`unlist_finished`).
    unlisted: RefCell<Vec<Arc<Task>>>,
    /// This thread's errno, C++ exception globals and (under ASan) stack
    /// bounds, swapped with the task's own around every resume
    /// (`task::thread_state`).
    thread_slots: thread_state::Slots,
    /// `shared.debug.slow_task`, kept here for `resume_instrumented`.
    slow_task: Option<Duration>,
    /// Neither debug mode nor C++/ASan state to carry: a resume swaps errno
    /// alone, in line (`run_task`). Fixed at the worker's start, so the switch
    /// path tests one flag instead of three.
    plain_resume: bool,
}

/// The per-worker parts other threads may touch.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Arc<Task>>,
    pub(crate) inbox: crossbeam_deque::Injector<Arc<Task>>,
    pub(crate) unparker: Arc<ReactorHandle>,
    /// What this worker resumes now, for the debug watchdog (debug.rs).
    pub(crate) now_running: debug::NowRunning,
    /// The newest task spawned here, which peers leave alone for a moment
    /// (spawn_slot.rs).
    pub(crate) newest_spawn: SpawnSlot,
}

/// The worker running on this thread, if any: the context's worker slot, which
/// this module owns (set by `Worker::run` for its whole length). Read once per
/// call, never cached across a switch (`crate::context`).
#[inline(always)]
fn current_ptr() -> *const Worker {
    context::worker() as *const Worker
}

/// Runs `f` with the current worker. Panics if called off a worker thread, which
/// only runtime-internal callers that know they are on one do.
pub(crate) fn with_current<R>(f: impl FnOnce(&Worker) -> R) -> R {
    let ptr = current_ptr();
    assert!(!ptr.is_null(), "ivy: not on a worker thread");
    // SAFETY: the slot is set only by `Worker::run` to a worker that lives on this
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

impl Worker {
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared>,
        spawned: Deque<Arc<Task>>,
        parker: Reactor,
        fifo_spawns: bool,
    ) -> Worker {
        let workers = shared.remotes.len();
        let origin = shared.origin;
        let slow_task = shared.debug.slow_task;
        // `new` runs on the worker's own thread.
        let thread_slots = thread_state::Slots::current(true);
        let plain_resume = slow_task.is_none() && thread_slots.errno_only();
        Worker {
            index,
            shared,
            spawned,
            ready: ReadyQueue::new(),
            lifo: Cell::new(None),
            behind_spawned: Cell::new(None),
            behind_spawned_since: Cell::new(0),
            fifo_spawns,
            held_seen: RefCell::new(vec![(Seen::NONE, Instant::now()); workers]),
            held_pending: Cell::new(false),
            wheel: RefCell::new(TimerWheel::new(origin)),
            parker: RefCell::new(parker),
            // `new` runs on the worker's own thread.
            context: context::this_thread(),
            tick: Cell::new(0),
            lifo_streak: Cell::new(0),
            unlisted: RefCell::new(Vec::new()),
            task_pool: Default::default(),
            searching: Cell::new(false),
            spin: SpinBudget::new(),
            placement: Placement::new(index),
            thread_slots,
            slow_task,
            plain_resume,
        }
    }

    /// This thread's context.
    #[inline(always)]
    fn context(&self) -> &Context {
        // SAFETY: taken on this thread in `new` (the worker never leaves it); a
        // thread's context lives as long as the thread (`context::this_thread`).
        unsafe { &*self.context }
    }

    /// Queues an unstarted task spawned on this worker: it is held in the
    /// newest-spawn slot, and the one it displaces goes to the deque
    /// (spawn_slot.rs).
    pub(crate) fn push_spawned(&self, task: Arc<Task>) {
        if let Some(older) = self.remote().newest_spawn.replace(task) {
            self.spawned.push(older);
        }
        self.shared.notify_idle();
    }

    fn remote(&self) -> &Remote {
        &self.shared.remotes[self.index]
    }

    /// The next unstarted task spawned here, in spawn order (newest first, or
    /// oldest first with `fifo_spawns`).
    fn pop_spawned(&self) -> Option<Arc<Task>> {
        let held = &self.remote().newest_spawn;
        if self.fifo_spawns {
            self.spawned.pop().or_else(|| held.take())
        } else {
            held.take().or_else(|| self.spawned.pop())
        }
    }

    fn has_spawned(&self) -> bool {
        !self.spawned.is_empty() || !self.remote().newest_spawn.is_empty()
    }

    /// Queues a started task that was woken on its home thread. `lifo`: it was
    /// woken by the running task, so it should run next.
    pub(crate) fn push_woken(&self, task: Arc<Task>, lifo: bool) {
        if lifo {
            if let Some(prev) = self.lifo.replace(Some(task)) {
                self.ready.push_back(prev);
            }
        } else {
            self.ready.push_back(task);
        }
    }

    fn now_running(&self) -> &debug::NowRunning {
        &self.shared.remotes[self.index].now_running
    }

    pub(crate) fn is_running_task(&self) -> bool {
        current::is_running(self.context())
    }

    /// The worker thread's main loop. Returns at runtime shutdown.
    pub(crate) fn run(&self) {
        self.context()
            .set_worker(self as *const Worker as *const ());
        // SAFETY: the wheel is a field of `self`, which outlives this call; the
        // loan ends below, before `run` returns.
        unsafe { timer::lend(&self.wheel) };
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
        timer::unlend();
        self.context().set_worker(std::ptr::null());
    }

    fn next_task(&self) -> Option<Arc<Task>> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick % FAIRNESS_INTERVAL == 0 {
            self.poll_timers();
            // I/O hook: a busy worker still collects socket readiness (a zero-timeout
            // poll, skipped when no fd is registered here); see io/reactor.rs.
            let _ = self.parker.borrow_mut().poll_io();
            // Also here, ahead of the LIFO slot: whatever the slot's streaks,
            // the task behind the unstarted ones waits a bounded time.
            if let Some(t) = self.behind_spawned_if_due(tick) {
                return Some(t);
            }
            if let Some(t) = self.pop_inbox().or_else(|| self.pop_injector()) {
                return Some(t);
            }
        }
        // The slot first: when it is empty (every switch of a yielding task),
        // the streak is not read.
        if let Some(t) = self.lifo.take() {
            let streak = self.lifo_streak.get();
            if streak < MAX_LIFO_STREAK {
                self.lifo_streak.set(streak + 1);
                return Some(t);
            }
            self.ready.push_back(t);
        }
        self.lifo_streak.set(0);
        if tick % SPAWN_INTERVAL == 0 {
            if let Some(t) = self.behind_spawned_if_due(tick) {
                return Some(t);
            }
            if let Some(t) = self.pop_spawned() {
                return Some(t);
            }
        }
        if let Some(t) = self.pop_ready() {
            return Some(t);
        }
        if let Some(t) = self.pop_inbox() {
            return Some(t);
        }
        if self.poll_timers() > 0 {
            return self.pop_ready();
        }
        self.pop_spawned()
            .or_else(|| self.behind_spawned.take())
            .or_else(|| self.pop_injector())
    }

    /// The task waiting behind the unstarted ones, if it waited its
    /// `MAX_BEHIND_SPAWNED` ticks. Off the switch path: at the
    /// `SPAWN_INTERVAL` and `FAIRNESS_INTERVAL` ticks only.
    fn behind_spawned_if_due(&self, tick: u32) -> Option<Arc<Task>> {
        let t = self.behind_spawned.take()?;
        if tick.wrapping_sub(self.behind_spawned_since.get()) >= MAX_BEHIND_SPAWNED {
            return Some(t);
        }
        self.behind_spawned.set(Some(t));
        None
    }

    /// The running task just ended. The task it woke last, still in the LIFO
    /// slot, goes behind this worker's unstarted tasks if there are any (module
    /// comment: a joiner then finds them done instead of parking on each).
    fn defer_wake_of_ended(&self) {
        if !self.fifo_spawns {
            return;
        }
        // Most ending tasks woke nobody here: one test.
        let Some(woken) = self.lifo.take() else {
            return;
        };
        let waiting = self.behind_spawned.take();
        if waiting.is_some() || !self.has_spawned() {
            // One waits at a time; a second keeps the LIFO slot.
            self.behind_spawned.set(waiting);
            self.lifo.set(Some(woken));
            return;
        }
        self.behind_spawned.set(Some(woken));
        self.behind_spawned_since.set(self.tick.get());
    }

    fn pop_inbox(&self) -> Option<Arc<Task>> {
        let inbox = &self.shared.remotes[self.index].inbox;
        loop {
            match inbox.steal() {
                Steal::Success(t) => {
                    // Drain a few more so one remote wake does not cost a steal each.
                    for _ in 0..16 {
                        match inbox.steal() {
                            Steal::Success(u) => self.ready.push_back(u),
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
        self.steal_held(start)
    }

    /// Takes a peer's newest spawn once it has sat in its slot for `GRACE`
    /// (spawn_slot.rs). Called when no peer's deque had anything; sets
    /// `held_pending` if one was seen whose grace has not passed.
    fn steal_held(&self, start: usize) -> Option<Arc<Task>> {
        let remotes = &self.shared.remotes;
        let n = remotes.len();
        let mut seen = self.held_seen.borrow_mut();
        let mut pending = false;
        let mut now = None;
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            let slot = &remotes[victim].newest_spawn;
            let held = slot.peek();
            if held.task.is_null() {
                continue;
            }
            let now = *now.get_or_insert_with(Instant::now);
            let (last, since) = seen[victim];
            if last != held {
                seen[victim] = (held, now);
                pending = true;
            } else if now.saturating_duration_since(since) < spawn_slot::GRACE {
                pending = true;
            } else if let Some(t) = slot.take_if(held) {
                seen[victim] = (Seen::NONE, now);
                self.held_pending.set(false);
                return Some(t);
            }
        }
        self.held_pending.set(pending);
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
        let idle_since = Instant::now();
        if !self.searching.get() {
            self.searching.set(shared.idle.try_start_searching(workers));
        }
        if self.searching.get() {
            // Measured by time, not by rounds, so the budget does not depend on
            // the CPU's `pause` latency (~140 cycles on this Xeon).
            let until = idle_since + self.spin.budget();
            let mut last_look = idle_since;
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
                let now = Instant::now();
                if now.saturating_duration_since(last_look) >= SpinBudget::PREEMPTED {
                    // Descheduled mid-spin: the cores are oversubscribed.
                    self.spin.preempted();
                    break;
                }
                // A peer's newest spawn is held for `GRACE` (spawn_slot.rs):
                // a searcher that saw one stays until it may take it, but at
                // most one grace longer (a peer spawning and running a new
                // task every microsecond always has one held).
                if now >= until && (!self.held_pending.get() || now >= until + spawn_slot::GRACE) {
                    break;
                }
                last_look = now;
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
        // A peer's newest spawn was seen in its grace (spawn_slot.rs): look
        // again soon, in case its spawner keeps computing instead of running it
        // (the poll rounds this up to its 1 ms resolution).
        let timeout = match (timeout, self.held_pending.get()) {
            (Some(t), true) => Some(t.min(spawn_slot::GRACE)),
            (None, true) => Some(spawn_slot::GRACE),
            (t, false) => t,
        };
        if timeout != Some(Duration::ZERO) {
            // Sleeps in the worker's mio::Poll and dispatches the I/O events it gets.
            self.parker.borrow_mut().park(timeout);
        } else {
            let _ = self.parker.borrow_mut().poll_io();
        }
        self.wake_from_sleep();
        let by_peer = !shared.remotes[self.index].inbox.is_empty();
        self.spin
            .slept(idle_since.elapsed(), by_peer, involuntary_switches);
        self.poll_timers();
    }

    fn push_front_ready(&self, t: Arc<Task>) {
        self.ready.push_front(t);
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
        let slot = task.coro_slot();
        if slot.is_empty() && !self.start_task(&task, slot) {
            return;
        }
        let header = slot.header();
        // SAFETY: not empty (tested just above, or filled by `start_task`); we
        // popped `task` from one of our queues, so we own it exclusively
        // (task/raw.rs). Started tasks are only ever queued on their home worker,
        // which is us; unstarted ones become ours here.
        let coroutine = unsafe { slot.coroutine() };
        // SAFETY: here and in the two swaps below, `header` is the header of the
        // stack the coroutine owns, which stays put while the coroutine (in our
        // exclusively owned slot) lives, and only this thread touches it. No
        // reference into it outlives its statement but `coroutine`, a field the
        // task's code never reaches, so the task's code may write
        // `running.origin` meanwhile.
        let running = unsafe { std::ptr::addr_of!((*header).running) };
        task.transition_to_running();
        // SAFETY: `task` (our `Arc`) lives until the slot is reset below, after
        // the resume, and only its code runs meanwhile.
        unsafe { current::set_running(self.context(), &task) };
        // SAFETY: `running` is valid and unmoved until the task's stack is freed,
        // after this resume; we reset it to null as soon as the coroutine suspends.
        unsafe { overflow::set_running(running) };
        // Per-task errno (and C++ exception state and ASan stack bounds, when
        // the thread has them): the task's in, the worker's out, and back after
        // the resume, whatever way the task left it (`task::thread_state`).
        let result = if self.plain_resume {
            // SAFETY: the slots were made on this thread (`Worker::new`), which
            // runs this worker until it ends, and hold errno alone
            // (`plain_resume`); `header` as above.
            unsafe { self.thread_slots.swap_errno(&mut (*header).thread_state) };
            let result = coroutine.resume(());
            // SAFETY: as above.
            unsafe { self.thread_slots.swap_errno(&mut (*header).thread_state) };
            result
        } else {
            // SAFETY: `header` as above.
            unsafe { self.resume_instrumented(&task, coroutine, header) }
        };
        // SAFETY: null is always valid.
        unsafe { overflow::set_running(std::ptr::null()) };
        current::clear_running(self.context());
        // A yield and a park are tested in line; the task's end (once per task)
        // is a call. With the four cases in one `match` the compiler dispatched
        // through a jump table (5 instructions per switch, findings/switch.md).
        if let CoroutineResult::Yield(suspend @ (Suspend::Yield | Suspend::Park)) = result {
            if suspend == Suspend::Yield {
                task.transition_to_yielded();
                self.ready.push_back(task);
            } else if !task.transition_to_parked() {
                self.ready.push_back(task);
            }
        } else {
            self.task_left(task, matches!(result, CoroutineResult::Return(())));
        }
    }

    /// `run_task`'s resume when the thread carries more than errno (C++, ASan)
    /// or debug mode times resumes: out of line, so that the plain path tests
    /// one flag.
    ///
    /// # Safety
    /// `header` is the header of `coroutine`'s stack, as in `run_task`.
    #[inline(never)]
    unsafe fn resume_instrumented(
        &self,
        task: &Arc<Task>,
        coroutine: &mut TaskCoroutine,
        header: *mut StackHeader,
    ) -> CoroutineResult<Suspend, ()> {
        // Debug mode only: time the resume, and publish it for the watchdog.
        let started = self.slow_task.map(|limit| {
            let t0 = Instant::now();
            let since = debug::nanos_since(self.shared.origin, t0);
            self.now_running().publish(task, since);
            (limit, t0)
        });
        // SAFETY: the slots were made on this thread (`Worker::new`), which
        // runs this worker until it ends; `header` per this function's contract.
        unsafe { self.thread_slots.swap(&mut (*header).thread_state) };
        let result = coroutine.resume(());
        // SAFETY: as above.
        unsafe { self.thread_slots.swap(&mut (*header).thread_state) };
        if let Some((limit, t0)) = started {
            self.now_running().clear();
            let took = t0.elapsed();
            if took > limit {
                debug::report_slow(task, took, self.index);
            }
        }
        result
    }

    /// Pops the ready queue's first task, and asks the CPU for what the next ones will touch
    /// first, while this one runs (`prefetch.rs`): the header of the task after the next; and,
    /// for the next one (whose header the previous pop asked for), its stack where it suspended
    /// and its body. Only in a burst, when two or more remain: a pair of tasks switching back
    /// and forth is in cache already, and its switch should not pay for the look.
    #[inline(always)]
    fn pop_ready(&self) -> Option<Arc<Task>> {
        self.ready.pop_front_looking_ahead(|next, after| {
            prefetch::write_object(Arc::as_ptr(after));
            // `next` is started, queued here (its home) and not running: its context is the
            // home worker's to read (task/raw.rs).
            let sp = next.ctx.suspended_sp.get();
            if sp != 0 {
                prefetch::write_range_down(sp.wrapping_sub(RESUME_BELOW), sp + RESUME_ABOVE);
            }
            next.prefetch_body();
        })
    }

    /// After a task's last suspension: it returned (`returned`), or it was
    /// abandoned at shutdown (`abandon`).
    #[inline(never)]
    fn task_left(&self, task: Arc<Task>, returned: bool) {
        // The header goes with the coroutine's stack, freed or leaked below.
        // SAFETY: as in `run_task`, which just resumed it: we own the popped
        // task exclusively, its coroutine has suspended for the last time, and
        // `run_task`'s borrow of it ended with the resume.
        let coroutine = unsafe { task.coro_slot().take() };
        if returned {
            // The task ended on its own stack (`body::run`): it is DONE,
            // released and its joiner woken. Frees the stack back to this
            // thread's pool.
            drop(coroutine);
            self.defer_wake_of_ended();
        } else {
            // Never resumed again: its stack, and whatever lives on it, is
            // leaked, not unwound (`abandon`).
            std::mem::forget(coroutine);
            task.body().abandon();
            body::end(&task);
        }
        self.recycle(task);
    }

    /// A task's first run: give it a stack, make this worker its home, create its
    /// coroutine. Returns `false` if it must not be resumed (no stack could be
    /// allocated: it completed with that error; or it was a stale entry).
    #[inline(never)]
    fn start_task(&self, task: &Arc<Task>, slot: &CoroSlot) -> bool {
        if task.has_started() {
            return false; // already finished: a stale queue entry cannot exist, but be safe
        }
        let placed = task.take_placed();
        if self.shared.is_closing() {
            // Spawned after shutdown's last look at the registry: stop it here.
            task.cancel();
        } else if !placed {
            if let Some(peer) = self.placement.peer_for_new_task(&self.shared.homes) {
                self.hand_to(peer, task);
                return false;
            }
        }
        // Started from here on: never again through this function (the test
        // above). Counted before the allocation: a task a peer placed here was
        // counted on this worker by that peer (`placed_in`), and only `started`
        // matches it, whether or not a stack is found.
        task.set_home(self.index);
        self.placement.started(&self.shared.homes, placed);
        let reserve = self.shared.stack_top_reserve;
        match TaskStack::allocate_for(task.stack_size(), reserve, self.shared.unguarded_stacks) {
            Ok(stack) => {
                let t = task.clone();
                // All of the task's end (result, task-locals, release, the
                // joiner's wake-up) happens in `body::run`, on this stack.
                // SAFETY: the slot is empty (the caller tested it), and we own
                // the unstarted task: we popped it.
                unsafe {
                    slot.install(
                        stack,
                        task.id(),
                        task.body().core().name_box(),
                        move |yielder, ()| body::run(t, yielder),
                    )
                };
                true
            }
            Err(e) => {
                // It never lives here: out of the counts again.
                self.placement.finished(&self.shared.homes);
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

    /// Hands an unstarted task to `peer`, which starts it without another look
    /// at the counts (placement.rs; `peer_for_new_task` already counted it
    /// there). Its inbox takes it like a remote wake-up, and the same wake-up
    /// protocol applies: push, then unpark.
    #[cold]
    fn hand_to(&self, peer: usize, task: &Arc<Task>) {
        task.set_placed();
        let remote = &self.shared.remotes[peer];
        remote.inbox.push(task.clone());
        remote.unparker.unpark();
    }

    /// A finished task (`body::end` ran): keeps its allocation for reuse.
    /// `Schedule::release` unlisted it from the registry, unless it is listed
    /// in another worker's shard: that stays here, on the worker, because it
    /// is batched across tasks (one lock per shard, registry.rs) and the
    /// allocation is recycled only after it is unlisted.
    fn recycle(&self, task: Arc<Task>) {
        self.placement.finished(&self.shared.homes);
        let other_shard = matches!(
            self.shared.registry.shard_of(&task),
            Some(shard) if shard != self.index
        );
        if !other_shard {
            task_pool::give(self, task);
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
            task_pool::give(self, task);
        }
    }
}

/// This thread's involuntary context switches so far (`getrusage`; one
/// syscall, asked only when the spin budget would grow: idle.rs).
fn involuntary_switches() -> u64 {
    // SAFETY: `getrusage` writes only the struct it is given, which is a valid,
    // zeroed `rusage` on our stack.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut usage) != 0 {
            return 0;
        }
        usage.ru_nivcsw as u64
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
