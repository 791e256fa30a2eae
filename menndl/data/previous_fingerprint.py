"""The dataset fingerprint of the release before streaming data (``menndl.dataset.v1``), to recognise its libraries.

That release loaded every split into memory and hashed the six arrays: samples as float32 of shape
``(N, *input_shape)`` and labels as int64, split by split. Its libraries record that digest and no
``dataset_identity``; `menndl run --resume` and `menndl train` compare such a library with this digest
(the data of those libraries fitted in memory, so gathering the splits here does too).
"""

from __future__ import annotations

import hashlib

import numpy as np

from menndl.data.dataset import Dataset

_VERSION = b"menndl.dataset.v1\0"
_SPLITS = ("train", "val", "test")


def previous_release_fingerprint(data: Dataset) -> str:
    """SHA-256 hex digest of ``data`` as the previous release computed it.

    Args:
        data: The opened dataset (its splits are gathered by row into memory).
    """
    digest = hashlib.sha256(_VERSION)
    digest.update(f"num_classes={data.num_classes}\0".encode())
    splits = data.splits
    for name in _SPLITS:
        split = splits.get(name)
        rows = 0 if split is None else len(split)
        x = np.zeros((0, *data.input_shape), dtype=np.float32)
        y = np.zeros(0, dtype=np.int64)
        if split is not None and rows:
            x = np.ascontiguousarray(split.x.take(split.rows), dtype=np.float32).reshape(rows, *data.input_shape)
            y = np.ascontiguousarray(split.y, dtype=np.int64)
        for prefix, array in (("x", x), ("y", y)):
            digest.update(f"{prefix}_{name}:{array.dtype.str}:{array.shape}\0".encode())
            if array.size:
                digest.update(array.tobytes())  # (the splits are in memory already: one copy more)
    return digest.hexdigest()
