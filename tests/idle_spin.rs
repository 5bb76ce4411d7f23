//! The adaptive idle spin (src/runtime/idle.rs, `SpinBudget`) only decides how
//! long a worker looks for work before it sleeps; it must never lose a wake-up.
//! A ping-pong between two tasks homed on different workers, with pauses between
//! rounds of every length around the spin's bounds (shorter than the shortest
//! spin, inside the learned range, longer than the longest), drives a worker's
//! budget up, down and through its collapse, and every round must complete with
//! the exact value. The two are homed apart by construction: ping spawns pong
//! and holds its own worker until pong has started, which only the other worker
//! can then do.

use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use ivy::sync::Queue;

/// Busy pauses (microseconds) cycled through between rounds: below `MIN` (5),
/// inside the range the budget learns, and past `MAX + WAKE_LATENCY` (150).
const PAUSES_US: [u64; 8] = [0, 2, 8, 30, 70, 120, 200, 400];
const ROUNDS: u64 = 2_000;

fn busy_pause(us: u64) {
    let until = Instant::now() + Duration::from_micros(us);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Runs one ping-pong of `ROUNDS` rounds between two tasks on different
/// workers, checking every reply.
fn ping_pong(rt: &ivy::Runtime) {
    rt.block_on(|| {
        let to_pong = Arc::new(Queue::<u64>::bounded(1));
        let to_ping = Arc::new(Queue::<u64>::bounded(1));
        let homes = Arc::new(Queue::<ThreadId>::bounded(1));
        let ping = ivy::spawn(move || {
            let here = std::thread::current().id();
            let pong = {
                let (input, output, homes) = (to_pong.clone(), to_ping.clone(), homes.clone());
                ivy::spawn(move || {
                    homes.put(std::thread::current().id()).unwrap();
                    let mut sum = 0;
                    while let Ok(i) = input.get() {
                        sum += i;
                        output.put(i * 2).unwrap();
                    }
                    sum
                })
            };
            // Hold this worker without parking until pong has started: only the
            // other worker can start it, so the two are homed apart.
            let bound = Instant::now() + Duration::from_secs(60);
            let pong_home = loop {
                if let Ok(home) = homes.try_get() {
                    break home;
                }
                assert!(
                    Instant::now() < bound,
                    "the other worker never started pong"
                );
                std::hint::spin_loop();
            };
            assert_ne!(pong_home, here, "pong started on ping's worker");
            for i in 0..ROUNDS {
                to_pong.put(i).unwrap();
                assert_eq!(to_ping.get().unwrap(), i * 2, "round {i}");
                busy_pause(PAUSES_US[i as usize % PAUSES_US.len()]);
                if i % 97 == 0 {
                    // A timer-ended sleep too: not a peer's wake-up.
                    ivy::sleep(Duration::from_micros(50));
                }
            }
            to_pong.close();
            pong.join().unwrap()
        });
        assert_eq!(ping.join().unwrap(), ROUNDS * (ROUNDS - 1) / 2);
    });
}

#[test]
fn cross_worker_ping_pong_with_pauses_of_every_length_loses_no_wake_up() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    for _ in 0..6 {
        ping_pong(&rt);
    }
}
