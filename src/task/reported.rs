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
//!   which (`Task::reported`, one byte in the header's padding);
//! - **the catch sites** ([`crate::task::body::interruption_of`]): a panic
//!   caught while the record stands is that interruption. The task's root
//!   reports `JoinError::Cancelled`, the deadline scope whose deadline passed
//!   returns `Err(Elapsed)` (and clears the record), and the destructors that
//!   run user data guarded call it ivy's unwind, not a panic;
//! - **the panic message**: the std panic hook would print the assertion as a
//!   crash. ivy's panic hook (`task::panic_hook`, installed by every runtime
//!   and again at the first report) stays silent for such a panic and passes
//!   every other panic on. Like any panic in a task, it marks the task as
//!   unwinding, so blocking destructors on the way up run to completion as
//!   they do in ivy's own unwinds.
//!
//! The record is kept while the cancellation stays pending (it never stops
//! being pending): any panic of a cancelled task after the report is taken as
//! the cancellation's delivery. A C task never panics; for it the record is
//! unused.
//!
//! Layer: task core. Uses `current` and the header; called by the hook
//! services (`hook/services.rs`) and by the catch sites.

use crate::error::WaitError;
use crate::task::current::with_current_task_header;
use crate::task::raw::Task;

/// `Task::reported`'s values.
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
    let in_task = with_current_task_header(|task| task.reported.set(code)).is_some();
    if in_task {
        crate::task::panic_hook::install();
    }
}

/// The interruption recorded in the current task, if any.
pub(crate) fn current() -> Option<WaitError> {
    with_current_task_header(|task| decode(task.reported.get())).flatten()
}

/// Takes the interruption recorded in `task` (a binding's:
/// `task::Current::take_hook_interruption`): only from the task's own code,
/// which alone touches its record; `None` from anywhere else.
pub(crate) fn take(task: &Task) -> Option<WaitError> {
    with_current_task_header(|running| {
        if !std::ptr::eq(running, task) {
            return None;
        }
        let code = running.reported.replace(NONE);
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
        if task.reported.get() == ELAPSED {
            task.reported.set(NONE);
        }
    });
}

/// Whether `task` (the running task, in the panic hook) holds a report: its
/// panic is the delivery of that interruption.
pub(crate) fn is_reported(task: &Task) -> bool {
    task.reported.get() != NONE
}
