"""The hook from Python: with libivy_hook.so preloaded, the standard `socket`
and `time` modules cooperate inside the tasks of the Python package `ivyrt`
(bindings/python, which embeds its own copy of ivy; it attaches to the
preloaded hook when its runtime starts).

Run by tests/hook/run.sh as
    LD_PRELOAD=target/release/libivy_hook.so target/pyvenv/bin/python tests/hook/python_socket.py
with the interpreter of the venv bindings/python/run-tests.sh installs ivyrt into.
On ONE worker, an echo server task and 50 client tasks talk over loopback
through plain `socket` calls: without the hook the first blocking `accept` or
`recv` would hold the only worker and the program would hang (the script's own
alarm then fails it). 50 tasks each `time.sleep(0.1)` take about 0.1 s, not 5 s.
"""

import contextvars
import ctypes
import errno
import signal
import socket
import sys
import time
import traceback

import ivyrt

CLIENTS = 50


def check_hook_loaded() -> None:
    try:
        ctypes.CDLL(None).ivy_hook_version
    except AttributeError:
        sys.exit("FAIL: libivy_hook.so is not preloaded")


def echo_server(listener: socket.socket) -> int:
    """Accepts CLIENTS connections, one task each, echoing until EOF."""
    handlers = []

    def handle(conn: socket.socket) -> int:
        n = 0
        with conn:
            while True:
                data = conn.recv(64)
                if not data:
                    return n
                conn.sendall(data)
                n += 1

    for _ in range(CLIENTS):
        conn, _ = listener.accept()
        handlers.append(ivyrt.create_task(handle, conn))
    return sum(h.join() for h in handlers)


def client(port: int, i: int) -> bool:
    with socket.create_connection(("127.0.0.1", port)) as s:
        ok = True
        for r in range(5):
            msg = f"{i}:{r}".encode()
            s.sendall(msg)
            back = b""
            while len(back) < len(msg):
                chunk = s.recv(64)
                if not chunk:
                    return False
                back += chunk
            ok = ok and back == msg
        return ok


def main() -> int:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    server = ivyrt.create_task(echo_server, listener)
    clients = [ivyrt.create_task(client, port, i) for i in range(CLIENTS)]
    results = [c.join() for c in clients]
    echoed = server.join()
    listener.close()
    assert all(results), results
    assert echoed == CLIENTS * 5, echoed

    t0 = time.monotonic()
    sleepers = [ivyrt.create_task(time.sleep, 0.1) for _ in range(CLIENTS)]
    for s in sleepers:
        s.join()
    took = time.monotonic() - t0
    assert 0.1 <= took < 1.5, f"50 sleeps of 0.1 s took {took:.2f} s"
    return echoed


def hooked_park_beside_ivyrt_parks() -> list:
    """Regression: a task parked in a hooked call while another resumes from
    one of ivyrt's own parks and ends. PyO3 keeps a per-thread attach count
    that ivyrt saves around its own parks; a hooked park happens behind its
    back, so the count of the hooked task was lost, went to -1 when it ended,
    and the next task to start made PyO3 abort the process ("Attaching a
    thread to the interpreter is prohibited while a __traverse__
    implementation is running"). ivyrt now parks hooked calls inside its
    `hook_park_guard`. Repeated, with the child tasks that start right after."""
    out = []
    stop = []

    def spin():
        # Holds the GIL most of the time (pure Python work), on whichever
        # worker it lands: with two workers, the process's GIL holder is then
        # often another thread's state when a hooked park starts, which the
        # guard once took for its own and detached (a fatal CPython error).
        n = 0
        while not stop:
            n += sum(range(200))
            if n % 50 == 0:
                ivyrt.yield_now()
        return n

    spinner = ivyrt.create_task(spin)
    for _ in range(40):
        a, b = socket.socketpair()

        def writer():
            ivyrt.sleep(0.005)  # ivyrt's own park (detach)
            b.send(b"x")

        def reader():
            data = a.recv(10)  # the hook's park, inside CPython's GIL release
            ivyrt.sleep(0.001)
            # started right after this task ends: the first to find the count
            kids = [ivyrt.create_task(out.append, i) for i in range(3)]
            return data, kids

        w = ivyrt.create_task(writer)
        r = ivyrt.create_task(reader)
        ivyrt.sleep(0.05)  # usually the children start before this task resumes
        w.join()
        data, kids = r.join()
        assert data == b"x"
        for k in kids:
            k.join()
        a.close()
        b.close()
    stop.append(True)
    spinner.join()
    # every child ran (their order across two workers is not promised)
    assert sorted(out) == sorted([0, 1, 2] * 40), out
    return out


def state_kept_across_hooked_parks() -> int:
    """Each task parks in hooked calls (time.sleep, socket recv: inside
    CPython's own GIL release) while handling an exception, with a context
    variable set and at its own recursion depth; on CPython 3.11 its Python
    state is swapped out of the worker's one thread state at those parks too
    (ivyrt's hook_park_guard), so each must find its own afterwards."""
    var = contextvars.ContextVar("var")

    def depth() -> int:
        return len(traceback.extract_stack())

    def task(i: int, levels: int) -> int:
        if levels:
            return task(i, levels - 1)
        var.set(i)
        a, b = socket.socketpair()
        try:
            raise ValueError(i)
        except ValueError as mine:
            d = depth()
            time.sleep(0.001 * (i % 4))  # hooked park
            b.send(b"y")
            assert a.recv(1) == b"y"  # may park, hooked
            assert sys.exc_info()[1] is mine, (i, sys.exc_info())
            assert var.get() == i
            assert depth() == d
        finally:
            a.close()
            b.close()
        assert sys.exc_info() == (None, None, None)
        return i

    tasks = [ivyrt.create_task(task, i, (i * 13) % 40) for i in range(60)]
    got = [t.join() for t in tasks]
    assert got == list(range(60)), got
    return len(got)


def never_waiting_reader_lets_others_run() -> int:
    """The hook's fairness budget from Python: a task reading a socketpair the
    peer filled beforehand (every `recv` succeeds at once, none parks) still
    lets the other tasks of its worker run, every 128 calls: the yield goes
    through ivyrt's hook_park_guard (the GIL and the task's Python state).
    Before the hook charged such calls, the ticker ran only once the reader
    had drained all 8192 bytes."""
    a, b = socket.socketpair()
    filled = 8192
    b.sendall(b"z" * filled)
    ticked = []
    seen = []

    def reader() -> int:
        ivyrt.create_task(ticked.append, 1)  # runs when the reader suspends
        n = 0
        while n < filled:
            assert len(a.recv(1)) == 1
            n += 1
            if ticked and not seen:
                seen.append(n)
        return n

    assert ivyrt.create_task(reader).join() == filled
    a.close()
    b.close()
    assert seen and seen[0] <= 1024, seen
    return seen[0]


def cancellation_through_hooked_calls() -> int:
    """A task cancelled inside a hooked call: CPython raises the call's
    OSError(ECANCELED) (it cannot raise CancelledError from C), and that is the
    cancellation's one delivery, as asyncio's: the task's finally block may
    block in hooked calls again, the task ends cancelled (CancelledError, with
    cancel()'s message, caused by the OSError), a timeout() scope around a
    hooked call raises TimeoutError, and a TaskGroup whose parent sits in one
    reports the child's failure alone. Before, cleanup got ECANCELED again,
    join raised the OSError and timeout() let it through."""
    rounds = 0
    for i in range(20):
        log = []
        started = []

        def sleeper() -> None:
            started.append(True)
            try:
                time.sleep(10)
            except OSError as e:
                log.append(e.errno)
                raise
            finally:
                t0 = time.monotonic()
                time.sleep(0.002)  # hooked: blocks again
                a, b = socket.socketpair()
                b.send(b"c")
                log.append(a.recv(1))
                a.close()
                b.close()
                log.append(time.monotonic() - t0 >= 0.002)

        t = ivyrt.create_task(sleeper)
        while not started:  # a task cancelled before it starts never runs
            ivyrt.sleep(0.001)
        ivyrt.sleep(0.001 * (1 + i % 3))
        t.cancel(f"stop {i}")
        try:
            t.join()
            raise AssertionError("the join must raise")
        except ivyrt.CancelledError as e:
            assert e.args == (f"stop {i}",), e.args
            assert isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.ECANCELED
        assert t.cancelled()
        assert log == [errno.ECANCELED, b"c", True], log

        # A socket read, and a second cancel() during the cleanup: delivered again.
        a, b = socket.socketpair()
        seen = []

        def reader() -> None:
            started.append(True)
            try:
                a.recv(1)
            except OSError as e:
                seen.append(e.errno)
                try:
                    time.sleep(10)  # the second cancel() lands here
                except OSError as e2:
                    seen.append(e2.errno)
                raise

        started.clear()
        r = ivyrt.create_task(reader)
        while not started:
            ivyrt.sleep(0.001)
        ivyrt.sleep(0.002)
        r.cancel()
        while len(seen) < 1:
            ivyrt.sleep(0.001)
        ivyrt.sleep(0.002)
        r.cancel()
        try:
            r.join()
            raise AssertionError("the join must raise")
        except ivyrt.CancelledError:
            pass
        assert seen == [errno.ECANCELED, errno.ECANCELED], seen
        a.close()
        b.close()

        def scoped() -> str:
            try:
                with ivyrt.timeout(0.002 * (1 + i % 2)):
                    time.sleep(10)
            except TimeoutError as e:
                assert isinstance(e.__cause__, OSError), e.__cause__
                time.sleep(0.001)  # nothing left pending
                return "timed out"
            return "no timeout"

        assert ivyrt.create_task(scoped).join() == "timed out"

        def failing_child() -> None:
            ivyrt.sleep(0.002)
            raise ValueError(i)

        def group_parent() -> list:
            try:
                with ivyrt.TaskGroup() as tg:
                    tg.create_task(failing_child)
                    time.sleep(10)  # the group cancels the parent here
            except BaseExceptionGroup as eg:
                return [type(e).__name__ for e in eg.exceptions]
            return []

        assert ivyrt.create_task(group_parent).join() == ["ValueError"]
        rounds += 1
    return rounds


if __name__ == "__main__":
    check_hook_loaded()
    signal.alarm(60)  # a hang (a worker blocked) fails instead of stalling CI
    n = ivyrt.run(main, workers=1)
    ivyrt.run(hooked_park_beside_ivyrt_parks, workers=1)
    ivyrt.run(hooked_park_beside_ivyrt_parks, workers=2)
    ivyrt.run(state_kept_across_hooked_parks, workers=1)
    ivyrt.run(state_kept_across_hooked_parks, workers=2)
    for _ in range(5):
        ivyrt.run(never_waiting_reader_lets_others_run, workers=1)
    for workers in (1, 2):
        ivyrt.run(cancellation_through_hooked_calls, workers=workers)
    print(f"ok   python: socket echo ({n} messages) and time.sleep cooperate in ivy tasks; hooked parks keep PyO3's attach count; a never-waiting reader yields; a cancellation delivered by a hooked call is one-shot and ends the task cancelled")
