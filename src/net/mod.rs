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

/// Puts an fd-owning std socket into non-blocking mode for wrapping.
pub(crate) fn nonblocking<T>(io: T, set: impl FnOnce(&T, bool) -> io::Result<()>) -> io::Result<T> {
    set(&io, true)?;
    Ok(io)
}
