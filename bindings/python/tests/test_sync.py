"""ivyrt's synchronisation primitives: Lock, Semaphore, BoundedSemaphore, Event,
Condition, Barrier -- exact outcomes over many iterations, FIFO order where
promised, cancellation (one-shot) and timeout() scopes on every blocking call,
and the fast paths that never park."""

import threading
import time

import pytest

import ivyrt


def wait_until(predicate, limit=10.0):
    """Parks the calling task until ``predicate()`` holds (a handshake with
    other tasks, polled), failing after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        ivyrt.sleep(0.0005)


def parked(call, *args):
    """Starts ``call(*args)`` as a task and returns it once it has reached the
    call: with one worker, a task that started the call and let us run again
    is parked in it."""
    started = []

    def body():
        started.append(1)
        return call(*args)

    t = ivyrt.create_task(body)
    wait_until(lambda: started)
    return t


@pytest.mark.parametrize("workers", [1, 2])
def test_lock_protects_a_read_yield_write(workers):
    def main():
        lock = ivyrt.Lock()
        state = {"n": 0}

        def inc():
            for _ in range(200):
                with lock:
                    v = state["n"]
                    ivyrt.yield_now()
                    state["n"] = v + 1

        ivyrt.gather(*[ivyrt.create_task(inc) for _ in range(10)])
        return state["n"], lock.locked()

    for _ in range(5):
        assert ivyrt.run(main, workers=workers) == (2000, False)


def test_lock_api():
    def main():
        lock = ivyrt.Lock()
        assert not lock.locked()
        assert lock.acquire() is True
        assert lock.locked()
        assert lock.acquire(timeout=0.01) is False  # not reentrant
        assert ivyrt.create_task(lock.acquire, timeout=0.01).join() is False
        lock.release()
        assert not lock.locked()
        with pytest.raises(RuntimeError):
            lock.release()
        with lock as bound:
            assert bound is None
            assert lock.locked()
        assert not lock.locked()
        assert "unlocked" in repr(lock)

    ivyrt.run(main)


def test_lock_waiters_get_it_in_fifo_order():
    def main():
        lock = ivyrt.Lock()
        order = []

        queued = []

        def waiter(i):
            queued.append(i)
            with lock:
                order.append(i)

        for _ in range(20):
            order.clear()
            queued.clear()
            lock.acquire()
            tasks = [ivyrt.create_task(waiter, i) for i in range(10)]
            wait_until(lambda: len(queued) == 10)  # all parked, in arrival order
            assert queued == list(range(10))
            lock.release()
            ivyrt.gather(*tasks)
            assert order == list(range(10))

    ivyrt.run(main)


def test_uncontended_calls_never_park():
    """The fast paths run under the GIL without a switch: with one worker, a
    task spawned before them cannot run until the caller blocks."""

    def main():
        ran = []
        lock, sem, bsem, ev = ivyrt.Lock(), ivyrt.Semaphore(2), ivyrt.BoundedSemaphore(1), ivyrt.Event()
        q = ivyrt.Queue()
        other = ivyrt.create_task(ran.append, 1)
        ev.set()
        for i in range(1000):
            with lock:
                pass
            sem.acquire()
            sem.release()
            with bsem:
                pass
            assert ev.wait()
            q.put(i)
            assert q.get() == i
        assert ran == []
        other.join()
        assert ran == [1]

    ivyrt.run(main)


def test_semaphore_limits_concurrency_exactly():
    def main():
        sem = ivyrt.Semaphore(3)
        inside = {"now": 0, "max": 0, "done": 0}

        def worker():
            with sem:
                inside["now"] += 1
                inside["max"] = max(inside["max"], inside["now"])
                ivyrt.sleep(0.001)
                inside["now"] -= 1
                inside["done"] += 1

        ivyrt.gather(*[ivyrt.create_task(worker) for _ in range(60)])
        return inside, sem.value, sem.locked()

    for workers in (1, 2):
        inside, value, locked = ivyrt.run(main, workers=workers)
        assert inside == {"now": 0, "max": 3, "done": 60}
        assert value == 3 and not locked


def test_semaphore_api():
    with pytest.raises(ValueError):
        ivyrt.Semaphore(-1)
    with pytest.raises(ValueError):
        ivyrt.BoundedSemaphore(-1)

    def main():
        sem = ivyrt.Semaphore(0)
        assert sem.locked()
        assert sem.acquire(timeout=0.01) is False
        sem.release()
        sem.release()  # an unbounded semaphore may exceed its initial value
        assert sem.value == 2
        assert sem.acquire() and sem.acquire()
        assert sem.locked()
        t = parked(sem.acquire)
        assert not t.done()
        sem.release()
        assert t.join() is True

    ivyrt.run(main)


def test_bounded_semaphore_refuses_over_release():
    def main():
        bsem = ivyrt.BoundedSemaphore(2)
        with pytest.raises(ValueError):
            bsem.release()
        assert bsem.value == 2
        bsem.acquire()
        bsem.release()
        with pytest.raises(ValueError):
            bsem.release()
        with bsem:
            with bsem:
                assert bsem.locked()
                assert bsem.acquire(timeout=0) is False
        assert bsem.value == 2

    ivyrt.run(main)


def test_event_wakes_every_waiter():
    def main():
        ev = ivyrt.Event()
        for _ in range(10):
            ev.clear()
            assert not ev.is_set()
            assert ev.wait(timeout=0.001) is False
            tasks = [parked(ev.wait) for _ in range(50)]
            assert not any(t.done() for t in tasks)
            ev.set()
            assert ivyrt.gather(*tasks) == [True] * 50
            assert ev.is_set() and ev.wait() is True

    ivyrt.run(main)


def test_condition_notify_wakes_exactly_n():
    def main():
        cond = ivyrt.Condition()
        woken = []

        waiting = []

        def waiter(i):
            with cond:
                waiting.append(i)
                cond.wait()
                woken.append(i)

        tasks = [ivyrt.create_task(waiter, i) for i in range(10)]
        wait_until(lambda: len(waiting) == 10)
        with cond:
            cond.notify(3)
        wait_until(lambda: len(woken) == 3)
        ivyrt.sleep(0.01)  # and no more than three
        assert sorted(woken) == [0, 1, 2]  # the three longest-waiting
        with cond:
            cond.notify()
        wait_until(lambda: len(woken) == 4)
        ivyrt.sleep(0.01)
        assert sorted(woken) == [0, 1, 2, 3]
        with cond:
            cond.notify_all()
        ivyrt.gather(*tasks)
        assert sorted(woken) == list(range(10))
        assert not cond.locked()

    ivyrt.run(main)


@pytest.mark.parametrize("workers", [1, 2])
def test_condition_wait_for_producer_consumer(workers):
    def main():
        cond = ivyrt.Condition(ivyrt.Lock())
        items = []
        consumed = []

        def consumer():
            for _ in range(250):
                with cond:
                    cond.wait_for(lambda: items)
                    consumed.append(items.pop(0))

        def producer(base):
            for i in range(250):
                with cond:
                    items.append(base + i)
                    cond.notify()
                if i % 7 == 0:
                    ivyrt.yield_now()

        tasks = [ivyrt.create_task(consumer) for _ in range(4)]
        tasks += [ivyrt.create_task(producer, k * 1000) for k in range(4)]
        ivyrt.gather(*tasks)
        return sorted(consumed)

    expected = sorted(k * 1000 + i for k in range(4) for i in range(250))
    for _ in range(3):
        assert ivyrt.run(main, workers=workers) == expected


def test_condition_errors_and_timeout():
    def main():
        cond = ivyrt.Condition()
        with pytest.raises(RuntimeError):
            cond.wait()
        with pytest.raises(RuntimeError):
            cond.notify()
        with pytest.raises(TypeError):
            ivyrt.Condition(object())
        with cond:
            assert cond.wait(timeout=0.01) is False
            assert cond.locked()  # re-acquired after the timeout
            assert cond.wait_for(lambda: 0, timeout=0.01) == 0

    ivyrt.run(main)


def test_condition_cancelled_waiter_passes_no_notification_to_nobody():
    """A waiter cancelled while parked re-holds the lock in its except block,
    and leaves the wait queue: a later notify(1) reaches the next waiter."""

    def main():
        cond = ivyrt.Condition()
        log = []

        waiting = []

        def cancelled_waiter():
            with cond:
                waiting.append("a")
                try:
                    cond.wait()
                except ivyrt.CancelledError:
                    log.append(("cancelled", cond.locked()))
                    raise

        def waiter():
            with cond:
                waiting.append("b")
                cond.wait()
                log.append("woken")

        a = ivyrt.create_task(cancelled_waiter)
        b = ivyrt.create_task(waiter)
        wait_until(lambda: len(waiting) == 2)
        a.cancel()
        with pytest.raises(ivyrt.CancelledError):
            a.join()
        with cond:
            cond.notify(1)
        b.join()
        assert log == [("cancelled", True), "woken"]
        assert not cond.locked()

    ivyrt.run(main)


@pytest.mark.parametrize("workers", [1, 2])
def test_barrier_rounds(workers):
    def main():
        parties = 5
        barrier = ivyrt.Barrier(parties)
        seen = []

        def party(k):
            for r in range(40):
                index = barrier.wait()
                seen.append((r, index))

        ivyrt.gather(*[ivyrt.create_task(party, k) for k in range(parties)])
        return seen, barrier.n_waiting, barrier.broken

    seen, waiting, broken = ivyrt.run(main, workers=workers)
    assert waiting == 0 and not broken
    for r in range(40):
        assert sorted(i for (rr, i) in seen if rr == r) == list(range(5))


def test_barrier_abort_reset_and_timeout():
    def main():
        barrier = ivyrt.Barrier(3)
        assert barrier.parties == 3
        waiters = [ivyrt.create_task(barrier.wait) for _ in range(2)]
        wait_until(lambda: barrier.n_waiting == 2)
        barrier.abort()
        for t in waiters:
            with pytest.raises(ivyrt.BrokenBarrierError):
                t.join()
        assert barrier.broken
        with pytest.raises(ivyrt.BrokenBarrierError):
            barrier.wait()
        barrier.reset()
        assert not barrier.broken and barrier.n_waiting == 0

        waiters = [ivyrt.create_task(barrier.wait) for _ in range(2)]
        wait_until(lambda: barrier.n_waiting == 2)
        barrier.reset()  # breaks the current waiters, stays usable
        for t in waiters:
            with pytest.raises(ivyrt.BrokenBarrierError):
                t.join()
        assert not barrier.broken

        # A timed-out waiter withdraws; the barrier still needs three.
        with pytest.raises(TimeoutError):
            barrier.wait(timeout=0.01)
        assert barrier.n_waiting == 0
        tasks = [ivyrt.create_task(barrier.wait) for _ in range(2)]
        wait_until(lambda: barrier.n_waiting == 2)
        with barrier as index:
            assert index == 2
        assert sorted(ivyrt.gather(*tasks)) == [0, 1]
        with pytest.raises(ValueError):
            ivyrt.Barrier(0)

    ivyrt.run(main)


def blocking_calls():
    """(name, setup -> blocking callable, check of the object afterwards): each
    call parks until cancelled or timed out."""

    def held_lock():
        lock = ivyrt.Lock()
        lock.acquire()
        return lock.acquire, lambda: lock.locked()

    def cond_wait():
        cond = ivyrt.Condition()

        def call():
            with cond:
                cond.wait()

        return call, lambda: not cond.locked()

    def empty_sem():
        sem = ivyrt.Semaphore(0)
        return sem.acquire, lambda: sem.value == 0

    def empty_bsem():
        bsem = ivyrt.BoundedSemaphore(1)
        bsem.acquire()
        return bsem.acquire, lambda: bsem.value == 0

    def event():
        ev = ivyrt.Event()
        return ev.wait, lambda: not ev.is_set()

    def barrier():
        b = ivyrt.Barrier(2)
        return b.wait, lambda: b.n_waiting == 0 and not b.broken

    def queue_get():
        q = ivyrt.Queue()
        return q.get, lambda: q.qsize() == 0

    def queue_put():
        q = ivyrt.Queue(1)
        q.put("a")
        return (lambda: q.put("b")), lambda: q.qsize() == 1 and q.get_nowait() == "a"

    def queue_join():
        q = ivyrt.Queue()
        q.put(1)
        return q.join, lambda: q.qsize() == 1

    def lifo_get():
        q = ivyrt.LifoQueue()
        return q.get, lambda: q.empty()

    def priority_get():
        q = ivyrt.PriorityQueue()
        return q.get, lambda: q.empty() and not q._mutex.locked()

    def priority_put():
        q = ivyrt.PriorityQueue(1)
        q.put(1)
        return (lambda: q.put(0)), lambda: q.qsize() == 1 and q.get_nowait() == 1

    return [
        ("Lock.acquire", held_lock),
        ("Condition.wait", cond_wait),
        ("Semaphore.acquire", empty_sem),
        ("BoundedSemaphore.acquire", empty_bsem),
        ("Event.wait", event),
        ("Barrier.wait", barrier),
        ("Queue.get", queue_get),
        ("Queue.put", queue_put),
        ("Queue.join", queue_join),
        ("LifoQueue.get", lifo_get),
        ("PriorityQueue.get", priority_get),
        ("PriorityQueue.put", priority_put),
    ]


@pytest.mark.parametrize("name,setup", blocking_calls(), ids=[n for n, _ in blocking_calls()])
def test_blocking_call_honours_cancellation_once(name, setup):
    def main():
        call, intact = setup()
        log = []

        started = []

        def victim():
            started.append(1)
            try:
                call()
                log.append("returned")
            except ivyrt.CancelledError:
                log.append("cancelled")
                ivyrt.sleep(0.001)  # one-shot: cleanup may block again
                log.append("cleaned up")
                raise

        t = ivyrt.create_task(victim)
        wait_until(lambda: started)
        assert not t.done(), name
        assert t.cancel()
        with pytest.raises(ivyrt.CancelledError):
            t.join()
        assert log == ["cancelled", "cleaned up"], name
        assert intact(), name

    ivyrt.run(main)


@pytest.mark.parametrize("name,setup", blocking_calls(), ids=[n for n, _ in blocking_calls()])
def test_blocking_call_honours_timeout_scope(name, setup):
    def main():
        call, intact = setup()
        with pytest.raises(TimeoutError):
            with ivyrt.timeout(0.01):
                call()
        assert intact(), name
        ivyrt.sleep(0.001)  # the task goes on normally

    ivyrt.run(main)


def test_primitives_shared_between_tasks_and_plain_threads():
    """Outside tasks, the primitives block the calling OS thread (GIL released):
    a plain thread and tasks share one lock and one event."""

    def main():
        lock = ivyrt.Lock()
        ready = ivyrt.Event()
        state = {"n": 0}

        def thread_body():
            ready.wait()
            for _ in range(500):
                with lock:
                    state["n"] += 1

        th = threading.Thread(target=thread_body)
        th.start()

        def task_body():
            for _ in range(500):
                with lock:
                    v = state["n"]
                    ivyrt.yield_now()
                    state["n"] = v + 1

        tasks = [ivyrt.create_task(task_body) for _ in range(4)]
        ready.set()
        ivyrt.gather(*tasks)
        ivyrt.to_thread(th.join)
        return state["n"]

    assert ivyrt.run(main) == 2500
