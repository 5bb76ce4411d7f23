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
