//! The stack filler (src/stack/refill.rs): while fresh task stacks are being taken, a helper
//! thread faults in the page each new task's first frames will touch, so that a burst of new
//! tasks does not take a page fault each on its worker.
//!
//! Measured through the public API, in child processes (the stack pool is process-wide): one
//! worker starts a burst of tasks that all stay parked, and the worker thread's own minor page
//! faults are counted (`getrusage(RUSAGE_THREAD)` from a task, which runs on that thread). With
//! the filler the worker takes a fraction of a fault per task; with `IVY_STACK_PREFAULT=0`, at
//! least one (the stack page). The tasks have a top reserve, so the page the filler must fault
//! is not the slot's top page: a filler that faulted the wrong page would save nothing here.
//! The spawner pauses between batches, so the filler, which needs a few µs per page, keeps up
//! even on a loaded machine: the test is about where the faults happen, not about speed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 2048;
const BATCH: usize = 64;
const RESERVE: usize = (16 << 10) + 384;

/// This thread's minor page faults so far.
fn thread_faults() -> i64 {
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass, which we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(rc, 0);
    ru.ru_minflt
}

fn filler_threads() -> usize {
    common::thread_names()
        .iter()
        .filter(|name| *name == "ivy-stack-fill")
        .count()
}

/// Runs the burst in a child process and returns the worker's faults per task.
fn faults_per_task(prefault: bool) -> f64 {
    let mut cmd = common::child_case("prefault_child", "IVY_PREFAULT_CHILD", "burst");
    cmd.env_remove("IVY_STACK_GUARD")
        .env_remove("IVY_STACK_GUARD_BUDGET");
    if prefault {
        cmd.env_remove("IVY_STACK_PREFAULT");
    } else {
        cmd.env("IVY_STACK_PREFAULT", "0");
    }
    let out = common::run_child(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("faults per task: ").map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no result in the child's output: {stdout}"));
    line.trim().parse().unwrap()
}

#[test]
fn new_tasks_find_their_first_stack_page_already_faulted_in() {
    if ivy::runtime::stack_guard_mode() != ivy::runtime::StackGuardMode::MadviseGuard {
        // The filler runs only with madvise guards (refill.rs): nothing to measure here.
        eprintln!("skipped: no MADV_GUARD_INSTALL on this kernel");
        return;
    }
    let without = faults_per_task(false);
    let with = faults_per_task(true);
    eprintln!("worker faults per new task: {with:.3} with the filler, {without:.3} without");
    assert!(
        without >= 0.9,
        "without the filler each new task faults its stack page on the worker: {without:.3}"
    );
    // The filler writes one page per slot, the page of the first frames: it
    // takes that fault off the worker (release: 1.17 -> 0.20). A debug build's
    // larger frames touch a second page, which no one prefaults (2.17 -> 1.19):
    // what the filler removes is the same one fault per task.
    assert!(
        without - with >= 0.5,
        "the filler left the worker {with:.3} faults per task (without it: {without:.3})"
    );
}

#[test]
fn prefault_child() {
    let Ok(case) = std::env::var("IVY_PREFAULT_CHILD") else {
        return;
    };
    assert_eq!(case, "burst");
    let prefault = std::env::var("IVY_STACK_PREFAULT").as_deref() != Ok("0");
    let rt = ivy::Builder::new()
        .workers(1)
        .stack_top_reserve(RESERVE)
        .build()
        .unwrap();
    let faults = rt
        .spawn(|| {
            let release = Arc::new(ivy::sync::Event::new());
            let before = thread_faults();
            let mut handles = Vec::with_capacity(TASKS);
            for batch in 0..TASKS / BATCH {
                for i in 0..BATCH {
                    let release = release.clone();
                    handles.push(ivy::spawn(move || {
                        release.wait();
                        batch * BATCH + i
                    }));
                }
                // The new tasks start (and park) while this one sleeps.
                ivy::sleep(Duration::from_millis(10));
            }
            let faults = thread_faults() - before;
            release.set();
            let sum: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(sum, TASKS * (TASKS - 1) / 2);
            faults
        })
        .join()
        .unwrap();
    println!("faults per task: {}", faults as f64 / TASKS as f64);
    if prefault {
        assert_eq!(filler_threads(), 1, "the filler runs during a burst");
        // An idle process holds no filler thread: it exits a second after the last request.
        let start = Instant::now();
        while filler_threads() != 0 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the filler thread is still there after 30 s idle"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        assert_eq!(filler_threads(), 0, "IVY_STACK_PREFAULT=0 starts no filler");
    }
    drop(rt);
}
