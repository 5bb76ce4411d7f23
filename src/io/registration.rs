//! One fd's readiness state and its registration with a worker's poll.
//!
//! See the module comment of `crate::io` for the design. Invariants kept here:
//!
//! * `IoState::readiness` holds the READABLE / WRITABLE bits and a tick that
//!   every dispatched event increments. A bit is cleared only by an operation that
//!   got `WouldBlock` *and* saw the same tick before it tried (`clear`), so an
//!   event that arrives between the attempt and the clear is never erased.
//! * A waiter checks the bits and adds itself under `waiters`' lock; dispatch sets
//!   the bits before it takes that lock. So either the waiter sees the bit or the
//!   dispatcher sees the waiter: no lost wake-up.
//! * Every waiter removes itself when it stops waiting (ready, timed out,
//!   cancelled, scope elapsed, closed), so nothing keeps a dead task alive.
//! * `IoState::closed` is set once (`close`) and never cleared. `close` sets it
//!   before it takes `waiters`' lock and wakes every waiter of both directions; a
//!   waiter checks it under that lock before it parks and again after every
//!   wake-up. So, as for readiness, either the waiter sees the flag or `close`
//!   sees the waiter: a close racing with a park is never lost. `do_io` checks it
//!   before every attempt, so a closed registration runs no more operations.
//!   Plain threads wait in `poll(2)` on the fd itself, outside these lists: the
//!   socket layer shuts the socket down right after `close` (`Socket::close`),
//!   which makes `poll` report a hang-up, and the thread then sees the flag.
//! * A passed deadline is a non-blocking try: `do_io` runs the operation once
//!   even when the readiness bits say it would block (an event may not have been
//!   dispatched yet), and `wait` polls the fd with a zero timeout instead of
//!   trusting the bits; only then does the wait report `TimedOut`.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::reactor::{self, ReactorHandle};
use super::token::IoToken;
use crate::error::WaitError;
use crate::park::{self, Unparker};
use crate::task::current;

/// Readiness directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

pub(crate) const READABLE: usize = 0b01;
pub(crate) const WRITABLE: usize = 0b10;
const BITS: usize = 0b11;
/// Sticky: an event said the peer closed its side or the socket failed, so a
/// read will never block again (`do_io_until_drained` must not clear READABLE).
const READ_ENDED: usize = 0b100;
const TICK_SHIFT: u32 = 8;

impl Direction {
    pub(crate) fn bit(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }
}

/// The unwinding (Rust-side) behaviour over an I/O result of the `Result`
/// layer: a cancellation unwinds, like every ivy blocking call; everything else
/// stays an `io::Error` (an elapsed scope and a deadline are `TimedOut`, a
/// close `NotConnected`, each carrying its [`WaitError`]).
#[inline]
pub(crate) fn or_raise_io<T>(r: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(e) = &r {
        if WaitError::of(e) == Some(WaitError::Cancelled) {
            WaitError::Cancelled.raise();
        }
    }
    r
}

/// The readiness bits a poll event sets: hang-up and error count as ready in
/// both directions, so the next operation reports them.
pub(crate) fn event_readiness(event: &mio::event::Event) -> usize {
    let mut bits = 0;
    if event.is_readable() || event.is_read_closed() || event.is_error() {
        bits |= READABLE;
    }
    if event.is_read_closed() || event.is_error() {
        bits |= READ_ENDED;
    }
    if event.is_writable() || event.is_write_closed() || event.is_error() {
        bits |= WRITABLE;
    }
    bits
}

/// Readiness bits and waiters of one registered fd. Shared by its owner and the
/// token table of the poll it is registered with (`crate::io::token`).
pub(crate) struct IoState {
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
    /// Set once by `close`, never cleared (see the module comment).
    closed: AtomicBool,
}

#[derive(Default)]
struct Waiters {
    read: Vec<Unparker>,
    write: Vec<Unparker>,
}

impl Waiters {
    fn list(&mut self, dir: Direction) -> &mut Vec<Unparker> {
        match dir {
            Direction::Read => &mut self.read,
            Direction::Write => &mut self.write,
        }
    }
}

impl IoState {
    pub(crate) fn new(initial: usize) -> IoState {
        IoState {
            readiness: AtomicUsize::new(initial & BITS),
            waiters: Mutex::new(Waiters::default()),
            closed: AtomicBool::new(false),
        }
    }

    /// Marks the state closed and wakes every waiter of both directions; each
    /// returns `WaitError::Closed`. Idempotent.
    pub(crate) fn close(&self) {
        // Before the lock: a waiter that registers after we drained the lists
        // checks the flag under the same lock and sees it.
        self.closed.store(true, Ordering::SeqCst);
        let mut guard = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let waiters = &mut *guard;
        for w in waiters.read.drain(..).chain(waiters.write.drain(..)) {
            w.unpark();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Records readiness (from the worker's poll: `event_readiness`) and wakes
    /// the waiters it concerns.
    pub(crate) fn set_ready(&self, bits: usize) {
        if bits == 0 {
            return;
        }
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                let tick = (r >> TICK_SHIFT).wrapping_add(1);
                Some((tick << TICK_SHIFT) | (r & (BITS | READ_ENDED)) | bits)
            });
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if bits & READABLE != 0 {
            for w in waiters.read.drain(..) {
                w.unpark();
            }
        }
        if bits & WRITABLE != 0 {
            for w in waiters.write.drain(..) {
                w.unpark();
            }
        }
    }

    /// The current readiness word (bits and tick), for a later `clear`.
    pub(crate) fn snapshot(&self) -> usize {
        self.readiness.load(Ordering::Acquire)
    }

    pub(crate) fn ready_bits(&self) -> usize {
        self.snapshot() & BITS
    }

    /// After an operation that read `snapshot` got `WouldBlock`: clears `bit`,
    /// unless an event arrived since (the tick moved), which must not be erased.
    pub(crate) fn clear(&self, snapshot: usize, bit: usize) {
        let _ = self.readiness.compare_exchange(
            snapshot,
            snapshot & !bit,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Whether any task is waiting on this fd.
    fn has_waiters(&self) -> bool {
        let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        !waiters.read.is_empty() || !waiters.write.is_empty()
    }

    /// Parks the calling task until one of `mask`'s bits is set or `deadline`
    /// passes. Returns the ready bits. The caller registered the fd with a poll.
    pub(crate) fn wait_task(
        &self,
        mask: usize,
        deadline: Option<Instant>,
    ) -> std::io::Result<usize> {
        let me = park::current_unparker();
        loop {
            {
                let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                if self.is_closed() {
                    remove_waiter(&mut waiters, &me);
                    return Err(WaitError::Closed.into());
                }
                let ready = self.ready_bits() & mask;
                if ready != 0 {
                    remove_waiter(&mut waiters, &me);
                    return Ok(ready);
                }
                for dir in [Direction::Read, Direction::Write] {
                    if mask & dir.bit() != 0 {
                        let list = waiters.list(dir);
                        if !list.iter().any(|w| w.same_target(&me)) {
                            list.push(me.clone());
                        }
                    }
                }
            }
            let parked = park::park_for(deadline, crate::task::wait_reason::WaitReason::Io);
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if parked.is_err() || timed_out {
                let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                remove_waiter(&mut waiters, &me);
                if self.is_closed() {
                    return Err(WaitError::Closed.into());
                }
                // Readiness that raced with the interruption wins: report it, so
                // the caller's operation runs and no event is lost to a timeout.
                let ready = self.ready_bits() & mask;
                if ready != 0 && parked.is_ok() {
                    return Ok(ready);
                }
                parked?;
                return Err(WaitError::TimedOut.into());
            }
        }
    }
}

fn remove_waiter(waiters: &mut Waiters, me: &Unparker) {
    waiters.read.retain(|w| !w.same_target(me));
    waiters.write.retain(|w| !w.same_target(me));
}

/// An fd's registration: its readiness state and, once a task has had to wait
/// for it, the worker poll it is registered with. Deregisters on drop; never
/// closes the fd (its owner does, after dropping this).
pub(crate) struct Registration {
    fd: RawFd,
    state: Arc<IoState>,
    home: Mutex<Option<Home>>,
}

struct Home {
    reactor: Arc<ReactorHandle>,
    token: IoToken,
}

/// The reactor (poll) of the worker running the caller, if the caller is a task.
fn current_reactor() -> Option<Arc<ReactorHandle>> {
    if !current::in_task() {
        return None;
    }
    reactor::current()
}

impl Registration {
    /// A registration for `fd`, optimistically assumed ready in both directions:
    /// the first operation just tries, and registers only if it would block.
    pub(crate) fn new(fd: RawFd) -> Registration {
        Registration::with_readiness(fd, READABLE | WRITABLE)
    }

    pub(crate) fn with_readiness(fd: RawFd, bits: usize) -> Registration {
        Registration {
            fd,
            state: Arc::new(IoState::new(bits)),
            home: Mutex::new(None),
        }
    }

    /// Makes sure the fd is registered with a poll that is running: the current
    /// worker's, unless it is already registered with another live worker on
    /// which some task is waiting for it (split halves used by tasks on two
    /// workers, or acceptor tasks on every worker sharing a listener): then the
    /// registration stays, events wake this task remotely, and registrations
    /// do not ping-pong between workers.
    fn ensure_registered(&self, reactor: &Arc<ReactorHandle>) -> std::io::Result<()> {
        let mut home = self.home.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = home.as_ref() {
            if Arc::ptr_eq(&h.reactor, reactor) {
                return Ok(());
            }
            if !h.reactor.is_closed() && self.state.has_waiters() {
                return Ok(());
            }
            let h = home.take().expect("checked above");
            h.reactor.deregister(self.fd, h.token);
        }
        let token = reactor.register(self.fd, &self.state)?;
        *home = Some(Home {
            reactor: reactor.clone(),
            token,
        });
        Ok(())
    }

    /// Runs `op` until it does not return `WouldBlock`, waiting for `dir`
    /// readiness in between, until `deadline` (and the caller's scope deadline).
    /// In a task the wait parks the task on its worker's poll; on a plain thread
    /// it blocks in `poll(2)`.
    pub(crate) fn do_io<R>(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        op: impl FnMut() -> std::io::Result<R>,
    ) -> std::io::Result<R> {
        self.do_io_until_drained(dir, deadline, op, |_| false)
    }

    /// `do_io`, where `drained(&result)` says that a successful `op` left the
    /// kernel with nothing more for `dir` (a stream read shorter than its
    /// buffer emptied the receive queue). Then the bit is cleared at once, as
    /// after `WouldBlock`, with the same tick check, so the next call parks
    /// without first making a read that fails with `EAGAIN` (tokio's rule; one
    /// syscall less per message on an echo or request/response connection).
    /// Data that arrives after the read is a new edge, whose event sets the bit
    /// again (or moved the tick, and the clear does nothing). Not once the
    /// peer's end of file or an error was dispatched (`READ_ENDED`): that edge
    /// has passed and comes no more, while the end of file is still to be read
    /// (a short read returns the data before it); clearing then would park the
    /// reader for good (tests/net.rs's echo tests hung so).
    pub(crate) fn do_io_until_drained<R>(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> std::io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> std::io::Result<R> {
        let bit = dir.bit();
        let mut reactor: Option<Arc<ReactorHandle>> = None;
        // Cooperative budget (worker.rs): a task whose operations never block
        // yields now and then, before an operation so that nothing it read is
        // lost if the yield reports a cancellation or an elapsed scope. This also
        // makes such a task see its cancellation.
        if current::io_budget_spent() {
            park::yield_now()?;
        }
        // A deadline already passed: try once whatever the bits say.
        let mut try_anyway = deadline.is_some_and(|d| Instant::now() >= d);
        loop {
            if self.state.is_closed() {
                return Err(WaitError::Closed.into());
            }
            let snapshot = self.state.snapshot();
            if snapshot & bit != 0 || std::mem::take(&mut try_anyway) {
                match op() {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.state.clear(snapshot, bit);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Ok(v) => {
                        if snapshot & READ_ENDED == 0 && drained(&v) {
                            self.state.clear(snapshot, bit);
                        }
                        return Ok(v);
                    }
                    // The operation failed because a `close` that raced with it
                    // shut the socket down (EPIPE, EINVAL on a listener, ...):
                    // report the close, as a later call would see it.
                    Err(_) if self.state.is_closed() => return Err(WaitError::Closed.into()),
                    Err(e) => return Err(e),
                }
            }
            if reactor.is_none() {
                reactor = current_reactor();
                if reactor.is_none() {
                    // A plain thread: wait in poll(2) and retry.
                    crate::io::fd::poll_thread(self.fd, bit, deadline)?;
                    self.state.set_ready(bit);
                    continue;
                }
            }
            // A passed deadline was a non-blocking try: report it without
            // parking (a park, even with a passed timer, would let the
            // worker's other tasks run first).
            if deadline.is_some_and(|d| Instant::now() >= d) {
                park::check_interrupt()?;
                return Err(WaitError::TimedOut.into());
            }
            let r = reactor.as_ref().expect("set above");
            self.ensure_registered(r)?;
            self.state.wait_task(bit, deadline)?;
        }
    }

    /// Waits until the fd is ready for any direction in `mask`; returns the ready
    /// bits. Used for connect completion and by `ivy::io` for foreign fds.
    /// A passed `deadline` polls the fd once without blocking (its readiness
    /// may not have been dispatched to the bits yet). `WaitError::Closed` once
    /// the registration is closed.
    pub(crate) fn wait(&self, mask: usize, deadline: Option<Instant>) -> std::io::Result<usize> {
        if self.state.is_closed() {
            return Err(WaitError::Closed.into());
        }
        let passed = deadline.is_some_and(|d| Instant::now() >= d);
        let r = match current_reactor() {
            Some(r) if !passed => {
                self.ensure_registered(&r)?;
                self.state.wait_task(mask, deadline)
            }
            _ => crate::io::fd::poll_thread(self.fd, mask, deadline),
        };
        if self.state.is_closed() {
            return Err(WaitError::Closed.into());
        }
        r
    }

    /// Closes the registration for every user: marks it closed and wakes every
    /// task waiting on it (both directions) with `WaitError::Closed`; every later
    /// `do_io` / `wait` fails the same way. Neither deregisters nor closes the fd
    /// (the owner does, on drop). Waiters on plain threads block in `poll(2)`
    /// and are woken by the owner shutting the socket down (`Socket::close`).
    pub(crate) fn close(&self) {
        self.state.close();
    }

    /// Whether `close` has been called (never cleared).
    pub(crate) fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// Assumes the fd ready in both directions: the next operations just try.
    pub(crate) fn assume_ready(&self) {
        self.state.set_ready(READABLE | WRITABLE);
    }

    /// Removes the fd from its poll now (before the owner closes it).
    pub(crate) fn deregister(&self) {
        let home = self.home.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = home {
            h.reactor.deregister(self.fd, h.token);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.deregister();
    }
}
