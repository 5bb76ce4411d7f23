//! Time: `sleep`, `sleep_until`, `yield_now`.
//!
//! A sleeping task parks with a deadline; the deadline lives in the timer wheel of
//! the task's home worker (`crate::timer`). Because a started task never leaves its
//! worker, the wheel needs no lock: only its worker thread inserts, removes and
//! fires. Precision is the wheel's 1 ms tick, and a timer never fires early.
//! On a plain thread these functions fall back to `std::thread`.
//!
//! Layer: api. Built on `park` (and through it on the worker's timer wheel);
//! nothing below imports it.

use std::time::{Duration, Instant};

use crate::cancel::or_raise;
use crate::error::WaitError;
use crate::park;
use crate::runtime::debug::WaitReason;

/// Suspends the current task for at least `d` (asyncio's `sleep(d)`). A
/// cancellation point: a cancelled task unwinds from here at once.
pub fn sleep(d: Duration) {
    // Beyond the representable future (`None`): sleep until cancelled.
    or_raise(sleep_deadline(Instant::now().checked_add(d)));
}

/// Suspends the current task until `deadline`. A cancellation point.
pub fn sleep_until(deadline: Instant) {
    or_raise(sleep_deadline(Some(deadline)));
}

/// The `Result` form of [`sleep_until`] (`ivy::sync`, "Two forms of every
/// blocking call"): sleeps until `deadline` (`None`: until interrupted) and
/// returns `Ok(())` when it is reached -- at once, without parking, for a passed
/// one. A cancellation or an enclosing timeout scope ends the sleep early with
/// `Err(WaitError::Cancelled)` / `Err(WaitError::Elapsed)` instead of unwinding.
pub fn sleep_deadline(deadline: Option<Instant>) -> Result<(), WaitError> {
    loop {
        park::check_interrupt()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        park::park_for(deadline, WaitReason::Sleep)?;
    }
}

/// Lets other tasks run: the current task goes to the back of its worker's queue
/// (asyncio's `sleep(0)`). A cancellation point. On a plain thread, yields the
/// OS thread.
pub fn yield_now() {
    or_raise(yield_now_checked());
}

/// The `Result` form of [`yield_now`]: `Err(WaitError::Cancelled)` (or
/// `Elapsed`) instead of an unwind when the task is interrupted.
pub fn yield_now_checked() -> Result<(), WaitError> {
    park::yield_now()
}
