//! Sockets, foreign file descriptors and the blocking pool in the C ABI, over
//! `ivy::net`'s and `ivy::io`'s crate-internal `Result` layer (`accept_until`,
//! `read_until`, `wait_fd_ready`, ...): a blocking socket call parks the calling
//! task (or blocks a plain thread), takes a deadline, and reports cancellation
//! as `IVY_ECANCELED` without unwinding through C.
//!
//! Addresses are strings: `"127.0.0.1:8080"`, `"[::1]:0"`, or `"host:port"`
//! (names are resolved on the blocking pool, so resolution parks the task too).
//! OS errors come back as `-errno` (e.g. `-ECONNREFUSED`); `ivy_strerror` does
//! not know them, `strerror(-code)` does.
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
use super::task::{ivy_task_fn_t, CPtr};
use super::time::to_instant;
use super::{guard, out_ptr, write_c_str, write_out};
use crate::blocking::{BlockingHandle, JoinWait};
use crate::io::WaitError;
use crate::net::addr::try_each;
use crate::net::{TcpListener, TcpStream, UdpSocket};

pub(super) fn net_error(e: WaitError) -> c_int {
    match e {
        WaitError::Cancelled => IVY_ECANCELED,
        WaitError::Elapsed | WaitError::TimedOut => IVY_ETIMEDOUT,
        WaitError::Io(e) => io_error(&e),
        WaitError::Closed => IVY_ECLOSED,
    }
}

/// Reads a C address string and resolves it (names on the blocking pool).
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
        .map_err(|_| IVY_EINVAL)?
        .to_string();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    if !s.contains(':') {
        return Err(IVY_EINVAL);
    }
    let found = crate::blocking::run_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(s.as_str()).map(Iterator::collect::<Vec<_>>)
    })
    .map_err(interrupted)?
    .map_err(|_| IVY_ENOENT)?;
    if found.is_empty() {
        return Err(IVY_ENOENT);
    }
    Ok(found)
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

static LISTENERS: HandleTable<TcpListener> = HandleTable::new(Kind::TcpListener);
static STREAMS: HandleTable<TcpStream> = HandleTable::new(Kind::TcpStream);

fn new_stream(s: TcpStream) -> Result<ivy_tcp_stream_t, c_int> {
    let id = STREAMS.insert(Arc::new(s)).ok_or(IVY_ENOMEM)?;
    Ok(ivy_tcp_stream_t { id })
}

/// Binds a TCP listener to `addr` (port 0: any free port, see
/// `ivy_tcp_listener_port`) and listens. Errors: `IVY_EINVAL` (`addr` or `out`
/// `NULL`, not an address), `IVY_ENOENT` (the name does not resolve),
/// `-EADDRINUSE` and other OS errors, `IVY_ECANCELED` (while resolving).
///
/// # Safety
/// `addr` is `NULL` or a NUL-terminated string; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listen(
    addr: *const c_char,
    out: *mut ivy_tcp_listener_t,
) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        // SAFETY: forwarded caller contract.
        let addrs = unsafe { resolve(addr)? };
        // ivy's bind (not std's): its listen backlog is 4096. A resolved address
        // needs no lookup, so nothing in it can be interrupted (unwind).
        let l =
            try_each(addrs, |a| TcpListener::bind(a).map_err(WaitError::Io)).map_err(net_error)?;
        let id = LISTENERS.insert(Arc::new(l)).ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_tcp_listener_t { id }) };
        Ok(())
    })
}

/// Stores the local port of the listener in `*port`. Errors: `IVY_EBADF`,
/// `IVY_EINVAL`.
///
/// # Safety
/// `port` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_listener_port(l: ivy_tcp_listener_t, port: *mut u16) -> c_int {
    guard(|| {
        let port = out_ptr(port)?;
        let p = port_of(LISTENERS.get(l.id).ok_or(IVY_EBADF)?.local_addr())?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(port, p) };
        Ok(())
    })
}

/// Waits until `deadline` for a connection and stores its stream in `*out` (the
/// caller owns it: `ivy_tcp_close`). Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`,
/// `IVY_EBADF`, `IVY_EINVAL`, OS errors.
///
/// # Safety
/// `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_tcp_accept(
    l: ivy_tcp_listener_t,
    out: *mut ivy_tcp_stream_t,
    deadline: i64,
) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let d = to_instant(deadline)?;
        let listener = LISTENERS.get(l.id).ok_or(IVY_EBADF)?;
        let (s, _) = listener.accept_until(d).map_err(net_error)?;
        let h = new_stream(s)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, h) };
        Ok(())
    })
}

/// Closes the listener and frees the handle. Every `ivy_tcp_accept` blocked on
/// it (in any task or thread) returns `IVY_ECLOSED` at once; the port stops
/// listening at once (a new connect is refused, connections queued but not
/// accepted are reset). The fd is released as soon as no call uses it.
/// Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_tcp_listener_close(l: ivy_tcp_listener_t) -> c_int {
    guard(|| LISTENERS.remove(l.id).map(|l| l.close()).ok_or(IVY_EBADF))
}

/// Connects to `addr`, trying each resolved address in turn, until `deadline`,
/// and stores the stream in `*out`. Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`,
/// `-ECONNREFUSED` and other OS errors, `IVY_ENOENT`, `IVY_EINVAL`.
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
        let out = out_ptr(out)?;
        let d: Option<Instant> = to_instant(deadline)?;
        // SAFETY: forwarded caller contract.
        let addrs = unsafe { resolve(addr)? };
        let s = try_each(addrs, |a| TcpStream::connect_until(a, d)).map_err(net_error)?;
        let h = new_stream(s)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, h) };
        Ok(())
    })
}

/// Reads up to `len` bytes into `buf`, waiting until `deadline` for data, and
/// stores the count in `*n` (0: the peer closed its side). Errors:
/// `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_EBADF`, `IVY_EINVAL` (`buf` or `n`
/// `NULL`, `len` 0), OS errors (`-ECONNRESET`, ...).
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
    guard(|| {
        let n = out_ptr(n)?;
        if buf.is_null() || len == 0 {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        let stream = STREAMS.get(s.id).ok_or(IVY_EBADF)?;
        // SAFETY: the caller's contract: `len` writable bytes at `buf`, not
        // aliased by anything ivy holds.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        let got = stream.read_until(buf, d).map_err(net_error)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(n, got) };
        Ok(())
    })
}

/// Writes up to `len` bytes from `buf`, waiting until `deadline` for room, and
/// stores the count written in `*n` (at least 1 on success; may be less than
/// `len`). Errors: as `ivy_tcp_read`; `-EPIPE` when the peer is gone.
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
    guard(|| {
        let n = out_ptr(n)?;
        if buf.is_null() || len == 0 {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        let stream = STREAMS.get(s.id).ok_or(IVY_EBADF)?;
        // SAFETY: the caller's contract: `len` readable bytes at `buf`.
        let buf = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
        let put = stream.write_until(buf, d).map_err(net_error)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(n, put) };
        Ok(())
    })
}

/// Writes all `len` bytes of `buf` (several writes if needed) before
/// `deadline`. On error, an unknown prefix may have been written. Errors: as
/// `ivy_tcp_write`.
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
    guard(|| {
        if buf.is_null() || len == 0 {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        let stream = STREAMS.get(s.id).ok_or(IVY_EBADF)?;
        // SAFETY: the caller's contract: `len` readable bytes at `buf`.
        let mut rest = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
        while !rest.is_empty() {
            let put = stream.write_until(rest, d).map_err(net_error)?;
            if put == 0 {
                return Err(-libc::EPIPE);
            }
            rest = &rest[put..];
        }
        Ok(())
    })
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
    guard(|| {
        let how = match how {
            IVY_SHUT_RD => std::net::Shutdown::Read,
            IVY_SHUT_WR => std::net::Shutdown::Write,
            IVY_SHUT_RDWR => std::net::Shutdown::Both,
            _ => return Err(IVY_EINVAL),
        };
        let stream = STREAMS.get(s.id).ok_or(IVY_EBADF)?;
        stream.shutdown(how).map_err(|e| io_error(&e))
    })
}

/// Closes the stream and frees the handle. Every read or write blocked on it (in
/// any task or thread) returns `IVY_ECLOSED` at once, and the socket is shut
/// down in both directions, so the peer reads EOF at once. The fd is released
/// as soon as no call uses it. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_tcp_close(s: ivy_tcp_stream_t) -> c_int {
    guard(|| STREAMS.remove(s.id).map(|s| s.close()).ok_or(IVY_EBADF))
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

/// Binds a UDP socket to `addr` (port 0: any). Errors as `ivy_tcp_listen`.
///
/// # Safety
/// `addr` is `NULL` or a NUL-terminated string; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_bind(addr: *const c_char, out: *mut ivy_udp_socket_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        // SAFETY: forwarded caller contract.
        let addrs = unsafe { resolve(addr)? };
        // A resolved address: no lookup, nothing that could unwind.
        let sock =
            try_each(addrs, |a| UdpSocket::bind(a).map_err(WaitError::Io)).map_err(net_error)?;
        let id = UDP.insert(Arc::new(sock)).ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_udp_socket_t { id }) };
        Ok(())
    })
}

/// Stores the local port in `*port`. Errors: `IVY_EBADF`, `IVY_EINVAL`.
///
/// # Safety
/// `port` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_port(s: ivy_udp_socket_t, port: *mut u16) -> c_int {
    guard(|| {
        let port = out_ptr(port)?;
        let p = port_of(UDP.get(s.id).ok_or(IVY_EBADF)?.local_addr())?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(port, p) };
        Ok(())
    })
}

/// Sends one datagram of `len` bytes (0 allowed) to `addr`, waiting until
/// `deadline` for room, and stores the count sent in `*n` (if `n` is not NULL).
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_EBADF`, `IVY_EINVAL`, OS errors.
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
        if buf.is_null() && len != 0 {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        let sock = UDP.get(s.id).ok_or(IVY_EBADF)?;
        // SAFETY: forwarded caller contract.
        let to = unsafe { resolve(addr)? }[0];
        let data: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the caller's contract: `len` readable bytes at `buf`.
            unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }
        };
        let sent = sock.send_to_until(data, to, d).map_err(net_error)?;
        if !n.is_null() {
            // SAFETY: non-null; writable by the caller's contract.
            unsafe { write_out(n, sent) };
        }
        Ok(())
    })
}

/// Receives one datagram into `buf` (a longer one is truncated), waiting until
/// `deadline`, and stores its length in `*n` and, if `from` is not NULL, the
/// sender's address as a NUL-terminated string in `from` (capacity `from_cap`;
/// `IVY_ERANGE` if too small, the datagram is then still consumed and `*n` set).
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_EBADF`, `IVY_EINVAL`.
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is writable; `from` is `NULL` or
/// writable for `from_cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_udp_recv_from(
    s: ivy_udp_socket_t,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
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
        let sock = UDP.get(s.id).ok_or(IVY_EBADF)?;
        // SAFETY: the caller's contract: `len` writable bytes at `buf`.
        let data = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        let (got, peer) = sock.recv_from_until(data, d).map_err(net_error)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(n, got) };
        if !from.is_null() {
            // SAFETY: `from` is writable for `from_cap` bytes (caller's contract).
            unsafe { write_c_str(&peer.to_string(), from, from_cap)? };
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
        match h.join_until(d) {
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
                Err(match wait {
                    JoinWait::TimedOut => IVY_ETIMEDOUT,
                    JoinWait::Interrupted(i) => interrupted(i),
                })
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
