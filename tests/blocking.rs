//! The blocking pool and `ivy::fs`: blocking work never stalls a worker, the
//! pool is bounded and shrinks when idle, panics and interruptions are reported.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivy::Builder;

#[test]
fn spawn_blocking_does_not_block_other_tasks() {
    const WORKERS: usize = 2;
    let rt = Builder::new().workers(WORKERS).build().unwrap();
    let ticks = rt.block_on(|| {
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let ticker = ivy::spawn(move || {
            for _ in 0..20 {
                ivy::sleep(Duration::from_millis(10));
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        // 2 × workers jobs that each block their OS thread for 1 s.
        let jobs: Vec<_> = (0..2 * WORKERS)
            .map(|i| {
                ivy::spawn(move || {
                    ivy::spawn_blocking(move || {
                        std::thread::sleep(Duration::from_millis(1000));
                        i * 10
                    })
                    .join()
                    .unwrap()
                })
            })
            .collect();
        ivy::sleep(Duration::from_millis(5));
        ticker.join().unwrap();
        // The ticker finished its 20 ticks (~200 ms) while every job was still
        // blocking its pool thread (1 s): workers were never blocked.
        assert!(jobs.iter().all(|h| !h.is_finished()));
        let during = ticks.load(Ordering::Relaxed);
        let sum: usize = jobs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, (0..2 * WORKERS).map(|i| i * 10).sum::<usize>());
        during
    });
    assert_eq!(ticks, 20);
}

#[test]
fn pool_is_bounded_and_queues_beyond_its_cap() {
    let rt = Builder::new()
        .workers(2)
        .max_blocking_threads(3)
        .build()
        .unwrap();
    rt.block_on(|| {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                let running = running.clone();
                let peak = peak.clone();
                ivy::spawn_blocking(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        assert!(ivy::blocking_threads() <= 3);
        for j in jobs {
            j.join().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn idle_pool_threads_exit_after_keep_alive() {
    let rt = Builder::new()
        .workers(1)
        .blocking_keep_alive(Duration::from_millis(100))
        .build()
        .unwrap();
    rt.block_on(|| {
        let jobs: Vec<_> = (0..4)
            .map(|_| ivy::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20))))
            .collect();
        for j in jobs {
            j.join().unwrap();
        }
        assert!(ivy::blocking_threads() >= 1);
        let t0 = Instant::now();
        while ivy::blocking_threads() != 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "pool threads did not exit"
            );
            ivy::sleep(Duration::from_millis(20));
        }
        // The pool grows again on demand.
        assert_eq!(ivy::spawn_blocking(|| 5).join().unwrap(), 5);
    });
}

#[test]
fn blocking_panic_is_reported_and_cancellation_detaches() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        let e = ivy::spawn_blocking(|| panic!("boom in pool"))
            .join()
            .unwrap_err();
        assert!(e.is_panic());
        assert_eq!(e.panic_message(), Some("boom in pool"));

        // A task waiting on a long job is cancelled: it stops waiting at once,
        // while the job still runs. Handshakes, not timings (regression: a
        // 300 ms job and a 250 ms bound on the cancelled join could fail on a
        // loaded machine): the job runs until the test releases it, after the
        // cancelled join returned.
        let finished = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(ivy::sync::Event::new());
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (f, r) = (finished.clone(), running.clone());
        let waiter = ivy::spawn(move || {
            ivy::spawn_blocking(move || {
                r.set();
                held.recv().unwrap();
                f.fetch_add(1, Ordering::SeqCst);
            })
            .join()
            .unwrap();
        });
        running.wait();
        waiter.cancel();
        assert!(waiter.join().unwrap_err().is_cancelled());
        assert_eq!(finished.load(Ordering::SeqCst), 0, "the job is held");
        // The detached job still runs to completion.
        release.send(()).unwrap();
        while finished.load(Ordering::SeqCst) == 0 {
            ivy::sleep(Duration::from_millis(10));
        }

        // join_timeout gives the handle back (the job is held past it).
        let (release, held) = std::sync::mpsc::channel::<()>();
        let h = ivy::spawn_blocking(move || {
            held.recv().unwrap();
            7
        });
        let h = h.join_timeout(Duration::from_millis(10)).unwrap_err();
        release.send(()).unwrap();
        assert_eq!(h.join().unwrap(), 7);
    });
    // From a plain thread too.
    assert_eq!(ivy::spawn_blocking(|| 41 + 1).join().unwrap(), 42);
}

#[test]
fn fs_functions_and_file() {
    let dir = std::env::temp_dir().join(format!("ivy-fs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Builder::new().workers(2).build().unwrap();
    let d = dir.clone();
    rt.block_on(move || {
        let nested = d.join("a/b/c");
        ivy::fs::create_dir_all(&nested).unwrap();
        assert!(ivy::fs::metadata(&nested).unwrap().is_dir());
        let p = nested.join("hello.txt");
        ivy::fs::write(&p, "hello, ivy").unwrap();
        assert_eq!(ivy::fs::read_to_string(&p).unwrap(), "hello, ivy");
        assert_eq!(ivy::fs::read(&p).unwrap(), b"hello, ivy");
        assert_eq!(ivy::fs::metadata(&p).unwrap().len(), 10);

        let big = nested.join("big.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        {
            let mut f = ivy::fs::File::create(&big).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            assert_eq!(f.metadata().unwrap().len(), data.len() as u64);
        }
        {
            let mut f = ivy::fs::File::open(&big).unwrap();
            let mut head = [0u8; 1000];
            f.read_exact(&mut head).unwrap();
            assert_eq!(&head[..], &data[..1000]);
            f.seek(SeekFrom::Start(2_000_000)).unwrap();
            let mut rest = Vec::new();
            f.read_to_end(&mut rest).unwrap();
            assert!(rest == data[2_000_000..]);
        }
        ivy::fs::remove_file(&p).unwrap();
        let e = ivy::fs::read(&p).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = ivy::fs::File::open(d.join("missing")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    });
    // Plain threads run fs calls inline.
    assert!(ivy::fs::metadata(&dir).unwrap().is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fs_call_inside_elapsed_scope_times_out() {
    let rt = Builder::new()
        .workers(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(|| {
        // The only pool thread is held until the scope has elapsed (a handshake:
        // a 400 ms sleep here and a 350 ms bound on the scope could fail on a
        // loaded machine).
        let (release, held) = std::sync::mpsc::channel::<()>();
        let slow = ivy::spawn_blocking(move || held.recv().unwrap());
        let mut inner = None;
        let r = ivy::timeout(Duration::from_millis(50), || {
            inner = Some(ivy::fs::metadata("/").map(|_| ()).map_err(|e| e.kind()));
        });
        assert!(
            r.is_err(),
            "queued behind the slow job, the scope must elapse"
        );
        assert_eq!(inner, Some(Err(std::io::ErrorKind::TimedOut)));
        release.send(()).unwrap();
        slow.join().unwrap();
    });
}
