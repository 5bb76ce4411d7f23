//! How an idle worker thread sleeps, and the worker's I/O reactor: one `mio::Poll`.
//!
//! Each worker owns a `mio::Poll`. Sleeping there (rather than on a futex) means the
//! same wait covers the worker's next timer (the poll timeout), wake-ups from other
//! threads (a `mio::Waker`, an eventfd) and readiness of the sockets and fds that
//! the worker's tasks registered (see `crate::io` for the full I/O design). One
//! wait, three sources, no helper thread.
//!
//! The `state` word avoids the syscall in the common case: a waker only writes the
//! eventfd when the worker is actually asleep (`PARKED`); otherwise it leaves a
//! `NOTIFIED` token that the worker consumes before it would sleep.
//!
//! # Readiness dispatch
//! A registration's mio token is an index + generation into the reactor's table
//! of `IoState`s (`crate::io::token`), never an address. The worker looks the
//! batch of events up in that table (one lock per batch), skipping tokens that no
//! longer match, then sets each state's readiness bits / wakes its waiters
//! (`IoState::set_ready`) with the lock released; the woken task usually lives on
//! this same worker, so the wake is a local queue push.
//!
//! So removing a registration needs no coordination with dispatch: it is
//! removed from the table at once, from any thread; an event for it that is still
//! buffered, or that a stale kernel entry keeps producing (an fd closed behind
//! our back while a dup keeps the file open: `EPOLL_CTL_DEL` cannot reach that
//! entry any more), finds a generation that no longer matches and is ignored.
//! When the worker exits it empties the table, and registrations that outlive it
//! find it closed and register elsewhere.
//!
//! # Closing with the worker
//! `WorkerUnparker` is shared by every `Handle` of the runtime and every socket that
//! ever registered here, which may all outlive it. So its two fds, the waker's
//! eventfd and the clone of the poll's epoll fd, are closed when the worker exits
//! (`Parker::drop`), not when the last reference goes (regression: a `Handle` kept
//! after the runtime was dropped held 2 fds per worker forever). They sit behind an
//! `RwLock<Option<_>>` so that closing cannot race a `wake` or an `epoll_ctl` on a
//! number the kernel may already have handed to someone else; the read lock is taken
//! only on paths that make that syscall anyway.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mio::{Events, Poll, Registry, Token, Waker};

use crate::io::registration::{event_readiness, IoState};
use crate::io::token::{IoTable, IoToken};

const EMPTY: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Events collected per poll.
const EVENTS: usize = 256;

/// The sleeping side; owned by the worker thread.
pub(crate) struct Parker {
    poll: Poll,
    events: Events,
    /// The states named by the current batch of events (reused: no allocation
    /// per poll).
    ready: Vec<(Arc<IoState>, usize)>,
    unparker: Arc<WorkerUnparker>,
}

/// The waking side, and the worker's I/O registry; shared with every thread.
pub(crate) struct WorkerUnparker {
    state: AtomicU8,
    /// `None` once the worker exited (module comment).
    waker: RwLock<Option<Waker>>,
    pub(crate) reactor: Reactor,
}

/// The parts of a worker's poll that registrations use from any thread.
pub(crate) struct Reactor {
    /// A clone of the worker's `Poll` registry (`epoll_ctl` is thread-safe);
    /// `None` once the worker exited (module comment).
    registry: RwLock<Option<Registry>>,
    /// What each registration's token names; closed once the worker has exited.
    table: IoTable,
    /// Registrations currently in the poll; the worker polls while busy only if
    /// there are any.
    registrations: AtomicUsize,
}

impl Parker {
    pub(crate) fn new() -> io::Result<Parker> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
        let registry = poll.registry().try_clone()?;
        Ok(Parker {
            poll,
            events: Events::with_capacity(EVENTS),
            ready: Vec::with_capacity(EVENTS),
            unparker: Arc::new(WorkerUnparker {
                state: AtomicU8::new(EMPTY),
                waker: RwLock::new(Some(waker)),
                reactor: Reactor {
                    registry: RwLock::new(Some(registry)),
                    table: IoTable::default(),
                    registrations: AtomicUsize::new(0),
                },
            }),
        })
    }

    pub(crate) fn unparker(&self) -> Arc<WorkerUnparker> {
        self.unparker.clone()
    }

    /// Sleeps until unparked, until an I/O event arrives (it is dispatched before
    /// returning), or until `timeout` elapses (`None`: no timeout). Returns at
    /// once if a wake-up token is pending.
    pub(crate) fn park(&mut self, timeout: Option<Duration>) {
        let unparker = self.unparker.clone();
        let state = &unparker.state;
        if state
            .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // NOTIFIED: consume the token, pick up ready I/O without sleeping.
            state.store(EMPTY, Ordering::Release);
            self.poll_io();
            return;
        }
        let _ = self.poll_and_dispatch(timeout);
        state.swap(EMPTY, Ordering::AcqRel);
    }

    /// Busy- and searching-worker hook: collects I/O readiness without sleeping,
    /// so ready sockets are not starved by tasks that keep the worker busy, nor
    /// delayed while an idle worker spins looking for work. A no-op (no
    /// syscall) while no fd is registered with this worker. Returns whether any
    /// I/O event was dispatched.
    pub(crate) fn poll_io(&mut self) -> bool {
        if self.unparker.reactor.registrations.load(Ordering::Relaxed) != 0 {
            return self.poll_and_dispatch(Some(Duration::ZERO));
        }
        false
    }

    /// Returns whether any I/O event (other than a wake-up) was dispatched.
    fn poll_and_dispatch(&mut self, timeout: Option<Duration>) -> bool {
        loop {
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // epoll_wait fails only on programming errors (EBADF, EINVAL);
                // there is nobody to report to from here, and spinning is safe.
                Err(_) => {
                    self.events.clear();
                    break;
                }
            }
        }
        let mut dispatched = false;
        let tokens = self
            .events
            .iter()
            .filter(|e| e.token() != WAKER_TOKEN)
            .map(|e| (IoToken::from_mio(e.token()), event_readiness(e)));
        self.unparker
            .reactor
            .table
            .lookup_batch(tokens, &mut self.ready);
        for (state, bits) in self.ready.drain(..) {
            dispatched = true;
            state.set_ready(bits);
        }
        dispatched
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        // The worker exits: nothing dispatches any more. Release the states
        // (registrations still holding a token find the table closed), then close
        // the fds others may still reach (module comment); the poll's own fd
        // closes when `self.poll` drops, after this.
        let unparker = &self.unparker;
        drop(unparker.reactor.table.close());
        drop(write(&unparker.waker).take());
        drop(write(&unparker.reactor.registry).take());
    }
}

impl WorkerUnparker {
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            // A failed eventfd write means the counter is saturated, i.e. a wake-up
            // is already pending: nothing is lost. No waker: the worker exited.
            if let Some(waker) = read(&self.waker).as_ref() {
                let _ = waker.wake();
            }
        }
    }
}

impl Reactor {
    /// Registers `fd` for read and write readiness (edge-triggered), with `io` as
    /// the target of its events. Returns the token to pass to `deregister`.
    pub(crate) fn register(&self, fd: RawFd, io: &Arc<IoState>) -> io::Result<IoToken> {
        // In the table before the kernel can produce an event for it.
        let token = self.table.insert(io).ok_or_else(|| {
            io::Error::other("ivy: the worker's reactor is closed or out of tokens")
        })?;
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        let registry = read(&self.registry);
        let result = match registry.as_ref() {
            Some(registry) => {
                registry.register(&mut mio::unix::SourceFd(&fd), token.to_mio(), interest)
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "ivy: the worker of this reactor has exited (its runtime shut down)",
            )),
        };
        match result {
            Ok(()) => {
                self.registrations.fetch_add(1, Ordering::Relaxed);
                Ok(token)
            }
            Err(e) => {
                drop(self.table.remove(token));
                Err(e)
            }
        }
    }

    /// Removes `fd`'s registration made with `token`, from any thread. The token
    /// stops naming its state at once, so events still in flight for it, and
    /// those of an epoll entry that outlives this call, are ignored.
    pub(crate) fn deregister(&self, fd: RawFd, token: IoToken) {
        // An error means the fd number was closed (or now names another file)
        // behind our back. If the file is still open through a dup, the kernel
        // keeps the entry and its events keep coming: harmless, the token is
        // stale from the next line on.
        // No registry: the worker exited and its poll, with every registration in
        // it, is closed.
        if let Some(registry) = read(&self.registry).as_ref() {
            let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
        }
        drop(self.table.remove(token));
        self.registrations.fetch_sub(1, Ordering::Relaxed);
    }

    /// Number of fds registered with this poll now.
    pub(crate) fn registrations(&self) -> usize {
        self.registrations.load(Ordering::Relaxed)
    }

    /// Whether the worker owning this reactor has exited.
    pub(crate) fn is_closed(&self) -> bool {
        self.table.is_closed()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
