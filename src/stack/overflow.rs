//! Stack-overflow reports for tasks.
//!
//! A task that overflows runs into its stack's guard and takes a SIGSEGV. Rust std reports
//! overflows only for the threads of a Rust `main` binary, and only on those threads' own
//! stacks; in `libivy.so` loaded by a C program nothing is installed at all. So ivy installs its
//! own SIGSEGV and SIGBUS handler. It runs on a per-worker alternate signal stack, since the
//! task's stack is exactly what ran out; it recognises a fault inside the running task's guard,
//! names the task on stderr and aborts. Any other fault goes to the handler that was installed
//! before ours, or to the default action.
//!
//! The handler runs in signal context: no locks, no allocation, numbers formatted by hand into a
//! buffer on the alternate stack, output by write(2). The running task is published through a
//! const-initialised thread-local `Cell` without a destructor, which compiles to a plain TLS
//! slot with no lazy initialisation: cheap to set around every resume, safe to read in the
//! handler. The handler never switches tasks: that would run arbitrary code in signal context.

use std::cell::Cell;
use std::io;
use std::mem;
use std::ptr;
use std::sync::{Once, OnceLock};

use libc::{c_int, c_void, siginfo_t};

use super::TaskStack;

/// What made the code running on a stack, for the report's hint: the way to
/// raise a stack differs between Rust tasks, C tasks and the two kinds of
/// generators. A task starts as `RustTask`; the C ABI marks its tasks and
/// generator bodies with [`mark_running`] as they start, before any C code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Origin {
    RustTask,
    CTask,
    RustGenerator,
    CGenerator,
    /// A task of a language binding, which gave its own hint
    /// ([`crate::task::set_stack_overflow_hint`]).
    Binding,
}

/// The hint of `Origin::Binding` (the first one given in the process).
static BINDING_HINT: OnceLock<&'static str> = OnceLock::new();

/// Marks the running task as a binding's, with `hint` as its report's hint.
pub(crate) fn mark_binding(hint: &'static str) {
    let _ = BINDING_HINT.set(hint);
    mark_running(Origin::Binding);
}

impl Origin {
    /// Says how to fix it, after "overflowed its stack of N bytes; ".
    fn hint(self) -> &'static [u8] {
        match self {
            Origin::RustTask => b"raise the stack size with ivy::task::Builder::stack_size",
            Origin::CTask => {
                b"raise the stack size with the stack_size field of ivy_spawn_opts_t \
                  (or of ivy_config_t, for every task of the runtime)"
            }
            Origin::RustGenerator => {
                b"raise the stack size with ivy::Generator::with_stack_size \
                  (or scoped_with_stack_size)"
            }
            Origin::Binding => BINDING_HINT
                .get()
                .map_or(b"raise the task's stack size".as_slice(), |h| h.as_bytes()),
            Origin::CGenerator => {
                b"raise the stack size with the stack_size argument of ivy_generator_new"
            }
        }
    }
}

/// What the handler needs to know about the task running on a thread.
#[repr(C)]
pub(crate) struct RunningTask {
    /// The lowest usable address of the task's stack: its usable range is
    /// `[usable_lo, usable_lo + stack_size)`, top reserve included (what
    /// `task::stack_top_reserve` reads).
    pub usable_lo: usize,
    pub id: u64,
    /// The task's name, null if it has none. One word, a pointer to the task's own
    /// `Box<str>` (which outlives its stack: `set_running`), because this lives in every
    /// started task's stack header, next to the first frames (`idle_memory`, and the
    /// Python binding's one page per parked task: findings/pystack.md).
    name: *const Box<str>,
    /// Usable bytes of the task's stack (at most 2 GiB: `MAX_STACK_SIZE` and a reserve).
    stack_size: u32,
    /// Whether a guard lies below the stack: `[usable_lo - guard_size, usable_lo)`.
    guarded: bool,
    /// What runs on the stack (the hint); a `Cell` because the code running on
    /// it says, once it starts.
    pub origin: Cell<Origin>,
}

impl RunningTask {
    /// The `[lo, hi)` guard range of the task's stack; empty if it has none.
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        if self.guarded {
            (self.usable_lo - super::guard_size(), self.usable_lo)
        } else {
            (0, 0)
        }
    }

    /// Usable bytes of the task's stack, top reserve included.
    pub(crate) fn stack_size(&self) -> usize {
        self.stack_size as usize
    }

    /// Describes task `id`, called `name`, running on `stack`.
    #[inline(always)]
    // The box's address is what a `RunningTask` keeps: one word, not two.
    #[allow(clippy::borrowed_box)]
    pub(crate) fn new(stack: &TaskStack, id: u64, name: Option<&Box<str>>) -> RunningTask {
        let (usable_lo, usable_hi) = stack.usable();
        RunningTask {
            usable_lo,
            id,
            name: name.map_or(ptr::null(), |n| n as *const Box<str>),
            stack_size: u32::try_from(usable_hi - usable_lo).expect("ivy: a stack is under 4 GiB"),
            guarded: stack.guard_lo() != 0,
            origin: Cell::new(Origin::RustTask),
        }
    }
}

/// The name of every generator body's stack, for its report.
// The box's address is what a `RunningTask` keeps: one word, not two.
#[allow(clippy::borrowed_box)]
pub(crate) fn generator_name() -> &'static Box<str> {
    static NAME: OnceLock<Box<str>> = OnceLock::new();
    NAME.get_or_init(|| "<generator>".into())
}

/// Records what runs on the current thread's published stack (see [`Origin`]);
/// does nothing when none is published.
pub(crate) fn mark_running(origin: Origin) {
    // SAFETY: by `set_running`'s contract, a non-null pointer set on this thread
    // is valid while it is set; the `Cell` is only touched on this thread (the
    // handler reads it on this thread too, between instructions of ours that
    // each store a whole byte).
    if let Some(task) = unsafe { RUNNING.get().as_ref() } {
        task.origin.set(origin);
    }
}

thread_local! {
    static RUNNING: Cell<*const RunningTask> = const { Cell::new(ptr::null()) };
}

/// Publishes the task this thread is about to resume (null: none), for the overflow handler.
///
/// # Safety
///
/// Until the next call on this thread, a non-null `task` must stay valid, unmoved and unchanged,
/// and its name, if it has one, alive.
#[inline]
pub(crate) unsafe fn set_running(task: *const RunningTask) {
    RUNNING.set(task);
}

/// The task published for this thread by the last `set_running` (null: none).
pub(crate) fn running() -> *const RunningTask {
    RUNNING.get()
}

/// Longest task name reported; the rest is cut so that the hint always fits.
const MAX_NAME: usize = 200;

/// Actions that were installed for SIGSEGV and SIGBUS before ours.
static PREVIOUS: [OnceLock<libc::sigaction>; 2] = [OnceLock::new(), OnceLock::new()];
const SIGNALS: [c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Installs the SIGSEGV and SIGBUS handler, once per process; later calls do nothing. Threads
/// that run tasks also need `install_altstack`.
pub(crate) fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (sig, previous) in SIGNALS.into_iter().zip(&PREVIOUS) {
            // SAFETY: `sigaction` is plain old data, valid when zeroed (SIG_DFL, no flags). With
            // a null new action, sigaction(2) only reads the current one; the previous action
            // is saved before ours goes in, so the handler always finds it.
            unsafe {
                let mut old: libc::sigaction = mem::zeroed();
                if libc::sigaction(sig, ptr::null(), &mut old) != 0 {
                    continue;
                }
                let _ = previous.set(old);
                let mut new: libc::sigaction = mem::zeroed();
                new.sa_sigaction = handler as Handler as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                libc::sigaction(sig, &new, ptr::null_mut());
            }
        }
    });
}

type Handler = extern "C" fn(c_int, *mut siginfo_t, *mut c_void);

extern "C" fn handler(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only a fault (si_code > 0, not a signal some process sent) has an address. Read the
    // thread-local only for faults near a stack: see `pool::in_slabs`.
    if code > 0 && super::pool::in_slabs(addr) {
        // SAFETY: by `set_running`'s contract, a non-null pointer set on this thread is valid
        // while it is set, and a signal handler runs on the thread that faulted.
        if let Some(task) = unsafe { RUNNING.get().as_ref() } {
            let (guard_lo, guard_hi) = task.guard_range();
            if (guard_lo..guard_hi).contains(&addr) {
                report(task);
                std::process::abort();
            }
        }
    }
    // SAFETY: the kernel's own arguments, passed on unchanged.
    unsafe { chain(sig, info, ctx) }
}

/// Hands a fault that is not a task's overflow to the previous action.
///
/// # Safety
///
/// The arguments are a signal handler's, for SIGSEGV or SIGBUS.
unsafe fn chain(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    let previous = PREVIOUS[usize::from(sig == libc::SIGBUS)].get();
    match previous {
        Some(prev) if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN => {
            // SAFETY: a handler that is neither SIG_DFL nor SIG_IGN is a function of the kind
            // its SA_SIGINFO flag says, which accepts exactly these arguments.
            unsafe {
                if prev.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: Handler = mem::transmute(prev.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(c_int) = mem::transmute(prev.sa_sigaction);
                    f(sig);
                }
            }
        }
        _ => {
            // Back to the default action; returning re-runs the faulting instruction, which now
            // kills the process with the right signal. A signal sent by a process rather than
            // by a fault would not recur, so send it again; it is blocked until we return.
            // SAFETY: sigaction(2) and raise(3) are async-signal-safe; a zeroed action is
            // SIG_DFL; `info` is valid as the caller promises.
            unsafe {
                let dfl: libc::sigaction = mem::zeroed();
                libc::sigaction(sig, &dfl, ptr::null_mut());
                if (*info).si_code <= 0 {
                    libc::raise(sig);
                }
            }
        }
    }
}

/// Writes `ivy: task 'NAME' (id N) overflowed its stack of N bytes; HINT` to stderr.
fn report(task: &RunningTask) {
    let mut msg = Message {
        buf: [0; 512],
        len: 0,
    };
    msg.push(b"ivy: task ");
    // SAFETY: by `set_running`'s contract, a name is alive while its task is published.
    if let Some(name) = unsafe { task.name.as_ref() } {
        let name = name.as_bytes();
        msg.push(b"'");
        msg.push(&name[..name.len().min(MAX_NAME)]);
        msg.push(if name.len() > MAX_NAME { b"...'" } else { b"'" });
    } else {
        msg.push(b"<unnamed>");
    }
    msg.push(b" (id ");
    msg.push_u64(task.id);
    msg.push(b") overflowed its stack of ");
    msg.push_u64(task.stack_size as u64);
    msg.push(b" bytes; ");
    msg.push(task.origin.get().hint());
    msg.push(b"\n");
    write_stderr(&msg.buf[..msg.len]);
}

/// A fixed buffer that drops what does not fit, formatted without allocating.
struct Message {
    buf: [u8; 512],
    len: usize,
}

impl Message {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_u64(&mut self, mut n: u64) {
        let mut digits = [0; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }
}

fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // The raw system call, not libc's `write`: under the libc hook
        // (libivy_hook, the `hook` feature) that name may be interposed, and a
        // hooked write may park, which a signal handler must never do.
        // SAFETY: write(2) is async-signal-safe and reads `bytes.len()` bytes of a live slice.
        let n = unsafe {
            libc::syscall(
                libc::SYS_write,
                libc::STDERR_FILENO,
                bytes.as_ptr(),
                bytes.len(),
            )
        } as isize;
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Usable bytes of an alternate signal stack: room for the handler, with a wide margin for the
/// previous handler it may chain to and for CPUs with large signal frames (see `install_altstack`).
const ALTSTACK_SIZE: usize = 64 << 10;

/// `AT_MINSIGSTKSZ` from `<elf.h>`: the kernel's minimum signal stack size for this CPU.
const AT_MINSIGSTKSZ: libc::c_ulong = 51;

/// This thread's alternate signal stack, on which the overflow handler runs. Not `Send`: it must
/// be dropped on the thread that installed it.
pub(crate) struct AltStack {
    map: *mut c_void,
    len: usize,
    previous: libc::stack_t,
}

/// Gives this thread an alternate signal stack, with a guard page, in place of any it had. Keep
/// the result alive, as a local of the worker thread's main function, for as long as the thread
/// runs tasks; dropping it restores the previous one. Nested installs must drop in reverse order.
pub(crate) fn install_altstack() -> io::Result<AltStack> {
    let page = super::page_size();
    // SAFETY: getauxval(3) only reads the auxiliary vector; 0 means the entry is absent.
    let min = unsafe { libc::getauxval(AT_MINSIGSTKSZ) } as usize;
    let size = ALTSTACK_SIZE.max(4 * min).next_multiple_of(page);
    let len = page + size;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK;
    // SAFETY: a new anonymous mapping at an address of the kernel's choosing aliases nothing.
    let map = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, -1, 0) };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is ours alone. Its bottom page becomes the guard, and the rest the
    // signal stack of this thread; on failure it is unmapped before anything can use it.
    unsafe {
        let mut previous: libc::stack_t = mem::zeroed();
        let stack = libc::stack_t {
            ss_sp: map.cast::<u8>().add(page).cast(),
            ss_flags: 0,
            ss_size: size,
        };
        if libc::mprotect(map, page, libc::PROT_NONE) != 0
            || libc::sigaltstack(&stack, &mut previous) != 0
        {
            let err = io::Error::last_os_error();
            libc::munmap(map, len);
            return Err(err);
        }
        Ok(AltStack { map, len, previous })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: we run in ordinary code, not on the alternate stack, so it may go: the
        // previous stack is restored before ours is unmapped, leaving no window in which a
        // signal could be delivered onto unmapped memory.
        unsafe {
            libc::sigaltstack(&self.previous, ptr::null_mut());
            libc::munmap(self.map, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{in_child, Exit};
    use super::super::MIN_STACK_SIZE;
    use super::*;
    use corosensei::{Coroutine, Yielder};
    use std::hint::black_box;

    #[inline(never)]
    fn recurse(depth: u64) -> u64 {
        let frame = [depth as u8; 256];
        if black_box(true) {
            recurse(depth + 1) + u64::from(black_box(&frame)[1])
        } else {
            0
        }
    }

    /// Runs a task that recurses forever, in a child process.
    fn overflow(size: usize, id: u64, name: Option<&'static str>) -> Option<(Exit, String)> {
        install_handler();
        let stack = TaskStack::allocate(size).unwrap();
        if stack.guard() == (0, 0) {
            return None; // unguarded: the mprotect budget is spent (pre-6.13 kernels only)
        }
        Some(in_child(move || {
            let _alt = install_altstack().unwrap();
            let name: Option<Box<str>> = name.map(Box::from);
            let task = RunningTask::new(&stack, id, name.as_ref());
            // SAFETY: `task` and its name outlive the coroutine, which never returns.
            unsafe { set_running(&task) };
            let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| recurse(0));
            co.resume(());
        }))
    }

    #[test]
    fn overflow_is_reported() {
        let Some((exit, stderr)) = overflow(64 << 10, 42, Some("deep-thought")) else {
            return;
        };
        assert_eq!(exit, Exit::Signal(libc::SIGABRT), "stderr: {stderr}");
        assert_eq!(
            stderr,
            "ivy: task 'deep-thought' (id 42) overflowed its stack of 65536 bytes; \
             raise the stack size with ivy::task::Builder::stack_size\n"
        );
    }

    #[test]
    fn unnamed_overflow_is_reported() {
        let Some((exit, stderr)) = overflow(MIN_STACK_SIZE, u64::MAX, None) else {
            return;
        };
        assert_eq!(exit, Exit::Signal(libc::SIGABRT), "stderr: {stderr}");
        assert!(
            stderr.starts_with(
                "ivy: task <unnamed> (id 18446744073709551615) overflowed its stack of 16384 \
                 bytes; "
            ),
            "stderr: {stderr}"
        );
    }

    /// Faults that are not a running task's overflow still kill the process with SIGSEGV.
    #[test]
    fn other_faults_are_chained() {
        install_handler();
        // Rust std installed a handler for the test binary's `main`; ours must chain to it.
        let previous = PREVIOUS[0].get().unwrap().sa_sigaction;
        assert_ne!(previous, libc::SIG_DFL);

        let stack = TaskStack::allocate(64 << 10).unwrap();
        let write = |addr: usize, task: Option<&RunningTask>| {
            in_child(|| {
                let _alt = install_altstack().unwrap();
                if let Some(task) = task {
                    // SAFETY: `task` outlives this child, which exits or dies right after.
                    unsafe { set_running(task) };
                }
                // SAFETY: none: this write must fault, in a child process.
                unsafe { ptr::write_volatile(addr as *mut u8, 1) };
            })
        };
        // A null-page write outside any task.
        let (exit, stderr) = write(0x10, None);
        assert_eq!(exit, Exit::Signal(libc::SIGSEGV), "stderr: {stderr}");
        // A null-page write from inside a task.
        let name: Box<str> = "t".into();
        let task = RunningTask::new(&stack, 1, Some(&name));
        let (exit, stderr) = write(0x10, Some(&task));
        assert_eq!(exit, Exit::Signal(libc::SIGSEGV), "stderr: {stderr}");
        assert!(!stderr.contains("ivy:"), "stderr: {stderr}");
        // A guard hit when no task is set: not reported as an overflow.
        if stack.guard() != (0, 0) {
            let (exit, stderr) = write(stack.guard().1 - 1, None);
            assert_eq!(exit, Exit::Signal(libc::SIGSEGV), "stderr: {stderr}");
        }
    }

    #[test]
    fn altstack_is_restored() {
        std::thread::spawn(|| {
            let current = || {
                // SAFETY: with a null new stack, sigaltstack(2) only reads the current one.
                unsafe {
                    let mut ss: libc::stack_t = mem::zeroed();
                    assert_eq!(libc::sigaltstack(ptr::null(), &mut ss), 0);
                    (ss.ss_sp as usize, ss.ss_size, ss.ss_flags)
                }
            };
            let before = current();
            let alt = install_altstack().unwrap();
            let ours = current();
            assert_eq!(ours.0, alt.map as usize + super::super::page_size());
            assert!(ours.1 >= ALTSTACK_SIZE);
            drop(alt);
            assert_eq!(current(), before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn numbers_are_formatted() {
        let mut msg = Message {
            buf: [0; 512],
            len: 0,
        };
        for n in [0, 7, 10, 65536, u64::MAX] {
            msg.push_u64(n);
            msg.push(b" ");
        }
        assert_eq!(&msg.buf[..msg.len], b"0 7 10 65536 18446744073709551615 ");
    }
}
