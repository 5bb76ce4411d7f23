//! Generation-checked handle tables: how C names Rust objects without pointers.
//!
//! A handle is a `u64`: the low 32 bits index a slot, the next 24 bits are the
//! slot's generation when the handle was made, and the top 8 bits say which kind
//! of object it names ([`Kind`]). Removing an object bumps its slot's generation,
//! so every copy of the old handle stops matching and lookups return `None`
//! (`IVY_EBADF`) instead of reaching a reused slot. Each table checks the kind, so
//! a mutex handle passed to `ivy_task_cancel` is `IVY_EBADF` too, not the task that
//! happens to sit in the same slot of the task table. Generations start at 1 and
//! kinds at 1, so a zero-initialised handle is never valid. A slot whose
//! generation would wrap is retired rather than reused, so an old handle can
//! never match again (a slot is reused 2^24 - 1 times, then costs its 16 bytes
//! for good).
//!
//! Objects are `Arc`s: a lookup clones the `Arc` and drops the table lock at once,
//! so a call that blocks on an object (a join, a lock) holds no table lock, and an
//! object removed meanwhile stays alive until that call returns.

use std::sync::{Arc, Mutex, MutexGuard};

struct Slot<T> {
    generation: u32,
    value: Option<Arc<T>>,
}

struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

/// What a handle names. The discriminant is the handle's top byte; every kind
/// has its own value, so no handle of one kind is ever valid as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Runtime = 1,
    Task = 2,
    Blocking = 3,
    Generator = 4,
    Queue = 5,
    Mutex = 6,
    RwLock = 7,
    Semaphore = 8,
    Event = 9,
    Condition = 10,
    WaitGroup = 11,
    Barrier = 12,
    TcpListener = 13,
    TcpStream = 14,
    UdpSocket = 15,
    UnixListener = 16,
    UnixStream = 17,
    /// A generator's yielder: the generator's own slot, under its own kind.
    Yielder = 18,
    TaskLocalKey = 32,
    DeadlineScope = 33,
    #[cfg(test)]
    Test = 255,
}

/// `id` (a handle of kind `from`) relabelled as kind `to`, naming the same slot
/// and generation: how one object gets two handle types (a generator and the
/// yielder its body gets) that are still never valid as each other. `None` if
/// `id` is not of kind `from`.
pub(crate) fn rekind(id: u64, from: Kind, to: Kind) -> Option<u64> {
    ((id >> 56) as u8 == from as u8).then_some((id & !(0xff << 56)) | ((to as u64) << 56))
}

/// Generations live in 24 bits of the handle.
const GENERATION_MASK: u32 = 0x00ff_ffff;

/// A table of live objects of one kind, addressed by generation-checked ids.
pub(crate) struct HandleTable<T> {
    kind: Kind,
    inner: Mutex<Slots<T>>,
}

impl<T> HandleTable<T> {
    pub(crate) const fn new(kind: Kind) -> HandleTable<T> {
        HandleTable {
            kind,
            inner: Mutex::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        // The table's invariants hold between statements, so a poisoned lock
        // (a panic elsewhere while it was held) leaves it consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value` and returns its handle, or `None` if the table is full
    /// (2^32 slots).
    pub(crate) fn insert(&self, value: Arc<T>) -> Option<u64> {
        let mut t = self.lock();
        let index = match t.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(t.slots.len()).ok()?;
                t.slots.push(Slot {
                    generation: 1,
                    value: None,
                });
                i
            }
        };
        let slot = &mut t.slots[index as usize];
        slot.value = Some(value);
        Some(((self.kind as u64) << 56) | ((slot.generation as u64) << 32) | index as u64)
    }

    /// The object named by `id`, if it is live.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<T>> {
        let (index, generation) = self.split(id)?;
        let t = self.lock();
        let slot = t.slots.get(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.value.clone()
    }

    /// Removes the object named by `id` and returns it, if it was live. Every copy
    /// of `id` is invalid afterwards.
    pub(crate) fn remove(&self, id: u64) -> Option<Arc<T>> {
        let (index, generation) = self.split(id)?;
        let mut t = self.lock();
        let slot = t.slots.get_mut(index)?;
        if slot.generation != generation || slot.value.is_none() {
            return None;
        }
        let value = slot.value.take();
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        if slot.generation != 0 {
            t.free.push(index as u32);
        }
        value
    }

    /// Number of live objects.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock()
            .slots
            .iter()
            .filter(|s| s.value.is_some())
            .count()
    }
}

impl<T> HandleTable<T> {
    /// Slot index and generation of `id`, if `id` is of this table's kind.
    fn split(&self, id: u64) -> Option<(usize, u32)> {
        if (id >> 56) as u8 != self.kind as u8 {
            return None;
        }
        Some((
            (id & 0xffff_ffff) as usize,
            (id >> 32) as u32 & GENERATION_MASK,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_do_not_match_reused_slots() {
        let table = HandleTable::new(Kind::Test);
        let a = table.insert(Arc::new(1)).unwrap();
        assert_eq!(*table.get(a).unwrap(), 1);
        assert_eq!(*table.remove(a).unwrap(), 1);
        assert!(table.get(a).is_none());
        assert!(table.remove(a).is_none());
        let b = table.insert(Arc::new(2)).unwrap();
        assert_eq!(b & 0xffff_ffff, a & 0xffff_ffff, "slot reused");
        assert_ne!(a, b);
        assert!(table.get(a).is_none());
        assert_eq!(*table.get(b).unwrap(), 2);
        assert!(table.get(0).is_none(), "zero handle is never valid");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_handle_of_another_kind_names_nothing() {
        let tasks = HandleTable::new(Kind::Task);
        let mutexes = HandleTable::new(Kind::Mutex);
        let t = tasks.insert(Arc::new("task")).unwrap();
        let m = mutexes.insert(Arc::new("mutex")).unwrap();
        assert_eq!(
            t & 0xffff_ffff_ffff,
            m & 0xffff_ffff_ffff,
            "same slot, same generation"
        );
        assert_ne!(t, m);
        assert!(tasks.get(m).is_none());
        assert!(tasks.remove(m).is_none());
        assert!(mutexes.get(t).is_none());
        assert_eq!(*tasks.get(t).unwrap(), "task");
    }

    #[test]
    fn wrapped_generation_retires_the_slot() {
        let table = HandleTable::new(Kind::Test);
        let a = table.insert(Arc::new(1)).unwrap();
        table.lock().slots[0].generation = GENERATION_MASK;
        let id = (Kind::Test as u64) << 56 | (GENERATION_MASK as u64) << 32;
        assert!(table.get(a).is_none());
        assert!(table.remove(id).is_some());
        let b = table.insert(Arc::new(2)).unwrap();
        assert_eq!(b & 0xffff_ffff, 1, "retired slot 0 is not reused");
    }

    #[test]
    fn ids_stay_exact_under_concurrent_insert_get_remove() {
        // Under Miri (tests/model-check.sh) this also checks the table for data
        // races and for use of a removed object's memory.
        let table = Arc::new(HandleTable::<u64>::new(Kind::Test));
        let rounds: u64 = if cfg!(miri) { 30 } else { 3000 };
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let table = table.clone();
                std::thread::spawn(move || {
                    let mut stale = Vec::new();
                    for i in 0..rounds {
                        let v = (t << 32) | i;
                        let id = table.insert(Arc::new(v)).unwrap();
                        let held = table.get(id).unwrap();
                        assert_eq!(*held, v);
                        assert_eq!(*table.remove(id).unwrap(), v);
                        assert_eq!(*held, v, "a removed object lives while it is held");
                        stale.push(id);
                        for &old in stale.iter().rev().take(8) {
                            assert!(table.get(old).is_none(), "a stale id matched");
                            assert!(table.remove(old).is_none());
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(table.len(), 0);
    }
}
