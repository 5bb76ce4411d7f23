//! TCP echo benchmark: a server mode and a load-generating client mode that
//! prints messages per second and round-trip latency percentiles, for the
//! comparison suite (run the same client against other runtimes' servers).
//!
//! Usage:
//!
//!     cargo run --release --example echo_bench -- server [ADDR]
//!     cargo run --release --example echo_bench -- client [ADDR] [--conns 1,10,100] [--secs 5] [--size 64]
//!     cargo run --release --example echo_bench -- local [--conns ...] [--secs ...] [--size ...]
//!
//! ADDR defaults to 127.0.0.1:7001. `local` runs the server and the client in
//! one process (one runtime). Each client connection sends a message of
//! `--size` bytes, waits for its echo, and repeats until `--secs` pass; one
//! line per connection count is printed:
//!
//!     conns=100 secs=5.00 msgs=812345 msgs_per_sec=162469 p50_us=598 p99_us=1501
//!
//! `IVY_WORKERS` sets the worker threads.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ivy::net::{TcpListener, TcpStream};

struct Opts {
    addr: String,
    conns: Vec<usize>,
    secs: f64,
    size: usize,
}

fn parse(args: &[String]) -> Opts {
    let mut o = Opts {
        addr: "127.0.0.1:7001".to_string(),
        conns: vec![1, 10, 100],
        secs: 5.0,
        size: 64,
    };
    let mut i = 0;
    while i < args.len() {
        let next = |i: usize| args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--conns" => {
                o.conns = next(i)
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse()
                            .expect("--conns takes numbers, e.g. 1,10,100")
                    })
                    .collect();
                i += 1;
            }
            "--secs" => {
                o.secs = next(i).parse().expect("--secs takes a number");
                i += 1;
            }
            "--size" => {
                o.size = next(i)
                    .parse::<usize>()
                    .expect("--size takes a number")
                    .max(1);
                i += 1;
            }
            a => o.addr = a.to_string(),
        }
        i += 1;
    }
    o
}

fn serve(listener: TcpListener) {
    loop {
        let (s, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("echo_bench: accept: {e}");
                ivy::sleep(Duration::from_millis(10));
                continue;
            }
        };
        ivy::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n @ 1..) = (&s).read(&mut buf) {
                if (&s).write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}

/// Runs one round of `conns` connections; prints the result line.
fn client_round(addr: &str, conns: usize, secs: f64, size: usize) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let addr = addr.to_string();
            ivy::spawn(move || -> std::io::Result<Vec<u32>> {
                let mut s = TcpStream::connect(addr.as_str())?;
                s.set_nodelay(true)?;
                let msg = vec![b'x'; size];
                let mut back = vec![0u8; size];
                let mut lat = Vec::with_capacity(1 << 16);
                loop {
                    let t0 = Instant::now();
                    if t0 >= deadline {
                        break;
                    }
                    s.write_all(&msg)?;
                    s.read_exact(&mut back)?;
                    lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.join() {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => {
                errors += 1;
                eprintln!("echo_bench: connection error: {e}");
            }
            Err(e) => {
                errors += 1;
                eprintln!("echo_bench: task error: {e}");
            }
        }
    }
    let took = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.is_empty() {
            0
        } else {
            all[((all.len() - 1) as f64 * p) as usize]
        }
    };
    println!(
        "conns={conns} secs={took:.2} msgs={} msgs_per_sec={:.0} p50_us={} p99_us={}{}",
        all.len(),
        all.len() as f64 / took,
        pct(0.50),
        pct(0.99),
        if errors > 0 {
            format!(" errors={errors}")
        } else {
            String::new()
        }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let opts = parse(args.get(1..).unwrap_or(&[]));
    match mode.as_str() {
        "server" => ivy::run(move || {
            let listener = TcpListener::bind(opts.addr.as_str()).expect("bind");
            eprintln!("echo_bench: serving on {}", listener.local_addr().unwrap());
            serve(listener);
        }),
        "client" => ivy::run(move || {
            for &c in &opts.conns {
                client_round(&opts.addr, c, opts.secs, opts.size);
            }
        }),
        "local" => ivy::run(move || {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().unwrap().to_string();
            let server = ivy::spawn(move || serve(listener));
            for &c in &opts.conns {
                client_round(&addr, c, opts.secs, opts.size);
            }
            server.cancel();
            let _ = server.join();
        }),
        _ => {
            eprintln!(
                "usage: echo_bench server [ADDR] | client [ADDR] [--conns 1,10,100] [--secs S] [--size B] | local [...]"
            );
            std::process::exit(2);
        }
    }
}
