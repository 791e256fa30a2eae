"""Where a worker keeps the samples it trains on: ``device``, ``node`` or ``stream``, chosen by size.

* ``device``: each worker holds the splits it uses (on the GPU when they fit there): for small data.
* ``node``: one copy per node in shared memory, written by one worker and mapped read-only by the others.
* ``stream``: each worker reads blocks from the file as it trains, holding at most ``data.cache_bytes``.

`choose_placement` resolves ``auto`` from the bytes the search trains and validates on, the workers per
node and the node's memory; an explicit choice that cannot fit is a one-line error before anything runs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from menndl.errors import UserError

#: ``device`` when every worker's copy together takes at most this share of the node's memory.
DEVICE_SHARE = 0.25
#: ``node`` when the one copy takes at most this share of the node's memory and of the free shared memory.
NODE_SHARE = 0.5
SHARED_MEMORY = "/dev/shm"


@dataclass(frozen=True)
class PlacementChoice:
    """A resolved placement and why.

    Attributes:
        name: ``device``, ``node`` or ``stream``.
        reason: One phrase for ``menndl check`` and the run's first lines.
    """

    name: str
    reason: str


def node_memory_bytes() -> int:
    """This node's physical memory (what the cgroup allows, when that is less)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit_file).read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def shared_memory_free_bytes() -> int:
    """Free bytes in ``/dev/shm`` (0 where there is none)."""
    try:
        return int(shutil.disk_usage(SHARED_MEMORY).free)
    except OSError:
        return 0


def choose_placement(
    requested: str,
    *,
    search_bytes: int,
    workers_per_node: int,
    memory_bytes: int | None = None,
    shared_bytes: int | None = None,
) -> PlacementChoice:
    """Resolve ``data.placement``.

    Args:
        requested: ``auto``, ``device``, ``node`` or ``stream``.
        search_bytes: Bytes of the samples the search trains and validates on, as held in memory.
        workers_per_node: Worker processes that share a node.
        memory_bytes: The node's memory (this node's when None).
        shared_bytes: Free shared memory (this node's ``/dev/shm`` when None).

    Returns:
        The placement.

    Raises:
        UserError: ``node`` was asked for and one copy does not fit in shared memory, or ``device`` was asked
            for and the copies do not fit in memory.
    """
    memory = node_memory_bytes() if memory_bytes is None else memory_bytes
    shared = shared_memory_free_bytes() if shared_bytes is None else shared_bytes
    workers = max(1, workers_per_node)
    copies = search_bytes * workers
    size, mem, shm = _gib(search_bytes), _gib(memory), _gib(shared)
    if requested == "device":
        if copies > 0.9 * memory:
            raise UserError(
                f"data.placement = 'device': {workers} workers x {size} is more than this node's {mem} of "
                "memory; use 'node' or 'stream' (or 'auto')"
            )
        return PlacementChoice("device", f"as asked: {size} in each of {workers} workers")
    if requested == "node":
        if search_bytes > min(0.9 * memory, shared):
            raise UserError(
                f"data.placement = 'node': one copy of {size} does not fit in {SHARED_MEMORY} ({shm} free) "
                f"and {mem} of memory; use 'stream' (or 'auto')"
            )
        return PlacementChoice("node", f"as asked: one copy of {size} per node in {SHARED_MEMORY}")
    if requested == "stream":
        return PlacementChoice("stream", "as asked: read from the file in blocks")
    if copies <= DEVICE_SHARE * memory:
        return PlacementChoice("device", f"{workers} x {size} fits in a quarter of {mem} of memory")
    if search_bytes <= NODE_SHARE * min(memory, shared):
        return PlacementChoice(
            "node", f"{workers} x {size} would not fit a quarter of {mem}; one copy fits {SHARED_MEMORY} ({shm} free)"
        )
    return PlacementChoice("stream", f"{size} is more than half of {mem} of memory or of {SHARED_MEMORY} ({shm} free)")


def _gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"
