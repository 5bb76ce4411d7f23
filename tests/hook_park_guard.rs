//! `Builder::hook_park_guard`: every park of a hooked libc call made by the
//! runtime's tasks runs inside the guard, on the task's own thread; ivy's own
//! parks do not. (The Python package saves PyO3's per-thread attach count
//! this way: tests/hook/python_socket.py.)

use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static GUARDED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set while a guard runs on this thread: the park must run inside it.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

fn guard(park: &mut dyn FnMut()) {
    INSIDE.with(|i| i.set(true));
    park();
    INSIDE.with(|i| i.set(false));
    GUARDED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn hooked_parks_run_inside_the_guard_and_ivys_own_do_not() {
    let rt = ivy::Builder::new()
        .workers(2)
        .hook_park_guard(guard)
        .build()
        .unwrap();
    rt.block_on(|| {
        // ivy's own parks: not guarded.
        for _ in 0..10 {
            ivy::sleep(Duration::from_millis(1));
        }
        assert_eq!(GUARDED.load(Ordering::SeqCst), 0);

        // 20 hooked sleeps in 20 tasks: each parks once, inside the guard,
        // and the guard's flag is this task's thread's (no migration).
        let tasks: Vec<_> = (0..20)
            .map(|_| ivy::spawn(|| std::thread::sleep(Duration::from_millis(20))))
            .collect();
        for t in tasks {
            t.join().unwrap();
        }
        assert_eq!(GUARDED.load(Ordering::SeqCst), 20);

        // A hooked socket read that must wait parks inside the guard too.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let reader = ivy::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            buf
        });
        ivy::sleep(Duration::from_millis(20));
        let before = GUARDED.load(Ordering::SeqCst);
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        ivy::sleep(Duration::from_millis(20));
        c.write_all(b"ping").unwrap();
        assert_eq!(&reader.join().unwrap(), b"ping");
        assert!(
            GUARDED.load(Ordering::SeqCst) > before,
            "the accept and the read waited inside the guard"
        );
        assert!(!INSIDE.with(|i| i.get()));
    });
}
