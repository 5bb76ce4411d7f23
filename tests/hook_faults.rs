//! The `hook` feature under faults: cancellation and deadline scopes reaching
//! a hooked call, a peer reset, `close` from another task during a wait, fd
//! exhaustion (EMFILE), a hooked `poll` on 100 fds with a timeout, a slow
//! `getaddrinfo` interrupted, the fairness budget. Every test
//! counts the process's open fds (`/proc/self/fd`) before and after: nothing
//! leaks. The tests run one at a time (a lock), so the counts are exact.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{ms, rt};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The tests of this file count the process's fds: they run one at a time
/// whatever the harness's thread count.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The open fds once ivy's process-wide ones exist (a runtime has run a task:
/// the stack guard's pidfd is opened once per process).
fn baseline() -> usize {
    rt(1).block_on(|| ivy::sleep(ms(1)));
    open_fds()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn pipe() -> (i32, i32) {
    let mut p = [0; 2];
    // SAFETY: a valid out-array of two fds.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    (p[0], p[1])
}

fn close(fd: i32) -> i32 {
    // SAFETY: closing an fd this test owns.
    unsafe { libc::close(fd) }
}

#[test]
fn cancelling_a_task_in_a_hooked_read_gives_ecanceled_then_unwinds() {
    let _serial = serial();
    let before = baseline();
    for round in 0..50 {
        let (a, b) = UnixStream::pair().unwrap();
        let seen = Arc::new(AtomicI32::new(0));
        let after = Arc::new(AtomicUsize::new(0));
        let (s2, a2) = (seen.clone(), after.clone());
        let r = rt(1).block_on(move || {
            let reader = ivy::spawn(move || {
                let mut buf = [0u8; 1];
                let e = (&a).read(&mut buf).unwrap_err();
                s2.store(e.raw_os_error().unwrap_or(-1), Ordering::SeqCst);
                // The cancellation stays pending: the next ivy call unwinds.
                ivy::yield_now();
                a2.fetch_add(1, Ordering::SeqCst);
            });
            ivy::sleep(ms(1 + round % 3)); // the reader parks in read()
            reader.cancel();
            reader.join()
        });
        assert!(r.unwrap_err().is_cancelled(), "round {round}");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            libc::ECANCELED,
            "round {round}"
        );
        assert_eq!(after.load(Ordering::SeqCst), 0);
        drop(b);
    }
    assert_eq!(open_fds(), before);
}

#[test]
fn a_deadline_scope_elapsing_in_a_hooked_call_gives_etimedout() {
    let _serial = serial();
    let before = baseline();
    let (a, b) = UnixStream::pair().unwrap();
    let (inner, outer, took) = rt(1).block_on(move || {
        let t0 = Instant::now();
        let mut inner = None;
        let outer = ivy::timeout(ms(30), || {
            let mut buf = [0u8; 1];
            inner = Some((&a).read(&mut buf).unwrap_err().raw_os_error());
        });
        (inner, outer.is_err(), t0.elapsed())
    });
    assert_eq!(inner, Some(Some(libc::ETIMEDOUT)));
    assert!(outer, "the scope reports Elapsed");
    assert!(took >= ms(29) && took < ms(3000), "{took:?}");
    // Same for a sleep and a poll under a C-style scope (ivy::timeout here).
    let (s, p) = rt(1).block_on(|| {
        let mut s = 0;
        let _ = ivy::timeout(ms(20), || {
            let ts = libc::timespec {
                tv_sec: 5,
                tv_nsec: 0,
            };
            // SAFETY: valid timespecs.
            s = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            s = if s == -1 { errno() } else { 0 };
        });
        let (r, w) = pipe();
        let mut p = 0;
        let _ = ivy::timeout(ms(20), || {
            let mut pfd = libc::pollfd {
                fd: r,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            p = unsafe { libc::poll(&mut pfd, 1, 5000) };
            p = if p == -1 { errno() } else { 1000 + p };
        });
        close(r);
        close(w);
        (s, p)
    });
    assert_eq!((s, p), (libc::ETIMEDOUT, libc::ETIMEDOUT));
    drop(b);
    assert_eq!(open_fds(), before);
}

#[test]
fn close_from_another_task_wakes_the_waiter_with_ebadf() {
    let _serial = serial();
    let before = baseline();
    for round in 0..100 {
        // A socket (made non-blocking by ivy) and a pipe (left as it is).
        let (a, b) = UnixStream::pair().unwrap();
        let (pr, pw) = pipe();
        let sock = std::os::fd::IntoRawFd::into_raw_fd(a);
        let results = rt(1).block_on(move || {
            let waiters: Vec<_> = [sock, pr]
                .into_iter()
                .map(|fd| {
                    ivy::spawn(move || {
                        let mut buf = [0u8; 1];
                        // SAFETY: a valid buffer.
                        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 1) };
                        (n, if n < 0 { errno() } else { 0 })
                    })
                })
                .collect();
            ivy::sleep(ms(1 + round % 3)); // both park in read()
            assert_eq!(close(sock), 0);
            assert_eq!(close(pr), 0);
            waiters
                .into_iter()
                .map(|w| w.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(
            results,
            [(-1, libc::EBADF), (-1, libc::EBADF)],
            "round {round}"
        );
        drop(b);
        close(pw);
    }
    assert_eq!(open_fds(), before);
}

#[test]
fn a_peer_reset_reaches_the_parked_reader_as_econnreset() {
    let _serial = serial();
    let before = baseline();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let errs = rt(2).block_on(move || {
        let server = ivy::spawn(move || {
            for _ in 0..20 {
                let (s, _) = listener.accept().unwrap();
                ivy::sleep(ms(5)); // the client parks in read()
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: a valid linger struct for SO_LINGER.
                let r = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                assert_eq!(r, 0);
                drop(s); // RST
            }
        });
        let mut errs = Vec::new();
        for _ in 0..20 {
            let mut c = TcpStream::connect(addr).unwrap();
            let mut buf = [0u8; 8];
            errs.push(c.read(&mut buf).unwrap_err().raw_os_error());
            // A write after the reset: EPIPE (std ignores SIGPIPE).
            assert!(c.write_all(b"x").is_err());
        }
        server.join().unwrap();
        errs
    });
    assert!(
        errs.iter().all(|e| *e == Some(libc::ECONNRESET)),
        "{errs:?}"
    );
    assert_eq!(open_fds(), before);
}

#[test]
fn poll_on_100_fds_with_a_timeout_parks_and_reports_exactly() {
    let _serial = serial();
    let before = baseline();
    let pipes: Vec<(i32, i32)> = (0..100).map(|_| pipe()).collect();
    let reads: Vec<i32> = pipes.iter().map(|p| p.0).collect();
    let w57 = pipes[57].1;
    let (timed_out, took, ready, revents, ticks) = rt(1).block_on(move || {
        let ticks = Arc::new(AtomicUsize::new(0));
        let t2 = ticks.clone();
        let ticker = ivy::spawn(move || {
            for _ in 0..10 {
                t2.fetch_add(1, Ordering::SeqCst);
                ivy::sleep(ms(2));
            }
        });
        let mut pfds: Vec<libc::pollfd> = reads
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let t0 = Instant::now();
        // SAFETY: a valid array of 100 pollfds.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), 100, 50) };
        let took = t0.elapsed();
        let writer = ivy::spawn(move || {
            ivy::sleep(ms(10));
            // SAFETY: a one-byte buffer.
            unsafe { libc::write(w57, b"x".as_ptr().cast(), 1) }
        });
        // SAFETY: as above.
        let m = unsafe { libc::poll(pfds.as_mut_ptr(), 100, 5000) };
        assert_eq!(writer.join().unwrap(), 1);
        ticker.join().unwrap();
        let revents: Vec<(usize, i16)> = pfds
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revents != 0)
            .map(|(i, p)| (i, p.revents))
            .collect();
        (n, took, m, revents, ticks.load(Ordering::SeqCst))
    });
    assert_eq!(timed_out, 0);
    assert!(took >= ms(49) && took < ms(3000), "{took:?}");
    assert_eq!(ready, 1);
    assert_eq!(revents, [(57, libc::POLLIN)]);
    assert_eq!(ticks, 10, "the ticker ran during the poll");
    for (r, w) in pipes {
        close(r);
        close(w);
    }
    assert_eq!(open_fds(), before);
}

/// EMFILE, in a child process (it lowers its own fd limit): sockets made in a
/// task until the limit give EMFILE exactly at the limit; a read that must
/// wait while no fd number is left still parks (ivy cannot duplicate the fd
/// then and registers it as it is) and gets its data; an accept at the limit
/// fails with EMFILE and succeeds once a number is free; nothing leaks.
#[test]
fn emfile() {
    let _serial = serial();
    if std::env::var("IVY_HOOK_EMFILE_CHILD").is_err() {
        let out = common::run_child(&mut common::child_case(
            "emfile",
            "IVY_HOOK_EMFILE_CHILD",
            "1",
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {stderr}");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let runtime = rt(1);
    // Warm up (worker threads, epoll, eventfds, the blocking pool) before
    // counting.
    runtime.block_on(|| ivy::sleep(ms(1)));
    let before = open_fds();
    // RLIMIT_NOFILE bounds fd *numbers*: count the numbers in use below the
    // new limit (an inherited fd may sit higher up).
    let numbers: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    let in_use = numbers.len() as u64 - 1; // minus read_dir's own fd
    let limit = in_use + 10;
    let below = numbers.iter().filter(|&&n| n < limit).count() as u64 - 1;
    let free = (limit - below) as usize;
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit.max(4096),
    };
    // SAFETY: a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    runtime.block_on(move || {
        let mut socks = Vec::new();
        let err = loop {
            // SAFETY: plain socket(2).
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            if fd < 0 {
                break errno();
            }
            socks.push(fd);
        };
        assert_eq!(err, libc::EMFILE);
        assert_eq!(socks.len(), free, "exactly the numbers left");
        // A pending connection, and no number to accept it with.
        let c = ivy::spawn(move || TcpStream::connect(addr));
        let c = c.join().unwrap();
        // connect needed a socket: it failed with EMFILE too.
        assert_eq!(c.unwrap_err().raw_os_error(), Some(libc::EMFILE));
        close(socks.pop().unwrap());
        let client = TcpStream::connect(addr).unwrap(); // takes the free number
        let e = listener.accept().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        close(socks.pop().unwrap());
        let (server, _) = listener.accept().unwrap();
        drop(server);
        drop(client);
        // A read that waits with no number free.
        let mut fill = Vec::new();
        let e = loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => fill.push(f),
                Err(e) => break e,
            }
        };
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        assert_eq!(fill.len(), 2, "the two numbers the accept test freed");
        let writer = ivy::spawn(move || {
            ivy::sleep(ms(10));
            (&b).write_all(b"y").unwrap();
            b
        });
        let mut buf = [0u8; 1];
        (&a).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"y");
        drop(writer.join().unwrap());
        drop(fill);
        for fd in socks {
            close(fd);
        }
    });
    assert_eq!(
        open_fds(),
        before - 3,
        "listener, a, b dropped; nothing leaked"
    );
}

/// A Rust task cancelled in `std::thread::sleep` ends at once, as cancelled:
/// the hooked `nanosleep` returns `ECANCELED`, on which std's sleep panics
/// (it asserts `EINTR`), and that panic is the cancellation's delivery
/// (`task::reported`). Likewise a C-style `nanosleep` returns -1 / ECANCELED
/// with the time left, and the cancellation stays pending.
#[test]
fn cancellation_ends_a_hooked_sleep_at_once() {
    let _serial = serial();
    let (joined_err, took, nanosleep) = rt(1).block_on(|| {
        let t0 = Instant::now();
        let sleeper = ivy::spawn(|| std::thread::sleep(ms(10_000)));
        ivy::sleep(ms(5));
        sleeper.cancel();
        let joined_err = sleeper.join().unwrap_err().is_cancelled();
        let took = t0.elapsed();
        let seen = Arc::new(std::sync::Mutex::new(None));
        let s2 = seen.clone();
        let c = ivy::spawn(move || {
            let ts = libc::timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            let mut rem = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid timespecs.
            let r = unsafe { libc::nanosleep(&ts, &mut rem) };
            *s2.lock().unwrap() = Some((r, errno(), rem.tv_sec));
            // Still pending: the next ivy call unwinds.
            ivy::yield_now();
            unreachable!("the cancellation unwinds from yield_now");
        });
        ivy::sleep(ms(5));
        c.cancel();
        assert!(c.join().unwrap_err().is_cancelled());
        let seen = seen.lock().unwrap().take();
        (joined_err, took, seen)
    });
    assert!(joined_err);
    assert!(took < ms(5000), "{took:?}");
    let (r, e, left) = nanosleep.unwrap();
    assert_eq!((r, e), (-1, libc::ECANCELED));
    assert!(left >= 9, "time left {left} s");
}

/// The cooperative budget reaches hooked calls that never wait: a task reading
/// a socket the peer filled beforehand (every `read` succeeds at once) still
/// lets the other tasks of its worker run, every `IO_BUDGET` (128) calls, and
/// still sees its cancellation (`ECANCELED` from the next `read`, then the
/// unwind at the next ivy call). Before the hook charged its calls, the reader
/// never suspended: the ticker never ran and the reader ran out of data first.
#[test]
fn a_task_whose_hooked_reads_never_wait_yields_and_sees_its_cancellation() {
    let _serial = serial();
    let before = baseline();
    for round in 0..20 {
        let (a, b) = UnixStream::pair().unwrap();
        // 16 KiB fits in any Unix socket buffer: 16k one-byte reads that never wait.
        let filled = 16 * 1024;
        (&a).write_all(&vec![7u8; filled]).unwrap();
        let ticked = Arc::new(AtomicUsize::new(0));
        let reads_before_tick = Arc::new(AtomicUsize::new(usize::MAX));
        let cancelled_with = Arc::new(AtomicI32::new(0));
        let after = Arc::new(AtomicUsize::new(0));
        let (t2, seen, c2, a2) = (
            ticked.clone(),
            reads_before_tick.clone(),
            cancelled_with.clone(),
            after.clone(),
        );
        let r = rt(1).block_on(move || {
            let reader = ivy::spawn(move || {
                // Spawned from here, on this one worker: it runs only when the
                // reader suspends.
                let t = t2.clone();
                let _ticker = ivy::spawn(move || t.store(1, Ordering::SeqCst));
                let mut byte = [0u8; 1];
                let mut reads = 0usize;
                loop {
                    match (&b).read(&mut byte) {
                        Ok(1) => reads += 1,
                        Ok(n) => panic!("read {n} bytes"),
                        Err(e) => {
                            c2.store(e.raw_os_error().unwrap_or(-1), Ordering::SeqCst);
                            // The cancellation stays pending: the next ivy call unwinds.
                            ivy::yield_now();
                            a2.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    if t2.load(Ordering::SeqCst) == 1 && seen.load(Ordering::SeqCst) == usize::MAX {
                        seen.store(reads, Ordering::SeqCst);
                    }
                    assert!(reads < filled, "the reader never suspended");
                }
            });
            // The main task runs again once the reader yields; cancel it then.
            while ticked.load(Ordering::SeqCst) == 0 {
                ivy::yield_now();
            }
            reader.cancel();
            reader.join()
        });
        assert!(r.unwrap_err().is_cancelled(), "round {round}");
        let n = reads_before_tick.load(Ordering::SeqCst);
        assert!(
            n <= 1024,
            "round {round}: {n} reads before another task ran"
        );
        assert_eq!(
            cancelled_with.load(Ordering::SeqCst),
            libc::ECANCELED,
            "round {round}"
        );
        assert_eq!(after.load(Ordering::SeqCst), 0, "round {round}");
    }
    assert_eq!(open_fds(), before);
}

/// A task looking at an fd in a loop with zero-timeout `poll` / `ppoll` /
/// `select` (none of which waits) still lets another task of its worker run:
/// the looker spins until that task has set a flag, which only the budget's
/// yield lets it do. Bounded: without the yield the loop ends at its bound
/// and the test fails.
#[test]
fn zero_timeout_polls_in_a_loop_let_the_other_tasks_run() {
    let _serial = serial();
    let before = baseline();
    for (round, call) in ["poll", "ppoll", "select"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let looks = rt(1).block_on(move || {
            let looker = ivy::spawn(move || {
                // Spawned from here, on this one worker: it runs only when the
                // looker suspends.
                let f2 = Arc::new(AtomicUsize::new(0));
                let flag = f2.clone();
                let _setter = ivy::spawn(move || flag.store(1, Ordering::SeqCst));
                let mut looks = 0usize;
                while f2.load(Ordering::SeqCst) == 0 {
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let zero = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    // SAFETY: one valid pollfd / fd set, a zero timeout.
                    let n = unsafe {
                        match *call {
                            "poll" => libc::poll(&mut pfd, 1, 0),
                            "ppoll" => libc::ppoll(&mut pfd, 1, &zero, std::ptr::null()),
                            _ => {
                                let mut set: libc::fd_set = std::mem::zeroed();
                                libc::FD_ZERO(&mut set);
                                libc::FD_SET(fd, &mut set);
                                let mut tv = libc::timeval {
                                    tv_sec: 0,
                                    tv_usec: 0,
                                };
                                libc::select(
                                    fd + 1,
                                    &mut set,
                                    std::ptr::null_mut(),
                                    std::ptr::null_mut(),
                                    &mut tv,
                                )
                            }
                        }
                    };
                    assert_eq!(n, 0, "{call}: nothing is ready");
                    looks += 1;
                    assert!(looks < 100_000, "{call}: the looker never suspended");
                }
                looks
            });
            looker.join().unwrap()
        });
        assert!(
            (1..=1024).contains(&looks),
            "round {round} ({call}): {looks} looks"
        );
    }
    assert_eq!(open_fds(), before);
}

/// A lookup whose job cannot start yet (the runtime's one blocking thread is
/// held) stands for a slow `getaddrinfo`: the task parked on it is cancelled,
/// or its deadline scope elapses, and `getaddrinfo` returns at once with
/// `EAI_SYSTEM` and `errno` `ECANCELED` / `ETIMEDOUT`, while the pool is still
/// held (exact: the holder is released only after the call returned). The
/// lookup then runs on the pool and frees its own result; no fd is left.
#[test]
fn a_slow_getaddrinfo_is_interrupted_by_cancellation_and_by_a_deadline() {
    let _serial = serial();
    let before = baseline();
    for round in 0..10 {
        let cancel = round % 2 == 0;
        let rt = ivy::Builder::new()
            .workers(1)
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let (rc, err, joined_cancelled) = rt.block_on(move || {
            let (release, held) = std::sync::mpsc::channel::<()>();
            let (started_tx, started) = std::sync::mpsc::channel::<()>();
            let holder = ivy::spawn_blocking(move || {
                started_tx.send(()).unwrap();
                held.recv().unwrap();
            });
            // The one pool thread is busy before the lookup is queued.
            while started.try_recv().is_err() {
                ivy::sleep(ms(1));
            }
            let out = Arc::new(std::sync::Mutex::new((0, 0)));
            let o2 = out.clone();
            let looker = ivy::spawn(move || {
                let lookup = || {
                    let mut res = std::ptr::null_mut();
                    // SAFETY: valid strings and out-parameter.
                    let rc = unsafe {
                        libc::getaddrinfo(
                            c"localhost".as_ptr(),
                            c"80".as_ptr(),
                            std::ptr::null(),
                            &mut res,
                        )
                    };
                    assert!(res.is_null(), "an interrupted lookup hands out no list");
                    *o2.lock().unwrap() = (rc, errno());
                };
                if cancel {
                    lookup();
                    ivy::yield_now(); // the cancellation stays pending: unwinds here
                } else {
                    let _ = ivy::timeout(ms(20), lookup);
                }
            });
            if cancel {
                ivy::sleep(ms(20)); // the looker parks in getaddrinfo
                looker.cancel();
            }
            let joined = looker.join();
            let (rc, err) = *out.lock().unwrap();
            // Only now may the queued lookup run.
            release.send(()).unwrap();
            holder.join().unwrap();
            // One pool thread, jobs in order: once this one ran, so did the
            // abandoned lookup (and it freed its list and closed its files).
            ivy::spawn_blocking(|| ()).join().unwrap();
            (rc, err, joined.err().is_some_and(|e| e.is_cancelled()))
        });
        assert_eq!(rc, libc::EAI_SYSTEM, "round {round}");
        if cancel {
            assert_eq!(err, libc::ECANCELED, "round {round}");
            assert!(joined_cancelled, "round {round}");
        } else {
            assert_eq!(err, libc::ETIMEDOUT, "round {round}");
            assert!(!joined_cancelled, "round {round}");
        }
        drop(rt);
    }
    assert_eq!(open_fds(), before);
}

/// The panic a reported interruption causes in code that cannot take the error
/// (std's `thread::sleep` asserts `EINTR`; a sync crate `unwrap`s its `read`) is
/// that interruption (`task::reported`): a cancelled task's join says
/// cancelled, a deadline scope returns `Err(Elapsed)` and its task goes on, the
/// destructors on the way up run and may block, and nothing is printed. Run in
/// a child process, whose stderr is the whole report and whose panic hook ivy
/// chains first: a genuine panic after an elapsed scope is still a panic, and
/// still printed.
#[test]
fn a_panic_on_a_reported_interruption_is_that_interruption() {
    let _serial = serial();
    let out = common::run_child(&mut common::child_case(
        "reported_interruption_child",
        "IVY_REPORTED_CHILD",
        "all",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("reported-child: done"),
        "the child ran its cases: {stdout}"
    );
    // The one panic printed is the genuine one, once per round.
    assert_eq!(
        stderr.matches("panicked at").count(),
        GENUINE_ROUNDS,
        "only the genuine panics are printed: {stderr}"
    );
    assert_eq!(
        stderr.matches("a genuine panic after the scope").count(),
        GENUINE_ROUNDS,
        "{stderr}"
    );
}

const GENUINE_ROUNDS: usize = 3;

/// Counts the tasks that have started: a task cancelled before it starts
/// never runs its closure, and these tests cancel tasks that must be inside a
/// call by then.
#[derive(Clone, Default)]
struct Started(Arc<AtomicUsize>);

impl Started {
    fn mark(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// Parks the caller until `n` tasks have started, then `then` more.
    fn wait(&self, n: usize, then: std::time::Duration) {
        while self.0.load(Ordering::SeqCst) < n {
            ivy::sleep(ms(1));
        }
        ivy::sleep(then);
    }
}

/// Blocks in its destructor: `std::thread::sleep` (hooked) or `ivy::sleep`,
/// then counts the drop. Dropped by an unwind, it shows that blocking
/// destructors run to completion on the way up.
struct BlockingDrop {
    hooked: bool,
    done: Arc<AtomicUsize>,
}

impl Drop for BlockingDrop {
    fn drop(&mut self) {
        if self.hooked {
            std::thread::sleep(ms(2));
        } else {
            ivy::sleep(ms(2));
        }
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn reported_interruption_child() {
    let Ok(case) = std::env::var("IVY_REPORTED_CHILD") else {
        return;
    };
    assert_eq!(case, "all");
    for workers in [1, 2] {
        for round in 0..10u64 {
            let done = Arc::new(AtomicUsize::new(0));
            let d2 = done.clone();
            let (cancelled, took, elapsed, went_on, read_cancelled) =
                rt(workers).block_on(move || {
                    // Cancelled in std::thread::sleep: both destructors block.
                    let t0 = Instant::now();
                    let d3 = d2.clone();
                    let started = Started::default();
                    let s2 = started.clone();
                    let sleeper = ivy::spawn(move || {
                        s2.mark();
                        let _a = BlockingDrop {
                            hooked: false,
                            done: d3.clone(),
                        };
                        let _b = BlockingDrop {
                            hooked: true,
                            done: d3,
                        };
                        std::thread::sleep(ms(10_000));
                    });
                    started.wait(1, ms(1 + round % 3));
                    sleeper.cancel();
                    let cancelled = sleeper.join().unwrap_err().is_cancelled();
                    let took = t0.elapsed();
                    // A deadline scope around std::thread::sleep, then the task goes on.
                    let scoped = ivy::spawn(|| {
                        let r = ivy::timeout(ms(5), || std::thread::sleep(ms(10_000)));
                        ivy::sleep(ms(1));
                        (r.is_err(), true)
                    });
                    let (elapsed, went_on) = scoped.join().unwrap();
                    // A sync reader that unwraps its read's error.
                    let (a, b) = UnixStream::pair().unwrap();
                    let s3 = started.clone();
                    let reader = ivy::spawn(move || {
                        s3.mark();
                        let mut buf = [0u8; 1];
                        (&a).read_exact(&mut buf).unwrap();
                        unreachable!("nothing is ever written");
                    });
                    started.wait(2, ms(1 + round % 2));
                    reader.cancel();
                    let read_cancelled = reader.join().unwrap_err().is_cancelled();
                    drop(b);
                    (cancelled, took, elapsed, went_on, read_cancelled)
                });
            let what = format!("workers {workers} round {round}");
            assert!(cancelled, "{what}: the sleeper's join says cancelled");
            assert!(took < ms(5_000), "{what}: {took:?}");
            assert_eq!(
                done.load(Ordering::SeqCst),
                2,
                "{what}: both destructors ran"
            );
            assert!(elapsed && went_on, "{what}: the scope returned Elapsed");
            assert!(
                read_cancelled,
                "{what}: the unwrapping reader's join says cancelled"
            );
        }
    }
    // Another task parked mid-unwind on the same worker: the thread counts as
    // panicking for everyone, so only the task's own record says whether it
    // unwinds. The delivery panic sets it: the second task's blocking
    // destructor runs to completion instead of being interrupted again (an
    // unwind out of a destructor during an unwind aborts the process).
    for round in 0..10u64 {
        let done = Arc::new(AtomicUsize::new(0));
        let d2 = done.clone();
        let (x_cancelled, y_cancelled) = rt(1).block_on(move || {
            let dx = d2.clone();
            let started = Started::default();
            let (sx, sy) = (started.clone(), started.clone());
            let x = ivy::spawn(move || {
                sx.mark();
                let _slow = BlockingDrop {
                    hooked: false,
                    done: dx,
                };
                ivy::sleep(ms(10_000));
            });
            let dy = d2;
            let y = ivy::spawn(move || {
                sy.mark();
                let _g = BlockingDrop {
                    hooked: false,
                    done: dy,
                };
                std::thread::sleep(ms(10_000));
            });
            started.wait(2, ms(1 + round % 2));
            // x unwinds first and parks in its destructor's 2 ms sleep; y is
            // cancelled meanwhile and unwinds while x is parked mid-unwind.
            x.cancel();
            y.cancel();
            (
                x.join().unwrap_err().is_cancelled(),
                y.join().unwrap_err().is_cancelled(),
            )
        });
        assert!(x_cancelled && y_cancelled, "round {round}");
        assert_eq!(done.load(Ordering::SeqCst), 2, "round {round}");
    }
    // A genuine panic after an elapsed scope is a panic, and it is printed.
    for round in 0..GENUINE_ROUNDS {
        let r = rt(1).block_on(|| {
            ivy::spawn(|| {
                let r = ivy::timeout(ms(2), || std::thread::sleep(ms(10_000)));
                assert!(r.is_err());
                panic!("a genuine panic after the scope");
            })
            .join()
        });
        let e = r.unwrap_err();
        assert!(e.is_panic(), "round {round}: {e}");
    }
    println!("reported-child: done");
}

/// A binding's view of the same record (`task::Current::take_hook_interruption`):
/// the interruption a hooked call reported, taken once, and only by the task
/// itself (a `Current` handed to another task takes nothing).
#[test]
fn a_binding_takes_the_reported_interruption_once() {
    let _serial = serial();
    let c_sleep = || {
        let ts = libc::timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec; no remainder asked for.
        let r = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        (r, errno())
    };
    for round in 0..10 {
        let (first, second, from_other, slept) = rt(1 + round % 2).block_on(move || {
            let (tx, rx) = std::sync::mpsc::channel();
            let started = Started::default();
            let s2 = started.clone();
            let t = ivy::spawn(move || {
                s2.mark();
                let slept = c_sleep();
                let me = ivy::task::current().unwrap();
                tx.send(me.clone()).unwrap();
                let first = me.take_hook_interruption();
                let second = me.take_hook_interruption();
                (first, second, slept)
            });
            started.wait(1, ms(1 + round as u64 % 3));
            t.cancel();
            let (first, second, slept) = t.join().unwrap();
            let theirs = rx.recv().unwrap();
            // Another task's `Current`: nothing to take from here.
            let from_other = ivy::spawn(move || theirs.take_hook_interruption())
                .join()
                .unwrap();
            (first, second, from_other, slept)
        });
        assert_eq!(slept, (-1, libc::ECANCELED), "round {round}");
        assert_eq!(first, Some(ivy::WaitError::Cancelled), "round {round}");
        assert_eq!((second, from_other), (None, None), "round {round}");
    }
    let elapsed = rt(1).block_on(move || {
        ivy::spawn(move || {
            let _ = ivy::timeout(ms(2), c_sleep);
            ivy::task::current().unwrap().take_hook_interruption()
        })
        .join()
        .unwrap()
    });
    // The scope that elapsed exits with the record cleared: it was its own.
    assert_eq!(elapsed, None);
    let inside = rt(1).block_on(move || {
        ivy::spawn(move || {
            let mut got = None;
            let _ = ivy::timeout(ms(2), || {
                c_sleep();
                got = ivy::task::current().unwrap().take_hook_interruption();
            });
            got
        })
        .join()
        .unwrap()
    });
    assert_eq!(inside, Some(ivy::WaitError::Elapsed));
}
