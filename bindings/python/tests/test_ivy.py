"""Tests of the Python binding, through its public API only."""

import threading
import time

import pytest

import ivy


def test_run_returns_result_and_propagates_exceptions():
    assert ivy.run(lambda: 42) == 42
    assert ivy.run(lambda a, b=0: a + b, 1, b=2) == 3

    def boom():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        ivy.run(boom)


def test_spawn_join_many_exact_sum():
    def main():
        tasks = [ivy.spawn(lambda i=i: i * 2) for i in range(500)]
        return sum(t.join() for t in tasks)

    for workers in (1, 2):
        assert ivy.run(main, workers=workers) == 2 * sum(range(500))


@pytest.mark.parametrize("workers", [1, 2])
def test_many_python_tasks_sleep_concurrently(workers):
    # The GIL is released while a task is parked, and each task has its own
    # thread state: 100 tasks sleeping 100 ms overlap instead of queueing.
    def sleeper(i):
        ivy.sleep(0.1)
        return i

    def main():
        start = time.monotonic()
        tasks = [ivy.spawn(sleeper, i) for i in range(100)]
        results = [t.join() for t in tasks]
        return results, time.monotonic() - start

    results, elapsed = ivy.run(main, workers=workers)
    assert results == list(range(100))
    assert 0.1 <= elapsed < 5.0  # serialised sleeps would take 10 s


def test_interleaved_tasks_keep_their_own_frames():
    # Deep, different Python call stacks in tasks that interleave on one worker.
    def recurse(depth, tag, log):
        if depth == 0:
            ivy.sleep(0.001)
            log.append(tag)
            return tag
        return recurse(depth - 1, tag, log)

    def main():
        log = []
        tasks = [ivy.spawn(recurse, 20 + i, i, log) for i in range(50)]
        assert [t.join() for t in tasks] == list(range(50))
        return sorted(log)

    for _ in range(5):
        assert ivy.run(main, workers=1) == list(range(50))


def test_exceptions_in_tasks_reach_join():
    def main():
        t = ivy.spawn(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            t.join()
        return "ok"

    assert ivy.run(main) == "ok"


def test_cancel_sleeping_task():
    started = threading.Event()

    def sleeper():
        started.set()
        ivy.sleep(3600)

    def main():
        t = ivy.spawn(sleeper)
        while not started.is_set():
            ivy.sleep(0.001)
        t.cancel()
        with pytest.raises(ivy.CancelledError):
            t.join(timeout=5)
        assert t.done()

    ivy.run(main)


def test_task_that_handles_cancellation_reports_its_result():
    def stubborn():
        try:
            ivy.sleep(3600)
        except ivy.CancelledError:
            return "cleaned up"
        return "not cancelled"

    def main():
        t = ivy.spawn(stubborn)
        ivy.sleep(0.01)
        t.cancel()
        return t.join()

    assert ivy.run(main) == "cleaned up"


def test_cancel_before_start():
    ran = []

    def main():
        t = ivy.spawn(lambda: ran.append(1))
        t.cancel()  # one worker, no blocking call since spawn: it never started
        with pytest.raises(ivy.CancelledError):
            t.join()

    ivy.run(main, workers=1)
    assert ran == []


def test_join_timeout_then_join():
    def main():
        t = ivy.spawn(lambda: (ivy.sleep(0.2), "late")[1])
        start = time.monotonic()
        with pytest.raises(ivy.TimeoutError):
            t.join(timeout=0.02)
        assert time.monotonic() - start >= 0.02
        # builtins.TimeoutError too
        with pytest.raises(TimeoutError):
            t.join(timeout=0)
        return t.join()

    assert ivy.run(main) == "late"


def test_join_twice_is_an_error():
    def main():
        t = ivy.spawn(lambda: 1)
        assert t.join() == 1
        with pytest.raises(ivy.IvyError) as e:
            t.join()
        assert e.value.code == -9

    ivy.run(main)


def test_names_and_ids():
    def main():
        me = ivy.current_task_id()
        assert ivy.current_task_name() == "main"
        t = ivy.spawn(lambda: (ivy.current_task_id(), ivy.current_task_name()), name="worker-α")
        tid = t.id
        child_id, child_name = t.join()
        assert child_id == tid != me
        assert child_name == "worker-α"
        long = ivy.spawn(ivy.current_task_name, name="x" * 1000)
        assert long.join() == "x" * 1000

    ivy.run(main)
    with pytest.raises(ivy.IvyError):
        ivy.current_task_id()  # outside a task: IVY_EPERM


def test_spawn_outside_runtime_fails():
    with pytest.raises(ivy.IvyError) as e:
        ivy.spawn(lambda: 1)
    assert e.value.code == -1


def test_wait_any_and_gather():
    def sleeper(s):
        ivy.sleep(s)
        return s

    def main():
        ts = [ivy.spawn(sleeper, s) for s in (0.3, 0.02, 0.2)]
        first = ivy.wait_any(ts)
        assert first is ts[1]
        with pytest.raises(ivy.TimeoutError):
            ivy.wait_any([ts[0]], timeout=0.01)
        return ivy.gather(*ts)

    assert ivy.run(main) == [0.3, 0.02, 0.2]


def test_gather_propagates_first_error_and_cancels_rest():
    cancelled = []

    def slow():
        try:
            ivy.sleep(3600)
        except ivy.CancelledError:
            cancelled.append(1)
            raise

    def main():
        bad = ivy.spawn(lambda: 1 / 0)
        rest = [ivy.spawn(slow) for _ in range(3)]
        ivy.sleep(0.01)
        with pytest.raises(ZeroDivisionError):
            ivy.gather(bad, *rest)

    ivy.run(main)
    assert cancelled == [1, 1, 1]


def test_leftover_tasks_are_cancelled_at_shutdown():
    seen = []

    def forever():
        try:
            ivy.sleep(3600)
        except ivy.CancelledError:
            seen.append("cancelled")
            raise

    def main():
        for _ in range(5):
            ivy.spawn(forever)
        ivy.sleep(0.01)
        return "done"

    assert ivy.run(main) == "done"
    assert seen == ["cancelled"] * 5


def test_yield_and_sleep_errors():
    def main():
        for _ in range(100):
            ivy.yield_now()
        with pytest.raises(ValueError):
            ivy.sleep(-1)

    ivy.run(main)
    ivy.sleep(0.001)  # a plain thread sleeps too
    assert ivy.now() >= 0


def test_stress_many_runs():
    def main(n):
        ts = [ivy.spawn(lambda i=i: (ivy.yield_now(), i)[1]) for i in range(n)]
        return sum(t.join() for t in ts)

    for i in range(10):
        assert ivy.run(main, 200, workers=2) == sum(range(200))


def test_unjoined_tasks_are_released_per_runtime():
    import threading as th

    other_ready = th.Event()
    finish_other = th.Event()
    seen = {}

    def other_main():
        t = ivy.spawn(lambda: "kept")  # finished but not joined yet...
        ivy.sleep(0.01)
        other_ready.set()
        while not finish_other.is_set():
            ivy.sleep(0.005)
        seen["other"] = t.join()  # ...and still joinable after the other run ended

    runner = th.Thread(target=lambda: ivy.run(other_main))
    runner.start()
    assert other_ready.wait(5)

    def main():
        ivy.spawn(lambda: "leftover")  # never joined: released at the end of run
        return "done"

    assert ivy.run(main) == "done"
    finish_other.set()
    runner.join()
    assert seen == {"other": "kept"}
