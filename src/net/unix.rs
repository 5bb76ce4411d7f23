//! Unix-domain sockets: `UnixListener`, `UnixStream`, `UnixDatagram`, std's API
//! (`std::os::unix::net`) on ivy's readiness waits.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{nonblocking, Socket};
use crate::error::WaitError;
use crate::io::{or_raise_io, Direction};

/// A Unix-domain socket server (`std::os::unix::net::UnixListener`).
pub struct UnixListener {
    inner: Socket<mio::net::UnixListener>,
}

impl UnixListener {
    /// Binds to the socket file at `path` (which must not exist yet).
    /// The listen backlog is 4096 (capped by `net.core.somaxconn`), not std's 128.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::listening(mio::net::UnixListener::bind(path)?)
    }

    /// Binds to `addr`: a path, or on Linux an abstract name
    /// (`std::os::linux::net::SocketAddrExt::from_abstract_name`). Backlog as
    /// [`UnixListener::bind`].
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        UnixListener::listening(mio::net::UnixListener::bind_addr(addr)?)
    }

    /// A bound socket with its backlog raised from mio's 128 to 4096.
    fn listening(l: mio::net::UnixListener) -> io::Result<UnixListener> {
        // SAFETY: `listen` on a socket fd we own; Linux allows re-listening to
        // raise the backlog.
        if unsafe { libc::listen(l.as_raw_fd(), 4096) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UnixListener {
            inner: Socket::new(l),
        })
    }

    /// Wraps a std listener (switching it to non-blocking mode).
    pub fn from_std(l: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        let l = nonblocking(l, std::os::unix::net::UnixListener::set_nonblocking)?;
        Ok(UnixListener {
            inner: Socket::new(mio::net::UnixListener::from_std(l)),
        })
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        or_raise_io(self.accept_deadline(None))
    }

    /// [`accept`](Self::accept) before `deadline`, never unwinding (see
    /// [the module's rule](crate::net)).
    pub fn accept_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self
            .inner
            .io_deadline(Direction::Read, deadline, |l| l.accept())?;
        // SAFETY: `into_raw_fd` gives up ownership of a valid, open, non-blocking
        // socket fd, which the std stream takes over.
        let std = unsafe { std::os::unix::net::UnixStream::from_raw_fd(s.into_raw_fd()) };
        Ok((UnixStream::wrap(std), addr))
    }

    /// An iterator of accepted connections (never ends; errors are yielded).
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }

    /// Closes the listener for every holder (as the C ABI's close, see
    /// [`crate::net`]): every accept blocked on it returns an error carrying
    /// [`WaitError::Closed`](crate::WaitError::Closed) at once, every later
    /// call fails so, and the socket is shut down (new connects are refused).
    /// The fd (and the socket file, which ivy never unlinks) stays until the
    /// last holder drops. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl_listener!(
    /// The iterator of [`UnixListener::incoming`].
    UnixIncoming,
    UnixListener,
    UnixStream
);
impl_socket_debug!(UnixListener { "addr": local_addr });
impl_socket_fd!(UnixListener, UnixStream, UnixDatagram);

/// A Unix-domain stream (`std::os::unix::net::UnixStream`). Cloning (or
/// `try_clone`) gives another handle to the same socket.
#[derive(Clone)]
pub struct UnixStream {
    inner: Arc<Socket<std::os::unix::net::UnixStream>>,
}

impl UnixStream {
    fn wrap(s: std::os::unix::net::UnixStream) -> UnixStream {
        UnixStream {
            inner: Arc::new(Socket::new(s)),
        }
    }

    /// Connects to the socket at `path`. While the listener's backlog is full
    /// the connect is retried (with back-off up to 20 ms) until it succeeds or
    /// the caller's scope deadline passes.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        or_raise_io(UnixStream::connect_deadline(path, None))
    }

    /// [`connect`](Self::connect) before `deadline`, never unwinding (see
    /// [the module's rule](crate::net)). A passed deadline tries once.
    pub fn connect_deadline<P: AsRef<Path>>(
        path: P,
        deadline: Option<Instant>,
    ) -> io::Result<UnixStream> {
        UnixStream::connect_addr_deadline(&SocketAddr::from_pathname(path)?, deadline)
    }

    /// `connect_deadline` to a path or (Linux) abstract address.
    pub(crate) fn connect_addr_deadline(
        addr: &SocketAddr,
        deadline: Option<Instant>,
    ) -> io::Result<UnixStream> {
        let mut backoff = Duration::from_millis(1);
        loop {
            crate::park::check_interrupt()?;
            match mio::net::UnixStream::connect_addr(addr) {
                Ok(s) => {
                    // SAFETY: we take over the open, non-blocking socket fd.
                    let std =
                        unsafe { std::os::unix::net::UnixStream::from_raw_fd(s.into_raw_fd()) };
                    return Ok(UnixStream::wrap(std));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Err(WaitError::TimedOut.into());
                    }
                    let mut until = now + backoff;
                    if let Some(d) = deadline {
                        until = until.min(d);
                    }
                    crate::time::sleep_deadline(Some(until))?;
                    backoff = (backoff * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A connected pair of streams.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// Wraps a std stream (switching it to non-blocking mode).
    pub fn from_std(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        let s = nonblocking(s, std::os::unix::net::UnixStream::set_nonblocking)?;
        Ok(UnixStream::wrap(s))
    }

    /// Another handle to the same socket. Infallible; `io::Result` for std
    /// compatibility.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(self.clone())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }

    /// Closes the stream for every handle sharing it (as the C ABI's close, see
    /// [`crate::net`]): every read or write blocked on it returns an error
    /// carrying [`WaitError::Closed`](crate::WaitError::Closed) at once, every
    /// later call fails so, and the socket is shut down (the peer reads EOF).
    /// The fd is released when the last handle drops. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    socket_timeouts!();

    /// `Read::read` before `deadline`, never unwinding (see [the module's
    /// rule](crate::net)): up to `buf.len()` bytes, 0 at end of file.
    pub fn read_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .recv_stream_deadline(deadline, buf.len(), |mut s| s.read(buf))
    }

    /// `Write::write` before `deadline`, never unwinding (see [the module's
    /// rule](crate::net)): at least one byte of a non-empty `buf` on success;
    /// an empty `buf` returns 0 without touching the socket.
    pub fn write_deadline(&self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.inner
            .io_deadline(Direction::Write, deadline, |mut s| s.write(buf))
    }
}

impl_stream!(UnixStream);
impl_socket_debug!(UnixStream {});

/// A Unix-domain datagram socket (`std::os::unix::net::UnixDatagram`).
#[derive(Clone)]
pub struct UnixDatagram {
    inner: Arc<Socket<std::os::unix::net::UnixDatagram>>,
}

impl UnixDatagram {
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::bind(path)?)
    }

    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::unbound()?)
    }

    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std::os::unix::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    /// Wraps a std socket (switching it to non-blocking mode).
    pub fn from_std(s: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        let s = nonblocking(s, std::os::unix::net::UnixDatagram::set_nonblocking)?;
        Ok(UnixDatagram {
            inner: Arc::new(Socket::new(s)),
        })
    }

    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.inner.get().connect(path)
    }

    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        or_raise_io(self.send_to_deadline(buf, path, None))
    }

    /// [`send_to`](Self::send_to) before `deadline`, never unwinding (see
    /// [the module's rule](crate::net)).
    pub fn send_to_deadline<P: AsRef<Path>>(
        &self,
        buf: &[u8],
        path: P,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let path = path.as_ref();
        self.inner
            .io_deadline(Direction::Write, deadline, |s| s.send_to(buf, path))
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        or_raise_io(self.recv_from_deadline(buf, None))
    }

    /// [`recv_from`](Self::recv_from) before `deadline`, never unwinding (see
    /// [the module's rule](crate::net)).
    pub fn recv_from_deadline(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<(usize, SocketAddr)> {
        self.inner
            .recv_deadline(deadline, buf.len(), |s| s.recv_from(buf))
    }

    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        or_raise_io(self.send_deadline(buf, None))
    }

    /// [`send`](Self::send) before `deadline`, never unwinding (see [the
    /// module's rule](crate::net)).
    pub fn send_deadline(&self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .io_deadline(Direction::Write, deadline, |s| s.send(buf))
    }

    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        or_raise_io(self.recv_deadline(buf, None))
    }

    /// [`recv`](Self::recv) before `deadline`, never unwinding (see [the
    /// module's rule](crate::net)).
    pub fn recv_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .recv_deadline(deadline, buf.len(), |s| s.recv(buf))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.set_timeout(Direction::Read, t)
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.set_timeout(Direction::Write, t)
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }

    /// Closes the socket for every handle sharing it (see [`crate::net`]):
    /// every send or receive blocked on it returns an error carrying
    /// [`WaitError::Closed`](crate::WaitError::Closed) at once, and every later
    /// call fails so. The fd is released when the last handle drops.
    /// Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl_socket_debug!(UnixDatagram {});

// ---------------------------------------------------------------------------
// Adopting an fd handed over by C (`ivy_unix_*_from_fd`).

impl UnixListener {
    /// Takes over `fd`, a listening Unix-domain stream socket (checked:
    /// anything else, or a negative fd, is `InvalidInput`; an fd that is not
    /// open `EBADF`), and switches it to non-blocking mode. On an error the fd
    /// stays the caller's, untouched.
    ///
    /// # Safety
    /// If `fd` is open, nothing else owns it (nothing else will close it): on
    /// success the listener does.
    pub(crate) unsafe fn from_fd_checked(fd: RawFd) -> io::Result<UnixListener> {
        check_unix_stream_fd(fd, true)?;
        // SAFETY: checked above to be an open socket; the caller hands its
        // ownership over (the contract above).
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        Ok(UnixListener {
            inner: Socket::new(mio::net::UnixListener::from_std(l)),
        })
    }
}

impl UnixStream {
    /// Takes over `fd`, a connected Unix-domain stream socket (checked:
    /// anything else, a listener or an unconnected socket included, or a
    /// negative fd, is `InvalidInput`; an fd that is not open `EBADF`), and
    /// switches it to non-blocking mode. On an error the fd stays the caller's,
    /// untouched.
    ///
    /// # Safety
    /// If `fd` is open, nothing else owns it (nothing else will close it): on
    /// success the stream does.
    pub(crate) unsafe fn from_fd_checked(fd: RawFd) -> io::Result<UnixStream> {
        check_unix_stream_fd(fd, false)?;
        // SAFETY: checked above to be an open socket; the caller hands its
        // ownership over (the contract above).
        let s = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
        Ok(UnixStream::wrap(s))
    }
}

/// Checks that `fd` is an open Unix-domain stream socket, listening or
/// connected as asked, and switches it to non-blocking mode (the last step, so a refused fd
/// is left as it was).
fn check_unix_stream_fd(fd: RawFd, listening: bool) -> io::Result<()> {
    let wrong = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "ivy: not a Unix-domain stream socket of the asked kind",
        )
    };
    let opt = |name: libc::c_int| -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of an int and a
        // socklen_t; an fd that is not a socket gives ENOTSOCK, one that is not
        // open EBADF.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(value)
    };
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ivy: negative fd",
        ));
    }
    let domain = match opt(libc::SO_DOMAIN) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => return Err(wrong()),
        r => r?,
    };
    if domain != libc::AF_UNIX
        || opt(libc::SO_TYPE)? != libc::SOCK_STREAM
        || (opt(libc::SO_ACCEPTCONN)? != 0) != listening
    {
        return Err(wrong());
    }
    if !listening {
        // Connected: it has a peer (unnamed for a `socketpair`).
        // SAFETY: an all-zero `sockaddr_un` is valid; `addr` and `len` are
        // valid for writes of the sizes given.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: as above; getpeername only writes within `len` bytes.
        if unsafe { libc::getpeername(fd, (&raw mut addr).cast(), &mut len) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOTCONN) {
                return Err(wrong());
            }
            return Err(e);
        }
    }
    // SAFETY: F_GETFL / F_SETFL on an open fd only change its status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
