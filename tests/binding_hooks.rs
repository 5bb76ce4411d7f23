//! ivy's hooks for language bindings (the Python package uses each):
//! `Current::uncancel` (one-shot cancellation), `Builder::fifo_spawns` (start
//! order), `task::set_stack_overflow_hint` (the overflow report's hint).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ivy::WaitError;

mod common;

#[test]
fn uncancel_makes_a_cancellation_one_shot() {
    for _ in 0..200 {
        let out = ivy::Builder::new()
            .workers(2)
            .build()
            .unwrap()
            .block_on(|| {
                let ready_tx = Arc::new(ivy::sync::Event::new());
                let ready = ready_tx.clone();
                let h = ivy::spawn(move || {
                    ready.set();
                    let first = ivy::time::sleep_deadline(None);
                    let me = ivy::current().unwrap();
                    // Sticky until withdrawn...
                    let sticky = ivy::time::sleep_deadline(Some(Instant::now()));
                    let withdrawn = me.uncancel();
                    let again = me.uncancel();
                    // ...and then a blocking call runs normally.
                    let after =
                        ivy::time::sleep_deadline(Some(Instant::now() + Duration::from_millis(1)));
                    (first, sticky, withdrawn, again, after)
                });
                ready_tx.wait();
                h.cancel();
                h.join().unwrap()
            });
        assert_eq!(
            out,
            (
                Err(WaitError::Cancelled),
                Err(WaitError::Cancelled),
                true,
                false,
                Ok(())
            )
        );
    }
}

#[test]
fn uncancel_cannot_withdraw_a_shutdown() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(ivy::sync::Event::new());
    {
        let rt = ivy::Builder::new().workers(1).build().unwrap();
        let (seen2, ready2) = (seen.clone(), ready.clone());
        rt.spawn(move || {
            ready2.set();
            let first = ivy::time::sleep_deadline(None);
            let withdrawn = ivy::current().unwrap().uncancel();
            let next = ivy::time::sleep_deadline(Some(Instant::now() + Duration::from_secs(60)));
            seen2.lock().unwrap().push((first, withdrawn, next));
        });
        ready.wait();
    } // dropped: shutdown cancels the task, which must still end
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Err(WaitError::Cancelled), false, Err(WaitError::Cancelled))]
    );
}

#[test]
fn fifo_spawns_start_tasks_in_spawn_order() {
    for _ in 0..50 {
        let rt = ivy::Builder::new()
            .workers(1)
            .fifo_spawns(true)
            .build()
            .unwrap();
        let order = rt.block_on(|| {
            let order = Arc::new(Mutex::new(Vec::new()));
            let hs: Vec<_> = (0..500)
                .map(|i| {
                    let order = order.clone();
                    ivy::spawn(move || order.lock().unwrap().push(i))
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let v = order.lock().unwrap().clone();
            v
        });
        assert_eq!(order, (0..500).collect::<Vec<_>>());
    }
    // The default stays newest first (depth-first spawning).
    let order = ivy::Builder::new()
        .workers(1)
        .build()
        .unwrap()
        .block_on(|| {
            let order = Arc::new(Mutex::new(Vec::new()));
            let hs: Vec<_> = (0..5)
                .map(|i| {
                    let order = order.clone();
                    ivy::spawn(move || order.lock().unwrap().push(i))
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let v = order.lock().unwrap().clone();
            v
        });
    assert_eq!(order, vec![4, 3, 2, 1, 0]);
}

const HINT: &str = "raise it with the binding's own stack option";

#[test]
fn child_entry() {
    let Ok(case) = std::env::var("IVY_BINDING_CHILD") else {
        return;
    };
    assert_eq!(case, "overflow");
    let rt = ivy::Builder::new().workers(1).build().unwrap();
    common::overflow_in_task(&rt, "foreign", Some(64 * 1024), || {
        ivy::task::set_stack_overflow_hint(HINT)
    })
}

#[test]
fn an_overflow_report_ends_with_the_bindings_hint() {
    let out = common::run_child(&mut common::child_case(
        "child_entry",
        "IVY_BINDING_CHILD",
        "overflow",
    ));
    common::assert_overflow_reported(&out, "foreign", "stderr");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(HINT), "{stderr}");
    assert!(
        !stderr.contains("ivy::task::Builder::stack_size"),
        "{stderr}"
    );
}
