//! Time in the C ABI: the `ivy_time_now()` clock, deadlines, sleep and yield.
//!
//! `ivy_time_now()` is monotonic milliseconds since a process-wide origin (fixed at the
//! first call into this module). A deadline is an absolute `int64_t` on that
//! clock; `-1` means none, any other negative value is `IVY_EINVAL`. A deadline
//! that has passed (including `0`) still lets a call succeed if it can do so
//! without waiting: it is a non-blocking try.

use std::os::raw::c_int;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::error::{wait_error, IVY_EINVAL};
use super::guard;

/// The deadline value meaning "wait forever".
// The cast makes cbindgen emit `(int64_t)-1`, an expression safe in any context.
#[allow(clippy::unnecessary_cast)]
pub const IVY_FOREVER: i64 = -1 as i64;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Converts a C deadline to an `Instant` (`None` = no deadline).
pub(crate) fn to_instant(ms: i64) -> Result<Option<Instant>, c_int> {
    match ms {
        IVY_FOREVER => Ok(None),
        ms if ms < 0 => Err(IVY_EINVAL),
        // Beyond the representable future means never.
        ms => Ok(origin().checked_add(Duration::from_millis(ms as u64))),
    }
}

/// Monotonic time in milliseconds since an arbitrary process-wide origin: the
/// clock of every deadline. Never fails, never goes backwards; callable from any
/// thread, inside or outside a runtime.
#[no_mangle]
pub extern "C" fn ivy_time_now() -> i64 {
    // `guard` is not needed: nothing here can panic short of a broken clock,
    // and then catching it is the right thing too.
    let mut now = 0;
    guard(|| {
        now = i64::try_from(origin().elapsed().as_millis()).unwrap_or(i64::MAX);
        Ok(())
    });
    now
}

/// Suspends the calling task until `deadline` (`ivy_time_now()` milliseconds; `-1`:
/// until cancelled). On a plain thread, sleeps the thread.
///
/// Returns 0 when the deadline is reached (at once, without parking, for a
/// passed one); `IVY_ECANCELED` if the task is (or gets) cancelled, at once;
/// `IVY_EINVAL` for a negative deadline other than -1.
#[no_mangle]
pub extern "C" fn ivy_time_sleep_until(deadline: i64) -> c_int {
    guard(|| crate::time::sleep_deadline(self::to_instant(deadline)?).map_err(wait_error))
}

/// Suspends the calling task for `ms` milliseconds (relative; `0` checks for
/// cancellation without waiting). Errors as `ivy_time_sleep_until`; `IVY_EINVAL` for
/// a negative `ms`.
#[no_mangle]
pub extern "C" fn ivy_time_sleep(ms: i64) -> c_int {
    guard(|| {
        if ms < 0 {
            return Err(IVY_EINVAL);
        }
        let deadline = Instant::now().checked_add(Duration::from_millis(ms as u64));
        crate::time::sleep_deadline(deadline).map_err(wait_error)
    })
}

/// Lets other tasks run: the calling task goes to the back of its worker's
/// queue (asyncio's `sleep(0)`). On a plain thread, yields the OS thread.
/// Returns 0, or `IVY_ECANCELED` if the task has been cancelled.
#[no_mangle]
pub extern "C" fn ivy_task_yield() -> c_int {
    guard(|| crate::time::yield_now_checked().map_err(wait_error))
}
