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
//! on first access and dropped on the task's own stack when the task ends. Values
//! need not be `Send`: they never leave the task's thread. Outside a task (a plain
//! thread) a key falls back to per-thread storage, so library code works anywhere.

use std::any::Any;
use std::cell::RefCell;

use crate::runtime::worker;

#[derive(Default)]
pub(crate) struct LocalMap {
    entries: Vec<(usize, Box<dyn Any>)>,
}

impl LocalMap {
    /// Drops every value. Values whose destructor touches task-locals see an empty
    /// map being rebuilt, which is then dropped too.
    pub(crate) fn clear_all(cell: &RefCell<LocalMap>) {
        loop {
            let taken = std::mem::take(&mut cell.borrow_mut().entries);
            if taken.is_empty() {
                return;
            }
            drop(taken);
        }
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
