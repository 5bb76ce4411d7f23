//! The workers' kernel scheduling policy: `SCHED_BATCH` by default.
//!
//! A worker is a throughput thread: it runs many tasks, and it sleeps in
//! `epoll_wait` only when none is ready. Under Linux's default policy
//! (`SCHED_OTHER`) a thread woken from such a sleep usually preempts the
//! thread running on the CPU it is woken on, at once. When a server shares
//! its cores with the programs that talk to it (its clients, a proxy, a load
//! generator), that preemption locks the pair into one message per switch:
//! the client sends one request, the woken worker preempts the client, serves
//! that one request and sleeps again, and so on. Measured with `perf sched` on
//! a 2-core VM (an echo server, 100 connections, its load generator on the
//! same cores): one worker and the client shared one CPU, switching every
//! 10-15 µs, while the other CPU sat idle 24-30% of the time; the kernel moved
//! the waiting worker only at its next tick (delays of up to 4 ms, the
//! server's p99). A server with no runtime at all, one thread and one epoll
//! set per core, falls into the same pattern in some runs.
//!
//! `SCHED_BATCH` (sched(7)) changes one thing: a woken batch thread does not
//! preempt the running thread; it runs when that thread blocks or its slice
//! ends (or the tick preempts it). Placement on an idle CPU, fairness between
//! threads and the nice value are unchanged, and on an idle CPU a woken worker
//! runs at once, as before. So a client that sends ten requests finishes
//! sending them, and the worker then serves ten. Same machine, medians of 7
//! interleaved runs (benches/compare/NOTES.md, round 16): echo at 10
//! connections 108k -> 133k messages/s and p99 3.2 ms -> 0.14 ms; at 100
//! connections 122k -> 149k (tokio: 150k) and p99 8.3 -> 4.4 ms; the rows
//! without a client on the cores level.
//!
//! The rules:
//! - **Only from `SCHED_OTHER`.** A worker inherits the policy of the thread
//!   that built the runtime. One started under `SCHED_IDLE` or a real-time
//!   policy keeps it: the user chose it.
//! - **Workers only.** The blocking pool's threads run the user's blocking
//!   code: they keep the policy of the thread that built the runtime (a pool
//!   thread is started by a worker and inherits its `SCHED_BATCH`, so it
//!   returns to `SCHED_OTHER` first). The thread that calls `block_on` is the
//!   user's and keeps its own. The stack filler (`stack/refill.rs`), one
//!   helper for the whole process, inherits the policy of the thread whose
//!   stack request starts it, usually a worker.
//! - **A hint.** If the kernel refuses (a seccomp filter can), the worker runs
//!   under `SCHED_OTHER` and nothing else changes.
//! - **Opt out** with `Builder::batch_scheduling(false)` or
//!   `IVY_SCHED_BATCH=0` (which the C ABI and the Python package read too):
//!   for a latency-bound server whose cores are shared with CPU-bound work, a
//!   woken worker then preempts that work again.
//!
//! Layer: scheduler, the OS edge of a worker thread's start. Uses `libc`.

/// Whether the calling thread runs under `SCHED_OTHER`, Linux's default.
pub(crate) fn is_other() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a query of the calling thread.
        unsafe { libc::sched_getscheduler(0) == libc::SCHED_OTHER }
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// Moves the worker thread `thread`, just started by a builder whose own
/// policy is `SCHED_OTHER` (`is_other`), to `SCHED_BATCH`, before `build`
/// returns. A refusal leaves it under `SCHED_OTHER` (module comment).
pub(crate) fn enter_batch(thread: &std::thread::JoinHandle<()>) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::thread::JoinHandleExt;
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: the handle has been neither joined nor detached, so its
        // `pthread_t` names the thread (alive, or exited and not yet reaped);
        // `param` is a valid `sched_param` (priority 0, the only one the normal
        // policies take).
        unsafe {
            libc::pthread_setschedparam(thread.as_pthread_t(), libc::SCHED_BATCH, &param);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}

/// The calling thread's policy returns to `SCHED_OTHER` if it is
/// `SCHED_BATCH`: a blocking-pool thread, which a worker started.
pub(crate) fn leave_batch() {
    #[cfg(target_os = "linux")]
    // SAFETY: a query and a change of the calling thread's own policy; `param`
    // as in `enter_batch`.
    unsafe {
        if libc::sched_getscheduler(0) == libc::SCHED_BATCH {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
        }
    }
}
