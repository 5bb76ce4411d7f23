//! `Builder::stack_top_reserve`: bytes set aside at the top of every task's stack for a
//! binding's per-task memory (the Python binding's data-stack root chunk).
//!
//! What is promised: the reserve is the stack's top (its end is the page-aligned top of the
//! slot, its start 16-aligned), the task's frames lie below it, each task has its own (no two
//! live tasks share a byte of it), the task still gets its whole `stack_size` for its frames
//! and its 128-byte descriptor (between the frames and the reserve, out of the task's reach),
//! and `task::stack_top_reserve` answers `None` where there is no reserve of the caller's.

use std::time::Duration;

use ivy::Runtime;

mod common;

const RESERVE: usize = 16 << 10;
const STACK: usize = 64 << 10;

fn runtime(reserve: usize) -> Runtime {
    Runtime::builder()
        .workers(2)
        .stack_size(STACK)
        .stack_top_reserve(reserve)
        .build()
        .unwrap()
}

#[test]
fn reserve_is_the_top_of_each_tasks_own_stack() {
    let rt = runtime(RESERVE);
    const TASKS: usize = 300;
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            rt.spawn(move || {
                let (p, len) = ivy::task::stack_top_reserve().expect("a reserve");
                let lo = p.as_ptr() as usize;
                let local = 0u8;
                let here = std::ptr::addr_of!(local) as usize;
                assert_eq!(len, RESERVE);
                assert_eq!(lo % 16, 0);
                assert_eq!((lo + len) % 4096, 0, "the reserve ends at the stack's top");
                assert!(here < lo && here > lo - STACK, "frames below the reserve");
                let mark = (i % 251) as u8 + 1;
                // SAFETY: the reserve is this task's memory while it runs.
                unsafe { std::ptr::write_bytes(p.as_ptr(), mark, len) };
                ivy::sleep(Duration::from_millis(2)); // others run and fill theirs meanwhile
                                                      // SAFETY: as above.
                let mem = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
                mem.iter().all(|&b| b == mark)
            })
        })
        .collect();
    let intact = handles.into_iter().map(|h| h.join().unwrap());
    assert_eq!(intact.filter(|&ok| ok).count(), TASKS);
}

#[inline(never)]
fn use_stack(bytes: usize) -> u8 {
    let mut frame = [0u8; 52 << 10];
    std::hint::black_box(&mut frame);
    for i in (0..frame.len().min(bytes)).step_by(1024) {
        frame[i] = i as u8;
    }
    std::hint::black_box(&mut frame)[bytes / 2]
}

/// A task asking for 64 KiB uses 52 KiB of frames: without the reserve added on top of its
/// stack size (the 64 KiB class minus 16 KiB), this would hit the guard page and abort.
#[test]
fn the_task_still_gets_its_stack_size() {
    let rt = runtime(RESERVE);
    let got = rt.spawn(|| use_stack(52 << 10)).join().unwrap();
    assert_eq!(got, ((26 << 10) % 256) as u8);
    let sized = ivy::task::Builder::new()
        .stack_size(STACK)
        .spawn_on(&rt.handle(), || use_stack(52 << 10))
        .unwrap();
    sized.join().unwrap();
}

#[test]
fn none_without_a_reserve_of_the_callers() {
    assert!(ivy::task::stack_top_reserve().is_none(), "plain thread");
    let plain = runtime(0);
    assert!(plain
        .spawn(|| ivy::task::stack_top_reserve().is_none())
        .join()
        .unwrap());
    let rt = runtime(RESERVE);
    let in_generator = rt
        .spawn(|| {
            assert!(ivy::task::stack_top_reserve().is_some());
            let g = ivy::Generator::new(|y| y.yield_(ivy::task::stack_top_reserve().is_none()));
            g.unwrap().collect::<Vec<_>>()
        })
        .join()
        .unwrap();
    assert_eq!(
        in_generator,
        [true],
        "a generator body runs on a stack of its own"
    );
}

#[test]
fn oversized_reserves_are_refused() {
    let Err(err) = Runtime::builder()
        .workers(1)
        .stack_top_reserve((1 << 20) + 1)
        .build()
    else {
        panic!("more than 1 MiB is refused");
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let rt = runtime(RESERVE);
    let Err(err) = ivy::task::Builder::new()
        .stack_size(1 << 30)
        .spawn_on(&rt.handle(), || ())
    else {
        panic!("the stack size plus the reserve is above the maximum");
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

const FILLER_HINT: &str = "the reserve filler's hint";

/// Child side of `a_filled_reserve_leaves_the_tasks_descriptor_intact`.
#[test]
fn child_entry() {
    let Ok(case) = std::env::var("IVY_RESERVE_CHILD") else {
        return;
    };
    assert_eq!(case, "fill-then-overflow");
    let rt = runtime(RESERVE);
    // The 64 KiB class, reserve included.
    common::overflow_in_task(&rt, "reserve-filler", Some((64 << 10) - RESERVE), || {
        ivy::task::set_stack_overflow_hint(FILLER_HINT);
        let (p, len) = ivy::task::stack_top_reserve().expect("a reserve");
        for _ in 0..3 {
            // SAFETY: the reserve is this task's memory while it runs.
            unsafe { std::ptr::write_bytes(p.as_ptr(), 0xff, len) };
            ivy::sleep(Duration::from_millis(1)); // through the descriptor's thread state
        }
    })
}

/// The task's descriptor (stack header: what an overflow report names, the saved thread
/// state) sits between the frames and the reserve: a task that fills its whole reserve with
/// 0xff bytes, parks through it, and overflows is still reported by name, with the hint it
/// set before the fill. Were the two to overlap, the overwritten guard range would make the
/// overflow an unexplained SIGSEGV.
#[test]
fn a_filled_reserve_leaves_the_tasks_descriptor_intact() {
    let out = common::run_child(&mut common::child_case(
        "child_entry",
        "IVY_RESERVE_CHILD",
        "fill-then-overflow",
    ));
    common::assert_overflow_reported(&out, "reserve-filler", "stderr");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(FILLER_HINT), "{stderr}");
}

/// A 1-byte stack under the largest reserve a few bytes short of its size class: the task
/// still gets a stack whose frames and header fit below the reserve (regression: the header
/// landed in the guard page and the worker faulted writing it), on every worker count.
#[test]
fn a_tiny_stack_under_a_big_reserve_runs() {
    let reserve = (1 << 20) - 16;
    for workers in [1, 2] {
        let rt = Runtime::builder()
            .workers(workers)
            .stack_top_reserve(reserve)
            .build()
            .unwrap();
        let hs: Vec<_> = (0..20u64)
            .map(|i| {
                ivy::task::Builder::new()
                    .stack_size(1)
                    .spawn_on(&rt.handle(), move || {
                        let (_, len) = ivy::task::stack_top_reserve().expect("a reserve");
                        assert_eq!(len, reserve);
                        ivy::yield_now();
                        i * 2
                    })
                    .unwrap()
            })
            .collect();
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, (0..20u64).map(|i| i * 2).sum::<u64>());
    }
}
