//! `GilCell`: a Python object's Rust state that only code holding the GIL
//! touches, guarded by the GIL instead of a lock of its own.
//!
//! Why: a `Task` kept each of its Python references (name, call, outcome,
//! cancel message, callbacks) behind a `std::sync::Mutex`. A lock and an
//! unlock are two atomic read-modify-writes, and the garbage collector's
//! `__traverse__`, which runs several times over every live task, took five
//! of them per pass: it *wrote* every task's cache lines on every pass (a
//! quarter of all the first-level cache write misses of a 50k-task
//! spawn+join under callgrind, and 12% of its profile). Every access to those
//! fields is made with the GIL held anyway: in a method or function (a
//! `Python` token), in the collector's tp_traverse and tp_clear, and in
//! tp_dealloc (`&mut`, no sharing at all).
//!
//! Invariants:
//! - `borrow`/`borrow_mut` take a `Python` token: the calling thread is
//!   attached and holds the GIL, so no other thread is inside the cell at the
//!   same time, and the GIL's release and acquire order the accesses that
//!   different threads make one after another.
//! - The GIL can still change hands while a borrow is held, if the holder
//!   runs Python code (the interpreter may switch threads between two
//!   bytecodes) or detaches. A second borrow made then (by this thread,
//!   re-entering, or by the thread that got the GIL) is refused with a panic:
//!   never an aliased `&mut`. So code never holds a borrow across a call into
//!   Python code, a park, or the drop of a Python object (its `__del__` is
//!   Python code): it takes the value out, or clones it, and lets the borrow
//!   go first. (With the mutexes these cases were deadlocks.)
//! - tp_traverse has no token: `peek_in_traverse` is `unsafe`, its caller
//!   states that the collector (which holds the GIL) is calling. A field
//!   borrowed mutably at that moment (the collection interrupted the code
//!   that borrowed it) is skipped, never waited for: tp_traverse must not
//!   block, and the task it belongs to is alive anyway.
//! - On a free-threaded CPython (cfg `ivyrt_free_threaded`, set by build.rs)
//!   there is no GIL to rely on: the cell is a `Mutex`, with the same API.

#[cfg(not(ivyrt_free_threaded))]
use std::cell::{Ref, RefCell, RefMut};
use std::ops::{Deref, DerefMut};
#[cfg(ivyrt_free_threaded)]
use std::sync::{Mutex, MutexGuard};

use pyo3::Python;

pub struct GilCell<T> {
    #[cfg(not(ivyrt_free_threaded))]
    value: RefCell<T>,
    #[cfg(ivyrt_free_threaded)]
    value: Mutex<T>,
}

// SAFETY: every access to the `RefCell` is made by a thread holding the GIL
// (`borrow`/`borrow_mut` take a `Python` token; `peek_in_traverse`'s caller is
// the collector, which holds it; `get_mut` has `&mut self`), so no two
// threads touch it at once and the GIL hands it from one thread to the next
// with a release and an acquire. `T: Send`: the value may be reached from
// whichever thread holds the GIL.
#[cfg(not(ivyrt_free_threaded))]
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub fn new(value: T) -> GilCell<T> {
        GilCell {
            #[cfg(not(ivyrt_free_threaded))]
            value: RefCell::new(value),
            #[cfg(ivyrt_free_threaded)]
            value: Mutex::new(value),
        }
    }

    /// Shared access, with the GIL held. Panics if the value is borrowed
    /// mutably (a broken invariant, see the module comment).
    pub fn borrow<'a>(&'a self, _py: Python<'_>) -> impl Deref<Target = T> + 'a {
        #[cfg(not(ivyrt_free_threaded))]
        let r: Ref<'a, T> = self.value.borrow();
        #[cfg(ivyrt_free_threaded)]
        let r: MutexGuard<'a, T> = self.value.lock().unwrap_or_else(|e| e.into_inner());
        r
    }

    /// Exclusive access, with the GIL held. Panics if the value is borrowed.
    pub fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> impl DerefMut<Target = T> + 'a {
        #[cfg(not(ivyrt_free_threaded))]
        let r: RefMut<'a, T> = self.value.borrow_mut();
        #[cfg(ivyrt_free_threaded)]
        let r: MutexGuard<'a, T> = self.value.lock().unwrap_or_else(|e| e.into_inner());
        r
    }

    /// Puts `value` in and returns the old one, for the caller to drop once
    /// the borrow is over (dropping a Python object may run its `__del__`).
    pub fn replace(&self, py: Python<'_>, value: T) -> T {
        std::mem::replace(&mut *self.borrow_mut(py), value)
    }

    /// Takes the value out, leaving the default.
    pub fn take(&self, py: Python<'_>) -> T
    where
        T: Default,
    {
        self.replace(py, T::default())
    }

    /// The value, for the garbage collector's tp_traverse; `None` if it is
    /// borrowed mutably right now.
    ///
    /// # Safety
    /// The caller is tp_traverse, called by CPython's collector, which holds
    /// the GIL (the invariant `borrow` gets from its token).
    pub unsafe fn peek_in_traverse(&self) -> Option<impl Deref<Target = T> + '_> {
        #[cfg(not(ivyrt_free_threaded))]
        let r = self.value.try_borrow().ok();
        #[cfg(ivyrt_free_threaded)]
        let r = self.value.try_lock().ok();
        r
    }

    /// Exclusive access through `&mut self`: no other reference exists.
    pub fn get_mut(&mut self) -> &mut T {
        #[cfg(not(ivyrt_free_threaded))]
        let r = self.value.get_mut();
        #[cfg(ivyrt_free_threaded)]
        let r = self.value.get_mut().unwrap_or_else(|e| e.into_inner());
        r
    }
}
