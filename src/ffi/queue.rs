//! Queues of `void *` in the C ABI (asyncio's `Queue`), and select over them.
//!
//! A queue carries opaque pointers: ivy never dereferences or frees them; what
//! they point to belongs to the C program, and passing an item through a queue
//! passes its ownership by convention. Bounded queues apply back-pressure (`put`
//! waits for room); `ivy_queue_close` makes later puts fail with `IVY_ECLOSED`
//! while gets drain what is left and then fail with `IVY_ECLOSED`.
//! `ivy_queue_task_done` / `ivy_queue_join` count unfinished items as asyncio's do.

use std::os::raw::{c_int, c_void};
use std::sync::Arc;

use super::error::*;
use super::handle::{HandleTable, Kind};
use super::task::CPtr;
use super::time::to_instant;
use super::{guard, out_ptr, write_out};
use crate::sync::{GetError, PutError, Queue, Select};

/// Capacity of an unbounded queue, for `ivy_queue_new`.
// Spelled so that cbindgen emits `(size_t)~0`, i.e. SIZE_MAX.
#[allow(clippy::unnecessary_cast)]
pub const IVY_UNBOUNDED: usize = !0 as usize;

/// A handle to a queue of `void *` items.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ivy_queue_t {
    pub id: u64,
}

static QUEUES: HandleTable<Queue<CPtr>> = HandleTable::new(Kind::Queue);

fn queue(q: ivy_queue_t) -> Result<Arc<Queue<CPtr>>, c_int> {
    QUEUES.get(q.id).ok_or(IVY_EBADF)
}

/// Creates a FIFO queue holding at most `capacity` items (`IVY_UNBOUNDED`: no
/// limit). Errors: `IVY_EINVAL` (`out` `NULL`, `capacity` 0).
///
/// # Safety
/// `out` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_queue_new(capacity: usize, out: *mut ivy_queue_t) -> c_int {
    guard(|| {
        let out = out_ptr(out)?;
        let q = match capacity {
            0 => return Err(IVY_EINVAL),
            IVY_UNBOUNDED => Queue::unbounded(),
            n => Queue::try_bounded(n).map_err(|_| IVY_EINVAL)?,
        };
        let id = QUEUES.insert(Arc::new(q)).ok_or(IVY_ENOMEM)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(out, ivy_queue_t { id }) };
        Ok(())
    })
}

/// Appends `item` (any pointer, `NULL` included), waiting for room until
/// `deadline`. Errors: `IVY_ETIMEDOUT` (full), `IVY_ECLOSED` (closed or
/// freed), `IVY_ECANCELED`
/// (nothing was added in any error case), `IVY_EBADF`, `IVY_EINVAL`.
#[no_mangle]
pub extern "C" fn ivy_queue_put(q: ivy_queue_t, item: *mut c_void, deadline: i64) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        queue(q)?
            .put_deadline(CPtr(item), d)
            .map_err(|(e, _item)| wait_error(e))
    })
}

/// Removes the oldest item into `*item`, waiting until `deadline` for one.
/// Errors: `IVY_ETIMEDOUT` (empty), `IVY_ECLOSED` (closed and drained, or freed),
/// `IVY_ECANCELED`, `IVY_EBADF`, `IVY_EINVAL` (`item` `NULL`, bad deadline).
///
/// # Safety
/// `item` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_queue_get(
    q: ivy_queue_t,
    item: *mut *mut c_void,
    deadline: i64,
) -> c_int {
    guard(|| {
        let item = out_ptr(item)?;
        let d = to_instant(deadline)?;
        let v = queue(q)?.get_deadline(d).map_err(wait_error)?;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(item, v.0) };
        Ok(())
    })
}

/// Closes the queue: waiting and later puts fail with `IVY_ECLOSED`; gets
/// return the remaining items, then `IVY_ECLOSED`. Idempotent. Errors:
/// `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_queue_close(q: ivy_queue_t) -> c_int {
    guard(|| {
        queue(q)?.close();
        Ok(())
    })
}

/// Marks one item taken by a get as processed (asyncio's `task_done`).
/// Errors: `IVY_EINVAL` (called more times than items were put); `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_queue_task_done(q: ivy_queue_t) -> c_int {
    guard(|| queue(q)?.task_done().map_err(|_| IVY_EINVAL))
}

/// Waits until every item ever put has been marked done with
/// `ivy_queue_task_done`, or `deadline`. `ivy_queue_close` does not end the
/// wait (items may still be drained and marked done); `ivy_queue_free` does.
/// Errors: `IVY_ETIMEDOUT`, `IVY_ECLOSED` (the queue was freed), `IVY_ECANCELED`,
/// `IVY_EBADF`, `IVY_EINVAL`.
#[no_mangle]
pub extern "C" fn ivy_queue_join(q: ivy_queue_t, deadline: i64) -> c_int {
    guard(|| {
        let d = to_instant(deadline)?;
        queue(q)?.join_deadline(d).map_err(wait_error)
    })
}

/// Stores the number of items in the queue in `*len`. Errors: `IVY_EBADF`,
/// `IVY_EINVAL`.
///
/// # Safety
/// `len` is valid for writes, or `NULL` (then the call fails with `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_queue_len(q: ivy_queue_t, len: *mut usize) -> c_int {
    guard(|| {
        let len = out_ptr(len)?;
        let n = queue(q)?.len();
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(len, n) };
        Ok(())
    })
}

/// Frees the queue (the rule of every `ivy_*_free`, see the top of this
/// header): the handle is invalid at once; every task or thread waiting in
/// `ivy_queue_put`, `ivy_queue_get` or `ivy_queue_join` on it returns
/// `IVY_ECLOSED`, and an `ivy_queue_select` waiting on it fires that arm with
/// `result` `IVY_ECLOSED`. Items still inside are dropped: ivy does not free
/// what they point to. Errors: `IVY_EBADF`.
#[no_mangle]
pub extern "C" fn ivy_queue_free(q: ivy_queue_t) -> c_int {
    guard(|| {
        QUEUES.remove(q.id).ok_or(IVY_EBADF)?.shutdown();
        Ok(())
    })
}

/// What one arm of `ivy_queue_select` does.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ivy_queue_select_kind_t {
    /// Take an item from `queue` into `item`.
    IVY_SELECT_GET = 1,
    /// Put `item` into `queue`.
    IVY_SELECT_PUT = 2,
}

/// One arm of `ivy_queue_select`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ivy_queue_select_op_t {
    /// The queue this arm gets from or puts into.
    pub queue: ivy_queue_t,
    /// `IVY_SELECT_GET` or `IVY_SELECT_PUT` (any other value is `IVY_EINVAL`).
    pub kind: c_int,
    /// PUT: the item to put. GET: receives the item taken, if this arm fired.
    pub item: *mut c_void,
    /// Set for the arm that fired: 0, or `IVY_ECLOSED` if it fired because its
    /// queue was closed (GET: closed and drained).
    pub result: c_int,
}

/// Waits until one of the `n` operations can proceed, performs exactly that one,
/// and stores its index in `*fired` (Go's `select`, over queues). When several
/// are ready at once, one is chosen at random (no arm starves). An arm on a
/// closed queue is ready, and fires with `result` `IVY_ECLOSED`; so does one
/// whose queue is freed while the select waits.
///
/// Returns 0 when an arm fired; `IVY_ETIMEDOUT` when `deadline` passed first
/// (nothing happened); `IVY_ECANCELED`; `IVY_EINVAL` (`ops` or `fired` `NULL`,
/// `n` 0, an unknown kind); `IVY_EBADF` (a stale queue handle).
///
/// # Safety
/// `ops` is valid for `n` reads and writes; `fired` is valid for writes (or
/// `NULL`: `IVY_EINVAL`).
#[no_mangle]
pub unsafe extern "C" fn ivy_queue_select(
    ops: *mut ivy_queue_select_op_t,
    n: usize,
    fired: *mut usize,
    deadline: i64,
) -> c_int {
    guard(|| {
        let fired = out_ptr(fired)?;
        if ops.is_null() || n == 0 {
            return Err(IVY_EINVAL);
        }
        let d = to_instant(deadline)?;
        // SAFETY: the caller's contract: `n` valid, exclusively ours for the call.
        let ops = unsafe { std::slice::from_raw_parts_mut(ops, n) };
        let queues = ops
            .iter()
            .map(|op| queue(op.queue))
            .collect::<Result<Vec<_>, _>>()?;
        const GET: c_int = ivy_queue_select_kind_t::IVY_SELECT_GET as c_int;
        const PUT: c_int = ivy_queue_select_kind_t::IVY_SELECT_PUT as c_int;
        // What fired: (index, item for a GET, result code).
        type Fired = (usize, *mut c_void, c_int);
        let mut select: Select<'_, Fired> = Select::new();
        for (i, (op, q)) in ops.iter().zip(&queues).enumerate() {
            select = match op.kind {
                GET => select.get(&**q, move |r: Result<CPtr, GetError>| match r {
                    Ok(v) => (i, v.0, 0),
                    Err(_) => (i, std::ptr::null_mut(), IVY_ECLOSED),
                }),
                PUT => select.put(&**q, CPtr(op.item), move |r: Result<(), PutError<CPtr>>| {
                    (
                        i,
                        std::ptr::null_mut(),
                        if r.is_ok() { 0 } else { IVY_ECLOSED },
                    )
                }),
                _ => return Err(IVY_EINVAL),
            };
        }
        let (i, item, result) = select.run_deadline(d).map_err(wait_error)?;
        if ops[i].kind == GET {
            ops[i].item = item;
        }
        ops[i].result = result;
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { write_out(fired, i) };
        Ok(())
    })
}
