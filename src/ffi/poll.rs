//! `ivy_fd_poll`: waiting on many foreign fds at once with one deadline, the C
//! face of `crate::io::poll::wait_fds_ready` (see its module comment for how a
//! task waits: a private epoll set registered with the worker's poll).
//!
//! Design decisions:
//! * **`poll(2)`'s shape** (`ivy_pollfd_t { fd, events, revents }`, a count of
//!   ready entries), so C code ports by renaming; but with ivy's bits
//!   (`IVY_READABLE`, `IVY_WRITABLE`, as `ivy_fd_wait`) and ivy's rules: a
//!   deadline, not a timeout, and the deadline passing is `IVY_ETIMEDOUT`
//!   (with `*nready = 0`), not a zero return, like every ivy blocking call.
//! * **Hang-up and error are reported, never asked for** (`IVY_HANGUP`,
//!   `IVY_ERROR`, like `POLLHUP` / `POLLERR`), and they also set the asked
//!   directions, so code that only looks at `IVY_READABLE` still reads and
//!   meets the end of file or the error.
//! * **Strict arguments**: a negative fd (which `poll(2)` skips) or an entry
//!   asking for nothing is `IVY_EINVAL`, as in `ivy_fd_wait`; an fd that is not
//!   open is `IVY_EBADF` for the call (`poll(2)` flags it `POLLNVAL`).

use std::os::raw::c_int;

use super::error::*;
use super::net::{net_error, IVY_READABLE, IVY_WRITABLE};
use super::time::to_instant;
use super::{guard, out_ptr, write_out};
use crate::io::poll::{wait_fds_ready, PollEntry, ERROR, HANGUP};
use crate::io::{READABLE, WRITABLE};

/// `ivy_fd_poll` revents bit: the peer hung up (a read reaches end of file:
/// the other end of a pipe or socket closed, or shut down its writing side).
/// Reported only, never asked for; comes with the asked directions set.
pub const IVY_HANGUP: c_int = 4;
/// `ivy_fd_poll` revents bit: the fd is in error (the next operation on it
/// reports which). Reported only, never asked for; comes with the asked
/// directions set.
pub const IVY_ERROR: c_int = 8;

/// One entry of `ivy_fd_poll`: an fd, the readiness asked for (`events`:
/// `IVY_READABLE | IVY_WRITABLE`, at least one) and, after the call, the
/// readiness found (`revents`: a subset of `events`, plus `IVY_HANGUP` /
/// `IVY_ERROR`; 0 if not ready).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_pollfd_t {
    pub fd: c_int,
    pub events: c_int,
    pub revents: c_int,
}

/// Waits until at least one of the `n` fds in `fds` is ready as asked, or
/// `deadline`; like `poll(2)` over ivy's reactor. Stores in every entry's
/// `revents` what it is ready for (0: not ready) and in `*nready` how many
/// entries are ready. Parks the task (its worker runs others); on a plain
/// thread it blocks in `poll(2)`. A passed deadline looks once without
/// waiting. The fds stay the caller's: none is closed, none keeps a
/// registration after the call, and closing one during the wait (from another
/// task or thread) disturbs nothing: its open file is still watched while a
/// dup keeps it open, and simply leaves the wait once closed for good. The
/// same fd may appear in several entries. With `n` 0 the call waits until the
/// deadline (`fds` may then be NULL).
///
/// Returns 0 when at least one entry is ready. On every error but
/// `IVY_EINVAL`, `*nready` and every `revents` are 0. Errors: `IVY_ETIMEDOUT`
/// (the deadline passed with nothing ready), `IVY_ECANCELED` (the task was
/// cancelled), `IVY_EINVAL` (`nready` NULL, `fds` NULL with `n` > 0, a
/// negative fd, an entry whose `events` is 0 or has bits other than
/// `IVY_READABLE | IVY_WRITABLE`, a bad deadline: nothing is written; also
/// `n` above the process's fd limit, `RLIMIT_NOFILE`, as for `poll(2)`),
/// `IVY_EBADF` (an fd is not open), other OS errors as `-errno`.
///
/// # Safety
/// `fds` is `NULL` or valid for reads and writes of `n` entries, not used by
/// anything else during the call; `nready` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn ivy_fd_poll(
    fds: *mut ivy_pollfd_t,
    n: usize,
    nready: *mut usize,
    deadline: i64,
) -> c_int {
    guard(|| {
        let nready = out_ptr(nready)?;
        if fds.is_null() && n > 0 {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        let fds: &mut [ivy_pollfd_t] = if n == 0 {
            &mut []
        } else {
            // SAFETY: non-null and valid for `n` entries, exclusively ours for
            // the call (the caller's contract).
            unsafe { std::slice::from_raw_parts_mut(fds, n) }
        };
        let all = IVY_READABLE | IVY_WRITABLE;
        let mut entries = Vec::with_capacity(fds.len());
        for f in fds.iter() {
            if f.fd < 0 || f.events & all == 0 || f.events & !all != 0 {
                return Err(IVY_EINVAL);
            }
            let mut interest = 0;
            if f.events & IVY_READABLE != 0 {
                interest |= READABLE;
            }
            if f.events & IVY_WRITABLE != 0 {
                interest |= WRITABLE;
            }
            entries.push(PollEntry {
                fd: f.fd,
                interest,
                ready: 0,
            });
        }
        let result = wait_fds_ready(&mut entries, d).map_err(net_error);
        if result == Err(IVY_EINVAL) {
            return result.map(drop); // nothing written, as for the checks above
        }
        let mut count = 0;
        for (f, e) in fds.iter_mut().zip(&entries) {
            let ready = if result.is_ok() { e.ready } else { 0 };
            f.revents = [
                (READABLE, IVY_READABLE),
                (WRITABLE, IVY_WRITABLE),
                (HANGUP, IVY_HANGUP),
                (ERROR, IVY_ERROR),
            ]
            .iter()
            .filter(|(bit, _)| ready & bit != 0)
            .fold(0, |acc, (_, c)| acc | c);
            if f.revents != 0 {
                count += 1;
            }
        }
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(nready, count) };
        result.map(drop)
    })
}
