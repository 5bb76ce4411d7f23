//! Where a task starts: the placement policy.
//!
//! A started task never changes worker (worker.rs), so the worker that starts
//! it decides where it lives. Work stealing balances *queued* tasks, but not
//! *homes*: a server's accept loop spawns a connection task and parks in
//! `accept`, so its own worker starts the new task at once, long before a
//! sleeping peer wakes up (~45 us here) to steal it. Measured before this
//! module: 100 connections accepted by one task on 2 workers were all homed on
//! one worker in 1 to 3 runs of 5, and stayed there.
//!
//! So each worker counts the live tasks it is home to, and a worker about to
//! start an unstarted task first compares its count with its peers'
//! (`Placement::peer_for_new_task`). If it is home to clearly more than the
//! least loaded peer, it hands the task, still unstarted, to that peer instead
//! (the peer's inbox, which only the peer pops, and a wake-up). The peer's
//! count grows at the hand-off, before the peer runs it, so a burst of
//! hand-offs cannot overshoot. Go and tokio need none of this (they migrate a
//! goroutine or future later); ivy must get the first placement right.
//!
//! Why these rules:
//! - **Decided at the first run, not at spawn.** A spawn stays a push to the
//!   local deque, so spawning stays cheap and a burst of spawns is still
//!   spread by stealing. Only the start, the moment a home is chosen, looks at
//!   the counts; and a placed task is started where it was placed, without
//!   another look.
//! - **Homes, not queue lengths.** Only live started tasks count (and those
//!   placed but not started yet): a task spawned and joined at once by a busy
//!   spawner ends before its worker's count moves, so it keeps running
//!   locally on the warm cache, as before (spawn+join, skynet's leaves).
//! - **A floor** (`LOCAL_FLOOR`): a worker home to fewer than 4 tasks starts
//!   locally whatever its peers hold, so a ping-pong pair spawned by one task
//!   stays together (`chan_pingpong`: cross-worker round trips cost ~10x).
//! - **A gap that grows with the load** (`gap`): hand off only when the own
//!   count is at least `max(2, own / 4)` above the least loaded peer's. With
//!   few tasks that is a tight balance; with thousands (skynet's parked
//!   inner nodes) hand-offs stay rare, and every worker stays within ~1/8 of
//!   an even share. A gap of `own / 16` balanced servers tighter but made
//!   skynet hand off constantly (its homes swing by more than that): 264 ms
//!   against 192 ms before placement, medians of 15 runs; with `own / 4`,
//!   184 against 187.
//! - **Cheap when balanced.** The counts are plain per-worker atomics in their
//!   own cache lines; a worker's own count is written only by that worker
//!   (no read-modify-write: `live`, `started_placed`), except for hand-offs to
//!   it (`placed_in`, rare). The peers' minimum is cached per worker (never above
//!   the own count) and read afresh only when the cache says a hand-off might
//!   be due, or every `REFRESH_STARTS` starts (finishing tasks lower peers'
//!   counts), so most starts on a balanced runtime read no peer's cache line.
//!
//! The bound this gives, by construction: while no task ends, a worker starts
//! a task locally only while its count is below the floor or below the cached
//! minimum plus the gap; the cached minimum is never above the true one (counts
//! only grow), so after a local start a count is at most `max(LOCAL_FLOOR,
//! min + gap)`. A hand-off goes to a peer seen as the least loaded; at most
//! `workers - 1` other workers can pick the same peer at the same moment. So
//! every worker's count stays within `max(LOCAL_FLOOR, gap) + workers` of the
//! least loaded one's (tests/placement.rs checks it).
//!
//! The price: a handed task sits in its peer's inbox, which nobody else pops,
//! so a peer stuck in a long computation holds it (as it holds its started
//! tasks) where a queued task would have been stolen. Hand-offs go to the
//! least loaded peer, which is rarely the stuck one.
//!
//! Layer: scheduler. Uses only std.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many homed tasks a worker starts new tasks itself.
pub(crate) const LOCAL_FLOOR: usize = 4;
/// The smallest excess over the least loaded peer that triggers a hand-off.
pub(crate) const MIN_GAP: usize = 2;
/// The gap grows as `own >> GAP_SHIFT` (a quarter of the own count).
pub(crate) const GAP_SHIFT: u32 = 2;
/// A worker re-reads its peers' counts at least every this many starts.
const REFRESH_STARTS: u32 = 16;

/// How far above the least loaded peer a worker home to `own` tasks may go
/// before it hands new tasks off.
pub(crate) fn gap(own: usize) -> usize {
    MIN_GAP.max(own >> GAP_SHIFT)
}

/// One worker's counts, in a cache line of its own (peers read it).
#[repr(align(128))]
#[derive(Default)]
struct Counts {
    /// Started tasks homed here that have not finished. Written only by the
    /// worker itself.
    live: AtomicUsize,
    /// Of the tasks handed to this worker, how many it has started. Written
    /// only by the worker itself.
    started_placed: AtomicUsize,
    /// Tasks handed to this worker by peers (counted before they start).
    placed_in: AtomicUsize,
}

impl Counts {
    /// Live homed tasks plus those handed here and not started yet.
    fn homed(&self) -> usize {
        let live = self.live.load(Ordering::Relaxed);
        let placed = self.placed_in.load(Ordering::Relaxed);
        let started = self.started_placed.load(Ordering::Relaxed);
        live.wrapping_add(placed.wrapping_sub(started))
    }

    /// A single-writer increment (the owning worker only): no locked
    /// instruction on the start and end of every task.
    fn bump(counter: &AtomicUsize, up: bool) {
        let v = counter.load(Ordering::Relaxed);
        counter.store(
            if up {
                v.wrapping_add(1)
            } else {
                v.wrapping_sub(1)
            },
            Ordering::Relaxed,
        );
    }
}

/// Every worker's home count, shared by the runtime.
pub(crate) struct Homes {
    workers: Box<[Counts]>,
}

impl Homes {
    pub(crate) fn new(workers: usize) -> Homes {
        Homes {
            workers: (0..workers).map(|_| Counts::default()).collect(),
        }
    }

    /// How many live tasks worker `index` is home to, counting those handed to
    /// it and not started yet.
    #[cfg(test)]
    pub(crate) fn homed(&self, index: usize) -> usize {
        self.workers[index].homed()
    }

    /// Counts a task handed to `target` before it is queued there.
    fn placed_on(&self, target: usize) {
        self.workers[target]
            .placed_in
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The least loaded worker other than `here` and its count.
    fn least_loaded_peer(&self, here: usize) -> Option<(usize, usize)> {
        let n = self.workers.len();
        let mut best: Option<(usize, usize)> = None;
        // Start after `here`, so ties between peers do not all go to worker 0.
        for step in 1..n {
            let i = (here + step) % n;
            let c = self.workers[i].homed();
            if best.map_or(true, |(_, b)| c < b) {
                best = Some((i, c));
            }
        }
        best
    }
}

/// One worker's side of the policy: its own counters' writer, and its cached
/// view of its peers. Lives in the worker (thread-owned).
pub(crate) struct Placement {
    index: usize,
    /// The least loaded peer's count when last read: never above the true
    /// minimum while counts only grow, so it can only delay a hand-off.
    peer_min: Cell<usize>,
    starts_since_refresh: Cell<u32>,
}

impl Placement {
    pub(crate) fn new(index: usize) -> Placement {
        Placement {
            index,
            peer_min: Cell::new(0),
            starts_since_refresh: Cell::new(0),
        }
    }

    /// The peer that should start a new (unstarted, not yet placed) task
    /// instead of this worker, if any. On `Some(peer)` the task is already
    /// counted there: the caller must queue it on that peer.
    pub(crate) fn peer_for_new_task(&self, homes: &Homes) -> Option<usize> {
        if homes.workers.len() < 2 {
            return None;
        }
        let own = homes.workers[self.index].homed();
        if own < LOCAL_FLOOR {
            return None;
        }
        // Tasks end, so the cached minimum may be above the true one: a peer
        // whose connections all closed. Peers usually lose tasks as this worker
        // does, so the cache never stays above the own count (wrk's warm-up
        // run closes 100 connections and opens 100 new ones: without this,
        // 76/24 once in 20 runs).
        let cached = self.peer_min.get().min(own);
        self.peer_min.set(cached);
        let refresh = self.starts_since_refresh.get() + 1;
        if refresh < REFRESH_STARTS && own < cached.saturating_add(gap(own)) {
            self.starts_since_refresh.set(refresh);
            return None;
        }
        self.starts_since_refresh.set(0);
        let (peer, count) = homes.least_loaded_peer(self.index)?;
        self.peer_min.set(count);
        if own >= count.saturating_add(gap(own)) {
            homes.placed_on(peer);
            Some(peer)
        } else {
            None
        }
    }

    /// A task starts here. `placed`: a peer handed it here (and counted it).
    pub(crate) fn started(&self, homes: &Homes, placed: bool) {
        let counts = &homes.workers[self.index];
        Counts::bump(&counts.live, true);
        if placed {
            Counts::bump(&counts.started_placed, true);
        }
    }

    /// A task homed here finished.
    pub(crate) fn finished(&self, homes: &Homes) {
        Counts::bump(&homes.workers[self.index].live, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One decider, counts only growing: every worker's count ends within
    /// `max(LOCAL_FLOOR, gap) + 1` of the others', whatever the number of
    /// tasks (the sequential case of the bound in the module comment).
    #[test]
    fn sequential_starts_from_one_worker_stay_within_the_gap() {
        for workers in [2usize, 3, 4, 8] {
            for tasks in [1usize, 3, 10, 100, 1000, 5000] {
                let homes = Homes::new(workers);
                let deciders: Vec<_> = (0..workers).map(Placement::new).collect();
                for _ in 0..tasks {
                    // Worker 0 spawns and starts everything it keeps; a peer
                    // starts what is handed to it.
                    match deciders[0].peer_for_new_task(&homes) {
                        Some(peer) => deciders[peer].started(&homes, true),
                        None => deciders[0].started(&homes, false),
                    }
                }
                let counts: Vec<usize> = (0..workers).map(|i| homes.homed(i)).collect();
                assert_eq!(counts.iter().sum::<usize>(), tasks);
                let max = *counts.iter().max().unwrap();
                let min = *counts.iter().min().unwrap();
                let bound = LOCAL_FLOOR.max(gap(max)) + 1;
                assert!(
                    max - min <= bound,
                    "{workers} workers, {tasks} tasks: {counts:?} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn below_the_floor_everything_starts_locally() {
        let homes = Homes::new(2);
        let p = Placement::new(0);
        for _ in 0..LOCAL_FLOOR {
            assert_eq!(p.peer_for_new_task(&homes), None);
            p.started(&homes, false);
        }
        assert_eq!(p.peer_for_new_task(&homes), Some(1));
        assert_eq!(homes.homed(1), 1, "counted at the hand-off");
    }

    #[test]
    fn finished_tasks_leave_the_count() {
        let homes = Homes::new(2);
        let p = Placement::new(0);
        for _ in 0..10 {
            p.started(&homes, false);
            p.finished(&homes);
        }
        assert_eq!(homes.homed(0), 0);
        let q = Placement::new(1);
        assert_eq!(homes.homed(0), 0);
        homes.placed_on(1);
        assert_eq!(homes.homed(1), 1);
        q.started(&homes, true);
        assert_eq!(homes.homed(1), 1, "a placed task is counted once");
        q.finished(&homes);
        assert_eq!(homes.homed(1), 0);
    }
}
