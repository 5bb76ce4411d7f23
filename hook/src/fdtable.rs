//! Per-fd state (libco's `rpchook_t`, libgo's `FdCtx`): what the hook knows
//! about an fd number, lock-free, indexed by the number.
//!
//! # What is tracked, and why only this
//! * **kind**: a socket, or something else. Only sockets are switched to
//!   `O_NONBLOCK` behind the user's back: a socket belongs to the program, while
//!   pipes, ttys and fifos are often shared with other processes (a shell's tty,
//!   the pipe a test harness reads our stdout from), where a flag ivy flipped
//!   would make *their* reads and writes, and glibc's own internal writes
//!   (stdio does not go through the hook), fail with `EAGAIN`. Other pollable
//!   fds are waited for on the reactor and then called as they are.
//! * **user_nonblock**: the user asked for `O_NONBLOCK` (`socket(SOCK_NONBLOCK)`,
//!   `accept4`, `fcntl(F_SETFL)`, `ioctl(FIONBIO)`): every call passes straight
//!   through and `EAGAIN` reaches the user as they expect.
//! * **ivy_nonblock**: ivy set `O_NONBLOCK` on a socket the user sees as
//!   blocking. `fcntl(F_GETFL)` hides it, and a call *outside* a task emulates
//!   blocking (real `poll(2)`, then retry).
//! * **SO_RCVTIMEO / SO_SNDTIMEO**, recorded by `setsockopt`, honoured as the
//!   call's own deadline (`EAGAIN` when it passes, as Linux does).
//!
//! An fd first used inside a task without an entry (inherited, or made by a
//! call the hook does not see, such as glibc's internal `socket`) is looked at
//! once (`fstat`, `F_GETFL`) and classified.
//!
//! # Coherence
//! The entry goes with a hooked `close`, is rewritten by every hooked creation
//! (`socket`, `accept*`, `dup*`, `F_DUPFD`), and copied by the `dup`s (a
//! duplicate shares the open file, so its flags). An fd closed by a path the
//! hook cannot see (glibc-internal `close`, as in `fclose(fdopen(sock))`, or raw
//! `syscall(SYS_close)`) leaves a stale entry until its number is reused by a
//! hooked creation; meanwhile a call on a *new* blocking socket with that
//! number may block its worker (never misbehave otherwise). fork: the child
//! inherits the table with the fds (same numbers, same open files, same flags),
//! so it stays coherent.
//!
//! # Layout
//! Chunks of 4096 slots allocated on first touch (never freed, so a reader
//! never sees a chunk go away), 256 chunks: fds up to 2^20 are tracked, larger
//! ones pass through untouched.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

const CHUNK_BITS: usize = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = 256;

/// Kind bits of an entry's state word.
pub(crate) const UNKNOWN: u32 = 0;
pub(crate) const SOCKET: u32 = 1;
pub(crate) const OTHER: u32 = 2;
/// A regular file, directory or block device (always "ready"): every call
/// passes through, and debug mode reports it once.
pub(crate) const FILE: u32 = 3;
const KIND_MASK: u32 = 0b11;
/// The user asked for `O_NONBLOCK`.
pub(crate) const USER_NONBLOCK: u32 = 1 << 2;
/// ivy set `O_NONBLOCK` the user did not ask for.
pub(crate) const IVY_NONBLOCK: u32 = 1 << 3;

#[derive(Default)]
pub(crate) struct Slot {
    state: AtomicU32,
    /// SO_RCVTIMEO in microseconds, 0: none.
    rcv_us: AtomicU64,
    /// SO_SNDTIMEO in microseconds, 0: none.
    snd_us: AtomicU64,
}

/// A copy of an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) state: u32,
    pub(crate) rcv_us: u64,
    pub(crate) snd_us: u64,
}

impl Entry {
    pub(crate) fn kind(&self) -> u32 {
        self.state & KIND_MASK
    }
    pub(crate) fn user_nonblock(&self) -> bool {
        self.state & USER_NONBLOCK != 0
    }
    pub(crate) fn ivy_nonblock(&self) -> bool {
        self.state & IVY_NONBLOCK != 0
    }
}

static TABLE: [AtomicPtr<Slot>; CHUNKS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];

/// The slot of `fd` if it has one (its chunk exists).
fn slot(fd: i32) -> Option<&'static Slot> {
    let fd = usize::try_from(fd).ok()?;
    let chunk = TABLE.get(fd >> CHUNK_BITS)?.load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: a published chunk is an array of CHUNK slots that is never freed.
    Some(unsafe { &*chunk.add(fd & (CHUNK - 1)) })
}

/// The slot of `fd`, allocating its chunk; `None` for an fd beyond the table.
fn slot_mut(fd: i32) -> Option<&'static Slot> {
    if let Some(s) = slot(fd) {
        return Some(s);
    }
    let index = usize::try_from(fd).ok()? >> CHUNK_BITS;
    let cell = TABLE.get(index)?;
    let fresh: Box<[Slot]> = (0..CHUNK).map(|_| Slot::default()).collect();
    let fresh = Box::into_raw(fresh) as *mut Slot;
    if cell
        .compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // SAFETY: `fresh` came from Box::into_raw above and was not published.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(fresh, CHUNK)) });
    }
    slot(fd)
}

/// The entry of `fd` (all zero: unknown).
#[inline]
pub(crate) fn get(fd: i32) -> Entry {
    match slot(fd) {
        None => Entry::default(),
        Some(s) => Entry {
            state: s.state.load(Ordering::Acquire),
            rcv_us: s.rcv_us.load(Ordering::Relaxed),
            snd_us: s.snd_us.load(Ordering::Relaxed),
        },
    }
}

/// Replaces the entry of `fd`.
pub(crate) fn set(fd: i32, e: Entry) {
    if let Some(s) = slot_mut(fd) {
        s.rcv_us.store(e.rcv_us, Ordering::Relaxed);
        s.snd_us.store(e.snd_us, Ordering::Relaxed);
        s.state.store(e.state, Ordering::Release);
    }
}

/// Forgets `fd` (closed).
pub(crate) fn clear(fd: i32) {
    if let Some(s) = slot(fd) {
        s.state.store(UNKNOWN, Ordering::Release);
        s.rcv_us.store(0, Ordering::Relaxed);
        s.snd_us.store(0, Ordering::Relaxed);
    }
}

/// Sets and clears bits of the state word of a known entry.
pub(crate) fn update(fd: i32, set_bits: u32, clear_bits: u32) {
    if let Some(s) = slot(fd) {
        let _ = s
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |st| {
                Some((st & !clear_bits) | set_bits)
            });
    }
}

/// Records a socket timeout (`SO_RCVTIMEO` when `recv`, else `SO_SNDTIMEO`).
pub(crate) fn set_timeout(fd: i32, recv: bool, us: u64) {
    if let Some(s) = slot_mut(fd) {
        if recv {
            s.rcv_us.store(us, Ordering::Relaxed);
        } else {
            s.snd_us.store(us, Ordering::Relaxed);
        }
    }
}

/// Sets the state word of `fd` if it is still `expected` (timeouts kept);
/// returns whether it did.
pub(crate) fn set_state_if(fd: i32, expected: u32, state: u32) -> bool {
    match slot_mut(fd) {
        Some(s) => s
            .state
            .compare_exchange(expected, state, Ordering::AcqRel, Ordering::Acquire)
            .is_ok(),
        None => false,
    }
}
