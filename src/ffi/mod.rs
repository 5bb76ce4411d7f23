//! The C ABI: `include/ivy.h`, generated from this module by cbindgen.
//!
//! A thin layer over the Rust API. What it adds is only what C needs:
//!
//! * **Handles, not pointers** (`handle.rs`). Every object C holds (a runtime, a
//!   task, ...) is a `{ uint64_t id; }` value naming a slot of a table with a
//!   generation counter. A stale, double-freed, double-joined or zeroed handle
//!   finds no live slot and the call returns `IVY_EBADF`; it never touches freed
//!   memory.
//! * **Error codes, not unwinding** (`error.rs`). Every function returns `0` or a
//!   negative `IVY_E*` code (equal to `-errno` on Linux where one fits) and hands
//!   results back through out-parameters. Nothing is reported through `errno` or a
//!   thread-local "last error": a task may resume after another task ran on its
//!   thread, and glibc lets C code cache `errno`'s address.
//! * **No Rust unwind crosses C frames.** Every exported function runs its body
//!   under [`guard`], which catches panics and returns `IVY_EPANIC`. Blocking
//!   calls use the non-unwinding `Result` layer (the `*_deadline` calls of
//!   `ivy::sync` and `JoinHandle`, `park_until`, `time::sleep_deadline`; see "Two
//!   forms of every blocking call" in `ivy::sync`) and never `or_raise`:
//!   cancellation reaches a C task as `IVY_ECANCELED` from its next blocking call,
//!   and the C code returns on its own.
//! * **Deadlines** (`time.rs`): every blocking call takes an `int64_t` absolute
//!   deadline in milliseconds on the `ivy_time_now()` clock, `-1` for none (libdill's
//!   convention). A deadline already passed makes the call a non-blocking try.

#![allow(non_camel_case_types)] // C names: ivy_task_t, ivy_task_fn_t, ...

pub(crate) mod cancel_scope;
pub(crate) mod error;
pub(crate) mod generator;
pub(crate) mod group;
pub(crate) mod handle;
pub(crate) mod local;
pub(crate) mod net;
pub(crate) mod poll;
pub(crate) mod queue;
pub(crate) mod runtime;
pub(crate) mod stream;
pub(crate) mod sync;
pub(crate) mod task;
pub(crate) mod time;
pub(crate) mod unix;
pub(crate) mod version;

use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use cancel_scope::*;
pub use error::*;
pub use generator::*;
pub use group::*;
pub use local::*;
pub use net::*;
pub use poll::*;
pub use queue::*;
pub use runtime::*;
pub use sync::*;
pub use task::*;
pub use time::*;
pub use unix::*;
pub use version::*;

/// Runs the body of an exported function: `Ok(())` becomes `0`, `Err(code)` the
/// code, and a panic `IVY_EPANIC` (the panic hook has already printed it). This
/// is what keeps every unwind on the Rust side of the boundary.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(code)) => code,
        Err(payload) => {
            // Dropping a payload can itself panic; keep that on this side too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            IVY_EPANIC
        }
    }
}

/// Writes `value` through an out-parameter already checked non-null (by
/// `out_ptr`, or an explicit test for the optional ones).
///
/// # Safety
/// `out` is non-null, aligned and valid for a write of `T` (the C contract of
/// every out-parameter in `ivy.h`).
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: the caller's contract, stated above.
    unsafe { out.write(value) }
}

/// Copies `text` and a terminating NUL into the C buffer `buf` of `cap` bytes;
/// `IVY_ERANGE` (buffer untouched) if they do not fit.
///
/// # Safety
/// `buf` is valid for `cap` bytes of writes.
pub(crate) unsafe fn write_c_str(text: &str, buf: *mut c_char, cap: usize) -> Result<(), c_int> {
    if text.len() + 1 > cap {
        return Err(IVY_ERANGE);
    }
    // SAFETY: `buf` has room for `cap >= text.len() + 1` bytes (the caller's
    // contract), and a Rust string does not overlap a C buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    Ok(())
}

/// The shape of a call that makes one value for C: checks `out` first (`NULL`
/// is `IVY_EINVAL`, before any side effect), then runs `make` and stores its
/// value in `*out` (nothing is stored on an error).
///
/// # Safety
/// `out` is `NULL` or valid for a write of `T`.
pub(crate) unsafe fn store_out<T>(
    out: *mut T,
    make: impl FnOnce() -> Result<T, c_int>,
) -> Result<(), c_int> {
    let out = out_ptr(out)?;
    let value = make()?;
    // SAFETY: checked non-null; writable by the caller's contract.
    unsafe { write_out(out, value) };
    Ok(())
}

/// Checks an out-parameter before any side effect: `NULL` is `IVY_EINVAL`.
pub(crate) fn out_ptr<T>(out: *mut T) -> Result<*mut T, c_int> {
    if out.is_null() {
        Err(IVY_EINVAL)
    } else {
        Ok(out)
    }
}
