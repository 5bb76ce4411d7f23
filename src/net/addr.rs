//! Address arguments: like `std::net::ToSocketAddrs`, but a host name is resolved
//! on the blocking pool, so a slow DNS lookup parks the task, not its worker.
//!
//! The trait is sealed and implemented for the same types as std's (`SocketAddr`
//! and its parts, `(host, port)` tuples, `"host:port"` strings, slices). Literal
//! addresses never touch the pool; only names that need `getaddrinfo` do. The
//! lookup honours the caller's deadline scope and cancellation: the caller stops
//! waiting and the lookup finishes, detached, on its pool thread.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::io::WaitError;

/// What an address argument turns into: addresses, or a name to look up.
#[doc(hidden)]
pub enum Lookup {
    Ready(Vec<SocketAddr>),
    Host(String, u16),
    HostPort(String),
}

mod sealed {
    pub trait Sealed {}
}

/// Types usable as socket addresses by `ivy::net`: the same as
/// `std::net::ToSocketAddrs`. Host names are resolved on the blocking pool.
pub trait ToSocketAddrs: sealed::Sealed {
    #[doc(hidden)]
    fn to_lookup(&self) -> Lookup;
}

macro_rules! ready_impl {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl ToSocketAddrs for $t {
            fn to_lookup(&self) -> Lookup {
                Lookup::Ready(std::net::ToSocketAddrs::to_socket_addrs(self)
                    .map(Iterator::collect)
                    .unwrap_or_default())
            }
        }
    )*};
}

ready_impl!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl sealed::Sealed for [SocketAddr] {}
impl ToSocketAddrs for [SocketAddr] {
    fn to_lookup(&self) -> Lookup {
        Lookup::Ready(self.to_vec())
    }
}

impl sealed::Sealed for str {}
impl ToSocketAddrs for str {
    fn to_lookup(&self) -> Lookup {
        match self.parse::<SocketAddr>() {
            Ok(a) => Lookup::Ready(vec![a]),
            Err(_) => Lookup::HostPort(self.to_string()),
        }
    }
}

impl sealed::Sealed for String {}
impl ToSocketAddrs for String {
    fn to_lookup(&self) -> Lookup {
        self.as_str().to_lookup()
    }
}

impl sealed::Sealed for (&str, u16) {}
impl ToSocketAddrs for (&str, u16) {
    fn to_lookup(&self) -> Lookup {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Lookup::Ready(vec![SocketAddr::new(ip, self.1)]),
            Err(_) => Lookup::Host(self.0.to_string(), self.1),
        }
    }
}

impl sealed::Sealed for (String, u16) {}
impl ToSocketAddrs for (String, u16) {
    fn to_lookup(&self) -> Lookup {
        (self.0.as_str(), self.1).to_lookup()
    }
}

impl<T: ToSocketAddrs + ?Sized> sealed::Sealed for &T {}
impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {
    fn to_lookup(&self) -> Lookup {
        (**self).to_lookup()
    }
}

/// Resolves `addr`, looking names up on the blocking pool.
pub(crate) fn resolve<A: ToSocketAddrs + ?Sized>(addr: &A) -> Result<Vec<SocketAddr>, WaitError> {
    let addrs = match addr.to_lookup() {
        Lookup::Ready(v) => v,
        Lookup::Host(host, port) => crate::blocking::run_blocking(move || {
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .map(Iterator::collect::<Vec<_>>)
        })??,
        Lookup::HostPort(s) => crate::blocking::run_blocking(move || {
            std::net::ToSocketAddrs::to_socket_addrs(s.as_str()).map(Iterator::collect::<Vec<_>>)
        })??,
    };
    if addrs.is_empty() {
        return Err(WaitError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )));
    }
    Ok(addrs)
}

/// Tries `f` on each address in turn, like std: the first success wins,
/// otherwise the last error is returned.
pub(crate) fn each_addr<A: ToSocketAddrs + ?Sized, T>(
    addr: &A,
    f: impl FnMut(SocketAddr) -> Result<T, WaitError>,
) -> Result<T, WaitError> {
    try_each(resolve(addr)?, f)
}

/// `each_addr` over addresses already resolved (the C ABI resolves its own
/// strings): the first success wins; an I/O error moves on to the next address,
/// an interruption stops at once.
pub(crate) fn try_each<T>(
    addrs: Vec<SocketAddr>,
    mut f: impl FnMut(SocketAddr) -> Result<T, WaitError>,
) -> Result<T, WaitError> {
    let mut last = None;
    for a in addrs {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(WaitError::Io(e)) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(WaitError::Io(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    })))
}
