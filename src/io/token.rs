//! Poll tokens: which registration an epoll event is for.
//!
//! A token is an index into the worker's table of registered `IoState`s plus the
//! generation that slot had when the registration was made. Removing a
//! registration bumps its slot's generation, so every token of it (in the
//! kernel's epoll entry, or already copied into an `Events` buffer) stops
//! matching, and dispatch ignores it.
//!
//! Why not the `IoState`'s address, as before: an epoll entry belongs to the
//! *open file*, not to the fd number. If the fd is closed while a dup keeps the
//! file open (C code closing an fd a task waits on, or an fd number replaced by
//! `dup2`), `EPOLL_CTL_DEL` fails (no such fd, or another file under that number)
//! and the kernel keeps the entry, with our token, until the file's last fd is
//! closed. No code path can remove it, so whatever the token names must stay
//! valid *forever*, or be checked. A checked token makes a stale entry
//! harmless: its events cost a table lookup and touch nothing. The table is the
//! same idea as the timer wheel's keys and the C handle table.
//!
//! The table owns one strong count of each registered `IoState`. Dispatch clones
//! the states its events name under the table's lock and runs them after
//! releasing it, so a registration may be removed at any moment from any thread
//! (its owner dropped elsewhere, the worker exiting): its state lives on until
//! the last clone is dropped, and a removed slot no longer matches.
//!
//! Generations never repeat for a slot: one whose generation would wrap is
//! retired (never reused), so a token from long ago cannot name a new state.
//! The lock is per worker and taken once per registration change and once per
//! batch of events, never per event; tokens never equal the waker's token.

use std::sync::{Arc, Mutex};

use super::registration::IoState;

/// Half of a token's bits hold the slot index, the rest the generation (one
/// bit short, so no token equals `usize::MAX`, the waker's).
const INDEX_BITS: u32 = usize::BITS / 2;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
const GENERATION_MAX: usize = (1 << (usize::BITS - INDEX_BITS - 1)) - 1;

/// A registration's poll token: slot index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IoToken {
    index: usize,
    generation: usize,
}

impl IoToken {
    pub(crate) fn to_mio(self) -> mio::Token {
        mio::Token((self.generation << INDEX_BITS) | self.index)
    }

    pub(crate) fn from_mio(token: mio::Token) -> IoToken {
        IoToken {
            index: token.0 & INDEX_MASK,
            generation: token.0 >> INDEX_BITS,
        }
    }
}

struct Slot {
    generation: usize,
    state: Option<Arc<IoState>>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Set when the worker exits: nothing is stored any more.
    closed: bool,
}

/// A worker's registered `IoState`s, addressed by generation-checked tokens.
#[derive(Default)]
pub(crate) struct IoTable {
    table: Mutex<Table>,
}

impl IoTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Nothing panics while holding the lock; recover anyway.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `state` and returns its token, or `None` once the worker exited
    /// or the token space is exhausted.
    pub(crate) fn insert(&self, state: &Arc<IoState>) -> Option<IoToken> {
        let mut t = self.lock();
        if t.closed {
            return None;
        }
        let index = match t.free.pop() {
            Some(i) => i,
            None => {
                let i = t.slots.len();
                if i > INDEX_MASK {
                    return None;
                }
                t.slots.push(Slot {
                    generation: 0,
                    state: None,
                });
                i
            }
        };
        let slot = &mut t.slots[index];
        slot.state = Some(state.clone());
        Some(IoToken {
            index,
            generation: slot.generation,
        })
    }

    /// Removes the state `token` names, if it still does; its slot's generation
    /// moves on, so the token (wherever it is still held) names nothing.
    pub(crate) fn remove(&self, token: IoToken) -> Option<Arc<IoState>> {
        let mut t = self.lock();
        let slot = t.slots.get_mut(token.index)?;
        if slot.generation != token.generation || slot.state.is_none() {
            return None;
        }
        let state = slot.state.take();
        if slot.generation == GENERATION_MAX {
            // Retired: its generations are used up.
        } else {
            slot.generation += 1;
            t.free.push(token.index);
        }
        state
    }

    /// Appends to `out` the state each token in `tokens` names, skipping stale
    /// and unknown ones; one lock for the whole batch, none for an empty one.
    pub(crate) fn lookup_batch<E>(
        &self,
        tokens: impl Iterator<Item = (IoToken, E)>,
        out: &mut Vec<(Arc<IoState>, E)>,
    ) {
        let mut table = None;
        for (token, extra) in tokens {
            let t = table.get_or_insert_with(|| self.lock());
            if let Some(Slot {
                generation,
                state: Some(state),
            }) = t.slots.get(token.index)
            {
                if *generation == token.generation {
                    out.push((state.clone(), extra));
                }
            }
        }
    }

    /// The worker exits: releases every state and stores no more; tokens
    /// handed out before name nothing from now on.
    pub(crate) fn close(&self) -> Vec<Arc<IoState>> {
        let mut t = self.lock();
        t.closed = true;
        t.free.clear();
        let states = t.slots.iter_mut().filter_map(|s| s.state.take()).collect();
        t.slots = Vec::new();
        states
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_tokens_name_nothing() {
        let table = IoTable::default();
        let a = Arc::new(IoState::new(0));
        let ta = table.insert(&a).unwrap();
        assert!(Arc::ptr_eq(&table.remove(ta).unwrap(), &a));
        assert!(table.remove(ta).is_none(), "removed twice");
        let b = Arc::new(IoState::new(0));
        let tb = table.insert(&b).unwrap();
        assert_eq!(tb.index, ta.index, "the slot is reused");
        assert_ne!(tb, ta);
        let mut out = Vec::new();
        table.lookup_batch([(ta, 1), (tb, 2)].into_iter(), &mut out);
        assert_eq!(out.len(), 1);
        assert!(Arc::ptr_eq(&out[0].0, &b));
        assert_eq!(out[0].1, 2);
        assert!(table.remove(ta).is_none(), "a stale token removes nothing");
        assert!(table.remove(tb).is_some());
    }

    #[test]
    fn tokens_round_trip_and_never_collide_with_the_waker() {
        let t = IoToken {
            index: INDEX_MASK,
            generation: GENERATION_MAX,
        };
        assert_ne!(t.to_mio(), crate::io::reactor::WAKER_TOKEN);
        assert_eq!(IoToken::from_mio(t.to_mio()), t);
        // An unknown index is ignored, not a panic.
        let table = IoTable::default();
        let mut out: Vec<(Arc<IoState>, ())> = Vec::new();
        table.lookup_batch([(t, ())].into_iter(), &mut out);
        assert!(out.is_empty());
        assert!(table.remove(t).is_none());
    }

    #[test]
    fn a_slot_whose_generation_is_used_up_is_retired() {
        let table = IoTable::default();
        let a = Arc::new(IoState::new(0));
        let ta = table.insert(&a).unwrap();
        table.lock().slots[ta.index].generation = GENERATION_MAX;
        let ta = IoToken {
            generation: GENERATION_MAX,
            ..ta
        };
        assert!(table.remove(ta).is_some());
        let tb = table.insert(&a).unwrap();
        assert_ne!(tb.index, ta.index);
    }

    #[test]
    fn closed_table_stores_nothing() {
        let table = IoTable::default();
        let a = Arc::new(IoState::new(0));
        let ta = table.insert(&a).unwrap();
        assert_eq!(table.close().len(), 1);
        assert!(table.is_closed());
        assert!(table.remove(ta).is_none());
        assert!(table.insert(&a).is_none());
    }
}
