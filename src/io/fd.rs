//! Waiting for readiness of fds the caller owns (foreign fds), and the `poll(2)`
//! fallback that plain threads use for every ivy socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use super::registration::{Registration, READABLE, WRITABLE};
use crate::cancel_scope as scope;
use crate::error::WaitError;
use crate::park;

/// The `poll(2)` events asking for the directions in `mask`.
fn poll_events(mask: usize) -> libc::c_short {
    let mut events: libc::c_short = 0;
    if mask & READABLE != 0 {
        events |= libc::POLLIN;
    }
    if mask & WRITABLE != 0 {
        events |= libc::POLLOUT;
    }
    events
}

/// The ready bits of `poll(2)`'s `revents` (error and hang-up count as both
/// directions, so the caller's next operation reports them), within `mask`;
/// `EBADF` for a descriptor that is not open (`POLLNVAL`).
fn poll_ready(revents: libc::c_short, mask: usize) -> io::Result<usize> {
    if revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let mut ready = 0;
    if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0 {
        ready |= READABLE;
    }
    if revents & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0 {
        ready |= WRITABLE;
    }
    Ok(ready & mask)
}

/// The `poll(2)` timeout that waits until `until` (`-1`: no limit), rounded up
/// so that the call never returns before it.
pub(crate) fn poll_timeout(until: Option<Instant>) -> libc::c_int {
    match until {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                0
            } else {
                left.as_millis().saturating_add(1).min(i32::MAX as u128) as libc::c_int
            }
        }
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// One non-blocking look at `fd` (`poll(2)` with a zero timeout): the bits of
/// `mask` it is ready for now, `0` if none.
fn poll_now(fd: RawFd, mask: usize) -> io::Result<usize> {
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: poll_events(mask),
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length 1 that we own for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return if n == 0 {
            Ok(0)
        } else {
            poll_ready(pfd.revents, mask)
        };
    }
}

/// Blocks the calling *thread* in `poll(2)` until `fd` is ready for a direction in
/// `mask`, until `deadline`, or until the thread's `ivy::timeout` scope deadline.
/// Returns the ready bits (error and hang-up conditions count as both directions,
/// so the caller's next operation reports them).
pub(crate) fn poll_thread(fd: RawFd, mask: usize, deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        park::check_interrupt()?;
        let timeout_ms = poll_timeout(earliest(deadline, scope::current_deadline()));
        let mut pfd = libc::pollfd {
            fd,
            events: poll_events(mask),
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length 1 that we own for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n > 0 {
            let ready = poll_ready(pfd.revents, mask)?;
            if ready != 0 {
                return Ok(ready);
            }
            continue;
        }
        // Timed out: whose deadline was it?
        park::check_interrupt()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(WaitError::TimedOut.into());
        }
    }
}

/// Waits until the foreign `fd` is ready for a direction in `mask`; returns the
/// ready bits. In a task: a temporary registration of a duplicate of `fd` with
/// the task's worker poll, removed (and the duplicate closed) before returning;
/// the caller's fd is never closed, and closing it meanwhile (C code may) only
/// leaves the wait on the open file it named. On a thread: `poll(2)`.
pub(crate) fn wait_fd(fd: RawFd, mask: usize, deadline: Option<Instant>) -> io::Result<usize> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if mask & (READABLE | WRITABLE) == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ivy: wait on an fd needs readable and/or writable interest",
        ));
    }
    if !crate::task::current::in_task() {
        return poll_thread(fd, mask, deadline);
    }
    // A look before registering: a ready fd needs no registration (one syscall
    // instead of five), and a passed deadline makes the call a non-blocking try
    // that reports what is ready now. A fresh registration learns the fd's
    // readiness only when the worker next polls, which a passed deadline does
    // not wait for.
    park::check_interrupt()?;
    let ready = poll_now(fd, mask)?;
    if ready != 0 {
        return Ok(ready);
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(WaitError::TimedOut.into());
    }
    // Duplicates that met a stale epoll entry (see below), kept open so the
    // next duplicate gets another number.
    let mut refused = Vec::new();
    loop {
        let dup = match duplicate(fd) {
            Ok(dup) => Some(dup),
            // Out of fd numbers: register the caller's fd itself. Still sound
            // (tokens are checked); only a close of `fd` during the wait is then
            // not isolated from a later file reusing its number.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => None,
            Err(e) => return Err(e),
        };
        let target = dup.as_ref().map_or(fd, |d| d.as_raw_fd());
        // Not optimistic: the poll reports the fd's current readiness when it is
        // added (edge-triggered registration of a ready fd yields an event at once).
        let reg = Registration::with_readiness(target, 0);
        let r = reg.wait(mask, deadline);
        drop(reg); // deregisters before `dup` is closed
        match r {
            // epoll refuses regular files and directories (EPERM); poll(2) reports
            // them always ready, and so do we.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Ok(mask),
            // The number was free, so an entry (number, file) already in the poll
            // is a stale one: some registration whose fd number was closed
            // behind ivy's back while a dup kept the file open. Its token names
            // nothing; try another number.
            Err(e)
                if e.raw_os_error() == Some(libc::EEXIST)
                    && dup.is_some()
                    && refused.len() < MAX_REFUSED =>
            {
                refused.push(dup);
            }
            r => return r,
        }
    }
}

/// Fresh numbers tried when a duplicate meets a stale epoll entry.
const MAX_REFUSED: usize = 8;

/// A close-on-exec duplicate of `fd`, owned by ivy.
fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; an invalid fd gives EBADF.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}
