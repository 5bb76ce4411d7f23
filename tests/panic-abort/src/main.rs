//! Scenarios for a `panic = "abort"` build of ivy, one per run (the argument).
//! tests/soundness_taskend.rs asserts their exit status and stderr.

use std::time::Duration;

/// A destructor that must not run for a task abandoned at shutdown.
struct Loud(&'static str);

impl Drop for Loud {
    fn drop(&mut self) {
        println!("destructor ran: {}", self.0);
    }
}

fn main() {
    let scenario = std::env::args()
        .nth(1)
        .expect("usage: ivy-panic-abort SCENARIO");
    match scenario.as_str() {
        // A deadline needs an unwind to reach its scope: refused, with a message.
        "timeout" => {
            let r = ivy::run(|| {
                ivy::timeout(Duration::from_millis(10), || {
                    ivy::sleep(Duration::from_secs(60))
                })
            });
            println!("unreachable: timeout returned {}", r.is_err());
        }
        // So does an explicit cancellation of a running task.
        "cancel" => {
            ivy::run(|| {
                let (tx, rx) = ivy::sync::oneshot::channel();
                let h = ivy::task::Builder::new()
                    .name("victim")
                    .spawn(move || {
                        let _l = Loud("victim");
                        tx.send(()).unwrap();
                        ivy::sleep(Duration::from_secs(60));
                    })
                    .unwrap();
                rx.recv().unwrap();
                h.cancel();
                let _ = h.join();
            });
            println!("unreachable: cancel returned");
        }
        // A task cancelled before it started needs no unwind: it just works.
        "cancel-unstarted" => {
            let rt = ivy::Runtime::builder().workers(1).build().unwrap();
            let r = rt.block_on(|| {
                let h = ivy::spawn(|| 1);
                h.cancel();
                h.join().map_err(|e| e.is_cancelled())
            });
            println!("unstarted cancelled: {r:?}");
        }
        // Shutdown with leftover tasks: they are abandoned (listed on stderr, their
        // stacks leaked, destructors not run), and shutdown completes.
        "shutdown" => {
            let rt = ivy::Runtime::builder().workers(2).build().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let mut kept = None;
            for i in 0..3 {
                let tx = tx.clone();
                let h = ivy::task::Builder::new()
                    .name(format!("leftover-{i}"))
                    .spawn_on(&rt.handle(), move || {
                        let _l = Loud("leftover");
                        tx.send(()).unwrap();
                        ivy::sleep(Duration::from_secs(60));
                    })
                    .unwrap();
                if i == 0 {
                    kept = Some(h);
                }
            }
            for _ in 0..3 {
                rx.recv().unwrap();
            }
            assert_eq!(rt.spawn(|| 5).join().unwrap(), 5);
            drop(rt);
            let e = kept.unwrap().join().unwrap_err();
            println!("leftover joined: cancelled={}", e.is_cancelled());
            println!("shutdown complete");
        }
        // A leftover task waiting for its scope's children at shutdown is
        // abandoned with them (the children borrow its leaked stack).
        "shutdown-scope" => {
            let rt = ivy::Runtime::builder().workers(2).build().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let h = ivy::task::Builder::new()
                .name("scope-parent")
                .spawn_on(&rt.handle(), move || {
                    let data = [1u64, 2, 3];
                    let _ = ivy::scope(|s| {
                        s.spawn_named(Some("scope-child"), || {
                            let _l = Loud("scope-child");
                            tx.send(data.len()).unwrap();
                            ivy::sleep(Duration::from_secs(60));
                        });
                    });
                })
                .unwrap();
            assert_eq!(rx.recv().unwrap(), 3);
            drop(rt);
            let e = h.join().unwrap_err();
            println!("leftover joined: cancelled={}", e.is_cancelled());
            println!("shutdown complete");
        }
        other => panic!("unknown scenario {other}"),
    }
}
