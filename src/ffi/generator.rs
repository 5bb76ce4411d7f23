//! Generators in the C ABI: a C function producing values that a caller
//! iterates (asyncio's async generators; `ivy::Generator` underneath).
//!
//! `ivy_generator_new(body, arg, ...)` creates a generator whose `body(y, arg)`
//! runs on a stack of its own, lazily: each `ivy_generator_next` resumes it until
//! it calls `ivy_generator_yield(y, value)` (that value is returned) or returns (then
//! `IVY_ECLOSED`: exhausted). The body may block (sleep, lock, read a socket):
//! that parks the iterating task, exactly as in Rust.
//!
//! Ownership and soundness. An `ivy::Generator` must stay with the task (or plain
//! thread) that created it: its stack is nested in that task's. The handle table
//! holds a `generator::OwnedGenerator`, which checks on every call that the
//! caller is the owner (else `IVY_EPERM`) and is the only one to resume, close
//! and drop the generator (this file maps its errors to codes).
//! `ivy_generator_yield` checks that the caller is running on the body's own
//! stack (so a nested generator cannot suspend an outer one): that check, and
//! turning a C yielder handle into the body's `Yielder`, are what stays here.
//!
//! Closing. Dropping an unfinished Rust generator unwinds its body, which would
//! abort the process with C frames on it. So `ivy_generator_free` of an
//! unfinished generator *closes* it instead (Python's `generator.close()`): it
//! resumes the body with `ivy_generator_yield` returning `IVY_ECLOSED` -- at once,
//! and for every later yield -- until the body returns on its own.
//!
//! A generator does not outlive its owner task. Only the owner may free it, so
//! once the owner ended nobody could (`IVY_EPERM` forever: body, captures and
//! stack leaked). Letting ownership lapse instead would let another thread resume
//! a suspended C body, which may hold its first thread's thread-locals. So each
//! generator a task creates is registered with `generator::free_with_current_task`,
//! whose task-local frees those still live when the task ends -- on the owner's
//! thread and stack, like any other task-local. A plain thread gets no such list:
//! its thread-locals die at thread exit, too late to run C bodies; it frees its
//! generators itself.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::error::*;
use super::handle::{rekind, HandleTable, Kind};
use super::runtime::IVY_DEFAULT_STACK_SIZE;
use super::task::CPtr;
use super::{guard, out_ptr, write_out};
use crate::generator::{
    forget_with_current_task, free_with_current_task, Generator, OwnedGenerator,
    OwnedGeneratorError, Yielder,
};

/// The body of a generator: produces values with `ivy_generator_yield(y, v)` and
/// returns when it has no more. If a yield returns non-zero (`IVY_ECLOSED`: the
/// consumer freed the generator) the body must clean up and return.
pub type ivy_generator_fn_t = Option<unsafe extern "C" fn(y: ivy_yielder_t, arg: *mut c_void)>;

/// A handle to a generator, valid until `ivy_generator_free`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_generator_t {
    pub id: u64,
}

/// What a generator's body yields through; valid only inside that body.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_yielder_t {
    pub id: u64,
}

/// State the body's closure shares with the C calls.
struct BodyState {
    /// The body's yielder while the body runs, else null.
    yielder: AtomicPtr<Yielder<CPtr>>,
    /// An address near the top of the body's stack, and the stack's size: a
    /// caller of `ivy_generator_yield` must be running within them.
    stack_top: AtomicUsize,
    stack_size: usize,
    /// Set when the generator is being freed (by `OwnedGenerator::close`):
    /// every yield then returns `IVY_ECLOSED`.
    closed: Arc<AtomicBool>,
    /// The generator's handle id, set right after it is stored in the table.
    id: AtomicU64,
}

struct GenEntry {
    /// Owner confinement, re-entry and closing: `crate::generator`'s policy.
    generator: OwnedGenerator<CPtr>,
    body: Arc<BodyState>,
}

static GENERATORS: HandleTable<GenEntry> = HandleTable::new(Kind::Generator);

struct CBody {
    body: unsafe extern "C" fn(ivy_yielder_t, *mut c_void),
    arg: CPtr,
}

fn owned_error(e: OwnedGeneratorError) -> c_int {
    match e {
        OwnedGeneratorError::NotOwner => IVY_EPERM,
        OwnedGeneratorError::Busy => IVY_EBUSY,
        OwnedGeneratorError::Closed => IVY_EBADF,
    }
}

/// Looks up `id` and checks the caller owns it.
fn owned(id: u64) -> Result<Arc<GenEntry>, c_int> {
    let entry = GENERATORS.get(id).ok_or(IVY_EBADF)?;
    entry.generator.check_owner().map_err(owned_error)?;
    Ok(entry)
}

/// Creates a generator running `body(y, arg)` on a stack of `stack_size` bytes
/// (0: `IVY_DEFAULT_STACK_SIZE`) and stores its handle in `*out`. The body does
/// not start until the first `ivy_generator_next`. The generator belongs to the
/// calling task (or plain thread): only it may iterate and free it. A task's
/// generators do not outlive it: those it has not freed when it ends are freed
/// then, as by `ivy_generator_free` (a body not yet returned is closed: its
/// `ivy_generator_yield` returns `IVY_ECLOSED`), on the task's stack after its
/// entry returned (with its task-local destructors). A plain thread must free
/// its generators before it exits (they are leaked otherwise: nothing may resume
/// a body on another thread).
///
/// Errors: `IVY_EINVAL` (`body` or `out` `NULL`, stack size above 1 GiB);
/// `IVY_ENOMEM` (no stack); `IVY_ECLOSED` when called by a task-local
/// destructor in the last round (see `ivy_task_local_key_new`), too late to be
/// freed with the task.
///
/// # Safety
/// `out` is valid for writes; `body` is a valid function.
#[no_mangle]
pub unsafe extern "C" fn ivy_generator_new(
    body: ivy_generator_fn_t,
    arg: *mut c_void,
    stack_size: usize,
    out: *mut ivy_generator_t,
) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let body = body.ok_or(IVY_EINVAL)?;
        let size = if stack_size == 0 {
            IVY_DEFAULT_STACK_SIZE
        } else {
            stack_size
        };
        let state = Arc::new(BodyState {
            yielder: AtomicPtr::new(std::ptr::null_mut()),
            stack_top: AtomicUsize::new(0),
            stack_size: size,
            closed: Arc::new(AtomicBool::new(false)),
            id: AtomicU64::new(0),
        });
        let shared = state.clone();
        let cbody = CBody {
            body,
            arg: CPtr(arg),
        };
        let generator = Generator::with_stack_size(size, move |y: &Yielder<CPtr>| {
            // An overflow report names the C way to raise this stack.
            crate::stack::overflow::mark_running(crate::stack::overflow::Origin::CGenerator);
            let marker = 0u8;
            shared
                .stack_top
                .store(&marker as *const u8 as usize, Ordering::Relaxed);
            shared
                .yielder
                .store(y as *const Yielder<CPtr> as *mut _, Ordering::Release);
            let handle = ivy_yielder_t {
                id: rekind(
                    shared.id.load(Ordering::Acquire),
                    Kind::Generator,
                    Kind::Yielder,
                )
                .unwrap_or(0),
            };
            // SAFETY: the C caller of ivy_generator_new promised a valid function
            // for this argument; it runs on the generator's own stack. It cannot
            // unwind (extern "C").
            unsafe { (cbody.body)(handle, cbody.arg.0) };
            shared
                .yielder
                .store(std::ptr::null_mut(), Ordering::Release);
        })
        .map_err(|e| io_error(&e))?;
        let entry = Arc::new(GenEntry {
            generator: OwnedGenerator::new(generator, state.closed.clone()),
            body: state,
        });
        let id = GENERATORS.insert(entry.clone()).ok_or(IVY_ENOMEM)?;
        entry.body.id.store(id, Ordering::Release);
        if free_with_current_task(id, free_at_task_end).is_err() {
            // A task-local destructor in the last round: nothing would free it
            // when the task ends. Its body has not started, so dropping it here
            // runs no C code.
            GENERATORS.remove(id);
            return Err(IVY_ECLOSED);
        }
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_generator_t { id }) };
        Ok(())
    })
}

/// Resumes the generator until it yields a value (stored in `*value` unless
/// `value` is `NULL`, which skips the value; returns 0) or its body returns
/// (returns `IVY_ECLOSED`, and so does every later call). Blocking calls in
/// the body park the caller.
///
/// Errors: `IVY_EBADF` (stale handle); `IVY_EPERM` (the caller is not the task
/// or thread that created it); `IVY_EBUSY` (called from inside the generator's
/// own body).
///
/// # Safety
/// `value` is `NULL` or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ivy_generator_next(
    gen: ivy_generator_t,
    value: *mut *mut c_void,
) -> c_int {
    guard(|| {
        let entry = GENERATORS.get(gen.id).ok_or(IVY_EBADF)?;
        let next = entry.generator.next().map_err(owned_error)?;
        match next {
            Some(v) => {
                // An optional out-parameter: NULL skips the value.
                if !value.is_null() {
                    // SAFETY: non-null; writable by the caller's contract.
                    unsafe { write_out(value, v.0) };
                }
                Ok(())
            }
            None => Err(IVY_ECLOSED),
        }
    })
}

/// Called by a generator's body: hands `value` to the caller of
/// `ivy_generator_next` and suspends the body until the next call. Returns 0
/// when resumed by `ivy_generator_next`; `IVY_ECLOSED` when the generator is
/// being freed -- then the body must return (every further yield also returns
/// `IVY_ECLOSED` at once).
///
/// Errors: `IVY_EBADF` (stale yielder); `IVY_EPERM` when not called from this
/// generator's own body (e.g. from a nested generator's body, or after the body
/// returned).
#[no_mangle]
pub extern "C" fn ivy_generator_yield(y: ivy_yielder_t, value: *mut c_void) -> c_int {
    guard(|| {
        let gen = rekind(y.id, Kind::Yielder, Kind::Generator).ok_or(IVY_EBADF)?;
        let entry = owned(gen)?;
        let state = entry.body.clone();
        let yielder = state.yielder.load(Ordering::Acquire);
        let here = &value as *const *mut c_void as usize;
        let top = state.stack_top.load(Ordering::Relaxed);
        let on_body_stack = here <= top && top - here < state.stack_size;
        if yielder.is_null() || !on_body_stack {
            return Err(IVY_EPERM);
        }
        if state.closed.load(Ordering::Acquire) {
            return Err(IVY_ECLOSED);
        }
        drop(entry);
        // SAFETY: `yielder` was published by the body closure, which is running
        // (non-null) and is the innermost coroutine on this stack (the stack
        // check above), so suspending through it is what corosensei expects.
        unsafe { (*yielder).yield_(CPtr(value)) };
        if state.closed.load(Ordering::Acquire) {
            return Err(IVY_ECLOSED);
        }
        Ok(())
    })
}

/// Frees the generator. If its body has not returned, it is closed first: it is
/// resumed with `ivy_generator_yield` returning `IVY_ECLOSED` until it returns (a body
/// that ignores that keeps this call waiting). Only the creating task or thread
/// may free it.
///
/// Errors: `IVY_EBADF` (stale handle); `IVY_EPERM` (not the owner); `IVY_EBUSY`
/// (called from inside its own body).
#[no_mangle]
pub extern "C" fn ivy_generator_free(gen: ivy_generator_t) -> c_int {
    guard(|| {
        free_owned(gen.id)?;
        forget_with_current_task(gen.id);
        Ok(())
    })
}

/// Frees a generator the ending task did not free (see `free_with_current_task`).
fn free_at_task_end(id: u64) {
    // EBADF: already freed. Nothing else can fail here: the owner is the task
    // that is ending, and no body of its runs any more.
    let _ = free_owned(id);
}

/// `ivy_generator_free` for a caller that owns `id`: closes the body if it has not
/// returned, drops the generator, frees the handle.
fn free_owned(id: u64) -> Result<(), c_int> {
    let entry = GENERATORS.get(id).ok_or(IVY_EBADF)?;
    // The handle stays in the table while the body runs to its end: the body's
    // own `ivy_generator_yield` calls look it up.
    entry.generator.close().map_err(owned_error)?;
    GENERATORS.remove(id);
    Ok(())
}
