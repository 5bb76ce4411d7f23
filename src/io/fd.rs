//! Waiting for readiness of fds the caller owns (foreign fds), and the `poll(2)`
//! fallback that plain threads use for every ivy socket.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use super::registration::{Registration, WaitError, READABLE, WRITABLE};
use crate::park;
use crate::scope;

/// Blocks the calling *thread* in `poll(2)` until `fd` is ready for a direction in
/// `mask`, until `deadline`, or until the thread's `ivy::timeout` scope deadline.
/// Returns the ready bits (error and hang-up conditions count as both directions,
/// so the caller's next operation reports them).
pub(crate) fn poll_thread(
    fd: RawFd,
    mask: usize,
    deadline: Option<Instant>,
) -> Result<usize, WaitError> {
    let mut events: libc::c_short = 0;
    if mask & READABLE != 0 {
        events |= libc::POLLIN;
    }
    if mask & WRITABLE != 0 {
        events |= libc::POLLOUT;
    }
    loop {
        park::check_interrupt()?;
        let scope_deadline = scope::current_deadline();
        let until = match (deadline, scope_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        let timeout_ms: libc::c_int = match until {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    0
                } else {
                    // Round up so we never wake before the deadline.
                    left.as_millis().saturating_add(1).min(i32::MAX as u128) as libc::c_int
                }
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length 1 that we own for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(WaitError::Io(e));
        }
        if n > 0 {
            if pfd.revents & libc::POLLNVAL != 0 {
                return Err(WaitError::Io(io::Error::from_raw_os_error(libc::EBADF)));
            }
            let mut ready = 0;
            if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0 {
                ready |= READABLE;
            }
            if pfd.revents & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0 {
                ready |= WRITABLE;
            }
            let ready = ready & mask;
            if ready != 0 {
                return Ok(ready);
            }
            continue;
        }
        // Timed out: whose deadline was it?
        park::check_interrupt()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(WaitError::TimedOut);
        }
    }
}

/// Waits until the foreign `fd` is ready for a direction in `mask`; returns the
/// ready bits. In a task: a temporary registration with the task's worker poll
/// (on a `dup` of the fd if the fd itself is already registered there), removed
/// before returning; the caller's fd is never closed. On a thread: `poll(2)`.
pub(crate) fn wait_fd(
    fd: RawFd,
    mask: usize,
    deadline: Option<Instant>,
) -> Result<usize, WaitError> {
    if fd < 0 {
        return Err(WaitError::Io(io::Error::from_raw_os_error(libc::EBADF)));
    }
    if mask & (READABLE | WRITABLE) == 0 {
        return Err(WaitError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ivy: wait on an fd needs readable and/or writable interest",
        )));
    }
    if !crate::runtime::worker::in_task() {
        return poll_thread(fd, mask, deadline);
    }
    // Not optimistic: the poll reports the fd's current readiness when it is
    // added (edge-triggered registration of a ready fd yields an event at once).
    let reg = Registration::with_readiness(fd, 0);
    match reg.wait(mask, deadline) {
        Err(WaitError::Io(e)) if e.raw_os_error() == Some(libc::EEXIST) => {
            drop(reg);
            wait_dup(fd, mask, deadline)
        }
        // epoll refuses regular files and directories (EPERM); poll(2) reports
        // them always ready, and so do we.
        Err(WaitError::Io(e)) if e.raw_os_error() == Some(libc::EPERM) => Ok(mask),
        r => r,
    }
}

/// `wait_fd` on a duplicate of `fd`: epoll keys registrations by (file, fd), so
/// the duplicate can be registered while `fd` itself is (by ivy or by C code).
fn wait_dup(fd: RawFd, mask: usize, deadline: Option<Instant>) -> Result<usize, WaitError> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; an invalid fd gives EBADF.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(WaitError::Io(io::Error::last_os_error()));
    }
    let reg = Registration::with_readiness(dup, 0);
    let r = reg.wait(mask, deadline);
    drop(reg); // deregisters before the close below
               // SAFETY: `dup` is our own descriptor from fcntl above, closed exactly once.
    unsafe { libc::close(dup) };
    r
}
