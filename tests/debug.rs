//! Introspection (`Handle::tasks`, `dump`, `metrics`) and debug mode.

mod common;
use std::time::Duration;

use ivy::runtime::debug::{TaskState, WaitReason};

#[test]
fn tasks_snapshot_shows_state_and_wait_reason() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    let h = rt.handle();
    let sleeper = ivy::task::Builder::new()
        .name("sleeper")
        .spawn_on(&h, || ivy::sleep(Duration::from_secs(10)))
        .unwrap();
    let joiner = {
        let target = ivy::task::Builder::new()
            .name("target")
            .spawn_on(&h, || ivy::sleep(Duration::from_secs(10)))
            .unwrap();
        ivy::task::Builder::new()
            .name("joiner")
            .spawn_on(&h, move || target.join().is_ok())
            .unwrap()
    };
    // Wait until all three are parked.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let tasks = loop {
        let t = h.tasks();
        if t.len() == 3 && t.iter().all(|t| t.state == TaskState::Parked) {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tasks never parked: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let by_name = |n: &str| tasks.iter().find(|t| t.name.as_deref() == Some(n)).unwrap();
    assert_eq!(by_name("sleeper").waiting_on, WaitReason::Sleep);
    assert_eq!(by_name("target").waiting_on, WaitReason::Sleep);
    assert_eq!(by_name("joiner").waiting_on, WaitReason::Join);
    assert!(by_name("joiner").worker.is_some());
    let dump = h.dump();
    assert_eq!(dump.lines().count(), 3, "{dump}");
    assert!(
        dump.contains("joiner") && dump.contains("on Join"),
        "{dump}"
    );

    sleeper.cancel();
    assert!(sleeper.join().unwrap_err().is_cancelled());
    joiner.cancel();
    let _ = joiner.join();
    let m = h.metrics();
    assert_eq!(m.workers, 2);
    assert_eq!(m.spawned_tasks, 3);
    assert!(m.completed_tasks >= 2);
}

#[test]
fn metrics_count_exactly() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    let hs: Vec<_> = (0..1000).map(|i| rt.spawn(move || i)).collect();
    for h in hs {
        h.join().unwrap();
    }
    let m = rt.handle().metrics();
    assert_eq!(
        (m.spawned_tasks, m.completed_tasks, m.live_tasks),
        (1000, 1000, 0)
    );
}

/// Debug mode reports a task that hogs its worker, naming it.
#[test]
fn debug_mode_reports_slow_tasks() {
    if std::env::var("IVY_DEBUG_CHILD").is_ok() {
        // Wall-clock thresholds: "main yields quickly" below only holds if the
        // OS does not preempt main for a whole threshold, so the threshold is
        // wide (100 ms) and the hog runs far past it (400 ms).
        let rt = ivy::Builder::new()
            .workers(1)
            .slow_task_threshold(Duration::from_millis(100))
            .build()
            .unwrap();
        rt.block_on(|| {
            ivy::task::Builder::new()
                .name("hog")
                .spawn(|| {
                    let t0 = std::time::Instant::now();
                    while t0.elapsed() < Duration::from_millis(400) {
                        std::hint::spin_loop();
                    }
                })
                .unwrap()
                .join()
                .unwrap();
            // A leftover task, listed at shutdown.
            let _ = ivy::task::Builder::new()
                .name("leftover")
                .spawn(|| ivy::sleep(Duration::from_secs(60)));
            ivy::yield_now();
        });
        return;
    }
    let out = common::run_child(
        common::rerun_test("debug_mode_reports_slow_tasks").env("IVY_DEBUG_CHILD", "1"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ivy debug: task 'hog'") && stderr.contains("without yielding"),
        "{stderr}"
    );
    // Listed whatever it was doing when shutdown came: not started yet (it was
    // missing then, about one run in two), running, or parked in its sleep.
    assert!(
        stderr
            .lines()
            .any(|l| l.trim_start().starts_with("task ") && l.contains(" leftover ")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("task 'main'"),
        "main yields quickly: {stderr}"
    );
}

#[test]
fn dump_names_locks_and_queues() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    let h = rt.handle();
    let m = std::sync::Arc::new(ivy::sync::Mutex::new(0));
    let q: std::sync::Arc<ivy::sync::Queue<u32>> =
        std::sync::Arc::new(ivy::sync::Queue::bounded(1));
    let guard = m.lock();
    let m2 = m.clone();
    let locker = ivy::task::Builder::new()
        .name("locker")
        .spawn_on(&h, move || *m2.lock() += 1)
        .unwrap();
    let q2 = q.clone();
    let getter = ivy::task::Builder::new()
        .name("getter")
        .spawn_on(&h, move || q2.get())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let t = h.tasks();
        let on = |n: &str| {
            t.iter()
                .find(|t| t.name.as_deref() == Some(n))
                .map(|t| t.waiting_on)
        };
        if on("locker") == Some(WaitReason::Lock) && on("getter") == Some(WaitReason::Queue) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{t:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(guard);
    q.put(7).unwrap();
    locker.join().unwrap();
    assert_eq!(getter.join().unwrap().unwrap(), 7);
    assert_eq!(*m.lock(), 1);
}
