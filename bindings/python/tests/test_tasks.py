"""Tasks, joins, cancellation and the combinators, through ivyrt's public API."""

import contextvars
import threading
import time

import pytest

import ivyrt


def test_run_returns_result_and_propagates_exceptions():
    assert ivyrt.run(lambda: 42) == 42
    assert ivyrt.run(lambda a, b: a + b, 1, 2) == 3

    def boom():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        ivyrt.run(boom)


def test_run_rejects_bad_arguments_and_nesting():
    with pytest.raises(ValueError):
        ivyrt.run(lambda: 1, workers=0)

    def nested():
        with pytest.raises(RuntimeError, match="running task"):
            ivyrt.run(lambda: 1)
        return "ok"

    assert ivyrt.run(nested) == "ok"


def test_create_task_outside_a_runtime_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="no running"):
        ivyrt.create_task(lambda: 1)
    assert ivyrt.current_task() is None


@pytest.mark.parametrize("workers", [1, 2])
def test_spawn_join_many_exact_sum(workers):
    def main():
        tasks = [ivyrt.create_task(lambda i=i: i * 2) for i in range(2000)]
        return sum(t.join() for t in tasks)

    for _ in range(5):
        assert ivyrt.run(main, workers=workers) == 2 * sum(range(2000))


@pytest.mark.parametrize("workers", [1, 2])
def test_many_tasks_sleep_concurrently(workers):
    # The GIL is released while a task is parked, and each task has its own
    # thread state: 200 tasks sleeping 200 ms overlap instead of queueing.
    def sleeper(i):
        ivyrt.sleep(0.2)
        return i

    def main():
        start = time.monotonic()
        tasks = [ivyrt.create_task(sleeper, i) for i in range(200)]
        results = ivyrt.gather(*tasks)
        return results, time.monotonic() - start

    results, elapsed = ivyrt.run(main, workers=workers)
    assert results == list(range(200))
    assert 0.2 <= elapsed < 0.6 * 3  # serialised sleeps would take 40 s


def test_interleaved_tasks_keep_their_own_frames_and_exceptions():
    # Deep, different call stacks interleaving on one worker, each blocking
    # inside an `except` block: every task's frames and handled exception stay
    # its own (they live in its own thread state).
    def recurse(depth, tag, log):
        if depth == 0:
            try:
                raise KeyError(tag)
            except KeyError:
                ivyrt.sleep(0.001)
                import sys
                log.append((tag, sys.exc_info()[1].args[0]))
            return tag
        return recurse(depth - 1, tag, log)

    def main():
        log = []
        tasks = [ivyrt.create_task(recurse, 20 + i, i, log) for i in range(50)]
        assert [t.join() for t in tasks] == list(range(50))
        return sorted(log)

    for _ in range(5):
        assert ivyrt.run(main) == [(i, i) for i in range(50)]


def test_join_many_times_and_by_many_waiters():
    def main():
        t = ivyrt.create_task(lambda: (ivyrt.sleep(0.02), "v")[1])
        waiters = [ivyrt.create_task(t.join) for _ in range(20)]
        assert ivyrt.gather(t, t) == ["v", "v"]
        assert [w.join() for w in waiters] == ["v"] * 20
        assert t.join() == "v" and t.result() == "v"
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_join_from_a_plain_thread():
    out = []

    def main():
        t = ivyrt.create_task(lambda: (ivyrt.sleep(0.05), 7)[1])
        th = threading.Thread(target=lambda: out.append(t.join()))
        th.start()
        t.join()
        ivyrt.sleep(0.01)
        return th

    th = ivyrt.run(main)
    th.join(5)
    assert out == [7]


def test_task_states_repr_and_names():
    def main():
        gate = []
        t = ivyrt.create_task(lambda: (ivyrt.sleep(0.05), 1)[1], name="w1")
        assert repr(t) == "<Task name='w1' state=pending>"
        assert not t.done()
        with pytest.raises(ivyrt.InvalidStateError):
            t.result()
        with pytest.raises(ivyrt.InvalidStateError):
            t.exception()
        ivyrt.sleep(0.01)
        assert repr(t) == "<Task name='w1' state=running>"
        t.join()
        assert repr(t) == "<Task name='w1' state=done>"
        f = ivyrt.create_task(lambda: 1 / 0, name="f")
        with pytest.raises(ZeroDivisionError):
            f.join()
        assert repr(f) == "<Task name='f' state=failed>"
        assert isinstance(f.exception(), ZeroDivisionError)
        c = ivyrt.create_task(ivyrt.sleep, 10)
        ivyrt.sleep(0)
        assert c.cancel()
        with pytest.raises(ivyrt.CancelledError):
            c.join()
        assert c.cancelled() and repr(c).endswith("state=cancelled>")
        assert not c.cancel()  # done: nothing to cancel
        anon = ivyrt.create_task(lambda: None)
        assert anon.get_name().startswith("Task-")
        anon.set_name("renamed")
        assert anon.name == "renamed" and "renamed" in repr(anon)
        anon.name = 42  # names are str(name), as asyncio's
        assert anon.get_name() == "42"
        assert ivyrt.create_task(lambda: None, name=7).get_name() == "7"
        anon.join()
        assert ivyrt.current_task().get_name() == "main"
        return gate

    ivyrt.run(main)


def test_current_task_and_all_tasks():
    def child(box):
        box.append(ivyrt.current_task())
        ivyrt.sleep(0.05)

    def main():
        me = ivyrt.current_task()
        box = []
        ts = [ivyrt.create_task(child, box) for _ in range(5)]
        ivyrt.sleep(0.01)
        assert box == ts  # FIFO start, and current_task() is the Task
        assert ivyrt.all_tasks() == {me, *ts}
        ivyrt.gather(*ts)
        assert ivyrt.all_tasks() == {me}
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_exceptions_reach_every_joiner_with_traceback():
    def inner():
        raise ValueError("deep")

    def failing():
        inner()

    def main():
        t = ivyrt.create_task(failing)
        for _ in range(2):
            with pytest.raises(ValueError, match="deep") as e:
                t.join()
            names = [f.name for f in e.traceback]
            assert "failing" in names and "inner" in names
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_cancel_sleeping_task_runs_finally_and_cleanup_can_block():
    log = []

    def sleeper():
        try:
            ivyrt.sleep(3600)
        finally:
            log.append("finally")
            ivyrt.sleep(0.01)  # one-shot: cleanup may block
            log.append("slept in finally")

    def main():
        t = ivyrt.create_task(sleeper)
        ivyrt.sleep(0.01)
        assert t.cancel("stop")
        with pytest.raises(ivyrt.CancelledError) as e:
            t.join(timeout=5)
        assert e.value.args == ("stop",)
        assert t.cancelled() and t.done()
        return log

    for _ in range(20):
        log.clear()
        assert ivyrt.run(main) == ["finally", "slept in finally"]


def test_cancelled_error_is_a_base_exception():
    assert issubclass(ivyrt.CancelledError, BaseException)
    assert not issubclass(ivyrt.CancelledError, Exception)

    def swallow_all():
        try:
            ivyrt.sleep(3600)
        except Exception:  # must not catch a cancellation
            return "swallowed"

    def main():
        t = ivyrt.create_task(swallow_all)
        ivyrt.sleep(0.01)
        t.cancel()
        with pytest.raises(ivyrt.CancelledError):
            t.join()

    ivyrt.run(main)


def test_handled_cancellation_returns_and_a_second_cancel_is_delivered_again():
    def stubborn():
        caught = 0
        for _ in range(2):
            try:
                ivyrt.sleep(3600)
            except ivyrt.CancelledError:
                caught += 1
        return caught

    def main():
        t = ivyrt.create_task(stubborn)
        ivyrt.sleep(0.01)
        t.cancel()
        ivyrt.sleep(0.01)
        assert t.cancelling() == 1
        t.cancel()
        return t.join()

    assert ivyrt.run(main) == 2


def test_cancel_before_start():
    ran = []

    def main():
        t = ivyrt.create_task(lambda: ran.append(1))
        assert t.cancel()  # one worker, no blocking call since: not started
        with pytest.raises(ivyrt.CancelledError):
            t.join()
        assert t.cancelled()

    for _ in range(20):
        ivyrt.run(main)
    assert ran == []


def test_uncancel_withdraws_an_undelivered_cancellation():
    def main():
        me = ivyrt.current_task()
        me.cancel()
        assert me.cancelling() == 1
        assert me.uncancel() == 0
        ivyrt.sleep(0.001)  # not cancelled any more
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_join_timeout_then_join():
    def main():
        t = ivyrt.create_task(lambda: (ivyrt.sleep(0.2), "late")[1])
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            t.join(timeout=0.02)
        assert time.monotonic() - start >= 0.02
        with pytest.raises(TimeoutError):
            t.join(timeout=0)
        return t.join()

    assert ivyrt.run(main) == "late"


def test_a_task_cannot_join_itself():
    def main():
        with pytest.raises(RuntimeError):
            ivyrt.current_task().join()
        return "ok"

    assert ivyrt.run(main) == "ok"


@pytest.mark.parametrize("workers", [1, 2])
def test_every_task_is_refused_joining_itself_and_joins_others(workers):
    """The self-join check compares ivy task ids: it must hold for a task that
    starts at once on the other worker (its id is stored before it can run
    Python), and must not mistake another task, finished or not, for itself."""

    def link(prev):
        try:
            ivyrt.current_task().join(timeout=5)
        except RuntimeError:
            refused = 1
        else:
            refused = 0
        return refused + (prev.join() if prev is not None else 0)

    def main():
        prev, tasks = None, []
        for _ in range(300):
            prev = ivyrt.create_task(link, prev)
            tasks.append(prev)
        return tasks[-1].join(), [t.join() for t in tasks]

    for _ in range(3):
        last, each = ivyrt.run(main, workers=workers)
        assert last == 300
        assert each == list(range(1, 301))


def test_sleep_result_and_yield():
    def main():
        assert ivyrt.sleep(0.001, result="r") == "r"
        order = []

        def spinner(tag):
            ivyrt.sleep(0.01)  # both started: yields alternate them
            for _ in range(3):
                order.append(tag)
                ivyrt.yield_now()

        a, b = ivyrt.create_task(spinner, "a"), ivyrt.create_task(spinner, "b")
        ivyrt.gather(a, b)
        assert order == ["a", "b"] * 3
        ivyrt.sleep(-1)  # as asyncio: a negative delay is 0
        return "ok"

    assert ivyrt.run(main) == "ok"
    assert ivyrt.sleep(0.001, "x") == "x"  # a plain thread sleeps too


def test_done_callbacks():
    def main():
        seen = []
        t = ivyrt.create_task(lambda: 5)
        t.add_done_callback(lambda task: seen.append(("cb", task.result())))
        t.add_done_callback(seen.append)
        assert t.remove_done_callback(seen.append) == 1
        t.join()
        t.add_done_callback(lambda task: seen.append("late"))
        return seen

    assert ivyrt.run(main) == [("cb", 5), "late"]


def test_python_code_run_by_a_task_method_may_call_back_into_that_task(run_script):
    # Regression: three Task methods held their lock on a field while they ran
    # Python code (an ``__eq__``, a ``__repr__``, a ``__del__``); that code
    # calling back into the same task deadlocked. In a child process, so that
    # a deadlock fails the test instead of hanging the suite.
    r = run_script(
        """
        import ivyrt

        def main():
            t = ivyrt.create_task(ivyrt.sleep, 0.05)
            seen = []

            class Eq:
                def __eq__(self, other):
                    # Runs inside remove_done_callback's comparisons.
                    t.add_done_callback(lambda task: seen.append("added in __eq__"))
                    return other is self

                __hash__ = object.__hash__

            probe = Eq()
            t.add_done_callback(probe)
            t.add_done_callback(lambda task: seen.append("kept"))
            assert t.remove_done_callback(probe) == 1

            class Name(str):
                def __repr__(self):
                    # Runs inside repr(t), which used to hold the name's lock.
                    return "<" + str(t.get_name()) + ">"

            class Named:
                def __str__(self):
                    return Name("worker")

            t.set_name(Named())
            assert repr(t).startswith("<Task name=<worker> state="), repr(t)

            class Msg:
                def __del__(self):
                    # Runs when cancel() replaces this message with the next.
                    seen.append(("del", t.cancel("third")))

            assert t.cancel(Msg())
            assert t.cancel("second")
            try:
                t.join()
            except ivyrt.CancelledError as e:
                seen.append(("cancelled", e.args))
            return seen

        out = ivyrt.run(main)
        # Callbacks run in order: the kept one, then one per __eq__ call (the
        # comparisons of both registered callbacks reach Eq.__eq__).
        assert out == [("del", True), "kept", "added in __eq__", "added in __eq__",
                       ("cancelled", ("third",))], out
        print("ok")
        """,
        timeout=30,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr)


def test_one_task_shared_by_tasks_on_two_workers_and_plain_threads_under_gc():
    # A Task's Python references are guarded by the GIL, not by locks of their
    # own (gil_cell.rs). Try to break that: tasks on both workers and two plain
    # threads call every method that reads or writes them, on one task, with
    # the GIL switching as often as CPython allows and full collections
    # (which traverse the task) in between; every callback registered and not
    # removed must run exactly once when the task ends.
    import gc
    import sys

    rounds, actors = 300, 6
    calls = []

    def hammer(t, who):
        kept = 0
        for i in range(rounds):
            t.set_name(f"{who}:{i}")
            assert t.get_name().count(":") == 1
            assert repr(t).startswith("<Task name=")
            assert not t.done() and not t.cancelled()

            def cb(task, who=who, i=i):
                calls.append((who, i))

            t.add_done_callback(cb)
            if i % 3:
                assert t.remove_done_callback(cb) == 1
            else:
                kept += 1
            if i % 50 == 0:
                gc.collect()
            if isinstance(who, int):
                ivyrt.yield_now()
        return kept

    def main():
        ev = ivyrt.Event()
        t = ivyrt.create_task(ev.wait)
        ivyrt.yield_now()
        kept = []
        threads = [threading.Thread(target=lambda w=w: kept.append(hammer(t, w)))
                   for w in ("thread-a", "thread-b")]
        for th in threads:
            th.start()
        tasks = [ivyrt.create_task(hammer, t, w) for w in range(actors - len(threads))]
        kept += [x.join() for x in tasks]
        for th in threads:
            th.join()
        ev.set()
        t.join()
        return sum(kept)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        expected = ivyrt.run(main, workers=2)
    finally:
        sys.setswitchinterval(old)
    assert expected == actors * len(range(0, rounds, 3))
    assert len(calls) == expected and len(set(calls)) == expected


def test_contextvars_are_copied_at_spawn():
    var = contextvars.ContextVar("var", default="unset")

    def child():
        before = var.get()
        var.set("child")
        ivyrt.sleep(0.001)
        return before, var.get()

    def main():
        var.set("parent")
        ts = [ivyrt.create_task(child) for _ in range(10)]
        var.set("parent-later")
        assert ivyrt.gather(*ts) == [("parent", "child")] * 10
        return var.get()

    assert ivyrt.run(main) == "parent-later"


# ---------------------------------------------------------------- combinators

def _sleeper(s, value=None):
    ivyrt.sleep(s)
    return s if value is None else value


def test_gather_results_in_order_and_callables():
    def main():
        ts = [ivyrt.create_task(_sleeper, s) for s in (0.05, 0.01, 0.03)]
        assert ivyrt.gather(*ts) == [0.05, 0.01, 0.03]
        assert ivyrt.gather(lambda: 1, lambda: 2) == [1, 2]
        assert ivyrt.gather() == []
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_gather_fails_fast_and_leaves_the_rest_running():
    def main():
        slow = [ivyrt.create_task(_sleeper, 0.3, i) for i in range(3)]
        bad = ivyrt.create_task(lambda: (ivyrt.sleep(0.01), 1 / 0))
        start = time.monotonic()
        with pytest.raises(ZeroDivisionError):
            ivyrt.gather(*slow, bad)
        assert time.monotonic() - start < 0.25  # did not wait for the slow ones
        assert not any(t.done() for t in slow)
        return [t.join() for t in slow]  # not cancelled

    assert ivyrt.run(main) == [0, 1, 2]


def test_gather_return_exceptions():
    def main():
        c = ivyrt.create_task(ivyrt.sleep, 10)
        ivyrt.sleep(0)
        c.cancel()
        r = ivyrt.gather(lambda: 1, lambda: 1 / 0, c, return_exceptions=True)
        assert r[0] == 1
        assert isinstance(r[1], ZeroDivisionError)
        assert isinstance(r[2], ivyrt.CancelledError)
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_cancelling_gather_cancels_its_children():
    cancelled = []

    def child():
        try:
            ivyrt.sleep(10)
        except ivyrt.CancelledError:
            cancelled.append(1)
            raise

    def main():
        g = ivyrt.create_task(ivyrt.gather, *[child for _ in range(3)])
        ivyrt.sleep(0.01)
        g.cancel()
        with pytest.raises(ivyrt.CancelledError):
            g.join()
        ivyrt.sleep(0.01)
        return len(cancelled)

    assert ivyrt.run(main) == 3


def test_wait_for():
    def main():
        assert ivyrt.wait_for(lambda: _sleeper(0.01, "fast"), 1) == "fast"
        cleaned = []

        def slow():
            try:
                ivyrt.sleep(10)
            finally:
                cleaned.append(1)

        t = ivyrt.create_task(slow)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            ivyrt.wait_for(t, 0.05)
        assert time.monotonic() - start < 0.05 * 3 + 0.5
        assert t.cancelled() and cleaned == [1]  # cancelled and awaited

        def own_timeout():
            raise TimeoutError("mine")

        with pytest.raises(TimeoutError, match="mine"):
            ivyrt.wait_for(own_timeout, 1)
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_timeout_scope():
    def main():
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            with ivyrt.timeout(0.05) as cm:
                ivyrt.sleep(10)
        assert cm.expired()
        assert time.monotonic() - start < 0.05 * 3 + 0.5
        with ivyrt.timeout(1) as cm:
            ivyrt.sleep(0.01)
        assert not cm.expired()
        ivyrt.sleep(0.01)  # no stray cancellation left behind
        with pytest.raises(TimeoutError):
            with ivyrt.timeout(10) as cm:
                cm.reschedule(time.monotonic() + 0.02)
                ivyrt.sleep(10)
        with ivyrt.timeout(None) as cm:
            assert cm.when() is None
            ivyrt.sleep(0.01)
        with pytest.raises(TimeoutError):
            with ivyrt.timeout_at(time.monotonic() + 0.02):
                try:
                    ivyrt.sleep(10)
                except Exception:  # the cancellation is not an Exception
                    pytest.fail("timeout delivered as an Exception")
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_timeout_scope_does_not_swallow_an_outer_cancel():
    def inner():
        with ivyrt.timeout(10):
            ivyrt.sleep(10)

    def main():
        t = ivyrt.create_task(inner)
        ivyrt.sleep(0.01)
        t.cancel()
        with pytest.raises(ivyrt.CancelledError):
            t.join()
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_as_completed_yields_in_completion_order():
    def main():
        ts = [ivyrt.create_task(_sleeper, s) for s in (0.06, 0.02, 0.04)]
        order = [t.result() for t in ivyrt.as_completed(ts)]
        assert order == [0.02, 0.04, 0.06]
        slow = ivyrt.create_task(_sleeper, 1)
        it = ivyrt.as_completed([slow], timeout=0.02)
        with pytest.raises(TimeoutError):
            next(it)
        slow.cancel()
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_wait_modes():
    def main():
        fast = ivyrt.create_task(_sleeper, 0.01)
        slow = ivyrt.create_task(_sleeper, 0.3)
        done, pending = ivyrt.wait([fast, slow], return_when=ivyrt.FIRST_COMPLETED)
        assert done == {fast} and pending == {slow}
        done, pending = ivyrt.wait([slow], timeout=0.01)
        assert done == set() and pending == {slow}
        bad = ivyrt.create_task(lambda: (ivyrt.sleep(0.01), 1 / 0))
        done, pending = ivyrt.wait([bad, slow], return_when=ivyrt.FIRST_EXCEPTION)
        assert done == {bad} and pending == {slow}
        done, pending = ivyrt.wait([fast, slow])
        assert done == {fast, slow} and pending == set()
        with pytest.raises(ValueError):
            ivyrt.wait([])
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_shield_protects_the_inner_task():
    def main():
        inner = ivyrt.create_task(_sleeper, 0.05, "inner done")
        outer = ivyrt.create_task(ivyrt.shield, inner)
        ivyrt.sleep(0.01)
        outer.cancel()
        with pytest.raises(ivyrt.CancelledError):
            outer.join()
        return inner.join()

    assert ivyrt.run(main) == "inner done"


def test_task_group_waits_for_children():
    def main():
        with ivyrt.TaskGroup() as tg:
            ts = [tg.create_task(_sleeper, 0.01 * i, i) for i in range(5)]
        return [t.result() for t in ts]

    assert ivyrt.run(main) == [0, 1, 2, 3, 4]


def test_task_group_failure_cancels_the_rest_and_raises_a_group():
    cancelled = []

    def slow():
        try:
            ivyrt.sleep(10)
        except ivyrt.CancelledError:
            cancelled.append(1)
            raise

    def main():
        start = time.monotonic()
        with pytest.raises(ExceptionGroup) as eg:
            with ivyrt.TaskGroup() as tg:
                for _ in range(3):
                    tg.create_task(slow)
                tg.create_task(lambda: (ivyrt.sleep(0.01), 1 / 0))
                ivyrt.sleep(10)  # the body is cancelled too
        assert time.monotonic() - start < 2
        assert [type(e) for e in eg.value.exceptions] == [ZeroDivisionError]
        return len(cancelled)

    assert ivyrt.run(main) == 3


def test_task_group_body_error_cancels_children():
    def main():
        child = None
        with pytest.raises(ExceptionGroup) as eg:
            with ivyrt.TaskGroup() as tg:
                child = tg.create_task(ivyrt.sleep, 10)
                raise KeyError("body")
        assert child.cancelled()
        assert [type(e) for e in eg.value.exceptions] == [KeyError]
        return "ok"

    assert ivyrt.run(main) == "ok"


def test_star_import_does_not_shadow_builtins():
    ns = {}
    exec("from ivyrt import *", ns)
    import builtins
    shadowed = [name for name in ns if name != "__builtins__" and hasattr(builtins, name)]
    assert shadowed == []
    assert "TimeoutError" not in ivyrt.__all__
    for name in ivyrt.__all__:
        assert getattr(ivyrt, name).__doc__ or name == "__version__", name


def test_gather_propagates_a_cancelled_child_without_cancelling_the_others():
    def main():
        c = ivyrt.create_task(ivyrt.sleep, 10)
        other = ivyrt.create_task(_sleeper, 0.05, "other")
        ivyrt.sleep(0.01)
        c.cancel()
        with pytest.raises(ivyrt.CancelledError):
            ivyrt.gather(c, other)
        return other.join()

    assert ivyrt.run(main) == "other"


def test_cancel_before_start_runs_done_callbacks_and_keeps_the_message():
    def main():
        seen = []
        t = ivyrt.create_task(seen.append, "ran")
        t.add_done_callback(lambda task: seen.append(task.cancelled()))
        t.cancel("early")
        with pytest.raises(ivyrt.CancelledError) as e:
            t.join()
        assert e.value.args == ("early",)
        return seen

    for workers in (1, 2):
        assert ivyrt.run(main, workers=workers) == [True]


def test_sleep_rejects_nan():
    def main():
        with pytest.raises(ValueError):
            ivyrt.sleep(float("nan"))
        return "ok"

    assert ivyrt.run(main) == "ok"


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_storm_exact_outcomes(workers):
    # Cancellations racing with starts, wake-ups and ends, on 1 and 2
    # workers: every task ends exactly once, returned or cancelled, and every
    # started one ran its finally.
    import random

    def worker(i, log):
        log.append(("start", i))
        try:
            for _ in range(3):
                ivyrt.sleep(random.random() * 0.002)
            return i
        finally:
            log.append(("finally", i))

    def main(seed):
        rnd = random.Random(seed)
        log = []
        ts = [ivyrt.create_task(worker, i, log) for i in range(200)]
        for t in rnd.sample(ts, 100):
            if rnd.random() < 0.5:
                ivyrt.sleep(0)
            t.cancel()
        outcomes = ivyrt.gather(*ts, return_exceptions=True)
        returned = [o for o in outcomes if isinstance(o, int)]
        cancelled = [o for o in outcomes if isinstance(o, ivyrt.CancelledError)]
        assert len(returned) + len(cancelled) == 200
        assert returned == sorted(returned)
        assert all(t.cancelled() == isinstance(o, ivyrt.CancelledError)
                   for t, o in zip(ts, outcomes))
        starts = sorted(i for what, i in log if what == "start")
        finals = sorted(i for what, i in log if what == "finally")
        assert starts == finals and len(set(starts)) == len(starts)
        assert len(returned) >= 100  # at most the 100 cancelled ones fail
        return len(cancelled)

    for seed in range(10):
        n = ivyrt.run(main, seed, workers=workers)
        assert 0 < n <= 100
