//! The services table (see the module comment of `hook`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use libc::{c_char, c_int, c_short, c_void};

use crate::error::WaitError;
use crate::io::poll::{wait_fds_ready, PollEntry};
use crate::io::{Registration, READABLE, WRITABLE};
use crate::task::reported;

/// The services table; the same layout as `ivy_hook::Services`.
#[repr(C)]
pub(crate) struct Services {
    version: u32,
    size: u32,
    in_task: extern "C" fn() -> bool,
    wait_fd: extern "C" fn(fd: c_int, events: c_short, deadline_ns: i64) -> c_int,
    poll: unsafe extern "C" fn(
        fds: *const libc::pollfd,
        nfds: libc::nfds_t,
        deadline_ns: i64,
    ) -> c_int,
    sleep_until: extern "C" fn(deadline_ns: i64) -> c_int,
    run_blocking:
        unsafe extern "C" fn(job: unsafe extern "C" fn(*mut c_void), arg: *mut c_void) -> c_int,
    close_fd: unsafe extern "C" fn(
        fd: c_int,
        op: unsafe extern "C" fn(ctx: *mut c_void) -> c_int,
        ctx: *mut c_void,
    ) -> c_int,
    report_blocking: unsafe extern "C" fn(call: *const c_char, why: *const c_char),
    charge_io: extern "C" fn() -> c_int,
}

const VERSION: u32 = 3;

static SERVICES: Services = Services {
    version: VERSION,
    size: std::mem::size_of::<Services>() as u32,
    in_task,
    wait_fd,
    poll,
    sleep_until,
    run_blocking,
    close_fd,
    report_blocking,
    charge_io,
};

/// Hands this copy's services to the hook, if one is in the process; once.
/// Called when a runtime is built (before its first task).
pub(crate) fn attach() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let table = &SERVICES as *const Services;
        #[cfg(feature = "hook")]
        {
            // SAFETY: a static table of the layout `ivy_hook::Services` has.
            let r = unsafe { ivy_hook::ivy_hook_attach(table.cast()) };
            debug_assert_eq!(r, 0);
        }
        #[cfg(not(feature = "hook"))]
        {
            // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the process.
            let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"ivy_hook_attach".as_ptr()) };
            if !sym.is_null() {
                // SAFETY: `ivy_hook_attach`'s signature (hook/src/lib.rs); the
                // table is static.
                let f: unsafe extern "C" fn(*const Services) -> c_int =
                    unsafe { std::mem::transmute(sym) };
                // SAFETY: as above.
                let r = unsafe { f(table) };
                if r != 0 {
                    eprintln!("ivy: libivy_hook refused this ivy's services (error {r}): hooked calls will block workers");
                }
            }
        }
    });
}

/// Runs a service body; a panic (a bug) becomes `EIO`, never an unwind into C.
fn guarded(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(libc::EIO)
}

/// Runs a service body that may park the task inside the runtime's
/// `Builder::hook_park_guard`, if it has one (a binding saving its own
/// per-thread state around the park; the Python package's reason is in its
/// `tstate.rs`), else directly. Guarded like `guarded`.
fn parking(f: impl FnOnce() -> c_int) -> c_int {
    let guard = crate::runtime::Handle::try_current().and_then(|h| h.shared.hook_park_guard);
    let Some(guard) = guard else {
        return guarded(f);
    };
    let mut f = Some(f);
    let mut out = libc::EIO;
    guarded(|| {
        guard(&mut || {
            if let Some(f) = f.take() {
                out = guarded(f);
            }
        });
        out
    })
}

extern "C" fn in_task() -> bool {
    crate::task::current::in_task()
}

/// Now on CLOCK_MONOTONIC (Instant's clock on Linux), in nanoseconds.
fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

/// The `Instant` of a CLOCK_MONOTONIC deadline in ns (`None` for -1 and for
/// one beyond what `Instant` represents: no deadline).
fn instant_of(deadline_ns: i64) -> Option<Instant> {
    if deadline_ns < 0 {
        return None;
    }
    let now = Instant::now();
    let left = deadline_ns.saturating_sub(now_ns()).max(0) as u64;
    now.checked_add(Duration::from_nanos(left))
}

/// The errno of an interrupted or failed wait (the protocol of
/// `hook/src/services.rs`).
fn errno_of(e: &std::io::Error) -> c_int {
    match WaitError::of(e) {
        // The caller may panic on the error: that panic delivers the
        // interruption (`task::reported`).
        Some(w @ WaitError::Cancelled) => {
            reported::report(w);
            libc::ECANCELED
        }
        Some(w @ WaitError::Elapsed) => {
            reported::report(w);
            libc::ETIMEDOUT
        }
        Some(WaitError::TimedOut) => libc::ETIME,
        Some(WaitError::Closed) => libc::EBADF,
        _ => e.raw_os_error().unwrap_or(libc::EIO),
    }
}

fn errno_of_wait(e: WaitError) -> c_int {
    errno_of(&e.into())
}

/// A BTreeMap rather than a HashMap: it never rehashes, and its nodes are
/// pointed to at their start (valgrind counts a static hash table, which is
/// pointed into its middle, as "possibly lost").
type Waiters = BTreeMap<RawFd, Vec<Arc<Registration>>>;

/// The waits in progress, by the caller's fd number, in shards by number: a
/// close holds its fd's shard across the real close (`close_fd`), so closes
/// and waits of other shards do not queue behind it.
const SHARDS: usize = 64;
static WAITERS: [Mutex<Option<Waiters>>; SHARDS] = [const { Mutex::new(None) }; SHARDS];

fn waiters(fd: RawFd) -> std::sync::MutexGuard<'static, Option<Waiters>> {
    WAITERS[fd.unsigned_abs() as usize % SHARDS]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// `F_DUPFD_CLOEXEC` by raw syscall (never through the hook).
fn raw_dup(fd: RawFd) -> Result<RawFd, c_int> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; a bad one gives EBADF.
    let r = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(r as RawFd)
    }
}

fn raw_close(fd: RawFd) {
    // SAFETY: `fd` is a duplicate this module made and nobody else knows.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

extern "C" fn wait_fd(fd: c_int, events: c_short, deadline_ns: i64) -> c_int {
    parking(|| {
        let mut mask = 0;
        if events & (libc::POLLIN | libc::POLLPRI) != 0 {
            mask |= READABLE;
        }
        if events & libc::POLLOUT != 0 {
            mask |= WRITABLE;
        }
        if mask == 0 {
            return libc::EINVAL;
        }
        wait_closable(fd, mask, instant_of(deadline_ns))
    })
}

/// Waits on a duplicate of `fd`, listed under `fd` so that `closed` wakes it.
fn wait_closable(fd: RawFd, mask: usize, deadline: Option<Instant>) -> c_int {
    // Duplicates that met a stale epoll entry (io/fd.rs says how), kept open
    // so the next duplicate gets another number.
    let mut refused = Vec::new();
    let r = loop {
        let (dup, reg) = {
            let mut guard = waiters(fd);
            let dup = match raw_dup(fd) {
                Ok(d) => Some(d),
                // Out of fd numbers: register the caller's fd itself. Still
                // sound (tokens are checked, `closed` still wakes the wait);
                // only an unhooked close during the wait is then not isolated
                // from a later file reusing the number. A read must not fail
                // with EMFILE.
                Err(libc::EMFILE | libc::ENFILE) => None,
                Err(e) => break e,
            };
            let reg = Arc::new(Registration::with_readiness(dup.unwrap_or(fd), 0));
            guard
                .get_or_insert_with(BTreeMap::new)
                .entry(fd)
                .or_default()
                .push(reg.clone());
            (dup, reg)
        };
        let r = reg.wait(mask, deadline);
        {
            let mut guard = waiters(fd);
            if let Some(map) = guard.as_mut() {
                if let Some(list) = map.get_mut(&fd) {
                    list.retain(|r| !Arc::ptr_eq(r, &reg));
                    if list.is_empty() {
                        map.remove(&fd);
                    }
                }
            }
        }
        drop(reg); // deregisters before the duplicate closes
        let close_dup = || {
            if let Some(d) = dup {
                raw_close(d);
            }
        };
        match r {
            Ok(_) => {
                close_dup();
                break 0;
            }
            // epoll refuses regular files (EPERM): always ready, as poll(2) says.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                close_dup();
                break 0;
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && refused.len() < 8 => match dup {
                Some(d) => refused.push(d),
                None => break libc::EEXIST,
            },
            Err(e) => {
                close_dup();
                break errno_of(&e);
            }
        }
    };
    for d in refused {
        raw_close(d);
    }
    r
}

unsafe extern "C" fn close_fd(
    fd: c_int,
    op: unsafe extern "C" fn(ctx: *mut c_void) -> c_int,
    ctx: *mut c_void,
) -> c_int {
    let mut guard = waiters(fd);
    let list = guard.as_mut().and_then(|m| m.remove(&fd));
    // SAFETY: the hook's operation and its context, called once.
    let r = unsafe { op(ctx) };
    drop(guard);
    for reg in list.into_iter().flatten() {
        reg.close();
    }
    r
}

unsafe extern "C" fn poll(fds: *const libc::pollfd, nfds: libc::nfds_t, deadline_ns: i64) -> c_int {
    if fds.is_null() && nfds != 0 {
        return libc::EFAULT;
    }
    let pfds: &[libc::pollfd] = if nfds == 0 {
        &[]
    } else {
        // SAFETY: the hook passes the caller's array of `nfds` pollfds.
        unsafe { std::slice::from_raw_parts(fds, nfds as usize) }
    };
    parking(|| {
        let mut entries: Vec<PollEntry> = pfds
            .iter()
            .filter(|p| p.fd >= 0)
            .filter_map(|p| {
                let mut interest = 0;
                // POLLPRI alone is left to the hook's looks (see its poll).
                if p.events & (libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND) != 0 {
                    interest |= READABLE;
                }
                if p.events & (libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND) != 0 {
                    interest |= WRITABLE;
                }
                // An entry asking for nothing (only hang-up and errors, which
                // poll(2) always reports) is left to the final look.
                (interest != 0).then_some(PollEntry {
                    fd: p.fd,
                    interest,
                    ready: 0,
                })
            })
            .collect();
        let deadline = instant_of(deadline_ns);
        if entries.is_empty() {
            // Only negative fds: poll(2) sleeps the whole timeout. Entries ivy
            // cannot wait for (POLLPRI alone, no events): look again in 1 ms.
            let only_negative = pfds.iter().all(|p| p.fd < 0);
            let until = if only_negative {
                deadline
            } else {
                crate::io::fd::earliest(
                    deadline,
                    Instant::now().checked_add(Duration::from_millis(1)),
                )
            };
            return match crate::time::sleep_deadline(until) {
                Ok(()) if only_negative => libc::ETIME,
                Ok(()) => 0,
                Err(e) => errno_of_wait(e),
            };
        }
        match wait_fds_ready(&mut entries, deadline) {
            Ok(_) => 0,
            // An fd closed meanwhile: the caller's own look reports POLLNVAL.
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => 0,
            Err(e) => errno_of(&e),
        }
    })
}

extern "C" fn sleep_until(deadline_ns: i64) -> c_int {
    parking(|| {
        let deadline = if deadline_ns == i64::MAX {
            None
        } else {
            instant_of(deadline_ns)
        };
        let r = match deadline {
            Some(d) if d <= Instant::now() => crate::time::yield_now_checked(),
            d => crate::time::sleep_deadline(d),
        };
        match r {
            Ok(()) => 0,
            Err(e) => errno_of_wait(e),
        }
    })
}

/// A job and its argument, sent to the blocking pool.
struct Job(unsafe extern "C" fn(*mut c_void), *mut c_void);
// SAFETY: the hook hands over a job meant to run on another thread (its
// argument is shared through an `Arc` it leaked for the job).
unsafe impl Send for Job {}

unsafe extern "C" fn run_blocking(
    job: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
) -> c_int {
    let job = Job(job, arg);
    parking(move || {
        // Spawned before any interruption check: the hook's contract is that
        // the job runs even when the wait for it is interrupted (it frees what
        // it made then).
        let handle = crate::blocking::spawn_blocking(move || {
            let job = job;
            // SAFETY: the hook's job and the argument it made for it.
            unsafe { (job.0)(job.1) }
        });
        match handle.join_deadline(None) {
            Ok(_) => 0,
            Err(e) => errno_of_wait(e),
        }
    })
}

/// What debug mode already reported (call, why): once each.
static REPORTED: Mutex<Option<BTreeSet<(String, String)>>> = Mutex::new(None);

/// A hooked call that may not wait, charged to the running task's I/O budget
/// (`task::current::io_budget_spent`, the one ivy's own sockets use): 0, after a
/// yield once the budget is spent, or what that yield reported (`ECANCELED`,
/// `ETIMEDOUT`), the call then not made.
extern "C" fn charge_io() -> c_int {
    // Unguarded: it cannot panic (`Cell`s in a `const` thread-local without a
    // destructor, alive as long as the thread), and it runs on every hooked call.
    if !crate::task::current::io_budget_spent() {
        return 0;
    }
    parking(|| match crate::park::yield_now() {
        Ok(()) => 0,
        Err(e) => errno_of_wait(e),
    })
}

unsafe extern "C" fn report_blocking(call: *const c_char, why: *const c_char) {
    let _ = catch_unwind(|| {
        let Some(handle) = crate::runtime::Handle::try_current() else {
            return;
        };
        if handle.shared.debug.slow_task.is_none() || call.is_null() || why.is_null() {
            return;
        }
        // SAFETY: the hook passes NUL-terminated strings.
        let (call, why) = unsafe {
            (
                std::ffi::CStr::from_ptr(call)
                    .to_string_lossy()
                    .into_owned(),
                std::ffi::CStr::from_ptr(why).to_string_lossy().into_owned(),
            )
        };
        // Recorded before printing: the report's own write may come back here.
        let first = REPORTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(BTreeSet::new)
            .insert((call.clone(), why.clone()));
        if first {
            let who = crate::task::current();
            let (name, id) = match &who {
                Some(c) => (c.name().unwrap_or("<unnamed>"), c.id().to_string()),
                None => ("<none>", "-".to_string()),
            };
            eprintln!(
                "ivy debug: task '{name}' (id {id}): hooked `{call}` blocked its worker ({why}); the tasks queued on that worker wait meanwhile (reported once per call and reason)"
            );
        }
    });
}
