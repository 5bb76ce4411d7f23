"""Tests of the Python binding's synchronization classes."""

import sys
import time

import pytest

import ivy


def test_mutex_protects_a_read_yield_write():
    def main():
        m = ivy.Mutex()
        state = {"n": 0}

        def inc():
            for _ in range(100):
                with m:
                    v = state["n"]
                    ivy.yield_now()
                    state["n"] = v + 1

        ts = [ivy.spawn(inc) for _ in range(10)]
        ivy.gather(*ts)
        return state["n"]

    for workers in (1, 2):
        assert ivy.run(main, workers=workers) == 1000


def test_mutex_timeout_and_errors():
    def main():
        m = ivy.Mutex()
        assert m.acquire()
        t = ivy.spawn(lambda: m.acquire(timeout=0.02))
        assert t.join() is False
        with pytest.raises(ivy.IvyError):
            m.acquire()  # already held by this task: IVY_EDEADLK
        m.release()
        with pytest.raises(ivy.IvyError):
            m.release()  # not held: IVY_EPERM

    ivy.run(main)


def test_semaphore_limits_concurrency():
    def main():
        sem = ivy.Semaphore(3)
        inside = {"now": 0, "max": 0}

        def worker():
            with sem:
                inside["now"] += 1
                inside["max"] = max(inside["max"], inside["now"])
                ivy.sleep(0.005)
                inside["now"] -= 1

        ivy.gather(*[ivy.spawn(worker) for _ in range(20)])
        assert sem.available == 3
        return inside["max"]

    assert ivy.run(main, workers=2) == 3
    with pytest.raises(ValueError):
        ivy.Semaphore(-1)


def test_event_wakes_every_waiter():
    def main():
        ev = ivy.Event()
        assert not ev.is_set()
        assert ev.wait(timeout=0.01) is False
        ts = [ivy.spawn(ev.wait, 5) for _ in range(10)]
        ivy.sleep(0.01)
        ev.set()
        assert all(t.join() for t in ts)
        ev.clear()
        assert not ev.is_set()

    ivy.run(main)


def test_queue_producer_consumer_with_backpressure():
    def main():
        q = ivy.Queue(maxsize=4)
        got = []

        def producer(base):
            for i in range(100):
                q.put((base, i))

        def consumer():
            while True:
                try:
                    item = q.get()
                except ivy.ClosedError:
                    return
                got.append(item)
                q.task_done()

        cons = [ivy.spawn(consumer) for _ in range(3)]
        prods = [ivy.spawn(producer, b) for b in range(4)]
        ivy.gather(*prods)
        q.join()
        q.close()
        ivy.gather(*cons)
        return got

    got = ivy.run(main, workers=2)
    assert sorted(got) == [(b, i) for b in range(4) for i in range(100)]


def test_queue_is_fifo_per_producer():
    def main():
        q = ivy.Queue(maxsize=3)
        prods = [ivy.spawn(lambda b=b: [q.put((b, i)) for i in range(50)]) for b in range(3)]
        got = [q.get() for _ in range(150)]
        ivy.gather(*prods)
        return got

    got = ivy.run(main, workers=2)
    for b in range(3):
        assert [i for (bb, i) in got if bb == b] == list(range(50))


def test_queue_nowait_close_and_references():
    def main():
        q = ivy.Queue(1)
        obj = object()
        before = sys.getrefcount(obj)
        q.put_nowait(obj)
        assert sys.getrefcount(obj) == before + 1  # the queue holds a reference
        with pytest.raises(ivy.QueueFull):
            q.put_nowait(1)
        assert q.qsize() == 1
        assert q.get_nowait() is obj
        assert sys.getrefcount(obj) == before
        with pytest.raises(ivy.QueueEmpty):
            q.get_nowait()
        with pytest.raises(ivy.TimeoutError):
            q.get(timeout=0.01)
        q.put("last")
        q.close()
        with pytest.raises(ivy.ClosedError):
            q.put("more")
        assert q.get() == "last"
        with pytest.raises(ivy.ClosedError):
            q.get()
        q.task_done()  # two items were taken: two task_done calls are allowed
        q.task_done()
        q.join(timeout=0)
        with pytest.raises(ValueError):
            q.task_done()
        # items left in a dropped queue are released
        q2 = ivy.Queue()
        payload = object()
        base = sys.getrefcount(payload)
        q2.put(payload)
        del q2
        assert sys.getrefcount(payload) == base

    ivy.run(main)


def test_queue_get_is_cancellable():
    def main():
        q = ivy.Queue()

        def getter():
            try:
                q.get()
            except ivy.CancelledError:
                return "cancelled"

        t = ivy.spawn(getter)
        ivy.sleep(0.01)
        t.cancel()
        assert t.join() == "cancelled"
        q.put(1)  # nothing was lost: the item is still there
        assert q.get_nowait() == 1

    ivy.run(main)


def test_sync_objects_work_between_plain_threads_and_tasks():
    start = time.monotonic()
    ev = ivy.Event()
    q = ivy.Queue()

    def main():
        q.put("from task")
        assert ev.wait(timeout=5)

    import threading

    th = threading.Thread(target=lambda: ivy.run(main))
    th.start()
    assert q.get(timeout=5) == "from task"  # this plain thread parks (GIL released)
    ev.set()
    th.join()
    assert time.monotonic() - start < 5
