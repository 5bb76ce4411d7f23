//! The workers' kernel scheduling policy (src/runtime/sched_policy.rs):
//! `SCHED_BATCH` by default, only from `SCHED_OTHER`, workers only, opt-out by
//! `Builder::batch_scheduling(false)` or `IVY_SCHED_BATCH=0`.
//!
//! Each case reads the policy of every worker from the kernel
//! (`sched_getscheduler` on its thread id), so a worker left out fails it, and
//! the policy of a blocking-pool job and of the thread that built the runtime. The
//! cases that depend on the environment run in a child process of this test
//! binary, with the variable set or removed there.

use std::os::raw::c_int;
use std::time::{Duration, Instant};

use ivy::Runtime;

mod common;

const WORKERS: usize = 3;

/// The kernel's policy and nice value of each thread of this process whose
/// name starts with `prefix`, by name.
fn policies(prefix: &str) -> Vec<(String, c_int, c_int)> {
    let mut out: Vec<_> = common::threads()
        .into_iter()
        .filter(|(_, name)| name.starts_with(prefix))
        .map(|(tid, name)| {
            // SAFETY: plain queries of a thread id of this process.
            let (policy, nice) = unsafe {
                (
                    libc::sched_getscheduler(tid),
                    libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t),
                )
            };
            assert!(policy >= 0, "sched_getscheduler({name})");
            (name, policy, nice)
        })
        .collect();
    out.sort();
    out
}

fn own_policy() -> c_int {
    // SAFETY: a query of the calling thread.
    unsafe { libc::sched_getscheduler(0) }
}

fn build(prefix: &str, batch: Option<bool>) -> std::io::Result<Runtime> {
    let mut b = Runtime::builder().workers(WORKERS).thread_name(prefix);
    if let Some(on) = batch {
        b = b.batch_scheduling(on);
    }
    b.build()
}

/// Asserts that all `WORKERS` workers named `prefix-N` have `policy` (and nice
/// `nice`), and that a blocking-pool job and the builder's thread still run
/// under `builder_policy`.
#[track_caller]
fn assert_workers(rt: &Runtime, prefix: &str, policy: c_int, nice: c_int, builder_policy: c_int) {
    // A thread names itself as it starts, so it may not have yet; its policy
    // was set before `build` returned.
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers = loop {
        let workers: Vec<_> = policies(&format!("{prefix}-"))
            .into_iter()
            .filter(|(name, _, _)| name[prefix.len() + 1..].parse::<usize>().is_ok())
            .collect();
        if workers.len() >= WORKERS || Instant::now() > deadline {
            break workers;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let expected: Vec<_> = (0..WORKERS)
        .map(|i| (format!("{prefix}-{i}"), policy, nice))
        .collect();
    assert_eq!(workers, expected);
    // A task sees its worker's policy; a blocking job keeps the pool's.
    let (in_task, in_pool) = rt.block_on(|| {
        let in_pool = ivy::spawn_blocking(own_policy).join().unwrap();
        (own_policy(), in_pool)
    });
    assert_eq!(in_task, policy, "inside a task");
    assert_eq!(in_pool, builder_policy, "a blocking-pool job");
    assert_eq!(
        own_policy(),
        builder_policy,
        "the thread that built the runtime"
    );
}

#[test]
fn workers_run_under_sched_batch_unless_turned_off() {
    let rt = build("spol-on", Some(true)).unwrap();
    assert_workers(&rt, "spol-on", libc::SCHED_BATCH, 0, libc::SCHED_OTHER);
    drop(rt);

    let rt = build("spol-off", Some(false)).unwrap();
    assert_workers(&rt, "spol-off", libc::SCHED_OTHER, 0, libc::SCHED_OTHER);
}

/// A runtime built from a thread under another policy keeps it: the user
/// chose it. From `SCHED_OTHER` at nice 5, the workers keep nice 5.
#[test]
fn a_policy_other_than_sched_other_and_the_nice_value_are_kept() {
    std::thread::spawn(|| {
        // SAFETY: raises this thread's own nice value, which needs no privilege.
        assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) }, 0);
        let rt = build("spol-nice", Some(true)).unwrap();
        assert_workers(&rt, "spol-nice", libc::SCHED_BATCH, 5, libc::SCHED_OTHER);
        drop(rt);

        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: moves this thread to SCHED_IDLE, which needs no privilege;
        // `param` is a valid `sched_param`.
        let moved = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        assert_eq!(moved, 0);
        let rt = build("spol-idle", Some(true)).unwrap();
        assert_workers(&rt, "spol-idle", libc::SCHED_IDLE, 5, libc::SCHED_IDLE);
    })
    .join()
    .unwrap();
}

fn child_entry_case() -> Option<String> {
    std::env::var("IVY_SCHED_POLICY_CHILD").ok()
}

#[test]
fn child_entry() {
    let Some(case) = child_entry_case() else {
        return;
    };
    match case.as_str() {
        "default" => {
            let rt = build("spol-def", None).unwrap();
            assert_workers(&rt, "spol-def", libc::SCHED_BATCH, 0, libc::SCHED_OTHER);
        }
        "env_off" => {
            let rt = build("spol-env", None).unwrap();
            assert_workers(&rt, "spol-env", libc::SCHED_OTHER, 0, libc::SCHED_OTHER);
            // An explicit call wins over the environment.
            drop(rt);
            let rt = build("spol-call", Some(true)).unwrap();
            assert_workers(&rt, "spol-call", libc::SCHED_BATCH, 0, libc::SCHED_OTHER);
        }
        "env_bad" => {
            let Err(err) = build("spol-bad", None) else {
                panic!("a bad value is refused");
            };
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
            assert_eq!(
                err.to_string(),
                "ivy: IVY_SCHED_BATCH=\"perhaps\" is not one of 0, 1, true, false"
            );
            assert!(common::thread_names()
                .iter()
                .all(|n| !n.starts_with("spol-bad")));
            // An explicit call does not read it.
            let rt = build("spol-bad", Some(false)).unwrap();
            assert_workers(&rt, "spol-bad", libc::SCHED_OTHER, 0, libc::SCHED_OTHER);
        }
        other => panic!("unknown case {other}"),
    }
    println!("child case done");
}

fn assert_child_passed(case: &str, env: Option<&str>) {
    let mut cmd = common::child_case("child_entry", "IVY_SCHED_POLICY_CHILD", case);
    match env {
        Some(v) => cmd.env("IVY_SCHED_BATCH", v),
        None => cmd.env_remove("IVY_SCHED_BATCH"),
    };
    common::assert_child_passed(&common::run_child(&mut cmd), &format!("child {case}"));
}

#[test]
fn sched_batch_is_the_default() {
    assert_child_passed("default", None);
    assert_child_passed("default", Some(""));
    assert_child_passed("default", Some("1"));
    assert_child_passed("default", Some("true"));
}

#[test]
fn ivy_sched_batch_0_keeps_sched_other() {
    assert_child_passed("env_off", Some("0"));
    assert_child_passed("env_off", Some("false"));
}

#[test]
fn a_bad_ivy_sched_batch_is_an_error_from_build() {
    assert_child_passed("env_bad", Some("perhaps"));
}
