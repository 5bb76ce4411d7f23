//! fd bookkeeping: `close fcntl ioctl(FIONBIO) dup dup2 dup3`.

use libc::{c_int, c_ulong};

use crate::fdtable::{self, IVY_NONBLOCK, SOCKET, USER_NONBLOCK};
use crate::real;
use crate::services;

/// `close(2)`: forgets the fd and closes it while no task can start waiting
/// on it, then wakes every task that was waiting on it (they fail with
/// `EBADF`, as a call on a closed fd does). A task that starts waiting after
/// the close finds the fd closed, or waits on the new file that reuses its
/// number, and is not woken.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if !services::any() || services::in_vfork_child() {
        // SAFETY: the caller's argument.
        return unsafe { real::close(fd) };
    }
    fdtable::clear(fd);
    // SAFETY: the caller's argument.
    services::closing(fd, || unsafe { real::close(fd) })
}

/// `fcntl(2)`. `F_GETFL` reports the user's view of `O_NONBLOCK` (not ivy's),
/// `F_SETFL` records it (keeping ivy's flag on a socket ivy waits on),
/// `F_DUPFD*` copy the entry. The third argument is taken as a machine word:
/// an `int` or a pointer, as every `fcntl` command passes (the same register
/// on x86-64 and AArch64 Linux, where a variadic call passes it like any other).
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    if !services::any() {
        // SAFETY: the caller's arguments.
        return unsafe { real::fcntl(fd, cmd, arg) };
    }
    match cmd {
        libc::F_GETFL => {
            // SAFETY: F_GETFL ignores its argument.
            let r = unsafe { real::fcntl(fd, cmd, arg) };
            let e = fdtable::get(fd);
            if r >= 0 && e.kind() == SOCKET && e.ivy_nonblock() && !e.user_nonblock() {
                r & !libc::O_NONBLOCK
            } else {
                r
            }
        }
        libc::F_SETFL => {
            let e = fdtable::get(fd);
            let wants = (arg as c_int) & libc::O_NONBLOCK != 0;
            if e.kind() != SOCKET {
                // SAFETY: the caller's arguments.
                return unsafe { real::fcntl(fd, cmd, arg) };
            }
            let keep = !wants && e.ivy_nonblock();
            let flags = if keep {
                (arg as c_int) | libc::O_NONBLOCK
            } else {
                arg as c_int
            };
            // SAFETY: F_SETFL with an int of flags.
            let r = unsafe { real::fcntl(fd, cmd, flags as usize) };
            if r == 0 {
                if wants {
                    fdtable::update(fd, USER_NONBLOCK, IVY_NONBLOCK);
                } else {
                    fdtable::update(fd, 0, USER_NONBLOCK);
                }
            }
            r
        }
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            // SAFETY: the caller's arguments.
            let r = unsafe { real::fcntl(fd, cmd, arg) };
            if r >= 0 {
                fdtable::set(r, fdtable::get(fd));
            }
            r
        }
        // SAFETY: the caller's arguments.
        _ => unsafe { real::fcntl(fd, cmd, arg) },
    }
}

/// `fcntl64`: glibc's name for `fcntl` in programs built with 64-bit file
/// offsets on 32-bit targets (and by some headers everywhere).
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { fcntl(fd, cmd, arg) }
}

/// `ioctl(2)`: `FIONBIO` is the other way to set `O_NONBLOCK` and is recorded
/// like `F_SETFL`; everything else passes through. The argument is a machine
/// word, as for `fcntl`.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: usize) -> c_int {
    if !services::any() || req != libc::FIONBIO as c_ulong || arg == 0 {
        // SAFETY: the caller's arguments.
        return unsafe { real::ioctl(fd, req, arg) };
    }
    let e = fdtable::get(fd);
    // SAFETY: FIONBIO takes a pointer to an int (checked non-null).
    let wants = unsafe { *(arg as *const c_int) } != 0;
    if e.kind() != SOCKET {
        // SAFETY: the caller's arguments.
        return unsafe { real::ioctl(fd, req, arg) };
    }
    if !wants && e.ivy_nonblock() {
        // The user's blocking view; ivy keeps the socket non-blocking. Still
        // ask the kernel something cheap so that a bad fd reports EBADF.
        // SAFETY: F_GETFL takes no argument.
        if unsafe { real::fcntl(fd, libc::F_GETFL, 0) } < 0 {
            return -1;
        }
        fdtable::update(fd, 0, USER_NONBLOCK);
        return 0;
    }
    // SAFETY: the caller's arguments.
    let r = unsafe { real::ioctl(fd, req, arg) };
    if r == 0 {
        if wants {
            fdtable::update(fd, USER_NONBLOCK, IVY_NONBLOCK);
        } else {
            fdtable::update(fd, 0, USER_NONBLOCK);
        }
    }
    r
}

/// `dup(2)`: the duplicate shares the open file, so it gets a copy of the entry.
#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: the caller's argument.
    let r = unsafe { real::dup(fd) };
    if r >= 0 && services::any() {
        fdtable::set(r, fdtable::get(fd));
    }
    r
}

/// `dup2(2)`: `new`'s old file is closed (its waiters woken), its entry
/// replaced by a copy of `fd`'s.
#[no_mangle]
pub unsafe extern "C" fn dup2(fd: c_int, new: c_int) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { dup_onto(fd, new, || real::dup2(fd, new)) }
}

/// `dup3(2)`: as `dup2`.
#[no_mangle]
pub unsafe extern "C" fn dup3(fd: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { dup_onto(fd, new, || real::dup3(fd, new, flags)) }
}

unsafe fn dup_onto(fd: c_int, new: c_int, mut op: impl FnMut() -> c_int) -> c_int {
    if !services::any() || services::in_vfork_child() {
        return op();
    }
    let e = fdtable::get(fd);
    let r = if fd == new {
        op()
    } else {
        services::closing(new, op)
    };
    if r >= 0 && fd != new {
        fdtable::set(new, e);
    }
    r
}
