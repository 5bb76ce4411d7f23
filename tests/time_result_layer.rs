//! The `Result` forms of sleeping and yielding (`ivy::time::sleep_deadline`,
//! `ivy::time::yield_now_checked`) and what `ivy::WaitError` promises of
//! itself: interruptions are values, never unwinds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ivy::sync::Event;
use ivy::time::{sleep_deadline, yield_now_checked};
use ivy::WaitError;

mod common;
use common::{ms, rt};

/// Runs `f`, failing the test if it unwinds.
fn no_unwind<R>(f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("a Result form unwound"))
}

/// Reaching the deadline is success; a passed one returns at once without
/// parking (on one worker, a sibling queued before the call has not run).
#[test]
fn sleep_deadline_reaches_its_deadline_and_a_passed_one_never_parks() {
    let rt = rt(1);
    rt.block_on(|| {
        for round in 0..50 {
            let ran = Arc::new(AtomicBool::new(false));
            let r2 = ran.clone();
            let sibling = ivy::spawn(move || r2.store(true, Ordering::SeqCst));
            assert_eq!(no_unwind(|| sleep_deadline(Some(Instant::now()))), Ok(()));
            assert!(
                !ran.load(Ordering::SeqCst),
                "a passed deadline parked (round {round})"
            );
            sibling.join().unwrap();
            let start = Instant::now();
            assert_eq!(no_unwind(|| sleep_deadline(Some(start + ms(2)))), Ok(()));
            assert!(start.elapsed() >= ms(2), "woke early (round {round})");
        }
    });
}

/// Cancellation and an enclosing timeout end the sleep as values; the task
/// then goes on, and can still block inside a shield.
#[test]
fn sleep_deadline_reports_cancellation_and_an_elapsed_scope() {
    let rt = rt(2);
    rt.block_on(|| {
        for round in 0..20 {
            let started = Arc::new(Event::new());
            let s2 = started.clone();
            let h = ivy::spawn(move || {
                s2.set();
                let first = no_unwind(|| sleep_deadline(None));
                let shielded =
                    ivy::shield(|| no_unwind(|| sleep_deadline(Some(Instant::now() + ms(1)))));
                let yielded = no_unwind(yield_now_checked);
                (first, shielded, yielded)
            });
            started.wait();
            h.cancel();
            let (first, shielded, yielded) = h.join().expect("the task returned");
            assert_eq!(first, Err(WaitError::Cancelled), "round {round}");
            assert_eq!(shielded, Ok(()), "round {round}");
            assert_eq!(yielded, Err(WaitError::Cancelled), "round {round}");

            let mut got = None;
            let scope = ivy::timeout(ms(2), || got = Some(no_unwind(|| sleep_deadline(None))));
            assert!(scope.is_err(), "round {round}");
            assert_eq!(got, Some(Err(WaitError::Elapsed)), "round {round}");
        }
    });
}

/// `yield_now_checked` lets a woken sibling run (one worker) and is `Ok` in a
/// task that is not interrupted, and on a plain thread.
#[test]
fn yield_now_checked_lets_others_run() {
    let rt = rt(1);
    rt.block_on(|| {
        for round in 0..100 {
            let (go, started) = (Arc::new(Event::new()), Arc::new(Event::new()));
            let ran = Arc::new(AtomicBool::new(false));
            let (g2, s2, r2) = (go.clone(), started.clone(), ran.clone());
            let sibling = ivy::spawn(move || {
                s2.set();
                g2.wait();
                r2.store(true, Ordering::SeqCst);
            });
            started.wait();
            go.set(); // the sibling is runnable now, queued behind us
            assert!(!ran.load(Ordering::SeqCst));
            assert_eq!(yield_now_checked(), Ok(()));
            assert!(
                ran.load(Ordering::SeqCst),
                "the sibling did not run (round {round})"
            );
            sibling.join().unwrap();
        }
    });
    assert_eq!(yield_now_checked(), Ok(()));
}

#[test]
fn wait_error_kinds_and_io_round_trip() {
    use std::io::ErrorKind;
    let all = [
        (WaitError::Cancelled, true, ErrorKind::Interrupted),
        (WaitError::Elapsed, true, ErrorKind::TimedOut),
        (WaitError::TimedOut, false, ErrorKind::TimedOut),
        (WaitError::Closed, false, ErrorKind::NotConnected),
    ];
    for (e, interrupt, kind) in all {
        assert_eq!(e.is_interrupt(), interrupt, "{e:?}");
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), kind, "{e:?}");
        assert_eq!(WaitError::of(&io), Some(e));
        assert_eq!(io.to_string(), e.to_string());
    }
    assert_eq!(
        WaitError::of(&std::io::Error::from(ErrorKind::TimedOut)),
        None
    );
}
