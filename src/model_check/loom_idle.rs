//! The idle/sleeper handshake (`runtime::idle::Idle`): a worker going to sleep
//! racing a producer that pushes work and looks for a worker to wake.
//!
//! The worker does what `Worker::idle` does: stop searching if it was, register
//! as a sleeper and take the final look at the queues
//! (`Idle::sleep_after_final_check`), park if that found nothing, then
//! `wake_self` (and, if a producer picked it, search and stop searching). The
//! producer does what `push_spawned` / `notify_idle` do: push, then
//! `worker_to_notify`, then unpark the chosen worker (the eventfd write of
//! `ReactorHandle::unpark`, here a one-token `Unparker`). A missed wake-up leaves
//! the worker parked with work queued: loom reports that as a deadlock.
//!
//! The queue is modelled as a `VecDeque` under a lock (linearizable), or, in
//! the `*_with_deque_orderings` tests, with the atomics and fences of
//! crossbeam-deque's `Worker::push` / `Stealer::steal` (a Release fence and a
//! Relaxed store of `back`; an Acquire load of `front`, the SeqCst fence of the
//! epoch pin, an Acquire load of `back`): with those, a push and a sleeper's
//! final check are a store-buffering race that only the `SeqCst` fence in
//! `Idle::worker_to_notify` resolves. The rest of crossbeam (buffers, epochs,
//! the injector's blocks) is not part of the model.

use std::collections::VecDeque;

use loom::sync::atomic::{fence, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::Unparker;
use crate::runtime::idle::Idle;

struct World {
    idle: Idle,
    queue: Mutex<VecDeque<u32>>,
    /// Use `deque` (crossbeam's orderings) instead of `queue`.
    deque_orderings: bool,
    deque: Deque,
    /// Each worker's thread, stored by the worker itself before it first
    /// registers as a sleeper (so before anyone can pick it).
    threads: Mutex<Vec<Option<Unparker>>>,
}

impl World {
    fn new(workers: usize) -> Arc<World> {
        World::with(workers, false)
    }

    fn with(workers: usize, deque_orderings: bool) -> Arc<World> {
        Arc::new(World {
            idle: Idle::new(workers),
            queue: Mutex::new(VecDeque::new()),
            deque_orderings,
            deque: Deque::default(),
            threads: Mutex::new(vec![None; workers]),
        })
    }
}

/// The indices of a crossbeam-deque with one owner (the producer) and
/// stealers; task `i` is the one at index `i`.
#[derive(Default)]
struct Deque {
    front: AtomicUsize,
    back: AtomicUsize,
}

impl Deque {
    /// `Worker::push`, by the owner.
    fn push(&self) {
        let b = self.back.load(Ordering::Relaxed);
        fence(Ordering::Release);
        self.back.store(b + 1, Ordering::Relaxed);
    }

    /// `Stealer::steal`.
    fn steal(&self) -> Option<u32> {
        loop {
            let f = self.front.load(Ordering::Acquire);
            fence(Ordering::SeqCst); // `epoch::pin`
            let b = self.back.load(Ordering::Acquire);
            if b <= f {
                return None;
            }
            if self
                .front
                .compare_exchange(f, f + 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                return Some(f as u32);
            }
        }
    }
}

fn pop(world: &World) -> Option<u32> {
    if world.deque_orderings {
        world.deque.steal()
    } else {
        world.queue.lock().unwrap().pop_front()
    }
}

/// `Worker::idle` and the run loop's `next_task` for worker `index`, from "done
/// searching" to "running the first task it finds". Returns that task.
fn worker(world: &World, index: usize, searching: bool, me: Unparker) -> u32 {
    worker_with_timer(world, index, searching, false, me)
}

/// `worker`, whose first sleep may end by its timer (the poll's timeout)
/// rather than by an unpark: it then races a producer that picks it.
fn worker_with_timer(
    world: &World,
    index: usize,
    mut searching: bool,
    mut timer_fires: bool,
    me: Unparker,
) -> u32 {
    world.threads.lock().unwrap()[index] = Some(me.clone());
    loop {
        if searching {
            // `finish_searching(false)`: the spin found nothing.
            searching = false;
            world.idle.stop_searching();
        }
        let found = world.idle.sleep_after_final_check(index, || pop(world));
        if found.is_none() && !std::mem::take(&mut timer_fires) {
            me.park();
        }
        // `wake_from_sleep`: a producer that picked us counted us as searching.
        searching |= !world.idle.wake_self(index);
        // Back in the run loop, `next_task` looks at the queues.
        let Some(task) = found.or_else(|| pop(world)) else {
            continue; // nothing: idle again
        };
        // `run_task` ends the search first; the last searcher to find work wakes
        // the next sleeper, as there may be more.
        if searching && world.idle.stop_searching() {
            notify(world);
        }
        return task;
    }
}

/// `Shared::notify_idle` and the unpark of the chosen worker (the eventfd write
/// of `ReactorHandle::unpark`, here a one-token `Unparker`).
fn notify(world: &World) {
    if let Some(index) = world.idle.worker_to_notify() {
        let thread = world.threads.lock().unwrap()[index].clone();
        thread.expect("a sleeper stored its thread").unpark();
    }
}

/// `push_spawned` + `notify_idle` + the unpark of the chosen worker.
fn producer(world: &World, task: u32) {
    if world.deque_orderings {
        world.deque.push();
    } else {
        world.queue.lock().unwrap().push_back(task);
    }
    notify(world);
}

fn check(worker_was_searching: bool, deque_orderings: bool) {
    loom::model(move || {
        let world = World::with(1, deque_orderings);
        if worker_was_searching {
            assert!(world.idle.try_start_searching(1));
        }
        let w = {
            let world = world.clone();
            Unparker::spawn(move |me| worker(&world, 0, worker_was_searching, me)).0
        };
        // With the deque, the task is its index: 0.
        let task = if deque_orderings { 0 } else { 7 };
        producer(&world, task);
        assert_eq!(w.join().unwrap(), task);
        assert_eq!(world.idle.counts(), (0, 0), "(searching, sleeping)");
    });
}

#[test]
fn a_push_racing_a_worker_going_to_sleep_wakes_it() {
    check(false, false);
}

#[test]
fn a_push_racing_a_worker_going_to_sleep_wakes_it_with_deque_orderings() {
    check(false, true);
}

#[test]
fn a_push_racing_the_last_searcher_giving_up_wakes_it() {
    // The producer may see the worker still searching and wake nobody: then the
    // worker's final check must see the push.
    check(true, false);
}

#[test]
fn a_push_racing_the_last_searcher_giving_up_wakes_it_with_deque_orderings() {
    check(true, true);
}

#[test]
fn a_sleeper_woken_by_its_timer_races_a_producer_picking_it() {
    // `wake_self` against `worker_to_notify`: either the worker deregistered
    // itself first (the producer then finds no sleeper, and the worker's next
    // look at the queue or its next final check sees the push), or the
    // producer picked it and it counts itself as searching. The counters end
    // at zero either way, and the task runs.
    loom::model(|| {
        let world = World::new(1);
        let w = {
            let world = world.clone();
            Unparker::spawn(move |me| worker_with_timer(&world, 0, false, true, me)).0
        };
        producer(&world, 7);
        assert_eq!(w.join().unwrap(), 7);
        assert_eq!(world.idle.counts(), (0, 0), "(searching, sleeping)");
    });
}

#[test]
fn two_workers_two_pushes_no_missed_wake_up() {
    // Two sleepers, two producers: each task is run by some worker, nobody stays
    // parked with work queued.
    loom::model(|| {
        let world = World::new(2);
        let spawn_worker = |index| {
            let world = world.clone();
            Unparker::spawn(move |me| worker(&world, index, false, me)).0
        };
        let w0 = spawn_worker(0);
        let w1 = spawn_worker(1);
        let p = {
            let world = world.clone();
            thread::spawn(move || producer(&world, 1))
        };
        producer(&world, 2);
        p.join().unwrap();
        let mut ran = [w0.join().unwrap(), w1.join().unwrap()];
        ran.sort_unstable();
        assert_eq!(ran, [1, 2]);
        assert_eq!(world.idle.counts(), (0, 0), "(searching, sleeping)");
    });
}
