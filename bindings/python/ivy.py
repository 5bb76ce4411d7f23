"""ivy for Python: green threads over libivy's C ABI, with ctypes.

    import ivy

    def main():
        tasks = [ivy.spawn(work, i, name=f"w{i}") for i in range(10)]
        return [t.join() for t in tasks]

    print(ivy.run(main))

A task is a plain Python function run as an ivy task: a stackful coroutine on
one of ivy's worker threads. Blocking ivy calls (``sleep``, ``Task.join``, ...)
park the task, not the thread, so thousands of tasks can wait at once.

How Python code runs inside coroutines (the part that must be right)
--------------------------------------------------------------------
The interpreter keeps a *thread state* per OS thread: the frame stack, the
exception state, the recursion depth. Several ivy tasks share one worker thread
and interleave at every blocking call, so they must not share a thread state:
two Python tasks on one worker using the thread's single state would push and
pop each other's frames and corrupt the interpreter. That is exactly what a
ctypes ``CFUNCTYPE`` callback would do (it enters Python with
``PyGILState_Ensure``, i.e. the thread's one state), so no task is started
through a ctypes callback.

Instead every Python task gets a thread state of its own, made with
``PyThreadState_New``, and libivy's task hooks (``ivy_spawn_opts_t.on_start`` /
``on_exit``, run on the task's own stack) are pointed straight at CPython's
``PyEval_AcquireThread`` / ``PyEval_ReleaseThread`` with that state, and the
task's entry at ``PyObject_CallNoArgs`` with the Python callable. So a task
holds the GIL with *its own* thread state while it runs Python code.

Every call into libivy goes through ``ctypes.CDLL``, which releases the GIL
around the foreign call (``Py_BEGIN_ALLOW_THREADS`` saves the calling task's
thread state in the ctypes frame on the task's own stack, and restores that
same state afterwards). So a task parked in ``ivy_time_sleep`` holds no GIL, and
other Python tasks, on this worker or another, run meanwhile. (``PyDLL`` keeps
the GIL during the call: a parked task would then block every other Python
task, a deadlock with one worker.)

Limitation: code that enters Python through ``PyGILState_Ensure`` from inside a
task -- a ctypes callback called back from C, some C extensions' callbacks --
would use the worker thread's own state while the task's is active; do such
work in ``spawn_blocking``-style plain threads, not in tasks.

Errors are exceptions mapped from libivy's codes: ``TimeoutError`` (also a
built-in ``TimeoutError``), ``CancelledError``, ``ClosedError``, else
``IvyError`` with ``.code``.

Stacks: Python tasks default to 4 MiB of stack (address space; only touched
pages use memory), since CPython's C frames are large.
"""

from __future__ import annotations

import builtins
import ctypes
import ctypes.util
import os
import threading
from typing import Any, Callable, Iterable, Optional, Sequence

__all__ = [
    "IvyError",
    "TimeoutError",
    "CancelledError",
    "ClosedError",
    "Task",
    "run",
    "spawn",
    "sleep",
    "yield_now",
    "now",
    "current_task_id",
    "current_task_name",
    "wait_any",
    "gather",
    "Mutex",
    "Semaphore",
    "Event",
    "Queue",
    "QueueEmpty",
    "QueueFull",
]

# ---------------------------------------------------------------------------
# Loading libivy

def _find_library() -> str:
    env = os.environ.get("IVY_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for build in ("release", "debug"):
        candidate = os.path.join(here, "..", "..", "target", build, "libivy.so")
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
    found = ctypes.util.find_library("ivy")
    if found:
        return found
    raise OSError("libivy.so not found: build it (cargo build --release) or set IVY_LIBRARY")


_lib = ctypes.CDLL(_find_library())
_api = ctypes.pythonapi

c_int, c_int64, c_uint64, c_size_t, c_void_p, c_char_p = (
    ctypes.c_int,
    ctypes.c_int64,
    ctypes.c_uint64,
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_char_p,
)


class _Handle(ctypes.Structure):
    _fields_ = [("id", c_uint64)]


class _Config(ctypes.Structure):
    # ivy_config_t: every field the header has, zero meaning "default".
    _fields_ = [
        ("workers", c_size_t),
        ("stack_size", c_size_t),
        ("max_blocking_threads", c_size_t),
        ("blocking_keep_alive_ms", c_uint64),
        ("thread_name", c_char_p),
        ("debug", c_int),
        ("slow_task_ms", c_uint64),
    ]


class _SpawnOpts(ctypes.Structure):
    # Function pointers as plain addresses: the hooks point at CPython's C API.
    _fields_ = [
        ("name", c_char_p),
        ("stack_size", c_size_t),
        ("on_start", c_void_p),
        ("on_start_arg", c_void_p),
        ("on_exit", c_void_p),
        ("on_exit_arg", c_void_p),
    ]


def _declare(name: str, argtypes: list, restype=c_int):
    fn = getattr(_lib, name)
    fn.argtypes = argtypes
    fn.restype = restype
    return fn


_P = ctypes.POINTER
_strerror = _declare("ivy_strerror", [c_int], c_char_p)
_now = _declare("ivy_time_now", [], c_int64)
_sleep = _declare("ivy_time_sleep", [c_int64])
_yield = _declare("ivy_task_yield", [])
_runtime_new = _declare("ivy_runtime_new", [_P(_Config), _P(_Handle)])
_runtime_free = _declare("ivy_runtime_free", [_Handle])
_runtime_spawn = _declare(
    "ivy_runtime_spawn", [_Handle, c_void_p, c_void_p, _P(_SpawnOpts), _P(_Handle)]
)
_spawn = _declare("ivy_task_spawn", [c_void_p, c_void_p, _P(_SpawnOpts), _P(_Handle)])
_join = _declare("ivy_task_join", [_Handle, _P(c_void_p), c_int64])
_cancel = _declare("ivy_task_cancel", [_Handle])
_detach = _declare("ivy_task_detach", [_Handle])
_is_finished = _declare("ivy_task_is_finished", [_Handle, _P(c_int)])
_task_id = _declare("ivy_task_id", [_Handle, _P(c_uint64)])
_current_id = _declare("ivy_task_current_id", [_P(c_uint64)])
_current_name = _declare("ivy_task_current_name", [c_char_p, c_size_t, _P(c_size_t)])
_wait_any = _declare("ivy_task_wait_any", [_P(_Handle), c_size_t, _P(c_size_t), c_int64])

# CPython's C API, used as libivy hooks (see the module docstring).
_api.PyInterpreterState_Get.restype = c_void_p
_api.PyThreadState_New.argtypes = [c_void_p]
_api.PyThreadState_New.restype = c_void_p
_api.PyThreadState_Clear.argtypes = [c_void_p]
_api.PyThreadState_Delete.argtypes = [c_void_p]
_api.Py_DecRef.argtypes = [c_void_p]
_ACQUIRE = ctypes.cast(_api.PyEval_AcquireThread, c_void_p).value
_RELEASE = ctypes.cast(_api.PyEval_ReleaseThread, c_void_p).value
_CALL_NO_ARGS = ctypes.cast(_api.PyObject_CallNoArgs, c_void_p).value

IVY_FOREVER = -1
EPERM, EBADF, EBUSY, EINVAL, EDEADLK = -1, -9, -16, -22, -35
ETIMEDOUT, ECANCELED, ECLOSED = -110, -125, -1001

DEFAULT_STACK_SIZE = 4 << 20

# ---------------------------------------------------------------------------
# Errors


class IvyError(Exception):
    """An error reported by libivy; ``code`` is the negative IVY_E* value."""

    def __init__(self, code: int, what: str = ""):
        self.code = code
        msg = _strerror(code).decode()
        super().__init__(f"{what}: {msg}" if what else msg)


class TimeoutError(IvyError, builtins.TimeoutError):
    """A deadline passed (IVY_ETIMEDOUT)."""


class CancelledError(IvyError):
    """The task was cancelled (IVY_ECANCELED)."""


class ClosedError(IvyError):
    """The object was closed (IVY_ECLOSED)."""


_EXCEPTIONS = {ETIMEDOUT: TimeoutError, ECANCELED: CancelledError, ECLOSED: ClosedError}


def _check(code: int, what: str = "") -> None:
    if code != 0:
        raise _EXCEPTIONS.get(code, IvyError)(code, what)


def _deadline(timeout: Optional[float]) -> int:
    """A relative timeout in seconds (None: none) as an ivy deadline."""
    if timeout is None:
        return IVY_FOREVER
    if timeout < 0:
        raise ValueError("timeout must be >= 0")
    return _now() + int(timeout * 1000 + 0.999999)


# ---------------------------------------------------------------------------
# Time


def now() -> int:
    """Monotonic milliseconds: the clock of ivy deadlines."""
    return _now()


def sleep(seconds: float) -> None:
    """Parks the calling task for ``seconds`` (a plain thread sleeps).
    Raises CancelledError if the task is cancelled meanwhile."""
    if seconds < 0:
        raise ValueError("sleep length must be >= 0")
    _check(_sleep(int(seconds * 1000 + 0.999999)), "sleep")


def yield_now() -> None:
    """Lets other tasks run (asyncio's ``sleep(0)``)."""
    _check(_yield(), "yield")


# ---------------------------------------------------------------------------
# Tasks

_tasks_lock = threading.Lock()
# Tasks not joined yet, by handle id, and the same by ivy task id (to find the
# runtime of the caller of spawn). `run` releases its runtime's leftovers.
_unjoined: "dict[int, Task]" = {}
_by_task_id: "dict[int, Task]" = {}


class Task:
    """A running Python function; like asyncio's Task. Create with ``spawn``."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict):
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._result: Any = None
        self._exception: Optional[BaseException] = None
        self._handle = _Handle(0)
        self._tstate: Optional[int] = None
        self._done = False
        self._runtime: Optional[int] = None
        self._task_id = 0
        self.name: Optional[str] = None

    def _body(self) -> None:
        # Runs on the task's own stack with its own thread state (see module doc).
        try:
            self._result = self._fn(*self._args, **self._kwargs)
        except BaseException as e:  # reported by join(), like asyncio
            self._exception = e

    def _start(self, spawn_call, name: Optional[str], stack_size: Optional[int],
               runtime: Optional[int]) -> None:
        self.name = name
        self._runtime = runtime
        interp = _api.PyInterpreterState_Get()
        self._tstate = _api.PyThreadState_New(interp)
        opts = _SpawnOpts()
        opts.name = name.encode() if name is not None else None
        opts.stack_size = stack_size or DEFAULT_STACK_SIZE
        opts.on_start, opts.on_start_arg = _ACQUIRE, self._tstate
        opts.on_exit, opts.on_exit_arg = _RELEASE, self._tstate
        # The callable is kept alive by `self`, which `_unjoined` holds until join.
        self._callable = self._body
        rc = spawn_call(_CALL_NO_ARGS, ctypes.c_void_p(id(self._callable)), ctypes.byref(opts),
                        ctypes.byref(self._handle))
        if rc != 0:
            self._free_tstate()
            _check(rc, "spawn")
        tid = c_uint64()
        _task_id(self._handle, ctypes.byref(tid))
        self._task_id = tid.value
        with _tasks_lock:
            _unjoined[self._handle.id] = self
            _by_task_id[self._task_id] = self

    def _free_tstate(self) -> None:
        if self._tstate is not None:
            _api.PyThreadState_Clear(self._tstate)
            _api.PyThreadState_Delete(self._tstate)
            self._tstate = None

    def _reap(self, deadline: int) -> int:
        """ivy_task_join, then release what the task held. Returns the code."""
        out = c_void_p()
        rc = _join(self._handle, ctypes.byref(out), deadline)
        # Only a successful join frees the handle -- or one whose task was
        # cancelled before it ran (ECANCELED, handle gone). Any other outcome
        # (timeout, the *caller* cancelled, busy) leaves the task as it was.
        freed = rc == 0 or _is_finished(self._handle, ctypes.byref(c_int())) == EBADF
        if not freed:
            return rc
        if out.value:
            _api.Py_DecRef(out.value)  # PyObject_CallNoArgs's new reference (None)
        self._done = True
        self._free_tstate()
        with _tasks_lock:
            _unjoined.pop(self._handle.id, None)
            _by_task_id.pop(self._task_id, None)
        return rc

    def _finished_raw(self) -> bool:
        flag = c_int(0)
        _check(_is_finished(self._handle, ctypes.byref(flag)), "done")
        return flag.value == 1

    def join(self, timeout: Optional[float] = None) -> Any:
        """Waits for the task and returns its result, or raises its exception.
        ``CancelledError`` if it was cancelled and did not handle it;
        ``TimeoutError`` if ``timeout`` (seconds) passed first (the task runs on)."""
        if self._done:
            raise IvyError(EBADF, "join: task already joined")
        rc = self._reap(_deadline(timeout))
        if not self._done:
            _check(rc, "join")
        if rc == ECANCELED:
            raise CancelledError(rc, "join: the task was cancelled before it started")
        _check(rc, "join")
        if self._exception is not None:
            raise self._exception
        return self._result

    def cancel(self) -> None:
        """Requests cancellation: the task's next (or current) blocking ivy call
        raises CancelledError in it."""
        if not self._done:
            _check(_cancel(self._handle), "cancel")

    def done(self) -> bool:
        return self._done or self._finished_raw()

    @property
    def id(self) -> int:
        out = c_uint64()
        _check(_task_id(self._handle, ctypes.byref(out)), "task id")
        return out.value

    def __repr__(self) -> str:
        return f"<ivy.Task {self.name or ''} done={self.done()}>"


def spawn(fn: Callable, *args, name: Optional[str] = None, stack_size: Optional[int] = None,
          **kwargs) -> Task:
    """Runs ``fn(*args, **kwargs)`` as a new task on the current runtime
    (asyncio's ``create_task``). Must be called from inside a task."""
    me = c_uint64()
    parent = None
    if _current_id(ctypes.byref(me)) == 0:
        with _tasks_lock:
            parent = _by_task_id.get(me.value)
    t = Task(fn, args, kwargs)
    t._start(_spawn, name, stack_size, parent._runtime if parent else None)
    return t


def current_task_id() -> int:
    out = c_uint64()
    _check(_current_id(ctypes.byref(out)), "current_task_id")
    return out.value


def current_task_name() -> str:
    buf = ctypes.create_string_buffer(256)
    n = c_size_t()
    rc = _current_name(buf, len(buf), ctypes.byref(n))
    if rc == -34:  # IVY_ERANGE
        buf = ctypes.create_string_buffer(n.value + 1)
        rc = _current_name(buf, len(buf), ctypes.byref(n))
    _check(rc, "current_task_name")
    return buf.value.decode()


def wait_any(tasks: Sequence[Task], timeout: Optional[float] = None) -> Task:
    """Waits until one of ``tasks`` has finished and returns it (not joined)."""
    arr = (_Handle * len(tasks))(*[t._handle for t in tasks])
    idx = c_size_t()
    _check(_wait_any(arr, len(tasks), ctypes.byref(idx), _deadline(timeout)), "wait_any")
    return tasks[idx.value]


def gather(*tasks: Task) -> list:
    """Joins every task, results in order (asyncio's ``gather``): the first
    exception propagates after the remaining tasks are cancelled and joined."""
    results = []
    for i, t in enumerate(tasks):
        try:
            results.append(t.join())
        except BaseException:
            for rest in tasks[i + 1:]:
                rest.cancel()
            for rest in tasks[i + 1:]:
                try:
                    rest.join()
                except BaseException:
                    pass
            raise
    return results


# ---------------------------------------------------------------------------
# Runtime


def run(fn: Callable, *args, workers: Optional[int] = None, stack_size: Optional[int] = None,
        **kwargs) -> Any:
    """Starts a runtime, runs ``fn(*args, **kwargs)`` as its main task, shuts the
    runtime down (cancelling and waiting for leftover tasks) and returns the
    result or raises the exception of ``fn`` (asyncio's ``run``)."""
    cfg = _Config(workers or 0, stack_size or 0)
    rt = _Handle()
    _check(_runtime_new(ctypes.byref(cfg), ctypes.byref(rt)), "runtime")
    try:
        main = Task(fn, args, kwargs)

        def spawn_on_rt(entry, arg, opts, out):
            return _runtime_spawn(rt, entry, arg, opts, out)

        main._start(spawn_on_rt, "main", stack_size, rt.id)
        return main.join()
    finally:
        _check(_runtime_free(rt), "runtime shutdown")
        # Every task of the runtime has finished now: release the ones nobody
        # joined (their handles and thread states).
        with _tasks_lock:
            leftovers = [t for t in _unjoined.values() if t._runtime == rt.id]
        for t in leftovers:
            t._reap(0)


# ---------------------------------------------------------------------------
# Synchronization (ivy_mutex_*, ivy_semaphore_*, ivy_event_*, ivy_queue_*)

_mutex_new = _declare("ivy_mutex_new", [_P(_Handle)])
_mutex_lock = _declare("ivy_mutex_lock", [_Handle, c_int64])
_mutex_unlock = _declare("ivy_mutex_unlock", [_Handle])
_mutex_free = _declare("ivy_mutex_free", [_Handle])
_sem_new = _declare("ivy_semaphore_new", [c_size_t, _P(_Handle)])
_sem_acquire = _declare("ivy_semaphore_acquire", [_Handle, c_int64])
_sem_release = _declare("ivy_semaphore_release", [_Handle])
_sem_available = _declare("ivy_semaphore_available", [_Handle, _P(c_size_t)])
_sem_free = _declare("ivy_semaphore_free", [_Handle])
_event_new = _declare("ivy_event_new", [_P(_Handle)])
_event_set = _declare("ivy_event_set", [_Handle])
_event_clear = _declare("ivy_event_clear", [_Handle])
_event_is_set = _declare("ivy_event_is_set", [_Handle, _P(c_int)])
_event_wait = _declare("ivy_event_wait", [_Handle, c_int64])
_event_free = _declare("ivy_event_free", [_Handle])
_queue_new = _declare("ivy_queue_new", [c_size_t, _P(_Handle)])
_queue_put = _declare("ivy_queue_put", [_Handle, c_void_p, c_int64])
_queue_get = _declare("ivy_queue_get", [_Handle, _P(c_void_p), c_int64])
_queue_close = _declare("ivy_queue_close", [_Handle])
_queue_task_done = _declare("ivy_queue_task_done", [_Handle])
_queue_join = _declare("ivy_queue_join", [_Handle, c_int64])
_queue_len = _declare("ivy_queue_len", [_Handle, _P(c_size_t)])
_queue_free = _declare("ivy_queue_free", [_Handle])
_api.Py_IncRef.argtypes = [c_void_p]
_UNBOUNDED = ctypes.c_size_t(-1).value


class _Object:
    """Owns one libivy handle, freed on close() or garbage collection."""

    _free = None

    def __init__(self, new, *args):
        self._h = _Handle()
        _check(new(*args, ctypes.byref(self._h)), type(self).__name__)

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None and h.id and type(self)._free is not None:
            type(self)._free(h)


class Mutex(_Object):
    """asyncio's ``Lock`` for tasks and threads, not recursive, with Go's
    fairness policy: waiters queue in FIFO order, but a running task may take a
    just-released lock before the woken waiter (strict hand-off once a waiter
    has waited over 1 ms). ``with mutex:`` locks and unlocks. Unlocking from
    another task is an error."""

    _free = staticmethod(_mutex_free)

    def __init__(self):
        super().__init__(_mutex_new)

    def acquire(self, timeout: Optional[float] = None) -> bool:
        """Locks, waiting up to ``timeout`` seconds (None: forever). Returns False
        on timeout; raises CancelledError if the task is cancelled meanwhile."""
        rc = _mutex_lock(self._h, _deadline(timeout))
        if rc == ETIMEDOUT:
            return False
        _check(rc, "Mutex.acquire")
        return True

    def release(self) -> None:
        _check(_mutex_unlock(self._h), "Mutex.release")

    def __enter__(self) -> "Mutex":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Semaphore(_Object):
    """asyncio's ``Semaphore``: ``with sem:`` takes and returns a permit."""

    _free = staticmethod(_sem_free)

    def __init__(self, value: int = 1):
        if value < 0:
            raise ValueError("Semaphore initial value must be >= 0")
        super().__init__(_sem_new, value)

    def acquire(self, timeout: Optional[float] = None) -> bool:
        rc = _sem_acquire(self._h, _deadline(timeout))
        if rc == ETIMEDOUT:
            return False
        _check(rc, "Semaphore.acquire")
        return True

    def release(self) -> None:
        _check(_sem_release(self._h), "Semaphore.release")

    @property
    def available(self) -> int:
        n = c_size_t()
        _check(_sem_available(self._h, ctypes.byref(n)), "Semaphore.available")
        return n.value

    def __enter__(self) -> "Semaphore":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Event(_Object):
    """asyncio's ``Event``."""

    _free = staticmethod(_event_free)

    def __init__(self):
        super().__init__(_event_new)

    def set(self) -> None:
        _check(_event_set(self._h), "Event.set")

    def clear(self) -> None:
        _check(_event_clear(self._h), "Event.clear")

    def is_set(self) -> bool:
        flag = c_int()
        _check(_event_is_set(self._h, ctypes.byref(flag)), "Event.is_set")
        return bool(flag.value)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until set; False if ``timeout`` passed first."""
        rc = _event_wait(self._h, _deadline(timeout))
        if rc == ETIMEDOUT:
            return False
        _check(rc, "Event.wait")
        return True


class QueueEmpty(IvyError):
    """``get_nowait`` on an empty queue."""


class QueueFull(IvyError):
    """``put_nowait`` on a full queue."""


class Queue(_Object):
    """asyncio's ``Queue`` of Python objects: ``maxsize`` 0 means unbounded.
    The queue holds a reference to each item until it is taken. ``close()``
    makes puts fail and gets raise ``ClosedError`` once drained."""

    def __init__(self, maxsize: int = 0):
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        super().__init__(_queue_new, maxsize or _UNBOUNDED)
        self.maxsize = maxsize

    def put(self, item: Any, timeout: Optional[float] = None) -> None:
        """Appends ``item``, waiting for room (TimeoutError after ``timeout``)."""
        _api.Py_IncRef(id(item))  # the queue's reference, handed to the getter
        rc = _queue_put(self._h, id(item), _deadline(timeout))
        if rc != 0:
            _api.Py_DecRef(id(item))
            _check(rc, "Queue.put")

    def put_nowait(self, item: Any) -> None:
        try:
            self.put(item, timeout=0)
        except TimeoutError as e:
            raise QueueFull(e.code, "Queue.put_nowait") from None

    def get(self, timeout: Optional[float] = None) -> Any:
        """Removes and returns the oldest item, waiting up to ``timeout``."""
        out = c_void_p()
        _check(_queue_get(self._h, ctypes.byref(out), _deadline(timeout)), "Queue.get")
        return self._take(out.value)

    @staticmethod
    def _take(address: Optional[int]) -> Any:
        obj = ctypes.cast(c_void_p(address), ctypes.py_object).value  # a new reference
        _api.Py_DecRef(address)  # drop the queue's
        return obj

    def get_nowait(self) -> Any:
        try:
            return self.get(timeout=0)
        except TimeoutError as e:
            raise QueueEmpty(e.code, "Queue.get_nowait") from None

    def task_done(self) -> None:
        rc = _queue_task_done(self._h)
        if rc == EINVAL:
            raise ValueError("task_done() called too many times")
        _check(rc, "Queue.task_done")

    def join(self, timeout: Optional[float] = None) -> None:
        """Waits until every item put has been marked done."""
        _check(_queue_join(self._h, _deadline(timeout)), "Queue.join")

    def close(self) -> None:
        _check(_queue_close(self._h), "Queue.close")

    def qsize(self) -> int:
        n = c_size_t()
        _check(_queue_len(self._h, ctypes.byref(n)), "Queue.qsize")
        return n.value

    def empty(self) -> bool:
        return self.qsize() == 0

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is None or not h.id:
            return
        _queue_close(h)
        out = c_void_p()
        while _queue_get(h, ctypes.byref(out), 0) == 0:  # release the items' references
            self._take(out.value)
        _queue_free(h)
