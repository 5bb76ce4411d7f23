//! What every Rust benchmark binary of the comparison suite shares.
//!
//! * the command line: `<bin> <workload> [--n N] [--workers W] [--port P]`
//!   (`--list` prints the workloads a binary implements, one per line);
//! * the server workloads (`tcp_echo`, `http_hello`): bind 127.0.0.1:`--port`
//!   (0: any free port), print `LISTENING port=<p>` ([`listening`]) and serve
//!   until killed; `harness.py` points `loadgen` or `wrk` at them, and those
//!   print the `RESULT` lines;
//! * the result line format, the contract with `harness.py` and `report.py`:
//!   `RESULT workload=<w> system=<s> metric=<m> value=<float> unit=<u> n=<N> workers=<W> [check=<x>]`
//!   and, for a measurement that could not be taken,
//!   `RESULT workload=<w> system=<s> metric=<m> status=fail ... error=<text to end of line>`;
//! * resident memory from `/proc/self/status`;
//! * the timer workload's durations (`splitmix64`, identical in Go and Python).
//!
//! Adding a workload: write `fn(&Params) -> Result<(), String>` in each system's
//! binary, add it to that binary's `WORKLOADS` table, and add its sizes to
//! `harness.py` (`ROWS`) and its labels to `report.py` (`METRICS`). A server
//! workload ignores `--n` and runs until killed; its `Row` in `harness.py` says
//! which load generator measures it.

use std::io::Write;
use std::time::Duration;

/// Parameters of one run, as given on the command line.
#[derive(Clone, Debug)]
pub struct Params {
    pub workload: String,
    /// Workload size (tasks, switches, ...); each workload documents its meaning.
    pub n: u64,
    /// Worker threads (ignored where the workload fixes it, e.g. `switch` = 1).
    pub workers: usize,
    /// Run one warm-up round at n/10 before the measured round (default on;
    /// `--no-warmup` turns it off).
    pub warmup: bool,
    /// Server workloads: the port to listen on, 127.0.0.1 (0: any free port).
    pub port: u16,
}

/// One entry of a system's workload table.
pub struct Workload {
    pub name: &'static str,
    /// Default size when `--n` is not given.
    pub default_n: u64,
    pub run: fn(&Params) -> Result<(), String>,
}

/// Parses the command line, runs the selected workload from `table`, and turns an
/// error into a `status=fail` line plus exit status 1.
pub fn main(system: &'static str, table: &[Workload]) {
    let _ = SYSTEM_NAME.set(system);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for w in table {
            println!("{}", w.name);
        }
        return;
    }
    let usage = || {
        let names: Vec<_> = table.iter().map(|w| w.name).collect();
        eprintln!(
            "usage: {system}-bench <workload> [--n N] [--workers W] [--port P] [--no-warmup]\n\
             workloads: {}",
            names.join(" ")
        );
        std::process::exit(2);
    };
    let Some(name) = args.first() else { usage() };
    let Some(w) = table.iter().find(|w| w.name == name) else {
        usage()
    };
    let mut p = Params {
        workload: w.name.to_string(),
        n: w.default_n,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        warmup: true,
        port: 0,
    };
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--n" => p.n = parse(it.next()).unwrap_or_else(|| usage()),
            "--workers" => p.workers = parse(it.next()).unwrap_or_else(|| usage()),
            "--port" => p.port = parse(it.next()).unwrap_or_else(|| usage()),
            "--no-warmup" => p.warmup = false,
            _ => usage(),
        }
    }
    if let Err(e) = (w.run)(&p) {
        fail(&p, "all", "", &e);
        std::process::exit(1);
    }
}

fn parse<T: std::str::FromStr>(s: Option<&String>) -> Option<T> {
    s?.parse().ok()
}

static SYSTEM_NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the system of the result lines printed by a program that does not go
/// through [`main`] (the load generator reports for the server it measured).
pub fn set_system(system: &'static str) {
    let _ = SYSTEM_NAME.set(system);
}

fn system() -> &'static str {
    SYSTEM_NAME.get().copied().unwrap_or("?")
}

fn emit(line: String) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints one result line.
pub fn report(p: &Params, metric: &str, value: f64, unit: &str, check: Option<&str>) {
    let mut line = format!(
        "RESULT workload={} system={} metric={} value={:.6} unit={} n={} workers={}",
        p.workload,
        system(),
        metric,
        value,
        unit,
        p.n,
        p.workers
    );
    if let Some(c) = check {
        line.push_str(" check=");
        line.push_str(c);
    }
    emit(line);
}

/// Prints a failure line: the measurement `metric` could not be taken.
pub fn fail(p: &Params, metric: &str, unit: &str, error: &str) {
    let unit = if unit.is_empty() { "-" } else { unit };
    emit(format!(
        "RESULT workload={} system={} metric={} status=fail value=nan unit={} n={} workers={} error={}",
        p.workload,
        system(),
        metric,
        unit,
        p.n,
        p.workers,
        error.replace('\n', " ")
    ));
}

/// Nanoseconds per operation.
pub fn ns_per(d: Duration, ops: u64) -> f64 {
    d.as_nanos() as f64 / ops.max(1) as f64
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`, ...).
pub fn proc_status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            if let Some(rest) = rest.strip_prefix(':') {
                let kb: u64 = rest
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                return kb * 1024;
            }
        }
    }
    0
}

/// Resident set size now.
pub fn rss_bytes() -> u64 {
    proc_status_bytes("VmRSS")
}

/// Peak resident set size of the process.
pub fn peak_rss_bytes() -> u64 {
    proc_status_bytes("VmHWM")
}

/// splitmix64: the same generator in Rust, Go and Python, so that every system
/// sleeps exactly the same durations in the timer workload.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed of the timer workload.
pub const TIMER_SEED: u64 = 42;

/// Sleep of task `i` in the timer workload, in milliseconds: 1..=max_ms.
pub fn timer_ms(i: u64, max_ms: u64) -> u64 {
    1 + splitmix64(TIMER_SEED.wrapping_add(i)) % max_ms
}

/// Longest sleep and sum of sleeps (ms) of tasks 0..n: the sum is printed as a
/// check that all systems slept the same durations.
pub fn timer_plan(n: u64, max_ms: u64) -> (u64, u64) {
    (0..n).fold((0, 0), |(mx, sum), i| {
        let d = timer_ms(i, max_ms);
        (mx.max(d), sum + d)
    })
}

/// The skynet sum for `n` leaves: 0 + 1 + ... + (n-1).
pub fn skynet_expected(n: u64) -> u64 {
    n * (n - 1) / 2
}

/// Checks that `n` is a power of 10 (skynet's tree is 10-ary) of at least 10.
pub fn check_skynet_size(n: u64) -> Result<(), String> {
    let mut m = n;
    while m > 1 && m.is_multiple_of(10) {
        m /= 10;
    }
    if m == 1 && n >= 10 {
        Ok(())
    } else {
        Err(format!("skynet size must be a power of 10, got {n}"))
    }
}

/// Fails loudly when the skynet sum is wrong.
pub fn check_skynet(p: &Params, got: u64) -> Result<(), String> {
    let want = skynet_expected(p.n);
    if got != want {
        return Err(format!("WRONG SKYNET SUM: got {got}, expected {want}"));
    }
    Ok(())
}

/// Timer workload: longest sleep in ms.
pub const TIMER_MAX_MS: u64 = 1000;

/// Reports the timer workload's three metrics: total ms until every sleep is
/// done, that minus the longest sleep (the runtime's own overhead), and peak RSS.
/// `done` (sleeps that completed) must equal n; it is printed as the check.
pub fn report_timers(p: &Params, d: Duration, done: u64) -> Result<(), String> {
    if done != p.n {
        return Err(format!("only {done} of {} sleeps completed", p.n));
    }
    let (longest, _) = timer_plan(p.n, TIMER_MAX_MS);
    let check = done.to_string();
    report(p, "total_ms", ms(d), "ms", Some(&check));
    report(p, "overhead_ms", ms(d) - longest as f64, "ms", Some(&check));
    let peak = peak_rss_bytes() as f64 / (1 << 20) as f64;
    report(p, "peak_rss", peak, "MiB", Some(&check));
    Ok(())
}

/// Channel ping-pong: two tasks bouncing a value over two channels of capacity
/// 1, on all workers; ns per round trip.
pub const PINGPONG_CAPACITY: usize = 1;

/// MPMC bounded queue: producers, consumers and capacity (identical in Go and
/// Python). n items in total, producer k sends k, k+P, k+2P, ...; ns per item.
pub const MPMC_PRODUCERS: u64 = 4;
pub const MPMC_CONSUMERS: u64 = 4;
pub const MPMC_CAPACITY: usize = 1024;

/// Mutex contention: this many tasks each doing n/MUTEX_TASKS
/// `lock; counter += 1; unlock`; ns per lock.
pub const MUTEX_TASKS: u64 = 64;

/// Semaphore: this many tasks share SEM_PERMITS permits; each does n/SEM_TASKS
/// times `acquire; inside += 1 (checked <= SEM_PERMITS); yield; inside -= 1;
/// release`, and the total of acquisitions is checked; ns per acquire. The yield
/// inside keeps a permit held across a switch, so the permits are really
/// contended (without it a one-thread runtime would never queue a waiter).
pub const SEM_TASKS: u64 = 64;
pub const SEM_PERMITS: usize = 8;

/// Fails loudly when a sum over 0..n is wrong.
pub fn check_sum(what: &str, n: u64, got: u64) -> Result<(), String> {
    let want = n * n.saturating_sub(1) / 2;
    if got != want {
        return Err(format!("wrong {what} sum: got {got}, expected {want}"));
    }
    Ok(())
}

/// Idle-memory workload: how long the idle tasks sleep (they are cancelled or the
/// process exits long before).
pub const IDLE_SLEEP: Duration = Duration::from_secs(3600);

/// Server workloads: the address every server binds (`--port` gives the port).
pub const SERVER_HOST: &str = "127.0.0.1";

/// Server workloads: the smallest listen backlog of the servers (may's
/// `TcpListener::bind` fixes 1024; ivy uses 4096 and Go `net.core.somaxconn`,
/// 4096 here; tokio and Python ask for this). Above the 1000 connections that
/// the load generator opens at once, so that no SYN is dropped.
pub const SERVER_BACKLOG: u32 = 1024;

/// Announces a listening server to the harness: `LISTENING port=<p>`, flushed.
/// Print it once the socket is bound and listening, before the first accept.
pub fn listening(port: u16) {
    emit(format!("LISTENING port={port}"));
}

/// TCP echo: the load generator's message size (each connection has one message
/// in flight at a time).
pub const ECHO_MSG: usize = 64;

/// TCP echo: each connection reads up to this many bytes at a time and writes
/// back exactly what it read.
pub const ECHO_BUF: usize = 4096;

/// HTTP hello: the connection buffer. A request that does not fit in it (no
/// `\r\n\r\n` within 4 KiB) closes the connection.
pub const HTTP_BUF: usize = 4096;

/// HTTP hello: the one response, identical in every system.
pub const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

/// Fills `out` with `count` copies of [`HTTP_RESPONSE`]: the answer to that many
/// pipelined requests, written with one `write_all`.
pub fn http_responses(count: usize, out: &mut Vec<u8>) {
    out.clear();
    for _ in 0..count {
        out.extend_from_slice(HTTP_RESPONSE);
    }
}

/// HTTP hello's request handling, the same in every system: counts the complete
/// requests (each ending in `\r\n\r\n`) at the start of `buf` and returns
/// `(requests, bytes they take)`; what follows is an incomplete request to keep.
pub fn http_requests(buf: &[u8]) -> (usize, usize) {
    let (mut count, mut start) = (0, 0);
    while let Some(i) = buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
        count += 1;
        start += i + 4;
    }
    (count, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_requests_counts_complete_requests() {
        assert_eq!(http_requests(b""), (0, 0));
        assert_eq!(http_requests(b"GET / HTTP/1.1\r\nHost: x\r\n"), (0, 0));
        let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(http_requests(one), (1, one.len()));
        let mut two = one.repeat(2);
        two.extend_from_slice(b"GET / HT");
        assert_eq!(http_requests(&two), (2, 2 * one.len()));
    }

    #[test]
    fn http_response_length_matches_body() {
        let s = std::str::from_utf8(HTTP_RESPONSE).unwrap();
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
