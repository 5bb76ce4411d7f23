//! Task-local storage: `ivy::task_local!`, the task's counterpart of `thread_local!`.
//!
//! Many tasks share one worker thread, so an OS thread-local is shared by every
//! task on that worker: a value put there before a blocking call may have been
//! changed by another task when the call returns, and a `RefCell` borrowed across
//! it will make the other task's borrow fail. (It is never *another thread's*
//! value: ivy tasks do not migrate.) State that belongs to one logical flow goes in
//! a task-local instead.
//!
//! Each task keeps a small map from key address to a boxed value, created lazily
//! on first access and dropped on the task's own stack when the task ends (inside
//! the task's guard: a panicking destructor is the task's panic). Values
//! need not be `Send`: they never leave the task's thread. Outside a task (a plain
//! thread) a key falls back to per-thread storage, so library code works anywhere.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::runtime::worker;

/// How many times a task's task-locals are destroyed when destructors keep
/// re-creating them (`PTHREAD_DESTRUCTOR_ITERATIONS` is 4 too). After that, the
/// map is closed: a destructor that touches a task-local panics instead of
/// creating one more value, so the last round empties the map for good.
pub(crate) const DESTRUCTOR_ROUNDS: usize = 4;

#[derive(Default)]
pub(crate) struct LocalMap {
    entries: Vec<(usize, Box<dyn Any>)>,
    /// Set for the last round of `clear_all`: no value may be created any more.
    closed: bool,
}

impl LocalMap {
    /// Drops every value, one at a time, each under `catch_unwind` (a panic in
    /// one destructor must not skip the others, nor become a second panic while
    /// the first unwinds, which would abort). Values whose destructor touches
    /// task-locals see an empty map being rebuilt, which is then dropped too, for
    /// at most `DESTRUCTOR_ROUNDS` rounds; one more round runs with the map
    /// closed. Returns the first panic (ivy's own cancellation and deadline
    /// unwinds, which interrupt a destructor's blocking call, are not panics);
    /// the panic hook has reported every one.
    pub(crate) fn clear_all(cell: &RefCell<LocalMap>) -> Option<Box<dyn Any + Send>> {
        let mut first = None;
        for round in 0..=DESTRUCTOR_ROUNDS {
            let mut taken = {
                let mut map = cell.borrow_mut();
                map.closed = round == DESTRUCTOR_ROUNDS;
                std::mem::take(&mut map.entries)
            };
            if taken.is_empty() {
                break;
            }
            // Newest first, like the unwinding of a stack.
            while let Some(entry) = taken.pop() {
                if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(entry))) {
                    crate::cancel::caught();
                    if first.is_none() && !crate::cancel::is_ivy_unwind(p.as_ref()) {
                        first = Some(p);
                    } else {
                        crate::task::drop_payload(p);
                    }
                }
            }
        }
        first
    }
}

/// A key for task-local storage; create with [`crate::task_local!`].
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
}

thread_local! {
    static THREAD_FALLBACK: RefCell<LocalMap> = RefCell::new(LocalMap::default());
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey { init }
    }

    /// Runs `f` with a reference to this task's value, initialising it first if
    /// needed.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        worker::with_task_or_thread(|task| match task {
            Some(task) => self.with_map(&task.ctx.locals, f),
            None => THREAD_FALLBACK.with(|m| self.with_map(m, f)),
        })
    }

    fn with_map<R>(&'static self, map: &RefCell<LocalMap>, f: impl FnOnce(&T) -> R) -> R {
        let key = self as *const Self as usize;
        let found = map
            .borrow()
            .entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| &**v as *const dyn Any);
        let ptr = match found {
            Some(p) => p,
            None => {
                if map.borrow().closed {
                    panic!(
                        "ivy: a task-local was used by a destructor after the task's \
                         task-locals were destroyed {DESTRUCTOR_ROUNDS} times (destructors \
                         kept re-creating them)"
                    );
                }
                // `init` may itself use task-locals: call it without a borrow.
                let value: Box<dyn Any> = Box::new((self.init)());
                let p = &*value as *const dyn Any;
                map.borrow_mut().entries.push((key, value));
                p
            }
        };
        // SAFETY: values are boxed, so their address survives growth of the map;
        // entries are removed only by `clear_all` when the task ends (or the thread
        // exits), never while `f` can run on this task. The box holds a `T`: the
        // key's address identifies the `LocalKey<T>` that inserted it.
        let value = unsafe { &*ptr };
        f(value
            .downcast_ref::<T>()
            .expect("task-local type matches its key"))
    }
}

/// Declares task-local keys, like `thread_local!`:
///
/// ```
/// ivy::task_local! {
///     static REQUEST_ID: std::cell::Cell<u64> = std::cell::Cell::new(0);
/// }
/// ivy::run(|| {
///     REQUEST_ID.with(|id| id.set(7));
///     assert_eq!(REQUEST_ID.with(|id| id.get()), 7);
/// });
/// ```
#[macro_export]
macro_rules! task_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident : $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])* $vis static $name: $crate::task::LocalKey<$t> = {
            fn __ivy_init() -> $t { $init }
            $crate::task::LocalKey::new(__ivy_init)
        };
        $crate::task_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident : $t:ty = $init:expr) => {
        $crate::task_local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}
