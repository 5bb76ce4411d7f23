//! What the `tests/hook_real_*.rs` tests share: the servers they start
//! themselves on free loopback ports (the delayed HTTP server of
//! `tests/real/delayed_http.py`, a real `redis-server`), killed when dropped so
//! that a failing test leaves nothing running; the delayed server's bodies; and
//! a watchdog that turns a hang (what a worker-blocking call does to a test
//! whose tasks wait on each other) into a failure.
//!
//! The test thread talks to the servers with plain std::net calls: outside a
//! task the hook calls straight through to libc.

#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A server process, killed and reaped on drop (also when a test panics).
pub struct Server {
    child: Child,
    pub port: u16,
    dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `cmd`'s process gets SIGKILL when the thread that started it ends, so a
/// test binary killed from outside (a CI timeout) leaves no server behind.
fn dies_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/real/delayed_http.py` on a free port: every `/item/<k>` answer is
/// delayed `delay_ms`.
pub fn delayed_http(delay_ms: u64) -> Server {
    let mut child = dies_with_parent(&mut Command::new("python3"))
        .arg(repo().join("tests/real/delayed_http.py"))
        .args(["--port", "0", "--delay-ms", &delay_ms.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 tests/real/delayed_http.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("delayed_http.py's LISTENING line");
    let port = line
        .trim()
        .strip_prefix("LISTENING port=")
        .and_then(|p| p.parse().ok());
    let Some(port) = port else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("delayed_http.py did not start: {line:?}");
    };
    Server {
        child,
        port,
        dir: None,
    }
}

/// A `redis-server` on a free loopback port, no persistence, answering PING.
pub fn redis_server() -> Server {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ivy-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = dies_with_parent(&mut Command::new("redis-server"))
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args([
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .args(["--maxclients", "4000"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server)");
        let mut server = Server {
            child,
            port,
            dir: Some(dir),
        };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if redis_ping(port) {
                return server;
            }
            if server.child.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: try another
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(server);
    }
    panic!("redis-server did not start");
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Item k's body as `delayed_http.py`'s `body()` defines it.
pub fn body(k: u32) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = format!("item {k}\n").into_bytes();
    let n = (k as usize * 37) % 2000 + 100;
    b.extend((0..n).map(|i| ALPHABET[(i * 7 + k as usize) % 36]));
    b
}

/// GET `path` from the delayed server with a plain blocking socket (call it
/// outside tasks); the body.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    body.to_string()
}

/// The delayed server's peak of item requests held at once since the last
/// [`http_reset`].
pub fn http_peak(port: u16) -> usize {
    let stats = http_get(port, "/stats");
    stats
        .lines()
        .find_map(|l| l.strip_prefix("peak "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad /stats answer {stats:?}"))
}

pub fn http_reset(port: u16) {
    assert_eq!(http_get(port, "/reset"), "ok\n");
}

/// Runs `f` on its own thread; panics if it has not returned within `limit`
/// (a worker blocked by an unhooked call hangs a test whose tasks wait on each
/// other: this makes that a failure). The hung thread is left behind; the
/// failing test ends the process.
pub fn watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("did not finish within {limit:?}: a hooked call blocked its worker?"),
    }
}

/// Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit):
/// a fresh machine's default soft limit (1024) is below what 1000 connections
/// with both ends in this process need. Panics, naming the limit, if the hard
/// limit is lower.
pub fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, a valid local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur >= want {
        return;
    }
    assert!(
        lim.rlim_max >= want,
        "RLIMIT_NOFILE hard limit {} is below the {want} fds this test needs",
        lim.rlim_max
    );
    lim.rlim_cur = want;
    // SAFETY: setrlimit reads the struct it is given, a valid local.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Open fds of this process (`/proc/self/fd`, less the directory's own),
/// after a first runtime has come and gone: ivy opens a few fds once per
/// process (a pidfd for its stack guards), which are not leaks.
pub fn open_fds() -> usize {
    ivy::Builder::new()
        .workers(1)
        .build()
        .unwrap()
        .block_on(|| ivy::sleep(Duration::from_millis(1)));
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// Serialises the tests of one binary that count fds: a test running beside
/// them would open and close its own.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
