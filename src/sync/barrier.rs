//! `Barrier`: `n` parties meet, then all go on (std's `Barrier`, asyncio 3.11's).
//!
//! Arrivals are counted under one lock. The `n`-th arrival is the *leader* of its
//! generation: it resets the count, grants every queued party, and returns at
//! once; the others return when granted. So each generation has exactly one
//! leader. A party interrupted before the barrier trips withdraws its arrival (the
//! barrier then needs another party); one interrupted after it tripped reports the
//! interruption, but the generation has completed for everybody else.

use crate::runtime::debug::WaitReason;
use std::fmt;
use std::sync::Mutex as StdMutex;
use std::time::Instant;

use super::waiters::{wait_solo, WaitList, Wakeups, Woken};
use super::{lock_state, or_raise, WaitError};
use crate::park;

struct State {
    arrived: usize,
    waiters: WaitList<()>,
}

/// A reusable meeting point for `n` tasks or threads.
pub struct Barrier {
    parties: usize,
    state: StdMutex<State>,
}

/// What [`Barrier::wait`] returns: whether this party was the generation's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// `true` for exactly one party of each generation (the last to arrive).
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `parties` parties. As with std, `0` behaves like `1`: every
    /// `wait` returns at once as leader.
    pub fn new(parties: usize) -> Barrier {
        Barrier {
            parties: parties.max(1),
            state: StdMutex::new(State {
                arrived: 0,
                waiters: WaitList::new(),
            }),
        }
    }

    pub fn parties(&self) -> usize {
        self.parties
    }

    /// Parties waiting for the current generation to trip (a snapshot).
    pub fn n_waiting(&self) -> usize {
        lock_state(&self.state).arrived
    }

    /// Closes the barrier (the C ABI's `ivy_barrier_free`): queued parties get
    /// `Err(Closed)` and withdraw their arrivals; a later party gets it too unless
    /// its arrival trips the barrier (see "Closing" in `waiters.rs`).
    pub(crate) fn close(&self) {
        let mut wakes = Wakeups::new();
        lock_state(&self.state).waiters.close(&mut wakes);
        wakes.wake();
    }

    /// Parks until `parties` parties have called `wait`. A cancellation point.
    pub fn wait(&self) -> BarrierWaitResult {
        or_raise(self.wait_deadline(None))
    }

    /// The `Result` form (see "Two forms of every blocking call" in
    /// [`crate::sync`]): waits until every party arrived or
    /// `deadline` passes (`None`: no deadline of its own). A party that gives up
    /// before the barrier trips withdraws its arrival.
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<BarrierWaitResult, WaitError> {
        let mut s = lock_state(&self.state);
        s.arrived += 1;
        if s.arrived == self.parties {
            s.arrived = 0;
            let mut wakes = Wakeups::new();
            s.waiters.grant_all(|| (), &mut wakes);
            drop(s);
            wakes.wake();
            return Ok(BarrierWaitResult(true));
        }
        let key = s.waiters.push(park::current_unparker(), 0);
        let (s, woken) = wait_solo(
            &self.state,
            s,
            |s| &mut s.waiters,
            key,
            deadline,
            WaitReason::Event,
        );
        match woken {
            Woken::Granted(()) => Ok(BarrierWaitResult(false)),
            Woken::Abandoned(e) => {
                s.lock().arrived -= 1;
                Err(e)
            }
            Woken::Interrupted((), e) => Err(e),
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .finish_non_exhaustive()
    }
}
