//! tokio's side of the comparison suite (multi-thread runtime, all workers, the
//! driver running inside a spawned task so that it spawns from a worker like
//! ivy's main task does). Same workloads as ivy-bench; see its comments.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_common::{self as bc, Params, Workload};

const WORKLOADS: &[Workload] = &[
    Workload { name: "switch", default_n: 2_000_000, run: switch },
    Workload { name: "spawn_join", default_n: 1_000_000, run: spawn_join },
    Workload { name: "skynet", default_n: 1_000_000, run: skynet },
    Workload { name: "timers", default_n: 1_000_000, run: timers },
    Workload { name: "idle_memory", default_n: 100_000, run: idle_memory },
];

fn main() {
    bc::main("tokio", WORKLOADS);
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// Runs `fut` as a task on a worker (not on the thread calling block_on).
fn drive<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> T {
    rt.block_on(async move { tokio::spawn(fut).await.expect("driver task") })
}

/// Two tasks on the current-thread runtime (tokio's one-thread flavour), each
/// calling `yield_now` n/2 times: ns per switch.
fn switch(p: &Params) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let round = |n: u64| -> Duration {
        rt.block_on(async move {
            let per_task = n / 2;
            let start = Instant::now();
            let a = tokio::spawn(async move {
                for _ in 0..per_task {
                    tokio::task::yield_now().await;
                }
            });
            let b = tokio::spawn(async move {
                for _ in 0..per_task {
                    tokio::task::yield_now().await;
                }
            });
            a.await.expect("switch task a");
            b.await.expect("switch task b");
            start.elapsed()
        })
    };
    if p.warmup {
        round(p.n / 10);
    }
    let d = round(p.n);
    bc::report(p, "ns_per_switch", bc::ns_per(d, p.n / 2 * 2), "ns", None);
    Ok(())
}

fn spawn_join(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        drive(&rt, async move {
            let start = Instant::now();
            let handles: Vec<_> = (0..n).map(|i| tokio::spawn(async move { i })).collect();
            let mut sum = 0u64;
            for h in handles {
                sum += h.await.map_err(|e| format!("join: {e}"))?;
            }
            let d = start.elapsed();
            if sum != n * (n - 1) / 2 {
                return Err(format!("wrong spawn_join sum {sum}"));
            }
            Ok(d)
        })
    };
    if p.warmup {
        round(p.n / 10)?;
    }
    let d = round(p.n)?;
    bc::report(p, "ns_per_task", bc::ns_per(d, p.n), "ns", None);
    Ok(())
}

fn skynet_node(num: u64, size: u64, div: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let sub = size / div;
        let children: Vec<_> = (0..div)
            .map(|i| tokio::spawn(skynet_node(num + i * sub, sub, div)))
            .collect();
        let mut sum = 0;
        for h in children {
            sum += h.await.expect("skynet child");
        }
        sum
    })
}

fn skynet(p: &Params) -> Result<(), String> {
    bc::check_skynet_size(p.n)?;
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> (u64, Duration) {
        drive(&rt, async move {
            let start = Instant::now();
            let sum = skynet_node(0, n, 10).await;
            (sum, start.elapsed())
        })
    };
    if p.warmup {
        let w = Params { n: p.n / 10, ..p.clone() };
        let (sum, _) = round(w.n);
        bc::check_skynet(&w, sum)?;
    }
    let (sum, d) = round(p.n);
    bc::check_skynet(p, sum)?;
    bc::report(p, "total_ms", bc::ms(d), "ms", Some(&sum.to_string()));
    Ok(())
}

fn timers(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64, max_ms: u64| -> Result<Duration, String> {
        drive(&rt, async move {
            let start = Instant::now();
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let d = Duration::from_millis(bc::timer_ms(i, max_ms));
                    tokio::spawn(tokio::time::sleep(d))
                })
                .collect();
            for h in handles {
                h.await.map_err(|e| format!("join: {e}"))?;
            }
            Ok(start.elapsed())
        })
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

fn idle_memory(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let n = p.n;
    let pc = p.clone();
    drive(&rt, async move {
        let started = Arc::new(AtomicU64::new(0));
        let before = bc::rss_bytes();
        let mut handles = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let started = started.clone();
            handles.push(tokio::spawn(async move {
                started.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(bc::IDLE_SLEEP).await;
            }));
        }
        while started.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let after = bc::rss_bytes();
        let per_task = after.saturating_sub(before) as f64 / n as f64;
        bc::report(&pc, "bytes_per_task", per_task, "bytes", None);
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
    });
    Ok(())
}
