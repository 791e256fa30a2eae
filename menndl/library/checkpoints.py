"""Training checkpoints beside a library: ``LIB.h5.checkpoints/<id>.h5``, one per row that may train on.

A worker writes the checkpoint of a row it trained (weights, optimizer state, epochs, random state:
`menndl.worker.checkpoint`) when the task asks for it: the row may be promoted to the next rung
(`menndl.master.rungs`), or its children may start from its weights (``search.inherit_weights``).  A file
is complete under its final name or absent (written under a temporary name, synced, renamed).  The master
deletes a file once nothing can use it any more (`menndl.master.training_plan`); a resumed search deletes
what a crash left that no row or task refers to (`stray_checkpoints`).  Data only: HDF5 datasets and JSON
attributes, never a pickle.  This module only names and removes files (no h5py, no torch).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from pathlib import Path

__all__ = ["CHECKPOINTS_SUFFIX", "checkpoint_ids", "checkpoints_dir", "stray_checkpoints"]

CHECKPOINTS_SUFFIX = ".checkpoints"


def checkpoints_dir(library: str | Path) -> Path:
    """The folder of a library's checkpoints: ``LIB.h5`` -> ``LIB.h5.checkpoints``."""
    p = Path(library)
    return p.with_name(p.name + CHECKPOINTS_SUFFIX)


def checkpoint_ids(library: str | Path) -> set[int]:
    """Ids of the complete checkpoints that lie beside ``library`` (temporaries are not counted)."""
    folder = checkpoints_dir(library)
    if not folder.is_dir():
        return set()
    ids = set()
    for entry in os.scandir(folder):
        stem, dot, suffix = entry.name.partition(".")
        if dot and suffix == "h5" and stem.isdigit():
            ids.add(int(stem))
    return ids


def stray_checkpoints(library: str | Path, wanted: Collection[int]) -> int:
    """Delete every file in the folder but the checkpoints of ``wanted`` ids (temporaries of killed writers
    among them); returns how many were deleted."""
    folder = checkpoints_dir(library)
    if not folder.is_dir():
        return 0
    removed = 0
    for entry in os.scandir(folder):
        stem, dot, suffix = entry.name.partition(".")
        if dot and suffix == "h5" and stem.isdigit() and int(stem) in wanted:
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(entry.path)
            removed += 1
    return removed
