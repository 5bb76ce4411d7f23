//! Regression: `close` racing with a read that is just starting.
//!
//! A read that passed the registration's closed check just before `close` set
//! the flag then ran `read(2)` on the socket `close` had already shut down, and
//! returned the shutdown's end of file as `Ok(0)`: the reader took ivy's own
//! close for the peer's EOF (seen once in CI, `net::tests::
//! close_wakes_task_and_thread_readers`). The rule now: a read that ran into the
//! close reports `WaitError::Closed`, as if the close came first; one that got
//! data keeps it. These tests close from a plain thread with no yield at all, so
//! the close lands anywhere in the reader's call, over many iterations.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ivy::net::{TcpListener, TcpStream, UdpSocket};
use ivy::WaitError;

fn pair() -> (TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Spins until `go`, then closes: the close lands at a random point of the
/// reader's call.
fn close_soon(
    go: Arc<AtomicBool>,
    close: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !go.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        close();
    })
}

#[test]
fn a_read_racing_with_close_reports_closed_never_eof() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        for i in 0..2000 {
            let (c, _peer) = pair();
            let go = Arc::new(AtomicBool::new(false));
            let closer = close_soon(go.clone(), {
                let c = c.clone();
                move || c.close()
            });
            let reader = {
                let (c, go) = (c.clone(), go.clone());
                ivy::spawn(move || {
                    let mut buf = [0u8; 8];
                    go.store(true, Ordering::Release);
                    c.read_deadline(&mut buf, None)
                })
            };
            let r = reader.join().unwrap();
            closer.join().unwrap();
            match r {
                Err(e) => assert_eq!(
                    WaitError::of(&e),
                    Some(WaitError::Closed),
                    "iteration {i}: {e}"
                ),
                Ok(n) => panic!("iteration {i}: a read racing with close returned Ok({n})"),
            }
        }
    });
}

#[test]
fn a_read_that_got_data_keeps_it_when_close_follows() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        for i in 0..500 {
            let (c, mut peer) = pair();
            peer.write_all(b"hello").unwrap();
            let go = Arc::new(AtomicBool::new(false));
            let closer = close_soon(go.clone(), {
                let c = c.clone();
                move || c.close()
            });
            go.store(true, Ordering::Release);
            let mut buf = [0u8; 8];
            match c.read_deadline(&mut buf, None) {
                Ok(n) => assert_eq!(&buf[..n], &b"hello"[..n], "iteration {i}"),
                Err(e) => assert_eq!(
                    WaitError::of(&e),
                    Some(WaitError::Closed),
                    "iteration {i}: {e}"
                ),
            }
            closer.join().unwrap();
            // Whatever the read saw, every later call reports the close.
            let e = c.read_deadline(&mut buf, None).unwrap_err();
            assert_eq!(WaitError::of(&e), Some(WaitError::Closed), "iteration {i}");
        }
    });
}

#[test]
fn accept_and_udp_recv_racing_with_close_report_closed() {
    let rt = ivy::Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        for i in 0..1000 {
            let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
            let u = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
            let go = Arc::new(AtomicBool::new(false));
            let closer = close_soon(go.clone(), {
                let (l, u) = (l.clone(), u.clone());
                move || {
                    l.close();
                    u.close();
                }
            });
            let acceptor = {
                let (l, go) = (l.clone(), go.clone());
                ivy::spawn(move || {
                    go.store(true, Ordering::Release);
                    l.accept_deadline(None).map(|_| ())
                })
            };
            let mut buf = [0u8; 8];
            let recv = u.recv_from_deadline(&mut buf, None);
            let accept = acceptor.join().unwrap();
            closer.join().unwrap();
            let e = accept.unwrap_err();
            assert_eq!(
                WaitError::of(&e),
                Some(WaitError::Closed),
                "iteration {i}: accept: {e}"
            );
            match recv {
                Err(e) => assert_eq!(
                    WaitError::of(&e),
                    Some(WaitError::Closed),
                    "iteration {i}: recv: {e}"
                ),
                Ok((n, from)) => {
                    panic!("iteration {i}: recv racing with close returned {n} bytes from {from}")
                }
            }
        }
    });
}
