//! Hierarchical timing wheel, one per worker thread (hence `&mut self`, no locks).
//!
//! Time is counted in 1 ms ticks from `origin`. Deadlines round *up* to a tick
//! and the clock rounds *down*, so a timer can fire late by under a tick but
//! never early. `elapsed` is the last tick the wheel has processed: every timer
//! due at or before it has fired or sits in the ready list for the next `poll`.
//!
//! Layout: 11 levels of 64 slots. Level `L` works on base-64 digit `L` of the
//! deadline tick, so a level-`L` slot spans 64^L ticks. 11 x 6 bits cover the
//! whole `u64` tick space (~584 million years), so there is no overflow list
//! and nothing is parked at the top level to be re-examined every lap: a timer
//! moves down at most once per level, at most 10 times however far away it is.
//! Deadlines further than `u64::MAX` ms from `origin` saturate to that tick.
//!
//! Central invariant: a pending timer's position is a pure function of
//! (`when`, `elapsed`). Its level is the highest digit in which the two differ
//! and its slot is that digit of `when` (or the ready list if `when <= elapsed`).
//! Consequences the code relies on:
//! * every occupied slot of level `L` lies after `elapsed`'s digit `L`, and all
//!   of level `L` is earlier than anything in level `L + 1`; so the lowest set
//!   bit of the lowest non-empty level is the next slot to expire, found with a
//!   few bitmap operations, and `poll` jumps straight to it however much empty
//!   time lies in between;
//! * when `elapsed` jumps to the start of that slot, its timers now agree with
//!   `elapsed` on digit `L` too, so re-placing them moves each one down (or to
//!   the ready list), which is the cascade. A level-0 slot holds a single tick,
//!   so all of it is due at once and it joins the ready list whole, in one
//!   splice rather than a pass over its entries (most timers end in one, and
//!   a burst of 1M timers passes through them);
//! * timers with the same tick always share one list; lists are FIFO and a
//!   cascade preserves their order, so same-tick timers fire in insertion order.
//!   A deadline already past (`<= elapsed`) goes straight to the ready list:
//!   such timers fire at the next poll, in insertion order, before any later
//!   tick, whatever their individual deadlines were.
//!
//! Entries live in a vector with a free list (a slab of our own), threaded on
//! intrusive doubly-linked lists, so removal is O(1) and frees the slot at once
//! (no tombstones; the next insert reuses it). Keys carry a 64-bit generation
//! that never repeats, so a stale key cannot remove whichever timer later reuses
//! the slot.
//!
//! An entry is 32 bytes for an `Arc` value (the value's niche marks a vacant
//! slot, whose `next` threads the free list), because a sleeping task's entry
//! is part of what an idle task costs (`idle_memory`): an entry does not record
//! its list, which the central invariant below recomputes from `when` when the
//! entry is removed (regression: `slab::Slab` of an entry with its list number
//! was 48 bytes a timer).
//!
//! User code (`fire`) only runs while draining the ready list, one entry popped
//! at a time, so a panicking callback leaves the wheel consistent: the remaining
//! due timers simply fire at the next poll.

use std::time::{Duration, Instant};

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// ceil(64 / SLOT_BITS): enough levels for any `u64` tick.
const LEVELS: usize = 11;
/// Index of the ready list, after the `LEVELS * SLOTS` slot lists.
const READY: usize = LEVELS * SLOTS;
const NIL: u32 = u32::MAX;
const NANOS_PER_TICK: u32 = 1_000_000;
const TICKS_PER_SEC: u64 = 1_000;
/// `next_deadline` reads at most this many entries of a coarse slot to find
/// its exact earliest tick; beyond that it settles for the slot's start, which
/// is early (a spurious wake-up that cascades the slot) but never late.
const SCAN_LIMIT: usize = 32;

struct Entry<T> {
    /// `None`: a vacant slot, on the free list through `next`.
    value: Option<T>,
    when: u64,
    generation: u64,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

pub(crate) struct TimerWheel<T> {
    origin: Instant,
    elapsed: u64,
    next_generation: u64,
    entries: Vec<Entry<T>>,
    /// Head of the free list of vacant entries, threaded through `next`.
    free: u32,
    /// Pending timers (occupied entries).
    len: usize,
    /// `LEVELS * SLOTS` slot lists followed by the ready list.
    lists: Box<[List]>,
    /// Bit `s` of `occupied[L]` is set iff slot `s` of level `L` is non-empty.
    occupied: [u64; LEVELS],
}

/// Handle for [`TimerWheel::remove`]. Stale once its timer fired or was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    index: u32,
    generation: u64,
}

impl<T> TimerWheel<T> {
    pub(crate) fn new(origin: Instant) -> Self {
        let empty = List {
            head: NIL,
            tail: NIL,
        };
        TimerWheel {
            origin,
            elapsed: 0,
            next_generation: 0,
            entries: Vec::new(),
            free: NIL,
            len: 0,
            lists: vec![empty; READY + 1].into_boxed_slice(),
            occupied: [0; LEVELS],
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Registers `value` to fire at the first `poll` whose `now` is at or past
    /// `deadline` rounded up to the millisecond (the next poll if already past).
    pub(crate) fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        let generation = self.next_generation;
        self.next_generation += 1;
        let entry = Entry {
            value: Some(value),
            when: self.deadline_tick(deadline),
            generation,
            prev: NIL,
            next: NIL,
        };
        let index = if self.free != NIL {
            let index = self.free;
            self.free = self.entries[index as usize].next;
            self.entries[index as usize] = entry;
            index
        } else {
            assert!(
                self.entries.len() < NIL as usize,
                "timer wheel: too many timers"
            );
            self.entries.push(entry);
            (self.entries.len() - 1) as u32
        };
        self.len += 1;
        self.place(index);
        TimerKey { index, generation }
    }

    /// Cancels a pending timer. `None` if it already fired or was removed.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.entries.get(key.index as usize)?;
        if entry.value.is_none() || entry.generation != key.generation {
            return None;
        }
        let list = self.list_of(entry.when);
        self.unlink(list, key.index);
        Some(self.vacate(key.index))
    }

    /// Fires, in tick order, every timer due at `now` (deadline rounded up to
    /// the tick <= `now` rounded down); returns how many fired. `now` going
    /// backwards is harmless: nothing un-fires and nothing fires early.
    pub(crate) fn poll(&mut self, now: Instant, mut fire: impl FnMut(T)) -> usize {
        let now_tick = self.now_tick(now);
        let mut fired = self.drain_ready(&mut fire);
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now_tick {
                break;
            }
            // Every slot before this one is empty, so jumping here skips no timer.
            self.elapsed = start;
            let list = level * SLOTS + slot;
            if level == 0 {
                // A level-0 slot holds one tick, now `elapsed`: all of it is due.
                self.splice_into_ready(list);
            } else {
                while let Some(index) = self.pop_front(list) {
                    self.place(index);
                }
            }
            fired += self.drain_ready(&mut fire);
        }
        // The next occupied slot starts after `now_tick`, so moving `elapsed`
        // up to it crosses no slot start and the invariant still holds.
        self.elapsed = self.elapsed.max(now_tick);
        fired
    }

    /// A time at which `poll` may have something to fire: never later than the
    /// earliest deadline rounded up to the tick, and exactly that unless the
    /// earliest timer shares a coarse slot with more than `SCAN_LIMIT` others.
    /// May be in the past (overdue timers); `None` only when empty.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let tick = if self.lists[READY].head != NIL {
            self.elapsed
        } else {
            let (level, slot, start) = self.next_slot()?;
            // The earliest timer is in this slot; level-0 slots hold one tick.
            if level == 0 {
                start
            } else {
                self.scan_earliest(level * SLOTS + slot).unwrap_or(start)
            }
        };
        Some(self.tick_instant(tick))
    }

    /// (level, slot, first tick) of the next slot to expire.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&bits| bits != 0)?;
        let slot = self.occupied[level].trailing_zeros() as usize;
        let shift = SLOT_BITS * level as u32;
        debug_assert!(slot as u64 > (self.elapsed >> shift) & (SLOTS as u64 - 1));
        // Digits above this level are shared with `elapsed`.
        let above = shift + SLOT_BITS;
        let base = if above >= u64::BITS {
            0
        } else {
            (self.elapsed >> above) << above
        };
        Some((level, slot, base | ((slot as u64) << shift)))
    }

    fn scan_earliest(&self, list: usize) -> Option<u64> {
        let mut index = self.lists[list].head;
        let mut earliest = u64::MAX;
        for _ in 0..SCAN_LIMIT {
            if index == NIL {
                break;
            }
            let entry = &self.entries[index as usize];
            earliest = earliest.min(entry.when);
            index = entry.next;
        }
        (index == NIL).then_some(earliest)
    }

    fn drain_ready(&mut self, fire: &mut impl FnMut(T)) -> usize {
        let mut fired = 0;
        while let Some(index) = self.pop_front(READY) {
            fired += 1;
            fire(self.vacate(index));
        }
        fired
    }

    /// Takes the value of a detached, occupied entry and puts the entry on the free list.
    fn vacate(&mut self, index: u32) -> T {
        let entry = &mut self.entries[index as usize];
        let value = entry
            .value
            .take()
            .expect("timer wheel: vacating a vacant entry");
        entry.next = self.free;
        self.free = index;
        self.len -= 1;
        value
    }

    /// The list a pending timer due at tick `when` is on: the central invariant.
    fn list_of(&self, when: u64) -> usize {
        if when <= self.elapsed {
            READY
        } else {
            let level =
                ((u64::BITS - 1 - (when ^ self.elapsed).leading_zeros()) / SLOT_BITS) as usize;
            let slot = (when >> (SLOT_BITS * level as u32)) as usize & (SLOTS - 1);
            level * SLOTS + slot
        }
    }

    /// Puts a detached entry where the invariant says it belongs.
    fn place(&mut self, index: u32) {
        let list = self.list_of(self.entries[index as usize].when);
        self.push_back(list, index);
    }

    fn push_back(&mut self, list: usize, index: u32) {
        let tail = self.lists[list].tail;
        let entry = &mut self.entries[index as usize];
        entry.prev = tail;
        entry.next = NIL;
        if tail == NIL {
            self.lists[list].head = index;
            if list < READY {
                self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
            }
        } else {
            self.entries[tail as usize].next = index;
        }
        self.lists[list].tail = index;
    }

    /// Moves the whole of slot `list`, every entry of which is due (`when <= elapsed`), to the
    /// back of the ready list in O(1), keeping its order: what popping and re-placing each entry
    /// would do, without touching every entry once more (1M timers in a burst pass through here).
    fn splice_into_ready(&mut self, list: usize) {
        let List { head, tail } = self.lists[list];
        if head == NIL {
            return;
        }
        debug_assert!(self.entries[tail as usize].when <= self.elapsed);
        let ready_tail = self.lists[READY].tail;
        if ready_tail == NIL {
            self.lists[READY].head = head;
        } else {
            self.entries[ready_tail as usize].next = head;
            self.entries[head as usize].prev = ready_tail;
        }
        self.lists[READY].tail = tail;
        self.lists[list] = List {
            head: NIL,
            tail: NIL,
        };
        self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
    }

    fn pop_front(&mut self, list: usize) -> Option<u32> {
        let head = self.lists[list].head;
        if head == NIL {
            return None;
        }
        self.unlink(list, head);
        Some(head)
    }

    /// Detaches entry `index` from `list`, the list it is on.
    fn unlink(&mut self, list: usize, index: u32) {
        let Entry { prev, next, .. } = self.entries[index as usize];
        match prev {
            NIL => self.lists[list].head = next,
            prev => self.entries[prev as usize].next = next,
        }
        match next {
            NIL => self.lists[list].tail = prev,
            next => self.entries[next as usize].prev = prev,
        }
        if self.lists[list].head == NIL && list < READY {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        }
    }

    fn deadline_tick(&self, deadline: Instant) -> u64 {
        ticks_up(deadline.saturating_duration_since(self.origin))
    }

    fn now_tick(&self, now: Instant) -> u64 {
        ticks_down(now.saturating_duration_since(self.origin))
    }

    fn tick_instant(&self, tick: u64) -> Instant {
        // Only unrepresentable for absurd ticks on platforms with a narrow
        // `Instant`; an earlier answer is merely a spurious wake-up.
        let mut offset = Duration::from_millis(tick);
        loop {
            if let Some(instant) = self.origin.checked_add(offset) {
                return instant;
            }
            offset /= 2;
        }
    }

    /// Walks every list, checking links, bitmaps, counts and placement.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut count = 0;
        for list in 0..=READY {
            let mut prev = NIL;
            let mut index = self.lists[list].head;
            while index != NIL {
                let entry = &self.entries[index as usize];
                assert!(entry.value.is_some());
                assert_eq!((self.list_of(entry.when), entry.prev), (list, prev));
                if list == READY {
                    assert!(entry.when <= self.elapsed);
                } else {
                    let level = list / SLOTS;
                    let differ = 63 - (entry.when ^ self.elapsed).leading_zeros();
                    assert!(entry.when > self.elapsed);
                    assert_eq!(differ / SLOT_BITS, level as u32);
                    let slot = (entry.when >> (SLOT_BITS * level as u32)) as usize & (SLOTS - 1);
                    assert_eq!(slot, list % SLOTS);
                }
                count += 1;
                prev = index;
                index = entry.next;
            }
            assert_eq!(self.lists[list].tail, prev);
            if list < READY {
                let bit = self.occupied[list / SLOTS] >> (list % SLOTS) & 1;
                assert_eq!(bit == 1, prev != NIL);
            }
        }
        assert_eq!(count, self.len);
        let mut vacant = 0;
        let mut index = self.free;
        while index != NIL {
            assert!(self.entries[index as usize].value.is_none());
            vacant += 1;
            index = self.entries[index as usize].next;
        }
        assert_eq!(count + vacant, self.entries.len());
    }
}

/// `d` in ticks, rounded up, saturating at `u64::MAX` (deadlines that far away all share the
/// last tick, as the module comment says). In `u64` seconds and sub-second nanoseconds rather
/// than `as_nanos()`: a `u128` division is a libcall (`__udivti3`), and every park and every
/// poll converts a time.
fn ticks_up(d: Duration) -> u64 {
    ticks(d.as_secs(), d.subsec_nanos().div_ceil(NANOS_PER_TICK))
}

/// `d` in ticks, rounded down (see `ticks_up`).
fn ticks_down(d: Duration) -> u64 {
    ticks(d.as_secs(), d.subsec_nanos() / NANOS_PER_TICK)
}

fn ticks(secs: u64, sub_second_ticks: u32) -> u64 {
    secs.saturating_mul(TICKS_PER_SEC)
        .saturating_add(u64::from(sub_second_ticks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    const MS: u64 = 1_000_000;

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);
    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// `full` normally, `miri` under Miri (`tests/model-check.sh`), which
    /// interprets every step ~1000x slower: the same checks on fewer timers.
    fn size(full: usize, miri: usize) -> usize {
        if cfg!(miri) {
            miri
        } else {
            full
        }
    }

    fn at(origin: Instant, nanos: u64) -> Instant {
        origin + Duration::from_nanos(nanos)
    }

    fn poll_vec(wheel: &mut TimerWheel<u32>, now: Instant) -> Vec<u32> {
        let mut fired = Vec::new();
        let n = wheel.poll(now, |v| fired.push(v));
        assert_eq!(n, fired.len());
        fired
    }

    /// A sleeping task's timer is part of what an idle task costs: 32 bytes
    /// an entry (it was 48 with `slab::Slab` and a stored list number).
    #[test]
    fn an_entry_of_a_task_timer_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry<std::sync::Arc<u8>>>(), 32);
    }

    /// A vacated entry is reused by the next insert, and the stale key of its
    /// previous timer neither removes nor sees the new one.
    #[test]
    fn a_reused_entry_ignores_the_stale_key() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let a = wheel.insert(origin + Duration::from_millis(5), 1u32);
        let b = wheel.insert(origin + Duration::from_millis(7), 2u32);
        assert_eq!(wheel.remove(a), Some(1));
        assert_eq!(wheel.remove(a), None);
        let c = wheel.insert(origin + Duration::from_millis(9), 3u32);
        assert_eq!(c.index, a.index, "the vacated entry is reused");
        assert_eq!(wheel.remove(a), None);
        assert_eq!(wheel.len(), 2);
        wheel.check_invariants();
        assert_eq!(poll_vec(&mut wheel, at(origin, 10 * MS)), [2, 3]);
        assert_eq!(wheel.remove(b), None);
        assert_eq!(wheel.remove(c), None);
        assert!(wheel.is_empty());
        wheel.check_invariants();
        assert_eq!(wheel.entries.len(), 2);
    }

    #[test]
    fn fires_in_tick_order_fifo_within_a_tick() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        // (id, deadline in µs): inserted out of order, several sharing a tick,
        // spread across levels 0..=2.
        let timers = [
            (0, 70_000_000),
            (1, 5_000),
            (2, 4_200),
            (3, 5_000),
            (4, 300_000),
            (5, 4_900),
            (6, 70_000_000),
            (7, 64_000),
            (8, 300_000),
        ];
        for (id, us) in timers {
            wheel.insert(origin + Duration::from_micros(us), id);
        }
        // 4.2 ms and 4.9 ms both round up to tick 5, joining 5.0 ms: FIFO.
        assert_eq!(poll_vec(&mut wheel, at(origin, 4 * MS)), []);
        assert_eq!(poll_vec(&mut wheel, at(origin, 5 * MS)), [1, 2, 3, 5]);
        assert_eq!(poll_vec(&mut wheel, at(origin, 400 * MS)), [7, 4, 8]);
        assert_eq!(poll_vec(&mut wheel, at(origin, 69_999 * MS)), []);
        assert_eq!(poll_vec(&mut wheel, at(origin, 70_000 * MS)), [0, 6]);
        assert!(wheel.is_empty());
        wheel.check_invariants();
    }

    /// A due level-0 slot moves to the ready list whole (`splice_into_ready`): timers that
    /// reached the slot by cascading and timers inserted into it directly still fire in
    /// insertion order, a removed one stays removed, and the slot's bitmap bit is cleared so the
    /// next poll finds the next slot.
    #[test]
    fn a_due_slot_fires_whole_in_insertion_order() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let ms = |n| origin + Duration::from_millis(n);
        wheel.insert(ms(100), 1u32); // level 1 from tick 0
        wheel.insert(ms(130), 9);
        assert_eq!(poll_vec(&mut wheel, at(origin, 70 * MS)), []); // 1 cascades to level 0
        wheel.insert(ms(100), 2); // level 0, behind 1
        let c = wheel.insert(ms(100), 3);
        wheel.insert(ms(100), 4);
        assert_eq!(wheel.remove(c), Some(3));
        wheel.check_invariants();
        assert_eq!(poll_vec(&mut wheel, at(origin, 100 * MS)), [1, 2, 4]);
        wheel.check_invariants();
        assert_eq!(wheel.remove(c), None);
        assert_eq!(wheel.next_deadline(), Some(ms(130)));
        assert_eq!(poll_vec(&mut wheel, at(origin, 130 * MS)), [9]);
        assert!(wheel.is_empty());
        wheel.check_invariants();
    }

    /// The `u64` tick conversions agree with exact `u128` arithmetic, at tick edges and up to
    /// saturation.
    #[test]
    fn tick_conversions_match_nanosecond_arithmetic() {
        let reference = |d: Duration, up: bool| {
            let nanos = d.as_nanos();
            let t = if up {
                nanos.div_ceil(1_000_000)
            } else {
                nanos / 1_000_000
            };
            u64::try_from(t).unwrap_or(u64::MAX)
        };
        let mut cases = vec![
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(999_999),
            Duration::from_millis(1),
            Duration::from_nanos(1_000_001),
            Duration::new(1, 0),
            Duration::new(1, 999_999_999),
            Duration::new(u64::MAX / 1000, 999_999_999),
            Duration::new(u64::MAX / 1000 + 1, 0),
            Duration::new(u64::MAX, 999_999_999),
            Duration::from_millis(u64::MAX),
            Duration::from_millis(u64::MAX) - Duration::from_nanos(1),
            Duration::from_millis(u64::MAX) + Duration::from_nanos(1),
        ];
        let mut rng = Rng::new(7);
        for _ in 0..size(100_000, 1_000) {
            let bits = rng.below(64);
            let secs = rng.below(1 << bits);
            cases.push(Duration::new(secs, rng.below(1_000_000_000) as u32));
        }
        for d in cases {
            assert_eq!(ticks_up(d), reference(d, true), "{d:?} up");
            assert_eq!(ticks_down(d), reference(d, false), "{d:?} down");
        }
    }

    #[test]
    fn never_early_deadlines_round_up() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        wheel.insert(at(origin, 5 * MS + 1), 1);
        wheel.insert(at(origin, 5 * MS), 0);
        assert_eq!(wheel.next_deadline(), Some(at(origin, 5 * MS)));
        assert_eq!(poll_vec(&mut wheel, at(origin, 5 * MS - 1)), []);
        assert_eq!(poll_vec(&mut wheel, at(origin, 5 * MS)), [0]);
        assert_eq!(wheel.next_deadline(), Some(at(origin, 6 * MS)));
        assert_eq!(poll_vec(&mut wheel, at(origin, 6 * MS - 1)), []);
        assert_eq!(poll_vec(&mut wheel, at(origin, 6 * MS)), [1]);
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn past_deadlines_fire_at_next_poll_in_insertion_order() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        assert_eq!(poll_vec(&mut wheel, at(origin, 100 * MS)), []);
        wheel.insert(at(origin, 101 * MS), 9);
        wheel.insert(at(origin, 50 * MS), 1);
        wheel.insert(at(origin, 100 * MS), 2);
        if let Some(before_origin) = origin.checked_sub(Duration::from_secs(1)) {
            wheel.insert(before_origin, 3);
        }
        // Overdue: next_deadline is the current tick, already past.
        assert_eq!(wheel.next_deadline(), Some(at(origin, 100 * MS)));
        let fired = poll_vec(&mut wheel, at(origin, 100 * MS));
        assert!(fired == [1, 2, 3] || fired == [1, 2]);
        // A clock going backwards neither fires nor breaks anything.
        assert_eq!(poll_vec(&mut wheel, at(origin, 10 * MS)), []);
        assert_eq!(poll_vec(&mut wheel, at(origin, 101 * MS)), [9]);
        wheel.check_invariants();
    }

    #[test]
    fn panicking_callback_leaves_the_wheel_consistent() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        for (id, ms) in [(0, 70), (1, 70), (2, 70), (3, 90), (4, 5000)] {
            wheel.insert(at(origin, ms * MS), id);
        }
        let mut seen = Vec::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wheel.poll(at(origin, 100 * MS), |id| {
                seen.push(id);
                assert_ne!(id, 1, "callback panics");
            })
        }));
        assert!(result.is_err());
        assert_eq!(seen, [0, 1]);
        wheel.check_invariants();
        assert_eq!(wheel.len(), 3);
        assert_eq!(wheel.next_deadline(), Some(at(origin, 70 * MS)));
        assert_eq!(poll_vec(&mut wheel, at(origin, 100 * MS)), [2, 3]);
        assert_eq!(wheel.next_deadline(), Some(at(origin, 5000 * MS)));
    }

    #[test]
    fn stale_keys_never_remove_another_timer() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let a = wheel.insert(at(origin, 10 * MS), 1);
        assert_eq!(wheel.remove(a), Some(1));
        assert_eq!(wheel.remove(a), None);
        // The slab slot is reused; the old key must not match it.
        let b = wheel.insert(at(origin, 10 * MS), 2);
        assert_eq!(a.index, b.index);
        assert_ne!(a, b);
        assert_eq!(wheel.remove(a), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(poll_vec(&mut wheel, at(origin, 10 * MS)), [2]);
        assert_eq!(wheel.remove(b), None); // fired
        let c = wheel.insert(at(origin, 20 * MS), 3);
        assert_eq!(wheel.remove(b), None);
        assert_eq!(wheel.remove(c), Some(3));
        assert!(wheel.is_empty());
    }

    #[test]
    fn removal_is_real_and_memory_does_not_grow() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let mut rng = Rng::new(7);
        for round in 0..5 {
            let mut keys: Vec<_> = (0..size(10_000, 64))
                .map(|i| wheel.insert(at(origin, rng.below(86_400_000 * MS)), i))
                .collect();
            let capacity = wheel.entries.capacity();
            while !keys.is_empty() {
                let i = rng.below(keys.len() as u64) as usize;
                assert!(wheel.remove(keys.swap_remove(i)).is_some());
            }
            assert_eq!(wheel.len(), 0);
            assert!(wheel.is_empty());
            assert_eq!(wheel.occupied, [0; LEVELS]);
            assert_eq!(wheel.next_deadline(), None);
            wheel.check_invariants();
            if round > 0 {
                assert_eq!(wheel.entries.capacity(), capacity);
            }
            wheel.poll(at(origin, round * 1000 * MS), |_| unreachable!());
        }
        // The sleeping-task pattern: arm for an hour, get woken early, repeat.
        let capacity = wheel.entries.capacity();
        let hour = Duration::from_secs(3600);
        for i in 0..size(1_000_000, 256) {
            let key = wheel.insert(origin + hour, i);
            assert_eq!(wheel.remove(key), Some(i));
        }
        assert_eq!(wheel.entries.capacity(), capacity);
        assert!(wheel.is_empty());
        assert_eq!(wheel.occupied, [0; LEVELS]);
    }

    /// Random inserts / removes / polls checked step by step against a
    /// BTreeMap model keyed by (effective tick, insertion order).
    #[test]
    fn matches_reference_model() {
        for seed in 0..size(300, 3) as u64 {
            let mut rng = Rng::new(seed);
            let origin = Instant::now();
            let mut wheel = TimerWheel::new(origin);
            let mut model: BTreeMap<(u64, u64), u32> = BTreeMap::new();
            let mut live: Vec<(TimerKey, (u64, u64))> = Vec::new();
            let mut stale: Vec<TimerKey> = Vec::new();
            let mut now: u64 = 0; // nanos since origin
            let mut model_elapsed = 0; // ticks
            let mut seq = 0;
            for step in 0..size(1500, 200) {
                match rng.below(10) {
                    0..=4 => {
                        let span =
                            [2 * MS, 100 * MS, 10_000 * MS, 86_400_000 * MS][rng.below(4) as usize];
                        // Mostly future, sometimes past.
                        let deadline = (now + rng.below(span)).saturating_sub(span / 8);
                        // Overdue timers are due "now", in insertion order.
                        let tick = deadline.div_ceil(MS).max(model_elapsed);
                        let id = seq as u32;
                        let key = wheel.insert(at(origin, deadline), id);
                        model.insert((tick, seq), id);
                        live.push((key, (tick, seq)));
                        seq += 1;
                    }
                    5 | 6 if !live.is_empty() => {
                        let (key, model_key) =
                            live.swap_remove(rng.below(live.len() as u64) as usize);
                        let id = model.remove(&model_key).unwrap();
                        assert_eq!(wheel.remove(key), Some(id));
                        stale.push(key);
                    }
                    7 if !stale.is_empty() => {
                        let key = stale[rng.below(stale.len() as u64) as usize];
                        assert_eq!(wheel.remove(key), None);
                    }
                    _ => {
                        let span =
                            [0, MS, 20 * MS, 5_000 * MS, 3_600_000 * MS][rng.below(5) as usize];
                        now += rng.below(span + 1);
                        model_elapsed = model_elapsed.max(now / MS);
                        let due: Vec<_> = model
                            .range(..(model_elapsed + 1, 0))
                            .map(|(&k, &id)| (k, id))
                            .collect();
                        for (k, _) in &due {
                            model.remove(k);
                        }
                        let expected: Vec<u32> = due.iter().map(|&(_, id)| id).collect();
                        assert_eq!(
                            poll_vec(&mut wheel, at(origin, now)),
                            expected,
                            "seed {seed} step {step}"
                        );
                        let fired: HashSet<u32> = expected.into_iter().collect();
                        live.retain(|(key, (_, s))| {
                            let gone = fired.contains(&(*s as u32));
                            if gone {
                                stale.push(*key);
                            }
                            !gone
                        });
                    }
                }
                assert_eq!(wheel.len(), model.len());
                let next = wheel.next_deadline();
                match model.keys().next() {
                    None => assert_eq!(next, None),
                    Some(&(earliest, _)) => {
                        let next = next.expect("non-empty wheel must report a deadline");
                        let exact = at(origin, earliest * MS);
                        assert!(next <= exact, "seed {seed} step {step}: late next_deadline");
                        if model.len() <= SCAN_LIMIT {
                            assert_eq!(next, exact, "seed {seed} step {step}");
                        }
                    }
                }
                if step % 16 == 0 {
                    wheel.check_invariants();
                }
            }
            wheel.check_invariants();
        }
    }

    #[test]
    fn big_jumps_skip_empty_time() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let mut rng = Rng::new(3);
        let mut deadlines: Vec<(u64, u32)> = (0..size(1000, 100) as u32)
            .map(|i| (1 + rng.below(10_000), i))
            .collect();
        for &(ms, id) in &deadlines {
            wheel.insert(at(origin, ms * MS), id);
        }
        deadlines.sort(); // stable by (tick, id): also the FIFO order
        let fired = poll_vec(&mut wheel, at(origin, 10_000 * MS));
        assert_eq!(
            fired,
            deadlines.iter().map(|&(_, id)| id).collect::<Vec<_>>()
        );
        // A century-long sleep: would never finish if stepped tick by tick.
        let century = 100 * 365 * 86_400_000 * MS;
        wheel.insert(at(origin, century), 1);
        wheel.insert(at(origin, 20_000 * MS), 0);
        assert_eq!(poll_vec(&mut wheel, at(origin, century - 1)), [0]);
        assert_eq!(wheel.next_deadline(), Some(at(origin, century)));
        assert_eq!(poll_vec(&mut wheel, at(origin, century)), [1]);
        wheel.check_invariants();
    }

    #[test]
    fn far_future_deadlines() {
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let ms = Duration::from_millis(1);
        let day = Duration::from_secs(86_400);
        let year = 365 * day;
        let nanos = Duration::from_nanos(1);
        for (id, offset) in [
            (3, 1000 * year),
            (2, 5 * year + nanos),
            (1, 3 * day),
            (0, day),
        ] {
            wheel.insert(origin + offset, id);
        }
        assert_eq!(wheel.next_deadline(), Some(origin + day));
        assert_eq!(poll_vec(&mut wheel, origin + day), [0]);
        assert_eq!(wheel.next_deadline(), Some(origin + 3 * day));
        assert_eq!(poll_vec(&mut wheel, origin + 4 * year), [1]);
        assert_eq!(wheel.next_deadline(), Some(origin + 5 * year + ms));
        assert_eq!(poll_vec(&mut wheel, origin + 5 * year), []);
        assert_eq!(poll_vec(&mut wheel, origin + 5 * year + ms), [2]);
        assert_eq!(wheel.next_deadline(), Some(origin + 1000 * year));
        assert_eq!(poll_vec(&mut wheel, origin + 1000 * year - nanos), []);
        assert_eq!(poll_vec(&mut wheel, origin + 1000 * year), [3]);
        // Beyond u64::MAX ms the tick saturates into the top level (level 10,
        // slot 15), on platforms whose `Instant` can represent it at all.
        let max = Duration::from_millis(u64::MAX);
        if let Some(beyond) = origin.checked_add(max + Duration::from_secs(1)) {
            let key = wheel.insert(beyond, 4);
            assert_eq!(
                wheel.list_of(wheel.entries[key.index as usize].when),
                10 * SLOTS + 15
            );
            assert_eq!(wheel.next_deadline(), Some(origin + max));
            assert_eq!(
                poll_vec(&mut wheel, origin + max - Duration::from_millis(1)),
                []
            );
            assert_eq!(poll_vec(&mut wheel, beyond), [4]);
        }
        assert!(wheel.is_empty());
        wheel.check_invariants();
    }

    #[test]
    // A scale test: the smaller ones above check the same logic under Miri.
    #[cfg_attr(miri, ignore)]
    fn a_million_pending_timers() {
        const N: usize = 1_000_000;
        let origin = Instant::now();
        let mut wheel = TimerWheel::new(origin);
        let mut rng = Rng::new(42);
        let ticks: Vec<u64> = (0..N as u32)
            .map(|id| {
                let nanos = rng.below(600_000 * MS);
                wheel.insert(at(origin, nanos), id);
                nanos.div_ceil(MS)
            })
            .collect();
        assert_eq!(wheel.len(), N);
        // Expected firing order: by tick, FIFO (= id order) within a tick.
        // (A counting sort: a comparison sort of 1M is slow in debug builds.)
        let mut starts = vec![0usize; 600_002];
        for &tick in &ticks {
            starts[tick as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut order = vec![0u32; N];
        for (id, &tick) in ticks.iter().enumerate() {
            order[starts[tick as usize]] = id as u32;
            starts[tick as usize] += 1;
        }
        let mut pos = 0;
        let mut now_tick = 0;
        while pos < N {
            let next = wheel.next_deadline().unwrap();
            assert!(next <= at(origin, ticks[order[pos] as usize] * MS));
            now_tick += rng.below(3000);
            let fired = wheel.poll(at(origin, now_tick * MS), |id| {
                assert_eq!(id, order[pos]);
                assert!(ticks[id as usize] <= now_tick, "fired early");
                pos += 1;
            });
            assert_eq!(wheel.len(), N - pos);
            // Nothing due was left behind.
            assert!(pos == N || ticks[order[pos] as usize] > now_tick);
            assert!(fired <= N);
        }
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }
}
