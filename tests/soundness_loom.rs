//! Regression tests for what the loom model checks (src/model_check/) found in
//! the task state machine, through the public API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `ivy::park`'s contract is std's: an unpark that happens before a park makes
/// the park return at once. An unpark that reached a task while it was yielding
/// (running, or queued again by `yield_now`) used to be erased when the worker
/// queued and resumed it, and the next park slept until its timeout (loom:
/// `an_unpark_during_a_yield_is_kept_for_the_next_park`).
#[test]
fn an_unpark_during_yield_now_is_kept_for_the_next_park() {
    // One worker: the unparker can only run while the main task is queued by
    // its `yield_now`, which is exactly the window that lost the token.
    let rt = ivy::Builder::new().workers(1).build().unwrap();
    for round in 0..20 {
        let waited = rt.block_on(|| {
            let me = ivy::park::current_unparker();
            let unparked = Arc::new(AtomicBool::new(false));
            let flag = unparked.clone();
            let unparker = ivy::spawn(move || {
                me.unpark();
                flag.store(true, Ordering::Release);
            });
            while !unparked.load(Ordering::Acquire) {
                ivy::yield_now();
            }
            // The unpark came before this park: it must return at once, not
            // after the (generous) timeout.
            let t0 = Instant::now();
            ivy::park::park_timeout(Duration::from_secs(20));
            let waited = t0.elapsed();
            unparker.join().unwrap();
            waited
        });
        assert!(
            waited < Duration::from_secs(10),
            "round {round}: the park slept {waited:?}: the unpark was lost"
        );
    }
}
