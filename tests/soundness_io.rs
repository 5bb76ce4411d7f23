//! Soundness of I/O registrations (issue 10, item 4): an fd closed or replaced
//! behind a waiting task's back must never make a worker touch freed memory, and
//! a stale registration must never wake or disturb a live one.
//!
//! These run under valgrind (tests/valgrind.sh): on the old code, whose poll
//! tokens were raw `IoState` pointers, the first event after such a close read
//! freed memory ("Invalid read ... free'd").
//!
//! Closing or `dup2`-ing over an fd another thread waits on is what C code (and
//! unsafe Rust) can do; the tests do it with libc on fds they own.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use ivy::Builder;

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are fresh and owned by nobody else.
    unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn dup(fd: RawFd) -> std::fs::File {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; the result is a fresh fd we own.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    assert!(d >= 0, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: `d` is fresh and owned by nobody else.
    std::fs::File::from(unsafe { OwnedFd::from_raw_fd(d) })
}

/// `ivy::io::wait_readable` on a raw fd the caller keeps open for the call (the
/// tests close it only from C-style code, on purpose).
fn wait_readable(fd: RawFd, deadline: Option<Instant>) -> std::io::Result<()> {
    // SAFETY: `fd` is open when the wait starts; closing it during the wait is
    // exactly what these tests check ivy survives.
    ivy::io::wait_readable(unsafe { BorrowedFd::borrow_raw(fd) }, deadline)
}

/// Reads everything the (non-blocking) pipe holds.
fn drain(f: &mut std::fs::File) -> usize {
    let mut buf = [0u8; 64];
    let mut n = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return n,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return n,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Yields until the caller's runtime has `n` fds registered.
fn until_registrations(n: usize) {
    let t0 = Instant::now();
    while ivy::io::registrations() != n {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "registrations never reached {n}"
        );
        ivy::sleep(Duration::from_millis(1));
    }
}

/// Lets the (single) worker go idle, so it collects and dispatches pending events.
fn let_events_flow() {
    ivy::sleep(Duration::from_millis(2));
}

/// Three times: reads the one pending byte from `keep` (the open file), writes
/// `byte` to `tx` and lets the events it makes reach the reactor.
#[track_caller]
fn keep_events_coming(keep: &mut std::fs::File, tx: &mut std::fs::File, byte: &[u8]) {
    for _ in 0..3 {
        assert_eq!(drain(keep), 1);
        tx.write_all(byte).unwrap();
        let_events_flow();
    }
}

fn close_on_another_thread(fd: RawFd) {
    std::thread::spawn(move || {
        // SAFETY: the test owns `fd` (it was `into_raw_fd`'d) and closes it once.
        assert_eq!(unsafe { libc::close(fd) }, 0);
    })
    .join()
    .unwrap();
}

/// The scenario: a task waits on an fd; another thread closes that fd
/// while a dup keeps the open file (and so any epoll entry) alive; the dup is
/// made readable again and again. The waiter wakes exactly once, with success,
/// and nothing else happens.
#[test]
fn close_while_waiting_with_a_dup_alive() {
    let rt = Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        for round in 0..40 {
            let (rx, mut tx) = pipe();
            let mut keep = dup(rx.as_raw_fd());
            let fd = std::os::fd::IntoRawFd::into_raw_fd(rx);
            let waiter = ivy::spawn(move || wait_readable(fd, None));
            until_registrations(1);
            close_on_another_thread(fd);
            tx.write_all(b"a").unwrap();
            waiter
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            // Events keep coming for the open file: none may reach anything.
            keep_events_coming(&mut keep, &mut tx, b"b");
            assert_eq!(ivy::io::registrations(), 0);
        }
    });
}

/// The same through the C ABI's `ivy_fd_wait`.
#[test]
fn c_fd_wait_close_while_waiting() {
    let rt = Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        for round in 0..20 {
            let (rx, mut tx) = pipe();
            let mut keep = dup(rx.as_raw_fd());
            let fd = std::os::fd::IntoRawFd::into_raw_fd(rx);
            let waiter = ivy::spawn(move || {
                let mut revents = 0;
                // SAFETY: `revents` is a writable int.
                let rc =
                    unsafe { ivy::ffi::ivy_fd_wait(fd, ivy::ffi::IVY_READABLE, &mut revents, -1) };
                (rc, revents)
            });
            until_registrations(1);
            close_on_another_thread(fd);
            tx.write_all(b"a").unwrap();
            assert_eq!(
                waiter.join().unwrap(),
                (0, ivy::ffi::IVY_READABLE),
                "round {round}"
            );
            keep_events_coming(&mut keep, &mut tx, b"b");
            assert_eq!(ivy::io::registrations(), 0);
        }
    });
}

/// The waited-on fd number is closed and reused by a new pipe while the first
/// waiter still waits on the old file. The old waiter wakes only for its own
/// file, removing its registration does not disturb the new waiter's, and
/// stale events touch nothing.
#[test]
fn fd_number_reused_while_old_waiter_waits() {
    let rt = Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        for round in 0..20 {
            let (rx1, mut tx1) = pipe();
            let mut keep1 = dup(rx1.as_raw_fd());
            let fd = std::os::fd::IntoRawFd::into_raw_fd(rx1);
            let old = ivy::spawn(move || wait_readable(fd, None));
            until_registrations(1);
            close_on_another_thread(fd);
            // Usually the lowest free number, the one just closed (another
            // test's thread may take it first: the round then still checks the
            // stale paths, without the reuse).
            let (mut rx2, mut tx2) = pipe();
            let fd2 = rx2.as_raw_fd();
            let new = ivy::spawn(move || {
                wait_readable(fd2, Some(Instant::now() + Duration::from_secs(20)))?;
                Ok::<_, std::io::Error>(drain(&mut rx2))
            });
            until_registrations(2);
            // Wake the old waiter: it removes its registration.
            tx1.write_all(b"1").unwrap();
            old.join().unwrap().unwrap();
            assert!(
                !new.is_finished(),
                "round {round}: new waiter woken by the old file"
            );
            // Stale events for the old file.
            keep_events_coming(&mut keep1, &mut tx1, b"1");
            assert!(
                !new.is_finished(),
                "round {round}: new waiter woken by the old file"
            );
            assert_eq!(ivy::io::registrations(), 1);
            // The new waiter still gets its own wake-up.
            tx2.write_all(b"yz").unwrap();
            assert_eq!(
                new.join().unwrap().unwrap(),
                2,
                "round {round} (fd {fd} -> {fd2})"
            );
            assert_eq!(ivy::io::registrations(), 0);
        }
    });
}

/// An ivy socket's fd number is pointed at another file (`dup2`) behind its
/// back while its task waits, a dup keeping the socket open: the registration
/// can no longer be removed from epoll, so its events keep arriving after the
/// socket is dropped. They must be ignored: not read freed memory, and not
/// wake the registration that reuses the slot.
#[test]
fn socket_fd_replaced_behind_its_back() {
    let rt = Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        for round in 0..20 {
            let (a, mut b) = ivy::net::UnixStream::pair().unwrap();
            let afd = a.as_raw_fd();
            let keep = dup(afd);
            let reader = ivy::spawn(move || {
                let mut a = a;
                let mut buf = [0u8; 8];
                let n = a.read(&mut buf);
                drop(a); // deregisters: fails, the fd is /dev/null now
                n.map_err(|e| e.raw_os_error())
            });
            until_registrations(1);
            let null = std::fs::File::open("/dev/null").unwrap();
            // SAFETY: both fds are open; `afd` is owned by `a`, which closes it
            // (now /dev/null's duplicate) when dropped.
            assert_eq!(unsafe { libc::dup2(null.as_raw_fd(), afd) }, afd);
            drop(null);
            b.write_all(b"a").unwrap();
            // The event wakes the reader, whose recv hits /dev/null.
            assert_eq!(
                reader.join().unwrap(),
                Err(Some(libc::ENOTSOCK)),
                "round {round}"
            );
            assert_eq!(ivy::io::registrations(), 0);
            // `afd` is free again, and the socket's stale epoll entry is keyed by
            // (afd, socket): a wait on the socket through `keep` registers a
            // duplicate, likely numbered `afd` again; epoll refuses that one
            // (EEXIST), and ivy must take another number, not fail.
            b.write_all(b"w").unwrap();
            wait_readable(keep.as_raw_fd(), None).unwrap();
            let mut two = [0u8; 2];
            (&keep).read_exact(&mut two).unwrap();
            assert_eq!(&two, b"aw");
            let mut byte = [0u8; 1];
            assert_eq!(ivy::io::registrations(), 0);
            // A new registration, likely in the slot the old one used.
            let (mut rx, mut tx) = pipe();
            let rfd = rx.as_raw_fd();
            let fresh = ivy::spawn(move || {
                wait_readable(rfd, None)?;
                Ok::<_, std::io::Error>(drain(&mut rx))
            });
            until_registrations(1);
            // Stale events: must not wake `fresh` (it would find its pipe empty).
            for _ in 0..3 {
                b.write_all(b"s").unwrap();
                let_events_flow();
                (&keep).read_exact(&mut byte).unwrap();
            }
            assert!(
                !fresh.is_finished(),
                "round {round}: woken by a stale event"
            );
            tx.write_all(b"ok").unwrap();
            assert_eq!(fresh.join().unwrap().unwrap(), 2, "round {round}");
        }
    });
}

/// A registration dropped on another thread than its worker's, while events
/// for it are in flight, and registrations that outlive their runtime.
#[test]
fn registrations_dropped_off_worker_and_after_shutdown() {
    let rt = Builder::new().workers(2).build().unwrap();
    let survivors = rt.block_on(|| {
        let mut survivors = Vec::new();
        for round in 0..30 {
            let (a, b) = ivy::net::UnixStream::pair().unwrap();
            let a = ivy::spawn(move || {
                a.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                let mut buf = [0u8; 1];
                assert!((&a).read(&mut buf).is_err()); // registers, times out
                a
            })
            .join()
            .unwrap();
            let writer = std::thread::spawn(move || {
                for _ in 0..20 {
                    let _ = (&b).write(b"x");
                }
                b
            });
            if round % 3 == 0 {
                survivors.push(a);
            } else {
                std::thread::spawn(move || drop(a)).join().unwrap();
            }
            drop(writer.join().unwrap());
        }
        survivors
    });
    drop(rt);
    // The runtime is gone; its registrations are removed on drop, from here.
    for a in survivors {
        drop(a);
    }
}

/// The scenario at volume, on two workers: the closer is another task
/// (maybe on the other worker), and the file keeps producing events while the
/// waiter finishes and the next round registers.
#[test]
fn novg_close_while_waiting_stress() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        let mut kept = Vec::new();
        for round in 0..500 {
            let (rx, mut tx) = pipe();
            let keep = dup(rx.as_raw_fd());
            let fd = std::os::fd::IntoRawFd::into_raw_fd(rx);
            let waiter = ivy::spawn(move || wait_readable(fd, None));
            until_registrations(1);
            ivy::spawn(move || {
                // SAFETY: the test owns `fd` and closes it once.
                assert_eq!(unsafe { libc::close(fd) }, 0);
            })
            .join()
            .unwrap();
            tx.write_all(b"a").unwrap();
            waiter
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let _ = tx.write(b"b");
            // Keep a few stale entries alive across later rounds.
            kept.push((keep, tx));
            if kept.len() > 8 {
                let (mut keep, mut tx) = kept.remove(0);
                drain(&mut keep);
                let _ = tx.write(b"c");
            }
        }
        assert_eq!(ivy::io::registrations(), 0);
    });
}
