//! Error codes of the C ABI and `ivy_strerror`.
//!
//! Every function returns `0` on success or one of these negative codes. Where a
//! POSIX errno fits, the code is `-errno` with Linux's value (checked by a unit
//! test against `libc`), so `strerror(-code)` also works for them; I/O functions
//! pass other OS errors through as `-errno`. Codes without an errno equivalent
//! (`IVY_ECLOSED`, `IVY_EPANIC`) live below -1000, outside errno's range.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

use crate::cancel::Interrupted;

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
    /// detached, or zero-initialised.
    IVY_EBADF = -9,
    /// Try again: a non-blocking attempt found nothing to do.
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
    /// The deadline passed before the operation could complete.
    IVY_ETIMEDOUT = -110,
    /// The calling task was cancelled (from a blocking call), or the joined task
    /// was cancelled before it produced a result (from `ivy_task_join`).
    IVY_ECANCELED = -125,
    /// The object was closed: a closed queue (puts; gets once drained), an
    /// exhausted or closing generator, a runtime shutting down (spawns), a
    /// socket closed by another task or thread while a call was blocked on it.
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
/// returns `NULL`; the string must not be freed. Unknown codes give
/// `"unknown ivy error"`; for `-errno` codes that are not `IVY_E*` constants, use
/// `strerror(-code)`.
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
        _ => c"unknown ivy error",
    }
}

/// The code of an interrupted blocking call.
pub(crate) fn interrupted(e: Interrupted) -> c_int {
    match e {
        Interrupted::Cancelled => IVY_ECANCELED,
        Interrupted::Elapsed => IVY_ETIMEDOUT,
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
    fn io_errors_map_to_codes() {
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_error(&e), -libc::ECONNREFUSED);
        let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "x");
        assert_eq!(io_error(&e), IVY_ETIMEDOUT);
    }
}
