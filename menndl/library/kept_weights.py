"""Kept weights of a library being written, one file per model beside it (``LIB.h5.weights/<id>.h5``).

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
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

WEIGHTS_SUFFIX = ".weights"


def weights_dir(library: str | Path) -> Path:
    """The folder of a library's kept weights while it is written: ``LIB.h5`` -> ``LIB.h5.weights``."""
    p = Path(library)
    return p.with_name(p.name + WEIGHTS_SUFFIX)


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


def drop_weights_file(directory: Path, eval_id: int) -> None:
    """Delete a model pushed out of the top (nothing if it has no file)."""
    (directory / f"{int(eval_id)}.h5").unlink(missing_ok=True)


def remove_weights_dir(library: str | Path) -> None:
    """Remove the folder (after a clean close, or once recovery merged it)."""
    shutil.rmtree(weights_dir(library), ignore_errors=True)


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
