//! Issue 10, items 11 and 12: debug mode names a task that is stuck *while* it
//! is stuck, and introspection lists every live task, started or not.
//!
//! The watchdog cases run the scenario in a child process (this test binary
//! again, with IVY_DEBUG_SOUNDNESS_CHILD set) to read its stderr while it runs.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivy::runtime::debug::{TaskState, WaitReason};

mod common;
use common::thread_names;

const CHILD_ENV: &str = "IVY_DEBUG_SOUNDNESS_CHILD";

/// Regression: `Handle::tasks()` listed only started tasks, so right after a
/// burst of spawns on a busy worker it listed none of them (and a count of
/// parked tasks read 0 or all depending on how far the workers had got).
#[test]
fn tasks_lists_unstarted_tasks() {
    let rt = ivy::Builder::new().workers(1).build().unwrap();
    let (listed, dump) = rt.block_on(|| {
        // One worker, and this task does not suspend: none of these can start.
        for i in 0..100 {
            ivy::task::Builder::new()
                .name(format!("queued-{i}"))
                .spawn(|| ivy::sleep(Duration::from_secs(3600)))
                .unwrap();
        }
        let h = ivy::Handle::current();
        (h.tasks(), h.dump())
    });
    assert_eq!(listed.len(), 101, "{listed:?}");
    let main = listed.iter().find(|t| t.name.as_deref() == Some("main"));
    let main = main.expect("main listed");
    assert_eq!(main.state, TaskState::Running);
    assert!(main.started);
    assert_eq!(main.worker, Some(0));
    let queued: Vec<_> = listed
        .iter()
        .filter(|t| t.name.as_deref().is_some_and(|n| n.starts_with("queued-")))
        .collect();
    assert_eq!(queued.len(), 100);
    for t in &queued {
        assert_eq!(t.state, TaskState::Scheduled, "{t:?}");
        assert!(!t.started, "{t:?}");
        assert_eq!(t.worker, None, "{t:?}");
        assert_eq!(t.waiting_on, WaitReason::None, "{t:?}");
    }
    assert_eq!(dump.lines().count(), 101, "{dump}");
    assert_eq!(dump.matches("(not started)").count(), 100, "{dump}");
    // Shutdown cancels the queued tasks before they run.
    drop(rt);
}

/// Regression (the "0 parked in 2 of 4 runs" report): with many tasks parked
/// in `sleep_until`, `tasks()` lists every one of them, as `Parked` on `Sleep`,
/// and it lists all of them even before they have started.
#[test]
fn novg_tasks_counts_every_parked_sleeper() {
    const N: usize = 100_000;
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    let h = rt.handle();
    let about_to_sleep = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(3600);
    for _ in 0..N {
        let about_to_sleep = about_to_sleep.clone();
        h.spawn(move || {
            about_to_sleep.fetch_add(1, Ordering::Release);
            ivy::sleep_until(deadline);
        });
    }
    // Every spawn registered the task: all are listed, started or not.
    assert_eq!(h.tasks().len(), N);
    // Handshake: each task counts itself just before it parks; then poll until
    // the last ones have actually suspended (a generous bound, not a timing).
    let bound = Instant::now() + Duration::from_secs(120);
    while about_to_sleep.load(Ordering::Acquire) < N {
        assert!(Instant::now() < bound, "the sleepers never all started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let tasks = loop {
        let tasks = h.tasks();
        if tasks.iter().all(|t| t.state == TaskState::Parked) {
            break tasks;
        }
        assert!(Instant::now() < bound, "the sleepers never all parked");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(tasks.len(), N);
    assert!(tasks
        .iter()
        .all(|t| t.waiting_on == WaitReason::Sleep && t.started && t.worker.is_some()));
    assert_eq!(h.metrics().live_tasks, N);
    drop(rt);
    assert_eq!(h.live_tasks(), 0);
}

/// Registration at spawn, from plain threads (external shards) and from tasks
/// (worker shards) at once: every live task is listed exactly once, and every
/// one leaves the registry when it finishes.
#[test]
fn tasks_lists_every_task_spawned_from_threads_and_tasks() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    let h = rt.handle();
    let spawn_sleepers = |h: &ivy::Handle, n: usize| -> Vec<ivy::JoinHandle<()>> {
        (0..n)
            .map(|_| h.spawn(|| ivy::sleep(Duration::from_secs(3600))))
            .collect()
    };
    let mut all: Vec<ivy::JoinHandle<()>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| s.spawn(|| spawn_sleepers(&h, 100)))
            .collect();
        let from_task = h
            .spawn(move || spawn_sleepers(&ivy::Handle::current(), 100))
            .join()
            .unwrap();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .chain(from_task)
            .collect()
    });
    let listed = h.tasks();
    assert_eq!(listed.len(), 500);
    let mut ids: Vec<_> = listed.iter().map(|t| t.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 500, "sorted by id, each once");
    let mut want: Vec<_> = all.iter().map(|j| j.id()).collect();
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(h.metrics().live_tasks, 500);
    // Finish half of them: exactly those leave the listing.
    let rest = all.split_off(250);
    for j in all {
        j.cancel();
        assert!(j.join().unwrap_err().is_cancelled());
    }
    let mut left: Vec<_> = h.tasks().iter().map(|t| t.id).collect();
    left.sort();
    let mut want: Vec<_> = rest.iter().map(|j| j.id()).collect();
    want.sort();
    assert_eq!(left, want);
    drop(rt);
    assert_eq!(h.live_tasks(), 0);
    assert!(h.tasks().is_empty());
    drop(rest);
}

/// A task that finishes on another worker than the one that spawned it is
/// counted out at once but unlisted from its spawner's registry shard in a
/// batch: while its entry waits, it must never be listed. Tasks yield before
/// they end, so the idle peer steals many of them; the batch (32) is never full
/// when the last ones finish, so some entries always wait. Then the runtime is
/// dropped with entries still waiting: the workers unlist them as they exit
/// (under valgrind: no task is touched after it was freed).
#[test]
fn finished_tasks_are_never_listed_while_their_entries_wait() {
    for round in 0..20 {
        let rt = ivy::Builder::new().workers(2).build().unwrap();
        let h = rt.handle();
        let (listed, live) = rt.block_on(move || {
            let tasks: Vec<_> = (0..200 + round)
                .map(|i| {
                    ivy::spawn(move || {
                        ivy::yield_now();
                        i
                    })
                })
                .collect();
            let sum: usize = tasks.into_iter().map(|t| t.join().unwrap()).sum();
            assert_eq!(sum, (0..200 + round).sum::<usize>());
            let me = ivy::current().unwrap().id();
            let listed: Vec<_> = ivy::Handle::current()
                .tasks()
                .iter()
                .map(|t| t.id)
                .collect();
            assert_eq!(
                listed,
                [me],
                "round {round}: only the running task is listed"
            );
            (listed.len(), ivy::Handle::current().live_tasks())
        });
        assert_eq!((listed, live), (1, 1));
        drop(rt);
        assert!(h.tasks().is_empty());
        assert_eq!(h.live_tasks(), 0);
    }
}

/// The watchdog looks tasks up while they finish, are freed and their slots
/// are reused (a tiny threshold, tasks that each exceed it): under valgrind,
/// any access to a freed task would fail the run.
#[test]
fn watchdog_never_touches_finished_tasks() {
    let rt = ivy::Builder::new()
        .workers(2)
        .slow_task_threshold(Duration::from_millis(1))
        .build()
        .unwrap();
    for round in 0..4u64 {
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                ivy::task::Builder::new()
                    .name(format!("short-{round}-{i}"))
                    .spawn_on(&rt.handle(), move || {
                        std::thread::sleep(Duration::from_millis(3));
                        round * 100 + i
                    })
                    .unwrap()
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), round * 100 + i as u64);
        }
    }
    let m = rt.handle().metrics();
    assert_eq!((m.spawned_tasks, m.completed_tasks), (64, 64));
}

/// Whether `cond` holds within a generous bound (a new thread names itself
/// after `spawn` returns, and an exited one leaves /proc shortly after `join`).
fn eventually(cond: impl Fn() -> bool) -> bool {
    let bound = Instant::now() + Duration::from_secs(30);
    while !cond() {
        if Instant::now() > bound {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

#[test]
fn watchdog_runs_in_debug_mode_only_and_stops_at_shutdown() {
    let has_watchdog = |prefix: &str| {
        // Thread names are cut to 15 bytes: "wdtest-watchdog" fits exactly.
        let name = format!("{prefix}-watchdog");
        let name = &name[..name.len().min(15)];
        thread_names().iter().any(|n| n == name)
    };
    let rt = ivy::Builder::new()
        .workers(1)
        .thread_name("wdtest")
        .debug(true)
        .build()
        .unwrap();
    assert!(eventually(|| has_watchdog("wdtest")));
    drop(rt);
    assert!(eventually(|| !has_watchdog("wdtest")));

    let rt = ivy::Builder::new()
        .workers(1)
        .thread_name("nodebug")
        .debug(false)
        .build()
        .unwrap();
    // Its worker has named itself by the time it ran a task.
    rt.block_on(|| ());
    assert!(thread_names().iter().any(|n| n == "nodebug-0"));
    assert!(!has_watchdog("nodebug"));
    drop(rt);
}

/// The child's side of the watchdog cases.
#[test]
fn child_entry() {
    let Ok(case) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = ivy::Builder::new()
        .workers(1)
        .slow_task_threshold(Duration::from_millis(100))
        .build()
        .unwrap();
    match case.as_str() {
        // A task holds a std::sync::Mutex across ivy::sleep; the next task on
        // the same (only) worker blocks on it: the worker can never run the
        // holder again. A real deadlock: only killing the process ends it.
        "deadlock" => {
            rt.block_on(|| {
                let m = Arc::new(std::sync::Mutex::new(0u32));
                let holder = {
                    let m = m.clone();
                    ivy::task::Builder::new().name("holder").spawn(move || {
                        let mut g = m.lock().unwrap();
                        let m = m.clone();
                        ivy::task::Builder::new()
                            .name("stuck")
                            .spawn(move || *m.lock().unwrap() += 1)
                            .unwrap();
                        // Long, so that `stuck` surely runs while it is held
                        // (however the OS schedules this worker); a short one
                        // would deadlock the same way once `stuck` ran first.
                        ivy::sleep(Duration::from_secs(3600));
                        *g += 1;
                    })
                };
                let _ = holder.unwrap().join();
            });
            unreachable!("the deadlock cannot end");
        }
        // A task blocks its worker in a std call (a std channel receive) until
        // the parent, having seen the watchdog's report, says "go" on stdin.
        "blocked_recv" => {
            let (tx, rx) = mpsc::channel::<()>();
            std::thread::spawn(move || {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).unwrap();
                tx.send(()).unwrap();
            });
            rt.block_on(move || {
                ivy::task::Builder::new()
                    .name("receiver")
                    .spawn(move || rx.recv().unwrap())
                    .unwrap()
                    .join()
                    .unwrap();
            });
            eprintln!("child: done");
        }
        other => panic!("unknown case {other}"),
    }
}

/// A child process that is killed if the test fails before it ends (a
/// deadlocked child would otherwise outlive the test run).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Starts the child for `case`, stderr and stdin piped; its stderr lines
/// arrive on the returned channel.
fn start_child(case: &str) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = common::child_case("child_entry", CHILD_ENV, case)
        .env_remove("IVY_DEBUG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), rx)
}

/// Waits (a generous bound: the machine may be loaded) for a stderr line
/// matching `want`; returns the lines seen up to and including it.
fn wait_for_line(rx: &mpsc::Receiver<String>, want: impl Fn(&str) -> bool) -> Vec<String> {
    let bound = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = bound.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = want(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no such line ({e:?}); stderr so far:\n{}", seen.join("\n")),
        }
    }
}

fn is_stuck_report(line: &str, name: &str) -> bool {
    line.starts_with(&format!("ivy debug: task '{name}' (id "))
        && line.contains("has been running for")
        && line.contains("on worker 0")
        && line.contains("still running")
}

/// Item 11: a worker blocked for good (a std::sync::Mutex held across
/// `ivy::sleep` by a task of the same worker) is named while it is stuck.
/// Before the watchdog nothing at all was printed in this case.
#[test]
fn watchdog_names_a_deadlocked_task_while_stuck() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let (mut child, rx) = start_child("deadlock");
    let seen = wait_for_line(&rx, |l| is_stuck_report(l, "stuck"));
    // Reported while stuck: the child is still alive (it can never finish).
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child ended:\n{}",
        seen.join("\n")
    );
    // Reported again as the run keeps growing (at twice the length).
    let again = wait_for_line(&rx, |l| is_stuck_report(l, "stuck"));
    assert!(child.try_wait().unwrap().is_none());
    let all: Vec<_> = seen.iter().chain(&again).collect();
    assert!(
        !all.iter()
            .any(|l| is_stuck_report(l, "holder") || is_stuck_report(l, "main")),
        "only the running task is named: {all:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Item 11: a task blocked in a std call is named while blocked; then the
/// test unblocks it, and the end-of-run report follows.
#[test]
fn watchdog_names_a_blocked_task_then_it_finishes() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let (mut child, rx) = start_child("blocked_recv");
    let seen = wait_for_line(&rx, |l| is_stuck_report(l, "receiver"));
    assert!(child.try_wait().unwrap().is_none(), "{seen:?}");
    // The report came while the task was blocked; now unblock it.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let rest = wait_for_line(&rx, |l| l == "child: done");
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with("ivy debug: task 'receiver'")
                && l.contains("without yielding on worker 0")
                && !l.contains("still running")),
        "end-of-run report: {rest:?}"
    );
}
