//! Readiness of foreign fds (`ivy::io::wait_readable` / `wait_writable`): pipes,
//! deadlines, fds already registered by ivy, regular files, plain threads. The
//! caller's fd is never closed or left registered.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ivy::Builder;

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(r, 0);
    // SAFETY: both fds are fresh and owned by nobody else.
    unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

#[test]
fn pipe_readiness_wakes_a_parked_task() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        for round in 0..200u32 {
            let (mut rx, mut tx) = pipe();
            let reader = ivy::spawn(move || {
                ivy::io::wait_readable(&rx, None).unwrap();
                let mut buf = [0u8; 4];
                rx.read_exact(&mut buf).unwrap();
                assert!(fd_is_open(rx.as_raw_fd()));
                u32::from_le_bytes(buf)
            });
            if round % 2 == 0 {
                ivy::yield_now();
            }
            ivy::io::wait_writable(&tx, None).unwrap();
            tx.write_all(&round.to_le_bytes()).unwrap();
            assert_eq!(reader.join().unwrap(), round);
        }
        assert_eq!(ivy::io::registrations(), 0);
    });
}

#[test]
fn wait_deadline_and_scope() {
    let rt = Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        let (rx, _tx) = pipe();
        let t0 = Instant::now();
        let e = ivy::io::wait_readable(&rx, Some(t0 + Duration::from_millis(80))).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(80) && took < Duration::from_secs(2),
            "{took:?}"
        );

        let mut inner = None;
        let r = ivy::timeout(Duration::from_millis(50), || {
            inner = Some(ivy::io::wait_readable(&rx, None).map_err(|e| e.kind()));
        });
        assert!(r.is_err());
        assert_eq!(inner, Some(Err(std::io::ErrorKind::TimedOut)));
        assert!(fd_is_open(rx.as_raw_fd()));
        assert_eq!(ivy::io::registrations(), 0);
    });
}

#[test]
fn fd_already_registered_by_ivy_and_regular_files() {
    let rt = Builder::new().workers(1).build().unwrap();
    rt.block_on(|| {
        let (a, b) = ivy::net::UnixStream::pair().unwrap();
        // Make `a` register itself with the worker poll: a read that blocks.
        a.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        assert!((&a).read(&mut [0u8; 1]).is_err());
        // Now wait on the same fd as a foreign fd (ivy registers a duplicate).
        let a = std::sync::Arc::new(a);
        let a2 = a.clone();
        let w = ivy::spawn(move || ivy::io::wait_readable(&*a2, None));
        ivy::sleep(Duration::from_millis(10));
        (&b).write_all(b"!").unwrap();
        w.join().unwrap().unwrap();
        let mut buf = [0u8; 1];
        (&*a).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"!");

        // Regular files are always ready (epoll refuses them; poll(2) agrees).
        let f = std::fs::File::open("/proc/self/status").unwrap();
        ivy::io::wait_readable(&f, None).unwrap();

        // A closed fd is EBADF, not a hang.
        // SAFETY: deliberately names no open fd, to check the error (no I/O
        // happens on it).
        let e =
            ivy::io::wait_readable(unsafe { BorrowedFd::borrow_raw(1_000_000) }, None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    });
}

#[test]
fn wait_on_plain_thread_uses_poll() {
    let (rx, mut tx) = pipe();
    let t = std::thread::spawn(move || {
        ivy::io::wait_readable(&rx, Some(Instant::now() + Duration::from_secs(10))).unwrap();
        rx
    });
    std::thread::sleep(Duration::from_millis(20));
    tx.write_all(b"x").unwrap();
    let rx = t.join().unwrap();
    assert!(fd_is_open(rx.as_raw_fd()));
    let e = ivy::io::wait_readable(&rx, Some(Instant::now() + Duration::from_millis(1)));
    // Data is still there: readable at once.
    assert!(e.is_ok());
    drop(tx);
    let (rx2, _tx2) = pipe();
    let e =
        ivy::io::wait_readable(&rx2, Some(Instant::now() + Duration::from_millis(30))).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn cancel_task_waiting_on_fd() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        let (rx, _tx) = pipe();
        let fd = rx.as_raw_fd();
        let rx = std::sync::Arc::new(rx);
        let rx2 = rx.clone();
        let w = ivy::spawn(move || {
            let _ = ivy::io::wait_readable(&*rx2, None);
            unreachable!("nothing is ever written");
        });
        // Wait until it is registered (polling with a generous bound, not a
        // fixed 20 ms guess).
        let bound = Instant::now() + Duration::from_secs(30);
        while ivy::io::registrations() == 0 {
            assert!(Instant::now() < bound, "the waiter never registered");
            ivy::sleep(Duration::from_millis(1));
        }
        assert_eq!(ivy::io::registrations(), 1);
        w.cancel();
        assert!(w.join().unwrap_err().is_cancelled());
        assert_eq!(ivy::io::registrations(), 0);
        assert!(fd_is_open(fd));
        drop(rx);
    });
}

/// Out of fd numbers (ivy waits on a duplicate of the caller's fd, and cannot
/// make one): the wait still works, on the caller's fd itself. Runs in a child
/// process, since it lowers the fd limit and uses up every number.
#[test]
fn wait_works_when_out_of_fds() {
    const CHILD: &str = "IVY_TEST_OUT_OF_FDS_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "wait_works_when_out_of_fds", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("1 passed"), "child ran nothing:\n{text}");
        return;
    }
    let rt = Builder::new().workers(1).build().unwrap();
    let (rx, mut tx) = pipe();
    let lim = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: setrlimit reads the struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut filler = Vec::new();
    loop {
        // SAFETY: F_DUPFD_CLOEXEC only reads `rx`; a success is a fresh fd we own.
        let fd = unsafe { libc::fcntl(rx.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EMFILE)
            );
            break;
        }
        // SAFETY: fresh, owned by nobody else.
        filler.push(unsafe { OwnedFd::from_raw_fd(fd) });
        assert!(filler.len() < 256, "the limit did not apply");
    }
    let rx = rt.block_on(move || {
        let waiter = ivy::spawn(move || ivy::io::wait_readable(&rx, None).map(|()| rx));
        ivy::yield_now();
        tx.write_all(b"x").unwrap();
        let rx = waiter.join().unwrap().unwrap();
        assert_eq!(ivy::io::registrations(), 0);
        rx
    });
    assert!(fd_is_open(rx.as_raw_fd()));
    drop(filler);
}
