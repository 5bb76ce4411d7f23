//! Per-task thread state: `errno` and the C++ runtime's exception globals,
//! saved and restored on every switch so that each task (and each generator
//! body) sees its own, as each thread does.
//!
//! A started task never changes thread, so thread-locals stay *coherent* inside
//! a task; but the tasks of a worker share them. Most thread state is only used
//! between two calls that never switch, and sharing it is harmless. Two pieces
//! of it are routinely held across a blocking call, and sharing them broke
//! programs (issue 11, items 5 and 9):
//!
//! * `errno`. `errno = 1111; ivy_time_sleep(..)` while a sibling task set errno
//!   to 9999 read 9999 afterwards, every time. C code saves errno around a call
//!   or reads it after a failing call followed by a log write that parked.
//! * The C++ ABI's `__cxa_eh_globals`: the stack of exceptions currently caught
//!   (what `throw;` and `std::current_exception()` read, and what every
//!   `catch` block's end pops) and the count of exceptions in flight
//!   (`std::uncaught_exceptions()`). A task that blocks inside a `catch` while a
//!   sibling throws and catches gets its caught-stack spliced: the sibling's
//!   `__cxa_end_catch` pops whatever is on top, and `throw;` may rethrow the
//!   sibling's exception (or a freed one).
//!
//! Design. Both live in slots of the running thread; the thread's slots always
//! hold the state of whatever runs on it. Every switch point swaps the slots
//! with a saved copy: the worker swaps the task's copy in before it resumes a
//! task and swaps it out (its own state back in) when the task suspends, ends
//! or is abandoned (`Worker::run_task`, the one place every task switch goes
//! through); `Generator::next` does the same with the body's copy around the
//! resume of a generator body (`generator::in_body`, which also runs on the
//! body's unwind). The two nest: a body that parks its task is swapped out by
//! the worker with the task, and back in when the task resumes. A new task or
//! body starts as a new thread does: errno 0, no exception caught or in flight.
//! Rust tasks get the same: Rust reads errno right after a failing call, but C
//! libraries called from Rust tasks may not.
//!
//! The C++ part follows what folly::fibers (and YTsaurus' fibers) do: swap the
//! two words of the structure `__cxa_get_globals()` returns, `{ void
//! *caughtExceptions; unsigned int uncaughtExceptions; }`, which is the same in
//! libstdc++ and libc++abi (the Itanium C++ ABI's `__cxa_eh_globals`). libivy is
//! Rust and does not link a C++ runtime, so `__cxa_get_globals` is looked up at
//! run time: first in the global scope (`RTLD_DEFAULT`: a C++ program, or a C++
//! library loaded globally), then in an already loaded libstdc++ or libc++abi
//! (`RTLD_NOLOAD`, which finds one that a `dlopen(RTLD_LOCAL)` brought in, as
//! Python's ctypes and extension modules do). A library found that way is kept
//! open, so the cached function never dangles. The function is called once per
//! worker thread at its start (the address it returns is fixed for the thread's
//! life), so a switch costs four loads and stores when C++ is present and a
//! branch when it is not.
//!
//! AddressSanitizer. A program built with ASan (the C suite's sanitizer pass)
//! runs instrumented C and C++ code on ivy's stacks. ASan keeps the bounds of
//! the stack it believes the thread runs on, and when a C++ exception (or a
//! `longjmp`) leaves frames, it clears their redzones between the stack pointer
//! and the top of that stack. Unaware of task stacks, it printed "ASan is
//! ignoring requested __asan_handle_no_return" at the first throw in a task and
//! left the redzones behind; ivy's own code, which later ran on that memory and
//! copied through ASan's `memcpy` interceptor, was then reported as a stack
//! buffer overflow (tests/c/test_cxx_exceptions.cpp, under ASan). So the stack
//! bounds are a third piece of per-context thread state: when the ASan runtime
//! is in the process (`__sanitizer_start_switch_fiber` found by `dlsym`; it is
//! never loaded late), every swap above also tells ASan which stack the thread
//! now runs on, and keeps the one it ran on. As with errno, ASan itself is the
//! thread's slot. A task's or body's first state is its own stack's bounds; a
//! task parked inside a generator body is resumed onto the body's stack, as the
//! swaps nest. Each swap makes the start and finish calls back to back, just
//! before the switch, so the thread keeps one "fake stack": ASan's
//! `detect_stack_use_after_return` (off by default) is not supported with ivy,
//! and tests/c/run.sh turns it off explicitly. Without ASan this costs one
//! branch per swap.
//!
//! Limits, by design:
//! * The lookup happens when a worker starts (and when a generator first runs on
//!   a thread); a C++ runtime loaded into the process after the runtime started
//!   is not seen by that runtime's workers. A C++ runtime linked statically into
//!   an executable without exporting its symbols (`-static-libstdc++` without
//!   `-rdynamic`) is not found either. Two different C++ runtimes in one process
//!   are not supported (only the first found is swapped).
//! * Only the Itanium ABI's two portable words are swapped. On ARM EHABI
//!   libstdc++ has a third (`propagatingExceptions`), used only while an
//!   exception propagates, and ivy runs on x86_64 and aarch64, which do not use
//!   it.
//! * Other C thread state (`strtok`'s buffer, `locale`, a C library's own
//!   `__thread` variables) is still shared by the tasks of a worker; per-task
//!   storage for C covers what a library needs of its own.
//!
//! Cost (`benches/compare`'s `ivy-bench switch`: two tasks yielding on one
//! worker, no C++ runtime, no ASan): 17 more instructions per switch (190 ->
//! 207, counted with callgrind), the two swaps of `Worker::run_task`, each an
//! errno exchange and one branch; median 35.2 -> 36.5 ns per switch over 61
//! interleaved runs of each build (quartiles 33.1-39.1 -> 33.8-40.5 ns) on a
//! shared 2-core VM.
//!
//! Layer: task core. Uses only `stack`.

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::stack::TaskStack;

/// The portable prefix of the Itanium C++ ABI's `__cxa_eh_globals`.
#[repr(C)]
struct CxaEhGlobals {
    caught_exceptions: *mut c_void,
    uncaught_exceptions: c_uint,
}

type GetGlobals = unsafe extern "C" fn() -> *mut CxaEhGlobals;

/// The thread state of a task or generator body while it does not run (or, while
/// it runs, of whoever resumed it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Saved {
    errno: c_int,
    caught_exceptions: *mut c_void,
    uncaught_exceptions: c_uint,
    /// The bounds `[bottom, bottom + size)` of the stack this context runs on,
    /// for AddressSanitizer (used only when it is loaded).
    stack_bottom: usize,
    stack_size: usize,
}

impl Default for Saved {
    /// A new thread's: errno 0, no exception caught or in flight. (Its stack
    /// bounds are unknown: such a `Saved` is only ever swapped out of the
    /// thread before it is swapped in.)
    fn default() -> Saved {
        Saved {
            errno: 0,
            caught_exceptions: std::ptr::null_mut(),
            uncaught_exceptions: 0,
            stack_bottom: 0,
            stack_size: 0,
        }
    }
}

impl Saved {
    /// The state a new task or generator body starts with, on `stack`.
    pub(crate) fn for_stack(stack: &TaskStack) -> Saved {
        let (bottom, top) = stack.usable();
        Saved::for_bounds(bottom, top - bottom)
    }

    /// `for_stack`, for a stack whose usable range `[bottom, bottom + size)` is known.
    #[inline]
    pub(crate) fn for_bounds(bottom: usize, size: usize) -> Saved {
        Saved {
            stack_bottom: bottom,
            stack_size: size,
            ..Saved::default()
        }
    }
}

/// Where this thread keeps its errno and C++ exception globals. Both addresses
/// are fixed for the thread's life; a `Slots` is used only on the thread that
/// made it.
#[derive(Clone, Copy)]
pub(crate) struct Slots {
    errno: *mut c_int,
    /// Null when no C++ runtime is loaded.
    cxa: *mut CxaEhGlobals,
    /// AddressSanitizer's fiber-switch hooks, when the process runs under ASan.
    asan: Option<&'static AsanHooks>,
    /// `cxa` or `asan` is set.
    more: bool,
}

impl Slots {
    /// The calling thread's slots. `refresh`: if an earlier lookup found no C++
    /// runtime, look again (a worker's start; not on a generator's resume).
    pub(crate) fn current(refresh: bool) -> Slots {
        let cxa = match get_globals_fn(refresh) {
            // SAFETY: `f` is the C++ runtime's `__cxa_get_globals`, which takes no
            // argument and returns this thread's globals (allocating them on first
            // use); the library it lives in stays loaded (see `lookup`).
            Some(f) => unsafe { f() },
            None => std::ptr::null_mut(),
        };
        let asan = asan_hooks();
        Slots {
            // SAFETY: `__errno_location` has no preconditions; it returns the
            // address of this thread's errno, valid for the thread's life.
            errno: unsafe { libc::__errno_location() },
            cxa,
            asan,
            more: !cxa.is_null() || asan.is_some(),
        }
    }

    /// Whether the thread has errno alone to exchange: no C++ runtime, no
    /// ASan. Then `swap_errno` does all of `swap`'s work.
    pub(crate) fn errno_only(&self) -> bool {
        !self.more
    }

    /// `swap` for slots that hold errno alone (`errno_only`): one exchange and
    /// no test, for the worker's plain resume path.
    ///
    /// # Safety
    /// As `swap`'s.
    #[inline(always)]
    pub(crate) unsafe fn swap_errno(&self, saved: &mut Saved) {
        debug_assert!(self.errno_only());
        // SAFETY: as in `swap`.
        unsafe { saved.errno = std::ptr::replace(self.errno, saved.errno) };
    }

    /// Exchanges the thread's state with `saved`: what `saved` held is now the
    /// thread's, and `saved` holds what the thread had.
    ///
    /// # Safety
    /// Called on the thread that made these slots, while it lives.
    #[inline(always)]
    pub(crate) unsafe fn swap(&self, saved: &mut Saved) {
        // SAFETY: the caller runs on the thread these addresses belong to, and
        // the thread is alive; nothing else accesses them concurrently (they are
        // this thread's own).
        unsafe {
            saved.errno = std::ptr::replace(self.errno, saved.errno);
            if !self.more {
                return; // no C++, no ASan (a worker reaches `swap` so only in debug mode)
            }
            if !self.cxa.is_null() {
                let g = self.cxa;
                saved.caught_exceptions = std::ptr::replace(
                    std::ptr::addr_of_mut!((*g).caught_exceptions),
                    saved.caught_exceptions,
                );
                saved.uncaught_exceptions = std::ptr::replace(
                    std::ptr::addr_of_mut!((*g).uncaught_exceptions),
                    saved.uncaught_exceptions,
                );
            }
        }
        if let Some(asan) = self.asan {
            asan.switch_stack(saved);
        }
    }
}

type StartSwitchFiber = unsafe extern "C" fn(*mut *mut c_void, *const c_void, usize);
type FinishSwitchFiber = unsafe extern "C" fn(*mut c_void, *mut *const c_void, *mut usize);

/// `__sanitizer_start_switch_fiber` and `__sanitizer_finish_switch_fiber`.
pub(crate) struct AsanHooks {
    start: StartSwitchFiber,
    finish: FinishSwitchFiber,
}

impl AsanHooks {
    /// Tells ASan that the thread now runs on `saved`'s stack, and stores the
    /// stack it ran on in `saved`. Called just before the switch (no
    /// instrumented code runs between it and the switch). Both calls are made
    /// back to back, so the thread keeps one fake stack (which is why
    /// `detect_stack_use_after_return` must stay off: see the module comment).
    #[cold]
    fn switch_stack(&self, saved: &mut Saved) {
        let mut fake: *mut c_void = std::ptr::null_mut();
        let mut old_bottom: *const c_void = std::ptr::null();
        let mut old_size: usize = 0;
        // SAFETY: the ASan runtime's own functions, called as documented in
        // <sanitizer/common_interface_defs.h>: a start, then its finish, on this
        // thread; the out-pointers are valid locals.
        unsafe {
            (self.start)(
                &mut fake,
                saved.stack_bottom as *const c_void,
                saved.stack_size,
            );
            (self.finish)(fake, &mut old_bottom, &mut old_size);
        }
        saved.stack_bottom = old_bottom as usize;
        saved.stack_size = old_size;
    }
}

/// The ASan hooks if the ASan runtime is in the process (it is loaded first or
/// linked into the executable, never later, so one lookup is enough).
fn asan_hooks() -> Option<&'static AsanHooks> {
    static HOOKS: OnceLock<Option<AsanHooks>> = OnceLock::new();
    HOOKS
        .get_or_init(|| {
            // SAFETY: `dlsym` with `RTLD_DEFAULT` and NUL-terminated names.
            let (start, finish) = unsafe {
                (
                    libc::dlsym(
                        libc::RTLD_DEFAULT,
                        c"__sanitizer_start_switch_fiber".as_ptr(),
                    ),
                    libc::dlsym(
                        libc::RTLD_DEFAULT,
                        c"__sanitizer_finish_switch_fiber".as_ptr(),
                    ),
                )
            };
            if start.is_null() || finish.is_null() {
                return None;
            }
            // SAFETY: the symbols are the sanitizer runtime's, with these types
            // (<sanitizer/common_interface_defs.h>); the runtime is never unloaded.
            Some(unsafe {
                AsanHooks {
                    start: std::mem::transmute::<*mut c_void, StartSwitchFiber>(start),
                    finish: std::mem::transmute::<*mut c_void, FinishSwitchFiber>(finish),
                }
            })
        })
        .as_ref()
}

/// `__cxa_get_globals`, or `NOT_LOOKED_UP` / `ABSENT`.
static GET_GLOBALS: AtomicUsize = AtomicUsize::new(NOT_LOOKED_UP);
const NOT_LOOKED_UP: usize = 0;
const ABSENT: usize = 1;

fn get_globals_fn(refresh: bool) -> Option<GetGlobals> {
    let mut f = GET_GLOBALS.load(Ordering::Acquire);
    if f == NOT_LOOKED_UP || (f == ABSENT && refresh) {
        // Lookups are idempotent: racing threads store the same answer.
        f = lookup().map_or(ABSENT, |g| g as usize);
        GET_GLOBALS.store(f, Ordering::Release);
    }
    if f == ABSENT {
        return None;
    }
    // SAFETY: every value other than the two markers was stored from a
    // `GetGlobals` above.
    Some(unsafe { std::mem::transmute::<usize, GetGlobals>(f) })
}

/// Finds `__cxa_get_globals` in the process without loading anything.
fn lookup() -> Option<GetGlobals> {
    const SYMBOL: &std::ffi::CStr = c"__cxa_get_globals";
    // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name has no
    // preconditions.
    let mut sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, SYMBOL.as_ptr()) };
    if sym.is_null() {
        for lib in [c"libstdc++.so.6", c"libc++abi.so.1", c"libc++.so.1"] {
            // SAFETY: `RTLD_NOLOAD` only returns a handle to a library that is
            // already loaded (running no initialiser). The handle is never closed,
            // which keeps the library, and the function we cache, loaded.
            let handle = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
            if handle.is_null() {
                continue;
            }
            // SAFETY: `handle` is a valid handle; the name is NUL-terminated.
            sym = unsafe { libc::dlsym(handle, SYMBOL.as_ptr()) };
            if !sym.is_null() {
                break;
            }
            // SAFETY: `handle` came from the `dlopen` above and is closed once.
            unsafe { libc::dlclose(handle) };
        }
    }
    if sym.is_null() {
        return None;
    }
    // SAFETY: the symbol is the C++ ABI's `__cxa_get_globals`, whose type is
    // `__cxa_eh_globals *(void)`.
    Some(unsafe { std::mem::transmute::<*mut c_void, GetGlobals>(sym) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_exchanges_errno_both_ways() {
        let slots = Slots::current(false);
        let mut saved = Saved {
            errno: 1111,
            ..Saved::default()
        };
        // SAFETY: `slots` is this thread's.
        unsafe {
            *libc::__errno_location() = 9999;
            slots.swap(&mut saved);
            assert_eq!(*libc::__errno_location(), 1111);
            assert_eq!(saved.errno, 9999);
            slots.swap(&mut saved);
            assert_eq!(*libc::__errno_location(), 9999);
            assert_eq!(saved.errno, 1111);
        }
    }
}
