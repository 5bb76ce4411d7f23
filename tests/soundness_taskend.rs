//! Regression tests for the end of a task (issue 10, items 2, 3, 5 and 10):
//! a scope child's result and unrun closure are dropped before the scope
//! returns; user code that runs as a task ends (task-local destructors, results
//! nobody joins, closures of tasks cancelled before they started) is guarded, so
//! a panic there is that task's panic and the worker lives on; `panic = "abort"`
//! builds never abort silently.
//!
//! Several tests fail on the old code by killing the worker thread, which made
//! the test hang: `within` turns such a hang into a failure (the margin is
//! generous: the scenarios take milliseconds).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

mod common;
use common::rt;

/// Runs `f` on a helper thread and fails if it does not finish in time (on the
/// old code a dead worker left the scenario waiting forever).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: did not finish (a worker died?)"),
    }
}

/// A value whose destructor reads borrowed data (a heap `Vec`, so that reading it
/// after it was freed is an invalid read under valgrind) and logs when it ran.
/// `pause` makes the destructor block (on an ivy timer, shielded from
/// cancellation), which widens any window in which the scope could return early.
struct Reader<'a> {
    data: &'a Vec<u64>,
    log: &'a Mutex<Vec<String>>,
    pause: bool,
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if self.pause {
            ivy::shield(|| ivy::sleep(Duration::from_millis(1)));
        }
        let sum: u64 = self.data.iter().sum();
        self.log
            .lock()
            .unwrap()
            .push(format!("reader dropped {sum}"));
    }
}

/// Logs that the scope returned, then checks that the `Reader` of `0..=i` had
/// been dropped before that.
#[track_caller]
fn assert_reader_dropped_before_scope_returned(log: &Mutex<Vec<String>>, i: u64) {
    log.lock().unwrap().push("scope returned".to_string());
    let expected = vec![
        format!("reader dropped {}", i * (i + 1) / 2),
        "scope returned".to_string(),
    ];
    assert_eq!(*log.lock().unwrap(), expected, "iteration {i}");
}

/// Item 2: `drop(s.spawn(|| Reader(&data)))`: the result is dropped by the child
/// (its handle is gone) before the scope's count is released.
#[test]
fn scope_child_result_dropped_before_scope_returns() {
    let rt = rt(2);
    rt.block_on(|| {
        for i in 0..200u64 {
            let data: Vec<u64> = (0..=i).collect();
            let log = Mutex::new(Vec::new());
            ivy::scope(|s| {
                drop(s.spawn(|| Reader {
                    data: &data,
                    log: &log,
                    pause: true,
                }));
            })
            .unwrap();
            assert_reader_dropped_before_scope_returned(&log, i);
            drop(data);
        }
    });
}

/// Item 2, the joined and the kept-but-unjoined cases: the result is the
/// handle's (dropped where the handle is dropped, inside the scope).
#[test]
fn scope_child_result_kept_by_handle() {
    let rt = rt(2);
    rt.block_on(|| {
        for i in 0..200u64 {
            let data: Vec<u64> = (0..=i).collect();
            let log = Mutex::new(Vec::new());
            ivy::scope(|s| {
                let joined = s.spawn(|| Reader {
                    data: &data,
                    log: &log,
                    pause: false,
                });
                let kept = s.spawn(|| Reader {
                    data: &data,
                    log: &log,
                    pause: true,
                });
                drop(joined.join().unwrap());
                log.lock().unwrap().push("joined dropped".to_string());
                // `kept` is dropped here, finished or not.
                drop(kept);
            })
            .unwrap();
            log.lock().unwrap().push("scope returned".to_string());
            let log = log.into_inner().unwrap();
            let sum = format!("reader dropped {}", i * (i + 1) / 2);
            assert_eq!(log.len(), 4, "iteration {i}: {log:?}");
            assert_eq!(log[0], sum, "iteration {i}: {log:?}");
            assert_eq!(log[3], "scope returned", "iteration {i}: {log:?}");
            assert!(log.contains(&"joined dropped".to_string()));
            assert_eq!(log.iter().filter(|l| **l == sum).count(), 2);
        }
    });
}

/// Item 3: a child cancelled before it started drops its captures (here a
/// `Reader` whose destructor blocks) before the scope's count is released. One
/// worker: the child cannot start between `spawn` and `cancel`.
#[test]
fn scope_child_cancelled_before_start_drops_captures_first() {
    let rt = rt(1);
    rt.block_on(|| {
        for i in 0..200u64 {
            let data: Vec<u64> = (0..=i).collect();
            let log = Mutex::new(Vec::new());
            let r = ivy::scope(|s| {
                let reader = Reader {
                    data: &data,
                    log: &log,
                    pause: true,
                };
                let h = s.spawn(move || {
                    let _r = reader;
                    unreachable!("the child was cancelled before it started");
                });
                h.cancel();
                let e = h.join().unwrap_err();
                assert!(e.is_cancelled(), "{e:?}");
            });
            assert!(r.is_ok());
            assert_reader_dropped_before_scope_returned(&log, i);
            drop(data);
        }
    });
}

/// Item 3, without a join: the scope itself waits for the captures' drop.
#[test]
fn scope_child_cancelled_unjoined_drops_captures_before_return() {
    let rt = rt(1);
    rt.block_on(|| {
        for i in 0..200u64 {
            let data: Vec<u64> = (0..=i).collect();
            let log = Mutex::new(Vec::new());
            ivy::scope(|s| {
                let reader = Reader {
                    data: &data,
                    log: &log,
                    pause: true,
                };
                s.spawn(move || drop(reader)).cancel();
            })
            .unwrap();
            assert_reader_dropped_before_scope_returned(&log, i);
        }
    });
}

/// A forgotten handle leaks the child's result: it is never dropped, so its
/// destructor can never read the borrowed data after the scope returned (the
/// scope does not wait for the handle either).
#[test]
fn scope_forgotten_handle_leaks_result() {
    let rt = rt(2);
    rt.block_on(|| {
        for i in 0..50u64 {
            let data: Vec<u64> = (0..=i).collect();
            let log = Mutex::new(Vec::new());
            ivy::scope(|s| {
                std::mem::forget(s.spawn(|| Reader {
                    data: &data,
                    log: &log,
                    pause: false,
                }));
            })
            .unwrap();
            log.lock().unwrap().push("scope returned".to_string());
            drop(data);
            assert_eq!(*log.lock().unwrap(), vec!["scope returned".to_string()]);
        }
    });
}

/// A child's result whose destructor panics, dropped by the child because its
/// handle is gone: the child's panic, so the scope's failure.
#[test]
fn scope_child_result_drop_panic_is_child_failure() {
    within("scope result drop panic", || {
        let rt = rt(2);
        rt.block_on(|| {
            for _ in 0..50 {
                let r = ivy::scope(|s| {
                    // The child finishes only after its handle is gone.
                    let (go_tx, go_rx) = ivy::sync::oneshot::channel::<()>();
                    drop(s.spawn(move || {
                        let _ = go_rx.recv();
                        PanicInDrop("scoped result boom")
                    }));
                    drop(go_tx);
                });
                let e = r.unwrap_err();
                assert_eq!(e.panic_message(), Some("scoped result boom"));
            }
            assert_eq!(ivy::spawn(|| 5).join().unwrap(), 5);
        });
    });
}

/// A scope child whose unrun closure panics when dropped: the panic is the
/// child's (its handle and the scope report it), and the worker lives on.
#[test]
fn scope_child_closure_drop_panic_is_child_failure() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("closure drop boom");
        }
    }
    within("scope closure drop panic", || {
        let rt = rt(1);
        rt.block_on(|| {
            let r = ivy::scope(|s| {
                let p = PanicOnDrop;
                let h = s.spawn(move || drop(p));
                h.cancel();
                let e = h.join().unwrap_err();
                assert_eq!(e.panic_message(), Some("closure drop boom"));
            });
            let e = r.unwrap_err();
            assert_eq!(e.panic_message(), Some("closure drop boom"));
            assert_eq!(ivy::spawn(|| 5).join().unwrap(), 5);
        });
    });
}

ivy::task_local! {
    static PANICKY: Cell<Option<PanicInDrop>> = Cell::new(None);
}

struct PanicInDrop(&'static str);
impl Drop for PanicInDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// Item 5: a task-local destructor that panics is the task's panic (`join`
/// returns it) and the worker (the only one) lives on.
#[test]
fn task_local_destructor_panic_is_task_panic() {
    within("task-local destructor panic", || {
        let rt = rt(1);
        for i in 0..50 {
            let h = rt.spawn(move || {
                PANICKY.with(|p| p.set(Some(PanicInDrop("local boom"))));
                i
            });
            let e = h.join().unwrap_err();
            assert!(e.is_panic());
            assert_eq!(e.panic_message(), Some("local boom"));
        }
        assert_eq!(rt.spawn(|| 7).join().unwrap(), 7);
        drop(rt);
    });
}

/// Item 5: a task-local destructor that blocks works, and a cancelled task's
/// task-local destructor that blocks fails cleanly (the call is interrupted);
/// the worker lives on.
#[test]
fn task_local_destructor_may_block() {
    static SLEPT: AtomicUsize = AtomicUsize::new(0);
    static INTERRUPTED: AtomicUsize = AtomicUsize::new(0);
    struct Sleeper;
    impl Drop for Sleeper {
        fn drop(&mut self) {
            let r = std::panic::catch_unwind(|| ivy::sleep(Duration::from_millis(1)));
            match r {
                Ok(()) => SLEPT.fetch_add(1, Ordering::SeqCst),
                Err(p) => {
                    INTERRUPTED.fetch_add(1, Ordering::SeqCst);
                    std::panic::resume_unwind(p)
                }
            };
        }
    }
    ivy::task_local! {
        static SLEEPER: Cell<Option<Sleeper>> = Cell::new(None);
    }
    within("blocking task-local destructor", || {
        let rt = rt(1);
        for _ in 0..20 {
            let h = rt.spawn(|| SLEEPER.with(|s| s.set(Some(Sleeper))));
            h.join().unwrap();
        }
        assert_eq!(SLEPT.load(Ordering::SeqCst), 20);
        for _ in 0..20 {
            let (tx, rx) = ivy::sync::oneshot::channel::<()>();
            let h = rt.spawn(move || {
                SLEEPER.with(|s| s.set(Some(Sleeper)));
                drop(tx);
                ivy::sleep(Duration::from_secs(3600));
            });
            let _ = rx.recv();
            h.cancel();
            assert!(h.join().unwrap_err().is_cancelled());
        }
        assert_eq!(INTERRUPTED.load(Ordering::SeqCst), 20);
        assert_eq!(rt.spawn(|| 7).join().unwrap(), 7);
        drop(rt);
    });
}

/// Item 5: two task-locals whose destructors re-create each other terminate
/// after a bounded number of rounds; what the last round would re-create is
/// refused with a panic, reported as the task's panic.
#[test]
fn task_locals_recreating_each_other_terminate() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct A;
    struct B;
    ivy::task_local! {
        static KEY_A: Cell<Option<A>> = Cell::new(None);
        static KEY_B: Cell<Option<B>> = Cell::new(None);
    }
    impl Drop for A {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            KEY_B.with(|b| b.set(Some(B)));
        }
    }
    impl Drop for B {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            KEY_A.with(|a| a.set(Some(A)));
        }
    }
    within("re-creating task-locals", || {
        let rt = rt(1);
        let e = rt
            .spawn(|| KEY_A.with(|a| a.set(Some(A))))
            .join()
            .unwrap_err();
        let msg = e.panic_message().unwrap().to_string();
        assert!(msg.contains("task-local"), "{msg}");
        let drops = DROPS.load(Ordering::SeqCst);
        assert!((2..=64).contains(&drops), "{drops} drops");
        assert_eq!(rt.spawn(|| 7).join().unwrap(), 7);
        drop(rt);
    });
}

/// Item 5: the result of a task whose handle was dropped is dropped on the
/// task's own stack, guarded: a panic there does not kill the worker.
#[test]
fn unjoined_result_drop_panic_keeps_worker() {
    within("unjoined result drop panic", || {
        let rt = rt(1);
        for _ in 0..50 {
            let (go_tx, go_rx) = ivy::sync::oneshot::channel::<()>();
            let h = rt.spawn(move || {
                let _ = go_rx.recv();
                PanicInDrop("result boom")
            });
            drop(h);
            drop(go_tx);
        }
        assert_eq!(rt.spawn(|| 7).join().unwrap(), 7);
        drop(rt);
    });
}

/// A task's closure and its result share one slot in its body (`body::Stage`),
/// which a handle dropped on another thread must never read while the task takes
/// its closure out of it or stores its result in it. Wherever the handle's drop
/// lands (before the task starts, while it runs, between the store and DONE,
/// after), each capture and each result is dropped exactly once. Under valgrind,
/// a read of the slot at the wrong moment is an invalid read or a double free of
/// the boxes inside.
#[test]
fn handle_dropped_while_its_task_starts_and_ends() {
    static CAPTURES: AtomicUsize = AtomicUsize::new(0);
    static RESULTS: AtomicUsize = AtomicUsize::new(0);
    struct Counted(&'static AtomicUsize, Box<usize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            // Reads the box: a drop of freed memory is an invalid read.
            std::hint::black_box(*self.1);
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn spin(micros: usize) {
        let until = std::time::Instant::now() + Duration::from_micros(micros as u64);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    const N: usize = 1000;
    within("handle drop racing the task's end", || {
        let rt = rt(2);
        for i in 0..N {
            let captured = Counted(&CAPTURES, Box::new(i));
            let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let r = running.clone();
            let h = rt.spawn(move || {
                r.store(true, Ordering::SeqCst);
                let captured = captured;
                spin(i % 3);
                Counted(&RESULTS, Box::new(*captured.1))
            });
            // A third of the drops race the start, a third the end, a third
            // come after it; the spins move them within their window.
            common::wait_for_turn(i, &running, &h);
            match i % 3 {
                0 => spin(i % 20),
                1 => spin(i % 4),
                _ => {}
            }
            drop(h);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while RESULTS.load(Ordering::SeqCst) < N && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(rt);
        assert_eq!(CAPTURES.load(Ordering::SeqCst), N);
        assert_eq!(RESULTS.load(Ordering::SeqCst), N);
    });
}

/// Item 5: the closure of a task cancelled before it started is dropped on the
/// task's stack, guarded: its panic is the task's panic.
#[test]
fn cancelled_unstarted_closure_drop_panic_is_task_panic() {
    within("unstarted closure drop panic", || {
        let rt = rt(1);
        rt.block_on(|| {
            for _ in 0..50 {
                let p = PanicInDrop("closure boom");
                let h = ivy::spawn(move || drop(p));
                h.cancel();
                let e = h.join().unwrap_err();
                assert_eq!(e.panic_message(), Some("closure boom"));
            }
            // Detached: reported on stderr, the worker goes on.
            for _ in 0..10 {
                let p = PanicInDrop("detached closure boom");
                let h = ivy::spawn(move || drop(p));
                h.cancel();
            }
            assert_eq!(ivy::spawn(|| 7).join().unwrap(), 7);
        });
        drop(rt);
    });
}

/// Item 5: the closure of a task cancelled before it started may block in its
/// destructor: shielded, the call works; unshielded, it is interrupted (the
/// task is cancelled) and the task ends cancelled. The worker lives on.
#[test]
fn cancelled_unstarted_closure_drop_may_block() {
    static DONE: AtomicUsize = AtomicUsize::new(0);
    static INTERRUPTED: AtomicUsize = AtomicUsize::new(0);
    struct Blocks {
        shielded: bool,
    }
    impl Drop for Blocks {
        fn drop(&mut self) {
            if self.shielded {
                ivy::shield(|| ivy::sleep(Duration::from_millis(1)));
                DONE.fetch_add(1, Ordering::SeqCst);
            } else {
                INTERRUPTED.fetch_add(1, Ordering::SeqCst);
                ivy::sleep(Duration::from_millis(1));
                unreachable!("a cancelled task's sleep is interrupted");
            }
        }
    }
    within("unstarted closure drop blocks", || {
        let rt = rt(1);
        rt.block_on(|| {
            for i in 0..20 {
                let b = Blocks {
                    shielded: i % 2 == 0,
                };
                let h = ivy::spawn(move || drop(b));
                h.cancel();
                assert!(h.join().unwrap_err().is_cancelled());
            }
            assert_eq!(ivy::spawn(|| 7).join().unwrap(), 7);
        });
        assert_eq!(DONE.load(Ordering::SeqCst), 10);
        assert_eq!(INTERRUPTED.load(Ordering::SeqCst), 10);
        drop(rt);
    });
}

/// Item 5: a task-local destructor that panics while the task is being
/// cancelled by shutdown is reported, not an abort; shutdown completes.
#[test]
fn task_local_destructor_panic_at_shutdown() {
    within("shutdown with panicking task-local", || {
        let rt = rt(1);
        let (tx, rx) = mpsc::channel();
        for _ in 0..10 {
            let tx = tx.clone();
            drop(rt.spawn(move || {
                PANICKY.with(|p| p.set(Some(PanicInDrop("shutdown boom"))));
                tx.send(()).unwrap();
                ivy::sleep(Duration::from_secs(3600));
            }));
        }
        for _ in 0..10 {
            rx.recv().unwrap();
        }
        drop(rt);
    });
}

/// Item 5: the stderr report names the task whose end panicked, when nobody
/// joins it. Runs this test binary again as a child to read its stderr.
#[test]
fn novg_unjoined_end_panic_report_names_task() {
    if std::env::var_os("IVY_TASKEND_CHILD").is_some() {
        let rt = rt(1);
        let (go_tx, go_rx) = ivy::sync::oneshot::channel::<()>();
        let h = ivy::task::Builder::new()
            .name("result-dropper")
            .spawn_on(&rt.handle(), move || {
                let _ = go_rx.recv();
                PanicInDrop("result boom")
            })
            .unwrap();
        drop(h);
        drop(go_tx);
        let h = ivy::task::Builder::new()
            .name("local-dropper")
            .spawn_on(&rt.handle(), || {
                PANICKY.with(|p| p.set(Some(PanicInDrop("local boom"))))
            })
            .unwrap();
        drop(h);
        // Shutdown would cancel them before they start: wait until both ended.
        while rt.handle().live_tasks() != 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(rt);
        return;
    }
    let out = common::run_child(
        common::rerun_test("novg_unjoined_end_panic_report_names_task")
            .env("IVY_TASKEND_CHILD", "1"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("task 'result-dropper' (id")
            && stderr.contains("panicked and nobody joined it: result boom"),
        "{stderr}"
    );
    assert!(
        stderr.contains("task 'local-dropper' (id")
            && stderr.contains("panicked and nobody joined it: local boom"),
        "{stderr}"
    );
}

/// Item 10: a `panic = "abort"` build never aborts silently. Builds
/// tests/panic-abort (its own crate, release profile with panic = "abort",
/// into target/panic-abort) and runs each scenario: `timeout` and `cancel` of a
/// running task abort with a message naming the task and the cause; a task
/// cancelled before it started needs no unwind; shutdown with leftover tasks
/// (also one waiting for its scope's children) completes, lists them, and
/// runs none of their destructors. On the old code every one of these but
/// `cancel-unstarted` ended in a SIGABRT with nothing on stderr.
#[test]
fn novg_panic_abort_builds_never_abort_silently() {
    use std::os::unix::process::ExitStatusExt;
    use std::path::Path;
    use std::process::Command;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target").join("panic-abort");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let build = Command::new(cargo)
        .args(["build", "--release", "--offline", "--manifest-path"])
        .arg(root.join("tests/panic-abort/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        build.status.success(),
        "building tests/panic-abort failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let bin = target.join("release").join("ivy-panic-abort");
    let run = |scenario: &str| {
        let out = Command::new(&bin).arg(scenario).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status, stdout, stderr)
    };
    let refusal = "this program is built with panic = \"abort\", so ivy cannot unwind it";

    let (status, stdout, stderr) = run("timeout");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{stdout}{stderr}");
    assert!(
        stderr.contains("ivy: task 'main' (id ")
            && stderr.contains("reached the deadline of an ivy::timeout")
            && stderr.contains(refusal),
        "{stderr}"
    );
    assert!(!stdout.contains("unreachable"), "{stdout}");

    let (status, stdout, stderr) = run("cancel");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{stdout}{stderr}");
    assert!(
        stderr.contains("ivy: task 'victim' (id ")
            && stderr.contains("was cancelled")
            && stderr.contains(refusal),
        "{stderr}"
    );
    assert!(!stdout.contains("unreachable"), "{stdout}");

    let (status, stdout, stderr) = run("cancel-unstarted");
    assert!(status.success(), "{status:?} {stdout}{stderr}");
    assert!(
        stdout.contains("unstarted cancelled: Err(true)"),
        "{stdout}"
    );

    let (status, stdout, stderr) = run("shutdown");
    assert!(status.success(), "{status:?} {stdout}{stderr}");
    for i in 0..3 {
        assert!(
            stderr.contains(&format!("ivy: shutdown: task 'leftover-{i}' (id ")),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains(refusal) && stderr.contains("its stack is leaked"),
        "{stderr}"
    );
    assert!(
        stdout.contains("leftover joined: cancelled=true"),
        "{stdout}"
    );
    assert!(stdout.contains("shutdown complete"), "{stdout}");
    assert!(!stdout.contains("destructor ran"), "{stdout}");

    let (status, stdout, stderr) = run("shutdown-scope");
    assert!(status.success(), "{status:?} {stdout}{stderr}");
    assert!(
        stderr.contains("ivy: shutdown: task 'scope-parent' (id ")
            && stderr.contains("ivy: shutdown: task 'scope-child' (id "),
        "{stderr}"
    );
    assert!(
        stdout.contains("leftover joined: cancelled=true"),
        "{stdout}"
    );
    assert!(stdout.contains("shutdown complete"), "{stdout}");
    assert!(!stdout.contains("destructor ran"), "{stdout}");
}
