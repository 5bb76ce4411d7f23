//! join_all / join_all_settled / wait_any / as_completed, structured scopes and
//! generators, through the public API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{ms, rt, CountDrop, CountDropRef};

#[test]
fn join_all_returns_values_in_order() {
    for workers in [1, 2, 4] {
        let v = rt(workers).block_on(|| {
            let hs: Vec<_> = (0..200u64)
                .map(|i| {
                    ivy::spawn(move || {
                        ivy::sleep(Duration::from_micros((200 - i) * 50));
                        i * 2
                    })
                })
                .collect();
            ivy::join_all(hs).unwrap()
        });
        assert_eq!(v, (0..200u64).map(|i| i * 2).collect::<Vec<_>>());
    }
}

#[test]
fn join_all_fails_fast_and_cancels_the_rest() {
    for _ in 0..20 {
        let finished = Arc::new(AtomicUsize::new(0));
        let cleaned = Arc::new(AtomicUsize::new(0));
        let (f2, c2) = (finished.clone(), cleaned.clone());
        let (err, took) = rt(2).block_on(move || {
            let mut hs: Vec<ivy::JoinHandle<u32>> = (0..10)
                .map(|_| {
                    let (f, c) = (f2.clone(), c2.clone());
                    ivy::spawn(move || {
                        let _c = CountDrop(c);
                        ivy::sleep(Duration::from_secs(10));
                        f.fetch_add(1, Ordering::SeqCst);
                        0
                    })
                })
                .collect();
            hs.insert(
                3,
                ivy::spawn(|| {
                    ivy::sleep(ms(5));
                    panic!("task 3 failed")
                }),
            );
            let start = Instant::now();
            let err = ivy::join_all(hs).unwrap_err();
            (err, start.elapsed())
        });
        assert!(err.is_panic());
        assert_eq!(err.panic_message(), Some("task 3 failed"));
        assert!(
            took < Duration::from_secs(5),
            "waited for the sleepers: {took:?}"
        );
        assert_eq!(finished.load(Ordering::SeqCst), 0);
        // Every sibling was cancelled *and joined* before join_all returned.
        assert_eq!(cleaned.load(Ordering::SeqCst), 10);
    }
}

#[test]
fn join_all_settled_collects_every_outcome() {
    let out = ivy::run(|| {
        let hs: Vec<ivy::JoinHandle<u32>> = (0..6u32)
            .map(|i| {
                ivy::spawn(move || {
                    if i == 5 {
                        // Cancelled below: it must still be running then, however
                        // long the canceller stalls (a 1 ms sleep could be over).
                        ivy::sleep(Duration::from_secs(3600));
                    }
                    ivy::sleep(ms(u64::from(6 - i)));
                    if i % 3 == 1 {
                        panic!("bad {i}");
                    }
                    i
                })
            })
            .collect();
        hs[5].cancel();
        ivy::join_all_settled(hs)
    });
    assert_eq!(out.len(), 6);
    assert_eq!(*out[0].as_ref().unwrap(), 0);
    assert_eq!(out[1].as_ref().unwrap_err().panic_message(), Some("bad 1"));
    assert_eq!(*out[2].as_ref().unwrap(), 2);
    assert_eq!(*out[3].as_ref().unwrap(), 3);
    assert_eq!(out[4].as_ref().unwrap_err().panic_message(), Some("bad 4"));
    assert!(out[5].as_ref().unwrap_err().is_cancelled());
}

#[test]
fn cancelling_the_gatherer_cancels_its_children() {
    for _ in 0..10 {
        let cleaned = Arc::new(AtomicUsize::new(0));
        let c2 = cleaned.clone();
        let c3 = cleaned.clone();
        let armed = Arc::new(AtomicUsize::new(0));
        let a2 = armed.clone();
        let err = ivy::run(move || {
            let gatherer = ivy::spawn(move || {
                let hs: Vec<_> = (0..5)
                    .map(|_| {
                        let c = c2.clone();
                        let a = a2.clone();
                        ivy::spawn(move || {
                            let _c = CountDrop(c);
                            a.fetch_add(1, Ordering::SeqCst);
                            ivy::sleep(Duration::from_secs(10))
                        })
                    })
                    .collect();
                ivy::join_all(hs)
            });
            // Cancel once every child holds its guard (a handshake: a child
            // cancelled before it starts never creates one).
            let bound = Instant::now() + Duration::from_secs(30);
            while armed.load(Ordering::SeqCst) < 5 {
                assert!(Instant::now() < bound, "the children never started");
                ivy::sleep(ms(1));
            }
            gatherer.cancel();
            let err = gatherer.join().unwrap_err();
            // The children were cancelled, not left sleeping: give them a moment.
            let deadline = Instant::now() + Duration::from_secs(5);
            while c3.load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
                ivy::sleep(ms(1));
            }
            err
        });
        assert!(err.is_cancelled());
        assert_eq!(cleaned.load(Ordering::SeqCst), 5);
    }
}

#[test]
fn as_completed_yields_in_completion_order() {
    for _ in 0..5 {
        // Deadlines from one common start, 40 ms apart: the order must not
        // depend on when each task started (regression: relative sleeps 10 ms
        // apart), and on two workers a stall of one worker shorter than the
        // spacing cannot reorder two wake-ups.
        let order = rt(2).block_on(|| {
            let start = Instant::now();
            let hs: Vec<_> = [50u64, 10, 40, 20, 30]
                .into_iter()
                .map(|d| {
                    ivy::spawn(move || {
                        ivy::sleep_until(start + ms(d * 4));
                        d
                    })
                })
                .collect();
            ivy::as_completed(hs)
                .map(|h| {
                    assert!(h.is_finished());
                    h.join().unwrap()
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(order, [10, 20, 30, 40, 50]);
    }
}

#[test]
fn as_completed_reports_indices_and_many_tasks() {
    let (seen, n) = rt(4).block_on(|| {
        let hs: Vec<_> = (0..10_000u64)
            .map(|i| {
                ivy::spawn(move || {
                    if i % 7 == 0 {
                        ivy::yield_now();
                    }
                    i
                })
            })
            .collect();
        let mut it = ivy::as_completed(hs);
        let mut seen = vec![false; 10_000];
        let mut n = 0;
        while let Some((i, h)) = it.next_indexed() {
            assert_eq!(h.join().unwrap(), i as u64);
            assert!(!seen[i]);
            seen[i] = true;
            n += 1;
        }
        (seen, n)
    });
    assert_eq!(n, 10_000);
    assert!(seen.into_iter().all(|s| s));
}

#[test]
fn wait_any_returns_the_first_finished() {
    let r = ivy::run(|| {
        // From one common start, the first one 150 ms ahead of the others.
        let start = Instant::now();
        let hs: Vec<_> = [160u64, 5, 200]
            .into_iter()
            .map(|d| {
                ivy::spawn(move || {
                    ivy::sleep_until(start + ms(d));
                    d
                })
            })
            .collect();
        let first = ivy::wait_any(&hs).unwrap();
        assert!(hs[first].is_finished());
        let empty: Vec<ivy::JoinHandle<u64>> = Vec::new();
        assert_eq!(ivy::wait_any(&empty), None);
        // The handles are still usable; the rest can be joined normally.
        let rest: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        (first, rest)
    });
    assert_eq!(r, (1, vec![160, 5, 200]));
}

#[test]
fn wait_any_under_a_timeout_scope() {
    let r = ivy::run(|| {
        let hs = vec![ivy::spawn(|| ivy::sleep(Duration::from_secs(10)))];
        let r = ivy::timeout(ms(10), || ivy::wait_any(&hs));
        for h in &hs {
            h.cancel();
        }
        r.is_err()
    });
    assert!(r);
}

#[test]
fn join_handle_wait_timeout() {
    ivy::run(|| {
        // Gated, so the first wait cannot see it finished however long this
        // task stalls.
        let gate = Arc::new(ivy::sync::Event::new());
        let g = gate.clone();
        let h = ivy::spawn(move || {
            g.wait();
            ivy::sleep(ms(30));
            5
        });
        assert!(!h.wait_timeout(ms(1)));
        gate.set();
        assert!(h.wait_timeout(Duration::from_secs(5)));
        assert_eq!(h.join().unwrap(), 5);
    });
}

// ---- structured scopes -------------------------------------------------------

#[test]
fn scope_children_borrow_and_all_finish() {
    for workers in [1, 2, 4] {
        let (total, log) = rt(workers).block_on(|| {
            let data: Vec<u64> = (1..=100).collect();
            let total = AtomicUsize::new(0);
            let log = Mutex::new(Vec::new());
            let r = ivy::scope(|s| {
                for chunk in data.chunks(10) {
                    s.spawn(|| {
                        ivy::sleep(ms(1));
                        let sum: u64 = chunk.iter().sum();
                        total.fetch_add(sum as usize, Ordering::SeqCst);
                        log.lock().unwrap().push(sum);
                    });
                }
                "body"
            });
            assert_eq!(r.unwrap(), "body");
            (total, log)
        });
        assert_eq!(total.load(Ordering::SeqCst), 5050);
        assert_eq!(log.lock().unwrap().len(), 10);
    }
}

#[test]
fn scope_join_handles_return_values() {
    let v = ivy::run(|| {
        let x = 21;
        ivy::scope(|s| {
            let h = s.spawn(|| x * 2);
            h.join().unwrap()
        })
        .unwrap()
    });
    assert_eq!(v, 42);
}

#[test]
fn scope_first_failure_cancels_siblings() {
    for _ in 0..10 {
        let (r, cancelled) = rt(2).block_on(|| {
            let cancelled = AtomicUsize::new(0);
            let armed = AtomicUsize::new(0);
            let r = ivy::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        let _d = CountDropRef(&cancelled);
                        armed.fetch_add(1, Ordering::SeqCst);
                        ivy::sleep(Duration::from_secs(10));
                    });
                }
                s.spawn(|| {
                    // Fail once every sibling holds its guard (a handshake: a
                    // sibling cancelled before it starts never creates one).
                    while armed.load(Ordering::SeqCst) < 8 {
                        ivy::sleep(ms(1));
                    }
                    panic!("child failed");
                });
            });
            (r, cancelled)
        });
        let err = r.unwrap_err();
        assert_eq!(err.panic_message(), Some("child failed"));
        assert_eq!(cancelled.load(Ordering::SeqCst), 8);
    }
}

#[test]
fn scope_waits_for_children_when_the_caller_times_out() {
    let (r, finished_cleanup) = ivy::run(|| {
        let finished_cleanup = AtomicUsize::new(0);
        let armed = AtomicUsize::new(0);
        let r = ivy::timeout(ms(10), || {
            ivy::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        struct OnDrop<'a>(&'a AtomicUsize);
                        impl Drop for OnDrop<'_> {
                            fn drop(&mut self) {
                                // Blocking in cleanup still works (shielded by unwinding).
                                ivy::sleep(Duration::from_millis(2));
                                self.0.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        let _d = OnDrop(&finished_cleanup);
                        armed.fetch_add(1, Ordering::SeqCst);
                        ivy::sleep(Duration::from_secs(10));
                    });
                }
                // Let the deadline hit once every child holds its guard (a
                // handshake: a child cancelled before it starts never creates
                // one); the shield keeps the deadline off this wait.
                ivy::shield(|| {
                    while armed.load(Ordering::SeqCst) < 4 {
                        ivy::sleep(ms(1));
                    }
                });
            })
        });
        (r, finished_cleanup)
    });
    assert!(r.is_err(), "the deadline elapsed");
    // Borrowed data was used by every child's cleanup before the scope returned.
    assert_eq!(finished_cleanup.load(Ordering::SeqCst), 4);
}

#[test]
fn scope_body_panic_cancels_children_then_propagates() {
    let cancelled = Arc::new(AtomicUsize::new(0));
    let c2 = cancelled.clone();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ivy::run(move || {
            let cancelled = &*c2;
            let armed = AtomicUsize::new(0);
            let _ = ivy::scope(|s| {
                for _ in 0..3 {
                    s.spawn(|| {
                        let _d = CountDropRef(cancelled);
                        armed.fetch_add(1, Ordering::SeqCst);
                        ivy::sleep(Duration::from_secs(10));
                    });
                }
                // Fail once every child holds its guard (a handshake).
                while armed.load(Ordering::SeqCst) < 3 {
                    ivy::sleep(ms(1));
                }
                panic!("body failed");
            });
        })
    }));
    assert!(r.is_err());
    assert_eq!(cancelled.load(Ordering::SeqCst), 3);
}

// ---- generators ----------------------------------------------------------------

#[test]
fn generator_yields_lazily() {
    let produced = AtomicUsize::new(0);
    let first: Vec<u32> = ivy::Generator::scoped(
        |y| {
            for i in 0.. {
                produced.fetch_add(1, Ordering::SeqCst);
                y.yield_(i);
            }
        },
        |g| g.take(5).collect(),
    )
    .unwrap();
    assert_eq!(first, [0, 1, 2, 3, 4]);
    assert_eq!(produced.load(Ordering::SeqCst), 5);
}

#[test]
fn generator_body_may_block_and_other_tasks_run_meanwhile() {
    for workers in [1, 2] {
        let (items, ticks) = rt(workers).block_on(|| {
            let ticks = Arc::new(AtomicUsize::new(0));
            let t2 = ticks.clone();
            let ticker = ivy::spawn(move || {
                for _ in 0..20 {
                    ivy::sleep(ms(1));
                    t2.fetch_add(1, Ordering::SeqCst);
                }
            });
            let lock = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let lock2 = lock.clone();
            let items: Vec<u64> = ivy::Generator::new(move |y| {
                for i in 0..10 {
                    ivy::sleep(ms(3));
                    ivy::yield_now();
                    y.yield_(i);
                }
                lock2.store(true, Ordering::SeqCst);
            })
            .unwrap()
            .collect();
            assert!(lock.load(Ordering::SeqCst));
            let during = ticks.load(Ordering::SeqCst);
            ticker.join().unwrap();
            (items, during)
        });
        assert_eq!(items, (0..10).collect::<Vec<_>>());
        assert!(ticks > 0, "the ticker ran while the generator slept");
    }
}

#[test]
fn generator_dropped_midway_runs_destructors() {
    let dropped = AtomicUsize::new(0);
    ivy::Generator::scoped(
        |y| {
            let _d = CountDropRef(&dropped);
            loop {
                y.yield_(1);
            }
        },
        |mut g| {
            assert_eq!(g.next(), Some(1));
            assert_eq!(g.next(), Some(1));
        },
    )
    .unwrap();
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn generator_panic_propagates_to_the_caller() {
    let r = std::panic::catch_unwind(|| {
        let g = ivy::Generator::new(|y: &ivy::Yielder<u32>| {
            y.yield_(1);
            panic!("generator broke");
        })
        .unwrap();
        g.collect::<Vec<_>>()
    });
    let p = r.unwrap_err();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"generator broke"));
}

#[test]
fn cancelling_a_task_parked_inside_its_generator() {
    for _ in 0..10 {
        let dropped = Arc::new(AtomicUsize::new(0));
        let d2 = dropped.clone();
        let err = rt(2).block_on(move || {
            let h = ivy::spawn(move || {
                let g = ivy::Generator::new(move |y| {
                    let _d = CountDrop(d2.clone());
                    y.yield_(1u32);
                    ivy::sleep(Duration::from_secs(10));
                    y.yield_(2);
                })
                .unwrap();
                g.sum::<u32>()
            });
            ivy::sleep(ms(5));
            h.cancel();
            h.join().unwrap_err()
        });
        assert!(err.is_cancelled());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn timeout_inside_a_generator_body() {
    let v = ivy::run(|| {
        ivy::Generator::new(|y| {
            let r = ivy::timeout(ms(5), || ivy::sleep(Duration::from_secs(10)));
            y.yield_(r.is_err());
            let outer_ok = true;
            y.yield_(outer_ok);
        })
        .unwrap()
        .collect::<Vec<_>>()
    });
    assert_eq!(v, [true, true]);
}

#[test]
fn nested_generators_and_many_in_one_task() {
    let total = ivy::run(|| {
        let mut total = 0u64;
        for round in 0..200u64 {
            let outer = ivy::Generator::new(move |y| {
                let inner = ivy::Generator::new(move |z| {
                    for i in 0..5 {
                        if i % 2 == 0 {
                            ivy::yield_now();
                        }
                        z.yield_(i + round);
                    }
                })
                .unwrap();
                for v in inner {
                    y.yield_(v * 2);
                }
            })
            .unwrap();
            total += outer.sum::<u64>();
        }
        total
    });
    let expect: u64 = (0..200u64)
        .map(|r| (0..5).map(|i| (i + r) * 2).sum::<u64>())
        .sum();
    assert_eq!(total, expect);
}
