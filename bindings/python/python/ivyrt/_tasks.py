"""asyncio's combinators and scopes in sync form, built on ``Task``.

``gather``, ``wait_for``, ``timeout``/``timeout_at``, ``as_completed``, ``wait``,
``TaskGroup`` and ``shield`` behave as their asyncio namesakes (3.11/3.12), with
``join`` where asyncio has ``await``. Each accepts Tasks or callables (a callable
is started as a new task).

Design decisions:
- Completion order comes from ``Completions`` (Rust): every watched task puts
  its index into one queue when it ends, so ``gather``'s fail-fast,
  ``as_completed`` and ``wait`` cost O(n), not a rescan per wake-up.
- ``timeout()`` works as asyncio's: a watcher task sleeps until the deadline,
  then cancels the task in the scope; on exit the scope withdraws its own
  cancellation (``uncancel``) and turns the ``CancelledError`` into the
  builtin ``TimeoutError``. So code in the scope sees a cancellation (which
  ``except Exception`` does not swallow), and the scope can be rescheduled.
- ``shield(x)`` is a join of a task that nothing else cancels: a cancellation
  of the caller interrupts the join, not the shielded task, as in asyncio.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from ._ivyrt import CancelledError, Completions, Task, create_task, current_task
from ._ivyrt import _hook_cancel

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Timeout",
    "TaskGroup",
    "as_completed",
    "gather",
    "shield",
    "timeout",
    "timeout_at",
    "wait",
    "wait_for",
]

FIRST_COMPLETED = concurrent.futures.FIRST_COMPLETED
FIRST_EXCEPTION = concurrent.futures.FIRST_EXCEPTION
ALL_COMPLETED = concurrent.futures.ALL_COMPLETED

TaskLike = Union[Task, Callable[[], Any]]


def _as_task(x: TaskLike) -> Task:
    if isinstance(x, Task):
        return x
    if callable(x):
        return create_task(x)
    raise TypeError(f"expected a Task or a callable, got {type(x).__name__}")


def _outcome(t: Task) -> Any:
    """A finished task's result, or its exception as a value."""
    try:
        return t.result()
    except BaseException as e:  # the task's own outcome, CancelledError included
        return e


def gather(*tasks: TaskLike, return_exceptions: bool = False) -> list:
    """Waits for every task and returns their results in order.

    Fail-fast like asyncio: the first exception (in completion order)
    propagates at once and the other tasks keep running. With
    ``return_exceptions=True`` exceptions are returned in place of results.
    If the caller is cancelled while it waits, the tasks are cancelled too.
    """
    ts = [_as_task(t) for t in tasks]
    if not ts:
        return []
    comp = Completions(ts)
    while comp.remaining():
        try:
            i = comp.next()
        except CancelledError:  # the caller was cancelled: so are the tasks
            for t in ts:
                t.cancel()
            raise
        if not return_exceptions:
            ts[i].result()  # raises the first failure
    if return_exceptions:
        return [_outcome(t) for t in ts]
    return [t.result() for t in ts]


def wait_for(task: TaskLike, timeout: Optional[float]) -> Any:
    """Waits for ``task`` up to ``timeout`` seconds and returns its result.

    On timeout the task is cancelled, awaited, and the builtin ``TimeoutError``
    raised. If the caller is cancelled meanwhile, the task is cancelled too.
    """
    t = _as_task(task)
    try:
        return t.join(timeout)
    except TimeoutError:
        if t.done():  # the task's own TimeoutError
            raise
    except CancelledError:
        if not t.done():
            t.cancel()
        raise
    t.cancel()
    try:
        t.join()
    except BaseException:
        pass
    raise TimeoutError(f"wait_for: no result within {timeout} s")


def shield(task: TaskLike) -> Any:
    """Joins ``task``, protecting it from the caller's cancellation: a
    cancelled caller gets ``CancelledError`` while the task runs on."""
    return _as_task(task).join()


def as_completed(tasks: Iterable[TaskLike], timeout: Optional[float] = None) -> Iterator[Task]:
    """Yields the given tasks as they finish (the finished Task objects; asyncio
    yields awaitables). Raises ``TimeoutError`` if ``timeout`` seconds pass
    before all are done."""
    ts = list(dict.fromkeys(_as_task(t) for t in tasks))
    deadline = None if timeout is None else time.monotonic() + timeout
    comp = Completions(ts)

    def finished() -> Iterator[Task]:
        while comp.remaining():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            yield ts[comp.next(left)]

    return finished()


def wait(tasks: Iterable[TaskLike], timeout: Optional[float] = None,
         return_when: str = ALL_COMPLETED) -> tuple[set, set]:
    """Waits until ``return_when`` (ALL_COMPLETED, FIRST_COMPLETED,
    FIRST_EXCEPTION) or ``timeout`` seconds; returns ``(done, pending)`` sets.
    Raises nothing on timeout, as asyncio's."""
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"Invalid return_when value: {return_when}")
    ts = list(dict.fromkeys(_as_task(t) for t in tasks))
    if not ts:
        raise ValueError("Set of Tasks is empty.")
    deadline = None if timeout is None else time.monotonic() + timeout
    comp = Completions(ts)
    while comp.remaining():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            t = ts[comp.next(left)]
        except TimeoutError:
            break
        if return_when == FIRST_COMPLETED:
            break
        if return_when == FIRST_EXCEPTION and (t.cancelled() or t.exception() is not None):
            break
    done = {t for t in ts if t.done()}
    return done, set(ts) - done


class Timeout:
    """asyncio 3.11's ``Timeout`` scope: ``with ivyrt.timeout(1.0): ...`` cancels
    the code inside when the deadline (a ``time.monotonic()`` value) passes and
    raises the builtin ``TimeoutError`` at the end of the block."""

    def __init__(self, when: Optional[float]):
        self._when = when
        self._task: Optional[Task] = None
        self._watcher: Optional[Task] = None
        self._state = "created"
        self._expired = False
        self._guard = threading.Lock()  # never held across a blocking call

    def when(self) -> Optional[float]:
        """The deadline (``time.monotonic()`` clock), or None."""
        return self._when

    def reschedule(self, when: Optional[float]) -> None:
        """Moves the deadline (None: no deadline)."""
        if self._state != "entered":
            raise RuntimeError(f"Cannot change state of {self._state} Timeout")
        with self._guard:
            self._when = when
            self._stop_watcher()
            if when is not None:
                self._start_watcher()

    def expired(self) -> bool:
        """Whether the deadline passed and the scope cancelled its code."""
        return self._expired

    def __repr__(self) -> str:
        return f"<Timeout [{self._state}] when={self._when}>"

    def __enter__(self) -> "Timeout":
        if self._state != "created":
            raise RuntimeError("Timeout has already been entered")
        task = current_task()
        if task is None:
            raise RuntimeError("Timeout should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._state = "entered"
        with self._guard:
            if self._when is not None:
                self._start_watcher()
        return self

    def __exit__(self, et, ev, tb) -> None:
        with self._guard:
            self._stop_watcher()
            self._state = "exited"
        if self._expired:
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling \
                    and _is_cancellation(et, ev, take=False):
                _is_cancellation(et, ev)  # the scope's own: consumed here
                raise TimeoutError("the timeout scope expired") from ev
        return None

    def _start_watcher(self) -> None:
        delay = max(0.0, self._when - time.monotonic())
        self._watcher = create_task(self._fire, delay, name="ivyrt.timeout")

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def _fire(self, delay: float) -> None:
        from ._ivyrt import sleep
        me = current_task()
        sleep(delay)
        with self._guard:
            if self._state != "entered" or self._watcher is not me:
                return  # stopped or rescheduled meanwhile
            self._expired = True
            self._task.cancel()


def _is_cancellation(et, ev, take: bool = True) -> bool:
    """Whether the exception leaving a scope delivers the task's cancellation:
    a ``CancelledError``, or the ``OSError(ECANCELED)`` of a call that the libc
    hook (``libivy_hook.so``) interrupted, which CPython raises in its place
    (README, "Hooked libc calls"). ``take``: the second kind is consumed (it
    counts once)."""
    if et is None:
        return False
    return issubclass(et, CancelledError) or _hook_cancel(ev, take)


def _as_cancelled(ev: BaseException) -> BaseException:
    """``ev`` as a ``CancelledError``: itself, or one caused by the hook's ``OSError``."""
    if isinstance(ev, CancelledError):
        return ev
    err = CancelledError()
    err.__cause__ = ev
    return err


def timeout(delay: Optional[float]) -> Timeout:
    """A scope that times out ``delay`` seconds from now (None: never)."""
    return Timeout(None if delay is None else time.monotonic() + delay)


def timeout_at(when: Optional[float]) -> Timeout:
    """A scope that times out at ``when`` on the ``time.monotonic()`` clock."""
    return Timeout(when)


class TaskGroup:
    """asyncio's ``TaskGroup``: ``with ivyrt.TaskGroup() as tg:
    tg.create_task(f)``. The block waits for every child at its end. The first
    child that fails cancels the other children and the block; the failures
    are raised together as an ``ExceptionGroup`` (``BaseExceptionGroup`` if
    one is not an Exception)."""

    def __init__(self):
        self._state = "created"
        self._parent: Optional[Task] = None
        self._tasks: set = set()
        self._errors: list = []
        self._aborting = False
        self._parent_cancel_requested = False
        self._guard = threading.Lock()  # never held across a blocking call

    def __repr__(self) -> str:
        return f"<TaskGroup tasks={len(self._tasks)} errors={len(self._errors)} {self._state}>"

    def __enter__(self) -> "TaskGroup":
        if self._state != "created":
            raise RuntimeError(f"TaskGroup {self!r} has already been entered")
        self._parent = current_task()
        if self._parent is None:
            raise RuntimeError("TaskGroup should be used inside a task")
        self._state = "entered"
        return self

    def create_task(self, fn: Callable, *args, name: Optional[str] = None, **kwargs) -> Task:
        """Starts ``fn(*args, **kwargs)`` as a child task of the group."""
        if self._state == "created":
            raise RuntimeError(f"TaskGroup {self!r} has not been entered")
        if self._state == "exited" and not self._tasks:
            raise RuntimeError(f"TaskGroup {self!r} is finished")
        if self._aborting:
            raise RuntimeError(f"TaskGroup {self!r} is shutting down")
        t = create_task(fn, *args, name=name, **kwargs)
        with self._guard:
            self._tasks.add(t)
        t.add_done_callback(self._on_child_done)
        return t

    def _abort(self) -> None:
        self._aborting = True
        for t in list(self._tasks):
            if not t.done():
                t.cancel()

    def _on_child_done(self, t: Task) -> None:
        with self._guard:
            self._tasks.discard(t)
        if t.cancelled():
            return
        exc = t.exception()
        if exc is None:
            return
        self._errors.append(exc)
        if not self._aborting:
            self._abort()
            if self._state == "entered" and not self._parent_cancel_requested:
                self._parent_cancel_requested = True
                self._parent.cancel()

    def __exit__(self, et, ev, tb) -> None:
        self._state = "exiting"
        propagate_cancel = None
        if et is not None:
            if _is_cancellation(et, ev):
                if not self._parent_cancel_requested:
                    propagate_cancel = _as_cancelled(ev)
            else:
                self._errors.append(ev)
            if not self._aborting:
                self._abort()
        while True:
            with self._guard:
                pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            try:
                gather(*pending, return_exceptions=True)
            except CancelledError as e:  # the parent cancelled while it waits
                if not self._parent_cancel_requested:
                    propagate_cancel = e
                self._abort()
        self._state = "exited"
        if self._parent_cancel_requested:
            self._parent.uncancel()
        if propagate_cancel is not None and not self._errors:
            raise propagate_cancel
        if self._errors:
            errors, self._errors = self._errors, []
            raise BaseExceptionGroup("unhandled errors in a TaskGroup", errors) from None
        return None
