//! errno is per task for Rust tasks too (issue 11, item 5; `task::thread_state`):
//! saved when a task suspends, restored when it resumes, 0 in a new task, and a
//! generator body's own. Every runtime here has ONE worker, so the tasks really
//! share an OS thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn errno() -> i32 {
    // SAFETY: `__errno_location` has no preconditions.
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: i32) {
    // SAFETY: as above; the address is this thread's errno.
    unsafe { *libc::__errno_location() = v }
}

fn one_worker() -> ivy::Runtime {
    ivy::Builder::new().workers(1).build().unwrap()
}

#[test]
fn errno_survives_yield_and_sleep_while_siblings_change_it() {
    const ROUNDS: i32 = 1000;
    let rt = one_worker();
    let mismatches = Arc::new(AtomicUsize::new(0));
    let rounds = Arc::new(AtomicUsize::new(0));
    let (m, r) = (mismatches.clone(), rounds.clone());
    rt.block_on(move || {
        let tasks: Vec<_> = (1..=4)
            .map(|t| {
                let (mismatches, rounds) = (m.clone(), r.clone());
                ivy::spawn(move || {
                    for i in 0..ROUNDS {
                        let mine = t * 100_000 + i;
                        set_errno(mine);
                        if i % 100 == 0 {
                            ivy::sleep(Duration::from_millis(1));
                        } else {
                            ivy::yield_now();
                        }
                        if errno() != mine {
                            mismatches.fetch_add(1, Ordering::Relaxed);
                        }
                        rounds.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.join().unwrap();
        }
    });
    assert_eq!(mismatches.load(Ordering::Relaxed), 0);
    assert_eq!(rounds.load(Ordering::Relaxed), 4 * ROUNDS as usize);
}

#[test]
fn a_new_task_starts_with_errno_zero() {
    let rt = one_worker();
    rt.block_on(|| {
        for _ in 0..100 {
            set_errno(4242);
            let t = ivy::spawn(errno);
            set_errno(4343);
            assert_eq!(t.join().unwrap(), 0);
            assert_eq!(errno(), 4343);
        }
    });
}

#[test]
fn a_generator_body_has_its_own_errno() {
    let rt = one_worker();
    rt.block_on(|| {
        let stop = Arc::new(AtomicUsize::new(0));
        let sibling = {
            let stop = stop.clone();
            ivy::spawn(move || {
                let mut i = 0;
                while stop.load(Ordering::Relaxed) == 0 {
                    set_errno(9999 + i % 7);
                    i += 1;
                    ivy::yield_now();
                }
            })
        };
        let body_mismatches = Arc::new(AtomicUsize::new(0));
        let mut gen = {
            let bad = body_mismatches.clone();
            ivy::Generator::new(move |y| {
                if errno() != 0 {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                for i in 0..100 {
                    set_errno(7000 + i);
                    y.yield_(i);
                    if errno() != 7000 + i {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    // Park the iterating task from inside the body: the sibling runs.
                    ivy::yield_now();
                    if errno() != 7000 + i {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .unwrap()
        };
        let mut want = 0;
        loop {
            set_errno(100 + want);
            let Some(v) = gen.next() else { break };
            assert_eq!(v, want);
            // The caller's errno, not the body's.
            assert_eq!(errno(), 100 + want);
            want += 1;
        }
        assert_eq!(want, 100);
        stop.store(1, Ordering::Relaxed);
        sibling.join().unwrap();
        assert_eq!(body_mismatches.load(Ordering::Relaxed), 0);
    });
}
