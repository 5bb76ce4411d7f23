//! ivy's side of the libc hook (README, "Hooked libc calls"): the services a
//! runtime lends `libivy_hook` (the `hook/` crate), and attaching them.
//!
//! # Split: the hook calls, ivy parks
//! The interposed libc functions, the per-fd table and the call logic are in
//! the `hook/` crate: one copy per process (the preloaded `libivy_hook.so`, or
//! the rlib linked by the `hook` feature), so every copy of ivy in a process
//! (`libivy.so`, a static `libivy.a`, the Python extension's own) shares one
//! view of each fd. Here is only what needs a runtime: "is the caller one of
//! my tasks?", park until an fd (or one of many) is ready, sleep, run a job
//! on the blocking pool, wake the waiters of a closed fd, and the debug report.
//! The table is a `#[repr(C)]` struct of functions (layout shared with
//! `hook/src/services.rs`, versioned), handed over when a runtime is built:
//! found with `dlsym(RTLD_DEFAULT, "ivy_hook_attach")`, so a plain `libivy`
//! carries no interposed symbol and attaches only if the user loaded the hook;
//! under the `hook` feature the binary calls it directly.
//!
//! # No recursion
//! Everything here that touches an fd uses raw `syscall(2)` (the duplicate a
//! wait registers, closing it), and the waits themselves are the reactor's
//! (`epoll_ctl`, never hooked). The few libc calls the io layer makes on a
//! task's path (`poll` with a zero timeout) pass straight through the hook.
//!
//! # Closing an fd a task waits on
//! A wait registers a duplicate of the caller's fd (as `ivy::io::wait_*` do:
//! the epoll entry is keyed by a number only ivy closes) and lists itself
//! under the caller's fd number, making the duplicate under that list's lock.
//! The hooked `close` (and `dup2`/`dup3` onto an fd) runs the real close
//! through `close_fd`, which holds the number's list across it and then
//! closes every listed registration: the waiters wake with
//! `WaitError::Closed` and the hook returns `EBADF`. Holding the lock across
//! the close is what makes it exact: a wait either started before the close
//! (and is woken) or after it (it finds the fd closed, or waits on the new
//! file that reuses the number, and is left alone). Waking after the close
//! without the lock once woke such a new waiter (test:
//! `hook_concurrency::a_close_never_wakes_a_waiter_on_a_reused_fd_number`).
//! The lists are sharded by fd number, so a close queues only the closes and
//! waits of its own shard.
//!
//! Layer: api (it uses io's registrations and poll, time, the blocking pool).

mod services;

pub(crate) use services::attach;
