//! `ivyrt._ivyrt`: the extension module behind the `ivyrt` package.
//!
//! Each submodule registers its own names (`register`); `__init__.py` re-exports
//! what `__all__` lists.

use pyo3::prelude::*;

mod block;
mod errors;
mod executor;
mod generator;
mod net;
mod queue;
mod sync;

#[pymodule]
fn _ivyrt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    sync::register(m)?;
    queue::register(m)?;
    executor::register(m)?;
    net::register(m)?;
    generator::register(m)?;
    Ok(())
}
