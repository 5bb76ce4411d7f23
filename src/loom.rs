//! The synchronisation primitives of the model-checked modules (tokio's `loom`
//! facade): std's under a normal build, loom's under `--cfg loom`.
//!
//! Only the modules whose protocol is model-checked import their atomics and
//! locks from here: the task state machine (`task::state`), the wait list of
//! `ivy::sync` (`sync::waiters`), the idle/sleeper handshake
//! (`runtime::idle`) and the join state and result slot of a task's body
//! (`task::raw::JoinCore`, `task::body::Stage`). Their loom tests
//! (`model_check/`, run by `tests/model-check.sh`) then explore every
//! interleaving of *the code the runtime runs*, not of a copy. In a normal
//! build these are plain re-exports of std: zero cost, nothing changes for the
//! rest of the crate.
//!
//! Everything else keeps using std directly: under `--cfg loom` the crate still
//! compiles (the rest is simply not run), which keeps the facade small. loom
//! is a dev-dependency, so its types are used only when the crate is built as
//! its own unit-test binary (`cfg(all(loom, test))`, as the model checks are);
//! any other build under `--cfg loom` gets std's.

#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};

#[cfg(all(loom, test))]
pub(crate) use ::loom::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};

/// `UnsafeCell` with loom's closure API (`with_mut`), so that loom can track
/// the accesses under `--cfg loom`; std's cell underneath otherwise.
#[cfg(not(all(loom, test)))]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(all(loom, test)))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(all(loom, test))]
pub(crate) use ::loom::cell::UnsafeCell;
