//! Helpers shared by the integration tests: each test file that uses them says
//! `mod common;`. Not every file uses every helper, hence the `dead_code` allow.
#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A runtime with `workers` workers and default settings.
pub fn rt(workers: usize) -> ivy::Runtime {
    ivy::Builder::new()
        .workers(workers)
        .build()
        .expect("runtime")
}

/// Counts its drops: adds one to the counter when dropped.
pub struct CountDrop(pub Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts its drops in a borrowed counter (for scoped tasks and bodies).
pub struct CountDropRef<'a>(pub &'a AtomicUsize);

impl Drop for CountDropRef<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Recurses with a 1 KiB frame per call until the stack overflows (it never
/// returns in practice: `u64::MAX` calls are not reachable).
pub fn recurse_until_overflow(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    let buf = [n as u8; 1024];
    std::hint::black_box(&buf);
    recurse_until_overflow(n + 1) + buf[3] as u64
}

/// The child side of an overflow scenario: in a task called `name` on `rt`, with
/// `stack_size` bytes of stack (`None`: the runtime's), runs `before` and then recurses
/// without end. The overflow report stops the process, so this never returns.
pub fn overflow_in_task(
    rt: &ivy::Runtime,
    name: &str,
    stack_size: Option<usize>,
    before: impl FnOnce() + Send + 'static,
) -> ! {
    let mut task = ivy::task::Builder::new().name(name);
    if let Some(bytes) = stack_size {
        task = task.stack_size(bytes);
    }
    let h = task
        .spawn_on(&rt.handle(), move || {
            before();
            recurse_until_overflow(0)
        })
        .unwrap();
    let _ = h.join();
    unreachable!("the overflow must stop the process");
}

/// A command that re-runs this test binary on the one test named `test`
/// (`--exact`, `--nocapture`), to run a scenario in a child process.
pub fn rerun_test(test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture"]);
    cmd
}

/// A command that re-runs this test binary on its child entry test `entry`, in
/// one test thread, with the env var `var` set to `case` (the entry reads it to
/// pick the scenario).
pub fn child_case(entry: &str, var: &str, case: &str) -> Command {
    let mut cmd = rerun_test(entry);
    cmd.arg("--test-threads=1").env(var, case);
    cmd
}

/// Runs `cmd` to completion and returns its output.
pub fn run_child(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn child")
}

/// Asserts that a child run by `child_case` passed: it exited with success
/// after its entry printed "child case done". Failure messages start with
/// `what` and show the child's output.
#[track_caller]
pub fn assert_child_passed(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child case done"),
        "{what}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
}

/// Asserts that the child was stopped by SIGABRT after reporting that task
/// `task` overflowed its 64 KiB stack. Failure messages start with `what`.
#[track_caller]
pub fn assert_overflow_reported(out: &Output, task: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{what}: {stderr}");
    assert!(
        stderr.contains(&format!("ivy: task '{task}'"))
            && stderr.contains("overflowed its stack of 65536 bytes"),
        "{what}: {stderr}"
    );
}

/// This process's threads: id and name (`/proc/self/task/*/comm`). A thread
/// that exits during the walk is left out.
pub fn threads() -> Vec<(libc::pid_t, String)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let tid = e.file_name().to_str()?.parse().ok()?;
            Some((tid, comm.trim_end().to_string()))
        })
        .collect()
}

/// Names of this process's threads.
pub fn thread_names() -> Vec<String> {
    threads().into_iter().map(|(_, name)| name).collect()
}

/// Waits for the moment the `i`th handle of a series is dropped racing its task:
/// in turn at once (racing the task's start), once the task set `running`
/// (racing its body and its end), or once it finished, whatever the machine's
/// speed (valgrind's too).
pub fn wait_for_turn<T>(i: usize, running: &AtomicBool, h: &ivy::JoinHandle<T>) {
    match i % 3 {
        0 => {}
        1 => {
            while !running.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
        _ => {
            while !h.is_finished() {
                std::thread::yield_now();
            }
        }
    }
}
