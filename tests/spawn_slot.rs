//! A worker's newest spawn is held back from its peers for a moment
//! (src/runtime/spawn_slot.rs): a task that spawns a partner and talks to it at
//! once keeps the pair on one worker, where a spinning peer used to steal the
//! partner in the microsecond before the spawner blocked, splitting the pair
//! for life (a cross-core wake-up on every exchange). And a spawn whose
//! spawner goes on computing is still taken by an idle peer.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivy::sync::Queue;

fn worker_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

/// The tests here measure where tasks start, which CPU contention from a
/// concurrent test would blur: they run one at a time.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn busy(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The grace the slot gives (`spawn_slot::GRACE`).
const GRACE: Duration = Duration::from_micros(10);

/// Per run: a first task wakes the peer, which steals it and, once it ends,
/// searches for work (spins) exactly when the spawner spawns its partner and
/// works 1 µs before its first blocking call. Before the slot, 298 to 300 runs
/// of 300 ended split, the partner started on the peer within a microsecond or
/// two of its spawn; with it, 0 of 1,200 on a quiet machine.
///
/// What is asserted is the rule itself, which no load can bend: a partner that
/// starts on the peer starts at least `GRACE` after its spawn. How many pairs
/// end split depends on the load (a spawner descheduled past the grace loses
/// its partner, by design: 69 of 300 while a CI run shared the 2 cores), so
/// that count is reported, not asserted.
#[test]
fn a_partner_spawned_and_talked_to_at_once_runs_beside_its_spawner() {
    let _alone = alone();
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    let runs = 300;
    // Warm-up, not counted: the runtime's first stacks set the stack filler
    // thread (src/stack/refill.rs) to work, and on 2 cores it deschedules the
    // spawner now and then (splits came in streaks in the first ~40 runs, and
    // none with `IVY_STACK_PREFAULT=0`).
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        partner_pair(&rt);
    }
    let mut split = 0;
    let mut early = Vec::new();
    for _ in 0..runs {
        if let Some(after) = partner_pair(&rt) {
            split += 1;
            if after < GRACE {
                early.push(after);
            }
        }
    }
    eprintln!("{split} of {runs} ping-pong pairs ended on two workers");
    assert!(
        early.is_empty(),
        "{} of {split} split partners started on the peer before the grace: {early:?}",
        early.len()
    );
}

/// One run: if the pair ended on two workers, how long after its spawn the
/// partner started (measured from just before the spawn: never shorter than
/// the real time).
fn partner_pair(rt: &ivy::Runtime) -> Option<Duration> {
    rt.block_on(|| {
        let state = Arc::new(AtomicU32::new(0));
        let st = state.clone();
        let kick = ivy::spawn(move || {
            st.store(1, Ordering::SeqCst);
            busy(Duration::from_micros(10));
            st.store(2, Ordering::SeqCst);
        });
        let t0 = Instant::now();
        while state.load(Ordering::SeqCst) != 2 && t0.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
        let ping = Arc::new(Queue::<u64>::bounded(1));
        let pong = Arc::new(Queue::<String>::bounded(1));
        let (p2, q2) = (ping.clone(), pong.clone());
        let spawned_at = Instant::now();
        let echo = ivy::spawn(move || {
            let started = spawned_at.elapsed();
            while p2.get().is_ok() {
                if q2.put(worker_name()).is_err() {
                    break;
                }
            }
            started
        });
        busy(Duration::from_micros(1));
        let me = worker_name();
        let mut theirs = String::new();
        for i in 0..10 {
            ping.put(i).unwrap();
            theirs = pong.get().unwrap();
        }
        ping.close();
        let started = echo.join().unwrap();
        kick.join().unwrap();
        (me != theirs).then_some(started)
    })
}

/// The hold is a grace, not a pin: a task whose spawner computes for 100 ms
/// without blocking starts on the idle peer long before that, every time, on
/// 2 and 4 workers, from a spawner that spawns one task or several.
#[test]
fn a_spawn_whose_spawner_keeps_computing_is_taken_by_a_peer() {
    let _alone = alone();
    for workers in [2, 4] {
        let rt = ivy::Builder::new().workers(workers).build().unwrap();
        for round in 0..10 {
            let spawns = 1 + round % 3;
            let late = rt.block_on(move || {
                let started = Arc::new(AtomicU32::new(0));
                let hs: Vec<_> = (0..spawns)
                    .map(|_| {
                        let s = started.clone();
                        ivy::spawn(move || {
                            s.fetch_add(1, Ordering::SeqCst);
                        })
                    })
                    .collect();
                // Compute, never blocking, until every spawn has started elsewhere.
                let t0 = Instant::now();
                while started.load(Ordering::SeqCst) != spawns
                    && t0.elapsed() < Duration::from_millis(100)
                {
                    std::hint::spin_loop();
                }
                let all = started.load(Ordering::SeqCst) == spawns;
                for h in hs {
                    h.join().unwrap();
                }
                !all
            });
            assert!(
                !late,
                "workers {workers}, round {round}: a spawn waited for its busy spawner"
            );
        }
    }
}
