"""Synchronisation primitives and queues: asyncio's, in sync form.

``Lock``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Condition``,
``Barrier``, ``Queue`` and ``LifoQueue`` are implemented in Rust over
``ivy::sync`` (``ivyrt._ivyrt``); ``PriorityQueue`` is in ``_queues.py``.
Every blocking method parks the calling task (or blocks a plain thread),
raises ``CancelledError`` when the task is cancelled and ``TimeoutError`` when
an enclosing ``ivyrt.timeout()`` scope elapses, and takes an optional
``timeout=`` of its own (seconds): then it returns ``False`` (``Queue.get`` /
``put`` raise ``QueueEmpty`` / ``QueueFull``, ``Barrier.wait`` raises
``TimeoutError``) when that timeout passes.
"""

from ._ivyrt import (
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condition,
    Event,
    LifoQueue,
    Lock,
    Queue,
    QueueEmpty,
    QueueFull,
    QueueShutDown,
    Semaphore,
)
from ._queues import PriorityQueue

__all__ = [
    "Lock",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Condition",
    "Barrier",
    "Queue",
    "LifoQueue",
    "PriorityQueue",
    "QueueShutDown",
]
