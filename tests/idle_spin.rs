//! The adaptive idle spin (src/runtime/idle.rs, `SpinBudget`) only decides how
//! long a worker looks for work before it sleeps; it must never lose a wake-up.
//! A ping-pong between two tasks homed on different workers, with pauses between
//! rounds of every length around the spin's bounds (shorter than the shortest
//! spin, inside the learned range, longer than the longest), drives a worker's
//! budget up, down and through its collapse, and every round must complete with
//! the exact value.

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

/// Runs one ping-pong of `ROUNDS` rounds; returns the threads the two tasks ran
/// on, after checking every reply.
fn ping_pong(rt: &ivy::Runtime) -> (ThreadId, ThreadId) {
    let to_pong = Arc::new(Queue::<u64>::bounded(1));
    let to_ping = Arc::new(Queue::<u64>::bounded(1));
    let pong = {
        let (input, output) = (to_pong.clone(), to_ping.clone());
        rt.spawn(move || {
            let home = std::thread::current().id();
            let mut sum = 0;
            while let Ok(i) = input.get() {
                sum += i;
                output.put(i * 2).unwrap();
            }
            (home, sum)
        })
    };
    let ping = rt.spawn(move || {
        let home = std::thread::current().id();
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
        home
    });
    let ping_home = ping.join().unwrap();
    let (pong_home, sum) = pong.join().unwrap();
    assert_eq!(sum, ROUNDS * (ROUNDS - 1) / 2);
    (ping_home, pong_home)
}

#[test]
fn cross_worker_ping_pong_with_pauses_of_every_length_loses_no_wake_up() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    let mut split = 0;
    for _ in 0..12 {
        let (a, b) = ping_pong(&rt);
        if a != b {
            split += 1;
        }
    }
    // Placement spreads new tasks over idle workers, so most runs cross
    // workers; at least one must, or the test did not test the spin.
    assert!(split > 0, "no run had its two tasks on different workers");
}
