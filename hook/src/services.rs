//! What an ivy runtime lends the hook: the C ABI between the hook and every
//! copy of ivy in the process.
//!
//! # Why a table of functions handed over at attach
//! The hook must not contain a runtime of its own: "the current task" is
//! ivy's, and a C program using `libivy.so` with a preloaded hook, a Rust
//! binary linking ivy statically, and a Python extension embedding its own
//! ivy must all reach *their* runtime. So each copy of ivy, when it builds a
//! runtime, finds `ivy_hook_attach` (`dlsym(RTLD_DEFAULT)`, or a direct call
//! under ivy's `hook` feature) and registers its [`Services`]: "is the caller
//! one of my tasks?" and the few parking primitives the hooked calls are built
//! on. Before any copy attached every hooked call is plain libc. The table is
//! versioned and sized: the hook accepts exactly its own layout (version 2:
//! `close_fd` replaced version 1's wake-after-close `closed`; version 3 added
//! `charge_io`), and an ivy
//! whose table it refuses says so on stderr and runs unhooked.
//!
//! The per-fd table and the call logic live here, once per process, so every
//! copy of ivy sees the same fd states. A call is routed to the copy whose task
//! is running (the first whose `in_task` says so; with one copy, one indirect
//! call and one thread-local read).
//!
//! # fork and vfork
//! A forked child has no ivy threads, but its one thread may be the worker
//! that called `fork` from a task: the child would think it runs a task and
//! park into a scheduler that is gone. So a `pthread_atfork` child handler
//! detaches every copy of ivy: in the child every hooked call is libc's (the
//! fd table is inherited as is, and stays true for the fds: same numbers,
//! same open files, same flags; a socket ivy made non-blocking stays so in
//! the child, which usually `exec`s anyway). A `vfork` child (`posix_spawn`,
//! Python's `subprocess`) runs no handler and *shares the parent's memory*:
//! the calls that change the table or wake waiters (`close`, `dup2`, `dup3`)
//! check the pid first, so a child's `close` / `dup2` before `exec` never
//! touches the parent's table or wakes the parent's tasks.
//!
//! # Error protocol
//! Every parking service returns 0 or an errno value: `ETIME` when the call's
//! own deadline passed (the hook maps it to what the real call would say:
//! `EAGAIN` for `SO_RCVTIMEO`, `0` ready for `poll`), `ETIMEDOUT` when an
//! enclosing ivy deadline scope elapsed, `ECANCELED` when the task was
//! cancelled (the cancellation stays pending), `EBADF` when the fd was closed
//! by a hooked `close` during the wait. Deadlines are absolute nanoseconds of
//! `CLOCK_MONOTONIC` (`-1`: none).

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

use libc::{c_char, c_int, c_short, c_void};

/// Version of [`Services`] this hook understands.
pub const SERVICES_VERSION: u32 = 3;

/// The services one copy of ivy lends the hook (C ABI, `#[repr(C)]`; ivy's
/// `src/hook/` defines the same layout).
#[repr(C)]
pub struct Services {
    /// [`SERVICES_VERSION`].
    pub version: u32,
    /// `size_of::<Services>()` of the copy that made it.
    pub size: u32,
    /// Whether the caller is one of this copy's tasks.
    pub in_task: extern "C" fn() -> bool,
    /// Parks the task until `fd` is ready for `events` (`POLLIN` / `POLLOUT`),
    /// or the deadline.
    pub wait_fd: extern "C" fn(fd: c_int, events: c_short, deadline_ns: i64) -> c_int,
    /// Parks the task until one of `fds` is ready for its `events` (revents are
    /// not filled: the hook looks again with the real `poll`).
    pub poll: unsafe extern "C" fn(
        fds: *const libc::pollfd,
        nfds: libc::nfds_t,
        deadline_ns: i64,
    ) -> c_int,
    /// Parks the task until the deadline; one that has passed yields.
    pub sleep_until: extern "C" fn(deadline_ns: i64) -> c_int,
    /// Runs `job(arg)` on the runtime's blocking pool, parking the task until it
    /// ends. On an interruption (non-zero return) the job still runs later.
    pub run_blocking:
        unsafe extern "C" fn(job: unsafe extern "C" fn(*mut c_void), arg: *mut c_void) -> c_int,
    /// Runs `op(ctx)`, which closes `fd` (the real `close`, or a `dup2` onto
    /// it), while no wait on `fd` can start, then wakes every task that was
    /// waiting on `fd` (it fails with `EBADF`); returns `op`'s result. Held
    /// across the close, so a task that starts waiting on a *new* file that
    /// reuses the number right after is never woken by mistake.
    pub close_fd: unsafe extern "C" fn(
        fd: c_int,
        op: unsafe extern "C" fn(ctx: *mut c_void) -> c_int,
        ctx: *mut c_void,
    ) -> c_int,
    /// Debug mode: a hooked call had to block the worker (`call`, `why`: NUL
    /// terminated). Reports once per kind; does nothing outside debug mode.
    pub report_blocking: unsafe extern "C" fn(call: *const c_char, why: *const c_char),
    /// Charges one hooked call that may not wait (a data call, a zero-timeout
    /// `poll`) to the task's cooperative budget: 0 to go on; when the budget is
    /// spent the task first yields to the others of its worker, and an
    /// interruption the yield reports (`ECANCELED`, `ETIMEDOUT`) is returned
    /// instead, the call not made. Without it a task whose calls never wait
    /// (a socket that always has data, a busy `poll(.., 0)` loop) would keep its
    /// worker for good.
    pub charge_io: extern "C" fn() -> c_int,
}

const MAX_COPIES: usize = 8;

static COPIES: [AtomicPtr<Services>; MAX_COPIES] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_COPIES];
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The process that attached (0: none yet).
static PID: AtomicI32 = AtomicI32::new(0);

/// Registers a copy of ivy's services (idempotent). Returns 0, or `-EINVAL` for
/// a table this hook does not understand, `-ENOSPC` when too many copies of
/// ivy attached.
pub(crate) fn attach(s: &'static Services) -> c_int {
    if s.version != SERVICES_VERSION || (s.size as usize) != std::mem::size_of::<Services>() {
        return -libc::EINVAL;
    }
    crate::real::resolve_all();
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: getpid has no preconditions.
        PID.store(unsafe { libc::getpid() }, Ordering::Release);
        // SAFETY: registers a child handler that only stores atomics.
        unsafe { libc::pthread_atfork(None, None, Some(detach_in_child)) };
    });
    let ptr = s as *const Services as *mut Services;
    for cell in COPIES.iter() {
        match cell.compare_exchange(
            std::ptr::null_mut(),
            ptr,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                COUNT.fetch_add(1, Ordering::Release);
                return 0;
            }
            Err(cur) if cur == ptr => return 0,
            Err(_) => {}
        }
    }
    -libc::ENOSPC
}

/// `pthread_atfork` child handler: the child's hooked calls are libc's.
extern "C" fn detach_in_child() {
    COUNT.store(0, Ordering::Release);
    for cell in COPIES.iter() {
        cell.store(std::ptr::null_mut(), Ordering::Release);
    }
}

/// Whether the caller is a `vfork` child of the process that attached (shares
/// its memory; see the module comment).
pub(crate) fn in_vfork_child() -> bool {
    // SAFETY: getpid has no preconditions.
    PID.load(Ordering::Acquire) != unsafe { libc::getpid() }
}

/// The services of the copy of ivy whose task is running, if any.
#[inline]
pub(crate) fn current() -> Option<&'static Services> {
    let n = COUNT.load(Ordering::Acquire);
    if n == 0 {
        return None;
    }
    for cell in &COPIES[..n.min(MAX_COPIES)] {
        let p = cell.load(Ordering::Acquire);
        if p.is_null() {
            continue;
        }
        // SAFETY: attached tables are `'static`.
        let s = unsafe { &*p };
        if (s.in_task)() {
            return Some(s);
        }
    }
    None
}

/// Whether any copy of ivy attached (before that, everything is plain libc).
#[inline]
pub(crate) fn any() -> bool {
    COUNT.load(Ordering::Relaxed) != 0
}

/// `close_fd` through every attached copy, nested: each holds its waiters of
/// `fd` while the next runs, the last runs `op`.
struct CloseChain<'a> {
    next: usize,
    fd: c_int,
    op: &'a mut dyn FnMut() -> c_int,
    errno: c_int,
}

unsafe extern "C" fn close_step(ctx: *mut c_void) -> c_int {
    // SAFETY: `ctx` is the `CloseChain` of `closing`, alive for its call.
    let chain = unsafe { &mut *(ctx as *mut CloseChain<'_>) };
    let n = COUNT.load(Ordering::Acquire).min(MAX_COPIES);
    while chain.next < n {
        let p = COPIES[chain.next].load(Ordering::Acquire);
        chain.next += 1;
        if !p.is_null() {
            // SAFETY: attached tables are `'static`; `close_step` and `ctx`
            // are called back once, within this call.
            return unsafe { ((*p).close_fd)(chain.fd, close_step, ctx) };
        }
    }
    let r = (chain.op)();
    chain.errno = crate::errno::get();
    r
}

/// Runs `op`, which closes `fd`, under every copy's `close_fd` (see it);
/// `errno` is `op`'s.
pub(crate) fn closing(fd: c_int, mut op: impl FnMut() -> c_int) -> c_int {
    let mut chain = CloseChain {
        next: 0,
        fd,
        op: &mut op,
        errno: 0,
    };
    // SAFETY: `chain` outlives the call.
    let r = unsafe { close_step((&mut chain as *mut CloseChain<'_>).cast()) };
    crate::errno::set(chain.errno);
    r
}

/// Now on `CLOCK_MONOTONIC`, in nanoseconds.
pub(crate) fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

/// The deadline `us` microseconds from now (`-1` for 0: none).
pub(crate) fn deadline_after_us(us: u64) -> i64 {
    if us == 0 {
        -1
    } else {
        now_ns().saturating_add((us as i64).saturating_mul(1000))
    }
}

/// Debug mode: reports that `call` blocked its worker because of `why`.
pub(crate) fn report(s: &Services, call: &'static [u8], why: &'static [u8]) {
    // SAFETY: both are NUL-terminated literals.
    unsafe { (s.report_blocking)(call.as_ptr().cast(), why.as_ptr().cast()) }
}
