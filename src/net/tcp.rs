//! TCP: `TcpListener` and `TcpStream`, std's API on ivy's readiness waits.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::addr::{each_addr, ToSocketAddrs};
use super::{nonblocking, Socket};
use crate::io::{or_raise_io, Direction, WRITABLE};

const LISTEN_BACKLOG: libc::c_int = 4096;

/// A TCP socket server, listening for connections (`std::net::TcpListener`).
///
/// `accept` parks the calling task until a connection arrives. Errors such as
/// `EMFILE` (out of fds) are returned without losing the pending connection:
/// the next `accept` takes it once fds are free again.
pub struct TcpListener {
    inner: Socket<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (`SO_REUSEADDR` set, as in std; listen backlog 4096, capped
    /// by `net.core.somaxconn`). Host names are resolved on
    /// the blocking pool; with several addresses, the first that binds wins.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        or_raise_io(each_addr(&addr, |a| {
            let l = mio::net::TcpListener::bind(a)?;
            // Raise the backlog from std's and mio's 128 (a burst of connects
            // overflows it and the dropped SYNs cost a 1 s retransmit each).
            // Linux lets `listen` be called again to change it, and caps it at
            // net.core.somaxconn.
            // SAFETY: `listen` on a socket fd we own; it only reads its arguments.
            if unsafe { libc::listen(l.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(TcpListener::from_mio(l))
        }))
    }

    fn from_mio(l: mio::net::TcpListener) -> TcpListener {
        TcpListener {
            inner: Socket::new(l),
        }
    }

    /// Wraps a std listener (switching it to non-blocking mode).
    pub fn from_std(l: std::net::TcpListener) -> io::Result<TcpListener> {
        let l = nonblocking(l, std::net::TcpListener::set_nonblocking)?;
        Ok(TcpListener::from_mio(mio::net::TcpListener::from_std(l)))
    }

    /// Takes ownership of a listening IPv4/IPv6 TCP socket (for the C ABI),
    /// after checking it is one (`check_socket`); on error `fd` stays the
    /// caller's, open.
    ///
    /// # Safety
    /// `fd` is owned by the caller and not used by it after a success.
    pub(crate) unsafe fn from_fd_checked(fd: RawFd) -> io::Result<TcpListener> {
        super::check_socket(fd, super::SocketKind::TcpListener)?;
        // SAFETY: an open listening socket the caller hands over (contract).
        let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        Ok(TcpListener::from_mio(mio::net::TcpListener::from_std(std)))
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        or_raise_io(self.accept_deadline(None))
    }

    /// [`accept`](Self::accept) before `deadline`, never unwinding (see
    /// [the module's rule](crate::net)).
    pub fn accept_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, addr) = self
            .inner
            .io_deadline(Direction::Read, deadline, |l| l.accept())?;
        Ok((TcpStream::from_mio(s), addr))
    }

    /// An iterator of accepted connections (never ends; errors are yielded).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_ttl(ttl)
    }

    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get().ttl()
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }

    /// Closes the listener for every holder (as the C ABI's close, see
    /// [`crate::net`]): every accept blocked on it returns an error carrying
    /// [`WaitError::Closed`](crate::WaitError::Closed) at once, every later
    /// call fails so, and the socket stops listening (new connects are
    /// refused, queued ones reset). The fd is released when the last holder
    /// drops. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl_listener!(
    /// The iterator of [`TcpListener::incoming`].
    Incoming,
    TcpListener,
    TcpStream
);
impl_socket_debug!(TcpListener { "addr": local_addr });
impl_socket_fd!(TcpListener, TcpStream);

/// A TCP connection (`std::net::TcpStream`).
///
/// Reads and writes park the calling task until the socket is ready. The handle
/// is shared: `try_clone` and `split` return more handles to the same socket, so
/// one task can read while another writes; the socket closes with the last one.
#[derive(Clone)]
pub struct TcpStream {
    inner: Arc<Socket<std::net::TcpStream>>,
}

impl TcpStream {
    fn from_mio(s: mio::net::TcpStream) -> TcpStream {
        // SAFETY: `into_raw_fd` gives up ownership of a valid, open socket fd,
        // which the std stream takes over (still non-blocking).
        let std = unsafe { std::net::TcpStream::from_raw_fd(s.into_raw_fd()) };
        TcpStream {
            inner: Arc::new(Socket::new(std)),
        }
    }

    /// Wraps a connected std stream (switching it to non-blocking mode).
    pub fn from_std(s: std::net::TcpStream) -> io::Result<TcpStream> {
        let s = nonblocking(s, std::net::TcpStream::set_nonblocking)?;
        Ok(TcpStream {
            inner: Arc::new(Socket::new(s)),
        })
    }

    /// Takes ownership of a connected IPv4/IPv6 TCP socket (for the C ABI),
    /// after checking it is one (`check_socket`); on error `fd` stays the
    /// caller's, open.
    ///
    /// # Safety
    /// `fd` is owned by the caller and not used by it after a success.
    pub(crate) unsafe fn from_fd_checked(fd: RawFd) -> io::Result<TcpStream> {
        super::check_socket(fd, super::SocketKind::TcpStream)?;
        // SAFETY: an open connected socket the caller hands over (contract).
        let std = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        Ok(TcpStream {
            inner: Arc::new(Socket::new(std)),
        })
    }

    /// Connects to `addr`, trying each resolved address in turn. Host names are
    /// resolved on the blocking pool. Honours the caller's `ivy::timeout` scope.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        or_raise_io(TcpStream::connect_deadline(addr, None))
    }

    /// [`connect`](Self::connect) before `deadline` (for all the addresses
    /// together), never unwinding (see [the module's rule](crate::net)). A
    /// passed deadline starts the connect and looks once: `TimedOut` if the
    /// handshake has not completed.
    pub fn connect_deadline<A: ToSocketAddrs>(
        addr: A,
        deadline: Option<Instant>,
    ) -> io::Result<TcpStream> {
        each_addr(&addr, |a| TcpStream::connect_one(a, deadline))
    }

    /// Connects to one address, failing with `TimedOut` after `timeout`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        or_raise_io(TcpStream::connect_one(
            *addr,
            Instant::now().checked_add(timeout),
        ))
    }

    /// Connects to one address: a non-blocking `connect(2)`, then a wait for
    /// writability, then `SO_ERROR` says how it went.
    pub(crate) fn connect_one(
        addr: SocketAddr,
        deadline: Option<Instant>,
    ) -> io::Result<TcpStream> {
        crate::park::check_interrupt()?;
        let mio = mio::net::TcpStream::connect(addr)?;
        // SAFETY: as in `from_mio`: we take over the open socket fd.
        let std = unsafe { std::net::TcpStream::from_raw_fd(mio.into_raw_fd()) };
        let sock = Socket::new_unready(std);
        sock.reg().wait(WRITABLE, deadline)?;
        if let Some(e) = sock.get().take_error()? {
            return Err(e);
        }
        // Writable without an error but not connected: a spurious wake-up cannot
        // happen here (the wait returns only on readiness), but a reset right
        // after the handshake can; report it like std does.
        sock.get().peer_addr()?;
        // From now on, try operations first and wait only when they block.
        Ok(TcpStream {
            inner: Arc::new(sock_optimistic(sock)),
        })
    }

    /// Another handle to the same socket (no new fd; the socket closes when the
    /// last handle is dropped). Infallible; `io::Result` for std compatibility.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(self.clone())
    }

    /// Splits the stream into a read half and a write half, usable from two tasks.
    pub fn split(&self) -> (TcpReadHalf, TcpWriteHalf) {
        (
            TcpReadHalf {
                stream: self.clone(),
            },
            TcpWriteHalf {
                stream: self.clone(),
            },
        )
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get().set_nodelay(nodelay)
    }

    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.get().nodelay()
    }

    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_ttl(ttl)
    }

    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get().ttl()
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }

    /// Closes the stream for every handle sharing it (clones, halves; as the C
    /// ABI's close, see [`crate::net`]): every read or write blocked on it
    /// returns an error carrying [`WaitError::Closed`](crate::WaitError::Closed)
    /// at once, every later call fails so, and the socket is shut down in both
    /// directions (the peer reads EOF). The fd is released when the last handle
    /// drops. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    socket_timeouts!();

    /// Reads without removing the data from the socket's queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        or_raise_io(self.peek_deadline(buf, None))
    }

    /// [`peek`](Self::peek) before `deadline`, never unwinding (see [the
    /// module's rule](crate::net)).
    pub fn peek_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .recv_deadline(deadline, buf.len(), |s| s.peek(buf))
    }

    /// `Read::read` before `deadline`, never unwinding (see [the module's
    /// rule](crate::net)): up to `buf.len()` bytes, 0 at end of file.
    pub fn read_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .recv_stream_deadline(deadline, buf.len(), |mut s| s.read(buf))
    }

    /// `Write::write` before `deadline`, never unwinding (see [the module's
    /// rule](crate::net)). An empty `buf` writes nothing and returns 0, like
    /// `write(2)`.
    pub fn write_deadline(&self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .io_deadline(Direction::Write, deadline, |mut s| s.write(buf))
    }
}

impl_stream!(TcpStream);
impl_socket_debug!(TcpStream { "local": local_addr, "peer": peer_addr });

/// Socket with readiness assumed (after connect: try first, wait on WouldBlock).
fn sock_optimistic<T: AsRawFd>(sock: Socket<T>) -> Socket<T> {
    sock.reg().assume_ready();
    sock
}

/// The read half of a [`TcpStream`] (from `split`); implements `Read`.
#[derive(Debug, Clone)]
pub struct TcpReadHalf {
    stream: TcpStream,
}

/// The write half of a [`TcpStream`] (from `split`); implements `Write`.
/// Dropping it does not shut the connection down: call `shutdown`.
#[derive(Debug, Clone)]
pub struct TcpWriteHalf {
    stream: TcpStream,
}

impl TcpReadHalf {
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// The whole stream this half belongs to.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl TcpWriteHalf {
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Shuts down the write direction (the peer reads EOF).
    pub fn shutdown(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// The whole stream this half belongs to.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl Read for TcpReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.stream).read(buf)
    }
}

impl Write for TcpWriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.stream).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.stream).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
