//! Task allocations are recycled (runtime/task_pool.rs) and a finished task is
//! freed while its handle lives on (task/join.rs). These tests make sure a
//! recycled task starts clean: no cancellation, deadline scope, task-local,
//! name or id leaks from the task that used the allocation before, and handles
//! of finished tasks still answer everything.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ivy::Builder;

ivy::task_local! {
    static MARK: std::cell::Cell<u64> = std::cell::Cell::new(0);
}

/// Waves of tasks on every worker count: each wave's tasks set a task-local,
/// some are cancelled, some run under an elapsed deadline scope; the next wave
/// (reusing their allocations) must see none of it.
#[test]
fn recycled_tasks_start_clean() {
    for workers in [1, 2, 4] {
        let rt = Builder::new().workers(workers).build().unwrap();
        rt.block_on(move || {
            let mut ids = HashSet::new();
            for wave in 0..50u64 {
                let hs: Vec<_> = (0..200u64)
                    .map(|i| {
                        let name = format!("w{wave}-t{i}");
                        ivy::task::Builder::new()
                            .name(name)
                            .spawn(move || {
                                let me = ivy::current().expect("in a task");
                                // Every third task is cancelled by the test at any
                                // moment; no other one may ever see a cancellation.
                                assert!(
                                    i % 3 == 0 || !me.is_cancelled(),
                                    "a fresh task is not cancelled"
                                );
                                assert_eq!(me.name(), Some(format!("w{wave}-t{i}").as_str()));
                                assert_eq!(MARK.with(|m| m.get()), 0, "task-locals start empty");
                                MARK.with(|m| m.set(wave * 1000 + i + 1));
                                // A short deadline scope that elapses: must not leak.
                                let r = ivy::timeout(Duration::from_micros(1), || {
                                    ivy::sleep(Duration::from_millis(5))
                                });
                                assert!(r.is_err());
                                if i % 3 == 0 {
                                    // Cancelled below, here at the latest.
                                    ivy::sleep(Duration::from_secs(30));
                                }
                                assert!(!me.is_cancelled(), "no stale cancellation");
                                ivy::yield_now();
                                wave * 1000 + i
                            })
                            .unwrap()
                    })
                    .collect();
                for (i, h) in hs.iter().enumerate() {
                    if i % 3 == 0 {
                        h.cancel();
                    }
                    assert!(ids.insert(h.id()), "task ids are unique");
                }
                for (i, h) in hs.into_iter().enumerate() {
                    let name = h.name().map(str::to_owned);
                    assert_eq!(name, Some(format!("w{wave}-t{i}")));
                    match h.join() {
                        Ok(v) => {
                            assert_ne!(i % 3, 0);
                            assert_eq!(v, wave * 1000 + i as u64);
                        }
                        Err(e) => {
                            assert_eq!(i % 3, 0, "only the cancelled ones fail: {e}");
                            assert!(e.is_cancelled());
                        }
                    }
                }
            }
        });
    }
}

/// A finished task's handle: id, name, is_finished, cancel (a no-op), join,
/// wait_timeout, all after the task itself was freed or recycled by others.
#[test]
fn handles_outlive_their_tasks() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        let done = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..500u64)
            .map(|i| {
                let done = done.clone();
                ivy::task::Builder::new()
                    .name(format!("old{i}"))
                    .spawn(move || {
                        done.fetch_add(1, Ordering::SeqCst);
                        i
                    })
                    .unwrap()
            })
            .collect();
        while done.load(Ordering::SeqCst) < 500 || !hs.iter().all(|h| h.is_finished()) {
            ivy::sleep(Duration::from_millis(1));
        }
        // Churn: these reuse the finished tasks' allocations.
        let churn: Vec<_> = (0..2000u64).map(|i| ivy::spawn(move || i)).collect();
        for h in churn {
            h.join().unwrap();
        }
        for (i, h) in hs.into_iter().enumerate() {
            assert!(h.is_finished());
            h.cancel(); // finished: nothing to cancel
            assert!(h.wait_timeout(Duration::ZERO));
            assert_eq!(h.name(), Some(format!("old{i}").as_str()));
            assert_eq!(h.join().unwrap(), i as u64);
        }
    });
}

/// `ivy::current()` hands out a new reference to the running task, cloned from
/// an `Arc` that the runtime rebuilds from the header's address without owning
/// it (`task::current::with_task_or_thread`): every clone must count, so the
/// task outlives its end for as long as a `Current` of it lives, keeps its id
/// and name while the runtime recycles other allocations around it, and is
/// freed once (valgrind: no invalid read, no double free). Clones taken before
/// and after a suspension, on 1 and 2 workers.
#[test]
fn current_handles_count_their_task_and_outlive_it() {
    const TASKS: u64 = 1000;
    for workers in [1, 2] {
        let rt = Builder::new().workers(workers).build().unwrap();
        rt.block_on(|| {
            let hs: Vec<_> = (0..TASKS)
                .map(|i| {
                    ivy::task::Builder::new()
                        .name(format!("cur{i}"))
                        .spawn(move || {
                            let before = ivy::current().expect("a task");
                            ivy::yield_now();
                            let after = ivy::current().expect("a task");
                            (before, after)
                        })
                        .unwrap()
                })
                .collect();
            let mut kept = Vec::new();
            for h in hs {
                let id = h.id();
                let (before, after) = h.join().unwrap();
                kept.push((id, before, after));
            }
            // Churn: new tasks take whatever allocations the pool has.
            let churn: Vec<_> = (0..2 * TASKS).map(|i| ivy::spawn(move || i)).collect();
            let sum: u64 = churn.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(sum, (0..2 * TASKS).sum::<u64>());
            let ids: HashSet<_> = kept.iter().map(|(id, _, _)| *id).collect();
            assert_eq!(ids.len(), TASKS as usize);
            for (i, (id, before, after)) in kept.into_iter().enumerate() {
                assert_eq!(before.id(), id);
                assert_eq!(after.id(), id);
                assert_eq!(before.name(), Some(format!("cur{i}").as_str()));
                drop(before);
                assert_eq!(after.name(), Some(format!("cur{i}").as_str()));
            }
        });
    }
}

/// Cancelling through a handle while the task runs still reaches it (the
/// handle finds the task through its join slot).
#[test]
fn cancel_reaches_a_running_task_many_times() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        for _ in 0..300 {
            let h = ivy::spawn(|| ivy::sleep(Duration::from_secs(60)));
            ivy::yield_now();
            h.cancel();
            assert!(h.join().unwrap_err().is_cancelled());
        }
    });
}

/// What a task's end runs on its own stack (task-local destructors) still has
/// the task's frame context (`task::raw::FrameCtx`, which lives in the first
/// frame of the coroutine and dies after them): a destructor that reads
/// another task-local, opens a deadline scope that elapses, parks, and is
/// shielded, on 1 and 2 workers, over recycled allocations. Exact counts, and
/// the tasks of the next wave see none of it.
#[test]
fn task_local_destructors_use_the_frame_context_at_the_task_end() {
    ivy::task_local! {
        static OTHER: std::cell::Cell<u64> = std::cell::Cell::new(7);
    }
    struct AtEnd(Arc<AtomicUsize>);
    impl Drop for AtEnd {
        fn drop(&mut self) {
            // Created anew in the destructor round, or still there: either way 7.
            assert_eq!(OTHER.with(|o| o.get()), 7);
            let r = ivy::timeout(Duration::from_micros(1), || {
                ivy::sleep(Duration::from_millis(20))
            });
            assert!(r.is_err(), "the destructor's scope elapses");
            // Interrupted, it would unwind out of the destructor: a panic the
            // join below reports.
            ivy::shield(|| ivy::sleep(Duration::from_micros(100)));
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    ivy::task_local! {
        static GUARD: std::cell::RefCell<Option<AtEnd>> = std::cell::RefCell::new(None);
    }
    for workers in [1, 2] {
        let rt = Builder::new().workers(workers).build().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        rt.block_on(move || {
            for wave in 0..20u64 {
                let hs: Vec<_> = (0..100u64)
                    .map(|i| {
                        let d = d.clone();
                        ivy::spawn(move || {
                            assert!(GUARD.with(|g| g.borrow().is_none()), "fresh task-locals");
                            // No deadline is in effect in a fresh task (a stale
                            // scope would unwind this sleep: the join fails).
                            ivy::sleep(Duration::from_micros(50));
                            if i % 2 == 0 {
                                GUARD.with(|g| *g.borrow_mut() = Some(AtEnd(d)));
                            }
                            wave * 100 + i
                        })
                    })
                    .collect();
                for (i, h) in hs.into_iter().enumerate() {
                    assert_eq!(h.join().unwrap(), wave * 100 + i as u64);
                }
            }
        });
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            20 * 50,
            "workers = {workers}"
        );
    }
}
