//! The `hook` feature from Rust: std's blocking calls inside tasks park the
//! task. (Smoke test; the full suite is in the other hook_* files.)

use std::time::{Duration, Instant};

#[test]
fn std_thread_sleep_in_200_tasks_runs_concurrently() {
    let took = ivy::Builder::new()
        .workers(2)
        .build()
        .unwrap()
        .block_on(|| {
            let t0 = Instant::now();
            let hs: Vec<_> = (0..200)
                .map(|_| ivy::spawn(|| std::thread::sleep(Duration::from_millis(50))))
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            t0.elapsed()
        });
    assert!(took >= Duration::from_millis(50));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}
