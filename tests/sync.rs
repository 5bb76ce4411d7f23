//! `ivy::sync` locks, semaphores, events, conditions, wait groups, barriers and
//! oneshot channels, through the public API: exact counts and orders, timeouts,
//! cancellation leaving nothing behind, tasks and plain threads sharing one
//! primitive.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivy::runtime::debug::{TaskState, WaitReason};
use ivy::sync::{
    oneshot, Barrier, BoundedSemaphore, Condition, Event, Mutex, OverReleaseError, RwLock,
    Semaphore, TimedOut, WaitGroup,
};

mod common;
use common::{ms, rt};

/// Waits until task `h` is parked on `reason` (queued in the primitive under
/// test): a handshake through `Handle::tasks()`, where a fixed sleep would only
/// guess how long the task takes to get there (a loaded machine can stall a
/// worker for longer than any such guess).
fn until_parked_on<T>(h: &ivy::JoinHandle<T>, reason: WaitReason) {
    let rt = ivy::Handle::current();
    let bound = Instant::now() + Duration::from_secs(30);
    while !rt
        .tasks()
        .iter()
        .any(|t| t.id == h.id() && t.state == TaskState::Parked && t.waiting_on == reason)
    {
        assert!(Instant::now() < bound, "task never parked on {reason:?}");
        ivy::sleep(ms(1));
    }
}

/// A tiny deterministic PRNG for seeded test variations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------- Mutex

#[test]
fn mutex_million_increments_from_tasks_and_threads() {
    for workers in [2, 4] {
        let rt = rt(workers);
        let m = Arc::new(Mutex::new(0u64));
        // Plain threads outside the runtime hammer the same mutex meanwhile.
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..25_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        let mt = m.clone();
        rt.block_on(move || {
            let hs: Vec<_> = (0..1000)
                .map(|i| {
                    let m = mt.clone();
                    ivy::spawn(move || {
                        for j in 0..1000 {
                            *m.lock() += 1;
                            if (i + j) % 97 == 0 {
                                ivy::yield_now();
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 1_000_000 + 50_000, "workers={workers}");
        assert!(!m.is_locked());
    }
}

#[test]
fn mutex_waiters_are_fifo_and_a_running_task_may_barge() {
    // One worker makes "task i is parked in lock()" observable: task i sets its
    // event just before lock(), and main runs only once task i has suspended.
    // Parked waiters are woken in FIFO order. In normal mode a task that unlocks
    // and re-locks at once, before the waiter it woke has run, takes the lock
    // again (barging): each task does its 3 rounds in a row.
    let rt = rt(1);
    for rounds in [1, 3] {
        let log = rt.block_on(move || {
            let m = Arc::new(Mutex::new(Vec::new()));
            let guard = m.lock();
            let mut hs = Vec::new();
            for i in 0..12 {
                let m = m.clone();
                let queued = Arc::new(Event::new());
                let q = queued.clone();
                hs.push(ivy::spawn(move || {
                    q.set();
                    for _ in 0..rounds {
                        m.lock().push(i);
                    }
                }));
                queued.wait();
            }
            drop(guard);
            for h in hs {
                h.join().unwrap();
            }
            let v = m.lock().clone();
            v
        });
        let expected: Vec<usize> = (0..12)
            .flat_map(|i| std::iter::repeat_n(i, rounds))
            .collect();
        assert_eq!(log, expected, "rounds={rounds}");
    }
}

#[test]
fn mutex_starving_waiter_gets_the_lock_before_any_newcomer() {
    // One worker, deterministic: W waits > 1 ms; main releases (W is woken) and
    // barges back in before W runs; W loses its retry having waited past the
    // threshold, which switches the lock to starvation mode. From then on the
    // lock is handed to W: it is never free for a newcomer to take.
    let rt = rt(1);
    for _ in 0..20 {
        let log = rt.block_on(|| {
            let m = Arc::new(Mutex::new(Vec::new()));
            let mut g = m.lock();
            let queued = Arc::new(Event::new());
            let (m2, q) = (m.clone(), queued.clone());
            let w = ivy::spawn(move || {
                q.set();
                m2.lock().push("W");
            });
            queued.wait();
            ivy::sleep(ms(3)); // W has now waited more than the threshold
            drop(g);
            g = m.lock(); // barge: W was woken but has not run yet
            g.push("main");
            ivy::yield_now(); // W retries, loses, re-queues in starvation mode
            assert!(w.is_finished() || m.is_locked());
            drop(g);
            // Handed off to W: not free, although W has not run yet.
            assert!(m.try_lock().is_none(), "starvation mode must hand off");
            let m3 = m.clone();
            let newcomer = ivy::spawn(move || m3.lock().push("newcomer"));
            w.join().unwrap();
            newcomer.join().unwrap();
            // Back in normal mode, the fast path works again.
            let v = m.try_lock().expect("free").clone();
            v
        });
        assert_eq!(log, ["main", "W", "newcomer"]);
    }
}

/// Runs `barger` in a tight lock/unlock loop until a waiter that queued behind
/// it gets the lock; returns how long the waiter waited.
fn starvation_wait(waiter_on_thread: bool, bargers_on_threads: bool) -> Duration {
    let rt = rt(2);
    let m = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let laps = Arc::new(AtomicUsize::new(0));
    let hammer = {
        let (m, stop, laps) = (m.clone(), stop.clone(), laps.clone());
        move |yield_between: bool| {
            let give_up = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
                let mut g = m.lock();
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(200) {
                    std::hint::spin_loop();
                }
                *g += 1;
                drop(g);
                laps.fetch_add(1, Ordering::Relaxed);
                if yield_between {
                    ivy::yield_now();
                }
            }
        }
    };
    let bargers: Vec<Box<dyn FnOnce()>> = if bargers_on_threads {
        let ts: Vec<_> = (0..1)
            .map(|_| {
                let h = hammer.clone();
                std::thread::spawn(move || h(false))
            })
            .collect();
        vec![Box::new(move || {
            ts.into_iter().for_each(|t| t.join().unwrap())
        })]
    } else {
        let hs: Vec<_> = (0..1)
            .map(|_| {
                let h = hammer.clone();
                rt.spawn(move || h(true))
            })
            .collect();
        vec![Box::new(move || {
            hs.into_iter().for_each(|j| j.join().unwrap())
        })]
    };
    // Let the bargers get going, then queue the waiter behind them.
    while laps.load(Ordering::Relaxed) < 50 {
        std::thread::sleep(ms(1));
    }
    let wait = {
        let m = m.clone();
        let take = move || {
            let t = Instant::now();
            let g = m.lock_timeout(Duration::from_secs(10)).expect("starved");
            drop(g);
            t.elapsed()
        };
        if waiter_on_thread {
            take()
        } else {
            rt.spawn(take).join().unwrap()
        }
    };
    stop.store(true, Ordering::Relaxed);
    bargers.into_iter().for_each(|b| b());
    wait
}

#[test]
fn mutex_barger_holding_across_yields_cannot_starve_a_waiter() {
    // One worker, deterministic without starvation mode: the barger holds the
    // lock across each yield, so the waiter (woken at every unlock) always runs
    // while the lock is held, loses its retry and re-parks; the barger's next
    // unlock wakes it and the barger re-locks at once. Only starvation mode
    // (hand-off once the waiter has waited > 1 ms) lets the waiter in; without
    // it the waiter would wait until the barger gives up after 5 s.
    let rt = rt(1);
    for _ in 0..10 {
        rt.block_on(|| {
            let m = Arc::new(Mutex::new(0u64));
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let started = Arc::new(Event::new());
            let (m2, done2, started2) = (m.clone(), done.clone(), started.clone());
            let barger = ivy::spawn(move || {
                let give_up = Instant::now() + Duration::from_secs(5);
                while !done2.load(Ordering::Relaxed) && Instant::now() < give_up {
                    let mut g = m2.lock();
                    *g += 1;
                    started2.set();
                    ivy::yield_now();
                    drop(g);
                }
            });
            started.wait(); // the barger holds the lock, and yields holding it
            let start = Instant::now();
            let g = m.lock_timeout(Duration::from_secs(10)).expect("starved");
            let waited = start.elapsed();
            done.store(true, Ordering::Relaxed);
            assert!(*g > 1, "the barger re-locked while we waited");
            drop(g);
            barger.join().unwrap();
            assert!(waited < Duration::from_secs(1), "waited {waited:?}");
            assert!(m.try_lock().is_some());
        });
    }
}

#[test]
fn mutex_barging_cannot_starve_a_waiter() {
    // Across threads: a barger re-locks in a tight loop (a thread without pause,
    // or a task with a yield between locks) while a waiter (thread or task) is
    // woken cross-thread at each unlock and usually finds the lock re-taken. The
    // waiter gets the lock within the starvation threshold (1 ms) plus a few hold
    // times and wake-ups (about 1.1 ms measured): bound generously at 1 s.
    for round in 0..12 {
        let waiter_on_thread = round % 2 == 0;
        let bargers_on_threads = round % 4 < 2;
        let took = starvation_wait(waiter_on_thread, bargers_on_threads);
        assert!(
            took < Duration::from_secs(1),
            "round {round}: waited {took:?} (waiter thread {waiter_on_thread}, \
             barger threads {bargers_on_threads})"
        );
    }
}

#[test]
fn mutex_exact_counts_with_guards_held_across_yields() {
    // Holding the guard across a yield makes the other tasks queue and park, so
    // wake/retry/re-queue and starvation hand-off all run, many times.
    for workers in [2, 4] {
        let rt = rt(workers);
        let m = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        let mut g = m.lock();
                        *g += 1;
                        if i % 1000 == 0 {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                })
            })
            .collect();
        let mt = m.clone();
        rt.block_on(move || {
            let hs: Vec<_> = (0..200u64)
                .map(|i| {
                    let m = mt.clone();
                    ivy::spawn(move || {
                        for j in 0..1000u64 {
                            let mut g = m.lock();
                            *g += 1;
                            if (i * 7 + j) % 13 == 0 {
                                ivy::yield_now();
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 200_000 + 40_000, "workers={workers}");
        assert!(m.try_lock().is_some());
    }
}

#[test]
fn mutex_woken_waiter_interrupted_passes_the_wake_up_on() {
    // One worker: W1 and W2 are parked in that order. The release wakes W1 (to
    // retry); W1 is then cancelled, or its scope or own deadline elapses, before
    // it runs. W1 must pass the wake-up on to W2, which would otherwise wait
    // forever on a free lock (W2 uses a long timeout to fail instead of hang).
    let rt = rt(1);
    for how in 0..3 {
        for _ in 0..50 {
            rt.block_on(move || {
                let m = Arc::new(Mutex::new(0u32));
                let g = m.lock();
                let spawn_waiter = |first: bool| {
                    let m = m.clone();
                    let queued = Arc::new(Event::new());
                    let q = queued.clone();
                    let h = ivy::spawn(move || {
                        q.set();
                        if !first {
                            let r = m.lock_timeout(Duration::from_secs(10));
                            *r.expect("the wake-up was lost") += 10;
                            return true;
                        }
                        match how {
                            0 => {
                                *m.lock() += 1;
                                true
                            }
                            1 => ivy::timeout(ms(2), || *m.lock() += 1).is_ok(),
                            _ => m.lock_timeout(ms(2)).map(|mut g| *g += 1).is_ok(),
                        }
                    });
                    queued.wait();
                    h
                };
                let w1 = spawn_waiter(true);
                let w2 = spawn_waiter(false);
                if how == 0 {
                    drop(g);
                    w1.cancel();
                } else {
                    // Hold past W1's deadline, so its wake-up and its
                    // deadline arrive together.
                    std::thread::sleep(ms(3));
                    drop(g);
                }
                let got1 = match w1.join() {
                    Ok(got) => got,
                    Err(e) => {
                        assert!(e.is_cancelled());
                        false
                    }
                };
                assert!(w2.join().unwrap());
                let v = *m.try_lock().expect("free at the end");
                assert_eq!(v, 10 + u32::from(got1));
            });
        }
    }
}

#[test]
fn mutex_mixed_timeouts_cancellations_and_holders_many_seeds() {
    // Holders with random hold times, waiters with random own deadlines, scope
    // deadlines and cancellations: the count is exactly the number of successful
    // locks, no plain lock() waits more than 10 s (a lost wake-up), and the lock
    // ends free.
    let rt = rt(2);
    for seed in 1..=40u64 {
        rt.block_on(move || {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let m = Arc::new(Mutex::new(0u64));
            let successes = Arc::new(AtomicUsize::new(0));
            let mut hs = Vec::new();
            for _ in 0..24 {
                let (m, successes) = (m.clone(), successes.clone());
                let kind = rng.below(4);
                let hold = Duration::from_micros(rng.below(300));
                let limit = Duration::from_micros(200 + rng.below(2000));
                let rounds = 1 + rng.below(20);
                hs.push(ivy::spawn(move || {
                    for _ in 0..rounds {
                        let got = match kind {
                            0 => Some(m.lock_timeout(Duration::from_secs(10)).expect("lost")),
                            1 => m.lock_timeout(limit).ok(),
                            2 => ivy::timeout(limit, || m.lock()).ok(),
                            _ => m.try_lock(),
                        };
                        if let Some(mut g) = got {
                            *g += 1;
                            // Under the lock and before any park: exact.
                            successes.fetch_add(1, Ordering::Relaxed);
                            if !hold.is_zero() {
                                ivy::sleep(hold);
                            }
                        }
                        ivy::yield_now();
                    }
                }));
            }
            ivy::sleep(Duration::from_micros(rng.below(3000)));
            for (i, h) in hs.iter().enumerate() {
                if i % 5 == (seed % 5) as usize {
                    h.cancel();
                }
            }
            for h in hs {
                if let Err(e) = h.join() {
                    assert!(e.is_cancelled());
                }
            }
            let v = *m.try_lock().expect("free at the end");
            assert_eq!(v as usize, successes.load(Ordering::Relaxed), "seed {seed}");
        });
    }
}

#[test]
fn three_tasks_take_a_lock_in_turn() {
    // The asyncio seed scenario: A holds the lock and sleeps, B and C queue up,
    // then each gets it in turn.
    let rt = rt(1);
    let log = rt.block_on(|| {
        let lock = Arc::new(Mutex::new(()));
        let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut hs = Vec::new();
        for name in ["A", "B", "C"] {
            let (lock, log) = (lock.clone(), log.clone());
            let ready = Arc::new(Event::new());
            let r = ready.clone();
            hs.push(ivy::spawn(move || {
                log.lock().unwrap().push(format!("{name} waiting"));
                r.set();
                let _g = lock.lock();
                log.lock().unwrap().push(format!("{name} acquired"));
                ivy::sleep(ms(10));
                log.lock().unwrap().push(format!("{name} released"));
            }));
            ready.wait();
        }
        for h in hs {
            h.join().unwrap();
        }
        let v = log.lock().unwrap().clone();
        v
    });
    assert_eq!(
        log,
        [
            "A waiting",
            "A acquired",
            "B waiting",
            "C waiting",
            "A released",
            "B acquired",
            "B released",
            "C acquired",
            "C released"
        ]
    );
}

#[test]
fn mutex_try_lock_and_timeouts() {
    rt(2).block_on(|| {
        let m = Arc::new(Mutex::new(5));
        let g = m.lock();
        assert!(m.try_lock().is_none());
        let m2 = m.clone();
        let h = ivy::spawn(move || {
            let start = Instant::now();
            let r = m2.lock_timeout(ms(30)).map(|_| ());
            (r, start.elapsed())
        });
        let (r, took) = h.join().unwrap();
        assert_eq!(r, Err(TimedOut));
        assert!(took >= ms(30) && took < ms(2030), "{took:?}");
        // Inside an ivy::timeout scope the plain lock() is interrupted.
        let m3 = m.clone();
        let h = ivy::spawn(move || {
            let start = Instant::now();
            let r = ivy::timeout(ms(30), || *m3.lock());
            (r.is_err(), start.elapsed())
        });
        let (elapsed, took) = h.join().unwrap();
        assert!(elapsed);
        assert!(took >= ms(30) && took < ms(2030), "{took:?}");
        drop(g);
        // Nobody was left queued: the fast path works again.
        assert_eq!(*m.try_lock().expect("free"), 5);
        let until = m.lock_until(Instant::now() + ms(10)).unwrap();
        assert_eq!(*until, 5);
    });
}

#[test]
fn mutex_cancelled_waiters_leave_the_lock_usable() {
    let rt = rt(2);
    rt.block_on(|| {
        let m = Arc::new(Mutex::new(0usize));
        let g = m.lock();
        let hs: Vec<_> = (0..40)
            .map(|_| {
                let m = m.clone();
                ivy::spawn(move || *m.lock() += 1)
            })
            .collect();
        ivy::sleep(ms(20));
        for h in hs.iter().step_by(2) {
            h.cancel();
        }
        drop(g);
        let mut ok = 0;
        for h in hs {
            match h.join() {
                Ok(()) => ok += 1,
                Err(e) => assert!(e.is_cancelled()),
            }
        }
        assert!(ok >= 20);
        assert_eq!(*m.lock(), ok);
        assert!(m.try_lock().is_some());
    });
}

#[test]
fn mutex_grant_racing_with_cancel_never_leaks_the_lock() {
    // Release the lock and cancel its waiter at (nearly) the same moment, in
    // varying orders: whether the waiter got it or not, the lock ends up free.
    let rt = rt(2);
    rt.block_on(|| {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let m = Arc::new(Mutex::new(0u64));
        let mut got = 0u64;
        for _ in 0..500 {
            let g = m.lock();
            let m2 = m.clone();
            let w = ivy::spawn(move || *m2.lock() += 1);
            for _ in 0..rng.below(3) {
                ivy::yield_now();
            }
            if rng.below(2) == 0 {
                drop(g);
                w.cancel();
            } else {
                w.cancel();
                drop(g);
            }
            if w.join().is_ok() {
                got += 1;
            }
            let v = *m.try_lock().expect("the lock must be free after the race");
            assert_eq!(v, got);
        }
    });
}

#[test]
fn mutex_shared_by_plain_threads_only() {
    let m = Arc::new(Mutex::new(0u32));
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 40_000);
}

// ---------------------------------------------------------------- RwLock

#[test]
fn rwlock_readers_share_writers_exclude() {
    let rt = rt(2);
    rt.block_on(|| {
        let l = Arc::new(RwLock::new(0u64));
        let readers_in = Arc::new(AtomicUsize::new(0));
        let max_readers = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..60)
            .map(|i| {
                let (l, rin, maxr) = (l.clone(), readers_in.clone(), max_readers.clone());
                ivy::spawn(move || {
                    for _ in 0..50 {
                        if i % 4 == 0 {
                            let mut w = l.write();
                            assert_eq!(rin.load(Ordering::SeqCst), 0, "writer with readers");
                            *w += 1;
                            ivy::yield_now();
                        } else {
                            let r = l.read();
                            let n = rin.fetch_add(1, Ordering::SeqCst) + 1;
                            maxr.fetch_max(n, Ordering::SeqCst);
                            let _ = *r;
                            ivy::yield_now();
                            rin.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*l.read(), 15 * 50);
        assert!(
            max_readers.load(Ordering::SeqCst) >= 2,
            "readers never overlapped"
        );
        assert!(l.try_write().is_some());
    });
}

#[test]
fn rwlock_writer_is_not_starved_by_readers() {
    // One worker, deterministic: a reader holds, a writer queues, then a new
    // reader must queue behind the writer (phase-fair FIFO).
    rt(1).block_on(|| {
        let l = Arc::new(RwLock::new(Vec::<&str>::new()));
        let r1 = l.read();
        let (lw, lr) = (l.clone(), l.clone());
        let queued = Arc::new(Event::new());
        let q = queued.clone();
        let w = ivy::spawn(move || {
            q.set();
            lw.write().push("writer");
        });
        queued.wait();
        assert!(
            l.try_read().is_none(),
            "a reader may not pass a queued writer"
        );
        let queued = Arc::new(Event::new());
        let q = queued.clone();
        let r = ivy::spawn(move || {
            q.set();
            let g = lr.read();
            g.clone()
        });
        queued.wait();
        drop(r1);
        w.join().unwrap();
        assert_eq!(r.join().unwrap(), ["writer"]);
        let t = l.read_timeout(ms(10)).unwrap();
        assert_eq!(*t, ["writer"]);
    });
}

#[test]
fn rwlock_cancelled_writer_releases_the_readers_behind_it() {
    rt(1).block_on(|| {
        let l = Arc::new(RwLock::new(1));
        let r1 = l.read();
        let lw = l.clone();
        let w = ivy::spawn(move || *lw.write() += 1);
        until_parked_on(&w, WaitReason::Lock);
        let lr = l.clone();
        let r = ivy::spawn(move || *lr.read());
        until_parked_on(&r, WaitReason::Lock);
        w.cancel();
        assert!(w.join().unwrap_err().is_cancelled());
        // The reader behind the cancelled writer gets in while r1 still reads.
        assert_eq!(r.join().unwrap(), 1);
        drop(r1);
        assert!(l.try_write().is_some());
        let start = Instant::now();
        let g = l.write();
        let l2 = l.clone();
        let h = ivy::spawn(move || l2.read_timeout(ms(20)).is_err());
        assert!(h.join().unwrap());
        assert!(start.elapsed() >= ms(20));
        drop(g);
    });
}

// ---------------------------------------------------------------- Semaphore

#[test]
fn semaphore_never_exceeds_its_permits() {
    for workers in [1, 2, 4] {
        let rt = rt(workers);
        rt.block_on(|| {
            let sem = Arc::new(Semaphore::new(2));
            let cur = Arc::new(AtomicUsize::new(0));
            let max = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..300)
                .map(|i| {
                    let (sem, cur, max) = (sem.clone(), cur.clone(), max.clone());
                    ivy::spawn(move || {
                        let _p = sem.acquire();
                        let n = cur.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        if i % 3 == 0 {
                            ivy::sleep(ms(1));
                        } else {
                            ivy::yield_now();
                        }
                        cur.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(max.load(Ordering::SeqCst), 2);
            assert_eq!(sem.available_permits(), 2);
        });
    }
}

#[test]
fn semaphore_try_timeout_many_forget_add() {
    rt(2).block_on(|| {
        let sem = Semaphore::new(3);
        let p = sem.acquire_many(2);
        assert_eq!(p.num_permits(), 2);
        assert_eq!(sem.available_permits(), 1);
        assert!(sem.try_acquire_many(2).is_none());
        let start = Instant::now();
        assert_eq!(sem.acquire_many_timeout(2, ms(25)).unwrap_err(), TimedOut);
        assert!(start.elapsed() >= ms(25));
        assert_eq!(
            sem.available_permits(),
            1,
            "a timed-out waiter takes nothing"
        );
        let one = sem.try_acquire().unwrap();
        one.forget();
        assert_eq!(sem.available_permits(), 0);
        drop(p);
        assert_eq!(sem.available_permits(), 2);
        sem.add_permits(1);
        assert_eq!(sem.available_permits(), 3);
        let zero = sem.acquire_many(0);
        assert_eq!(zero.num_permits(), 0);
        assert!(sem.acquire_timeout(ms(1)).is_ok());
        assert!(sem.acquire_until(Instant::now() + ms(1)).is_ok());
    });
}

#[test]
fn semaphore_large_request_is_served_first_then_others() {
    rt(1).block_on(|| {
        let sem = Arc::new(Semaphore::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s1, l1) = (sem.clone(), log.clone());
        let big = ivy::spawn(move || {
            let p = s1.acquire_many(3);
            l1.lock().unwrap().push("big");
            p.forget();
        });
        until_parked_on(&big, WaitReason::Semaphore);
        let (s2, l2) = (sem.clone(), log.clone());
        let small = ivy::spawn(move || {
            let p = s2.acquire();
            l2.lock().unwrap().push("small");
            p.forget();
        });
        until_parked_on(&small, WaitReason::Semaphore);
        sem.add_permits(1);
        ivy::sleep(ms(5));
        assert!(
            log.lock().unwrap().is_empty(),
            "small passed the big request"
        );
        assert_eq!(sem.available_permits(), 1);
        sem.add_permits(2);
        big.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["big"]);
        sem.add_permits(1);
        small.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["big", "small"]);
        assert_eq!(sem.available_permits(), 0);
    });
}

#[test]
fn semaphore_cancelled_big_waiter_unblocks_the_ones_behind() {
    rt(1).block_on(|| {
        let sem = Arc::new(Semaphore::new(1));
        let s1 = sem.clone();
        let big = ivy::spawn(move || drop(s1.acquire_many(5)));
        until_parked_on(&big, WaitReason::Semaphore);
        let s2 = sem.clone();
        let small = ivy::spawn(move || drop(s2.acquire()));
        until_parked_on(&small, WaitReason::Semaphore);
        assert!(!small.is_finished());
        big.cancel();
        assert!(big.join().unwrap_err().is_cancelled());
        small.join().unwrap();
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(sem.waiters(), 0);
    });
}

#[test]
fn semaphore_cancellation_and_scope_timeouts_leak_no_permit() {
    for workers in [1, 2] {
        let rt = rt(workers);
        rt.block_on(|| {
            let mut rng = Rng(12345);
            let sem = Arc::new(Semaphore::new(3));
            for _ in 0..200 {
                let held = sem.acquire_many(3);
                let hs: Vec<_> = (0..6)
                    .map(|i| {
                        let s = sem.clone();
                        ivy::spawn(move || {
                            if i % 2 == 0 {
                                let _p = s.acquire();
                                ivy::yield_now();
                            } else {
                                let _ = ivy::timeout(ms(1), || {
                                    let _p = s.acquire();
                                    ivy::yield_now();
                                });
                            }
                        })
                    })
                    .collect();
                for _ in 0..rng.below(3) {
                    ivy::yield_now();
                }
                drop(held);
                for (i, h) in hs.iter().enumerate() {
                    if rng.below(3) == 0 || i == 0 {
                        h.cancel();
                    }
                }
                for h in hs {
                    let _ = h.join();
                }
                assert_eq!(sem.available_permits(), 3);
                assert_eq!(sem.waiters(), 0);
            }
        });
    }
}

/// A granted waiter reads its grant from a cell on its own stack, without the
/// state lock (`waiters.rs`, "Grant cells"); the waiters that are not granted
/// settle under the lock. Tasks on two workers and plain threads hand permits
/// and a lock to each other while their own deadlines race the grants, so
/// grants arrive at waiters that are waking anyway, at waiters woken by a
/// stale wake-up of an earlier wait, and at waiters that just gave up. Every
/// permit and every lock hand-off is counted: a grant lost or delivered twice
/// would leave the counts off (or a waiter parked for good).
#[test]
fn hand_offs_racing_deadlines_between_tasks_and_threads_are_exact() {
    const PERMITS: usize = 2;
    const ROUNDS: usize = 200;
    for seed in 1..=6u64 {
        let rt = rt(2);
        let sem = Arc::new(Semaphore::new(PERMITS));
        let lock = Arc::new(Mutex::new(0u64));
        let holders = Arc::new(AtomicUsize::new(0));
        let acquired = Arc::new(AtomicUsize::new(0));
        let timed_out = Arc::new(AtomicUsize::new(0));
        let participant = {
            let (sem, lock, holders) = (sem.clone(), lock.clone(), holders.clone());
            let (acquired, timed_out) = (acquired.clone(), timed_out.clone());
            move |id: u64, in_task: bool| {
                let mut rng = Rng(seed * 1000 + id + 1);
                for _ in 0..ROUNDS {
                    // 0–2 ms: as long as a holder that sleeps keeps its
                    // permit, so the deadlines' timers race the grants.
                    let wait = Duration::from_micros(rng.below(2000));
                    match sem.acquire_timeout(wait) {
                        Ok(permit) => {
                            let n = holders.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(n <= PERMITS, "{n} holders of {PERMITS} permits");
                            // Hold it across a switch or a short spin, so
                            // that others queue behind.
                            if in_task && rng.below(4) == 0 {
                                ivy::sleep(ms(1));
                            } else if in_task {
                                for _ in 0..=rng.below(3) {
                                    ivy::yield_now();
                                }
                            } else {
                                let until = Instant::now() + Duration::from_micros(rng.below(30));
                                while Instant::now() < until {
                                    std::hint::spin_loop();
                                }
                            }
                            *lock.lock() += 1;
                            holders.fetch_sub(1, Ordering::SeqCst);
                            acquired.fetch_add(1, Ordering::SeqCst);
                            drop(permit);
                        }
                        Err(TimedOut) => {
                            timed_out.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        };
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let p = participant.clone();
                std::thread::spawn(move || p(100 + t, false))
            })
            .collect();
        rt.block_on(move || {
            let hs: Vec<_> = (0..12)
                .map(|i| {
                    let p = participant.clone();
                    ivy::spawn(move || p(i, true))
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        for t in threads {
            t.join().unwrap();
        }
        let (ok, late) = (
            acquired.load(Ordering::SeqCst),
            timed_out.load(Ordering::SeqCst),
        );
        assert_eq!(
            ok + late,
            14 * ROUNDS,
            "seed {seed}: an acquire neither succeeded nor timed out"
        );
        assert_eq!(
            *lock.lock(),
            ok as u64,
            "seed {seed}: a lock hand-off was lost or doubled"
        );
        assert_eq!(
            sem.available_permits(),
            PERMITS,
            "seed {seed}: a permit was lost or doubled"
        );
        assert_eq!(sem.waiters(), 0);
        assert_eq!(holders.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn bounded_semaphore_refuses_over_release() {
    rt(2).block_on(|| {
        let s = BoundedSemaphore::new(2);
        assert_eq!(s.release(), Err(OverReleaseError { bound: 2 }));
        assert_eq!(s.available_permits(), 2);
        s.acquire();
        assert!(s.try_acquire());
        assert!(!s.try_acquire());
        assert_eq!(s.acquire_timeout(ms(5)), Err(TimedOut));
        assert_eq!(s.release(), Ok(()));
        assert_eq!(s.release(), Ok(()));
        let e = s.release().unwrap_err();
        assert_eq!(e.bound, 2);
        assert!(e.to_string().contains("initial value 2"), "{e}");
        assert_eq!(s.available_permits(), 2);
    });
}

#[test]
fn bounded_semaphore_release_wakes_a_waiter() {
    rt(2).block_on(|| {
        let s = Arc::new(BoundedSemaphore::new(1));
        s.acquire();
        let s2 = s.clone();
        let h = ivy::spawn(move || {
            s2.acquire();
            s2.release().unwrap();
        });
        ivy::sleep(ms(5));
        s.release().unwrap();
        h.join().unwrap();
        assert_eq!(s.available_permits(), 1);
        assert!(s.release().is_err());
    });
}

// ---------------------------------------------------------------- Event

#[test]
fn event_releases_two_waiting_readers() {
    for workers in [1, 2] {
        rt(workers).block_on(|| {
            let ev = Arc::new(Event::new());
            let done = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (ev, done) = (ev.clone(), done.clone());
                    ivy::spawn(move || {
                        ev.wait();
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            ivy::sleep(ms(10));
            assert_eq!(done.load(Ordering::SeqCst), 0);
            assert!(!ev.is_set());
            ev.set();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(done.load(Ordering::SeqCst), 2);
            ev.wait(); // already set: returns at once
            ev.clear();
            let start = Instant::now();
            assert_eq!(ev.wait_timeout(ms(20)), Err(TimedOut));
            assert!(start.elapsed() >= ms(20));
        });
    }
}

#[test]
fn event_between_a_thread_and_a_task() {
    let rt = rt(2);
    let ev = Arc::new(Event::new());
    let back = Arc::new(Event::new());
    let (e, b) = (ev.clone(), back.clone());
    let h = rt.spawn(move || {
        e.wait();
        b.set();
        7
    });
    std::thread::sleep(ms(5));
    ev.set();
    back.wait(); // a plain thread parks on an ivy event
    assert_eq!(h.join().unwrap(), 7);
}

#[test]
fn event_waiter_cancelled_and_scope_elapsed() {
    rt(2).block_on(|| {
        let ev = Arc::new(Event::new());
        let e = ev.clone();
        let h = ivy::spawn(move || e.wait());
        ivy::sleep(ms(5));
        h.cancel();
        assert!(h.join().unwrap_err().is_cancelled());
        let start = Instant::now();
        assert!(ivy::timeout(ms(15), || ev.wait()).is_err());
        assert!(start.elapsed() >= ms(15));
        ev.set();
        assert!(ev.wait_until(Instant::now()).is_ok());
    });
}

// ---------------------------------------------------------------- Condition

#[test]
fn condition_producer_consumer() {
    for workers in [1, 2, 4] {
        rt(workers).block_on(|| {
            struct St {
                items: VecDeque<u64>,
                done: bool,
            }
            let pair = Arc::new((
                Mutex::new(St {
                    items: VecDeque::new(),
                    done: false,
                }),
                Condition::new(),
            ));
            let consumers: Vec<_> = (0..3)
                .map(|_| {
                    let pair = pair.clone();
                    ivy::spawn(move || {
                        let (m, c) = &*pair;
                        let mut got = Vec::new();
                        loop {
                            let mut g = c.wait_while(m.lock(), |s| s.items.is_empty() && !s.done);
                            match g.items.pop_front() {
                                Some(v) => got.push(v),
                                None => return got,
                            }
                        }
                    })
                })
                .collect();
            let (m, c) = &*pair;
            for i in 0..3000u64 {
                m.lock().items.push_back(i);
                c.notify_one();
                if i % 100 == 0 {
                    ivy::yield_now();
                }
            }
            m.lock().done = true;
            c.notify_all();
            let mut all: Vec<u64> = consumers
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..3000).collect::<Vec<_>>());
        });
    }
}

#[test]
fn condition_wait_timeout_relocks_and_reports() {
    rt(2).block_on(|| {
        let m = Mutex::new(0);
        let c = Condition::new();
        let start = Instant::now();
        let (g, r) = c.wait_timeout(m.lock(), ms(20));
        assert!(r.timed_out());
        assert!(start.elapsed() >= ms(20));
        assert!(m.try_lock().is_none(), "the guard holds the lock again");
        drop(g);
        let (g, r) = c.wait_timeout_while(m.lock(), ms(10), |v| *v == 0);
        assert!(r.timed_out());
        drop(g);
    });
}

#[test]
fn condition_notify_passes_on_when_the_notified_waiter_is_cancelled() {
    rt(1).block_on(|| {
        let pair = Arc::new((Mutex::new(false), Condition::new()));
        let woke = Arc::new(AtomicUsize::new(0));
        let spawn_waiter = || {
            let (pair, woke) = (pair.clone(), woke.clone());
            ivy::spawn(move || {
                let (m, c) = &*pair;
                let _g = c.wait(m.lock());
                woke.fetch_add(1, Ordering::SeqCst);
            })
        };
        let a = spawn_waiter();
        until_parked_on(&a, WaitReason::Event);
        let b = spawn_waiter();
        until_parked_on(&b, WaitReason::Event);
        // Notify A, then cancel it before it runs: the notification goes to B.
        pair.1.notify_one();
        a.cancel();
        assert!(a.join().unwrap_err().is_cancelled());
        b.join().unwrap();
        assert_eq!(woke.load(Ordering::SeqCst), 1);
        assert!(
            pair.0.try_lock().is_some(),
            "a cancelled waiter leaves the mutex free"
        );
    });
}

#[test]
fn condition_notify_n_and_all() {
    rt(2).block_on(|| {
        let pair = Arc::new((Mutex::new(0u32), Condition::new()));
        let hs: Vec<_> = (0..5)
            .map(|_| {
                let pair = pair.clone();
                ivy::spawn(move || {
                    let (m, c) = &*pair;
                    let mut g = c.wait(m.lock());
                    *g += 1;
                })
            })
            .collect();
        for h in &hs {
            until_parked_on(h, WaitReason::Event);
        }
        pair.1.notify(2);
        // The two notified ones take the mutex in turn and finish.
        let bound = Instant::now() + Duration::from_secs(30);
        while hs.iter().filter(|h| h.is_finished()).count() < 2 {
            assert!(
                Instant::now() < bound,
                "the notified waiters never finished"
            );
            ivy::sleep(ms(1));
        }
        ivy::sleep(ms(10));
        assert_eq!(*pair.0.lock(), 2);
        pair.1.notify_all();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*pair.0.lock(), 5);
    });
}

// ---------------------------------------------------------------- WaitGroup / Barrier

#[test]
fn wait_group_waits_for_all_jobs() {
    for workers in [1, 2] {
        rt(workers).block_on(|| {
            let wg = Arc::new(WaitGroup::new());
            let done = Arc::new(AtomicUsize::new(0));
            for i in 0..100 {
                wg.add(1);
                let (wg, done) = (wg.clone(), done.clone());
                ivy::spawn(move || {
                    ivy::sleep(ms(i % 5));
                    done.fetch_add(1, Ordering::SeqCst);
                    wg.done().unwrap();
                });
            }
            wg.wait();
            assert_eq!(done.load(Ordering::SeqCst), 100);
            assert_eq!(wg.count(), 0);
            assert!(wg.done().is_err());
            wg.add(1);
            assert_eq!(wg.wait_timeout(ms(10)), Err(TimedOut));
            wg.done().unwrap();
            assert_eq!(wg.wait_timeout(ms(10)), Ok(()));
        });
    }
}

#[test]
fn barrier_has_exactly_one_leader_per_generation() {
    for workers in [1, 2, 4] {
        rt(workers).block_on(|| {
            let parties = 5;
            let rounds = 200;
            let b = Arc::new(Barrier::new(parties));
            let leaders: Arc<Vec<AtomicUsize>> =
                Arc::new((0..rounds).map(|_| AtomicUsize::new(0)).collect());
            let arrived: Arc<Vec<AtomicUsize>> =
                Arc::new((0..rounds).map(|_| AtomicUsize::new(0)).collect());
            let hs: Vec<_> = (0..parties)
                .map(|_| {
                    let (b, leaders, arrived) = (b.clone(), leaders.clone(), arrived.clone());
                    ivy::spawn(move || {
                        for r in 0..rounds {
                            arrived[r].fetch_add(1, Ordering::SeqCst);
                            if b.wait().is_leader() {
                                leaders[r].fetch_add(1, Ordering::SeqCst);
                            }
                            // Everyone of this generation arrived before anyone left.
                            assert_eq!(arrived[r].load(Ordering::SeqCst), parties);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            for l in leaders.iter() {
                assert_eq!(l.load(Ordering::SeqCst), 1);
            }
        });
    }
}

#[test]
fn barrier_with_tasks_and_threads_and_withdrawal() {
    let rt = rt(2);
    let b = Arc::new(Barrier::new(3));
    let leaders = Arc::new(AtomicUsize::new(0));
    let t = {
        let (b, l) = (b.clone(), leaders.clone());
        std::thread::spawn(move || {
            for _ in 0..50 {
                if b.wait().is_leader() {
                    l.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let (b2, l2) = (b.clone(), leaders.clone());
    rt.block_on(move || {
        // A party that gives up withdraws its arrival.
        let b3 = b2.clone();
        let quitter = ivy::spawn(move || b3.wait());
        ivy::sleep(ms(5));
        quitter.cancel();
        assert!(quitter.join().unwrap_err().is_cancelled());
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (b, l) = (b2.clone(), l2.clone());
                ivy::spawn(move || {
                    for _ in 0..50 {
                        if b.wait().is_leader() {
                            l.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    t.join().unwrap();
    assert_eq!(leaders.load(Ordering::SeqCst), 50);
    assert_eq!(b.n_waiting(), 0);
}

// ---------------------------------------------------------------- oneshot

#[test]
fn oneshot_send_recv_and_disconnects() {
    rt(2).block_on(|| {
        let (tx, rx) = oneshot::channel();
        let h = ivy::spawn(move || rx.recv());
        ivy::sleep(ms(5));
        tx.send(String::from("hi")).unwrap();
        assert_eq!(h.join().unwrap().unwrap(), "hi");

        let (tx, rx) = oneshot::channel::<u8>();
        let h = ivy::spawn(move || rx.recv());
        ivy::sleep(ms(5));
        drop(tx);
        assert_eq!(h.join().unwrap(), Err(oneshot::RecvError));

        let (tx, rx) = oneshot::channel();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(5), Err(5));

        let (tx, mut rx) = oneshot::channel();
        assert_eq!(rx.try_recv(), Err(oneshot::TryRecvError::Empty));
        let start = Instant::now();
        assert_eq!(
            rx.recv_timeout(ms(20)),
            Err(oneshot::RecvTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= ms(20));
        tx.send(9).unwrap();
        assert_eq!(rx.recv_timeout(ms(20)), Ok(9));
        assert_eq!(rx.try_recv(), Err(oneshot::TryRecvError::Disconnected));
    });
}

#[test]
fn oneshot_value_survives_an_interrupted_recv() {
    rt(1).block_on(|| {
        let (tx, mut rx) = oneshot::channel();
        let r = ivy::timeout(ms(5), || rx.recv_timeout(Duration::from_secs(10)));
        assert!(r.is_err());
        tx.send(3).unwrap();
        assert_eq!(rx.recv(), Ok(3));
    });
    // And between a thread and a task.
    let rt = rt(2);
    let (tx, rx) = oneshot::channel();
    rt.spawn(move || {
        ivy::sleep(ms(5));
        tx.send(11).unwrap()
    });
    assert_eq!(rx.recv(), Ok(11));
}
