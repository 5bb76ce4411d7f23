//! The bodies of the C ABI's socket calls, written once for TCP (`ivy_tcp_*`)
//! and Unix-domain (`ivy_unix_*`) sockets over `crate::net::StreamSocket` /
//! `StreamListener` and the `SocketHandle` trait below (a C handle type and
//! its table). Each exported function converts its handle to a table and an
//! id and calls the body here: `ivy_tcp_read` is `stream_read(&STREAMS, s.id,
//! ...)` with the TCP table, `ivy_unix_read` the same with the Unix one;
//! `ivy_tcp_accept` and `ivy_unix_accept` are `accept_into` of their listener
//! table and stream handle type. The bodies check the arguments in the order
//! the C calls document (out-parameters, buffers, deadline, then the handle),
//! so both families report the same errors. Only marshalling lives here: what
//! a call does is the `Result` layer's (`crate::net`).

use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_void};

use std::sync::Arc;

use super::error::*;
use super::handle::HandleTable;
use super::net::{in_buf, net_error, out_buf, IVY_SHUT_RD, IVY_SHUT_RDWR, IVY_SHUT_WR};
use super::time::to_instant;
use super::{out_ptr, store_out, write_out};
use crate::net::{StreamListener, StreamSocket};

/// A C handle type of a socket (`ivy_tcp_stream_t`, ...): a `u64` id in the
/// table of its socket type. Implemented by `socket_handle!`.
pub(super) trait SocketHandle: Sized {
    /// What the handle names.
    type Socket: 'static;

    /// The table of such handles.
    fn table() -> &'static HandleTable<Self::Socket>;

    /// The handle of table entry `id`.
    fn from_id(id: u64) -> Self;

    /// Stores `socket` in the table; its new handle, or `IVY_ENOMEM` when the
    /// table is full (then `socket` is dropped, closing its fd).
    fn insert(socket: Self::Socket) -> Result<Self, c_int> {
        let id = Self::table().insert(Arc::new(socket)).ok_or(IVY_ENOMEM)?;
        Ok(Self::from_id(id))
    }
}

/// Implements `SocketHandle` for `$handle`, naming `$socket`s in `$table`.
macro_rules! socket_handle {
    ($($handle:ident => $socket:ty, $table:ident;)*) => {$(
        impl $crate::ffi::stream::SocketHandle for $handle {
            type Socket = $socket;

            fn table() -> &'static $crate::ffi::handle::HandleTable<$socket> {
                &$table
            }

            fn from_id(id: u64) -> $handle {
                $handle { id }
            }
        }
    )*};
}
pub(super) use socket_handle;

/// `ivy_*_read`: up to `len` bytes into `buf`, the count in `*n`.
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is `NULL` or writable.
pub(super) unsafe fn stream_read<S: StreamSocket>(
    table: &HandleTable<S>,
    id: u64,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> Result<(), c_int> {
    let n = out_ptr(n)?;
    if buf.is_null() || len == 0 {
        return Err(IVY_EINVAL);
    }
    let d = to_instant(deadline)?;
    let stream = table.get(id).ok_or(IVY_EBADF)?;
    // SAFETY: the caller's contract: `len` writable bytes at `buf`, not
    // aliased by anything ivy holds.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    let got = stream.read_deadline(buf, d).map_err(net_error)?;
    // SAFETY: checked non-null; writable by the caller's contract.
    unsafe { write_out(n, got) };
    Ok(())
}

/// `ivy_*_read_exact`: all `len` bytes into `buf`, the count read in `*n` (if
/// not `NULL`) whether or not it succeeds.
///
/// # Safety
/// `buf` is writable for `len` bytes; `n` is `NULL` or writable.
pub(super) unsafe fn stream_read_exact<S: StreamSocket>(
    table: &HandleTable<S>,
    id: u64,
    buf: *mut c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> Result<(), c_int> {
    // SAFETY: the caller's contract: `len` writable bytes at `buf`, not aliased
    // by anything ivy holds.
    let buf = unsafe { out_buf(buf, len)? };
    let d = to_instant(deadline)?;
    let stream = table.get(id).ok_or(IVY_EBADF)?;
    let (got, r) = stream.read_exact_with_count(buf, d);
    if !n.is_null() {
        // SAFETY: non-null; writable by the caller's contract.
        unsafe { write_out(n, got) };
    }
    r.map_err(net_error)
}

/// `ivy_*_write`: up to `len` bytes of `buf`, the count in `*n`.
///
/// # Safety
/// `buf` is readable for `len` bytes; `n` is `NULL` or writable.
pub(super) unsafe fn stream_write<S: StreamSocket>(
    table: &HandleTable<S>,
    id: u64,
    buf: *const c_void,
    len: usize,
    n: *mut usize,
    deadline: i64,
) -> Result<(), c_int> {
    let n = out_ptr(n)?;
    // SAFETY: the caller's contract: `len` readable bytes at `buf`.
    let buf = unsafe { in_buf(buf, len)? };
    let d = to_instant(deadline)?;
    let stream = table.get(id).ok_or(IVY_EBADF)?;
    let put = stream.write_deadline(buf, d).map_err(net_error)?;
    // SAFETY: checked non-null; writable by the caller's contract.
    unsafe { write_out(n, put) };
    Ok(())
}

/// `ivy_*_write_all`: all `len` bytes of `buf`.
///
/// # Safety
/// `buf` is readable for `len` bytes.
pub(super) unsafe fn stream_write_all<S: StreamSocket>(
    table: &HandleTable<S>,
    id: u64,
    buf: *const c_void,
    len: usize,
    deadline: i64,
) -> Result<(), c_int> {
    // SAFETY: the caller's contract: `len` readable bytes at `buf`.
    let buf = unsafe { in_buf(buf, len)? };
    let d = to_instant(deadline)?;
    let stream = table.get(id).ok_or(IVY_EBADF)?;
    stream.write_all_with_count(buf, d).1.map_err(net_error)
}

/// `ivy_*_shutdown`: `how` is `IVY_SHUT_RD`, `IVY_SHUT_WR` or `IVY_SHUT_RDWR`.
pub(super) fn stream_shutdown<S: StreamSocket>(
    table: &HandleTable<S>,
    id: u64,
    how: c_int,
) -> Result<(), c_int> {
    let how = match how {
        IVY_SHUT_RD => std::net::Shutdown::Read,
        IVY_SHUT_WR => std::net::Shutdown::Write,
        IVY_SHUT_RDWR => std::net::Shutdown::Both,
        _ => return Err(IVY_EINVAL),
    };
    let stream = table.get(id).ok_or(IVY_EBADF)?;
    stream.shutdown(how).map_err(|e| io_error(&e))
}

/// `ivy_*_close` of a stream: frees the handle and closes the socket for every
/// call blocked on it.
pub(super) fn stream_close<S: StreamSocket>(table: &HandleTable<S>, id: u64) -> Result<(), c_int> {
    table.remove(id).map(|s| s.close()).ok_or(IVY_EBADF)
}

/// `ivy_*_accept`: a connection from the listener `id`, before `deadline`,
/// its new handle in `*out`.
///
/// # Safety
/// `out` is `NULL` or writable.
pub(super) unsafe fn accept_into<L, H>(
    table: &HandleTable<L>,
    id: u64,
    out: *mut H,
    deadline: i64,
) -> Result<(), c_int>
where
    L: StreamListener,
    H: SocketHandle<Socket = L::Stream>,
{
    // SAFETY: forwarded caller contract (`out`).
    unsafe {
        store_out(out, || {
            let d = to_instant(deadline)?;
            let listener = table.get(id).ok_or(IVY_EBADF)?;
            H::insert(listener.accept_stream_deadline(d).map_err(net_error)?)
        })
    }
}

/// `ivy_*_listener_close`: frees the handle and closes the listener for every
/// accept blocked on it.
pub(super) fn listener_close<L: StreamListener>(
    table: &HandleTable<L>,
    id: u64,
) -> Result<(), c_int> {
    table.remove(id).map(|l| l.close()).ok_or(IVY_EBADF)
}

/// `ivy_*_from_fd` of any socket: checks `out` first, then `adopt` checks
/// `fd` and takes it over (on an error it stays the caller's, untouched), and
/// its new handle is stored in `*out` (if the table is full, the socket
/// closes the fd it now owns, which the caller gave up).
///
/// # Safety
/// `out` is `NULL` or writable; `fd` is the caller's to give away (`adopt`'s
/// contract).
pub(super) unsafe fn socket_from_fd<H: SocketHandle>(
    fd: c_int,
    out: *mut H,
    adopt: unsafe fn(c_int) -> std::io::Result<H::Socket>,
) -> Result<(), c_int> {
    // SAFETY: forwarded caller contract (`out`; `fd` handed over).
    unsafe { store_out(out, || H::insert(adopt(fd).map_err(|e| io_error(&e))?)) }
}

/// `ivy_*_fd` of any socket handle (stream, listener, UDP): its fd, lent, in
/// `*fd`.
///
/// # Safety
/// `fd` is `NULL` or writable.
pub(super) unsafe fn socket_fd<T: AsRawFd>(
    table: &HandleTable<T>,
    id: u64,
    fd: *mut c_int,
) -> Result<(), c_int> {
    let fd = out_ptr(fd)?;
    let raw = table.get(id).ok_or(IVY_EBADF)?.as_raw_fd();
    // SAFETY: checked non-null; writable by the caller's contract.
    unsafe { write_out(fd, raw) };
    Ok(())
}
