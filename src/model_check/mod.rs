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

mod loom_idle;
mod loom_task_state;
mod loom_wait_list;

/// A one-token parker for the model threads, with `std::thread::park`'s (and
/// `ivy::park`'s) contract: an unpark before the park makes it return at once.
///
/// Built on a token of its own because loom's `thread::unpark` drops the token
/// when it reaches a thread blocked on something else (a lock, a join): the
/// model would report wake-ups lost by loom, not by ivy. The token here is an
/// atomic, like the state word of std's futex parker and of an ivy task.
#[derive(Clone)]
struct Unparker {
    token: loom::sync::Arc<loom::sync::atomic::AtomicBool>,
    thread: loom::thread::Thread,
}

impl Unparker {
    /// Runs `f` on a new model thread, with that thread's unparker; returns
    /// the thread and (a clone of) its unparker.
    fn spawn<T: 'static>(
        f: impl FnOnce(Unparker) -> T + 'static,
    ) -> (loom::thread::JoinHandle<T>, Unparker) {
        let token = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let theirs = token.clone();
        let handle = loom::thread::spawn(move || {
            f(Unparker {
                token: theirs,
                thread: loom::thread::current(),
            })
        });
        let unparker = Unparker {
            token,
            thread: handle.thread().clone(),
        };
        (handle, unparker)
    }

    /// Parks the calling thread (the owner) until the token is available, and
    /// consumes it.
    fn park(&self) {
        use loom::sync::atomic::Ordering;
        while self
            .token
            .compare_exchange(true, false, Ordering::Acquire, Ordering::Acquire)
            .is_err()
        {
            loom::thread::park();
        }
    }

    fn unpark(&self) {
        self.token
            .store(true, loom::sync::atomic::Ordering::Release);
        self.thread.unpark();
    }
}

