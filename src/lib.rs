//! # ivy: green threads for Rust and C
//!
//! A task is a *stackful* coroutine: a plain function that may call blocking-looking
//! functions (`sleep`, `Mutex::lock`, `Queue::get`, socket reads) anywhere in its
//! call tree. A blocking call parks the task, never its worker thread. Tasks are
//! scheduled M:N over worker threads by a work-stealing scheduler.
//!
//! ```
//! let sum = ivy::run(|| {
//!     let handles: Vec<_> = (0..10u64)
//!         .map(|i| ivy::spawn(move || { ivy::sleep(std::time::Duration::from_millis(1)); i }))
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(sum, 45);
//! ```
//!
//! Layering, bottom up: `stack` (task stacks, overflow reports), `time::wheel`
//! (timers), `runtime` (workers, queues, parking of threads), `task` (the task
//! state machine, join, task-locals), `park` (park/unpark of the *current* task or
//! thread: the primitive every blocking operation is built on), then `sync` (locks,
//! semaphores, events, conditions, queues and select for tasks and threads), `io`
//! (fd readiness on each worker's poll), `net` (sockets), `blocking` (the thread
//! pool behind `spawn_blocking`) and `fs` (files on that pool); `ffi` is the C ABI
//! over all of them (`include/ivy.h`).

#![deny(unsafe_op_in_unsafe_fn)]

mod blocking;
mod cancel;
mod cancel_scope;
mod error;
pub mod ffi;
pub mod fs;
mod generator;
pub mod io;
mod loom;
#[cfg(all(test, loom))]
mod model_check;
pub mod net;
pub mod park;
pub mod runtime;
mod stack;
pub mod sync;
pub mod task;
pub mod time;

pub use blocking::{blocking_threads, spawn_blocking, BlockingHandle};
pub use cancel_scope::{deadline, shield, timeout, Elapsed};
pub use error::WaitError;
pub use generator::{Generator, ScopedGenerator, Yielder};
pub use runtime::{run, Builder, Handle, Runtime};
pub use task::{
    as_completed, current, join_all, join_all_deadline, join_all_settled,
    join_all_settled_deadline, scope, spawn, wait_any, wait_any_deadline, AsCompleted, JoinError,
    JoinHandle, Scope, ScopedJoinHandle, TaskId,
};
pub use time::{sleep, sleep_until, yield_now};
