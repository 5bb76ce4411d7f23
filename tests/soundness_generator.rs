//! Generators (issue 10, items 1 and 7): a body that borrows can never be leaked
//! while suspended (`Generator::scoped`; `Generator::new` takes a `'static` body),
//! and a body's own deadline scopes and shields never leak into its caller, while
//! the caller's deadline and cancellation still reach a body that blocks.
//!
//! Under `tests/valgrind.sh` these run whole under memcheck: the borrowing
//! bodies below must never read freed memory.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{ms, rt, CountDrop};

// ---- item 1: a suspended body that borrows cannot be leaked --------------------

/// The program, in its sound form: the body borrows `data` and lends it
/// to a scoped thread across a `yield_`; the closure of `scoped` returns with the
/// body suspended (and tries `mem::forget` on what it holds). The body must be
/// unwound -- the thread joined -- before `scoped` returns and `data` is freed.
#[test]
fn scoped_generator_with_a_scoped_thread_is_unwound_before_scope_returns() {
    for _ in 0..20 {
        let data = vec![7u64; 64];
        let joined = AtomicUsize::new(0);
        let r = ivy::Generator::scoped(
            |y| {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        std::thread::sleep(ms(2));
                        let sum: u64 = data.iter().sum();
                        joined.fetch_add(sum as usize, Ordering::SeqCst);
                    });
                    y.yield_(1u32);
                    y.yield_(2);
                });
            },
            |mut g| {
                let first = g.next();
                #[allow(clippy::forget_non_drop)] // the point: only a reference is forgotten
                std::mem::forget(g); // forgets the reference only
                first
            },
        )
        .unwrap();
        assert_eq!(r, Some(1));
        // The scoped thread was joined by the body's unwind, inside `scoped`.
        assert_eq!(joined.load(Ordering::SeqCst), 7 * 64);
        drop(data);
    }
}

/// The same with `ivy::scope` in the body, inside an ivy task: children that
/// borrow the caller's data are finished (the scope's unwind cancels and joins
/// them) before `scoped` returns; their destructors still read the data.
#[test]
fn scoped_generator_with_an_ivy_scope_is_unwound_before_scope_returns() {
    for workers in [1, 2] {
        let total = rt(workers).block_on(|| {
            let mut total = 0;
            for round in 0..20usize {
                let data = vec![round; 32];
                let finished = AtomicUsize::new(0);
                struct Done<'a>(&'a [usize], &'a AtomicUsize);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        self.1.fetch_add(self.0.len(), Ordering::SeqCst);
                    }
                }
                let started = ivy::sync::Barrier::new(5);
                let first = ivy::Generator::scoped(
                    |y| {
                        let _ = ivy::scope(|s| {
                            for _ in 0..4 {
                                s.spawn(|| {
                                    let _done = Done(&data, &finished);
                                    started.wait();
                                    ivy::sleep(Duration::from_secs(10));
                                });
                            }
                            started.wait(); // all four run, parked in their sleep
                            y.yield_(round);
                            y.yield_(round + 1);
                        });
                    },
                    |mut g| g.next(),
                )
                .unwrap();
                assert_eq!(first, Some(round));
                assert_eq!(finished.load(Ordering::SeqCst), 4 * 32);
                drop(data);
                total += 1;
            }
            total
        });
        assert_eq!(total, 20);
    }
}

/// A borrowing body that blocks (sleeps, takes an ivy lock) inside a task,
/// iterated to its end, yielding borrowed values.
#[test]
fn scoped_generator_body_blocks_and_yields_borrows() {
    for workers in [1, 2] {
        let out = rt(workers).block_on(|| {
            let words = String::from("alpha beta gamma delta");
            let lock = ivy::sync::Mutex::new(0u32);
            let ticker = ivy::spawn(|| {
                for _ in 0..5 {
                    ivy::sleep(ms(1));
                }
            });
            let got: Vec<&str> = ivy::Generator::scoped(
                |y| {
                    for w in words.split(' ') {
                        ivy::sleep(ms(2));
                        *lock.lock() += 1;
                        y.yield_(w);
                    }
                },
                |g| g.collect(),
            )
            .unwrap();
            ticker.join().unwrap();
            let n = *lock.lock();
            (got.join(","), n)
        });
        assert_eq!(out, ("alpha,beta,gamma,delta".to_string(), 4));
    }
}

/// Early exit from the closure with the body suspended: the body's destructors
/// run before `scoped` returns, and may block (they run as body code, in the
/// task).
#[test]
fn scoped_generator_early_exit_runs_body_destructors_first() {
    struct Flush<'a>(&'a AtomicUsize);
    impl Drop for Flush<'_> {
        fn drop(&mut self) {
            ivy::sleep(ms(1)); // a destructor that blocks
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    for workers in [1, 2] {
        let ok = rt(workers).block_on(|| {
            let flushed = AtomicUsize::new(0);
            let got = ivy::Generator::scoped(
                |y| {
                    let _f = Flush(&flushed);
                    for i in 0.. {
                        y.yield_(i);
                    }
                },
                |g| g.take(3).sum::<u32>(),
            )
            .unwrap();
            got == 3 && flushed.load(Ordering::SeqCst) == 1
        });
        assert!(ok);
    }
}

/// A panic in the closure unwinds the suspended body (its destructors run)
/// before the panic leaves `scoped`.
#[test]
fn scoped_generator_unwinds_the_body_when_the_closure_panics() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ivy::Generator::scoped(
            |y| {
                let _d = CountDrop(dropped.clone());
                y.yield_(1u32);
                y.yield_(2);
            },
            |mut g| {
                assert_eq!(g.next(), Some(1));
                assert_eq!(dropped.load(Ordering::SeqCst), 0);
                panic!("closure failed");
            },
        )
    }));
    let p = r.unwrap_err();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"closure failed"));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

/// A destructor in the body that panics when the body ends: the panic comes
/// out of `next` and then out of `scoped` as an ordinary panic, the body's other
/// destructors ran, and the caller's scope state is intact afterwards (a later
/// timeout works). (A destructor that panics while the body is being *unwound*
/// aborts the process, as any panic during an unwind does in Rust.)
#[test]
fn scoped_generator_body_destructor_panics_at_the_end() {
    struct Boom;
    impl Drop for Boom {
        fn drop(&mut self) {
            panic!("boom in the body's destructor");
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let r = ivy::run({
        let dropped = dropped.clone();
        move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ivy::Generator::scoped(
                    |y| {
                        let _d = CountDrop(dropped.clone());
                        let _b = Boom;
                        ivy::shield(|| y.yield_(1u32));
                    },
                    |g| g.count(),
                )
            }));
            let p = r.unwrap_err();
            let msg = p.downcast_ref::<&str>().copied();
            (
                msg,
                ivy::timeout(ms(10), || ivy::sleep(Duration::from_secs(5))),
            )
        }
    });
    assert_eq!(r.0, Some("boom in the body's destructor"));
    assert!(r.1.is_err(), "the caller's timeout still works");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

/// A body that catches the unwind `scoped` sends it and yields again is unwound
/// again from that yield: `scoped` still returns only after the body ended.
#[test]
fn scoped_generator_body_that_swallows_the_unwind_is_unwound_again() {
    let caught = AtomicUsize::new(0);
    let dropped = Arc::new(AtomicUsize::new(0));
    let first = ivy::Generator::scoped(
        |y| {
            let _d = CountDrop(dropped.clone());
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| y.yield_(1u32)));
            if r.is_err() {
                caught.fetch_add(1, Ordering::SeqCst);
            }
            y.yield_(2); // unwound again here
            caught.fetch_add(100, Ordering::SeqCst); // never reached
        },
        |mut g| g.next(),
    )
    .unwrap();
    assert_eq!(first, Some(1));
    assert_eq!(caught.load(Ordering::SeqCst), 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

/// A closure that never resumes the body: the body never runs, its captures
/// are dropped by `scoped`.
#[test]
fn scoped_generator_never_started_drops_its_captures() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = CountDrop(dropped.clone());
    let ran = AtomicBool::new(false);
    let n = ivy::Generator::scoped(
        |y: &ivy::Yielder<u32>| {
            let _d = &d;
            ran.store(true, Ordering::SeqCst);
            y.yield_(1);
        },
        |g| g.is_done(),
    )
    .unwrap();
    assert!(!n);
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(dropped.load(Ordering::SeqCst), 0, "only borrowed");
    drop(d);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

/// A scoped body that blocks while its task is cancelled: the cancellation
/// unwinds the body and then the closure; the body's destructors run once.
#[test]
fn scoped_generator_in_a_cancelled_task() {
    for _ in 0..5 {
        let dropped = Arc::new(AtomicUsize::new(0));
        let d2 = dropped.clone();
        let err = rt(2).block_on(move || {
            let started = Arc::new(ivy::sync::Event::new());
            let s2 = started.clone();
            let h = ivy::spawn(move || {
                let local = vec![1u32, 2, 3];
                ivy::Generator::scoped(
                    |y| {
                        let _d = CountDrop(d2);
                        for v in &local {
                            y.yield_(*v);
                        }
                        s2.set();
                        ivy::sleep(Duration::from_secs(10));
                    },
                    |g| g.sum::<u32>(),
                )
                .unwrap()
            });
            started.wait();
            h.cancel();
            h.join().unwrap_err()
        });
        assert!(err.is_cancelled());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}

/// `Generator::new` with a `'static` body may be leaked while suspended: what
/// the body owns (here, lent to a scoped thread) is leaked with it, never freed
/// under the thread. The thread's read is observed through a channel.
#[test]
fn forgotten_static_generator_keeps_what_its_body_owns() {
    let (tx, rx) = std::sync::mpsc::channel();
    #[allow(clippy::useless_vec)] // on the heap, so memcheck would see a use after free
    let data = vec![5u64; 16];
    let mut g = ivy::Generator::new(move |y| {
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(ms(5));
                tx.send(data.iter().sum::<u64>()).unwrap();
            });
            y.yield_(());
        })
    })
    .unwrap();
    assert_eq!(g.next(), Some(()));
    // Kept reachable (not `mem::forget`) so memcheck does not report the leak
    // as "definitely lost"; it is never dropped either way.
    static KEEP: AtomicUsize = AtomicUsize::new(0);
    KEEP.store(Box::into_raw(Box::new(g)) as usize, Ordering::SeqCst);
    assert_eq!(rx.recv().unwrap(), 80);
}

// ---- item 7: the body's scopes stay in the body ---------------------------------

/// A `timeout` opened in the body around a yield used to become the caller's
/// deadline after the yield: the caller's own `sleep` then failed with the
/// body's "elapsed" (an unwind no scope of the caller catches).
#[test]
fn timeout_in_body_around_a_yield_does_not_fire_in_the_caller() {
    for workers in [1, 2] {
        let out = rt(workers).block_on(|| {
            ivy::spawn(|| {
                let mut g = ivy::Generator::new(|y| {
                    let r = ivy::timeout(ms(10), || y.yield_(0u32));
                    // Nothing in the body blocked past its deadline: the scope is Ok.
                    y.yield_(u32::from(r.is_ok()));
                })
                .unwrap();
                assert_eq!(g.next(), Some(0));
                // The caller is outside any scope of its own: this sleep must
                // simply sleep, well past the body's deadline.
                ivy::sleep(ms(40));
                let later = g.next();
                (later, g.next(), g.is_done())
            })
            .join()
        });
        assert_eq!(out.unwrap(), (Some(1), None, true), "{workers} workers");
    }
}

/// The same from a plain thread (the thread's own scope state).
#[test]
fn timeout_in_body_around_a_yield_does_not_fire_on_a_plain_thread() {
    let mut g = ivy::Generator::new(|y| {
        let r = ivy::timeout(ms(10), || y.yield_(0u32));
        y.yield_(u32::from(r.is_ok()));
    })
    .unwrap();
    assert_eq!(g.next(), Some(0));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ivy::sleep(ms(40))));
    assert!(
        r.is_ok(),
        "the caller's sleep was interrupted by the body's deadline"
    );
    assert_eq!(g.next(), Some(1));
    assert_eq!(g.next(), None);
}

/// A `shield` opened in the body around a yield used to stay open in the caller
/// after the yield, hiding the caller's own deadline.
#[test]
fn shield_in_body_around_a_yield_does_not_disable_the_callers_timeout() {
    let r = ivy::run(|| {
        let mut g = ivy::Generator::new(|y| ivy::shield(|| y.yield_(1u32))).unwrap();
        let r = ivy::timeout(ms(20), || {
            assert_eq!(g.next(), Some(1));
            ivy::sleep(Duration::from_secs(3));
        });
        assert_eq!(g.next(), None);
        r
    });
    assert!(
        r.is_err(),
        "the caller's timeout must fire during its sleep"
    );
}

/// ... and hiding the caller's cancellation.
#[test]
fn shield_in_body_around_a_yield_does_not_hide_the_callers_cancellation() {
    for _ in 0..5 {
        let err = rt(2).block_on(|| {
            let started = Arc::new(ivy::sync::Event::new());
            let s2 = started.clone();
            let h = ivy::spawn(move || {
                let mut g = ivy::Generator::new(|y| ivy::shield(|| y.yield_(1u32))).unwrap();
                assert_eq!(g.next(), Some(1));
                s2.set();
                ivy::sleep(Duration::from_secs(3));
                g.count()
            });
            started.wait();
            h.cancel();
            h.join().unwrap_err()
        });
        assert!(err.is_cancelled());
    }
}

/// The body runs on behalf of its caller: the caller's deadline applies to the
/// body's blocking calls (the body unwinds, its destructors run, the caller's
/// scope reports `Elapsed`), and the body's own, later deadline does not catch it.
#[test]
fn callers_deadline_reaches_a_body_that_blocks() {
    for workers in [1, 2] {
        let dropped = Arc::new(AtomicUsize::new(0));
        let after_inner = Arc::new(AtomicBool::new(false));
        let (d2, a2) = (dropped.clone(), after_inner.clone());
        let (outer, next_after) = rt(workers).block_on(move || {
            let mut g = ivy::Generator::new(move |y| {
                let _d = CountDrop(d2);
                let inner = ivy::timeout(Duration::from_secs(5), || {
                    ivy::sleep(Duration::from_secs(10))
                });
                a2.store(true, Ordering::SeqCst);
                y.yield_(inner.is_ok());
            })
            .unwrap();
            let outer = ivy::timeout(ms(20), || g.next());
            // The body ended by unwinding: the generator is finished.
            (outer, (g.is_done(), g.next()))
        });
        assert!(
            outer.is_err(),
            "the caller's 20 ms deadline fires in the body"
        );
        assert_eq!(next_after, (true, None));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert!(
            !after_inner.load(Ordering::SeqCst),
            "the body's own scope caught the caller's deadline"
        );
    }
}

/// The body's own, earlier deadline is the body's: its scope catches it, and the
/// caller's scope (with a later deadline) is unaffected.
#[test]
fn bodys_own_deadline_is_caught_in_the_body() {
    let r = ivy::run(|| {
        let g = ivy::Generator::new(|y| {
            let inner = ivy::timeout(ms(10), || ivy::sleep(Duration::from_secs(10)));
            y.yield_(inner.is_err());
        })
        .unwrap();
        ivy::timeout(Duration::from_secs(5), || g.collect::<Vec<_>>())
    });
    assert_eq!(r, Ok(vec![true]));
}

/// A caller's shield reaches the body: a cancelled caller's body that blocks
/// inside the caller's shield is not interrupted; the cancellation lands at the
/// caller's first blocking call after the shield.
#[test]
fn callers_shield_reaches_a_body_that_blocks() {
    for _ in 0..5 {
        let (err, finished) = rt(2).block_on(|| {
            let started = Arc::new(ivy::sync::Event::new());
            let finished = Arc::new(AtomicBool::new(false));
            let (s2, f2) = (started.clone(), finished.clone());
            let h = ivy::spawn(move || {
                let g = ivy::Generator::new(move |y| {
                    s2.set();
                    ivy::sleep(ms(30));
                    y.yield_(1u32);
                })
                .unwrap();
                let v: Vec<u32> = ivy::shield(|| g.collect());
                f2.store(v == [1], Ordering::SeqCst);
                ivy::sleep(Duration::from_secs(3));
            });
            started.wait();
            h.cancel();
            (h.join().unwrap_err(), finished)
        });
        assert!(err.is_cancelled());
        assert!(
            finished.load(Ordering::SeqCst),
            "the shielded body was interrupted"
        );
    }
}

/// A `timeout` in the body whose blocking call reports the deadline as an I/O
/// error (no unwind) leaves an "elapsed" mark and a passed deadline while the body
/// yields inside the scope; neither may reach the caller's blocking calls.
#[test]
fn bodys_elapsed_mark_stays_in_the_body() {
    let r = ivy::run(|| {
        let mut g = ivy::Generator::new(|y| {
            let r = ivy::timeout(ms(10), || {
                let sock = ivy::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let e = sock.recv_from(&mut [0u8; 8]).unwrap_err();
                y.yield_(u32::from(e.kind() == std::io::ErrorKind::TimedOut));
            });
            y.yield_(u32::from(r.is_err()) + 10);
        })
        .unwrap();
        ivy::timeout(Duration::from_secs(5), || {
            let first = g.next();
            ivy::sleep(ms(5));
            let second = g.next();
            ivy::sleep(ms(5));
            (first, second, g.next())
        })
    });
    assert_eq!(r, Ok((Some(1), Some(11), None)));
}

/// Nested generators: the outermost caller's deadline reaches the innermost
/// body that blocks, and is reported by the caller's own scope (the "elapsed"
/// mark travels back through both bodies, whose own later scopes do not catch it).
#[test]
fn callers_deadline_reaches_a_nested_body() {
    let (r, after) = ivy::run(|| {
        let after = Arc::new(AtomicUsize::new(0));
        let a2 = after.clone();
        let outer = ivy::Generator::new(move |y| {
            let r = ivy::timeout(Duration::from_secs(5), || {
                let inner = ivy::Generator::new(|z| {
                    let r = ivy::timeout(Duration::from_secs(6), || {
                        ivy::sleep(Duration::from_secs(10));
                    });
                    z.yield_(r.is_ok());
                })
                .unwrap();
                inner.collect::<Vec<_>>()
            });
            a2.fetch_add(1, Ordering::SeqCst);
            y.yield_(r.is_ok());
        })
        .unwrap();
        let mut outer = outer;
        let r = ivy::timeout(ms(20), || outer.next());
        (r, after)
    });
    assert!(r.is_err());
    assert_eq!(after.load(Ordering::SeqCst), 0);
}

/// A cancelled task's destructor iterates a generator whose body blocks, while
/// another task of the same worker is parked mid-unwind: the body inherits its
/// caller's "unwinding" record, so its blocking calls are not interrupted again
/// (an interruption there would abort the process: a panic during an unwind).
#[test]
fn body_resumed_by_an_unwinding_caller_is_not_interrupted() {
    struct Drain(Arc<AtomicUsize>);
    impl Drop for Drain {
        fn drop(&mut self) {
            let g = ivy::Generator::new(|y| {
                for i in 1..=3 {
                    ivy::sleep(ms(2));
                    y.yield_(i);
                }
            })
            .unwrap();
            self.0.store(g.sum::<usize>(), Ordering::SeqCst);
        }
    }
    struct Slow;
    impl Drop for Slow {
        fn drop(&mut self) {
            ivy::sleep(ms(30));
        }
    }
    for _ in 0..5 {
        let total = Arc::new(AtomicUsize::new(0));
        let t2 = total.clone();
        let (a, b) = rt(1).block_on(move || {
            let ready = Arc::new(ivy::sync::Barrier::new(3));
            let (r1, r2) = (ready.clone(), ready.clone());
            let a = ivy::spawn(move || {
                let _s = Slow;
                r1.wait();
                ivy::sleep(Duration::from_secs(10));
            });
            let b = ivy::spawn(move || {
                let _d = Drain(t2);
                r2.wait();
                ivy::sleep(Duration::from_secs(10));
            });
            ready.wait();
            a.cancel();
            b.cancel();
            (a.join().unwrap_err(), b.join().unwrap_err())
        });
        assert!(a.is_cancelled() && b.is_cancelled());
        assert_eq!(total.load(Ordering::SeqCst), 6);
    }
}

// ---- a body that yields while it unwinds ----------------------------------------

/// Yields from its destructor: a "last value" a body hands out while it ends.
struct YieldOnDrop<'a>(&'a ivy::Yielder<u32>, Arc<AtomicUsize>);
impl Drop for YieldOnDrop<'_> {
    fn drop(&mut self) {
        self.0.yield_(99);
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

/// Dropping a suspended generator unwinds its body; a destructor there that
/// yields does not suspend (the unwind is not carried out to the caller, and
/// corosensei's re-thrown unwind would be a panic in a destructor during an
/// unwind: an abort). The destructor goes on and the body ends.
#[test]
fn body_destructor_that_yields_while_the_generator_is_dropped() {
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = done.clone();
    let mut g = ivy::Generator::new(move |y| {
        let _d = YieldOnDrop(y, d2);
        y.yield_(1);
        y.yield_(2);
    })
    .unwrap();
    assert_eq!(g.next(), Some(1));
    drop(g);
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

/// A body that panics and yields from a destructor during that unwind: the
/// yield does not suspend (else the caller would go on with the body's panic in
/// flight: `std::thread::panicking()` true, ivy treating it as unwinding), and
/// the panic reaches the caller.
#[test]
fn body_destructor_that_yields_while_the_body_panics() {
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = done.clone();
    let r = std::panic::catch_unwind(move || {
        let mut g = ivy::Generator::new(move |y| {
            let _d = YieldOnDrop(y, d2);
            y.yield_(1);
            panic!("body failed");
        })
        .unwrap();
        let first = g.next();
        let second = g.next();
        (first, second, std::thread::panicking())
    });
    let p = r.unwrap_err();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"body failed"));
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

/// The same when a cancellation unwinds the body in a task: the caller never
/// receives the value yielded during that unwind, and the task ends cancelled.
#[test]
fn body_destructor_that_yields_while_the_task_is_cancelled() {
    for workers in [1, 2] {
        let done = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let (d2, s2) = (done.clone(), seen.clone());
        let err = rt(workers).block_on(move || {
            let started = Arc::new(ivy::sync::Event::new());
            let st = started.clone();
            let h = ivy::spawn(move || {
                let g = ivy::Generator::new(move |y| {
                    let _d = YieldOnDrop(y, d2);
                    y.yield_(1);
                    st.set();
                    ivy::sleep(Duration::from_secs(10));
                })
                .unwrap();
                for v in g {
                    s2.fetch_add(v as usize, Ordering::SeqCst);
                }
            });
            started.wait();
            h.cancel();
            h.join().unwrap_err()
        });
        assert!(err.is_cancelled());
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a value yielded mid-unwind reached the caller"
        );
    }
}

// ---- stack overflow in a body is still reported ---------------------------------

/// Re-run by the overflow tests below as a child process (`IVY_GEN_CHILD`).
#[test]
fn novg_child_entry() {
    let Ok(case) = std::env::var("IVY_GEN_CHILD") else {
        return;
    };
    let data = 1u64;
    match case.as_str() {
        "static" => {
            ivy::run(|| {
                let mut g = ivy::Generator::with_stack_size(64 * 1024, |y| {
                    y.yield_(common::recurse_until_overflow(0))
                })
                .unwrap();
                g.next()
            });
        }
        "scoped" => {
            ivy::run(move || {
                ivy::Generator::scoped_with_stack_size(
                    64 * 1024,
                    |y| y.yield_(common::recurse_until_overflow(data)),
                    |mut g| g.next(),
                )
                .unwrap()
            });
        }
        other => panic!("unknown child case {other}"),
    }
    unreachable!("the overflow must stop the process");
}

fn overflow_child(case: &str) -> std::process::Output {
    common::run_child(&mut common::child_case(
        "novg_child_entry",
        "IVY_GEN_CHILD",
        case,
    ))
}

#[test]
fn novg_overflow_in_a_generator_body_is_reported() {
    for case in ["static", "scoped"] {
        let out = overflow_child(case);
        common::assert_overflow_reported(&out, "<generator>", case);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("raise the stack size with ivy::Generator::with_stack_size"),
            "{case}: the hint names the generator's stack size: {stderr}"
        );
    }
}
