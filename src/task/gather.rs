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

use std::sync::Arc;
use std::time::Instant;

use crate::cancel::{or_raise, Interrupted};
use crate::park;
use crate::task::join::{CompletionSignal, Waiter};
use crate::task::{JoinError, JoinHandle};

/// Cancels every handle still held when dropped during an unwind (the caller was
/// cancelled or timed out while waiting).
struct CancelRest<'a, T>(&'a mut Vec<Option<JoinHandle<T>>>);

impl<T> Drop for CancelRest<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for h in self.0.iter().flatten() {
                h.cancel();
            }
        }
    }
}

/// Joins every task and returns their values in the order of `handles` (asyncio's
/// `gather`). Fail-fast: on the first failure, the tasks still running are
/// cancelled and joined, and that first error is returned.
pub fn join_all<T>(handles: impl IntoIterator<Item = JoinHandle<T>>) -> Result<Vec<T>, JoinError> {
    let mut handles: Vec<Option<JoinHandle<T>>> = handles.into_iter().map(Some).collect();
    let n = handles.len();
    let mut values: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let signal = register(&handles);
    let guard = CancelRest(&mut handles);
    for _ in 0..n {
        let i = or_raise(next_completed(&signal, None)).expect("no deadline");
        let h = guard.0[i].take().expect("each task completes once");
        match h.join() {
            Ok(v) => values[i] = Some(v),
            Err(e) => {
                for h in guard.0.iter().flatten() {
                    h.cancel();
                }
                for h in guard.0.iter_mut().filter_map(Option::take) {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    drop(guard);
    Ok(values
        .into_iter()
        .map(|v| v.expect("every task joined"))
        .collect())
}

/// Joins every task and returns every outcome, in the order of `handles`
/// (asyncio's `gather(..., return_exceptions=True)`).
pub fn join_all_settled<T>(
    handles: impl IntoIterator<Item = JoinHandle<T>>,
) -> Vec<Result<T, JoinError>> {
    let mut handles: Vec<Option<JoinHandle<T>>> = handles.into_iter().map(Some).collect();
    let guard = CancelRest(&mut handles);
    let mut out = Vec::with_capacity(guard.0.len());
    for i in 0..guard.0.len() {
        // Wait first (a cancellation point that leaves the handle in place, so the
        // guard can cancel it), then take the finished result.
        or_raise(guard.0[i].as_ref().expect("present").wait());
        out.push(guard.0[i].take().expect("present").join());
    }
    out
}

/// Waits until at least one of `handles` has finished and returns the index of
/// one that has (asyncio's `wait(..., return_when=FIRST_COMPLETED)`), or `None`
/// if `handles` is empty. The handles stay owned by the caller. A cancellation point.
pub fn wait_any<T>(handles: &[JoinHandle<T>]) -> Option<usize> {
    or_raise(wait_any_until(handles, None)).map(|r| r.expect("no deadline"))
}

/// `wait_any` with a deadline: `Ok(Some(Ok(i)))` when handle `i` has finished,
/// `Ok(Some(Err(())))` when the deadline passed first, `Ok(None)` for an empty set.
pub(crate) fn wait_any_until<T>(
    handles: &[JoinHandle<T>],
    deadline: Option<Instant>,
) -> Result<Option<Result<usize, ()>>, Interrupted> {
    if handles.is_empty() {
        return Ok(None);
    }
    let signal = Arc::new(CompletionSignal::default());
    let mut registered = 0;
    let mut found = None;
    for (i, h) in handles.iter().enumerate() {
        if !h.set_waiter(Waiter::Group(signal.clone(), i)) {
            found = Some(i);
            break;
        }
        registered += 1;
    }
    let result = match found {
        Some(i) => Ok(Some(Ok(i))),
        None => next_completed(&signal, deadline).map(|r| Some(r.ok_or(()))),
    };
    for h in &handles[..registered] {
        h.clear_waiter();
    }
    result
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

/// Parks until the signal reports a completion (`Some(index)`) or `deadline`
/// passes (`None`).
fn next_completed(
    signal: &CompletionSignal,
    deadline: Option<Instant>,
) -> Result<Option<usize>, Interrupted> {
    loop {
        if let Some(i) = signal.poll() {
            return Ok(Some(i));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        park::park_for(deadline, crate::runtime::debug::WaitReason::Join)?;
    }
}

/// One step of `AsCompleted::next_until`: a finished handle with its index, or
/// `Err(())` when the deadline passed first.
pub(crate) type NextUntil<T> = Result<(usize, JoinHandle<T>), ()>;

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
    /// Like `next`, but gives up at `deadline` (for the C ABI): `Ok(None)` when
    /// every handle was yielded, `Ok(Some(Err(())))` when the deadline passed first.
    pub(crate) fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<NextUntil<T>>, Interrupted> {
        if self.remaining == 0 {
            return Ok(None);
        }
        match next_completed(&self.signal, deadline)? {
            Some(i) => {
                self.remaining -= 1;
                let h = self.handles[i].take().expect("each task completes once");
                Ok(Some(Ok((i, h))))
            }
            None => Ok(Some(Err(()))),
        }
    }

    /// Like `next`, also returning the handle's position in the original set.
    pub fn next_indexed(&mut self) -> Option<(usize, JoinHandle<T>)> {
        or_raise(self.next_until(None)).map(|r| r.expect("no deadline"))
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
