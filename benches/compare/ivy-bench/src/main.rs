//! ivy's side of the comparison suite. See `bench-common` for the CLI and the
//! result-line format, and `benches/compare/README.md` for what each workload
//! measures. Every workload here has a twin in tokio-bench, may-bench, go/ and
//! python/ doing the same work.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_common::{self as bc, Params, Workload};
use ivy::net::{TcpListener, TcpStream};
use ivy::sync::{Mutex, Queue, Semaphore};

/// The workloads ivy implements. Add a row (and the twin in every other system)
/// to extend the suite.
const WORKLOADS: &[Workload] = &[
    Workload {
        name: "switch",
        default_n: 2_000_000,
        run: switch,
    },
    Workload {
        name: "spawn_join",
        default_n: 1_000_000,
        run: spawn_join,
    },
    Workload {
        name: "skynet",
        default_n: 1_000_000,
        run: skynet,
    },
    Workload {
        name: "timers",
        default_n: 1_000_000,
        run: timers,
    },
    Workload {
        name: "idle_memory",
        default_n: 100_000,
        run: idle_memory,
    },
    Workload {
        name: "chan_pingpong",
        default_n: 200_000,
        run: chan_pingpong,
    },
    Workload {
        name: "mpmc_bounded",
        default_n: 2_000_000,
        run: mpmc_bounded,
    },
    Workload {
        name: "mutex_contention",
        default_n: 2_000_000,
        run: mutex_contention,
    },
    Workload {
        name: "semaphore",
        default_n: 1_000_000,
        run: semaphore,
    },
    Workload {
        name: "tcp_echo",
        default_n: 0,
        run: tcp_echo,
    },
    Workload {
        name: "http_hello",
        default_n: 0,
        run: http_hello,
    },
];

fn main() {
    bc::main("ivy", WORKLOADS);
}

/// `IVY_BENCH_FIFO_SPAWNS=1`: spawned tasks start oldest first, as in the
/// Python binding (the spawn-all-then-join-all probe, findings/joinorder.md).
fn runtime(workers: usize) -> Result<ivy::Runtime, String> {
    ivy::Builder::new()
        .workers(workers)
        .fifo_spawns(std::env::var_os("IVY_BENCH_FIFO_SPAWNS").is_some())
        .build()
        .map_err(|e| format!("ivy::Builder::build: {e}"))
}

/// Two tasks on ONE worker, each calling `yield_now` n/2 times: ns per switch.
fn switch(p: &Params) -> Result<(), String> {
    let rt = runtime(1)?;
    let round = |n: u64| -> Duration {
        rt.block_on(move || {
            let per_task = n / 2;
            let start = Instant::now();
            let a = ivy::spawn(move || {
                for _ in 0..per_task {
                    ivy::yield_now();
                }
            });
            let b = ivy::spawn(move || {
                for _ in 0..per_task {
                    ivy::yield_now();
                }
            });
            a.join().expect("switch task a");
            b.join().expect("switch task b");
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

/// Spawn n trivial tasks from the main task, then join them all: ns per task.
fn spawn_join(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        rt.block_on(move || {
            let start = Instant::now();
            let handles: Vec<_> = (0..n).map(|i| ivy::spawn(move || i)).collect();
            let mut sum = 0u64;
            for h in handles {
                sum += h.join().map_err(|e| format!("join: {e}"))?;
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

fn skynet_node(num: u64, size: u64, div: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let sub = size / div;
    let children: Vec<_> = (0..div)
        .map(|i| ivy::spawn(move || skynet_node(num + i * sub, sub, div)))
        .collect();
    children
        .into_iter()
        .map(|h| h.join().expect("skynet child"))
        .sum()
}

/// Skynet: n leaf tasks in a 10-ary tree, each node spawning and joining its 10
/// children: total ms. The sum is checked.
fn skynet(p: &Params) -> Result<(), String> {
    bc::check_skynet_size(p.n)?;
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> (u64, Duration) {
        rt.block_on(move || {
            let start = Instant::now();
            let sum = skynet_node(0, n, 10);
            (sum, start.elapsed())
        })
    };
    if p.warmup {
        let w = Params {
            n: p.n / 10,
            ..p.clone()
        };
        let (sum, _) = round(w.n);
        bc::check_skynet(&w, sum)?;
    }
    let (sum, d) = round(p.n);
    bc::check_skynet(p, sum)?;
    bc::report(p, "total_ms", bc::ms(d), "ms", Some(&sum.to_string()));
    Ok(())
}

/// n tasks each sleeping 1..=1000 ms (splitmix64, seed 42), all joined: total
/// ms, overhead (total minus the longest sleep) and peak RSS; the check is the
/// number of sleeps that completed.
fn timers(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64, max_ms: u64| -> Result<(Duration, u64), String> {
        rt.block_on(move || {
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let d = Duration::from_millis(bc::timer_ms(i, max_ms));
                    let done = done.clone();
                    ivy::spawn(move || {
                        ivy::sleep(d);
                        done.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|e| format!("join: {e}"))?;
            }
            Ok((start.elapsed(), done.load(Ordering::Relaxed)))
        })
    };
    if p.warmup {
        round(p.n / 10, 10)?;
    }
    let (d, done) = round(p.n, bc::TIMER_MAX_MS)?;
    bc::report_timers(p, d, done)
}

/// RSS per idle task: n tasks all parked in a long sleep. Measured from the main
/// task, before spawning and once every task has started; then all are cancelled.
fn idle_memory(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let n = p.n;
    let pc = p.clone();
    let result = rt.block_on(move || -> Result<(), String> {
        let started = Arc::new(AtomicU64::new(0));
        let before = bc::rss_bytes();
        let mut handles = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let started = started.clone();
            handles.push(ivy::spawn(move || {
                started.fetch_add(1, Ordering::Relaxed);
                ivy::sleep(bc::IDLE_SLEEP);
            }));
        }
        let mut polls = 0u64;
        while started.load(Ordering::Relaxed) < n {
            ivy::sleep(Duration::from_millis(1));
            polls += 1;
            if polls.is_multiple_of(500) {
                // A task that finished already could not start (no stack).
                if let Some(i) = handles.iter().position(|h| h.is_finished()) {
                    let h = handles.swap_remove(i);
                    let e = match h.join() {
                        Ok(()) => "an idle task finished early".to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(format!(
                        "{} of {n} tasks started; {e}",
                        started.load(Ordering::Relaxed)
                    ));
                }
            }
        }
        let after = bc::rss_bytes();
        let per_task = after.saturating_sub(before) as f64 / n as f64;
        // Printed before the teardown, so that a hang there loses no result.
        bc::report(&pc, "bytes_per_task", per_task, "bytes", None);
        for h in &handles {
            h.cancel();
        }
        for h in handles {
            let _ = h.join();
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            bc::fail(p, "bytes_per_task", "bytes", &e);
            std::process::exit(1);
        }
    }
}

/// Ping-pong over two `ivy::sync::Queue::bounded(1)`, all workers: ns per round
/// trip.
fn chan_pingpong(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        rt.block_on(move || {
            let ping = Arc::new(Queue::<u64>::bounded(bc::PINGPONG_CAPACITY));
            let pong = Arc::new(Queue::<u64>::bounded(bc::PINGPONG_CAPACITY));
            let echo = {
                let (ping, pong) = (ping.clone(), pong.clone());
                ivy::spawn(move || {
                    while let Ok(v) = ping.get() {
                        if pong.put(v + 1).is_err() {
                            break;
                        }
                    }
                })
            };
            let start = Instant::now();
            for i in 0..n {
                ping.put(i).map_err(|e| format!("ping: {e}"))?;
                let v = pong.get().map_err(|e| format!("pong: {e}"))?;
                if v != i + 1 {
                    return Err(format!("pong {v} for ping {i}"));
                }
            }
            let d = start.elapsed();
            ping.close();
            echo.join().map_err(|e| format!("echo task: {e}"))?;
            Ok(d)
        })
    };
    if p.warmup {
        round(p.n / 10)?;
    }
    let d = round(p.n)?;
    bc::report(p, "ns_per_roundtrip", bc::ns_per(d, p.n), "ns", None);
    Ok(())
}

/// 4 producers and 4 consumers over one `ivy::sync::Queue::bounded(1024)`: ns
/// per item. Producers close the queue when the last one is done.
fn mpmc_bounded(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        rt.block_on(move || {
            let q = Arc::new(Queue::<u64>::bounded(bc::MPMC_CAPACITY));
            let start = Instant::now();
            let producers: Vec<_> = (0..bc::MPMC_PRODUCERS)
                .map(|k| {
                    let q = q.clone();
                    ivy::spawn(move || {
                        for i in (k..n).step_by(bc::MPMC_PRODUCERS as usize) {
                            q.put(i).expect("put");
                        }
                    })
                })
                .collect();
            let consumers: Vec<_> = (0..bc::MPMC_CONSUMERS)
                .map(|_| {
                    let q = q.clone();
                    ivy::spawn(move || {
                        let mut sum = 0u64;
                        while let Ok(v) = q.get() {
                            sum += v;
                        }
                        sum
                    })
                })
                .collect();
            for h in producers {
                h.join().map_err(|e| format!("producer: {e}"))?;
            }
            q.close();
            let mut sum = 0;
            for h in consumers {
                sum += h.join().map_err(|e| format!("consumer: {e}"))?;
            }
            let d = start.elapsed();
            bc::check_sum("mpmc", n, sum)?;
            Ok(d)
        })
    };
    if p.warmup {
        round(p.n / 10)?;
    }
    let d = round(p.n)?;
    bc::report(p, "ns_per_item", bc::ns_per(d, p.n), "ns", None);
    Ok(())
}

/// 64 tasks each doing n/64 `lock; counter += 1; unlock` on one
/// `ivy::sync::Mutex`: ns per lock.
fn mutex_contention(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        rt.block_on(move || {
            let per = n / bc::MUTEX_TASKS;
            let counter = Arc::new(Mutex::new(0u64));
            let start = Instant::now();
            let tasks: Vec<_> = (0..bc::MUTEX_TASKS)
                .map(|_| {
                    let counter = counter.clone();
                    ivy::spawn(move || {
                        for _ in 0..per {
                            *counter.lock() += 1;
                        }
                    })
                })
                .collect();
            for h in tasks {
                h.join().map_err(|e| format!("join: {e}"))?;
            }
            let d = start.elapsed();
            let got = *counter.lock();
            if got != per * bc::MUTEX_TASKS {
                return Err(format!("wrong counter {got}"));
            }
            Ok(d)
        })
    };
    if p.warmup {
        round(p.n / 10)?;
    }
    let d = round(p.n)?;
    bc::report(
        p,
        "ns_per_lock",
        bc::ns_per(d, p.n / bc::MUTEX_TASKS * bc::MUTEX_TASKS),
        "ns",
        None,
    );
    Ok(())
}

/// 64 tasks sharing an `ivy::sync::Semaphore` of 8 permits, each doing n/64
/// times `acquire; yield_now; release` (see `bc::SEM_TASKS`): ns per acquire.
fn semaphore(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        rt.block_on(move || {
            let per = n / bc::SEM_TASKS;
            let sem = Arc::new(Semaphore::new(bc::SEM_PERMITS));
            // Holders right now (checked against the permits), acquisitions in all.
            let inside = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..bc::SEM_TASKS)
                .map(|_| {
                    let (sem, inside, done) = (sem.clone(), inside.clone(), done.clone());
                    ivy::spawn(move || -> Result<(), String> {
                        for _ in 0..per {
                            let _permit = sem.acquire();
                            let now = inside.fetch_add(1, Ordering::Relaxed) + 1;
                            if now > bc::SEM_PERMITS as u64 {
                                return Err(format!(
                                    "{now} holders of {} permits",
                                    bc::SEM_PERMITS
                                ));
                            }
                            ivy::yield_now();
                            inside.fetch_sub(1, Ordering::Relaxed);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in tasks {
                h.join().map_err(|e| format!("join: {e}"))??;
            }
            let d = start.elapsed();
            let got = done.load(Ordering::Relaxed);
            if got != per * bc::SEM_TASKS || sem.available_permits() != bc::SEM_PERMITS {
                return Err(format!(
                    "wrong count {got} or permits {}",
                    sem.available_permits()
                ));
            }
            Ok(d)
        })
    };
    if p.warmup {
        round(p.n / 10)?;
    }
    let d = round(p.n)?;
    let ops = p.n / bc::SEM_TASKS * bc::SEM_TASKS;
    bc::report(p, "ns_per_acquire", bc::ns_per(d, ops), "ns", None);
    Ok(())
}

/// Server workloads: binds 127.0.0.1:`--port`, announces the port, then accepts
/// forever, one task per connection running `serve` (TCP_NODELAY set). Runs
/// until the process is killed.
fn serve_forever(p: &Params, serve: fn(TcpStream) -> std::io::Result<()>) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let port = p.port;
    let workers = p.workers;
    rt.block_on(move || -> Result<(), String> {
        let listener = TcpListener::bind((bc::SERVER_HOST, port))
            .map_err(|e| format!("bind {}:{port}: {e}", bc::SERVER_HOST))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        bc::listening(port);
        let placement = std::env::var_os("IVY_BENCH_PLACEMENT").is_some();
        if placement {
            // Diagnostics (placement.py): how many connection tasks each worker
            // is home to, every 250 ms while it changes. From a plain thread: a
            // task would be one more home for the placement to balance.
            let handle = ivy::Handle::current();
            std::thread::spawn(move || {
                let mut last = Vec::new();
                loop {
                    std::thread::sleep(Duration::from_millis(250));
                    let mut per_worker = vec![0usize; workers.max(1)];
                    for t in handle.tasks() {
                        if let (Some(w), Some("conn")) = (t.worker, t.name.as_deref()) {
                            if let Some(n) = per_worker.get_mut(w) {
                                *n += 1;
                            }
                        }
                    }
                    if per_worker != last {
                        eprintln!("ivy-bench: conn tasks per worker {per_worker:?}");
                        last = per_worker;
                    }
                }
            });
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let conn = move || {
                        let _ = stream.set_nodelay(true);
                        let _ = serve(stream);
                    };
                    if placement {
                        // Named, so the diagnostics can count them.
                        ivy::task::Builder::new()
                            .name("conn")
                            .spawn(conn)
                            .map_err(|e| format!("spawn: {e}"))?;
                    } else {
                        ivy::spawn(conn);
                    }
                }
                Err(e) => {
                    // EMFILE and the like: say so, back off, keep serving.
                    eprintln!("ivy-bench: accept: {e}");
                    ivy::sleep(Duration::from_millis(10));
                }
            }
        }
    })
}

/// TCP echo server: reads up to 4 KiB, writes back exactly that, until EOF.
fn tcp_echo(p: &Params) -> Result<(), String> {
    serve_forever(p, |stream| {
        let mut buf = vec![0u8; bc::ECHO_BUF];
        loop {
            let n = (&stream).read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            (&stream).write_all(&buf[..n])?;
        }
    })
}

/// HTTP hello server: the suite's minimal keep-alive handling (bench-common's
/// `http_requests`): one fixed response per complete request in the buffer.
fn http_hello(p: &Params) -> Result<(), String> {
    serve_forever(p, |stream| {
        let mut buf = vec![0u8; bc::HTTP_BUF];
        let mut out = Vec::new();
        let mut filled = 0;
        while filled < buf.len() {
            let n = (&stream).read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
            let (count, used) = bc::http_requests(&buf[..filled]);
            if count > 0 {
                bc::http_responses(count, &mut out);
                (&stream).write_all(&out)?;
                buf.copy_within(used..filled, 0);
                filled -= used;
            }
        }
        Ok(())
    })
}
