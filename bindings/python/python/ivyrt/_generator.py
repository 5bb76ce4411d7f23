"""Generators on a stack of their own: ``ivyrt.generator(fn)`` (``src/generator.rs``).

asyncio's async generators answer "a sequence whose production waits"; here the
producer is a plain function given a ``yield_`` callable::

    def lines(yield_):
        reader, writer = ivyrt.open_connection(host, port)
        for line in reader:          # each read parks the iterating task
            yield_(line.decode())
        writer.close()

    for line in ivyrt.generator(lines):
        ...

``yield_`` may be called at any depth of the body's own calls. The generator
supports ``next``/``send``/``throw``/``close`` and returns the body's return
value as ``StopIteration.value``; it stays on the thread that created it.
"""

from ._ivyrt import Generator, generator

__all__ = ["generator", "Generator"]
