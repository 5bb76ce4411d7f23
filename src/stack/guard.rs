//! Guard regions below task stacks, and what to do when the kernel cannot make them cheaply.
//!
//! `MADV_GUARD_INSTALL` (Linux 6.13+) turns a range into a guard region inside the page tables:
//! any access raises SIGSEGV, the mapping is not split, and the markers survive `MADV_DONTNEED`.
//! It is probed for once. Older kernels answer EINVAL; then a guard is an `mprotect(PROT_NONE)`
//! range, which splits its slab and so costs about two VMAs per stack. Those are budgeted to
//! what `vm.max_map_count` leaves after headroom for the rest of the process. Past the budget,
//! or once `mprotect` itself reports that the process is out of VMAs, new slots get no guard.
//!
//! Unguarded stacks are opt-in. An overflow in a stack without a guard silently corrupts the
//! memory below it (another task's stack), so by default a task that would need a new slot
//! past the budget is refused with an error that names the cause and the ways out
//! (`exhausted`), while freed guarded slots keep being reused, so a runtime with a steady
//! number of live tasks below the budget runs forever. A runtime built with
//! `Builder::unguarded_stacks(true)` (env `IVY_UNGUARDED_STACKS=1`) takes unguarded slots
//! instead: its user chose live-task count over overflow safety (regression: past the budget
//! every runtime silently got unguarded stacks, after one warning on stderr).
//!
//! The mechanism is chosen once per process, at the first stack, because slots and their
//! guards are shared by every runtime: `IVY_STACK_GUARD=mprotect` forces the fallback on any
//! kernel (to test it, or to avoid the probe), `IVY_STACK_GUARD_BUDGET=N` sets the number of
//! mprotect guards (default: from `vm.max_map_count`), `IVY_STACK_GUARD=auto` (or unset)
//! probes. `Builder::build` rejects other values.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>`, not yet in the libc crate.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// VMAs left to the rest of the process (heap, libraries, threads, I/O buffers) when budgeting
/// mprotect guards.
const VMA_HEADROOM: usize = 8192;

/// How new stacks get their guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMode {
    /// `MADV_GUARD_INSTALL`: no VMA cost, no limit.
    MadviseGuard,
    /// `mprotect(PROT_NONE)`: about two VMAs per stack, within a budget.
    Mprotect,
    /// The mprotect budget is spent: freed guarded stacks are still reused, but a new one
    /// has no guard, and only runtimes built with `Builder::unguarded_stacks(true)` use those;
    /// elsewhere a task that needs one is refused with an error.
    Unguarded,
}

/// The process's guard configuration from the environment (module comment): whether to force
/// mprotect guards, and the mprotect budget if set.
pub(crate) fn env_config() -> io::Result<(bool, Option<usize>)> {
    let force = match std::env::var("IVY_STACK_GUARD").as_deref() {
        Err(_) | Ok("") | Ok("auto") => false,
        Ok("mprotect") => true,
        Ok(other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ivy: IVY_STACK_GUARD={other:?} is not one of auto, mprotect"),
            ))
        }
    };
    let budget = match std::env::var("IVY_STACK_GUARD_BUDGET") {
        Err(_) => None,
        Ok(v) => Some(v.trim().parse::<usize>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ivy: IVY_STACK_GUARD_BUDGET={v:?} is not a whole number"),
            )
        })?),
    };
    Ok((force, budget))
}

/// Whether every new slot gets a guard (madvise guards): no budget to count.
pub(super) fn unlimited() -> bool {
    guards().madvise
}

/// How many more slots can get a guard: `usize::MAX` with madvise guards.
pub(super) fn guards_left() -> usize {
    let g = guards();
    if g.madvise {
        usize::MAX
    } else {
        g.mprotect_left.load(Ordering::Relaxed)
    }
}

/// The error of a task refused a stack because no guarded one is left.
pub(super) fn exhausted() -> io::Error {
    let g = guards();
    let (budget, why) = (g.budget, g.why_mprotect);
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "ivy: no guarded task stack is left: {why}, and all {budget} mprotect stack guards \
             (a budget from vm.max_map_count, or IVY_STACK_GUARD_BUDGET) are in use. \
             Raise vm.max_map_count, have fewer tasks alive at once, or build the runtime with \
             Builder::unguarded_stacks(true) (env IVY_UNGUARDED_STACKS=1), accepting that a \
             stack overflow then corrupts memory instead of aborting"
        ),
    )
}

/// How stacks carved from now on are guarded. Stacks carved earlier keep their guards.
pub fn guard_mode() -> GuardMode {
    guards().mode()
}

/// Installs the guards of many fresh slots at once: `[addr, addr + len)` for each
/// `addr`. Returns, per slot, whether it got a guard (see `install`).
///
/// With madvise guards, one `process_madvise(2)` call covers up to 1024 slots
/// (regression: one `madvise` per stack made carving 1M stacks cost a second of
/// system time); kernels that refuse it get one `madvise` per slot.
pub(super) fn install_many(addrs: &[usize], len: usize) -> io::Result<Vec<bool>> {
    let g = guards();
    if g.madvise {
        let iov: Vec<libc::iovec> = addrs
            .iter()
            .map(|&a| libc::iovec {
                iov_base: a as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
        // SAFETY: every range is the never-used bottom of a fresh slot owned by the
        // caller, inside a slab mapping; turning it into a guard affects nothing else.
        if unsafe { madvise_many(&iov, MADV_GUARD_INSTALL, &UNSUPPORTED) } {
            return Ok(vec![true; addrs.len()]);
        }
    }
    addrs.iter().map(|&a| g.install(a, len)).collect()
}

/// A pidfd for this process, opened once per process: `None` if the kernel has no
/// `pidfd_open`.
///
/// The pid it was opened for is kept with it. After `fork` the child inherits
/// the parent's pidfd, and `process_madvise` through it names the *parent*: the
/// kernel refuses destructive advice for another process (so the child's stack
/// pool fell back to one `madvise` per range for good), and an advice it allowed
/// would land on the parent's pages at the child's addresses. So a pid mismatch
/// closes the inherited copy and opens the child's own (regression test
/// `a_forked_child_advises_its_own_memory_not_its_parents`). Only the process that opened an fd ever
/// closes it, so an fd handed out is never closed under a caller.
fn own_pidfd() -> Option<libc::c_int> {
    use std::sync::Mutex;
    static PIDFD: Mutex<Option<(libc::pid_t, Option<libc::c_int>)>> = Mutex::new(None);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut cached = PIDFD.lock().unwrap_or_else(|e| e.into_inner());
    match *cached {
        Some((owner, fd)) if owner == pid => return fd,
        Some((_, Some(inherited))) => {
            // SAFETY: the parent's pidfd, inherited by this child and used by
            // nobody here (the pid check above runs before every use).
            unsafe { libc::close(inherited) };
        }
        _ => {}
    }
    // SAFETY: pidfd_open on our own pid with no flags; it returns a new fd
    // (close-on-exec) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = (fd >= 0).then_some(fd as libc::c_int);
    *cached = Some((pid, fd));
    fd
}

/// Applies `advice` to every range with `process_madvise(2)` on our own process,
/// up to 1024 ranges per call. Returns `false` if the kernel does not support that
/// advice there (then `unsupported` is set so later calls skip the attempt, and a
/// prefix of the ranges may have been advised: callers fall back to `madvise`
/// per range, which must be harmless to repeat).
///
/// The kernel advises at most `MAX_RW_COUNT` (~2 GiB) bytes per call and reports
/// how many it did: the next call resumes at that exact byte, inside a range if it
/// stopped in one (regression: resuming at the next whole range skipped the rest of
/// a range longer than the cap, so after a burst of 1M tasks most of their stacks'
/// memory stayed resident).
///
/// # Safety
/// Applying `advice` to every range must be sound (see `madvise(2)`).
pub(super) unsafe fn madvise_many(
    ranges: &[libc::iovec],
    advice: libc::c_int,
    unsupported: &AtomicBool,
) -> bool {
    if unsupported.load(Ordering::Relaxed) {
        return false;
    }
    let Some(pidfd) = own_pidfd() else {
        unsupported.store(true, Ordering::Relaxed);
        return false;
    };
    let mut progress = Progress::default();
    let mut chunk: Vec<libc::iovec> = Vec::with_capacity(ranges.len().min(1024));
    while progress.fill(ranges, &mut chunk, 1024) {
        // SAFETY: the kernel only reads the iovec array; the advice itself is the
        // caller's obligation.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                pidfd,
                chunk.as_ptr(),
                chunk.len(),
                advice,
                0,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
                continue;
            }
            unsupported.store(true, Ordering::Relaxed);
            return false;
        }
        if rc == 0 {
            // No progress on a non-empty request: let the caller use plain madvise
            // rather than loop.
            return false;
        }
        progress.advance(ranges, rc as usize);
    }
    true
}

/// How far `madvise_many` got: whole ranges done, and bytes done of the next one.
#[derive(Default)]
struct Progress {
    range: usize,
    offset: usize,
}

impl Progress {
    /// Fills `chunk` with up to `max` iovecs of what is left (the first one possibly
    /// a remainder). Returns `false` when nothing is left.
    fn fill(&mut self, ranges: &[libc::iovec], chunk: &mut Vec<libc::iovec>, max: usize) -> bool {
        while self.range < ranges.len() && ranges[self.range].iov_len == self.offset {
            self.range += 1;
            self.offset = 0;
        }
        chunk.clear();
        for (i, r) in ranges[self.range..].iter().take(max).enumerate() {
            let skip = if i == 0 { self.offset } else { 0 };
            if r.iov_len > skip {
                chunk.push(libc::iovec {
                    iov_base: (r.iov_base as usize + skip) as *mut libc::c_void,
                    iov_len: r.iov_len - skip,
                });
            }
        }
        !chunk.is_empty()
    }

    /// Records that the kernel advised `bytes` more bytes, in order.
    fn advance(&mut self, ranges: &[libc::iovec], mut bytes: usize) {
        while bytes > 0 && self.range < ranges.len() {
            let left = ranges[self.range].iov_len - self.offset;
            if bytes >= left {
                bytes -= left;
                self.range += 1;
                self.offset = 0;
            } else {
                self.offset += bytes;
                bytes = 0;
            }
        }
    }
}

fn guards() -> &'static Guards {
    static GUARDS: OnceLock<Guards> = OnceLock::new();
    GUARDS.get_or_init(|| {
        // `Builder::build` reported a malformed environment; here it means the defaults.
        let (force_mprotect, budget) = env_config().unwrap_or((false, None));
        let mut g = if !force_mprotect && probe_madvise() {
            Guards::new(true, 0)
        } else {
            Guards::new(false, budget.unwrap_or_else(mprotect_budget))
        };
        if force_mprotect {
            g.why_mprotect = "IVY_STACK_GUARD=mprotect is set";
        }
        g
    })
}

struct Guards {
    madvise: bool,
    /// mprotect guards that may still be installed...
    mprotect_left: AtomicUsize,
    /// ...of this many.
    budget: usize,
    /// Why guards are mprotect ones, for `exhausted`.
    why_mprotect: &'static str,
}

impl Guards {
    fn new(madvise: bool, mprotect_budget: usize) -> Guards {
        Guards {
            madvise,
            mprotect_left: AtomicUsize::new(mprotect_budget),
            budget: mprotect_budget,
            why_mprotect: "this kernel lacks MADV_GUARD_INSTALL (Linux 6.13+)",
        }
    }

    fn mode(&self) -> GuardMode {
        if self.madvise {
            GuardMode::MadviseGuard
        } else if self.mprotect_left.load(Ordering::Relaxed) > 0 {
            GuardMode::Mprotect
        } else {
            GuardMode::Unguarded
        }
    }

    fn install(&self, addr: usize, len: usize) -> io::Result<bool> {
        let ptr = addr as *mut libc::c_void;
        if self.madvise {
            // SAFETY: the range is the never-used bottom of a slot that the caller alone owns,
            // inside a slab mapping; turning it into a guard region affects nothing else.
            retry(|| unsafe { libc::madvise(ptr, len, MADV_GUARD_INSTALL) })?;
            return Ok(true);
        }
        let take = |n: usize| n.checked_sub(1);
        if self
            .mprotect_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
            .is_ok()
        {
            // SAFETY: as above; making the range inaccessible affects only this slot's guard.
            match retry(|| unsafe { libc::mprotect(ptr, len, libc::PROT_NONE) }) {
                Ok(()) => return Ok(true),
                // The process ran out of VMAs before our budget did.
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
                    self.mprotect_left.store(0, Ordering::Relaxed)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// Runs a syscall wrapper until it does not fail with EINTR or EAGAIN.
fn retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<()> {
    loop {
        if f() == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
            return Err(err);
        }
    }
}

/// Whether this kernel installs guard regions with madvise. Any failure, EINVAL on kernels
/// before 6.13 or something stranger, means no.
fn probe_madvise() -> bool {
    let len = 2 * super::page_size();
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a new anonymous mapping at an address of the kernel's choosing aliases nothing.
    let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_NONE, flags, -1, 0) };
    if ptr == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: the mapping is ours alone, and is unmapped right after.
    unsafe {
        let ok = libc::madvise(ptr, len / 2, MADV_GUARD_INSTALL) == 0;
        libc::munmap(ptr, len);
        ok
    }
}

/// mprotect guards that fit under `vm.max_map_count`, at two VMAs each, after the headroom.
fn mprotect_budget() -> usize {
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(65530);
    max_map_count.saturating_sub(VMA_HEADROOM) / 2
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{in_child, Exit};
    use super::*;

    #[test]
    fn a_forked_child_advises_its_own_memory_not_its_parents() {
        // SAFETY: a fresh private anonymous page, unmapped at the end.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let byte = page.cast::<u8>();
        // SAFETY: the page is mapped read-write.
        unsafe { byte.write_volatile(0xab) };
        let range = [libc::iovec {
            iov_base: page,
            iov_len: 4096,
        }];
        // The parent opens (and caches) its pidfd first, as a runtime does, and
        // learns whether this kernel takes DONTNEED through process_madvise.
        let scratch = AtomicBool::new(false);
        // SAFETY: DONTNEED on a private anonymous page this test owns.
        let batched_here = unsafe { madvise_many(&range, libc::MADV_DONTNEED, &scratch) };
        // SAFETY: the page is mapped read-write.
        unsafe { byte.write_volatile(0xab) };
        let (exit, err) = in_child(|| {
            let unsupported = AtomicBool::new(false);
            // SAFETY: DONTNEED on a private anonymous page this test owns.
            let advised = unsafe { madvise_many(&range, libc::MADV_DONTNEED, &unsupported) };
            assert_eq!(advised, batched_here, "the child lost (or gained) batching");
            if advised {
                // SAFETY: still mapped; DONTNEED made it read as zero here.
                assert_eq!(unsafe { byte.read_volatile() }, 0, "the child's own page");
            }
        });
        assert_eq!(exit, Exit::Code(0), "{err}");
        // SAFETY: the page is still mapped in the parent.
        let kept = unsafe { byte.read_volatile() };
        // SAFETY: unmapping the page mapped above.
        unsafe { libc::munmap(page, 4096) };
        assert_eq!(kept, 0xab, "the child's madvise reached the parent's page");
    }

    #[test]
    fn probe_matches_the_kernel() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().unwrap().parse().unwrap();
        let minor: u32 = parts.next().unwrap().parse().unwrap();
        assert_eq!(
            probe_madvise(),
            (major, minor) >= (6, 13),
            "kernel {release}"
        );
    }

    /// One `process_madvise` call advises at most ~2 GiB: ranges beyond that, and the rest of
    /// a single range longer than that, must still be advised (regression: they were skipped,
    /// and a burst's stacks stayed resident).
    #[test]
    fn madvise_many_covers_more_than_the_kernel_cap() {
        use super::super::test_util::resident_pages;
        const GIB: usize = 1 << 30;
        let len = 5 * GIB;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new anonymous mapping, ours alone, unmapped at the end of the test.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base as usize;
        let stride = 1 << 20; // one touched page per MiB: 5120 pages, 20 MiB of memory
        let touch = || {
            for addr in (base..base + len).step_by(stride) {
                // SAFETY: inside our read-write mapping.
                unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
            }
            assert_eq!(resident_pages(base, len), len / stride);
        };
        let iov = |lo: usize, n: usize| libc::iovec {
            iov_base: lo as *mut libc::c_void,
            iov_len: n,
        };
        let layouts: [Vec<libc::iovec>; 3] = [
            // One range of 5 GiB: the kernel stops inside it, twice.
            vec![iov(base, len)],
            // Five ranges of 1 GiB: one call covers two of them, and stops inside the third.
            (0..5).map(|i| iov(base + i * GIB, GIB)).collect(),
            // An empty range and unequal ones.
            vec![
                iov(base, 3 * GIB + 4096),
                iov(base + 3 * GIB + 4096, 0),
                iov(base + 3 * GIB + 4096, 2 * GIB - 4096),
            ],
        ];
        for ranges in &layouts {
            touch();
            let unsupported = AtomicBool::new(false);
            // SAFETY: the ranges cover our own mapping, whose contents nobody reads.
            let batched = unsafe { madvise_many(ranges, libc::MADV_DONTNEED, &unsupported) };
            if !batched {
                // SAFETY: as above.
                unsafe { libc::madvise(base as *mut _, len, libc::MADV_DONTNEED) };
                eprintln!("process_madvise(MADV_DONTNEED) unsupported here: nothing to check");
                break;
            }
            assert_eq!(resident_pages(base, len), 0, "{} ranges", ranges.len());
        }
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
    }

    /// The fallback guards with mprotect, within its budget, then reports slots as unguarded.
    #[test]
    fn mprotect_fallback_has_a_budget() {
        let page = super::super::page_size();
        let slot = 4 * page;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new anonymous mapping, ours alone, unmapped at the end of the test.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), 3 * slot, prot, flags, -1, 0) };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base as usize;

        let guards = Guards::new(false, 2);
        assert_eq!(guards.mode(), GuardMode::Mprotect);
        let guarded: Vec<bool> = (0..3)
            .map(|i| guards.install(base + i * slot, page).unwrap())
            .collect();
        assert_eq!(guarded, [true, true, false]);
        assert_eq!(guards.mode(), GuardMode::Unguarded);

        let write = |addr: usize| {
            in_child(|| {
                // SAFETY: either a guard page, which must fault in this child, or our mapping.
                unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
            })
            .0
        };
        assert_eq!(write(base + slot), Exit::Signal(libc::SIGSEGV));
        assert_eq!(write(base + slot + page), Exit::Code(0));
        assert_eq!(write(base + 2 * slot), Exit::Code(0));

        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(base as *mut libc::c_void, 3 * slot) };
    }
}
