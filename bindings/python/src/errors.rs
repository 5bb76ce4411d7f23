//! TEMPORARY stand-in for py-core's `errors.rs`: replaced when py-core's
//! branch is merged.

use pyo3::prelude::*;

pyo3::create_exception!(ivyrt, CancelledError, pyo3::exceptions::PyBaseException);
pyo3::create_exception!(ivyrt, IvyError, pyo3::exceptions::PyException);
pyo3::create_exception!(ivyrt, InvalidStateError, IvyError);
pyo3::create_exception!(ivyrt, QueueEmpty, pyo3::exceptions::PyException);
pyo3::create_exception!(ivyrt, QueueFull, pyo3::exceptions::PyException);
pyo3::create_exception!(ivyrt, BrokenBarrierError, pyo3::exceptions::PyRuntimeError);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    m.add("IvyError", py.get_type::<IvyError>())?;
    m.add("InvalidStateError", py.get_type::<InvalidStateError>())?;
    m.add("QueueEmpty", py.get_type::<QueueEmpty>())?;
    m.add("QueueFull", py.get_type::<QueueFull>())?;
    m.add("BrokenBarrierError", py.get_type::<BrokenBarrierError>())?;
    Ok(())
}
