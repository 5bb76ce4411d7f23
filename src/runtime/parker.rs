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
//! A registration's mio token is the address of its `IoState` (an `Arc` leaked into
//! the registration: the poll holds one strong count). The worker turns each event
//! back into that `IoState` and sets its readiness bits / wakes its waiters
//! (`IoState::dispatch`); the woken task usually lives on this same worker, so the
//! wake is a local queue push.
//!
//! Releasing that strong count must not race with dispatch: an event for a
//! registration may sit in the `Events` buffer of a `poll` that was in flight when
//! another thread deregistered it. So a registration removed on the owning worker
//! thread outside dispatch is released at once, and one removed anywhere else is
//! queued in `released` and freed by the worker after its next dispatch, which
//! is the first moment no buffered event can name it. When the worker is gone
//! (`released` is `None`), nothing can dispatch any more and release is immediate.
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
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mio::{Events, Poll, Registry, Token, Waker};

use crate::io::registration::IoState;

const EMPTY: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// The sleeping side; owned by the worker thread.
pub(crate) struct Parker {
    poll: Poll,
    events: Events,
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
    /// Leaked `IoState` pointers deregistered off-thread, freed after the next
    /// dispatch; `None` once the worker has exited.
    released: Mutex<Option<Vec<usize>>>,
    /// Registrations currently in the poll; the worker polls while busy only if
    /// there are any.
    registrations: AtomicUsize,
    /// Set by the worker thread while it walks an `Events` buffer.
    dispatching: AtomicBool,
}

impl Parker {
    pub(crate) fn new() -> io::Result<Parker> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
        let registry = poll.registry().try_clone()?;
        Ok(Parker {
            poll,
            events: Events::with_capacity(256),
            unparker: Arc::new(WorkerUnparker {
                state: AtomicU8::new(EMPTY),
                waker: RwLock::new(Some(waker)),
                reactor: Reactor {
                    registry: RwLock::new(Some(registry)),
                    released: Mutex::new(Some(Vec::new())),
                    registrations: AtomicUsize::new(0),
                    dispatching: AtomicBool::new(false),
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
        if self.unparker.reactor.registrations.load(Ordering::Relaxed) != 0 || self.has_released() {
            return self.poll_and_dispatch(Some(Duration::ZERO));
        }
        false
    }

    fn has_released(&self) -> bool {
        let released = self.unparker.reactor.released.lock();
        let released = released.unwrap_or_else(|e| e.into_inner());
        released.as_ref().is_some_and(|v| !v.is_empty())
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
        let reactor = &self.unparker.reactor;
        reactor.dispatching.store(true, Ordering::Relaxed);
        let mut dispatched = false;
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            dispatched = true;
            let ptr = event.token().0 as *const IoState;
            // SAFETY: every other token is the address of an `IoState` whose strong
            // count the registration leaked to this poll (`Reactor::register`). That
            // count is released either on this thread outside this loop (so not now)
            // or through `released`, which is drained only below, after the loop.
            // So the `IoState` is alive for the whole loop.
            let io = unsafe { &*ptr };
            io.dispatch(event);
        }
        reactor.dispatching.store(false, Ordering::Relaxed);
        reactor.drain_released();
        dispatched
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        // Close the fds others may still reach (module comment); the poll's own fd
        // closes when `self.poll` drops, after this.
        let unparker = &self.unparker;
        drop(write(&unparker.waker).take());
        drop(write(&unparker.reactor.registry).take());
        let pending = {
            let mut released = self
                .unparker
                .reactor
                .released
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            released.take()
        };
        for ptr in pending.into_iter().flatten() {
            // SAFETY: `ptr` came from `Arc::into_raw` in `Reactor::register` and was
            // queued exactly once by `Reactor::deregister`; no dispatch can run
            // any more (the worker is exiting), so nothing else uses it.
            drop(unsafe { Arc::from_raw(ptr as *const IoState) });
        }
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
    pub(crate) fn register(&self, fd: std::os::fd::RawFd, io: &Arc<IoState>) -> io::Result<usize> {
        let registry = read(&self.registry);
        let Some(registry) = registry.as_ref() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "ivy: the worker of this reactor has exited (its runtime shut down)",
            ));
        };
        let token = Arc::into_raw(io.clone()) as usize;
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        match registry.register(&mut mio::unix::SourceFd(&fd), Token(token), interest) {
            Ok(()) => {
                self.registrations.fetch_add(1, Ordering::Relaxed);
                Ok(token)
            }
            Err(e) => {
                // SAFETY: the registration failed, so the poll never saw `token`;
                // this undoes the `into_raw` just above.
                drop(unsafe { Arc::from_raw(token as *const IoState) });
                Err(e)
            }
        }
    }

    /// Removes `fd`'s registration made with `token`, and releases the `IoState`
    /// count the poll held (now, or after the worker's next dispatch; see the
    /// module comment). `on_owner_thread`: the caller runs on this reactor's worker.
    pub(crate) fn deregister(&self, fd: std::os::fd::RawFd, token: usize, on_owner_thread: bool) {
        // An error means the fd was closed behind our back (the kernel already
        // dropped the registration) or never registered: nothing left to undo.
        // No registry: the worker exited and its poll, with every registration in
        // it, is closed.
        if let Some(registry) = read(&self.registry).as_ref() {
            let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
        }
        self.registrations.fetch_sub(1, Ordering::Relaxed);
        let release_now = on_owner_thread && !self.dispatching.load(Ordering::Relaxed);
        if !release_now {
            let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(queue) = released.as_mut() {
                queue.push(token);
                return;
            }
        }
        // SAFETY: `token` came from `Arc::into_raw` in `register`, is released once,
        // and no dispatch can be reading it: either we are the owning worker
        // outside its dispatch loop, or the worker has exited.
        drop(unsafe { Arc::from_raw(token as *const IoState) });
    }

    /// Number of fds registered with this poll now.
    pub(crate) fn registrations(&self) -> usize {
        self.registrations.load(Ordering::Relaxed)
    }

    /// Whether the worker owning this reactor has exited.
    pub(crate) fn is_closed(&self) -> bool {
        self.released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    fn drain_released(&self) {
        let pending = {
            let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
            match released.as_mut() {
                Some(v) if !v.is_empty() => std::mem::take(v),
                _ => return,
            }
        };
        for ptr in pending {
            // SAFETY: as in `Parker::drop`: queued once by `deregister`, and called
            // right after a dispatch loop, so no buffered event names it.
            drop(unsafe { Arc::from_raw(ptr as *const IoState) });
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
