//! The switch, spawn and wake-up fast paths (issue 15, benches/compare/findings/hot.md):
//! what each shortcut must keep of the documented behaviour.
//!
//! A yield writes no atomic read-modify-write: the yielded task waits in its
//! worker's ready queue with its state byte still RUNNING (`task::state`). So
//! these check, through the public API, what that byte used to guarantee:
//! a dump shows the queued task as `Scheduled`, an unpark that reaches it
//! while it is queued is neither lost (its next park returns at once) nor
//! doubled (it is not queued a second time), and a cancellation that reaches
//! it is seen.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ivy::park::Unparker;
use ivy::runtime::debug::TaskState;

mod common;

/// One worker: the dumping task runs while the other sits in the ready queue
/// after a yield; the dump must say `Scheduled` for it, `Running` for itself.
#[test]
fn a_yielded_task_shows_as_scheduled() {
    let rt = common::rt(1);
    rt.block_on(|| {
        for _ in 0..200 {
            let ran = Arc::new(AtomicUsize::new(0));
            let spinner = {
                let ran = ran.clone();
                ivy::spawn(move || {
                    for _ in 0..3 {
                        ran.fetch_add(1, Ordering::SeqCst);
                        ivy::yield_now();
                    }
                })
            };
            // Until it has run once: then it is queued by its first yield
            // (one worker: it cannot run while we do).
            while ran.load(Ordering::SeqCst) == 0 {
                ivy::yield_now();
            }
            assert_eq!(ran.load(Ordering::SeqCst), 1);
            let listed = ivy::Handle::current().tasks();
            let me = ivy::current().unwrap().id();
            let mine = listed.iter().find(|t| t.id == me).expect("caller listed");
            assert_eq!(mine.state, TaskState::Running, "{mine:?}");
            let other = listed
                .iter()
                .find(|t| t.id == spinner.id())
                .expect("yielder listed");
            assert!(other.started, "{other:?}");
            assert_eq!(other.state, TaskState::Scheduled, "{other:?}");
            spinner.join().unwrap();
        }
    });
}

/// One worker, deterministic order: task A yields; while A is queued, B
/// unparks it; A then parks and must return at once (the token was kept),
/// exactly once per round (A is in the queue once: it runs its rounds in
/// order). A lost token would hang A's park: the join's deadline turns that
/// into a failure.
#[test]
fn an_unpark_while_queued_by_a_yield_is_kept_once() {
    const ROUNDS: usize = 2_000;
    let rt = common::rt(1);
    let done = rt.block_on(|| {
        let slot: Arc<Mutex<Option<Unparker>>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let a = {
            let (slot, runs) = (slot.clone(), runs.clone());
            ivy::spawn(move || {
                for round in 0..ROUNDS {
                    *slot.lock().unwrap() = Some(ivy::park::current_unparker());
                    ivy::yield_now(); // B runs now and unparks us while we are queued
                    assert!(slot.lock().unwrap().is_none(), "B did not run");
                    assert_eq!(runs.fetch_add(1, Ordering::SeqCst), round);
                    ivy::park::park(); // must return at once: B's token
                }
            })
        };
        let b = {
            let slot = slot.clone();
            ivy::spawn(move || {
                let mut given = 0;
                while given < ROUNDS {
                    if let Some(u) = slot.lock().unwrap().take() {
                        u.unpark();
                        given += 1;
                    }
                    ivy::yield_now();
                }
                given
            })
        };
        let mut a = a;
        let deadline = Instant::now() + Duration::from_secs(60);
        let outcome = a.join_deadline(Some(deadline));
        assert!(outcome.is_ok(), "A's park lost a wake-up: {outcome:?}");
        outcome.unwrap().unwrap();
        assert_eq!(b.join().unwrap(), ROUNDS);
        runs.load(Ordering::SeqCst)
    });
    assert_eq!(done, ROUNDS);
}

/// A cancellation that reaches a task while it is queued by a yield is seen
/// at its next blocking call: its join says cancelled, and the loop stopped
/// right there (it counted exactly the rounds before).
#[test]
fn a_cancel_while_queued_by_a_yield_is_seen() {
    let rt = common::rt(1);
    rt.block_on(|| {
        for _ in 0..200 {
            let rounds = Arc::new(AtomicUsize::new(0));
            let h = {
                let rounds = rounds.clone();
                ivy::spawn(move || loop {
                    rounds.fetch_add(1, Ordering::SeqCst);
                    ivy::yield_now();
                })
            };
            // Until it has run a round: it is then queued by its yield (one
            // worker: it cannot run while we do).
            while rounds.load(Ordering::SeqCst) == 0 {
                ivy::yield_now();
            }
            let before = rounds.load(Ordering::SeqCst);
            h.cancel();
            let r = h.join();
            assert!(r.as_ref().is_err_and(|e| e.is_cancelled()), "{r:?}");
            // It was resumed once more, only to see the cancellation in its yield.
            assert_eq!(rounds.load(Ordering::SeqCst), before);
        }
    });
}

struct Phoenix;

impl Drop for Phoenix {
    fn drop(&mut self) {
        // Re-creates itself from its destructor: after the last round the
        // task's map is closed, and this `with` panics.
        PHOENIX.with(|_| ());
    }
}

ivy::task_local! {
    static PHOENIX: Phoenix = Phoenix;
    static COUNT: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// A recycled task's context is reset in place (`TaskCtx::reset`), not
/// rebuilt: a task whose task-local map ended closed (destructors kept
/// re-creating a value) hands its allocation to the next spawn on the same
/// worker, which must get an open, empty map; and tasks that never touched a
/// task-local (the end's fast path) leave nothing behind either.
#[test]
fn a_recycled_task_gets_an_open_empty_local_map() {
    let rt = common::rt(1);
    rt.block_on(|| {
        for _ in 0..100 {
            let r = ivy::spawn(|| PHOENIX.with(|_| ())).join();
            let e = r.expect_err("the last destructor round panics");
            assert!(
                e.panic_message().is_some_and(|m| m.contains("task-local")),
                "{e:?}"
            );
            // Reuses the allocation just recycled (one worker, LIFO pool).
            let n = ivy::spawn(|| {
                COUNT.with(|c| c.set(c.get() + 1));
                COUNT.with(|c| c.get())
            })
            .join()
            .unwrap();
            assert_eq!(n, 1, "a fresh task-local, in an open map");
            assert_eq!(ivy::spawn(|| 7).join().unwrap(), 7);
        }
    });
}

/// The ready queue is FIFO (README: "a yielding task goes to the back"), also
/// while it grows (findings/switch.md: it is a ring that doubles when full; it
/// starts at 64). One worker, `n` tasks that each yield: once all have started,
/// they take turns in one fixed order, so what they record is `ROUNDS`
/// repetitions of one permutation of the tasks. Sizes around and above the
/// ring's first capacity, so the growth happens while the ring has wrapped.
#[test]
fn yielding_tasks_take_turns_in_a_fixed_order_while_the_queue_grows() {
    const ROUNDS: usize = 20;
    let rt = common::rt(1);
    for n in [1, 2, 63, 64, 65, 100, 129, 300] {
        for _ in 0..5 {
            let order = rt.block_on(move || {
                let started = Arc::new(AtomicUsize::new(0));
                let order = Arc::new(Mutex::new(Vec::with_capacity(n * ROUNDS)));
                let tasks: Vec<_> = (0..n)
                    .map(|id| {
                        let (started, order) = (started.clone(), order.clone());
                        ivy::spawn(move || {
                            started.fetch_add(1, Ordering::SeqCst);
                            // Until every task is in the queue (none left unstarted).
                            while started.load(Ordering::SeqCst) < n {
                                ivy::yield_now();
                            }
                            for _ in 0..ROUNDS {
                                order.lock().unwrap().push(id);
                                ivy::yield_now();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.join().unwrap();
                }
                Arc::try_unwrap(order).unwrap().into_inner().unwrap()
            });
            assert_eq!(order.len(), n * ROUNDS);
            let first = &order[..n];
            let mut seen = first.to_vec();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n}: not a permutation");
            for (r, round) in order.chunks(n).enumerate() {
                assert_eq!(round, first, "n={n}: round {r} differs from round 0");
            }
        }
    }
}

/// The ready queue keeps its order when it grows with its indices wrapped
/// (the ring doubles when full). One worker: the main task wakes `n` parked
/// tasks in order 0..n; a wake-up by the running task goes to the LIFO slot,
/// and the one it displaces to the back of the ready queue, so they must run
/// in the order n-1 (the slot), then 0, 1, ..., n-2. `offset` yields first
/// move the ring's indices, so the growth (from 64) happens wrapped.
#[test]
fn tasks_woken_in_order_run_in_order_through_the_queue_growth() {
    for n in [2, 63, 64, 65, 66, 100, 200] {
        for offset in [0, 1, 37, 63, 64, 100] {
            let rt = common::rt(1);
            let ran = rt.block_on(move || {
                let ran = Arc::new(Mutex::new(Vec::with_capacity(n)));
                let parked: Arc<Mutex<Vec<Option<Unparker>>>> =
                    Arc::new(Mutex::new((0..n).map(|_| None).collect()));
                let go = Arc::new(AtomicUsize::new(0));
                let tasks: Vec<_> = (0..n)
                    .map(|id| {
                        let (ran, parked, go) = (ran.clone(), parked.clone(), go.clone());
                        ivy::spawn(move || {
                            parked.lock().unwrap()[id] = Some(ivy::park::current_unparker());
                            while go.load(Ordering::SeqCst) == 0 {
                                ivy::park::park();
                            }
                            ran.lock().unwrap().push(id);
                        })
                    })
                    .collect();
                while parked.lock().unwrap().iter().any(Option::is_none) {
                    ivy::yield_now();
                }
                for _ in 0..offset {
                    ivy::yield_now();
                }
                go.store(1, Ordering::SeqCst);
                let unparkers: Vec<Unparker> = parked
                    .lock()
                    .unwrap()
                    .iter_mut()
                    .map(|u| u.take().unwrap())
                    .collect();
                for u in &unparkers {
                    u.unpark();
                }
                for t in tasks {
                    t.join().unwrap();
                }
                Arc::try_unwrap(ran).unwrap().into_inner().unwrap()
            });
            let mut expected = vec![n - 1];
            expected.extend(0..n - 1);
            assert_eq!(ran, expected, "n={n} offset={offset}");
        }
    }
}
