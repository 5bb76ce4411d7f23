//! Futures inside tasks (issue 13): `ivy::block_on` drives a future on the
//! calling task's stack, parking the task (not its worker) until the future's
//! waker is woken; `JoinHandle` is a `Future` usable from any executor.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{child_case, ms, rt, run_child, CountDrop};

/// A future that is pending until `done` is set, counting its polls and
/// keeping the waker of its last poll (for whoever completes it).
struct Gate {
    done: Arc<AtomicBool>,
    polls: Arc<AtomicUsize>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            done: Arc::new(AtomicBool::new(false)),
            polls: Arc::new(AtomicUsize::new(0)),
            waker: Arc::new(Mutex::new(None)),
        }
    }

    /// Another handle to the same gate (same flag, counter and waker slot).
    fn share(&self) -> Gate {
        Gate {
            done: self.done.clone(),
            polls: self.polls.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Opens the gate and wakes its last poller.
    fn open(&self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }
}

impl Future for Gate {
    type Output = usize;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let polls = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.done.load(Ordering::SeqCst) {
            Poll::Ready(polls)
        } else {
            Poll::Pending
        }
    }
}

/// A future that never completes and counts its drops.
async fn pending_with_guard(drops: Arc<AtomicUsize>) {
    let _guard = CountDrop(drops);
    std::future::pending::<()>().await;
}

#[test]
fn block_on_ready_future_in_task_and_on_thread() {
    assert_eq!(ivy::run(|| ivy::block_on(async { 40 + 2 })), 42);
    assert_eq!(ivy::run(|| ivy::block_on(std::future::ready("x"))), "x");
    // A plain thread, no runtime.
    assert_eq!(ivy::block_on(async { 7u8 }), 7);
    // A ready future completes even with a passed deadline.
    let past = Some(Instant::now());
    assert_eq!(ivy::block_on_deadline(async { 1 }, past), Ok(1));
}

#[test]
fn block_on_woken_from_another_thread_after_a_delay() {
    for in_task in [true, false] {
        let body = move || {
            let gate = Gate::new();
            let opener = gate.share();
            let polls = gate.polls.clone();
            let start = Instant::now();
            let t = std::thread::spawn(move || {
                std::thread::sleep(ms(30));
                opener.open();
            });
            let r = ivy::block_on(gate);
            t.join().unwrap();
            // Exactly two polls: the first (pending) and the one after the wake.
            assert_eq!(r, 2, "in_task={in_task}");
            assert_eq!(polls.load(Ordering::SeqCst), 2);
            assert!(start.elapsed() >= ms(30));
        };
        if in_task {
            ivy::run(body);
        } else {
            body();
        }
    }
}

#[test]
fn async_channel_between_two_ivy_tasks() {
    const N: u64 = 20_000;
    let rt = rt(2);
    let (sum, count) = rt.block_on(|| {
        let (tx, rx) = async_channel::bounded::<u64>(8);
        let producer = ivy::spawn(move || {
            for i in 0..N {
                ivy::block_on(tx.send(i)).unwrap();
            }
        });
        let consumer = ivy::spawn(move || {
            let (mut sum, mut count) = (0u64, 0u64);
            while let Ok(v) = ivy::block_on(rx.recv()) {
                sum += v;
                count += 1;
            }
            (sum, count)
        });
        producer.join().unwrap();
        consumer.join().unwrap()
    });
    assert_eq!(count, N);
    assert_eq!(sum, N * (N - 1) / 2);
}

#[test]
fn async_channel_between_a_task_and_a_plain_thread() {
    const N: u64 = 10_000;
    let rt = rt(2);
    // Thread -> task, and task -> thread (echoing each value doubled).
    let (to_task, from_thread) = async_channel::bounded::<u64>(4);
    let (to_thread, from_task) = async_channel::bounded::<u64>(4);
    let thread = std::thread::spawn(move || {
        let mut sum = 0;
        for i in 0..N {
            ivy::block_on(to_task.send(i)).unwrap();
            sum += futures::executor::block_on(from_task.recv()).unwrap();
        }
        drop(to_task);
        sum
    });
    let echoed = rt.block_on(move || {
        let mut n = 0u64;
        while let Ok(v) = ivy::block_on(from_thread.recv()) {
            ivy::block_on(to_thread.send(v * 2)).unwrap();
            n += 1;
        }
        n
    });
    assert_eq!(echoed, N);
    assert_eq!(thread.join().unwrap(), N * (N - 1));
}

#[test]
fn a_thousand_tasks_in_block_on_on_two_workers_all_progress() {
    const TASKS: usize = 1000;
    let rt = rt(2);
    let total = rt.block_on(|| {
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..TASKS {
            let (tx, rx) = futures::channel::oneshot::channel::<usize>();
            senders.push(tx);
            let waiting = waiting.clone();
            handles.push(ivy::spawn(move || {
                waiting.fetch_add(1, Ordering::SeqCst);
                ivy::block_on(rx).unwrap() + i
            }));
        }
        // Every task reaches its block_on while none can finish: the two
        // workers are not blocked by the first two waiters.
        let start = Instant::now();
        while waiting.load(Ordering::SeqCst) < TASKS {
            assert!(start.elapsed() < Duration::from_secs(10), "tasks stuck");
            ivy::sleep(ms(1));
        }
        assert!(handles.iter().all(|h| !h.is_finished()));
        for tx in senders {
            tx.send(1).unwrap();
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(total, TASKS + TASKS * (TASKS - 1) / 2);
}

#[test]
fn a_sibling_task_runs_while_one_waits_on_one_worker() {
    let rt = rt(1);
    let order = rt.block_on(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let l = log.clone();
        let waiter = ivy::spawn(move || {
            l.lock().unwrap().push("wait");
            ivy::block_on(rx).unwrap();
            l.lock().unwrap().push("woken");
        });
        let l = log.clone();
        let sibling = ivy::spawn(move || {
            ivy::sleep(ms(5));
            l.lock().unwrap().push("sibling");
            tx.send(()).unwrap();
        });
        waiter.join().unwrap();
        sibling.join().unwrap();
        let v = log.lock().unwrap().clone();
        v
    });
    assert_eq!(order, ["wait", "sibling", "woken"]);
}

#[test]
fn waker_cloned_and_woken_many_times_and_after_completion() {
    let rt = rt(2);
    let leftover: Waker = rt.block_on(|| {
        let gate = Gate::new();
        let opener = gate.share();
        let polls = gate.polls.clone();
        let slot = gate.waker.clone();
        let waker_thread = std::thread::spawn(move || {
            // Wait for the first poll, then wake 1000 times through clones.
            let w = loop {
                if let Some(w) = slot.lock().unwrap().clone() {
                    break w;
                }
                std::thread::yield_now();
            };
            for _ in 0..1000 {
                let clone = w.clone();
                clone.wake();
                w.wake_by_ref();
            }
            opener.open();
            w
        });
        let r = ivy::block_on(gate);
        let w = waker_thread.join().unwrap();
        // Two polls at least (pending, ready); at most one per wake plus the first.
        assert!((2..=2002).contains(&r), "{r} polls");
        assert_eq!(polls.load(Ordering::SeqCst), r);
        // Waking the spent waker after block_on returned is harmless: at most a
        // spurious wake-up of this task, which a sleep and a later block_on
        // absorb.
        for _ in 0..100 {
            w.wake_by_ref();
        }
        let start = Instant::now();
        ivy::sleep(ms(10));
        assert!(start.elapsed() >= ms(10));
        let gate = Gate::new();
        let opener = gate.share();
        let t = std::thread::spawn(move || {
            std::thread::sleep(ms(10));
            opener.open();
        });
        w.wake_by_ref();
        assert_eq!(ivy::block_on(gate), 2, "stale wakes cause no extra poll");
        t.join().unwrap();
        w
    });
    // After the task and its runtime are gone.
    drop(rt);
    for _ in 0..10 {
        leftover.wake_by_ref();
    }
    leftover.wake();
}

#[test]
fn cancelling_a_task_in_block_on_drops_its_future() {
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = rt(2);
    let d = drops.clone();
    let (joined, drops_after) = rt.block_on(move || {
        let entered = Arc::new(AtomicBool::new(false));
        let e = entered.clone();
        let h = ivy::spawn(move || {
            e.store(true, Ordering::SeqCst);
            ivy::block_on(pending_with_guard(d));
            unreachable!("block_on of a pending future returned");
        });
        while !entered.load(Ordering::SeqCst) {
            ivy::sleep(ms(1));
        }
        ivy::sleep(ms(5));
        h.cancel();
        let r = h.join();
        (
            r.map_err(|e| e.is_cancelled()),
            drops.load(Ordering::SeqCst),
        )
    });
    assert_eq!(joined, Err(true));
    assert_eq!(drops_after, 1);
}

#[test]
fn block_on_deadline_reports_cancellation_without_unwinding() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let rt = rt(1);
    let (r, drops_then) = rt.block_on(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let h = ivy::spawn(move || {
            let r = ivy::block_on_deadline(pending_with_guard(d.clone()), None);
            tx.send((r, d.load(Ordering::SeqCst))).unwrap();
        });
        ivy::sleep(ms(5));
        h.cancel();
        let _ = h.join();
        rx.recv().unwrap()
    });
    assert_eq!(r, Err(ivy::WaitError::Cancelled));
    // The future was dropped before block_on_deadline returned.
    assert_eq!(drops_then, 1);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn timeout_scope_elapses_block_on() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let (r, elapsed) = ivy::run(move || {
        let start = Instant::now();
        let r = ivy::timeout(ms(20), || ivy::block_on(pending_with_guard(d)));
        (r, start.elapsed())
    });
    assert!(r.is_err());
    assert!(elapsed >= ms(20), "{elapsed:?}");
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // The Result form inside a scope: Err(Elapsed), no unwind.
    let d = drops.clone();
    let inner = ivy::run(move || {
        let mut inner = None;
        let r = ivy::timeout(ms(10), || {
            inner = Some(ivy::block_on_deadline(pending_with_guard(d), None));
        });
        (r.is_err(), inner)
    });
    // The scope reports its deadline too, as for every Result-form call in it.
    assert_eq!(inner, (true, Some(Err(ivy::WaitError::Elapsed))));
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn block_on_deadline_own_deadline_and_passed_deadline() {
    for in_task in [true, false] {
        let body = || {
            // A passed deadline: exactly one poll, no park, then TimedOut.
            let gate = Gate::new();
            let polls = gate.polls.clone();
            let r = ivy::block_on_deadline(gate, Some(Instant::now()));
            assert_eq!(r, Err(ivy::WaitError::TimedOut));
            assert_eq!(polls.load(Ordering::SeqCst), 1);
            // A future deadline: TimedOut once it passes, future dropped.
            let drops = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let r = ivy::block_on_deadline(pending_with_guard(drops.clone()), Some(start + ms(15)));
            assert_eq!(r, Err(ivy::WaitError::TimedOut));
            assert!(start.elapsed() >= ms(15));
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            // A deadline that is not reached: Ok.
            let r = ivy::block_on_deadline(async { 3 }, Some(Instant::now() + ms(1000)));
            assert_eq!(r, Ok(3));
        };
        if in_task {
            ivy::run(body);
        } else {
            body();
        }
    }
}

#[test]
fn a_panicking_future_is_the_tasks_panic_and_the_worker_lives_on() {
    let rt = rt(1);
    let (msg, after) = rt.block_on(|| {
        let h = ivy::spawn(|| {
            ivy::block_on(async {
                ivy::yield_now();
                panic!("boom in a future");
            })
        });
        let e: ivy::JoinError = h.join().unwrap_err();
        assert!(e.is_panic());
        let msg = e.panic_message().map(str::to_owned);
        // The one worker still runs tasks, and block_on still works.
        let after = ivy::spawn(|| ivy::block_on(async { 5 })).join().unwrap();
        (msg, after)
    });
    assert_eq!(msg.as_deref(), Some("boom in a future"));
    assert_eq!(after, 5);
}

#[test]
fn join_handle_awaited_by_futures_executor_on_a_plain_thread() {
    let rt = rt(2);
    let h = rt.spawn(|| {
        ivy::sleep(ms(20));
        String::from("done")
    });
    let start = Instant::now();
    assert_eq!(futures::executor::block_on(h).unwrap(), "done");
    assert!(start.elapsed() >= ms(15));
    // A finished task: ready at the first poll.
    let h = rt.spawn(|| 9);
    while !h.is_finished() {
        std::thread::sleep(ms(1));
    }
    assert_eq!(futures::executor::block_on(h).unwrap(), 9);
}

#[test]
fn join_handles_awaited_inside_ivy_block_on_in_another_task() {
    let rt = rt(2);
    let sum = rt.block_on(|| {
        let a = ivy::spawn(|| {
            ivy::sleep(ms(10));
            1u32
        });
        let b = ivy::spawn(|| {
            ivy::sleep(ms(5));
            2u32
        });
        let waiter = ivy::spawn(move || {
            ivy::block_on(async move {
                let (x, y) = futures::join!(a, b);
                x.unwrap() + y.unwrap()
            })
        });
        waiter.join().unwrap()
    });
    assert_eq!(sum, 3);
}

#[test]
fn join_handle_future_of_a_panicking_and_of_a_cancelled_task() {
    let rt = rt(2);
    let panicked = rt.spawn(|| -> u8 {
        ivy::sleep(ms(5));
        panic!("task panicked");
    });
    let e = futures::executor::block_on(panicked).unwrap_err();
    assert!(e.is_panic());
    assert_eq!(e.panic_message(), Some("task panicked"));

    let sleeper = rt.spawn(|| ivy::sleep(Duration::from_secs(60)));
    std::thread::sleep(ms(5));
    sleeper.cancel();
    let start = Instant::now();
    let e = futures::executor::block_on(sleeper).unwrap_err();
    assert!(e.is_cancelled());
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn join_handle_repoll_with_another_waker_replaces_it() {
    let rt = rt(2);
    let gate = Gate::new();
    let opener = gate.share();
    let polls = gate.polls.clone();
    let mut h = rt.spawn(move || ivy::block_on(gate));
    while polls.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(ms(1));
    }
    let woken_a = Arc::new(AtomicBool::new(false));
    let woken_b = Arc::new(AtomicBool::new(false));
    let waker_a = flag_waker(woken_a.clone());
    let waker_b = flag_waker(woken_b.clone());
    let mut h_pin = Pin::new(&mut h);
    assert!(h_pin
        .as_mut()
        .poll(&mut Context::from_waker(&waker_a))
        .is_pending());
    assert!(h_pin
        .as_mut()
        .poll(&mut Context::from_waker(&waker_b))
        .is_pending());
    opener.open();
    let start = Instant::now();
    while !woken_b.load(Ordering::SeqCst) {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(ms(1));
    }
    assert!(
        !woken_a.load(Ordering::SeqCst),
        "the replaced waker is not woken"
    );
    match h_pin.as_mut().poll(&mut Context::from_waker(&waker_b)) {
        Poll::Ready(r) => assert_eq!(r.unwrap(), 2),
        Poll::Pending => panic!("woken but pending"),
    }
    // Polling a spent handle panics, like std's futures.
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = h_pin.as_mut().poll(&mut Context::from_waker(&waker_b));
    }));
    assert!(again.is_err());
}

fn flag_waker(flag: Arc<AtomicBool>) -> Waker {
    struct Flag(Arc<AtomicBool>);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    Waker::from(Arc::new(Flag(flag)))
}

#[test]
fn join_handle_polled_then_dropped_detaches_without_leak() {
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = rt(2);
    let gate = Gate::new();
    let opener = gate.share();
    let d = drops.clone();
    let mut h = rt.spawn(move || {
        ivy::block_on(gate);
        CountDrop(d)
    });
    let woken = Arc::new(AtomicBool::new(false));
    let waker = flag_waker(woken.clone());
    assert!(Pin::new(&mut h)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    drop(h);
    // The detached task runs on and drops its own result, exactly once; the
    // dropped handle's waker is not woken (the drop cleared it).
    opener.open();
    let start = Instant::now();
    while drops.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(ms(1));
    }
    drop(rt);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert!(!woken.load(Ordering::SeqCst));
}

/// Child scenario for the test below: a task whose handle was polled as a
/// future and then dropped panics; its panic must be reported exactly once.
#[test]
fn child_polled_then_dropped_panic() {
    if std::env::var("IVY_FUTURES_CHILD").is_err() {
        return;
    }
    let rt = rt(2);
    let gate = Gate::new();
    let opener = gate.share();
    let reached = Arc::new(AtomicBool::new(false));
    let r = reached.clone();
    let mut h = ivy::task::Builder::new()
        .name("polled-then-dropped")
        .spawn_on(&rt.handle(), move || {
            ivy::block_on(gate);
            r.store(true, Ordering::SeqCst);
            panic!("late panic");
        })
        .unwrap();
    let waker = flag_waker(Arc::new(AtomicBool::new(false)));
    assert!(Pin::new(&mut h)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    drop(h);
    opener.open();
    // Past block_on, the task is panicking: shutdown cannot turn that into a
    // cancellation.
    while !reached.load(Ordering::SeqCst) {
        std::thread::sleep(ms(1));
    }
    drop(rt);
    println!("CHILD DONE");
}

#[test]
fn join_handle_polled_then_dropped_panic_is_reported_once() {
    let out = run_child(&mut child_case(
        "child_polled_then_dropped_panic",
        "IVY_FUTURES_CHILD",
        "1",
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("CHILD DONE"), "{stdout}");
    let report = "ivy: task 'polled-then-dropped' (id ";
    assert_eq!(stderr.matches(report).count(), 1, "{stderr}");
    assert!(stderr.contains("panicked and nobody joined it: late panic"));
}

#[test]
fn scoped_join_handles_awaited_inside_ivy_block_on() {
    let data = [1u64, 2, 3, 4];
    let total = ivy::run(move || {
        ivy::scope(|s| {
            let a = s.spawn(|| {
                ivy::sleep(ms(5));
                data[..2].iter().sum::<u64>()
            });
            let b = s.spawn(|| data[2..].iter().sum::<u64>());
            ivy::block_on(async move {
                let (x, y) = futures::join!(a, b);
                x.unwrap() + y.unwrap()
            })
        })
        .unwrap()
    });
    assert_eq!(total, 10);
}

#[test]
fn a_task_in_block_on_shows_as_waiting_on_a_future() {
    use ivy::runtime::debug::{TaskState, WaitReason};
    let rt = rt(2);
    let gate = Gate::new();
    let opener = gate.share();
    let polls = gate.polls.clone();
    let h = ivy::task::Builder::new()
        .name("in-block-on")
        .spawn_on(&rt.handle(), move || ivy::block_on(gate))
        .unwrap();
    let start = Instant::now();
    let snapshot = loop {
        let found = rt
            .handle()
            .tasks()
            .into_iter()
            .find(|t| t.name.as_deref() == Some("in-block-on"));
        match found {
            Some(t) if t.state == TaskState::Parked && polls.load(Ordering::SeqCst) == 1 => {
                break t
            }
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(ms(1));
    };
    assert_eq!(snapshot.waiting_on, WaitReason::Future);
    opener.open();
    assert_eq!(h.join().unwrap(), 2);
}
