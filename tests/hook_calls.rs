//! The `hook` feature: each hooked libc call's semantics inside a task (it
//! parks the task, `errno` as the real call sets it) and outside (exactly
//! libc), through plain libc calls and through std.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{ms, rt};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn pipe() -> (i32, i32) {
    let mut p = [0; 2];
    // SAFETY: a valid out-array of two fds.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    (p[0], p[1])
}

fn close(fd: i32) {
    // SAFETY: closing an fd this test owns.
    assert_eq!(unsafe { libc::close(fd) }, 0);
}

fn read1(fd: i32) -> (isize, i32) {
    let mut b = [0u8; 1];
    // SAFETY: a valid one-byte buffer.
    let r = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
    (r, if r < 0 { errno() } else { 0 })
}

fn write1(fd: i32) -> isize {
    // SAFETY: a valid one-byte buffer.
    unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }
}

fn getfl(fd: i32) -> i32 {
    // SAFETY: F_GETFL takes no argument.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

/// A task on a one-worker runtime counts while another blocks in a hooked
/// call: proof that the call parked its task rather than its worker.
fn with_ticker<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, usize) {
    rt(1).block_on(move || {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicUsize::new(0));
        let (t, s) = (ticks.clone(), stop.clone());
        let ticker = ivy::spawn(move || {
            while s.load(Ordering::SeqCst) == 0 {
                t.fetch_add(1, Ordering::SeqCst);
                ivy::sleep(ms(2));
            }
        });
        let r = f();
        stop.store(1, Ordering::SeqCst);
        ticker.join().unwrap();
        (r, ticks.load(Ordering::SeqCst))
    })
}

#[test]
fn pipe_read_in_a_task_parks_and_gets_the_data() {
    let (r, w) = pipe();
    let ((n, e), ticks) = with_ticker(move || {
        let writer = ivy::spawn(move || {
            ivy::sleep(ms(40));
            assert_eq!(write1(w), 1);
        });
        let got = read1(r);
        writer.join().unwrap();
        got
    });
    assert_eq!((n, e), (1, 0));
    assert!(
        ticks >= 5,
        "the ticker ran {ticks} times: the read blocked the worker"
    );
    // The pipe was not made non-blocking behind the user's back.
    assert_eq!(getfl(r) & libc::O_NONBLOCK, 0);
    close(r);
    close(w);
}

#[test]
fn outside_a_task_a_pipe_read_blocks_as_libc() {
    let (r, w) = pipe();
    let _rt = rt(1); // a runtime exists: the hook is attached
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(ms(30));
        assert_eq!(write1(w), 1);
        w
    });
    assert_eq!(read1(r), (1, 0));
    assert!(t0.elapsed() >= ms(25));
    close(writer.join().unwrap());
    close(r);
}

#[test]
fn user_nonblocking_fds_pass_straight_through_with_eagain() {
    let (r, w) = pipe();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let afd = a.as_raw_fd();
    rt(1).block_on(move || {
        // SAFETY: F_SETFL with flags.
        let set = unsafe { libc::fcntl(r, libc::F_SETFL, libc::O_NONBLOCK) };
        assert_eq!(set, 0);
        assert_eq!(read1(r), (-1, libc::EAGAIN));
        assert_eq!(read1(afd), (-1, libc::EAGAIN));
        // MSG_DONTWAIT on a blocking socket: EAGAIN too.
        let mut buf = [0u8; 4];
        let bfd = b.as_raw_fd();
        // SAFETY: a valid buffer.
        let n = unsafe { libc::recv(bfd, buf.as_mut_ptr().cast(), 4, libc::MSG_DONTWAIT) };
        assert_eq!((n, errno()), (-1, libc::EAGAIN));
        // FIONBIO: the other way to ask for O_NONBLOCK.
        let on: libc::c_int = 1;
        // SAFETY: FIONBIO takes a pointer to an int.
        assert_eq!(unsafe { libc::ioctl(bfd, libc::FIONBIO, &on) }, 0);
        assert_eq!(read1(bfd), (-1, libc::EAGAIN));
        assert_ne!(getfl(bfd) & libc::O_NONBLOCK, 0);
        drop(b);
    });
    drop(a);
    close(r);
    close(w);
}

#[test]
fn zero_length_calls_return_at_once() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    rt(1).block_on(move || {
        let mut buf = [0u8; 1];
        // SAFETY: zero-length calls with a valid pointer.
        unsafe {
            assert_eq!(libc::read(fa, buf.as_mut_ptr().cast(), 0), 0);
            assert_eq!(libc::write(fb, buf.as_ptr().cast(), 0), 0);
            assert_eq!(libc::send(fb, buf.as_ptr().cast(), 0, 0), 0);
        }
    });
    drop((a, b));
}

#[test]
fn std_net_sockets_adopted_by_ivy_keep_the_users_blocking_view() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (server, client) = rt(1).block_on(move || {
        let acceptor = ivy::spawn(move || listener.accept().unwrap().0);
        let client = TcpStream::connect(addr).unwrap();
        (acceptor.join().unwrap(), client)
    });
    for s in [&server, &client] {
        assert_eq!(getfl(s.as_raw_fd()) & libc::O_NONBLOCK, 0, "user view");
        // Underneath it is non-blocking: the real flags (raw syscall).
        // SAFETY: F_GETFL by raw syscall.
        let real = unsafe { libc::syscall(libc::SYS_fcntl, s.as_raw_fd(), libc::F_GETFL) } as i32;
        assert_ne!(real & libc::O_NONBLOCK, 0, "ivy's flag");
    }
    // Outside a task a read on it still blocks until data arrives.
    let t0 = Instant::now();
    let mut c2 = client.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(ms(30));
        c2.write_all(b"hi").unwrap();
    });
    let mut buf = [0u8; 2];
    (&server).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    assert!(t0.elapsed() >= ms(25));
    writer.join().unwrap();
    // ... and SO_RCVTIMEO outside a task: EAGAIN after the timeout, as libc.
    server.set_read_timeout(Some(ms(30))).unwrap();
    let t0 = Instant::now();
    let e = (&server).read(&mut buf).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
    assert!(t0.elapsed() >= ms(25));
    // The user turns non-blocking on, then off again: views follow.
    server.set_nonblocking(true).unwrap();
    assert_ne!(getfl(server.as_raw_fd()) & libc::O_NONBLOCK, 0);
    server.set_nonblocking(false).unwrap();
    assert_eq!(getfl(server.as_raw_fd()) & libc::O_NONBLOCK, 0);
}

#[test]
fn so_rcvtimeo_in_a_task_gives_eagain_and_other_tasks_run() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_read_timeout(Some(ms(40))).unwrap();
    let ((e, took), ticks) = with_ticker(move || {
        let t0 = Instant::now();
        let mut buf = [0u8; 1];
        let e = (&a).read(&mut buf).unwrap_err();
        (e.raw_os_error(), t0.elapsed())
    });
    assert_eq!(e, Some(libc::EAGAIN));
    assert!(took >= ms(35) && took < ms(2000), "{took:?}");
    assert!(ticks >= 5, "ticks {ticks}");
}

#[test]
fn regular_files_pass_through() {
    let path = std::env::temp_dir().join(format!("ivy-hook-file-{}", std::process::id()));
    std::fs::write(&path, b"contents").unwrap();
    let p = path.clone();
    let got = rt(1).block_on(move || std::fs::read(&p).unwrap());
    assert_eq!(got, b"contents");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_large_pipe_write_completes_while_the_reader_shares_the_worker() {
    // 1 MiB through a 64 KiB pipe between two tasks on one worker: the writer
    // must park when the pipe is full, or the reader never runs.
    let (r, w) = pipe();
    let total = rt(1).block_on(move || {
        let reader = ivy::spawn(move || {
            let mut got = 0usize;
            let mut buf = vec![0u8; 8192];
            loop {
                // SAFETY: a valid buffer.
                let n = unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
                assert!(n >= 0, "read failed: {}", errno());
                if n == 0 {
                    break got;
                }
                assert!(buf[..n as usize].iter().all(|&b| b == 7));
                got += n as usize;
            }
        });
        let data = vec![7u8; 1 << 20];
        // SAFETY: a valid buffer.
        let n = unsafe { libc::write(w, data.as_ptr().cast(), data.len()) };
        assert_eq!(n, 1 << 20);
        close(w);
        reader.join().unwrap()
    });
    assert_eq!(total, 1 << 20);
    close(r);
}

#[test]
fn dup_shares_the_entry_and_close_forgets_it() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fa = a.as_raw_fd();
    rt(1).block_on(move || {
        // First use in a task adopts the socket.
        let mut buf = [0u8; 1];
        (&b).write_all(b"1").unwrap();
        (&a).read_exact(&mut buf).unwrap();
        // SAFETY: dup of an open fd.
        let d = unsafe { libc::dup(fa) };
        assert!(d >= 0);
        assert_eq!(getfl(d) & libc::O_NONBLOCK, 0);
        // SAFETY: F_DUPFD_CLOEXEC of an open fd.
        let d2 = unsafe { libc::fcntl(fa, libc::F_DUPFD_CLOEXEC, 0) };
        assert_eq!(getfl(d2) & libc::O_NONBLOCK, 0);
        // A read through the duplicate parks like the original.
        let w = ivy::spawn(move || {
            ivy::sleep(ms(20));
            (&b).write_all(b"2").unwrap();
            b
        });
        assert_eq!(read1(d), (1, 0));
        drop(w.join().unwrap());
        close(d);
        close(d2);
        // A closed fd: EBADF as libc.
        assert_eq!(read1(d), (-1, libc::EBADF));
        drop(a);
    });
}

#[test]
fn poll_and_select_park_with_their_timeouts() {
    let (r, w) = pipe();
    let (res, ticks) = with_ticker(move || {
        let mut pfd = libc::pollfd {
            fd: r,
            events: libc::POLLIN,
            revents: 0,
        };
        let t0 = Instant::now();
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 40) };
        let took = t0.elapsed();
        let writer = ivy::spawn(move || {
            ivy::sleep(ms(20));
            write1(w)
        });
        // SAFETY: one valid pollfd.
        let n2 = unsafe { libc::poll(&mut pfd, 1, -1) };
        assert_eq!(writer.join().unwrap(), 1);
        // ppoll without a mask, with a timeout: ready at once now.
        let ts = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: one valid pollfd, a valid timespec.
        let n3 = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        (n, took, n2, pfd.revents, n3)
    });
    let (n, took, n2, revents, n3) = res;
    assert_eq!(n, 0);
    assert!(took >= ms(39), "{took:?}");
    assert_eq!((n2, revents, n3), (1, libc::POLLIN, 1));
    assert!(ticks >= 10, "ticks {ticks}");
    close(r);
    close(w);
}

#[test]
fn sleeps_park_and_a_zero_sleep_yields() {
    let order = rt(1).block_on(|| {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Each zero sleep (usleep(0), sleep(0), nanosleep of 0) lets a task
        // that is ready run before the caller goes on.
        for zero in 0..3 {
            let go = Arc::new(ivy::sync::Event::new());
            let (l2, g2) = (log.clone(), go.clone());
            let other = ivy::spawn(move || {
                g2.wait();
                l2.lock().unwrap().push("other");
            });
            ivy::sleep(ms(5)); // `other` starts and waits
            go.set(); // `other` is ready
                      // SAFETY: plain calls.
            unsafe {
                match zero {
                    0 => assert_eq!(libc::usleep(0), 0),
                    1 => assert_eq!(libc::sleep(0), 0),
                    _ => {
                        let z = libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 0,
                        };
                        assert_eq!(libc::nanosleep(&z, std::ptr::null_mut()), 0);
                    }
                }
            }
            log.lock().unwrap().push("main");
            other.join().unwrap();
        }
        // Relative and absolute clock_nanosleep on both clocks.
        for clock in [libc::CLOCK_MONOTONIC, libc::CLOCK_REALTIME] {
            let t0 = Instant::now();
            let rel = libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            // SAFETY: valid timespecs.
            let slept = unsafe { libc::clock_nanosleep(clock, 0, &rel, std::ptr::null_mut()) };
            assert_eq!(slept, 0);
            assert!(t0.elapsed() >= ms(19));
            let mut abs = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid out-parameter.
            unsafe { libc::clock_gettime(clock, &mut abs) };
            abs.tv_nsec += 20_000_000;
            if abs.tv_nsec >= 1_000_000_000 {
                abs.tv_sec += 1;
                abs.tv_nsec -= 1_000_000_000;
            }
            let t0 = Instant::now();
            // SAFETY: valid timespecs.
            let r = unsafe {
                libc::clock_nanosleep(clock, libc::TIMER_ABSTIME, &abs, std::ptr::null_mut())
            };
            assert_eq!(r, 0);
            assert!(t0.elapsed() >= ms(15));
        }
        // A bad timespec: EINVAL from the real call.
        let bad = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000_000,
        };
        // SAFETY: valid pointers.
        let r = unsafe { libc::nanosleep(&bad, std::ptr::null_mut()) };
        assert_eq!((r, errno()), (-1, libc::EINVAL));
        let out = log.lock().unwrap().clone();
        out
    });
    assert_eq!(order, ["other", "main", "other", "main", "other", "main"]);
}

#[test]
fn getaddrinfo_runs_on_the_blocking_pool() {
    let addrs = rt(1).block_on(|| {
        use std::net::ToSocketAddrs;
        ("localhost", 80)
            .to_socket_addrs()
            .unwrap()
            .map(|a| a.port())
            .collect::<Vec<_>>()
    });
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|&p| p == 80));
    // An unknown service name: the real error, not ivy's.
    let e = rt(1).block_on(|| {
        let node = c"localhost";
        let service = c"no-such-service-ivy";
        let mut res = std::ptr::null_mut();
        // SAFETY: valid strings and out-parameter.
        unsafe { libc::getaddrinfo(node.as_ptr(), service.as_ptr(), std::ptr::null(), &mut res) }
    });
    assert_eq!(e, libc::EAI_SERVICE);
}

#[test]
fn connect_refused_reports_econnrefused() {
    // A port that was just free: nobody listens there.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let free = l.local_addr().unwrap();
    drop(l);
    let e = rt(1).block_on(move || TcpStream::connect(free).unwrap_err().raw_os_error());
    assert_eq!(e, Some(libc::ECONNREFUSED));
}

/// Debug mode names a hooked call that had to block its worker (a regular
/// file read), once per call and reason however often it happens; a call that
/// parked (a pipe read) is not reported.
#[test]
fn ivy_debug_reports_a_blocking_hooked_call_once() {
    if std::env::var("IVY_HOOK_DEBUG_CHILD").is_err() {
        let mut cmd = common::child_case(
            "ivy_debug_reports_a_blocking_hooked_call_once",
            "IVY_HOOK_DEBUG_CHILD",
            "1",
        );
        let out = common::run_child(cmd.env("IVY_DEBUG", "1"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {stderr}");
        let reports: Vec<&str> = stderr.lines().filter(|l| l.contains("hooked `")).collect();
        assert_eq!(reports.len(), 1, "{stderr}");
        assert!(reports[0].contains("task 'reader'"), "{}", reports[0]);
        assert!(reports[0].contains("hooked `read`"), "{}", reports[0]);
        assert!(reports[0].contains("regular file"), "{}", reports[0]);
        return;
    }
    let path = std::env::temp_dir().join(format!("ivy-hook-debug-{}", std::process::id()));
    std::fs::write(&path, b"data").unwrap();
    let p = path.clone();
    rt(1).block_on(move || {
        ivy::task::Builder::new()
            .name("reader")
            .spawn(move || {
                for _ in 0..3 {
                    assert_eq!(std::fs::read(&p).unwrap(), b"data");
                }
                let (r, w) = pipe();
                let writer = ivy::spawn(move || {
                    ivy::sleep(ms(5));
                    assert_eq!(write1(w), 1);
                    close(w);
                });
                assert_eq!(read1(r), (1, 0));
                writer.join().unwrap();
                close(r);
            })
            .unwrap()
            .join()
            .unwrap();
    });
    std::fs::remove_file(path).unwrap();
}

/// Every data call (readv, recv, recvfrom, recvmsg; writev, send, sendto,
/// sendmsg) parks on a socket that is not ready, on one worker with a ticker
/// running, and returns exactly what the peer sent.
#[test]
fn every_data_call_parks_and_transfers_exactly() {
    fn iov(b: &mut [u8]) -> libc::iovec {
        libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        }
    }
    for call in ["readv", "recv", "recvfrom", "recvmsg"] {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
        let (got, ticks) = with_ticker(move || {
            let writer = ivy::spawn(move || {
                ivy::sleep(ms(30));
                let mut p1 = *b"hel";
                let mut p2 = *b"lo";
                let v = [iov(&mut p1), iov(&mut p2)];
                // SAFETY: valid iovecs / buffers / msghdr.
                let n = unsafe {
                    match call {
                        "readv" => libc::writev(fb, v.as_ptr(), 2),
                        "recv" => libc::send(fb, b"hello".as_ptr().cast(), 5, 0),
                        "recvfrom" => {
                            libc::sendto(fb, b"hello".as_ptr().cast(), 5, 0, std::ptr::null(), 0)
                        }
                        _ => {
                            let mut m: libc::msghdr = std::mem::zeroed();
                            m.msg_iov = v.as_ptr() as *mut libc::iovec;
                            m.msg_iovlen = 2;
                            libc::sendmsg(fb, &m, 0)
                        }
                    }
                };
                assert_eq!(n, 5, "{call}'s writer");
                b
            });
            let mut buf = [0u8; 16];
            let mut half = [0u8; 3];
            let (b1, b2) = buf.split_at_mut(2);
            let v = [iov(b1), iov(&mut half)];
            // SAFETY: valid buffers / iovecs / msghdr.
            let n = unsafe {
                match call {
                    "readv" => libc::readv(fa, v.as_ptr(), 2),
                    "recv" => libc::recv(fa, b2.as_mut_ptr().cast(), 14, 0),
                    "recvfrom" => {
                        let mut from: libc::sockaddr_un = std::mem::zeroed();
                        let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                        libc::recvfrom(
                            fa,
                            b2.as_mut_ptr().cast(),
                            14,
                            0,
                            (&mut from as *mut libc::sockaddr_un).cast(),
                            &mut len,
                        )
                    }
                    _ => {
                        let mut m: libc::msghdr = std::mem::zeroed();
                        m.msg_iov = v.as_ptr() as *mut libc::iovec;
                        m.msg_iovlen = 2;
                        libc::recvmsg(fa, &mut m, 0)
                    }
                }
            };
            drop(writer.join().unwrap());
            let bytes = match call {
                "readv" | "recvmsg" => [&buf[..2], &half[..]].concat(),
                _ => buf[2..2 + n.max(0) as usize].to_vec(),
            };
            (n, bytes)
        });
        assert_eq!(got, (5, b"hello".to_vec()), "{call}");
        assert!(ticks >= 5, "{call}: ticks {ticks}");
        drop(a);
    }
}

/// A signal reaching the worker while its task is parked in a hooked call
/// does not interrupt the call (ivy never causes EINTR): the handler runs,
/// the read completes with the data.
#[test]
fn a_signal_during_a_parked_call_is_not_eintr() {
    static HITS: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn on_usr1(_: libc::c_int) {
        HITS.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: a handler without SA_RESTART that only bumps an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let got = rt(1).block_on(move || {
        // SAFETY: pthread_self has no preconditions.
        let worker = unsafe { libc::pthread_self() } as usize;
        let kicker = std::thread::spawn(move || {
            for _ in 0..5 {
                std::thread::sleep(ms(5));
                // SAFETY: the worker thread is alive (the runtime outlives this).
                unsafe { libc::pthread_kill(worker as libc::pthread_t, libc::SIGUSR1) };
            }
            std::thread::sleep(ms(5));
            (&b).write_all(b"z").unwrap();
            b
        });
        let mut buf = [0u8; 1];
        let r = (&a).read(&mut buf).map(|n| (n, buf[0]));
        drop(kicker.join().unwrap());
        r.map_err(|e| e.raw_os_error())
    });
    assert_eq!(got, Ok((1, b'z')));
    assert!(HITS.load(Ordering::SeqCst) >= 5);
}

/// connect with SO_SNDTIMEO to a listener whose accept queue is full: after
/// the timeout, -1 / EINPROGRESS (Linux's answer), and the task parked.
#[test]
fn connect_honours_so_sndtimeo() {
    // SAFETY: plain socket calls on fds this test owns.
    let (lfd, addr) = unsafe {
        let lfd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        assert_eq!(
            libc::bind(lfd, (&sa as *const libc::sockaddr_in).cast(), 16),
            0
        );
        let mut len = 16;
        assert_eq!(
            libc::getsockname(lfd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len),
            0
        );
        assert_eq!(libc::listen(lfd, 0), 0);
        (lfd, sa)
    };
    let (results, ticks) = with_ticker(move || {
        let mut out = Vec::new();
        let mut fds = Vec::new();
        for _ in 0..4 {
            // SAFETY: as above.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 100_000,
                };
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_SNDTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
                let t0 = Instant::now();
                let r = libc::connect(fd, (&addr as *const libc::sockaddr_in).cast(), 16);
                out.push((r, if r < 0 { errno() } else { 0 }, t0.elapsed()));
                fds.push(fd);
            }
        }
        for fd in fds {
            close(fd);
        }
        out
    });
    close(lfd);
    // The first connections fit the queue; a later one times out.
    let timed_out: Vec<_> = results.iter().filter(|r| r.0 == -1).collect();
    assert!(!timed_out.is_empty(), "{results:?}");
    for (_, e, took) in timed_out {
        assert_eq!(*e, libc::EINPROGRESS);
        assert!(*took >= ms(95) && *took < ms(3000), "{took:?}");
    }
    assert!(ticks >= 10, "ticks {ticks}");
}

/// `poll` for `POLLPRI` alone (out-of-band data), which ivy's readiness does
/// not model: the task still parks between looks, and sees the urgent byte.
#[test]
fn poll_for_pollpri_alone_sees_out_of_band_data() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ((n, revents, took), ticks) = with_ticker(move || {
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        let sfd = server.as_raw_fd();
        let writer = ivy::spawn(move || {
            ivy::sleep(ms(30));
            // SAFETY: one byte of urgent data.
            let n =
                unsafe { libc::send(client.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
            assert_eq!(n, 1);
            client
        });
        let mut pfd = libc::pollfd {
            fd: sfd,
            events: libc::POLLPRI,
            revents: 0,
        };
        let t0 = Instant::now();
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
        let took = t0.elapsed();
        drop(writer.join().unwrap());
        drop(server);
        (n, pfd.revents, took)
    });
    assert_eq!(n, 1);
    assert_ne!(revents & libc::POLLPRI, 0);
    assert!(took >= ms(25) && took < ms(2500), "{took:?}");
    assert!(ticks >= 5, "ticks {ticks}");
}

/// Outside a task, with the hook attached (a runtime exists), every hooked
/// call is plain libc: sleeps take their time on the thread, a poll waits its
/// timeout, sockets made on threads connect and transfer, lookups resolve.
#[test]
fn outside_a_task_the_calls_are_plain_libc() {
    let runtime = rt(1);
    let t0 = Instant::now();
    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        assert_eq!(libc::usleep(20_000), 0);
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        assert_eq!(libc::nanosleep(&ts, std::ptr::null_mut()), 0);
        let mut p = [0; 2];
        assert_eq!(libc::pipe(p.as_mut_ptr()), 0);
        let mut pfd = libc::pollfd {
            fd: p[0],
            events: libc::POLLIN,
            revents: 0,
        };
        assert_eq!(libc::poll(&mut pfd, 1, 20), 0);
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        };
        let mut set: libc::fd_set = std::mem::zeroed();
        libc::FD_SET(p[0], &mut set);
        let n = libc::select(
            p[0] + 1,
            &mut set,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        );
        assert_eq!(n, 0);
        close(p[0]);
        close(p[1]);
    }
    assert!(t0.elapsed() >= ms(79), "{:?}", t0.elapsed());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    server.join().unwrap();
    use std::net::ToSocketAddrs;
    assert!(("localhost", 1).to_socket_addrs().unwrap().next().is_some());
    drop(runtime);
}

/// A Unix-domain connect to a listener whose backlog is full waits (as a
/// blocking connect does) until the listener accepts, parking the task;
/// the real non-blocking connect's EAGAIN never reaches the user.
#[test]
fn unix_connect_to_a_full_backlog_waits_for_accept() {
    let dir = std::env::temp_dir().join(format!("ivy-hook-unix-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let listener = std::os::unix::net::UnixListener::bind(&dir).unwrap();
    // SAFETY: re-listening with a smaller backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let path = dir.clone();
    let ((connected, accepted, took), ticks) = with_ticker(move || {
        let t0 = Instant::now();
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                ivy::spawn(move || std::os::unix::net::UnixStream::connect(&p).map(|_| ()))
            })
            .collect();
        ivy::sleep(ms(30));
        let acceptor = ivy::spawn(move || {
            // Bounded, so that a lost client fails the test instead of
            // hanging it.
            let mut n = 0;
            for _ in 0..4 {
                match ivy::timeout(ms(3000), || listener.accept()) {
                    Ok(Ok(_)) => n += 1,
                    _ => break,
                }
            }
            n
        });
        let connected = clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .filter(|r| r.is_ok())
            .count();
        (connected, acceptor.join().unwrap(), t0.elapsed())
    });
    std::fs::remove_file(&dir).unwrap();
    assert_eq!((connected, accepted), (4, 4));
    assert!(took >= ms(30), "{took:?}");
    assert!(ticks >= 5, "ticks {ticks}");
}
