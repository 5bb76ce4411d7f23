//! Waiting on many foreign fds at once with one deadline (`ivy_fd_poll`): a
//! `poll(2)` over ivy's reactor.
//!
//! # A private epoll set, not one registration per fd
//! In a task, the fds are added to an epoll instance of the call's own (level
//! triggered, each entry naming its place in the caller's array), and only that
//! instance is registered with the worker's poll, as any fd ivy owns: the task
//! parks until the set is readable, then one `epoll_wait` with a zero timeout
//! collects every ready entry. Why this instead of one registration per fd
//! (duplicate, register, deregister, close, for each):
//!
//! * **Closing the set removes every entry.** An epoll entry belongs to the open
//!   file; when C closes an fd during the wait (and a dup keeps the file open),
//!   no `EPOLL_CTL_DEL` can reach that entry any more. In the private set that
//!   does not matter: closing the set drops all of its entries, whatever C did
//!   to its fds meanwhile, and no stale entry is left in the worker's poll. A
//!   file that is closed for good leaves the set by itself; the wait goes on
//!   for the others (as with `poll(2)`, which keeps the file for the call).
//! * **Cost**: `n + 6` syscalls for a wait that parks instead of `4n + 1`, and
//!   the worker's token table holds one entry per call, not `n`.
//! * **Nothing new in the reactor**: the wait is the same readiness protocol as
//!   every ivy socket (`Registration::do_io`: try `epoll_wait`, on nothing ready
//!   clear the bit and park), so no lost wake-up is possible that is not
//!   possible for a socket.
//!
//! # A look first
//! Every call starts with one `poll(2)` over all entries with a zero timeout:
//! a call that finds something ready costs one syscall and no registration, a
//! passed deadline makes the call a non-blocking try (the answer of that look),
//! and an fd that is not open is reported (`EBADF`) before any waiting.
//!
//! # Duplicates and files epoll refuses
//! The same fd may appear in several entries (as with `poll(2)`): the set holds
//! it once, asking for the union of their interests, and each entry gets its
//! own subset. epoll refuses regular files (`EPERM`); `poll(2)` reports them
//! always ready, and so does this.
//!
//! # Plain threads
//! Outside a task the call is `poll(2)`, until the deadline or the thread's
//! deadline scope.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use super::fd::{earliest, poll_timeout};
use super::registration::{Direction, Registration, READABLE, WRITABLE};
use crate::cancel_scope as scope;
use crate::error::WaitError;
use crate::park;

/// Ready bit of a poll entry: the peer hung up (a read reaches end of file).
/// Reported beside the asked bits, never asked for.
pub(crate) const HANGUP: usize = 0b0100;
/// Ready bit of a poll entry: the fd is in error. Reported, never asked for.
pub(crate) const ERROR: usize = 0b1000;

/// One fd of [`wait_fds_ready`]: its interest (`READABLE | WRITABLE`) and, after
/// the call, what it is ready for (the asked bits, plus `HANGUP` / `ERROR`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PollEntry {
    pub(crate) fd: RawFd,
    pub(crate) interest: usize,
    pub(crate) ready: usize,
}

/// Waits until at least one entry is ready or `deadline` passes; returns the
/// number of ready entries (at least 1) with each entry's `ready` filled (0 for
/// the others). In a task the task parks on its worker's poll (see the module
/// comment); on a plain thread it blocks in `poll(2)`. A passed deadline is a
/// non-blocking try. No entry is left registered anywhere when this returns,
/// and no fd of the caller's is closed.
///
/// Errors: `TimedOut` (the deadline passed, nothing ready; every `ready` 0),
/// `Cancelled` / `Elapsed` (the task was cancelled, the caller's scope passed),
/// `Io(InvalidInput)` (a negative fd, an interest that is empty or has other
/// bits), `Io(EBADF)` (an fd that is not open), other OS errors.
pub(crate) fn wait_fds_ready(
    entries: &mut [PollEntry],
    deadline: Option<Instant>,
) -> io::Result<usize> {
    for e in entries.iter() {
        if e.fd < 0 || e.interest & (READABLE | WRITABLE) == 0 {
            return Err(invalid(
                "ivy: a poll entry needs an fd and readable and/or writable interest",
            ));
        }
        if e.interest & !(READABLE | WRITABLE) != 0 {
            return Err(invalid("ivy: unknown interest bits in a poll entry"));
        }
    }
    for e in entries.iter_mut() {
        e.ready = 0;
    }
    let ready = poll_entries(entries, Some(Instant::now()))?;
    if ready > 0 {
        return Ok(ready);
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(WaitError::TimedOut.into());
    }
    let ready = if crate::task::current::in_task() {
        wait_in_task(entries, deadline)?
    } else {
        poll_entries(entries, deadline)?
    };
    if ready == 0 {
        return Err(WaitError::TimedOut.into());
    }
    Ok(ready)
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// `poll(2)` over `entries` until one is ready or `deadline` (and the caller's
/// scope deadline) passes; a passed `deadline` looks once and returns `Ok(0)`
/// if nothing is ready. Fills `ready` and returns how many entries are ready.
fn poll_entries(entries: &mut [PollEntry], deadline: Option<Instant>) -> io::Result<usize> {
    let mut pfds: Vec<libc::pollfd> = entries
        .iter()
        .map(|e| libc::pollfd {
            fd: e.fd,
            events: poll_events(e.interest),
            revents: 0,
        })
        .collect();
    let nfds =
        libc::nfds_t::try_from(pfds.len()).map_err(|_| invalid("ivy: too many poll entries"))?;
    loop {
        park::check_interrupt()?;
        let timeout_ms = poll_timeout(earliest(deadline, scope::current_deadline()));
        // SAFETY: `pfds` is a valid array of `nfds` pollfds that we own for the
        // call (for an empty array the kernel reads nothing).
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), nfds, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n > 0 {
            if pfds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            let mut count = 0;
            for (e, p) in entries.iter_mut().zip(&pfds) {
                e.ready = ready_bits(p.revents as u16 as u32, e.interest);
                if e.ready != 0 {
                    count += 1;
                }
            }
            if count > 0 {
                return Ok(count);
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // Nothing ready: the answer of a look, or the deadline passed.
            park::check_interrupt()?;
            return Ok(0);
        }
        // Else the scope deadline passed (reported at the top) or a spurious
        // return: poll again.
    }
}

/// The `poll(2)` events for `interest`. Hang-up of the peer's writing side
/// (`POLLRDHUP`) is asked only with readable interest: a writer has nothing to
/// do about it, and as a level it would wake it forever.
fn poll_events(interest: usize) -> libc::c_short {
    let mut events: libc::c_short = 0;
    if interest & READABLE != 0 {
        events |= libc::POLLIN | libc::POLLRDHUP;
    }
    if interest & WRITABLE != 0 {
        events |= libc::POLLOUT;
    }
    events
}

/// Ready bits of an entry from `poll(2)` / `epoll` event bits (their values
/// agree on Linux: `POLLIN == EPOLLIN`, ...): the asked directions, plus
/// `HANGUP` and `ERROR`; hang-up and error also count as ready in every asked
/// direction, so the caller's next operation reports them.
fn ready_bits(events: u32, interest: usize) -> usize {
    let has = |bit: libc::c_int| events & bit as u32 != 0;
    let mut ready = 0;
    if has(libc::EPOLLIN) {
        ready |= READABLE;
    }
    if has(libc::EPOLLOUT) {
        ready |= WRITABLE;
    }
    if has(libc::EPOLLRDHUP) && interest & READABLE != 0 {
        ready |= READABLE | HANGUP;
    }
    if has(libc::EPOLLHUP) {
        ready |= READABLE | WRITABLE | HANGUP;
    }
    if has(libc::EPOLLERR) {
        ready |= READABLE | WRITABLE | ERROR;
    }
    ready & (interest | HANGUP | ERROR)
}

/// The task's wait: a private epoll set registered with the worker's poll.
fn wait_in_task(entries: &mut [PollEntry], deadline: Option<Instant>) -> io::Result<usize> {
    // SAFETY: epoll_create1 takes only flags; it returns a new fd or -1.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let set = unsafe { OwnedFd::from_raw_fd(raw) };

    // One set entry per distinct fd, asking for the union of its interests.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].fd);
    let mut groups: Vec<(RawFd, usize)> = Vec::new();
    let mut group_of = vec![0usize; entries.len()];
    for &i in &order {
        match groups.last_mut() {
            Some((fd, interest)) if *fd == entries[i].fd => *interest |= entries[i].interest,
            _ => groups.push((entries[i].fd, entries[i].interest)),
        }
        group_of[i] = groups.len() - 1;
    }
    // The raw event bits of each set entry (`EPOLLIN | ...`).
    let mut group_events = vec![0u32; groups.len()];
    let mut always_ready = false;
    for (g, &(fd, interest)) in groups.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: poll_events(interest) as u16 as u32,
            u64: g as u64,
        };
        // SAFETY: `set` is our epoll fd; `ev` is a valid event the kernel copies.
        if unsafe { libc::epoll_ctl(set.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) {
                // A regular file or directory: always ready, as with poll(2).
                group_events[g] = (libc::EPOLLIN | libc::EPOLLOUT) as u32;
                always_ready = true;
                continue;
            }
            return Err(e);
        }
    }

    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; groups.len().max(1)];
    let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
    let collect = |events: &mut [libc::epoll_event]| -> io::Result<usize> {
        // SAFETY: `events` is a writable array of at least `max` epoll_events,
        // `set` our epoll fd; a zero timeout never blocks.
        let n = unsafe { libc::epoll_wait(set.as_raw_fd(), events.as_mut_ptr(), max, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    };
    let got = if always_ready {
        loop {
            match collect(&mut events) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        }
    } else {
        // The set is ours: registered directly (no duplicate needed, and no
        // stale entry of the worker's poll can name this new file).
        let reg = Registration::with_readiness(set.as_raw_fd(), 0);
        let r = reg.do_io(Direction::Read, deadline, || match collect(&mut events)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        });
        drop(reg); // deregisters before `set` is closed
        r?
    };
    for ev in &events[..got] {
        let (g, bits) = (ev.u64 as usize, ev.events);
        if let Some(r) = group_events.get_mut(g) {
            *r |= bits;
        }
    }
    let mut count = 0;
    for (i, e) in entries.iter_mut().enumerate() {
        e.ready = ready_bits(group_events[group_of[i]], e.interest);
        if e.ready != 0 {
            count += 1;
        }
    }
    drop(set);
    Ok(count)
}
