//! Open but idle connections cost no CPU: each worker sleeps in its poll with
//! the sockets registered. Measured in a test binary of its own, so no other
//! test's threads add to the process's CPU time.

use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn idle_connections_use_no_cpu() {
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
    let listener = rt.block_on(|| ivy::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    // 100 connections, each with a server task and a client task parked in read.
    let server = rt.spawn(move || {
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (mut s, _) = listener.accept().unwrap();
            tasks.push(ivy::spawn(move || {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).unwrap();
                s.write_all(&buf[..n]).unwrap();
            }));
        }
        for t in tasks {
            t.join().unwrap();
        }
    });
    let go = std::sync::Arc::new(ivy::sync::Event::new());
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let go = go.clone();
            rt.spawn(move || {
                let mut s = ivy::net::TcpStream::connect(addr).unwrap();
                let mut buf = [0u8; 1];
                // Parked until the end of the test: the server echoes one byte
                // only after we write it, which happens after the measurement.
                go.wait();
                s.write_all(b"x").unwrap();
                s.read_exact(&mut buf).unwrap();
            })
        })
        .collect();
    // Handshake, not a fixed sleep (the set-up may take longer than any guess
    // on a loaded machine): measure once all 201 tasks (the server, its 100
    // readers, the 100 clients) are parked.
    let h = rt.handle();
    let bound = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = h.tasks();
        if tasks.len() == 201
            && tasks
                .iter()
                .all(|t| t.state == ivy::runtime::debug::TaskState::Parked)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < bound,
            "never all parked: {tasks:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = cpu_time();
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time() - before;
    assert!(
        used < Duration::from_millis(100),
        "runtime with idle connections used {used:?} of CPU"
    );
    go.set();
    for c in clients {
        c.join().unwrap();
    }
    server.join().unwrap();
}
