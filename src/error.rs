//! `WaitError`: why a blocking call returned without doing its work.
//!
//! One error type for every blocking call of ivy's non-unwinding layer (locks,
//! queues, joins, sleeps, socket readiness): the Rust API that unwinds on
//! cancellation is built on it, and the C ABI maps it to `IVY_ECANCELED`,
//! `IVY_ETIMEDOUT` and `IVY_ECLOSED`. A leaf: plain data, importing nothing of
//! ivy, so every layer can name it.

use std::fmt;
use std::io;

/// Why a blocking call of ivy's `Result` layer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitError {
    /// The calling task was cancelled (`JoinHandle::cancel`, runtime shutdown).
    Cancelled,
    /// The deadline of an enclosing [`crate::timeout`] / [`crate::deadline`]
    /// scope passed.
    Elapsed,
    /// The call's own deadline passed.
    TimedOut,
    /// The object waited on was closed: a closed queue or channel, a socket
    /// closed by another thread, or a primitive freed by the C ABI's
    /// `ivy_*_free` while the caller waited.
    Closed,
}

impl WaitError {
    /// Whether this is an interruption of the caller (cancellation or an elapsed
    /// scope) rather than an outcome of the call itself.
    pub fn is_interrupt(self) -> bool {
        matches!(self, WaitError::Cancelled | WaitError::Elapsed)
    }

    /// The `WaitError` an `io::Error` made by [`From<WaitError>`] carries, if any.
    pub fn of(e: &io::Error) -> Option<WaitError> {
        e.get_ref()?.downcast_ref::<WaitError>().copied()
    }
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitError::Cancelled => "the task was cancelled",
            WaitError::Elapsed => "the deadline of an enclosing timeout scope passed",
            WaitError::TimedOut => "timed out",
            WaitError::Closed => "closed while waiting",
        })
    }
}

impl std::error::Error for WaitError {}

/// For I/O code: an `io::Error` of a matching kind (`TimedOut` for both
/// deadlines, `Interrupted` for a cancellation, `NotConnected` for a close) that
/// carries the `WaitError` (see [`WaitError::of`]).
impl From<WaitError> for io::Error {
    fn from(e: WaitError) -> io::Error {
        let kind = match e {
            WaitError::Cancelled => io::ErrorKind::Interrupted,
            WaitError::Elapsed | WaitError::TimedOut => io::ErrorKind::TimedOut,
            WaitError::Closed => io::ErrorKind::NotConnected,
        };
        io::Error::new(kind, e)
    }
}
