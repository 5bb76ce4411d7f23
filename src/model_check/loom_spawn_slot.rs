//! The newest-spawn slot (`runtime::spawn_slot`): whoever gets a task out of it
//! owns it alone, and nothing put in is lost. The owner plays
//! `Worker::push_spawned` (`replace`, the displaced task going to "the deque")
//! and `pop_spawned` (`take`); a peer plays `steal_held` (`peek`, then
//! `take_if`), twice. Every task must come out exactly once, in every
//! interleaving: a double take would be two owners of one `Arc` reference (a
//! double free), a lost one a task that never runs.

use std::sync::Arc;

use loom::thread;

use crate::runtime::spawn_slot::SpawnSlot;

#[test]
fn every_task_put_in_comes_out_exactly_once() {
    loom::model(|| {
        let slot = Arc::new(SpawnSlot::<u32>::default());
        let peer = {
            let slot = slot.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    let seen = slot.peek();
                    if let Some(t) = slot.take_if(seen) {
                        got.push(*t);
                    }
                }
                got
            })
        };
        let mut got = Vec::new();
        for v in [1, 2] {
            if let Some(older) = slot.replace(Arc::new(v)) {
                got.push(*older); // to the deque
            }
        }
        if let Some(t) = slot.take() {
            got.push(*t);
        }
        got.extend(peer.join().unwrap());
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert!(slot.take().is_none(), "nothing left behind");
    });
}

/// A task taken and put back (its allocation recycled at the same address)
/// under a peer's eyes, the peer taking with a look of the first holding: a
/// take still moves the one reference the slot holds, so each holding comes out
/// once. (That two agreeing looks saw one holding, which `seq` is for, is a
/// heuristic's correctness, not memory safety; `SpawnSlot::peek` argues it.)
#[test]
fn a_task_put_back_at_the_same_address_is_taken_once() {
    loom::model(|| {
        let slot = Arc::new(SpawnSlot::<u32>::default());
        let task = Arc::new(7);
        let peer = {
            let slot = slot.clone();
            thread::spawn(move || {
                let first = slot.peek();
                let _second = slot.peek();
                slot.take_if(first).is_some()
            })
        };
        assert!(slot.replace(task.clone()).is_none());
        let mine_first = slot.take().is_some();
        assert!(slot.replace(task.clone()).is_none());
        let mine_second = slot.take().is_some();
        let peer_took = peer.join().unwrap();
        let taken = mine_first as u32 + mine_second as u32 + peer_took as u32;
        assert_eq!(taken, 2, "two holdings, each taken once");
        assert!(slot.take().is_none(), "nothing left behind");
        // Every reference the slot took came back out: only ours is left.
        assert_eq!(Arc::strong_count(&task), 1);
    });
}
