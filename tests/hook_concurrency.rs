//! The `hook` feature's point: unmodified blocking code (std::thread::sleep,
//! std::net, libc poll) in many tasks runs concurrently on few workers. Time
//! bounds are 3x or more above the concurrent expectation and far below the
//! sequential one.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{ms, rt};

#[test]
fn std_thread_sleep_in_200_tasks_on_2_workers_takes_one_sleep() {
    let took = rt(2).block_on(|| {
        let t0 = Instant::now();
        let hs: Vec<_> = (0..200)
            .map(|_| ivy::spawn(|| std::thread::sleep(ms(50))))
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        t0.elapsed()
    });
    // Blocking the workers: 200 * 50 ms / 2 = 5 s.
    assert!(took >= ms(50));
    assert!(took < ms(1500), "took {took:?}");
}

#[test]
fn std_net_echo_with_500_connections_in_tasks() {
    const CONNS: usize = 500;
    const ROUNDS: usize = 10;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (echoed, served) = rt(2).block_on(move || {
        let served = Arc::new(AtomicUsize::new(0));
        let s2 = served.clone();
        let server = ivy::spawn(move || {
            let mut conns = Vec::new();
            for _ in 0..CONNS {
                let (mut s, _) = listener.accept().unwrap();
                let served = s2.clone();
                conns.push(ivy::spawn(move || {
                    let mut buf = [0u8; 64];
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).unwrap();
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            for c in conns {
                c.join().unwrap();
            }
        });
        let clients: Vec<_> = (0..CONNS)
            .map(|i| {
                ivy::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    let mut ok = 0;
                    for r in 0..ROUNDS {
                        let msg = format!("{i}:{r}");
                        c.write_all(msg.as_bytes()).unwrap();
                        let mut back = vec![0u8; msg.len()];
                        c.read_exact(&mut back).unwrap();
                        if back == msg.as_bytes() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let echoed: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
        server.join().unwrap();
        (echoed, served.load(Ordering::SeqCst))
    });
    assert_eq!(echoed, CONNS * ROUNDS);
    // Every message was echoed in one read (small messages, one in flight).
    assert_eq!(served, CONNS * ROUNDS);
}

#[test]
fn four_tasks_accept_on_one_listener_each_connection_once() {
    const CONNS: usize = 200;
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    let per_acceptor = rt(2).block_on(move || {
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptors: Vec<_> = (0..4)
            .map(|_| {
                let (l, accepted) = (listener.clone(), accepted.clone());
                ivy::spawn(move || {
                    let mut mine = 0;
                    while accepted.load(Ordering::SeqCst) < CONNS {
                        // A timeout so that the losers of the last accepts end.
                        match ivy::timeout(ms(200), || l.accept()) {
                            Ok(Ok((mut s, _))) => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                mine += 1;
                                s.write_all(b"!").unwrap();
                            }
                            Ok(Err(e)) => panic!("accept: {e}"),
                            Err(_) => {}
                        }
                    }
                    mine
                })
            })
            .collect();
        let clients: Vec<_> = (0..CONNS)
            .map(|_| {
                ivy::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    let mut b = [0u8; 1];
                    c.read_exact(&mut b).unwrap();
                    b[0]
                })
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap(), b'!');
        }
        acceptors
            .into_iter()
            .map(|a| a.join().unwrap())
            .collect::<Vec<usize>>()
    });
    assert_eq!(per_acceptor.iter().sum::<usize>(), CONNS);
}

#[test]
fn libc_poll_in_100_tasks_with_timeouts_runs_concurrently() {
    let took = rt(2).block_on(|| {
        let t0 = Instant::now();
        let hs: Vec<_> = (0..100)
            .map(|_| {
                ivy::spawn(|| {
                    let mut p = [0; 2];
                    // SAFETY: a valid out-array.
                    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
                    let mut pfd = libc::pollfd {
                        fd: p[0],
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    let n = unsafe { libc::poll(&mut pfd, 1, 50) };
                    // SAFETY: closing our pipe.
                    unsafe {
                        libc::close(p[0]);
                        libc::close(p[1]);
                    }
                    n
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), 0);
        }
        t0.elapsed()
    });
    assert!(took >= ms(50));
    assert!(took < ms(1500), "took {took:?}");
}

/// Regression: a `close` in one task used to wake the tasks waiting on its fd
/// *number* after the real close, so a task on another worker that had just
/// got the same number for a new socket, and was waiting on it, failed with
/// EBADF (seen in `four_tasks_accept_on_one_listener_each_connection_once`).
/// Now the close holds the number's waiters across the real close. Readers
/// wait on fresh sockets while other tasks churn through socket numbers on
/// both workers; every read must get its byte.
#[test]
fn a_close_never_wakes_a_waiter_on_a_reused_fd_number() {
    use std::os::unix::net::UnixStream;
    let (ok, failures) = rt(2).block_on(|| {
        let stop = Arc::new(AtomicUsize::new(0));
        let churners: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                ivy::spawn(move || {
                    while stop.load(Ordering::SeqCst) == 0 {
                        for _ in 0..8 {
                            drop(UnixStream::pair().unwrap());
                        }
                        ivy::yield_now();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..100)
            .map(|_| {
                ivy::spawn(|| {
                    let (mut ok, mut failures) = (0, Vec::new());
                    for _ in 0..20 {
                        let (a, b) = UnixStream::pair().unwrap();
                        let writer = ivy::spawn(move || {
                            ivy::yield_now();
                            (&b).write_all(b"k").unwrap();
                            b
                        });
                        let mut buf = [0u8; 1];
                        match (&a).read_exact(&mut buf) {
                            Ok(()) => ok += 1,
                            Err(e) => failures.push(e.raw_os_error()),
                        }
                        drop(writer.join().unwrap());
                    }
                    (ok, failures)
                })
            })
            .collect();
        let mut ok = 0;
        let mut failures = Vec::new();
        for r in readers {
            let (o, f) = r.join().unwrap();
            ok += o;
            failures.extend(f);
        }
        stop.store(1, Ordering::SeqCst);
        for c in churners {
            c.join().unwrap();
        }
        (ok, failures)
    });
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(ok, 100 * 20);
}
