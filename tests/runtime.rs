//! Runtime core through the public API: spawn/join, sleep order, panics,
//! cancellation, shutdown, plain threads, task-locals, thread affinity, fairness.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ivy::Builder;

mod common;
use common::{rt, CountDrop};

#[test]
fn run_returns_the_main_result() {
    assert_eq!(ivy::run(|| 40 + 2), 42);
}

#[test]
fn spawn_and_join_values() {
    let rt = rt(2);
    let total = rt.block_on(|| {
        let hs: Vec<_> = (0..1000u64).map(|i| ivy::spawn(move || i * 2)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(total, 999 * 1000);
}

#[test]
fn nested_spawns_join_in_tree() {
    fn tree(depth: u32) -> u64 {
        if depth == 0 {
            return 1;
        }
        let hs: Vec<_> = (0..4)
            .map(|_| ivy::spawn(move || tree(depth - 1)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    }
    for workers in [1, 2, 4] {
        assert_eq!(rt(workers).block_on(|| tree(6)), 4096);
    }
}

#[test]
fn sleeps_finish_in_deadline_order() {
    // Deadlines from one common start, so the order does not depend on when
    // each task started (regression: relative sleeps 30 ms apart, started on
    // two workers, could finish out of order on a loaded machine). On one
    // worker the order is exact whatever the timing (due timers fire in
    // deadline order); across two workers a task woken on one worker races
    // the next one on the other, so those deadlines are 100 ms apart: only an
    // OS stall of a worker that long could reorder them.
    for (workers, step) in [(1usize, 10u64), (2, 100)] {
        let rt = rt(workers);
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        rt.block_on(move || {
            let start = Instant::now();
            let hs: Vec<_> = [5u64, 1, 4, 2, 3, 0]
                .into_iter()
                .map(|k| {
                    let o = o.clone();
                    ivy::spawn(move || {
                        ivy::sleep_until(start + Duration::from_millis(k * step));
                        o.lock().unwrap().push(k);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        assert_eq!(
            *order.lock().unwrap(),
            vec![0, 1, 2, 3, 4, 5],
            "{workers} worker(s)"
        );
    }
}

#[test]
fn sleep_is_never_early() {
    rt(2).block_on(|| {
        for ms in [0u64, 1, 2, 5, 13] {
            let start = Instant::now();
            ivy::sleep(Duration::from_millis(ms));
            assert!(start.elapsed() >= Duration::from_millis(ms));
        }
        let deadline = Instant::now() + Duration::from_millis(7);
        ivy::sleep_until(deadline);
        assert!(Instant::now() >= deadline);
    });
}

#[test]
fn panic_is_caught_and_reported_through_join() {
    let rt = rt(2);
    let h = rt.spawn(|| -> u32 { panic!("boom {}", 7) });
    let err = h.join().unwrap_err();
    assert!(err.is_panic());
    assert!(!err.is_cancelled());
    assert_eq!(err.panic_message(), Some("boom 7"));
    // The runtime keeps running.
    assert_eq!(rt.block_on(|| 5), 5);
    let payload = rt
        .spawn(|| std::panic::panic_any(17i32))
        .join()
        .unwrap_err();
    assert_eq!(payload.panic_message(), None);
    assert_eq!(
        *payload.try_into_panic().unwrap().downcast::<i32>().unwrap(),
        17
    );
}

#[test]
fn block_on_resumes_the_main_panic() {
    let rt = rt(1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(|| panic!("main failed"))
    }));
    let p = r.unwrap_err();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"main failed"));
}

#[test]
fn cancel_a_sleeping_task_wakes_it_at_once_and_runs_destructors() {
    let rt = rt(2);
    for _ in 0..50 {
        let dropped = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(AtomicBool::new(false));
        let (d, r) = (dropped.clone(), reached.clone());
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let h = rt.spawn(move || {
            let _guard = CountDrop(d);
            s.store(true, Ordering::SeqCst);
            ivy::sleep(Duration::from_secs(3600));
            r.store(true, Ordering::SeqCst);
        });
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let t0 = Instant::now();
        h.cancel();
        let err = h.join().unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert!(t0.elapsed() < Duration::from_secs(60));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert!(!reached.load(Ordering::SeqCst));
    }
}

#[test]
fn cancel_a_yielding_task() {
    let rt = rt(2);
    for _ in 0..50 {
        let iterations = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (it, d) = (iterations.clone(), dropped.clone());
        let h = rt.spawn(move || {
            let _guard = CountDrop(d);
            loop {
                it.fetch_add(1, Ordering::SeqCst);
                ivy::yield_now();
            }
        });
        while iterations.load(Ordering::SeqCst) < 10 {
            std::thread::yield_now();
        }
        h.cancel();
        assert!(h.join().unwrap_err().is_cancelled());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn cancel_before_start_never_runs_the_body() {
    // One worker kept busy, so the spawned task cannot start before the cancel.
    let rt = rt(1);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let result = rt.block_on(move || {
        let h = ivy::spawn(move || r.store(true, Ordering::SeqCst));
        h.cancel();
        h.join()
    });
    assert!(result.unwrap_err().is_cancelled());
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn cancellation_is_seen_by_a_task_that_catches_it_only_once_per_blocking_call() {
    // A task may catch the cancellation unwind; every later blocking call
    // raises again (level-triggered, like a Trio cancel scope).
    let rt = rt(1);
    let caught = Arc::new(AtomicUsize::new(0));
    let c = caught.clone();
    // Cancel once the body runs (a handshake: cancelled before it starts, the
    // body would never run).
    let running = Arc::new(ivy::sync::Event::new());
    let r = running.clone();
    let h = rt.spawn(move || {
        r.set();
        for _ in 0..3 {
            let r = std::panic::catch_unwind(|| ivy::sleep(Duration::from_secs(3600)));
            if r.is_err() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
        ivy::current().unwrap().is_cancelled()
    });
    running.wait();
    h.cancel();
    assert!(h.join().unwrap());
    assert_eq!(caught.load(Ordering::SeqCst), 3);
}

#[test]
fn blocking_in_a_destructor_during_cancellation_completes() {
    struct SleepOnDrop(Arc<AtomicUsize>);
    impl Drop for SleepOnDrop {
        fn drop(&mut self) {
            ivy::sleep(Duration::from_millis(5));
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let rt = rt(2);
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let armed = Arc::new(ivy::sync::Event::new());
    let a = armed.clone();
    let h = rt.spawn(move || {
        let _g = SleepOnDrop(d);
        a.set();
        ivy::sleep(Duration::from_secs(3600));
    });
    // Cancel once the guard exists (a handshake, not a 20 ms guess).
    armed.wait();
    h.cancel();
    assert!(h.join().unwrap_err().is_cancelled());
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[test]
fn joiner_cancelled_while_waiting_detaches_the_joined_task() {
    let rt = rt(2);
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let inner_done = Arc::new(AtomicBool::new(false));
    let id = inner_done.clone();
    let joining = Arc::new(ivy::sync::Event::new());
    let j = joining.clone();
    let outer = rt.spawn(move || {
        let inner = ivy::spawn(move || {
            ivy::sleep(Duration::from_millis(50));
            id.store(true, Ordering::SeqCst);
        });
        j.set();
        inner.join().unwrap();
        f.store(true, Ordering::SeqCst);
    });
    // Cancel once the inner task exists (a handshake, not a 10 ms guess).
    joining.wait();
    outer.cancel();
    assert!(outer.join().unwrap_err().is_cancelled());
    assert!(!finished.load(Ordering::SeqCst));
    let t0 = Instant::now();
    while !inner_done.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(inner_done.load(Ordering::SeqCst));
}

#[test]
fn shutdown_cancels_and_joins_leftover_tasks() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let result = ivy::run(move || {
        for i in 0..500 {
            // Moved into the closure: dropped whether the task ran or was
            // cancelled before it started.
            let g = CountDrop(d.clone());
            ivy::spawn(move || {
                let _g = g;
                if i % 2 == 0 {
                    ivy::sleep(Duration::from_secs(3600));
                } else {
                    loop {
                        ivy::yield_now();
                    }
                }
            });
        }
        ivy::yield_now();
        "main done"
    });
    assert_eq!(result, "main done");
    // Every leftover task ran its destructors before run() returned.
    assert_eq!(dropped.load(Ordering::SeqCst), 500);
}

#[test]
fn handle_live_tasks_counts_to_zero_after_shutdown_work() {
    let rt = rt(2);
    let h = rt.handle();
    let hs: Vec<_> = (0..100)
        .map(|_| h.spawn(|| ivy::sleep(Duration::from_millis(2))))
        .collect();
    assert!(h.live_tasks() <= 100);
    for j in hs {
        j.join().unwrap();
    }
    assert_eq!(h.live_tasks(), 0);
}

#[test]
fn plain_threads_spawn_and_join() {
    let rt = rt(2);
    let handle = rt.handle();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..100u64)
                    .map(|i| {
                        handle.spawn(move || {
                            ivy::yield_now();
                            t * 1000 + i
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let expected: u64 = (0..8u64)
        .map(|t| (0..100u64).map(|i| t * 1000 + i).sum::<u64>())
        .sum();
    assert_eq!(total, expected);
}

#[test]
fn park_and_unpark_between_a_thread_and_a_task() {
    let rt = rt(2);
    for _ in 0..200 {
        let flag = Arc::new(AtomicBool::new(false));
        let slot: Arc<Mutex<Option<ivy::park::Unparker>>> = Arc::new(Mutex::new(None));
        let (f, s) = (flag.clone(), slot.clone());
        let h = rt.spawn(move || {
            *s.lock().unwrap() = Some(ivy::park::current_unparker());
            while !f.load(Ordering::SeqCst) {
                ivy::park::park();
            }
            7
        });
        let unparker = loop {
            if let Some(u) = slot.lock().unwrap().clone() {
                break u;
            }
            std::thread::yield_now();
        };
        flag.store(true, Ordering::SeqCst);
        unparker.unpark();
        assert_eq!(h.join().unwrap(), 7);
    }
}

#[test]
fn ivy_functions_work_on_plain_threads() {
    let start = Instant::now();
    ivy::sleep(Duration::from_millis(3));
    assert!(start.elapsed() >= Duration::from_millis(3));
    ivy::yield_now();
    assert!(ivy::current().is_none());
    assert!(ivy::Handle::try_current().is_none());
}

#[test]
fn spawn_outside_a_runtime_is_a_clear_error() {
    let err = ivy::task::Builder::new().spawn(|| 1).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let p = std::panic::catch_unwind(|| ivy::spawn(|| 1)).unwrap_err();
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(msg.contains("outside an ivy runtime"), "{msg}");
}

#[test]
fn bad_configuration_is_an_error() {
    assert_eq!(
        Builder::new().workers(0).build().unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    assert_eq!(
        Builder::new().stack_size(0).build().unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    let rt = rt(1);
    let e = ivy::task::Builder::new()
        .stack_size(usize::MAX)
        .spawn_on(&rt.handle(), || ())
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn current_task_has_id_and_name() {
    let rt = rt(2);
    let (id, name, hid) = rt.block_on(|| {
        let h = ivy::task::Builder::new()
            .name("worker-7")
            .spawn(|| {
                let c = ivy::current().unwrap();
                (c.id(), c.name().map(String::from))
            })
            .unwrap();
        let hid = h.id();
        assert_eq!(h.name(), Some("worker-7"));
        let (id, name) = h.join().unwrap();
        (id, name, hid)
    });
    assert_eq!(id, hid);
    assert_eq!(name.as_deref(), Some("worker-7"));
    let main_name = rt.block_on(|| ivy::current().unwrap().name().map(String::from));
    assert_eq!(main_name.as_deref(), Some("main"));
}

#[test]
fn custom_stack_sizes_run_deep_recursion() {
    fn depth(n: u64) -> u64 {
        let buf = [n as u8; 512];
        if n == 0 {
            return buf[0] as u64;
        }
        std::hint::black_box(&buf);
        depth(n - 1) + 1
    }
    let rt = rt(1);
    let h = ivy::task::Builder::new()
        .stack_size(8 << 20)
        .spawn_on(&rt.handle(), || depth(5000))
        .unwrap();
    assert_eq!(h.join().unwrap(), 5000);
}

ivy::task_local! {
    static COUNTER: std::cell::Cell<u64> = std::cell::Cell::new(0);
    static LABEL: std::cell::RefCell<String> = std::cell::RefCell::new(String::from("unset"));
}

#[test]
fn task_locals_are_per_task_across_blocking_calls() {
    let rt = rt(1); // one worker: every task shares one OS thread
    let results = rt.block_on(|| {
        let hs: Vec<_> = (0..50u64)
            .map(|i| {
                ivy::spawn(move || {
                    COUNTER.with(|c| c.set(i));
                    LABEL.with(|l| *l.borrow_mut() = format!("task-{i}"));
                    for _ in 0..10 {
                        ivy::yield_now();
                        ivy::sleep(Duration::from_micros(100));
                        COUNTER.with(|c| c.set(c.get() + 1000));
                    }
                    (
                        COUNTER.with(|c| c.get()),
                        LABEL.with(|l| l.borrow().clone()),
                    )
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (i, (c, l)) in results.into_iter().enumerate() {
        assert_eq!(c, i as u64 + 10_000);
        assert_eq!(l, format!("task-{i}"));
    }
    // A fresh task starts from the initial value.
    assert_eq!(rt.block_on(|| COUNTER.with(|c| c.get())), 0);
    // Plain threads get their own storage.
    COUNTER.with(|c| c.set(3));
    assert_eq!(COUNTER.with(|c| c.get()), 3);
}

#[test]
fn task_locals_are_dropped_when_the_task_ends() {
    ivy::task_local! {
        static GUARD: std::cell::RefCell<Option<CountDrop>> = std::cell::RefCell::new(None);
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let rt = rt(1);
    rt.spawn(move || GUARD.with(|g| *g.borrow_mut() = Some(CountDrop(d))))
        .join()
        .unwrap();
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn a_started_task_never_changes_thread() {
    let rt = rt(4);
    let moved = rt.block_on(|| {
        let hs: Vec<_> = (0..400u64)
            .map(|i| {
                ivy::spawn(move || {
                    let me = std::thread::current().id();
                    let mut moved = 0;
                    for j in 0..20 {
                        if (i + j) % 3 == 0 {
                            ivy::sleep(Duration::from_micros(50));
                        } else {
                            ivy::yield_now();
                        }
                        if std::thread::current().id() != me {
                            moved += 1;
                        }
                    }
                    moved
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
    });
    assert_eq!(moved, 0);
}

#[test]
fn work_is_spread_over_workers() {
    let rt = rt(2);
    let threads = rt.block_on(|| {
        let hs: Vec<_> = (0..200)
            .map(|_| {
                ivy::spawn(|| {
                    // Busy a little without yielding so a peer must steal.
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(200) {}
                    std::thread::current().id()
                })
            })
            .collect();
        let mut ids: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        ids.len()
    });
    assert_eq!(threads, 2);
}

#[test]
fn a_long_computation_does_not_strand_queued_tasks() {
    let rt = rt(2);
    let ok = rt.block_on(|| {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        ivy::spawn(move || {
            // Spawn 10 tasks onto this worker, then compute without yielding
            // until they have all run: only stealing by the peer can run them.
            for _ in 0..10 {
                let d = d.clone();
                ivy::spawn(move || {
                    d.fetch_add(1, Ordering::SeqCst);
                });
            }
            let t = Instant::now();
            while d.load(Ordering::SeqCst) < 10 && t.elapsed() < Duration::from_secs(20) {
                std::hint::spin_loop();
            }
            d.load(Ordering::SeqCst) == 10
        })
        .join()
        .unwrap()
    });
    assert!(ok);
}

#[test]
fn a_yielding_task_does_not_starve_others() {
    let rt = rt(1);
    let count = rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let spinner = ivy::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                ivy::yield_now();
                n += 1;
            }
            n
        });
        let hs: Vec<_> = (0..100).map(|i| ivy::spawn(move || i)).collect();
        let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        ivy::sleep(Duration::from_millis(5));
        stop.store(true, Ordering::SeqCst);
        assert!(spinner.join().unwrap() > 0);
        sum
    });
    assert_eq!(count, 4950);
}

#[test]
fn many_runtimes_start_and_stop() {
    for i in 0..20 {
        let rt = rt(1 + i % 3);
        assert_eq!(rt.block_on(move || i * 2), i * 2);
    }
}

#[test]
fn join_from_a_plain_thread_while_task_sleeps() {
    let rt = rt(2);
    let gate = Arc::new(ivy::sync::Event::new());
    let g = gate.clone();
    let h = rt.spawn(move || {
        g.wait();
        ivy::sleep(Duration::from_millis(20));
        "late"
    });
    // Gated, so it cannot have finished (however long this thread stalls).
    assert!(!h.is_finished());
    gate.set();
    assert_eq!(h.join().unwrap(), "late");
}

/// Regression: while one task was parked inside a destructor during its unwind,
/// `thread::panicking()` read true for every task on the worker, so a second
/// cancelled task did not see its cancellation and slept on (10 s here).
#[test]
fn cancellation_reaches_a_task_while_another_unwinds_on_the_same_worker() {
    for _ in 0..10 {
        let took = rt(1).block_on(|| {
            struct SlowCleanup;
            impl Drop for SlowCleanup {
                fn drop(&mut self) {
                    ivy::sleep(Duration::from_millis(30));
                }
            }
            let a = ivy::spawn(|| {
                let _c = SlowCleanup;
                ivy::sleep(Duration::from_secs(10));
            });
            let b = ivy::spawn(|| ivy::sleep(Duration::from_secs(10)));
            ivy::sleep(Duration::from_millis(5));
            let start = std::time::Instant::now();
            a.cancel();
            ivy::sleep(Duration::from_millis(5)); // a is now parked in its destructor
            b.cancel();
            assert!(b.join().unwrap_err().is_cancelled());
            assert!(a.join().unwrap_err().is_cancelled());
            start.elapsed()
        });
        assert!(
            took < Duration::from_secs(5),
            "cancellation was lost: {took:?}"
        );
    }
}

/// Regression: a cancelled task that panics on its own (its cancellation held
/// off by a shield) while another task is parked mid-unwind on the same
/// worker. std's per-thread panic count cannot tell that this task unwinds, so
/// its blocking destructor was interrupted by the cancellation again: an
/// unwind out of a destructor during an unwind, and the whole process aborted.
/// ivy's panic hook now marks the panicking task (task/panic_hook.rs): the
/// destructor runs to completion and the join reports the panic.
#[test]
fn a_panic_in_a_cancelled_task_while_another_unwinds_does_not_abort() {
    use std::sync::atomic::AtomicUsize;
    struct BlockingDrop(u64, Arc<AtomicUsize>);
    impl Drop for BlockingDrop {
        fn drop(&mut self) {
            ivy::sleep(Duration::from_millis(self.0));
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    for round in 0..10u64 {
        let done = Arc::new(AtomicUsize::new(0));
        let (dx, dy) = (done.clone(), done.clone());
        let (x, y) = rt(1).block_on(move || {
            // Both must be running when cancelled (an unstarted task never runs).
            let started = Arc::new(AtomicUsize::new(0));
            let (sx, sy) = (started.clone(), started.clone());
            // x: cancelled, parks 40 ms in its destructor while it unwinds.
            let x = ivy::spawn(move || {
                sx.fetch_add(1, Ordering::SeqCst);
                let _d = BlockingDrop(40, dx);
                ivy::sleep(Duration::from_secs(10));
            });
            // y: cancelled while shielded, then panics, and its destructor blocks
            // while x is still parked mid-unwind.
            let y = ivy::spawn(move || {
                sy.fetch_add(1, Ordering::SeqCst);
                let _d = BlockingDrop(2, dy);
                ivy::shield(|| ivy::sleep(Duration::from_millis(10 + round % 3)));
                panic!("y's own panic");
            });
            while started.load(Ordering::SeqCst) < 2 {
                ivy::sleep(Duration::from_millis(1));
            }
            x.cancel();
            y.cancel();
            (x.join(), y.join())
        });
        assert!(x.unwrap_err().is_cancelled(), "round {round}");
        let e = y.unwrap_err();
        assert!(e.is_panic(), "round {round}: {e}");
        assert_eq!(
            done.load(Ordering::SeqCst),
            2,
            "round {round}: both destructors ran"
        );
    }
}
