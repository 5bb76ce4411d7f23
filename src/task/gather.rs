//! Waiting on many tasks at once: asyncio's `gather`, `wait(FIRST_COMPLETED)` and
//! `as_completed`.
//!
//! All of them register one `CompletionSignal` as the waiter of every handle in
//! the set; a finishing task pushes its index there and wakes the caller. So the
//! caller learns *which* task finished without rescanning the set, and waiting on
//! n tasks costs O(n) in total, not O(n) per completion.
//!
//! Failure policy (asyncio's): `join_all` is fail-fast — the first task that fails
//! (panics, is cancelled, gets no stack) cancels every task still running, which
//! are then joined before the error is returned, so no task of the set outlives
//! the call. `join_all_settled` collects every outcome. If the *caller* is
//! cancelled (or its deadline scope elapses) while waiting in either, the tasks
//! still running are cancelled too, like a cancelled `gather` cancels its children.
//!
//! Each call has its non-unwinding `_deadline` twin (see "Two forms of every
//! blocking call" in `ivy::sync`); `wait_any_in` / `wait_all_in` serve the C
//! ABI, whose handles sit in its table's locks. Layering: api (with `join`).

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Instant;

use crate::error::WaitError;
use crate::park;
use crate::sync::or_raise;
use crate::task::header::{CompletionSignal, Waiter};
use crate::task::{JoinError, JoinHandle};

/// Cancels every handle still held when dropped, unless disarmed: the caller
/// gave up waiting (interrupted, or its own deadline passed), and no task of
/// the set may outlive the call unnoticed.
struct CancelRest<'a, T> {
    handles: &'a mut Vec<Option<JoinHandle<T>>>,
    armed: bool,
}

impl<T> Drop for CancelRest<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            for h in self.handles.iter().flatten() {
                h.cancel();
            }
        }
    }
}

/// Joins every task and returns their values in the order of `handles` (asyncio's
/// `gather`). Fail-fast: on the first failure, the tasks still running are
/// cancelled and joined, and that first error is returned.
pub fn join_all<T>(handles: impl IntoIterator<Item = JoinHandle<T>>) -> Result<Vec<T>, JoinError> {
    or_raise(join_all_deadline(handles, None))
}

/// The `Result` form of [`join_all`] (see "Two forms of every blocking call" in
/// [`crate::sync`]): gives up at `deadline` (`None`: no deadline of its own)
/// with `Err(TimedOut)`, or when the caller is interrupted. On every `Err` the
/// tasks still running are cancelled (as a cancelled `gather` cancels its
/// children) and detached; their results are lost.
pub fn join_all_deadline<T>(
    handles: impl IntoIterator<Item = JoinHandle<T>>,
    deadline: Option<Instant>,
) -> Result<Result<Vec<T>, JoinError>, WaitError> {
    let mut handles: Vec<Option<JoinHandle<T>>> = handles.into_iter().map(Some).collect();
    let n = handles.len();
    let mut values: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let signal = register(&handles);
    let mut guard = CancelRest {
        handles: &mut handles,
        armed: true,
    };
    for _ in 0..n {
        let i = next_completed(&signal, deadline)?;
        let mut h = guard.handles[i].take().expect("each task completes once");
        // Finished: this join does not wait.
        match h.join_deadline(None)? {
            Ok(v) => values[i] = Some(v),
            Err(e) => {
                for h in guard.handles.iter().flatten() {
                    h.cancel();
                }
                while let Some(mut h) = guard.handles.iter_mut().find_map(Option::take) {
                    // Interrupted while reaping: the guard cancels the rest
                    // again (no-op) and `h`, dropped, detaches.
                    let _outcome = h.join_deadline(None)?;
                }
                guard.armed = false;
                return Ok(Err(e));
            }
        }
    }
    guard.armed = false;
    drop(guard);
    Ok(Ok(values
        .into_iter()
        .map(|v| v.expect("every task joined"))
        .collect()))
}

/// Joins every task and returns every outcome, in the order of `handles`
/// (asyncio's `gather(..., return_exceptions=True)`).
pub fn join_all_settled<T>(
    handles: impl IntoIterator<Item = JoinHandle<T>>,
) -> Vec<Result<T, JoinError>> {
    or_raise(join_all_settled_deadline(handles, None))
}

/// The `Result` form of [`join_all_settled`]: as [`join_all_deadline`], on
/// every `Err` the tasks still running are cancelled and detached.
pub fn join_all_settled_deadline<T>(
    handles: impl IntoIterator<Item = JoinHandle<T>>,
    deadline: Option<Instant>,
) -> Result<Vec<Result<T, JoinError>>, WaitError> {
    let mut handles: Vec<Option<JoinHandle<T>>> = handles.into_iter().map(Some).collect();
    let mut guard = CancelRest {
        handles: &mut handles,
        armed: true,
    };
    let mut out = Vec::with_capacity(guard.handles.len());
    for i in 0..guard.handles.len() {
        // Join in place (a failed wait leaves the handle there, for the guard
        // to cancel), then take the spent handle out.
        let h = guard.handles[i].as_mut().expect("present");
        out.push(h.join_deadline(deadline)?);
        guard.handles[i] = None;
    }
    guard.armed = false;
    Ok(out)
}

/// Waits until at least one of `handles` has finished and returns the index of
/// one that has (asyncio's `wait(..., return_when=FIRST_COMPLETED)`), or `None`
/// if `handles` is empty. The handles stay owned by the caller. A cancellation point.
pub fn wait_any<T>(handles: &[JoinHandle<T>]) -> Option<usize> {
    or_raise(wait_any_deadline(handles, None))
}

/// The `Result` form of [`wait_any`]: `Ok(Some(i))` when handle `i` has
/// finished, `Ok(None)` for an empty set, `Err(TimedOut)` when `deadline`
/// passed first (`None`: no deadline of its own). The handles are untouched in
/// every case.
pub fn wait_any_deadline<T>(
    handles: &[JoinHandle<T>],
    deadline: Option<Instant>,
) -> Result<Option<usize>, WaitError> {
    wait_any_in(handles, deadline)
}

/// [`wait_any_deadline`] over handles held in any form (the C ABI holds them
/// inside its handle table's locks).
pub(crate) fn wait_any_in<T, H: Borrow<JoinHandle<T>>>(
    handles: &[H],
    deadline: Option<Instant>,
) -> Result<Option<usize>, WaitError> {
    if handles.is_empty() {
        return Ok(None);
    }
    let signal = Arc::new(CompletionSignal::default());
    let mut registered = 0;
    let mut found = None;
    for (i, h) in handles.iter().enumerate() {
        if !h.borrow().set_waiter(Waiter::Group(signal.clone(), i)) {
            found = Some(i);
            break;
        }
        registered += 1;
    }
    let result = match found {
        Some(i) => Ok(Some(i)),
        None => next_completed(&signal, deadline).map(Some),
    };
    for h in &handles[..registered] {
        h.borrow().clear_waiter();
    }
    result
}

/// Waits until every one of `handles` has finished, or `deadline` (for the C
/// ABI's `ivy_task_join_all`, which then joins them without waiting). The
/// handles are untouched.
pub(crate) fn wait_all_in<T, H: Borrow<JoinHandle<T>>>(
    handles: &[H],
    deadline: Option<Instant>,
) -> Result<(), WaitError> {
    let signal = Arc::new(CompletionSignal::default());
    for (i, h) in handles.iter().enumerate() {
        if !h.borrow().set_waiter(Waiter::Group(signal.clone(), i)) {
            signal.complete(i);
        }
    }
    for _ in 0..handles.len() {
        if let Err(e) = next_completed(&signal, deadline) {
            for h in handles {
                h.borrow().clear_waiter();
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Registers one signal as the waiter of every handle; handles already finished
/// are reported on the signal at once.
fn register<T>(handles: &[Option<JoinHandle<T>>]) -> Arc<CompletionSignal> {
    let signal = Arc::new(CompletionSignal::default());
    for (i, h) in handles.iter().enumerate() {
        if let Some(h) = h {
            if !h.set_waiter(Waiter::Group(signal.clone(), i)) {
                signal.complete(i);
            }
        }
    }
    signal
}

/// Parks until the signal reports a completion (its index) or `deadline`
/// passes (`Err(TimedOut)`; a passed one never parks).
fn next_completed(
    signal: &CompletionSignal,
    deadline: Option<Instant>,
) -> Result<usize, WaitError> {
    loop {
        if let Some(i) = signal.poll() {
            return Ok(i);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(WaitError::TimedOut);
        }
        park::park_for(deadline, crate::runtime::debug::WaitReason::Join)?;
    }
}

/// Yields the handles of a set of tasks in the order they finish (asyncio's
/// `as_completed`). Each yielded handle is finished: its `join` does not wait.
/// Dropping the iterator detaches the tasks not yet yielded.
///
/// ```
/// use std::time::Duration;
/// let order = ivy::run(|| {
///     let hs = [30u64, 10, 20].map(|ms| ivy::spawn(move || { ivy::sleep(Duration::from_millis(ms)); ms }));
///     ivy::as_completed(hs).map(|h| h.join().unwrap()).collect::<Vec<_>>()
/// });
/// assert_eq!(order, [10, 20, 30]);
/// ```
pub struct AsCompleted<T> {
    handles: Vec<Option<JoinHandle<T>>>,
    signal: Arc<CompletionSignal>,
    remaining: usize,
}

/// Returns an iterator over `handles` in completion order; see [`AsCompleted`].
pub fn as_completed<T>(handles: impl IntoIterator<Item = JoinHandle<T>>) -> AsCompleted<T> {
    let handles: Vec<Option<JoinHandle<T>>> = handles.into_iter().map(Some).collect();
    let signal = register(&handles);
    AsCompleted {
        remaining: handles.len(),
        handles,
        signal,
    }
}

impl<T> AsCompleted<T> {
    /// The `Result` form of [`next`](Iterator::next) (see "Two forms of every
    /// blocking call" in [`crate::sync`]): the next finished handle, `Ok(None)`
    /// once every handle was yielded, `Err(TimedOut)` when `deadline` passed
    /// first (`None`: no deadline of its own). Nothing is lost on `Err`: the
    /// handles not yet yielded stay in the iterator.
    pub fn next_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<JoinHandle<T>>, WaitError> {
        Ok(self.next_indexed_deadline(deadline)?.map(|(_, h)| h))
    }

    /// [`next_deadline`](Self::next_deadline), also returning the handle's
    /// position in the original set.
    pub fn next_indexed_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<(usize, JoinHandle<T>)>, WaitError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let i = next_completed(&self.signal, deadline)?;
        self.remaining -= 1;
        let h = self.handles[i].take().expect("each task completes once");
        Ok(Some((i, h)))
    }

    /// Like `next`, also returning the handle's position in the original set.
    pub fn next_indexed(&mut self) -> Option<(usize, JoinHandle<T>)> {
        or_raise(self.next_indexed_deadline(None))
    }

    /// How many handles have not been yielded yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = JoinHandle<T>;

    fn next(&mut self) -> Option<JoinHandle<T>> {
        self.next_indexed().map(|(_, h)| h)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}
