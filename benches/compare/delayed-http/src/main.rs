//! The hook rows' server (harness.py's `HOOK_ROWS`): the protocol of
//! `tests/real/delayed_http.py` (`/item/<k>` answered after the delay with
//! item k's body, `/stats`, `/reset`; see its doc comment), natively.
//!
//!     delayed-http [--port 0] [--delay-ms 50]
//!
//! Why not the Python one: one asyncio loop spends ~0.5 ms of CPU per
//! request, so 400 simultaneous requests took ~200 ms to answer whatever the
//! client, and the rows measured the server. Here every connection gets an OS
//! thread (a delayed answer is a sleeping thread: 400 of them cost nothing on
//! the CPU) and the listen backlog is raised to 4096, so a burst of connects
//! never waits for a SYN retry.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Item k's body as `delayed_http.py`'s `body()` defines it.
fn body(k: u64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = format!("item {k}\n").into_bytes();
    let n = (k as usize * 37) % 2000 + 100;
    b.extend((0..n).map(|i| ALPHABET[(i * 7 + k as usize) % 36]));
    b
}

#[derive(Default)]
struct Counters {
    active: AtomicUsize,
    peak: AtomicUsize,
    served: AtomicUsize,
}

fn answer(s: &mut TcpStream, code: u16, data: &[u8]) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let mut out = format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .into_bytes();
    out.extend_from_slice(data);
    s.write_all(&out)
}

fn serve(mut s: TcpStream, delay: Duration, c: &Counters) -> std::io::Result<()> {
    let mut reader = BufReader::new(s.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    if let Some(k) = path
        .strip_prefix("/item/")
        .and_then(|k| k.parse::<u64>().ok())
    {
        let now = c.active.fetch_add(1, Ordering::SeqCst) + 1;
        c.peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(delay);
        c.active.fetch_sub(1, Ordering::SeqCst);
        c.served.fetch_add(1, Ordering::SeqCst);
        answer(&mut s, 200, &body(k))
    } else if path == "/stats" {
        let text = format!(
            "peak {}\nserved {}\n",
            c.peak.load(Ordering::SeqCst),
            c.served.load(Ordering::SeqCst)
        );
        answer(&mut s, 200, text.as_bytes())
    } else if path == "/reset" {
        c.peak
            .store(c.active.load(Ordering::SeqCst), Ordering::SeqCst);
        c.served.store(0, Ordering::SeqCst);
        answer(&mut s, 200, b"ok\n")
    } else {
        answer(&mut s, 404, b"not found\n")
    }
}

fn main() {
    let (mut port, mut delay_ms) = (0u16, 50u64);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .expect("a number after the flag");
        match a.as_str() {
            "--port" => port = v as u16,
            "--delay-ms" => delay_ms = v,
            other => panic!("unknown argument {other}"),
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    // std listens with a backlog of 128; listen(2) again raises it.
    // SAFETY: a valid listening socket owned by `listener`.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 4096) }, 0);
    println!("LISTENING port={}", listener.local_addr().unwrap().port());
    let delay = Duration::from_millis(delay_ms);
    let counters = Arc::new(Counters::default());
    for s in listener.incoming() {
        let Ok(s) = s else { continue };
        let c = counters.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let _ = serve(s, delay, &c); // a client that went away: nothing to answer
            });
        if let Err(e) = spawned {
            eprintln!("delayed-http: no thread for a connection: {e}");
        }
    }
}
