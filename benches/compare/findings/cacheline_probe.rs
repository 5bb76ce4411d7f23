// Two threads alternating one AtomicU64: the one-way cost of a cache line moving
// between cores on this machine (findings/sync.md, section 7). rustc -O cacheline_probe.rs && ./cacheline_probe
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
fn main() {
    let n = 2_000_000u64;
    let a = Arc::new(AtomicU64::new(0));
    let b = a.clone();
    let t = std::thread::spawn(move || {
        let mut i = 1;
        while i < 2 * n {
            while b.load(Ordering::Acquire) != i { std::hint::spin_loop(); }
            b.store(i + 1, Ordering::Release);
            i += 2;
        }
    });
    let start = Instant::now();
    let mut i = 0;
    while i < 2 * n {
        a.store(i + 1, Ordering::Release);
        while a.load(Ordering::Acquire) != i + 2 { std::hint::spin_loop(); }
        i += 2;
    }
    let d = start.elapsed();
    t.join().unwrap();
    println!("round trip {:.1} ns, one-way {:.1} ns", d.as_nanos() as f64 / n as f64, d.as_nanos() as f64 / n as f64 / 2.0);
}
