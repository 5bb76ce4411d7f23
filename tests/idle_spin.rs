//! The adaptive idle spin (src/runtime/idle.rs, `SpinBudget`) only decides how
//! long a worker looks for work before it sleeps; it must never lose a wake-up.
//! A ping-pong between two tasks homed on different workers, with pauses between
//! rounds of every length around the spin's bounds (shorter than the shortest
//! spin, inside the learned range, longer than the longest), drives a worker's
//! budget up, down and through its collapse, and every round must complete with
//! the exact value. Runs whose two tasks started on one worker are skipped
//! (placement decides, not the test) until six crossed.

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

/// Runs one ping-pong of `ROUNDS` rounds if its two tasks started on different
/// workers (they first tell each other where they run); returns whether they
/// did, after checking every reply.
fn ping_pong(rt: &ivy::Runtime) -> bool {
    let to_pong = Arc::new(Queue::<u64>::bounded(1));
    let to_ping = Arc::new(Queue::<u64>::bounded(1));
    let homes = Arc::new(Queue::<ThreadId>::bounded(1));
    let pong = {
        let (input, output, homes) = (to_pong.clone(), to_ping.clone(), homes.clone());
        rt.spawn(move || {
            homes.put(std::thread::current().id()).unwrap();
            let mut sum = 0;
            while let Ok(i) = input.get() {
                sum += i;
                output.put(i * 2).unwrap();
            }
            sum
        })
    };
    let ping = rt.spawn(move || {
        if homes.get().unwrap() == std::thread::current().id() {
            to_pong.close();
            return false;
        }
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
        true
    });
    let crossed = ping.join().unwrap();
    let sum = pong.join().unwrap();
    if crossed {
        assert_eq!(sum, ROUNDS * (ROUNDS - 1) / 2);
    }
    crossed
}

#[test]
fn cross_worker_ping_pong_with_pauses_of_every_length_loses_no_wake_up() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    // Where a task starts is placement's choice, not ours: retry until enough
    // runs had their two tasks on different workers (about one in four does).
    let mut crossed = 0;
    let mut attempts = 0;
    while crossed < 6 {
        attempts += 1;
        assert!(
            attempts <= 1_000,
            "only {crossed} of 1000 runs crossed workers"
        );
        if ping_pong(&rt) {
            crossed += 1;
        }
    }
}
