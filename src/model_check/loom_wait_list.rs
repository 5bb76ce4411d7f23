//! `sync::waiters::WaitList`: a waiter that gives up (cancelled, timed out)
//! racing a notifier that grants it an item.
//!
//! The loom threads play `wait_solo` and a releaser in the order the runtime
//! does it: the waiter pushes its node and attaches its grant cell under the
//! state lock, drops the lock, parks, reads its cell without the lock (a grant
//! ends the wait there), else takes the lock again and lets
//! `WaitList::settle` decide; the notifier
//! grants the item to the first waiter under the lock (`grant_front`) and unparks
//! it after dropping the lock, or keeps the item if nobody waits. A waiter that
//! was granted the item but interrupted gives it back, as the queues do. The
//! promise: the item is never lost nor duplicated, and a waiter that is not
//! interrupted always gets it (a lost notification would leave it parked
//! forever, which loom reports as a deadlock). The park is loom's
//! `thread::park`, which has `ivy::park`'s one-token contract.
//!
//! Closing (`WaitList::close`, what an `ivy_*_free` does) races the same way: a
//! waiter queued before the close, or arriving after it, ends with `Closed`
//! unless it was granted first, never parks for good, and the item stays put.

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::Unparker;

use crate::sync::waiters::{GrantCell, WaitList, Woken};
use crate::sync::WaitError;

/// A primitive's state: its wait list and what it holds (here: queued items).
struct State {
    waiters: WaitList<u32, Unparker>,
    items: Vec<u32>,
}

/// How the waiter's wait ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Granted,
    Abandoned(WaitError),
    Interrupted(WaitError),
}

/// What may end the wait besides a grant.
#[derive(Clone, Copy)]
enum GiveUp {
    Never,
    /// `Task::cancel`: the flag, then an unpark; the park reports it.
    Cancel,
    /// The waiter's own deadline: its timer unparks it and the park returns `Ok`.
    Deadline,
    /// The object is freed: `WaitList::close`, then the unparks.
    Close,
}

struct Shared {
    state: Mutex<State>,
    cancelled: AtomicBool,
    deadline_passed: AtomicBool,
}

/// `wait_solo` plus what the queue does with an interrupted grant. Returns how
/// the wait ended and the item the waiter took, if any.
///
/// `late_attach`: queue the node, drop the lock and take it again before
/// attaching the cell, as `Condition` does (it unlocks the user's mutex in
/// between), so a grant or close can reach the node before its cell.
fn waiter(shared: &Shared, me: Unparker, late_attach: bool) -> (End, Option<u32>) {
    let mut guard = shared.state.lock().unwrap();
    if let Some(item) = guard.items.pop() {
        return (End::Granted, Some(item)); // the fast path: no wait
    }
    let key = guard.waiters.push(me.clone(), 0);
    if late_attach {
        drop(guard);
        guard = shared.state.lock().unwrap();
    }
    let cell = GrantCell::new();
    // SAFETY: as `wait_solo`: `cell` outlives the wait (every return below
    // follows a final read of it or `settle`'s removal of the node).
    unsafe { guard.waiters.attach(key, &cell) };
    loop {
        // As `wait_solo`: a closed node (closed while queued, or pushed onto a
        // closed list) settles without parking; a grant read from the cell
        // after the park settles without the lock.
        let parked = if !cell.is_waiting() {
            Ok(())
        } else {
            drop(guard);
            me.park();
            let parked = if shared.cancelled.load(Ordering::Acquire) {
                Err(WaitError::Cancelled)
            } else {
                Ok(())
            };
            if parked.is_ok() {
                if let Some(item) = cell.take_granted() {
                    return (End::Granted, Some(item));
                }
            }
            guard = shared.state.lock().unwrap();
            parked
        };
        let deadline = || shared.deadline_passed.load(Ordering::Acquire);
        match guard.waiters.settle(key, &cell, parked, deadline) {
            None => continue,
            Some(Woken::Granted(item)) => return (End::Granted, Some(item)),
            Some(Woken::Abandoned(e)) => return (End::Abandoned(e), None),
            Some(Woken::Interrupted(item, e)) => {
                // Undo the grant: the item goes to the next waiter, or back.
                put(guard, item);
                return (End::Interrupted(e), None);
            }
        }
    }
}

/// A `put` of `item`: hand it to the first waiter, or keep it.
fn notifier(shared: &Shared, item: u32) {
    put(shared.state.lock().unwrap(), item);
}

fn put(mut guard: loom::sync::MutexGuard<'_, State>, item: u32) {
    match guard.waiters.grant_front(item) {
        Ok(unparker) => {
            drop(guard);
            unparker.unpark();
        }
        Err(item) => guard.items.push(item),
    }
}

fn check(give_up: GiveUp) {
    check_with(give_up, false);
}

fn check_with(give_up: GiveUp, late_attach: bool) {
    loom::model(move || {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiters: WaitList::new(),
                items: Vec::new(),
            }),
            cancelled: AtomicBool::new(false),
            deadline_passed: AtomicBool::new(false),
        });
        let (w, waiter_unparker) = {
            let shared = shared.clone();
            Unparker::spawn(move |me| waiter(&shared, me, late_attach))
        };
        let interrupter = match give_up {
            GiveUp::Never => None,
            GiveUp::Close => {
                let shared = shared.clone();
                Some(thread::spawn(move || {
                    let mut wakes = Vec::new();
                    shared
                        .state
                        .lock()
                        .unwrap()
                        .waiters
                        .close_with(|u| wakes.push(u));
                    for u in wakes {
                        u.unpark();
                    }
                }))
            }
            GiveUp::Cancel | GiveUp::Deadline => {
                let shared = shared.clone();
                let flag_is_cancel = matches!(give_up, GiveUp::Cancel);
                Some(thread::spawn(move || {
                    let flag = if flag_is_cancel {
                        &shared.cancelled
                    } else {
                        &shared.deadline_passed
                    };
                    flag.store(true, Ordering::Release);
                    waiter_unparker.unpark();
                }))
            }
        };
        notifier(&shared, 7);
        let (end, taken) = w.join().unwrap();
        if let Some(t) = interrupter {
            t.join().unwrap();
        }
        let state = shared.state.lock().unwrap();
        assert!(state.waiters.is_empty(), "a node left queued");
        // Exactly one copy of the item: with the waiter or back in the state.
        let copies =
            usize::from(taken == Some(7)) + state.items.iter().filter(|&&i| i == 7).count();
        assert_eq!(
            copies, 1,
            "{end:?}: taken {taken:?}, kept {:?}",
            state.items
        );
        match (give_up, end) {
            (GiveUp::Never, End::Granted) => {}
            (GiveUp::Never, end) => panic!("not interrupted, yet {end:?}"),
            (GiveUp::Cancel, End::Abandoned(WaitError::Cancelled))
            | (GiveUp::Cancel, End::Interrupted(WaitError::Cancelled))
            | (GiveUp::Deadline, End::Abandoned(WaitError::TimedOut))
            | (GiveUp::Close, End::Abandoned(WaitError::Closed))
            | (_, End::Granted) => {}
            (_, end) => panic!("unexpected end {end:?}"),
        }
    });
}

#[test]
fn a_grant_reaches_its_waiter() {
    check(GiveUp::Never);
}

#[test]
fn cancel_racing_a_grant_loses_nothing() {
    check(GiveUp::Cancel);
}

#[test]
fn own_deadline_racing_a_grant_loses_nothing() {
    check(GiveUp::Deadline);
}

#[test]
fn close_racing_a_grant_wakes_the_waiter_and_loses_nothing() {
    check(GiveUp::Close);
}

#[test]
fn a_grant_or_close_before_the_cell_is_attached_is_not_lost() {
    // A regression: `attach` once ignored a node granted between its push and
    // the attach, and the waiter (`Condition::wait`) parked for good.
    check_with(GiveUp::Never, true);
    check_with(GiveUp::Close, true);
    check_with(GiveUp::Cancel, true);
}

#[test]
fn two_waiters_one_item_one_grant() {
    // Two waiters, one item, and a cancellation of the first waiter racing the
    // grant: the item goes to exactly one of them (a cancelled waiter that was
    // granted it passes it on). The other waiter is never interrupted and ends
    // with an item: the first one, or a second one put once the cancelled
    // waiter turned out to have kept the first.
    loom::model(|| {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiters: WaitList::new(),
                items: Vec::new(),
            }),
            cancelled: AtomicBool::new(false),
            deadline_passed: AtomicBool::new(false),
        });
        let (a, a_unparker) = {
            let shared = shared.clone();
            Unparker::spawn(move |me| waiter(&shared, me, false))
        };
        // A waiter whose park never reports an interruption.
        let (b, _) = {
            let shared = shared.clone();
            Unparker::spawn(move |me| waiter_ignoring_cancel(&shared, me))
        };
        notifier(&shared, 7);
        shared.cancelled.store(true, Ordering::Release);
        a_unparker.unpark();
        let (_, a_took) = a.join().unwrap();
        // Whatever a did, b needs one more item if a kept the first one, and gets
        // the first one otherwise (directly or from `items`).
        if a_took.is_some() {
            notifier(&shared, 8);
        }
        let (end_b, b_took) = b.join().unwrap();
        assert_eq!(end_b, End::Granted);
        let state = shared.state.lock().unwrap();
        let mut all: Vec<u32> = a_took.into_iter().chain(b_took).collect();
        all.extend(state.items.iter().copied());
        all.sort_unstable();
        let expected: &[u32] = if a_took.is_some() { &[7, 8] } else { &[7] };
        assert_eq!(all, expected, "an item was lost or granted twice");
        assert!(state.waiters.is_empty());
    });
}

/// `waiter` for a task that is never interrupted.
fn waiter_ignoring_cancel(shared: &Shared, me: Unparker) -> (End, Option<u32>) {
    let mut guard = shared.state.lock().unwrap();
    if let Some(item) = guard.items.pop() {
        return (End::Granted, Some(item));
    }
    let key = guard.waiters.push(me.clone(), 0);
    let cell = GrantCell::new();
    // SAFETY: as in `waiter`.
    unsafe { guard.waiters.attach(key, &cell) };
    loop {
        drop(guard);
        me.park();
        if let Some(item) = cell.take_granted() {
            return (End::Granted, Some(item));
        }
        guard = shared.state.lock().unwrap();
        match guard.waiters.settle(key, &cell, Ok(()), || false) {
            None => continue,
            Some(Woken::Granted(item)) => return (End::Granted, Some(item)),
            Some(_) => panic!("an uninterrupted waiter ended without its grant"),
        }
    }
}

/// A `Select` over two queues, as `sync/select.rs` runs it: register one node
/// per arm (claiming the select itself if an arm's queue already holds an item),
/// park until an arm was claimed, collect that arm's grant and deregister the
/// other; if `cancelled` is seen first, give up (`abandon`), or, when an arm won
/// the race, give its grant back. Returns the arm and item it kept.
fn select(queues: &[Arc<Shared>; 2], me: Unparker) -> Option<(usize, u32)> {
    use crate::sync::waiters::SelectShared;
    let shared = std::sync::Arc::new(SelectShared::new(me.clone()));
    let mut keys = [None, None];
    let deregister = |keys: &mut [Option<usize>; 2], keep: Option<usize>| {
        for arm in 0..2 {
            if Some(arm) != keep {
                if let Some(key) = keys[arm].take() {
                    let grant = queues[arm].state.lock().unwrap().waiters.remove(key);
                    assert_eq!(grant, None, "a losing arm was granted an item");
                }
            }
        }
    };
    for arm in 0..2 {
        let mut state = queues[arm].state.lock().unwrap();
        if let Some(item) = state.items.pop() {
            if shared.claim(arm) {
                drop(state);
                deregister(&mut keys, None);
                return Some((arm, item));
            }
            state.items.push(item); // another arm won meanwhile
            break;
        }
        keys[arm] = Some(state.waiters.push_select(shared.clone(), arm));
    }
    loop {
        if let Some(arm) = shared.fired() {
            deregister(&mut keys, Some(arm));
            let key = keys[arm].take().expect("the claimed arm is registered");
            let mut state = queues[arm].state.lock().unwrap();
            let item = state
                .waiters
                .remove(key)
                .expect("a claimed arm holds its grant");
            return Some((arm, item));
        }
        me.park();
        if queues[0].cancelled.load(Ordering::Acquire) {
            return match shared.abandon() {
                Ok(()) => {
                    deregister(&mut keys, None);
                    None
                }
                Err(arm) => {
                    // Claimed in the race: give the grant back.
                    deregister(&mut keys, Some(arm));
                    let key = keys[arm].take().expect("the claimed arm is registered");
                    let mut state = queues[arm].state.lock().unwrap();
                    let item = state
                        .waiters
                        .remove(key)
                        .expect("a claimed arm holds its grant");
                    put(state, item);
                    None
                }
            };
        }
    }
}

fn new_queue() -> Arc<Shared> {
    Arc::new(Shared {
        state: Mutex::new(State {
            waiters: WaitList::new(),
            items: Vec::new(),
        }),
        cancelled: AtomicBool::new(false),
        deadline_passed: AtomicBool::new(false),
    })
}

#[test]
fn a_select_fires_exactly_one_arm() {
    // Two puts race into the two queues of a select: exactly one arm fires with
    // its item, the other item stays in its queue, no node is left behind.
    loom::model(|| {
        let queues = [new_queue(), new_queue()];
        let (s, _) = {
            let queues = queues.clone();
            Unparker::spawn(move |me| select(&queues, me))
        };
        let other = {
            let q = queues[1].clone();
            thread::spawn(move || notifier(&q, 20))
        };
        notifier(&queues[0], 10);
        other.join().unwrap();
        let (arm, item) = s.join().unwrap().expect("not cancelled");
        assert_eq!(item, [10, 20][arm]);
        let left = [10, 20][1 - arm];
        for (i, q) in queues.iter().enumerate() {
            let state = q.state.lock().unwrap();
            assert!(state.waiters.is_empty());
            let expected: &[u32] = if i == arm { &[] } else { &[left] };
            assert_eq!(state.items, expected, "arm {arm} fired");
        }
    });
}

#[test]
fn a_cancelled_select_loses_no_item() {
    // A put races the select's cancellation: the item ends either with the
    // select (it fired first) or back in its queue, never lost or doubled.
    loom::model(|| {
        let queues = [new_queue(), new_queue()];
        let (s, select_unparker) = {
            let queues = queues.clone();
            Unparker::spawn(move |me| select(&queues, me))
        };
        let canceller = {
            let q = queues[0].clone();
            thread::spawn(move || {
                q.cancelled.store(true, Ordering::Release);
                select_unparker.unpark();
            })
        };
        notifier(&queues[1], 20);
        canceller.join().unwrap();
        let fired = s.join().unwrap();
        let kept = queues[1].state.lock().unwrap().items.clone();
        match fired {
            Some((arm, item)) => {
                assert_eq!((arm, item), (1, 20));
                assert!(kept.is_empty(), "the item was doubled");
            }
            None => assert_eq!(kept, [20], "the item was lost"),
        }
        for q in &queues {
            assert!(q.state.lock().unwrap().waiters.is_empty());
        }
    });
}
