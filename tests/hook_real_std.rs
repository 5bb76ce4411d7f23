//! The hook layer's proof with unmodified Rust code (issue 13): `std::net`
//! sockets and `ureq` (an HTTP client that opens its own sockets through
//! std::net) inside ivy tasks. With the `hook` feature their blocking libc
//! calls park the task, not the worker: 1000 echo connections held open at once
//! on 2 workers, and concurrent fetches from a server that delays every answer.
//! Without the hook both tests hang on their first blocked read (the watchdog
//! then fails them). Run by tests/real/run.sh.
#![cfg(feature = "hook")]

#[path = "real/support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{
    body, delayed_http, exclusive, http_peak, http_reset, open_fds, raise_fd_limit, watchdog,
};

const WORKERS: usize = 2;

/// Client k's message of round r: length and content depend on both.
fn message(k: usize, round: usize) -> Vec<u8> {
    let len = 1 + (k * 131 + round * 977) % 8192;
    (0..len).map(|i| (i * 31 + k * 7 + round) as u8).collect()
}

/// 1000 client tasks each connect with std::net::TcpStream to a
/// std::net::TcpListener served by one task per connection, and do 3 echo
/// rounds of distinct messages. Every client waits at a barrier after its first
/// round, so all 1000 connections (and 2000 tasks blocked in read/accept) are
/// open at once on 2 workers. The bytes the server echoed and the bytes the
/// clients got back both equal the exact sum of the message lengths, every
/// reply is byte-exact, and every server task saw EOF after the client's
/// shutdown.
#[test]
fn std_net_echo_1000_tasks() {
    const CLIENTS: usize = 1000;
    const ROUNDS: usize = 3;
    let _only_me = exclusive();
    raise_fd_limit(2 * CLIENTS as u64 + 256); // both ends of every connection are ours
    let fds_before = open_fds();
    let expected: usize = (0..CLIENTS)
        .flat_map(|k| (0..ROUNDS).map(move |r| message(k, r).len()))
        .sum();
    let (echoed, received, eofs) = watchdog(Duration::from_secs(120), move || {
        let rt = ivy::Builder::new().workers(WORKERS).build().unwrap();
        rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let echoed = Arc::new(AtomicUsize::new(0));
            let eofs = Arc::new(AtomicUsize::new(0));
            let server = {
                let (echoed, eofs) = (echoed.clone(), eofs.clone());
                ivy::spawn(move || {
                    let mut sessions = Vec::with_capacity(CLIENTS);
                    for _ in 0..CLIENTS {
                        let (mut s, _) = listener.accept().expect("accept");
                        let (echoed, eofs) = (echoed.clone(), eofs.clone());
                        sessions.push(ivy::spawn(move || {
                            let mut buf = vec![0u8; 16 << 10];
                            loop {
                                let n = s.read(&mut buf).expect("server read");
                                if n == 0 {
                                    eofs.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                s.write_all(&buf[..n]).expect("server write");
                                echoed.fetch_add(n, Ordering::Relaxed);
                            }
                        }));
                    }
                    for s in sessions {
                        s.join().unwrap();
                    }
                })
            };
            let all_open = Arc::new(ivy::sync::Barrier::new(CLIENTS));
            let clients: Vec<_> = (0..CLIENTS)
                .map(|k| {
                    let all_open = all_open.clone();
                    ivy::spawn(move || {
                        let mut s = TcpStream::connect(addr).expect("connect");
                        let mut got = 0;
                        for round in 0..ROUNDS {
                            let msg = message(k, round);
                            s.write_all(&msg).expect("client write");
                            let mut back = vec![0u8; msg.len()];
                            s.read_exact(&mut back).expect("client read");
                            assert!(back == msg, "client {k} round {round}: echo differs");
                            got += back.len();
                            if round == 0 {
                                all_open.wait();
                            }
                        }
                        s.shutdown(Shutdown::Write).unwrap();
                        let mut rest = Vec::new();
                        s.read_to_end(&mut rest).expect("client read to EOF");
                        assert!(rest.is_empty(), "client {k}: bytes after the echoes");
                        got
                    })
                })
                .collect();
            let received: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
            server.join().unwrap();
            (
                echoed.load(Ordering::Relaxed),
                received,
                eofs.load(Ordering::Relaxed),
            )
        })
    });
    assert_eq!(echoed, expected, "bytes echoed by the server");
    assert_eq!(received, expected, "bytes received by the clients");
    assert_eq!(eofs, CLIENTS, "server tasks that saw EOF");
    assert_eq!(open_fds(), fds_before, "fds leaked (the runtime is gone)");
}

/// 100 tasks each fetch one item with `ureq` (its own std::net sockets, and
/// for every 20th item name resolution through "localhost") from a server that
/// delays every answer 200 ms, at most 50 at once. Every body is byte-exact;
/// the server saw at least 25 requests held at once (a worker-blocking client
/// on 2 workers shows at most 2), and the whole took far less than the 10 s
/// that serial fetches on 2 workers take (100 x 200 ms / 2), with a 3x margin
/// over the ideal 2 rounds x 200 ms.
#[test]
fn ureq_fetches_concurrently_from_tasks() {
    const FETCHES: u32 = 100;
    const LIMIT: usize = 50;
    const DELAY_MS: u64 = 200;
    let _only_me = exclusive();
    let server = delayed_http(DELAY_MS);
    let port = server.port;
    http_reset(port);
    let t0 = Instant::now();
    let bodies = watchdog(Duration::from_secs(120), move || {
        let rt = ivy::Builder::new().workers(WORKERS).build().unwrap();
        rt.block_on(move || {
            let limit = Arc::new(ivy::sync::Semaphore::new(LIMIT));
            let tasks: Vec<_> = (0..FETCHES)
                .map(|k| {
                    let limit = limit.clone();
                    ivy::spawn(move || {
                        let _permit = limit.acquire();
                        let host = if k % 20 == 0 {
                            "localhost"
                        } else {
                            "127.0.0.1"
                        };
                        let url = format!("http://{host}:{port}/item/{k}");
                        let mut resp = ureq::get(&url)
                            .call()
                            .unwrap_or_else(|e| panic!("{url}: {e}"));
                        assert_eq!(resp.status(), 200, "{url}");
                        resp.body_mut().read_to_vec().expect("body")
                    })
                })
                .collect();
            tasks
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>()
        })
    });
    let elapsed = t0.elapsed();
    for (k, got) in bodies.iter().enumerate() {
        assert!(
            *got == body(k as u32),
            "item {k}: body differs ({} bytes)",
            got.len()
        );
    }
    let peak = http_peak(port);
    assert!(
        (LIMIT / 2..=LIMIT).contains(&peak),
        "server peak {peak} requests at once, want {}..={LIMIT}",
        LIMIT / 2
    );
    let rounds = (FETCHES as u64).div_ceil(LIMIT as u64);
    let ideal = Duration::from_millis(DELAY_MS * rounds);
    let serial = Duration::from_millis(DELAY_MS * FETCHES as u64 / WORKERS as u64);
    assert!(
        elapsed < 3 * ideal && elapsed < serial / 3,
        "{FETCHES} fetches took {elapsed:?}: want under {:?} (3 x ideal) and {:?} (serial / 3)",
        3 * ideal,
        serial / 3
    );
}

/// Regression test of a race found by tests/real/redis_tasks.c (intermittent
/// EBADF on a fresh connection): the hooked `close` closed the fd and only
/// then woke the waiters listed under its number, so a task on the other
/// worker that had meanwhile got the same number from `socket` and begun
/// waiting on it was woken as "closed". 200 tasks each open 25 short
/// connections in turn (connect, 16 bytes there and back, close), so fd
/// numbers are reused across the workers all the time: every round trip must
/// succeed, exactly 5000 of them.
#[test]
fn fd_numbers_reused_across_workers_never_wake_a_new_waiter() {
    const TASKS: usize = 200;
    const ROUNDS: usize = 25;
    let _only_me = exclusive();
    raise_fd_limit(2 * TASKS as u64 + 256);
    let fds_before = open_fds();
    let (ok, served) = watchdog(Duration::from_secs(120), move || {
        let rt = ivy::Builder::new().workers(WORKERS).build().unwrap();
        rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let served = Arc::new(AtomicUsize::new(0));
            let server = {
                let served = served.clone();
                ivy::spawn(move || {
                    let mut sessions = Vec::new();
                    for _ in 0..TASKS * ROUNDS {
                        let (mut s, _) = listener.accept().expect("accept");
                        let served = served.clone();
                        sessions.push(ivy::spawn(move || {
                            let mut buf = [0u8; 16];
                            s.read_exact(&mut buf).expect("server read");
                            s.write_all(&buf).expect("server write");
                            served.fetch_add(1, Ordering::Relaxed);
                        }));
                    }
                    for s in sessions {
                        s.join().unwrap();
                    }
                })
            };
            let clients: Vec<_> = (0..TASKS)
                .map(|k| {
                    ivy::spawn(move || {
                        let mut ok = 0;
                        for round in 0..ROUNDS {
                            let msg = [(k + round) as u8; 16];
                            let mut s = TcpStream::connect(addr).expect("connect");
                            s.write_all(&msg)
                                .unwrap_or_else(|e| panic!("task {k} round {round}: write: {e}"));
                            let mut back = [0u8; 16];
                            s.read_exact(&mut back)
                                .unwrap_or_else(|e| panic!("task {k} round {round}: read: {e}"));
                            assert_eq!(back, msg);
                            ok += 1;
                        }
                        ok
                    })
                })
                .collect();
            let ok: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
            server.join().unwrap();
            (ok, served.load(Ordering::Relaxed))
        })
    });
    assert_eq!(ok, TASKS * ROUNDS, "client round trips");
    assert_eq!(served, TASKS * ROUNDS, "server sessions");
    assert_eq!(open_fds(), fds_before, "fds leaked (the runtime is gone)");
}
