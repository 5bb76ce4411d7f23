//! The stack pool: slabs, a warm cache per thread, and a cold global free list per size class.
//!
//! A started task never changes threads, so a worker frees the stacks it allocated. A bounded
//! LIFO cache per thread and size class hands them back warm (pages faulted in, likely still in
//! CPU cache) with no lock and no syscall. When a cache overflows, its older half moves to the
//! class's global *warm* list, still resident, where any thread takes it before a cold slot or a
//! fresh carve. Pages are discarded (`MADV_DONTNEED`, moving the slot to the *cold* list) off the
//! hot path and only once a slot has stayed unused for a while, like Go's background scavenger:
//! `trim`, which a worker calls before it goes to sleep, runs at most every `TRIM_INTERVAL`; each
//! run discards the slots that were already warm at the previous run (the *aged* generation) and
//! ages the rest. A thread's whole cache is discarded when the thread exits. So a burst of tasks
//! does not pin its memory for long once it is over, and tasks that keep coming reuse stacks
//! without a syscall or a page fault (regression: discarding at every spill, then faulting the
//! same pages back in for the tasks still being spawned, was 45% of the CPU time of 100k
//! concurrent sleeps). While fresh slots are being taken, the stack filler (`refill.rs`) keeps a
//! *ready* list per class of slots whose first-frames page it already faulted in, taken after the
//! warm ones and before cold ones, and aged by `trim` like them. Invariant: a slot on a cold list
//! holds no memory; a slot in a cache or on a warm, aged or ready list may.
//!
//! Guarded and unguarded slots never mix. On kernels without `MADV_GUARD_INSTALL` a guard costs
//! VMAs, within a budget (`guard.rs`); a slot carved past it has none, and only a runtime that
//! opted in (`Builder::unguarded_stacks`) may run a task on it. So every cache and list comes in
//! two kinds, and `take` says whether an unguarded slot will do: for everyone else a slot is
//! either guarded or an error that names the cause, never silently unguarded. In that fallback
//! mode `FREE_GUARDED` counts the free guarded slots of each class, so that a spawn can be
//! refused at once when neither a free guarded slot nor budget is left; and a free guarded slot
//! never waits in a thread's cache, only on the shared lists (`shares_guarded`), because a
//! slot cached by one worker is out of every other worker's reach: with the budget spent, a
//! worker was refused stacks while its peer's cache held dozens (regression:
//! tests/placement.rs `placed_tasks_refused_a_stack_leave_the_counts`).
//!
//! New slots are carved in address order from the newest slab of their class. Slabs are never
//! unmapped: their address space stays reserved for reuse by the same class for the life of the
//! process. That keeps each slot's guard installed exactly once, and costs address space only
//! (`MAP_NORESERVE`, discarded pages), never RSS.

use std::cell::RefCell;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{class_size, guard, guard_size, page_size, refill, NUM_CLASSES};

/// A slab holds at most this many slots...
const SLAB_SLOTS: usize = 1024;
/// ...and spans at most this many bytes, unless a single slot is larger.
const SLAB_BYTES: usize = 256 << 20;
/// A thread caches at most this many bytes of stacks per class (64 stacks of the
/// default 256 KiB; only their touched pages are memory)...
const CACHE_BYTES: usize = 16 << 20;
/// ...and at most this many stacks.
const CACHE_MAX: usize = 256;
/// Fresh slots carved (and guarded) at once.
const CARVE_BATCH: usize = 64;
/// `trim` discards slots unused for between one and two of these.
const TRIM_INTERVAL_MS: u64 = 1000;

/// A stack slot: `addr` is its lowest address, where its guard (if any) begins.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) addr: usize,
    pub(super) guarded: bool,
}

/// Index of the caches and lists of guarded slots...
const GUARDED: usize = 0;
/// ...and of unguarded ones.
const UNGUARDED: usize = 1;

impl Slot {
    fn kind(&self) -> usize {
        if self.guarded {
            GUARDED
        } else {
            UNGUARDED
        }
    }
}

/// The free slots of one size class and kind.
struct Lists {
    /// Free slots, all with their pages discarded.
    free: Vec<Slot>,
    /// Free slots whose pages may be resident, spilled since the last `trim`...
    warm: Vec<Slot>,
    /// ...and before it: discarded by the next one.
    aged: Vec<Slot>,
    /// Slots the stack filler gave their first page (`refill.rs`), not yet taken; `trim` ages
    /// them with the warm ones.
    ready: Vec<Slot>,
}

/// The shared state of one size class.
struct Class {
    /// Indexed by `GUARDED` / `UNGUARDED`.
    lists: [Lists; 2],
    /// The unused tail `[next, end)` of the newest slab.
    next: usize,
    end: usize,
}

static CLASSES: [Mutex<Class>; NUM_CLASSES] = [const {
    Mutex::new(Class {
        lists: [const {
            Lists {
                free: Vec::new(),
                warm: Vec::new(),
                aged: Vec::new(),
                ready: Vec::new(),
            }
        }; 2],
        next: 0,
        end: 0,
    })
}; NUM_CLASSES];

/// Free guarded slots per class, in caches and lists; kept only with mprotect guards.
static FREE_GUARDED: [AtomicUsize; NUM_CLASSES] = [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// Counts guarded slots becoming free (`n > 0`) or taken (`n < 0`), in mprotect mode.
fn count_free_guarded(class: usize, slot: &Slot, n: isize) {
    if slot.guarded && !guard::unlimited() {
        if n > 0 {
            FREE_GUARDED[class].fetch_add(n as usize, Ordering::Relaxed);
        } else {
            FREE_GUARDED[class].fetch_sub(n.unsigned_abs(), Ordering::Relaxed);
        }
    }
}

/// Bounds of all slabs ever mapped, for the signal handler (see `in_slabs`).
static SLABS_LO: AtomicUsize = AtomicUsize::new(usize::MAX);
static SLABS_HI: AtomicUsize = AtomicUsize::new(0);
/// Slots on all warm, aged and ready lists together, so that `trim` costs one load when there is
/// nothing to do.
static WARM_SLOTS: AtomicUsize = AtomicUsize::new(0);
/// Bumped by `discard_idle` (runtime shutdown): a refill in flight across one discards its batch
/// rather than leave it resident after the runtime is gone.
static DISCARDS: AtomicU64 = AtomicU64::new(0);
/// Per class, the top reserve of the latest stack allocated from it: where the next task's first
/// frames, hence its first touched page, will be (`refill`).
static TOP_RESERVE: [AtomicUsize; NUM_CLASSES] = [const { AtomicUsize::new(0) }; NUM_CLASSES];

/// Indexed by kind (`GUARDED` / `UNGUARDED`), then class.
struct Cache([[Vec<Slot>; NUM_CLASSES]; 2]);

thread_local! {
    static CACHE: RefCell<Cache> =
        const { RefCell::new(Cache([const { [const { Vec::new() }; NUM_CLASSES] }; 2])) };
}

/// Takes a slot of `class`: warm from this thread's cache, else from the global lists, else
/// carved from a slab and given its guard. A slot without a guard only if `unguarded_ok`
/// (guarded ones first even then); otherwise, once no guarded slot can be had, an error that
/// names the cause (`guard::exhausted`).
pub(super) fn take(class: usize, unguarded_ok: bool) -> io::Result<Slot> {
    if let Some(slot) = cache_pop(GUARDED, class) {
        return Ok(slot);
    }
    let mut shared = lock(class);
    if let Some((slot, low)) = shared.pop(GUARDED, class) {
        drop(shared);
        if low {
            refill::request(class);
        }
        return Ok(slot);
    }
    // Every guarded source is dry: an unguarded slot, if it will do.
    if unguarded_ok {
        if let Some(slot) = cache_pop(UNGUARDED, class) {
            return Ok(slot);
        }
        if let Some((slot, _)) = shared.pop(UNGUARDED, class) {
            return Ok(slot);
        }
    }
    // Carve a batch, so that guards go in with one syscall for many stacks;
    // the rest of the batch waits in this thread's cache (on the shared lists
    // under a guard budget: `shares_guarded`). Without a guard
    // budget left, carve nothing for a caller that needs one (repeated refused
    // spawns must not eat address space).
    let mut n = CARVE_BATCH.min(cache_cap(class)).max(1);
    if !unguarded_ok {
        n = n.min(guard::guards_left());
        if n == 0 {
            return Err(guard::exhausted());
        }
    }
    let addrs = shared.carve_batch(class, n)?;
    // With unlimited guards, outside the lock: a syscall, and workers starting up
    // all carve at once. Under a guard budget, inside it, until the spare slots are
    // on the shared list: a worker that then finds the budget spent finds them
    // there, not in flight (regression: with 2 workers and a budget of 8, one
    // worker was refused while the other was still guarding the 7 spares of its
    // batch; soundness_stack_guard.rs `guarded_slots_carved_by_one_worker_...`).
    let held = if shares_guarded() {
        Some(shared)
    } else {
        drop(shared);
        // Fresh slots are being taken: have the filler fault in the next ones meanwhile.
        refill::request(class);
        None
    };
    // Should it fail (ENOMEM), the slots are never handed out; leaking their
    // address space is harmless.
    let mut slots = guard_carved(addrs)?;
    // Another class may have spent the last of the budget meanwhile.
    let first = slots
        .iter()
        .position(|s| s.guarded || unguarded_ok)
        .map(|i| slots.remove(i));
    for slot in &slots {
        count_free_guarded(class, slot, 1);
    }
    if !slots.is_empty() {
        let kept = match held {
            Some(_) => Err(()),
            None => CACHE
                .try_with(|cache| {
                    let mut cache = cache.borrow_mut();
                    for slot in &slots {
                        cache.0[slot.kind()][class].push(*slot);
                    }
                })
                .map_err(|_| ()),
        };
        if kept.is_err() {
            let mut shared = held.unwrap_or_else(|| lock(class));
            for slot in &slots {
                shared.lists[slot.kind()].free.push(*slot);
            }
        }
    }
    first.ok_or_else(guard::exhausted)
}

/// Whether free guarded slots are kept on the shared lists only: when guards are
/// counted against a budget (the mprotect fallback), not with unlimited guards.
fn shares_guarded() -> bool {
    !guard::unlimited()
}

/// A slot of `kind` and `class` from this thread's cache.
fn cache_pop(kind: usize, class: usize) -> Option<Slot> {
    let slot = CACHE
        .try_with(|cache| cache.borrow_mut().0[kind][class].pop())
        .ok()
        .flatten()?;
    count_free_guarded(class, &slot, -1);
    Some(slot)
}

/// Whether `take(class, unguarded_ok)` can succeed now, as far as a spawn can tell ahead of
/// the task's first run: always with madvise guards, else if a guarded slot is free or the
/// budget is not spent (or unguarded slots will do). A spawn racing others may still pass
/// this and then be refused by `take`.
pub(super) fn may_take(class: usize, unguarded_ok: bool) -> bool {
    unguarded_ok
        || guard::unlimited()
        || guard::guards_left() > 0
        || FREE_GUARDED[class].load(Ordering::Relaxed) > 0
}

/// Returns a slot of `class` to this thread's cache, spilling the cache's older half to the
/// global warm list if it is full. During thread teardown, after the cache is gone, the slot is
/// discarded and goes to the cold list.
pub(super) fn give(class: usize, slot: Slot) {
    count_free_guarded(class, &slot, 1);
    let kind = slot.kind();
    if slot.guarded && shares_guarded() {
        // Scarce: where every worker looks (the module comment).
        lock(class).lists[kind].warm.push(slot);
        WARM_SLOTS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let cached = CACHE.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        let slots = &mut cache.0[kind][class];
        slots.push(slot);
        let cap = cache_cap(class);
        if slots.len() > cap {
            // Keep the newest, warmest half: freeing one at a time at the bound would cost a
            // syscall per task in a steady spawn-and-finish loop.
            let spill = slots.len() - cap.div_ceil(2);
            lock(class).lists[kind]
                .warm
                .extend_from_slice(&slots[..spill]);
            WARM_SLOTS.fetch_add(spill, Ordering::Relaxed);
            slots.drain(..spill);
        }
    });
    if cached.is_err() {
        release(class, &[slot]);
    }
}

/// Discards the pages of free slots that have been unused since the previous run, at most
/// every `TRIM_INTERVAL_MS` (one batched `madvise` per class). Called by a worker about to
/// sleep, so the syscall and its TLB shoot-down happen while the runtime idles. Returns, while
/// free slots may still hold memory, how soon to call it again: a worker that would sleep with
/// no timer wakes then, so an idle runtime returns a burst's memory within two intervals
/// (regression: it slept forever and the aged generation stayed resident).
pub(crate) fn trim() -> Option<std::time::Duration> {
    if WARM_SLOTS.load(Ordering::Relaxed) == 0 {
        return None;
    }
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64;
    let last = LAST_MS.load(Ordering::Relaxed);
    let due = last + TRIM_INTERVAL_MS;
    if now >= due
        && LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        age_and_discard();
    }
    if WARM_SLOTS.load(Ordering::Relaxed) == 0 {
        return None;
    }
    // `+ 1`: waking a hair early would find the interval not yet over.
    let wait = due.saturating_sub(now).clamp(1, TRIM_INTERVAL_MS) + 1;
    Some(std::time::Duration::from_millis(wait))
}

/// Discards the pages of every free slot on the global lists now, whatever their age: a runtime
/// that shuts down calls it, so that a dropped runtime leaves no stack memory behind (its
/// workers' caches were discarded when the threads exited).
pub(crate) fn discard_idle() {
    DISCARDS.fetch_add(1, Ordering::SeqCst);
    for class in 0..NUM_CLASSES {
        for kind in [GUARDED, UNGUARDED] {
            let old = {
                let mut shared = lock(class);
                let lists = &mut shared.lists[kind];
                let mut old = std::mem::take(&mut lists.warm);
                old.append(&mut lists.aged);
                old.append(&mut lists.ready);
                old
            };
            if !old.is_empty() {
                WARM_SLOTS.fetch_sub(old.len(), Ordering::Relaxed);
                release(class, &old);
            }
        }
    }
}

/// One generation step of `trim`: discard the aged slots, age the warm ones.
pub(super) fn age_and_discard() {
    for class in 0..NUM_CLASSES {
        for kind in [GUARDED, UNGUARDED] {
            let old = {
                let mut shared = lock(class);
                let lists = &mut shared.lists[kind];
                if lists.warm.is_empty() && lists.aged.is_empty() && lists.ready.is_empty() {
                    continue;
                }
                // Ready slots age with the warm ones: a burst that is over leaves none behind.
                let mut warm = std::mem::take(&mut lists.warm);
                warm.append(&mut lists.ready);
                std::mem::replace(&mut lists.aged, warm)
            };
            if !old.is_empty() {
                WARM_SLOTS.fetch_sub(old.len(), Ordering::Relaxed);
                release(class, &old);
            }
        }
    }
}

/// The most stacks of `class` a thread caches.
pub(super) fn cache_cap(class: usize) -> usize {
    (CACHE_BYTES / class_size(class)).clamp(1, CACHE_MAX)
}

/// Whether `addr` lies within the address range spanned by the slabs. This reads two atomics,
/// so the signal handler can rule out faults far from any stack (a null dereference on a thread
/// that never ran a task) without touching thread-local storage, which in a `dlopen`ed library
/// may be allocated lazily (malloc) on first touch.
pub(super) fn in_slabs(addr: usize) -> bool {
    SLABS_LO.load(Ordering::Relaxed) <= addr && addr < SLABS_HI.load(Ordering::Relaxed)
}

impl Drop for Cache {
    fn drop(&mut self) {
        for kind in &self.0 {
            for (class, slots) in kind.iter().enumerate() {
                if !slots.is_empty() {
                    release(class, slots);
                }
            }
        }
    }
}

impl Class {
    /// A free slot of `kind`: a warm one first (most recently used, so likely in cache), then
    /// a pre-faulted one, then a cold one. With it, whether the stack filler should be asked for
    /// more: the slot will fault, or it leaves the ready list low.
    fn pop(&mut self, kind: usize, class: usize) -> Option<(Slot, bool)> {
        let lists = &mut self.lists[kind];
        let (slot, low) = if let Some(slot) = lists.warm.pop().or_else(|| lists.aged.pop()) {
            WARM_SLOTS.fetch_sub(1, Ordering::Relaxed);
            (slot, false)
        } else if let Some(slot) = lists.ready.pop() {
            WARM_SLOTS.fetch_sub(1, Ordering::Relaxed);
            (slot, lists.ready.len() < refill::READY_LOW)
        } else {
            (lists.free.pop()?, true)
        };
        count_free_guarded(class, &slot, -1);
        Some((slot, low))
    }

    /// Reserves up to `n` unused slots (fewer if address space runs out); an error only if not
    /// even one could be had.
    fn carve_batch(&mut self, class: usize, n: usize) -> io::Result<Vec<usize>> {
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            match self.carve(class) {
                Ok(a) => addrs.push(a),
                Err(e) if addrs.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(addrs)
    }

    /// Reserves the next unused slot, mapping a new slab if the newest one is used up.
    fn carve(&mut self, class: usize) -> io::Result<usize> {
        let slot_len = guard_size() + class_size(class);
        if self.next == self.end {
            let len = slot_len * (SLAB_BYTES / slot_len).clamp(1, SLAB_SLOTS);
            self.next = map_slab(len)?;
            self.end = self.next + len;
        }
        let addr = self.next;
        self.next += slot_len;
        Ok(addr)
    }
}

/// Installs the guards of freshly carved slots (one syscall for the batch): the slots, each
/// saying whether it got one.
fn guard_carved(addrs: Vec<usize>) -> io::Result<Vec<Slot>> {
    let guarded = guard::install_many(&addrs, guard_size())?;
    Ok(addrs
        .into_iter()
        .zip(guarded)
        .map(|(addr, guarded)| Slot { addr, guarded })
        .collect())
}

fn map_slab(len: usize) -> io::Result<usize> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a new anonymous mapping at an address of the kernel's choosing aliases nothing.
    let ptr = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, -1, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // Stacks are touched sparsely, so a transparent huge page would turn one touched byte into
    // 2 MiB of RSS (Linux 6.7+ already infers this from MAP_STACK). Failure is harmless.
    // SAFETY: advice on our own new mapping; it changes no contents.
    unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
    // Published before any slot of this slab leaves the class lock, hence visible to the thread
    // that runs on it, by the time it can overflow.
    SLABS_LO.fetch_min(ptr as usize, Ordering::Relaxed);
    SLABS_HI.fetch_max(ptr as usize + len, Ordering::Relaxed);
    Ok(ptr as usize)
}

/// Discards the pages of free slots and puts them on the cold list.
///
/// Slots carved from one slab are adjacent, and tasks spawned together tend to
/// finish together, so the slots are sorted and each run of adjacent slots is
/// discarded with one `madvise` (regression: one syscall and TLB shootdown per
/// stack made a burst of 1M finishing tasks spend seconds in the kernel). The
/// guard pages inside a run keep their guards: `MADV_DONTNEED` preserves
/// `MADV_GUARD_INSTALL` markers, and an `mprotect`ed page holds no memory.
fn release(class: usize, slots: &[Slot]) {
    let len = class_size(class);
    let stride = guard_size() + len;
    let mut sorted: Vec<usize> = slots.iter().map(|s| s.addr).collect();
    sorted.sort_unstable();
    let mut runs: Vec<libc::iovec> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start + stride;
        i += 1;
        while i < sorted.len() && sorted[i] == end {
            end += stride;
            i += 1;
        }
        runs.push(libc::iovec {
            iov_base: (start + guard_size()) as *mut libc::c_void,
            iov_len: end - start - guard_size(),
        });
    }
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    // SAFETY: every slot in every run is free, so no stack is in use there and its
    // contents are garbage; zero-filling changes nothing anyone may read. Each run
    // lies in slab mappings, which are never unmapped, and guards survive the advice.
    let batched = unsafe { guard::madvise_many(&runs, libc::MADV_DONTNEED, &UNSUPPORTED) };
    if !batched {
        for run in &runs {
            // SAFETY: as above, one run at a time.
            let rc = unsafe { libc::madvise(run.iov_base, run.iov_len, libc::MADV_DONTNEED) };
            debug_assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        }
    }
    let mut shared = lock(class);
    for slot in slots {
        shared.lists[slot.kind()].free.push(*slot);
    }
}

/// Records where stacks of `class` put their first frames: `top_reserve` bytes below the top.
/// The stack filler faults in the page there (`refill`). Stores only on a change, so that the
/// workers of one runtime, which all allocate with the same reserve, share the line read-only.
pub(super) fn note_top_reserve(class: usize, top_reserve: usize) {
    if TOP_RESERVE[class].load(Ordering::Relaxed) != top_reserve {
        TOP_RESERVE[class].store(top_reserve, Ordering::Relaxed);
    }
}

/// Tops `class`'s ready list up to `refill::READY_TARGET` slots whose first page is resident
/// (the stack filler's work, `refill.rs`): cold slots first, else fresh ones carved and guarded,
/// in batches of `CARVE_BATCH`, the syscalls outside the class lock. Guarded slots only: it runs
/// with madvise guards, where every slot gets one.
pub(super) fn refill(class: usize) {
    let discards = DISCARDS.load(Ordering::SeqCst);
    loop {
        let (mut slots, carved) = {
            let mut shared = lock(class);
            let lists = &mut shared.lists[GUARDED];
            let missing = refill::READY_TARGET.saturating_sub(lists.ready.len());
            if missing == 0 {
                return;
            }
            let n = missing.min(CARVE_BATCH);
            let cold = lists.free.len().saturating_sub(n);
            let slots: Vec<Slot> = lists.free.drain(cold..).collect();
            let carved = shared
                .carve_batch(class, n - slots.len())
                .unwrap_or_default();
            (slots, carved)
        };
        // Should the guards fail to go in (ENOMEM), the carved slots are never handed out, as
        // in `take`.
        if let Ok(carved) = guard_carved(carved) {
            slots.extend(carved);
        }
        if slots.is_empty() {
            return; // out of address space: tasks get their error from `take`
        }
        prefault(class, &slots);
        let mut shared = lock(class);
        if DISCARDS.load(Ordering::SeqCst) != discards {
            // A runtime shut down meanwhile and discarded every idle stack: so are these.
            drop(shared);
            release(class, &slots);
            return;
        }
        for slot in &slots {
            // Unguarded only if a guard failed to go in, which madvise guards do not.
            shared.lists[slot.kind()].ready.push(*slot);
        }
        WARM_SLOTS.fetch_add(slots.len(), Ordering::Relaxed);
    }
}

/// Faults in, in each of `slots`, the page that a task's first frames will touch. With plain
/// writes, not `MADV_POPULATE_WRITE`: a fault takes only its own mapping's lock, where the
/// advice holds the process's `mmap_lock` for the whole batch and stalled a worker's `malloc`
/// growing its heap (`rwsem_down_write_slowpath` in the worker's profile).
fn prefault(class: usize, slots: &[Slot]) {
    let page = page_size();
    let reserve = TOP_RESERVE[class].load(Ordering::Relaxed);
    // The header and then the first frames go just below the reserve: the page holding
    // `base - 1`, `base = top - reserve - HEADER_SIZE` (the header's page too, unless
    // `base` falls on a page boundary).
    let base = (guard_size() + class_size(class))
        .saturating_sub(reserve + super::HEADER_SIZE)
        .max(guard_size() + 1);
    let offset = (base - 1) & !(page - 1);
    for slot in slots {
        let at = slot.addr + offset;
        super::valgrind::make_writable(at, 1);
        // SAFETY: the slot is free and owned by the caller (off every list and cache), so
        // nothing else uses its memory, whose contents are garbage nobody reads: a zero byte
        // is as good as any. The page lies in the usable part of a slot of a slab mapping,
        // which is never unmapped.
        unsafe { ptr::write_volatile(at as *mut u8, 0) };
    }
}

fn lock(class: usize) -> MutexGuard<'static, Class> {
    // Nothing panics while holding the lock but an allocation failure, which aborts.
    CLASSES[class]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Moves this thread's cached stacks to the global list, as thread exit does.
#[cfg(test)]
pub(super) fn flush_cache() {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        for kind in cache.0.iter_mut() {
            for (class, slots) in kind.iter_mut().enumerate() {
                release(class, slots);
                slots.clear();
            }
        }
    });
}

#[cfg(test)]
pub(super) fn is_free(class: usize, addr: usize) -> bool {
    let c = lock(class);
    c.lists
        .iter()
        .any(|l| l.free.iter().any(|slot| slot.addr == addr))
}

#[cfg(test)]
pub(super) fn is_warm(class: usize, addr: usize) -> bool {
    let c = lock(class);
    c.lists.iter().any(|l| {
        l.warm
            .iter()
            .chain(&l.aged)
            .chain(&l.ready)
            .any(|slot| slot.addr == addr)
    })
}

#[cfg(test)]
pub(super) fn ready_slots(class: usize) -> Vec<usize> {
    lock(class).lists[GUARDED]
        .ready
        .iter()
        .map(|slot| slot.addr)
        .collect()
}
