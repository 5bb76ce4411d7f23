//! A task's scheduling state machine, on its own so that loom can check it
//! (`model_check::loom_task_state`): its atomics come from `crate::loom`.
//!
//! ```text
//!   SCHEDULED --run--> RUNNING --park--> PARKED --unpark--> SCHEDULED
//!                         |  \--yield--> RUNNING + yielded (queued)
//!                         \--return----> DONE
//! ```
//!
//! One byte holds the state plus a NOTIFIED bit. `unpark` on a RUNNING (or
//! SCHEDULED) task sets NOTIFIED instead of enqueueing: the task consumes it at
//! its next `park` (`take_notified`), or the worker sees it when the task
//! suspends (`transition_to_parked` fails) and re-queues it. Yielding and being
//! resumed keep the bit (read-modify-writes, not stores), so it survives until
//! that next park. So a wake-up that races with a park is never lost, and since only the PARKED -> SCHEDULED edge
//! enqueues, a task is in at most one queue at a time. Cancellation is a separate
//! flag set *before* the unpark that makes the task notice it: whoever sees the
//! task run again after the unpark sees the flag (Release/Acquire through the
//! state byte).
//!
//! The cancelled flag shares its byte (`interrupt`) with `SCOPE_USED`, which the
//! task's own code sets the first time it touches its deadline-scope state
//! (`cancel_scope`). So the question every blocking call asks twice, before and
//! after it suspends — "could anything interrupt me?" — is one load and one
//! test while the answer is no (`park::task_interrupt`), where two flags in two
//! places cost two loads and two tests (benches/compare/findings/switch.md).
//! Other threads only ever set or clear `CANCELLED`, with read-modify-writes,
//! so the owner's one-time `fetch_or` of `SCOPE_USED` cannot undo them.
//!
//! A yield writes no atomic read-modify-write. A yielded task goes to its own
//! worker's private ready queue, and only that worker resumes it, so its byte
//! simply stays RUNNING and the worker records `yielded` (a flag only the home
//! thread writes, with plain stores): while the byte says RUNNING, an `unpark`
//! sets NOTIFIED and queues nothing, which is exactly what a queued task needs,
//! and the resume that follows finds `yielded` and skips its `fetch_or`. Why:
//! the yield's `lock and` and the resume's `lock or` were two full barriers per
//! switch, right after the switch's register pushes, on a path that only the
//! task's home thread ever runs (benches/compare/findings/hot.md). `get`
//! reports such a task as SCHEDULED, so a dump still tells queued from running.
//!
//! Why a separate type rather than fields of `Task`: the model checker needs the
//! protocol without a coroutine, a stack or a worker around it, and the runtime
//! must run the very code that was checked.
//!
//! Layer: task core. Uses only `loom`.

use crate::loom::{AtomicBool, AtomicU8, Ordering};

/// `TaskState::interrupt`: a cancellation was requested (any thread).
pub(crate) const CANCELLED: u8 = 0b01;
/// `TaskState::interrupt`: the task's code reached its deadline-scope state
/// (only the task's own thread sets it).
pub(crate) const SCOPE_USED: u8 = 0b10;

pub(crate) const SCHEDULED: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const PARKED: u8 = 2;
pub(crate) const DONE: u8 = 3;
const STATE_MASK: u8 = 0b11;
const NOTIFIED: u8 = 0b100;

/// The state byte and the interrupt byte of one task.
pub(crate) struct TaskState {
    state: AtomicU8,
    /// `CANCELLED` and `SCOPE_USED` (module comment).
    interrupt: AtomicU8,
    /// The task yielded and waits in its worker's ready queue with its byte
    /// still RUNNING (module comment). Written only by the home worker
    /// (Relaxed stores: no other thread acts on it); read by dumps.
    yielded: AtomicBool,
}

impl Default for TaskState {
    fn default() -> TaskState {
        TaskState::new()
    }
}

impl TaskState {
    /// A new task: SCHEDULED (it is about to be queued), not cancelled.
    #[inline]
    pub(crate) fn new() -> TaskState {
        TaskState {
            state: AtomicU8::new(SCHEDULED),
            interrupt: AtomicU8::new(0),
            yielded: AtomicBool::new(false),
        }
    }

    /// The state without the NOTIFIED bit; a task queued by a yield (its byte
    /// still RUNNING) is SCHEDULED.
    #[inline]
    pub(crate) fn get(&self) -> u8 {
        match self.state.load(Ordering::Acquire) & STATE_MASK {
            RUNNING if self.yielded.load(Ordering::Relaxed) => SCHEDULED,
            s => s,
        }
    }

    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.get() == DONE
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.interrupt() & CANCELLED != 0
    }

    /// `CANCELLED` and `SCOPE_USED`, in one load: zero means that nothing can
    /// interrupt the task's blocking call.
    #[inline(always)]
    pub(crate) fn interrupt(&self) -> u8 {
        self.interrupt.load(Ordering::Acquire)
    }

    /// Records a cancellation request. The caller then `unpark`s the task so that
    /// it notices.
    #[inline]
    pub(crate) fn set_cancelled(&self) {
        self.interrupt.fetch_or(CANCELLED, Ordering::Release);
    }

    /// Withdraws a cancellation request; returns whether one was recorded.
    #[inline]
    pub(crate) fn clear_cancelled(&self) -> bool {
        self.interrupt.fetch_and(!CANCELLED, Ordering::AcqRel) & CANCELLED != 0
    }

    /// The task's own code, as it reaches its deadline-scope state: from now
    /// on its blocking calls look at it. Once per task: a read-modify-write
    /// only the first time.
    #[inline]
    pub(crate) fn mark_scope_used(&self) {
        if self.interrupt.load(Ordering::Relaxed) & SCOPE_USED == 0 {
            self.interrupt.fetch_or(SCOPE_USED, Ordering::Relaxed);
        }
    }

    /// Whether `mark_scope_used` ran (the task's own thread asks).
    #[inline]
    pub(crate) fn scope_used(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed) & SCOPE_USED != 0
    }

    /// Worker: claim a popped task for running.
    #[inline]
    pub(crate) fn transition_to_running(&self) {
        if self.yielded.load(Ordering::Relaxed) {
            // Queued by a yield: the byte is still RUNNING (only this thread
            // moves it away from RUNNING), and a NOTIFIED set meanwhile stays.
            self.yielded.store(false, Ordering::Relaxed);
            return;
        }
        // A queued task is SCHEDULED (0), possibly with NOTIFIED set by an unpark
        // that arrived while it ran before a yield or sat in the queue. The bit
        // is kept for the task's next park: an unpark before a park makes the
        // park return at once (`ivy::park`'s contract, std's). A plain store here
        // erased it, and a task that yielded then parked slept through its
        // wake-up (found by loom: `an_unpark_during_a_yield_is_kept_for_the_next_park`).
        // After a wake-up from PARKED the kept bit costs at most one spurious
        // return, which every park caller tolerates (they loop).
        let prev = self.state.fetch_or(RUNNING, Ordering::AcqRel);
        debug_assert_eq!(prev & STATE_MASK, SCHEDULED, "only a queued task is run");
    }

    /// Worker, after the task suspended to park. Returns `true` if the task is
    /// now parked, `false` if a wake-up arrived meanwhile and the worker must
    /// queue it again (its state is then SCHEDULED).
    #[inline]
    pub(crate) fn transition_to_parked(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                self.state.store(SCHEDULED, Ordering::Release);
                false
            }
        }
    }

    /// Worker, after the task suspended to yield, before it queues the task on
    /// its own ready queue: the byte stays RUNNING (module comment), so a
    /// NOTIFIED bit, set before or after, is kept for the task's next park (see
    /// `transition_to_running`), and an unpark meanwhile queues nothing.
    #[inline]
    pub(crate) fn transition_to_yielded(&self) {
        self.yielded.store(true, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn transition_to_done(&self) {
        self.state.store(DONE, Ordering::Release);
    }

    /// The task itself, before suspending to park: consume a pending wake-up
    /// token. Returns `true` if there was one (then the park must return at once).
    #[inline]
    pub(crate) fn take_notified(&self) -> bool {
        let s = self.state.load(Ordering::Acquire);
        if s & NOTIFIED != 0 {
            self.state.fetch_and(!NOTIFIED, Ordering::AcqRel);
            true
        } else {
            false
        }
    }

    /// Wakes the task, from any thread. Returns `true` on the PARKED ->
    /// SCHEDULED edge: the caller must then queue the task on its home worker
    /// (exactly one caller gets `true` per park).
    #[inline]
    pub(crate) fn unpark(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match s & STATE_MASK {
                RUNNING | SCHEDULED => {
                    if s & NOTIFIED != 0 {
                        return false;
                    }
                    s | NOTIFIED
                }
                PARKED => SCHEDULED,
                _ => return false, // DONE
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return s & STATE_MASK == PARKED,
                Err(actual) => s = actual,
            }
        }
    }
}
