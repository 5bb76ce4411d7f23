//! The hook layer's proof with a real database from Rust (issue 13): the
//! `redis` crate's synchronous API (its own std::net sockets) in 1000 ivy
//! tasks against a `redis-server` this test starts on a free loopback port,
//! while slow commands (BLPOP, held by the server until a push) are
//! outstanding on other connections. Run by tests/real/run.sh.
#![cfg(feature = "hook")]

#[path = "real/support.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Commands;
use support::{open_fds, redis_server, watchdog};

const WORKERS: usize = 2;
const FAST: usize = 1000;
const SLOW: usize = 4;
/// Connections open at once among the fast tasks.
const CONNS: usize = 200;

fn value_of(k: usize) -> String {
    let tail: String = (0..k % 50)
        .map(|i| (b'a' + ((i + k) % 26) as u8) as char)
        .collect();
    format!("value-{k}-{tail}")
}

fn blocked_clients(con: &mut redis::Connection) -> usize {
    let info: String = redis::cmd("INFO").arg("clients").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO clients names blocked_clients")
}

/// 4 tasks send `BLPOP ivy:slow:<i> 30`, which the server holds; once the
/// server reports all 4 blocked, 1000 tasks (200 connected at once) each
/// SET / GET (byte-exact) / INCR. Only then are the lists pushed: every slow
/// task gets exactly its own value, and had seen all 1000 fast tasks complete
/// while its command was outstanding (with 2 workers, a worker-blocking BLPOP
/// would have stopped everything). The counter is exactly 1000, and no fd
/// is left open once the runtime is gone.
#[test]
fn redis_crate_1000_tasks_while_blpop_outstanding() {
    let server = redis_server();
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let fds_before = open_fds();
    let (fast_ok, counter, slow) = watchdog(Duration::from_secs(120), move || {
        let rt = ivy::Builder::new().workers(WORKERS).build().unwrap();
        rt.block_on(move || {
            let client = redis::Client::open(url).unwrap();
            let mut ctl = client.get_connection().expect("connect");
            redis::cmd("FLUSHALL").exec(&mut ctl).unwrap();
            let fast_done = Arc::new(AtomicUsize::new(0));
            let slow: Vec<_> = (0..SLOW)
                .map(|i| {
                    let (client, fast_done) = (client.clone(), fast_done.clone());
                    ivy::spawn(move || {
                        let mut con = client.get_connection().expect("connect");
                        let got: Option<(String, String)> =
                            con.blpop(format!("ivy:slow:{i}"), 30.0).expect("BLPOP");
                        (got, fast_done.load(Ordering::SeqCst))
                    })
                })
                .collect();
            // Handshake through the server: every BLPOP is held before the fast tasks start.
            let give_up = Instant::now() + Duration::from_secs(20);
            while blocked_clients(&mut ctl) != SLOW {
                assert!(
                    Instant::now() < give_up,
                    "the BLPOPs never reached the server"
                );
                ivy::sleep(Duration::from_millis(5));
            }
            let conns = Arc::new(ivy::sync::Semaphore::new(CONNS));
            let fast: Vec<_> = (0..FAST)
                .map(|k| {
                    let (client, fast_done, conns) =
                        (client.clone(), fast_done.clone(), conns.clone());
                    ivy::spawn(move || {
                        let ok = {
                            let _permit = conns.acquire();
                            let mut con = client.get_connection().expect("connect");
                            let key = format!("ivy:key:{k}");
                            let () = con.set(&key, value_of(k)).expect("SET");
                            let got: Vec<u8> = con.get(&key).expect("GET");
                            let _: i64 = con.incr("ivy:counter", 1).expect("INCR");
                            got == value_of(k).into_bytes()
                        };
                        fast_done.fetch_add(1, Ordering::SeqCst);
                        ok
                    })
                })
                .collect();
            let fast_ok = fast
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&ok| ok)
                .count();
            for i in 0..SLOW {
                let _: i64 = ctl
                    .rpush(format!("ivy:slow:{i}"), format!("wake-{i}"))
                    .unwrap();
            }
            let slow: Vec<_> = slow.into_iter().map(|t| t.join().unwrap()).collect();
            let counter: i64 = ctl.get("ivy:counter").unwrap();
            (fast_ok, counter, slow)
        })
    });
    assert_eq!(
        fast_ok, FAST,
        "fast tasks whose GET gave back their own value"
    );
    assert_eq!(counter, FAST as i64, "INCR count");
    for (i, (got, fast_seen)) in slow.into_iter().enumerate() {
        assert_eq!(
            got,
            Some((format!("ivy:slow:{i}"), format!("wake-{i}"))),
            "slow task {i}: woken by its own push, not its timeout"
        );
        assert_eq!(
            fast_seen, FAST,
            "slow task {i}: fast tasks completed while its BLPOP was outstanding"
        );
    }
    assert_eq!(
        open_fds(),
        fds_before,
        "fds leaked (every connection is closed, the runtime gone)"
    );
}
