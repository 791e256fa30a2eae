"""Python's cyclic garbage collector, kept out of the master loop.

The master's objects die by reference counting: tasks in flight, genomes and
messages form no cycles.  Yet CPython's collector walks every young object
that survives, again when it is promoted, and every live object at each full
collection: with hundreds of thousands of objects for the tasks in flight,
that is time spent on collections that free nothing (docs/scaling.md has the
figures).

So while the loop runs the collector is off.  Every `FREEZE_ALLOCATIONS`
allocations of tracked objects the survivors are frozen (``gc.freeze``, a
constant-time move to the permanent generation, never walked), and every
`FULL_COLLECTION_SECONDS` of wall time one full collection reclaims whatever
cyclic garbage accumulated: a few hundred milliseconds an hour at most,
instead of a few microseconds per result.  When the loop ends, everything is
unfrozen and the collector is restored as it was.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FREEZE_ALLOCATIONS = 50_000  # tracked allocations between two freezes (what gen-0 would have walked)
FULL_COLLECTION_SECONDS = 3600.0  # wall seconds between full collections while the loop runs


class MasterCollector:
    """The collector's schedule while the master loop runs; call `tick` once per turn of the loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_full = clock()
        self.freezes = 0
        self.full_collections = 0

    def tick(self) -> None:
        """Freeze the survivors when enough allocations piled up; collect everything when an hour passed."""
        if gc.get_count()[0] < FREEZE_ALLOCATIONS:
            return
        now = self._clock()
        if now - self._last_full >= FULL_COLLECTION_SECONDS:
            gc.unfreeze()
            gc.collect()
            self._last_full = now
            self.full_collections += 1
        gc.freeze()  # also resets the allocation count
        self.freezes += 1


@contextmanager
def master_collector(clock: Callable[[], float] = time.monotonic) -> Iterator[MasterCollector]:
    """Run the body with the collector off and the start-up objects frozen; restore both after."""
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield MasterCollector(clock)
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
