//! Futures inside tasks: `ivy::block_on(future)` and its `Result` form
//! `ivy::block_on_deadline(future, deadline)`.
//!
//! Where it lives, and why: the api layer (`task/`, re-exported at the crate
//! root), because it is a blocking call like `JoinHandle::join`, built only on
//! `park` (park the caller, `current_unparker`) and the cancellation rules of
//! every blocking call. It needs nothing of the scheduler or the reactor: the
//! future brings its own event sources (another thread, a channel, a timer of
//! its own) and reaches the caller only through its waker.
//!
//! How: the future is pinned in `block_on`'s frame, so it is polled on the
//! caller's own stack (a task's stack, never the worker's). One waker is built
//! per call: an `Arc<FutureWaker>` holding the caller's `Unparker` and a
//! `woken` flag. Waking sets the flag, then unparks. The caller polls only
//! when the flag is set (it starts set: the first poll), clearing it *before*
//! the poll, so a wake that comes during a poll makes the loop poll again. It
//! parks only while the flag is clear; `park` is a one-token semaphore (an
//! unpark before the park makes the park return at once), so a wake between the
//! check and the park is not lost, and a spurious return from `park` (a stale
//! token from an earlier wait) finds the flag clear and parks again without
//! polling. A task parks (its worker runs other tasks meanwhile); a plain
//! thread parks the thread. The waker may be cloned, sent to any thread and
//! woken any number of times, also after `block_on` returned or its task
//! ended: that only sets a flag nobody reads and unparks a task that is not
//! parked for it (a spurious wake-up, which every waiter of ivy tolerates), or
//! one that is done (a no-op).
//!
//! It is a cancellation point like every blocking call: a cancelled task
//! unwinds out of `block_on` (the future is dropped on the way, on the task's
//! stack), an enclosing `ivy::timeout` scope elapses it, and
//! `block_on_deadline` returns those as `Err` instead, having dropped the
//! future. A future that is ready at a poll completes, even in a cancelled
//! task (as a free lock is taken): interruptions are seen where it would park.
//! A panic in `poll` is the caller's panic.
//!
//! Not here: `futures-io` `AsyncRead`/`AsyncWrite` on ivy's sockets. An ivy
//! socket learns its readiness from the poll of the worker running the task
//! that waits on it (`io::registration`: waiters are `Unparker`s, and the fd
//! is registered with the *caller's* worker). A future may be polled on a
//! foreign executor's thread, where there is no ivy worker poll to register
//! with; an honest `poll_read` there would need the socket to keep a runtime
//! of its own to register with and waiter lists that hold `Waker`s beside
//! `Unparker`s. Inside an ivy task, the sockets' `std::io::Read`/`Write` are
//! what to use (a blocking call parks the task, even inside `block_on`).
//!
//! Layer: api. Uses `park`, `error`, and the task core's `WaitReason`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use crate::error::WaitError;
use crate::park::{self, Unparker};
use crate::sync::or_raise;
use crate::task::wait_reason::WaitReason;

/// The waker of one `block_on` call.
struct FutureWaker {
    unparker: Unparker,
    /// Set by a wake, cleared by the caller before each poll.
    woken: AtomicBool,
}

impl Wake for FutureWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: what the waker's owner did before waking is visible to the
        // poll that follows (which reads the flag with Acquire).
        self.woken.store(true, Ordering::Release);
        self.unparker.unpark();
    }
}

/// Runs `future` to completion on the caller's stack and returns its output.
///
/// Inside an ivy task it parks the *task* (not the worker) until the future's
/// waker is woken, then polls it again; on a plain thread it parks the thread.
/// So runtime-agnostic async code (`futures`, `async-channel`, ...) can be
/// called from sync-looking code. The waker may be woken from any thread.
///
/// A cancellation point: if the calling task is cancelled while the future is
/// pending, or the deadline of an enclosing [`crate::timeout`] scope passes,
/// the future is dropped and the call unwinds, like every blocking call
/// ([`block_on_deadline`] returns those as `Err` instead). A panic in the
/// future is the caller's panic.
///
/// ```
/// let v = ivy::run(|| {
///     let (tx, rx) = futures_oneshot();
///     let t = ivy::spawn(move || { ivy::sleep(std::time::Duration::from_millis(5)); tx(7) });
///     let v = ivy::block_on(rx);
///     t.join().unwrap();
///     v
/// });
/// assert_eq!(v, 7);
/// # fn futures_oneshot() -> (impl FnOnce(u32), impl std::future::Future<Output = u32>) {
/// #     let (tx, rx) = futures::channel::oneshot::channel();
/// #     (move |v| tx.send(v).unwrap(), async move { rx.await.unwrap() })
/// # }
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    or_raise(block_on_deadline(future, None))
}

/// The `Result` form of [`block_on`] (see "Two forms of every blocking call"
/// in [`crate::sync`]): runs `future` until it completes (`Ok(output)`) or
/// `deadline` passes (`Err(TimedOut)`; `None`: no deadline of its own), or the
/// caller is cancelled (`Err(Cancelled)`) or its enclosing `timeout` scope
/// passes (`Err(Elapsed)`). Never unwinds for those. On every `Err` the future
/// has been dropped, unfinished (it was taken by value: nothing of it is
/// given back). A passed deadline polls the future once and never parks.
pub fn block_on_deadline<F: Future>(
    future: F,
    deadline: Option<Instant>,
) -> Result<F::Output, WaitError> {
    let mut future = pin!(future);
    let state = Arc::new(FutureWaker {
        unparker: park::current_unparker(),
        woken: AtomicBool::new(true),
    });
    let waker = Waker::from(state.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if state.woken.swap(false, Ordering::Acquire) {
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return Ok(v);
            }
            // Woken during the poll: the flag is set again, so the loop polls
            // again before it parks.
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            park::check_interrupt()?;
            return Err(WaitError::TimedOut);
        }
        park::park_for(deadline, WaitReason::Future)?;
    }
}
