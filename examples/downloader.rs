//! A concurrent downloader with timeouts, retries and a live progress bar.
//!
//! The program starts its own HTTP server on 127.0.0.1 (so it needs no network)
//! that serves N files of different sizes, and misbehaves on purpose: some
//! files fail with `503` on their first attempts, some stall long enough to
//! hit the per-request timeout the first time, and one does not exist (`404`,
//! which is not retried). The client then fetches all N files:
//!
//! * one task per file (like `asyncio.create_task` per URL), at most C requests
//!   in flight: each attempt holds an `ivy::sync::Semaphore` permit, released
//!   during the back-off so a waiting file can use the slot;
//! * each request runs under `ivy::timeout` (the whole exchange: connect, send,
//!   headers, body), so a stalled server cannot hold a fetcher;
//! * failed attempts (timeouts, I/O errors, 5xx) are retried with exponential
//!   back-off (100 ms, 200 ms, 400 ms, ... plus jitter), up to a retry limit;
//! * every body is checked byte for byte against what the server generates;
//! * a progress bar on stderr is redrawn every 100 ms; a final report with
//!   successes, failures, retries, bytes and time goes to stdout.
//!
//! Usage:
//!
//!     cargo run --release --example downloader -- [N] [C] [--timeout-ms MS] [--retries R]
//!
//! Defaults: N = 40 files, C = 8 concurrent requests, 500 ms per request,
//! 4 retries.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ivy::net::{TcpListener, TcpStream};

/// Size of file `i`: from a few KiB up to ~1.5 MiB.
fn file_size(i: usize) -> usize {
    4096 + (i * 7919 * 131) % (1536 * 1024)
}

fn file_byte(i: usize, offset: usize) -> u8 {
    (i.wrapping_mul(17) ^ offset.wrapping_mul(31) ^ (offset >> 8)) as u8
}

/// How the test server treats attempt `n` (0-based) at file `i`.
enum Behaviour {
    Serve,
    Unavailable,
    Stall,
    Missing,
}

fn behaviour(i: usize, attempt: usize) -> Behaviour {
    if i == 13 {
        Behaviour::Missing
    } else if i % 7 == 3 && attempt < 2 {
        Behaviour::Unavailable
    } else if i % 11 == 5 && attempt == 0 {
        Behaviour::Stall
    } else {
        Behaviour::Serve
    }
}

/// The local HTTP/1.1 server: one task per connection, `Connection: close`.
fn serve(listener: TcpListener) {
    let attempts: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    loop {
        let Ok((stream, _)) = listener.accept() else {
            ivy::sleep(Duration::from_millis(10));
            continue;
        };
        let attempts = attempts.clone();
        ivy::spawn(move || {
            let _ = serve_one(stream, &attempts);
        });
    }
}

fn serve_one(stream: TcpStream, attempts: &Mutex<HashMap<usize, usize>>) -> io::Result<()> {
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let file: Option<usize> = request
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.strip_prefix("/file/"))
        .and_then(|n| n.parse().ok());
    let mut out = &stream;
    let Some(i) = file else {
        return out.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let attempt = {
        let mut a = attempts.lock().unwrap();
        let n = a.entry(i).or_insert(0);
        *n += 1;
        *n - 1
    };
    match behaviour(i, attempt) {
        Behaviour::Missing => out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Behaviour::Unavailable => out.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
        Behaviour::Stall => {
            // Headers, a little of the body, then nothing for a long while.
            let size = file_size(i);
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
            )?;
            let head: Vec<u8> = (0..1000.min(size)).map(|o| file_byte(i, o)).collect();
            out.write_all(&head)?;
            ivy::sleep(Duration::from_secs(5));
            Ok(())
        }
        Behaviour::Serve => {
            let size = file_size(i);
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
            )?;
            let body: Vec<u8> = (0..size).map(|o| file_byte(i, o)).collect();
            // In chunks, so the client's progress moves smoothly.
            for chunk in body.chunks(64 * 1024) {
                out.write_all(chunk)?;
                ivy::sleep(Duration::from_millis(2));
            }
            Ok(())
        }
    }
}

/// Why one attempt failed.
enum AttemptError {
    /// Worth retrying: timeout, I/O error, 5xx.
    Transient(String),
    /// Not worth retrying: 4xx, corrupt body.
    Permanent(String),
}

struct Progress {
    files_done: AtomicUsize,
    files_failed: AtomicUsize,
    bytes: AtomicU64,
    retries: AtomicUsize,
    /// Requests in flight now, and the most ever (the semaphore's bound).
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// One GET of `/file/{i}`; returns the body length after checking every byte.
fn fetch(addr: &str, i: usize, progress: &Progress) -> Result<usize, AttemptError> {
    let io_err = |e: io::Error| AttemptError::Transient(e.to_string());
    let stream = TcpStream::connect(addr).map_err(io_err)?;
    write!(
        &stream,
        "GET /file/{i} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io_err)?;
    let mut reader = BufReader::new(&stream);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(io_err)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| AttemptError::Transient(format!("bad status line {status:?}")))?;
    let mut length: Option<usize> = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_err(io_err)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
    }
    match code {
        200 => {}
        500..=599 => return Err(AttemptError::Transient(format!("HTTP {code}"))),
        _ => return Err(AttemptError::Permanent(format!("HTTP {code}"))),
    }
    let length = length.ok_or_else(|| AttemptError::Permanent("no Content-Length".into()))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0usize;
    let mut counted = 0u64;
    let result = loop {
        if got == length {
            break Ok(length);
        }
        let want = buf.len().min(length - got);
        match reader.read(&mut buf[..want]) {
            Ok(0) => {
                break Err(AttemptError::Transient(format!(
                    "EOF after {got} of {length} bytes"
                )))
            }
            Ok(n) => {
                if let Some(bad) = (0..n).find(|&k| buf[k] != file_byte(i, got + k)) {
                    break Err(AttemptError::Permanent(format!(
                        "corrupt byte at {}",
                        got + bad
                    )));
                }
                got += n;
                counted += n as u64;
                progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => break Err(io_err(e)),
        }
    };
    if result.is_err() {
        // The bar shows bytes of successful downloads only.
        progress.bytes.fetch_sub(counted, Ordering::Relaxed);
    }
    result
}

fn draw(progress: &Progress, total: usize, started: Instant) {
    let done = progress.files_done.load(Ordering::Relaxed);
    let failed = progress.files_failed.load(Ordering::Relaxed);
    let width = 30;
    let filled = (done + failed) * width / total.max(1);
    let mib = progress.bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
    eprint!(
        "\r[{}{}] {:>3}/{total} files  {mib:7.2} MiB  {} retries  {:5.1} s ",
        "#".repeat(filled),
        ".".repeat(width - filled),
        done + failed,
        progress.retries.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let _ = io::stderr().flush();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut positional = Vec::new();
    let mut timeout = Duration::from_millis(500);
    let mut retries = 4usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--timeout-ms" => {
                let ms: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--timeout-ms MS");
                timeout = Duration::from_millis(ms);
            }
            "--retries" => retries = it.next().and_then(|v| v.parse().ok()).expect("--retries R"),
            "-h" | "--help" => {
                eprintln!("usage: downloader [N] [C] [--timeout-ms MS] [--retries R]");
                return;
            }
            p => positional.push(p.parse::<usize>().expect("N and C are numbers")),
        }
    }
    let files = positional.first().copied().unwrap_or(40);
    let concurrency = positional.get(1).copied().unwrap_or(8).max(1);

    let (outcomes, bytes, retries_used, max_in_flight, took) = ivy::run(move || {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the local server");
        let addr = listener.local_addr().unwrap().to_string();
        let server = ivy::spawn(move || serve(listener));

        let progress = Arc::new(Progress {
            files_done: AtomicUsize::new(0),
            files_failed: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            retries: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let started = Instant::now();
        let finished = Arc::new(AtomicBool::new(false));
        let bar = {
            let (progress, finished) = (progress.clone(), finished.clone());
            ivy::spawn(move || {
                while !finished.load(Ordering::Relaxed) {
                    draw(&progress, files, started);
                    ivy::sleep(Duration::from_millis(100));
                }
                draw(&progress, files, started);
                eprintln!();
            })
        };

        // One task per file; the semaphore bounds the requests in flight.
        let limit = Arc::new(ivy::sync::Semaphore::new(concurrency));
        let tasks: Vec<_> = (0..files)
            .map(|i| {
                let (limit, progress, addr) = (limit.clone(), progress.clone(), addr.clone());
                ivy::task::Builder::new()
                    .name(format!("file-{i}"))
                    .spawn(move || {
                        let mut attempt = 0;
                        let outcome = loop {
                            let r = {
                                let _permit = limit.acquire();
                                let now = progress.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                progress.max_in_flight.fetch_max(now, Ordering::SeqCst);
                                let r = match ivy::timeout(timeout, || fetch(&addr, i, &progress)) {
                                    Ok(r) => r,
                                    Err(_) => Err(AttemptError::Transient(format!(
                                        "timed out after {} ms",
                                        timeout.as_millis()
                                    ))),
                                };
                                progress.in_flight.fetch_sub(1, Ordering::SeqCst);
                                r
                            };
                            match r {
                                Ok(n) => break Ok(n),
                                Err(AttemptError::Permanent(why)) => break Err(why),
                                Err(AttemptError::Transient(why)) if attempt >= retries => {
                                    break Err(format!("{why} (gave up after {attempt} retries)"))
                                }
                                Err(AttemptError::Transient(_)) => {
                                    // Exponential back-off with jitter, without the permit.
                                    let base = 100u64 << attempt.min(6);
                                    let jitter = (i as u64 * 37 + attempt as u64 * 11) % 50;
                                    ivy::sleep(Duration::from_millis(base + jitter));
                                    attempt += 1;
                                    progress.retries.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        };
                        match &outcome {
                            Ok(_) => progress.files_done.fetch_add(1, Ordering::Relaxed),
                            Err(_) => progress.files_failed.fetch_add(1, Ordering::Relaxed),
                        };
                        outcome
                    })
                    .expect("spawn a download task")
            })
            .collect();
        // gather: every outcome, in file order.
        let outcomes: Vec<(usize, Result<usize, String>)> = ivy::join_all(tasks)
            .expect("download tasks do not panic")
            .into_iter()
            .enumerate()
            .collect();
        finished.store(true, Ordering::Relaxed);
        bar.join().unwrap();
        server.cancel();
        let _ = server.join();
        (
            outcomes,
            progress.bytes.load(Ordering::Relaxed),
            progress.retries.load(Ordering::Relaxed),
            progress.max_in_flight.load(Ordering::SeqCst),
            started.elapsed(),
        )
    });

    let ok = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    println!(
        "downloader: {files} files, {concurrency} at a time, {} ms per request",
        timeout.as_millis()
    );
    for (i, r) in &outcomes {
        if let Err(why) = r {
            println!("  file {i:>3}: FAILED: {why}");
        }
    }
    println!(
        "  {ok} succeeded, {} failed, {retries_used} retries, {bytes} bytes ({:.2} MiB) in {:.2} s ({:.2} MiB/s)",
        outcomes.len() - ok,
        bytes as f64 / (1024.0 * 1024.0),
        took.as_secs_f64(),
        bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
    );
    println!("  at most {max_in_flight} requests were in flight at once (limit {concurrency})");
    assert!(
        max_in_flight <= concurrency,
        "the semaphore let too many requests through"
    );
    let expected_bytes: usize = outcomes
        .iter()
        .filter_map(|(i, r)| r.as_ref().ok().map(|_| file_size(*i)))
        .sum();
    assert_eq!(bytes as usize, expected_bytes, "byte count mismatch");
}
