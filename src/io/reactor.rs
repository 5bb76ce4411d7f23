//! A worker's reactor: the `mio::Poll` its thread sleeps in, the waker that
//! ends that sleep from other threads, and the table of fds registered with it.
//!
//! # Place in the layering
//! Part of `io`, below the scheduler: this file knows nothing of workers,
//! queues or tasks. The scheduler creates one `Reactor` per worker
//! (`Reactor::group`), the worker owns it and sleeps in it (`park`, `poll_io`),
//! and the scheduler's shared state keeps each worker's `ReactorHandle` to wake
//! it. The rest of `io` reaches the reactor of the thread it runs on through
//! `current` (a slot the worker fills for its lifetime with `Reactor::enter`),
//! never through the runtime.
//!
//! # One wait, three sources
//! Sleeping in the poll (rather than on a futex) means the same wait covers the
//! worker's next timer (the poll timeout, which the worker passes in), wake-ups
//! from other threads (a `mio::Waker`, an eventfd) and readiness of the sockets
//! and fds that the worker's tasks registered (see `crate::io` for the full I/O
//! design). No helper thread.
//!
//! The `state` word avoids the syscall in the common case: a waker only writes
//! the eventfd when the worker is actually asleep (`PARKED`); otherwise it
//! leaves a `NOTIFIED` token that the worker consumes before it would sleep.
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
//! A `ReactorHandle` is shared by every `Handle` of the runtime and every socket
//! that ever registered here, which may all outlive the worker. So its two fds,
//! the waker's eventfd and the clone of the poll's epoll fd, are closed when the
//! worker exits (`Reactor::drop`), not when the last reference goes (regression:
//! a `Handle` kept after the runtime was dropped held 2 fds per worker forever).
//! They sit behind an `RwLock<Option<_>>` so that closing cannot race a `wake`
//! or an `epoll_ctl` on a number the kernel may already have handed to someone
//! else; the read lock is taken only on paths that make that syscall anyway.
//!
//! # The current thread's reactor
//! `Reactor::enter` lends the worker's reactor group to this thread until the
//! returned guard drops; `current` and `with_current_group` read it back. The
//! slot is a plain thread-local pointer (one TLS read, no reference count, no
//! destructor to register), sound because the guard owns a reference to what the
//! pointer names and the slot is emptied when the guard drops (`Entered`).

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mio::{Events, Poll, Registry, Token, Waker};

use super::registration::{event_readiness, IoState};
use super::token::{IoTable, IoToken};

const EMPTY: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Events collected per poll.
const EVENTS: usize = 256;

/// The reactors of one runtime, one per worker, in worker order.
type Group = Arc<[Arc<ReactorHandle>]>;

/// The sleeping side; owned by the worker thread.
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    /// The states named by the current batch of events (reused: no allocation
    /// per poll).
    ready: Vec<(Arc<IoState>, usize)>,
    handle: Arc<ReactorHandle>,
    /// Every reactor of this one's runtime, this one included (`registrations`
    /// counts them all).
    group: Group,
}

/// The waking side, and the reactor's registry of fds; shared with every thread.
pub(crate) struct ReactorHandle {
    state: AtomicU8,
    /// `None` once the worker exited (module comment).
    waker: RwLock<Option<Waker>>,
    /// A clone of the worker's `Poll` registry (`epoll_ctl` is thread-safe);
    /// `None` once the worker exited (module comment).
    registry: RwLock<Option<Registry>>,
    /// What each registration's token names; closed once the worker has exited.
    table: IoTable,
    /// Registrations currently in the poll; the worker polls while busy only if
    /// there are any.
    registrations: AtomicUsize,
}

impl Reactor {
    /// The reactors of a runtime of `workers` workers.
    pub(crate) fn group(workers: usize) -> io::Result<Vec<Reactor>> {
        let mut parts = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
            let registry = poll.registry().try_clone()?;
            let handle = Arc::new(ReactorHandle {
                state: AtomicU8::new(EMPTY),
                waker: RwLock::new(Some(waker)),
                registry: RwLock::new(Some(registry)),
                table: IoTable::default(),
                registrations: AtomicUsize::new(0),
            });
            parts.push((poll, handle));
        }
        let group: Group = parts.iter().map(|(_, h)| h.clone()).collect();
        Ok(parts
            .into_iter()
            .map(|(poll, handle)| Reactor {
                poll,
                events: Events::with_capacity(EVENTS),
                ready: Vec::with_capacity(EVENTS),
                handle,
                group: group.clone(),
            })
            .collect())
    }

    /// What other threads use to wake this reactor and to register with it.
    pub(crate) fn handle(&self) -> Arc<ReactorHandle> {
        self.handle.clone()
    }

    /// Lends this reactor (and its group) to the calling thread until the
    /// guard drops: `current` and `with_current_group` answer with it. The
    /// worker calls this once, on its own thread, for as long as it runs.
    ///
    /// Panics if the thread has already entered a reactor (one worker per
    /// thread; also what makes the slot sound, see `Entered`).
    pub(crate) fn enter(&self) -> Entered {
        let index = self
            .group
            .iter()
            .position(|h| Arc::ptr_eq(h, &self.handle))
            .expect("a reactor belongs to its group");
        let group = self.group.clone();
        CURRENT.with(|c| {
            assert!(c.get().is_none(), "ivy: this thread already runs a reactor");
            c.set(Some(Lent {
                group: NonNull::from(&*group),
                index,
            }));
        });
        Entered {
            _group: group,
            _not_send: PhantomData,
        }
    }

    /// Sleeps until unparked, until an I/O event arrives (it is dispatched before
    /// returning), or until `timeout` elapses (`None`: no timeout). Returns at
    /// once if a wake-up token is pending.
    pub(crate) fn park(&mut self, timeout: Option<Duration>) {
        if self
            .handle
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // NOTIFIED: consume the token, pick up ready I/O without sleeping.
            self.handle.state.store(EMPTY, Ordering::Release);
            self.poll_io();
            return;
        }
        let _ = self.poll_and_dispatch(timeout);
        self.handle.state.swap(EMPTY, Ordering::AcqRel);
    }

    /// Busy- and searching-worker hook: collects I/O readiness without sleeping,
    /// so ready sockets are not starved by tasks that keep the worker busy, nor
    /// delayed while an idle worker spins looking for work. A no-op (no
    /// syscall) while no fd is registered with this reactor. Returns whether
    /// any I/O event was dispatched.
    pub(crate) fn poll_io(&mut self) -> bool {
        if self.handle.registrations.load(Ordering::Relaxed) != 0 {
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
        self.handle.table.lookup_batch(tokens, &mut self.ready);
        for (state, bits) in self.ready.drain(..) {
            dispatched = true;
            state.set_ready(bits);
        }
        dispatched
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // The worker exits: nothing dispatches any more. Release the states
        // (registrations still holding a token find the table closed), then close
        // the fds others may still reach (module comment); the poll's own fd
        // closes when `self.poll` drops, after this.
        let handle = &self.handle;
        drop(handle.table.close());
        drop(write(&handle.waker).take());
        drop(write(&handle.registry).take());
    }
}

impl ReactorHandle {
    /// Wakes the worker sleeping in this reactor (`Reactor::park`); if it is not
    /// asleep, its next `park` returns at once.
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            // A failed eventfd write means the counter is saturated, i.e. a wake-up
            // is already pending: nothing is lost. No waker: the worker exited.
            if let Some(waker) = read(&self.waker).as_ref() {
                let _ = waker.wake();
            }
        }
    }

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

/// What `Reactor::enter` lends the thread: its group, and which of them is the
/// thread's own.
#[derive(Clone, Copy)]
struct Lent {
    group: NonNull<[Arc<ReactorHandle>]>,
    index: usize,
}

thread_local! {
    /// Set by `Reactor::enter` for as long as its guard lives, `None` otherwise.
    static CURRENT: Cell<Option<Lent>> = const { Cell::new(None) };
}

/// Keeps the calling thread's reactor slot filled (`Reactor::enter`); empties
/// it when dropped.
///
/// The slot's pointer names the group this guard holds a reference to, so it
/// stays valid for as long as the slot holds it: the guard is not `Send` (it
/// drops on the thread whose slot it filled), a thread holds at most one guard
/// (`enter` refuses a second), and the slot is emptied before the reference
/// goes. A guard that is leaked (`mem::forget`) leaks its reference too, so the
/// pointer stays valid forever.
pub(crate) struct Entered {
    _group: Group,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        // `try_with`: at thread exit the slot may already be gone; then nobody
        // can read it any more either.
        let _ = CURRENT.try_with(|c| c.set(None));
    }
}

/// The reactor of the worker running on this thread, if the thread is one.
/// Callers that want the reactor of the running *task* check that they run in
/// one: a worker's own code between tasks also sees its reactor here.
pub(crate) fn current() -> Option<Arc<ReactorHandle>> {
    with_lent(|group, index| group[index].clone())
}

/// Runs `f` with every reactor of the runtime whose worker runs on this thread,
/// if the thread is one.
pub(crate) fn with_current_group<R>(f: impl FnOnce(&[Arc<ReactorHandle>]) -> R) -> Option<R> {
    with_lent(|group, _| f(group))
}

fn with_lent<R>(f: impl FnOnce(&[Arc<ReactorHandle>], usize) -> R) -> Option<R> {
    let lent = CURRENT.with(|c| c.get())?;
    // SAFETY: the slot is filled only by `Reactor::enter`, with a pointer to the
    // group its `Entered` guard keeps alive, and emptied before that guard drops
    // (see `Entered`); this thread's slot is set, so its guard is live.
    let group = unsafe { lent.group.as_ref() };
    Some(f(group, lent.index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::registration::{READABLE, WRITABLE};
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn enter_lends_the_group_to_this_thread_until_the_guard_drops() {
        let reactors = Reactor::group(3).unwrap();
        assert!(current().is_none());
        assert_eq!(with_current_group(|g| g.len()), None);
        {
            let _entered = reactors[1].enter();
            assert!(Arc::ptr_eq(&current().unwrap(), &reactors[1].handle));
            assert_eq!(with_current_group(|g| g.len()), Some(3));
            // Other threads have a slot of their own.
            std::thread::spawn(|| assert!(current().is_none()))
                .join()
                .unwrap();
        }
        assert!(current().is_none());
        // Entering again after the guard dropped is fine.
        let _entered = reactors[0].enter();
        assert!(Arc::ptr_eq(&current().unwrap(), &reactors[0].handle));
    }

    #[test]
    #[should_panic(expected = "already runs a reactor")]
    fn a_thread_enters_one_reactor_at_a_time() {
        let reactors = Reactor::group(2).unwrap();
        let _a = reactors[0].enter();
        let _b = reactors[1].enter();
    }

    #[test]
    fn park_dispatches_readiness_and_unpark_wakes_it_from_another_thread() {
        let mut reactor = Reactor::group(1).unwrap().pop().unwrap();
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        let state = Arc::new(IoState::new(0));
        let handle = reactor.handle();
        let token = handle.register(rx.as_raw_fd(), &state).unwrap();
        assert_eq!(handle.registrations(), 1);
        tx.write_all(b"x").unwrap();
        while state.ready_bits() & READABLE == 0 {
            reactor.park(Some(Duration::from_secs(5)));
        }
        assert_ne!(state.ready_bits() & WRITABLE, 0);
        handle.deregister(rx.as_raw_fd(), token);
        assert_eq!(handle.registrations(), 0);

        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            handle.unpark();
        });
        let t0 = std::time::Instant::now();
        reactor.park(None);
        assert!(t0.elapsed() < Duration::from_secs(5));
        waker.join().unwrap();
    }

    #[test]
    fn a_handle_kept_past_its_reactor_holds_no_fd_and_registers_nothing() {
        let reactor = Reactor::group(1).unwrap().pop().unwrap();
        let handle = reactor.handle();
        drop(reactor);
        assert!(handle.is_closed());
        assert!(read(&handle.waker).is_none());
        assert!(read(&handle.registry).is_none());
        handle.unpark(); // no waker: nothing to do, and no panic
        let (_a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let state = Arc::new(IoState::new(0));
        assert!(handle.register(b.as_raw_fd(), &state).is_err());
        assert_eq!(handle.registrations(), 0);
    }
}
