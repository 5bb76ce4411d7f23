"""ivyrt: green threads for Python on the ivy runtime."""

from ._ivyrt import __version__
from ._sync import *  # noqa: F401,F403  (py-lib: sync primitives, queues)
from . import _sync

__all__ = ["__version__", *_sync.__all__]
