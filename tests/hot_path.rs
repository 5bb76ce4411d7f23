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
