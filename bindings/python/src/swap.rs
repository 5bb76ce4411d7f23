//! The per-task Python state of CPython 3.11 (cfg `ivyrt_swap`, set by
//! build.rs): every task of a worker runs on the worker's one thread state,
//! and owns only a `SavedState` (on its own stack) that is swapped into that
//! thread state when the task resumes and out of it when the task parks
//! (`src/pystate.c` lists the fields and why: greenlet's list for 3.11).
//!
//! Design decisions:
//! - **The swap is done with the GIL held**, right before `Python::detach`
//!   releases it and right after it re-took it (`detach_parking`): a thread
//!   reading another thread's state under the GIL (`sys._current_frames()`)
//!   never sees a half-swapped one.
//! - **The worker has an idle state of its own** (`Slots::idle`), loaded
//!   whenever no task's is: PyO3 may run deferred decrefs (`__del__`) right
//!   after it re-takes the GIL in `detach`, before this task's state is back,
//!   and those run on the idle state, whose frames and data stack chunk stay
//!   its own.
//! - **A task's frames stay in its own data stack chunks.** Each task starts
//!   with a root chunk of its own: CPython never frees a root chunk (it skips
//!   its first slot), so ivyrt owns it, and no task pays the `mmap`/`munmap`
//!   pair a fresh thread state's first chunk costs (`_PyObject_VirtualAlloc`,
//!   a quarter of the 10k-sleeps profile once). The chunk is the task's ivy
//!   stack top reserve (`ivy::Builder::stack_top_reserve`), above the task's
//!   first C frame: the data stack grows up from the chunk's start and the C
//!   frames grow down from just below it, so the two meet in one page, placed
//!   (`ROOT_CHUNK_SPLIT`) where a parked task's C frames and first Python
//!   frames both fit: one resident stack page per parked task, where a chunk
//!   allocated by the task's own frames (16 KiB below the top) cost two. It
//!   is freed with the stack. Fallbacks, for a stack without the reserve: on
//!   the stack in the task's frame if it is big, else from `malloc`.
//! - `Slots::current` names the slot of the task whose state is loaded, or
//!   null when the idle state is: a park saves into it; a resume captured it
//!   before detaching (on its own stack) and puts it back. Code running on
//!   the idle state that parks (a finalizer, see above) saves it into a slot
//!   on its own stack the same way, with a clean state standing in as the
//!   idle one. A generator body runs on a thread state of its own
//!   (`generator.rs`), whose parks leave the worker's state alone.

use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;

/// Room for one `ivyrt_pystate` (checked by a `_Static_assert` in pystate.c
/// and by `layout_ok` at import).
const SAVED_STATE_SIZE: usize = 128;

/// A task's (or the idle) Python state while it is not loaded: an opaque
/// `ivyrt_pystate` (pystate.c).
#[repr(C, align(8))]
pub struct SavedState(MaybeUninit<[u8; SAVED_STATE_SIZE]>);

/// CPython's `_PyStackChunk`, only ever handled by pointer.
#[repr(C)]
pub struct Chunk {
    _opaque: [u8; 0],
}

extern "C" {
    fn ivyrt_pystate_size() -> usize;
    fn ivyrt_pystate_layout_ok(
        ts: *mut ffi::PyThreadState,
        interp: *mut ffi::PyInterpreterState,
    ) -> c_int;
    fn ivyrt_pystate_fresh(s: *mut SavedState, ts: *mut ffi::PyThreadState, chunk: *mut Chunk);
    fn ivyrt_pystate_swap(
        ts: *mut ffi::PyThreadState,
        out: *mut SavedState,
        input: *const SavedState,
    );
    fn ivyrt_pystate_finish(s: *mut SavedState) -> *mut Chunk;
    fn ivyrt_pystate_clean(s: *mut SavedState, ts: *mut ffi::PyThreadState);
    fn ivyrt_pystate_discard(s: *mut SavedState);
    fn ivyrt_chunk_new() -> *mut Chunk;
    fn ivyrt_chunk_at(mem: *mut c_void, size: usize) -> *mut Chunk;
    fn ivyrt_with_stack_chunk(
        body: extern "C" fn(arg: *mut c_void, chunk: *mut Chunk),
        arg: *mut c_void,
    );
    fn ivyrt_chunk_free(chunk: *mut Chunk);
}

struct Slots {
    /// The worker's state while a task's is loaded (module comment).
    idle: UnsafeCell<SavedState>,
    /// The slot of the task whose state is loaded, or null.
    current: Cell<*mut SavedState>,
}

thread_local! {
    static SLOTS: Slots = const {
        Slots {
            idle: UnsafeCell::new(SavedState(MaybeUninit::uninit())),
            current: Cell::new(ptr::null_mut()),
        }
    };
}

/// Whether this build's idea of the 3.11 thread state matches the running
/// interpreter's (a fresh state checked field by field). Called at import,
/// with the GIL.
pub fn layout_ok(interp: *mut ffi::PyInterpreterState) -> bool {
    // SAFETY: a plain query of the size pystate.c was compiled with.
    if unsafe { ivyrt_pystate_size() } > SAVED_STATE_SIZE {
        return false;
    }
    // SAFETY: `interp` is the live interpreter and the GIL is held: a state
    // made and deleted without ever being attached (PyThreadState_Clear and
    // PyThreadState_Delete accept a non-current state with the GIL held).
    unsafe {
        let ts = ffi::PyThreadState_New(interp);
        if ts.is_null() {
            return true; // out of memory: nothing to learn; the first task will fail too
        }
        let ok = ivyrt_pystate_layout_ok(ts, interp) != 0;
        ffi::PyThreadState_Clear(ts);
        ffi::PyThreadState_Delete(ts);
        ok
    }
}

/// Tasks whose stack is at least this big keep their data stack's root
/// chunk on it (`with_root_chunk`).
const ROOT_CHUNK_ON_STACK_MIN: usize = 256 << 10;

/// Bytes set aside at the top of every task's ivy stack for its root chunk
/// (`ivy::Builder::stack_top_reserve`), all of it the chunk. A data stack
/// grows up from its chunk's start and the C frames grow down from just below
/// it, so the chunk's start is where the two meet: 16 KiB (CPython's own
/// chunk size) plus `ROOT_CHUNK_SPLIT`, which puts that meeting point
/// `PAGE - ROOT_CHUNK_SPLIT` bytes above the bottom of a page (the stack's top
/// is page-aligned). A parked task whose C frames (ivy's 128-byte stack header
/// under the reserve, then ivy's entry, the binding's, the eval loop's, the
/// park) fit below it and whose first Python frames fit above it then touches
/// one stack page, not two (findings/pystack.md measures both sides and the
/// split: since round 10 every park but a stream read's keeps its C side
/// under 3,400 bytes, so the split gives the Python side 512 bytes, where a
/// task's function and two Python calls under it fit, and leaves the C side
/// 3,584, where `Condition.wait`, the deepest, has 184 bytes to spare;
/// `tests/test_stack_pages.py` parks tasks in each primitive and counts).
pub const ROOT_CHUNK_SPLIT: usize = 512;
pub const STACK_TOP_RESERVE: usize = (16 << 10) + ROOT_CHUNK_SPLIT;

/// Runs `f` with a root chunk for a task's data stack, and frees it after:
/// in the task's stack top reserve (`STACK_TOP_RESERVE`), or else on the
/// task's own stack if it has room (`stack_size` bytes), else from malloc.
/// Returns `false`, without running `f`, if out of memory.
pub fn with_root_chunk<F: FnOnce(*mut Chunk)>(stack_size: usize, f: F) -> bool {
    if let Some((mem, len)) = ivy::task::stack_top_reserve() {
        if len >= STACK_TOP_RESERVE {
            // SAFETY: the reserve is this task's memory until it ends, 16-aligned,
            // `len` bytes, and nothing else uses it (ivyrt's runtimes are the
            // only ones that set one, and this is their tasks' one user of it).
            let chunk = unsafe { ivyrt_chunk_at(mem.as_ptr().cast(), STACK_TOP_RESERVE) };
            f(chunk);
            return true; // freed with the stack
        }
    }
    if stack_size >= ROOT_CHUNK_ON_STACK_MIN {
        let mut f = Some(f);
        extern "C" fn body<G: FnOnce(*mut Chunk)>(arg: *mut c_void, chunk: *mut Chunk) {
            // SAFETY: `arg` is the `Option<F>` below, alive for this call.
            let f = unsafe { &mut *arg.cast::<Option<G>>() };
            if let Some(f) = f.take() {
                f(chunk);
            }
        }
        // SAFETY: `body::<F>` matches the argument it is given; the stack is
        // big enough for the chunk (the caller's `stack_size`, of which a few
        // KiB are used at a task's start).
        unsafe {
            ivyrt_with_stack_chunk(body::<F>, ptr::addr_of_mut!(f).cast::<c_void>());
        }
        return true;
    }
    // SAFETY: malloc of a chunk, no GIL needed.
    let chunk = unsafe { ivyrt_chunk_new() };
    if chunk.is_null() {
        return false;
    }
    f(chunk);
    // SAFETY: `chunk` came from ivyrt_chunk_new and its task ended (`f`
    // returned after `finish`): nothing uses it any more.
    unsafe { ivyrt_chunk_free(chunk) };
    true
}

/// A fresh task state for a task about to run on `ts`, with `chunk` (from
/// `with_root_chunk`) as its data stack's root chunk.
pub fn fresh(ts: *mut ffi::PyThreadState, chunk: *mut Chunk) -> SavedState {
    let mut s = SavedState(MaybeUninit::uninit());
    // SAFETY: `s` has room for an ivyrt_pystate (checked at import); `ts` is
    // this worker's live state, only read (its root cframe's address and its
    // trace functions); `chunk` is a root chunk no one else uses.
    unsafe { ivyrt_pystate_fresh(&mut s, ts, chunk) };
    s
}

/// Loads `task` into `ts` (saving the idle state) and makes it `CURRENT`.
///
/// # Safety
/// The GIL is held with `ts`, this worker's state; `ts` holds the idle state;
/// `task` stays at its address until `unload` (it lives on the task's stack).
pub unsafe fn load(ts: *mut ffi::PyThreadState, task: *mut SavedState) {
    SLOTS.with(|s| {
        debug_assert!(s.current.get().is_null());
        // SAFETY: the caller's contract; `idle` is this thread's.
        unsafe { ivyrt_pystate_swap(ts, s.idle.get(), task) };
        s.current.set(task);
    });
}

/// Saves the loaded task's state into its slot, loads the idle state, and
/// returns the slot (null if the idle state was loaded: nothing to do).
///
/// # Safety
/// The GIL is held with `ts`, this worker's state.
pub unsafe fn unload(ts: *mut ffi::PyThreadState) -> *mut SavedState {
    SLOTS.with(|s| {
        let task = s.current.replace(ptr::null_mut());
        if !task.is_null() {
            // SAFETY: the caller's contract; `task` was loaded by `load`.
            unsafe { ivyrt_pystate_swap(ts, task, s.idle.get()) };
        }
        task
    })
}

/// Ends a finished task's state (unloaded): drops what it still references
/// (its root chunk is `with_root_chunk`'s to free).
///
/// # Safety
/// The GIL is held; `task` was unloaded and is not used again.
pub unsafe fn finish(task: *mut SavedState) {
    // SAFETY: the caller's contract.
    unsafe { ivyrt_pystate_finish(task) };
}

/// Whether a task's state is loaded in this worker's thread state (false on
/// a generator body's own state: its caller unloaded itself to resume it).
pub fn task_loaded() -> bool {
    SLOTS.with(|s| !s.current.get().is_null())
}

/// `Python::detach` around a call that may park this task: its state is
/// saved out of the worker's thread state before the GIL is released and put
/// back after it is re-taken, so that the tasks running meanwhile on this
/// worker find the idle state there (module comment).
///
/// # Safety
/// The GIL is held with `worker`, this worker's state.
pub unsafe fn detach_parking<T: Send>(
    py: Python<'_>,
    worker: *mut ffi::PyThreadState,
    f: impl FnOnce() -> T + Send,
) -> T {
    // SAFETY: the caller's contract.
    let task = unsafe { unload(worker) };
    if task.is_null() {
        // SAFETY: the caller's contract; no task state is loaded.
        return unsafe { detach_parking_idle(py, worker, f) };
    }
    let r = py.detach(f);
    // SAFETY: `detach` re-took the GIL with the same state (this thread's
    // `worker`: a started task never migrates); `task` is this task's slot,
    // on its stack, captured before detaching.
    unsafe { load(worker, task) };
    r
}

/// `detach_parking` when the idle state itself parks: a finalizer run by
/// PyO3's deferred decrefs or at a task's end blocks. Its frames go into a
/// slot on this stack, as a task's would, and a clean state stands in as the
/// idle one meanwhile (other finalizers may park on it too).
///
/// Out of line: its two saved states would otherwise sit in the frame of
/// every parked task (`detach_parking`, 320 bytes instead of 48), on the
/// one stack page a parked task touches (findings/pystack.md).
///
/// # Safety
/// As `detach_parking`, and `worker` holds the idle state (`unload` found no
/// task's).
#[cold]
#[inline(never)]
unsafe fn detach_parking_idle<T: Send>(
    py: Python<'_>,
    worker: *mut ffi::PyThreadState,
    f: impl FnOnce() -> T + Send,
) -> T {
    let mut parked = SavedState(MaybeUninit::uninit());
    let mut clean = SavedState(MaybeUninit::uninit());
    // SAFETY: the caller's contract; `parked` and `clean` outlive their use.
    unsafe {
        ivyrt_pystate_clean(&mut clean, worker);
        ivyrt_pystate_swap(worker, &mut parked, &clean);
    }
    let r = py.detach(f);
    // SAFETY: the GIL is held again with `worker` (never migrates), which
    // holds an idle state with no frames (every park on it saved its own
    // frames, as this one did); it is dropped and `parked` comes back.
    unsafe {
        ivyrt_pystate_swap(worker, &mut clean, &parked);
        ivyrt_pystate_discard(&mut clean);
    }
    r
}
