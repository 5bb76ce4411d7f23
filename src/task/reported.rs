//! Interruptions reported to foreign code as errors, and the panics they cause.
//!
//! A Rust task learns of its cancellation, or of its deadline scope's end, by
//! an unwind that ivy raises in the blocking call (`cancel.rs`). A call that
//! goes through the hook layer cannot unwind: it is a libc call, and an unwind
//! through its C frames is undefined behaviour. So the hook reports the
//! interruption as the call's error (`ECANCELED`, `ETIMEDOUT`), and the task goes
//! on. Code that cannot take such an error panics on it: std's
//! `thread::sleep` asserts that its sleep was only ever cut short by `EINTR`,
//! and a sync crate `unwrap`s its `read`. That panic is the interruption's
//! delivery, the only way the code has to stop, and it is treated as one:
//!
//! - **the record**: when the hook reports an interruption, the task records
//!   which (`TaskCtx::reported`, one byte in the header's padding);
//! - **the catch sites** ([`crate::task::body::interruption_of`]): a panic
//!   caught while the record stands is that interruption. The task's root
//!   reports `JoinError::Cancelled`, the deadline scope whose deadline passed
//!   returns `Err(Elapsed)` (and clears the record), and the destructors that
//!   run user data guarded call it ivy's unwind, not a panic;
//! - **the panic message**: the std panic hook would print the assertion as a
//!   crash. At the first report ivy chains a panic hook of its own in front of
//!   the one installed, which stays silent for such a panic and passes every
//!   other panic on. It also marks the task as unwinding from an interruption
//!   (`TaskCtx::raised`), so blocking destructors on the way up run to
//!   completion as they do in ivy's own unwinds. A panic hook the program sets
//!   later replaces it: the message is then printed, and the outcome is the
//!   same, except while another task of the worker is parked mid-unwind (then
//!   only this mark tells `task_is_unwinding` that the task unwinds).
//!
//! The record is kept while the cancellation stays pending (it never stops
//! being pending): any panic of a cancelled task after the report is taken as
//! the cancellation's delivery. A C task never panics; for it the record is
//! unused.
//!
//! Layer: task core. Uses `current` and the header; called by the hook
//! services (`hook/services.rs`) and by the catch sites.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::WaitError;
use crate::task::current::with_current_task_header;
use crate::task::raw::Task;

/// `TaskCtx::reported`'s values.
pub(crate) const NONE: u8 = 0;
const CANCELLED: u8 = 1;
const ELAPSED: u8 = 2;

/// The hook reports `e` to the current task's caller as an error (see the
/// module comment). Off a task (a plain thread) there is nothing to record.
pub(crate) fn report(e: WaitError) {
    let code = match e {
        WaitError::Cancelled => CANCELLED,
        WaitError::Elapsed => ELAPSED,
        _ => return,
    };
    let in_task = with_current_task_header(|task| task.ctx.reported.set(code)).is_some();
    if in_task {
        install_panic_hook();
    }
}

/// The interruption recorded in the current task, if any.
pub(crate) fn current() -> Option<WaitError> {
    with_current_task_header(|task| decode(task.ctx.reported.get())).flatten()
}

/// Takes the interruption recorded in `task` (a binding's:
/// `task::Current::take_hook_interruption`): only from the task's own code,
/// which alone touches its record; `None` from anywhere else.
pub(crate) fn take(task: &Task) -> Option<WaitError> {
    with_current_task_header(|running| {
        if !std::ptr::eq(running, task) {
            return None;
        }
        let code = running.ctx.reported.replace(NONE);
        decode(code)
    })
    .flatten()
}

fn decode(code: u8) -> Option<WaitError> {
    match code {
        CANCELLED => Some(WaitError::Cancelled),
        ELAPSED => Some(WaitError::Elapsed),
        _ => None,
    }
}

/// The deadline scope whose deadline passed exits: its interruption is spent.
pub(crate) fn clear_elapsed() {
    with_current_task_header(|task| {
        if task.ctx.reported.get() == ELAPSED {
            task.ctx.reported.set(NONE);
        }
    });
}

/// Chains ivy's panic hook in front of the installed one, once per process.
fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    // `take_hook` / `set_hook` panic on a thread that is panicking, and this
    // thread's count includes any task parked mid-unwind here: try again at
    // the next report.
    if INSTALLED.load(Ordering::Relaxed) || std::thread::panicking() {
        return;
    }
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !delivering_interruption() {
            previous(info);
        }
    }));
}

/// In the panic hook: whether this panic is the delivery of an interruption the
/// hook reported to the running task. If so, the task is now unwinding from an
/// interruption (`task::current::task_is_unwinding`).
fn delivering_interruption() -> bool {
    with_current_task_header(|task| {
        let delivering = task.ctx.reported.get() != NONE;
        if delivering {
            task.ctx.raised.set(true);
        }
        delivering
    })
    .unwrap_or(false)
}
