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

use crate::error::WaitError;

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
pub(crate) fn resolve<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<Vec<SocketAddr>> {
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
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        ));
    }
    Ok(addrs)
}

/// Tries `f` on each address in turn, like std: the first success wins,
/// otherwise the last error is returned.
pub(crate) fn each_addr<A: ToSocketAddrs + ?Sized, T>(
    addr: &A,
    f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    try_each(resolve(addr)?, f)
}

/// `each_addr` over addresses already resolved (the C ABI resolves its own
/// strings): the first success wins; an OS error moves on to the next address,
/// a `WaitError` (interruption, deadline, close) stops at once.
pub(crate) fn try_each<T>(
    addrs: Vec<SocketAddr>,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addrs {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) if WaitError::of(&e).is_none() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// Resolves a C-style address string for the C ABI: `"1.2.3.4:80"`,
/// `"[::1]:80"`, or `"host:port"` (the name looked up on the blocking pool).
/// Errors: `InvalidInput` for a string that is not `host:port` or whose port is
/// not a number in 0..=65535 (`":-1"`, `"x:70000"`), `NotFound` for a name that
/// does not resolve (or resolves to nothing); interruptions while looking up.
pub(crate) fn resolve_host_port(s: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what);
    let (host, port) = s.rsplit_once(':').ok_or_else(|| invalid("not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("port is not a number in 0..=65535"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = host.to_string();
    let found = crate::blocking::run_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map(Iterator::collect::<Vec<_>>)
    })?;
    match found {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "name does not resolve",
        )),
    }
}

/// The longest text `SocketAddr`'s `Display` makes, with a NUL:
/// `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535`.
pub(crate) const ADDR_STR_MAX: usize = 65;
/// The same for an IPv4 address: `255.255.255.255:65535`.
pub(crate) const ADDR_STR_MAX_V4: usize = 22;

/// `addr` as a C `sockaddr_in` / `sockaddr_in6` in a `sockaddr_storage`, with
/// its length.
pub(crate) fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage` (plain integers).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for every
            // sockaddr type; we write one `sockaddr_in` at its start.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for a `sockaddr_in6`.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Reads a C socket address (`AF_INET` or `AF_INET6`). Errors: `InvalidInput`
/// for a NULL pointer, another family, or a length too short for the family.
///
/// # Safety
/// `addr` is NULL or readable for `len` bytes.
pub(crate) unsafe fn from_sockaddr(
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> io::Result<SocketAddr> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "not an IPv4 or IPv6 sockaddr");
    let len = len as usize;
    if addr.is_null() || len < std::mem::size_of::<libc::sa_family_t>() {
        return Err(invalid());
    }
    // SAFETY: `addr` is readable for at least the family field (checked); C
    // gives no alignment promise, hence the unaligned reads.
    let family = unsafe { std::ptr::addr_of!((*addr).sa_family).read_unaligned() };
    match family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: readable for a whole `sockaddr_in` (length checked).
            let sin = unsafe { addr.cast::<libc::sockaddr_in>().read_unaligned() };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(std::net::SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: readable for a whole `sockaddr_in6` (length checked).
            let sin6 = unsafe { addr.cast::<libc::sockaddr_in6>().read_unaligned() };
            Ok(SocketAddr::V6(std::net::SocketAddrV6::new(
                std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for s in ["127.0.0.1:80", "[::1]:65535", "[fe80::1%7]:1", "0.0.0.0:0"] {
            let a: SocketAddr = s.parse().unwrap();
            let (storage, len) = to_sockaddr(&a);
            // SAFETY: `storage` holds `len` initialised bytes.
            let b = unsafe { from_sockaddr((&raw const storage).cast(), len) }.unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn longest_texts() {
        let a: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
            .parse()
            .unwrap();
        assert!(a.to_string().len() < ADDR_STR_MAX);
        let a: SocketAddr = "255.255.255.255:65535".parse().unwrap();
        assert_eq!(a.to_string().len() + 1, ADDR_STR_MAX_V4);
    }

    #[test]
    fn host_port_errors() {
        let kind = |s: &str| match resolve_host_port(s) {
            Err(e) if WaitError::of(&e).is_none() => e.kind(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(kind("127.0.0.1:70000"), io::ErrorKind::InvalidInput);
        assert_eq!(kind(":-1"), io::ErrorKind::InvalidInput);
        assert_eq!(kind("localhost:-1"), io::ErrorKind::InvalidInput);
        assert_eq!(kind("nocolon"), io::ErrorKind::InvalidInput);
        assert_eq!(kind(":80"), io::ErrorKind::InvalidInput);
        assert_eq!(resolve_host_port("[::1]:5").unwrap()[0].port(), 5);
    }
}
