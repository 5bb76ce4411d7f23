//! UDP: `UdpSocket`, std's API on ivy's readiness waits.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::addr::{each_addr, resolve, ToSocketAddrs};
use super::{nonblocking, Socket};
use crate::io::{or_raise_io, Direction, WaitError};

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
            Ok(UdpSocket::from_std(std::net::UdpSocket::bind(a)?)?)
        }))
    }

    /// Wraps a std socket (switching it to non-blocking mode).
    pub fn from_std(s: std::net::UdpSocket) -> io::Result<UdpSocket> {
        let s = nonblocking(s, std::net::UdpSocket::set_nonblocking)?;
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
        or_raise_io(each_addr(&addr, |a| Ok(self.inner.get().connect(a)?)))
    }

    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let to = or_raise_io(resolve(&addr))?[0];
        self.inner.io(Direction::Write, |s| s.send_to(buf, to))
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.io(Direction::Read, |s| s.recv_from(buf))
    }

    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.io(Direction::Read, |s| s.peek_from(buf))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.io(Direction::Write, |s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.io(Direction::Read, |s| s.recv(buf))
    }

    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.io(Direction::Read, |s| s.peek(buf))
    }

    /// The internal receive: errors distinguish interruptions and the deadline.
    #[allow(dead_code)] // for the C ABI
    pub(crate) fn recv_from_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<(usize, SocketAddr), WaitError> {
        self.inner
            .io_until(Direction::Read, deadline, |s| s.recv_from(buf))
    }

    /// The internal send: errors distinguish interruptions and the deadline.
    #[allow(dead_code)] // for the C ABI
    pub(crate) fn send_to_until(
        &self,
        buf: &[u8],
        to: SocketAddr,
        deadline: Option<Instant>,
    ) -> Result<usize, WaitError> {
        self.inner
            .io_until(Direction::Write, deadline, |s| s.send_to(buf, to))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
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

    /// Closes the socket for every handle sharing it (the C ABI's close, see
    /// `crate::net`): every send or receive blocked on it returns
    /// `WaitError::Closed` at once, and every later call fails so. The fd is
    /// released when the last handle drops. Idempotent.
    pub(crate) fn close(&self) {
        self.inner.close();
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.inner.raw_fd())
            .finish()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.get().as_fd()
    }
}
