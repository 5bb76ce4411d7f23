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
//!
//! Layer: task core. Uses `current` (the running task) and `body` (the unwind
//! payloads and the guarded drop of a panic payload).

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::task::current;

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
        // Most tasks never touch a task-local: nothing to take, nothing to drop
        // (the loop's first round would find the map empty and leave it so).
        if cell.borrow().entries.is_empty() {
            return None;
        }
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
                    current::caught();
                    if first.is_none() && !crate::task::body::is_ivy_unwind(p.as_ref()) {
                        first = Some(p);
                    } else {
                        crate::task::body::drop_payload(p);
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
        current::with_task_or_thread(|task| match task {
            Some(task) => self.with_map(&task.frame().locals, f),
            None => THREAD_FALLBACK.with(|m| self.with_map(m, f)),
        })
    }

    /// As [`with`](Self::with), but `None` instead of a panic when no value can
    /// be had: the task's task-locals were destroyed for the last time (a
    /// destructor in the last round), or, on a plain thread, its thread-locals
    /// are being destroyed. For the C ABI, which reports that as an error code.
    pub(crate) fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Option<R> {
        current::with_task_or_thread(|task| match task {
            Some(task) => self.try_with_map(&task.frame().locals, f),
            None => THREAD_FALLBACK
                .try_with(|m| self.try_with_map(m, f))
                .ok()
                .flatten(),
        })
    }

    fn try_with_map<R>(
        &'static self,
        map: &RefCell<LocalMap>,
        f: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        let key = self as *const Self as usize;
        let present = map
            .try_borrow()
            .ok()
            .map(|m| (m.entries.iter().any(|(k, _)| *k == key), m.closed));
        match present {
            Some((false, true)) | None => None,
            _ => Some(self.with_map(map, f)),
        }
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

/// Raw task-local slots for the C ABI (`ivy_task_local_*`, ffi/local.rs):
/// `pthread_key_create` semantics on top of the task-locals above.
///
/// A key is an `Arc<RawKey>` (the C handle table holds one); each task keeps,
/// in one task-local, the `(key, value)` pairs it set. When the task ends that
/// task-local is dropped like any other -- on the task's own stack, after its
/// entry returned, for at most `DESTRUCTOR_ROUNDS` rounds -- and its drop calls
/// each live key's destructor with each non-null value, once. A destructor that
/// sets a value again re-creates the task-local, which the next round drops; in
/// the last round `raw_set` fails instead. A key retired (`ivy_task_local_key_free`)
/// runs no more destructors, as `pthread_key_delete`. On a plain thread the
/// values are per thread, destroyed when the thread exits (not for the main
/// thread, whose thread-locals are never destroyed: as with pthread keys).
pub(crate) mod raw {
    use std::cell::RefCell;
    use std::os::raw::c_void;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A value's destructor: C's `void (*)(void *)`.
    pub(crate) type RawDtor = unsafe extern "C" fn(*mut c_void);

    /// A key: its destructor, and whether it is still live.
    pub(crate) struct RawKey {
        dtor: Option<RawDtor>,
        live: AtomicBool,
    }

    impl RawKey {
        pub(crate) fn new(dtor: Option<RawDtor>) -> Arc<RawKey> {
            Arc::new(RawKey {
                dtor,
                live: AtomicBool::new(true),
            })
        }

        /// No destructor runs for this key's values from now on.
        pub(crate) fn retire(&self) {
            self.live.store(false, Ordering::Release);
        }
    }

    /// The values one task set, by key.
    #[derive(Default)]
    pub(crate) struct RawSlots {
        values: Vec<(Arc<RawKey>, *mut c_void)>,
    }

    impl Drop for RawSlots {
        fn drop(&mut self) {
            for (key, value) in std::mem::take(&mut self.values) {
                if value.is_null() || !key.live.load(Ordering::Acquire) {
                    continue;
                }
                if let Some(dtor) = key.dtor {
                    // SAFETY: the C caller of `ivy_task_local_key_new` promised a
                    // valid destructor for the values it stores under this key;
                    // this value was stored by this task (or thread) and is
                    // handed over once, as pthread hands a key's value to its
                    // destructor. It is `extern "C"`: it cannot unwind.
                    unsafe { dtor(value) };
                }
            }
        }
    }

    crate::task_local! {
        static SLOTS: RefCell<RawSlots> = RefCell::new(RawSlots::default());
    }

    /// The caller's value for `key` (null if it set none), or `None` when its
    /// task-locals are gone for good (see `LocalKey::try_with`).
    pub(crate) fn get(key: &Arc<RawKey>) -> Option<*mut c_void> {
        SLOTS.try_with(|s| {
            s.borrow()
                .values
                .iter()
                .find(|(k, _)| Arc::ptr_eq(k, key))
                .map_or(std::ptr::null_mut(), |(_, v)| *v)
        })
    }

    /// Sets the caller's value for `key`; `None` when its task-locals are gone
    /// for good. The value it replaces gets no destructor call (pthread's rule).
    pub(crate) fn set(key: &Arc<RawKey>, value: *mut c_void) -> Option<()> {
        SLOTS.try_with(|s| {
            let mut s = s.borrow_mut();
            match s.values.iter_mut().find(|(k, _)| Arc::ptr_eq(k, key)) {
                Some(slot) => slot.1 = value,
                None => {
                    // Values of retired keys are dead weight: drop them here.
                    s.values.retain(|(k, _)| k.live.load(Ordering::Acquire));
                    s.values.push((key.clone(), value));
                }
            }
        })
    }
}
