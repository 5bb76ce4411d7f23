//! The lock-free ring under a bounded `Queue` (`sync::queue::ring`) and its
//! mark. The queue's lock holder is played by the model's main thread: it
//! marks the ring, then decides from what it sees (a getter queues only on an
//! empty ring, a putter only on a full one), so the promise checked here is
//! that no lock-free put or get can slip past a decision made under the mark:
//! one that won its slot before the mark is seen, one that comes after is
//! refused. And the debt: slots granted to putters are not taken by the
//! lock-free puts that resume when the mark is cleared.

use std::sync::Arc;

use loom::thread;

use crate::sync::queue::ring::Ring;

#[test]
fn a_marking_lock_holder_sees_every_lock_free_put() {
    loom::model(|| {
        let ring = Arc::new(Ring::<u32>::new(2));
        let putter = {
            let ring = ring.clone();
            thread::spawn(move || ring.try_push(7, || {}).is_ok())
        };
        ring.set_marked(true);
        // A getter deciding whether to queue.
        let got = ring.pop_locked();
        let put = putter.join().unwrap();
        // Put and not seen would be an item in the ring while a getter waits.
        assert_eq!(put, got.is_some());
        if put {
            assert_eq!(got, Some(7));
        }
    });
}

#[test]
fn a_marking_lock_holder_sees_every_lock_free_get() {
    loom::model(|| {
        let ring = Arc::new(Ring::<u32>::new(1));
        assert!(ring.try_push(1, || {}).is_ok());
        let getter = {
            let ring = ring.clone();
            thread::spawn(move || ring.try_pop())
        };
        ring.set_marked(true);
        // A putter deciding whether to queue: a free slot must be usable.
        let free = ring.len() == 0;
        if free {
            assert!(ring.push_locked(2).is_ok());
        }
        let got = getter.join().unwrap();
        // Taken and not seen would be a putter waiting beside a free slot.
        assert_eq!(got.is_some(), free);
        assert_eq!(ring.pop_locked(), if free { Some(2) } else { Some(1) });
    });
}

#[test]
fn lock_free_puts_leave_the_debt_free() {
    loom::model(|| {
        let ring = Arc::new(Ring::<u32>::new(2));
        ring.set_marked(true);
        let putters: Vec<_> = (0..2)
            .map(|i| {
                let ring = ring.clone();
                thread::spawn(move || ring.try_push(i, || {}).is_ok())
            })
            .collect();
        // One slot granted to a waiting putter, then nobody waits any more.
        ring.set_debt(1);
        ring.set_marked(false);
        let put = putters
            .into_iter()
            .map(|p| p.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert!(
            put <= 1,
            "{put} lock-free puts beside a debt of one in two slots"
        );
        // The granted putter delivers.
        ring.set_marked(true);
        assert!(ring.push_locked(9).is_ok());
        ring.set_debt(0);
    });
}
