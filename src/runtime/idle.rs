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
//! # How long to search: an adaptive spin (`SpinBudget`)
//! Waking a sleeping worker costs ~45 us on this kind of VM (the vCPU has to be
//! woken), far more than any hand-off between tasks. A started task never changes
//! worker, so a task woken by a peer must wait for its own worker (Go and tokio
//! run it on the waker's worker instead): when that worker sleeps, the wake-up
//! pays the 45 us. A fixed long spin hides it but burns the core in every idle
//! episode, which on a shared machine takes the core from the load generator or
//! another process and gets the spinning worker descheduled later, while its tasks
//! hold what the others wait for (round 2: 100 us made `semaphore` 10x slower
//! under load). So the spin length is learned per worker, from what the last
//! idle episodes needed:
//!
//! - it grows (doubles, up to `MAX`) only when a sleep was ended by a *peer*
//!   (work pushed to this worker's inbox) soon enough that a longer spin would
//!   have caught it: the ping-pong across workers that the spin exists for;
//! - it shrinks (halves, down to `MIN`) when the worker slept and what woke it
//!   was not a peer, or came too late for any spin to catch (an echo server waits
//!   for the network: spinning for it is waste, as round 1 measured);
//! - it collapses to `MIN`, and stops growing for `CALM_EPISODES` episodes, when
//!   the spin sees that it was descheduled (two looks at the clock far apart),
//!   or when the thread was involuntarily switched out since the budget last
//!   grew (`getrusage`): no core is free, so the spinner keeps off the CPU the
//!   very peer whose wake-up it waits for (measured: with growth alone, under
//!   load, the spin caught none of ~2,500 such wake-ups per worker and
//!   `semaphore` got 3x slower; findings/idle.md).
//!
//! Go's spinning Ms, too, give up after a bounded number of steal rounds and
//! `stopm`; the learned length is glibc's adaptive mutex's idea (its spin count
//! follows what the last acquisitions needed).
//!
//! A spin that catches its work changes nothing. The policy is thread-local
//! (`Cell`s, no atomics): it decides only how long the handshake above is
//! delayed, never whether it happens, so it cannot lose a wake-up.
//!
//! Layer: scheduler. Uses only `loom`.

use std::cell::Cell;
use std::time::Duration;

use crate::loom::{fence, AtomicUsize, Mutex, Ordering};

/// In cache lines of its own: its counters are written by every worker going
/// idle or waking, and `Shared`'s read-mostly fields must not share their lines.
#[repr(align(128))]
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

/// How long an idle worker spins before it sleeps (module comment: the
/// adaptive spin). Owned by one worker thread.
pub(crate) struct SpinBudget {
    budget: Cell<Duration>,
    /// Idle episodes left during which the budget may not grow (after the spin
    /// was seen descheduled).
    calm: Cell<u32>,
    /// This thread's involuntary context switches when the budget last grew
    /// (`u64::MAX`: not read yet).
    preemptions: Cell<u64>,
}

impl SpinBudget {
    /// Never less: catches a ping-pong between two running workers (a sleeping
    /// vCPU takes ~45 us to wake here: chan_pingpong went from ~0.45 us to 93 us
    /// a round trip without any spin), and short enough that an echo server's
    /// worker does not take the core from its client (100 connections: 165k
    /// msgs/s with 5 us, 138k with 20 us, 111k with 100 us; round 1).
    pub(crate) const MIN: Duration = Duration::from_micros(5);
    /// Never more: longer than a bounded queue's buffer of 1024 items takes to
    /// drain (~22 us), which is the gap `mpmc_bounded` split across workers has
    /// to bridge (round 2, findings/sync.md §2: 61-86 ns/item with 100 us).
    pub(crate) const MAX: Duration = Duration::from_micros(100);
    /// What waking a sleeping worker adds to the time it measures: a sleep that
    /// ended `MAX + WAKE_LATENCY` after the worker went idle was ended by a
    /// wake-up sent within `MAX`, which a spin of `MAX` would have caught.
    pub(crate) const WAKE_LATENCY: Duration = Duration::from_micros(50);
    /// Two looks at the clock this far apart within one spin mean the worker was
    /// descheduled (a look is a few steals, a zero-timeout poll and 16 pauses:
    /// ~1-2 us).
    pub(crate) const PREEMPTED: Duration = Duration::from_micros(30);
    /// Idle episodes without growth after the spin was seen descheduled.
    pub(crate) const CALM_EPISODES: u32 = 64;

    pub(crate) fn new() -> SpinBudget {
        SpinBudget {
            budget: Cell::new(Self::MIN),
            calm: Cell::new(0),
            preemptions: Cell::new(u64::MAX),
        }
    }

    /// How long the next search may spin.
    pub(crate) fn budget(&self) -> Duration {
        self.budget.get()
    }

    /// The worker slept, and its sleep ended `idle` after it ran out of work;
    /// `by_peer`: work from another worker was waiting in its inbox.
    /// `preemptions`: this thread's count of involuntary context switches,
    /// asked for only before the budget would grow. If it rose since the last
    /// growth, the kernel took the core from this worker for another runnable
    /// thread, often the very peer whose wake-up the spin waits for (it cannot
    /// run while we spin on its core): no core is free, so spinning delays the
    /// wake-up it hopes to catch, and the budget collapses instead.
    pub(crate) fn slept(&self, idle: Duration, by_peer: bool, preemptions: impl FnOnce() -> u64) {
        let calm = self.calm.get();
        self.calm.set(calm.saturating_sub(1));
        let budget = self.budget.get();
        let catchable = by_peer && idle <= Self::MAX + Self::WAKE_LATENCY;
        if catchable && calm == 0 {
            let now = preemptions();
            let before = self.preemptions.replace(now);
            if before != u64::MAX && now != before {
                self.preempted();
            } else {
                self.budget.set((budget * 2).min(Self::MAX));
            }
        } else if !catchable {
            self.budget.set((budget / 2).max(Self::MIN));
        }
    }

    /// The spin saw that it was descheduled: stop spinning for a while.
    pub(crate) fn preempted(&self) {
        self.budget.set(Self::MIN);
        self.calm.set(Self::CALM_EPISODES);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::runtime::idle::SpinBudget;
    use std::time::Duration;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn peer_wake_ups_a_longer_spin_would_catch_grow_the_budget_to_its_cap() {
        let spin = SpinBudget::new();
        assert_eq!(spin.budget(), SpinBudget::MIN);
        let mut seen = vec![spin.budget()];
        for _ in 0..10 {
            spin.slept(60 * US, true, || 0);
            seen.push(spin.budget());
        }
        assert_eq!(
            &seen[..6],
            &[5 * US, 10 * US, 20 * US, 40 * US, 80 * US, 100 * US]
        );
        assert!(seen[6..].iter().all(|&b| b == SpinBudget::MAX));
    }

    #[test]
    fn growth_stops_when_the_thread_was_preempted_since_the_last_growth() {
        let spin = SpinBudget::new();
        // The first reading is the baseline, whatever it is.
        spin.slept(10 * US, true, || 7);
        spin.slept(10 * US, true, || 7);
        assert_eq!(spin.budget(), 20 * US);
        // Another thread took our core meanwhile: no core is free to spin on.
        spin.slept(10 * US, true, || 9);
        assert_eq!(spin.budget(), SpinBudget::MIN);
        for _ in 0..SpinBudget::CALM_EPISODES {
            spin.slept(10 * US, true, || {
                unreachable!("calm: no growth, no question")
            });
        }
        spin.slept(10 * US, true, || 9);
        assert_eq!(spin.budget(), 10 * US);
    }

    #[test]
    fn wake_ups_no_spin_could_catch_or_not_from_a_peer_shrink_it() {
        let spin = SpinBudget::new();
        for _ in 0..5 {
            spin.slept(10 * US, true, || 0);
        }
        assert_eq!(spin.budget(), SpinBudget::MAX);
        // Too late for any spin (a peer's wake-up sent after MAX).
        spin.slept(
            SpinBudget::MAX + SpinBudget::WAKE_LATENCY + US,
            true,
            || unreachable!(),
        );
        assert_eq!(spin.budget(), 50 * US);
        // Soon, but not from a peer (I/O, a timer): spinning does not help.
        spin.slept(10 * US, false, || unreachable!());
        assert_eq!(spin.budget(), 25 * US);
        for _ in 0..10 {
            spin.slept(10 * US, false, || unreachable!());
        }
        assert_eq!(spin.budget(), SpinBudget::MIN);
    }

    #[test]
    fn a_descheduled_spin_collapses_the_budget_and_stops_its_growth_for_a_while() {
        let spin = SpinBudget::new();
        for _ in 0..5 {
            spin.slept(10 * US, true, || 0);
        }
        spin.preempted();
        assert_eq!(spin.budget(), SpinBudget::MIN);
        for _ in 0..SpinBudget::CALM_EPISODES {
            spin.slept(10 * US, true, || 0);
            assert_eq!(spin.budget(), SpinBudget::MIN);
        }
        spin.slept(10 * US, true, || 0);
        assert_eq!(spin.budget(), 10 * US);
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
