//! The non-unwinding `Result` layer (issue 12): every blocking call of
//! `ivy::sync` and of task joining has an `x_deadline(args, Option<Instant>)`
//! twin returning `Result<_, ivy::WaitError>`. For each of them, in a state
//! where it must wait:
//!
//! * a passed deadline returns `Err(TimedOut)` at once, without parking: on one
//!   worker, a sibling task queued before the call has not run after it;
//! * its own deadline in the future gives `Err(TimedOut)`;
//! * cancelling the waiting task gives `Err(Cancelled)`, and the task runs on:
//!   it can still block inside `ivy::shield`, and its next unshielded call
//!   reports the (still pending) cancellation again;
//! * an enclosing `ivy::timeout` gives `Err(Elapsed)` (and the scope `Err`);
//! * none of them unwinds: every call runs inside `catch_unwind`.
//!
//! Plus `Closed` where the object can close (queues, oneshot), and the rule that
//! a failed `join_deadline` keeps the handle joinable.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivy::sync::{
    oneshot, Barrier, BoundedSemaphore, Condition, Event, LifoQueue, Mutex, PriorityQueue, Queue,
    RwLock, Select, Semaphore, WaitGroup,
};
use ivy::{JoinHandle, WaitError};

mod common;
use common::{ms, rt};

/// A blocking call, in a state where it has to wait, reduced to its outcome.
type Call = Box<dyn FnMut(Option<Instant>) -> Result<(), WaitError> + Send>;

/// Runs `call` and fails the test if it unwinds.
fn no_unwind(call: &mut Call, deadline: Option<Instant>) -> Result<(), WaitError> {
    match catch_unwind(AssertUnwindSafe(|| call(deadline))) {
        Ok(r) => r,
        Err(_) => panic!("a _deadline call unwound"),
    }
}

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// A task that blocks until cancelled (or the runtime shuts down).
fn blocked_task() -> JoinHandle<u32> {
    ivy::spawn(|| {
        ivy::sleep(Duration::from_secs(3600));
        0
    })
}

/// Builds one blocking call in a fresh state where it must wait. Called from a
/// task (the join cases spawn).
type Make = fn() -> Call;

/// Every `_deadline` call of the `Result` layer.
const CASES: &[(&str, Make)] = &[
    ("Mutex::lock_deadline", || {
        let m = leak(Mutex::new(()));
        std::mem::forget(m.lock());
        Box::new(move |d| m.lock_deadline(d).map(drop))
    }),
    ("RwLock::write_deadline", || {
        let rw = leak(RwLock::new(()));
        std::mem::forget(rw.read());
        Box::new(move |d| rw.write_deadline(d).map(drop))
    }),
    ("RwLock::read_deadline", || {
        let rw = leak(RwLock::new(()));
        std::mem::forget(rw.write());
        Box::new(move |d| rw.read_deadline(d).map(drop))
    }),
    ("Semaphore::acquire_deadline", || {
        let s = leak(Semaphore::new(0));
        Box::new(move |d| s.acquire_deadline(d).map(drop))
    }),
    ("Semaphore::acquire_many_deadline", || {
        let s = leak(Semaphore::new(1));
        Box::new(move |d| s.acquire_many_deadline(2, d).map(drop))
    }),
    ("BoundedSemaphore::acquire_deadline", || {
        let b = leak(BoundedSemaphore::new(1));
        b.acquire();
        Box::new(move |d| b.acquire_deadline(d))
    }),
    ("Event::wait_deadline", || {
        let e = leak(Event::new());
        Box::new(move |d| e.wait_deadline(d))
    }),
    ("Condition::wait_deadline", || {
        let (m, c) = (leak(Mutex::new(())), leak(Condition::new()));
        Box::new(move |d| c.wait_deadline(m.lock(), d).map(drop))
    }),
    ("WaitGroup::wait_deadline", || {
        let wg = leak(WaitGroup::new());
        wg.add(1);
        Box::new(move |d| wg.wait_deadline(d))
    }),
    ("Barrier::wait_deadline", || {
        let b = leak(Barrier::new(2));
        Box::new(move |d| b.wait_deadline(d).map(drop))
    }),
    ("oneshot::Receiver::recv_deadline", || {
        let (tx, mut rx) = oneshot::channel::<u32>();
        Box::new(move |d| {
            let _keep_the_sender = &tx;
            rx.recv_deadline(d).map(drop)
        })
    }),
    ("Queue::get_deadline", || {
        let q = leak(Queue::<u32>::bounded(1));
        Box::new(move |d| q.get_deadline(d).map(drop))
    }),
    ("Queue::put_deadline", || {
        let q = leak(Queue::<u32>::bounded(1));
        q.put(1).unwrap();
        Box::new(move |d| {
            q.put_deadline(2, d).map_err(|(e, v)| {
                assert_eq!(v, 2, "the value comes back");
                e
            })
        })
    }),
    ("Queue::join_deadline", || {
        let q = leak(Queue::<u32>::unbounded());
        q.put(1).unwrap();
        Box::new(move |d| q.join_deadline(d))
    }),
    ("PriorityQueue::get_deadline", || {
        let q = leak(PriorityQueue::<u32>::unbounded());
        Box::new(move |d| q.get_deadline(d).map(drop))
    }),
    ("LifoQueue::put_deadline", || {
        let q = leak(LifoQueue::<u32>::bounded(1));
        q.put(1).unwrap();
        Box::new(move |d| q.put_deadline(2, d).map_err(|(e, _)| e))
    }),
    ("Select::run_deadline", || {
        let q = leak(Queue::<u32>::bounded(1));
        Box::new(move |d| {
            Select::new()
                .get(q, |_| unreachable!("nothing is ever put"))
                .run_deadline(d)
        })
    }),
    ("JoinHandle::join_deadline", || {
        let mut h = blocked_task();
        Box::new(move |d| h.join_deadline(d).map(drop))
    }),
    ("JoinHandle::wait_deadline", || {
        let h = blocked_task();
        Box::new(move |d| h.wait_deadline(d))
    }),
    ("wait_any_deadline", || {
        let hs = vec![blocked_task(), blocked_task()];
        Box::new(move |d| ivy::task::wait_any_deadline(&hs, d).map(drop))
    }),
    ("AsCompleted::next_deadline", || {
        let mut it = ivy::as_completed(vec![blocked_task()]);
        Box::new(move |d| it.next_deadline(d).map(drop))
    }),
    ("join_all_deadline", || {
        Box::new(|d| ivy::task::join_all_deadline(vec![blocked_task()], d).map(drop))
    }),
    ("join_all_settled_deadline", || {
        Box::new(|d| ivy::task::join_all_settled_deadline(vec![blocked_task()], d).map(drop))
    }),
    ("BlockingHandle::join_deadline", || {
        // The job runs until the call (and with it `release`) is dropped.
        let (release, job_waits) = std::sync::mpsc::channel::<()>();
        let h = ivy::spawn_blocking(move || {
            let _ = job_waits.recv();
        });
        Box::new(move |d| {
            let _release = &release;
            h.join_deadline(d)
                .map(|r| r.expect("the job does not panic"))
        })
    }),
];

/// Every case, built.
fn cases() -> Vec<(&'static str, Call)> {
    CASES.iter().map(|&(name, make)| (name, make())).collect()
}

/// A passed deadline is a try: `Err(TimedOut)` without parking. On one worker a
/// sibling spawned just before the call would run if the caller parked.
#[test]
fn passed_deadline_returns_at_once_without_parking() {
    let rt = rt(1);
    rt.block_on(|| {
        for round in 0..20 {
            for (name, mut call) in cases() {
                let ran = Arc::new(AtomicBool::new(false));
                let r2 = ran.clone();
                let sibling = ivy::spawn(move || r2.store(true, Ordering::SeqCst));
                let past = Instant::now()
                    .checked_sub(ms(1))
                    .unwrap_or_else(Instant::now);
                for d in [Instant::now(), past] {
                    assert_eq!(
                        no_unwind(&mut call, Some(d)),
                        Err(WaitError::TimedOut),
                        "{name}, round {round}"
                    );
                }
                assert!(!ran.load(Ordering::SeqCst), "{name} parked (round {round})");
                sibling.join().unwrap();
                assert!(ran.load(Ordering::SeqCst));
            }
        }
    });
}

#[test]
fn own_deadline_gives_timed_out() {
    let rt = rt(2);
    rt.block_on(|| {
        for round in 0..3 {
            for (name, mut call) in cases() {
                let start = Instant::now();
                let r = no_unwind(&mut call, Some(start + ms(3)));
                assert_eq!(r, Err(WaitError::TimedOut), "{name}, round {round}");
                assert!(start.elapsed() >= ms(3), "{name} returned early");
            }
        }
    });
}

/// Cancelling a task waiting in any `_deadline` call: `Err(Cancelled)`, no
/// unwind, and the task goes on (it blocks again inside a shield; an unshielded
/// call reports the pending cancellation again).
#[test]
fn cancellation_is_err_cancelled_and_the_task_continues() {
    let rt = rt(2);
    rt.block_on(|| {
        for round in 0..10 {
            for &(name, make) in CASES {
                let parked = Arc::new(Event::new());
                let p2 = parked.clone();
                let h = ivy::spawn(move || {
                    let mut call = make();
                    p2.set();
                    let first = no_unwind(&mut call, None);
                    // Still able to block, shielded from the pending cancellation.
                    let shielded = ivy::shield(|| {
                        ivy::sleep(ms(1));
                        no_unwind(&mut call, Some(Instant::now() + ms(1)))
                    });
                    let again = no_unwind(&mut call, None);
                    (first, shielded, again)
                });
                parked.wait();
                if round % 2 == 1 {
                    ivy::sleep(ms(1)); // most likely parked in the call by now
                }
                h.cancel();
                let (first, shielded, again) = h.join().expect("the task returned");
                assert_eq!(first, Err(WaitError::Cancelled), "{name}, round {round}");
                assert_eq!(shielded, Err(WaitError::TimedOut), "{name}, round {round}");
                assert_eq!(again, Err(WaitError::Cancelled), "{name}, round {round}");
            }
        }
    });
}

/// An enclosing `ivy::timeout` ends the wait with `Err(Elapsed)`, as a value;
/// the scope reports `Err(Elapsed)` too.
#[test]
fn enclosing_timeout_gives_elapsed() {
    let rt = rt(2);
    rt.block_on(|| {
        for round in 0..3 {
            for (name, mut call) in cases() {
                let mut got = None;
                let scope = ivy::timeout(ms(3), || got = Some(no_unwind(&mut call, None)));
                assert!(scope.is_err(), "{name}, round {round}");
                assert_eq!(got, Some(Err(WaitError::Elapsed)), "{name}, round {round}");
                // The call's own earlier deadline still wins inside a scope.
                let mut got = None;
                let scope = ivy::timeout(ms(200), || {
                    got = Some(no_unwind(&mut call, Some(Instant::now() + ms(1))))
                });
                assert!(scope.is_ok(), "{name}, round {round}");
                assert_eq!(got, Some(Err(WaitError::TimedOut)), "{name}, round {round}");
            }
        }
    });
}

#[test]
fn queues_and_oneshot_report_closed() {
    let rt = rt(2);
    rt.block_on(|| {
        for _ in 0..50 {
            // A getter waiting when the queue closes, and one arriving after.
            let q = Arc::new(Queue::<u32>::unbounded());
            let q2 = q.clone();
            let getter = ivy::spawn(move || q2.get_deadline(None));
            ivy::sleep(Duration::ZERO);
            q.close();
            assert_eq!(getter.join().unwrap(), Err(WaitError::Closed));
            assert_eq!(q.get_deadline(None), Err(WaitError::Closed));
            assert_eq!(q.put_deadline(7, None), Err((WaitError::Closed, 7)));

            // A putter waiting for room when the queue closes gets its value back.
            let q = Arc::new(Queue::<u32>::bounded(1));
            q.put(1).unwrap();
            let q2 = q.clone();
            let putter = ivy::spawn(move || q2.put_deadline(2, None));
            ivy::sleep(Duration::ZERO);
            q.close();
            assert_eq!(putter.join().unwrap(), Err((WaitError::Closed, 2)));
            // Closed queues drain first.
            assert_eq!(q.get_deadline(None), Ok(1));
            assert_eq!(q.get_deadline(Some(Instant::now())), Err(WaitError::Closed));

            // A oneshot whose sender goes away unsent.
            let (tx, mut rx) = oneshot::channel::<u32>();
            let dropper = ivy::spawn(move || drop(tx));
            assert_eq!(rx.recv_deadline(None), Err(WaitError::Closed));
            dropper.join().unwrap();
            let (tx, mut rx) = oneshot::channel::<u32>();
            tx.send(5).unwrap();
            assert_eq!(rx.recv_deadline(Some(Instant::now())), Ok(5));
        }
    });
}

/// A failed `join_deadline` leaves the handle joinable; a successful one spends
/// it. The same for scoped handles.
#[test]
fn join_deadline_keeps_the_handle_on_error() {
    let rt = rt(2);
    rt.block_on(|| {
        for i in 0..50u32 {
            let go = Arc::new(Event::new());
            let g2 = go.clone();
            let mut h = ivy::spawn(move || {
                g2.wait();
                i
            });
            assert_eq!(
                h.join_deadline(Some(Instant::now())).unwrap_err(),
                WaitError::TimedOut
            );
            assert_eq!(
                h.join_deadline(Some(Instant::now() + ms(1))).unwrap_err(),
                WaitError::TimedOut
            );
            let mut got = None;
            assert!(ivy::timeout(ms(1), || got = Some(h.join_deadline(None).map(drop))).is_err());
            assert_eq!(got, Some(Err(WaitError::Elapsed)));
            assert!(!h.is_finished());
            go.set();
            assert_eq!(h.join_deadline(None).unwrap().unwrap(), i);
            assert!(h.is_finished());

            let data = [i; 3];
            let go = Event::new();
            let r = ivy::scope(|s| {
                let mut c = s.spawn(|| {
                    go.wait();
                    data.iter().sum::<u32>()
                });
                assert_eq!(
                    c.join_deadline(Some(Instant::now())).unwrap_err(),
                    WaitError::TimedOut
                );
                go.set();
                c.join_deadline(None).unwrap().unwrap()
            });
            assert_eq!(r.unwrap(), 3 * i);

            // A blocking job's handle too: a failed wait leaves it joinable.
            let (go, job_waits) = std::sync::mpsc::channel::<()>();
            let b = ivy::spawn_blocking(move || {
                job_waits.recv().unwrap();
                i
            });
            assert_eq!(
                b.join_deadline(Some(Instant::now())).unwrap_err(),
                WaitError::TimedOut
            );
            let mut got = None;
            assert!(ivy::timeout(ms(1), || got = Some(b.join_deadline(None).map(drop))).is_err());
            assert_eq!(got, Some(Err(WaitError::Elapsed)));
            assert!(!b.is_finished());
            go.send(()).unwrap();
            assert_eq!(b.join_deadline(None).unwrap().unwrap(), i);
        }
    });
}

/// The `_deadline` forms succeed like their unwinding twins.
#[test]
fn success_paths() {
    let rt = rt(2);
    rt.block_on(|| {
        let m = Mutex::new(1);
        *m.lock_deadline(None).unwrap() += 1;
        assert_eq!(*m.lock_deadline(Some(Instant::now())).unwrap(), 2);
        let s = Semaphore::new(2);
        let p = s.acquire_many_deadline(2, Some(Instant::now())).unwrap();
        assert_eq!(p.num_permits(), 2);
        drop(p);
        let c = Arc::new((Mutex::new(false), Condition::new()));
        let c2 = c.clone();
        let notifier = ivy::spawn(move || {
            *c2.0.lock() = true;
            c2.1.notify_all();
        });
        let mut g = c.0.lock();
        while !*g {
            g = c.1.wait_deadline(g, None).expect("notified");
        }
        drop(g);
        notifier.join().unwrap();

        let hs: Vec<_> = (0..4u32).map(|i| ivy::spawn(move || i)).collect();
        assert_eq!(
            ivy::task::join_all_deadline(hs, None).unwrap().unwrap(),
            [0, 1, 2, 3]
        );
        let hs: Vec<_> = (0..3u32).map(|i| ivy::spawn(move || i)).collect();
        let all = ivy::task::join_all_settled_deadline(hs, None).unwrap();
        assert_eq!(
            all.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let hs: Vec<JoinHandle<u32>> = Vec::new();
        assert_eq!(ivy::task::wait_any_deadline(&hs, None), Ok(None));
        let mut it = ivy::as_completed((0..3u32).map(|i| ivy::spawn(move || i)));
        let mut seen = Vec::new();
        while let Some(h) = it.next_deadline(None).unwrap() {
            seen.push(h.join().unwrap());
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
        let q = Queue::bounded(1);
        let r = Select::new()
            .put(&q, 9u32, |r| r.is_ok())
            .run_deadline(Some(Instant::now()));
        assert_eq!(r, Ok(true));
        // The select's own deadline arm fires when it is due before the call's.
        let q2 = Queue::<u32>::bounded(1);
        let r = Select::new()
            .get(&q2, |_| 0)
            .deadline(Instant::now() + ms(1), || 1)
            .run_deadline(Some(Instant::now() + ms(500)));
        assert_eq!(r, Ok(1));
        // ... and the call's own deadline when it is due first.
        let r = Select::new()
            .get(&q2, |_| 0)
            .deadline(Instant::now() + ms(500), || 1)
            .run_deadline(Some(Instant::now() + ms(1)));
        assert_eq!(r, Err(WaitError::TimedOut));
        let r = Select::new()
            .get(&q2, |_| 0)
            .deadline(Instant::now(), || 1)
            .run_deadline(Some(Instant::now()));
        assert_eq!(
            r,
            Ok(1),
            "both passed: the earlier, the select's own arm, wins"
        );
    });
}

/// `join_all_deadline` that gives up cancels the tasks still running.
#[test]
fn join_all_deadline_cancels_the_rest_on_error() {
    let rt = rt(2);
    rt.block_on(|| {
        for _ in 0..20 {
            let done = Arc::new(WaitGroup::new());
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    struct Done(Arc<WaitGroup>);
                    impl Drop for Done {
                        fn drop(&mut self) {
                            self.0.done().unwrap();
                        }
                    }
                    done.add(1);
                    // Captured, not made by the body: a task cancelled before it
                    // starts never runs its body but drops its closure (under
                    // valgrind none had started 1 ms in, and the group never
                    // drained).
                    let d = Done(done.clone());
                    ivy::spawn(move || {
                        let _d = d;
                        ivy::sleep(Duration::from_secs(3600));
                    })
                })
                .collect();
            let r = ivy::task::join_all_deadline(hs, Some(Instant::now() + ms(1)));
            assert_eq!(r.unwrap_err(), WaitError::TimedOut);
            // Every task was cancelled: the wait group drains.
            assert_eq!(
                done.wait_deadline(Some(Instant::now() + Duration::from_secs(10))),
                Ok(())
            );
        }
    });
}

/// The text of a panic payload (`panic!` with arguments and `expect` give a `String`).
fn panic_text(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| p.downcast_ref::<&str>().copied())
        .unwrap_or_default()
}

/// Counts the drops of a task's result.
struct Counted(Arc<std::sync::atomic::AtomicUsize>, u32);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A handle is spent by the join that returns its result (through `join_deadline` or as a
/// `Future`): a second join or poll panics with a message that says so, whatever the
/// worker count, and dropping the spent handle drops nothing more (the result went to the
/// joiner, which dropped it once). "Spent" is not a flag of the handle but "done, and the
/// result taken" (`JoinHandle` is two words), so this is what pins it.
#[test]
fn a_spent_handle_panics_on_a_second_join_and_drops_nothing_more() {
    for workers in [1, 2] {
        let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rounds = 200;
        let d = drops.clone();
        let sum = ivy::Builder::new()
            .workers(workers)
            .build()
            .unwrap()
            .block_on(move || {
                let mut sum = 0;
                for i in 0..rounds {
                    let d = d.clone();
                    let mut h = ivy::spawn(move || {
                        if i % 2 == 0 {
                            ivy::yield_now();
                        }
                        Counted(d, i)
                    });
                    if i % 3 == 0 {
                        let v = ivy::block_on(&mut h).unwrap();
                        sum += v.1;
                        drop(v);
                        let again = catch_unwind(AssertUnwindSafe(|| ivy::block_on(&mut h)));
                        let msg = again.err().expect("a second poll panics");
                        let msg = panic_text(msg.as_ref());
                        assert!(msg.contains("polled after completion"), "{msg}");
                    } else {
                        let v = h.join_deadline(None).unwrap().unwrap();
                        sum += v.1;
                        drop(v);
                        let again = catch_unwind(AssertUnwindSafe(|| h.join_deadline(None)));
                        let msg = again.err().expect("a second join panics");
                        let msg = panic_text(msg.as_ref());
                        assert!(msg.contains("joined twice"), "{msg}");
                    }
                    drop(h);
                }
                sum
            });
        assert_eq!(sum, (0..rounds).sum::<u32>());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            rounds as usize,
            "{workers} workers"
        );
    }
}
