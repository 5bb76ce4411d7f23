//! Task stacks: guard-paged, pooled, and cheap in kernel memory areas.
//!
//! Linux caps a process at `vm.max_map_count` memory areas (VMAs, 65530 by default). A stack
//! that is its own mapping with an `mprotect`ed guard page costs two, which caps a runtime near
//! 32k live tasks. Here a stack is instead a slot in a large anonymous `MAP_NORESERVE` slab, and
//! its guard is installed with `MADV_GUARD_INSTALL` (Linux 6.13+), which marks page-table entries
//! without splitting the mapping: a slab of 1024 guarded stacks is one VMA, and only the pages a
//! task touches cost memory. Older kernels get `mprotect` guards within a VMA budget; past it,
//! only runtimes that opted in get unguarded stacks, and other tasks are refused with an error
//! (`guard.rs`).
//!
//! A slot is, from low to high address, `[guard | usable]`, and stacks grow down into the guard.
//! The guard is 16 KiB (or one page if pages are larger), so a frame of up to that size that
//! skips ahead without touching every page (C code built without stack-clash protection) still
//! lands in it rather than in the next task's stack. Usable sizes are powers of two from
//! `MIN_STACK_SIZE` to `MAX_STACK_SIZE`, one slab chain and free list per size class: a request
//! gets less than twice what it asked for, and the surplus is address space, not memory.
//!
//! Right above the frames (at the top of the usable range, or below a top reserve if the task
//! has one) is a `HEADER_SIZE` (128-byte) header: the running code's descriptor, which the task
//! layer fills in (what the overflow handler reports, the saved thread state, the coroutine that
//! owns this very stack and what the task's code reaches through it: `task::raw::StackHeader`;
//! a generator body's stack leaves it unused, its descriptor is in the generator's own state).
//! It shares its page with the first frames, which every started task touches anyway, so a
//! started task's descriptor costs no memory of its own; in the task's heap header it cost
//! every task, started or not, 152 bytes (`idle_memory`, findings/memory.md). As a thread's
//! stack holds glibc's descriptor and TLS, the header is taken from the slot's usable size: a
//! request that is already a power of two gets 128 bytes less for its frames rather than a
//! slot twice the size (and, with madvise guards, twice the page tables).
//!
//! A top reserve (`Builder::stack_top_reserve`, for bindings): a task may have the top bytes of
//! its slot set aside above its entry frames and the header, `[base + HEADER_SIZE, usable_hi)`,
//! for the code it runs to use as memory of its own (the Python binding puts its data-stack root
//! chunk there). Why on the stack and above the frames: the reserve's low end and the task's
//! first frames then share a page, so a parked task that uses a little of both costs one page,
//! where a chunk allocated by the task's frames themselves sat a chunk's length below them and
//! cost a second page. The reserve comes on top of the requested size (the task still gets
//! `size` bytes for its frames and header), lives and dies with the slot, and is reused
//! zero-or-garbage like the rest of a warm stack.
//!
//! Invariant: a slot handed out as a `TaskStack` is used by nothing else until the `TaskStack` is
//! dropped, and a slot's guard, once installed, stays for the life of the process: slabs are
//! never unmapped, and freeing a stack at most discards its pages (`pool.rs`).

mod guard;
pub(crate) mod overflow;
mod pool;
mod refill;
#[cfg(test)]
mod test_util;
mod valgrind;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use corosensei::stack::{Stack, StackPointer};

pub use guard::{guard_mode, GuardMode};

/// Smallest usable stack: every request is rounded up to at least this.
pub(crate) const MIN_STACK_SIZE: usize = 16 << 10;

/// Default stack size of a task: 256 KiB of address space, of which only the pages
/// a task touches use memory (typically 4-16 KiB for Rust code). C code tends to
/// need more (glibc's DNS resolver, big `printf` buffers): see the C ABI's default.
pub const DEFAULT_STACK_SIZE: usize = 256 << 10;

/// Largest usable stack; larger requests fail with `InvalidInput`.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Number of size classes: one per power of two in `MIN_STACK_SIZE..=MAX_STACK_SIZE`.
const NUM_CLASSES: usize =
    (MAX_STACK_SIZE.trailing_zeros() - MIN_STACK_SIZE.trailing_zeros()) as usize + 1;

/// Discards every idle free stack's pages now: called when a runtime shuts down.
pub(crate) use pool::discard_idle as discard_free_stacks;
/// A task's stack: a slot in a slab, owned until dropped, when it returns to the pool.
/// Discards idle free stacks' pages (see `pool`): call when a worker goes idle.
pub(crate) use pool::trim as trim_free_stacks;

pub(crate) struct TaskStack {
    /// The slot's lowest address, where its guard (if any) begins.
    addr: usize,
    /// The top of the frames' range, computed once: corosensei asks for it at every resume.
    base: usize,
    /// valgrind's id for this stack (`valgrind.rs`); 0 when not under valgrind. A `u32`
    /// (valgrind hands out small ids), so that with `class` and `guarded` the whole stack is
    /// 24 bytes: it lives in every started task's header (`idle_memory`).
    valgrind_id: u32,
    class: u8,
    guarded: bool,
}

impl TaskStack {
    /// Allocates a stack with at least `size` usable bytes: `size` is rounded up to a power of
    /// two of at least `MIN_STACK_SIZE` and one page. A stack reused from this thread's cache is
    /// warm (its pages are already faulted in) and holds the previous task's garbage.
    pub(crate) fn allocate(size: usize) -> io::Result<TaskStack> {
        TaskStack::allocate_for(size, 0, false)
    }

    /// `allocate`, with `top_reserve` bytes (a multiple of `RESERVE_ALIGN`: `round_reserve`) set
    /// aside at the top, above the frames, on top of `size` (module comment); and a stack without
    /// a guard page will do if `unguarded_ok` and no guarded one can be had
    /// (`Builder::unguarded_stacks`; see `guard.rs`).
    pub(crate) fn allocate_for(
        size: usize,
        top_reserve: usize,
        unguarded_ok: bool,
    ) -> io::Result<TaskStack> {
        debug_assert_eq!(top_reserve % RESERVE_ALIGN, 0);
        let class = checked_class(with_top_reserve(size, top_reserve))?;
        pool::note_top_reserve(class, top_reserve);
        let slot = pool::take(class, unguarded_ok)?;
        let usable_hi = slot.addr + guard_size() + class_size(class);
        let valgrind_id = valgrind::register(usable_hi - class_size(class), usable_hi);
        Ok(TaskStack {
            addr: slot.addr,
            base: usable_hi - top_reserve - HEADER_SIZE,
            valgrind_id,
            class: class as u8,
            guarded: slot.guarded,
        })
    }

    /// Usable bytes, top reserve included: the rounded-up size, which is at least what was asked
    /// for plus the reserve.
    pub(crate) fn size(&self) -> usize {
        class_size(self.class as usize)
    }

    /// The `[lo, hi)` address range of the whole usable stack, top reserve included.
    #[inline]
    pub(crate) fn usable(&self) -> (usize, usize) {
        let lo = self.addr + guard_size();
        (lo, lo + self.size())
    }

    /// The start of the guard below the stack (its end is `usable().0`), or 0 if it has none.
    #[inline]
    pub(crate) fn guard_lo(&self) -> usize {
        if self.guarded {
            self.addr
        } else {
            0
        }
    }

    /// The `[lo, hi)` address range of the top reserve; empty (`lo == hi`) without one. (The
    /// running task finds its own from `overflow::RunningTask`: `task::stack_top_reserve`.)
    #[cfg(test)]
    pub(crate) fn top_reserve(&self) -> (usize, usize) {
        (self.base + HEADER_SIZE, self.usable().1)
    }

    /// The stack's header: `HEADER_SIZE` bytes right above its frames (at `base`, below the
    /// top reserve if any), aligned to `HEADER_ALIGN` (module comment). It holds the previous
    /// user's garbage (or zeros) until written. The pointer stays valid for this stack's owner
    /// alone until the `TaskStack` is dropped, wherever the `TaskStack` moves (into a
    /// coroutine, say): it points into the slot, not into `self`.
    #[inline]
    pub(crate) fn header(&self) -> std::ptr::NonNull<u8> {
        std::ptr::NonNull::new(self.base as *mut u8).expect("a stack's header is not null")
    }

    #[cfg(test)]
    /// The `[lo, hi)` address range of the guard below the stack, or `(0, 0)` if it has none.
    pub(crate) fn guard(&self) -> (usize, usize) {
        if self.guarded {
            (self.addr, self.addr + guard_size())
        } else {
            (0, 0)
        }
    }

    #[inline]
    fn base(&self) -> usize {
        self.base
    }
}

// SAFETY: `[limit, base)` is a slot that this `TaskStack` alone owns until it is dropped. Its top
// `size()` bytes are mapped read-write and its bottom `guard_size()` bytes are a guard region,
// except in a slot handed out unguarded past the mprotect budget, which only a runtime built with
// `Builder::unguarded_stacks(true)` gets (guard.rs): the one departure from the trait's contract,
// chosen by the user.
// Both ends are page-aligned, hence `STACK_ALIGNMENT`-aligned, and the usable size is at least
// `MIN_STACK_SIZE`, far above corosensei's minimum.
unsafe impl Stack for TaskStack {
    fn base(&self) -> StackPointer {
        StackPointer::new(TaskStack::base(self)).expect("stack base is non-null")
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.addr).expect("stack limit is non-null")
    }
}

impl Drop for TaskStack {
    fn drop(&mut self) {
        valgrind::deregister(self.valgrind_id);
        let slot = pool::Slot {
            addr: self.addr,
            guarded: self.guarded,
        };
        pool::give(self.class as usize, slot);
    }
}

/// Whether a task asking for `size` bytes of stack can get one (`pool::may_take`); else the
/// error that names the cause. Checked at spawn, so that the refusal is reported at once.
pub(crate) fn check_available(size: usize, unguarded_ok: bool) -> io::Result<()> {
    if pool::may_take(checked_class(size)?, unguarded_ok) {
        Ok(())
    } else {
        Err(guard::exhausted())
    }
}

pub(crate) use guard::env_config as guard_env_config;

/// Bytes above every stack's frames for its header (`TaskStack::header`): the overflow
/// report's description, the saved thread state and the coroutine of the task that runs on it.
pub(crate) const HEADER_SIZE: usize = 128;

/// Alignment of the header: the slot's top is page-aligned, and `HEADER_SIZE` and a top
/// reserve are multiples of it.
pub(crate) const HEADER_ALIGN: usize = 16;

const _: () = assert!(HEADER_SIZE % HEADER_ALIGN == 0 && HEADER_ALIGN >= RESERVE_ALIGN);

/// Alignment of a top reserve's size, hence of the stack base below it: the ABI's stack alignment,
/// and enough for any object a binding places at the reserve's start.
pub(crate) const RESERVE_ALIGN: usize = 16;

/// Largest top reserve (`Builder::stack_top_reserve` refuses more): the reserve is for a binding's
/// few KiB of per-task state, not a second stack.
pub(crate) const MAX_TOP_RESERVE: usize = 1 << 20;

/// `bytes` rounded up to `RESERVE_ALIGN`; at most `MAX_TOP_RESERVE` is ever asked for.
pub(crate) fn round_reserve(bytes: usize) -> usize {
    bytes.min(MAX_TOP_RESERVE).next_multiple_of(RESERVE_ALIGN)
}

/// The bytes a task with `size` bytes of stack and a top reserve of `top_reserve` (rounded:
/// `round_reserve`) needs in all: what `check_available` is asked about and what the size class
/// is chosen for. A tiny size counts as `MIN_STACK_SIZE`, as it does without a reserve, so that
/// the frames keep at least that less the header (regression: a 1-byte stack under a reserve a
/// few bytes short of its class put the header in the guard, and the worker faulted writing
/// it). Saturates, so that an absurd sum is refused as too big.
#[inline]
pub(crate) fn with_top_reserve(size: usize, top_reserve: usize) -> usize {
    if top_reserve == 0 {
        size
    } else {
        size.max(MIN_STACK_SIZE).saturating_add(top_reserve)
    }
}

fn checked_class(size: usize) -> io::Result<usize> {
    class_of(size).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "ivy: task stack size above the 1 GiB maximum",
        )
    })
}

/// The size class of a request: the index of its rounded-up power of two above `MIN_STACK_SIZE`.
fn class_of(size: usize) -> Option<usize> {
    if size > MAX_STACK_SIZE {
        return None;
    }
    let bytes = size
        .max(MIN_STACK_SIZE)
        .max(page_size())
        .next_power_of_two();
    Some((bytes.trailing_zeros() - MIN_STACK_SIZE.trailing_zeros()) as usize)
}

fn class_size(class: usize) -> usize {
    MIN_STACK_SIZE << class
}

/// Bytes of guard below each stack: 16 KiB, or one page if that is larger. A page multiple.
fn guard_size() -> usize {
    page_size().max(16 << 10)
}

fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    match PAGE_SIZE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf only reads a system constant.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = usize::try_from(page).expect("sysconf(_SC_PAGESIZE) failed");
            assert!(page.is_power_of_two());
            PAGE_SIZE.store(page, Ordering::Relaxed);
            page
        }
        page => page,
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{in_child, maps_count, resident_pages, Exit};
    use super::*;

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<TaskStack>();
    }

    #[test]
    fn sizes_round_up() {
        let size = |n| TaskStack::allocate(n).unwrap().size();
        assert_eq!(size(0), MIN_STACK_SIZE);
        assert_eq!(size(1), MIN_STACK_SIZE);
        assert_eq!(size(MIN_STACK_SIZE), MIN_STACK_SIZE);
        assert_eq!(size(MIN_STACK_SIZE + 1), 2 * MIN_STACK_SIZE);
        assert_eq!(
            size(DEFAULT_STACK_SIZE),
            DEFAULT_STACK_SIZE.next_power_of_two()
        );
        assert_eq!(size(100_000), 128 << 10);
        let err = TaskStack::allocate(MAX_STACK_SIZE + 1).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(class_of(MAX_STACK_SIZE), Some(NUM_CLASSES - 1));
    }

    /// The top reserve: the stack's top `reserve` bytes (rounded up to 16) above the base, added
    /// to the requested size (a 64 KiB request with a reserve takes the 128 KiB class), empty
    /// without one.
    #[test]
    fn top_reserve_layout() {
        let plain = TaskStack::allocate_for(64 << 10, 0, false).unwrap();
        let (lo, hi) = plain.usable();
        assert_eq!(plain.top_reserve(), (hi, hi));
        assert_eq!(Stack::base(&plain).get(), hi - HEADER_SIZE);
        assert_eq!(plain.header().as_ptr() as usize, hi - HEADER_SIZE);
        assert_eq!(hi - lo, 64 << 10);
        let reserved = TaskStack::allocate_for(64 << 10, round_reserve(1000), false).unwrap();
        let (lo, hi) = reserved.usable();
        assert_eq!(hi - lo, 128 << 10);
        assert_eq!(hi % page_size(), 0);
        assert_eq!(reserved.top_reserve(), (hi - 1008, hi));
        // The header sits between the frames and the reserve.
        assert_eq!(reserved.header().as_ptr() as usize, hi - 1008 - HEADER_SIZE);
        assert_eq!(Stack::base(&reserved).get(), hi - 1008 - HEADER_SIZE);
        assert_eq!(Stack::base(&reserved).get() % HEADER_ALIGN, 0);
        assert_eq!(round_reserve(1000), 1008);
        assert_eq!(with_top_reserve(usize::MAX, 16), usize::MAX);
        assert!(TaskStack::allocate_for(MAX_STACK_SIZE, 16, false).is_err());
    }

    #[test]
    fn layout() {
        let stack = TaskStack::allocate(DEFAULT_STACK_SIZE).unwrap();
        let (base, limit) = (Stack::base(&stack).get(), stack.limit().get());
        assert_eq!(base + HEADER_SIZE - limit, guard_size() + stack.size());
        assert_eq!(limit % page_size(), 0);
        if guard_mode() == GuardMode::MadviseGuard {
            assert_eq!(stack.guard(), (limit, limit + guard_size()));
        }
        // The usable range is writable end to end.
        let usable = limit + guard_size();
        // SAFETY: [limit + guard, limit + guard + size) is this stack's usable memory (header
        // included), which we own.
        unsafe { std::ptr::write_bytes(usable as *mut u8, 0xa5, stack.size()) };
    }

    #[test]
    fn free_and_reuse_on_the_same_thread() {
        let a = TaskStack::allocate(32 << 10).unwrap();
        let b = TaskStack::allocate(32 << 10).unwrap();
        let (addr_a, addr_b) = (a.addr, b.addr);
        assert_ne!(addr_a, addr_b);
        drop(a);
        drop(b);
        // The cache is LIFO: the last stack freed is the first handed out again, still warm.
        let c = TaskStack::allocate(32 << 10).unwrap();
        assert_eq!(c.addr, addr_b);
        let d = TaskStack::allocate(20 << 10).unwrap();
        assert_eq!(d.addr, addr_a);
    }

    #[test]
    fn guard_faults() {
        let stack = TaskStack::allocate(128 << 10).unwrap();
        let (lo, hi) = stack.guard();
        if (lo, hi) == (0, 0) {
            return; // unguarded: the mprotect budget is spent (only on pre-6.13 kernels)
        }
        for addr in [lo, hi - 1] {
            let (exit, _) = in_child(|| {
                // SAFETY: none: this write must fault, in a child process.
                unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
            });
            assert_eq!(exit, Exit::Signal(libc::SIGSEGV), "write at {addr:#x}");
        }
        // Just above the guard is the stack's lowest usable byte.
        let (exit, _) = in_child(|| {
            // SAFETY: `hi` is the first byte of the stack's usable memory, which we own.
            unsafe { std::ptr::write_volatile(hi as *mut u8, 1) };
        });
        assert_eq!(exit, Exit::Code(0));
    }

    /// Freed stacks past the cache bound lose their pages but keep their guards.
    #[test]
    fn dontneed_keeps_guards() {
        // The 1 MiB class is used only by this test, so the global list is ours to inspect.
        let size = 1 << 20;
        let stack = TaskStack::allocate(size).unwrap();
        let (addr, (lo, hi)) = (stack.addr, stack.guard());
        let usable = (addr + guard_size()) as *mut u8;
        // SAFETY: the usable range of a stack we own.
        unsafe { std::ptr::write_bytes(usable, 0x5a, size) };
        assert_eq!(resident_pages(usable as usize, size), size / page_size());
        drop(stack);
        pool::flush_cache();
        assert!(pool::is_free(class_of(size).unwrap(), addr));
        assert_eq!(resident_pages(usable as usize, size), 0);

        // The kernel documents that guard markers survive MADV_DONTNEED even over the guard
        // itself; the pool only discards usable pages, but check the stronger claim.
        let whole = guard_size() + size;
        // SAFETY: the slot is on the free list, used by no one (this class is this test's).
        let rc = unsafe { libc::madvise(addr as *mut _, whole, libc::MADV_DONTNEED) };
        assert_eq!(rc, 0);

        let again = TaskStack::allocate(size).unwrap();
        assert_eq!(again.addr, addr);
        assert_eq!(again.guard(), (lo, hi));
        // SAFETY: the first usable byte of a stack we own.
        assert_eq!(unsafe { *usable }, 0, "pages were discarded");
        if lo != 0 {
            let (exit, _) = in_child(|| {
                // SAFETY: none: this write must fault, in a child process.
                unsafe { std::ptr::write_volatile((hi - 1) as *mut u8, 1) };
            });
            assert_eq!(exit, Exit::Signal(libc::SIGSEGV));
        }
    }

    /// A thread's cache is bounded: stacks beyond it go to the global warm list, still
    /// resident and reused first; `trim` discards them.
    #[test]
    fn cache_is_bounded_and_trim_discards() {
        let size = 512 << 10; // a class used only by this test
        let class = class_of(size).unwrap();
        let stacks: Vec<_> = (0..200)
            .map(|_| TaskStack::allocate(size).unwrap())
            .collect();
        let addrs: Vec<_> = stacks.iter().map(|s| s.addr).collect();
        for s in &stacks {
            // SAFETY: the usable range of a stack we own.
            unsafe { std::ptr::write_bytes((s.addr + guard_size()) as *mut u8, 1, size) };
        }
        drop(stacks);
        let cap = pool::cache_cap(class);
        let spilled: Vec<_> = addrs.iter().filter(|&&a| pool::is_warm(class, a)).collect();
        assert!(!spilled.is_empty() && spilled.len() <= 200 - cap.div_ceil(2));
        // Spilled stacks are still resident...
        for &&a in &spilled {
            assert!(resident_pages(a + guard_size(), size) > 0);
        }
        // ...after one trim generation too (they age)...
        pool::age_and_discard();
        for &&a in &spilled {
            assert!(pool::is_warm(class, a));
            assert!(resident_pages(a + guard_size(), size) > 0);
        }
        // ...and the next one discards them.
        pool::age_and_discard();
        for &&a in &spilled {
            assert!(pool::is_free(class, a));
            assert_eq!(resident_pages(a + guard_size(), size), 0);
        }
        let warm = addrs
            .iter()
            .filter(|&&a| resident_pages(a + guard_size(), size) > 0)
            .count();
        assert!(
            warm > 0 && warm <= cap,
            "{warm} warm stacks, cache bound {cap}"
        );
    }

    #[test]
    fn refill_faults_in_the_first_frames_page_and_trim_ages_it() {
        if !guard::unlimited() {
            return; // the filler runs with madvise guards only
        }
        let size = 2 << 20; // a class used only by this test
        let reserve = (8 << 10) + 400; // the first frames' page is the third from the top
        let class = class_of(size).unwrap();
        pool::note_top_reserve(class, reserve);
        pool::refill(class);
        let ready = pool::ready_slots(class);
        assert_eq!(ready.len(), refill::READY_TARGET);
        let page = page_size();
        let hot = (guard_size() + size - reserve - HEADER_SIZE - 1) & !(page - 1);
        for &a in &ready {
            assert_eq!(resident_pages(a + hot, page), 1, "the first frames' page");
            assert_eq!(resident_pages(a + guard_size(), size), 1, "and no other");
        }
        pool::refill(class);
        assert_eq!(pool::ready_slots(class), ready, "full: nothing to do");
        // A task's stack comes off the ready list, guarded, its first page resident.
        let stack = TaskStack::allocate_for(size - reserve, reserve, false).unwrap();
        assert_eq!(Some(&stack.addr), ready.last());
        assert!(stack.guarded);
        assert_eq!((stack.base - 1 - stack.addr) & !(page - 1), hot);
        drop(stack);
        // Ready slots age like warm ones: two trim generations discard the unused ones.
        pool::age_and_discard();
        pool::age_and_discard();
        for &a in &ready[..ready.len() - 1] {
            assert!(pool::is_free(class, a));
            assert_eq!(resident_pages(a + guard_size(), size), 0);
        }
    }

    #[test]
    fn thread_exit_flushes_cache() {
        let size = 2 << 20; // a class used only by this test
        let addr = std::thread::spawn(move || {
            let stack = TaskStack::allocate(size).unwrap();
            // SAFETY: the top byte of a stack we own.
            unsafe { *((Stack::base(&stack).get() - 1) as *mut u8) = 1 };
            stack.addr
        })
        .join()
        .unwrap();
        assert!(pool::is_free(class_of(size).unwrap(), addr));
        assert_eq!(resident_pages(addr + guard_size(), size), 0);
    }

    /// Far more guarded stacks than `vm.max_map_count` allows mappings, in a few VMAs.
    #[test]
    fn many_stacks_few_vmas() {
        const N: usize = 200_000;
        let before = maps_count();
        // With mprotect guards (IVY_STACK_GUARD=mprotect) this many fit only unguarded.
        let unguarded_ok = guard_mode() != GuardMode::MadviseGuard;
        let stacks: Vec<_> = (0..N)
            .map(|_| TaskStack::allocate_for(DEFAULT_STACK_SIZE, 0, unguarded_ok).unwrap())
            .collect();
        for stack in &stacks {
            // SAFETY: the top byte of a stack we own.
            unsafe { *((Stack::base(stack).get() - 1) as *mut u8) = 1 };
        }
        let after = maps_count();
        if guard_mode() == GuardMode::MadviseGuard {
            assert!(stacks.iter().all(|s| s.guard() != (0, 0)));
            assert!(
                after < before + 1000,
                "{before} mappings before, {after} after"
            );
        }
    }

    #[test]
    fn coroutine_runs_on_a_task_stack() {
        use corosensei::{Coroutine, CoroutineResult};

        let stack = TaskStack::allocate(DEFAULT_STACK_SIZE).unwrap();
        let range = stack.limit().get() + guard_size()..Stack::base(&stack).get();
        let mut co = Coroutine::with_stack(stack, |yielder, first: u32| {
            let local = 0u8;
            let next = yielder.suspend(std::ptr::addr_of!(local) as usize);
            first + next
        });
        match co.resume(1) {
            CoroutineResult::Yield(addr) => assert!(range.contains(&addr), "{addr:#x}"),
            CoroutineResult::Return(_) => panic!("coroutine returned early"),
        }
        assert!(matches!(co.resume(2), CoroutineResult::Return(3)));
        drop(co.into_stack());
    }

    /// 1M stacks of 64 KiB at once: 80 GiB of address space, 4 GiB touched. Slow; run by hand.
    #[test]
    #[ignore]
    fn a_million_stacks() {
        let stacks: Vec<_> = (0..1_000_000)
            .map(|_| TaskStack::allocate(DEFAULT_STACK_SIZE).unwrap())
            .collect();
        for stack in &stacks {
            // SAFETY: the top byte of a stack we own.
            unsafe { *((Stack::base(stack).get() - 1) as *mut u8) = 1 };
        }
        assert!(maps_count() < 10_000);
    }
}
