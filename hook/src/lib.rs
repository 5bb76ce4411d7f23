//! libivy_hook: libc's blocking calls, interposed, park the calling ivy task
//! instead of blocking its worker thread (libco's `co_hook_sys_call`, libgo's
//! `linux_glibc_hook`, gevent's monkey-patching, for every language at once).
//!
//! # How it reaches a program
//! * C: `LD_PRELOAD=target/release/libivy_hook.so ./prog`, or link
//!   `-livy_hook -livy` (before libc): this crate's cdylib.
//! * Rust: ivy's `hook` feature links this crate (rlib) into the binary, whose
//!   own definitions of `read`, `connect`, ... then win over libc's at link
//!   time for std and every crate (and, exported, for the shared libraries it
//!   links).
//! * Python: preload the cdylib; the interpreter's `socket` module calls libc.
//!
//! # No runtime in here
//! The hook holds the per-fd table and the call logic, never a runtime: every
//! copy of ivy in the process registers its services when it builds a runtime
//! (`services.rs`: why, and the error protocol), and a call inside one of its
//! tasks parks through them. Before any registers, or outside a task, a call
//! is libc's own (`fdio.rs` names the one exception: a socket ivy made
//! non-blocking keeps blocking for threads).
//!
//! # Rules every hooked call keeps
//! * `errno` exactly as the real call sets it; ivy never causes `EINTR`.
//! * Cancellation of the task: `-1` / `ECANCELED` (the cancellation stays
//!   pending: a Rust task unwinds at its next ivy call, and a panic on the
//!   error, such as std's `thread::sleep` asserting `EINTR`, counts as that
//!   unwind: ivy's `task/reported.rs`); an enclosing ivy
//!   deadline scope elapsing: `-1` / `ETIMEDOUT`; `SO_RCVTIMEO` /
//!   `SO_SNDTIMEO` elapsing: `-1` / `EAGAIN` (`EINPROGRESS` for `connect`), as
//!   Linux.
//! * The real functions come from `dlsym(RTLD_NEXT)` (`real.rs`), and this
//!   crate calls libc only through them, so it never recurses into itself.
//! * What cannot be interposed: glibc's internal calls (stdio's reads and
//!   writes, the DNS sockets inside `getaddrinfo`, which is hooked whole),
//!   raw `syscall(2)`, static binaries.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)] // libc's own contracts

mod data;
mod errno;
mod fdio;
mod fds;
mod fdtable;
mod real;
mod services;
mod sleeps;
mod sockets;
mod waits;

pub use services::{Services, SERVICES_VERSION};

/// Registers a copy of ivy's services with the hook: called by ivy when it
/// builds a runtime (found with `dlsym(RTLD_DEFAULT, "ivy_hook_attach")`, or
/// called directly under ivy's `hook` feature). Returns 0, `-EINVAL` for a
/// table of an unknown version, `-ENOSPC` when too many copies attached.
/// `services` must stay valid for the life of the process.
#[no_mangle]
pub unsafe extern "C" fn ivy_hook_attach(services: *const Services) -> libc::c_int {
    if services.is_null() {
        return -libc::EINVAL;
    }
    // Every export, referenced from here: a binary that links this crate as an
    // rlib and calls `ivy_hook_attach` keeps them all.
    std::hint::black_box(&EXPORTS.0);
    // SAFETY: the caller promises a table valid for the process's life.
    services::attach(unsafe { &*services })
}

/// The interposing symbols (see `ivy_hook_attach`).
static EXPORTS: Exports = Exports([
    data::read as *const (),
    data::readv as *const (),
    data::recv as *const (),
    data::recvfrom as *const (),
    data::recvmsg as *const (),
    data::write as *const (),
    data::writev as *const (),
    data::send as *const (),
    data::sendto as *const (),
    data::sendmsg as *const (),
    data::__read_chk as *const (),
    data::__recv_chk as *const (),
    data::__recvfrom_chk as *const (),
    sockets::socket as *const (),
    sockets::accept as *const (),
    sockets::accept4 as *const (),
    sockets::connect as *const (),
    sockets::setsockopt as *const (),
    sockets::getaddrinfo as *const (),
    fds::close as *const (),
    fds::fcntl as *const (),
    fds::fcntl64 as *const (),
    fds::ioctl as *const (),
    fds::dup as *const (),
    fds::dup2 as *const (),
    fds::dup3 as *const (),
    waits::poll as *const (),
    waits::ppoll as *const (),
    waits::select as *const (),
    waits::__poll_chk as *const (),
    waits::__ppoll_chk as *const (),
    sleeps::sleep as *const (),
    sleeps::usleep as *const (),
    sleeps::nanosleep as *const (),
    sleeps::clock_nanosleep as *const (),
    ivy_hook_version as *const (),
    ivy_hook_attach as *const (),
]);

struct Exports([*const (); 37]);
// SAFETY: addresses of functions, never written.
unsafe impl Sync for Exports {}

/// The hook's version of the services table it understands
/// ([`SERVICES_VERSION`]); lets a program check that the hook is loaded.
#[no_mangle]
pub extern "C" fn ivy_hook_version() -> u32 {
    SERVICES_VERSION
}
