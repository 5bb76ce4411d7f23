//! Error codes of the C ABI and `ivy_strerror`.
//!
//! Every function returns `0` on success or one of these negative codes. Where a
//! POSIX errno fits, the code is `-errno` with Linux's value (checked by a unit
//! test against `libc`), so `strerror(-code)` also works for them; I/O functions
//! pass other OS errors through as `-errno`. Codes without an errno equivalent
//! (`IVY_ECLOSED`, `IVY_EPANIC`) live below -1000, outside errno's range.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

/// Error codes: every function returns `IVY_OK` (0) or one of these. An enum,
/// so the C constants are expressions that are safe to negate (`-IVY_EINVAL`), as
/// in libuv. Functions return them as `int`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ivy_error_t {
    /// Success.
    IVY_OK = 0,
    /// Operation not permitted in this context: e.g. a call that needs a running
    /// task made from a plain thread (`ivy_task_spawn`, `ivy_task_current_id`), or `ivy_runtime_run`
    /// called from inside a task.
    IVY_EPERM = -1,
    /// No such entry (e.g. a name or address that does not resolve).
    IVY_ENOENT = -2,
    /// An OS-level I/O error with no more precise code.
    IVY_EIO = -5,
    /// A handle that names nothing: never created, already freed, joined or
    /// detached, zero-initialised, or a handle of another kind (a mutex passed
    /// where a task is expected).
    IVY_EBADF = -9,
    /// Resource temporarily unavailable: an OS error passed through (e.g. no
    /// thread could be started). A non-blocking try (a passed deadline) that
    /// finds nothing to do reports `IVY_ETIMEDOUT`, not this.
    IVY_EAGAIN = -11,
    /// Out of memory (also: no stack could be allocated for a task).
    IVY_ENOMEM = -12,
    /// The object is in use: e.g. another caller is joining the same task.
    IVY_EBUSY = -16,
    /// An invalid argument: `NULL` where a value is needed, a zero capacity, an
    /// out-of-range size or deadline, a string that is not UTF-8.
    IVY_EINVAL = -22,
    /// A buffer too small for the result (the needed size is reported).
    IVY_ERANGE = -34,
    /// The call would deadlock: e.g. a task joining itself.
    IVY_EDEADLK = -35,
    /// The deadline passed before the operation could complete (at once for a
    /// passed deadline: the call was a non-blocking try).
    IVY_ETIMEDOUT = -110,
    /// The calling task was cancelled (from a blocking call), or the joined task
    /// was cancelled before it produced a result (from `ivy_task_join`).
    IVY_ECANCELED = -125,
    /// The object was closed: a closed queue (puts; gets once drained), an
    /// object freed or a socket closed (`ivy_*_free`, `ivy_tcp_close`, ...) while
    /// the call waited on it, an exhausted or closing generator, a runtime
    /// shutting down (spawns), per-task storage set during its last destructor
    /// round.
    IVY_ECLOSED = -1001,
    /// Rust code inside ivy panicked; the call did not complete. This is a bug in
    /// ivy; the panic message was printed to stderr.
    IVY_EPANIC = -1002,
}

// The codes as `c_int`, for the Rust side (crate-private: not exported to C twice).
pub(crate) const IVY_EPERM: c_int = ivy_error_t::IVY_EPERM as c_int;
pub(crate) const IVY_ENOENT: c_int = ivy_error_t::IVY_ENOENT as c_int;
pub(crate) const IVY_EIO: c_int = ivy_error_t::IVY_EIO as c_int;
pub(crate) const IVY_EBADF: c_int = ivy_error_t::IVY_EBADF as c_int;
pub(crate) const IVY_EAGAIN: c_int = ivy_error_t::IVY_EAGAIN as c_int;
pub(crate) const IVY_ENOMEM: c_int = ivy_error_t::IVY_ENOMEM as c_int;
pub(crate) const IVY_EBUSY: c_int = ivy_error_t::IVY_EBUSY as c_int;
pub(crate) const IVY_EINVAL: c_int = ivy_error_t::IVY_EINVAL as c_int;
pub(crate) const IVY_ERANGE: c_int = ivy_error_t::IVY_ERANGE as c_int;
pub(crate) const IVY_EDEADLK: c_int = ivy_error_t::IVY_EDEADLK as c_int;
pub(crate) const IVY_ETIMEDOUT: c_int = ivy_error_t::IVY_ETIMEDOUT as c_int;
pub(crate) const IVY_ECANCELED: c_int = ivy_error_t::IVY_ECANCELED as c_int;
pub(crate) const IVY_ECLOSED: c_int = ivy_error_t::IVY_ECLOSED as c_int;
pub(crate) const IVY_EPANIC: c_int = ivy_error_t::IVY_EPANIC as c_int;

/// A static, human-readable description of an ivy error code (or of `0`). Never
/// returns `NULL`; the string must not be freed; thread-safe. Covers every code
/// ivy returns: the `IVY_E*` constants and every `-errno` the socket, fd and
/// file calls pass through (`-ECONNREFUSED`, `-ECONNRESET`, `-EPIPE`,
/// `-EADDRINUSE`, `-EMFILE`, ...). Only codes ivy never returns give
/// `"unknown ivy error"`.
#[no_mangle]
pub extern "C" fn ivy_strerror(code: c_int) -> *const c_char {
    let mut text: &'static CStr = c"unknown ivy error";
    super::guard(|| {
        text = describe(code);
        Ok(())
    });
    text.as_ptr()
}

fn describe(code: c_int) -> &'static CStr {
    match code {
        0 => c"success",
        IVY_EPERM => c"operation not permitted here (outside a task, or inside one)",
        IVY_ENOENT => c"no such entry",
        IVY_EIO => c"input/output error",
        IVY_EBADF => c"bad handle (stale, freed, joined or never created)",
        IVY_EAGAIN => c"resource temporarily unavailable, try again",
        IVY_ENOMEM => c"out of memory",
        IVY_EBUSY => c"object busy (e.g. already being joined)",
        IVY_EINVAL => c"invalid argument",
        IVY_ERANGE => c"buffer too small",
        IVY_EDEADLK => c"operation would deadlock",
        IVY_ETIMEDOUT => c"deadline passed",
        IVY_ECANCELED => c"task cancelled",
        IVY_ECLOSED => c"closed",
        IVY_EPANIC => c"internal panic in ivy (a bug; see stderr)",
        _ => describe_errno(-code).unwrap_or(c"unknown ivy error"),
    }
}

/// The OS errors ivy's I/O calls pass through as `-errno`, with static texts
/// (`strerror` is neither static nor thread-safe everywhere).
fn describe_errno(errno: c_int) -> Option<&'static CStr> {
    Some(match errno {
        libc::EINTR => c"interrupted system call",
        libc::ENXIO => c"no such device or address",
        libc::E2BIG => c"argument list too long",
        libc::ECHILD => c"no child processes",
        libc::EACCES => c"permission denied",
        libc::EFAULT => c"bad address",
        libc::EEXIST => c"file exists",
        libc::EXDEV => c"cross-device link",
        libc::ENODEV => c"no such device",
        libc::ENOTDIR => c"not a directory",
        libc::EISDIR => c"is a directory",
        libc::ENFILE => c"too many open files in the system",
        libc::EMFILE => c"too many open files",
        libc::ENOTTY => c"inappropriate ioctl for device",
        libc::ETXTBSY => c"text file busy",
        libc::EFBIG => c"file too large",
        libc::ENOSPC => c"no space left on device",
        libc::ESPIPE => c"illegal seek",
        libc::EROFS => c"read-only file system",
        libc::EMLINK => c"too many links",
        libc::EPIPE => c"broken pipe (the peer is gone)",
        libc::EDOM => c"numerical argument out of domain",
        libc::ENAMETOOLONG => c"file name too long",
        libc::ENOLCK => c"no locks available",
        libc::ENOSYS => c"function not implemented",
        libc::ENOTEMPTY => c"directory not empty",
        libc::ELOOP => c"too many levels of symbolic links",
        libc::ENODATA => c"no data available",
        libc::EOVERFLOW => c"value too large for defined data type",
        libc::EBADFD => c"file descriptor in bad state",
        libc::ENOTSOCK => c"not a socket",
        libc::EDESTADDRREQ => c"destination address required",
        libc::EMSGSIZE => c"message too long",
        libc::EPROTOTYPE => c"protocol wrong type for socket",
        libc::ENOPROTOOPT => c"protocol not available",
        libc::EPROTONOSUPPORT => c"protocol not supported",
        libc::ESOCKTNOSUPPORT => c"socket type not supported",
        libc::EOPNOTSUPP => c"operation not supported",
        libc::EPFNOSUPPORT => c"protocol family not supported",
        libc::EAFNOSUPPORT => c"address family not supported by protocol",
        libc::EADDRINUSE => c"address already in use",
        libc::EADDRNOTAVAIL => c"cannot assign requested address",
        libc::ENETDOWN => c"network is down",
        libc::ENETUNREACH => c"network is unreachable",
        libc::ENETRESET => c"network dropped connection on reset",
        libc::ECONNABORTED => c"software caused connection abort",
        libc::ECONNRESET => c"connection reset by peer",
        libc::ENOBUFS => c"no buffer space available",
        libc::EISCONN => c"socket is already connected",
        libc::ENOTCONN => c"socket is not connected",
        libc::ESHUTDOWN => c"cannot send after socket shutdown",
        libc::ETOOMANYREFS => c"too many references",
        libc::ECONNREFUSED => c"connection refused",
        libc::EHOSTDOWN => c"host is down",
        libc::EHOSTUNREACH => c"no route to host",
        libc::EALREADY => c"operation already in progress",
        libc::EINPROGRESS => c"operation now in progress",
        libc::ESTALE => c"stale file handle",
        libc::EDQUOT => c"disk quota exceeded",
        libc::ENOMEDIUM => c"no medium found",
        libc::EPROTO => c"protocol error",
        libc::ENOSR => c"out of streams resources",
        libc::ENONET => c"machine is not on the network",
        libc::EREMOTEIO => c"remote I/O error",
        libc::EILSEQ => c"invalid or incomplete multibyte or wide character",
        _ => return None,
    })
}

/// The code of a blocking call of the `Result` layer that ended without its
/// work: `IVY_ECANCELED`, `IVY_ETIMEDOUT` (its own deadline or an enclosing
/// deadline scope's), `IVY_ECLOSED`.
pub(crate) fn wait_error(e: crate::error::WaitError) -> c_int {
    use crate::error::WaitError;
    match e {
        WaitError::Cancelled => IVY_ECANCELED,
        WaitError::Elapsed | WaitError::TimedOut => IVY_ETIMEDOUT,
        WaitError::Closed => IVY_ECLOSED,
    }
}

/// The code of an `io::Error`: its OS errno if it has one, else by kind.
pub(crate) fn io_error(e: &std::io::Error) -> c_int {
    use std::io::ErrorKind as K;
    if let Some(errno) = e.raw_os_error() {
        return -errno;
    }
    match e.kind() {
        K::InvalidInput | K::InvalidData => IVY_EINVAL,
        K::NotFound => IVY_ENOENT,
        K::OutOfMemory => IVY_ENOMEM,
        K::TimedOut => IVY_ETIMEDOUT,
        K::WouldBlock => IVY_EAGAIN,
        K::PermissionDenied => IVY_EPERM,
        K::Interrupted => IVY_ECANCELED,
        _ => IVY_EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_negative_linux_errnos() {
        assert_eq!(IVY_EPERM, -libc::EPERM);
        assert_eq!(IVY_ENOENT, -libc::ENOENT);
        assert_eq!(IVY_EIO, -libc::EIO);
        assert_eq!(IVY_EBADF, -libc::EBADF);
        assert_eq!(IVY_EAGAIN, -libc::EAGAIN);
        assert_eq!(IVY_ENOMEM, -libc::ENOMEM);
        assert_eq!(IVY_EBUSY, -libc::EBUSY);
        assert_eq!(IVY_EINVAL, -libc::EINVAL);
        assert_eq!(IVY_ERANGE, -libc::ERANGE);
        assert_eq!(IVY_EDEADLK, -libc::EDEADLK);
        assert_eq!(IVY_ETIMEDOUT, -libc::ETIMEDOUT);
        assert_eq!(IVY_ECANCELED, -libc::ECANCELED);
    }

    #[test]
    fn every_socket_errno_has_a_text() {
        for e in [
            libc::ECONNREFUSED,
            libc::ECONNRESET,
            libc::EPIPE,
            libc::EADDRINUSE,
            libc::EADDRNOTAVAIL,
            libc::ENETUNREACH,
            libc::EHOSTUNREACH,
            libc::ECONNABORTED,
            libc::ENOTCONN,
            libc::EMFILE,
            libc::ENFILE,
            libc::EACCES,
            libc::EAFNOSUPPORT,
            libc::EMSGSIZE,
        ] {
            assert_ne!(describe(-e), c"unknown ivy error", "errno {e}");
        }
        assert_eq!(describe(-4000), c"unknown ivy error");
        assert_eq!(describe(5), c"unknown ivy error");
    }

    #[test]
    fn io_errors_map_to_codes() {
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_error(&e), -libc::ECONNREFUSED);
        let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "x");
        assert_eq!(io_error(&e), IVY_ETIMEDOUT);
    }
}
