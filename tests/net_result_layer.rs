//! The socket half of ivy's `Result` layer: every blocking socket call's
//! `_deadline` twin (TCP and Unix streams, listeners and connects, UDP and
//! Unix datagrams, the `ivy::io` readiness waits) never unwinds. For each: a cancellation of the
//! waiting task is `Err` carrying `WaitError::Cancelled` and the task goes on
//! (it can still block, shielded); an enclosing `ivy::timeout` is
//! `WaitError::Elapsed`; a passed deadline returns at once with
//! `WaitError::TimedOut`, without parking (on one worker, a queued sibling has
//! not run); a `close` from another task is `WaitError::Closed`. Many
//! iterations, exact outcomes, and no fd leaks (`/proc/self/fd`).
//!
//! Each case builds, per iteration, a call that would block (no data, a full
//! send buffer, no connector, a full accept backlog) and, where the socket can
//! be closed, its `close`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ivy::io::{Interest, PollFd};
use ivy::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use ivy::WaitError;

mod common;
use common::{ms, rt};

const ITERATIONS: usize = 40;

/// A call that blocks until its deadline, and the `close` of what it waits on
/// (if it can be closed).
struct Blocked {
    call: Box<dyn Fn(Option<Instant>) -> io::Result<()> + Send + Sync>,
    close: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Blocked {
    fn new(call: impl Fn(Option<Instant>) -> io::Result<()> + Send + Sync + 'static) -> Blocked {
        Blocked {
            call: Box::new(call),
            close: None,
        }
    }

    fn closed_by(mut self, close: impl Fn() + Send + Sync + 'static) -> Blocked {
        self.close = Some(Box::new(close));
        self
    }
}

/// What `close` of the `Result` layer applies to (a listener through an `Arc`).
trait Close: Clone + Send + Sync + 'static {
    fn close_all(&self);
}

macro_rules! impl_close {
    ($($t:ty),*) => {$(
        impl Close for $t {
            fn close_all(&self) {
                self.close();
            }
        }
    )*};
}
impl_close!(
    TcpStream,
    UnixStream,
    UdpSocket,
    UnixDatagram,
    Arc<TcpListener>,
    Arc<UnixListener>
);

/// A call on `socket` that blocks (`keep`, e.g. its peer, kept open
/// meanwhile), closed by `close` on another handle to the same socket.
fn on<S: Close>(
    socket: S,
    keep: impl Send + Sync + 'static,
    call: impl Fn(&S, Option<Instant>) -> io::Result<()> + Send + Sync + 'static,
) -> Blocked {
    let other = socket.clone();
    Blocked::new(move |d| {
        let _keep = &keep;
        call(&socket, d)
    })
    .closed_by(move || other.close_all())
}

/// The tests count fds: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The `WaitError` of a failed call; panics on success or on an OS error.
fn wait_error<T: std::fmt::Debug>(r: io::Result<T>) -> WaitError {
    let e = r.expect_err("the call should have failed");
    WaitError::of(&e).unwrap_or_else(|| panic!("not a WaitError: {e:?}"))
}

/// Runs `body` on a fresh runtime of `workers` workers, and checks that every fd
/// it opened is closed once the runtime is gone.
/// The process-wide fds ivy opens once (the stack guard's pidfd) are opened by
/// a first runtime before any count.
fn with_runtime(workers: usize, body: impl FnOnce() + Send + 'static) {
    let _serial = serial();
    static WARM_UP: std::sync::Once = std::sync::Once::new();
    WARM_UP.call_once(|| rt(1).block_on(|| ivy::spawn(|| ()).join().unwrap()));
    let before = open_fds();
    rt(workers).block_on(body);
    let after = open_fds();
    let fds: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect();
    assert_eq!(after, before, "fds leaked: {fds:?}");
}

/// The four checks of the module comment, over fresh `Blocked` calls from
/// `make` (which may capture state shared by the iterations).
fn check_all(make: impl Fn() -> Blocked + Send + Sync + Clone + 'static) {
    check_cancelled(make.clone());
    check_elapsed(make.clone());
    check_passed_deadline(make.clone(), WaitError::TimedOut);
    check_closed(make);
}

fn check_cancelled(make: impl Fn() -> Blocked + Send + Sync + 'static) {
    with_runtime(2, move || {
        for _ in 0..ITERATIONS {
            let blocked = make();
            let outcome = Arc::new(Mutex::new(None));
            let continued = Arc::new(AtomicBool::new(false));
            let started = Arc::new(AtomicBool::new(false));
            let (o, c, s) = (outcome.clone(), continued.clone(), started.clone());
            let task = ivy::spawn(move || {
                s.store(true, Ordering::SeqCst);
                let r = catch_unwind(AssertUnwindSafe(|| (blocked.call)(None)));
                *o.lock().unwrap() = Some(wait_error(r.expect("a _deadline call unwound")));
                // The task goes on after the error and can still block.
                ivy::shield(|| ivy::sleep(ms(1)));
                c.store(true, Ordering::SeqCst);
            });
            // Cancelled once it runs (a task cancelled before it starts never
            // runs), before or while it waits: either way `Cancelled`.
            while !started.load(Ordering::SeqCst) {
                ivy::yield_now();
            }
            ivy::sleep(ms(1));
            task.cancel();
            let _ = task.join();
            assert_eq!(*outcome.lock().unwrap(), Some(WaitError::Cancelled));
            assert!(continued.load(Ordering::SeqCst));
        }
    });
}

fn check_elapsed(make: impl Fn() -> Blocked + Send + Sync + 'static) {
    with_runtime(2, move || {
        for _ in 0..ITERATIONS {
            let blocked = make();
            let mut inner = None;
            let scope = ivy::timeout(ms(3), || inner = Some((blocked.call)(None)));
            assert!(scope.is_err(), "the scope elapsed");
            let inner = inner.expect("the call returned (did not unwind)");
            assert_eq!(wait_error(inner), WaitError::Elapsed);
        }
    });
}

/// A passed deadline is a non-blocking try: the outcome is `expected` (or Ok
/// for `None`), the call does not park (the sibling queued on the only worker
/// has not run) and returns at once.
fn check_passed_deadline_outcome(
    make: impl Fn() -> Blocked + Send + Sync + 'static,
    expected: Option<WaitError>,
) {
    with_runtime(1, move || {
        for _ in 0..ITERATIONS {
            let blocked = make();
            ivy::yield_now(); // a fresh I/O budget: the call must not yield for it
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            let sibling = ivy::spawn(move || r.store(true, Ordering::SeqCst));
            let start = Instant::now();
            let outcome = (blocked.call)(Some(Instant::now()));
            assert!(start.elapsed() < Duration::from_secs(1));
            assert!(!ran.load(Ordering::SeqCst), "the call parked");
            match expected {
                Some(e) => assert_eq!(wait_error(outcome), e),
                None => outcome.expect("a try that can succeed"),
            }
            sibling.join().unwrap();
            assert!(ran.load(Ordering::SeqCst));
        }
    });
}

fn check_passed_deadline(make: impl Fn() -> Blocked + Send + Sync + 'static, e: WaitError) {
    check_passed_deadline_outcome(make, Some(e));
}

fn check_closed(make: impl Fn() -> Blocked + Send + Sync + 'static) {
    with_runtime(2, move || {
        for _ in 0..ITERATIONS {
            let blocked = Arc::new(make());
            if blocked.close.is_none() {
                return;
            }
            let b = blocked.clone();
            let task = ivy::spawn(move || (b.call)(None));
            ivy::sleep(ms(2));
            (blocked.close.as_ref().unwrap())();
            assert_eq!(wait_error(task.join().unwrap()), WaitError::Closed);
            // Every later call fails so too, at once.
            assert_eq!(wait_error((blocked.call)(None)), WaitError::Closed);
        }
    });
}

// ---------------------------------------------------------------------------
// Socket set-ups

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Shrinks a socket's buffers so that filling them takes few writes.
fn small_buffers(fd: &impl AsRawFd) {
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        let v: libc::c_int = 4096;
        // SAFETY: setsockopt reads an int from `v`; `fd` is an open socket.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
    }
}

/// Writes with passed deadlines until the send buffer is full.
fn fill(write: impl Fn(&[u8], Option<Instant>) -> io::Result<usize>) {
    let chunk = vec![7u8; 16 * 1024];
    loop {
        match write(&chunk, Some(Instant::now())) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(WaitError::of(&e), Some(WaitError::TimedOut));
                return;
            }
        }
    }
}

fn full_tcp_writer() -> (TcpStream, TcpStream) {
    let (c, s) = tcp_pair();
    small_buffers(&c);
    small_buffers(&s);
    fill(|b, d| c.write_deadline(b, d));
    (c, s)
}

fn full_unix_writer() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    small_buffers(&a);
    fill(|buf, d| a.write_deadline(buf, d));
    (a, b)
}

fn listen_backlog_0(fd: &impl AsRawFd) {
    // SAFETY: `listen` on a bound socket fd that the caller owns.
    assert_eq!(unsafe { libc::listen(fd.as_raw_fd(), 0) }, 0);
}

/// A TCP listener whose accept queue is full (backlog 0, one connection
/// queued): a connect to it blocks (the SYN is dropped) until its deadline.
struct FullTcpListener {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

fn full_tcp_listener() -> Arc<FullTcpListener> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    listen_backlog_0(&l);
    let addr = l.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        match TcpStream::connect_deadline(addr, Some(Instant::now() + ms(100))) {
            Ok(s) => queued.push(s),
            Err(e) => {
                assert_eq!(WaitError::of(&e), Some(WaitError::TimedOut), "{e:?}");
                break;
            }
        }
        assert!(queued.len() < 16, "the backlog does not fill");
    }
    Arc::new(FullTcpListener {
        addr,
        _listener: l,
        _queued: queued,
    })
}

fn socket_path() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("ivy-net-result-{}-{n}.sock", std::process::id()))
}

/// A Unix listener whose backlog is full: a connect to it is retried until its
/// deadline.
struct FullUnixListener {
    path: std::path::PathBuf,
    _listener: std::os::unix::net::UnixListener,
    _queued: Vec<UnixStream>,
}

impl Drop for FullUnixListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn full_unix_listener() -> Arc<FullUnixListener> {
    let path = socket_path();
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listen_backlog_0(&l);
    let mut queued = Vec::new();
    loop {
        match UnixStream::connect_deadline(&path, Some(Instant::now())) {
            Ok(s) => queued.push(s),
            Err(e) => {
                assert_eq!(WaitError::of(&e), Some(WaitError::TimedOut), "{e:?}");
                break;
            }
        }
        assert!(queued.len() < 16, "the backlog does not fill");
    }
    Arc::new(FullUnixListener {
        path,
        _listener: l,
        _queued: queued,
    })
}

// ---------------------------------------------------------------------------
// TCP

fn tcp_read() -> Blocked {
    let (c, s) = tcp_pair();
    on(c, s, |c, d| c.read_deadline(&mut [0; 8], d).map(drop))
}

fn tcp_read_exact() -> Blocked {
    let (c, s) = tcp_pair();
    on(c, s, |c, d| c.read_exact_deadline(&mut [0; 8], d))
}

fn tcp_write() -> Blocked {
    let (c, s) = full_tcp_writer();
    on(c, s, |c, d| c.write_deadline(&[1; 4096], d).map(drop))
}

fn tcp_write_all() -> Blocked {
    let (c, s) = full_tcp_writer();
    on(c, s, |c, d| c.write_all_deadline(&[1; 4096], d))
}

fn tcp_accept() -> Blocked {
    let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    on(l, (), |l, d| l.accept_deadline(d).map(drop))
}

fn tcp_peek() -> Blocked {
    let (c, s) = tcp_pair();
    on(c, s, |c, d| c.peek_deadline(&mut [0; 8], d).map(drop))
}

#[test]
fn tcp_stream_peek() {
    check_all(tcp_peek);
}

#[test]
fn tcp_stream_read() {
    check_all(tcp_read);
}

#[test]
fn tcp_stream_read_exact() {
    check_all(tcp_read_exact);
}

#[test]
fn tcp_stream_write() {
    check_all(tcp_write);
}

#[test]
fn tcp_stream_write_all() {
    check_all(tcp_write_all);
}

#[test]
fn tcp_listener_accept() {
    check_all(tcp_accept);
}

#[test]
fn tcp_stream_connect() {
    // The listener outlives the runtimes of the checks: a full accept queue
    // takes a timed-out connect to find, so it is made once.
    let _serial = serial();
    let full = full_tcp_listener();
    drop(_serial);
    // Kept until the end: the fds are counted without it being dropped.
    let keep = full.clone();
    let make = move || {
        let full = full.clone();
        Blocked::new(move |d| TcpStream::connect_deadline(full.addr, d).map(drop))
    };
    check_cancelled(make.clone());
    check_elapsed(make.clone());
    check_passed_deadline(make, WaitError::TimedOut);
    let _serial = serial(); // its fds close while no other test counts
    drop(keep);
}

// ---------------------------------------------------------------------------
// Unix-domain streams

fn unix_read() -> Blocked {
    let (a, b) = UnixStream::pair().unwrap();
    on(a, b, |a, d| a.read_deadline(&mut [0; 8], d).map(drop))
}

fn unix_read_exact() -> Blocked {
    let (a, b) = UnixStream::pair().unwrap();
    on(a, b, |a, d| a.read_exact_deadline(&mut [0; 8], d))
}

fn unix_write() -> Blocked {
    let (a, b) = full_unix_writer();
    on(a, b, |a, d| a.write_deadline(&[1; 4096], d).map(drop))
}

fn unix_write_all() -> Blocked {
    let (a, b) = full_unix_writer();
    on(a, b, |a, d| a.write_all_deadline(&[1; 4096], d))
}

/// A listener on a fresh path, unlinked when the call is dropped.
fn unix_accept() -> Blocked {
    struct Unlink(std::path::PathBuf);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let path = socket_path();
    let l = Arc::new(UnixListener::bind(&path).unwrap());
    on(l, Unlink(path), |l, d| l.accept_deadline(d).map(drop))
}

#[test]
fn unix_stream_read() {
    check_all(unix_read);
}

#[test]
fn unix_stream_read_exact() {
    check_all(unix_read_exact);
}

#[test]
fn unix_stream_write() {
    check_all(unix_write);
}

#[test]
fn unix_stream_write_all() {
    check_all(unix_write_all);
}

#[test]
fn unix_listener_accept() {
    check_all(unix_accept);
}

#[test]
fn unix_stream_connect() {
    let _serial = serial();
    let full = full_unix_listener();
    drop(_serial);
    // Kept until the end: the fds are counted without it being dropped.
    let keep = full.clone();
    let make = move || {
        let full = full.clone();
        Blocked::new(move |d| UnixStream::connect_deadline(&full.path, d).map(drop))
    };
    check_cancelled(make.clone());
    check_elapsed(make.clone());
    check_passed_deadline(make, WaitError::TimedOut);
    let _serial = serial(); // its fds close while no other test counts
    drop(keep);
}

// ---------------------------------------------------------------------------
// UDP

fn udp_recv_from() -> Blocked {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    on(s, (), |s, d| s.recv_from_deadline(&mut [0; 8], d).map(drop))
}

#[test]
fn udp_socket_recv_from() {
    check_all(udp_recv_from);
}

fn udp_recv() -> Blocked {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(peer.local_addr().unwrap()).unwrap();
    on(s, peer, |s, d| s.recv_deadline(&mut [0; 8], d).map(drop))
}

#[test]
fn udp_socket_recv() {
    check_all(udp_recv);
}

fn udp_peek_from() -> Blocked {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    on(s, (), |s, d| s.peek_from_deadline(&mut [0; 8], d).map(drop))
}

fn udp_peek() -> Blocked {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(peer.local_addr().unwrap()).unwrap();
    on(s, peer, |s, d| s.peek_deadline(&mut [0; 8], d).map(drop))
}

#[test]
fn udp_socket_peek_from() {
    check_all(udp_peek_from);
}

#[test]
fn udp_socket_peek() {
    check_all(udp_peek);
}

fn unix_datagram_recv_from() -> Blocked {
    let (a, b) = UnixDatagram::pair().unwrap();
    on(a, b, |a, d| a.recv_from_deadline(&mut [0; 8], d).map(drop))
}

fn unix_datagram_recv() -> Blocked {
    let (a, b) = UnixDatagram::pair().unwrap();
    on(a, b, |a, d| a.recv_deadline(&mut [0; 8], d).map(drop))
}

/// A datagram pair whose sender's queue is full (the peer never receives).
fn unix_datagram_send() -> Blocked {
    let (a, b) = UnixDatagram::pair().unwrap();
    small_buffers(&a);
    fill(|buf, d| a.send_deadline(&buf[..512], d));
    on(a, b, |a, d| a.send_deadline(&[1; 512], d).map(drop))
}

#[test]
fn unix_datagram_recv_from_deadline() {
    check_all(unix_datagram_recv_from);
}

#[test]
fn unix_datagram_recv_deadline() {
    check_all(unix_datagram_recv);
}

#[test]
fn unix_datagram_send_deadline() {
    check_all(unix_datagram_send);
}

/// A UDP send does not block on loopback, so only what does not need a wait is
/// checked: a passed deadline sends at once without parking, and a closed
/// socket is `Closed`.
#[test]
fn udp_socket_send_to() {
    let make = || {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        on(tx, rx, move |tx, d| {
            tx.send_to_deadline(b"x", to, d).map(drop)
        })
    };
    check_passed_deadline_outcome(make, None);
    with_runtime(2, move || {
        for _ in 0..ITERATIONS {
            let blocked = make();
            (blocked.close.as_ref().unwrap())();
            assert_eq!(wait_error((blocked.call)(None)), WaitError::Closed);
        }
    });
}

// ---------------------------------------------------------------------------
// ivy::io readiness waits on foreign fds (nothing of ivy's to close)

fn io_wait_readable() -> Blocked {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    Blocked::new(move |d| {
        let _peer = &b;
        ivy::io::wait_readable_deadline(&a, d)
    })
}

fn io_wait_writable() -> Blocked {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    small_buffers(&a);
    a.set_nonblocking(true).unwrap();
    let chunk = [7u8; 4096];
    while io::Write::write(&mut &a, &chunk).is_ok() {}
    Blocked::new(move |d| {
        let _peer = &b;
        ivy::io::wait_writable_deadline(&a, d)
    })
}

fn io_poll() -> Blocked {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (c, d2) = std::os::unix::net::UnixStream::pair().unwrap();
    Blocked::new(move |d| {
        let _peers = (&b, &d2);
        let mut fds = [
            PollFd::new(&a, Interest::READABLE),
            PollFd::new(&c, Interest::READABLE),
        ];
        let r = ivy::io::poll_deadline(&mut fds, d);
        assert!(fds.iter().all(|f| f.readiness().is_empty()));
        r.map(drop)
    })
}

#[test]
fn io_wait_readable_deadline() {
    check_all(io_wait_readable);
}

#[test]
fn io_wait_writable_deadline() {
    check_all(io_wait_writable);
}

#[test]
fn io_poll_deadline() {
    check_all(io_poll);
}

/// The unwinding forms keep their behaviour: an elapsed scope reaches I/O code
/// as a `TimedOut` error (carrying `Elapsed`), a close as `NotConnected`.
#[test]
fn plain_forms_report_timeouts_and_closes_as_io_errors() {
    with_runtime(2, || {
        use std::io::Read;
        let (mut c, _s) = tcp_pair();
        let mut kind = None;
        let scope = ivy::timeout(ms(3), || {
            let e = c.read(&mut [0; 8]).unwrap_err();
            kind = Some((e.kind(), WaitError::of(&e)));
        });
        assert!(scope.is_err());
        assert_eq!(
            kind,
            Some((io::ErrorKind::TimedOut, Some(WaitError::Elapsed)))
        );
        c.set_read_timeout(Some(ms(2))).unwrap();
        let e = c.read(&mut [0; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(WaitError::of(&e), Some(WaitError::TimedOut));
        c.close();
        let e = c.read(&mut [0; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        assert_eq!(WaitError::of(&e), Some(WaitError::Closed));
    });
}
