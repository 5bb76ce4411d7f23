//! A TCP echo server: one task per connection, each echoing until EOF.
//!
//! Usage:
//!
//!     cargo run --release --example echo_server -- [ADDR] [--exit-after N]
//!
//! ADDR defaults to 127.0.0.1:7000. With `--exit-after N` the server stops after
//! serving N connections and prints its totals (handy in scripts); otherwise it
//! runs until killed. Pair it with `examples/echo_client.rs`. `IVY_WORKERS`
//! sets the number of worker threads.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ivy::net::TcpListener;

fn main() {
    let mut addr = "127.0.0.1:7000".to_string();
    let mut exit_after: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--exit-after" => {
                exit_after = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .expect("--exit-after needs a number"),
                )
            }
            "-h" | "--help" => {
                eprintln!("usage: echo_server [ADDR] [--exit-after N]");
                return;
            }
            other => addr = other.to_string(),
        }
    }
    ivy::run(move || {
        let listener = match TcpListener::bind(addr.as_str()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("echo_server: cannot bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!(
            "echo_server: listening on {}",
            listener.local_addr().unwrap()
        );
        let bytes = Arc::new(AtomicU64::new(0));
        let mut served = 0u64;
        let mut handlers = Vec::new();
        while exit_after.map_or(true, |n| served < n) {
            let (stream, _) = match listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: report, back off a little, keep serving.
                    eprintln!("echo_server: accept: {e}");
                    ivy::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            };
            served += 1;
            let bytes = bytes.clone();
            let h = ivy::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match (&stream).read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if (&stream).write_all(&buf[..n]).is_err() {
                        break;
                    }
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
            if exit_after.is_some() {
                handlers.push(h);
            }
        }
        for h in handlers {
            let _ = h.join();
        }
        println!(
            "echo_server: served {served} connections, echoed {} bytes",
            bytes.load(Ordering::Relaxed)
        );
    });
}
