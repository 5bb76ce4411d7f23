//! A task's body (`task::body::Body`): its closure and its result share one slot
//! (`Stage`), which the task empties without the join lock when it starts. The
//! handle must never read the slot before the task stored its result there: it
//! reads it only after it saw DONE, or `STORED` under the join lock
//! (`JoinCore`). One model thread plays the task's runner, doing what `start`
//! and `body::end` do with the body: take the closure, run it, store the result
//! (`finish`), then mark DONE under the join lock (`header::notify_done`'s
//! step). The main thread plays the handle, with the real `JoinHandle`. The
//! promises: loom sees no two concurrent accesses to the slot (its
//! `UnsafeCell` reports one as a failure), and the result is dropped exactly
//! once, by the handle or by the task, wherever the handle's drop or join lands.

use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use crate::task::body::Body;
use crate::task::join::JoinHandle;
use crate::task::raw::Start;

/// A result that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A body whose closure returns a `Counted`, and the handle to it.
#[allow(clippy::type_complexity)]
fn spawned(
    drops: &Arc<AtomicUsize>,
) -> (
    Arc<Body<impl FnOnce() -> Counted + Send + 'static, Counted>>,
    JoinHandle<Counted>,
) {
    let d = drops.clone();
    let body = Arc::new(Body::new(1, None, move || Counted(d)));
    let handle = JoinHandle::new(body.clone());
    (body, handle)
}

/// What the task's runner does with its body, from its start to DONE.
fn run_to_done<F: FnOnce() -> T + Send, T: Send>(body: &Body<F, T>) {
    // SAFETY: this thread is the task's one runner, and nothing is stored yet.
    let f = unsafe { body.take_closure() }.expect("the closure is there");
    body.finish(Ok(f()));
    let core = body.core();
    core.set_done(&core.lock());
}

#[test]
fn a_handle_dropped_racing_the_tasks_end_never_reads_the_slot_early() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (body, handle) = spawned(&drops);
        let task = thread::spawn(move || run_to_done(&body));
        drop(handle);
        task.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the result dropped once");
    });
}

#[test]
fn a_handle_joined_after_done_takes_the_result_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (body, handle) = spawned(&drops);
        let task = thread::spawn(move || run_to_done(&body));
        while !handle.is_finished() {
            thread::yield_now();
        }
        let result = handle.join().expect("the task returned");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "the joiner holds the result"
        );
        drop(result);
        task.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the result dropped once");
    });
}
