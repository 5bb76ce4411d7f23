//! First placement balances homes (src/runtime/placement.rs): long-lived tasks
//! spawned by one task end up homed evenly over the workers, although a started
//! task never changes worker.
//!
//! The bound is the one placement.rs gives by construction, not a timing
//! margin: while no task ends, every worker's home count stays within
//! `max(LOCAL_FLOOR, gap) + workers` of the least loaded worker's, with
//! `LOCAL_FLOOR = 4` and `gap(n) = max(2, n / 4)`. The spawner itself is one of
//! the counted tasks, so the spawned tasks of one worker are within that bound
//! plus one of an even share.

use std::sync::Arc;

use ivy::sync::Event;

const LOCAL_FLOOR: usize = 4;

fn gap(n: usize) -> usize {
    2usize.max(n >> 2)
}

/// The bound on `|homed on a worker - even share|` for `tasks` spawned tasks.
fn bound(tasks: usize, workers: usize) -> usize {
    // The gap depends on the count it bounds: the smallest `d` with
    // `d >= max(LOCAL_FLOOR, gap(share + d)) + workers + 1` (a fixed point;
    // `gap` grows by a quarter, so it converges).
    let share = tasks.div_ceil(workers) + 1;
    let mut d = 0;
    loop {
        let next = LOCAL_FLOOR.max(gap(share + d)) + workers + 1;
        if next <= d {
            return d;
        }
        d = next;
    }
}

/// Spawns `tasks` tasks named "conn" from one task; each stays parked until the
/// end. `one_at_a_time`: the spawner waits until each new task has started
/// before the next spawn (an accept loop: the spawner parks, so its own worker
/// would start every task at once). Returns how many of them each worker is
/// home to.
fn homes_after_spawning(workers: usize, tasks: usize, one_at_a_time: bool) -> Vec<usize> {
    let rt = ivy::Builder::new().workers(workers).build().unwrap();
    let handle = rt.handle();
    rt.block_on(move || spawn_and_count(&handle, workers, tasks, one_at_a_time))
}

fn spawn_and_count(
    handle: &ivy::Handle,
    workers: usize,
    tasks: usize,
    one_at_a_time: bool,
) -> Vec<usize> {
    {
        let release = Arc::new(Event::new());
        let mut joins = Vec::with_capacity(tasks);
        let mut starts = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let started = Arc::new(Event::new());
            let (s, r) = (started.clone(), release.clone());
            joins.push(
                ivy::task::Builder::new()
                    .name("conn")
                    .spawn(move || {
                        s.set();
                        r.wait();
                    })
                    .unwrap(),
            );
            if one_at_a_time {
                started.wait();
            }
            starts.push(started);
        }
        for s in &starts {
            s.wait();
        }
        let mut per_worker = vec![0usize; workers];
        for t in handle.tasks() {
            if t.name.as_deref() == Some("conn") {
                per_worker[t.worker.expect("started tasks have a home")] += 1;
            }
        }
        release.set();
        for j in joins {
            j.join().unwrap();
        }
        per_worker
    }
}

fn check(workers: usize, tasks: usize, one_at_a_time: bool, iterations: usize) {
    let limit = bound(tasks, workers);
    for i in 0..iterations {
        let homes = homes_after_spawning(workers, tasks, one_at_a_time);
        assert_eq!(homes.iter().sum::<usize>(), tasks);
        let share = tasks as f64 / workers as f64;
        for &h in &homes {
            assert!(
                (h as f64 - share).abs() <= limit as f64,
                "iteration {i}: {tasks} tasks on {workers} workers homed {homes:?}, \
                 allowed {share} +- {limit} (one_at_a_time: {one_at_a_time})"
            );
        }
    }
}

#[test]
fn an_accept_loop_spreads_its_connections_over_two_workers() {
    // Before placement.rs: often all 100 on the spawner's worker.
    check(2, 100, true, 30);
}

#[test]
fn an_accept_loop_spreads_its_connections_over_four_workers() {
    check(4, 100, true, 20);
}

#[test]
fn a_burst_of_spawns_spreads_its_homes() {
    check(2, 200, false, 20);
    check(4, 200, false, 20);
}

#[test]
fn a_thousand_connections_stay_within_an_eighth() {
    // gap(~500) = 125: within ~13% of the even share.
    check(2, 1000, true, 5);
}

#[test]
fn homes_are_counted_out_when_tasks_end() {
    // Round after round on one runtime, as a server sees connections come and
    // go: every round is balanced, so ended tasks left the counts.
    for workers in [2, 4] {
        let rt = ivy::Builder::new().workers(workers).build().unwrap();
        let handle = rt.handle();
        let limit = bound(100, workers);
        rt.block_on(move || {
            for round in 0..20 {
                let homes = spawn_and_count(&handle, workers, 100, round % 2 == 0);
                for &h in &homes {
                    assert!(
                        (h as f64 - 100.0 / workers as f64).abs() <= limit as f64,
                        "round {round}: {homes:?} on {workers} workers, allowed +- {limit}"
                    );
                }
            }
        });
    }
}
