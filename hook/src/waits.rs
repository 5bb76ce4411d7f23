//! Multiplexing: `poll ppoll select` (and the fortified `__poll_chk`,
//! `__ppoll_chk`).
//!
//! In a task, a call with a timeout looks first (the real call with a zero
//! timeout); if nothing is ready, the task parks on its worker's reactor
//! until one of the fds is ready (ivy's multi-fd wait) or the timeout passes,
//! then the real call with a zero timeout fills in exactly what the caller
//! asked (`revents`, the fd sets): ivy only decides *when* to look, the kernel
//! still answers. A zero timeout is straight through, charged to the task's
//! cooperative budget first (`Services::charge_io`: a task polling in a loop
//! yields now and then). `ppoll` with a
//! signal mask cannot be emulated (the mask must be swapped atomically with
//! the wait) and blocks the worker; debug mode says so.

use libc::{c_int, nfds_t, pollfd, size_t, timespec};

use crate::errno;
use crate::real;
use crate::services::{self, Services};

/// A zero-timeout look from a task, charged to its budget
/// (`Services::charge_io`): `Err(-1)` with errno set when the yield that a spent
/// budget makes reported an interruption.
fn charge(s: &Services) -> Result<(), c_int> {
    match (s.charge_io)() {
        0 => Ok(()),
        err => {
            errno::set(err);
            Err(-1)
        }
    }
}

/// `poll(2)`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int {
    if !services::any() {
        // SAFETY: the caller's arguments.
        return unsafe { real::poll(fds, n, timeout) };
    }
    let Some(s) = services::current() else {
        // SAFETY: the caller's arguments.
        return unsafe { real::poll(fds, n, timeout) };
    };
    if timeout == 0 {
        // A look that never waits: charged, so that a task polling in a loop
        // still lets the others of its worker run (`Services::charge_io`).
        if let Err(e) = charge(s) {
            return e;
        }
        // SAFETY: the caller's arguments.
        return unsafe { real::poll(fds, n, timeout) };
    }
    let deadline = if timeout < 0 {
        -1
    } else {
        services::now_ns().saturating_add(timeout as i64 * 1_000_000)
    };
    // SAFETY: the caller's array of `n` pollfds.
    unsafe { poll_in_task(s, fds, n, deadline) }
}

/// `ppoll(2)`.
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: *const timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let Some(s) = services::current() else {
        // SAFETY: the caller's arguments.
        return unsafe { real::ppoll(fds, n, timeout, mask) };
    };
    if !mask.is_null() {
        services::report(
            s,
            b"ppoll\0",
            b"a signal mask, swapped atomically with the wait: such calls never park\0",
        );
        // SAFETY: the caller's arguments.
        return unsafe { real::ppoll(fds, n, timeout, mask) };
    }
    let deadline = if timeout.is_null() {
        -1
    } else {
        // SAFETY: a non-null timeout points to a timespec (the C contract).
        let ts = unsafe { *timeout };
        if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
            // SAFETY: the caller's arguments; the kernel reports EINVAL.
            return unsafe { real::ppoll(fds, n, timeout, mask) };
        }
        if ts.tv_sec == 0 && ts.tv_nsec == 0 {
            if let Err(e) = charge(s) {
                return e;
            }
            // SAFETY: the caller's arguments.
            return unsafe { real::ppoll(fds, n, timeout, mask) };
        }
        services::now_ns()
            .saturating_add(ts.tv_sec.saturating_mul(1_000_000_000))
            .saturating_add(ts.tv_nsec)
    };
    // SAFETY: the caller's array of `n` pollfds.
    unsafe { poll_in_task(s, fds, n, deadline) }
}

/// glibc's fortified `poll`.
#[no_mangle]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: c_int,
    fdslen: size_t,
) -> c_int {
    if (fdslen / std::mem::size_of::<pollfd>()) < n as usize {
        // SAFETY: glibc's own check reports the overflow and aborts.
        return unsafe { real::poll_chk_fail(fds, n, timeout, fdslen) };
    }
    // SAFETY: the caller's arguments.
    unsafe { poll(fds, n, timeout) }
}

/// glibc's fortified `ppoll`.
#[no_mangle]
pub unsafe extern "C" fn __ppoll_chk(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: *const timespec,
    mask: *const libc::sigset_t,
    fdslen: size_t,
) -> c_int {
    if (fdslen / std::mem::size_of::<pollfd>()) < n as usize {
        // SAFETY: as in `__poll_chk`.
        return unsafe { real::ppoll_chk_fail(fds, n, timeout, mask, fdslen) };
    }
    // SAFETY: the caller's arguments.
    unsafe { ppoll(fds, n, timeout, mask) }
}

/// The task's `poll` until `deadline_ns` (-1: none): look, park, look.
/// ivy's wait knows readable and writable only: an entry asking for
/// something else (`POLLPRI` alone) can make it report "ready" while the real
/// look finds nothing. Such a spurious wake-up is followed by a 1 ms sleep
/// before the next wait, so the call never spins.
unsafe fn poll_in_task(s: &Services, fds: *mut pollfd, n: nfds_t, deadline_ns: i64) -> c_int {
    let mut woken = false;
    loop {
        // SAFETY: the caller's array.
        let r = unsafe { real::poll(fds, n, 0) };
        if r != 0 {
            return r;
        }
        let now = services::now_ns();
        if deadline_ns >= 0 && now >= deadline_ns {
            return 0;
        }
        if std::mem::take(&mut woken) {
            let pause = now.saturating_add(1_000_000);
            let until = if deadline_ns >= 0 {
                pause.min(deadline_ns)
            } else {
                pause
            };
            match (s.sleep_until)(until) {
                0 => continue,
                err => {
                    errno::set(err);
                    return -1;
                }
            }
        }
        woken = true;
        let w = if n == 0 {
            // poll(NULL, 0, timeout): a sleep.
            (s.sleep_until)(if deadline_ns < 0 {
                i64::MAX
            } else {
                deadline_ns
            })
        } else {
            // SAFETY: the caller's array of `n` pollfds, read only.
            unsafe { (s.poll)(fds, n, deadline_ns) }
        };
        match w {
            0 if n == 0 => return 0,
            0 => {}
            libc::ETIME => {
                // SAFETY: the caller's array: one last look fills revents.
                return unsafe { real::poll(fds, n, 0) };
            }
            err => {
                errno::set(err);
                return -1;
            }
        }
    }
}

/// `select(2)`.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut libc::timeval,
) -> c_int {
    let svc = services::current();
    let zero = !tv.is_null() && {
        // SAFETY: a non-null timeout points to a timeval (the C contract).
        let t = unsafe { *tv };
        t.tv_sec == 0 && t.tv_usec == 0
    };
    if let (Some(s), true) = (svc, zero) {
        if let Err(e) = charge(s) {
            return e;
        }
    }
    let Some(s) = svc.filter(|_| !zero && (0..=libc::FD_SETSIZE as c_int).contains(&nfds)) else {
        // SAFETY: the caller's arguments.
        return unsafe { real::select(nfds, r, w, e, tv) };
    };
    let deadline = if tv.is_null() {
        -1
    } else {
        // SAFETY: as above.
        let t = unsafe { *tv };
        if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
            // SAFETY: the caller's arguments; the kernel reports EINVAL.
            return unsafe { real::select(nfds, r, w, e, tv) };
        }
        services::now_ns()
            .saturating_add(t.tv_sec.saturating_mul(1_000_000_000))
            .saturating_add(t.tv_usec * 1000)
    };
    // The sets as given: each look starts from them.
    // SAFETY: non-null sets are valid fd_sets (the C contract).
    let given = [r, w, e].map(|p| (!p.is_null()).then(|| unsafe { *p }));
    let mut pfds = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        let has = |set: &Option<libc::fd_set>| {
            set.as_ref().is_some_and(|s| {
                // SAFETY: `fd < nfds <= FD_SETSIZE`, within the set.
                unsafe { libc::FD_ISSET(fd, s) }
            })
        };
        if has(&given[0]) {
            events |= libc::POLLIN;
        }
        if has(&given[1]) {
            events |= libc::POLLOUT;
        }
        if has(&given[2]) {
            events |= libc::POLLPRI;
        }
        if events != 0 {
            pfds.push(pollfd {
                fd,
                events,
                revents: 0,
            });
        }
    }
    loop {
        for (p, g) in [r, w, e].into_iter().zip(&given) {
            if let Some(g) = g {
                // SAFETY: `p` is the caller's non-null set.
                unsafe { *p = *g };
            }
        }
        let mut now = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: the caller's sets and a zero timeout.
        let n = unsafe { real::select(nfds, r, w, e, &mut now) };
        if n != 0 {
            set_left(tv, deadline);
            return n;
        }
        if deadline >= 0 && services::now_ns() >= deadline {
            set_left(tv, deadline);
            return 0;
        }
        let wres = if pfds.is_empty() {
            (s.sleep_until)(if deadline < 0 { i64::MAX } else { deadline })
        } else {
            // SAFETY: a valid array of pfds.len() pollfds.
            unsafe { (s.poll)(pfds.as_ptr(), pfds.len() as nfds_t, deadline) }
        };
        match wres {
            0 if pfds.is_empty() => {
                set_left(tv, deadline);
                return 0;
            }
            0 | libc::ETIME => {}
            err => {
                errno::set(err);
                return -1;
            }
        }
    }
}

/// Linux's `select` leaves the time not slept in the timeout.
fn set_left(tv: *mut libc::timeval, deadline: i64) {
    if tv.is_null() || deadline < 0 {
        return;
    }
    let left = deadline.saturating_sub(services::now_ns()).max(0);
    // SAFETY: the caller's non-null timeval.
    unsafe {
        *tv = libc::timeval {
            tv_sec: left / 1_000_000_000,
            tv_usec: (left % 1_000_000_000) / 1000,
        }
    };
}
