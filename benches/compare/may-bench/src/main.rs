//! may's side of the comparison suite (`may::config().set_workers(W)`, default
//! stack size and pool; the driver runs in a coroutine so that it spawns from a
//! worker like ivy's main task does). Same workloads as ivy-bench.
//!
//! may allocates every coroutine stack as its own mmap with a guard page (two
//! VMAs), so past ~32k live coroutines the kernel's `vm.max_map_count` (65530)
//! makes stack allocation fail and may panics ("failed to alloc sys stack").
//! Such a panic is caught and printed as a `status=fail` result.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_common::{self as bc, Params, Workload};
use may::go;

const WORKLOADS: &[Workload] = &[
    Workload { name: "switch", default_n: 2_000_000, run: switch },
    Workload { name: "spawn_join", default_n: 1_000_000, run: spawn_join },
    Workload { name: "skynet", default_n: 1_000_000, run: skynet },
    Workload { name: "timers", default_n: 1_000_000, run: timers },
    Workload { name: "idle_memory", default_n: 100_000, run: idle_memory },
];

fn main() {
    bc::main("may", WORKLOADS);
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Runs `f` in a coroutine and waits for it; a panic becomes an error.
fn drive<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    go!(f)
        .join()
        .map_err(|e| format!("panic: {}", panic_text(&*e)))
}

fn switch(p: &Params) -> Result<(), String> {
    may::config().set_workers(1);
    let round = |n: u64| -> Duration {
        let per_task = n / 2;
        let start = Instant::now();
        let a = go!(move || {
            for _ in 0..per_task {
                may::coroutine::yield_now();
            }
        });
        let b = go!(move || {
            for _ in 0..per_task {
                may::coroutine::yield_now();
            }
        });
        a.join().expect("switch task a");
        b.join().expect("switch task b");
        start.elapsed()
    };
    if p.warmup {
        round(p.n / 10);
    }
    let d = round(p.n);
    bc::report(p, "ns_per_switch", bc::ns_per(d, p.n / 2 * 2), "ns", None);
    Ok(())
}

fn spawn_join(p: &Params) -> Result<(), String> {
    may::config().set_workers(p.workers);
    let round = |n: u64| -> Result<Duration, String> {
        drive(move || {
            let start = Instant::now();
            let handles: Vec<_> = (0..n).map(|i| go!(move || i)).collect();
            let mut sum = 0u64;
            for h in handles {
                sum += h.join().map_err(|e| format!("join: {}", panic_text(&*e)))?;
            }
            let d = start.elapsed();
            if sum != n * (n - 1) / 2 {
                return Err(format!("wrong spawn_join sum {sum}"));
            }
            Ok(d)
        })?
    };
    if p.warmup {
        round(p.n / 10)?;
    }
    let d = round(p.n)?;
    bc::report(p, "ns_per_task", bc::ns_per(d, p.n), "ns", None);
    Ok(())
}

fn skynet_node(num: u64, size: u64, div: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let sub = size / div;
    let children: Vec<_> = (0..div)
        .map(|i| go!(move || skynet_node(num + i * sub, sub, div)))
        .collect();
    children
        .into_iter()
        .map(|h| match h.join() {
            Ok(v) => v,
            // Re-raise the child's panic (e.g. a failed stack allocation) so the
            // root reports it.
            Err(e) => std::panic::resume_unwind(e),
        })
        .sum()
}

fn skynet(p: &Params) -> Result<(), String> {
    bc::check_skynet_size(p.n)?;
    may::config().set_workers(p.workers);
    let round = |n: u64| -> Result<(u64, Duration), String> {
        drive(move || {
            let start = Instant::now();
            let sum = skynet_node(0, n, 10);
            (sum, start.elapsed())
        })
    };
    if p.warmup {
        let w = Params { n: p.n / 10, ..p.clone() };
        let (sum, _) = round(w.n)?;
        bc::check_skynet(&w, sum)?;
    }
    let (sum, d) = round(p.n)?;
    bc::check_skynet(p, sum)?;
    bc::report(p, "total_ms", bc::ms(d), "ms", Some(&sum.to_string()));
    Ok(())
}

fn timers(p: &Params) -> Result<(), String> {
    may::config().set_workers(p.workers);
    let round = |n: u64, max_ms: u64| -> Result<Duration, String> {
        drive(move || {
            let start = Instant::now();
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let d = Duration::from_millis(bc::timer_ms(i, max_ms));
                    go!(move || may::coroutine::sleep(d))
                })
                .collect();
            for h in handles {
                h.join().map_err(|e| format!("join: {}", panic_text(&*e)))?;
            }
            Ok(start.elapsed())
        })?
    };
    if p.warmup {
        round(p.n / 10, 10)?;
    }
    let (max_ms, sum_ms) = bc::timer_plan(p.n, bc::TIMER_MAX_MS);
    let d = round(p.n, bc::TIMER_MAX_MS)?;
    let check = sum_ms.to_string();
    bc::report(p, "overhead_ms", bc::ms(d) - max_ms as f64, "ms", Some(&check));
    bc::report(p, "peak_rss", bc::peak_rss_bytes() as f64 / (1 << 20) as f64, "MiB", Some(&check));
    Ok(())
}

/// The idle coroutines are not cancelled (may's cancel is `unsafe`): the process
/// exits once the measurement is printed.
fn idle_memory(p: &Params) -> Result<(), String> {
    may::config().set_workers(p.workers);
    let n = p.n;
    let pc = p.clone();
    let result = drive(move || -> Result<(), String> {
        let started = Arc::new(AtomicU64::new(0));
        let before = bc::rss_bytes();
        let mut handles = Vec::with_capacity(n as usize);
        let spawned = catch_unwind(AssertUnwindSafe(|| {
            for _ in 0..n {
                let started = started.clone();
                handles.push(go!(move || {
                    started.fetch_add(1, Ordering::Relaxed);
                    may::coroutine::sleep(bc::IDLE_SLEEP);
                }));
            }
        }));
        if let Err(e) = spawned {
            return Err(format!(
                "spawn failed after {} of {n} coroutines: {}",
                handles.len(),
                panic_text(&*e)
            ));
        }
        while started.load(Ordering::Relaxed) < n {
            may::coroutine::sleep(Duration::from_millis(1));
        }
        let after = bc::rss_bytes();
        let per_task = after.saturating_sub(before) as f64 / n as f64;
        bc::report(&pc, "bytes_per_task", per_task, "bytes", None);
        std::process::exit(0);
    })?;
    if let Err(e) = result {
        bc::fail(p, "bytes_per_task", "bytes", &e);
        std::process::exit(1);
    }
    Ok(())
}
