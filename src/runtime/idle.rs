//! Which workers sleep, and when a new task should wake one.
//!
//! Modelled on tokio's `Idle` and Go's `wakep`: a worker that runs out of work
//! first *searches* (spins over the injector and its peers' queues), then sleeps.
//! Making stealable work available wakes a sleeper only if no worker is already
//! searching; the woken worker is counted as searching, and when a searcher finds
//! work it wakes the next sleeper (if any) before running it. So a burst of spawns
//! ramps up workers one at a time instead of stampeding them all (no thundering
//! herd), and as long as there is queued work and a sleeper, someone is searching.
//!
//! No lost wake-ups: a worker registers as sleeping (SeqCst) *before* its final
//! check of every queue (`sleep_after_final_check`), and a producer pushes
//! *before* reading the sleeper count (SeqCst). One of the two always sees the
//! other. loom checks this handshake on this very code (`model_check::loom_idle`;
//! the atomics and the lock come from `crate::loom`), against a queue with the
//! orderings of crossbeam-deque's push and steal: a Relaxed store of `back`
//! after a Release fence, which only the SeqCst fence in `worker_to_notify`
//! keeps from being missed by a sleeper's final check (loom finds the missed
//! wake-up without it).
//! The final check is a closure run by `Idle` itself, so the order "register,
//! then look" is part of the checked code, not of the caller.
//!
//! Layer: scheduler. Uses only `loom`.

use crate::loom::{fence, AtomicUsize, Mutex, Ordering};

pub(crate) struct Idle {
    num_searching: AtomicUsize,
    num_sleeping: AtomicUsize,
    sleepers: Mutex<Vec<usize>>,
}

impl Idle {
    pub(crate) fn new(workers: usize) -> Idle {
        Idle {
            num_searching: AtomicUsize::new(0),
            num_sleeping: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::with_capacity(workers)),
        }
    }

    /// After stealable work was pushed: the index of a worker to wake, if one
    /// should be woken. The chosen worker is already counted as searching.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        fence(Ordering::SeqCst);
        if self.num_searching.load(Ordering::SeqCst) != 0
            || self.num_sleeping.load(Ordering::SeqCst) == 0
        {
            return None;
        }
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        if self.num_searching.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let index = sleepers.pop()?;
        self.num_sleeping.fetch_sub(1, Ordering::SeqCst);
        self.num_searching.fetch_add(1, Ordering::SeqCst);
        Some(index)
    }

    /// A worker starts searching on its own. Capped at half the workers (Go's rule)
    /// so spinning never eats the machine; returns whether it may search.
    pub(crate) fn try_start_searching(&self, workers: usize) -> bool {
        let n = self.num_searching.load(Ordering::SeqCst);
        if 2 * n >= workers.max(2) {
            return false;
        }
        self.num_searching.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// A searching worker found work or gave up. Returns `true` if it was the last
    /// searcher, in which case the caller should call `worker_to_notify` if it
    /// found work (there may be more).
    pub(crate) fn stop_searching(&self) -> bool {
        self.num_searching.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Registers `index` as sleeping, then takes the final look at every queue
    /// (`final_check`) and returns what it found. If it found nothing the worker
    /// may sleep until woken: a producer that pushed before the look is seen by
    /// it, one that pushes after it sees this sleeper. Either way, once awake
    /// (or with work found) the worker calls `wake_self`.
    pub(crate) fn sleep_after_final_check<T>(
        &self,
        index: usize,
        final_check: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        {
            let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            sleepers.push(index);
            self.num_sleeping.fetch_add(1, Ordering::SeqCst);
        }
        final_check()
    }

    /// Removes `index` from the sleepers if it is still there (it is not if a
    /// producer chose it, in which case it was counted as searching instead).
    /// Returns `true` if it was still registered.
    pub(crate) fn wake_self(&self, index: usize) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = sleepers.iter().position(|&i| i == index) {
            sleepers.swap_remove(pos);
            self.num_sleeping.fetch_sub(1, Ordering::SeqCst);
            true
        } else {
            false
        }
    }
}

#[cfg(all(test, loom))]
impl Idle {
    /// (searching, sleeping), for the model checks.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (
            self.num_searching.load(Ordering::SeqCst),
            self.num_sleeping.load(Ordering::SeqCst),
        )
    }
}
