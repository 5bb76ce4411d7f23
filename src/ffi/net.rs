//! Sockets, foreign file descriptors and the blocking pool in the C ABI, over
//! `ivy::net`'s and `ivy::io`'s `Result` layer (`accept_deadline`,
//! `read_deadline`, `wait_fd_ready`, ...): a blocking socket call parks the calling
//! task (or blocks a plain thread), takes a deadline, and reports cancellation
//! as `IVY_ECANCELED` without unwinding through C.
//!
//! Addresses are strings: `"127.0.0.1:8080"`, `"[::1]:0"`, or `"host:port"`
//! (names are resolved on the blocking pool, so resolution parks the task too;
//! a port outside 0..=65535 is `IVY_EINVAL`, not a failed lookup), or C
//! `struct sockaddr`s (the `*_sockaddr` variants, IPv4 and IPv6). OS errors
//! come back as `-errno` (e.g. `-ECONNREFUSED`), and `ivy_strerror` has a
//! static text for every one the socket calls can return.
//!
//! Design decisions:
//! * **Every deadline, one rule.** A passed deadline is a non-blocking try for
//!   every call, in a task as on a plain thread: the operation is attempted
//!   once even if ivy's readiness bits say it would block (an event may not
//!   have been dispatched yet). The rule lives in `Registration::do_io`/`wait`,
//!   not here. `connect` with a passed deadline starts the connect and looks
//!   once; if the handshake has not completed, `IVY_ETIMEDOUT`.
//! * **Zero lengths are not errors** for writes and datagrams, as with
//!   write(2): `ivy_tcp_write` stores 0, `ivy_udp_send_to` sends an empty
//!   datagram. A read of 0 bytes stays `IVY_EINVAL` (its `n` = 0 means EOF).
//! * **`ivy_udp_recv_from` never consumes a datagram it refuses.** It checks
//!   the address buffer before receiving, against the longest address of the
//!   socket's family (`IVY_ADDRSTRLEN`, or `sizeof(struct sockaddr_in6)`),
//!   rather than peeking (`MSG_PEEK`), which would race with other receivers
//!   of the same socket. Truncation is reported through `full` (the datagram's
//!   length, `MSG_TRUNC`), so `n` stays "bytes in your buffer".
//! * **`ivy_tcp_read_exact` at EOF is `IVY_ECLOSED`** (the stream ended), with
//!   the count read so far in `*n`, so no partial data is lost silently.
//! * **Adopting an fd** (`*_from_fd`) validates it first (`SO_TYPE`,
//!   `SO_DOMAIN`, `SO_ACCEPTCONN`, a peer for a stream) and takes ownership
//!   only on success: on any error the caller still owns an untouched fd.
//!   Lending it back (`ivy_tcp_stream_fd` & co.) keeps ivy the owner.
//!
//! Sockets are handles. Closing one (`ivy_tcp_close`, like libdill's `hclose`)
//! frees the handle and closes the socket for everyone at once: every call
//! blocked on it in another task or thread returns `IVY_ECLOSED` promptly, the
//! peer sees EOF, a listener stops listening. The mechanism is the Rust
//! layer's (`Socket::close` in `crate::net`): a call in flight holds an `Arc`
//! (the handle table hands them out), so a close never frees memory under a
//! waiting call, and the fd number is released when the last `Arc` drops (the
//! woken calls drop theirs at once) — never while a call could still use it.
//! Reads and writes on one stream may run concurrently from two tasks (one
//! reading, one writing).

use std::ffi::CStr;
use std::net::SocketAddr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Arc;
use std::time::Instant;

use super::error::*;
use super::handle::{HandleTable, Kind};
use super::stream::{
    accept_into, listener_close, socket_fd, socket_from_fd, socket_handle, stream_close,
    stream_read, stream_read_exact, stream_shutdown, stream_write, stream_write_all, SocketHandle,
};
use super::task::{ivy_task_fn_t, CPtr};
use super::time::to_instant;
use super::{guard, out_ptr, store_out, write_c_str, write_out};
use crate::blocking::BlockingHandle;
use crate::error::WaitError;
use crate::net::addr::{
    from_sockaddr, resolve_host_port, to_sockaddr, try_each, ADDR_STR_MAX, ADDR_STR_MAX_V4,
};
use crate::net::{TcpListener, TcpStream, UdpSocket};

/// The code of an error of the socket `Result` layer: the [`WaitError`] it
/// carries (an interruption, a deadline, a close), else its errno.
pub(super) fn net_error(e: std::io::Error) -> c_int {
    match WaitError::of(&e) {
        Some(WaitError::Cancelled) => IVY_ECANCELED,
        Some(WaitError::Elapsed | WaitError::TimedOut) => IVY_ETIMEDOUT,
        Some(WaitError::Closed) => IVY_ECLOSED,
        // `read_exact` met the peer's EOF first: the stream is closed.
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => IVY_ECLOSED,
        None => io_error(&e),
    }
}

/// Reads a C address string and resolves it (names on the blocking pool):
/// `IVY_EINVAL` for `NULL`, non-UTF-8, not `host:port`, or a port outside
/// 0..=65535; `IVY_ENOENT` for a name that does not resolve.
///
/// # Safety
/// `addr` is `NULL` or a NUL-terminated string.
unsafe fn resolve(addr: *const c_char) -> Result<Vec<SocketAddr>, c_int> {
    if addr.is_null() {
        return Err(IVY_EINVAL);
    }
    // SAFETY: the caller's contract.
    let s = unsafe { CStr::from_ptr(addr) }
        .to_str()
        .map_err(|_| IVY_EINVAL)?;
    resolve_host_port(s).map_err(net_error)
}

/// Reads a C `sockaddr` (`AF_INET` / `AF_INET6`); `IVY_EINVAL` otherwise.
///
/// # Safety
/// `addr` is `NULL` or readable for `len` bytes.
unsafe fn read_sockaddr(
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> Result<SocketAddr, c_int> {
    // SAFETY: forwarded caller contract.
    unsafe { from_sockaddr(addr, len) }.map_err(|_| IVY_EINVAL)
}

/// Stores `a` in the caller's `sockaddr` buffer: `*len` is its capacity on
/// entry and the address's length on return; `IVY_ERANGE` (with the needed
/// length in `*len`, buffer untouched) if it does not fit.
///
/// # Safety
/// `len` is non-null and valid; `out` is writable for `*len` bytes.
unsafe fn write_sockaddr(
    a: &SocketAddr,
    out: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> Result<(), c_int> {
    let (storage, need) = to_sockaddr(a);
    // SAFETY: `len` is valid (caller's contract).
    let cap = unsafe { len.read() };
    // SAFETY: as above.
    unsafe { len.write(need) };
    if cap < need {
        return Err(IVY_ERANGE);
    }
    // SAFETY: `out` has room for `cap >= need` bytes; `storage` holds `need`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&raw const storage).cast::<u8>(),
            out.cast::<u8>(),
            need as usize,
        )
    };
    Ok(())
}

/// An address as text into a C buffer (`IVY_ERANGE` if it does not fit).
///
/// # Safety
/// `buf` is writable for `cap` bytes.
unsafe fn write_addr_str(a: &SocketAddr, buf: *mut c_char, cap: usize) -> Result<(), c_int> {
    // SAFETY: forwarded caller contract.
    unsafe { write_c_str(&a.to_string(), buf, cap) }
}

/// The address `which` (`local_addr`, `peer_addr`) of the socket behind
/// handle `id`: `IVY_EBADF` for a dead handle, OS errors as `-errno`.
fn addr_of<T>(
    table: &HandleTable<T>,
    id: u64,
    which: impl FnOnce(&T) -> std::io::Result<SocketAddr>,
) -> Result<SocketAddr, c_int> {
    let sock = table.get(id).ok_or(IVY_EBADF)?;
    which(&sock).map_err(|e| io_error(&e))
}

/// The `*_addr` calls: checks `buf` (`NULL`: `IVY_EINVAL`) before `get`
/// looks the address up, then writes it as text.
///
/// # Safety
/// `buf` is `NULL` or writable for `cap` bytes.
unsafe fn put_addr_str(
    buf: *mut c_char,
    cap: usize,
    get: impl FnOnce() -> Result<SocketAddr, c_int>,
) -> Result<(), c_int> {
    let buf = out_ptr(buf)?;
    let a = get()?;
    // SAFETY: writable for `cap` bytes (caller's contract).
    unsafe { write_addr_str(&a, buf, cap) }
}

/// The `*_sockaddr` getters: checks `addr` and `addr_len` (`NULL`:
/// `IVY_EINVAL`) before `get` looks the address up, then writes it as a C
/// `sockaddr` (`write_sockaddr`).
///
/// # Safety
/// `addr_len` is `NULL` or valid; `addr` is `NULL` or writable for `*addr_len`
/// bytes.
unsafe fn put_sockaddr(
    addr: *mut libc::sockaddr,
    addr_len: *mut libc::socklen_t,
    get: impl FnOnce() -> Result<SocketAddr, c_int>,
) -> Result<(), c_int> {
    let addr = out_ptr(addr)?;
    let addr_len = out_ptr(addr_len)?;
    let a = get()?;
    // SAFETY: forwarded caller contract (both checked non-null).
    unsafe { write_sockaddr(&a, addr, addr_len) }
}

/// A buffer the caller passes with its length: `&[]` for `len` 0 (`buf` may
/// then be `NULL`), `IVY_EINVAL` for `NULL` with a length.
///
/// # Safety
/// `buf` is readable for `len` bytes when `len > 0`.
pub(super) unsafe fn in_buf<'a>(buf: *const c_void, len: usize) -> Result<&'a [u8], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(IVY_EINVAL);
    }
    // SAFETY: the caller's contract: `len` readable bytes at `buf`.
    Ok(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) })
}

/// `in_buf`'s twin for a buffer the call fills: `&mut []` for `len` 0 (`buf`
/// may then be `NULL`), `IVY_EINVAL` for `NULL` with a length.
///
/// # Safety
/// `buf` is writable for `len` bytes when `len > 0`, and not aliased by
/// anything ivy holds.
pub(super) unsafe fn out_buf<'a>(buf: *mut c_void, len: usize) -> Result<&'a mut [u8], c_int> {
    if len == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(IVY_EINVAL);
    }
    // SAFETY: the caller's contract: `len` writable, unaliased bytes at `buf`.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) })
}

fn port_of(a: std::io::Result<SocketAddr>) -> Result<u16, c_int> {
    a.map(|a| a.port()).map_err(|e| io_error(&e))
}

// ---------------------------------------------------------------------------
// TCP

/// A handle to a listening TCP socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_tcp_listener_t {
    pub id: u64,
}

/// A handle to a connected TCP stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_tcp_stream_t {
    pub id: u64,
}

/// Room for any socket address ivy writes as text (`ivy_udp_recv_from`,
/// `ivy_tcp_stream_peer_addr`, ...), with its NUL: the longest is
/// `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535`.
pub const IVY_ADDRSTRLEN: usize = 65;
const _: () = assert!(IVY_ADDRSTRLEN == ADDR_STR_MAX);

static LISTENERS: HandleTable<TcpListener> = HandleTable::new(Kind::TcpListener);
static STREAMS: HandleTable<TcpStream> = HandleTable::new(Kind::TcpStream);

socket_handle! {
    ivy_tcp_listener_t => TcpListener, LISTENERS;
    ivy_tcp_stream_t => TcpStream, STREAMS;
}

fn listen_on(addrs: Vec<SocketAddr>) -> Result<ivy_tcp_listener_t, c_int> {
    // ivy's bind (not std's): its listen backlog is 4096. A resolved address
    // needs no lookup, so nothing in it can be interrupted (unwind).
    ivy_tcp_listener_t::insert(try_each(addrs, TcpListener::bind).map_err(net_error)?)
}

/// Binds a TCP listener to `addr` (port 0: any free port, see
/// `ivy_tcp_listener_port`) and listens. Errors: `IVY_EINVAL` (`addr` or `out`
/// `NULL`, not `host:port`, a port outside 0..=65535), `IVY_ENOENT` (the name
/// does not resolve), `-EADDRINUSE` and other OS errors, `IVY_ECANCELED` (while
/// resolving).
///
/// # Safety
/// `addr` is `NULL` or a NUL-terminated string; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listen(
    addr: *const c_char,
    out: *mut ivy_tcp_listener_t,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `out`).
        unsafe { store_out(out, || listen_on(resolve(addr)?)) }
    })
}

/// `ivy_tcp_listen` on a C socket address (`struct sockaddr_in` or
/// `sockaddr_in6`, `addr_len` bytes). Errors: as `ivy_tcp_listen`
/// (`IVY_EINVAL` also for another address family or a short `addr_len`).
///
/// # Safety
/// `addr` is `NULL` or readable for `addr_len` bytes; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listen_sockaddr(
    addr: *const libc::sockaddr,
    addr_len: libc::socklen_t,
    out: *mut ivy_tcp_listener_t,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `out`).
        unsafe { store_out(out, || listen_on(vec![read_sockaddr(addr, addr_len)?])) }
    })
}

/// Takes ownership of `fd`, a listening IPv4/IPv6 TCP socket made elsewhere
/// (inherited, from systemd, from a C library), and stores its handle in
/// `*out`. The fd is switched to non-blocking mode; from now on ivy owns it
/// (`ivy_tcp_listener_close` closes it; do not close it yourself). On error
/// the fd stays yours, open and untouched (except for `IVY_ENOMEM`, the handle
/// table full, after which it is closed). Errors: `IVY_EINVAL` (`out` `NULL`,
/// `fd` negative, not a socket, not TCP over IPv4/IPv6, not listening),
/// `IVY_EBADF` (`fd` is not open).
///
/// # Safety
/// `out` is `NULL` or writable; `fd` is the caller's to give away.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listener_from_fd(
    fd: c_int,
    out: *mut ivy_tcp_listener_t,
) -> c_int {
    // SAFETY: forwarded caller contract (`out`; `fd` handed over).
    guard(|| unsafe { socket_from_fd(fd, out, TcpListener::from_fd_checked) })
}

/// Stores the listener's fd in `*fd`, borrowed (e.g. for `setsockopt`): ivy
/// keeps owning it; do not close it, and do not use it after
/// `ivy_tcp_listener_close`. Errors: `IVY_EBADF`, `IVY_EINVAL` (`fd` `NULL`).
///
/// # Safety
/// `fd` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listener_fd(l: ivy_tcp_listener_t, fd: *mut c_int) -> c_int {
    // SAFETY: forwarded caller contract (`fd`).
    guard(|| unsafe { socket_fd(&LISTENERS, l.id, fd) })
}

/// Stores the local port of the listener in `*port`. Errors: `IVY_EBADF`,
/// `IVY_EINVAL`.
///
/// # Safety
/// `port` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listener_port(l: ivy_tcp_listener_t, port: *mut u16) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`port`).
        unsafe {
            store_out(port, || {
                port_of(LISTENERS.get(l.id).ok_or(IVY_EBADF)?.local_addr())
            })
        }
    })
}

/// Writes the listener's local address as text (`"127.0.0.1:8080"`,
/// `"[::1]:8080"`) with a NUL into `buf` (`cap` bytes; `IVY_ADDRSTRLEN` is
/// always enough). Errors: `IVY_EBADF`, `IVY_EINVAL` (`buf` `NULL`),
/// `IVY_ERANGE` (too small; `buf` untouched), OS errors.
///
/// # Safety
/// `buf` is `NULL` or writable for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listener_local_addr(
    l: ivy_tcp_listener_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`buf`, `cap`).
        unsafe {
            put_addr_str(buf, cap, || {
                addr_of(&LISTENERS, l.id, TcpListener::local_addr)
            })
        }
    })
}

/// Stores the listener's local address as a `struct sockaddr_in` or
/// `sockaddr_in6` in `addr`: `*addr_len` is the buffer's size on entry and the
/// address's length on return (`sizeof(struct sockaddr_storage)` is always
/// enough). Errors: `IVY_EBADF`, `IVY_EINVAL` (`addr` or `addr_len` `NULL`),
/// `IVY_ERANGE` (too small: `*addr_len` is set to the size needed, `addr` is
/// untouched), OS errors.
///
/// # Safety
/// `addr_len` is `NULL` or valid; `addr` is `NULL` or writable for `*addr_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listener_local_sockaddr(
    l: ivy_tcp_listener_t,
    addr: *mut libc::sockaddr,
    addr_len: *mut libc::socklen_t,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `addr_len`).
        unsafe {
            put_sockaddr(addr, addr_len, || {
                addr_of(&LISTENERS, l.id, TcpListener::local_addr)
            })
        }
    })
}

/// Waits until `deadline` for a connection and stores its stream in `*out` (the
/// caller owns it: `ivy_tcp_close`); the peer's address is then
/// `ivy_tcp_stream_peer_addr` / `_peer_sockaddr`. A passed deadline takes a
/// connection that is already queued, else `IVY_ETIMEDOUT`. Errors:
/// `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_ECLOSED` (the listener was closed
/// before or during the call, by another task or thread), `IVY_EBADF`,
/// `IVY_EINVAL`, OS errors (`-EMFILE`: the connection stays queued for the
/// next accept).
///
/// # Safety
/// `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_accept(
    l: ivy_tcp_listener_t,
    out: *mut ivy_tcp_stream_t,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`out`).
    guard(|| unsafe { accept_into(&LISTENERS, l.id, out, deadline) })
}

/// Closes the listener and frees the handle. Every `ivy_tcp_accept` blocked on
/// it (in any task or thread) returns `IVY_ECLOSED` at once; the port stops
/// listening at once (a new connect is refused, connections queued but not
/// accepted are reset). The fd is released as soon as no call uses it.
/// Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_tcp_listener_close(l: ivy_tcp_listener_t) -> c_int {
    guard(|| listener_close(&LISTENERS, l.id))
}

fn connect_to(addrs: Vec<SocketAddr>, deadline: i64) -> Result<ivy_tcp_stream_t, c_int> {
    let d: Option<Instant> = to_instant(deadline)?;
    ivy_tcp_stream_t::insert(try_each(addrs, |a| TcpStream::connect_one(a, d)).map_err(net_error)?)
}

/// Connects to `addr`, trying each resolved address in turn, until `deadline`,
/// and stores the stream in `*out`. A passed deadline starts the connect and
/// looks once whether it completed (on loopback it usually has); if not,
/// `IVY_ETIMEDOUT`. Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`,
/// `-ECONNREFUSED` and other OS errors, `IVY_ENOENT` (the name does not
/// resolve), `IVY_EINVAL` (`NULL`, not `host:port`, a port outside 0..=65535).
///
/// # Safety
/// `addr` is `NULL` or a NUL-terminated string; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_connect(
    addr: *const c_char,
    out: *mut ivy_tcp_stream_t,
    deadline: i64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `out`).
        unsafe { store_out(out, || connect_to(resolve(addr)?, deadline)) }
    })
}

/// `ivy_tcp_connect` to a C socket address (`struct sockaddr_in` or
/// `sockaddr_in6`, `addr_len` bytes). Errors: as `ivy_tcp_connect`
/// (`IVY_EINVAL` also for another family or a short `addr_len`).
///
/// # Safety
/// `addr` is `NULL` or readable for `addr_len` bytes; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_connect_sockaddr(
    addr: *const libc::sockaddr,
    addr_len: libc::socklen_t,
    out: *mut ivy_tcp_stream_t,
    deadline: i64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `out`).
        unsafe {
            store_out(out, || {
                connect_to(vec![read_sockaddr(addr, addr_len)?], deadline)
            })
        }
    })
}

/// Takes ownership of `fd`, a connected IPv4/IPv6 TCP socket made elsewhere,
/// and stores its handle in `*out`. The fd is switched to non-blocking mode;
/// from now on ivy owns it (`ivy_tcp_close` closes it; do not close it
/// yourself). On error the fd stays yours, open and untouched (except for
/// `IVY_ENOMEM`, the handle table full, after which it is closed). Errors:
/// `IVY_EINVAL` (`out` `NULL`, `fd` negative, not a socket, not TCP over
/// IPv4/IPv6, a listener, not connected), `IVY_EBADF` (`fd` is not open).
///
/// # Safety
/// `out` is `NULL` or writable; `fd` is the caller's to give away.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_stream_from_fd(fd: c_int, out: *mut ivy_tcp_stream_t) -> c_int {
    // SAFETY: forwarded caller contract (`out`; `fd` handed over).
    guard(|| unsafe { socket_from_fd(fd, out, TcpStream::from_fd_checked) })
}

/// Stores the stream's fd in `*fd`, borrowed (e.g. for `setsockopt`): ivy keeps
/// owning it; do not close it, read or write it behind ivy's back, or use it
/// after `ivy_tcp_close`. Errors: `IVY_EBADF`, `IVY_EINVAL` (`fd` `NULL`).
///
/// # Safety
/// `fd` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_stream_fd(s: ivy_tcp_stream_t, fd: *mut c_int) -> c_int {
    // SAFETY: forwarded caller contract (`fd`).
    guard(|| unsafe { socket_fd(&STREAMS, s.id, fd) })
}

/// Writes the address of the stream's peer (for an accepted stream: the
/// client's) as text with a NUL into `buf` (`cap` bytes; `IVY_ADDRSTRLEN` is
/// always enough). Errors: `IVY_EBADF`, `IVY_EINVAL` (`buf` `NULL`),
/// `IVY_ERANGE` (too small; `buf` untouched), OS errors (`-ENOTCONN`).
///
/// # Safety
/// `buf` is `NULL` or writable for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_stream_peer_addr(
    s: ivy_tcp_stream_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`buf`, `cap`).
        unsafe { put_addr_str(buf, cap, || addr_of(&STREAMS, s.id, TcpStream::peer_addr)) }
    })
}

/// Writes the stream's local address as text; see `ivy_tcp_stream_peer_addr`.
///
/// # Safety
/// `buf` is `NULL` or writable for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_stream_local_addr(
    s: ivy_tcp_stream_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`buf`, `cap`).
        unsafe { put_addr_str(buf, cap, || addr_of(&STREAMS, s.id, TcpStream::local_addr)) }
    })
}

/// Stores the peer's address as a `struct sockaddr_in` / `sockaddr_in6` in
/// `addr`; `*addr_len` is the buffer's size on entry, the address's length on
/// return. Errors: `IVY_EBADF`, `IVY_EINVAL` (`NULL`), `IVY_ERANGE` (too small:
/// `*addr_len` set to the size needed), OS errors (`-ENOTCONN`).
///
/// # Safety
/// `addr_len` is `NULL` or valid; `addr` is `NULL` or writable for `*addr_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_stream_peer_sockaddr(
    s: ivy_tcp_stream_t,
    addr: *mut libc::sockaddr,
    addr_len: *mut libc::socklen_t,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `addr_len`).
        unsafe {
            put_sockaddr(addr, addr_len, || {
                addr_of(&STREAMS, s.id, TcpStream::peer_addr)
            })
        }
    })
}

/// Stores the stream's local address as a `sockaddr`; see
/// `ivy_tcp_stream_peer_sockaddr`.
///
/// # Safety
/// `addr_len` is `NULL` or valid; `addr` is `NULL` or writable for `*addr_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_stream_local_sockaddr(
    s: ivy_tcp_stream_t,
    addr: *mut libc::sockaddr,
    addr_len: *mut libc::socklen_t,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `addr_len`).
        unsafe {
            put_sockaddr(addr, addr_len, || {
                addr_of(&STREAMS, s.id, TcpStream::local_addr)
            })
        }
    })
}

/// Reads up to `len` bytes into `buf`, waiting until `deadline` for data, and
/// stores the count in `*n` (0: the peer closed its side). A passed deadline
/// reads what is already there, else `IVY_ETIMEDOUT`. Errors:
/// `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_ECLOSED` (the stream was closed, by
/// another task or thread, before or during the call), `IVY_EBADF`,
/// `IVY_EINVAL` (`buf` or `n` `NULL`, `len` 0), OS errors (`-ECONNRESET`, ...).
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_read(
    s: ivy_tcp_stream_t,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`buf`, `n`).
    guard(|| unsafe { stream_read(&STREAMS, s.id, buf, len, n, deadline) })
}

/// Reads exactly `len` bytes into `buf` (several reads if needed) before
/// `deadline`. Stores the count read in `*n` if `n` is not `NULL`: `len` on
/// success, on an error the bytes read so far (they are in `buf`). `len` 0
/// succeeds at once. A passed deadline succeeds only if all `len` bytes are
/// already there. Errors: `IVY_ECLOSED` (the peer closed its side before `len`
/// bytes came, or the stream was closed by another task or thread),
/// `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_EBADF`, `IVY_EINVAL` (`buf` `NULL`
/// with `len` > 0), OS errors.
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_read_exact(
    s: ivy_tcp_stream_t,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`buf`, `n`).
    guard(|| unsafe { stream_read_exact(&STREAMS, s.id, buf, len, n, deadline) })
}

/// Writes up to `len` bytes from `buf`, waiting until `deadline` for room, and
/// stores the count written in `*n` (may be less than `len`). `len` 0 writes
/// nothing and succeeds with `*n` = 0, like write(2) (`buf` may then be
/// `NULL`). A passed deadline writes what fits now, else `IVY_ETIMEDOUT`.
/// Errors: as `ivy_tcp_read`; `-EPIPE` when the peer is gone.
///
/// # Safety
/// `buf` is readable for `len` bytes; `n` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_write(
    s: ivy_tcp_stream_t,
    buf: *const c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`buf`, `n`).
    guard(|| unsafe { stream_write(&STREAMS, s.id, buf, len, n, deadline) })
}

/// Writes all `len` bytes of `buf` (several writes if needed) before
/// `deadline`. On error, an unknown prefix may have been written. `len` 0
/// succeeds at once (`buf` may then be `NULL`). A passed deadline succeeds
/// only if everything fits now. Errors: as `ivy_tcp_write`.
///
/// # Safety
/// `buf` is readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_write_all(
    s: ivy_tcp_stream_t,
    buf: *const c_void,
    len: usize,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`buf`).
    guard(|| unsafe { stream_write_all(&STREAMS, s.id, buf, len, deadline) })
}

/// `ivy_tcp_shutdown`: stop reading.
pub const IVY_SHUT_RD: c_int = 0;
/// `ivy_tcp_shutdown`: stop writing (the peer reads EOF).
pub const IVY_SHUT_WR: c_int = 1;
/// `ivy_tcp_shutdown`: both.
pub const IVY_SHUT_RDWR: c_int = 2;

/// Shuts down the reading side, the writing side (the peer reads EOF), or both.
/// Errors: `IVY_EINVAL` (bad `how`), `IVY_EBADF`, OS errors.
#[no_mangle]
pub extern "C" fn ivy_tcp_shutdown(s: ivy_tcp_stream_t, how: c_int) -> c_int {
    guard(|| stream_shutdown(&STREAMS, s.id, how))
}

/// Closes the stream and frees the handle. Every read or write blocked on it (in
/// any task or thread) returns `IVY_ECLOSED` at once, and the socket is shut
/// down in both directions, so the peer reads EOF at once. The fd is released
/// as soon as no call uses it. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_tcp_close(s: ivy_tcp_stream_t) -> c_int {
    guard(|| stream_close(&STREAMS, s.id))
}

// ---------------------------------------------------------------------------
// UDP

/// A handle to a UDP socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_udp_socket_t {
    pub id: u64,
}

static UDP: HandleTable<UdpSocket> = HandleTable::new(Kind::UdpSocket);

socket_handle! {
    ivy_udp_socket_t => UdpSocket, UDP;
}

fn bind_udp(addrs: Vec<SocketAddr>) -> Result<ivy_udp_socket_t, c_int> {
    // A resolved address: no lookup, nothing that could unwind.
    let sock = try_each(addrs, UdpSocket::bind).map_err(net_error)?;
    ivy_udp_socket_t::insert(sock)
}

/// Binds a UDP socket to `addr` (port 0: any). Errors as `ivy_tcp_listen`.
///
/// # Safety
/// `addr` is `NULL` or a NUL-terminated string; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_bind(addr: *const c_char, out: *mut ivy_udp_socket_t) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `out`).
        unsafe { store_out(out, || bind_udp(resolve(addr)?)) }
    })
}

/// `ivy_udp_bind` on a C socket address (`struct sockaddr_in` or
/// `sockaddr_in6`, `addr_len` bytes). Errors as `ivy_tcp_listen_sockaddr`.
///
/// # Safety
/// `addr` is `NULL` or readable for `addr_len` bytes; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_bind_sockaddr(
    addr: *const libc::sockaddr,
    addr_len: libc::socklen_t,
    out: *mut ivy_udp_socket_t,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `out`).
        unsafe { store_out(out, || bind_udp(vec![read_sockaddr(addr, addr_len)?])) }
    })
}

/// Takes ownership of `fd`, an IPv4/IPv6 UDP socket made elsewhere (bound or
/// not), and stores its handle in `*out`. The fd is switched to non-blocking
/// mode; from now on ivy owns it (`ivy_udp_close` closes it). On error the fd
/// stays yours, open and untouched (except for `IVY_ENOMEM`, the handle table
/// full, after which it is closed). Errors: `IVY_EINVAL` (`out` `NULL`, `fd`
/// negative, not a socket, not UDP over IPv4/IPv6), `IVY_EBADF` (not open).
///
/// # Safety
/// `out` is `NULL` or writable; `fd` is the caller's to give away.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_socket_from_fd(fd: c_int, out: *mut ivy_udp_socket_t) -> c_int {
    // SAFETY: forwarded caller contract (`out`; `fd` handed over).
    guard(|| unsafe { socket_from_fd(fd, out, UdpSocket::from_fd_checked) })
}

/// Stores the socket's fd in `*fd`, borrowed (e.g. for `setsockopt`): ivy keeps
/// owning it; do not close it or use it after `ivy_udp_close`. Errors:
/// `IVY_EBADF`, `IVY_EINVAL` (`fd` `NULL`).
///
/// # Safety
/// `fd` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_socket_fd(s: ivy_udp_socket_t, fd: *mut c_int) -> c_int {
    // SAFETY: forwarded caller contract (`fd`).
    guard(|| unsafe { socket_fd(&UDP, s.id, fd) })
}

/// Stores the local port in `*port`. Errors: `IVY_EBADF`, `IVY_EINVAL`.
///
/// # Safety
/// `port` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_port(s: ivy_udp_socket_t, port: *mut u16) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`port`).
        unsafe {
            store_out(port, || {
                port_of(UDP.get(s.id).ok_or(IVY_EBADF)?.local_addr())
            })
        }
    })
}

/// Writes the socket's local address as text with a NUL into `buf` (`cap`
/// bytes; `IVY_ADDRSTRLEN` is always enough). Errors: `IVY_EBADF`,
/// `IVY_EINVAL` (`buf` `NULL`), `IVY_ERANGE` (too small; `buf` untouched), OS
/// errors.
///
/// # Safety
/// `buf` is `NULL` or writable for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_socket_local_addr(
    s: ivy_udp_socket_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`buf`, `cap`).
        unsafe { put_addr_str(buf, cap, || addr_of(&UDP, s.id, UdpSocket::local_addr)) }
    })
}

/// Stores the socket's local address as a `struct sockaddr_in` /
/// `sockaddr_in6` in `addr`; `*addr_len` is the buffer's size on entry, the
/// address's length on return. Errors: `IVY_EBADF`, `IVY_EINVAL` (`NULL`),
/// `IVY_ERANGE` (too small: `*addr_len` set to the size needed), OS errors.
///
/// # Safety
/// `addr_len` is `NULL` or valid; `addr` is `NULL` or writable for `*addr_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_socket_local_sockaddr(
    s: ivy_udp_socket_t,
    addr: *mut libc::sockaddr,
    addr_len: *mut libc::socklen_t,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`addr`, `addr_len`).
        unsafe {
            put_sockaddr(addr, addr_len, || {
                addr_of(&UDP, s.id, UdpSocket::local_addr)
            })
        }
    })
}

fn send_udp(
    s: ivy_udp_socket_t,
    data: &[u8],
    to: SocketAddr,
    n: *mut usize,
    deadline: i64,
) -> Result<(), c_int> {
    let d = to_instant(deadline)?;
    let sock = UDP.get(s.id).ok_or(IVY_EBADF)?;
    let sent = sock.send_to_addr_deadline(data, to, d).map_err(net_error)?;
    if !n.is_null() {
        // SAFETY: non-null; writable by the caller's contract (of both senders).
        unsafe { write_out(n, sent) };
    }
    Ok(())
}

/// Sends one datagram of `len` bytes (0 allowed: an empty datagram; `buf` may
/// then be `NULL`) to `addr`, waiting until `deadline` for room, and stores the
/// count sent in `*n` (if `n` is not NULL). A passed deadline sends only if
/// there is room now. Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_ECLOSED`
/// (closed by another task or thread), `IVY_EBADF`, `IVY_EINVAL` (also: a bad
/// address string or port), `IVY_ENOENT` (the name does not resolve), OS
/// errors (`-EMSGSIZE`, ...).
///
/// # Safety
/// `buf` is readable for `len` bytes (or `len` is 0); `addr` is a NUL-terminated
/// string; `n` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_send_to(
    s: ivy_udp_socket_t,
    buf: *const c_void,
    len: usize,
    addr: *const c_char,
    n: *mut usize,
    deadline: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract: `len` readable bytes at `buf`.
        let data = unsafe { in_buf(buf, len)? };
        if UDP.get(s.id).is_none() {
            return Err(IVY_EBADF);
        }
        // SAFETY: forwarded caller contract.
        let to = unsafe { resolve(addr)? }[0];
        send_udp(s, data, to, n, deadline)
    })
}

/// `ivy_udp_send_to` a C socket address (`struct sockaddr_in` or
/// `sockaddr_in6`, `addr_len` bytes). Errors as `ivy_udp_send_to`.
///
/// # Safety
/// `buf` is readable for `len` bytes (or `len` is 0); `addr` is readable for
/// `addr_len` bytes; `n` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_send_to_sockaddr(
    s: ivy_udp_socket_t,
    buf: *const c_void,
    len: usize,
    addr: *const libc::sockaddr,
    addr_len: libc::socklen_t,
    n: *mut usize,
    deadline: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract: `len` readable bytes at `buf`.
        let data = unsafe { in_buf(buf, len)? };
        // SAFETY: forwarded caller contract.
        let to = unsafe { read_sockaddr(addr, addr_len)? };
        send_udp(s, data, to, n, deadline)
    })
}

/// The socket of `s` and the address room a receive on it needs, checked
/// before anything is received.
fn udp_for_recv(s: ivy_udp_socket_t) -> Result<(Arc<UdpSocket>, bool), c_int> {
    let sock = UDP.get(s.id).ok_or(IVY_EBADF)?;
    let v4 = sock.local_addr().map_err(|e| io_error(&e))?.is_ipv4();
    Ok((sock, v4))
}

/// Receives one datagram into `buf`, waiting until `deadline`. Stores in `*n`
/// the bytes stored in `buf`, and in `*full` (if not NULL) the datagram's full
/// length: larger than `*n` when the datagram did not fit and was truncated
/// (the rest is lost, as with recv(2)). If `from` is not NULL, the sender's
/// address is written there as text with a NUL; `from_cap` must then be at
/// least `IVY_ADDRSTRLEN` (22 is enough on an IPv4 socket), checked BEFORE
/// anything is received: a too-small buffer is `IVY_ERANGE` and the datagram
/// stays queued. A passed deadline takes a datagram that is already there.
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_ECLOSED` (closed by another
/// task or thread), `IVY_EBADF`, `IVY_EINVAL` (`buf` or `n` `NULL`, `len` 0),
/// `IVY_ERANGE`, OS errors.
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is writable; `full` is `NULL` or
/// writable; `from` is `NULL` or writable for `from_cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_recv_from(
    s: ivy_udp_socket_t,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
    full: *mut usize,
    from: *mut c_char,
    from_cap: usize,
    deadline: i64,
) -> c_int {
    guard(|| {
        let n = out_ptr(n)?;
        if buf.is_null() || len == 0 {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        let (sock, v4) = udp_for_recv(s)?;
        let need = if v4 { ADDR_STR_MAX_V4 } else { ADDR_STR_MAX };
        if !from.is_null() && from_cap < need {
            return Err(IVY_ERANGE);
        }
        // SAFETY: the caller's contract: `len` writable bytes at `buf`.
        let data = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        let (got, whole, peer) = sock.recv_from_full_deadline(data, d).map_err(net_error)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(n, got) };
        if !full.is_null() {
            // SAFETY: non-null; writable by the caller's contract.
            unsafe { write_out(full, whole) };
        }
        if !from.is_null() {
            // SAFETY: `from` is writable for `from_cap` bytes (caller's
            // contract), enough for any address of this family (checked).
            unsafe { write_addr_str(&peer, from, from_cap)? };
        }
        Ok(())
    })
}

/// `ivy_udp_recv_from` with the sender as a C socket address: if `from` is not
/// NULL, `*from_len` is its size on entry (checked BEFORE anything is
/// received: at least `sizeof(struct sockaddr_in)` on an IPv4 socket,
/// `sizeof(struct sockaddr_in6)` on an IPv6 one, else `IVY_ERANGE` with the
/// size needed in `*from_len` and the datagram left queued) and the address's
/// length on return. Errors as `ivy_udp_recv_from` (`IVY_EINVAL` also for
/// `from` without `from_len`).
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is writable; `full` is `NULL` or
/// writable; `from` is `NULL` or writable for `*from_len` bytes, `from_len`
/// valid when `from` is not `NULL`.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_recv_from_sockaddr(
    s: ivy_udp_socket_t,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
    full: *mut usize,
    from: *mut libc::sockaddr,
    from_len: *mut libc::socklen_t,
    deadline: i64,
) -> c_int {
    guard(|| {
        let n = out_ptr(n)?;
        if buf.is_null() || len == 0 || (!from.is_null() && from_len.is_null()) {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        let (sock, v4) = udp_for_recv(s)?;
        if !from.is_null() {
            let need = if v4 {
                std::mem::size_of::<libc::sockaddr_in>()
            } else {
                std::mem::size_of::<libc::sockaddr_in6>()
            } as libc::socklen_t;
            // SAFETY: `from_len` is valid (checked non-null; caller's contract).
            if unsafe { from_len.read() } < need {
                // SAFETY: as above.
                unsafe { from_len.write(need) };
                return Err(IVY_ERANGE);
            }
        }
        // SAFETY: the caller's contract: `len` writable bytes at `buf`.
        let data = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        let (got, whole, peer) = sock.recv_from_full_deadline(data, d).map_err(net_error)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(n, got) };
        if !full.is_null() {
            // SAFETY: non-null; writable by the caller's contract.
            unsafe { write_out(full, whole) };
        }
        if !from.is_null() {
            // SAFETY: `from` is writable for `*from_len` bytes (caller's
            // contract), enough for this family (checked).
            unsafe { write_sockaddr(&peer, from, from_len)? };
        }
        Ok(())
    })
}

/// Closes the socket and frees the handle. Every send or receive blocked on it
/// (in any task or thread) returns `IVY_ECLOSED` at once. The fd is released as
/// soon as no call uses it. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_udp_close(s: ivy_udp_socket_t) -> c_int {
    guard(|| UDP.remove(s.id).map(|s| s.close()).ok_or(IVY_EBADF))
}

// ---------------------------------------------------------------------------
// Foreign file descriptors

/// `ivy_fd_wait` event bit: readable (or at EOF, or in error).
pub const IVY_READABLE: c_int = 1;
/// `ivy_fd_wait` event bit: writable.
pub const IVY_WRITABLE: c_int = 2;

/// Waits until `fd` (any pollable descriptor ivy does not own: a pipe, a C
/// library's socket) is readable and/or writable, as asked in `events`
/// (`IVY_READABLE | IVY_WRITABLE`), or `deadline`; stores the ready subset in
/// `*revents`. Parks the task (its worker runs others); on a plain thread it
/// blocks in poll(2). The fd is never closed, and keeps no registration after
/// the call. An fd at EOF or in error reports readable (the next read says so).
///
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_EINVAL` (no event bit, unknown
/// bits, negative fd, `revents` NULL), `IVY_EBADF` (`fd` is not open).
///
/// # Safety
/// `revents` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_fd_wait(
    fd: c_int,
    events: c_int,
    revents: *mut c_int,
    deadline: i64,
) -> c_int {
    guard(|| {
        let revents = out_ptr(revents)?;
        let all = IVY_READABLE | IVY_WRITABLE;
        if fd < 0 || events & all == 0 || events & !all != 0 {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        let ready = crate::io::wait_fd_ready(
            fd,
            events & IVY_READABLE != 0,
            events & IVY_WRITABLE != 0,
            d,
        )
        .map_err(net_error)?;
        let bits = if ready.readable { IVY_READABLE } else { 0 }
            | if ready.writable { IVY_WRITABLE } else { 0 };
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(revents, bits) };
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Blocking pool

/// A handle to a job on the blocking pool, valid until joined or detached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_blocking_t {
    pub id: u64,
}

struct BlockingEntry {
    handle: std::sync::Mutex<Option<BlockingHandle<CPtr>>>,
}

static BLOCKING: HandleTable<BlockingEntry> = HandleTable::new(Kind::Blocking);

/// Runs `f(arg)` on the blocking pool (OS threads for code that really blocks:
/// file I/O, a C library's blocking call, heavy computation), so it never
/// stalls a worker (asyncio's `run_in_executor` / `to_thread`). Stores the job's
/// handle in `*out`; collect the result with `ivy_blocking_join`. Works from
/// tasks and plain threads. A started job cannot be interrupted.
///
/// Errors: `IVY_EINVAL` (`f` or `out` NULL).
///
/// # Safety
/// `out` is `NULL` or writable; `f` is a valid function, callable on another
/// thread with `arg`.
#[no_mangle]
pub unsafe extern "C" fn ivy_blocking_spawn(
    f: ivy_task_fn_t,
    arg: *mut c_void,
    out: *mut ivy_blocking_t,
) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let f = f.ok_or(IVY_EINVAL)?;
        let arg = CPtr(arg);
        let h = crate::blocking::spawn_blocking(move || {
            // Move the whole `CPtr` (Send) into the closure, not its raw field.
            let arg = arg;
            // SAFETY: the caller promised `f` may run with `arg` on a pool thread;
            // it is `extern "C"` and cannot unwind into Rust.
            CPtr(unsafe { f(arg.0) })
        });
        let entry = Arc::new(BlockingEntry {
            handle: std::sync::Mutex::new(Some(h)),
        });
        let id = BLOCKING.insert(entry).ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_blocking_t { id }) };
        Ok(())
    })
}

/// Waits (parking a task) until the job returns or `deadline`, then frees the
/// handle and stores the job's return value in `*result` (if not NULL).
/// Errors: `IVY_ETIMEDOUT` and `IVY_ECANCELED` (the job runs on; the handle stays
/// valid), `IVY_EBADF`, `IVY_EBUSY` (joined concurrently), `IVY_EINVAL`.
///
/// # Safety
/// `result` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_blocking_join(
    b: ivy_blocking_t,
    result: *mut *mut c_void,
    deadline: i64,
) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        let entry = BLOCKING.get(b.id).ok_or(IVY_EBADF)?;
        let h = entry
            .handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(IVY_EBUSY)?;
        match h.join_deadline(d) {
            Ok(outcome) => {
                BLOCKING.remove(b.id);
                let value = outcome.map_err(|_| IVY_EPANIC)?;
                if !result.is_null() {
                    // SAFETY: non-null; writable by the caller's contract.
                    unsafe { write_out(result, value.0) };
                }
                Ok(())
            }
            Err(wait) => {
                *entry.handle.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
                Err(wait_error(wait))
            }
        }
    })
}

/// Frees the handle without waiting; the job finishes on its own. Errors:
/// `IVY_EBADF`, `IVY_EBUSY` (being joined).
#[no_mangle]
pub extern "C" fn ivy_blocking_detach(b: ivy_blocking_t) -> c_int {
    guard(|| {
        let entry = BLOCKING.get(b.id).ok_or(IVY_EBADF)?;
        let h = entry
            .handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match h {
            None => Err(IVY_EBUSY),
            Some(h) => {
                BLOCKING.remove(b.id);
                drop(h);
                Ok(())
            }
        }
    })
}
