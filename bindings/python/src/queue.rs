//! asyncio's `Queue` and `LifoQueue` in sync form, over `ivy::sync::Queue` and
//! `ivy::sync::LifoQueue` holding Python objects. (`PriorityQueue` is in
//! `python/ivyrt/_queues.py`: why below.)
//!
//! Design decisions:
//! - **Fast path under the GIL.** `put`/`get` first try the queue's
//!   non-blocking form while holding the GIL; only a full `put` or an empty
//!   `get` parks through `block::blocking` (GIL released, task parked). A
//!   ping-pong between two tasks on one worker is then one PyO3 call and one
//!   task switch per operation.
//! - **Items are opaque to the queue.** ivy's queues move values between
//!   tasks and threads while the GIL may be released (a parked `put` hands its
//!   item over from whichever task frees the room), so the items they hold
//!   must never need the GIL. `Py<PyAny>` only moves. A priority queue must
//!   *compare* items, i.e. run Python `__lt__`, which needs the GIL: done
//!   inside ivy's queue it would run without the GIL or deadlock against a
//!   task that holds the GIL and waits for the queue's lock. So
//!   `PriorityQueue` is written in Python over `Condition` (as CPython's
//!   `queue.PriorityQueue` is over `threading.Condition`), where every
//!   comparison runs under the GIL.
//! - `task_done`/`join` are ivy's (`ValueError` when called too often); a
//!   `maxsize` of 0 or less is unbounded, as in asyncio. `shutdown()` (asyncio
//!   3.13) is ivy's `close`, whose rules are asyncio's: puts refused, getters
//!   drain what is left, waiting putters and getters woken.

use ivy::sync::GetError;
use ivy::WaitError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::block::{blocking_with, deadline_after};
use crate::errors::{QueueEmpty, QueueFull};

pyo3::create_exception!(
    ivyrt,
    QueueShutDown,
    pyo3::exceptions::PyException,
    "put() on a queue that was shut down, or get() on one shut down and drained (asyncio 3.13)."
);

/// `Ok(None)` for the call's own deadline, the rest as errors for `blocking`.
fn timed<T>(r: Result<T, WaitError>) -> Result<Option<T>, WaitError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(WaitError::TimedOut) => Ok(None),
        Err(e) => Err(e),
    }
}

fn queue_empty() -> PyErr {
    QueueEmpty::new_err(())
}

fn queue_full() -> PyErr {
    QueueFull::new_err(())
}

fn shut_down(_py: Python<'_>) -> PyErr {
    QueueShutDown::new_err(())
}

macro_rules! py_queue {
    ($name:ident, $ivy:ident, $doc:literal, $pyname:literal) => {
        #[doc = $doc]
        #[pyclass(module = "ivyrt", frozen)]
        pub struct $name {
            q: ivy::sync::$ivy<Py<PyAny>>,
            maxsize: usize,
        }

        #[pymethods]
        impl $name {
            #[new]
            #[pyo3(signature = (maxsize=0))]
            fn new(maxsize: i64) -> PyResult<Self> {
                let maxsize = usize::try_from(maxsize).unwrap_or(0);
                let q = if maxsize == 0 {
                    ivy::sync::$ivy::unbounded()
                } else {
                    ivy::sync::$ivy::try_bounded(maxsize)
                        .map_err(|e| PyValueError::new_err(e.to_string()))?
                };
                Ok($name { q, maxsize })
            }

            /// Puts `item`, parking while the queue is full. With `timeout`
            /// (seconds), raises QueueFull if no room came in time.
            #[pyo3(signature = (item, timeout=None))]
            fn put(&self, py: Python<'_>, item: Py<PyAny>, timeout: Option<f64>) -> PyResult<()> {
                let item = match self.q.try_put(item) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.is_closed() => return Err(shut_down(py)),
                    Err(e) => e.into_inner(),
                };
                let deadline = deadline_after(timeout)?;
                // A refused item comes back beside the error; it is dropped
                // here, once the GIL is held again.
                let mut refused = None;
                let put = blocking_with(
                    py,
                    || {
                        timed(self.q.put_deadline(item, deadline).map_err(|(e, item)| {
                            refused = Some(item);
                            e
                        }))
                    },
                    shut_down,
                );
                drop(refused);
                put?.ok_or_else(queue_full)
            }

            /// Puts `item` without waiting; QueueFull if there is no room.
            fn put_nowait(&self, py: Python<'_>, item: Py<PyAny>) -> PyResult<()> {
                match self.q.try_put(item) {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_closed() => Err(shut_down(py)),
                    Err(_) => Err(queue_full()),
                }
            }

            /// Removes and returns an item, parking while the queue is empty.
            /// With `timeout` (seconds), raises QueueEmpty if none came in time.
            #[pyo3(signature = (timeout=None))]
            fn get(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
                match self.q.try_get() {
                    Ok(item) => return Ok(item),
                    Err(GetError::Closed) => return Err(shut_down(py)),
                    Err(_) => {}
                }
                let deadline = deadline_after(timeout)?;
                blocking_with(py, || timed(self.q.get_deadline(deadline)), shut_down)?
                    .ok_or_else(queue_empty)
            }

            /// Removes and returns an item without waiting; QueueEmpty if none.
            fn get_nowait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                match self.q.try_get() {
                    Ok(item) => Ok(item),
                    Err(GetError::Closed) => Err(shut_down(py)),
                    Err(_) => Err(queue_empty()),
                }
            }

            /// Shuts the queue down (asyncio 3.13): `put` raises QueueShutDown
            /// from now on (waiting putters too), `get` once the queue is empty.
            /// `immediate=True` also drops the items left, marking each done
            /// (which can release `join`), so getters raise at once.
            #[pyo3(signature = (immediate=false))]
            fn shutdown(&self, immediate: bool) {
                self.q.close();
                if immediate {
                    while self.q.try_get().is_ok() {
                        let _ = self.q.task_done();
                    }
                }
            }

            /// Marks one item taken by `get` as processed (for `join`);
            /// ValueError if called more often than items were put.
            fn task_done(&self) -> PyResult<()> {
                self.q
                    .task_done()
                    .map_err(|_| PyValueError::new_err("task_done() called too many times"))
            }

            /// Parks until every item put has been marked done by `task_done`.
            /// True, or False if `timeout` seconds passed first.
            #[pyo3(signature = (timeout=None))]
            fn join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
                if self.q.unfinished_tasks() == 0 {
                    return Ok(true);
                }
                let deadline = deadline_after(timeout)?;
                Ok(
                    blocking_with(py, || timed(self.q.join_deadline(deadline)), shut_down)?
                        .is_some(),
                )
            }

            /// The number of items in the queue.
            fn qsize(&self) -> usize {
                self.q.len()
            }

            /// Whether the queue is empty.
            fn empty(&self) -> bool {
                self.q.is_empty()
            }

            /// Whether the queue holds `maxsize` items (never, if unbounded).
            fn full(&self) -> bool {
                self.maxsize != 0 && self.q.len() >= self.maxsize
            }

            /// The bound given at creation (0: unbounded).
            #[getter]
            fn maxsize(&self) -> usize {
                self.maxsize
            }

            fn __len__(&self) -> usize {
                self.q.len()
            }

            fn __repr__(&self) -> String {
                format!(
                    "<ivyrt.{} maxsize={} qsize={} unfinished={}>",
                    $pyname,
                    self.maxsize,
                    self.q.len(),
                    self.q.unfinished_tasks()
                )
            }
        }
    };
}

py_queue!(
    Queue,
    Queue,
    "A FIFO queue (asyncio.Queue): `put` parks while full (`maxsize` > 0), `get` while empty; `task_done`/`join` count processed items.",
    "Queue"
);
py_queue!(
    LifoQueue,
    LifoQueue,
    "A LIFO queue (asyncio.LifoQueue): the most recently put item is got first.",
    "LifoQueue"
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("QueueShutDown", m.py().get_type::<QueueShutDown>())?;
    m.add_class::<Queue>()?;
    m.add_class::<LifoQueue>()?;
    Ok(())
}
