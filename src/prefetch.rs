//! Software prefetch: start fetching memory the worker is about to touch, so that the miss
//! overlaps work instead of stalling it.
//!
//! Why a runtime needs it: a burst of parked tasks (10k sleepers, a million timers) is run
//! one after another, and each one's header and stack were last touched thousands of tasks
//! ago, far out of cache and TLB. Profiles of the `timers` rows showed the workers stalled on
//! exactly those first touches (the corosensei frame written at a fresh stack's top, the first
//! push of a frame on a stack line nobody touched since the last round, the task's state word):
//! benches/compare/findings/prefetch.md. The next task to run is usually known one task ahead,
//! so the worker asks for its lines while the current task runs.
//!
//! A prefetch is a hint: it never faults, whatever the address (unmapped, a guard page), never
//! changes memory, and may be dropped by the CPU. So every function here is safe to call with
//! any address; the `unsafe` is only the `asm!`/intrinsic call.
//!
//! Layer: a leaf (it imports nothing of ivy); the scheduler uses it.

/// Cache line size assumed for stepping through a range (x86-64 and most arm64 parts).
pub(crate) const LINE: usize = 64;

/// Asks for the line holding `addr`, to be written: the line comes exclusive, so the store that
/// follows needs no second trip (a stack frame's first push).
#[inline(always)]
pub(crate) fn write(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetchw` is a hint: it neither faults (any address will do) nor writes. CPUs
    // without it (pre-Broadwell Intel) execute it as a NOP.
    unsafe {
        core::arch::asm!("prefetchw [{0}]", in(reg) addr, options(nostack, readonly, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `prfm` is a hint: it neither faults (any address will do) nor writes.
    unsafe {
        core::arch::asm!("prfm pstl1keep, [{0}]", in(reg) addr, options(nostack, readonly, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = addr;
}

/// `write` for each line of `[lo, hi)`, from the top down (the order a stack is used in).
#[inline]
pub(crate) fn write_range_down(lo: usize, hi: usize) {
    let mut at = hi;
    while at > lo {
        // Saturating: a range that is not a whole number of lines, or ends near 0, must
        // not wrap around (regression: the test below looped for ever from 8 down).
        at = at.saturating_sub(LINE);
        write(at);
    }
}

/// The current stack pointer, or 0 where it is not read (other architectures): a hint for
/// `write_range_down`, never dereferenced.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register into a variable; touches no memory.
    unsafe {
        core::arch::asm!("mov {0}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register into a variable; touches no memory.
    unsafe {
        core::arch::asm!("mov {0}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        sp = 0;
    }
    sp
}

/// `write` for every line of the object at `ptr`, and of the 16 bytes before it (an `Arc`'s
/// counts).
#[inline(always)]
pub(crate) fn write_object<T>(ptr: *const T) {
    let lo = (ptr as usize).saturating_sub(16) & !(LINE - 1);
    let hi = (ptr as usize).saturating_add(std::mem::size_of::<T>());
    let mut at = lo;
    while at < hi {
        write(at);
        // Saturating, like `write_range_down`: at the top of the address space the loop ends.
        at = at.saturating_add(LINE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefetch is only a hint: addresses that would fault on access (null, unmapped, a
    /// `PROT_NONE` page like a stack guard, the kernel's half) must not fault here.
    #[test]
    fn prefetching_addresses_that_would_fault_does_not() {
        // SAFETY: a new private anonymous mapping, unmapped below; nothing else uses it.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let guard = page as usize;
        // SAFETY: the second page of our own mapping; nothing is in it.
        assert_eq!(unsafe { libc::munmap((guard + 4096) as *mut _, 4096) }, 0);
        for addr in [
            0,
            8,
            guard,
            guard + 4095,
            guard + 4096,
            usize::MAX & !63,
            1 << 63,
        ] {
            write(addr);
            write_range_down(addr.saturating_sub(256), addr);
        }
        write_object(guard as *const [u8; 400]);
        write_object((usize::MAX - 100) as *const [u8; 400]);
        let sp = stack_pointer();
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            let local = 0u8;
            let at = std::ptr::addr_of!(local) as usize;
            assert!(
                sp <= at && at - sp < 1 << 20,
                "sp {sp:#x}, a local at {at:#x}"
            );
        }
        // SAFETY: our own mapping's first page.
        assert_eq!(unsafe { libc::munmap(page, 4096) }, 0);
    }
}
