"""ivyrt.generator: a sync generator whose body runs on its own stack --
Python's generator protocol (next/send/throw/close, StopIteration.value),
yields from any call depth, blocking bodies that park the iterating task,
cancellation, misuse of yield_, interleaving with other tasks, and many
generators created and dropped half-way."""

import contextvars
import gc
import threading
import traceback

import pytest

import ivyrt

var = contextvars.ContextVar("var", default="unset")


def counter(n):
    def body(yield_):
        for i in range(n):
            yield_(i)
        return "done"

    return body


def test_protocol_outside_a_runtime():
    g = ivyrt.generator(counter(3))
    assert "created" in repr(g)
    assert iter(g) is g
    assert list(g) == [0, 1, 2]
    assert "done" in repr(g)
    with pytest.raises(StopIteration):
        next(g)

    g = ivyrt.generator(counter(1))
    assert next(g) == 0
    with pytest.raises(StopIteration) as stop:
        next(g)
    assert stop.value.value == "done"


def test_send_and_throw():
    def body(yield_):
        total = 0
        while True:
            try:
                got = yield_(total)
            except ValueError as e:
                yield_(f"caught {e}")
                continue
            if got is None:
                return total
            total += got

    def main():
        g = ivyrt.generator(body)
        with pytest.raises(TypeError):
            g.send(5)  # just started: only None
        g = ivyrt.generator(body)
        assert g.send(None) == 0
        assert g.send(5) == 5
        assert g.send(10) == 15
        assert g.throw(ValueError("bad")) == "caught bad"
        assert next(g) == 15
        with pytest.raises(StopIteration) as stop:
            next(g)
        assert stop.value.value == 15
        with pytest.raises(KeyError):
            g.throw(KeyError("after the end"))

    ivyrt.run(main)


def test_yield_from_any_depth():
    def body(yield_):
        def walk(tree):
            if isinstance(tree, list):
                for child in tree:
                    walk(child)
            else:
                yield_(tree)

        walk([1, [2, [3, [4, [5]]]], [[[[6]]]], 7])

    assert list(ivyrt.generator(body)) == [1, 2, 3, 4, 5, 6, 7]


def test_exception_in_body_has_its_traceback():
    def failing_body(yield_):
        yield_(1)
        raise KeyError("from the body")

    g = ivyrt.generator(failing_body)
    assert next(g) == 1
    with pytest.raises(KeyError) as e:
        next(g)
    assert "failing_body" in "".join(traceback.format_exception(e.value))
    with pytest.raises(StopIteration):
        next(g)  # finished


def test_close_and_drop_run_finally_blocks():
    log = []

    def body(yield_):
        try:
            yield_(1)
            yield_(2)
        finally:
            log.append("finally")

    g = ivyrt.generator(body)
    next(g)
    g.close()
    assert log == ["finally"]
    g.close()  # idempotent
    with pytest.raises(StopIteration):
        next(g)

    g = ivyrt.generator(body)
    next(g)
    del g
    gc.collect()
    assert log == ["finally", "finally"]

    g = ivyrt.generator(body)
    g.close()  # never started: the body never runs
    assert log == ["finally", "finally"]
    del g

    def ignores_exit(yield_):
        try:
            yield_(1)
        except GeneratorExit:
            yield_(2)

    g = ivyrt.generator(ignores_exit)
    next(g)
    with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
        g.close()

    def catches_exit(yield_):
        try:
            yield_(1)
        except GeneratorExit:
            log.append("exit seen")

    g = ivyrt.generator(catches_exit)
    next(g)
    g.close()
    assert log[-1] == "exit seen"


def test_misused_yield_raises():
    saved = []

    def stash(yield_):
        saved.append(yield_)
        yield_(1)

    g = ivyrt.generator(stash)
    next(g)
    with pytest.raises(RuntimeError, match="outside"):
        saved[0](2)  # from the iterating code
    list(g)
    with pytest.raises(RuntimeError, match="outside"):
        saved[0](3)  # after the body ended

    def reenter(yield_):
        next(me)

    me = ivyrt.generator(reenter)
    with pytest.raises(ValueError, match="already executing"):
        next(me)

    def nested_outer(yield_):
        inner = ivyrt.generator(lambda y: yield_("from the inner body"))
        next(inner)

    with pytest.raises(RuntimeError, match="outside"):
        next(ivyrt.generator(nested_outer))

    with pytest.raises(TypeError):
        ivyrt.generator(42)
    with pytest.raises(ValueError):
        ivyrt.generator(counter(1), stack_size=1024)


def test_blocking_body_parks_the_iterating_task():
    def main():
        ticks = []
        stop = ivyrt.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(1)
                ivyrt.sleep(0.001)

        t = ivyrt.create_task(ticker)

        def slow(yield_):
            q = ivyrt.Queue()
            for i in range(5):
                ivyrt.sleep(0.01)
                q.put(i)
                yield_(q.get())

        out = list(ivyrt.generator(slow))
        stop.set()
        t.join()
        return out, len(ticks)

    out, ticks = ivyrt.run(main)
    assert out == [0, 1, 2, 3, 4]
    assert ticks >= 5  # the ticker ran while the body slept (~50 expected)


def test_lines_from_a_socket():
    def main():
        def sender(reader, writer):
            for i in range(50):
                writer.write(f"{i}\n".encode())
                ivyrt.sleep(0)
            writer.close()

        with ivyrt.start_server(sender, "127.0.0.1", 0) as server:

            def lines(yield_):
                reader, writer = ivyrt.open_connection("127.0.0.1", server.address[1])
                try:
                    for line in reader:
                        yield_(int(line))
                finally:
                    writer.close()

            return sum(ivyrt.generator(lines))

    assert ivyrt.run(main) == sum(range(50))


def test_cancelling_the_iterating_task_while_the_body_is_parked():
    def main():
        log = []
        started = ivyrt.Event()

        def body(yield_):
            try:
                yield_(1)
                started.set()
                ivyrt.Event().wait()  # parks forever
            except ivyrt.CancelledError:
                log.append("body cancelled")
                ivyrt.sleep(0.001)  # one-shot: may block in cleanup
                raise

        def consumer():
            try:
                for _ in ivyrt.generator(body):
                    pass
            except ivyrt.CancelledError:
                log.append("consumer cancelled")
                raise

        t = ivyrt.create_task(consumer)
        started.wait()
        t.cancel()
        with pytest.raises(ivyrt.CancelledError):
            t.join()
        return log

    assert ivyrt.run(main) == ["body cancelled", "consumer cancelled"]


@pytest.mark.parametrize("workers", [1, 2])
def test_many_tasks_each_iterating_blocking_generators(workers):
    def main():
        def numbers(base):
            def body(yield_):
                for i in range(20):
                    if i % 3 == 0:
                        ivyrt.sleep(0.0005)
                    yield_(base + i)

            return body

        def consume(base):
            return sum(ivyrt.generator(numbers(base)))

        tasks = [ivyrt.create_task(consume, k * 100) for k in range(50)]
        return ivyrt.gather(*tasks)

    for _ in range(3):
        assert ivyrt.run(main, workers=workers) == [k * 100 * 20 + 190 for k in range(50)]


def test_context_is_a_copy_taken_at_the_first_next():
    def main():
        var.set("outer")

        def body(yield_):
            yield_(var.get())
            var.set("inner")
            yield_(var.get())

        g = ivyrt.generator(body)
        assert next(g) == "outer"
        assert next(g) == "inner"
        assert var.get() == "outer"

    ivyrt.run(main)


def test_recursion_in_the_body_is_a_recursion_error():
    def body(yield_):
        def down(n):
            return down(n + 1)

        down(0)

    with pytest.raises(RecursionError):
        next(ivyrt.generator(body))


def test_many_generators_created_and_dropped_half_way():
    closed = [0]

    def body(yield_):
        try:
            for i in range(10):
                yield_(i)
        finally:
            closed[0] += 1

    def main():
        for _ in range(3000):
            g = ivyrt.generator(body, stack_size=64 * 1024)
            assert next(g) == 0 and next(g) == 1
            del g
        return closed[0]

    assert ivyrt.run(main) == 3000


def test_generator_stays_on_its_thread():
    g = ivyrt.generator(counter(3))
    errors = []

    def other():
        try:
            next(g)
        except RuntimeError as e:
            errors.append(str(e))

    th = threading.Thread(target=other)
    th.start()
    th.join()
    assert errors == ["a generator runs only on the thread that created it"]
    assert list(g) == [0, 1, 2]


def test_suspended_generator_freed_on_another_thread_is_leaked_not_run(capfd):
    """A generator made in a task and freed after ``run`` returned (here: kept
    alive past it) cannot be resumed on the main thread: it is leaked, said so."""
    kept = []

    def main():
        g = ivyrt.generator(counter(5))
        assert next(g) == 0
        kept.append(g)
        done = ivyrt.generator(counter(1))
        assert list(done) == [0]
        kept.append(done)

    ivyrt.run(main)
    kept.clear()
    gc.collect()
    err = capfd.readouterr().err
    assert err.count("freed on another thread") == 1
