//! What a parked task waits for: one byte the task stores before it parks
//! (`Task::wait_reason`, one relaxed store, so always on) and task dumps read
//! (`runtime::debug`, which re-exports the type under its public path
//! `ivy::runtime::debug::WaitReason`).
//!
//! Layer: task core. Imports nothing.

/// What a parked task waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WaitReason {
    /// Not waiting (running or queued).
    None = 0,
    /// `ivy::park` or an unspecified primitive.
    Park,
    /// `sleep` / `sleep_until`.
    Sleep,
    /// `JoinHandle::join`, `join_all`, `wait_any`, a scope's children.
    Join,
    /// A `Mutex` or `RwLock`.
    Lock,
    /// A `Semaphore` permit.
    Semaphore,
    /// An `Event`, `Condition`, `WaitGroup` or `Barrier`.
    Event,
    /// A queue or channel.
    Queue,
    /// Socket or file-descriptor readiness.
    Io,
    /// A job on the blocking pool.
    Blocking,
    /// A future driven by `ivy::block_on`.
    Future,
}

impl WaitReason {
    pub(crate) fn from_u8(v: u8) -> WaitReason {
        use WaitReason::*;
        [
            None, Park, Sleep, Join, Lock, Semaphore, Event, Queue, Io, Blocking, Future,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Park)
    }
}
