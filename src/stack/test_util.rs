//! Test helpers: child processes for faults that must kill, and views of the address space.
//!
//! Faults are provoked in a forked child so that the test process survives them. The child
//! inherits only the forking thread, so it must not take locks that other test threads may have
//! held at the fork (the pool's): tests allocate stacks before forking, and the child exits
//! without returning into the test harness.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::panic::{self, AssertUnwindSafe};

/// How a child process ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Exit {
    Code(i32),
    Signal(i32),
}

/// Runs `f` in a forked child, with the child's stderr (fd 2) captured; exit code 0 if `f`
/// returns, 101 if it panics.
pub(super) fn in_child(f: impl FnOnce()) -> (Exit, String) {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) writes two new descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [read, write] = fds;
    // SAFETY: the child only redirects stderr, runs `f` under the rules above, and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain syscalls on descriptors this process owns; no core files for the
        // crashes we provoke.
        unsafe {
            libc::close(read);
            libc::dup2(write, libc::STDERR_FILENO);
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        }
        let code = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => 0,
            Err(_) => 101,
        };
        // SAFETY: leaves the child without running the harness's exit handlers.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: `write` is the child's end, closed here so that reads end when the child does;
    // `read` is ours alone and now owned by the File.
    let mut pipe = unsafe {
        libc::close(write);
        File::from_raw_fd(read)
    };
    let mut stderr = Vec::new();
    pipe.read_to_end(&mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    (exit, String::from_utf8_lossy(&stderr).into_owned())
}

/// Memory areas (VMAs) of this process.
pub(super) fn maps_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Resident pages in the page-aligned range `[addr, addr + len)`.
pub(super) fn resident_pages(addr: usize, len: usize) -> usize {
    let mut pages = vec![0u8; len.div_ceil(super::page_size())];
    // SAFETY: mincore(2) writes one byte per page of the range into `pages`, which is as long.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, pages.as_mut_ptr()) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    pages.iter().filter(|&&p| p & 1 != 0).count()
}
