//! The data calls: `read readv recv recvfrom recvmsg write writev send sendto
//! sendmsg` (and glibc's `_FORTIFY_SOURCE` variants `__read_chk`,
//! `__recv_chk`, `__recvfrom_chk`), all through `fdio::drive`.

use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::fdio::{classify, drive, Dir};
use crate::fdtable::OTHER;
use crate::real;
use crate::services;

/// `read(2)`.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    // SAFETY: the caller's arguments, passed on (libc's contract).
    drive(fd, Dir::Read, b"read\0", false, || unsafe {
        real::read(fd, buf, n)
    })
}

/// `readv(2)`.
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    // SAFETY: as in `read`.
    drive(fd, Dir::Read, b"readv\0", false, || unsafe {
        real::readv(fd, iov, cnt)
    })
}

/// `recv(2)`.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    let dontwait = flags & libc::MSG_DONTWAIT != 0;
    // SAFETY: as in `read`.
    drive(fd, Dir::Read, b"recv\0", dontwait, || unsafe {
        real::recv(fd, buf, n, flags)
    })
}

/// `recvfrom(2)`.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    let dontwait = flags & libc::MSG_DONTWAIT != 0;
    drive(fd, Dir::Read, b"recvfrom\0", dontwait, || {
        // SAFETY: as in `read`.
        unsafe { real::recvfrom(fd, buf, n, flags, addr, len) }
    })
}

/// `recvmsg(2)`.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let dontwait = flags & libc::MSG_DONTWAIT != 0;
    // SAFETY: as in `read`.
    drive(fd, Dir::Read, b"recvmsg\0", dontwait, || unsafe {
        real::recvmsg(fd, msg, flags)
    })
}

/// `write(2)`. On a pipe, fifo or tty a task writes in pieces of `PIPE_BUF`
/// (each taken whole by a writable pipe, so none blocks the worker), waiting
/// for room between them, and returns when all is written (a blocking write's
/// promise) or with the count written before an error.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    if n > libc::PIPE_BUF
        && services::any()
        && services::current().is_some()
        && classify(fd).kind() == OTHER
    {
        let mut done = 0usize;
        while done < n {
            let piece = (n - done).min(libc::PIPE_BUF);
            // SAFETY: `done + piece <= n`: within the caller's buffer.
            let at = unsafe { buf.cast::<u8>().add(done) }.cast::<c_void>();
            // SAFETY: as in `read`.
            let r = drive(fd, Dir::Write, b"write\0", false, || unsafe {
                real::write(fd, at, piece)
            });
            if r < 0 {
                return if done > 0 { done as ssize_t } else { r };
            }
            done += r as usize;
        }
        return done as ssize_t;
    }
    // SAFETY: as in `read`.
    drive(fd, Dir::Write, b"write\0", false, || unsafe {
        real::write(fd, buf, n)
    })
}

/// `writev(2)`.
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    // SAFETY: as in `read`.
    drive(fd, Dir::Write, b"writev\0", false, || unsafe {
        real::writev(fd, iov, cnt)
    })
}

/// `send(2)`.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    let dontwait = flags & libc::MSG_DONTWAIT != 0;
    // SAFETY: as in `read`.
    drive(fd, Dir::Write, b"send\0", dontwait, || unsafe {
        real::send(fd, buf, n, flags)
    })
}

/// `sendto(2)`.
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    let dontwait = flags & libc::MSG_DONTWAIT != 0;
    drive(fd, Dir::Write, b"sendto\0", dontwait, || {
        // SAFETY: as in `read`.
        unsafe { real::sendto(fd, buf, n, flags, addr, len) }
    })
}

/// `sendmsg(2)`.
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    let dontwait = flags & libc::MSG_DONTWAIT != 0;
    // SAFETY: as in `read`.
    drive(fd, Dir::Write, b"sendmsg\0", dontwait, || unsafe {
        real::sendmsg(fd, msg, flags)
    })
}

/// glibc's fortified `read` (`_FORTIFY_SOURCE`): checked, then hooked.
#[no_mangle]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
) -> ssize_t {
    if n > buflen {
        // SAFETY: glibc's own check reports the overflow and aborts.
        return unsafe { real::read_chk_fail(fd, buf, n, buflen) };
    }
    // SAFETY: the caller's arguments.
    unsafe { read(fd, buf, n) }
}

/// glibc's fortified `recv`.
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if n > buflen {
        // SAFETY: as in `__read_chk`.
        return unsafe { real::recv_chk_fail(fd, buf, n, buflen, flags) };
    }
    // SAFETY: the caller's arguments.
    unsafe { recv(fd, buf, n, flags) }
}

/// glibc's fortified `recvfrom`.
#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    if n > buflen {
        // SAFETY: as in `__read_chk`.
        return unsafe { real::recvfrom_chk_fail(fd, buf, n, buflen, flags, addr, len) };
    }
    // SAFETY: the caller's arguments.
    unsafe { recvfrom(fd, buf, n, flags, addr, len) }
}
