//! `ivy::sync` queues and `Select`, through the public API: every item consumed
//! exactly once, close / task_done / join semantics, priority and LIFO order,
//! select fairness / default / deadline, timeouts, and cancellation that leaves
//! no item, slot or waiter behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ivy::sync::{
    CapacityError, GetError, LifoQueue, PriorityQueue, PutError, Queue, Select, TaskDoneError,
    TimedOut,
};

mod common;
use common::{ms, rt};

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

#[test]
fn one_producer_three_consumers_every_item_exactly_once() {
    for workers in [1, 2, 4] {
        let rt = rt(workers);
        for seed in 1..=24u64 {
            let cap = 1 + (seed % 4) as usize;
            let n = 2000u64;
            let mut got = rt.block_on(move || {
                let q = Arc::new(Queue::bounded(cap));
                let consumers: Vec<_> = (0..3)
                    .map(|c| {
                        let q = q.clone();
                        ivy::spawn(move || {
                            let mut rng = Rng(seed * 31 + c);
                            let mut got = Vec::new();
                            while let Ok(v) = q.get() {
                                assert!(q.len() <= cap);
                                got.push(v);
                                if rng.below(8) == 0 {
                                    ivy::yield_now();
                                }
                            }
                            got
                        })
                    })
                    .collect();
                let mut rng = Rng(seed);
                for i in 0..n {
                    q.put(i).unwrap();
                    if rng.below(16) == 0 {
                        ivy::yield_now();
                    }
                }
                q.close();
                consumers
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect::<Vec<u64>>()
            });
            got.sort_unstable();
            assert_eq!(
                got,
                (0..n).collect::<Vec<_>>(),
                "workers={workers} seed={seed}"
            );
        }
    }
}

#[test]
fn fifo_order_per_producer_is_kept() {
    rt(2).block_on(|| {
        let q = Arc::new(Queue::bounded(3));
        let p = q.clone();
        let h = ivy::spawn(move || {
            for i in 0..5000 {
                p.put(i).unwrap();
            }
        });
        for i in 0..5000 {
            assert_eq!(q.get(), Ok(i));
        }
        h.join().unwrap();
    });
}

#[test]
fn capacity_and_construction_errors() {
    assert_eq!(Queue::<u8>::try_bounded(0).unwrap_err(), CapacityError);
    assert!(std::panic::catch_unwind(|| Queue::<u8>::bounded(0)).is_err());
    let q = Queue::bounded(2);
    assert_eq!(q.capacity(), Some(2));
    assert_eq!(Queue::<u8>::unbounded().capacity(), None);
    q.try_put(1).unwrap();
    q.try_put(2).unwrap();
    assert!(q.is_full());
    assert_eq!(q.try_put(3), Err(PutError::Full(3)));
    assert_eq!(q.len(), 2);
    assert_eq!(q.try_get(), Ok(1));
    assert_eq!(q.try_get(), Ok(2));
    assert_eq!(q.try_get(), Err(GetError::Empty));
    assert!(q.is_empty());
    // An unbounded queue never blocks a putter.
    let u = Queue::unbounded();
    for i in 0..100_000 {
        u.put(i).unwrap();
    }
    assert_eq!(u.len(), 100_000);
}

#[test]
fn close_drains_then_reports_closed_and_returns_values_to_putters() {
    rt(2).block_on(|| {
        let q = Arc::new(Queue::bounded(2));
        q.put("a").unwrap();
        q.put("b").unwrap();
        // A putter blocked on the full queue gets its value back on close.
        let p = q.clone();
        let blocked = ivy::spawn(move || p.put("c"));
        ivy::sleep(ms(10));
        q.close();
        assert_eq!(blocked.join().unwrap(), Err(PutError::Closed("c")));
        // Later putters too.
        assert_eq!(q.put("d"), Err(PutError::Closed("d")));
        assert_eq!(q.try_put("e").unwrap_err().into_inner(), "e");
        assert!(q.is_closed());
        // Getters drain, then see Closed.
        assert_eq!(q.get(), Ok("a"));
        assert_eq!(q.get_timeout(ms(10)), Ok("b"));
        assert_eq!(q.get(), Err(GetError::Closed));
        assert_eq!(q.try_get(), Err(GetError::Closed));
        // A getter blocked on an empty queue is woken by close.
        let q2: Arc<Queue<u32>> = Arc::new(Queue::unbounded());
        let g = q2.clone();
        let getter = ivy::spawn(move || g.get());
        ivy::sleep(ms(10));
        q2.close();
        assert_eq!(getter.join().unwrap(), Err(GetError::Closed));
    });
}

/// One `close` wakes many waiters at once: the first unparker is held inline,
/// the others in the overflow list of `Wakeups` (waiters.rs), made only then.
/// Every one of them must wake, each with its own outcome, on every round.
#[test]
fn close_wakes_every_one_of_many_waiters() {
    const WAITERS: usize = 40;
    let rt = rt(2);
    for round in 0..20 {
        rt.block_on(move || {
            let empty: Arc<Queue<usize>> = Arc::new(Queue::bounded(1));
            let full = Arc::new(Queue::bounded(1));
            full.put(usize::MAX).unwrap();
            let parked = Arc::new(AtomicUsize::new(0));
            let mut getters = Vec::new();
            let mut putters = Vec::new();
            for i in 0..WAITERS {
                let (e, f, p) = (empty.clone(), full.clone(), parked.clone());
                getters.push(ivy::spawn(move || {
                    p.fetch_add(1, Ordering::SeqCst);
                    e.get()
                }));
                let p = parked.clone();
                putters.push(ivy::spawn(move || {
                    p.fetch_add(1, Ordering::SeqCst);
                    f.put(i)
                }));
            }
            while parked.load(Ordering::SeqCst) < 2 * WAITERS {
                ivy::sleep(ms(1));
            }
            ivy::sleep(ms(5));
            empty.close();
            full.close();
            for g in getters {
                assert_eq!(g.join().unwrap(), Err(GetError::Closed), "round {round}");
            }
            let mut back: Vec<usize> = putters
                .into_iter()
                .map(|p| match p.join().unwrap() {
                    Err(PutError::Closed(v)) => v,
                    other => panic!("round {round}: a putter got {other:?}"),
                })
                .collect();
            back.sort();
            assert_eq!(back, (0..WAITERS).collect::<Vec<_>>(), "round {round}");
            // The buffered item stays to be drained.
            assert_eq!(full.get(), Ok(usize::MAX));
            assert_eq!(full.get(), Err(GetError::Closed));
        });
    }
}

#[test]
fn task_done_and_join() {
    for workers in [1, 2] {
        rt(workers).block_on(|| {
            let q = Arc::new(Queue::bounded(4));
            let processed = Arc::new(AtomicUsize::new(0));
            for _ in 0..3 {
                let (q, processed) = (q.clone(), processed.clone());
                ivy::spawn(move || {
                    while let Ok(v) = q.get() {
                        ivy::sleep(ms(v % 3));
                        processed.fetch_add(1, Ordering::SeqCst);
                        q.task_done().unwrap();
                    }
                });
            }
            for i in 0..60u64 {
                q.put(i).unwrap();
            }
            q.join();
            assert_eq!(processed.load(Ordering::SeqCst), 60);
            assert_eq!(q.unfinished_tasks(), 0);
            assert_eq!(q.task_done(), Err(TaskDoneError));
            // join returns at once when nothing is unfinished.
            q.join();
            // join_timeout when an item is never marked done.
            let solo: Queue<u8> = Queue::unbounded();
            solo.put(1).unwrap();
            assert_eq!(solo.try_get(), Ok(1));
            let start = Instant::now();
            assert_eq!(solo.join_timeout(ms(20)), Err(TimedOut));
            assert!(start.elapsed() >= ms(20));
            solo.task_done().unwrap();
            assert_eq!(solo.join_timeout(ms(20)), Ok(()));
            q.close();
        });
    }
}

#[test]
fn priority_queue_gives_smallest_first() {
    rt(1).block_on(|| {
        let q = PriorityQueue::bounded(10);
        for v in [5, 1, 9, 3, 7, 2, 8] {
            q.put(v).unwrap();
        }
        let out: Vec<_> = std::iter::from_fn(|| q.try_get().ok()).collect();
        assert_eq!(out, [1, 2, 3, 5, 7, 8, 9]);
        // Tuples: (priority, payload), like asyncio.
        let q = PriorityQueue::unbounded();
        q.put((2, "low")).unwrap();
        q.put((0, "urgent")).unwrap();
        q.put((1, "normal")).unwrap();
        assert_eq!(q.get().unwrap().1, "urgent");
        assert_eq!(q.get().unwrap().1, "normal");
        assert_eq!(q.get().unwrap().1, "low");
    });
}

#[test]
fn lifo_queue_gives_newest_first() {
    rt(1).block_on(|| {
        let q = LifoQueue::bounded(5);
        for v in 1..=5 {
            q.put(v).unwrap();
        }
        assert_eq!(q.try_put(6), Err(PutError::Full(6)));
        let out: Vec<_> = std::iter::from_fn(|| q.try_get().ok()).collect();
        assert_eq!(out, [5, 4, 3, 2, 1]);
    });
}

#[test]
fn priority_and_lifo_under_concurrency_lose_nothing() {
    rt(2).block_on(|| {
        let pq = Arc::new(PriorityQueue::bounded(3));
        let lq = Arc::new(LifoQueue::bounded(3));
        let (p1, l1) = (pq.clone(), lq.clone());
        let prod = ivy::spawn(move || {
            for i in 0..3000u32 {
                p1.put(i).unwrap();
                l1.put(i).unwrap();
            }
            p1.close();
            l1.close();
        });
        let p2 = pq.clone();
        let cons_p = ivy::spawn(move || {
            let mut a: Vec<u32> = std::iter::from_fn(|| p2.get().ok()).collect();
            a.sort_unstable();
            a
        });
        let l2 = lq.clone();
        let cons_l = ivy::spawn(move || {
            let mut b: Vec<u32> = std::iter::from_fn(|| l2.get().ok()).collect();
            b.sort_unstable();
            b
        });
        prod.join().unwrap();
        let (a, b) = (cons_p.join().unwrap(), cons_l.join().unwrap());
        assert_eq!(a, (0..3000).collect::<Vec<_>>());
        assert_eq!(b, (0..3000).collect::<Vec<_>>());
    });
}

#[test]
fn get_and_put_timeouts() {
    rt(2).block_on(|| {
        let q = Queue::bounded(1);
        let start = Instant::now();
        assert_eq!(q.get_timeout(ms(25)), Err(GetError::TimedOut));
        let took = start.elapsed();
        assert!(took >= ms(25) && took < ms(2025), "{took:?}");
        q.put(1).unwrap();
        let start = Instant::now();
        assert_eq!(q.put_timeout(2, ms(25)), Err(PutError::TimedOut(2)));
        assert!(start.elapsed() >= ms(25));
        assert_eq!(q.put_until(3, Instant::now()), Err(PutError::TimedOut(3)));
        assert_eq!(q.get_until(Instant::now() + ms(5)), Ok(1));
        // Inside an ivy::timeout scope the plain calls are interrupted.
        let start = Instant::now();
        assert!(ivy::timeout(ms(25), || q.get()).is_err());
        assert!(start.elapsed() >= ms(25));
        q.put(4).unwrap();
        let start = Instant::now();
        assert!(ivy::timeout(ms(25), || q.put(5)).is_err());
        assert!(start.elapsed() >= ms(25));
        assert_eq!(q.len(), 1);
        assert_eq!(q.get(), Ok(4));
    });
}

#[test]
fn cancelled_putters_and_getters_leave_nothing_behind() {
    for workers in [1, 2] {
        rt(workers).block_on(move || {
            let mut rng = Rng(777 + workers as u64);
            let cap = 2;
            let q = Arc::new(Queue::bounded(cap));
            let mut next = 0u64;
            let mut accepted = Vec::new(); // values whose put returned Ok
            let mut received = Vec::new(); // values some getter returned
            for _ in 0..300 {
                // Fill the queue, then race putters against getters and cancels.
                while q.try_put(next).is_ok() {
                    accepted.push(next);
                    next += 1;
                }
                let putters: Vec<_> = (0..3)
                    .map(|_| {
                        let q = q.clone();
                        let v = next;
                        next += 1;
                        ivy::spawn(move || q.put(v).map(|_| v).ok())
                    })
                    .collect();
                let getters: Vec<_> = (0..4)
                    .map(|i| {
                        let q = q.clone();
                        ivy::spawn(move || {
                            if i % 2 == 0 {
                                q.get().ok()
                            } else {
                                ivy::timeout(ms(1), || q.get().ok()).ok().flatten()
                            }
                        })
                    })
                    .collect();
                for _ in 0..rng.below(4) {
                    ivy::yield_now();
                }
                for h in putters.iter().chain(getters.iter()) {
                    if rng.below(2) == 0 {
                        h.cancel();
                    }
                }
                // Give the survivors a moment, then stop whoever is still blocked
                // (a putter with no getter left, a getter on an empty queue).
                ivy::sleep(ms(rng.below(3)));
                for h in putters.iter().chain(getters.iter()) {
                    if !h.is_finished() {
                        h.cancel();
                    }
                }
                for h in putters {
                    if let Ok(Some(v)) = h.join() {
                        accepted.push(v);
                    }
                }
                for h in getters {
                    if let Ok(Some(v)) = h.join() {
                        received.push(v);
                    }
                }
                assert!(q.len() <= cap);
            }
            // Drain: everything accepted was received or is still queued, once.
            while let Ok(v) = q.try_get() {
                received.push(v);
            }
            accepted.sort_unstable();
            received.sort_unstable();
            assert_eq!(accepted, received);
            // Every slot is free again.
            for i in 0..cap {
                q.try_put(i as u64).expect("slot leaked");
            }
            assert!(q.is_full());
        });
    }
}

#[test]
fn tasks_and_threads_share_one_queue() {
    let rt = rt(2);
    let q = Arc::new(Queue::bounded(4));
    let results = Arc::new(Queue::unbounded());
    // Producers: two plain threads and two tasks.
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    q.put(t * 10_000 + i).unwrap();
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (2..4u64)
        .map(|t| {
            let q = q.clone();
            rt.spawn(move || {
                for i in 0..1000 {
                    q.put(t * 10_000 + i).unwrap();
                }
            })
        })
        .collect();
    // Consumers: one plain thread and two tasks.
    let consumer_task = |q: Arc<Queue<u64>>, r: Arc<Queue<u64>>| {
        move || {
            while let Ok(v) = q.get() {
                r.put(v).unwrap();
            }
        }
    };
    let c1 = rt.spawn(consumer_task(q.clone(), results.clone()));
    let c2 = rt.spawn(consumer_task(q.clone(), results.clone()));
    let c3 = std::thread::spawn(consumer_task(q.clone(), results.clone()));
    for t in threads {
        t.join().unwrap();
    }
    for t in tasks {
        t.join().unwrap();
    }
    q.close();
    c1.join().unwrap();
    c2.join().unwrap();
    c3.join().unwrap();
    let mut all: Vec<u64> = std::iter::from_fn(|| results.try_get().ok()).collect();
    all.sort_unstable();
    let expected: Vec<u64> = (0..4u64)
        .flat_map(|t| (0..1000).map(move |i| t * 10_000 + i))
        .collect();
    assert_eq!(all, expected);
}

#[test]
fn ping_pong_over_two_bounded_queues() {
    for workers in [1, 2] {
        rt(workers).block_on(|| {
            let ping = Arc::new(Queue::bounded(1));
            let pong = Arc::new(Queue::bounded(1));
            let (pi, po) = (ping.clone(), pong.clone());
            let echo = ivy::spawn(move || {
                while let Ok(v) = pi.get() {
                    po.put(v + 1).unwrap();
                }
            });
            for i in 0..20_000u64 {
                ping.put(i).unwrap();
                assert_eq!(pong.get(), Ok(i + 1));
            }
            ping.close();
            echo.join().unwrap();
        });
    }
}

// ---------------------------------------------------------------- Select

#[test]
fn select_takes_the_ready_arm_and_default_when_none() {
    rt(1).block_on(|| {
        let a: Queue<u32> = Queue::bounded(1);
        let b: Queue<&str> = Queue::bounded(1);
        let r = Select::new()
            .get(&a, |_| "a")
            .get(&b, |_| "b")
            .default(|| "default")
            .run();
        assert_eq!(r, "default");
        b.put("x").unwrap();
        let r = Select::new()
            .get(&a, |v| format!("a{v:?}"))
            .get(&b, |v| format!("b{}", v.unwrap()))
            .default(|| "default".into())
            .run();
        assert_eq!(r, "bx");
        assert!(b.is_empty());
        // A put arm on a queue with room fires; on a full one it does not.
        a.put(1).unwrap();
        let r = Select::new()
            .put(&a, 2, |_| "put a")
            .put(&b, "y", |r| if r.is_ok() { "put b" } else { "fail" })
            .run();
        assert_eq!(r, "put b");
        assert_eq!(a.try_get(), Ok(1), "the losing put arm put nothing");
        assert_eq!(b.try_get(), Ok("y"));
    });
}

#[test]
fn select_deadline_fires_after_the_deadline() {
    rt(2).block_on(|| {
        let a: Queue<u32> = Queue::bounded(1);
        let full: Queue<u32> = Queue::bounded(1);
        full.put(0).unwrap();
        let start = Instant::now();
        let r = Select::new()
            .get(&a, |_| "a")
            .put(&full, 1, |_| "full")
            .timeout(ms(30), || "timeout")
            .run();
        let took = start.elapsed();
        assert_eq!(r, "timeout");
        assert!(took >= ms(30) && took < ms(2030), "{took:?}");
        // The abandoned arms left nothing behind.
        a.try_put(5).unwrap();
        assert_eq!(full.try_get(), Ok(0));
        assert_eq!(full.try_get(), Err(GetError::Empty));
        let r = Select::new()
            .get(&a, |v| v.unwrap())
            .deadline(Instant::now() + ms(5), || 99)
            .run();
        assert_eq!(r, 5);
    });
}

#[test]
fn select_wakes_on_put_and_on_free_slot() {
    rt(2).block_on(|| {
        let a = Arc::new(Queue::<u32>::bounded(1));
        let b = Arc::new(Queue::<u32>::bounded(1));
        let (a2, b2) = (a.clone(), b.clone());
        let h = ivy::spawn(move || {
            Select::new()
                .get(&*a2, |v| ("a", v.unwrap()))
                .get(&*b2, |v| ("b", v.unwrap()))
                .run()
        });
        ivy::sleep(ms(10));
        b.put(7).unwrap();
        assert_eq!(h.join().unwrap(), ("b", 7));
        // A blocked put arm fires when a slot frees.
        a.put(1).unwrap();
        let a3 = a.clone();
        let h = ivy::spawn(move || Select::new().put(&*a3, 2, |r| r.is_ok()).run());
        ivy::sleep(ms(10));
        assert_eq!(a.get(), Ok(1));
        assert!(h.join().unwrap());
        assert_eq!(a.get(), Ok(2));
        // Closing a queue fires a waiting get arm with Closed.
        let c = Arc::new(Queue::<u32>::bounded(1));
        let c2 = c.clone();
        let h = ivy::spawn(move || Select::new().get(&*c2, |r| r).run());
        ivy::sleep(ms(10));
        c.close();
        assert_eq!(h.join().unwrap(), Err(GetError::Closed));
    });
}

#[test]
fn select_is_fair_between_ready_arms() {
    rt(1).block_on(|| {
        let a = Queue::unbounded();
        let b = Queue::unbounded();
        for i in 0..1000 {
            a.put(i).unwrap();
            b.put(i).unwrap();
        }
        let (mut from_a, mut from_b) = (0, 0);
        for _ in 0..1000 {
            Select::new()
                .get(&a, |_| from_a += 1)
                .get(&b, |_| from_b += 1)
                .run();
        }
        assert_eq!(from_a + from_b, 1000);
        assert_eq!(a.len() + b.len(), 1000);
        // Random start: each arm wins a fair share (p(failure) is astronomically low).
        assert!(from_a > 300 && from_b > 300, "a={from_a} b={from_b}");
        // biased(): always the first ready arm.
        let mut first = 0;
        for _ in 0..100 {
            Select::new()
                .biased()
                .get(&a, |_| first += 1)
                .get(&b, |_| ())
                .run();
        }
        assert_eq!(first, 100);
    });
}

#[test]
fn select_loop_over_many_producers_loses_nothing() {
    for workers in [1, 2, 4] {
        rt(workers).block_on(|| {
            let qs: Vec<Arc<Queue<u64>>> = (0..3).map(|_| Arc::new(Queue::bounded(2))).collect();
            let n = 3000u64;
            let producers: Vec<_> = qs
                .iter()
                .enumerate()
                .map(|(k, q)| {
                    let q = q.clone();
                    ivy::spawn(move || {
                        for i in 0..n {
                            q.put(k as u64 * 1_000_000 + i).unwrap();
                        }
                        q.close();
                    })
                })
                .collect();
            // Two consumers each select over all three queues.
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let qs = qs.clone();
                    ivy::spawn(move || {
                        let mut got = Vec::new();
                        let mut open = [true; 3];
                        while open.iter().any(|o| *o) {
                            let mut sel = Select::new();
                            for (k, q) in qs.iter().enumerate() {
                                if open[k] {
                                    sel = sel.get(&**q, move |r| (k, r));
                                }
                            }
                            match sel.run() {
                                (_, Ok(v)) => got.push(v),
                                (k, Err(GetError::Closed)) => open[k] = false,
                                (_, Err(e)) => panic!("{e}"),
                            }
                        }
                        got
                    })
                })
                .collect();
            for p in producers {
                p.join().unwrap();
            }
            let mut all: Vec<u64> = consumers
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            all.sort_unstable();
            let expected: Vec<u64> = (0..3u64)
                .flat_map(|k| (0..n).map(move |i| k * 1_000_000 + i))
                .collect();
            assert_eq!(all, expected);
        });
    }
}

#[test]
fn select_put_arms_deliver_exactly_once() {
    rt(2).block_on(|| {
        let a = Arc::new(Queue::bounded(1));
        let b = Arc::new(Queue::bounded(1));
        let (a2, b2) = (a.clone(), b.clone());
        let prod = ivy::spawn(move || {
            for i in 0..2000u32 {
                Select::new()
                    .put(&*a2, i, |r| r.unwrap())
                    .put(&*b2, i, |r| r.unwrap())
                    .run();
            }
            a2.close();
            b2.close();
        });
        let mut got = Vec::new();
        let mut open = (true, true);
        while open.0 || open.1 {
            let mut s = Select::new();
            if open.0 {
                s = s.get(&*a, |r| (0, r));
            }
            if open.1 {
                s = s.get(&*b, |r| (1, r));
            }
            match s.run() {
                (_, Ok(v)) => got.push(v),
                (0, Err(_)) => open.0 = false,
                (_, Err(_)) => open.1 = false,
            }
        }
        prod.join().unwrap();
        assert_eq!(got.len(), 2000, "each value went to exactly one queue");
        got.sort_unstable();
        assert_eq!(got, (0..2000).collect::<Vec<_>>());
    });
}

#[test]
fn select_cancelled_while_items_arrive_loses_nothing() {
    for workers in [1, 2] {
        rt(workers).block_on(move || {
            let mut rng = Rng(4242 + workers as u64);
            let a = Arc::new(Queue::bounded(2));
            let b = Arc::new(Queue::bounded(2));
            let mut sent = 0u64;
            let mut received = Vec::new();
            for _ in 0..300 {
                let (a2, b2) = (a.clone(), b.clone());
                let sel = ivy::spawn(move || {
                    Select::new()
                        .get(&*a2, |r| r.ok())
                        .get(&*b2, |r| r.ok())
                        .run()
                });
                for _ in 0..rng.below(3) {
                    ivy::yield_now();
                }
                let q = if rng.below(2) == 0 { &a } else { &b };
                if rng.below(2) == 0 {
                    q.put(sent).unwrap();
                    sel.cancel();
                } else {
                    sel.cancel();
                    q.put(sent).unwrap();
                }
                sent += 1;
                if let Ok(Some(v)) = sel.join() {
                    received.push(v);
                }
                while let Ok(v) = a.try_get() {
                    received.push(v);
                }
                while let Ok(v) = b.try_get() {
                    received.push(v);
                }
                assert_eq!(
                    received.len() as u64,
                    sent,
                    "an item was lost or duplicated"
                );
            }
            received.sort_unstable();
            assert_eq!(received, (0..sent).collect::<Vec<_>>());
        });
    }
}

#[test]
fn select_inside_a_timeout_scope() {
    rt(1).block_on(|| {
        let a: Queue<u32> = Queue::bounded(1);
        let start = Instant::now();
        let r = ivy::timeout(ms(20), || Select::new().get(&a, |_| ()).run());
        assert!(r.is_err());
        assert!(start.elapsed() >= ms(20));
        a.try_put(1).unwrap();
        assert_eq!(a.try_get(), Ok(1));
    });
}

/// A bounded queue runs on a lock-free ring while nobody waits, and under its
/// lock while someone does (`sync/queue/ring.rs`). An item granted to a woken
/// getter that has not run yet still counts against the capacity once the
/// ring is lock-free again: the puts that follow may use only the rest.
#[test]
fn an_item_granted_to_a_getter_that_has_not_run_keeps_its_slot() {
    for cap in [1usize, 2, 3] {
        rt(1).block_on(move || {
            let q = Arc::new(Queue::bounded(cap));
            let getter = {
                let q = q.clone();
                ivy::spawn(move || q.get().unwrap())
            };
            // The getter finds the queue empty and parks (after its yields).
            ivy::sleep(ms(5));
            q.put(0u64).unwrap(); // granted to the getter, which has not run
            for i in 1..cap as u64 {
                q.try_put(i).expect("a free slot");
            }
            assert!(matches!(q.try_put(99), Err(PutError::Full(99))));
            assert!(q.is_full());
            assert_eq!(q.len(), cap);
            assert_eq!(getter.join().unwrap(), 0);
            q.try_put(cap as u64).expect("the collected item's slot");
            for i in 1..=cap as u64 {
                assert_eq!(q.try_get().unwrap(), i);
            }
            assert!(q.is_empty());
        });
    }
}

/// The ring's two sides together, under pressure: producers and consumers on
/// two workers switch between the lock-free path and waiting (small
/// capacities, random yields, timed gets and puts that give up, cancelled
/// tasks, `task_done` counting); every accepted item is received exactly once,
/// the capacity is never exceeded, and `unfinished_tasks` counts exactly what
/// was put and not marked done. (Not each producer's order per consumer: a
/// getter that times out after an item was handed to it gives the item back
/// to the front, behind items other getters took meanwhile; README,
/// "Fairness". `fifo_order_per_producer_is_kept`
/// checks the order where nothing gives up.)
#[test]
fn bounded_queue_fast_and_waiting_paths_lose_nothing() {
    let rt = rt(2);
    for seed in 1..=30u64 {
        let cap = 1 + (seed % 5) as usize;
        let (accepted, mut received, done, unfinished) = rt.block_on(move || {
            let q = Arc::new(Queue::<(u64, u64)>::bounded(cap));
            let done = Arc::new(AtomicUsize::new(0));
            let producers: Vec<_> = (0..3u64)
                .map(|p| {
                    let q = q.clone();
                    ivy::spawn(move || {
                        let mut rng = Rng(seed * 101 + p);
                        let mut accepted = Vec::new();
                        for i in 0..600u64 {
                            let ok = match rng.below(4) {
                                0 => q.try_put((p, i)).is_ok(),
                                1 => q.put_timeout((p, i), ms(1)).is_ok(),
                                _ => q.put((p, i)).is_ok(),
                            };
                            if ok {
                                accepted.push((p, i));
                            }
                            if rng.below(8) == 0 {
                                ivy::yield_now();
                            }
                        }
                        accepted
                    })
                })
                .collect();
            let consumers: Vec<_> = (0..3u64)
                .map(|c| {
                    let (q, done) = (q.clone(), done.clone());
                    ivy::spawn(move || {
                        let mut rng = Rng(seed * 7 + c);
                        let mut got = Vec::new();
                        loop {
                            let r = match rng.below(4) {
                                0 => q.try_get().map_err(|e| e == GetError::Closed),
                                1 => q.get_timeout(ms(1)).map_err(|e| e == GetError::Closed),
                                _ => q.get().map_err(|_| true),
                            };
                            match r {
                                Ok((p, i)) => {
                                    assert!(q.len() <= cap, "over capacity");
                                    got.push((p, i));
                                    if rng.below(2) == 0 {
                                        q.task_done().unwrap();
                                        done.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                Err(true) => break,
                                Err(false) => {}
                            }
                            if rng.below(8) == 0 {
                                ivy::yield_now();
                            }
                        }
                        got
                    })
                })
                .collect();
            // A consumer cancelled while it waits or collects: what it took
            // is recorded outside the task, whose own result the cancel loses.
            let taken_by_doomed = Arc::new(std::sync::Mutex::new(Vec::new()));
            let doomed = {
                let (q, taken) = (q.clone(), taken_by_doomed.clone());
                ivy::spawn(move || {
                    while let Ok(v) = q.get() {
                        taken.lock().unwrap().push(v);
                    }
                })
            };
            ivy::sleep(ms(seed % 3));
            doomed.cancel();
            let mut accepted: Vec<(u64, u64)> = Vec::new();
            for h in producers {
                accepted.extend(h.join().unwrap());
            }
            q.close();
            let mut received: Vec<(u64, u64)> = Vec::new();
            for h in consumers {
                received.extend(h.join().unwrap());
            }
            let _ = doomed.join();
            received.extend(taken_by_doomed.lock().unwrap().drain(..));
            let unfinished = q.unfinished_tasks();
            (accepted, received, done.load(Ordering::Relaxed), unfinished)
        });
        let mut accepted = accepted;
        accepted.sort_unstable();
        received.sort_unstable();
        // Every accepted item received, exactly once (close drained the rest).
        assert_eq!(received, accepted, "seed {seed}");
        assert_eq!(unfinished, accepted.len() - done, "seed {seed}");
    }
}

/// A large ring kept full: producers wait on it for room while consumers on
/// the same or the other worker drain it slowly. A put on a full ring of more
/// than 64 slots waits several yields between two attempts (core.rs,
/// `put_yields`); through those waits, a put gives up at its deadline, a
/// cancelled producer gets its value back, and nothing is lost or
/// duplicated: every accepted item is received exactly once, and each
/// consumer receives each producer's items in the order they were put.
#[test]
fn a_full_large_ring_loses_nothing_to_puts_waiting_for_room() {
    for workers in [1, 2] {
        let rt = rt(workers);
        for (seed, cap) in [(1u64, 65usize), (2, 128), (3, 1024), (4, 1024), (5, 200)] {
            rt.block_on(move || {
                let q = Arc::new(Queue::<(u64, u64)>::bounded(cap));
                let per = 3 * cap as u64;
                // What the producers' puts accepted, recorded as they go: the
                // cancelled producer's own result is lost with it.
                let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
                let producers: Vec<_> = (0..4u64)
                    .map(|p| {
                        let (q, accepted) = (q.clone(), accepted.clone());
                        ivy::spawn(move || {
                            let mut rng = Rng(seed * 31 + p);
                            for i in 0..per {
                                let ok = match rng.below(8) {
                                    0 => q.put_timeout((p, i), ms(1)).is_ok(),
                                    _ => q.put((p, i)).is_ok(),
                                };
                                if ok {
                                    accepted.lock().unwrap().push((p, i));
                                }
                            }
                        })
                    })
                    .collect();
                let full_seen = Arc::new(AtomicUsize::new(0));
                let consumers: Vec<_> = (0..2u64)
                    .map(|c| {
                        let (q, full_seen) = (q.clone(), full_seen.clone());
                        ivy::spawn(move || {
                            let mut rng = Rng(seed * 7 + c);
                            let mut got = Vec::new();
                            loop {
                                if q.is_full() {
                                    full_seen.fetch_add(1, Ordering::Relaxed);
                                }
                                let Ok(item) = q.get() else { break };
                                assert!(q.len() <= cap, "over capacity");
                                got.push(item);
                                if rng.below(4) == 0 {
                                    ivy::yield_now();
                                }
                            }
                            got
                        })
                    })
                    .collect();
                // Cancel the last producer once the ring has been full a while.
                ivy::sleep(ms(1 + seed % 3));
                producers[3].cancel();
                let mut producers = producers;
                let last = producers.pop().unwrap();
                for h in producers {
                    h.join().unwrap();
                }
                let _ = last.join();
                q.close();
                let mut received = Vec::new();
                for h in consumers {
                    let got = h.join().unwrap();
                    for p in 0..4 {
                        let mine: Vec<u64> = got.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                        assert!(
                            mine.windows(2).all(|w| w[0] < w[1]),
                            "{workers} workers, seed {seed}: producer {p} out of order"
                        );
                    }
                    received.extend(got);
                }
                let mut accepted = std::mem::take(&mut *accepted.lock().unwrap());
                accepted.sort_unstable();
                received.sort_unstable();
                assert_eq!(received, accepted, "{workers} workers, seed {seed}");
                assert!(
                    full_seen.load(Ordering::Relaxed) > 0,
                    "{workers} workers, seed {seed}: the ring was never seen full"
                );
            });
        }
    }
}
