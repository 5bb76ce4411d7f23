//! How an idle worker thread sleeps: in `epoll_wait`, through its own `mio::Poll`.
//!
//! Each worker owns a `mio::Poll`. Sleeping there (rather than on a futex) means the
//! same wait covers the worker's next timer (the poll timeout), wake-ups from other
//! threads (a `mio::Waker`, an eventfd) and, later, readiness of sockets registered
//! by the worker's tasks. One wait, three sources, no helper thread.
//!
//! The `state` word avoids the syscall in the common case: a waker only writes the
//! eventfd when the worker is actually asleep (`PARKED`); otherwise it leaves a
//! `NOTIFIED` token that the worker consumes before it would sleep.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Poll, Token, Waker};

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

/// The waking side; shared with every thread.
pub(crate) struct WorkerUnparker {
    state: AtomicU8,
    waker: Waker,
}

impl Parker {
    pub(crate) fn new() -> io::Result<Parker> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
        Ok(Parker {
            poll,
            events: Events::with_capacity(256),
            unparker: Arc::new(WorkerUnparker {
                state: AtomicU8::new(EMPTY),
                waker,
            }),
        })
    }

    pub(crate) fn unparker(&self) -> Arc<WorkerUnparker> {
        self.unparker.clone()
    }

    /// Sleeps until unparked or until `timeout` elapses (`None`: no timeout).
    /// Returns at once if a wake-up token is pending.
    pub(crate) fn park(&mut self, timeout: Option<Duration>) {
        let state = &self.unparker.state;
        if state
            .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // NOTIFIED: consume the token and return.
            state.store(EMPTY, Ordering::Release);
            return;
        }
        loop {
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // epoll_wait fails only on programming errors (EBADF, EINVAL);
                // there is nobody to report to from here, and spinning is safe.
                Err(_) => break,
            }
        }
        state.swap(EMPTY, Ordering::AcqRel);
    }
}

impl WorkerUnparker {
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            // A failed eventfd write means the counter is saturated, i.e. a wake-up
            // is already pending: nothing is lost.
            let _ = self.waker.wake();
        }
    }
}
