//! Sleeps: `sleep usleep nanosleep clock_nanosleep`. In a task they park on
//! the worker's timers; a zero sleep yields (asyncio's `sleep(0)`). An
//! interruption (cancellation, an elapsed deadline scope) ends the sleep early
//! like a signal would, with `ECANCELED` / `ETIMEDOUT` in place of `EINTR`,
//! and the time left where the call reports it.

use libc::{c_int, c_uint, clockid_t, timespec};

use crate::errno;
use crate::real;
use crate::services::{self, Services};

/// Sleeps the task until `deadline_ns`; `Err((errno, ns left))` on interruption.
fn sleep_task(s: &Services, deadline_ns: i64) -> Result<(), (c_int, i64)> {
    match (s.sleep_until)(deadline_ns) {
        0 => Ok(()),
        err => Err((err, deadline_ns.saturating_sub(services::now_ns()).max(0))),
    }
}

fn valid(ts: &timespec) -> bool {
    ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec)
}

fn ns_of(ts: &timespec) -> i64 {
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

fn timespec_of(ns: i64) -> timespec {
    timespec {
        tv_sec: ns / 1_000_000_000,
        tv_nsec: ns % 1_000_000_000,
    }
}

/// `nanosleep(2)`.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    let Some(s) = services::current() else {
        // SAFETY: the caller's arguments.
        return unsafe { real::nanosleep(req, rem) };
    };
    // SAFETY: a non-null `req` points to a timespec (the C contract).
    if req.is_null() || !valid(unsafe { &*req }) {
        // SAFETY: the caller's arguments: the real call reports EFAULT/EINVAL.
        return unsafe { real::nanosleep(req, rem) };
    }
    // SAFETY: checked above.
    let d = services::now_ns().saturating_add(ns_of(unsafe { &*req }));
    match sleep_task(s, d) {
        Ok(()) => 0,
        Err((err, left)) => {
            if !rem.is_null() {
                // SAFETY: the caller's out-parameter.
                unsafe { *rem = timespec_of(left) };
            }
            errno::set(err);
            -1
        }
    }
}

/// `clock_nanosleep(2)` on `CLOCK_MONOTONIC` and `CLOCK_REALTIME`, relative or
/// `TIMER_ABSTIME` (a realtime deadline is taken as the monotonic time at
/// which it falls now: a clock step during the sleep is not followed). Other
/// clocks go to the real call. Returns the error number, as it does.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let s = match services::current() {
        Some(s) if clock == libc::CLOCK_MONOTONIC || clock == libc::CLOCK_REALTIME => s,
        // SAFETY: the caller's arguments.
        _ => return unsafe { real::clock_nanosleep(clock, flags, req, rem) },
    };
    // SAFETY: a non-null `req` points to a timespec (the C contract).
    if req.is_null() || !valid(unsafe { &*req }) {
        // SAFETY: the caller's arguments: the real call reports the error.
        return unsafe { real::clock_nanosleep(clock, flags, req, rem) };
    }
    // SAFETY: checked above.
    let want = ns_of(unsafe { &*req });
    let abs = flags & libc::TIMER_ABSTIME != 0;
    let d = if !abs {
        services::now_ns().saturating_add(want)
    } else if clock == libc::CLOCK_MONOTONIC {
        want
    } else {
        let mut now = timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid out-parameter.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        services::now_ns().saturating_add(want.saturating_sub(ns_of(&now)))
    };
    match sleep_task(s, d) {
        Ok(()) => 0,
        Err((err, left)) => {
            if !abs && !rem.is_null() {
                // SAFETY: the caller's out-parameter.
                unsafe { *rem = timespec_of(left) };
            }
            err
        }
    }
}

/// `usleep(3)`.
#[no_mangle]
pub unsafe extern "C" fn usleep(us: libc::useconds_t) -> c_int {
    let Some(s) = services::current() else {
        // SAFETY: plain libc.
        return unsafe { real::usleep(us) };
    };
    let d = services::now_ns().saturating_add(us as i64 * 1000);
    match sleep_task(s, d) {
        Ok(()) => 0,
        Err((err, _)) => {
            errno::set(err);
            -1
        }
    }
}

/// `sleep(3)`: the seconds left (rounded up) on interruption, with errno set.
#[no_mangle]
pub unsafe extern "C" fn sleep(secs: c_uint) -> c_uint {
    let Some(s) = services::current() else {
        // SAFETY: plain libc.
        return unsafe { real::sleep(secs) };
    };
    let d = services::now_ns().saturating_add(secs as i64 * 1_000_000_000);
    match sleep_task(s, d) {
        Ok(()) => 0,
        Err((err, left)) => {
            errno::set(err);
            ((left + 999_999_999) / 1_000_000_000) as c_uint
        }
    }
}
