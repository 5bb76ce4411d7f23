//! Sockets through the public API, loopback only: TCP echo at scale, partial
//! reads and writes, split halves, deadlines, cancellation, UDP, Unix sockets,
//! plain threads, std::io adapters.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivy::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};

mod common;
use common::rt;

/// Deterministic payload for connection `i`.
fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// Serves echo on `listener` until `connections` connections have been handled;
/// returns the bytes echoed.
fn echo_server(listener: TcpListener, connections: usize) -> u64 {
    let total = Arc::new(AtomicUsize::new(0));
    let mut handlers = Vec::new();
    for _ in 0..connections {
        let (mut s, _) = listener.accept().expect("accept");
        let total = total.clone();
        handlers.push(ivy::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).expect("server read");
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).expect("server write");
                total.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for h in handlers {
        h.join().unwrap();
    }
    total.load(Ordering::Relaxed) as u64
}

#[test]
fn echo_1000_concurrent_connections_on_two_workers() {
    const CONNS: usize = 1000;
    let rt = rt(2);
    let (echoed, sent) = rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ivy::spawn(move || echo_server(listener, CONNS));
        let clients: Vec<_> = (0..CONNS)
            .map(|i| {
                ivy::spawn(move || {
                    let len = 1 + (i * 977) % 20_000;
                    let data = payload(i, len);
                    let mut s = TcpStream::connect(addr).unwrap();
                    let reader = s.try_clone().unwrap();
                    // Read concurrently with writing, or big payloads deadlock on
                    // full socket buffers.
                    let rd = ivy::spawn(move || {
                        let mut back = Vec::new();
                        (&reader).read_to_end(&mut back).unwrap();
                        back
                    });
                    s.write_all(&data).unwrap();
                    s.shutdown(Shutdown::Write).unwrap();
                    let back = rd.join().unwrap();
                    assert_eq!(back.len(), data.len(), "connection {i}");
                    assert!(back == data, "connection {i}: payload differs");
                    len as u64
                })
            })
            .collect();
        let sent: u64 = clients.into_iter().map(|h| h.join().unwrap()).sum();
        (server.join().unwrap(), sent)
    });
    let expected: u64 = (0..CONNS).map(|i| 1 + ((i * 977) % 20_000) as u64).sum();
    assert_eq!(sent, expected);
    assert_eq!(echoed, expected);
}

fn set_buffer(fd: i32, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt reads `bytes` (a c_int we own) for its stated length.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &bytes as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn large_buffers_through_small_socket_buffers() {
    const LEN: usize = 8 << 20;
    for workers in [1, 2] {
        let rt = rt(workers);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let writer = ivy::spawn(move || {
                let (s, _) = listener.accept().unwrap();
                set_buffer(s.as_raw_fd(), libc::SO_SNDBUF, 32 << 10);
                let data = payload(7, LEN);
                // One write_all of 8 MiB: many partial writes underneath.
                (&s).write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            });
            // Only the send buffer is shrunk: tiny receive windows make loopback
            // TCP itself crawl (persist timer), which tests nothing of ours.
            let s = TcpStream::connect(addr).unwrap();
            let mut got = Vec::with_capacity(LEN);
            let mut buf = vec![0u8; 1500];
            let mut reads = 0;
            loop {
                let n = (&s).read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                reads += 1;
                got.extend_from_slice(&buf[..n]);
            }
            writer.join().unwrap();
            assert_eq!(got.len(), LEN);
            assert!(got == payload(7, LEN));
            assert!(reads > 100, "expected many partial reads, got {reads}");
        });
    }
}

#[test]
fn split_halves_full_duplex_on_two_tasks() {
    const LEN: usize = 4 << 20;
    let rt = rt(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Server: echo with separate reader and writer tasks over a queue-free
        // design: the reader task writes straight into the write half.
        let server = ivy::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let (mut rd, mut wr) = s.split();
            let mut buf = [0u8; 8192];
            loop {
                let n = rd.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                wr.write_all(&buf[..n]).unwrap();
            }
            wr.shutdown().unwrap();
        });
        let s = TcpStream::connect(addr).unwrap();
        let (mut rd, mut wr) = s.split();
        drop(s);
        let writer = ivy::spawn(move || {
            let data = payload(3, LEN);
            for chunk in data.chunks(100_000) {
                wr.write_all(chunk).unwrap();
            }
            wr.shutdown().unwrap();
        });
        let reader = ivy::spawn(move || {
            let mut back = Vec::new();
            rd.read_to_end(&mut back).unwrap();
            back
        });
        writer.join().unwrap();
        let back = reader.join().unwrap();
        server.join().unwrap();
        assert_eq!(back.len(), LEN);
        assert!(back == payload(3, LEN));
    });
}

#[test]
fn read_timeout_and_scope_deadline() {
    let rt = rt(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The peer writes only once both timeouts have been seen (a handshake:
        // writing after a fixed 600 ms could land inside a timed read on a
        // loaded machine).
        let send_late = Arc::new(ivy::sync::Event::new());
        let go = send_late.clone();
        let peer = ivy::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            go.wait();
            (&s).write_all(b"late").unwrap();
            ivy::sleep(Duration::from_millis(200));
        });
        let s = TcpStream::connect(addr).unwrap();
        // Socket timeout.
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_millis(100)));
        let t0 = Instant::now();
        let e = (&s).read(&mut [0u8; 16]).unwrap_err();
        let took = t0.elapsed();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(2),
            "{took:?}"
        );
        s.set_read_timeout(None).unwrap();
        assert!(s.set_read_timeout(Some(Duration::ZERO)).is_err());
        // Scope deadline: the read reports TimedOut and the scope Elapsed.
        let t0 = Instant::now();
        let r = ivy::timeout(Duration::from_millis(100), || {
            (&s).read(&mut [0u8; 16]).map_err(|e| e.kind())
        });
        let took = t0.elapsed();
        assert!(r.is_err(), "scope must report Elapsed: {r:?}");
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // Nothing was lost: the late data arrives intact.
        send_late.set();
        let mut buf = [0u8; 4];
        (&s).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
        peer.join().unwrap();
    });
}

/// A listener with a zero backlog whose queue we fill, so the next connect's SYN
/// is dropped and the connect hangs.
fn saturated_listener() -> (i32, SocketAddr, Vec<std::net::TcpStream>) {
    // SAFETY: plain socket syscalls on values we own; results are checked.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let r = libc::bind(
            fd,
            &sin as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0);
        assert_eq!(libc::listen(fd, 0), 0);
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        libc::getsockname(fd, &mut sin as *mut _ as *mut libc::sockaddr, &mut len);
        let port = u16::from_be(sin.sin_port);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Fill the accept queue (backlog 0 admits one or two).
        let mut fillers = Vec::new();
        for _ in 0..4 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        (fd, addr, fillers)
    }
}

#[test]
fn connect_deadlines() {
    let (fd, addr, fillers) = saturated_listener();
    let rt = rt(2);
    rt.block_on(move || {
        let t0 = Instant::now();
        let e = TcpStream::connect_timeout(&addr, Duration::from_millis(150)).unwrap_err();
        let took = t0.elapsed();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(2),
            "{took:?}"
        );

        let t0 = Instant::now();
        let r = ivy::timeout(Duration::from_millis(150), || {
            TcpStream::connect(addr).map_err(|e| e.kind())
        });
        let took = t0.elapsed();
        assert!(r.is_err(), "{r:?}");
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(2),
            "{took:?}"
        );
    });
    drop(fillers);
    // SAFETY: our own listener fd, closed once.
    unsafe { libc::close(fd) };
}

#[test]
fn connection_refused_is_precise() {
    let rt = rt(1);
    rt.block_on(|| {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    });
}

#[test]
fn cancel_task_blocked_in_read() {
    let rt = rt(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for _ in 0..20 {
            let reader = ivy::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut buf = [0u8; 8];
                let _ = s.read(&mut buf);
                unreachable!("the read never completes");
            });
            let (peer, _) = listener.accept().unwrap();
            ivy::sleep(Duration::from_millis(5));
            reader.cancel();
            let e = reader.join().unwrap_err();
            assert!(e.is_cancelled(), "{e}");
            // The cancelled task's socket was closed: the peer sees EOF.
            let mut buf = [0u8; 1];
            assert_eq!((&peer).read(&mut buf).unwrap(), 0);
        }
    });
}

#[test]
fn bufreader_bufwriter_line_protocol() {
    let rt = rt(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ivy::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let reader = BufReader::new(&s);
            let mut writer = BufWriter::new(&s);
            let mut lines = 0;
            for line in reader.lines() {
                let line = line.unwrap();
                writeln!(writer, "{}", line.to_uppercase()).unwrap();
                writer.flush().unwrap();
                lines += 1;
            }
            lines
        });
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        assert!(s.nodelay().unwrap());
        assert_eq!(s.peer_addr().unwrap(), addr);
        let mut reader = BufReader::new(&s);
        for i in 0..200 {
            writeln!(&s, "line number {i}").unwrap();
            let mut back = String::new();
            reader.read_line(&mut back).unwrap();
            assert_eq!(back, format!("LINE NUMBER {i}\n"));
        }
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(server.join().unwrap(), 200);
    });
}

#[test]
fn plain_thread_client_against_task_server() {
    let rt = rt(2);
    let listener = rt.block_on(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    let server = rt.spawn(move || echo_server(listener, 3));
    let threads: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                // ivy sockets on plain threads: waits happen in poll(2).
                let mut s = TcpStream::connect(addr).unwrap();
                let data = payload(i, 100_000);
                let r = s.try_clone().unwrap();
                let rd = std::thread::spawn(move || {
                    let mut back = Vec::new();
                    (&r).read_to_end(&mut back).unwrap();
                    back
                });
                s.write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                assert!(rd.join().unwrap() == data);
                // A plain-thread read timeout.
                let (a, _b) = UnixStream::pair().unwrap();
                a.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let t0 = Instant::now();
                let e = (&a).read(&mut [0u8; 1]).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
                assert!(t0.elapsed() >= Duration::from_millis(50));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(server.join().unwrap(), 300_000);
}

#[test]
fn udp_round_trips() {
    let rt = rt(2);
    rt.block_on(|| {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_addr = server.local_addr().unwrap();
        let srv = ivy::spawn(move || {
            let mut buf = [0u8; 1500];
            for _ in 0..500 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                server.send_to(&buf[..n], from).unwrap();
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server_addr).unwrap();
        assert_eq!(client.peer_addr().unwrap(), server_addr);
        let mut buf = [0u8; 1500];
        for i in 0..500u32 {
            let msg = i.to_le_bytes();
            assert_eq!(client.send(&msg).unwrap(), 4);
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &msg);
        }
        srv.join().unwrap();
        // A receive with nothing to receive honours the socket timeout.
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let e = client.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    });
}

#[test]
fn unix_stream_and_datagram() {
    let dir = std::env::temp_dir().join(format!("ivy-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let rt = rt(2);
    let p = path.clone();
    rt.block_on(move || {
        let listener = UnixListener::bind(&p).unwrap();
        let server = ivy::spawn(move || {
            let mut handlers = Vec::new();
            for _ in 0..50 {
                let (mut s, _) = listener.accept().unwrap();
                handlers.push(ivy::spawn(move || {
                    let mut buf = [0u8; 1024];
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).unwrap();
                    }
                }));
            }
            for h in handlers {
                h.join().unwrap();
            }
        });
        let clients: Vec<_> = (0..50)
            .map(|i| {
                let p = p.clone();
                ivy::spawn(move || {
                    let mut s = UnixStream::connect(&p).unwrap();
                    let data = payload(i, 3000 + i);
                    s.write_all(&data).unwrap();
                    s.shutdown(Shutdown::Write).unwrap();
                    let mut back = Vec::new();
                    s.read_to_end(&mut back).unwrap();
                    assert!(back == data);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        server.join().unwrap();

        let (a, b) = UnixDatagram::pair().unwrap();
        let echo = ivy::spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..100 {
                let n = b.recv(&mut buf).unwrap();
                b.send(&buf[..n]).unwrap();
            }
        });
        let mut buf = [0u8; 64];
        for i in 0..100u64 {
            a.send(&i.to_be_bytes()).unwrap();
            let n = a.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
        echo.join().unwrap();
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn name_resolution_of_localhost() {
    let rt = rt(1);
    rt.block_on(|| {
        let listener = TcpListener::bind("localhost:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let acc = ivy::spawn(move || listener.accept().map(|_| ()).unwrap());
        let s = TcpStream::connect(("localhost", port)).unwrap();
        acc.join().unwrap();
        drop(s);
        let e = TcpStream::connect("no-such-host.invalid:80").unwrap_err();
        assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    });
}

#[test]
fn stream_moved_between_tasks_on_different_workers() {
    // A stream connected in one task and used in others (possibly on the other
    // worker) keeps working: its registration follows it.
    let rt = rt(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = ivy::spawn(move || echo_server(listener, 1));
        let mut s = TcpStream::connect(addr).unwrap();
        for round in 0..50u32 {
            s = ivy::spawn(move || {
                let mut s = s;
                s.write_all(&round.to_le_bytes()).unwrap();
                let mut back = [0u8; 4];
                s.read_exact(&mut back).unwrap();
                assert_eq!(u32::from_le_bytes(back), round);
                s
            })
            .join()
            .unwrap();
        }
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(server.join().unwrap(), 200);
    });
}

#[test]
fn acceptor_tasks_on_every_worker_share_one_listener() {
    // Several tasks (spread over both workers) accept from one listener: every
    // connection is accepted exactly once, whichever worker's poll holds the
    // registration.
    const ACCEPTORS: usize = 6;
    const CONNS: usize = 300;
    for _ in 0..5 {
        let rt = rt(2);
        let counts = rt.block_on(|| {
            let listener = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
            let addr = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let acceptors: Vec<_> = (0..ACCEPTORS)
                .map(|_| {
                    let listener = listener.clone();
                    let accepted = accepted.clone();
                    ivy::spawn(move || {
                        let mut mine = 0;
                        for s in listener.incoming() {
                            let s = s.unwrap();
                            let mut b = [0u8; 1];
                            (&s).read_exact(&mut b).unwrap();
                            if b[0] == 0 {
                                break; // quit (clients send odd bytes)
                            }
                            (&s).write_all(&b).unwrap();
                            mine += 1;
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        mine
                    })
                })
                .collect();
            let clients: Vec<_> = (0..CONNS)
                .map(|i| {
                    ivy::spawn(move || {
                        let s = TcpStream::connect(addr).unwrap();
                        (&s).write_all(&[i as u8 | 1]).unwrap();
                        let mut b = [0u8; 1];
                        (&s).read_exact(&mut b).unwrap();
                        assert_eq!(b[0], i as u8 | 1);
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            // One quit message per acceptor.
            for _ in 0..ACCEPTORS {
                let s = TcpStream::connect(addr).unwrap();
                (&s).write_all(&[0]).unwrap();
            }
            let per: Vec<usize> = acceptors.into_iter().map(|a| a.join().unwrap()).collect();
            assert_eq!(accepted.load(Ordering::Relaxed), CONNS);
            per
        });
        assert_eq!(counts.iter().sum::<usize>(), CONNS);
    }
}

#[test]
fn udp_send_to_names_and_two_tasks_on_one_socket() {
    let rt = rt(2);
    rt.block_on(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind(("localhost", 0)).unwrap();
        let b_port = b.local_addr().unwrap().port();
        // A receiver task and a sender task share `b` (clones of one socket).
        let b_rx = b.try_clone().unwrap();
        let rx = ivy::spawn(move || {
            let mut buf = [0u8; 16];
            let mut sum = 0u64;
            for _ in 0..100 {
                let (n, _) = b_rx.recv_from(&mut buf).unwrap();
                sum += u64::from_le_bytes(buf[..n].try_into().unwrap());
            }
            sum
        });
        for i in 0..100u64 {
            a.send_to(&i.to_le_bytes(), format!("127.0.0.1:{b_port}"))
                .unwrap();
            if i % 10 == 0 {
                ivy::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(rx.join().unwrap(), (0..100).sum::<u64>());
    });
}

#[test]
fn socket_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<TcpListener>();
    send_sync::<TcpStream>();
    send_sync::<ivy::net::TcpReadHalf>();
    send_sync::<ivy::net::TcpWriteHalf>();
    send_sync::<UdpSocket>();
    send_sync::<UnixListener>();
    send_sync::<UnixStream>();
    send_sync::<UnixDatagram>();
    send_sync::<ivy::fs::File>();
}

#[test]
fn peek_and_unix_datagram_paths() {
    let dir = std::env::temp_dir().join(format!("ivy-dgram-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rt = rt(1);
    let d = dir.clone();
    rt.block_on(move || {
        // peek leaves the data for the next read.
        let (a, b) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        let peeker = ivy::spawn(move || {
            let mut buf = [0u8; 5];
            let n = server.peek(&mut buf).unwrap();
            let mut all = [0u8; 5];
            (&server).read_exact(&mut all).unwrap();
            (n, buf, all)
        });
        ivy::sleep(Duration::from_millis(5));
        (&client).write_all(b"hello").unwrap();
        let (n, peeked, read) = peeker.join().unwrap();
        assert_eq!(&read, b"hello");
        assert_eq!(&peeked[..n], &b"hello"[..n]);
        drop((a, b));

        let server_path = d.join("server.sock");
        let client_path = d.join("client.sock");
        let server = UnixDatagram::bind(&server_path).unwrap();
        let client = UnixDatagram::bind(&client_path).unwrap();
        let echo = ivy::spawn(move || {
            let mut buf = [0u8; 32];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let to = from.as_pathname().unwrap().to_owned();
            server.send_to(&buf[..n], to).unwrap();
        });
        client.send_to(b"ping", &server_path).unwrap();
        let mut buf = [0u8; 32];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from.as_pathname(), Some(server_path.as_path()));
        echo.join().unwrap();
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The I/O budget: a task whose reads never block (the peer filled the socket
/// beforehand) still lets the other tasks of its worker run, every
/// `IO_BUDGET` operations, and still sees its cancellation.
#[test]
fn never_blocking_reader_yields_and_can_be_cancelled() {
    use std::sync::atomic::AtomicBool;
    for _ in 0..20 {
        let rt = ivy::Builder::new().workers(1).build().unwrap();
        rt.block_on(|| {
            let (a, b) = ivy::net::UnixStream::pair().unwrap();
            // Pre-fill: every 1-byte read below succeeds at once.
            // (16 KiB fits in any Unix socket buffer.)
            let filled = 16 * 1024;
            (&a).write_all(&vec![7u8; filled]).unwrap();
            let ticked = Arc::new(AtomicBool::new(false));
            let reads_before_tick = Arc::new(AtomicUsize::new(usize::MAX));
            let reader = {
                let (ticked, seen) = (ticked.clone(), reads_before_tick.clone());
                ivy::spawn(move || {
                    // Spawned from here, on this one worker: it runs only when
                    // the reader suspends.
                    let t = ticked.clone();
                    let _ticker = ivy::spawn(move || t.store(true, Ordering::SeqCst));
                    let mut byte = [0u8; 1];
                    let mut reads = 0usize;
                    loop {
                        (&b).read_exact(&mut byte).unwrap();
                        reads += 1;
                        if ticked.load(Ordering::SeqCst)
                            && seen.load(Ordering::SeqCst) == usize::MAX
                        {
                            seen.store(reads, Ordering::SeqCst);
                        }
                        if reads == filled {
                            // Drained: now it would block; wait to be cancelled.
                            ivy::sleep(std::time::Duration::from_secs(60));
                        }
                    }
                })
            };
            // The main task runs again once the reader yields; cancel it then.
            while !ticked.load(Ordering::SeqCst) {
                ivy::yield_now();
            }
            reader.cancel();
            assert!(reader.join().unwrap_err().is_cancelled());
            let n = reads_before_tick.load(Ordering::SeqCst);
            assert!(
                n <= 1024,
                "the reader ran {n} reads before another task ran"
            );
            drop(a);
        });
    }
}

#[test]
fn a_short_read_before_end_of_file_still_sees_the_end() {
    // A read shorter than its buffer clears READABLE without an EAGAIN read
    // (io/registration.rs, `do_io_until_drained`), except once the peer's end
    // of file was dispatched: its edge has passed, and the reader must get 0,
    // not park for good. The data and the FIN arrive together while the reader
    // is parked, so the FIN's event is dispatched before the short read.
    let rt = rt(1);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for i in 0..200 {
            let client = std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                std::thread::sleep(Duration::from_millis(1));
                c.write_all(b"hello").unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                c
            });
            let (s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            loop {
                let deadline = Some(Instant::now() + Duration::from_secs(10));
                match s.read_deadline(&mut buf, deadline) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("iteration {i}: {e} after {got:?}"),
                }
            }
            assert_eq!(got, b"hello", "iteration {i}");
            drop(client.join().unwrap());
        }
    });
}
