//! A minimal HTTP/1.1 server with keep-alive, answering every request with
//! "Hello, world!": a target for load generators such as `wrk`.
//!
//! Usage:
//!
//!     cargo run --release --example http_hello -- [PORT]
//!     wrk -t2 -c100 -d10s http://127.0.0.1:8080/
//!
//! The port comes from the first argument, else the `PORT` environment
//! variable, else 8080; it listens on 127.0.0.1 (`HOST` overrides). One task
//! per connection, plain `BufReader` / `BufWriter` over `&TcpStream`: requests
//! are parsed line by line (request line, headers, a `Content-Length` body is
//! skipped), pipelined requests are answered in order, and responses are
//! flushed when no further request is already buffered. HTTP/1.0 clients and
//! `Connection: close` get their connection closed after the response.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use ivy::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"Hello, world!";

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .map(|p| p.parse().expect("the port must be a number"))
        .unwrap_or(8080);
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_string());
    ivy::run(move || {
        let listener = match TcpListener::bind((host.as_str(), port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("http_hello: cannot bind {host}:{port}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!(
            "http_hello: listening on http://{}/",
            listener.local_addr().unwrap()
        );
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    ivy::spawn(move || {
                        let _ = serve(stream);
                    });
                }
                Err(e) => {
                    eprintln!("http_hello: accept: {e}");
                    ivy::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    });
}

/// Serves one connection until the client closes it or asks to.
fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(8 * 1024, &stream);
    let mut writer = BufWriter::with_capacity(8 * 1024, &stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break; // client closed
        }
        let request_line = line.trim_end();
        if request_line.is_empty() {
            continue; // tolerate stray CRLF between requests
        }
        let http10 = request_line.ends_with("HTTP/1.0");
        let mut keep_alive = !http10;
        let mut content_length = 0u64;
        // Headers.
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    if value.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if value.eq_ignore_ascii_case("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        if content_length > 0 {
            io::copy(&mut (&mut reader).take(content_length), &mut io::sink())?;
        }
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            BODY.len(),
            if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        )?;
        writer.write_all(BODY)?;
        if !keep_alive {
            writer.flush()?;
            break;
        }
        // Pipelining: answer everything already received before flushing.
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
    writer.flush()
}
