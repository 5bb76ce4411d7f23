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
use crate::park;
use crate::runtime::debug::WaitReason;

/// Suspends the current task for at least `d` (asyncio's `sleep(d)`). A
/// cancellation point: a cancelled task unwinds from here at once.
pub fn sleep(d: Duration) {
    match Instant::now().checked_add(d) {
        Some(deadline) => sleep_until(deadline),
        // Beyond the representable future: sleep until cancelled.
        None => loop {
            or_raise(park::park_for(None, WaitReason::Sleep));
        },
    }
}

/// Suspends the current task until `deadline`. A cancellation point.
pub fn sleep_until(deadline: Instant) {
    or_raise(sleep_until_inner(deadline));
}

pub(crate) fn sleep_until_inner(deadline: Instant) -> Result<(), crate::cancel::Interrupted> {
    loop {
        park::check_interrupt()?;
        if Instant::now() >= deadline {
            return Ok(());
        }
        park::park_for(Some(deadline), WaitReason::Sleep)?;
    }
}

/// Lets other tasks run: the current task goes to the back of its worker's queue
/// (asyncio's `sleep(0)`). A cancellation point. On a plain thread, yields the
/// OS thread.
pub fn yield_now() {
    or_raise(park::yield_now());
}
