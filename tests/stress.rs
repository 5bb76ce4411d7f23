//! Randomized stress: many tasks doing random yields, sleeps and nested spawns,
//! over many seeds, with exact counts asserted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs one seeded scenario; returns (tasks run, sum of values) which must equal
/// the counts computed independently from the same seed.
fn scenario(seed: u64, top: u64, workers: usize) {
    let rt = ivy::Builder::new().workers(workers).build().unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    let (sum, expected_tasks) = rt.block_on(move || {
        let mut rng = Rng(seed | 1);
        let mut hs = Vec::new();
        let mut expected = 0u64;
        for i in 0..top {
            let action = rng.next() % 8;
            let children = if action == 7 { rng.next() % 4 } else { 0 };
            expected += 1 + children;
            let r = r.clone();
            let child_seed = rng.next() | 1;
            hs.push(ivy::spawn(move || {
                let mut rng = Rng(child_seed);
                r.fetch_add(1, Ordering::Relaxed);
                match action {
                    0..=2 => ivy::yield_now(),
                    3 => ivy::sleep(Duration::from_micros(rng.next() % 2000)),
                    4 => {
                        for _ in 0..(rng.next() % 5) {
                            ivy::yield_now();
                        }
                    }
                    _ => {}
                }
                let kids: Vec<_> = (0..children)
                    .map(|k| {
                        let r = r.clone();
                        ivy::spawn(move || {
                            r.fetch_add(1, Ordering::Relaxed);
                            if k % 2 == 0 {
                                ivy::yield_now();
                            }
                            k
                        })
                    })
                    .collect();
                i + kids.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            }));
        }
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        (sum, expected)
    });
    // Recompute the expected sum from the seed without running anything.
    let mut rng = Rng(seed | 1);
    let mut expected_sum = 0;
    for i in 0..top {
        let action = rng.next() % 8;
        let children = if action == 7 { rng.next() % 4 } else { 0 };
        let _ = rng.next();
        expected_sum += i + (0..children).sum::<u64>();
    }
    assert_eq!(sum, expected_sum, "seed {seed}");
    assert_eq!(ran.load(Ordering::Relaxed), expected_tasks, "seed {seed}");
    drop(rt);
}

#[test]
fn stress_100k_tasks_many_seeds() {
    for seed in 1..=8u64 {
        scenario(seed * 0x9E37_79B9, 100_000, 2);
    }
}

#[test]
fn stress_small_many_seeds_many_worker_counts() {
    for seed in 1..=60u64 {
        scenario(seed * 7919, 2_000, 1 + (seed as usize % 4));
    }
}

#[test]
fn ping_pong_exact_over_many_rounds() {
    // Two tasks hand a token back and forth with park/unpark; exact round count.
    use std::sync::Mutex;
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    for _ in 0..10 {
        let turn = Arc::new(AtomicU64::new(0));
        let parkers: Arc<Mutex<[Option<ivy::park::Unparker>; 2]>> =
            Arc::new(Mutex::new([None, None]));
        const ROUNDS: u64 = 20_000;
        let hs: Vec<_> = (0..2u64)
            .map(|me| {
                let turn = turn.clone();
                let parkers = parkers.clone();
                rt.spawn(move || {
                    parkers.lock().unwrap()[me as usize] = Some(ivy::park::current_unparker());
                    let mut done = 0;
                    while done < ROUNDS {
                        let t = turn.load(Ordering::SeqCst);
                        if t % 2 == me {
                            turn.store(t + 1, Ordering::SeqCst);
                            done += 1;
                            let other = parkers.lock().unwrap()[1 - me as usize].clone();
                            if let Some(o) = other {
                                o.unpark();
                            }
                        } else {
                            ivy::park::park_timeout(Duration::from_millis(10));
                        }
                    }
                    done
                })
            })
            .collect();
        let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 2 * ROUNDS);
        assert_eq!(turn.load(Ordering::SeqCst), 2 * ROUNDS);
    }
}
