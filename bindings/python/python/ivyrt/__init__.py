"""ivyrt: green threads for Python on the ivy runtime."""

from ._ivyrt import __version__
from ._sync import *  # noqa: F401,F403  (py-lib: sync primitives, queues)
from ._executor import *  # noqa: F401,F403  (py-lib: to_thread, run_in_executor)
from ._streams import *  # noqa: F401,F403  (py-lib: streams)
from ._generator import *  # noqa: F401,F403  (py-lib: generator)
from . import _sync, _executor, _streams, _generator

__all__ = ["__version__", *_sync.__all__, *_executor.__all__, *_streams.__all__, *_generator.__all__]
