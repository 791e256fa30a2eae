"""Kept weights: the top models a writer keeps (:class:`TopModels`), and their files beside a library.

A writer keeps the ``keep_weights`` most accurate models it is offered (:class:`TopModels`) and
writes them into the library's ``/weights`` with its HDF5 batches.  Beside a library being written
lies one file per kept model (``LIB.h5.weights/<id>.h5``).

The HDF5 library itself is written in batches (by the master or a fold process) and is rebuilt
from its journal after a crash, so weights kept only there are lost with the batch, or with the
file.  While a journaled search runs, every model the writer keeps is also written here at once,
complete under a temporary name and then renamed (a crash never leaves half a model under its
final name); a model pushed out of the top is deleted.  A clean close has written them into the
library and removes the folder; :func:`menndl.library.recover` merges what a crash left.

Each file holds the model's float32 arrays as datasets and the attributes ``accuracy``,
``names`` (the state-dict order, JSON) and ``keep`` (how many models the search keeps).  Data
only, like the library.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from menndl.library.journal import weights_dir

__all__ = ["TopModels", "merge_weights_files", "model_arrays", "save_weights_file", "weights_dir", "write_model"]


def model_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A model's arrays as contiguous float32 arrays under str names.

    Raises:
        ValueError: A name is empty or contains ``/``.
    """
    if any("/" in str(name) or not str(name) for name in arrays):
        raise ValueError("weight names must be non-empty and contain no '/'")
    return {str(name): np.ascontiguousarray(np.asarray(value, dtype=np.float32)) for name, value in arrays.items()}


class TopModels:
    """The ``keep`` most accurate models offered to a writer: those in ``/weights`` and those waiting for a batch.

    Args:
        keep: How many to keep (0: none).
        stored: Id -> accuracy of the models the library's ``/weights`` holds already.
    """

    def __init__(self, keep: int, stored: Mapping[int, float]) -> None:
        self.keep = keep
        self._stored = dict(stored)
        self._queue: dict[int, tuple[float, dict[str, np.ndarray]]] = {}  # written into /weights with the next batch
        self._evict: set[int] = set()  # deleted from /weights with the next batch

    def admits(self, accuracy: float) -> tuple[bool, int | None]:
        """Whether a model of this accuracy gets in, and which kept one it then pushes out (the least
        accurate, the later id first on ties)."""
        if self.keep == 0 or not math.isfinite(accuracy):
            return False, None
        kept = {**self._stored, **{i: a for i, (a, _) in self._queue.items()}}
        if len(kept) < self.keep:
            return True, None
        worst = min(kept, key=lambda i: (kept[i], -i))
        return (True, worst) if accuracy > kept[worst] else (False, None)

    def add(self, eval_id: int, accuracy: float, arrays: dict[str, np.ndarray]) -> None:
        """Keep a model (admitted by `admits`); it reaches ``/weights`` with the next `write`."""
        self._queue[eval_id] = (accuracy, arrays)

    def drop(self, eval_id: int) -> None:
        """Push a model out of the top (deleted from ``/weights`` with the next `write`)."""
        if self._queue.pop(eval_id, None) is None:
            self._evict.add(eval_id)
            self._stored.pop(eval_id, None)

    def write(self, weights: h5py.Group) -> None:
        """Delete the models pushed out and write the new ones into the library's ``/weights`` group."""
        for eval_id in sorted(self._evict):
            if str(eval_id) in weights:
                del weights[str(eval_id)]
        self._evict.clear()
        for eval_id, (accuracy, arrays) in self._queue.items():
            if str(eval_id) in weights:
                del weights[str(eval_id)]
            write_model(weights.create_group(str(eval_id)), accuracy, arrays)
            self._stored[eval_id] = accuracy
        self._queue.clear()


def save_weights_file(
    directory: Path, eval_id: int, accuracy: float, arrays: Mapping[str, np.ndarray], keep: int
) -> None:
    """Write one kept model as ``directory/<eval_id>.h5``, complete before it gets that name.

    Raises:
        OSError: The folder or the file cannot be written (h5py's errors are OSErrors too).
    """
    directory.mkdir(exist_ok=True)
    final = directory / f"{int(eval_id)}.h5"
    tmp = directory / f".{int(eval_id)}.{os.getpid()}.tmp"
    try:
        with h5py.File(tmp, "w") as f:
            write_model(f, accuracy, arrays)
            f.attrs["keep"] = np.int64(keep)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_model(group: h5py.Group, accuracy: float, arrays: Mapping[str, np.ndarray]) -> None:
    """Store one model in ``group`` (a library's ``weights/<id>``, or a model file's root): its arrays
    as datasets, its ``accuracy`` and the arrays' ``names`` in state-dict order (JSON)."""
    group.attrs["accuracy"] = np.float64(accuracy)
    group.attrs["names"] = json.dumps(list(arrays))
    for name, array in arrays.items():
        group.create_dataset(name, data=array)


def merge_weights_files(weights: h5py.Group, directory: Path) -> int:
    """Copy the complete model files of ``directory`` into the library's ``weights`` group.

    A model already in the group is replaced.  Then only the ``keep`` best (by accuracy, the
    earlier id first on ties, as the writer ranks them) of the group stay.  A file that does not
    read (cut short by a full disk) is skipped.

    Returns:
        The number of models copied.
    """
    if not directory.is_dir():
        return 0
    copied, keep = 0, 0
    for path in sorted(directory.glob("*.h5")):
        try:
            eval_id = int(path.stem)
            with h5py.File(path, "r") as f:
                accuracy = float(f.attrs["accuracy"])
                names = [str(name) for name in json.loads(str(f.attrs["names"]))]
                arrays = {name: np.asarray(f[name][...], dtype=np.float32) for name in names}
                keep = max(keep, int(f.attrs["keep"]))
        except (OSError, KeyError, ValueError):
            continue
        if str(eval_id) in weights:
            del weights[str(eval_id)]
        write_model(weights.create_group(str(eval_id)), accuracy, arrays)
        copied += 1
    if keep:
        ranked = sorted(weights, key=lambda key: (-float(weights[key].attrs.get("accuracy", -np.inf)), int(key)))
        for key in ranked[keep:]:
            del weights[key]
    return copied
