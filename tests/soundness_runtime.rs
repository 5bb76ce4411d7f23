//! A runtime that is gone runs nothing and holds nothing (issue 10, item 6).
//!
//! Spawning through a `Handle` that outlived its `Runtime`, or while the runtime
//! shuts down, or with `ivy_runtime_spawn` racing `ivy_runtime_free`, returns at
//! once a handle whose join reports `Cancelled` (C: `IVY_ECLOSED` from the call, or
//! `IVY_ECANCELED` from the join): never a task queued for workers that are gone,
//! whose join would hang. And a `Handle` kept after shutdown holds none of the
//! workers' fds.
//!
//! Every wait here is bounded (`wait_timeout` with a generous limit), so a
//! regression fails instead of hanging the suite. The tests take one lock: one of
//! them counts the process's open fds.

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::Duration;

use ivy::ffi::{
    ivy_config_t, ivy_runtime_free, ivy_runtime_new, ivy_runtime_spawn, ivy_runtime_t,
    ivy_task_join, ivy_task_t, IVY_FOREVER,
};
use ivy::JoinHandle;

mod common;
use common::{rt, CountDrop};

const LIMIT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Joins `h` within `LIMIT`; fails the test instead of hanging.
fn join_bounded<T>(h: JoinHandle<T>) -> Result<T, ivy::JoinError> {
    assert!(
        h.wait_timeout(LIMIT),
        "task {} never finished: it was queued with no worker to run it",
        h.id()
    );
    h.join()
}

#[test]
fn spawn_after_the_runtime_was_dropped_is_cancelled_at_once() {
    let _serial = serial();
    let rt = rt(2);
    let handle = rt.handle();
    assert_eq!(rt.block_on(|| 1 + 1), 2);
    drop(rt);

    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (r, captured) = (ran.clone(), CountDrop(dropped.clone()));
    let h = handle.spawn(move || {
        let _captured = &captured;
        r.store(true, Ordering::SeqCst);
        7
    });
    // At once: no worker is needed to settle it.
    assert!(h.is_finished());
    let err = join_bounded(h).unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(!ran.load(Ordering::SeqCst), "the closure must not run");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the closure is dropped once"
    );
    assert_eq!(handle.live_tasks(), 0);

    // The same through task::Builder.
    let h = ivy::task::Builder::new()
        .name("late")
        .spawn_on(&handle, || 8)
        .unwrap();
    assert!(join_bounded(h).unwrap_err().is_cancelled());
}

/// A panic while the refused closure's captures are dropped is that task's
/// panic, reported by its join; the spawning thread goes on.
#[test]
fn a_refused_closure_that_panics_in_drop_is_the_tasks_panic() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("drop of a refused closure");
        }
    }
    let _serial = serial();
    let rt = rt(1);
    let handle = rt.handle();
    drop(rt);
    let captured = PanicsOnDrop;
    let spawned = catch_unwind(AssertUnwindSafe(|| {
        handle.spawn(move || {
            let _captured = &captured;
        })
    }));
    let h = spawned.expect("the spawn itself must not panic");
    let err = join_bounded(h).unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.panic_message(), Some("drop of a refused closure"));
}

/// Tasks spawned from a task while shutdown cancels everything (in its cleanup)
/// are refused too; shutdown completes.
#[test]
fn spawns_during_shutdown_are_cancelled_and_shutdown_completes() {
    let _serial = serial();
    for _ in 0..20 {
        let rt = rt(2);
        let handle = rt.handle();
        let late = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Barrier::new(2));
        {
            let (late, started) = (late.clone(), started.clone());
            rt.spawn(move || {
                struct SpawnOnDrop(Arc<Mutex<Vec<JoinHandle<u32>>>>);
                impl Drop for SpawnOnDrop {
                    fn drop(&mut self) {
                        let h = ivy::spawn(|| 5);
                        self.0.lock().unwrap().push(h);
                    }
                }
                let _cleanup = SpawnOnDrop(late);
                started.wait();
                // Parked until shutdown cancels it; then `_cleanup` spawns.
                ivy::sleep(Duration::from_secs(3600));
            });
        }
        started.wait();
        drop(rt);
        let late = std::mem::take(&mut *late.lock().unwrap());
        assert_eq!(late.len(), 1);
        for h in late {
            assert!(join_bounded(h).unwrap_err().is_cancelled());
        }
        assert_eq!(handle.live_tasks(), 0);
    }
}

/// Spawns from several threads race the runtime's drop: every handle joins,
/// with the value exactly when the closure ran, else `Cancelled`.
fn spawn_race(iterations: usize, threads: usize, per_thread: usize) {
    let _serial = serial();
    for _ in 0..iterations {
        let rt = rt(2);
        let handle = rt.handle();
        let ran = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(threads + 1));
        let spawners: Vec<_> = (0..threads)
            .map(|t| {
                let (handle, ran, start) = (handle.clone(), ran.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    (0..per_thread)
                        .map(|i| {
                            let ran = ran.clone();
                            let v = t * per_thread + i;
                            (
                                v,
                                handle.spawn(move || {
                                    ran.fetch_add(1, Ordering::SeqCst);
                                    v
                                }),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        start.wait();
        drop(rt);
        let mut values = 0;
        for s in spawners {
            for (v, h) in s.join().unwrap() {
                match join_bounded(h) {
                    Ok(got) => {
                        assert_eq!(got, v);
                        values += 1;
                    }
                    Err(e) => assert!(e.is_cancelled(), "{e}"),
                }
            }
        }
        assert_eq!(values, ran.load(Ordering::SeqCst));
        assert_eq!(handle.live_tasks(), 0);
    }
}

#[test]
fn spawns_racing_the_runtime_drop_all_join() {
    spawn_race(10, 3, 20);
}

#[test]
fn novg_spawns_racing_the_runtime_drop_all_join_many() {
    spawn_race(300, 3, 50);
}

unsafe extern "C" fn c_task(arg: *mut c_void) -> *mut c_void {
    arg
}

/// The C ABI: `ivy_runtime_spawn` from several threads while another frees the
/// runtime. Each spawn fails with `IVY_ECLOSED` or `IVY_EBADF`, or returns a
/// handle that joins with the task's value or `IVY_ECANCELED`.
fn c_spawn_race(iterations: usize, threads: usize, per_thread: usize) {
    let _serial = serial();
    let (ok, closed, badf, cancelled) = (0, -1001, -9, -125);
    for _ in 0..iterations {
        let config = ivy_config_t {
            workers: 2,
            stack_size: 64 << 10,
            ..Default::default()
        };
        let mut rt = ivy_runtime_t::default();
        // SAFETY: valid config and out pointer.
        assert_eq!(unsafe { ivy_runtime_new(&config, &mut rt) }, ok);
        let start = Arc::new(Barrier::new(threads + 1));
        let spawners: Vec<_> = (0..threads)
            .map(|t| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut joined = 0;
                    for i in 0..per_thread {
                        let v = t * per_thread + i + 1;
                        let mut task = ivy_task_t::default();
                        // SAFETY: a valid function, NULL options, a valid out pointer.
                        let rc = unsafe {
                            ivy_runtime_spawn(
                                rt,
                                Some(c_task),
                                v as *mut c_void,
                                std::ptr::null(),
                                &mut task,
                            )
                        };
                        if rc != ok {
                            assert!(rc == closed || rc == badf, "ivy_runtime_spawn: {rc}");
                            continue;
                        }
                        let mut result: *mut c_void = std::ptr::null_mut();
                        // SAFETY: a handle we own, a valid result pointer.
                        let rc: c_int = unsafe { ivy_task_join(task, &mut result, IVY_FOREVER) };
                        match rc {
                            0 => assert_eq!(result as usize, v),
                            rc => assert_eq!(rc, cancelled, "ivy_task_join"),
                        }
                        joined += 1;
                    }
                    joined
                })
            })
            .collect();
        start.wait();
        assert_eq!(ivy_runtime_free(rt), ok);
        // Bounded: a join that hangs would keep its thread from finishing.
        let deadline = std::time::Instant::now() + LIMIT;
        for s in spawners {
            while !s.is_finished() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "an ivy_task_join hangs after ivy_runtime_free"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            s.join().unwrap();
        }
        assert_eq!(ivy_runtime_free(rt), badf);
    }
}

#[test]
fn c_spawns_racing_runtime_free_all_settle() {
    c_spawn_race(10, 3, 20);
}

#[test]
fn novg_c_spawns_racing_runtime_free_all_settle_many() {
    c_spawn_race(300, 3, 50);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A `Handle` kept after its runtime was dropped holds none of the workers'
/// epoll fds and eventfds, nor do sockets that registered with them.
#[test]
fn a_handle_outliving_its_runtime_holds_no_fds() {
    let _serial = serial();
    // Once per process, ivy opens a pidfd of its own (batched madvise); let a first
    // runtime open it, so that `before` counts it.
    let warm_up = rt(1);
    warm_up.block_on(|| ivy::spawn(|| ()).join().unwrap());
    drop(warm_up);
    let before = open_fds();
    let rt = rt(4);
    let during = open_fds();
    assert!(
        during >= before + 4,
        "4 workers, {before} fds before, {during} with them"
    );
    // A socket pair registered with a worker's poll, kept past the shutdown.
    let (a, b) = rt.block_on(|| {
        let (a, b) = ivy::net::UnixStream::pair().unwrap();
        let mut buf = [0u8; 1];
        // Nothing to read: the read registers the fd, then times out.
        let _ = ivy::timeout(Duration::from_millis(10), || {
            let _ = std::io::Read::read(&mut &a, &mut buf);
        });
        (a, b)
    });
    let handle = rt.handle();
    drop(rt);
    let after = open_fds();
    assert_eq!(
        after,
        before + 2,
        "the socket pair's 2 fds only: the workers' are closed"
    );
    drop((a, b));
    assert_eq!(open_fds(), before);
    // The handle still answers, and refuses work.
    assert_eq!(handle.live_tasks(), 0);
    assert!(join_bounded(handle.spawn(|| ()))
        .unwrap_err()
        .is_cancelled());
    drop(handle);
    assert_eq!(open_fds(), before);
}
