"""Python's cyclic garbage collector, tuned for the master loop.

The master's objects die by reference counting: tasks in flight, genomes and
messages form no cycles.  Yet with default thresholds CPython runs a full
collection each time the long-lived objects grow by a quarter, and every full
collection walks every live object: with 27,648 simulated workers (about
700,000 objects for the tasks in flight) each took 0.8 s, every 9 s of CPU,
and freed nothing (measured with ``gc.callbacks`` on ``menndl simulate
benchmarks/scale.toml --workers 27648``: 8 s of 90).  While the loop runs,
young objects are still collected (cycles from caught exceptions, say: every
50,000 allocations), older generations rarely, and the objects alive at the
start (modules, the job, the data description) are frozen out of every
collection.  With `MASTER_THRESHOLDS` the same simulation spent 1.3 s in the
collector instead of 10.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

MASTER_THRESHOLDS = (50_000, 1000, 1000)  # gen-0 allocations, gen-0 runs per gen 1, gen-1 runs per full run


@contextmanager
def master_collector() -> Iterator[None]:
    """Run the body with `MASTER_THRESHOLDS` and the start-up objects frozen; restore both after."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*MASTER_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
