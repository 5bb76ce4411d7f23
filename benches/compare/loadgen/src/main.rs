//! The suite's TCP echo load generator, the same for every server.
//!
//!     loadgen --port P --conns C [--warmup SECS] [--duration SECS]
//!             [--system NAME] [--workers W] [--workload tcp_echo] [--host 127.0.0.1]
//!             [--ready-timeout SECS]
//!
//! One thread, one `mio::Poll`, closed loop: C connections, each sending a
//! 64-byte message, waiting until all 64 bytes have come back (every byte is
//! compared with what was sent), recording the round trip (`Instant`), and
//! sending the next one. Phases:
//!
//! 1. *ready*: all C connections are opened at once and each does one round
//!    trip, then waits; the phase ends when every one of them has (so every
//!    connection was accepted and served before anything is timed), and all
//!    start sending together. Longer than `--ready-timeout` (default 30 s):
//!    failure.
//! 2. *warm-up* (`--warmup`, default 1 s): traffic as measured, not recorded.
//! 3. *measured* (`--duration`, default 5 s): every round trip *completed* in
//!    this window is counted and its latency kept.
//!
//! Output: `RESULT` lines in bench-common's format for the server being
//! measured (`--system`, `--workers`, `n` = connections): `msgs_per_s`
//! (round trips completed per second), `p50_us` and `p99_us` (exact
//! nearest-rank percentiles over all round trips of the measured window). A
//! connect error, a reset, an early EOF, a wrong byte or a measured window
//! without any round trip prints one `status=fail` line and exits 1.
//! RLIMIT_NOFILE is raised to its hard limit first.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use bench_common::{self as bc, Params};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const MSG: usize = bc::ECHO_MSG;

struct Options {
    host: String,
    port: u16,
    conns: usize,
    warmup: Duration,
    duration: Duration,
    ready_timeout: Duration,
    system: String,
    workers: usize,
    workload: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --port P --conns C [--warmup SECS] [--duration SECS] [--system NAME]\n\
         \x20              [--workers W] [--workload NAME] [--host HOST] [--ready-timeout SECS]"
    );
    std::process::exit(2);
}

fn options() -> Options {
    let mut o = Options {
        host: bc::SERVER_HOST.to_string(),
        port: 0,
        conns: 10,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        ready_timeout: Duration::from_secs(30),
        system: "?".to_string(),
        workers: 0,
        workload: "tcp_echo".to_string(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    let secs = |v: Option<&String>| -> Duration {
        v.and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or_else(|| usage())
    };
    while let Some(a) = it.next() {
        let v = it.next();
        match a.as_str() {
            "--host" => o.host = v.cloned().unwrap_or_else(|| usage()),
            "--port" => o.port = v.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()),
            "--conns" => o.conns = v.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()),
            "--warmup" => o.warmup = secs(v),
            "--duration" => o.duration = secs(v),
            "--ready-timeout" => o.ready_timeout = secs(v),
            "--system" => o.system = v.cloned().unwrap_or_else(|| usage()),
            "--workers" => o.workers = v.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()),
            "--workload" => o.workload = v.cloned().unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    if o.port == 0 || o.conns == 0 || o.duration.is_zero() {
        usage();
    }
    o
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (1000 connections need more
/// than the usual 1024 descriptors once the poll and std's are counted).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Ready,
    Warmup,
    Measured,
}

struct Conn {
    stream: TcpStream,
    connected: bool,
    /// Number of the message in flight (the first is 0).
    seq: u64,
    msg: [u8; MSG],
    /// Bytes of `msg` written so far, and echoed bytes received so far.
    sent: usize,
    got: usize,
    /// When the first byte of `msg` was handed to the kernel.
    start: Instant,
    /// Round trips completed in the measured window.
    measured: u64,
    /// Done with its first round trip, waiting for the others (ready phase).
    parked: bool,
}

/// The message `seq` of connection `id`: 64 pseudo-random bytes (splitmix64),
/// different for every connection and every message, so a byte echoed to the
/// wrong connection, twice, or out of order is caught.
fn fill(msg: &mut [u8; MSG], id: usize, seq: u64) {
    let base = ((id as u64) << 40) ^ seq.wrapping_mul(MSG as u64 / 8);
    for (w, chunk) in msg.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&bc::splitmix64(base.wrapping_add(w as u64)).to_le_bytes());
    }
}

struct Run {
    conns: Vec<Conn>,
    phase: Phase,
    /// Connections that completed at least one round trip (the ready phase).
    ready: usize,
    connected: usize,
    measure_start: Instant,
    measure_end: Instant,
    /// Round-trip times (ns) of the measured window.
    samples: Vec<u64>,
}

impl Run {
    /// Makes all the progress connection `i` can without blocking: writes the
    /// rest of its message, reads echoed bytes, and on a complete echo records
    /// it and starts the next message.
    fn drive(&mut self, i: usize) -> Result<(), String> {
        let Run {
            conns,
            phase,
            ready,
            connected,
            measure_start,
            measure_end,
            samples,
        } = self;
        let c = &mut conns[i];
        if !c.connected {
            if let Some(e) = c.stream.take_error().map_err(|e| e.to_string())? {
                return Err(format!("connect (connection {i}): {e}"));
            }
            match c.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(format!("connect (connection {i}): {e}")),
            }
            c.connected = true;
            *connected += 1;
            c.stream
                .set_nodelay(true)
                .map_err(|e| format!("TCP_NODELAY: {e}"))?;
            fill(&mut c.msg, i, 0);
            c.start = Instant::now();
        }
        let mut rbuf = [0u8; MSG];
        loop {
            while !c.parked && c.sent < MSG {
                match c.stream.write(&c.msg[c.sent..]) {
                    Ok(0) => return Err(format!("write returned 0 (connection {i})")),
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("write (connection {i}): {e}")),
                }
            }
            match c.stream.read(&mut rbuf[..MSG - c.got]) {
                Ok(0) => {
                    return Err(format!(
                        "unexpected EOF (connection {i}, message {}, {} of {MSG} bytes echoed)",
                        c.seq, c.got
                    ))
                }
                Ok(n) => {
                    if c.got + n > c.sent {
                        return Err(format!(
                            "connection {i} echoed {} bytes of message {} before they were sent",
                            c.got + n - c.sent,
                            c.seq
                        ));
                    }
                    if rbuf[..n] != c.msg[c.got..c.got + n] {
                        let k = (0..n).find(|&k| rbuf[k] != c.msg[c.got + k]).unwrap_or(0);
                        return Err(format!(
                            "WRONG ECHO: connection {i}, message {}, byte {}: got {:#04x}, sent {:#04x}",
                            c.seq,
                            c.got + k,
                            rbuf[k],
                            c.msg[c.got + k]
                        ));
                    }
                    c.got += n;
                    if c.got == MSG {
                        let now = Instant::now();
                        if c.seq == 0 {
                            *ready += 1;
                            c.parked = true;
                        }
                        if *phase == Phase::Measured && now >= *measure_start && now < *measure_end
                        {
                            samples.push((now - c.start).as_nanos() as u64);
                            c.measured += 1;
                        }
                        c.seq += 1;
                        fill(&mut c.msg, i, c.seq);
                        c.sent = 0;
                        c.got = 0;
                        c.start = now;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read (connection {i}, message {}): {e}", c.seq)),
            }
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn run(o: &Options, p: &Params) -> Result<(), String> {
    let addr: SocketAddr = (o.host.as_str(), o.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {}: {e}", o.host))?
        .next()
        .ok_or_else(|| format!("no address for {}", o.host))?;
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let now = Instant::now();
    let mut r = Run {
        conns: Vec::with_capacity(o.conns),
        phase: Phase::Ready,
        ready: 0,
        connected: 0,
        measure_start: now,
        measure_end: now,
        samples: Vec::with_capacity(1 << 20),
    };
    for i in 0..o.conns {
        let mut stream = TcpStream::connect(addr)
            .map_err(|e| format!("connect {addr} (connection {i}): {e}"))?;
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("epoll_ctl: {e}"))?;
        r.conns.push(Conn {
            stream,
            connected: false,
            seq: 0,
            msg: [0; MSG],
            sent: 0,
            got: 0,
            start: now,
            measured: 0,
            parked: false,
        });
    }
    let start = now;
    let mut ready_took = Duration::ZERO;
    let mut connected_took = None;
    let ready_deadline = now + o.ready_timeout;
    let mut warmup_end = now;
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let deadline = match r.phase {
            Phase::Ready => {
                if r.connected == o.conns && connected_took.is_none() {
                    connected_took = Some(now - start);
                }
                if r.ready == o.conns {
                    // Everybody starts together.
                    r.phase = Phase::Warmup;
                    warmup_end = now + o.warmup;
                    ready_took = now - start;
                    for i in 0..o.conns {
                        r.conns[i].parked = false;
                        r.conns[i].start = Instant::now();
                        r.drive(i)?;
                    }
                    continue;
                }
                if now >= ready_deadline {
                    return Err(format!(
                        "not ready after {:?}: {} of {} connections connected, {} echoed once",
                        o.ready_timeout, r.connected, o.conns, r.ready
                    ));
                }
                ready_deadline
            }
            Phase::Warmup => {
                if now >= warmup_end {
                    r.phase = Phase::Measured;
                    r.measure_start = now;
                    r.measure_end = now + o.duration;
                    continue;
                }
                warmup_end
            }
            Phase::Measured => {
                if now >= r.measure_end {
                    break;
                }
                r.measure_end
            }
        };
        match poll.poll(&mut events, Some(deadline - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
        for ev in events.iter() {
            r.drive(ev.token().0)?;
        }
    }
    let secs = o.duration.as_secs_f64();
    let msgs = r.samples.len() as u64;
    if msgs == 0 {
        return Err(format!("no round trip completed in the {secs} s measured"));
    }
    let idle = r.conns.iter().filter(|c| c.measured == 0).count();
    let (lo, hi) = r.conns.iter().fold((u64::MAX, 0), |(lo, hi), c| {
        (lo.min(c.measured), hi.max(c.measured))
    });
    eprintln!(
        "loadgen: {msgs} round trips of {MSG} bytes on {} connections in {secs} s; \
         per connection min {lo}, max {hi}; {idle} connections without a round trip; \
         all connected after {:.0} ms, all echoed once after {:.0} ms",
        o.conns,
        connected_took.unwrap_or(ready_took).as_secs_f64() * 1e3,
        ready_took.as_secs_f64() * 1e3
    );
    r.samples.sort_unstable();
    // The check: round trips measured, and the fewest and most of them one
    // connection got (how fairly the server shares itself out).
    let check = format!("{msgs} conn_min={lo} conn_max={hi}");
    bc::report(p, "msgs_per_s", msgs as f64 / secs, "msgs/s", Some(&check));
    for (metric, q) in [("p50_us", 0.50), ("p99_us", 0.99)] {
        let us = percentile(&r.samples, q) as f64 / 1e3;
        bc::report(p, metric, us, "us", Some(&check));
    }
    Ok(())
}

fn main() {
    let o = options();
    raise_nofile();
    bc::set_system(Box::leak(o.system.clone().into_boxed_str()));
    let p = Params {
        workload: o.workload.clone(),
        n: o.conns as u64,
        workers: o.workers,
        warmup: !o.warmup.is_zero(),
        port: o.port,
    };
    if let Err(e) = run(&o, &p) {
        bc::fail(&p, "all", "-", &e);
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[1, 2], 0.50), 1);
    }

    #[test]
    fn messages_differ_per_connection_and_sequence() {
        let (mut a, mut b, mut c) = ([0; MSG], [0; MSG], [0; MSG]);
        fill(&mut a, 0, 0);
        fill(&mut b, 1, 0);
        fill(&mut c, 0, 1);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
