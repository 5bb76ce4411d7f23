//! Networking: TCP, UDP and Unix-domain sockets whose blocking calls park the
//! calling task, not its worker.
//!
//! The types mirror `std::net` / `std::os::unix::net` (same method names, same
//! `std::io::Read` / `Write` impls, also on `&TcpStream`), so `BufReader`,
//! `BufWriter` and unmodified synchronous crates work on them. Underneath, every
//! socket is non-blocking: an operation that would block waits for readiness on
//! the task's worker poll (see `crate::io`), or in `poll(2)` on a plain thread.
//!
//! Layering: net is in the api layer; it uses `crate::io` (registrations and
//! readiness waits), `crate::park` / `crate::cancel` (interruptions, through
//! io), `crate::blocking` (name lookups) and `crate::error::WaitError`. Nothing
//! below it imports it; `crate::ffi` wraps it.
//!
//! # Two forms of every blocking call
//! Each blocking call `x(args) -> io::Result<R>` (`read`, `write`,
//! `read_exact`, `write_all`, `accept`, `connect`, `send_to`, `recv_from`,
//! `send`, `recv`, `peek`, `peek_from`) has a twin `x_deadline(args, deadline: Option<Instant>) -> io::Result<R>` that
//! never unwinds: cancellation of the calling task, the deadline of an
//! enclosing `ivy::timeout` scope, its own `deadline` (and the socket's
//! timeout) and a `close` of the socket are `Err(e)` with
//! [`WaitError::of`](crate::WaitError::of)`(&e)` = `Some(Cancelled | Elapsed |
//! TimedOut | Closed)`; any other error is the OS's. `None` means no own
//! deadline; a passed one is a non-blocking try (the operation is attempted
//! once, whatever ivy's readiness bits say). The plain form is
//! `or_raise_io(x_deadline(args, None))`: the same, except that a cancellation
//! unwinds (the task's join reports `JoinError::Cancelled`; the unwind drops the
//! sockets the task owned, which deregisters and closes them). So an elapsed
//! scope reaches I/O code as an `io::ErrorKind::TimedOut` error in both forms
//! (the scope then reports `Err(Elapsed)`), and so does the socket's own
//! timeout (`set_read_timeout` / `set_write_timeout`, as in std). The C ABI
//! calls the `_deadline` forms and maps `WaitError::of` to `IVY_ECANCELED`,
//! `IVY_ETIMEDOUT` and `IVY_ECLOSED`.
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use ivy::net::{TcpListener, TcpStream};
//! use ivy::WaitError;
//!
//! ivy::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
//!     let _peer = listener.accept().unwrap();
//!     let mut buf = [0u8; 16];
//!     // Nothing was sent: the own deadline passes.
//!     let soon = Instant::now() + Duration::from_millis(5);
//!     let e = stream.read_deadline(&mut buf, Some(soon)).unwrap_err();
//!     assert_eq!(WaitError::of(&e), Some(WaitError::TimedOut));
//!     // A task cancelled while it reads gets an error, not an unwind.
//!     let started = Arc::new(AtomicBool::new(false));
//!     let s = started.clone();
//!     let reader = ivy::spawn(move || {
//!         s.store(true, Ordering::SeqCst);
//!         let e = stream.read_deadline(&mut buf, None).unwrap_err();
//!         WaitError::of(&e)
//!     });
//!     while !started.load(Ordering::SeqCst) {
//!         ivy::yield_now();
//!     }
//!     reader.cancel();
//!     // It goes on and returns normally.
//!     assert_eq!(reader.join().unwrap(), Some(WaitError::Cancelled));
//! });
//! ```
//!
//! Sharing: `try_clone` and `split` hand out more handles to the *same* socket
//! (shared ownership, no new fd); the socket is closed when the last handle
//! drops. One task may read while another writes.
//!
//! Closing while others wait (`close`, what the C ABI's `ivy_tcp_close` & co.
//! call, like libdill's `hclose`): a handle table hands out `Arc`s, so a call
//! blocked on the socket keeps it alive after its handle is freed. `close`
//! therefore does not wait for the last `Arc`: it marks the registration closed
//! (every waiting task wakes with `WaitError::Closed`, and every later call
//! fails so; a call running into the close at that moment fails so too, rather
//! than reporting the shutdown's EOF or error as the peer's), then `shutdown(SHUT_RDWR)`s the socket, which sends the peer its
//! EOF, makes a listener stop listening (new connects are refused, queued ones
//! reset) and wakes plain threads blocked in `poll(2)` on it. The fd number
//! itself is released when the last `Arc` drops, which the woken waiters do at
//! once; keeping it open until then means no call ever runs on an fd number
//! that was closed and reused by someone else.
//!
//! # One pattern for the boilerplate
//! The five socket types share their readiness logic through `Socket<T>`. Their
//! trait boilerplate (`Debug`, `AsFd` / `AsRawFd`, the `Incoming` iterators,
//! `Read` / `Write` for `T` and `&T`) is written once, as one small
//! declarative macro per trait family below, not as blanket impls over a
//! shared trait: `impl<T: StreamSocket> Read for T` is refused by the orphan
//! rule (`Read` is foreign and `T` uncovered), a generic wrapper type would
//! change the public types and their rustdoc, and a macro keeps each type's
//! rustdoc listing the same concrete impls as before. The macros only forward
//! to inherent methods; the logic stays in ordinary functions.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::io::{Direction, Registration};

/// The timeout accessors of a socket type (inside its `impl` block): the
/// socket's own read and write timeouts, as in std, kept by its `Socket`.
macro_rules! socket_timeouts {
    () => {
        /// Read timeout (like std): a read that waits longer fails with
        /// `TimedOut`. `Some(Duration::ZERO)` is an `InvalidInput` error, as in
        /// std.
        pub fn set_read_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
            self.inner.set_timeout($crate::io::Direction::Read, t)
        }

        /// Write timeout (like std); see `set_read_timeout`.
        pub fn set_write_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
            self.inner.set_timeout($crate::io::Direction::Write, t)
        }

        pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.inner.timeout($crate::io::Direction::Read))
        }

        pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.inner.timeout($crate::io::Direction::Write))
        }
    };
}

/// `AsRawFd` and `AsFd` for socket types whose `inner` is a `Socket` (or an
/// `Arc` of one): the fd the socket owns, lent.
macro_rules! impl_socket_fd {
    ($($t:ty),* $(,)?) => {$(
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.inner.raw_fd()
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(self.inner.get())
            }
        }
    )*};
}

/// `Debug` for a socket type: its name, the addresses named (each from the
/// inherent method of that name, `None` when it fails) and its fd.
macro_rules! impl_socket_debug {
    ($t:ident { $($field:literal: $getter:ident),* $(,)? }) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field($field, &self.$getter().ok()))*
                    .field("fd", &self.inner.raw_fd())
                    .finish()
            }
        }
    };
}

/// The iterator of a listener's `incoming()`: accepted streams, never ending,
/// errors yielded; and the listener's `StreamListener` impl.
macro_rules! impl_listener {
    ($(#[$doc:meta])* $incoming:ident, $listener:ident, $stream:ident) => {
        $(#[$doc])*
        pub struct $incoming<'a> {
            listener: &'a $listener,
        }

        impl Iterator for $incoming<'_> {
            type Item = std::io::Result<$stream>;
            fn next(&mut self) -> Option<std::io::Result<$stream>> {
                Some(self.listener.accept().map(|(s, _)| s))
            }
        }

        impl $crate::net::StreamListener for $listener {
            type Stream = $stream;

            fn accept_stream_deadline(
                &self,
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<$stream> {
                self.accept_deadline(deadline).map(|(s, _)| s)
            }

            fn close(&self) {
                $listener::close(self);
            }
        }
    };
}

/// For a stream type with inherent `read_deadline` / `write_deadline`,
/// `shutdown` and `close`: the `read_exact_deadline` / `write_all_deadline`
/// twins, `Read` / `Write` for the type and for a shared reference (the plain
/// forms: the `_deadline` ones with a cancellation unwinding; the vectored
/// calls go to the socket's own), and the `StreamSocket` impl.
macro_rules! impl_stream {
    ($t:ident) => {
        impl $t {
            /// Reads exactly `buf.len()` bytes before `deadline`, never
            /// unwinding (see [the module's rule](crate::net)). The peer
            /// closing its side first is an `UnexpectedEof` error. On an error,
            /// an unknown part of `buf` may have been filled.
            pub fn read_exact_deadline(
                &self,
                buf: &mut [u8],
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<()> {
                $crate::net::StreamSocket::read_exact_with_count(self, buf, deadline).1
            }

            /// Writes all of `buf` before `deadline` (several writes if
            /// needed), never unwinding (see [the module's rule](crate::net)).
            /// On an error, an unknown part of `buf` may have been sent.
            pub fn write_all_deadline(
                &self,
                buf: &[u8],
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<()> {
                $crate::net::StreamSocket::write_all_with_count(self, buf, deadline).1
            }
        }

        impl std::io::Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                $crate::io::or_raise_io(self.read_deadline(buf, None))
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                let want = bufs.iter().map(|b| b.len()).sum();
                $crate::io::or_raise_io(self.inner.recv_stream_deadline(None, want, |mut s| {
                    std::io::Read::read_vectored(&mut s, bufs)
                }))
            }
        }

        impl std::io::Write for &$t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                $crate::io::or_raise_io(self.write_deadline(buf, None))
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.inner.io($crate::io::Direction::Write, |mut s| {
                    std::io::Write::write_vectored(&mut s, bufs)
                })
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::io::Read::read(&mut &*self, buf)
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                std::io::Read::read_vectored(&mut &*self, bufs)
            }
        }

        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::io::Write::write(&mut &*self, buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                std::io::Write::write_vectored(&mut &*self, bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl $crate::net::StreamSocket for $t {
            fn read_deadline(
                &self,
                buf: &mut [u8],
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<usize> {
                $t::read_deadline(self, buf, deadline)
            }

            fn write_deadline(
                &self,
                buf: &[u8],
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<usize> {
                $t::write_deadline(self, buf, deadline)
            }

            fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
                $t::shutdown(self, how)
            }

            fn close(&self) {
                $t::close(self);
            }
        }
    };
}

pub(crate) mod addr;
mod tcp;
mod udp;
mod unix;

pub use addr::ToSocketAddrs;
pub use tcp::{Incoming, TcpListener, TcpReadHalf, TcpStream, TcpWriteHalf};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixStream};

const NO_TIMEOUT: u64 = u64::MAX;

/// A listening stream socket, TCP or Unix-domain, as the C ABI's calls use it
/// (`impl_listener!`).
pub(crate) trait StreamListener: AsRawFd {
    /// The streams it accepts.
    type Stream: StreamSocket;

    /// `accept_deadline` without the peer's address.
    fn accept_stream_deadline(&self, deadline: Option<Instant>) -> io::Result<Self::Stream>;

    /// Closes the listener for everyone sharing it (see the module's notes).
    fn close(&self);
}

/// A connected stream socket, TCP or Unix-domain (`impl_stream!`): the
/// `Result` layer that the C ABI's stream calls share. `read_exact_with_count`
/// and `write_all_with_count` are written once, over `read_deadline` /
/// `write_deadline`, and also say how far they got (the C calls report it).
pub(crate) trait StreamSocket: AsRawFd {
    /// Reads up to `buf.len()` bytes before `deadline`; 0 at end of file.
    fn read_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize>;

    /// Writes up to `buf.len()` bytes before `deadline`.
    fn write_deadline(&self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize>;

    /// `shutdown(2)` of one side or both; the socket stays open.
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()>;

    /// Closes the socket for everyone sharing it (see the module's notes).
    fn close(&self);

    /// Writes all of `buf` before `deadline` (several writes if needed).
    /// Returns the count written and how it ended: on an error, an unknown part
    /// of the count may not have reached the peer yet, but it left `buf`. An
    /// empty `buf` succeeds at once. A write of 0 bytes (which a stream socket
    /// never does for a non-empty buffer) is reported as `EPIPE`.
    fn write_all_with_count(
        &self,
        mut buf: &[u8],
        deadline: Option<Instant>,
    ) -> (usize, io::Result<()>) {
        let mut done = 0;
        while !buf.is_empty() {
            match self.write_deadline(buf, deadline) {
                Ok(0) => return (done, Err(io::Error::from_raw_os_error(libc::EPIPE))),
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
    fn read_exact_with_count(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> (usize, io::Result<()>) {
        let mut done = 0;
        while done < buf.len() {
            match self.read_deadline(&mut buf[done..], deadline) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed early");
                    return (done, Err(e));
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
    /// and the caller's scope deadline. The `Result` layer: never unwinds.
    pub(crate) fn io_deadline<R>(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let deadline = match (deadline, self.deadline(dir)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        self.reg.do_io(dir, deadline, || op(&self.io))
    }

    /// `io_deadline` for a read-side operation of up to `want` bytes. A read
    /// that ran while `close` shut the socket down can see the shutdown's end of
    /// file (it passed the closed check just before `close` set the flag); that
    /// is reported as `WaitError::Closed`, as if `close` had come first, so a
    /// reader never mistakes ivy's own shutdown for the peer's EOF. A read that
    /// got data keeps it: `close` is then ordered after it.
    pub(crate) fn recv_deadline<R: Received>(
        &self,
        deadline: Option<Instant>,
        want: usize,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        match self.io_deadline(Direction::Read, deadline, op) {
            Ok(r) if r.bytes() == 0 && want > 0 && self.reg.is_closed() => {
                Err(crate::WaitError::Closed.into())
            }
            r => r,
        }
    }

    /// `recv_deadline` for a read of up to `want` bytes from a *stream*
    /// socket: a read that returns fewer bytes (but some) has emptied the
    /// receive queue, so the readiness bit is cleared at once and the next read
    /// parks without an `EAGAIN` syscall first (`do_io_until_drained`). Not for
    /// datagrams (a short datagram says nothing of the next one) nor peeks
    /// (they leave the data queued).
    pub(crate) fn recv_stream_deadline(
        &self,
        deadline: Option<Instant>,
        want: usize,
        mut op: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let deadline = match (deadline, self.deadline(Direction::Read)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        let drained = |n: &usize| *n > 0 && *n < want;
        match self
            .reg
            .do_io_until_drained(Direction::Read, deadline, || op(&self.io), drained)
        {
            Ok(0) if want > 0 && self.reg.is_closed() => Err(crate::WaitError::Closed.into()),
            r => r,
        }
    }

    /// `io_deadline` with the Rust-side behaviour: cancellation unwinds.
    pub(crate) fn io<R>(
        &self,
        dir: Direction,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        crate::io::or_raise_io(self.io_deadline(dir, None, op))
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

/// What a read-side operation returns, by how many bytes it delivered
/// (`Socket::recv_deadline`).
pub(crate) trait Received {
    fn bytes(&self) -> usize;
}

impl Received for usize {
    fn bytes(&self) -> usize {
        *self
    }
}

impl<A> Received for (usize, A) {
    fn bytes(&self) -> usize {
        self.0
    }
}

impl<A, B> Received for (usize, A, B) {
    fn bytes(&self) -> usize {
        self.0
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
    use crate::WaitError;
    use std::io::Read;

    /// The `WaitError` an I/O result failed with, if any.
    fn closed<T>(r: io::Result<T>) -> Option<WaitError> {
        WaitError::of(&r.err()?)
    }

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
                    c2.read_deadline(&mut buf, None).map(|_| ())
                });
                let thread = std::thread::spawn(move || {
                    let mut buf = [0u8; 8];
                    c3.read_deadline(&mut buf, None).map(|_| ())
                });
                crate::yield_now();
                c.close();
                assert_eq!(closed(task.join().unwrap()), Some(WaitError::Closed));
                assert_eq!(closed(thread.join().unwrap()), Some(WaitError::Closed));
                let mut buf = [0u8; 8];
                assert_eq!(s.read(&mut buf).unwrap(), 0, "the peer sees EOF");
                assert_eq!(
                    closed(c.write_deadline(b"x", None)),
                    Some(WaitError::Closed)
                );
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
                    crate::spawn(move || l.accept_deadline(None).map(|_| ()))
                })
                .collect();
            crate::yield_now();
            l.close();
            for a in acceptors {
                assert_eq!(closed(a.join().unwrap()), Some(WaitError::Closed));
            }
            let e = TcpStream::connect(addr).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        });
    }
}
