//! The stack filler: a helper thread that faults in the first page of fresh stacks before a task
//! needs one, so that a burst of new tasks does not pay a page fault each on its worker.
//!
//! A task's first run touches one page of its stack, the one holding its entry frames (just
//! below the top reserve, if any). On a slot that is fresh from a slab, or whose pages were
//! discarded, that touch is a page fault: about 3 µs of kernel time on our test VM, mostly
//! zeroing and allocating the page, paid on the worker, serially, by every task of a burst (a
//! third of the start-up of 10k Python sleepers; benches/compare/findings/prefault.md). The work
//! cannot be avoided, but it can be done elsewhere: while workers take pre-faulted slots, this
//! thread faults in the next ones, on another core when one is free.
//!
//! Protocol (`pool.rs` owns the lists): a worker that takes a slot that will fault (a cold one,
//! or one it carves) or that takes a pre-faulted slot and leaves fewer than `READY_LOW` of them
//! calls `request(class)`. The filler then tops the class's *ready* list up to `READY_TARGET`
//! slots in batches (`pool::refill`): cold slots first, else freshly carved and guarded ones, each
//! with its first-frames page written to (the fault happens here). So the filler works only
//! while fresh slots are being consumed, and at most `READY_TARGET` pages per class wait unused;
//! `trim` ages ready slots like warm ones, so an idle runtime gives them back within two trim
//! intervals, and a runtime's shutdown discards them with every idle stack (a batch in flight
//! across it is discarded too). The thread is started on the first request and exits after
//! `IDLE_EXIT` without one, so an idle process holds no filler thread.
//!
//! Decisions: only with madvise guards (unlimited): under the mprotect fallback every guard
//! counts against a budget, and slots must not sit guarded on a list nobody asked for. The
//! thread is process-wide, like the pool. A process started with `IVY_STACK_PREFAULT=0` never
//! starts it (tasks then fault their own pages, as before). If the thread cannot be spawned,
//! nothing is lost but the head start. After `fork` the child starts a filler of its own (the
//! running one is recorded by process id); a class whose request was pending at the fork is
//! served by it only once another class asks (its bit is still set), which costs the child its
//! head start on that class, nothing else.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{guard, pool};

/// Pre-faulted slots a class keeps ready while fresh slots are being taken (1 MiB of pages at
/// most, with 4 KiB pages)...
pub(super) const READY_TARGET: usize = 256;
/// ...and the count below which taking one asks for more: a batch short, so that the filler
/// keeps a burst's pace rather than waiting for the list to run low.
pub(super) const READY_LOW: usize = READY_TARGET - 64;
/// `WANTED` has a bit per class.
const _: () = assert!(super::NUM_CLASSES <= 64);

/// The filler exits after this long without a request.
const IDLE_EXIT: Duration = Duration::from_secs(1);

/// Classes asked for, one bit each. Set by `request`, taken whole by the filler: a request for a
/// class already asked for costs one load, so the workers of a burst, which ask at every take
/// while the list is low, neither lock nor wake anyone then.
static WANTED: AtomicU64 = AtomicU64::new(0);

struct Filler {
    /// The process id the running filler belongs to; 0 when none runs.
    pid: u32,
    /// Whether it waits for a request (and needs a signal).
    waiting: bool,
}

static FILLER: Mutex<Filler> = Mutex::new(Filler {
    pid: 0,
    waiting: false,
});
static WORK: Condvar = Condvar::new();

/// Asks the filler to top up `class`'s ready slots, starting it if it is not running.
///
/// No lost request: the bit is set before the lock is taken, and the filler decides to wait, or
/// to exit, only under the lock after finding no bit set; so either it sees the bit, or the
/// requester finds it waiting (and signals it) or gone (and starts a new one). A requester that
/// finds its bit already set leaves it to the one that set it.
pub(super) fn request(class: usize) {
    if !enabled() {
        return;
    }
    let bit = 1 << class;
    // SeqCst, also the first look (a plain load on x86): a bit seen set was set before this
    // look and is cleared by the filler after it, so the fill that follows sees this take.
    if WANTED.load(Ordering::SeqCst) & bit != 0 || WANTED.fetch_or(bit, Ordering::SeqCst) & bit != 0
    {
        return;
    }
    let pid = std::process::id();
    let mut filler = lock();
    if filler.pid == pid {
        if filler.waiting {
            WORK.notify_one();
        }
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ivy-stack-fill".into())
        .spawn(run);
    match spawned {
        Ok(_) => filler.pid = pid,
        // Out of threads: tasks fault their own pages, as without the filler.
        Err(_) => {
            WANTED.fetch_and(!bit, Ordering::SeqCst);
        }
    }
}

/// Whether the filler may run: madvise guards, and not turned off by `IVY_STACK_PREFAULT=0`.
pub(super) fn enabled() -> bool {
    // The crate's unit tests share the pool across test threads and check its lists exactly, so
    // the thread stays out of them; they call `pool::refill` themselves (tests/stack_prefault.rs
    // tests the thread).
    if cfg!(test) {
        return false;
    }
    const UNKNOWN: u8 = 0;
    const ON: u8 = 1;
    const OFF: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
    match STATE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let off = std::env::var("IVY_STACK_PREFAULT").is_ok_and(|v| v.trim() == "0");
            let on = !off && guard::unlimited();
            STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
    }
}

fn run() {
    loop {
        let wanted = WANTED.swap(0, Ordering::SeqCst);
        if wanted != 0 {
            (0..super::NUM_CLASSES)
                .filter(|class| wanted & (1 << class) != 0)
                .for_each(pool::refill);
            continue;
        }
        let mut filler = lock();
        while WANTED.load(Ordering::SeqCst) == 0 {
            filler.waiting = true;
            let (guard, waited) = WORK
                .wait_timeout(filler, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            filler = guard;
            filler.waiting = false;
            if waited.timed_out() && WANTED.load(Ordering::SeqCst) == 0 {
                filler.pid = 0;
                return;
            }
        }
    }
}

fn lock() -> MutexGuard<'static, Filler> {
    // Nothing panics while holding it.
    FILLER.lock().unwrap_or_else(PoisonError::into_inner)
}
