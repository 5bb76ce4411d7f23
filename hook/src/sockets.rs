//! Socket life: `socket accept accept4 connect setsockopt getaddrinfo`.

use std::ffi::CStr;
use std::sync::{Arc, Mutex};

use libc::{c_char, c_int, c_void, sockaddr, socklen_t};

use crate::errno;
use crate::fdio::{self, classify, drive, fail, Dir};
use crate::fdtable::{self, Entry, IVY_NONBLOCK, SOCKET, USER_NONBLOCK};
use crate::real;
use crate::services;

/// `socket(2)`. Recorded as a socket (with the user's `SOCK_NONBLOCK`); made in
/// a task, it is created non-blocking underneath at once.
#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    if !services::any() {
        // SAFETY: the caller's arguments.
        return unsafe { real::socket(domain, ty, proto) };
    }
    let user_nb = ty & libc::SOCK_NONBLOCK != 0;
    let in_task = services::current().is_some();
    let ty_real = if in_task {
        ty | libc::SOCK_NONBLOCK
    } else {
        ty
    };
    // SAFETY: the caller's arguments (plus SOCK_NONBLOCK).
    let fd = unsafe { real::socket(domain, ty_real, proto) };
    if fd >= 0 {
        record_socket(fd, user_nb, in_task && !user_nb);
    }
    fd
}

fn record_socket(fd: c_int, user_nb: bool, ivy_nb: bool) {
    let mut state = SOCKET;
    if user_nb {
        state |= USER_NONBLOCK;
    }
    if ivy_nb {
        state |= IVY_NONBLOCK;
    }
    fdtable::set(
        fd,
        Entry {
            state,
            ..Entry::default()
        },
    );
}

/// `accept(2)`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { accept_as(fd, addr, len, 0, false) }
}

/// `accept4(2)`.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { accept_as(fd, addr, len, flags, true) }
}

unsafe fn accept_as(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
    four: bool,
) -> c_int {
    if !services::any() {
        return if four {
            // SAFETY: the caller's arguments.
            unsafe { real::accept4(fd, addr, len, flags) }
        } else {
            // SAFETY: the caller's arguments.
            unsafe { real::accept(fd, addr, len) }
        };
    }
    let in_task = services::current().is_some();
    let user_nb = flags & libc::SOCK_NONBLOCK != 0;
    // In a task the accepted socket is made non-blocking at once (one syscall
    // fewer at its first use).
    let real_flags = if in_task {
        flags | libc::SOCK_NONBLOCK
    } else {
        flags
    };
    let r = drive(fd, Dir::Read, b"accept\0", false, || {
        // SAFETY: the caller's arguments.
        (unsafe { real::accept4(fd, addr, len, real_flags) }) as isize
    }) as c_int;
    if r >= 0 {
        record_socket(r, user_nb, in_task && !user_nb);
    }
    r
}

/// `connect(2)`: in a task, a non-blocking connect, a park until the socket is
/// writable (or `SO_SNDTIMEO` passes: `EINPROGRESS`, as Linux says), then
/// `SO_ERROR`.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the caller's arguments.
    let r = unsafe { connect_in(fd, addr, len) };
    r as c_int
}

unsafe fn connect_in(fd: c_int, addr: *const sockaddr, len: socklen_t) -> isize {
    let attempt = || {
        // SAFETY: the caller's arguments.
        (unsafe { real::connect(fd, addr, len) }) as isize
    };
    if !services::any() {
        return attempt();
    }
    let svc = services::current();
    let e = match svc {
        Some(_) => {
            let e = classify(fd);
            if e.kind() == SOCKET && !e.user_nonblock() {
                fdio::ensure_nonblocking(fd, e)
            } else {
                e
            }
        }
        None => fdtable::get(fd),
    };
    if !(e.kind() == SOCKET && e.ivy_nonblock() && !e.user_nonblock()) {
        return attempt();
    }
    let deadline = services::deadline_after_us(e.snd_us);
    let mut r = attempt();
    // A Unix-domain socket whose listener's backlog is full says EAGAIN (a
    // blocking connect would wait on the *listener*, which no poll of this
    // socket reports): retry with a growing pause, as long as a blocking
    // connect would wait.
    let mut pause_ns: i64 = 1_000_000;
    while r < 0 && errno::get() == libc::EAGAIN {
        let now = services::now_ns();
        if deadline >= 0 && now >= deadline {
            return fail(libc::EAGAIN);
        }
        let mut until = now.saturating_add(pause_ns);
        if deadline >= 0 {
            until = until.min(deadline);
        }
        pause_ns = (pause_ns * 2).min(16_000_000);
        let w = match svc {
            Some(s) => (s.sleep_until)(until),
            None => {
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: until.saturating_sub(now),
                };
                // SAFETY: a valid timespec (under a second).
                unsafe { real::nanosleep(&ts, std::ptr::null_mut()) };
                0
            }
        };
        if w != 0 {
            return fail(w);
        }
        r = attempt();
    }
    if r == 0 || errno::get() != libc::EINPROGRESS {
        return r;
    }
    match svc {
        Some(s) => match (s.wait_fd)(fd, libc::POLLOUT, deadline) {
            0 => {}
            libc::ETIME => return fail(libc::EINPROGRESS),
            err => return fail(err),
        },
        None => match fdio::poll_thread(fd, libc::POLLOUT, deadline) {
            Ok(true) => {}
            Ok(false) => return fail(libc::EINPROGRESS),
            Err(err) => return fail(err),
        },
    }
    let mut err: c_int = 0;
    let mut elen = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: `err` and `elen` are valid out-parameters of the right size.
    let g = unsafe {
        real::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut c_int).cast(),
            &mut elen,
        )
    };
    if g < 0 {
        return -1;
    }
    if err != 0 {
        return fail(err);
    }
    0
}

/// `setsockopt(2)`: `SO_RCVTIMEO` / `SO_SNDTIMEO` are recorded (after the
/// kernel accepted them) as the deadlines of the socket's hooked calls.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: the caller's arguments.
    let r = unsafe { real::setsockopt(fd, level, name, val, len) };
    if r == 0
        && level == libc::SOL_SOCKET
        && (name == libc::SO_RCVTIMEO || name == libc::SO_SNDTIMEO)
        && len as usize >= std::mem::size_of::<libc::timeval>()
        && !val.is_null()
    {
        // SAFETY: the kernel just read a timeval from `val`.
        let tv = unsafe { std::ptr::read_unaligned(val.cast::<libc::timeval>()) };
        let us = (tv.tv_sec as u64)
            .saturating_mul(1_000_000)
            .saturating_add(tv.tv_usec as u64);
        fdtable::set_timeout(fd, name == libc::SO_RCVTIMEO, us);
    }
    r
}

/// What a `getaddrinfo` job shares with the task that waits for it.
struct Lookup {
    node: Option<std::ffi::CString>,
    service: Option<std::ffi::CString>,
    hints: Option<libc::addrinfo>,
    /// (return code, list, errno), or `abandoned` once the task gave up.
    out: Mutex<LookupOut>,
}

#[derive(Default)]
struct LookupOut {
    done: Option<(c_int, usize, c_int)>,
    abandoned: bool,
}

// SAFETY: the hints' pointers are only read by the job, while the task that
// lent them is parked waiting for it; after an interruption they are not used
// (see `getaddrinfo`).
unsafe impl Send for Lookup {}
// SAFETY: as above; `out` is behind a mutex.
unsafe impl Sync for Lookup {}

unsafe extern "C" fn lookup_job(arg: *mut c_void) {
    // SAFETY: `arg` is the `Arc<Lookup>` leaked for this job by `getaddrinfo`.
    let job = unsafe { Arc::from_raw(arg as *const Lookup) };
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    let hints = job
        .hints
        .as_ref()
        .map_or(std::ptr::null(), |h| h as *const libc::addrinfo);
    // SAFETY: NUL-terminated copies of the caller's strings, a copy of its
    // hints, a valid out-parameter.
    let rc = unsafe {
        real::getaddrinfo(
            job.node.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            job.service
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr()),
            hints,
            &mut res,
        )
    };
    let err = errno::get();
    let mut out = job.out.lock().unwrap_or_else(|e| e.into_inner());
    if out.abandoned {
        if rc == 0 && !res.is_null() {
            // SAFETY: the list getaddrinfo just returned; nobody else has it.
            unsafe { libc::freeaddrinfo(res) };
        }
    } else {
        out.done = Some((rc, res as usize, err));
    }
}

/// `getaddrinfo(3)`: in a task, the real lookup runs on ivy's blocking pool
/// while the task parks. An interruption returns `EAI_SYSTEM` with `errno`
/// `ECANCELED` / `ETIMEDOUT`; the lookup finishes on the pool and its result is
/// freed there.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    let Some(s) = services::current() else {
        // SAFETY: the caller's arguments.
        return unsafe { real::getaddrinfo(node, service, hints, res) };
    };
    if res.is_null() {
        // SAFETY: the caller's arguments (the real call reports the misuse).
        return unsafe { real::getaddrinfo(node, service, hints, res) };
    }
    // SAFETY: non-null arguments are NUL-terminated strings (the C contract).
    let copy = |p: *const c_char| (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_owned());
    let hints_copy = if hints.is_null() {
        None
    } else {
        // SAFETY: a non-null `hints` points to an addrinfo (the C contract).
        let mut h = unsafe { *hints };
        // Only the four hint fields matter; the rest must be zero/null.
        h.ai_addrlen = 0;
        h.ai_addr = std::ptr::null_mut();
        h.ai_canonname = std::ptr::null_mut();
        h.ai_next = std::ptr::null_mut();
        Some(h)
    };
    let job = Arc::new(Lookup {
        node: copy(node),
        service: copy(service),
        hints: hints_copy,
        out: Mutex::new(LookupOut::default()),
    });
    let arg = Arc::into_raw(job.clone()) as *mut c_void;
    // SAFETY: `lookup_job` takes the leaked Arc back exactly once.
    let rc = unsafe { (s.run_blocking)(lookup_job, arg) };
    let mut out = job.out.lock().unwrap_or_else(|e| e.into_inner());
    match (rc, out.done.take()) {
        (_, Some((code, list, err))) => {
            // Finished (even if the wait was interrupted at the last moment).
            // SAFETY: `res` is a valid out-parameter (checked non-null).
            unsafe { *res = list as *mut libc::addrinfo };
            errno::set(err);
            code
        }
        (0, None) => {
            // The pool never ran it (it could not start a thread).
            errno::set(libc::EAGAIN);
            libc::EAI_AGAIN
        }
        (err, None) => {
            out.abandoned = true;
            errno::set(err);
            libc::EAI_SYSTEM
        }
    }
}
