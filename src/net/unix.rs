//! Unix-domain sockets: `UnixListener`, `UnixStream`, `UnixDatagram`, std's API
//! (`std::os::unix::net`) on ivy's readiness waits.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{nonblocking, Socket};
use crate::io::{or_raise_io, Direction, WaitError};

/// A Unix-domain socket server (`std::os::unix::net::UnixListener`).
pub struct UnixListener {
    inner: Socket<mio::net::UnixListener>,
}

impl UnixListener {
    /// Binds to the socket file at `path` (which must not exist yet).
    /// The listen backlog is 4096 (capped by `net.core.somaxconn`), not std's 128.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let l = mio::net::UnixListener::bind(path)?;
        // SAFETY: `listen` on a socket fd we own; Linux allows re-listening to
        // raise the backlog.
        if unsafe { libc::listen(l.as_raw_fd(), 4096) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UnixListener {
            inner: Socket::new(l),
        })
    }

    /// Binds to `addr`: a path, or on Linux an abstract name
    /// (`std::os::linux::net::SocketAddrExt::from_abstract_name`). Backlog as
    /// [`UnixListener::bind`].
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        let l = mio::net::UnixListener::bind_addr(addr)?;
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
        or_raise_io(self.accept_until(None))
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

    /// Closes the listener for every holder (crate-internal; the C ABI's close,
    /// see `crate::net`): every accept blocked on it returns `WaitError::Closed`
    /// at once, every later call fails so, and the socket is shut down (new
    /// connects are refused). The fd (and the socket file, which ivy never
    /// unlinks) stays until the last holder drops. Idempotent.
    #[allow(dead_code)] // used by the C ABI
    pub(crate) fn close(&self) {
        self.inner.close();
    }
}

/// The iterator of [`UnixListener::incoming`].
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.inner.raw_fd())
            .finish()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.raw_fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.get().as_fd()
    }
}

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
        or_raise_io(UnixStream::connect_until(path.as_ref(), None))
    }

    pub(crate) fn connect_until(
        path: &Path,
        deadline: Option<Instant>,
    ) -> Result<UnixStream, WaitError> {
        UnixStream::connect_addr_until(&SocketAddr::from_pathname(path)?, deadline)
    }

    /// The internal connect to a path or (Linux) abstract address: a deadline
    /// already passed tries once.
    pub(crate) fn connect_addr_until(
        addr: &SocketAddr,
        deadline: Option<Instant>,
    ) -> Result<UnixStream, WaitError> {
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
                        return Err(WaitError::TimedOut);
                    }
                    let mut until = now + backoff;
                    if let Some(d) = deadline {
                        until = until.min(d);
                    }
                    crate::time::sleep_until_inner(until)?;
                    backoff = (backoff * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(WaitError::Io(e)),
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

    /// Closes the stream for every handle sharing it (the C ABI's close, see
    /// `crate::net`): every read or write blocked on it returns
    /// `WaitError::Closed` at once, every later call fails so, and the socket is
    /// shut down (the peer reads EOF). The fd is released when the last handle
    /// drops. Idempotent.
    #[allow(dead_code)] // used by the C ABI
    pub(crate) fn close(&self) {
        self.inner.close();
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.set_timeout(Direction::Read, t)
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.set_timeout(Direction::Write, t)
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.timeout(Direction::Read))
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.timeout(Direction::Write))
    }
}

impl Read for &UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.io(Direction::Read, |mut s| s.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.inner
            .io(Direction::Read, |mut s| s.read_vectored(bufs))
    }
}

impl Write for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.io(Direction::Write, |mut s| s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner
            .io(Direction::Write, |mut s| s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.inner.raw_fd())
            .finish()
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.raw_fd()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.get().as_fd()
    }
}

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
        let path = path.as_ref();
        self.inner.io(Direction::Write, |s| s.send_to(buf, path))
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.io(Direction::Read, |s| s.recv_from(buf))
    }

    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.io(Direction::Write, |s| s.send(buf))
    }

    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.io(Direction::Read, |s| s.recv(buf))
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

    /// Closes the socket for every handle sharing it (the C ABI's close, see
    /// `crate::net`): every send or receive blocked on it returns
    /// `WaitError::Closed` at once, and every later call fails so. The fd is
    /// released when the last handle drops. Idempotent.
    #[allow(dead_code)] // used by the C ABI
    pub(crate) fn close(&self) {
        self.inner.close();
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("fd", &self.inner.raw_fd())
            .finish()
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.raw_fd()
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.get().as_fd()
    }
}

// ---------------------------------------------------------------------------
// The crate-internal layer of the C ABI (`ivy_unix_*`): no unwinding, an own
// deadline on every blocking call (a passed one is a non-blocking try), and
// the counts a partial `read_exact` / `write_all` reached.

impl UnixListener {
    /// The internal accept: errors distinguish interruptions, the deadline and
    /// a close (`WaitError::Closed`).
    pub(crate) fn accept_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(UnixStream, SocketAddr), WaitError> {
        let (s, addr) = self
            .inner
            .io_until(Direction::Read, deadline, |l| l.accept())?;
        // SAFETY: `into_raw_fd` gives up ownership of a valid, open, non-blocking
        // socket fd, which the std stream takes over.
        let std = unsafe { std::os::unix::net::UnixStream::from_raw_fd(s.into_raw_fd()) };
        Ok((UnixStream::wrap(std), addr))
    }

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

impl super::StreamListener for UnixListener {
    type Stream = UnixStream;

    fn accept_stream_until(&self, deadline: Option<Instant>) -> Result<UnixStream, WaitError> {
        self.accept_until(deadline).map(|(s, _)| s)
    }

    fn close(&self) {
        UnixListener::close(self);
    }
}

impl super::StreamSocket for UnixStream {
    fn read_until(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize, WaitError> {
        self.inner
            .io_until(Direction::Read, deadline, |mut s| s.read(buf))
    }

    /// At least one byte of a non-empty `buf` on success; an empty `buf`
    /// returns 0 without touching the socket.
    fn write_until(&self, buf: &[u8], deadline: Option<Instant>) -> Result<usize, WaitError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.inner
            .io_until(Direction::Write, deadline, |mut s| s.write(buf))
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }

    fn close(&self) {
        UnixStream::close(self);
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
