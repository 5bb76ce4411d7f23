//! The thread's place in the runtime: which worker runs on it, which task it is
//! running, which timer wheel it lends to the park layer, and the two per-thread
//! counters the layers below the scheduler read (the running task's I/O budget,
//! the tasks parked mid-unwind).
//!
//! Layer: a leaf. It imports nothing of ivy, so every layer may use it, and it
//! is what lets the task core, the timers, `park` and `io` find "the current
//! task" or "the current wheel" without importing the scheduler above them.
//!
//! The pointer slots are type-erased (`*const ()`): this module does not know
//! the types, and does not dereference them. Each slot has exactly one owner
//! module, which stores it, casts it back and states the SAFETY argument; no
//! other module touches it:
//!
//! * `worker`: `runtime::worker` (the `Worker` running on this thread);
//! * `task`: the task core, `task::current` (the `Task` being resumed);
//! * `yielder`: the task core, `task::current` (the resumed task's yielder);
//! * `timers`: `timer` (the wheel of the worker running on this thread).
//!
//! Invariant for every reader: read a slot through one of the functions below,
//! which are not inlined, and read it again after every switch. A task's code
//! must never cache the address of a thread-local across a suspension point
//! (LLVM may assume it constant within a function). Tasks do not migrate, but
//! keeping this discipline costs nothing and keeps the invariant local. The
//! worker itself, which never switches threads, may keep a pointer to its own
//! thread's `Context` (`this_thread`).

use std::cell::Cell;

/// One thread's slots. `Cell`s only: a slot is written by its owner on this
/// thread and read on this thread.
pub(crate) struct Context {
    worker: Cell<*const ()>,
    task: Cell<*const ()>,
    /// The yielder of the task in `task`: its suspend reads it here, one load
    /// from the thread-local, rather than through the task and its stack
    /// header, two dependent loads more (findings/round10.md: 2 ns a switch).
    yielder: Cell<*const ()>,
    timers: Cell<*const ()>,
    /// What is left of the running task's I/O budget (reset at every resume).
    io_budget: Cell<u32>,
    /// Tasks of this thread's worker suspended in the middle of an unwind.
    parked_unwinding: Cell<usize>,
}

thread_local! {
    // No destructor (`const`, `Cell`s of plain data): the slot lives, and its
    // address stays valid, for as long as the thread runs.
    static CONTEXT: Context = const {
        Context {
            worker: Cell::new(std::ptr::null()),
            task: Cell::new(std::ptr::null()),
            yielder: Cell::new(std::ptr::null()),
            timers: Cell::new(std::ptr::null()),
            io_budget: Cell::new(0),
            parked_unwinding: Cell::new(0),
        }
    };
}

/// This thread's context, for the worker that runs on it (it keeps the
/// pointer for its lifetime instead of reading the thread-local on every
/// resume). Valid for as long as the thread runs: `CONTEXT` has no destructor.
pub(crate) fn this_thread() -> *const Context {
    CONTEXT.with(|c| c as *const Context)
}

/// The worker slot (owner: `runtime::worker`).
#[inline(never)]
pub(crate) fn worker() -> *const () {
    CONTEXT.with(|c| c.worker.get())
}

/// The task slot (owner: `task::current`).
#[inline(never)]
pub(crate) fn task() -> *const () {
    CONTEXT.with(|c| c.task.get())
}

/// The task and yielder slots (owner: `task::current`), in one read of the
/// thread-local: whoever suspends the running task needs both, and where ivy is a shared library (libivy.so, the Python
/// extension) every read of a thread-local is a call to `__tls_get_addr` (two
/// a switch were 9% of a C program's switch instructions).
#[inline(never)]
pub(crate) fn task_and_yielder() -> (*const (), *const ()) {
    CONTEXT.with(|c| (c.task.get(), c.yielder.get()))
}

/// The timers slot (owner: `timer`).
#[inline(never)]
pub(crate) fn timers() -> *const () {
    CONTEXT.with(|c| c.timers.get())
}

/// Runs `f` with this thread's context: for the counters, and for the owners
/// of the slots when they write them.
#[inline(never)]
pub(crate) fn with<R>(f: impl FnOnce(&Context) -> R) -> R {
    CONTEXT.with(f)
}

impl Context {
    pub(crate) fn set_worker(&self, p: *const ()) {
        self.worker.set(p);
    }

    pub(crate) fn task(&self) -> *const () {
        self.task.get()
    }

    pub(crate) fn set_task(&self, p: *const ()) {
        self.task.set(p);
    }

    pub(crate) fn set_yielder(&self, p: *const ()) {
        self.yielder.set(p);
    }

    pub(crate) fn set_timers(&self, p: *const ()) {
        self.timers.set(p);
    }

    pub(crate) fn io_budget(&self) -> u32 {
        self.io_budget.get()
    }

    pub(crate) fn set_io_budget(&self, n: u32) {
        self.io_budget.set(n);
    }

    pub(crate) fn parked_unwinding(&self) -> usize {
        self.parked_unwinding.get()
    }

    pub(crate) fn set_parked_unwinding(&self, n: usize) {
        self.parked_unwinding.set(n);
    }
}
