//! Idle workers sleep in the kernel: measured in a test binary of its own, so no
//! other test's threads add to the process's CPU time.

use std::time::Duration;

#[test]
fn idle_workers_use_no_cpu() {
    fn cpu_time() -> Duration {
        // SAFETY: getrusage only writes the struct we pass, which we own.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut ru);
            ru
        };
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        Duration::from_micros(us(ru.ru_utime) + us(ru.ru_stime))
    }
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    rt.block_on(|| ivy::sleep(Duration::from_millis(1)));
    // A sleeping task keeps a timer pending too.
    let h = rt.spawn(|| ivy::sleep(Duration::from_secs(3600)));
    // Measure once it is parked (a handshake, not a guess at how long it takes).
    let bound = std::time::Instant::now() + Duration::from_secs(60);
    while rt.handle().tasks().first().map(|t| t.state)
        != Some(ivy::runtime::debug::TaskState::Parked)
    {
        assert!(
            std::time::Instant::now() < bound,
            "the sleeper never parked"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = cpu_time();
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time() - before;
    // Parked workers burn nothing; allow generous slack for a noisy machine.
    assert!(
        used < Duration::from_millis(100),
        "idle runtime used {used:?} of CPU"
    );
    h.cancel();
    let _ = h.join();
}
