"""What a task's Python state must keep across its parks.

On CPython 3.11 every task of a worker runs on the worker's one thread state
and only its frame-stack fields are swapped in and out at each park
(src/swap.rs, src/pystate.c): the exception being handled, the recursion
depth, the frame chain and data stack, the contextvars context. Each test runs
many tasks that park at their most delicate point, interleaved with each other
(one worker and two), and checks each task's own view exactly.
"""

import contextvars
import sys
import traceback

import pytest

import ivyrt

TASKS = 200
WORKERS = [1, 2]


def pause(i, k=0):
    """A park: alternately a short sleep and a yield, so that tasks resume in
    an order other than they parked in."""
    if (i + k) % 3 == 0:
        ivyrt.yield_now()
    else:
        ivyrt.sleep(((i * 7 + k * 3) % 5) / 1000)


@pytest.mark.parametrize("workers", WORKERS)
def test_exception_being_handled_survives_parks(workers):
    def task(i):
        try:
            raise ValueError(i)
        except ValueError as outer:
            pause(i)
            assert sys.exc_info()[1] is outer
            try:
                raise KeyError(i)
            except KeyError as inner:
                pause(i, 1)
                assert sys.exc_info()[1] is inner
                assert inner.__context__ is outer
            pause(i, 2)
            assert sys.exc_info()[1] is outer
            try:
                raise  # re-raises the exception being handled: this task's own
            except ValueError as again:
                assert again is outer and again.args == (i,)
        pause(i, 3)
        assert sys.exc_info() == (None, None, None)
        return i

    def main():
        tasks = [ivyrt.create_task(task, i) for i in range(TASKS)]
        return [t.join() for t in tasks]

    assert ivyrt.run(main, workers=workers) == list(range(TASKS))


@pytest.mark.parametrize("workers", WORKERS)
def test_traceback_of_an_exception_raised_after_parks(workers):
    def inner(i):
        pause(i)
        raise RuntimeError(f"task {i}")

    def outer(i):
        pause(i, 1)
        inner(i)

    def task(i):
        try:
            outer(i)
        except RuntimeError as e:
            names = [f.name for f in traceback.extract_tb(e.__traceback__)]
            return names, str(e)

    def main():
        tasks = [ivyrt.create_task(task, i) for i in range(TASKS)]
        return [t.join() for t in tasks]

    for i, (names, msg) in enumerate(ivyrt.run(main, workers=workers)):
        assert names == ["task", "outer", "inner"]
        assert msg == f"task {i}"


@pytest.mark.parametrize("workers", WORKERS)
def test_recursion_depth_and_frame_chain_survive_parks(workers):
    def room():
        """How many more Python calls fit before RecursionError."""
        def down(n):
            try:
                return down(n + 1)
            except RecursionError:
                return n
        return down(0)

    def stack_depth():
        return len(traceback.extract_stack())

    def descend(i, depth):
        if depth > 0:
            return descend(i, depth - 1)
        before = (stack_depth(), room())
        pause(i)
        mid = stack_depth()
        pause(i, 1)
        return before, (mid, room())

    def task(i):
        return descend(i, 20 + (i * 37) % 300)

    def main():
        tasks = [ivyrt.create_task(task, i) for i in range(TASKS)]
        return [t.join() for t in tasks]

    results = ivyrt.run(main, workers=workers)
    totals = set()
    for i, ((depth_before, room_before), (depth_after, room_after)) in enumerate(results):
        assert depth_before == depth_after, i
        assert room_before == room_after, i
        totals.add(depth_before + room_before)
    # Every task sees the same limit, whatever depth the others parked at.
    assert len(totals) == 1, totals


@pytest.mark.parametrize("workers", WORKERS)
def test_task_parked_mid_generator(workers):
    def numbers(i):
        try:
            for k in range(5):
                pause(i, k)  # parks inside the generator's frame
                yield i * 10 + k
        finally:
            pause(i, 9)  # and in its finally, on close()

    def task(i):
        got = []
        gen = numbers(i)
        for v in gen:
            got.append(v)
            if len(got) == 3 and i % 2:
                gen.close()
                break
        pause(i, 5)
        return got

    def main():
        tasks = [ivyrt.create_task(task, i) for i in range(TASKS)]
        return [t.join() for t in tasks]

    for i, got in enumerate(ivyrt.run(main, workers=workers)):
        n = 3 if i % 2 else 5
        assert got == [i * 10 + k for k in range(n)]


@pytest.mark.parametrize("workers", WORKERS)
def test_contextvars_survive_parks(workers):
    var = contextvars.ContextVar("var", default=None)

    def task(i):
        assert var.get() == "main"  # copied at spawn
        var.set(i)
        pause(i)
        assert var.get() == i
        ctx = contextvars.copy_context()

        def nested():
            var.set(-i)
            pause(i, 1)
            return var.get()

        assert ctx.run(nested) == -i
        pause(i, 2)
        return var.get()

    def main():
        var.set("main")
        tasks = [ivyrt.create_task(task, i) for i in range(TASKS)]
        got = [t.join() for t in tasks]
        return got, var.get()

    got, main_value = ivyrt.run(main, workers=workers)
    assert got == list(range(TASKS))
    assert main_value == "main"


def test_many_short_tasks_leave_the_worker_state_clean():
    """Thousands of tasks started and finished on one worker, each parking
    once with an exception being handled and a context value set: after all
    of them the main task's own state is intact."""
    var = contextvars.ContextVar("var")

    def task(i):
        var.set(i)
        try:
            raise ValueError(i)
        except ValueError:
            ivyrt.yield_now()
        return var.get()

    def main():
        var.set("main")
        try:
            raise KeyError("main")
        except KeyError as mine:
            total = 0
            for _ in range(5):
                tasks = [ivyrt.create_task(task, i) for i in range(2000)]
                total += sum(t.join() for t in tasks)
            assert sys.exc_info()[1] is mine
        return total, var.get(), sys.exc_info()

    assert ivyrt.run(main) == (5 * sum(range(2000)), "main", (None, None, None))


@pytest.mark.parametrize("workers", WORKERS)
def test_c_callback_that_parks_runs_on_its_own_task(workers):
    """ctypes releases the GIL around qsort, whose comparison callback enters
    Python again (PyGILState_Ensure: the worker's state, with the calling
    task's Python state loaded) and parks in it. Each callback must see its
    own task's frames beneath it, across its parks, and the sorts must agree."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    cmp_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                ctypes.POINTER(ctypes.c_int))
    wrong = []

    def callers_seed():
        f = sys._getframe(2)
        while f is not None and f.f_code is not sorter.__code__:
            f = f.f_back
        return None if f is None else f.f_locals["seed"]

    def sorter(seed):
        calls = [0]

        def cmp(a, b):
            calls[0] += 1
            if calls[0] % 7 == 0:
                pause(seed, calls[0])
            if callers_seed() != seed:
                wrong.append(seed)
            return a[0] - b[0]

        cb = cmp_type(cmp)
        values = [(seed * 7919 + i * 104729) % 1000 for i in range(40)]
        arr = (ctypes.c_int * 40)(*values)
        libc.qsort(arr, 40, ctypes.sizeof(ctypes.c_int), cb)
        return list(arr) == sorted(values)

    def main():
        return ivyrt.gather(*[ivyrt.create_task(sorter, s) for s in range(40)])

    assert ivyrt.run(main, workers=workers) == [True] * 40
    assert wrong == []


@pytest.mark.parametrize("stack_size", [128 * 1024, 8 << 20])
def test_small_and_large_task_stacks_keep_their_frames(stack_size):
    """Tasks with small stacks keep their data stack's root chunk in the heap,
    the others on their own stack: both survive interleaved parks, also with
    frames deeper than one root chunk (16 KiB)."""
    def deep(i, n):
        if n:
            return deep(i, n - 1) + 1
        pause(i)
        return 0

    def task(i):
        try:
            raise ValueError(i)
        except ValueError as mine:
            got = deep(i, 5 + (i % 3) * 100)  # up to ~205 frames: past 16 KiB of data stack
            assert sys.exc_info()[1] is mine
        return got

    def main():
        tasks = [ivyrt.create_task(task, i, stack_size=stack_size) for i in range(60)]
        return [t.join() for t in tasks]

    assert ivyrt.run(main) == [5 + (i % 3) * 100 for i in range(60)]
