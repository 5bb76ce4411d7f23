//! `Select`: wait for the first of several queue operations (Go's `select`).
//!
//! Each arm is a `get` from or a `put` into a queue (any flavour, any item type),
//! with a callback that receives the outcome. `run` fires **exactly one**
//! callback: the first arm that can proceed, the `default` if none can right now,
//! or the timeout callback if the deadline passes first.
//!
//! Protocol (see `waiters.rs`):
//! 1. Try every arm without blocking, starting at a random arm (so a select in a
//!    loop does not starve later arms; `biased()` tries them in declaration order,
//!    like tokio's `biased;`). The first that succeeds fires.
//! 2. Otherwise, if there is a `default`, it fires.
//! 3. Otherwise register one waiter node per arm on the queues' wait lists, all
//!    sharing one claim word. A releaser on any of those queues claims the select
//!    with a CAS *before* handing it an item or a slot, so only one arm is ever
//!    granted; nodes of a claimed (or abandoned) select are skipped and unlinked.
//!    Registering re-checks readiness under each queue's lock, and an arm that is
//!    ready then claims the select itself.
//! 4. On wake-up, collect the claimed arm's grant and deregister the others.
//!    No item is ever taken by a losing arm, so none can be lost.
//!
//! Interrupted (cancelled, scope elapsed) while waiting: if no arm was claimed the
//! select gives up (a CAS that makes later claims fail); if one was claimed in the
//! race, its grant is given back exactly as an interrupted `get`/`put` would.
//! A put arm's value is dropped with the select in that case.
//!
//! A select with no arms, no default and no deadline parks until interrupted (Go's
//! `select {}`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::{CoreRef, GetError, PutError, Registered, SelectOps, SelectQueue};
use super::waiters::SelectShared;
use super::{deadline_after, WaitError};
use crate::park;

trait Arm<R> {
    /// Non-blocking attempt; fires the callback if the arm can proceed.
    fn try_now(&mut self) -> Option<R>;
    fn register(&mut self, shared: &Arc<SelectShared>, index: usize) -> Registered<R>;
    /// Removes the arm's node if it is registered and did not fire.
    fn deregister(&mut self);
    /// The arm was claimed: collect its grant and fire (or, with `err`, give the
    /// grant back and report the interruption).
    fn complete(&mut self, err: Option<WaitError>) -> Result<R, WaitError>;
}

struct GetArm<'a, T, F> {
    queue: &'a dyn SelectOps<T>,
    f: Option<F>,
    key: Option<usize>,
}

impl<T, R, F: FnOnce(Result<T, GetError>) -> R> GetArm<'_, T, F> {
    fn fire(&mut self, r: Result<T, GetError>) -> R {
        (self.f.take().expect("a select arm fires once"))(r)
    }
}

impl<T, R, F: FnOnce(Result<T, GetError>) -> R> Arm<R> for GetArm<'_, T, F> {
    fn try_now(&mut self) -> Option<R> {
        match self.queue.try_get() {
            Err(GetError::Empty) => None,
            r => Some(self.fire(r)),
        }
    }

    fn register(&mut self, shared: &Arc<SelectShared>, index: usize) -> Registered<R> {
        match self.queue.register_get(shared, index) {
            Registered::Queued(k) => {
                self.key = Some(k);
                Registered::Queued(k)
            }
            Registered::Fired(r) => Registered::Fired(self.fire(r)),
            Registered::Lost => Registered::Lost,
        }
    }

    fn deregister(&mut self) {
        if let Some(k) = self.key.take() {
            self.queue.deregister_get(k);
        }
    }

    fn complete(&mut self, err: Option<WaitError>) -> Result<R, WaitError> {
        let key = self.key.take().expect("a claimed arm is registered");
        match self.queue.complete_get(key, err) {
            Ok(v) => Ok(self.fire(Ok(v))),
            Err(WaitError::Closed) => Ok(self.fire(Err(GetError::Closed))),
            Err(e) => Err(e),
        }
    }
}

struct PutArm<'a, T, F> {
    queue: &'a dyn SelectOps<T>,
    value: Option<T>,
    f: Option<F>,
    key: Option<usize>,
}

impl<T, R, F: FnOnce(Result<(), PutError<T>>) -> R> PutArm<'_, T, F> {
    fn fire(&mut self, r: Result<(), PutError<T>>) -> R {
        (self.f.take().expect("a select arm fires once"))(r)
    }
}

impl<T, R, F: FnOnce(Result<(), PutError<T>>) -> R> Arm<R> for PutArm<'_, T, F> {
    fn try_now(&mut self) -> Option<R> {
        let v = self.value.take().expect("a put arm holds its value");
        match self.queue.try_put(v) {
            Err(PutError::Full(v)) => {
                self.value = Some(v);
                None
            }
            r => Some(self.fire(r)),
        }
    }

    fn register(&mut self, shared: &Arc<SelectShared>, index: usize) -> Registered<R> {
        match self.queue.register_put(shared, index, &mut self.value) {
            Registered::Queued(k) => {
                self.key = Some(k);
                Registered::Queued(k)
            }
            Registered::Fired(r) => Registered::Fired(self.fire(r)),
            Registered::Lost => Registered::Lost,
        }
    }

    fn deregister(&mut self) {
        if let Some(k) = self.key.take() {
            self.queue.deregister_put(k);
        }
    }

    fn complete(&mut self, err: Option<WaitError>) -> Result<R, WaitError> {
        let key = self.key.take().expect("a claimed arm is registered");
        let v = self.value.take().expect("a put arm holds its value");
        match self.queue.complete_put(key, v, err) {
            Ok(()) => Ok(self.fire(Ok(()))),
            Err((WaitError::Closed, v)) => Ok(self.fire(Err(PutError::Closed(v)))),
            Err((e, _v)) => Err(e),
        }
    }
}

type Callback<'a, R> = Box<dyn FnOnce() -> R + 'a>;

/// A builder for a select over queue operations; see the module docs.
///
/// ```
/// use ivy::sync::{Queue, Select};
/// ivy::run(|| {
///     let a: Queue<i32> = Queue::bounded(1);
///     let b: Queue<&str> = Queue::bounded(1);
///     b.put("hello").unwrap();
///     let got = Select::new()
///         .get(&a, |r| format!("a: {:?}", r))
///         .get(&b, |r| format!("b: {}", r.unwrap()))
///         .timeout(std::time::Duration::from_secs(1), || "timeout".to_string())
///         .run();
///     assert_eq!(got, "b: hello");
/// });
/// ```
#[must_use = "a Select does nothing until `run` is called"]
pub struct Select<'a, R> {
    arms: Vec<Box<dyn Arm<R> + 'a>>,
    default: Option<Callback<'a, R>>,
    deadline: Option<(Option<Instant>, Callback<'a, R>)>,
    biased: bool,
}

impl<R> Default for Select<'_, R> {
    fn default() -> Self {
        Select::new()
    }
}

impl<'a, R> Select<'a, R> {
    pub fn new() -> Self {
        Select {
            arms: Vec::new(),
            default: None,
            deadline: None,
            biased: false,
        }
    }

    /// An arm taking the next item of `queue`; `f` gets the item, or
    /// `Err(GetError::Closed)` if the queue is closed and drained.
    pub fn get<T: 'a, Q: SelectQueue<T>>(
        mut self,
        queue: &'a Q,
        f: impl FnOnce(Result<T, GetError>) -> R + 'a,
    ) -> Self {
        let CoreRef(ops) = queue.select_core();
        self.arms.push(Box::new(GetArm {
            queue: ops,
            f: Some(f),
            key: None,
        }));
        self
    }

    /// An arm putting `value` into `queue`; `f` gets `Ok(())`, or
    /// `Err(PutError::Closed(value))` if the queue is closed. If another arm
    /// fires, the value is dropped with the select.
    pub fn put<T: 'a, Q: SelectQueue<T>>(
        mut self,
        queue: &'a Q,
        value: T,
        f: impl FnOnce(Result<(), PutError<T>>) -> R + 'a,
    ) -> Self {
        let CoreRef(ops) = queue.select_core();
        self.arms.push(Box::new(PutArm {
            queue: ops,
            value: Some(value),
            f: Some(f),
            key: None,
        }));
        self
    }

    /// Fires `f` if no arm can proceed right now (makes the select non-blocking).
    pub fn default(mut self, f: impl FnOnce() -> R + 'a) -> Self {
        self.default = Some(Box::new(f));
        self
    }

    /// Fires `f` if no arm proceeds before `deadline`.
    pub fn deadline(mut self, deadline: Instant, f: impl FnOnce() -> R + 'a) -> Self {
        self.deadline = Some((Some(deadline), Box::new(f)));
        self
    }

    /// Fires `f` if no arm proceeds within `timeout`.
    pub fn timeout(mut self, timeout: Duration, f: impl FnOnce() -> R + 'a) -> Self {
        self.deadline = Some((deadline_after(timeout), Box::new(f)));
        self
    }

    /// Tries arms in declaration order instead of from a random start.
    pub fn biased(mut self) -> Self {
        self.biased = true;
        self
    }

    /// Runs the select: fires exactly one callback and returns its result. A
    /// cancellation point when it has to wait.
    pub fn run(self) -> R {
        match self.run_deadline(None) {
            Ok(r) => r,
            Err(e) => {
                let e = e.raise_interrupt();
                unreachable!("ivy: unexpected {e:?} from Select::run")
            }
        }
    }

    /// The `Result` form of [`run`](Self::run) (see "Two forms of every blocking
    /// call" in [`crate::sync`]): an interruption (`Cancelled`, `Elapsed`) is an
    /// error instead of an unwind, and `deadline` is the call's own: when it
    /// passes before any arm (or the select's own `deadline` / `timeout` arm,
    /// which fires if it is due first), the result is `Err(TimedOut)`. No
    /// callback fires on an error. A passed `deadline` makes it a try that never
    /// parks.
    pub fn run_deadline(mut self, deadline: Option<Instant>) -> Result<R, WaitError> {
        let own = deadline;
        let n = self.arms.len();
        let start = if self.biased || n == 0 {
            0
        } else {
            random_below(n)
        };
        let order = move |i: usize| (start + i) % n;
        for i in 0..n {
            if let Some(r) = self.arms[order(i)].try_now() {
                return Ok(r);
            }
        }
        if let Some(f) = self.default.take() {
            return Ok(f());
        }
        let arm_deadline = self.deadline.as_ref().and_then(|(d, _)| *d);
        let deadline = match (arm_deadline, own) {
            (Some(a), Some(o)) => Some(a.min(o)),
            (a, o) => a.or(o),
        };
        // Which of the two ends the wait when both could: the earlier one (the
        // select's own arm on a tie).
        let arm_first = match (arm_deadline, own) {
            (Some(a), Some(o)) => a <= o,
            (a, _) => a.is_some(),
        };
        let passed = |d: Option<Instant>| d.is_some_and(|d| Instant::now() >= d);
        if passed(deadline) {
            if arm_first {
                return Ok(self.fire_timeout());
            }
            return Err(WaitError::TimedOut);
        }

        let shared = Arc::new(SelectShared::new(park::current_unparker()));
        for i in 0..n {
            match self.arms[order(i)].register(&shared, order(i)) {
                Registered::Queued(_) => {}
                Registered::Fired(r) => {
                    self.deregister_except(None);
                    return Ok(r);
                }
                Registered::Lost => break,
            }
        }
        loop {
            if let Some(arm) = shared.fired() {
                self.deregister_except(Some(arm));
                return self.arms[arm].complete(None);
            }
            match park::park_for(deadline, crate::runtime::debug::WaitReason::Queue) {
                Err(e) => match shared.abandon() {
                    Ok(()) => {
                        self.deregister_except(None);
                        return Err(e);
                    }
                    Err(arm) => {
                        self.deregister_except(Some(arm));
                        return self.arms[arm].complete(Some(e));
                    }
                },
                Ok(()) => {
                    if passed(deadline) && shared.abandon().is_ok() {
                        self.deregister_except(None);
                        if arm_first {
                            return Ok(self.fire_timeout());
                        }
                        return Err(WaitError::TimedOut);
                    }
                    // Otherwise: claimed (seen at the top of the loop) or spurious.
                }
            }
        }
    }

    fn deregister_except(&mut self, keep: Option<usize>) {
        for (i, arm) in self.arms.iter_mut().enumerate() {
            if Some(i) != keep {
                arm.deregister();
            }
        }
    }

    fn fire_timeout(&mut self) -> R {
        let (_, f) = self.deadline.take().expect("a deadline was set");
        f()
    }
}

/// A cheap per-thread xorshift, for the random first arm.
fn random_below(n: usize) -> usize {
    use std::cell::Cell;
    thread_local! {
        static RNG: Cell<u64> = const { Cell::new(0) };
    }
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            x = (r as *const Cell<u64> as u64) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x % n as u64) as usize
    })
}
