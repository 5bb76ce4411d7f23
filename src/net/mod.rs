//! Networking: TCP, UDP and Unix-domain sockets whose blocking calls park the
//! calling task, not its worker.
//!
//! The types mirror `std::net` / `std::os::unix::net` (same method names, same
//! `std::io::Read` / `Write` impls, also on `&TcpStream`), so `BufReader`,
//! `BufWriter` and unmodified synchronous crates work on them. Underneath, every
//! socket is non-blocking: an operation that would block waits for readiness on
//! the task's worker poll (see `crate::io`), or in `poll(2)` on a plain thread.
//!
//! Deadlines: each blocking call waits at most until the earliest of the
//! socket's own timeout (`set_read_timeout` / `set_write_timeout`, as in std) and
//! the caller's `ivy::timeout` scope deadline; both fail with
//! `io::ErrorKind::TimedOut`. Cancellation of the calling task unwinds from the
//! blocking call (the task's join reports `JoinError::Cancelled`); the unwind
//! drops the sockets the task owned, which deregisters and closes them.
//!
//! Sharing: `try_clone` and `split` hand out more handles to the *same* socket
//! (shared ownership, no new fd); the socket is closed when the last handle
//! drops. One task may read while another writes.
//!
//! Closing while others wait (crate-internal `close`, what the C ABI's
//! `ivy_tcp_close` & co. call, like libdill's `hclose`): a handle table hands out
//! `Arc`s, so a call blocked on the socket keeps it alive after its handle is
//! freed. `close` therefore does not wait for the last `Arc`: it marks the
//! registration closed (every waiting task wakes with `WaitError::Closed`, and
//! every later call fails so), then `shutdown(SHUT_RDWR)`s the socket, which
//! sends the peer its EOF, makes a listener stop listening (new connects are
//! refused, queued ones reset) and wakes plain threads blocked in `poll(2)` on
//! it. The fd number itself is released when the last `Arc` drops, which the
//! woken waiters do at once; keeping it open until then means no call ever runs
//! on an fd number that was closed and reused by someone else.

pub(crate) mod addr;
mod tcp;
mod udp;
mod unix;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::io::{Direction, Registration, WaitError};

pub use addr::ToSocketAddrs;
pub use tcp::{Incoming, TcpListener, TcpReadHalf, TcpStream, TcpWriteHalf};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixStream};

const NO_TIMEOUT: u64 = u64::MAX;

/// A listening stream socket, TCP or Unix-domain, as the C ABI's calls use it.
pub(crate) trait StreamListener: AsRawFd {
    /// The streams it accepts.
    type Stream: StreamSocket;

    /// Accepts a connection before `deadline` (the peer's address dropped).
    fn accept_stream_until(&self, deadline: Option<Instant>) -> Result<Self::Stream, WaitError>;

    /// Closes the listener for everyone sharing it (see the module's notes).
    fn close(&self);
}

/// A connected stream socket, TCP or Unix-domain: the crate-internal `Result`
/// layer (errors distinguish interruptions, the deadline and a close) that the
/// C ABI's stream calls share. `read_exact_until` and `write_all_until` are
/// written once, over `read_until` / `write_until`.
pub(crate) trait StreamSocket: AsRawFd {
    /// Reads up to `buf.len()` bytes before `deadline`; 0 at end of file.
    fn read_until(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize, WaitError>;

    /// Writes up to `buf.len()` bytes before `deadline`.
    fn write_until(&self, buf: &[u8], deadline: Option<Instant>) -> Result<usize, WaitError>;

    /// `shutdown(2)` of one side or both; the socket stays open.
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()>;

    /// Closes the socket for everyone sharing it (see the module's notes).
    fn close(&self);

    /// Writes all of `buf` before `deadline` (several writes if needed).
    /// Returns the count written and how it ended: on an error, an unknown part
    /// of the count may not have reached the peer yet, but it left `buf`. An
    /// empty `buf` succeeds at once. A write of 0 bytes (which a stream socket
    /// never does for a non-empty buffer) is reported as `EPIPE`.
    fn write_all_until(
        &self,
        mut buf: &[u8],
        deadline: Option<Instant>,
    ) -> (usize, Result<(), WaitError>) {
        let mut done = 0;
        while !buf.is_empty() {
            match self.write_until(buf, deadline) {
                Ok(0) => {
                    let e = io::Error::from_raw_os_error(libc::EPIPE);
                    return (done, Err(WaitError::Io(e)));
                }
                Ok(n) => {
                    done += n;
                    buf = &buf[n..];
                }
                Err(e) => return (done, Err(e)),
            }
        }
        (done, Ok(()))
    }

    /// Reads exactly `buf.len()` bytes before `deadline`. Returns the count read
    /// and how it ended; the peer closing its side first is an
    /// `UnexpectedEof` error (with the count read so far).
    fn read_exact_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> (usize, Result<(), WaitError>) {
        let mut done = 0;
        while done < buf.len() {
            match self.read_until(&mut buf[done..], deadline) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed early");
                    return (done, Err(WaitError::Io(e)));
                }
                Ok(n) => done += n,
                Err(e) => return (done, Err(e)),
            }
        }
        (done, Ok(()))
    }
}

/// A non-blocking socket of type `T` with its registration and timeouts.
/// Field order matters: the registration is dropped (deregistered) before the
/// socket closes its fd.
pub(crate) struct Socket<T: AsRawFd> {
    reg: Registration,
    io: T,
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
}

impl<T: AsRawFd> Socket<T> {
    /// Wraps a socket that is already in non-blocking mode.
    pub(crate) fn new(io: T) -> Socket<T> {
        Socket {
            reg: Registration::new(io.as_raw_fd()),
            io,
            read_timeout: AtomicU64::new(NO_TIMEOUT),
            write_timeout: AtomicU64::new(NO_TIMEOUT),
        }
    }

    /// Wraps a socket whose readiness is unknown and must come from the poll
    /// (a connect in progress).
    pub(crate) fn new_unready(io: T) -> Socket<T> {
        Socket {
            reg: Registration::with_readiness(io.as_raw_fd(), 0),
            io,
            read_timeout: AtomicU64::new(NO_TIMEOUT),
            write_timeout: AtomicU64::new(NO_TIMEOUT),
        }
    }

    pub(crate) fn get(&self) -> &T {
        &self.io
    }

    pub(crate) fn reg(&self) -> &Registration {
        &self.reg
    }

    fn deadline(&self, dir: Direction) -> Option<Instant> {
        let nanos = match dir {
            Direction::Read => self.read_timeout.load(Ordering::Relaxed),
            Direction::Write => self.write_timeout.load(Ordering::Relaxed),
        };
        if nanos == NO_TIMEOUT {
            return None;
        }
        Instant::now().checked_add(Duration::from_nanos(nanos))
    }

    /// Runs `op` until it does not block, honouring the socket timeout for `dir`
    /// and the caller's scope deadline. Internal (non-unwinding) layer.
    pub(crate) fn io_until<R>(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Result<R, WaitError> {
        let deadline = match (deadline, self.deadline(dir)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        self.reg.do_io(dir, deadline, || op(&self.io))
    }

    /// `io_until` with the Rust-side behaviour: cancellation unwinds.
    pub(crate) fn io<R>(
        &self,
        dir: Direction,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        crate::io::or_raise_io(self.io_until(dir, None, op))
    }

    pub(crate) fn set_timeout(&self, dir: Direction, t: Option<Duration>) -> io::Result<()> {
        let nanos = match t {
            None => NO_TIMEOUT,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(NO_TIMEOUT - 1),
        };
        match dir {
            Direction::Read => self.read_timeout.store(nanos, Ordering::Relaxed),
            Direction::Write => self.write_timeout.store(nanos, Ordering::Relaxed),
        }
        Ok(())
    }

    pub(crate) fn timeout(&self, dir: Direction) -> Option<Duration> {
        let nanos = match dir {
            Direction::Read => self.read_timeout.load(Ordering::Relaxed),
            Direction::Write => self.write_timeout.load(Ordering::Relaxed),
        };
        (nanos != NO_TIMEOUT).then(|| Duration::from_nanos(nanos))
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }

    /// Closes the socket for every holder (see the module comment): wakes every
    /// waiter with `WaitError::Closed`, fails every later operation so, and
    /// shuts the socket down (peer EOF, listener stops listening, plain-thread
    /// pollers wake). The fd closes when the last owner drops. Idempotent.
    pub(crate) fn close(&self) {
        self.reg.close();
        // After marking closed: a plain thread woken by the shutdown sees the
        // flag. Errors are ignored: an unconnected socket reports ENOTCONN but
        // is still marked shut down, which wakes its pollers (Linux).
        // SAFETY: `shutdown` on the fd this socket owns (open until it drops);
        // it only changes the socket's state.
        unsafe { libc::shutdown(self.io.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// What `check_socket` asks of an fd handed over by C.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// A connected TCP socket (IPv4 or IPv6).
    TcpStream,
    /// A listening TCP socket.
    TcpListener,
    /// A UDP socket.
    Udp,
}

/// Checks that `fd` is an open IPv4/IPv6 socket of `kind` (`SO_TYPE`,
/// `SO_DOMAIN`, `SO_ACCEPTCONN`; a stream must have a peer) and makes it
/// non-blocking, ready to be owned by an ivy socket. Errors: `EBADF` (raw) for a
/// closed fd, `InvalidInput` for anything else of the wrong kind (not a socket,
/// another type or family, a listener where a stream is wanted, an unconnected
/// stream). Never closes `fd`.
pub(crate) fn check_socket(fd: RawFd, kind: SocketKind) -> io::Result<()> {
    let wrong = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    if fd < 0 {
        return Err(wrong("negative fd"));
    }
    let opt = |name: libc::c_int| -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for writes of an int and a socklen_t;
        // getsockopt only reads the fd (EBADF / ENOTSOCK if it is not a socket).
        let r =
            unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&raw mut v).cast(), &mut len) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOTSOCK) {
                return Err(wrong("not a socket"));
            }
            return Err(e);
        }
        Ok(v)
    };
    let (want_type, want_listening) = match kind {
        SocketKind::TcpStream => (libc::SOCK_STREAM, Some(false)),
        SocketKind::TcpListener => (libc::SOCK_STREAM, Some(true)),
        SocketKind::Udp => (libc::SOCK_DGRAM, None),
    };
    if opt(libc::SO_TYPE)? != want_type {
        return Err(wrong("wrong socket type"));
    }
    let domain = opt(libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(wrong("not an IPv4 or IPv6 socket"));
    }
    if let Some(listening) = want_listening {
        if (opt(libc::SO_ACCEPTCONN)? != 0) != listening {
            return Err(wrong(if listening {
                "not a listening socket"
            } else {
                "a listening socket, not a stream"
            }));
        }
    }
    if kind == SocketKind::TcpStream {
        // SAFETY: all-zero bytes are a valid sockaddr_storage.
        let mut peer: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `peer` is writable for `len` bytes; only reads the fd.
        if unsafe { libc::getpeername(fd, (&raw mut peer).cast(), &mut len) } != 0 {
            return Err(wrong("stream is not connected"));
        }
    }
    // SAFETY: F_GETFL / F_SETFL on an open fd (checked above) only change its
    // status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Puts an fd-owning std socket into non-blocking mode for wrapping.
pub(crate) fn nonblocking<T>(io: T, set: impl FnOnce(&T, bool) -> io::Result<()>) -> io::Result<T> {
    set(&io, true)?;
    Ok(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    /// `close` wakes a task parked in a read and a plain thread blocked in
    /// poll(2), whether it comes before or during the call: the outcome is
    /// `Closed` either way; the peer reads EOF; later calls fail so too.
    #[test]
    fn close_wakes_task_and_thread_readers() {
        let rt = crate::Builder::new().workers(2).build().unwrap();
        rt.block_on(|| {
            for _ in 0..50 {
                let (c, mut s) = pair();
                let (c2, c3) = (c.clone(), c.clone());
                let task = crate::spawn(move || {
                    let mut buf = [0u8; 8];
                    c2.read_until(&mut buf, None).map(|_| ())
                });
                let thread = std::thread::spawn(move || {
                    let mut buf = [0u8; 8];
                    c3.read_until(&mut buf, None).map(|_| ())
                });
                crate::yield_now();
                c.close();
                assert!(matches!(task.join().unwrap(), Err(WaitError::Closed)));
                assert!(matches!(thread.join().unwrap(), Err(WaitError::Closed)));
                let mut buf = [0u8; 8];
                assert_eq!(s.read(&mut buf).unwrap(), 0, "the peer sees EOF");
                assert!(matches!(c.write_until(b"x", None), Err(WaitError::Closed)));
                c.close(); // idempotent
            }
        });
    }

    #[test]
    fn close_wakes_acceptors_and_stops_listening() {
        let rt = crate::Builder::new().workers(2).build().unwrap();
        rt.block_on(|| {
            let l = std::sync::Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
            let addr = l.local_addr().unwrap();
            let acceptors: Vec<_> = (0..4)
                .map(|_| {
                    let l = l.clone();
                    crate::spawn(move || l.accept_until(None).map(|_| ()))
                })
                .collect();
            crate::yield_now();
            l.close();
            for a in acceptors {
                assert!(matches!(a.join().unwrap(), Err(WaitError::Closed)));
            }
            let e = TcpStream::connect(addr).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        });
    }
}
