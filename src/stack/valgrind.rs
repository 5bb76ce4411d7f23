//! Telling valgrind about task stacks, so the C ABI's test suite can run under
//! memcheck.
//!
//! valgrind tracks one stack per thread; when the stack pointer jumps into a task
//! stack it would otherwise take every access there for a wild one ("invalid
//! read ... in a rw- anonymous segment"). `VALGRIND_STACK_REGISTER` declares a
//! range as a stack. It is a *client request*: a magic instruction sequence that
//! does nothing on a real CPU (four rotations of `rdi` by a total of 128 bits and
//! `xchg rbx, rbx`) and that valgrind's JIT recognises. So it costs a few cycles
//! per stack allocation natively, needs no valgrind headers or library, and is
//! compiled only for x86_64, the one architecture ivy tests under valgrind;
//! elsewhere the functions are no-ops.

/// `VG_USERREQ__STACK_REGISTER` and `VG_USERREQ__STACK_DEREGISTER` from valgrind.h.
const STACK_REGISTER: u64 = 0x1501;
const STACK_DEREGISTER: u64 = 0x1502;

#[cfg(target_arch = "x86_64")]
fn client_request(request: u64, a1: u64, a2: u64) -> u64 {
    let args: [u64; 6] = [request, a1, a2, 0, 0, 0];
    let mut result: u64 = 0; // what the request returns when not under valgrind
                             // SAFETY: the sequence only rotates `rdi` by 3+13+61+51 = 128 bits (a no-op,
                             // still declared clobbered) and exchanges `rbx` with itself; under valgrind it
                             // reads the six words at `rax`, which point to `args`, alive for the block.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            out("rdi") _,
            options(nostack, preserves_flags),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn client_request(_request: u64, _a1: u64, _a2: u64) -> u64 {
    0
}

/// memcheck's `VG_USERREQ__MAKE_MEM_UNDEFINED` (`VG_USERREQ_TOOL_BASE('M', 'C') + 1`).
const MAKE_MEM_UNDEFINED: u64 = 0x4D43_0001;

/// Tells memcheck that `[lo, lo + len)` may be written: memory of a free stack slot that the
/// stack filler writes to. memcheck marked it inaccessible when a task that last ran on it
/// returned up its stack (it tracks registered stacks' pointers), and would report the write as
/// invalid, though the slot is the filler's own by then.
pub(crate) fn make_writable(lo: usize, len: usize) {
    client_request(MAKE_MEM_UNDEFINED, lo as u64, len as u64);
}

/// Declares `[lo, hi)` a stack; returns valgrind's id for it (0 natively). valgrind numbers
/// stacks from 0 up, so the id fits a `u32` unless a run registers four billion stacks; past
/// that it saturates, and the stack stays registered with valgrind (a diagnostic's loss, not
/// memory: natively nothing is registered).
pub(crate) fn register(lo: usize, hi: usize) -> u32 {
    u32::try_from(client_request(STACK_REGISTER, lo as u64, hi as u64)).unwrap_or(u32::MAX)
}

/// Forgets a stack registered with `register`.
pub(crate) fn deregister(id: u32) {
    client_request(STACK_DEREGISTER, id as u64, 0);
}
