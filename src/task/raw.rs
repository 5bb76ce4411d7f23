//! The task header: identity, the scheduling state machine, and the coroutine.
//!
//! A `Task` is shared (`Arc`) between its queue, its `JoinHandle`, wakers and the
//! runtime's registry, but most of it is owned by one thread at a time:
//!
//! * Before its first run a task has no coroutine and no stack, only an `entry`
//!   closure. Whoever popped it from a queue owns it; that is what makes stealing
//!   unstarted tasks cheap and sound.
//! * At its first run the worker that runs it becomes its **home** for life. The
//!   coroutine (which corosensei makes `!Send`) is created there, and only the home
//!   thread ever touches `coro` and `ctx` again. A woken task is always queued back
//!   on its home worker. This is why OS thread-locals stay coherent inside a task.
//! * What only a started task needs is not in the header at all but on its
//!   stack, on the page every started task touches anyway: the coroutine itself,
//!   the overflow report's description, the saved thread state and the pointers
//!   its own code suspends through (`StackHeader`, right above the first frames),
//!   and what only its own code reads while its body runs (task-locals, deadline
//!   scopes: `FrameCtx`, in the first frame; the stack header points to it while
//!   the body runs). An unstarted or finished task has none, and pays nothing for
//!   it: the heap header is 72 bytes.
//!
//! State machine: `task::state` (SCHEDULED/RUNNING/PARKED/DONE, the NOTIFIED
//! bit, the cancelled flag), a type of its own so that loom checks the very code
//! the runtime runs (README, "Model checking"). A task is in at most one queue at
//! a time, and a wake-up that races with a park is never lost.
//!
//! Layer: task core (the task header). Uses the rest of the core
//! (`state`, `local`, `schedule`, `thread_state`) and `stack`; knows no worker, no
//! timer, no reactor: the runtime behind a task is its `Arc<dyn Schedule>`.

use std::cell::{Cell, RefCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::loom::{AtomicU64, Mutex, MutexGuard};

use corosensei::{Coroutine, Yielder};

use crate::stack::overflow::RunningTask;
use crate::stack::TaskStack;
use crate::task::local::LocalMap;
use crate::task::schedule::Schedule;

use crate::task::state::TaskState;
pub(crate) use crate::task::state::{PARKED, RUNNING, SCHEDULED};

/// What a task tells its worker when it suspends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// Put me at the back of my worker's ready queue.
    Yield,
    /// Leave me parked until someone unparks me.
    Park,
    /// Never resume me: leak my stack (`task::current::abandon`).
    Abandon,
}

pub(crate) type TaskCoroutine = Coroutine<(), Suspend, (), TaskStack>;
pub(crate) type TaskYielder = Yielder<(), Suspend>;

/// A task's closure, result slot and join bookkeeping, in one allocation shared
/// with the `JoinHandle` (see `task::body::Body`). The task holds it for life; the
/// handle may outlive the task: once the task is done, the `Task` itself is
/// freed and only this remains until the handle is joined or dropped.
pub(crate) type Entry = Arc<dyn Start>;

/// Why a task's closure will never run.
pub(crate) enum NotRun {
    /// No stack could be allocated for it (on the worker, at its first run).
    NoStack(std::io::Error),
    /// It was spawned on a runtime that is shutting down or gone (on the spawning
    /// thread: nothing would ever run it).
    Closed,
}

/// Runs a task's closure once. Called on the task's own stack with `None`, or
/// with `Some(why)` when the task will never run (see `NotRun`), in which case it
/// records that for the joiner and runs no user code but the closure's drop
/// (guarded). All of a task's end (task-locals, the result of a detached task)
/// happens inside `start`, guarded: see `task::body`. `task` is the task this
/// is the body of (the running task, when it runs): passed in rather than
/// looked up in the thread's context, which cost three thread-local reads per
/// task (findings/hot.md).
pub(crate) trait Start: Send + Sync {
    fn start(&self, task: &Task, not_run: Option<NotRun>);
    /// The task will never be resumed (`panic = "abort"` shutdown, see
    /// `task::current::abandon`): record a cancellation for the joiner, on the worker's
    /// stack, running no user code.
    fn abandon(&self);
    /// Identity and join bookkeeping, shared with the `JoinHandle`.
    fn core(&self) -> &JoinCore;
}

pub(crate) const NO_HOME: usize = usize::MAX;
/// `NO_HOME` in the header's `u32`.
const HOME_UNSET: u32 = u32::MAX;

fn saturate_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) struct Task {
    /// The closure (taken at the first run), the result slot and the join state;
    /// `None` only while the allocation waits in a task pool.
    body: Option<Entry>,
    state: TaskState,
    /// Index of the home worker, `HOME_UNSET` until the first run: a `u32`, which
    /// packs with the other small fields (a runtime has at most 4096 workers).
    home: AtomicU32,
    /// The stack size it asked for, saturated at `u32::MAX` (any size above `MAX_STACK_SIZE`,
    /// 1 GiB, is refused alike): 4 bytes, which pack with the state bytes, so the header did
    /// not grow with `TaskCtx::suspended_sp` (`idle_memory` counts every byte of it).
    stack_size: u32,
    /// The runtime that runs it; kept by a pooled allocation (task_pool.rs).
    pub(crate) scheduler: Arc<dyn Schedule>,
    /// Slot in the runtime's registry of live tasks.
    pub(crate) registry_key: AtomicUsize,
    /// What the task is parked on (`runtime::debug::WaitReason`), for task dumps.
    pub(crate) wait_reason: AtomicU8,
    /// Handed, unstarted, to the worker that will start it, and already counted
    /// there (`runtime::placement`); cleared at the first run. Written and read
    /// only by whoever owns the unstarted task (the hand-over is a queue push,
    /// which orders it), so `Relaxed`; an atomic rather than a `Cell` only
    /// because the owner changes threads.
    placed: AtomicBool,
    /// The coroutine, in its stack's header: see the module comment for who may
    /// touch it when.
    coro: CoroSlot,
    /// Task-owned: touched only by the task's own code and by its home worker
    /// while the task is not running. Interior-mutable cells only, so no `&mut`
    /// aliases exist across a switch.
    pub(crate) ctx: TaskCtx,
    // Two more of the task's own cells, beside the small fields above rather
    // than in `ctx`, where they would pad it by 8 bytes. (Whether its code
    // ever reached its deadline-scope state is a bit of `state`'s interrupt
    // byte, beside the cancelled flag: `Task::scope_used`.)
    /// The task is unwinding and nothing has caught it yet: ivy raised a
    /// cancellation or deadline unwind in it, or its own code panicked (ivy's
    /// panic hook, `task::panic_hook`). Read by `task::current::task_is_unwinding`.
    pub(crate) raised: Cell<bool>,
    /// The interruption the hook layer reported to a libc caller as an error,
    /// whose panic is its delivery (`task::reported`); `reported::NONE` if none.
    pub(crate) reported: Cell<u8>,
}

pub(crate) struct CoroSlot {
    /// The header of the task's stack (`StackHeader`), which holds the
    /// coroutine that owns that very stack; null while there is no coroutine
    /// (before the first run, after the last). Whether the task has started is
    /// whether it has a home (`Task::home`), and whether it was placed is
    /// `Task::placed`: as flags here they padded the header by 8 bytes.
    ///
    /// A `Cell`, never borrowed mutably: the worker resumes the coroutine
    /// through it while the task's own code reads the header's other fields
    /// through it (`Task::frame`, `Task::yielder`).
    header: Cell<*mut StackHeader>,
}

impl Default for CoroSlot {
    fn default() -> CoroSlot {
        CoroSlot {
            header: Cell::new(std::ptr::null_mut()),
        }
    }
}

impl CoroSlot {
    /// Gives the task `stack`, whose header it fills in, and a coroutine on it running
    /// `body`, kept in that header.
    ///
    /// # Safety
    /// The slot is empty, and the caller owns the task (module comment) as the worker
    /// that starts it.
    #[allow(clippy::borrowed_box)] // as `StackHeader::write`
    pub(crate) unsafe fn install<F>(
        &self,
        stack: TaskStack,
        id: u64,
        name: Option<&Box<str>>,
        body: F,
    ) where
        F: FnOnce(&TaskYielder, ()) + 'static,
    {
        debug_assert!(self.header.get().is_null());
        let header = StackHeader::write(&stack, id, name);
        let coroutine = Coroutine::with_stack(stack, body);
        // SAFETY: `header` was just written in the stack's header, which stays put
        // for as long as the stack, and the stack now belongs to `coroutine`:
        // moving the coroutine into it makes it own the memory it lives in, which
        // it never touches (corosensei uses the stack below `base`, the header
        // sits from `base` up). `take` moves it out before the stack can go.
        unsafe { std::ptr::addr_of_mut!((*header).coroutine).write(MaybeUninit::new(coroutine)) };
        self.header.set(header);
    }

    /// Whether the task has a coroutine (it has started and not ended).
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.header.get().is_null()
    }

    /// The stack header, for the worker's resume (`Worker::run_task`); null if the slot is
    /// empty. Valid while the slot holds the coroutine. Make no reference to the whole
    /// header, only to its fields: the coroutine's is borrowed mutably across a resume.
    #[inline(always)]
    pub(crate) fn header(&self) -> *mut StackHeader {
        self.header.get()
    }

    /// The coroutine. The worker resumes it through this reference, while the task's own
    /// code reaches the header's other fields through the raw pointer: disjoint fields, so
    /// no alias.
    ///
    /// # Safety
    /// The slot is not empty, and the caller owns the task as its worker (module comment)
    /// and holds no other reference to the coroutine.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn coroutine(&self) -> &mut TaskCoroutine {
        let header = self.header.get();
        debug_assert!(!header.is_null());
        // SAFETY: a non-empty slot's header holds an initialised coroutine (`install`),
        // and the caller's ownership makes this the one reference to it.
        unsafe { (*std::ptr::addr_of_mut!((*header).coroutine)).assume_init_mut() }
    }

    /// Moves the coroutine out of its stack's header and empties the slot, before the
    /// coroutine (and its stack, with the header) is dropped or leaked.
    ///
    /// # Safety
    /// The caller owns the task (module comment) as its worker, the task does not run,
    /// and no reference to the coroutine (`coroutine`) lives.
    pub(crate) unsafe fn take(&self) -> Option<TaskCoroutine> {
        let header = self.header.replace(std::ptr::null_mut());
        if header.is_null() {
            return None;
        }
        // SAFETY: a non-empty slot's header holds an initialised coroutine, which this
        // reads once: the slot is empty from here on, so nothing reads it again.
        Some(unsafe { std::ptr::addr_of!((*header).coroutine).read().assume_init() })
    }
}

impl Drop for CoroSlot {
    /// As the coroutine's drop would have run had it been a field: in practice the slot
    /// is empty here, since a suspended coroutine's own body keeps its task alive.
    fn drop(&mut self) {
        // SAFETY: `&mut self`: the last owner, and nothing borrows the coroutine.
        drop(unsafe { self.take() });
    }
}

/// What a started task's worker keeps about it, its coroutine included, in the
/// header of the task's stack (`stack` module comment: above the first frames,
/// on the page every started task touches anyway) rather than in `Task`, where
/// every task, started or not, paid its 136 bytes (`idle_memory`). Only the home
/// worker touches it, and only while the task is not running, but for what the
/// running task's own code reaches through the overflow handler's published
/// pointer (`overflow::mark_running` sets `running.origin`): so the worker makes
/// no reference to it that lives across a resume.
#[repr(C)]
pub(crate) struct StackHeader {
    /// What the overflow handler reports.
    pub(crate) running: RunningTask,
    /// The task's errno, C++ exception globals and ASan stack bounds while it
    /// is suspended (the worker's while it runs): `task::thread_state`.
    pub(crate) thread_state: crate::task::thread_state::Saved,
    /// The coroutine's yielder, which the task's code suspends through; set by
    /// the coroutine's body as it starts (`task::body::run`).
    yielder: Cell<*const TaskYielder>,
    /// The task's `FrameCtx`, in the first frame of its coroutine (`task::body::run`):
    /// null before the body's first statement and after its last.
    frame: Cell<*const FrameCtx>,
    /// The coroutine that owns this stack (`CoroSlot::install`): 48 bytes that only a
    /// started task needs, which in `Task` every task paid from its spawn.
    coroutine: MaybeUninit<TaskCoroutine>,
}

const _: () = assert!(
    std::mem::size_of::<StackHeader>() <= crate::stack::HEADER_SIZE
        && std::mem::align_of::<StackHeader>() <= crate::stack::HEADER_ALIGN
);

impl StackHeader {
    /// Writes the header of a task `id`, called `name`, into `stack`'s header
    /// and returns it.
    // The box's address is what a `RunningTask` keeps: one word, not two.
    #[allow(clippy::borrowed_box)]
    pub(crate) fn write(stack: &TaskStack, id: u64, name: Option<&Box<str>>) -> *mut StackHeader {
        let running = RunningTask::new(stack, id, name);
        let thread_state =
            crate::task::thread_state::Saved::for_bounds(running.usable_lo, running.stack_size());
        let header = stack.header().as_ptr().cast::<StackHeader>();
        // SAFETY: the stack's header is `HEADER_SIZE` bytes, `HEADER_ALIGN`-aligned,
        // writable, and used by nothing but the stack's owner (`TaskStack::header`),
        // which we are; the asserts above make a `StackHeader` fit. What it held
        // before is garbage or zeros of plain data, which `write` does not drop.
        unsafe {
            header.write(StackHeader {
                running,
                thread_state,
                yielder: Cell::new(std::ptr::null()),
                frame: Cell::new(std::ptr::null()),
                coroutine: MaybeUninit::uninit(),
            })
        };
        header
    }
}

pub(crate) struct TaskCtx {
    /// The task's stack pointer where it last suspended (0: never, or not known on this
    /// architecture): where its resume will touch its stack first, which its worker
    /// prefetches while the task ahead of it runs (`Worker::pop_ready`).
    pub(crate) suspended_sp: Cell<usize>,
}

/// The part of a task's context that only the task's own code reads, and only
/// while its body runs: its task-locals and its deadline scopes. It lives in the
/// first frame of the task's coroutine (`task::body::run`), on the top page of
/// its stack, which every started task touches anyway, instead of in the header,
/// which every task pays for from its spawn, started or not (`idle_memory`:
/// 128 bytes; findings/memory.md). The stack header keeps a pointer to it
/// (`Task::frame`); what its worker reads while the task is suspended
/// (`suspended_sp`) stays in the task's header.
#[derive(Default)]
pub(crate) struct FrameCtx {
    pub(crate) locals: RefCell<LocalMap>,
    /// Deadline scopes and shields open in this task (`cancel_scope.rs`).
    pub(crate) scope: Cell<ScopeState>,
}

/// Deadline and shield state of one task or thread (or of the generator body
/// running on it): the data the task carries (`FrameCtx::scope`); its logic is
/// in `cancel_scope.rs`. `Copy`, so it lives in a `Cell` that only its owner touches.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScopeState {
    /// The earliest deadline of the scopes open in this layer, and the id of the
    /// scope that set it.
    pub(crate) deadline: Option<(Instant, u64)>,
    /// How many `shield` scopes are open in this layer.
    pub(crate) shield: u32,
    /// The scope whose deadline interrupted a blocking call, until it exits.
    pub(crate) elapsed: Option<u64>,
    /// What a generator body inherits from its caller; empty outside bodies.
    pub(crate) inherited: Inherited,
    /// The id of the innermost scope of this layer opened by `cancel_scope::open` and not
    /// yet closed (0: none): the one [`close`] may close next.
    pub(crate) open_top: u64,
}

/// The caller's view a generator body runs under (`cancel_scope.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Inherited {
    /// The caller's effective deadline and the id of its scope.
    pub(crate) deadline: Option<(Instant, u64)>,
    /// Whether the caller is shielded from cancellation.
    pub(crate) shielded: bool,
    /// Whether the caller was unwinding when it resumed the body.
    pub(crate) caller_unwinding: bool,
    /// Whether the body is resumed to be unwound (its generator is dropped).
    pub(crate) closing: bool,
}

impl TaskCtx {
    /// Back to `default()`, in place (a recycled task's: `Task::recycle`).
    fn reset(&mut self) {
        *self = TaskCtx::default();
    }
}

impl Task {
    /// The running task's stack header, for its own code. Only the task's own code
    /// calls this, while it runs (so it has a coroutine, and its header is live).
    #[inline(always)]
    fn own_header(&self) -> *mut StackHeader {
        self.coro.header()
    }

    /// The yielder the task suspends through (null before its body started, or
    /// without a coroutine). Only the task's own code and its worker, before a
    /// resume, call this (`current::set_running`, which publishes it in the
    /// thread's context for the task's suspends).
    #[inline(always)]
    pub(crate) fn yielder(&self) -> *const TaskYielder {
        let header = self.own_header();
        if header.is_null() {
            return std::ptr::null();
        }
        // SAFETY: the task has a coroutine, so its header is live (`own_header`); a
        // shared borrow of the one field, which nothing borrows mutably.
        unsafe { (*header).yielder.get() }
    }

    /// Records the running task's yielder (`task::body::run`, as the body starts).
    ///
    /// # Safety
    /// Called by the task's own body, which runs on its coroutine: the header is live.
    pub(crate) unsafe fn set_yielder(&self, yielder: &TaskYielder) {
        // SAFETY: the caller's promise.
        unsafe { (*self.own_header()).yielder.set(yielder) };
    }

    /// The task's frame context. Called only by the task's own code, from
    /// the body's first statement to its last (`task::body::run`): the module
    /// comment's protocol, only the home thread touches the header, and only
    /// while the task runs or is suspended.
    #[inline(always)]
    pub(crate) fn frame(&self) -> &FrameCtx {
        let header = self.own_header();
        let p = if header.is_null() {
            std::ptr::null()
        } else {
            // SAFETY: as `yielder`.
            unsafe { (*header).frame.get() }
        };
        if p.is_null() {
            frame_missing();
        }
        // SAFETY: `p` is non-null only while the guard `publish_frame` returned
        // lives (`task::body::run` keeps it in a local, and its drop resets the
        // pointer, on an unwind too), and it points to a local of `run` that the
        // guard borrows, which outlives every call the body makes. Only the
        // task's own code calls `frame` (see above), so the caller runs inside
        // that body, on the same thread: the pointee is alive and no `&mut` to
        // it exists (`FrameCtx` is interior-mutable only).
        unsafe { &*p }
    }

    /// Points the running task at `frame` until the returned guard drops, which
    /// resets the pointer to null, on an unwind too. The borrows keep `frame`
    /// alive and in place meanwhile.
    ///
    /// # Safety
    /// The guard must be dropped, not forgotten (`mem::forget` would leave the
    /// pointer behind when `frame` dies). `task::body::run` holds it in a local.
    pub(crate) unsafe fn publish_frame<'a>(&'a self, frame: &'a FrameCtx) -> FramePublished<'a> {
        // SAFETY: as `yielder`: the task's own body calls this.
        unsafe { (*self.own_header()).frame.set(frame) };
        FramePublished { task: self }
    }
}

/// See [`Task::publish_frame`].
pub(crate) struct FramePublished<'a> {
    task: &'a Task,
}

impl Drop for FramePublished<'_> {
    fn drop(&mut self) {
        // SAFETY: as `Task::yielder`: the body's own frame drops the guard.
        unsafe { (*self.task.own_header()).frame.set(std::ptr::null()) };
    }
}

#[cold]
#[inline(never)]
fn frame_missing() -> ! {
    panic!("ivy: a task's frame context was read outside its body");
}

impl Default for TaskCtx {
    fn default() -> TaskCtx {
        TaskCtx {
            suspended_sp: Cell::new(0),
        }
    }
}

/// A string in one word (a box of a `Box<str>`), for fields that are most often empty.
pub(crate) type ThinStr = Box<Box<str>>;

/// What the `JoinHandle` shares with its task, in the task's `Body`: identity,
/// and join bookkeeping under a small mutex.
///
/// Every task pays it from its spawn until its handle is joined or dropped, so it is
/// kept to 64 bytes: the DONE and STORED flags share a word with the id, and whether
/// the handle still exists shares one with the waiter (`Joiner`). Sixteen bytes less
/// took the body of `spawn(move || i)` (a `u64` in, a `u64` out) from glibc's 144-byte
/// chunk to the 128-byte one, the largest that glibc's free keeps in its fast bins
/// (`raw::tests::a_small_body_stays_in_its_chunk`; `body::Stage` then took it to 112).
pub(crate) struct JoinCore {
    /// The task's id, and in its top bits two flags, set in this order by the
    /// thread that ends the task (their only writer), holding `slot`'s lock (so
    /// they are exact for whoever holds it):
    /// - `STORED`: the result is in the body's slot (the handle's drop may take it);
    /// - `DONE` (Release): the task is done; the joiner reads it (Acquire)
    ///   before taking the result.
    ///
    /// The id itself never changes.
    id_done: AtomicU64,
    /// Boxed once more, so that it is one word: most tasks have no name, and
    /// every task pays the field (`idle_memory`); a named task pays a 16-byte
    /// allocation for it.
    name: Option<ThinStr>,
    slot: Mutex<JoinSlot>,
}

/// `JoinCore::id_done`'s flags. Ids count up from 1 and never reach them.
const DONE: u64 = 1 << 63;
const STORED: u64 = 1 << 62;
const FLAGS: u64 = DONE | STORED;

/// Who waits for the result and whether the handle still exists, the panic
/// message for the "nobody joined" report, and the task while it lives (to
/// cancel it).
#[derive(Default)]
pub(crate) struct JoinSlot {
    pub(crate) joiner: Joiner,
    /// One word, as `JoinCore::name`: a panic's message is rare.
    pub(crate) panic_message: Option<ThinStr>,
    /// The task, until it is done: the reference cycle `Task -> Body -> Task` is
    /// broken at completion, which frees the `Task` while the handle lives on.
    pub(crate) task: Option<Arc<Task>>,
}

/// The handle's side of the join: one field, because only a handle waits, so a
/// dropped handle has no waiter (a flag beside an `Option<Waiter>` cost 8 bytes).
#[derive(Default)]
pub(crate) enum Joiner {
    /// The handle exists, and nobody waits.
    #[default]
    Idle,
    /// The handle exists, and this waits for the result.
    Waiting(crate::task::header::Waiter),
    /// The handle was dropped: the task drops its own result, and reports a
    /// panic nobody will see.
    HandleDropped,
}

impl Joiner {
    pub(crate) fn handle_dropped(&self) -> bool {
        matches!(self, Joiner::HandleDropped)
    }

    /// Registers `w` (the handle exists: only it waits), returning the waiter it
    /// replaces.
    pub(crate) fn wait(
        &mut self,
        w: crate::task::header::Waiter,
    ) -> Option<crate::task::header::Waiter> {
        debug_assert!(!self.handle_dropped(), "ivy: only a handle waits");
        std::mem::replace(self, Joiner::Waiting(w)).take_waiter()
    }

    /// The waiter, if one is registered; a dropped handle stays dropped.
    pub(crate) fn take_waiter(&mut self) -> Option<crate::task::header::Waiter> {
        match std::mem::take(self) {
            Joiner::Waiting(w) => Some(w),
            Joiner::Idle => None,
            Joiner::HandleDropped => {
                *self = Joiner::HandleDropped;
                None
            }
        }
    }

    /// Records the handle's drop, and returns the waiter it had registered.
    pub(crate) fn drop_handle(&mut self) -> Option<crate::task::header::Waiter> {
        match std::mem::replace(self, Joiner::HandleDropped) {
            Joiner::Waiting(w) => Some(w),
            Joiner::Idle | Joiner::HandleDropped => None,
        }
    }
}

impl JoinCore {
    pub(crate) fn new(id: u64, name: Option<Box<str>>) -> JoinCore {
        debug_assert_eq!(id & FLAGS, 0, "ivy: task ids never reach the flags");
        JoinCore {
            id_done: AtomicU64::new(id),
            name: name.map(Box::new),
            slot: Mutex::new(JoinSlot::default()),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id_done.load(Ordering::Relaxed) & !FLAGS
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref().map(|n| &**n)
    }

    /// The name's own box, whose address is stable for as long as the body lives (for
    /// `StackHeader::write`).
    // The box's address is what a `RunningTask` keeps: one word, not two.
    #[allow(clippy::borrowed_box)]
    pub(crate) fn name_box(&self) -> Option<&Box<str>> {
        self.name.as_deref()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, JoinSlot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_done(&self) -> bool {
        self.id_done.load(Ordering::Acquire) & DONE != 0
    }

    /// Marks the task done (`header::notify_done`, once, holding the join lock).
    pub(crate) fn set_done(&self, _held: &JoinSlot) {
        self.raise(DONE, Ordering::Release);
    }

    /// Records that the task stored its result (`body`, once, holding the join
    /// lock, after the write).
    pub(crate) fn set_stored(&self, _held: &JoinSlot) {
        self.raise(STORED, Ordering::Relaxed);
    }

    /// Sets `flag` in the id's word. A load and a plain store, not a
    /// read-modify-write: the thread that ends the task is the flags' only
    /// writer, and the id never changes.
    fn raise(&self, flag: u64, order: Ordering) {
        let word = self.id_done.load(Ordering::Relaxed);
        self.id_done.store(word | flag, order);
    }

    /// Whether the task stored its result, for a caller holding the join lock
    /// (which orders the flag and the write before it).
    pub(crate) fn is_stored(&self, _held: &JoinSlot) -> bool {
        self.id_done.load(Ordering::Relaxed) & STORED != 0
    }

    /// Cancels the task, unless it has finished.
    pub(crate) fn cancel(&self) {
        let task = self.lock().task.clone();
        if let Some(task) = task {
            task.cancel();
        }
    }
}

// SAFETY: the non-Sync parts (`coro`, `ctx`) follow the ownership protocol in the
// module comment: before the first run they are owned by whichever thread popped
// the task from a queue (queues hand out a task to one thread at a time), and from
// the first run on they are touched only on the home worker's thread, by the worker
// while the task is suspended or by the task's own code while it runs. The state
// machine guarantees a task is never in two queues nor run twice concurrently.
unsafe impl Sync for Task {}
// SAFETY: see above; the coroutine is created on, and never leaves, its home thread.
unsafe impl Send for Task {}

impl Task {
    /// A new task running `body` on `scheduler`; the body's join slot gets a
    /// reference to it. Where the allocation comes from is the scheduler's
    /// business: see `reuse`.
    pub(crate) fn new(stack_size: usize, scheduler: Arc<dyn Schedule>, body: Entry) -> Arc<Task> {
        // Written straight into the allocation: `Arc::new(Task { .. })` built
        // the ~450-byte header on the stack and copied it (a `memcpy` per spawn
        // that allocates, 70 instructions: findings/hot.md).
        // (`Arc::new_uninit` is newer than the MSRV, 1.80: this is what it does.)
        let mut task: Arc<MaybeUninit<Task>> = Arc::new(MaybeUninit::uninit());
        Arc::get_mut(&mut task)
            .expect("ivy: a new allocation is unique")
            .write(Task {
                body: Some(body),
                state: TaskState::new(),
                home: AtomicU32::new(HOME_UNSET),
                stack_size: saturate_u32(stack_size),
                scheduler,
                registry_key: AtomicUsize::new(usize::MAX),
                wait_reason: AtomicU8::new(0),
                placed: AtomicBool::new(false),
                coro: CoroSlot::default(),
                ctx: TaskCtx::default(),
                raised: Cell::new(false),
                reported: Cell::new(crate::task::reported::NONE),
            });
        // SAFETY: written just above; `MaybeUninit<Task>` is `repr(transparent)`
        // over `Task`, so the allocation is that of an `Arc<Task>`.
        let task = unsafe { Arc::from_raw(Arc::into_raw(task).cast::<Task>()) };
        task.body().core().lock().task = Some(task.clone());
        task
    }

    /// `new`, in the allocation of a finished task of the same scheduler (a
    /// recycled one: `recycle` reset everything but its scheduler).
    pub(crate) fn reuse(mut task: Arc<Task>, stack_size: usize, body: Entry) -> Arc<Task> {
        let t = Arc::get_mut(&mut task).expect("ivy: a pooled task is unique");
        t.body = Some(body);
        t.stack_size = saturate_u32(stack_size);
        task.body().core().lock().task = Some(task.clone());
        task
    }

    /// After the task finished, with the only reference to it: drops what it
    /// still holds (its body: closure, result slot) so that a pooled task pins
    /// no user memory.
    /// Also resets the scheduling state to that of a new task, so that reuse
    /// only fills in the identity and the body (`Task::new`).
    pub(crate) fn recycle(&mut self) {
        self.body = None;
        self.state = TaskState::new();
        *self.home.get_mut() = HOME_UNSET;
        *self.registry_key.get_mut() = usize::MAX;
        *self.wait_reason.get_mut() = 0;
        *self.placed.get_mut() = false;
        self.coro = CoroSlot::default();
        self.ctx.reset();
        self.raised.set(false);
        self.reported.set(crate::task::reported::NONE);
    }

    /// The task's id, kept in its body (the `JoinHandle` needs it after the task
    /// is gone, and two copies cost the header 8 bytes): not on a hot path.
    pub(crate) fn id(&self) -> u64 {
        self.body().core().id()
    }

    /// The task's body. Every live task has one; only a pooled task has none.
    pub(crate) fn body(&self) -> &dyn Start {
        self.body.as_deref().expect("ivy: a live task has a body")
    }

    /// Prefetches the first lines of the task's body (its join state), if it has one.
    #[inline(always)]
    pub(crate) fn prefetch_body(&self) {
        if let Some(body) = &self.body {
            let at = Arc::as_ptr(body) as *const u8 as usize;
            crate::prefetch::write_range_down(at.saturating_sub(16), at + 176);
        }
    }

    /// The stack size the task asked for (saturated: see the field).
    pub(crate) fn stack_size(&self) -> usize {
        self.stack_size as usize
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.body().core().name()
    }

    pub(crate) fn home(&self) -> usize {
        match self.home.load(Ordering::Acquire) {
            HOME_UNSET => NO_HOME,
            index => index as usize,
        }
    }

    /// Whether the task has had its first run: it has a home from then on.
    #[inline]
    pub(crate) fn has_started(&self) -> bool {
        self.home.load(Ordering::Relaxed) != HOME_UNSET
    }

    /// Marks the unstarted task as placed on the worker it is handed to (`placed`).
    pub(crate) fn set_placed(&self) {
        self.placed.store(true, Ordering::Relaxed);
    }

    /// Whether the task was placed (`set_placed`), clearing the mark. A load and
    /// a store, not a swap: only the task's owner touches the flag.
    pub(crate) fn take_placed(&self) -> bool {
        let placed = self.placed.load(Ordering::Relaxed);
        if placed {
            self.placed.store(false, Ordering::Relaxed);
        }
        placed
    }

    pub(crate) fn set_home(&self, index: usize) {
        let index = u32::try_from(index).expect("ivy: a worker index fits in u32");
        debug_assert!(index != HOME_UNSET);
        self.home.store(index, Ordering::Release);
    }

    /// The coroutine's slot. The worker that owns the task per the module comment
    /// (it popped it from a queue and is its home worker, or it is unstarted)
    /// installs, resumes and takes the coroutine through it.
    pub(crate) fn coro_slot(&self) -> &CoroSlot {
        &self.coro
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.is_cancelled()
    }

    /// The cancelled flag and whether the task's code ever reached its
    /// deadline-scope state, in one load (`state::CANCELLED`, `SCOPE_USED`):
    /// zero, the common case, means its blocking calls cannot be interrupted
    /// (`park::task_interrupt`).
    #[inline(always)]
    pub(crate) fn interrupt(&self) -> u8 {
        self.state.interrupt()
    }

    /// Whether the task's code ever reached its deadline-scope state
    /// (`cancel_scope::with_state` and `with_cells`, the only ways to write
    /// it, call `mark_scope_used`); until then it is the default (no deadline,
    /// no shield). Asked by the task's own thread.
    pub(crate) fn scope_used(&self) -> bool {
        self.state.scope_used()
    }

    /// See `scope_used`. The task's own code only.
    pub(crate) fn mark_scope_used(&self) {
        self.state.mark_scope_used()
    }

    /// Withdraws a cancellation request (`Current::uncancel`).
    pub(crate) fn clear_cancelled(&self) -> bool {
        self.state.clear_cancelled()
    }

    pub(crate) fn state(&self) -> u8 {
        self.state.get()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.is_done()
    }

    /// Requests cancellation and wakes the task so it notices.
    pub(crate) fn cancel(self: &Arc<Self>) {
        self.state.set_cancelled();
        Task::unpark(self);
    }

    /// Worker: claim a popped task for running.
    pub(crate) fn transition_to_running(&self) {
        self.state.transition_to_running();
    }

    /// Worker, after the task suspended with `Suspend::Park`. Returns `true` if the
    /// task is now parked, `false` if a wake-up arrived meanwhile and the worker
    /// must queue it again (its state is then SCHEDULED).
    pub(crate) fn transition_to_parked(&self) -> bool {
        self.state.transition_to_parked()
    }

    /// Worker, after the task suspended with `Suspend::Yield`, before it
    /// queues the task on its own ready queue (never another worker's: the
    /// task stays RUNNING while queued, `task::state`).
    pub(crate) fn transition_to_yielded(&self) {
        self.state.transition_to_yielded();
    }

    pub(crate) fn transition_to_done(&self) {
        self.state.transition_to_done();
    }

    /// The task itself, before suspending to park: consume a pending wake-up token.
    /// Returns `true` if there was one (then the park must return at once).
    pub(crate) fn take_notified(&self) -> bool {
        self.state.take_notified()
    }

    /// Wakes the task from any thread. Enqueues it on its home worker only on the
    /// PARKED -> SCHEDULED edge.
    pub(crate) fn unpark(this: &Arc<Task>) {
        if this.state.unpark() {
            this.scheduler.schedule(this.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every byte of the header is paid by every task from its spawn (`idle_memory`): 72
    /// bytes, an `Arc` block of 88 in a 96-byte malloc chunk. It was 392 / 416 before the
    /// task-locals and deadline scopes moved to the task's stack (`FrameCtx`), 264 / 288
    /// before the overflow report and the saved thread state did (`StackHeader`), 152 /
    /// 176 before the id (kept in the body) and the pointer to the body's own `Arc` (rebuilt
    /// from the header's address: `current::with_task_or_thread`) left, 136 / 160 before
    /// the coroutine moved into its stack's header (`CoroSlot`), and 88 / 112 before the
    /// yielder and the frame pointer followed it. Eight bytes more would take the next chunk
    /// size; a field that grows the header must say what it buys in findings/memory.md.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_task_header_does_not_grow() {
        let size = std::mem::size_of::<super::Task>();
        assert!(size <= 72, "Task is {size} bytes");
        // What the header keeps of a started task's coroutine: the pointer to its stack's
        // header, which holds the coroutine (and the stack, in the coroutine).
        assert_eq!(std::mem::size_of::<super::CoroSlot>(), 8);
    }

    /// The body of a small task (a closure holding one `Arc`, no result) is paid by every
    /// task from its spawn until its handle is joined or dropped: 80 bytes, an `Arc` block
    /// of 96 in a 112-byte malloc chunk. An unjoined panic's message is a `Box<str>`, not a
    /// `String` (176 -> 160); the result slot keeps an error without its id and with its
    /// panic payload boxed once more (32 -> 16 bytes; 160 -> 144); the name and an
    /// unjoined panic's message are one word each (`ThinStr`: 144 -> 128); the DONE flag
    /// shares the id's word and the handle's drop the waiter's (`JoinCore`: 128 -> 112).
    /// `spawn(move || i)` with a `u64` `i`: 80 bytes, an `Arc` block of 96, in the 112-byte
    /// chunk: it was 144 (above glibc's fast bins), then 128 with the smaller `JoinCore`,
    /// then 112 with the closure and the result in one slot (`body::Stage`).
    /// `Joiner` folds the handle's drop into the waiter's field: a dropped handle
    /// stays dropped whoever takes the waiter after it (the task's end reads the
    /// flag again to report an unjoined panic), and the drop hands back the waiter.
    #[test]
    fn a_dropped_handle_stays_dropped() {
        use super::Joiner;
        use crate::task::header::Waiter;
        let waiter = || Waiter::Unpark(crate::task::unparker::current_unparker());
        let mut j = Joiner::default();
        assert!(!j.handle_dropped());
        assert!(j.take_waiter().is_none());
        assert!(j.wait(waiter()).is_none());
        assert!(j.wait(waiter()).is_some(), "the replaced waiter comes back");
        assert!(j.take_waiter().is_some());
        assert!(j.take_waiter().is_none());
        assert!(j.wait(waiter()).is_none());
        assert!(j.drop_handle().is_some(), "the drop takes the waiter");
        assert!(j.handle_dropped());
        assert!(j.take_waiter().is_none());
        assert!(j.handle_dropped());
        assert!(j.drop_handle().is_none());
        assert!(j.handle_dropped());
    }

    /// The flags beside the id: setting them keeps the id and each other.
    #[test]
    fn the_flags_keep_the_id() {
        let id = 0x3fff_ffff_ffff_fffe;
        let core = super::JoinCore::new(id, None);
        assert!(!core.is_done());
        assert!(!core.is_stored(&core.lock()));
        core.set_stored(&core.lock());
        assert!(core.is_stored(&core.lock()));
        assert!(!core.is_done());
        core.set_done(&core.lock());
        assert!(core.is_done());
        assert!(core.is_stored(&core.lock()));
        assert_eq!(core.id(), id);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_small_body_stays_in_its_chunk() {
        use crate::task::body::Body;
        use std::mem::size_of;
        assert_eq!(size_of::<super::JoinCore>(), 64, "JoinCore");
        let size = size_of::<Body<std::sync::Arc<u8>, ()>>();
        assert!(size <= 80, "Body is {size} bytes");
        let i = 7u64;
        fn body_size<F: FnOnce() -> T, T>(_: &F) -> usize {
            size_of::<Body<F, T>>()
        }
        let size = body_size(&move || i);
        assert!(
            size <= 80,
            "Body of a u64 closure and result is {size} bytes"
        );
    }

    /// A handle is what a program keeps per task it means to join (the `idle_memory`
    /// benchmark keeps them in a `Vec`): the body's `Arc`, with no flag beside it (joined
    /// is "done and the result taken": `join::JoinHandle`).
    #[test]
    fn a_join_handle_is_two_words() {
        let size = std::mem::size_of::<crate::JoinHandle<()>>();
        assert_eq!(
            size,
            2 * std::mem::size_of::<usize>(),
            "JoinHandle is {size} bytes"
        );
    }
}
