//! The `hook_std` workload: N HTTP/1.0 GETs over plain `std::net::TcpStream`,
//! all in flight at once, against `tests/real/delayed_http.py` (every answer
//! delayed), each body checked byte for byte.
//!
//!     hook-std-bench hook_std --port P [--n N] [--workers W] [--threads]
//!
//! Default: one ivy task per request on W workers. Built with the `hook`
//! feature, std's connect/write/read park the task and the run takes about one
//! delay; built without it, each request holds its worker for the whole delay
//! (N x delay / W). `--threads`: one OS thread per request, the baseline.
//! Prints `RESULT workload=hook_std system=<ivy|threads> metric=wall_ms ...`
//! (bench-common's format; harness.py renames the system). No warm-up round:
//! the server's delay dominates, not the client's code paths.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Item k's body as `delayed_http.py`'s `body()` defines it.
fn body(k: u32) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = format!("item {k}\n").into_bytes();
    let n = (k as usize * 37) % 2000 + 100;
    b.extend((0..n).map(|i| ALPHABET[(i * 7 + k as usize) % 36]));
    b
}

/// GET /item/k; Ok when the answer's body is item k's, byte for byte.
fn fetch(port: u16, k: u32) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    write!(s, "GET /item/{k} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    if !answer.starts_with(b"HTTP/1.0 200") || answer[split + 4..] != body(k)[..] {
        return Err(format!("item {k}: wrong answer"));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        println!("hook_std");
        return;
    }
    let (mut n, mut workers, mut port, mut threads) = (200u32, 2usize, 0u16, false);
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a number after the flag")
        };
        match a.as_str() {
            "--n" => n = val() as u32,
            "--workers" => workers = val() as usize,
            "--port" => port = val() as u16,
            "--threads" => threads = true,
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(args.first().map(String::as_str) == Some("hook_std") && port != 0 && n > 0);

    let t0 = Instant::now();
    let results: Vec<Result<(), String>> = if threads {
        let handles: Vec<_> = (0..n)
            .map(|k| {
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn(move || fetch(port, k))
                    .expect("spawn thread")
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    } else {
        let rt = ivy::Builder::new()
            .workers(workers)
            .build()
            .expect("runtime");
        rt.block_on(move || {
            let tasks: Vec<_> = (0..n).map(|k| ivy::spawn(move || fetch(port, k))).collect();
            tasks.into_iter().map(|t| t.join().unwrap()).collect()
        })
    };
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    let system = if threads { "threads" } else { "ivy" };
    let used = if threads { n as usize } else { workers };
    match results.iter().find_map(|r| r.as_ref().err()) {
        None => println!(
            "RESULT workload=hook_std system={system} metric=wall_ms value={wall_ms:.3} unit=ms n={n} workers={used} check=ok{n}"
        ),
        Some(e) => {
            println!(
                "RESULT workload=hook_std system={system} metric=wall_ms status=fail value=nan unit=ms n={n} workers={used} error={e}"
            );
            std::process::exit(1);
        }
    }
}
