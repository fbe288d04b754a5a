"""hvsim.faults: fault injectors that wrap the actors' seams (transport, memory pools, host steps).

The seams exist in ``hvsim.actors`` (``runtime.Transport``, the pool allocator); the injectors
themselves are the fault-injection issue's work and are not written yet.
"""

__all__: list[str] = []
