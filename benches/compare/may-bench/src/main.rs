//! may's side of the comparison suite (`may::config().set_workers(W)`, default
//! stack size and pool; the driver runs in a coroutine so that it spawns from a
//! worker like ivy's main task does). Same workloads as ivy-bench.
//!
//! may allocates every coroutine stack as its own mmap with a guard page (two
//! VMAs), so past ~32k live coroutines the kernel's `vm.max_map_count` (65530)
//! makes stack allocation fail and may panics ("failed to alloc sys stack").
//! Such a panic is caught and printed as a `status=fail` result.
//!
//! may's channels are unbounded: `chan_pingpong` never has more than one value
//! in flight anyway, and `mpmc_bounded` bounds `may::sync::mpmc` with a
//! `may::sync::Semphore` of 1024 permits (send takes one, receive returns one).
//!
//! The servers (`tcp_echo`, `http_hello`) are `may::net` with one `go!`
//! coroutine per connection.

use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_common::{self as bc, Params, Workload};
use may::go;
use may::net::{TcpListener, TcpStream};

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
        let w = Params {
            n: p.n / 10,
            ..p.clone()
        };
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
    let round = |n: u64, max_ms: u64| -> Result<(Duration, u64), String> {
        drive(move || {
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut handles = Vec::with_capacity(n as usize);
            let spawned = catch_unwind(AssertUnwindSafe(|| {
                for i in 0..n {
                    let d = Duration::from_millis(bc::timer_ms(i, max_ms));
                    let done = done.clone();
                    handles.push(go!(move || {
                        may::coroutine::sleep(d);
                        done.fetch_add(1, Ordering::Relaxed);
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
            for h in handles {
                h.join().map_err(|e| format!("join: {}", panic_text(&*e)))?;
            }
            Ok((start.elapsed(), done.load(Ordering::Relaxed)))
        })?
    };
    if p.warmup {
        round(p.n / 10, 10)?;
    }
    let (d, done) = round(p.n, bc::TIMER_MAX_MS)?;
    bc::report_timers(p, d, done)
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

/// Two coroutines bouncing a value over two `may::sync::mpsc` channels (the driver
/// is one side): ns per round trip.
fn chan_pingpong(p: &Params) -> Result<(), String> {
    may::config().set_workers(p.workers);
    let round = |n: u64| -> Result<Duration, String> {
        drive(move || {
            let (ping_tx, ping_rx) = may::sync::mpsc::channel::<u64>();
            let (pong_tx, pong_rx) = may::sync::mpsc::channel::<u64>();
            let echo = go!(move || {
                while let Ok(v) = ping_rx.recv() {
                    if pong_tx.send(v + 1).is_err() {
                        break;
                    }
                }
            });
            let start = Instant::now();
            for i in 0..n {
                ping_tx.send(i).expect("ping");
                pong_rx.recv().expect("pong");
            }
            let d = start.elapsed();
            drop(ping_tx);
            echo.join().expect("echo coroutine");
            d
        })
    };
    if p.warmup {
        round(p.n / 10)?;
    }
    let d = round(p.n)?;
    bc::report(p, "ns_per_roundtrip", bc::ns_per(d, p.n), "ns", None);
    Ok(())
}

/// 4 producers and 4 consumers over `may::sync::mpmc`, bounded to 1024 items in
/// flight by a semaphore: ns per item.
fn mpmc_bounded(p: &Params) -> Result<(), String> {
    may::config().set_workers(p.workers);
    let round = |n: u64| -> Result<Duration, String> {
        drive(move || {
            let (tx, rx) = may::sync::mpmc::channel::<u64>();
            let room = Arc::new(may::sync::Semphore::new(bc::MPMC_CAPACITY));
            let start = Instant::now();
            let producers: Vec<_> = (0..bc::MPMC_PRODUCERS)
                .map(|k| {
                    let (tx, room) = (tx.clone(), room.clone());
                    go!(move || {
                        for i in (k..n).step_by(bc::MPMC_PRODUCERS as usize) {
                            room.wait();
                            tx.send(i).expect("send");
                        }
                    })
                })
                .collect();
            drop(tx);
            let consumers: Vec<_> = (0..bc::MPMC_CONSUMERS)
                .map(|_| {
                    let (rx, room) = (rx.clone(), room.clone());
                    go!(move || {
                        let mut sum = 0u64;
                        while let Ok(v) = rx.recv() {
                            room.post();
                            sum += v;
                        }
                        sum
                    })
                })
                .collect();
            drop(rx);
            for h in producers {
                h.join()
                    .map_err(|e| format!("producer: {}", panic_text(&*e)))?;
            }
            let mut sum = 0;
            for h in consumers {
                sum += h
                    .join()
                    .map_err(|e| format!("consumer: {}", panic_text(&*e)))?;
            }
            let d = start.elapsed();
            bc::check_sum("mpmc", n, sum)?;
            Ok(d)
        })?
    };
    if p.warmup {
        round(p.n / 10)?;
    }
    let d = round(p.n)?;
    bc::report(p, "ns_per_item", bc::ns_per(d, p.n), "ns", None);
    Ok(())
}

/// 64 coroutines each doing n/64 `lock; counter += 1; unlock` on a
/// `may::sync::Mutex`: ns per lock.
fn mutex_contention(p: &Params) -> Result<(), String> {
    may::config().set_workers(p.workers);
    let round = |n: u64| -> Result<Duration, String> {
        drive(move || {
            let per = n / bc::MUTEX_TASKS;
            let counter = Arc::new(may::sync::Mutex::new(0u64));
            let start = Instant::now();
            let tasks: Vec<_> = (0..bc::MUTEX_TASKS)
                .map(|_| {
                    let counter = counter.clone();
                    go!(move || {
                        for _ in 0..per {
                            *counter.lock().expect("lock") += 1;
                        }
                    })
                })
                .collect();
            for h in tasks {
                h.join().map_err(|e| format!("join: {}", panic_text(&*e)))?;
            }
            let d = start.elapsed();
            let got = *counter.lock().expect("lock");
            if got != per * bc::MUTEX_TASKS {
                return Err(format!("wrong counter {got}"));
            }
            Ok(d)
        })?
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

/// 64 coroutines sharing a `may::sync::Semphore` of 8 permits, each doing n/64
/// times `wait; yield_now; post` (see `bc::SEM_TASKS`): ns per acquire. may's
/// semaphore has no RAII permit: `post` gives it back.
fn semaphore(p: &Params) -> Result<(), String> {
    may::config().set_workers(p.workers);
    let round = |n: u64| -> Result<Duration, String> {
        drive(move || {
            let per = n / bc::SEM_TASKS;
            let sem = Arc::new(may::sync::Semphore::new(bc::SEM_PERMITS));
            let inside = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..bc::SEM_TASKS)
                .map(|_| {
                    let (sem, inside, done) = (sem.clone(), inside.clone(), done.clone());
                    go!(move || -> Result<(), String> {
                        for _ in 0..per {
                            sem.wait();
                            let now = inside.fetch_add(1, Ordering::Relaxed) + 1;
                            if now > bc::SEM_PERMITS as u64 {
                                return Err(format!(
                                    "{now} holders of {} permits",
                                    bc::SEM_PERMITS
                                ));
                            }
                            may::coroutine::yield_now();
                            inside.fetch_sub(1, Ordering::Relaxed);
                            done.fetch_add(1, Ordering::Relaxed);
                            sem.post();
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in tasks {
                h.join()
                    .map_err(|e| format!("join: {}", panic_text(&*e)))??;
            }
            let d = start.elapsed();
            let got = done.load(Ordering::Relaxed);
            if got != per * bc::SEM_TASKS {
                return Err(format!("wrong count {got}"));
            }
            Ok(d)
        })?
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
/// forever, one coroutine per connection running `serve` (TCP_NODELAY set).
/// Runs until the process is killed.
fn serve_forever(p: &Params, serve: fn(TcpStream) -> std::io::Result<()>) -> Result<(), String> {
    may::config().set_workers(p.workers);
    let port = p.port;
    drive(move || -> Result<(), String> {
        let listener = TcpListener::bind((bc::SERVER_HOST, port))
            .map_err(|e| format!("bind {}:{port}: {e}", bc::SERVER_HOST))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        bc::listening(port);
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    go!(move || {
                        let _ = stream.set_nodelay(true);
                        let _ = serve(stream);
                    });
                }
                Err(e) => {
                    eprintln!("may-bench: accept: {e}");
                    may::coroutine::sleep(Duration::from_millis(10));
                }
            }
        }
    })?
}

/// TCP echo server: reads up to 4 KiB, writes back exactly that, until EOF.
fn tcp_echo(p: &Params) -> Result<(), String> {
    serve_forever(p, |mut stream| {
        let mut buf = vec![0u8; bc::ECHO_BUF];
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n])?;
        }
    })
}

/// HTTP hello server: the suite's minimal keep-alive handling (bench-common's
/// `http_requests`): one fixed response per complete request in the buffer.
fn http_hello(p: &Params) -> Result<(), String> {
    serve_forever(p, |mut stream| {
        let mut buf = vec![0u8; bc::HTTP_BUF];
        let mut out = Vec::new();
        let mut filled = 0;
        while filled < buf.len() {
            let n = stream.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
            let (count, used) = bc::http_requests(&buf[..filled]);
            if count > 0 {
                bc::http_responses(count, &mut out);
                stream.write_all(&out)?;
                buf.copy_within(used..filled, 0);
                filled -= used;
            }
        }
        Ok(())
    })
}
