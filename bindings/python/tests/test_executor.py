"""to_thread and run_in_executor: results, exceptions with tracebacks,
contextvars, other tasks running meanwhile (the GIL is released while the task
parks), concurrency of many calls, and cancellation."""

import concurrent.futures
import contextvars
import threading
import time
import traceback

import pytest

import ivyrt

request_id = contextvars.ContextVar("request_id", default=None)


def test_to_thread_runs_on_another_thread_with_args_and_kwargs():
    def main():
        here = threading.get_ident()

        def work(a, b, *, scale):
            return (a + b) * scale, threading.get_ident()

        value, there = ivyrt.to_thread(work, 1, 2, scale=10)
        return value, here != there

    assert ivyrt.run(main) == (30, True)


def test_to_thread_exception_keeps_its_traceback():
    def failing_in_thread(x):
        raise KeyError(f"missing {x}")

    def main():
        try:
            ivyrt.to_thread(failing_in_thread, "k")
        except KeyError as e:
            return e.args[0], traceback.format_exception(e)

    message, lines = ivyrt.run(main)
    assert message == "missing k"
    assert "failing_in_thread" in "".join(lines)


def test_to_thread_copies_contextvars():
    def main():
        request_id.set("r-42")

        def in_thread():
            seen = request_id.get()
            request_id.set("changed in thread")
            return seen

        assert ivyrt.to_thread(in_thread) == "r-42"
        assert request_id.get() == "r-42"  # the thread changed its copy only

    ivyrt.run(main)


def test_other_tasks_run_while_a_task_waits_in_to_thread():
    def main():
        ticks = [0]
        stop = ivyrt.Event()

        def ticker():
            while not stop.is_set():
                ticks[0] += 1
                ivyrt.sleep(0.001)

        t = ivyrt.create_task(ticker)
        ivyrt.to_thread(time.sleep, 0.2)
        stop.set()
        t.join()
        return ticks[0]

    assert ivyrt.run(main) >= 10


def test_many_to_thread_calls_overlap():
    """8 calls of 0.25 s each from 8 tasks: about 0.25 s in all, not 2 s."""

    def main():
        start = time.monotonic()
        tasks = [ivyrt.create_task(ivyrt.to_thread, time.sleep, 0.25) for _ in range(8)]
        ivyrt.gather(*tasks)
        return time.monotonic() - start

    elapsed = ivyrt.run(main)
    assert elapsed < 1.0, elapsed


def test_cancelling_a_task_in_to_thread_returns_at_once():
    def main():
        finished = threading.Event()
        started = threading.Event()

        def slow():
            started.set()
            time.sleep(1.0)
            finished.set()
            return "late"

        t = ivyrt.create_task(ivyrt.to_thread, slow)
        ivyrt.to_thread(started.wait)
        t0 = time.monotonic()
        t.cancel()
        with pytest.raises(ivyrt.CancelledError):
            t.join()
        assert time.monotonic() - t0 < 0.5
        assert not finished.is_set()  # the call runs on, detached
        ivyrt.to_thread(finished.wait)

    ivyrt.run(main)


def test_to_thread_under_a_timeout_scope():
    def main():
        with pytest.raises(TimeoutError):
            with ivyrt.timeout(0.05):
                ivyrt.to_thread(time.sleep, 0.5)
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_run_in_executor_default_pool_and_concurrent_futures():
    def main():
        assert ivyrt.run_in_executor(None, pow, 2, 10) == 1024
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
            results = ivyrt.gather(*[
                ivyrt.create_task(ivyrt.run_in_executor, ex, pow, i, 2) for i in range(20)
            ])
            assert results == [i * i for i in range(20)]

            def fails():
                raise ValueError("from the executor")

            with pytest.raises(ValueError, match="from the executor"):
                ivyrt.run_in_executor(ex, fails)

    ivyrt.run(main)


def test_cancelled_wait_on_an_executor_future_cancels_it():
    def main():
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
            gate = threading.Event()
            ex.submit(gate.wait)  # occupies the only worker
            ran = []
            started = []

            def waits_on_the_executor():
                started.append(1)
                return ivyrt.run_in_executor(ex, ran.append, 1)

            t = ivyrt.create_task(waits_on_the_executor)
            while not started:
                ivyrt.sleep(0.001)
            t.cancel()
            with pytest.raises(ivyrt.CancelledError):
                t.join()
            gate.set()
        assert ran == []  # cancelled before it could start

    ivyrt.run(main)


def test_workers_run_under_sched_batch_and_to_thread_under_the_callers_policy(monkeypatch):
    """README "Design decisions": the workers run under SCHED_BATCH (a woken
    worker does not preempt the thread on its CPU); the executor's threads keep
    the caller's SCHED_OTHER; IVY_SCHED_BATCH=0 opts out, a bad value is an
    error from run."""
    import os

    def main():
        return os.sched_getscheduler(0), ivyrt.to_thread(os.sched_getscheduler, 0)

    monkeypatch.delenv("IVY_SCHED_BATCH", raising=False)
    assert ivyrt.run(main, workers=2) == (os.SCHED_BATCH, os.SCHED_OTHER)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    monkeypatch.setenv("IVY_SCHED_BATCH", "0")
    assert ivyrt.run(main, workers=2) == (os.SCHED_OTHER, os.SCHED_OTHER)
    monkeypatch.setenv("IVY_SCHED_BATCH", "perhaps")
    with pytest.raises(ivyrt.IvyError, match="IVY_SCHED_BATCH"):
        ivyrt.run(main)
