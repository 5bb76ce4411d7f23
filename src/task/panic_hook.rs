//! ivy's panic hook: which task is unwinding, and the panics that are not crashes.
//!
//! A worker thread is shared by its tasks, and so is std's count of the panics
//! in flight on it: while one task is suspended inside a destructor during its
//! unwind, `std::thread::panicking()` is true for every task of that thread
//! (`task::current::task_is_unwinding`). ivy then relies on the task's own mark
//! (`Task::raised`). ivy sets it when it raises a cancellation or deadline
//! unwind; a panic of the task's own code can only be seen here, in a panic
//! hook, which std runs on the panicking task's stack before the unwind starts.
//! Without the mark, a cancelled task that panicked while a neighbour was
//! parked mid-unwind had its blocking destructor interrupted again: an unwind
//! out of a destructor during an unwind, and the process aborted.
//!
//! So every runtime's `Builder::build` chains this hook in front of the one
//! installed (once per process): for a panic in a task it marks the task as
//! unwinding, then passes the panic on to the previous hook, which prints it
//! as before. The one exception is the delivery of an interruption the hook
//! layer reported as an error (`task::reported`): std's `thread::sleep`
//! asserting `EINTR` is a cancellation, not a crash, and is not printed.
//!
//! A hook the program sets later with `std::panic::set_hook` replaces this one
//! (chain it with `take_hook`, or set it before building the runtime, to keep
//! it): panics are then reported by the program's hook alone, and the two cases
//! above lose their mark (README, "Design decisions", "Panics and ivy's panic
//! hook").
//!
//! The mark of a panic that the task's own `catch_unwind` catches stays until
//! the task next suspends with no unwind in flight on its thread; meanwhile the
//! task counts as unwinding, so a cancellation waits for its next blocking call
//! after that. A mark too many delays; a mark too few aborted.
//!
//! Layer: task core. Uses `current` and the header.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::task::current::with_current_task_header;
use crate::task::reported;

/// Chains ivy's panic hook in front of the installed one, once per process.
/// Does nothing on a thread that is panicking (`take_hook` and `set_hook` would
/// panic there; this thread's count includes any task parked mid-unwind on it):
/// the next call tries again.
pub(crate) fn install() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.load(Ordering::Relaxed) || std::thread::panicking() {
        return;
    }
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !mark_unwinding() {
            previous(info);
        }
    }));
}

/// In the hook, on the panicking thread: marks the running task (if any) as
/// unwinding. Returns whether the panic delivers an interruption the hook layer
/// reported (then it is not printed).
fn mark_unwinding() -> bool {
    with_current_task_header(|task| {
        task.raised.set(true);
        reported::is_reported(task)
    })
    .unwrap_or(false)
}
