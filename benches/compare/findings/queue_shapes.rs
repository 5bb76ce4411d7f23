// Queue shapes for round 18 (NOTES.md): P producers, C consumers, one Queue::bounded(CAP),
// W workers (default 2); prints ns per item. Build it as the `main.rs` of a binary crate with
// `ivy = { path = "<this repository>" }`, then run `qk P C CAP N [W]` (e.g. `qk 4 4 1024 2000000`).
use ivy::sync::Queue;
use std::sync::Arc;
use std::time::Instant;
fn main() {
    let a: Vec<u64> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    let (p, c, cap, n, workers) = (a[0], a[1], a[2] as usize, a[3], a.get(4).copied().unwrap_or(2) as usize);
    let rt = ivy::Runtime::builder().workers(workers).build().unwrap();
    let round = |n: u64| {
        rt.block_on(move || {
            let q = Arc::new(Queue::<u64>::bounded(cap));
            let t = Instant::now();
            let ps: Vec<_> = (0..p).map(|k| { let q = q.clone(); ivy::spawn(move || { let mut i = k; while i < n { q.put(i).unwrap(); i += p; } }) }).collect();
            let cs: Vec<_> = (0..c).map(|_| { let q = q.clone(); ivy::spawn(move || { let mut s = 0u64; while let Ok(v) = q.get() { s += v; } s }) }).collect();
            for h in ps { h.join().unwrap(); }
            q.close();
            let s: u64 = cs.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(s, n * (n - 1) / 2);
            t.elapsed()
        })
    };
    round(n / 10);
    let d = round(n);
    println!("{:.1}", d.as_nanos() as f64 / n as f64);
}
