//! `ivy::io::poll`: many foreign fds, one deadline (the Rust face of
//! `ivy_fd_poll`; the C suite's tests/c/test_poll.c covers the C call).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ms, rt};
use ivy::io::{poll, Interest, PollFd};

fn pairs(n: usize) -> Vec<(UnixStream, UnixStream)> {
    (0..n).map(|_| UnixStream::pair().unwrap()).collect()
}

#[test]
fn exactly_the_written_one_is_reported_while_parked() {
    for workers in [1, 2] {
        rt(workers).block_on(|| {
            let ps = pairs(50);
            for k in 0..ps.len() {
                let mut tx = ps[k].0.try_clone().unwrap();
                let writer = ivy::spawn(move || tx.write_all(b"x").unwrap());
                let mut fds: Vec<PollFd<'_>> = ps
                    .iter()
                    .map(|(_, rx)| PollFd::new(rx, Interest::READABLE))
                    .collect();
                let n = poll(&mut fds, Some(Instant::now() + Duration::from_secs(10))).unwrap();
                assert_eq!(n, 1);
                for (i, f) in fds.iter().enumerate() {
                    assert_eq!(f.readiness().is_readable(), i == k, "entry {i}");
                    assert!(!f.readiness().is_hangup());
                }
                writer.join().unwrap();
                let mut b = [0u8; 1];
                (&ps[k].1).read_exact(&mut b).unwrap();
            }
        });
    }
}

#[test]
fn timeout_passed_deadline_and_plain_thread() {
    let body = || {
        let ps = pairs(10);
        let mut fds: Vec<PollFd<'_>> = ps
            .iter()
            .map(|(_, rx)| PollFd::new(rx, Interest::READABLE))
            .collect();
        let start = Instant::now();
        let e = poll(&mut fds, Some(start + ms(50))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(start.elapsed() >= ms(50));
        assert!(fds.iter().all(|f| f.readiness().is_empty()));
        // A passed deadline is a try: what is there is reported.
        (&ps[3].0).write_all(b"x").unwrap();
        let n = poll(&mut fds, Some(Instant::now())).unwrap();
        assert_eq!(n, 1);
        assert!(fds[3].readiness().is_readable());
        // Writable and hang-up.
        let mut w = [PollFd::new(
            &ps[0].0,
            Interest::READABLE | Interest::WRITABLE,
        )];
        assert_eq!(poll(&mut w, Some(Instant::now())).unwrap(), 1);
        assert!(w[0].readiness().is_writable() && !w[0].readiness().is_readable());
        let (tx, rx) = UnixStream::pair().unwrap();
        drop(tx);
        let mut h = [PollFd::new(&rx, Interest::READABLE)];
        assert_eq!(poll(&mut h, None).unwrap(), 1);
        assert!(h[0].readiness().is_readable() && h[0].readiness().is_hangup());
    };
    body();
    rt(2).block_on(body);
}

#[test]
fn scope_deadline_and_cancellation() {
    rt(1).block_on(|| {
        let (_tx, rx) = UnixStream::pair().unwrap();
        let r = ivy::timeout(ms(30), || {
            let mut fds = [PollFd::new(&rx, Interest::READABLE)];
            poll(&mut fds, None)
        });
        assert!(r.is_err(), "the scope's deadline ends the wait");

        // One worker: once `entered` is seen, the waiter is parked in its poll.
        let entered = Arc::new(AtomicBool::new(false));
        let flag = entered.clone();
        let waiter = ivy::spawn(move || {
            let mut fds = [PollFd::new(&rx, Interest::READABLE)];
            flag.store(true, Ordering::SeqCst);
            let _ = poll(&mut fds, None);
            unreachable!("a cancelled poll unwinds");
        });
        while !entered.load(Ordering::SeqCst) {
            ivy::yield_now();
        }
        waiter.cancel();
        assert!(waiter.join().unwrap_err().is_cancelled());
    });
}

/// The soundness round's rule for `ivy_fd_poll` (see tests/soundness_io.rs):
/// another thread closes a waited-on fd while a dup keeps its open file alive,
/// and that file keeps making events. The waiter wakes once, for that file;
/// the call leaves no registration, and the events that keep coming afterwards
/// reach nothing.
#[test]
fn c_fd_poll_close_while_waiting_with_a_dup_alive() {
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array we own.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        assert_eq!(r, 0);
        // SAFETY: both fds are fresh and owned by nobody else.
        unsafe {
            (
                OwnedFd::from_raw_fd(fds[0]).into(),
                OwnedFd::from_raw_fd(fds[1]).into(),
            )
        }
    }
    rt(1).block_on(|| {
        for round in 0..20 {
            let (rx, mut tx) = pipe();
            let (other_rx, _other_tx) = pipe();
            let keep = rx.try_clone().unwrap(); // a dup: the file stays open
            let fd = rx.into_raw_fd();
            let other = other_rx.as_raw_fd();
            let waiter = ivy::spawn(move || {
                let mut fds = [
                    ivy::ffi::ivy_pollfd_t {
                        fd: other,
                        events: ivy::ffi::IVY_READABLE,
                        revents: -1,
                    },
                    ivy::ffi::ivy_pollfd_t {
                        fd,
                        events: ivy::ffi::IVY_READABLE,
                        revents: -1,
                    },
                ];
                let mut n = 0;
                // SAFETY: `fds` holds 2 entries and `n` is writable.
                let rc = unsafe { ivy::ffi::ivy_fd_poll(fds.as_mut_ptr(), 2, &mut n, -1) };
                (rc, n, fds[0].revents, fds[1].revents)
            });
            while ivy::io::registrations() != 1 {
                ivy::sleep(ms(1)); // the waiter's set is registered: it waits
            }
            std::thread::spawn(move || {
                // SAFETY: the test owns `fd` (it was `into_raw_fd`'d) and closes it once.
                assert_eq!(unsafe { libc::close(fd) }, 0);
            })
            .join()
            .unwrap();
            tx.write_all(b"a").unwrap();
            assert_eq!(
                waiter.join().unwrap(),
                (0, 1, 0, ivy::ffi::IVY_READABLE),
                "round {round}"
            );
            assert_eq!(ivy::io::registrations(), 0);
            // Events keep coming for the open file: none may reach anything.
            let mut keep = keep;
            for _ in 0..3 {
                let mut b = [0u8; 8];
                assert_eq!(keep.read(&mut b).unwrap(), 1);
                tx.write_all(b"b").unwrap();
                ivy::sleep(ms(2));
            }
            assert_eq!(ivy::io::registrations(), 0);
            drop(other_rx);
        }
    });
}
