//! Unix-domain stream sockets in the C ABI (`ivy_unix_*`), over `ivy::net`'s
//! `UnixListener` / `UnixStream` and their `Result` layer
//! (`accept_deadline`, `read_deadline`, ...). The calls mirror the TCP ones
//! (`ivy_tcp_*`): same argument order, same error codes, the deadline last; a
//! blocking call parks the task (or blocks a plain thread) and a passed
//! deadline is a non-blocking try.
//!
//! Design decisions:
//! * **Addresses are C strings**: a file system path, or, when it starts with
//!   `@`, a Linux abstract socket name (the bytes after the `@`; no file, gone
//!   with the last socket), the convention of `ss`, Go and libuv's users. Paths
//!   need not be UTF-8.
//! * **The socket file is the caller's.** `ivy_unix_listen` creates it (the path
//!   must not exist: `-EADDRINUSE`), and ivy never removes it, not even at
//!   `ivy_unix_listener_close`: like `bind(2)` and libuv, unlike Go. Removing a
//!   path on close would race with another process that bound the same path in
//!   the meantime, and a listener wrapped from an fd may not own its path at all.
//! * **Close wakes every waiter** (the close mechanism of `crate::net`): a
//!   call blocked on the socket in another task returns `IVY_ECLOSED` at once,
//!   the socket is shut down (the peer reads end of file; a listener refuses
//!   new connects), and the fd is released when the last in-flight call returns.
//! * **Adopting an fd checks it** (`SO_DOMAIN`, `SO_TYPE`, `SO_ACCEPTCONN`), so
//!   a listener passed as a stream, a TCP socket or a pipe is `IVY_EINVAL`
//!   instead of a handle that fails later; on any error the fd stays the
//!   caller's.

use std::ffi::{CStr, OsStr};
use std::os::linux::net::SocketAddrExt;
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;

use super::error::*;
use super::handle::{HandleTable, Kind};
use super::net::net_error;
use super::stream::{
    accept_into, listener_close, socket_fd, socket_from_fd, socket_handle, stream_close,
    stream_read, stream_read_exact, stream_shutdown, stream_write, stream_write_all, SocketHandle,
};
use super::time::to_instant;
use super::{guard, out_ptr, store_out, write_out};
use crate::net::{UnixListener, UnixStream};

/// A handle to a listening Unix-domain stream socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_unix_listener_t {
    pub id: u64,
}

/// A handle to a connected Unix-domain stream socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_unix_stream_t {
    pub id: u64,
}

static LISTENERS: HandleTable<UnixListener> = HandleTable::new(Kind::UnixListener);
static STREAMS: HandleTable<UnixStream> = HandleTable::new(Kind::UnixStream);

socket_handle! {
    ivy_unix_listener_t => UnixListener, LISTENERS;
    ivy_unix_stream_t => UnixStream, STREAMS;
}

/// Reads a C socket address: a path, or `@name` for an abstract name.
///
/// # Safety
/// `path` is `NULL` or a NUL-terminated string.
unsafe fn socket_addr(path: *const c_char) -> Result<SocketAddr, c_int> {
    if path.is_null() {
        return Err(IVY_EINVAL);
    }
    // SAFETY: the caller's contract.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    let addr = match bytes {
        [] | [b'@'] => return Err(IVY_EINVAL),
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        _ => SocketAddr::from_pathname(OsStr::from_bytes(bytes)),
    };
    // Too long for `sun_path` (108 bytes with the NUL).
    addr.map_err(|_| IVY_EINVAL)
}

/// Creates a Unix-domain stream socket bound to `path` and listening (backlog
/// 4096, capped by `net.core.somaxconn`), and stores its handle in `*out`.
/// `path` is a file system path, which must not exist yet (the socket file it
/// creates is the caller's: ivy never removes it, not even on close; unlink it
/// when done), or `@name` for a Linux abstract socket (no file).
///
/// Errors: `IVY_EINVAL` (`path` or `out` NULL, empty, `"@"`, longer than 107
/// bytes), `-EADDRINUSE` (the path exists, or the abstract name is taken),
/// `-ENOENT` / `-EACCES` and other OS errors.
///
/// # Safety
/// `path` is `NULL` or a NUL-terminated string; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_listen(
    path: *const c_char,
    out: *mut ivy_unix_listener_t,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`path`, `out`).
        unsafe {
            store_out(out, || {
                let l = UnixListener::bind_addr(&socket_addr(path)?).map_err(|e| io_error(&e))?;
                ivy_unix_listener_t::insert(l)
            })
        }
    })
}

/// Waits until `deadline` for a connection and stores its stream in `*out` (the
/// caller owns it: `ivy_unix_close`). Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`,
/// `IVY_ECLOSED` (the listener was closed meanwhile), `IVY_EBADF`, `IVY_EINVAL`,
/// OS errors (`-EMFILE`, ...; the pending connection stays queued).
///
/// # Safety
/// `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_accept(
    l: ivy_unix_listener_t,
    out: *mut ivy_unix_stream_t,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`out`).
    guard(|| unsafe { accept_into(&LISTENERS, l.id, out, deadline) })
}

/// Closes the listener and frees the handle: every `ivy_unix_accept` blocked
/// on it returns `IVY_ECLOSED` at once, and new connects are refused. The
/// socket file stays (it is the caller's to unlink). Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_unix_listener_close(l: ivy_unix_listener_t) -> c_int {
    guard(|| listener_close(&LISTENERS, l.id))
}

/// Connects to the listener at `path` (a path, or `@name` for an abstract
/// socket) and stores the stream in `*out`. While the listener's backlog is
/// full the connect is retried until `deadline` (a passed deadline tries once).
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_EINVAL` (as
/// `ivy_unix_listen`), `-ENOENT` (no such file), `-ECONNREFUSED` (nobody
/// listens there), other OS errors.
///
/// # Safety
/// `path` is `NULL` or a NUL-terminated string; `out` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_connect(
    path: *const c_char,
    out: *mut ivy_unix_stream_t,
    deadline: i64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded caller contract (`path`, `out`).
        unsafe {
            store_out(out, || {
                let d = to_instant(deadline)?;
                let addr = socket_addr(path)?;
                ivy_unix_stream_t::insert(
                    UnixStream::connect_addr_deadline(&addr, d).map_err(net_error)?,
                )
            })
        }
    })
}

/// Creates a connected pair of streams (`socketpair(2)`) and stores them in
/// `*a` and `*b`; the caller closes both. Errors: `IVY_EINVAL` (`a` or `b`
/// NULL), OS errors (`-EMFILE`, ...).
///
/// # Safety
/// `a` and `b` are `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_pair(
    a: *mut ivy_unix_stream_t,
    b: *mut ivy_unix_stream_t,
) -> c_int {
    guard(|| {
        let a = out_ptr(a)?;
        let b = out_ptr(b)?;
        let (x, y) = UnixStream::pair().map_err(|e| io_error(&e))?;
        let hx = ivy_unix_stream_t::insert(x)?;
        let hy = match ivy_unix_stream_t::insert(y) {
            Ok(h) => h,
            Err(e) => {
                STREAMS.remove(hx.id);
                return Err(e);
            }
        };
        // SAFETY: both checked non-null; writable by the caller's contract.
        unsafe {
            write_out(a, hx);
            write_out(b, hy);
        }
        Ok(())
    })
}

/// Reads up to `len` bytes into `buf`, waiting until `deadline` for data, and
/// stores the count in `*n` (0: the peer closed its side). Errors:
/// `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_ECLOSED` (the stream was closed
/// meanwhile), `IVY_EBADF`, `IVY_EINVAL` (`buf` or `n` NULL, `len` 0), OS
/// errors (`-ECONNRESET`, ...).
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_read(
    s: ivy_unix_stream_t,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`buf`, `n`).
    guard(|| unsafe { stream_read(&STREAMS, s.id, buf, len, n, deadline) })
}

/// Reads exactly `len` bytes into `buf` (several reads if needed) before
/// `deadline`, and stores the count read in `*n` if `n` is not NULL: `len` on
/// success, what arrived before the error otherwise (that prefix of `buf` is
/// filled). `len` 0 succeeds at once (`buf` may then be NULL). Errors:
/// `IVY_ECLOSED` (the peer closed its side before `len` bytes came, or the
/// stream was closed meanwhile), `IVY_ETIMEDOUT`, `IVY_ECANCELED`, `IVY_EBADF`,
/// `IVY_EINVAL` (`buf` NULL with `len` > 0), OS errors.
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_read_exact(
    s: ivy_unix_stream_t,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`buf`, `n`).
    guard(|| unsafe { stream_read_exact(&STREAMS, s.id, buf, len, n, deadline) })
}

/// Writes up to `len` bytes from `buf`, waiting until `deadline` for room, and
/// stores the count written in `*n` (at least 1 on success when `len` > 0; may
/// be less than `len`). `len` 0 succeeds with `*n` = 0, like `write(2)` (`buf`
/// may then be NULL). Errors: as `ivy_unix_read`; `-EPIPE` when the peer is
/// gone.
///
/// # Safety
/// `buf` is readable for `len` bytes; `n` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_write(
    s: ivy_unix_stream_t,
    buf: *const c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`buf`, `n`).
    guard(|| unsafe { stream_write(&STREAMS, s.id, buf, len, n, deadline) })
}

/// Writes all `len` bytes of `buf` (several writes if needed) before
/// `deadline`. `len` 0 succeeds at once (`buf` may then be NULL). On error, an
/// unknown prefix may have been written. Errors: as `ivy_unix_write`.
///
/// # Safety
/// `buf` is readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_write_all(
    s: ivy_unix_stream_t,
    buf: *const c_void,
    len: usize,
    deadline: i64,
) -> c_int {
    // SAFETY: forwarded caller contract (`buf`).
    guard(|| unsafe { stream_write_all(&STREAMS, s.id, buf, len, deadline) })
}

/// Shuts down the reading side (`IVY_SHUT_RD`), the writing side
/// (`IVY_SHUT_WR`: the peer reads end of file) or both (`IVY_SHUT_RDWR`); the
/// handle stays valid. Errors: `IVY_EINVAL` (bad `how`), `IVY_EBADF`, OS errors.
#[no_mangle]
pub extern "C" fn ivy_unix_shutdown(s: ivy_unix_stream_t, how: c_int) -> c_int {
    guard(|| stream_shutdown(&STREAMS, s.id, how))
}

/// Closes the stream and frees the handle: every read or write blocked on it
/// in another task or thread returns `IVY_ECLOSED` at once, the peer reads end
/// of file, and the fd is released once no call uses it any more. Errors:
/// `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_unix_close(s: ivy_unix_stream_t) -> c_int {
    guard(|| stream_close(&STREAMS, s.id))
}

/// Stores the stream's fd in `*fd`, e.g. for `getsockopt(SO_PEERCRED)` or
/// `setsockopt`. ivy keeps owning it: do not close it, read or write it behind
/// ivy's back, or make it blocking; it is valid until `ivy_unix_close`.
/// Errors: `IVY_EBADF`, `IVY_EINVAL` (`fd` NULL).
///
/// # Safety
/// `fd` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_stream_fd(s: ivy_unix_stream_t, fd: *mut c_int) -> c_int {
    // SAFETY: forwarded caller contract (`fd`).
    guard(|| unsafe { socket_fd(&STREAMS, s.id, fd) })
}

/// Stores the listener's fd in `*fd` (ivy keeps owning it; see
/// `ivy_unix_stream_fd`). Errors: `IVY_EBADF`, `IVY_EINVAL` (`fd` NULL).
///
/// # Safety
/// `fd` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_listener_fd(l: ivy_unix_listener_t, fd: *mut c_int) -> c_int {
    // SAFETY: forwarded caller contract (`fd`).
    guard(|| unsafe { socket_fd(&LISTENERS, l.id, fd) })
}

/// Wraps `fd`, a connected Unix-domain stream socket (from `socketpair(2)`, an
/// inherited fd, a C library), in a stream handle stored in `*out`. On success
/// ivy owns the fd (it is made non-blocking, and closed by `ivy_unix_close`);
/// on any error it stays the caller's, untouched.
///
/// Errors: `IVY_EINVAL` (`out` NULL, `fd` negative; `fd` is not a
/// Unix-domain stream socket, or is a listening or unconnected one),
/// `IVY_EBADF` (`fd` is not open), `IVY_ENOMEM` (no
/// handle left: the fd was adopted, and is closed).
///
/// # Safety
/// `out` is `NULL` or writable; `fd` is not owned by anything else that will
/// close it.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_stream_from_fd(fd: c_int, out: *mut ivy_unix_stream_t) -> c_int {
    // SAFETY: forwarded caller contract (`out`; `fd` handed over).
    guard(|| unsafe { socket_from_fd(fd, out, UnixStream::from_fd_checked) })
}

/// Wraps `fd`, a listening Unix-domain stream socket, in a listener handle
/// stored in `*out`. Ownership as `ivy_unix_stream_from_fd`.
///
/// Errors: `IVY_EINVAL` (`out` NULL, `fd` negative; `fd` is not a listening
/// Unix-domain stream socket), `IVY_EBADF` (`fd` is not open), `IVY_ENOMEM` (as
/// `ivy_unix_stream_from_fd`).
///
/// # Safety
/// `out` is `NULL` or writable; `fd` is not owned by anything else that will
/// close it.
#[no_mangle]
pub unsafe extern "C" fn ivy_unix_listener_from_fd(
    fd: c_int,
    out: *mut ivy_unix_listener_t,
) -> c_int {
    // SAFETY: forwarded caller contract (`out`; `fd` handed over).
    guard(|| unsafe { socket_from_fd(fd, out, UnixListener::from_fd_checked) })
}
