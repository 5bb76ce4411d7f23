"""ivyrt's queues: Queue, LifoQueue, PriorityQueue -- order, bounds, the
non-blocking forms and their errors, task_done/join, and producer/consumer
runs with exact counts over many iterations."""

import collections
import random
import time

import pytest

import ivyrt

QUEUES = [ivyrt.Queue, ivyrt.LifoQueue, ivyrt.PriorityQueue]
IDS = [q.__name__ for q in QUEUES]


def wait_until(predicate, limit=10.0):
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        ivyrt.sleep(0.0005)


def test_order_of_each_kind():
    def main():
        items = [5, 1, 4, 2, 3]
        out = {}
        for kind in QUEUES:
            q = kind()
            for x in items:
                q.put(x)
            out[kind.__name__] = [q.get() for _ in items]
        return out

    assert ivyrt.run(main) == {
        "Queue": [5, 1, 4, 2, 3],
        "LifoQueue": [3, 2, 4, 1, 5],
        "PriorityQueue": [1, 2, 3, 4, 5],
    }


@pytest.mark.parametrize("kind", QUEUES, ids=IDS)
def test_bounds_and_nowait_errors(kind):
    def main():
        q = kind(2)
        assert q.maxsize == 2
        assert q.empty() and not q.full() and q.qsize() == 0
        with pytest.raises(ivyrt.QueueEmpty):
            q.get_nowait()
        q.put_nowait(1)
        q.put(2)
        assert q.full() and q.qsize() == 2 and len(q) == 2
        with pytest.raises(ivyrt.QueueFull):
            q.put_nowait(3)
        with pytest.raises(ivyrt.QueueFull):
            q.put(3, timeout=0.01)
        assert q.qsize() == 2
        assert sorted([q.get_nowait(), q.get()]) == [1, 2]
        with pytest.raises(ivyrt.QueueEmpty):
            q.get(timeout=0.01)
        unbounded = kind(0)
        for i in range(1000):
            unbounded.put_nowait(i)
        assert unbounded.qsize() == 1000 and not unbounded.full()
        assert kind(-5).maxsize == 0
        assert kind.__name__ in repr(q)

    ivyrt.run(main)


@pytest.mark.parametrize("kind", QUEUES, ids=IDS)
def test_put_parks_while_full_and_get_while_empty(kind):
    def main():
        q = kind(1)
        log = []

        def putter():
            for i in range(3):
                q.put(i)
                log.append(("put", i))

        t = ivyrt.create_task(putter)
        wait_until(lambda: log == [("put", 0)])
        ivyrt.sleep(0.005)
        assert log == [("put", 0)]  # parked on the full queue
        got = [q.get() for _ in range(3)]
        t.join()
        assert sorted(got) == [0, 1, 2]
        getter = ivyrt.create_task(q.get)
        ivyrt.sleep(0.005)
        assert not getter.done()
        q.put("x")
        assert getter.join() == "x"

    ivyrt.run(main)


@pytest.mark.parametrize("kind", QUEUES, ids=IDS)
def test_task_done_and_join(kind):
    def main():
        q = kind()
        with pytest.raises(ValueError):
            q.task_done()
        assert q.join() is True  # nothing unfinished
        for i in range(5):
            q.put(i)
        joined = ivyrt.create_task(q.join)
        for _ in range(5):
            q.get()
        for _ in range(4):
            q.task_done()
        ivyrt.sleep(0.005)
        assert not joined.done()  # one item still unfinished
        assert q.join(timeout=0.01) is False
        q.task_done()
        assert joined.join() is True
        with pytest.raises(ValueError):
            q.task_done()

    ivyrt.run(main)


@pytest.mark.parametrize("kind", QUEUES, ids=IDS)
@pytest.mark.parametrize("workers", [1, 2])
def test_producers_consumers_exact_counts(kind, workers):
    """4 producers x 300 items through a queue of 8 to 3 consumers, with
    task_done/join, 10 rounds: every item is consumed exactly once."""

    def main(seed):
        rng = random.Random(seed)
        q = kind(8)
        consumed = collections.Counter()
        done_count = [0]

        def producer(p):
            for i in range(300):
                q.put((p, i))
                if rng.random() < 0.1:
                    ivyrt.yield_now()

        stop = (10**9, 0)  # sorts after every item, for PriorityQueue

        def consumer():
            while True:
                item = q.get()
                if item == stop:
                    q.task_done()
                    return
                consumed[item] += 1
                done_count[0] += 1
                q.task_done()

        consumers = [ivyrt.create_task(consumer) for _ in range(3)]
        ivyrt.gather(*[ivyrt.create_task(producer, p) for p in range(4)])
        q.join()
        assert done_count[0] == 1200
        for _ in consumers:
            q.put(stop)
        ivyrt.gather(*consumers)
        return consumed

    for seed in range(10):
        consumed = ivyrt.run(main, seed, workers=workers)
        assert len(consumed) == 1200
        assert set(consumed.values()) == {1}
        assert set(consumed) == {(p, i) for p in range(4) for i in range(300)}


def test_priority_queue_single_consumer_sees_sorted_batches():
    def main():
        q = ivyrt.PriorityQueue()
        rng = random.Random(7)
        batch = [rng.randrange(10_000) for _ in range(500)]
        for x in batch:
            q.put((x, str(x)))
        out = [q.get()[0] for _ in batch]
        return batch, out

    batch, out = ivyrt.run(main)
    assert out == sorted(batch)


def test_cancelled_put_gives_its_item_back():
    def main():
        for kind in QUEUES:
            q = kind(1)
            q.put("first")
            started = []

            def putter():
                started.append(1)
                q.put("second")

            t = ivyrt.create_task(putter)
            wait_until(lambda: started)
            t.cancel()
            with pytest.raises(ivyrt.CancelledError):
                t.join()
            assert q.qsize() == 1
            assert q.get_nowait() == "first"
            with pytest.raises(ivyrt.QueueEmpty):
                q.get_nowait()

    ivyrt.run(main)


def test_queue_between_a_task_and_plain_threads():
    """A plain thread blocks (not a task) in put/get; items cross both ways."""

    def main():
        import threading

        to_thread_q = ivyrt.Queue(4)
        back = ivyrt.Queue(4)

        def thread_body():
            while (x := to_thread_q.get()) is not None:
                back.put(x * 2)
            back.put(None)

        th = threading.Thread(target=thread_body)
        th.start()

        def feeder():
            for i in range(500):
                to_thread_q.put(i)
            to_thread_q.put(None)

        f = ivyrt.create_task(feeder)
        total = 0
        while (x := back.get()) is not None:
            total += x
        f.join()
        ivyrt.to_thread(th.join)
        return total

    assert ivyrt.run(main) == 2 * sum(range(500))


@pytest.mark.parametrize("kind", QUEUES, ids=IDS)
def test_shutdown(kind):
    def main():
        # Graceful: waiting putters are refused, getters drain then stop.
        q = kind(2)
        q.put(1)
        q.put(2)
        started = []

        def blocked_put():
            started.append(1)
            q.put(3)

        putter = ivyrt.create_task(blocked_put)
        wait_until(lambda: started)
        q.shutdown()
        with pytest.raises(ivyrt.QueueShutDown):
            putter.join()
        with pytest.raises(ivyrt.QueueShutDown):
            q.put_nowait(4)
        assert sorted([q.get(), q.get_nowait()]) == [1, 2]
        with pytest.raises(ivyrt.QueueShutDown):
            q.get()
        with pytest.raises(ivyrt.QueueShutDown):
            q.get_nowait()

        # Immediate: items dropped and marked done, so join returns; a waiting
        # getter is woken with QueueShutDown.
        q = kind()
        getter_q = kind()
        getter = ivyrt.create_task(getter_q.get)
        for i in range(3):
            q.put(i)
        joined = ivyrt.create_task(q.join)
        ivyrt.sleep(0.005)
        assert not joined.done()
        q.shutdown(immediate=True)
        assert joined.join() is True
        assert q.qsize() == 0
        with pytest.raises(ivyrt.QueueShutDown):
            q.get()
        getter_q.shutdown(immediate=True)
        with pytest.raises(ivyrt.QueueShutDown):
            getter.join()

    ivyrt.run(main)
