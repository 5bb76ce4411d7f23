//! The idle/sleeper handshake (`runtime::idle::Idle`): a worker going to sleep
//! racing a producer that pushes work and looks for a worker to wake.
//!
//! The worker does what `Worker::idle` does: stop searching if it was, register
//! as a sleeper and take the final look at the queues
//! (`Idle::sleep_after_final_check`), park if that found nothing, then
//! `wake_self` (and, if a producer picked it, search and stop searching). The
//! producer does what `push_spawned` / `notify_idle` do: push, then
//! `worker_to_notify`, then unpark the chosen worker (the eventfd write of
//! `WorkerUnparker`, here a one-token `Unparker`). A missed wake-up leaves
//! the worker parked with work queued: loom reports that as a deadlock.
//!
//! The queue is modelled as a `VecDeque` under a lock, i.e. as linearizable;
//! crossbeam's own memory orderings are not part of the model.

use std::collections::VecDeque;

use loom::sync::{Arc, Mutex};
use loom::thread;

use super::Unparker;
use crate::runtime::idle::Idle;

struct World {
    idle: Idle,
    queue: Mutex<VecDeque<u32>>,
    /// Each worker's thread, stored by the worker itself before it first
    /// registers as a sleeper (so before anyone can pick it).
    threads: Mutex<Vec<Option<Unparker>>>,
}

impl World {
    fn new(workers: usize) -> Arc<World> {
        Arc::new(World {
            idle: Idle::new(workers),
            queue: Mutex::new(VecDeque::new()),
            threads: Mutex::new(vec![None; workers]),
        })
    }
}

fn pop(world: &World) -> Option<u32> {
    world.queue.lock().unwrap().pop_front()
}

/// `Worker::idle` and the run loop's `next_task` for worker `index`, from "done
/// searching" to "running the first task it finds". Returns that task.
fn worker(world: &World, index: usize, mut searching: bool, me: Unparker) -> u32 {
    world.threads.lock().unwrap()[index] = Some(me.clone());
    loop {
        if searching {
            // `finish_searching(false)`: the spin found nothing.
            searching = false;
            world.idle.stop_searching();
        }
        let found = world.idle.sleep_after_final_check(index, || pop(world));
        if found.is_none() {
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
/// of `WorkerUnparker`, here a one-token `Unparker`).
fn notify(world: &World) {
    if let Some(index) = world.idle.worker_to_notify() {
        let thread = world.threads.lock().unwrap()[index].clone();
        thread.expect("a sleeper stored its thread").unpark();
    }
}

/// `push_spawned` + `notify_idle` + the unpark of the chosen worker.
fn producer(world: &World, task: u32) {
    world.queue.lock().unwrap().push_back(task);
    notify(world);
}

fn check(worker_was_searching: bool) {
    loom::model(move || {
        let world = World::new(1);
        if worker_was_searching {
            assert!(world.idle.try_start_searching(1));
        }
        let w = {
            let world = world.clone();
            Unparker::spawn(move |me| worker(&world, 0, worker_was_searching, me)).0
        };
        producer(&world, 7);
        assert_eq!(w.join().unwrap(), 7);
        assert_eq!(world.idle.counts(), (0, 0), "(searching, sleeping)");
    });
}

#[test]
fn a_push_racing_a_worker_going_to_sleep_wakes_it() {
    check(false);
}

#[test]
fn a_push_racing_the_last_searcher_giving_up_wakes_it() {
    // The producer may see the worker still searching and wake nobody: then the
    // worker's final check must see the push.
    check(true);
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
