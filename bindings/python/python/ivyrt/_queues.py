"""``PriorityQueue``: asyncio's, in sync form, written over ``Condition``.

Why Python and not ivy's Rust ``PriorityQueue``: ordering items means calling
their ``__lt__``, which needs the GIL. ivy's queues move items between tasks
while the GIL may be released, so a comparison inside them would run without
the GIL, or deadlock against a task that holds the GIL and waits for the
queue's internal lock. Here every heap operation runs under the GIL and under
the queue's own ``Lock``; the waiting is done by ``Condition`` (as CPython's
``queue.PriorityQueue`` does over ``threading.Condition``). ``Queue`` and
``LifoQueue`` never compare items and are Rust (``src/queue.rs``).
"""

import heapq

from ._ivyrt import Condition, Lock, QueueEmpty, QueueFull, QueueShutDown


class PriorityQueue:
    """A queue that returns its smallest item first (asyncio.PriorityQueue).

    Items are typically ``(priority, data)`` tuples. ``put`` parks while the
    queue holds ``maxsize`` items (``maxsize`` <= 0: unbounded), ``get`` while
    it is empty; ``task_done``/``join`` count processed items.
    """

    def __init__(self, maxsize=0):
        self._maxsize = maxsize if maxsize > 0 else 0
        self._heap = []
        self._unfinished = 0
        self._shutdown = False
        self._mutex = Lock()
        self._not_empty = Condition(self._mutex)
        self._not_full = Condition(self._mutex)
        self._all_done = Condition(self._mutex)

    @property
    def maxsize(self):
        """The bound given at creation (0: unbounded)."""
        return self._maxsize

    def _has_room(self):
        return not self._maxsize or len(self._heap) < self._maxsize

    def _can_put(self):
        return self._shutdown or self._has_room()

    def _can_get(self):
        return self._shutdown or bool(self._heap)

    def _push(self, item):
        heapq.heappush(self._heap, item)
        self._unfinished += 1
        self._not_empty.notify()

    def _pop(self):
        item = heapq.heappop(self._heap)
        self._not_full.notify()
        return item

    def put(self, item, timeout=None):
        """Puts ``item``, parking while the queue is full. With ``timeout``
        (seconds), raises ``QueueFull`` if no room came in time."""
        with self._mutex:
            if not self._not_full.wait_for(self._can_put, timeout):
                raise QueueFull
            if self._shutdown:
                raise QueueShutDown
            self._push(item)

    def put_nowait(self, item):
        """Puts ``item`` without waiting; ``QueueFull`` if there is no room."""
        with self._mutex:
            if self._shutdown:
                raise QueueShutDown
            if not self._has_room():
                raise QueueFull
            self._push(item)

    def get(self, timeout=None):
        """Removes and returns the smallest item, parking while the queue is
        empty. With ``timeout`` (seconds), raises ``QueueEmpty`` if none came
        in time."""
        with self._mutex:
            if not self._not_empty.wait_for(self._can_get, timeout):
                raise QueueEmpty
            if not self._heap:
                raise QueueShutDown
            return self._pop()

    def get_nowait(self):
        """Removes and returns the smallest item; ``QueueEmpty`` if none."""
        with self._mutex:
            if not self._heap:
                raise QueueShutDown if self._shutdown else QueueEmpty
            return self._pop()

    def shutdown(self, immediate=False):
        """Shuts the queue down (asyncio 3.13): ``put`` raises
        ``QueueShutDown`` from now on (waiting putters too), ``get`` once the
        queue is empty. ``immediate=True`` also drops the items left, marking
        each done (which can release ``join``)."""
        with self._mutex:
            self._shutdown = True
            if immediate:
                self._unfinished -= len(self._heap)
                self._heap.clear()
                if self._unfinished == 0:
                    self._all_done.notify_all()
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def task_done(self):
        """Marks one item taken by ``get`` as processed (for ``join``);
        ``ValueError`` if called more often than items were put."""
        with self._mutex:
            if self._unfinished <= 0:
                raise ValueError("task_done() called too many times")
            self._unfinished -= 1
            if self._unfinished == 0:
                self._all_done.notify_all()

    def join(self, timeout=None):
        """Parks until every item put has been marked done. True, or False if
        ``timeout`` seconds passed first."""
        with self._mutex:
            return bool(self._all_done.wait_for(lambda: self._unfinished == 0, timeout))

    def qsize(self):
        """The number of items in the queue."""
        return len(self._heap)

    def empty(self):
        """Whether the queue is empty."""
        return not self._heap

    def full(self):
        """Whether the queue holds ``maxsize`` items (never, if unbounded)."""
        return bool(self._maxsize) and len(self._heap) >= self._maxsize

    def __len__(self):
        return len(self._heap)

    def __repr__(self):
        return (f"<ivyrt.PriorityQueue maxsize={self._maxsize} "
                f"qsize={len(self._heap)} unfinished={self._unfinished}>")
