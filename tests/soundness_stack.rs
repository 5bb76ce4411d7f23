//! Stack memory comes back after a burst (issue 10, item 8).
//!
//! A burst of tasks that each touch 64 KiB of stack makes the process resident by
//! `TASKS * 64 KiB`. Once they finished, that memory must be returned to the kernel:
//! at once when the runtime is dropped, and within a few seconds (the pool's trim age
//! is 1-2 s) while the runtime stays up but idle. "Returned" means RSS falls back to
//! within 10% of the burst's growth above the level before it.
//!
//! The tests read RSS from /proc/self/statm, so they run one at a time (a lock), and
//! under valgrind not at all (`novg_`: valgrind has its own stacks and heap).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ivy::sync::{Event, WaitGroup};
use ivy::Runtime;

/// 8192 tasks x 64 KiB touched = 512 MiB at the peak.
const TASKS: usize = 8192;
const TOUCHED: usize = 64 << 10;

static SERIAL: Mutex<()> = Mutex::new(());

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf only reads a system constant.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

#[inline(never)]
fn touch_stack() {
    let mut buf = [0u8; TOUCHED];
    std::hint::black_box(&mut buf);
    for i in (0..TOUCHED).step_by(4096) {
        buf[i] = i as u8;
    }
    std::hint::black_box(&mut buf);
}

fn runtime() -> Runtime {
    Runtime::builder()
        .workers(2)
        .stack_size(256 << 10)
        .build()
        .unwrap()
}

/// Runs `TASKS` tasks that are all alive, each with 64 KiB of its stack touched, at
/// one moment; returns the RSS at that moment, after they all finished.
fn burst(rt: &Runtime) -> usize {
    let touched = Arc::new(WaitGroup::new());
    touched.add(TASKS);
    let go = Arc::new(Event::new());
    let finished = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let (touched, go, finished) = (touched.clone(), go.clone(), finished.clone());
            rt.spawn(move || {
                touch_stack();
                touched.done().unwrap();
                go.wait();
                finished.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    touched.wait();
    let peak = rss_bytes();
    go.set();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(finished.load(Ordering::Relaxed), TASKS);
    peak
}

/// A warmed-up runtime and the RSS with it, before any burst.
fn baseline(rt: &Runtime) -> usize {
    // Warm up: the workers' own caches and thread state exist before the baseline.
    for _ in 0..2 {
        let hs: Vec<_> = (0..256).map(|_| rt.spawn(touch_stack)).collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    }
    rss_bytes()
}

fn check(before: usize, peak: usize, after: usize) -> bool {
    assert!(
        peak > before + TASKS * TOUCHED / 2,
        "the burst did not make its stacks resident: before {before}, peak {peak}"
    );
    after <= before + (peak - before) / 10
}

#[test]
fn novg_stack_memory_returns_when_the_runtime_is_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let before = baseline(&rt);
    let peak = burst(&rt);
    drop(rt);
    let after = rss_bytes();
    assert!(
        check(before, peak, after),
        "RSS before the burst {before}, at its peak {peak}, after the runtime was dropped {after}"
    );
}

#[test]
fn novg_stack_memory_returns_while_the_runtime_idles() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let before = baseline(&rt);
    let peak = burst(&rt);
    // Free stacks are discarded once unused for 1-2 s; allow far more.
    let start = Instant::now();
    let mut after = rss_bytes();
    while !check(before, peak, after) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        after = rss_bytes();
    }
    assert!(
        check(before, peak, after),
        "RSS before the burst {before}, at its peak {peak}, {:?} after it {after}",
        start.elapsed()
    );
    drop(rt);
}
