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
//! Layering, bottom up (each layer uses only itself and the layers below it;
//! `tests/layers.rs` checks it): `context` (the thread's current worker, task and
//! timer wheel: a leaf), `loom`, `error` · `stack` (task stacks, overflow
//! reports) · the task core (`task::{raw, state, header, body, current, local,
//! unparker, schedule, wait_reason, thread_state}`: the task header and state
//! machine, its body and its whole end, the current task, task-locals; it reaches
//! its runtime only through the `Schedule` trait) · `timer` (the timer wheel,
//! lent by each worker) · `park`, `cancel`, `cancel_scope` (park/unpark of the
//! *current* task or thread, the primitive every blocking operation is built on;
//! cancellation and deadline scopes) · `io` (fd readiness on each worker's poll)
//! · the scheduler (`runtime::{worker, shared, idle, registry, task_pool, debug}`,
//! `blocking`) · the api (`runtime`'s `Runtime`, `Builder`, `Handle`; `task`'s
//! spawn, join, gather, scopes, `block_on` for futures; `time`, `sync`, `net`, `fs`, generators) · `ffi`,
//! the C ABI over all of them (`include/ivy.h`).

#![deny(unsafe_op_in_unsafe_fn)]

mod blocking;
mod cancel;
mod cancel_scope;
mod context;
mod error;
pub mod ffi;
pub mod fs;
mod generator;
mod hook;
pub mod io;
mod loom;
#[cfg(all(test, loom))]
mod model_check;
pub mod net;
pub mod park;
mod prefetch;
pub mod runtime;
mod stack;
pub mod sync;
pub mod task;
pub mod time;
mod timer;

pub use blocking::{blocking_threads, spawn_blocking, BlockingHandle};
pub use cancel_scope::{deadline, shield, timeout, Elapsed};
pub use error::WaitError;
pub use generator::{Generator, ScopedGenerator, Yielder};
pub use runtime::{run, Builder, Handle, HookParkGuard, Runtime};
pub use task::{
    as_completed, block_on, block_on_deadline, current, join_all, join_all_deadline,
    join_all_settled, join_all_settled_deadline, scope, spawn, wait_any, wait_any_deadline,
    AsCompleted, JoinError, JoinHandle, Scope, ScopedJoinHandle, TaskId,
};
pub use time::{sleep, sleep_until, yield_now};
