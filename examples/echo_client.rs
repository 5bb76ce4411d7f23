//! A TCP echo client: many concurrent connections, each sending messages and
//! checking every echoed byte, then a report of the totals.
//!
//! Usage:
//!
//!     cargo run --release --example echo_server &
//!     cargo run --release --example echo_client -- [ADDR] [CONNS] [MSGS] [SIZE]
//!
//! Defaults: 127.0.0.1:7000, 500 connections, 100 messages each, 256 bytes per
//! message. With ADDR `local`, an echo server is started inside the program.

use std::io::{Read, Write};
use std::time::Instant;

use ivy::net::{TcpListener, TcpStream};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "-h" || a == "--help") {
        eprintln!("usage: echo_client [ADDR|local] [CONNS] [MSGS] [SIZE]");
        return;
    }
    let addr: String = arg(&args, 0, "127.0.0.1:7000".to_string());
    let conns: usize = arg(&args, 1, 500);
    let msgs: usize = arg(&args, 2, 100);
    let size: usize = arg(&args, 3, 256).max(1);

    let report = ivy::run(move || {
        let addr = if addr == "local" {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let local = listener.local_addr().unwrap().to_string();
            ivy::spawn(move || loop {
                let (s, _) = listener.accept().unwrap();
                ivy::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = (&s).read(&mut buf) {
                        if (&s).write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            });
            local
        } else {
            addr
        };
        let started = Instant::now();
        let clients: Vec<_> = (0..conns)
            .map(|c| {
                let addr = addr.clone();
                ivy::spawn(move || -> std::io::Result<(usize, usize)> {
                    let mut s = TcpStream::connect(addr.as_str())?;
                    s.set_nodelay(true)?;
                    let mut out = vec![0u8; size];
                    let mut back = vec![0u8; size];
                    for m in 0..msgs {
                        for (j, b) in out.iter_mut().enumerate() {
                            *b = (c + m + j) as u8;
                        }
                        s.write_all(&out)?;
                        s.read_exact(&mut back)?;
                        if back != out {
                            return Err(std::io::Error::other("echo mismatch"));
                        }
                    }
                    Ok((msgs, msgs * size))
                })
            })
            .collect();
        let (mut ok, mut failed, mut messages, mut bytes) = (0, 0, 0, 0);
        for h in clients {
            match h.join() {
                Ok(Ok((m, b))) => {
                    ok += 1;
                    messages += m;
                    bytes += b;
                }
                Ok(Err(e)) => {
                    failed += 1;
                    eprintln!("echo_client: connection failed: {e}");
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("echo_client: task failed: {e}");
                }
            }
        }
        (ok, failed, messages, bytes, started.elapsed())
    });
    let (ok, failed, messages, bytes, took) = report;
    println!(
        "echo_client: {ok} connections ok, {failed} failed, {messages} messages, {bytes} bytes \
         each way in {:.3} s ({:.0} msgs/s)",
        took.as_secs_f64(),
        messages as f64 / took.as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
