//! Run order when a task ends and wakes its joiner (worker.rs, "Queues"): the
//! woken joiner waits behind the worker's unstarted tasks, for a bounded number
//! of scheduler ticks, instead of taking the LIFO slot. Through the public API,
//! one worker, exact orders over many runs.

use std::sync::{Arc, Mutex};

/// Fixed by the scheduler (worker.rs `MAX_BEHIND_SPAWNED` = 64 ticks,
/// `SPAWN_INTERVAL` = 8): deferred at the ending task's tick T, the joiner
/// runs at the first checked tick at or past T + 64, so after at least the 63
/// tasks of ticks T+1..T+63...
const BEHIND_AT_LEAST: usize = 63;
/// ...and at most 7 more (the next spawn-interval tick).
const BEHIND_AT_MOST: usize = 63 + 7;

fn fifo_runtime() -> ivy::Runtime {
    ivy::Builder::new()
        .workers(1)
        .fifo_spawns(true)
        .build()
        .unwrap()
}

/// Spawns n tasks that log their index, then joins them in spawn order,
/// logging `1000 + i` after each join returns. Runs inside a task (the joiner).
fn spawn_all_then_join_all(n: usize) -> Vec<usize> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let log = log.clone();
            ivy::spawn(move || log.lock().unwrap().push(i))
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        h.join().unwrap();
        log.lock().unwrap().push(1000 + i);
    }
    let v = log.lock().unwrap().clone();
    v
}

#[test]
fn joiner_woken_by_an_ending_task_runs_after_the_unstarted_tasks() {
    // Before: 0, 1000, 1, 1001, ... (the joiner resumed after every task,
    // found the next one unstarted and parked again).
    let rt = fifo_runtime();
    for _ in 0..200 {
        let log = rt.block_on(|| ivy::spawn(|| spawn_all_then_join_all(20)).join().unwrap());
        let expected: Vec<usize> = (0..20).chain(1000..1020).collect();
        assert_eq!(log, expected);
    }
}

#[test]
fn joiner_behind_unstarted_tasks_waits_a_bounded_number_of_ticks() {
    // The joiner of t0 waits behind 500 unstarted tasks: it must run after at
    // least BEHIND_AT_LEAST and at most BEHIND_AT_MOST of them, not after all.
    const OTHERS: usize = 500;
    const JOINER: usize = usize::MAX;
    let rt = fifo_runtime();
    for _ in 0..100 {
        let log = rt.block_on(|| {
            ivy::spawn(|| {
                let log = Arc::new(Mutex::new(Vec::new()));
                let hs: Vec<_> = (0..=OTHERS)
                    .map(|i| {
                        let log = log.clone();
                        ivy::spawn(move || log.lock().unwrap().push(i))
                    })
                    .collect();
                let mut hs = hs.into_iter();
                hs.next().unwrap().join().unwrap();
                log.lock().unwrap().push(JOINER);
                for h in hs {
                    h.join().unwrap();
                }
                let v = log.lock().unwrap().clone();
                v
            })
            .join()
            .unwrap()
        });
        assert_eq!(log.len(), OTHERS + 2);
        let at = log.iter().position(|&e| e == JOINER).unwrap();
        // Tasks start in spawn order, whatever the joiner does.
        let started: Vec<usize> = log.iter().copied().filter(|&e| e != JOINER).collect();
        assert_eq!(started, (0..=OTHERS).collect::<Vec<_>>());
        // `at` tasks ran before the joiner: t0 and then the ones it waited for.
        let waited = at - 1;
        assert!(
            (BEHIND_AT_LEAST..=BEHIND_AT_MOST).contains(&waited),
            "the joiner waited behind {waited} tasks"
        );
    }
}

#[test]
fn in_order_joins_of_many_tasks_resume_the_joiner_once_per_bound() {
    // n = 1000 tasks joined in order: the joiner resumes (a join marker
    // follows a task's own entry) once per deferral, i.e. once per 64 to 71
    // tasks (the task it parked on, then the ones it waited behind),
    // never once per task, and every task still starts in spawn order.
    let rt = fifo_runtime();
    for _ in 0..20 {
        let n = 1000;
        let log = rt.block_on(move || {
            ivy::spawn(move || spawn_all_then_join_all(n))
                .join()
                .unwrap()
        });
        let started: Vec<usize> = log.iter().copied().filter(|&e| e < 1000).collect();
        assert_eq!(started, (0..n).collect::<Vec<_>>());
        let joins: Vec<usize> = log.iter().copied().filter(|&e| e >= 1000).collect();
        assert_eq!(joins, (1000..1000 + n).collect::<Vec<_>>());
        let resumes = log
            .windows(2)
            .filter(|w| w[0] < 1000 && w[1] >= 1000)
            .count();
        assert!(
            (n / (BEHIND_AT_MOST + 1)..=n / (BEHIND_AT_LEAST + 1) + 2).contains(&resumes),
            "the joiner resumed {resumes} times"
        );
    }
}

#[test]
fn newest_first_spawns_keep_their_order() {
    // The default (newest first): t0, joined first, ends last, so the joiner
    // wakes with nothing unstarted left and the rule never applies.
    let rt = ivy::Builder::new().workers(1).build().unwrap();
    for _ in 0..200 {
        let log = rt.block_on(|| ivy::spawn(|| spawn_all_then_join_all(20)).join().unwrap());
        let expected: Vec<usize> = (0..20).rev().chain(1000..1020).collect();
        assert_eq!(log, expected);
    }
}
