//! Deadline scopes (`timeout`, `deadline`) and `shield`, through the public API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{ms, CountDrop};

#[test]
fn timeout_interrupts_sleep_after_the_deadline() {
    for _ in 0..5 {
        let (r, took) = ivy::run(|| {
            let start = Instant::now();
            let r = ivy::timeout(ms(30), || ivy::sleep(Duration::from_secs(10)));
            (r, start.elapsed())
        });
        assert!(r.is_err());
        assert!(took >= ms(30), "returned early: {took:?}");
        assert!(took < ms(2000), "returned far too late: {took:?}");
    }
}

#[test]
fn timeout_returns_the_value_when_in_time() {
    let r = ivy::run(|| {
        ivy::timeout(ms(500), || {
            ivy::sleep(ms(5));
            7
        })
    });
    assert_eq!(r, Ok(7));
}

#[test]
fn timeout_runs_destructors_of_the_interrupted_work() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let r = ivy::run(move || {
        ivy::timeout(ms(10), move || {
            let _a = CountDrop(d.clone());
            let _b = CountDrop(d);
            ivy::sleep(Duration::from_secs(5));
        })
    });
    assert!(r.is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn nested_scopes_the_earliest_deadline_wins() {
    // Outer deadline first: the inner scope must not catch it.
    let after_inner = Arc::new(AtomicUsize::new(0));
    let a = after_inner.clone();
    let outer = ivy::run(move || {
        ivy::timeout(ms(20), move || {
            let inner = ivy::timeout(Duration::from_secs(10), || {
                ivy::sleep(Duration::from_secs(5));
            });
            a.fetch_add(1, Ordering::SeqCst);
            inner
        })
    });
    assert!(outer.is_err());
    assert_eq!(after_inner.load(Ordering::SeqCst), 0);

    // Inner deadline first: the inner scope reports it, the outer goes on.
    let outer = ivy::run(|| {
        ivy::timeout(Duration::from_secs(10), || {
            let inner = ivy::timeout(ms(10), || ivy::sleep(Duration::from_secs(5)));
            ivy::sleep(ms(1));
            inner.is_err()
        })
    });
    assert_eq!(outer, Ok(true));
}

#[test]
fn timeout_interrupts_join() {
    let r = ivy::run(|| {
        let h = ivy::spawn(|| ivy::sleep(Duration::from_secs(10)));
        let r = ivy::timeout(ms(10), || h.join().is_ok());
        r.is_err()
    });
    assert!(r);
}

#[test]
fn timeout_works_on_plain_threads() {
    let start = Instant::now();
    let r = ivy::timeout(ms(20), || ivy::sleep(Duration::from_secs(10)));
    assert!(r.is_err());
    assert!(start.elapsed() >= ms(20));
    // The thread's scope state is restored: a later sleep is unaffected.
    ivy::sleep(ms(1));
}

#[test]
fn deadline_in_the_past_fails_at_the_first_blocking_call() {
    let r = ivy::run(|| {
        let reached = Arc::new(AtomicUsize::new(0));
        let r2 = reached.clone();
        let r = ivy::deadline(Instant::now(), move || {
            r2.fetch_add(1, Ordering::SeqCst); // non-blocking code runs
            ivy::yield_now();
            r2.fetch_add(1, Ordering::SeqCst);
        });
        (r.is_err(), reached.load(Ordering::SeqCst))
    });
    assert_eq!(r, (true, 1));
}

#[test]
fn shield_defers_cancellation_until_it_ends() {
    for _ in 0..10 {
        let steps = Arc::new(AtomicUsize::new(0));
        let s = steps.clone();
        let err = ivy::run(move || {
            let s2 = s.clone();
            // Cancel once the task is inside its shield (a handshake: a task
            // cancelled before it starts never runs its body).
            let shielded = Arc::new(ivy::sync::Event::new());
            let inside = shielded.clone();
            let h = ivy::spawn(move || {
                ivy::shield(|| {
                    inside.set();
                    ivy::sleep(ms(30));
                    s2.fetch_add(1, Ordering::SeqCst);
                    ivy::sleep(ms(1));
                    s2.fetch_add(1, Ordering::SeqCst);
                });
                ivy::sleep(Duration::from_secs(10));
                s2.fetch_add(100, Ordering::SeqCst);
            });
            shielded.wait();
            h.cancel();
            h.join().unwrap_err()
        });
        assert!(err.is_cancelled());
        assert_eq!(steps.load(Ordering::SeqCst), 2);
    }
}

#[test]
fn shield_hides_an_outer_deadline() {
    let r = ivy::run(|| {
        ivy::timeout(ms(10), || {
            let inside = ivy::shield(|| {
                ivy::sleep(ms(40));
                // A deadline scope inside the shield still works.
                ivy::timeout(ms(5), || ivy::sleep(Duration::from_secs(5))).is_err()
            });
            assert!(inside);
            ivy::sleep(ms(1)); // the outer deadline is seen here
            unreachable!("the outer deadline has passed");
        })
    });
    assert!(r.is_err());
}

#[test]
fn scopes_are_per_task() {
    // A task spawned inside a scope does not inherit its deadline.
    let r = ivy::run(|| {
        let h = ivy::timeout(ms(5), || {
            ivy::spawn(|| {
                ivy::sleep(ms(30));
                1
            })
        })
        .unwrap();
        h.join().unwrap()
    });
    assert_eq!(r, 1);
}

// A task's cancelled flag and its "has used a deadline scope" mark share one
// byte (`task::state`): a cancel from another thread racing the task's first
// scope must keep both, and an uncancel must keep the mark.

#[test]
fn a_cancel_racing_the_first_scope_of_a_task_is_not_lost() {
    use std::sync::atomic::AtomicBool;
    let rt = common::rt(2);
    for i in 0..300 {
        let (started, go) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, g) = (started.clone(), go.clone());
        let h = rt.spawn(move || {
            s.store(true, Ordering::Release);
            while !g.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            // The task's first deadline scope, opened as the cancel arrives.
            ivy::timeout(Duration::from_secs(20), || {
                ivy::sleep(Duration::from_secs(20))
            })
        });
        // From this plain thread, at a point that moves through the scope's
        // opening from one iteration to the next.
        while !started.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let start = Instant::now();
        go.store(true, Ordering::Release);
        for _ in 0..(i % 50) * 20 {
            std::hint::spin_loop();
        }
        h.cancel();
        let r = rt.block_on(move || h.join());
        let took = start.elapsed();
        assert_eq!(r.map_err(|e| e.is_cancelled()), Err(true), "iteration {i}");
        assert!(
            took < Duration::from_secs(10),
            "iteration {i}: took {took:?}"
        );
    }
}

#[test]
fn an_uncancelled_task_keeps_its_deadline_scope() {
    for _ in 0..20 {
        let (r, took) = ivy::run(|| {
            let h = ivy::spawn(|| {
                let start = Instant::now();
                let r = ivy::timeout(ms(300), || {
                    // Yields until the cancel arrives (the canceller may share
                    // this worker), which the yield reports.
                    while ivy::time::yield_now_checked().is_ok() {}
                    let me = ivy::task::current().expect("in a task");
                    assert!(me.is_cancelled());
                    assert!(me.uncancel());
                    // Cancellation withdrawn: only the scope's deadline ends this.
                    ivy::sleep(Duration::from_secs(20));
                });
                (r, start.elapsed())
            });
            ivy::sleep(ms(1));
            h.cancel();
            h.join().expect("the task ends normally")
        });
        assert!(r.is_err(), "the scope's deadline did not fire");
        assert!(
            took >= ms(300) && took < Duration::from_secs(10),
            "took {took:?}"
        );
    }
}
