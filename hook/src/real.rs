//! The real libc functions behind the interposed names.
//!
//! Each is looked up once with `dlsym(RTLD_NEXT, name)` from this object (the
//! next definition after the interposing one: libc's) and cached in an atomic.
//! [`resolve_all`] runs when an ivy runtime attaches, before its first task, so
//! no lookup (which may allocate) happens on a task's stack later; a call made
//! before any runtime exists resolves its own function on first use.
//!
//! Everything in this crate calls libc through here, never through `libc::read`
//! & co.: those names resolve to our own exports (ELF interposition applies to
//! the interposer itself), which would recurse.

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_char, c_int, c_uint, c_ulong, c_void, size_t, sockaddr, socklen_t, ssize_t};

/// One lazily resolved libc function: the name (NUL-terminated) and the cached
/// address (0: not looked up yet).
pub(crate) struct Sym {
    name: &'static [u8],
    addr: AtomicUsize,
}

impl Sym {
    const fn new(name: &'static [u8]) -> Sym {
        Sym {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The function's address; 0 if libc has no such symbol (a static binary).
    #[inline]
    pub(crate) fn get(&self) -> usize {
        let a = self.addr.load(Ordering::Acquire);
        if a != 0 {
            return a;
        }
        self.resolve()
    }

    #[cold]
    fn resolve(&self) -> usize {
        // SAFETY: `name` is a NUL-terminated literal; RTLD_NEXT asks the dynamic
        // linker for the next definition after this object's.
        let a = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) } as usize;
        self.addr.store(a, Ordering::Release);
        a
    }
}

macro_rules! real_fns {
    ($($name:ident),* $(,)?) => {
        #[allow(non_upper_case_globals)]
        mod syms {
            use super::Sym;
            $( pub(crate) static $name: Sym = Sym::new(concat!(stringify!($name), "\0").as_bytes()); )*
        }

        /// Resolves every real function now (at attach, before the first task).
        pub(crate) fn resolve_all() {
            $( syms::$name.get(); )*
        }
    };
}

real_fns! {
    read, readv, recv, recvfrom, recvmsg, write, writev, send, sendto, sendmsg,
    accept, accept4, connect, socket, poll, ppoll, select,
    sleep, usleep, nanosleep, clock_nanosleep,
    close, fcntl, ioctl, setsockopt, getsockopt, getaddrinfo, dup, dup2, dup3, fstat,
    __read_chk, __recv_chk, __recvfrom_chk, __poll_chk, __ppoll_chk,
}

/// Calls the real function `$name`, typed as `$ty`; `-1` with `ENOSYS` if libc
/// has no such symbol.
macro_rules! call {
    ($name:ident as $ty:ty, $fail:expr, ($($arg:expr),*)) => {{
        let addr = syms::$name.get();
        if addr == 0 {
            crate::errno::set(libc::ENOSYS);
            $fail
        } else {
            // SAFETY: `addr` is libc's `$name`, whose C signature is `$ty`; the
            // caller passes the arguments its own caller gave (the C contract).
            unsafe { std::mem::transmute::<usize, $ty>(addr)($($arg),*) }
        }
    }};
}

// The wrappers: `unsafe` because they pass raw pointers straight to libc; the
// caller upholds libc's contract for each.

pub(crate) unsafe fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    call!(
        read as unsafe extern "C" fn(c_int, *mut c_void, size_t) -> ssize_t,
        -1,
        (fd, buf, n)
    )
}
pub(crate) unsafe fn readv(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> ssize_t {
    call!(
        readv as unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> ssize_t,
        -1,
        (fd, iov, cnt)
    )
}
pub(crate) unsafe fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    call!(
        recv as unsafe extern "C" fn(c_int, *mut c_void, size_t, c_int) -> ssize_t,
        -1,
        (fd, buf, n, flags)
    )
}
pub(crate) unsafe fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    call!(
        recvfrom
            as unsafe extern "C" fn(
                c_int,
                *mut c_void,
                size_t,
                c_int,
                *mut sockaddr,
                *mut socklen_t,
            ) -> ssize_t,
        -1,
        (fd, buf, n, flags, addr, len)
    )
}
pub(crate) unsafe fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
    call!(
        recvmsg as unsafe extern "C" fn(c_int, *mut libc::msghdr, c_int) -> ssize_t,
        -1,
        (fd, msg, flags)
    )
}
pub(crate) unsafe fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    call!(
        write as unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t,
        -1,
        (fd, buf, n)
    )
}
pub(crate) unsafe fn writev(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> ssize_t {
    call!(
        writev as unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> ssize_t,
        -1,
        (fd, iov, cnt)
    )
}
pub(crate) unsafe fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    call!(
        send as unsafe extern "C" fn(c_int, *const c_void, size_t, c_int) -> ssize_t,
        -1,
        (fd, buf, n, flags)
    )
}
pub(crate) unsafe fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    call!(
        sendto
            as unsafe extern "C" fn(
                c_int,
                *const c_void,
                size_t,
                c_int,
                *const sockaddr,
                socklen_t,
            ) -> ssize_t,
        -1,
        (fd, buf, n, flags, addr, len)
    )
}
pub(crate) unsafe fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t {
    call!(
        sendmsg as unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> ssize_t,
        -1,
        (fd, msg, flags)
    )
}
pub(crate) unsafe fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    call!(
        accept as unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int,
        -1,
        (fd, addr, len)
    )
}
pub(crate) unsafe fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    call!(
        accept4 as unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int,
        -1,
        (fd, addr, len, flags)
    )
}
pub(crate) unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    call!(
        connect as unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int,
        -1,
        (fd, addr, len)
    )
}
pub(crate) unsafe fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    call!(
        socket as unsafe extern "C" fn(c_int, c_int, c_int) -> c_int,
        -1,
        (domain, ty, proto)
    )
}
pub(crate) unsafe fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    call!(
        poll as unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int,
        -1,
        (fds, n, timeout)
    )
}
pub(crate) unsafe fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    call!(
        ppoll
            as unsafe extern "C" fn(
                *mut libc::pollfd,
                libc::nfds_t,
                *const libc::timespec,
                *const libc::sigset_t,
            ) -> c_int,
        -1,
        (fds, n, timeout, mask)
    )
}
pub(crate) unsafe fn select(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    t: *mut libc::timeval,
) -> c_int {
    call!(
        select
            as unsafe extern "C" fn(
                c_int,
                *mut libc::fd_set,
                *mut libc::fd_set,
                *mut libc::fd_set,
                *mut libc::timeval,
            ) -> c_int,
        -1,
        (n, r, w, e, t)
    )
}
pub(crate) unsafe fn sleep(secs: c_uint) -> c_uint {
    call!(
        sleep as unsafe extern "C" fn(c_uint) -> c_uint,
        secs,
        (secs)
    )
}
pub(crate) unsafe fn usleep(us: libc::useconds_t) -> c_int {
    call!(
        usleep as unsafe extern "C" fn(libc::useconds_t) -> c_int,
        -1,
        (us)
    )
}
pub(crate) unsafe fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    call!(
        nanosleep as unsafe extern "C" fn(*const libc::timespec, *mut libc::timespec) -> c_int,
        -1,
        (req, rem)
    )
}
pub(crate) unsafe fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    call!(
        clock_nanosleep
            as unsafe extern "C" fn(
                libc::clockid_t,
                c_int,
                *const libc::timespec,
                *mut libc::timespec,
            ) -> c_int,
        libc::ENOSYS,
        (clock, flags, req, rem)
    )
}
pub(crate) unsafe fn close(fd: c_int) -> c_int {
    call!(close as unsafe extern "C" fn(c_int) -> c_int, -1, (fd))
}
/// `fcntl` with its optional third argument passed as a machine word (an `int`
/// or a pointer: the same register on the supported ABIs, x86-64 and AArch64).
pub(crate) unsafe fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    call!(
        fcntl as unsafe extern "C" fn(c_int, c_int, ...) -> c_int,
        -1,
        (fd, cmd, arg)
    )
}
pub(crate) unsafe fn ioctl(fd: c_int, req: c_ulong, arg: usize) -> c_int {
    call!(
        ioctl as unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int,
        -1,
        (fd, req, arg)
    )
}
pub(crate) unsafe fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    call!(
        setsockopt as unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int,
        -1,
        (fd, level, name, val, len)
    )
}
pub(crate) unsafe fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    call!(
        getsockopt
            as unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int,
        -1,
        (fd, level, name, val, len)
    )
}
pub(crate) unsafe fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    call!(
        getaddrinfo
            as unsafe extern "C" fn(
                *const c_char,
                *const c_char,
                *const libc::addrinfo,
                *mut *mut libc::addrinfo,
            ) -> c_int,
        libc::EAI_SYSTEM,
        (node, service, hints, res)
    )
}
pub(crate) unsafe fn dup(fd: c_int) -> c_int {
    call!(dup as unsafe extern "C" fn(c_int) -> c_int, -1, (fd))
}
pub(crate) unsafe fn dup2(fd: c_int, new: c_int) -> c_int {
    call!(
        dup2 as unsafe extern "C" fn(c_int, c_int) -> c_int,
        -1,
        (fd, new)
    )
}
pub(crate) unsafe fn dup3(fd: c_int, new: c_int, flags: c_int) -> c_int {
    call!(
        dup3 as unsafe extern "C" fn(c_int, c_int, c_int) -> c_int,
        -1,
        (fd, new, flags)
    )
}
pub(crate) unsafe fn fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    call!(
        fstat as unsafe extern "C" fn(c_int, *mut libc::stat) -> c_int,
        -1,
        (fd, st)
    )
}

/// `__read_chk`-style fortify checks: glibc's own function, called only to
/// fail (report the overflow and abort) when `n > buflen`.
pub(crate) unsafe fn read_chk_fail(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
) -> ssize_t {
    call!(
        __read_chk as unsafe extern "C" fn(c_int, *mut c_void, size_t, size_t) -> ssize_t,
        -1,
        (fd, buf, n, buflen)
    )
}
pub(crate) unsafe fn recv_chk_fail(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    call!(
        __recv_chk as unsafe extern "C" fn(c_int, *mut c_void, size_t, size_t, c_int) -> ssize_t,
        -1,
        (fd, buf, n, buflen, flags)
    )
}
pub(crate) unsafe fn recvfrom_chk_fail(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    call!(
        __recvfrom_chk
            as unsafe extern "C" fn(
                c_int,
                *mut c_void,
                size_t,
                size_t,
                c_int,
                *mut sockaddr,
                *mut socklen_t,
            ) -> ssize_t,
        -1,
        (fd, buf, n, buflen, flags, addr, len)
    )
}
pub(crate) unsafe fn poll_chk_fail(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: c_int,
    fdslen: size_t,
) -> c_int {
    call!(
        __poll_chk as unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int, size_t) -> c_int,
        -1,
        (fds, n, timeout, fdslen)
    )
}
pub(crate) unsafe fn ppoll_chk_fail(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
    fdslen: size_t,
) -> c_int {
    call!(
        __ppoll_chk
            as unsafe extern "C" fn(
                *mut libc::pollfd,
                libc::nfds_t,
                *const libc::timespec,
                *const libc::sigset_t,
                size_t,
            ) -> c_int,
        -1,
        (fds, n, timeout, mask, fdslen)
    )
}
