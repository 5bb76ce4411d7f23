//! The task state machine (`task::state::TaskState`): park vs unpark, two
//! unparkers, cancel vs park.
//!
//! A task's park, as `park::park_task` and `worker::run_task` do it: the task
//! checks for cancellation, consumes a pending notification (`take_notified`) or
//! suspends; the worker then moves it to PARKED unless a wake-up arrived
//! (`transition_to_parked`), in which case it re-queues it. An unparker queues
//! the task only when `unpark` returns `true`. The promise: whatever the
//! interleaving, exactly one party makes the task run again (no lost wake-up,
//! never two queue entries), and a cancellation is seen when it does.
//!
//! The interrupt byte: the owner's first `mark_scope_used` racing another
//! thread's cancel or uncancel loses neither side's bit.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::task::state::{TaskState, CANCELLED, PARKED, RUNNING, SCHEDULED, SCOPE_USED};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Park {
    /// The cancellation check at the start of the park fired.
    Cancelled,
    /// A notification was pending: the park returned without suspending.
    Notified,
    /// The task suspended, and a wake-up arrived before the worker parked it:
    /// the worker re-queued it.
    Requeued,
    /// The task is parked; only an unparker can queue it.
    Parked,
}

/// One park of a running task, in `park_task` / `run_task`'s order.
fn park_once(state: &TaskState) -> Park {
    // As `park::task_interrupt` reads it: the interrupt byte, in one load.
    if state.interrupt() & CANCELLED != 0 {
        return Park::Cancelled;
    }
    if state.take_notified() {
        return Park::Notified;
    }
    // The task suspends here; the worker resumes after `resume` returned.
    if state.transition_to_parked() {
        Park::Parked
    } else {
        Park::Requeued
    }
}

/// The worker popped the task and runs it.
fn running() -> Arc<TaskState> {
    let state = Arc::new(TaskState::new());
    state.transition_to_running();
    state
}

fn unparker(state: &Arc<TaskState>, enqueued: &Arc<AtomicUsize>) -> thread::JoinHandle<()> {
    let (state, enqueued) = (state.clone(), enqueued.clone());
    thread::spawn(move || {
        if state.unpark() {
            enqueued.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Who is responsible for running the task again after this park.
fn reruns(park: Park, enqueued: usize) -> usize {
    usize::from(park != Park::Parked) + enqueued
}

#[test]
fn unpark_racing_park_is_never_lost() {
    loom::model(|| {
        let state = running();
        let enqueued = Arc::new(AtomicUsize::new(0));
        let t = unparker(&state, &enqueued);
        let park = park_once(&state);
        t.join().unwrap();
        let enqueued = enqueued.load(Ordering::Relaxed);
        assert_eq!(reruns(park, enqueued), 1, "{park:?}, {enqueued} enqueued");
        let expected = match park {
            Park::Notified => RUNNING,
            Park::Requeued | Park::Parked => SCHEDULED,
            Park::Cancelled => unreachable!("nobody cancelled"),
        };
        assert_eq!(state.get(), expected);
    });
}

#[test]
fn two_unparkers_queue_the_task_at_most_once() {
    loom::model(|| {
        let state = running();
        let enqueued = Arc::new(AtomicUsize::new(0));
        let a = unparker(&state, &enqueued);
        let b = unparker(&state, &enqueued);
        let park = park_once(&state);
        a.join().unwrap();
        b.join().unwrap();
        let enqueued = enqueued.load(Ordering::Relaxed);
        assert_eq!(reruns(park, enqueued), 1, "{park:?}, {enqueued} enqueued");
        assert_ne!(state.get(), PARKED);
    });
}

#[test]
fn a_notification_is_consumed_by_one_park_only() {
    // An unpark while the task runs lets exactly one later park return at once;
    // the park after it parks, and the next unpark queues the task once.
    loom::model(|| {
        let state = running();
        let enqueued = Arc::new(AtomicUsize::new(0));
        let first = unparker(&state, &enqueued);
        first.join().unwrap();
        assert_eq!(park_once(&state), Park::Notified);
        assert_eq!(park_once(&state), Park::Parked);
        let second = unparker(&state, &enqueued);
        let third = unparker(&state, &enqueued);
        second.join().unwrap();
        third.join().unwrap();
        assert_eq!(enqueued.load(Ordering::Relaxed), 1);
        assert_eq!(state.get(), SCHEDULED);
    });
}

#[test]
fn cancel_racing_park_is_seen_when_the_task_runs_again() {
    loom::model(|| {
        let state = running();
        let enqueued = Arc::new(AtomicUsize::new(0));
        let canceller = {
            let (state, enqueued) = (state.clone(), enqueued.clone());
            thread::spawn(move || {
                // `Task::cancel`: the flag, then the wake-up that makes it seen.
                state.set_cancelled();
                if state.unpark() {
                    enqueued.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let park = park_once(&state);
        match park {
            // The task goes on running (or runs again from its worker's queue):
            // `park_task` re-checks for cancellation before returning, and must
            // see it, on this thread, without any other synchronisation.
            Park::Notified | Park::Requeued => {
                if park == Park::Requeued {
                    state.transition_to_running();
                }
                assert!(state.is_cancelled(), "{park:?} without the cancel");
            }
            Park::Cancelled | Park::Parked => {}
        }
        canceller.join().unwrap();
        let enqueued = enqueued.load(Ordering::Relaxed);
        if park == Park::Cancelled {
            // The unpark found the task running and left a notification.
            assert_eq!(enqueued, 0);
        } else {
            assert_eq!(reruns(park, enqueued), 1, "{park:?}, {enqueued} enqueued");
        }
    });
}

#[test]
fn an_unpark_during_a_yield_is_kept_for_the_next_park() {
    // `ivy::park`'s contract (std's): an unpark before a park makes the park
    // return at once. The task yields (the worker queues it again) while an
    // unparker runs, then runs again and parks.
    loom::model(|| {
        let state = running();
        let enqueued = Arc::new(AtomicUsize::new(0));
        let t = unparker(&state, &enqueued);
        state.transition_to_yielded(); // `Suspend::Yield`: back to the queue
        state.transition_to_running(); // popped and resumed
        let park = park_once(&state);
        t.join().unwrap();
        let enqueued = enqueued.load(Ordering::Relaxed);
        assert_eq!(reruns(park, enqueued), 1, "{park:?}, {enqueued} enqueued");
    });
}

#[test]
fn unpark_racing_completion_never_queues_a_finished_task() {
    loom::model(|| {
        let state = running();
        let enqueued = Arc::new(AtomicUsize::new(0));
        let t = unparker(&state, &enqueued);
        state.transition_to_done();
        t.join().unwrap();
        // (The final state is not asserted: loom 0.7 may order the plain DONE
        // store between the read and the write of the unparker's CAS, an
        // execution no hardware produces, and then reports RUNNING.)
        assert_eq!(enqueued.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn an_unpark_never_queues_a_yielded_task() {
    // A yielded task waits in its worker's ready queue with its byte still
    // RUNNING (`task::state`): an unpark meanwhile must not queue it a second
    // time, and is kept for its next park.
    loom::model(|| {
        let state = running();
        let enqueued = Arc::new(AtomicUsize::new(0));
        let t = unparker(&state, &enqueued);
        state.transition_to_yielded();
        assert_eq!(state.get(), SCHEDULED, "a queued task shows as scheduled");
        t.join().unwrap();
        assert_eq!(enqueued.load(Ordering::Relaxed), 0, "queued twice");
        state.transition_to_running(); // popped and resumed
        assert_eq!(state.get(), RUNNING);
        assert_eq!(park_once(&state), Park::Notified, "the unpark was lost");
    });
}

#[test]
fn cancel_racing_a_yield_is_seen_at_the_next_park() {
    // The canceller runs while the task yields, is resumed and parks: the
    // cancellation is seen by that park (or, if it came later, the unpark
    // queues the parked task once, and it sees the flag when it runs).
    loom::model(|| {
        let state = running();
        let enqueued = Arc::new(AtomicUsize::new(0));
        let canceller = {
            let (state, enqueued) = (state.clone(), enqueued.clone());
            thread::spawn(move || {
                state.set_cancelled();
                if state.unpark() {
                    enqueued.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        state.transition_to_yielded();
        state.transition_to_running();
        let park = park_once(&state);
        match park {
            Park::Notified | Park::Requeued => {
                if park == Park::Requeued {
                    state.transition_to_running();
                }
                assert!(state.is_cancelled(), "{park:?} without the cancel");
            }
            Park::Cancelled | Park::Parked => {}
        }
        canceller.join().unwrap();
        let enqueued = enqueued.load(Ordering::Relaxed);
        match park {
            Park::Cancelled => assert_eq!(enqueued, 0),
            _ => assert_eq!(reruns(park, enqueued), 1, "{park:?}, {enqueued} enqueued"),
        }
    });
}

#[test]
fn a_first_scope_mark_racing_a_cancel_keeps_both_bits() {
    loom::model(|| {
        let state = running();
        let canceller = {
            let state = state.clone();
            thread::spawn(move || state.set_cancelled())
        };
        state.mark_scope_used();
        canceller.join().unwrap();
        assert_eq!(state.interrupt(), CANCELLED | SCOPE_USED);
        assert!(state.is_cancelled() && state.scope_used());
    });
}

#[test]
fn an_uncancel_racing_a_first_scope_mark_keeps_the_mark() {
    loom::model(|| {
        let state = running();
        state.set_cancelled();
        let uncanceller = {
            let state = state.clone();
            thread::spawn(move || assert!(state.clear_cancelled()))
        };
        state.mark_scope_used();
        uncanceller.join().unwrap();
        assert_eq!(state.interrupt(), SCOPE_USED);
    });
}
