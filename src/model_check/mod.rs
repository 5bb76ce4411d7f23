//! Model checks of the runtime's core protocols with loom, compiled only under
//! `RUSTFLAGS="--cfg loom"` (run by `tests/model-check.sh`, from `./test.sh`).
//!
//! Each test drives the *real* type the runtime uses (its atomics and locks come
//! from `crate::loom`, which is loom's under this cfg) and asserts the protocol's
//! promise in every interleaving loom explores (bounded by
//! `LOOM_MAX_PREEMPTIONS`). What surrounds the protocol (a worker, a queue, a
//! park) is played by loom threads, doing exactly the calls the runtime makes, in
//! the same order; where that stand-in simplifies (a queue modelled as a locked
//! `VecDeque`), its module says so. README, "Model checking", lists what is and
//! is not checked.
//!
//! Why in-crate modules rather than `tests/*.rs`: the checked types are
//! crate-private, and tokio keeps its loom tests in-crate for the same reason.
//!
//! Two artefacts of loom 0.7 shape these tests: `Thread::unpark` reaching a
//! thread blocked on a lock loses the token or trips loom's lock bookkeeping
//! (hence `Unparker` below), and a plain store racing a compare-exchange may be
//! ordered between the CAS's read and its write (so no test asserts a state
//! that only such an impossible execution breaks; see
//! `unpark_racing_completion_never_queues_a_finished_task`).

mod loom_idle;
mod loom_join;
mod loom_queue_ring;
mod loom_spawn_slot;
mod loom_task_state;
mod loom_wait_list;

/// A one-token parker for the model threads, with `std::thread::park`'s (and
/// `ivy::park`'s) contract: an unpark before the park makes it return at once.
///
/// Built on a lock and a condition variable rather than on loom's
/// `thread::park`: loom's `Thread::unpark` reaching a thread that is blocked on
/// something else (a lock) drops the token or breaks loom's lock bookkeeping,
/// so the model would report loom's artefacts, not ivy's bugs.
#[derive(Clone)]
struct Unparker(loom::sync::Arc<(loom::sync::Mutex<bool>, loom::sync::Condvar)>);

impl Unparker {
    fn new() -> Unparker {
        Unparker(loom::sync::Arc::new(Default::default()))
    }

    /// Runs `f` on a new model thread, with that thread's unparker; returns
    /// the thread and (a clone of) its unparker.
    fn spawn<T: 'static>(
        f: impl FnOnce(Unparker) -> T + 'static,
    ) -> (loom::thread::JoinHandle<T>, Unparker) {
        let unparker = Unparker::new();
        let theirs = unparker.clone();
        (loom::thread::spawn(move || f(theirs)), unparker)
    }

    /// Parks the calling thread until the token is available, and consumes it.
    fn park(&self) {
        let (token, wake) = &*self.0;
        let mut token = token.lock().unwrap();
        while !*token {
            token = wake.wait(token).unwrap();
        }
        *token = false;
    }

    fn unpark(&self) {
        let (token, wake) = &*self.0;
        *token.lock().unwrap() = true;
        wake.notify_one();
    }
}
