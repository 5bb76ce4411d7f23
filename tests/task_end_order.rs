//! The order of a task's end (issue 12): the end moved from the worker's stack
//! to the task's own (`task::body::run`), and these are the guarantees that
//! move had to keep. When `join` returns (from a task or a plain thread, for a
//! task spawned on the same worker, stolen by another, or spawned from outside
//! the runtime), the task's task-locals have been dropped, it is no longer
//! counted live, and no snapshot lists it; and the joiner is woken only after
//! all of that, even when it runs on the same worker as the finishing task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ivy::runtime::Builder;

/// Sets its flag when dropped (a task-local's value).
struct SetOnDrop(Option<Arc<AtomicBool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            f.store(true, Ordering::SeqCst);
        }
    }
}

ivy::task_local! {
    static GUARD: std::cell::RefCell<SetOnDrop> = std::cell::RefCell::new(SetOnDrop(None));
}

/// A child that registers a task-local with a destructor, does a little
/// blocking work (so it may be stolen and may park), and returns.
fn child(flag: Arc<AtomicBool>, i: u64) -> u64 {
    GUARD.with(|g| *g.borrow_mut() = SetOnDrop(Some(flag)));
    if i % 3 == 0 {
        ivy::yield_now();
    }
    i
}

fn check_gone(h: &ivy::Handle, id: ivy::TaskId, flag: &AtomicBool, expected_live: usize) {
    assert!(
        flag.load(Ordering::SeqCst),
        "task-locals dropped before join returns"
    );
    assert!(
        h.live_tasks() <= expected_live,
        "a joined task is no longer live ({} > {expected_live})",
        h.live_tasks()
    );
    assert!(
        !h.tasks().iter().any(|t| t.id == id),
        "a joined task is not listed"
    );
}

#[test]
fn joined_from_a_plain_thread_the_task_has_fully_ended() {
    let rt = Builder::new().workers(2).build().unwrap();
    let h = rt.handle();
    for i in 0..2000 {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let j = h.spawn(move || child(f, i));
        let id = j.id();
        assert_eq!(j.join().unwrap(), i);
        check_gone(&h, id, &flag, 0);
    }
}

#[test]
fn joined_from_a_task_the_task_has_fully_ended() {
    let rt = Builder::new().workers(2).build().unwrap();
    let h = rt.handle();
    let h2 = h.clone();
    rt.block_on(move || {
        for i in 0..2000 {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            let j = ivy::spawn(move || child(f, i));
            let id = j.id();
            assert_eq!(j.join().unwrap(), i);
            // Only the joining task itself is live.
            check_gone(&h2, id, &flag, 1);
        }
    });
    drop(h);
}

#[test]
fn many_joiners_on_busy_workers_see_the_end_complete() {
    // Children spawned in bursts (so peers steal some), joined by their
    // spawner while other children still run on the same worker: a joiner
    // woken by a finishing task on its own worker runs after that task's end.
    let rt = Builder::new().workers(2).build().unwrap();
    let h = rt.handle();
    let h2 = h.clone();
    rt.block_on(move || {
        for round in 0..50u64 {
            let handles: Vec<_> = (0..64u64)
                .map(|i| {
                    let flag = Arc::new(AtomicBool::new(false));
                    let f = flag.clone();
                    (ivy::spawn(move || child(f, round * 64 + i)), flag)
                })
                .collect();
            for (j, flag) in handles {
                let id = j.id();
                j.join().unwrap();
                assert!(flag.load(Ordering::SeqCst));
                assert!(!h2.tasks().iter().any(|t| t.id == id));
            }
            assert_eq!(h2.live_tasks(), 1);
        }
    });
    drop(h);
}
