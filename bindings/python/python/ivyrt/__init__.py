"""ivyrt: green threads for Python on the ivy runtime."""

from ._ivyrt import __version__

__all__ = ["__version__"]
