//! A task's body and its end: the closure, the result, and everything that
//! happens when the task finishes, in one place.
//!
//! A task's end happens on the task's own stack, in its coroutine (`run`): the
//! body, then its task-locals' destructors, then the drop of its result if
//! nobody can join it any more (or the drop of its closure if it was cancelled
//! before it started), each inside `catch_unwind` (`Body::start`); then `end`:
//! the task is DONE, leaves its scheduler (`Schedule::release`, which counts it
//! out of the runtime's live tasks and unlists it), and wakes its joiner
//! (`header::notify_done`), in that order, so that a joiner sees the live tasks
//! without this one. Why on the task's stack: every step of the first part runs
//! user code, and user code run anywhere else — on the worker's stack when it
//! recycles the task, or after the guard — turned a panicking destructor into a
//! dead worker, stranding every task homed on it and hanging shutdown. On the
//! task's stack a destructor may also block like any task code. A panic there
//! is the task's panic: `join` returns it, or it is reported as unjoined. The
//! worker then only frees the stack and recycles the allocation.
//!
//! The result travels in the body's typed slot (`Stage`, where the closure was
//! before the task started), written by the task's own stack (under the join
//! lock) and read by the joiner after it observes the task done
//! (release/acquire on `JoinCore::is_done`), or taken by the handle's drop under
//! the join lock once the task marked it stored (see `Stage` and `task::join`).
//!
//! Also here: the unwind payloads of ivy's cancellation and deadlines, which the
//! task's end tells from panics (`cancel.rs` raises them).
//!
//! Layer: task core. Uses the task header, `local` and the
//! `Schedule` trait; no worker, no timer, no reactor.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::WaitError;
use crate::loom::UnsafeCell;
use crate::task::header::{notify_done, TaskId};
use crate::task::local::LocalMap;
use crate::task::raw::{self, FrameCtx, JoinCore, Task, TaskYielder};
use crate::task::reported;

/// The unwind payload that carries a cancellation up a Rust task's stack.
pub(crate) struct CancelUnwind;

/// The unwind payload that carries an elapsed deadline up to its scope. Which
/// scope it belongs to is recorded in the caller's scope state (`cancel_scope.rs`).
pub(crate) struct ElapsedUnwind;

/// The interruption an unwind caught in the current task delivers, if it is one:
/// ivy's own unwinds, and a panic while an interruption the hook layer reported
/// as an error stands (the panic is its delivery: `task::reported`).
pub(crate) fn interruption_of(p: &(dyn Any + Send)) -> Option<WaitError> {
    if p.is::<CancelUnwind>() {
        Some(WaitError::Cancelled)
    } else if p.is::<ElapsedUnwind>() {
        Some(WaitError::Elapsed)
    } else {
        reported::current()
    }
}

/// Whether an unwind delivers the task's cancellation (see [`interruption_of`]):
/// the task, or a scoped child, ends as cancelled rather than panicked.
pub(crate) fn delivers_cancel(p: &(dyn Any + Send)) -> bool {
    interruption_of(p) == Some(WaitError::Cancelled)
}

/// Whether an unwind is an interruption (see [`interruption_of`]), not a panic.
pub(crate) fn is_ivy_unwind(p: &(dyn Any + Send)) -> bool {
    interruption_of(p).is_some()
}

/// A task's coroutine: what runs on its stack, from its first instruction to
/// its last (the worker creates the coroutine at the task's first run).
pub(crate) fn run(task: Arc<Task>, yielder: &TaskYielder) {
    // The task's task-locals and deadline scopes, in this frame for the whole
    // body (`raw::FrameCtx`). Declared first, so it dies last. `start` emptied
    // the task-local map (`LocalMap::clear_all`, guarded), so its drop runs no
    // user code.
    let frame = FrameCtx::default();
    // SAFETY: this is the task's body, on its coroutine, given its yielder.
    unsafe { crate::task::current::started(&task, yielder) };
    // `task`, the body's own `Arc`, keeps the task alive from here to the body's
    // end, whatever else drops theirs while it is suspended: what lets
    // `current` lend the running task out without touching its count.
    {
        // SAFETY: the guard lives in this block and is dropped at its end (or
        // by an unwind through it), never forgotten.
        let _published = unsafe { task.publish_frame(&frame) };
        task.body().start(&task, None);
        end(&task);
    }
    drop(task);
}

/// The last step of a task whose result is stored (or that was settled
/// without running): DONE, out of its scheduler, joiner woken. Runs no user
/// code. On the task's own stack (`run`), on the worker's for an abandoned
/// task, on the settling thread for one that never ran.
pub(crate) fn end(task: &Arc<Task>) {
    task.transition_to_done();
    // Leave the scheduler before waking the joiner, so that a joiner sees the
    // runtime's live tasks without this one (regression: the count lagged the
    // join).
    task.scheduler.release(task);
    notify_done(task);
}

/// A task's closure until it starts, then its result once stored: never both,
/// so they share one slot (tokio's `Stage` does the same), which spares every
/// task whose closure has no niche a word or more (`spawn(move || i)` with a
/// `u64`: 16 bytes, and glibc's 112-byte chunk rather than its 128-byte one:
/// `raw::tests::a_small_body_stays_in_its_chunk`). The result keeps an error
/// without its task id (the body has it), and a panic's payload boxed once more.
///
/// Who touches it, and when (the `Sync` impl of `Body` rests on this):
/// - the closure is taken once, without the join lock, by the one thread that
///   starts or settles the task (`Body::start`);
/// - the result is written once, by that same thread, holding the join lock,
///   and only if the handle still exists; `JoinCore::set_stored` then says so
///   under the same lock;
/// - the handle takes the result after it observed the task DONE (Acquire), or
///   holding the join lock after it observed STORED. Before either, it never
///   reads the slot, which the task may be taking its closure from.
enum Stage<F, T> {
    Closure(F),
    /// The closure was taken (the task runs or ran), and no result is stored:
    /// not yet, or taken by the handle, or dropped by the task itself.
    Empty,
    Result(Result<T, Repr>),
}

/// Where a `JoinHandle` reads its task's result: the `Stage` inside the task's
/// `Body`, whose closure type the handle does not know.
pub(crate) trait ResultSlot<T>: raw::Start {
    /// The result, if it is stored and not taken yet.
    ///
    /// # Safety
    /// Called only after the task was observed DONE, by the handle.
    unsafe fn take(&self) -> Option<Result<T, JoinError>>;
    /// The result, if the task stored it by now (whether or not it is DONE).
    ///
    /// # Safety
    /// Called by the handle, holding this task's join lock (`held`).
    unsafe fn take_stored(&self, held: &raw::JoinSlot) -> Option<Result<T, JoinError>>;
    /// Whether a result is stored and not taken yet.
    ///
    /// # Safety
    /// As `take`.
    unsafe fn has_result(&self) -> bool;
}

/// Why a task produced no value.
pub struct JoinError {
    id: TaskId,
    repr: Repr,
}

/// Boxed once more than `std::panic` hands it over, so that `Repr` is one pointer
/// and a tag (`Stage`); only a panic pays the allocation.
enum Repr {
    Cancelled,
    Panicked(Box<Box<dyn Any + Send + 'static>>),
    NoStack(std::io::Error),
}

impl JoinError {
    pub(crate) fn cancelled(id: TaskId) -> JoinError {
        JoinError {
            id,
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn panicked(id: TaskId, payload: Box<dyn Any + Send>) -> JoinError {
        JoinError {
            id,
            repr: Repr::Panicked(Box::new(payload)),
        }
    }

    pub(crate) fn no_stack(id: TaskId, e: std::io::Error) -> JoinError {
        JoinError {
            id,
            repr: Repr::NoStack(e),
        }
    }

    /// The task was cancelled (before it started, or at a blocking call).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// The task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panicked(_))
    }

    /// The task could not start because no stack could be allocated for it.
    pub fn is_no_stack(&self) -> bool {
        matches!(self.repr, Repr::NoStack(_))
    }

    /// The id of the task that failed.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The panic message, if the task panicked with a string.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            Repr::Panicked(p) => payload_str(&***p),
            _ => None,
        }
    }

    /// The panic payload, to resume it with `std::panic::resume_unwind`.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panicked(p) => Ok(*p),
            repr => Err(JoinError { id: self.id, repr }),
        }
    }
}

pub(crate) fn payload_str(p: &(dyn Any + Send)) -> Option<&str> {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        Some(s)
    } else {
        p.downcast_ref::<String>().map(|s| s.as_str())
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "task {} was cancelled", self.id),
            Repr::Panicked(p) => match payload_str(&***p) {
                Some(m) => write!(f, "task {} panicked: {m}", self.id),
                None => write!(f, "task {} panicked", self.id),
            },
            Repr::NoStack(e) => write!(f, "task {} could not get a stack: {e}", self.id),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "JoinError::Cancelled({})", self.id),
            Repr::Panicked(p) => write!(
                f,
                "JoinError::Panicked({}, {:?})",
                self.id,
                payload_str(&***p).unwrap_or("<non-string payload>")
            ),
            Repr::NoStack(e) => write!(f, "JoinError::NoStack({}, {e})", self.id),
        }
    }
}

impl std::error::Error for JoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.repr {
            Repr::NoStack(e) => Some(e),
            _ => None,
        }
    }
}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> std::io::Error {
        let kind = match e.repr {
            Repr::NoStack(_) => std::io::ErrorKind::OutOfMemory,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

/// A task's closure and its result, in one allocation: the task holds it as its
/// `Entry` (to run the closure once), the `JoinHandle` as its `ResultSlot`.
pub(crate) struct Body<F, T> {
    core: JoinCore,
    stage: UnsafeCell<Stage<F, T>>,
}

// SAFETY: `stage` follows `Stage`'s protocol: the closure is taken exactly once, by
// the one thread that runs the task's entry (queues hand a task to one thread at a
// time, a task refused at spawn is never queued and is settled by the spawning
// thread alone, and `start` is called once), before that thread stores the result
// under the join lock and marks it STORED; the handle reads the slot only after it
// observed STORED under that lock or DONE with Acquire ordering, both set after the
// write. So no two accesses are ever concurrent. `F: Send` because the closure
// moves to the worker; `T: Send` because the value moves to the joiner.
unsafe impl<F: Send, T: Send> Sync for Body<F, T> {}

impl<F, T> Body<F, T> {
    pub(crate) fn new(id: u64, name: Option<Box<str>>, f: F) -> Body<F, T> {
        Body {
            core: JoinCore::new(id, name),
            stage: UnsafeCell::new(Stage::Closure(f)),
        }
    }

    /// The stored result, leaving the slot empty.
    ///
    /// # Safety
    /// `Stage`'s protocol: the caller may read the slot (it observed DONE, or
    /// STORED holding the join lock).
    unsafe fn take_result(&self) -> Option<Result<T, JoinError>> {
        let r = self.stage.with_mut(|stage| {
            // SAFETY: the caller may access the slot; see `Stage`.
            let stage = unsafe { &mut *stage };
            if !matches!(stage, Stage::Result(_)) {
                return None;
            }
            match std::mem::replace(stage, Stage::Empty) {
                Stage::Result(r) => Some(r),
                Stage::Closure(_) | Stage::Empty => unreachable!("matched just above"),
            }
        })?;
        let id = TaskId(self.core.id());
        Some(r.map_err(|repr| JoinError { id, repr }))
    }

    /// The closure, leaving the slot empty: `None` if it was taken already.
    ///
    /// # Safety
    /// `Stage`'s protocol: called once, by the thread that starts or settles the
    /// task, before it stores the result.
    pub(crate) unsafe fn take_closure(&self) -> Option<F> {
        // SAFETY: as the caller promises, no result is stored yet, so the handle
        // does not read the slot, and nobody else takes the closure.
        self.stage.with_mut(
            |stage| match unsafe { std::mem::replace(&mut *stage, Stage::Empty) } {
                Stage::Closure(f) => Some(f),
                Stage::Empty => None,
                Stage::Result(_) => unreachable!("ivy: a task's result is stored after its start"),
            },
        )
    }
}

impl<F, T> raw::Start for Body<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn start(&self, task: &Task, not_run: Option<raw::NotRun>) {
        // SAFETY: see the `Sync` impl: this is the one call, on the running thread,
        // before the result is stored.
        let f = unsafe { self.take_closure() };
        let id = TaskId(self.core.id());
        let result = match not_run {
            Some(why) => {
                // The task will never run: this is a blocking-pool thread (no stack
                // for it: worker.rs) or the spawner's (closed runtime, or no guarded
                // stack left). The closure's captures are user code: a panic in
                // their drop is this task's, not that thread's.
                let mut result = match why {
                    raw::NotRun::NoStack(e) => Err(JoinError::no_stack(id, e)),
                    raw::NotRun::Closed => Err(JoinError::cancelled(id)),
                };
                if let Some(p) = drop_guarded(f) {
                    ended_with_panic(&self.core, &mut result, p);
                }
                result
            }
            None => {
                let f = f.expect("a task's entry starts once");
                let mut result = run_body(&self.core, task, f);
                // Whatever unwound the body was caught: none is in flight now
                // (`current::caught`, for the running task: this one).
                task.raised.set(false);
                // Task-locals die on the task's own stack and thread, guarded.
                let panicked = LocalMap::clear_all(&task.frame().locals);
                if let Some(p) = panicked {
                    ended_with_panic(&self.core, &mut result, p);
                }
                result
            }
        };
        self.finish(result);
    }

    fn abandon(&self) {
        self.finish(Err(JoinError::cancelled(TaskId(self.core.id()))));
    }

    fn core(&self) -> &JoinCore {
        &self.core
    }
}

impl<F, T> Body<F, T> {
    /// The last step of a task: hand the result to the handle, or, if the handle
    /// is gone, drop it here, on the task's own stack and under `catch_unwind`
    /// (a panic there is reported like any panic nobody joined). Decided under
    /// the join lock, so the handle's drop (which takes a stored result under
    /// the same lock) and this never miss each other: a result is never left for
    /// the worker to drop when it recycles the task.
    pub(crate) fn finish(&self, result: Result<T, JoinError>) {
        let slot = self.core.lock();
        if !slot.joiner.handle_dropped() {
            let stored = Stage::Result(result.map_err(|e| e.repr));
            // SAFETY: `Stage`'s protocol: written once, by the task, under the join
            // lock, before it is marked STORED and DONE; its closure was taken, so
            // the assignment drops no user data.
            self.stage.with_mut(|stage| unsafe { *stage = stored });
            self.core.set_stored(&slot);
            return;
        }
        drop(slot);
        if let Some(p) = drop_guarded(result) {
            let mut slot = self.core.lock();
            if slot.panic_message.is_none() {
                slot.panic_message = Some(unjoined_message(p.as_ref()));
            }
            drop(slot);
            drop_payload(p);
        }
    }
}

impl<F, T> ResultSlot<T> for Body<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    unsafe fn take(&self) -> Option<Result<T, JoinError>> {
        // SAFETY: the caller observed the task DONE.
        unsafe { self.take_result() }
    }

    unsafe fn take_stored(&self, held: &raw::JoinSlot) -> Option<Result<T, JoinError>> {
        if !self.core.is_stored(held) {
            return None; // the task may still be taking its closure out of the slot
        }
        // SAFETY: STORED observed holding the join lock, under which it was set
        // after the write.
        unsafe { self.take_result() }
    }

    unsafe fn has_result(&self) -> bool {
        self.stage.with_mut(|stage| {
            // SAFETY: the caller observed the task DONE.
            matches!(unsafe { &*stage }, Stage::Result(_))
        })
    }
}

/// Drops user data (a closure, a result) under `catch_unwind`, on the current
/// stack. Returns the payload of a panic in its destructor; an ivy cancellation
/// or deadline unwind (a blocking call in the destructor was interrupted) is not
/// a panic and is dropped here.
fn drop_guarded<X>(x: X) -> Option<Box<dyn std::any::Any + Send>> {
    match catch_unwind(AssertUnwindSafe(move || drop(x))) {
        Ok(()) => None,
        Err(p) if is_ivy_unwind(p.as_ref()) => {
            drop_payload(p);
            None
        }
        Err(p) => Some(p),
    }
}

/// A panic payload's message, for reports.
pub(crate) fn message_of(p: &(dyn std::any::Any + Send)) -> String {
    payload_str(p)
        .unwrap_or("<non-string panic payload>")
        .to_string()
}

/// A panic's message as `JoinSlot::panic_message` keeps it (one word), for the
/// report of a panic nobody joins.
fn unjoined_message(p: &(dyn std::any::Any + Send)) -> raw::ThinStr {
    Box::new(message_of(p).into_boxed_str())
}

/// Drops a caught panic payload; a payload whose own destructor panics is
/// forgotten (it is user data, and nothing is left to report it to).
pub(crate) fn drop_payload(p: Box<dyn std::any::Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(p))) {
        std::mem::forget(again);
    }
}

/// A panic caught at the end of a task (a task-local's destructor): it becomes
/// the task's result unless the body already panicked (the hook printed both).
fn ended_with_panic<T>(
    core: &JoinCore,
    result: &mut Result<T, JoinError>,
    p: Box<dyn std::any::Any + Send>,
) {
    if matches!(result, Err(e) if e.is_panic()) {
        return drop_payload(p);
    }
    core.lock().panic_message = Some(unjoined_message(p.as_ref()));
    let old = std::mem::replace(result, Err(JoinError::panicked(TaskId(core.id()), p)));
    // The value the body returned is user data: dropped guarded, here.
    if let Some(p) = drop_guarded(old) {
        drop_payload(p);
    }
}

/// Runs a task's body on its own stack, turning unwinds into a `JoinError`. A
/// task cancelled before it started never runs its closure, but drops it here,
/// on its own stack and guarded like the body.
fn run_body<F, T>(core: &JoinCore, task: &Task, f: F) -> Result<T, JoinError>
where
    F: FnOnce() -> T,
{
    let tid = TaskId(core.id());
    if task.is_cancelled() {
        // Cancelled before it ever ran: user code never starts.
        return match catch_unwind(AssertUnwindSafe(move || drop(f))) {
            Ok(()) => Err(JoinError::cancelled(tid)),
            Err(p) => Err(unwind_error(core, tid, p)),
        };
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Ok(v),
        Err(p) => Err(unwind_error(core, tid, p)),
    }
}

/// The `JoinError` for an unwind caught in a task: a cancellation, or a panic
/// (whose message is kept for the "nobody joined it" report).
fn unwind_error(core: &JoinCore, tid: TaskId, p: Box<dyn std::any::Any + Send>) -> JoinError {
    if delivers_cancel(p.as_ref()) {
        drop_payload(p);
        return JoinError::cancelled(tid);
    }
    core.lock().panic_message = Some(unjoined_message(p.as_ref()));
    JoinError::panicked(tid, p)
}
