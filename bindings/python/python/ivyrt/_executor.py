"""Executors: ``to_thread`` and ``run_in_executor``, asyncio's, in sync form.

``to_thread`` and ``run_in_executor(None, ...)`` run the function on ivy's
blocking pool (``src/executor.rs``). ``run_in_executor(executor, ...)`` with a
``concurrent.futures.Executor`` submits there and parks the task on an
``Event`` that the future's done-callback sets from the executor's thread;
cancelling the waiting task cancels the future (a no-op once it runs), as
asyncio's ``wrap_future`` does.
"""

from ._ivyrt import Event, _run_on_pool, to_thread

__all__ = ["to_thread", "run_in_executor", "wrap_future"]


def wrap_future(future):
    """Parks the calling task until the ``concurrent.futures.Future`` is done
    and returns its result (or raises its exception). If the wait is
    interrupted (cancellation, ``timeout()``), the future is cancelled."""
    done = Event()
    future.add_done_callback(lambda _: done.set())
    try:
        done.wait()
    except BaseException:
        future.cancel()
        raise
    return future.result()


def run_in_executor(executor, func, *args):
    """Runs ``func(*args)`` in ``executor`` and returns its result, parking the
    calling task meanwhile. ``executor`` is ``None`` (ivy's blocking pool) or a
    ``concurrent.futures.Executor``."""
    if executor is None:
        return _run_on_pool(func, *args)
    return wrap_future(executor.submit(func, *args))
