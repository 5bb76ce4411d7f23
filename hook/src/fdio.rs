//! The one driver under every hooked data call (`read`, `recv`, `send`,
//! `accept`, ...): how a call on an fd proceeds inside and outside a task.
//!
//! Inside a task, by the fd's entry (`fdtable`):
//! * a socket the user made non-blocking, or a call with `MSG_DONTWAIT`:
//!   straight through;
//! * any other socket: ensured `O_NONBLOCK` (ivy's, hidden from the user);
//!   the call is tried, and on `EAGAIN` the task parks on its worker's reactor
//!   until the fd is ready (or `SO_RCVTIMEO` / `SO_SNDTIMEO` passes: `EAGAIN`,
//!   as Linux says), then tries again;
//! * a regular file (always "ready" to poll, never `EAGAIN`): straight
//!   through, the worker blocks, and debug mode says so once;
//! * other fds (pipes, fifos, ttys, eventfds): left as they are. A look
//!   (`poll` with a zero timeout); when not ready and the user's flags are
//!   blocking, the task parks until the fd is ready, then calls. Why not flip
//!   `O_NONBLOCK` as for sockets: see `fdtable`. The cost: a second reader of
//!   the same pipe may win the data between the wake-up and the call, and then
//!   the call blocks its worker (writes are cut to `PIPE_BUF` pieces, which a
//!   writable pipe always takes whole, so they do not).
//!
//! Every call from a task is first charged to the task's cooperative budget
//! (`Services::charge_io`): when it is spent the task yields once, so a task
//! whose calls never wait (a socket that always has data, a non-blocking
//! socket polled in a loop) still lets the other tasks of its worker run, and
//! sees its cancellation.
//!
//! Outside a task: straight through, except on a socket ivy made non-blocking,
//! where blocking is emulated (the real `poll(2)`, then retry), honouring the
//! socket timeouts, so a thread sees what it would have seen without ivy.

use libc::{c_int, c_short};

use crate::errno;
use crate::fdtable::{self, Entry, FILE, IVY_NONBLOCK, OTHER, SOCKET, UNKNOWN, USER_NONBLOCK};
use crate::real;
use crate::services::{self, Services};

/// Direction of a call: what it waits for, and which socket timeout bounds it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Read,
    Write,
}

impl Dir {
    fn events(self) -> c_short {
        match self {
            Dir::Read => libc::POLLIN,
            Dir::Write => libc::POLLOUT,
        }
    }
    fn timeout_us(self, e: &Entry) -> u64 {
        match self {
            Dir::Read => e.rcv_us,
            Dir::Write => e.snd_us,
        }
    }
}

/// Looks at an fd without an entry, once, from inside a task: a socket gets
/// `O_NONBLOCK` (remembering whether the user had it), a regular file or a
/// directory is `FILE`, the rest `OTHER`. An fd that is not open stays unknown
/// (the real call then reports `EBADF`).
pub(crate) fn classify(fd: c_int) -> Entry {
    let e = fdtable::get(fd);
    if e.kind() != UNKNOWN {
        return e;
    }
    let saved = errno::get();
    // SAFETY: all-zero is a valid `stat`, filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-parameter.
    if unsafe { real::fstat(fd, &mut st) } != 0 {
        errno::set(saved);
        return e;
    }
    let fmt = st.st_mode & libc::S_IFMT;
    let state = if fmt == libc::S_IFSOCK {
        // SAFETY: F_GETFL takes no argument.
        let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
        if flags < 0 {
            errno::set(saved);
            return e;
        }
        if flags & libc::O_NONBLOCK != 0 {
            SOCKET | USER_NONBLOCK
        } else {
            // SAFETY: F_SETFL with an int of flags.
            if unsafe { real::fcntl(fd, libc::F_SETFL, (flags | libc::O_NONBLOCK) as usize) } < 0 {
                errno::set(saved);
                return e;
            }
            SOCKET | IVY_NONBLOCK
        }
    } else if fmt == libc::S_IFREG || fmt == libc::S_IFDIR || fmt == libc::S_IFBLK {
        FILE
    } else {
        OTHER
    };
    fdtable::set_state_if(fd, UNKNOWN, state);
    errno::set(saved);
    fdtable::get(fd)
}

/// Makes sure a socket the user sees as blocking is non-blocking underneath
/// (a socket recorded outside a task, or set back to blocking by the user
/// before ivy adopted it). Returns the entry to go on with.
pub(crate) fn ensure_nonblocking(fd: c_int, e: Entry) -> Entry {
    if e.user_nonblock() || e.ivy_nonblock() {
        return e;
    }
    let saved = errno::get();
    // SAFETY: F_GETFL takes no argument.
    let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
    if flags >= 0 {
        if flags & libc::O_NONBLOCK != 0 {
            fdtable::update(fd, USER_NONBLOCK, 0);
        // SAFETY: F_SETFL with an int of flags.
        } else if unsafe { real::fcntl(fd, libc::F_SETFL, (flags | libc::O_NONBLOCK) as usize) }
            == 0
        {
            fdtable::update(fd, IVY_NONBLOCK, 0);
        }
    }
    errno::set(saved);
    fdtable::get(fd)
}

fn would_block(r: isize) -> bool {
    r < 0 && matches!(errno::get(), libc::EAGAIN)
}

/// Runs `op` (the real call, returning `-1` + errno on failure) as the hook
/// decides for `fd` (see the module comment). `name` (NUL-terminated) names the
/// call in debug reports; `dontwait`: the caller asked for `MSG_DONTWAIT`.
#[inline]
pub(crate) fn drive(
    fd: c_int,
    dir: Dir,
    name: &'static [u8],
    dontwait: bool,
    mut op: impl FnMut() -> isize,
) -> isize {
    if !services::any() {
        return op();
    }
    match services::current() {
        Some(s) => {
            // Every call from a task, waiting or not, is charged: one that never
            // waits must still let the other tasks of its worker run.
            let charged = (s.charge_io)();
            if charged != 0 {
                return fail(charged);
            }
            if dontwait {
                return op();
            }
            inside(s, fd, dir, name, op)
        }
        None if dontwait => op(),
        None => outside(fd, dir, &mut op),
    }
}

fn inside(
    s: &Services,
    fd: c_int,
    dir: Dir,
    name: &'static [u8],
    mut op: impl FnMut() -> isize,
) -> isize {
    let e = classify(fd);
    match e.kind() {
        SOCKET => {
            if e.user_nonblock() {
                return op();
            }
            let e = ensure_nonblocking(fd, e);
            if !e.ivy_nonblock() {
                return op();
            }
            let mut deadline = None;
            loop {
                let r = op();
                if !would_block(r) {
                    return r;
                }
                let d = *deadline
                    .get_or_insert_with(|| services::deadline_after_us(dir.timeout_us(&e)));
                match (s.wait_fd)(fd, dir.events(), d) {
                    0 => continue,
                    libc::ETIME => return fail(libc::EAGAIN),
                    err => return fail(err),
                }
            }
        }
        FILE => {
            services::report(s, name, b"a regular file: such calls never park\0");
            op()
        }
        OTHER => loop {
            let mut pfd = libc::pollfd {
                fd,
                events: dir.events(),
                revents: 0,
            };
            let saved = errno::get();
            // SAFETY: one valid pollfd.
            let n = unsafe { real::poll(&mut pfd, 1, 0) };
            errno::set(saved);
            if n != 0 {
                // Ready, in error, or not open: the call reports which.
                return op();
            }
            // SAFETY: F_GETFL takes no argument.
            let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
            errno::set(saved);
            if flags < 0 || flags & libc::O_NONBLOCK != 0 {
                return op();
            }
            match (s.wait_fd)(fd, dir.events(), -1) {
                0 => continue,
                err => return fail(err),
            }
        },
        _ => op(),
    }
}

/// Outside a task: blocking emulated on a socket ivy made non-blocking.
fn outside(fd: c_int, dir: Dir, op: &mut impl FnMut() -> isize) -> isize {
    let e = fdtable::get(fd);
    if !(e.kind() == SOCKET && e.ivy_nonblock() && !e.user_nonblock()) {
        return op();
    }
    let deadline = services::deadline_after_us(dir.timeout_us(&e));
    loop {
        let r = op();
        if !would_block(r) {
            return r;
        }
        match poll_thread(fd, dir.events(), deadline) {
            Ok(true) => continue,
            Ok(false) => return fail(libc::EAGAIN),
            Err(err) => return fail(err),
        }
    }
}

/// The real `poll(2)` on one fd until `deadline_ns` (-1: none): `Ok(true)`
/// ready, `Ok(false)` the deadline passed. `EINTR` restarts the wait (as
/// `SA_RESTART` restarts the blocking call it stands for).
pub(crate) fn poll_thread(fd: c_int, events: c_short, deadline_ns: i64) -> Result<bool, c_int> {
    loop {
        let timeout = ms_until(deadline_ns);
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { real::poll(&mut pfd, 1, timeout) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            if deadline_ns >= 0 && services::now_ns() >= deadline_ns {
                return Ok(false);
            }
            continue;
        }
        let err = errno::get();
        if err != libc::EINTR {
            return Err(err);
        }
    }
}

/// A `poll(2)` timeout reaching `deadline_ns` (rounded up; -1: none).
pub(crate) fn ms_until(deadline_ns: i64) -> c_int {
    if deadline_ns < 0 {
        return -1;
    }
    let left = deadline_ns.saturating_sub(services::now_ns());
    if left <= 0 {
        0
    } else {
        ((left + 999_999) / 1_000_000).min(c_int::MAX as i64) as c_int
    }
}

/// `-1` with `errno = err`.
#[inline]
pub(crate) fn fail(err: c_int) -> isize {
    errno::set(err);
    -1
}
