//! I/O readiness: how a blocking-looking socket call parks only its task.
//!
//! # Place in the layering
//! Below the scheduler, above park: `io` parks and wakes tasks through
//! `crate::park` (and honours `crate::cancel` / `crate::cancel_scope`), and
//! owns the reactor a worker sleeps in (`reactor.rs`), but it imports nothing
//! of `runtime`. The scheduler builds the reactors, gives each worker its own,
//! keeps their handles to wake sleeping workers, and lends the running
//! worker's reactor to `io` for the worker's lifetime (`Reactor::enter`); `io`
//! reads it back from that thread-local slot (`reactor::current`). `net` and
//! the C ABI sit above: sockets wait through a `Registration`, `ivy_fd_wait` /
//! `ivy_fd_poll` through the foreign-fd waits here.
//!
//! # One reactor per worker
//! A started task never leaves its home worker, so each worker's own `mio::Poll`
//! (the one it sleeps in, `reactor.rs`) is its reactor. A task that must
//! wait for a socket registers the fd with *its own worker's* poll, and that
//! worker dispatches the socket's events to it: no shared reactor thread, no lock
//! on the hot path, and the wake-up is a push onto the worker's local queue.
//! The worker collects events (a) when it goes idle, sleeping in the poll with its
//! next timer as the timeout, and (b) while busy, with a zero timeout every
//! `FAIRNESS_INTERVAL` scheduler ticks when it has registrations, so readiness is
//! never starved by tasks that keep it busy.
//!
//! # Edge-triggered readiness, no lost events
//! Registrations are edge-triggered (mio's only mode) and made lazily: a socket
//! starts out *assumed* ready, so the first read just tries the syscall; only when
//! an operation returns `WouldBlock` does the fd get registered. Each registration
//! keeps readiness bits (READABLE, WRITABLE) plus a tick incremented by every
//! event (`registration.rs`). An operation clears its bit after `WouldBlock` only
//! if the tick has not moved since it read the bits, so an edge that fires between
//! the attempt and the clear stays recorded; then it parks until the bit is set
//! again (re-armed by the next edge). Registering a socket that is already ready
//! yields an event at once, so lazy registration loses nothing either.
//!
//! # Ownership, split halves, migration
//! Waiters are kept per direction, so one task may read while another writes
//! (`TcpStream::split`, `try_clone`, or `&TcpStream` shared through an `Arc`).
//! A socket moved to a task on another worker is re-registered with that
//! worker's poll at its next wait, unless a task is still waiting in the other
//! direction through the old registration; then events keep arriving on the old
//! worker, which wakes the waiter remotely (correct, just not local).
//!
//! # Deregistration
//! A socket deregisters when dropped, before its fd is closed, from whichever
//! thread drops it. A cancelled task unwinds out of its wait: it removes itself
//! from the waiter list on the way out, and the unwind drops the sockets its
//! frames own (deregistering and closing them). Poll tokens are an index and a
//! generation into the worker's table of registration states (`token.rs`), so
//! an event for a registration that is gone (still buffered, or produced by an
//! epoll entry that outlived its fd number) is recognised and ignored.
//!
//! # Deadlines and cancellation
//! Every blocking socket call waits until the earliest of the socket's own
//! timeout (`set_read_timeout` / `set_write_timeout`, like std) and the deadline
//! of an enclosing `ivy::timeout` scope; both fail with `io::ErrorKind::TimedOut`
//! (the scope then also reports `Err(Elapsed)`). Cancellation of the calling task
//! unwinds from the blocking call, as everywhere in ivy (`JoinError::Cancelled`
//! at the task's root). The `Result` layer (`wait_readable_deadline` & co., and
//! the `_deadline` socket calls of `crate::net`) never unwinds: an interruption,
//! a deadline or a close is an `io::Error` carrying an `ivy::WaitError`
//! (`WaitError::of`). The C ABI uses it, so nothing unwinds through C.
//!
//! # Plain threads
//! ivy sockets also work on threads outside any runtime: an operation that would
//! block waits in `poll(2)` on the fd until the same deadlines, then retries.
//!
//! # Foreign fds
//! [`wait_readable`] / [`wait_writable`] wait for an fd ivy does not own (a pipe,
//! a C library's socket): a temporary registration with the task's worker poll,
//! removed before returning; the fd is never closed or otherwise touched. The
//! Rust API borrows the fd (`AsFd`), so safe code cannot close it meanwhile; the
//! C API (`ivy_fd_wait`) takes a raw int, and C may close it from another
//! thread. So what ivy registers is always its own duplicate (`F_DUPFD_CLOEXEC`),
//! closed after deregistering: the epoll entry is keyed by a number only ivy
//! closes, its removal always reaches it, and it never removes another file's
//! entry when the caller's number is closed and reused. Two syscalls per wait
//! buy that; ivy's own sockets own their fd and register it directly. Every
//! such wait first looks once (`poll(2)` with a zero timeout): an fd that is
//! ready costs that one syscall and no registration, and a deadline that has
//! already passed makes the wait a non-blocking try (a fresh registration
//! would learn the fd's readiness only at the worker's next poll, too late).
//!
//! # Many fds
//! [`poll`] (C: `ivy_fd_poll`) waits for any of many foreign fds with one
//! deadline: the same first look, then a private epoll set holding all of them,
//! registered with the worker's poll as one fd ivy owns (`poll.rs` says why
//! this and not one registration per fd).

pub(crate) mod fd;
pub(crate) mod poll;
pub(crate) mod reactor;
pub(crate) mod registration;
pub(crate) mod token;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Instant;

pub(crate) use registration::{or_raise_io, Direction, Registration};
pub(crate) use registration::{READABLE, WRITABLE};

/// Waits until `fd` is readable (or at EOF / in error: the next read reports it),
/// or until `deadline`. Parks the calling task (its worker runs other tasks); on
/// a plain thread it blocks in `poll(2)`. The fd stays the caller's: it is not
/// closed, and is left without any registration when this returns (a task waits
/// on a duplicate ivy owns, so not even closing `fd` elsewhere can disturb it).
///
/// Takes anything that lends an fd for the call (`&File`, `&UnixStream`,
/// `BorrowedFd`, ...).
///
/// Errors: `TimedOut` when `deadline` or the caller's `ivy::timeout` scope passes.
/// Cancellation of the calling task unwinds ([`wait_readable_deadline`] is the
/// form that returns it instead).
///
/// ```
/// use std::io::Write;
/// let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
/// ivy::run(move || {
///     let waiter = ivy::spawn(move || ivy::io::wait_readable(&rx, None).map(|()| rx));
///     tx.write_all(b"x").unwrap();
///     waiter.join().unwrap().unwrap();
/// });
/// ```
///
/// The fd is borrowed for the whole wait, so its owner cannot close it meanwhile
/// (a raw fd number, which anyone may close, is not accepted):
///
/// ```compile_fail
/// let (_tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
/// ivy::run(move || {
///     ivy::scope(|s| {
///         s.spawn(|| ivy::io::wait_readable(&rx, None));
///         drop(rx); // error[E0505]: cannot move out of `rx` because it is borrowed
///     })
/// });
/// ```
///
/// ```compile_fail
/// use std::os::fd::AsRawFd;
/// let (_tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
/// ivy::io::wait_readable(rx.as_raw_fd(), None); // error: `i32` is not `AsFd`
/// ```
pub fn wait_readable(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<()> {
    or_raise_io(wait_readable_deadline(fd, deadline))
}

/// [`wait_readable`] that never unwinds (ivy's `Result` layer): cancellation,
/// an enclosing `ivy::timeout` scope and `deadline` are `Err(e)` with
/// [`WaitError::of`](crate::WaitError::of)`(&e)` = `Cancelled`, `Elapsed`,
/// `TimedOut`. A passed `deadline` looks once without blocking.
pub fn wait_readable_deadline(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<()> {
    fd::wait_fd(fd.as_fd().as_raw_fd(), READABLE, deadline).map(|_| ())
}

/// Waits until `fd` is writable (or in error); see [`wait_readable`].
pub fn wait_writable(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<()> {
    or_raise_io(wait_writable_deadline(fd, deadline))
}

/// [`wait_writable`] that never unwinds; see [`wait_readable_deadline`].
pub fn wait_writable_deadline(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<()> {
    fd::wait_fd(fd.as_fd().as_raw_fd(), WRITABLE, deadline).map(|_| ())
}

/// What [`poll`] waits for on one fd: [`Interest::READABLE`],
/// [`Interest::WRITABLE`], or both (`READABLE | WRITABLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interest(usize);

impl Interest {
    /// Readable: data to read, a connection to accept, or end of file.
    pub const READABLE: Interest = Interest(READABLE);
    /// Writable: room to write.
    pub const WRITABLE: Interest = Interest(WRITABLE);
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }
}

/// What [`poll`] found an fd ready for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Readiness(usize);

impl Readiness {
    /// Ready for nothing (the fd was not ready, or the call failed).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Readable (asked for, and ready; also at end of file or in error).
    pub fn is_readable(self) -> bool {
        self.0 & READABLE != 0
    }
    /// Writable (asked for, and ready; also in error).
    pub fn is_writable(self) -> bool {
        self.0 & WRITABLE != 0
    }
    /// The peer hung up: a read reaches end of file (the other end of a pipe
    /// or socket closed, or shut down its writing side). Reported whatever was
    /// asked.
    pub fn is_hangup(self) -> bool {
        self.0 & poll::HANGUP != 0
    }
    /// The fd is in error (the next operation says which). Reported whatever
    /// was asked.
    pub fn is_error(self) -> bool {
        self.0 & poll::ERROR != 0
    }
}

/// One fd of [`poll`], borrowed for as long as the entry lives, with its
/// interest and, after the call, its readiness.
#[derive(Clone, Copy, Debug)]
pub struct PollFd<'fd> {
    fd: BorrowedFd<'fd>,
    interest: Interest,
    ready: Readiness,
}

impl<'fd> PollFd<'fd> {
    /// An entry waiting for `interest` on `fd` (anything that lends an fd:
    /// `&File`, `&UnixStream`, `BorrowedFd`, ...).
    pub fn new<F: AsFd + ?Sized>(fd: &'fd F, interest: Interest) -> PollFd<'fd> {
        PollFd {
            fd: fd.as_fd(),
            interest,
            ready: Readiness::default(),
        }
    }

    /// What the last [`poll`] found this fd ready for.
    pub fn readiness(&self) -> Readiness {
        self.ready
    }

    /// The interest given to [`PollFd::new`].
    pub fn interest(&self) -> Interest {
        self.interest
    }
}

/// Waits until at least one of `fds` is ready as asked, or until `deadline`;
/// `poll(2)` over ivy's reactor. Returns how many entries are ready, each
/// entry's [`PollFd::readiness`] says what for (empty for the others). Parks
/// the calling task (its worker runs other tasks); on a plain thread it blocks
/// in `poll(2)`. A `deadline` that has passed looks once without waiting. The
/// fds stay the caller's and keep no registration after the call. The same fd
/// may appear in several entries.
///
/// Errors: `TimedOut` when `deadline` or the caller's `ivy::timeout` scope
/// passes with nothing ready; `EBADF` for an fd that is not open (an fd may be
/// closed meanwhile through another handle to it: its file simply leaves the
/// wait once closed for good). Cancellation of the calling task unwinds.
///
/// ```
/// use std::io::Write;
/// use ivy::io::{poll, Interest, PollFd};
/// let (a_tx, a_rx) = std::os::unix::net::UnixStream::pair().unwrap();
/// let (mut b_tx, b_rx) = std::os::unix::net::UnixStream::pair().unwrap();
/// ivy::run(move || {
///     let waiter = ivy::spawn(move || {
///         let mut fds = [
///             PollFd::new(&a_rx, Interest::READABLE),
///             PollFd::new(&b_rx, Interest::READABLE),
///         ];
///         let n = poll(&mut fds, None).unwrap();
///         (n, fds[0].readiness().is_readable(), fds[1].readiness().is_readable())
///     });
///     b_tx.write_all(b"x").unwrap();
///     assert_eq!(waiter.join().unwrap(), (1, false, true));
///     drop(a_tx);
/// });
/// ```
pub fn poll(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    or_raise_io(poll_deadline(fds, deadline))
}

/// [`poll`] that never unwinds (ivy's `Result` layer); see
/// [`wait_readable_deadline`]. On an error every entry's readiness is empty.
pub fn poll_deadline(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    let mut entries: Vec<poll::PollEntry> = fds
        .iter()
        .map(|f| poll::PollEntry {
            fd: f.fd.as_raw_fd(),
            interest: f.interest.0,
            ready: 0,
        })
        .collect();
    let r = poll::wait_fds_ready(&mut entries, deadline);
    for (f, e) in fds.iter_mut().zip(&entries) {
        f.ready = Readiness(if r.is_ok() { e.ready } else { 0 });
    }
    r
}

/// Readiness reported by [`wait_fd_ready`]-style waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Ready {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

/// The internal, non-unwinding wait the C ABI's `ivy_fd_wait(fd, IVY_READABLE |
/// IVY_WRITABLE, deadline)` wraps: waits for either interest and says which are
/// ready. Errors distinguish cancellation, scope expiry and the own deadline.
#[allow(dead_code)] // the C ABI (ffi branch) calls it
pub(crate) fn wait_fd_ready(
    fd: RawFd,
    readable: bool,
    writable: bool,
    deadline: Option<Instant>,
) -> io::Result<Ready> {
    let mut mask = 0;
    if readable {
        mask |= READABLE;
    }
    if writable {
        mask |= WRITABLE;
    }
    let bits = fd::wait_fd(fd, mask, deadline)?;
    Ok(Ready {
        readable: bits & READABLE != 0,
        writable: bits & WRITABLE != 0,
    })
}

/// Number of fds currently registered with the polls of the caller's runtime's
/// workers (0 outside a runtime). For diagnostics and leak tests: every ivy
/// socket that had to wait is counted until it is dropped.
#[doc(hidden)]
pub fn registrations() -> usize {
    reactor::with_current_group(|group| group.iter().map(|r| r.registrations()).sum()).unwrap_or(0)
}
