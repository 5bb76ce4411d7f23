//! UDP: `UdpSocket`, std's API on ivy's readiness waits.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use super::addr::{each_addr, resolve, ToSocketAddrs};
use super::{nonblocking, Socket};
use crate::io::{or_raise_io, Direction};

/// A UDP socket (`std::net::UdpSocket`). Receives park the calling task until a
/// datagram arrives; sends park only while the socket buffer is full.
/// Cloning (or `try_clone`) gives another handle to the same socket.
#[derive(Clone)]
pub struct UdpSocket {
    inner: Arc<Socket<std::net::UdpSocket>>,
}

impl UdpSocket {
    /// Binds to `addr`; host names are resolved on the blocking pool.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        or_raise_io(each_addr(&addr, |a| {
            UdpSocket::from_std(std::net::UdpSocket::bind(a)?)
        }))
    }

    /// Wraps a std socket (switching it to non-blocking mode).
    pub fn from_std(s: std::net::UdpSocket) -> io::Result<UdpSocket> {
        let s = nonblocking(s, std::net::UdpSocket::set_nonblocking)?;
        Ok(UdpSocket {
            inner: Arc::new(Socket::new(s)),
        })
    }

    /// Takes ownership of an IPv4/IPv6 UDP socket (for the C ABI), after
    /// checking it is one (`check_socket`); on error `fd` stays the caller's,
    /// open.
    ///
    /// # Safety
    /// `fd` is owned by the caller and not used by it after a success.
    pub(crate) unsafe fn from_fd_checked(fd: RawFd) -> io::Result<UdpSocket> {
        super::check_socket(fd, super::SocketKind::Udp)?;
        // SAFETY: an open UDP socket the caller hands over (contract).
        let s = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
        Ok(UdpSocket {
            inner: Arc::new(Socket::new(s)),
        })
    }

    /// Another handle to the same socket. Infallible; `io::Result` for std
    /// compatibility.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(self.clone())
    }

    /// Sets the default peer for `send` / `recv` and filters received datagrams.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        or_raise_io(each_addr(&addr, |a| self.inner.get().connect(a)))
    }

    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        or_raise_io(self.send_to_deadline(buf, addr, None))
    }

    /// [`send_to`](Self::send_to) before `deadline` (the name lookup
    /// included), never unwinding (see [the module's rule](crate::net)).
    pub fn send_to_deadline<A: ToSocketAddrs>(
        &self,
        buf: &[u8],
        addr: A,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        let to = resolve(&addr)?[0];
        self.send_to_addr_deadline(buf, to, deadline)
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

    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        or_raise_io(self.peek_from_deadline(buf, None))
    }

    /// [`peek_from`](Self::peek_from) before `deadline`, never unwinding (see
    /// [the module's rule](crate::net)).
    pub fn peek_from_deadline(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<(usize, SocketAddr)> {
        self.inner
            .recv_deadline(deadline, buf.len(), |s| s.peek_from(buf))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        or_raise_io(self.send_deadline(buf, None))
    }

    /// [`send`](Self::send) before `deadline`, never unwinding (see [the
    /// module's rule](crate::net)).
    pub fn send_deadline(&self, buf: &[u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .io_deadline(Direction::Write, deadline, |s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        or_raise_io(self.recv_deadline(buf, None))
    }

    /// [`recv`](Self::recv) before `deadline`, never unwinding (see [the
    /// module's rule](crate::net)).
    pub fn recv_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .recv_deadline(deadline, buf.len(), |s| s.recv(buf))
    }

    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        or_raise_io(self.peek_deadline(buf, None))
    }

    /// [`peek`](Self::peek) before `deadline`, never unwinding (see [the
    /// module's rule](crate::net)).
    pub fn peek_deadline(&self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        self.inner
            .recv_deadline(deadline, buf.len(), |s| s.peek(buf))
    }

    /// `recv_from_deadline` that also tells truncation (for the C ABI):
    /// returns the bytes stored in `buf`, the datagram's full length (larger
    /// when it was truncated to fit `buf`: `MSG_TRUNC`), and the sender.
    pub(crate) fn recv_from_full_deadline(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<(usize, usize, SocketAddr)> {
        self.inner.recv_deadline(deadline, buf.len(), |s| {
            // SAFETY: all-zero bytes are a valid sockaddr_storage.
            let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `buf` is writable for its length, `from` for `len` bytes;
            // recvfrom writes at most that much. MSG_TRUNC makes it return the
            // datagram's real length.
            let n = unsafe {
                libc::recvfrom(
                    s.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                    (&raw mut from).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let full = n as usize;
            // SAFETY: the kernel wrote `len` bytes of address into `from`.
            let peer = unsafe { super::addr::from_sockaddr((&raw const from).cast(), len)? };
            Ok((full.min(buf.len()), full, peer))
        })
    }

    /// `send_to_deadline` to an address already resolved.
    pub(crate) fn send_to_addr_deadline(
        &self,
        buf: &[u8],
        to: SocketAddr,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        self.inner
            .io_deadline(Direction::Write, deadline, |s| s.send_to(buf, to))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    socket_timeouts!();

    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.get().set_broadcast(on)
    }

    pub fn broadcast(&self) -> io::Result<bool> {
        self.inner.get().broadcast()
    }

    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_ttl(ttl)
    }

    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get().ttl()
    }

    pub fn join_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.inner.get().join_multicast_v4(group, interface)
    }

    pub fn join_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.inner.get().join_multicast_v6(group, interface)
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }

    /// Closes the socket for every handle sharing it (as the C ABI's close, see
    /// [`crate::net`]): every send or receive blocked on it returns an error
    /// carrying [`WaitError::Closed`](crate::WaitError::Closed) at once, and
    /// every later call fails so. The fd is released when the last handle
    /// drops. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl_socket_debug!(UdpSocket { "addr": local_addr });
impl_socket_fd!(UdpSocket);
