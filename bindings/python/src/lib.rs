//! `ivyrt._ivyrt`: the extension module behind the `ivyrt` package.
//!
//! Each submodule registers its own names (`register`); `__init__.py` re-exports
//! what `__all__` lists. Layers: `errors` (exception types) <- `swap` (a
//! task's Python state, 3.11) <- `tstate` (thread states on task stacks) <-
//! `block` (the one path of every blocking call) + `cancel` (one-shot
//! cancellation) <- `task` <- `runtime`.

use pyo3::prelude::*;

pub mod block;
pub mod cancel;
pub mod errors;
mod gil_cell;
pub mod runtime;
#[cfg(ivyrt_swap)]
mod swap;
pub mod task;
pub mod tstate;

// py-lib: primitives, queues, executors, sockets, generators.
mod executor;
mod generator;
mod net;
mod queue;
mod sync;

#[pymodule]
fn _ivyrt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    task::register(m)?;
    runtime::register(m)?;
    sync::register(m)?;
    queue::register(m)?;
    executor::register(m)?;
    net::register(m)?;
    generator::register(m)?;
    Ok(())
}
