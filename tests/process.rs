//! Behaviour that ends or reports on the process: stack overflow, and panics that
//! nobody joins. Each case re-runs this test binary as a child with IVY_CHILD set.

use std::time::Duration;

mod common;

fn child(case: &str) -> std::process::Output {
    common::run_child(&mut common::child_case("child_entry", "IVY_CHILD", case))
}

#[test]
fn child_entry() {
    let Ok(case) = std::env::var("IVY_CHILD") else {
        return;
    };
    match case.as_str() {
        "overflow" => {
            let rt = ivy::Builder::new().workers(2).build().unwrap();
            common::overflow_in_task(&rt, "deep-recursion", Some(64 * 1024), || {});
        }
        // The overflow report reads the task's name through the stack header,
        // which points at the name's box in the task's body: the body must
        // outlive the stack even when no handle keeps it.
        "detached_overflow" => {
            let rt = ivy::Builder::new().workers(2).build().unwrap();
            let go = std::sync::Arc::new(ivy::sync::Event::new());
            let name = format!("detached-{}", 7 * 6);
            let g = go.clone();
            let h = ivy::task::Builder::new()
                .name(name)
                .stack_size(64 * 1024)
                .spawn_on(&rt.handle(), move || {
                    g.wait();
                    common::recurse_until_overflow(0)
                })
                .unwrap();
            drop(h);
            go.set();
            std::thread::sleep(Duration::from_secs(30));
            unreachable!("the overflow must stop the process");
        }
        // Handles dropped racing their tasks' panics: before the start, while the
        // body runs, after the end. Each panic must be reported exactly once,
        // by the task's end or by the handle's drop, whichever came second.
        "unjoined_panic_race" => {
            // Silence std's own panic message: it writes to stderr without
            // stderr's lock, and its lines cut the reports this case counts.
            std::panic::set_hook(Box::new(|_| {}));
            let rt = ivy::Builder::new().workers(2).build().unwrap();
            for i in 0..RACE_TASKS {
                let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let r = running.clone();
                let h = rt.spawn(move || {
                    r.store(true, std::sync::atomic::Ordering::SeqCst);
                    std::panic::panic_any(format!("race panic {i}"));
                });
                common::wait_for_turn(i, &running, &h);
                drop(h);
            }
            while rt.handle().live_tasks() > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(rt);
        }
        "unjoined_panic" => {
            ivy::run(|| {
                ivy::task::Builder::new()
                    .name("forgotten")
                    .spawn(|| panic!("nobody listens"))
                    .unwrap();
                // Handshake: wait until it has finished (only this task is
                // left), where a fixed sleep could let shutdown cancel it first.
                let only_main = || {
                    let h = ivy::Handle::current();
                    while h.live_tasks() > 1 {
                        ivy::sleep(Duration::from_millis(1));
                    }
                };
                only_main();
                // A detached task that ends after its handle is gone.
                let h = ivy::spawn(|| {
                    ivy::sleep(Duration::from_millis(10));
                    panic!("late failure")
                });
                drop(h);
                only_main();
                // A joined panic is not reported as unjoined.
                let _ = ivy::task::Builder::new()
                    .name("joined")
                    .spawn(|| panic!("seen by join"))
                    .unwrap()
                    .join();
            });
        }
        other => panic!("unknown child case {other}"),
    }
}

#[test]
fn stack_overflow_stops_the_process_with_a_clear_message() {
    let out = child("overflow");
    common::assert_overflow_reported(&out, "deep-recursion", "stderr");
}

#[test]
fn a_detached_tasks_overflow_is_reported_with_its_name() {
    let out = child("detached_overflow");
    common::assert_overflow_reported(&out, "detached-42", "stderr");
}

/// Tasks in the `unjoined_panic_race` case.
const RACE_TASKS: usize = 300;

#[test]
fn a_panic_whose_handle_is_dropped_racing_its_end_is_reported_once() {
    let out = child("unjoined_panic_race");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    let mut reports = vec![0usize; RACE_TASKS];
    for line in stderr.lines() {
        if let Some((_, n)) = line.split_once("panicked and nobody joined it: race panic ") {
            reports[n.trim().parse::<usize>().expect("a task number")] += 1;
        }
    }
    let wrong: Vec<_> = (0..RACE_TASKS).filter(|&i| reports[i] != 1).collect();
    assert!(
        wrong.is_empty(),
        "tasks not reported exactly once: {:?}",
        wrong.iter().map(|&i| (i, reports[i])).collect::<Vec<_>>()
    );
}

#[test]
fn a_panic_nobody_joins_is_reported_with_the_task_name() {
    let out = child("unjoined_panic");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains("ivy: task 'forgotten' (id ")
            && stderr.contains("panicked and nobody joined it: nobody listens"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("panicked and nobody joined it: late failure"),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("nobody joined it: seen by join"),
        "stderr: {stderr}"
    );
}
