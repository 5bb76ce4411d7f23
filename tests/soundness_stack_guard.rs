//! Unguarded stacks are opt-in (issue 10, item 9).
//!
//! Without `MADV_GUARD_INSTALL` a stack's guard page is an `mprotect` that costs
//! VMAs, within a budget. Past it, a task that needs a new stack is refused with an
//! error naming the cause (task::Builder: `io::Error`; `spawn`: a `JoinError`; C:
//! `IVY_ENOMEM`) unless its runtime was built with `unguarded_stacks(true)`.
//!
//! This kernel has `MADV_GUARD_INSTALL`, so each case runs in a child process of
//! this test binary with `IVY_STACK_GUARD=mprotect` (the documented switch to the
//! fallback) and a tiny `IVY_STACK_GUARD_BUDGET`: the mechanism is chosen once per
//! process, at its first stack.

use std::os::raw::{c_int, c_void};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivy::runtime::{stack_guard_mode, StackGuardMode};
use ivy::sync::{Event, WaitGroup};
use ivy::{JoinHandle, Runtime};

mod common;

const BUDGET: usize = 8;
const LIMIT: Duration = Duration::from_secs(30);

fn child(case: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = common::child_case("child_entry", "IVY_GUARD_CHILD", case);
    cmd.env("IVY_STACK_GUARD", "mprotect")
        .env("IVY_STACK_GUARD_BUDGET", BUDGET.to_string())
        .env_remove("IVY_UNGUARDED_STACKS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::run_child(&mut cmd)
}

fn assert_child_passed(case: &str, env: &[(&str, &str)]) {
    common::assert_child_passed(&child(case, env), &format!("child {case}"));
}

fn one_worker(unguarded: bool) -> Runtime {
    Runtime::builder()
        .workers(1)
        .stack_size(64 << 10)
        .unguarded_stacks(unguarded)
        .build()
        .unwrap()
}

/// Spawns `n` tasks that each hold their stack until `release` is set; returns
/// once all `n` are running.
fn hold_stacks(rt: &Runtime, n: usize, release: &Arc<Event>) -> Vec<JoinHandle<usize>> {
    let started = Arc::new(WaitGroup::new());
    started.add(n);
    let hs = (0..n)
        .map(|i| {
            let (started, release) = (started.clone(), release.clone());
            rt.spawn(move || {
                started.done().unwrap();
                release.wait();
                i
            })
        })
        .collect::<Vec<_>>();
    // A refused task finishes instead of starting: fail, not hang.
    wait_until("the holders to start", || {
        started.count() == 0 || hs.iter().any(|h| h.is_finished())
    });
    if let Some(h) = hs.iter().find(|h| h.is_finished()) {
        panic!("task {} did not get a stack", h.id());
    }
    hs
}

fn assert_names_the_cause(msg: &str) {
    for part in [
        "no guarded task stack is left",
        "IVY_STACK_GUARD=mprotect is set",
        "all 8 mprotect stack guards",
        "unguarded_stacks(true)",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
}

unsafe extern "C" fn c_task(arg: *mut c_void) -> *mut c_void {
    arg
}

/// Creates a C runtime (one worker, 64 KiB stacks) and spawns `c_task(arg)` on
/// it: returns the runtime, the result of `ivy_runtime_spawn` and the task.
fn c_runtime_spawn(arg: *mut c_void) -> (ivy::ffi::ivy_runtime_t, c_int, ivy::ffi::ivy_task_t) {
    let config = ivy::ffi::ivy_config_t {
        workers: 1,
        stack_size: 64 << 10,
        ..Default::default()
    };
    let mut crt = ivy::ffi::ivy_runtime_t::default();
    // SAFETY: valid config and out pointer.
    assert_eq!(unsafe { ivy::ffi::ivy_runtime_new(&config, &mut crt) }, 0);
    let mut task = ivy::ffi::ivy_task_t::default();
    // SAFETY: a valid function, NULL options, a valid out pointer.
    let rc =
        unsafe { ivy::ffi::ivy_runtime_spawn(crt, Some(c_task), arg, std::ptr::null(), &mut task) };
    (crt, rc, task)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn child_entry() {
    let Ok(case) = std::env::var("IVY_GUARD_CHILD") else {
        return;
    };
    match case.as_str() {
        // Past the budget, every spawn path refuses with the cause; freed guarded
        // stacks are reused, so work goes on once tasks finish.
        "refused" => {
            let rt = one_worker(false);
            let handle = rt.handle();
            let release = Arc::new(Event::new());
            let holders = hold_stacks(&rt, BUDGET, &release);
            assert_eq!(stack_guard_mode(), StackGuardMode::Unguarded);

            let err = ivy::task::Builder::new()
                .name("ninth")
                .spawn_on(&handle, || 0)
                .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory);
            assert_names_the_cause(&err.to_string());

            let h = handle.spawn(|| 0);
            assert!(h.is_finished(), "refused at once");
            let err = h.join().unwrap_err();
            assert!(err.is_no_stack(), "{err}");
            assert_names_the_cause(&err.to_string());

            // The C ABI: IVY_ENOMEM from the spawn.
            let (crt, rc, _task) = c_runtime_spawn(std::ptr::null_mut());
            assert_eq!(rc, -12, "IVY_ENOMEM");
            assert_eq!(ivy::ffi::ivy_runtime_free(crt), 0);

            release.set();
            for (i, h) in holders.into_iter().enumerate() {
                assert_eq!(h.join().unwrap(), i);
            }
            // The guarded stacks are free again: as many tasks as before run.
            let release = Arc::new(Event::new());
            let holders = hold_stacks(&rt, BUDGET, &release);
            release.set();
            for (i, h) in holders.into_iter().enumerate() {
                assert_eq!(h.join().unwrap(), i);
            }
        }
        // More tasks at once than the budget, all spawned before any starts: the
        // spawn-time check passes for all, and exactly the surplus is refused at
        // its first run.
        "refused_at_first_run" => {
            let rt = one_worker(false);
            let release = Arc::new(Event::new());
            let started = Arc::new(WaitGroup::new());
            started.add(BUDGET);
            let hs: Vec<_> = (0..BUDGET + 1)
                .map(|i| {
                    let (started, release) = (started.clone(), release.clone());
                    rt.spawn(move || {
                        started.done().unwrap();
                        release.wait();
                        i
                    })
                })
                .collect();
            started.wait();
            wait_until("the refused task", || hs.iter().any(|h| h.is_finished()));
            release.set();
            let mut ran = 0;
            let mut refused = 0;
            for (i, h) in hs.into_iter().enumerate() {
                match h.join() {
                    Ok(v) => {
                        assert_eq!(v, i);
                        ran += 1;
                    }
                    Err(e) => {
                        assert!(e.is_no_stack(), "{e}");
                        assert_names_the_cause(&e.to_string());
                        refused += 1;
                    }
                }
            }
            assert_eq!((ran, refused), (BUDGET, 1));
        }
        // The whole budget carved by one worker serves every worker: free guarded
        // slots wait on the shared lists, not in the carving worker's cache
        // (regression: the other worker was refused while its peer held the
        // budget's free slots). Both workers start some of each round's holders.
        "shared_between_workers" => {
            let rt = Runtime::builder()
                .workers(2)
                .stack_size(64 << 10)
                .build()
                .unwrap();
            let mut homes = std::collections::BTreeSet::new();
            for round in 0..20 {
                let release = Arc::new(Event::new());
                let holders = hold_stacks(&rt, BUDGET, &release);
                for t in rt.handle().tasks() {
                    homes.insert(t.worker);
                }
                release.set();
                for (i, h) in holders.into_iter().enumerate() {
                    assert_eq!(h.join().unwrap(), i, "round {round}");
                }
            }
            assert!(
                homes.len() >= 2,
                "one worker started every holder: {homes:?}"
            );
        }
        // A task refused at its first run never runs, but its closure is still
        // dropped, and that drop may block: it must not block the worker. The
        // drop waits for an event that only a task on the (single) worker sets:
        // had the drop run on the worker's stack, that task could never run and
        // the wait would time out.
        "refused_closure_drop_blocks" => {
            struct WaitsForTheWorker {
                dropping: Arc<Event>,
                go: Arc<Event>,
                ok: Arc<std::sync::atomic::AtomicBool>,
            }
            impl Drop for WaitsForTheWorker {
                fn drop(&mut self) {
                    assert!(ivy::current().is_none(), "dropped off the tasks");
                    self.dropping.set();
                    let woke = self.go.wait_timeout(LIMIT).is_ok();
                    self.ok.store(woke, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let rt = one_worker(false);
            let (dropping, go) = (Arc::new(Event::new()), Arc::new(Event::new()));
            let ok = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (d, g, k) = (dropping.clone(), go.clone(), ok.clone());
            let outcomes = rt.block_on(move || {
                let (dropping, go, ok) = (d, g, k);
                // This task holds one guarded stack, so of the BUDGET tasks it
                // spawns (none can start while it runs on the single worker, and
                // each passes the spawn-time check), exactly one is refused at
                // its first run. A task that runs forgets its guard; the refused
                // one's guard is dropped unrun.
                let hs: Vec<_> = (0..BUDGET)
                    .map(|i| {
                        let guard = WaitsForTheWorker {
                            dropping: dropping.clone(),
                            go: go.clone(),
                            ok: ok.clone(),
                        };
                        let (dropping, go) = (dropping.clone(), go.clone());
                        ivy::spawn(move || {
                            std::mem::forget(guard);
                            dropping.wait();
                            go.set();
                            i
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join()).collect::<Vec<_>>()
            });
            let mut refused = 0;
            for (i, r) in outcomes.into_iter().enumerate() {
                match r {
                    Ok(v) => assert_eq!(v, i),
                    Err(e) => {
                        assert!(e.is_no_stack(), "{e}");
                        refused += 1;
                    }
                }
            }
            assert_eq!(refused, 1);
            assert!(
                ok.load(std::sync::atomic::Ordering::SeqCst),
                "the refused closure's drop was never released: it blocked the worker"
            );
        }
        // A runtime that opted in runs past the budget; one that did not, in the
        // same process, is still refused.
        "opt_in" => {
            let rt = one_worker(true);
            let release = Arc::new(Event::new());
            let holders = hold_stacks(&rt, 4 * BUDGET, &release);
            assert_eq!(stack_guard_mode(), StackGuardMode::Unguarded);

            let strict = one_worker(false);
            let err = ivy::task::Builder::new()
                .spawn_on(&strict.handle(), || 0)
                .unwrap_err();
            assert_names_the_cause(&err.to_string());

            release.set();
            for (i, h) in holders.into_iter().enumerate() {
                assert_eq!(h.join().unwrap(), i);
            }
        }
        // The opt-in from the environment (the C ABI's way): a Rust runtime
        // built without the option, then a C runtime, both past the budget.
        "opt_in_env" => {
            let rt = Runtime::builder()
                .workers(1)
                .stack_size(64 << 10)
                .build()
                .unwrap();
            let release = Arc::new(Event::new());
            let holders = hold_stacks(&rt, 4 * BUDGET, &release);
            assert_eq!(stack_guard_mode(), StackGuardMode::Unguarded);

            let (crt, rc, task) = c_runtime_spawn(7 as *mut c_void);
            assert_eq!(rc, 0);
            let mut result = std::ptr::null_mut();
            // SAFETY: a handle we own, a valid result pointer.
            let rc = unsafe { ivy::ffi::ivy_task_join(task, &mut result, ivy::ffi::IVY_FOREVER) };
            assert_eq!((rc, result as usize), (0, 7));
            assert_eq!(ivy::ffi::ivy_runtime_free(crt), 0);

            release.set();
            for (i, h) in holders.into_iter().enumerate() {
                assert_eq!(h.join().unwrap(), i);
            }
        }
        // An overflow still hits an mprotect guard and is reported.
        "overflow" => {
            let rt = one_worker(false);
            common::overflow_in_task(&rt, "deep-recursion", None, || {});
        }
        "bad_env" => {
            let err = Runtime::builder().workers(1).build().unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("IVY_"), "{err}");
            println!("bad env rejected");
        }
        other => panic!("unknown child case {other}"),
    }
    println!("child case done");
}

#[test]
fn past_the_mprotect_budget_spawns_fail_with_the_cause() {
    assert_child_passed("refused", &[]);
}

#[test]
fn past_the_mprotect_budget_a_task_is_refused_at_its_first_run() {
    assert_child_passed("refused_at_first_run", &[]);
}

#[test]
fn guarded_slots_carved_by_one_worker_serve_every_worker() {
    assert_child_passed("shared_between_workers", &[]);
}

/// A task refused at its first run drops its closure on the blocking pool, not
/// on the worker's stack: a drop that blocks cannot stall the worker.
#[test]
fn a_refused_tasks_closure_may_block_in_its_drop() {
    assert_child_passed("refused_closure_drop_blocks", &[]);
}

#[test]
fn unguarded_stacks_are_an_opt_in_per_runtime() {
    assert_child_passed("opt_in", &[]);
}

#[test]
fn unguarded_stacks_opt_in_from_the_environment() {
    assert_child_passed("opt_in_env", &[("IVY_UNGUARDED_STACKS", "1")]);
}

#[test]
fn overflow_is_reported_with_mprotect_guards() {
    let out = child("overflow", &[]);
    common::assert_overflow_reported(&out, "deep-recursion", "stderr");
}

#[test]
fn bad_guard_settings_are_rejected_by_build() {
    for (k, v) in [
        ("IVY_STACK_GUARD", "sometimes"),
        ("IVY_STACK_GUARD_BUDGET", "many"),
        ("IVY_UNGUARDED_STACKS", "perhaps"),
    ] {
        let out = child("bad_env", &[(k, v)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("bad env rejected"),
            "{k}={v}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
