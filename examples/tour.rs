//! A tour of the runtime core: named tasks, sleep, join, panics, cancellation,
//! task-locals, and shutdown of leftover tasks.
//!
//!     cargo run --release --example tour

use std::time::{Duration, Instant};

ivy::task_local! {
    static GREETING: std::cell::RefCell<String> = std::cell::RefCell::new(String::new());
}

fn main() {
    let started = Instant::now();
    let answer = ivy::run(move || {
        // 1. Named tasks that sleep, joined in order.
        let sleepers: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                ivy::task::Builder::new()
                    .name(format!("sleeper-{ms}"))
                    .spawn(move || {
                        ivy::sleep(Duration::from_millis(ms));
                        let me = ivy::current().unwrap();
                        format!("{} (id {}) slept {ms} ms", me.name().unwrap(), me.id())
                    })
                    .unwrap()
            })
            .collect();
        for h in sleepers {
            println!("  {}", h.join().unwrap());
        }

        // 2. A panic is caught and handed to the joiner.
        let err = ivy::spawn(|| -> u32 { panic!("something broke") })
            .join()
            .unwrap_err();
        println!("  a panicking task: {err}");

        // 3. Cancellation reaches a sleeping task at once; its destructors run.
        struct Cleanup;
        impl Drop for Cleanup {
            fn drop(&mut self) {
                println!("  cleanup ran in the cancelled task");
            }
        }
        let h = ivy::spawn(|| {
            let _c = Cleanup;
            ivy::sleep(Duration::from_secs(3600));
        });
        ivy::sleep(Duration::from_millis(5));
        h.cancel();
        println!("  cancelled: {}", h.join().unwrap_err());

        // 4. Task-locals survive blocking calls, per task.
        let hs: Vec<_> = ["hello", "bonjour", "hallo"]
            .into_iter()
            .map(|w| {
                ivy::spawn(move || {
                    GREETING.with(|g| *g.borrow_mut() = w.to_string());
                    ivy::yield_now();
                    ivy::sleep(Duration::from_millis(1));
                    GREETING.with(|g| g.borrow().clone())
                })
            })
            .collect();
        let words: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        println!("  task-locals: {words:?}");

        // 5. 100k tasks, fanned out and joined.
        let t = Instant::now();
        let hs: Vec<_> = (0..100_000u64).map(|i| ivy::spawn(move || i)).collect();
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        println!("  100k tasks summed to {sum} in {:?}", t.elapsed());

        // 6. A leftover task: run() cancels and joins it on the way out.
        ivy::spawn(|| loop {
            ivy::sleep(Duration::from_millis(1));
        });
        42
    });
    println!("ivy::run returned {answer} after {:?}", started.elapsed());
}
