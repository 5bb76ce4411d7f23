"""ivyrt: green threads for Python on the ivy runtime -- asyncio's vocabulary in plain sync code.

    import ivyrt

    def fetch(i):
        ivyrt.sleep(0.1)          # parks this task, not the thread
        return i * 2

    def main():
        tasks = [ivyrt.create_task(fetch, i, name=f"f{i}") for i in range(100)]
        return ivyrt.gather(*tasks)

    print(ivyrt.run(main))        # 100 tasks, ~0.1 s

Every task is a plain function running on its own stack (an ivy stackful
coroutine) with its own interpreter thread state. Blocking ivyrt calls
(``sleep``, ``Task.join``, locks, queues, sockets) park the task and release the
GIL, so other tasks run meanwhile. One worker thread by default: code between two
blocking calls is atomic, as in asyncio.

Cancellation is asyncio's: ``task.cancel()`` makes the task's current or next
blocking call raise ``CancelledError`` (a ``BaseException``) once; cleanup in
``finally`` may block again. Ctrl-C cancels the main task, then ``run`` raises
``KeyboardInterrupt``. Timeouts raise the builtin ``TimeoutError``.
"""

from ._ivyrt import (
    __version__,
    BrokenBarrierError,
    CancelledError,
    IncompleteReadError,
    InvalidStateError,
    IvyError,
    LimitOverrunError,
    QueueEmpty,
    QueueFull,
    Task,
    all_tasks,
    create_task,
    current_task,
    run,
    sleep,
    spawn,
    yield_now,
)
from ._tasks import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    Timeout,
    TaskGroup,
    as_completed,
    gather,
    shield,
    timeout,
    timeout_at,
    wait,
    wait_for,
)
from ._tasks import __all__ as _tasks_all
from ._sync import *  # noqa: F401,F403  (py-lib: sync primitives, queues)
from ._executor import *  # noqa: F401,F403  (py-lib: to_thread, run_in_executor)
from ._streams import *  # noqa: F401,F403  (py-lib: streams)
from ._generator import *  # noqa: F401,F403  (py-lib: generator)
from . import _sync, _executor, _streams, _generator

__all__ = [
    "__version__",
    "BrokenBarrierError",
    "CancelledError",
    "IncompleteReadError",
    "InvalidStateError",
    "IvyError",
    "LimitOverrunError",
    "QueueEmpty",
    "QueueFull",
    "Task",
    "all_tasks",
    "create_task",
    "current_task",
    "run",
    "sleep",
    "spawn",
    "yield_now",
    *_tasks_all,
    *_sync.__all__,
    *_executor.__all__,
    *_streams.__all__,
    *_generator.__all__,
]
