//! tokio's side of the comparison suite (multi-thread runtime, all workers, the
//! driver running inside a spawned task so that it spawns from a worker like
//! ivy's main task does). Same workloads as ivy-bench; see its comments.
//! The sync workloads use tokio's own `mpsc` and `Mutex`; tokio has no MPMC
//! channel, so `mpmc_bounded` uses `async-channel`, the usual choice with tokio.
//! The servers (`tcp_echo`, `http_hello`) are `tokio::net` with one
//! `tokio::spawn`ed task per connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_common::{self as bc, Params, Workload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
    bc::main("tokio", WORKLOADS);
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .enable_io()
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

fn timers(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64, max_ms: u64| -> Result<(Duration, u64), String> {
        drive(&rt, async move {
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let d = Duration::from_millis(bc::timer_ms(i, max_ms));
                    let done = done.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .collect();
            for h in handles {
                h.await.map_err(|e| format!("join: {e}"))?;
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

/// Two tasks bouncing a value over two `mpsc` channels of capacity 1 (the driver
/// is one side): ns per round trip.
fn chan_pingpong(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Duration {
        drive(&rt, async move {
            let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(bc::PINGPONG_CAPACITY);
            let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(bc::PINGPONG_CAPACITY);
            let echo = tokio::spawn(async move {
                while let Some(v) = ping_rx.recv().await {
                    if pong_tx.send(v + 1).await.is_err() {
                        break;
                    }
                }
            });
            let start = Instant::now();
            for i in 0..n {
                ping_tx.send(i).await.expect("ping");
                pong_rx.recv().await.expect("pong");
            }
            let d = start.elapsed();
            drop(ping_tx);
            echo.await.expect("echo task");
            d
        })
    };
    if p.warmup {
        round(p.n / 10);
    }
    let d = round(p.n);
    bc::report(p, "ns_per_roundtrip", bc::ns_per(d, p.n), "ns", None);
    Ok(())
}

/// 4 producers and 4 consumers over an `async_channel::bounded(1024)`: ns per item.
fn mpmc_bounded(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        drive(&rt, async move {
            let (tx, rx) = async_channel::bounded::<u64>(bc::MPMC_CAPACITY);
            let start = Instant::now();
            let producers: Vec<_> = (0..bc::MPMC_PRODUCERS)
                .map(|k| {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        for i in (k..n).step_by(bc::MPMC_PRODUCERS as usize) {
                            tx.send(i).await.expect("send");
                        }
                    })
                })
                .collect();
            drop(tx);
            let consumers: Vec<_> = (0..bc::MPMC_CONSUMERS)
                .map(|_| {
                    let rx = rx.clone();
                    tokio::spawn(async move {
                        let mut sum = 0u64;
                        while let Ok(v) = rx.recv().await {
                            sum += v;
                        }
                        sum
                    })
                })
                .collect();
            for h in producers {
                h.await.map_err(|e| format!("producer: {e}"))?;
            }
            let mut sum = 0;
            for h in consumers {
                sum += h.await.map_err(|e| format!("consumer: {e}"))?;
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

/// 64 tasks each doing n/64 `lock; counter += 1; unlock` on a `tokio::sync::Mutex`:
/// ns per lock.
fn mutex_contention(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        drive(&rt, async move {
            let per = n / bc::MUTEX_TASKS;
            let counter = Arc::new(tokio::sync::Mutex::new(0u64));
            let start = Instant::now();
            let tasks: Vec<_> = (0..bc::MUTEX_TASKS)
                .map(|_| {
                    let counter = counter.clone();
                    tokio::spawn(async move {
                        for _ in 0..per {
                            *counter.lock().await += 1;
                        }
                    })
                })
                .collect();
            for h in tasks {
                h.await.map_err(|e| format!("join: {e}"))?;
            }
            let d = start.elapsed();
            let got = *counter.lock().await;
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

/// `TcpListener::bind` listens with mio's backlog of 128, which a burst of 1000
/// connects overflows (dropped SYNs, a 1 s retransmit each); `TcpSocket` with
/// `listen(SERVER_BACKLOG)` is tokio's way to ask for the backlog the others have.
fn listen(port: u16) -> std::io::Result<TcpListener> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(bc::SERVER_BACKLOG)
}

/// 64 tasks sharing a `tokio::sync::Semaphore` of 8 permits, each doing n/64
/// times `acquire; yield_now; release` (see `bc::SEM_TASKS`): ns per acquire.
fn semaphore(p: &Params) -> Result<(), String> {
    let rt = runtime(p.workers)?;
    let round = |n: u64| -> Result<Duration, String> {
        drive(&rt, async move {
            let per = n / bc::SEM_TASKS;
            let sem = Arc::new(tokio::sync::Semaphore::new(bc::SEM_PERMITS));
            let inside = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..bc::SEM_TASKS)
                .map(|_| {
                    let (sem, inside, done) = (sem.clone(), inside.clone(), done.clone());
                    tokio::spawn(async move {
                        for _ in 0..per {
                            let _permit = sem.acquire().await.map_err(|e| e.to_string())?;
                            let now = inside.fetch_add(1, Ordering::Relaxed) + 1;
                            if now > bc::SEM_PERMITS as u64 {
                                return Err(format!(
                                    "{now} holders of {} permits",
                                    bc::SEM_PERMITS
                                ));
                            }
                            tokio::task::yield_now().await;
                            inside.fetch_sub(1, Ordering::Relaxed);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            for h in tasks {
                h.await.map_err(|e| format!("join: {e}"))??;
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
/// forever, one `tokio::spawn`ed task per connection running `serve`
/// (TCP_NODELAY set). Runs until the process is killed.
fn serve_forever<F, Fut>(p: &Params, serve: F) -> Result<(), String>
where
    F: Fn(TcpStream) -> Fut + Send + Copy + 'static,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let rt = runtime(p.workers)?;
    let port = p.port;
    drive(&rt, async move {
        let listener = listen(port).map_err(|e| format!("bind {}:{port}: {e}", bc::SERVER_HOST))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        bc::listening(port);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let _ = serve(stream).await;
                    });
                }
                Err(e) => {
                    eprintln!("tokio-bench: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// TCP echo server: reads up to 4 KiB, writes back exactly that, until EOF.
fn tcp_echo(p: &Params) -> Result<(), String> {
    serve_forever(p, |mut stream| async move {
        let mut buf = vec![0u8; bc::ECHO_BUF];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n]).await?;
        }
    })
}

/// HTTP hello server: the suite's minimal keep-alive handling (bench-common's
/// `http_requests`): one fixed response per complete request in the buffer.
fn http_hello(p: &Params) -> Result<(), String> {
    serve_forever(p, |mut stream| async move {
        let mut buf = vec![0u8; bc::HTTP_BUF];
        let mut out = Vec::new();
        let mut filled = 0;
        while filled < buf.len() {
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
            let (count, used) = bc::http_requests(&buf[..filled]);
            if count > 0 {
                bc::http_responses(count, &mut out);
                stream.write_all(&out).await?;
                buf.copy_within(used..filled, 0);
                filled -= used;
            }
        }
        Ok(())
    })
}
