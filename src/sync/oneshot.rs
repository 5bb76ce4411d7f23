//! One-shot channels: a single value from one sender to one receiver.
//!
//! A small state behind a `std::sync::Mutex`, shared by the two halves through
//! an `Arc`: the value slot, whether each half is alive, and the parked receiver's
//! unparker. `send` fails (returning the value) once the receiver is gone;
//! `recv` fails once the sender is dropped without sending. An interrupted
//! `recv` leaves the channel as it was: a value sent meanwhile stays in the slot
//! for the next `recv`/`try_recv`, nothing is lost.
//!
//! ```
//! let v = ivy::run(|| {
//!     let (tx, rx) = ivy::sync::oneshot::channel();
//!     ivy::spawn(move || tx.send(42).unwrap());
//!     rx.recv().unwrap()
//! });
//! assert_eq!(v, 42);
//! ```

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::{deadline_after, lock_state, WaitError};
use crate::park::{self, Unparker};

struct State<T> {
    value: Option<T>,
    sender_alive: bool,
    receiver_alive: bool,
    waiter: Option<Unparker>,
}

/// Creates a connected sender / receiver pair.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(StdMutex::new(State {
        value: None,
        sender_alive: true,
        receiver_alive: true,
        waiter: None,
    }));
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending half; `send` consumes it.
pub struct Sender<T> {
    shared: Arc<StdMutex<State<T>>>,
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<StdMutex<State<T>>>,
}

/// The sender was dropped without sending (or the value was already received).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot sender dropped without sending")
    }
}

impl std::error::Error for RecvError {}

/// Why `try_recv` returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing sent yet; the sender is alive.
    Empty,
    /// The sender is gone without (further) value.
    Disconnected,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "no value sent yet",
            TryRecvError::Disconnected => "oneshot sender dropped without sending",
        })
    }
}

impl std::error::Error for TryRecvError {}

/// Why `recv_timeout` returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// The deadline passed first; the receiver can wait again.
    Timeout,
    /// The sender is gone without (further) value.
    Disconnected,
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "timed out waiting for the value",
            RecvTimeoutError::Disconnected => "oneshot sender dropped without sending",
        })
    }
}

impl std::error::Error for RecvTimeoutError {}

impl<T> Sender<T> {
    /// Sends the value, waking the receiver. `Err(value)` if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        let waiter = {
            let mut s = lock_state(&self.shared);
            if !s.receiver_alive {
                return Err(value);
            }
            s.value = Some(value);
            s.waiter.take()
        };
        if let Some(u) = waiter {
            u.unpark();
        }
        Ok(())
    }

    /// Whether the receiver has been dropped (a send would fail).
    pub fn is_closed(&self) -> bool {
        !lock_state(&self.shared).receiver_alive
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waiter = {
            let mut s = lock_state(&self.shared);
            s.sender_alive = false;
            s.waiter.take()
        };
        if let Some(u) = waiter {
            u.unpark();
        }
    }
}

impl<T> Receiver<T> {
    /// Parks until the value arrives. A cancellation point when it has to wait.
    pub fn recv(mut self) -> Result<T, RecvError> {
        match self.recv_deadline(None) {
            Ok(v) => Ok(v),
            Err(e) => match e.raise_interrupt() {
                WaitError::Closed => Err(RecvError),
                e => unreachable!("ivy: unexpected {e:?} from oneshot recv"),
            },
        }
    }

    /// Like `recv`, giving up after `timeout`; the receiver stays usable.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until_opt(deadline_after(timeout))
    }

    /// Like `recv`, giving up at `deadline`; the receiver stays usable.
    pub fn recv_until(&mut self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until_opt(Some(deadline))
    }

    fn recv_until_opt(&mut self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(deadline)
            .map_err(|e| match e.raise_interrupt() {
                WaitError::Closed => RecvTimeoutError::Disconnected,
                WaitError::TimedOut => RecvTimeoutError::Timeout,
                e => unreachable!("ivy: unexpected {e:?} from oneshot recv"),
            })
    }

    /// Takes the value if it has been sent; never blocks.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut s = lock_state(&self.shared);
        match s.value.take() {
            Some(v) => Ok(v),
            None if s.sender_alive => Err(TryRecvError::Empty),
            None => Err(TryRecvError::Disconnected),
        }
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): waits for the value until
    /// `deadline` (`None`: no deadline of its own); the receiver stays usable
    /// after an error. `Err(Closed)` when the sender was dropped without
    /// sending.
    pub fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<T, WaitError> {
        loop {
            {
                let mut s = lock_state(&self.shared);
                if let Some(v) = s.value.take() {
                    s.waiter = None;
                    return Ok(v);
                }
                if !s.sender_alive {
                    s.waiter = None;
                    return Err(WaitError::Closed);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    s.waiter = None;
                    return Err(WaitError::TimedOut);
                }
                if s.waiter.is_none() {
                    s.waiter = Some(park::current_unparker());
                }
            }
            if let Err(e) = park::park_for(deadline, crate::runtime::debug::WaitReason::Queue) {
                lock_state(&self.shared).waiter = None;
                return Err(e);
            }
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let value = {
            let mut s = lock_state(&self.shared);
            s.receiver_alive = false;
            s.waiter = None;
            s.value.take()
        };
        drop(value); // outside the lock: T's destructor may do anything
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}
