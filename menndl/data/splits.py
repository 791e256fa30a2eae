"""Deterministic train / validation / test splitting.

Every MPI rank loads the data itself, so all randomness here comes from a
``numpy.random.default_rng`` seeded with the user's ``split_seed``: the same
inputs give bit-identical splits on every rank and every platform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from menndl.data.arrays import JoinedArray, SampleArray
from menndl.errors import UserError

#: Seed-sequence suffixes that keep the test and validation carves independent.
_TEST_STREAM = 1
_VALIDATION_STREAM = 2


@dataclass(frozen=True)
class RawSplits:
    """Checked arrays before any split is carved.

    Attributes:
        x: Samples, ``(N, C, *spatial)``, on disk or in memory.
        y: Labels: int64 class labels ``(N,)``, or float32 regression targets ``(N,)`` or ``(N, T)``.
        x_val: Given validation samples, or None to carve them from ``x``.
        y_val: Given validation labels (None exactly when ``x_val`` is).
        x_test: Given test samples, or None to carve them from ``x``.
        y_test: Given test labels (None exactly when ``x_test`` is).
        task: What the labels are (`menndl.tasks.TASKS`).
    """

    x: SampleArray
    y: np.ndarray
    x_val: SampleArray | None = None
    y_val: np.ndarray | None = None
    x_test: SampleArray | None = None
    y_test: np.ndarray | None = None
    task: str = "classification"

    def arrays(self) -> list[SampleArray]:
        """The distinct sample arrays."""
        out: list[SampleArray] = []
        for array in (self.x, self.x_val, self.x_test):
            if array is not None and all(array is not seen for seen in out):
                out.append(array)
        return out

    def close(self) -> None:
        """Close the files behind the sample arrays."""
        for array in self.arrays():
            array.close()


@dataclass(frozen=True, eq=False)
class Split:
    """A split as rows of a sample array: nothing is copied.

    Attributes:
        x: The array the samples are rows of.
        rows: Sorted unique int64 row indices into ``x``.
        y: The labels of those rows (int64 class labels, or float32 regression targets).
    """

    x: SampleArray
    rows: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(len(self.rows))

    def read(self) -> np.ndarray:
        """The samples in memory (for small data and tests: the placements read them in blocks)."""
        return self.x.take(self.rows)


def held_out_count(n: int, fraction: float) -> int:
    """Number of samples a split of ``fraction`` holds out of ``n``.

    Args:
        n: Number of samples available.
        fraction: Fraction to hold out, in [0, 1).

    Returns:
        ``fraction * n`` rounded half up, and at least 1 when ``fraction > 0``.
    """
    if fraction <= 0:
        return 0
    return max(1, int(math.floor(fraction * n + 0.5)))


def split_indices(
    y: np.ndarray,
    fraction: float,
    seed: int | Sequence[int],
    *,
    source: str = "dataset",
    key: str = "x",
    purpose: str = "held-out",
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into a kept part and a held-out part.

    The split is stratified (each class contributes in proportion to its
    size, and keeps at least one sample when possible) when every class has
    at least two samples; otherwise it is a plain seeded random split.

    Args:
        y: Integer labels, shape ``(N,)``.
        fraction: Fraction of samples to hold out, in [0, 1).
        seed: Seed for ``numpy.random.default_rng``.
        source: Dataset name or file, used in error messages.
        key: Name of the array being split, used in error messages.
        purpose: Name of the held-out split, used in error messages.
        stratify: Stratify by class (``y`` are class labels); False for regression targets.

    Returns:
        ``(keep_idx, held_idx)``: sorted int64 index arrays that partition
        ``range(N)``; ``len(held_idx) == held_out_count(N, fraction)``.

    Raises:
        UserError: If holding out that many samples would leave none to keep.
    """
    labels = np.asarray(y)
    n = int(labels.shape[0])
    held = held_out_count(n, fraction)
    if held == 0:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if held >= n:
        raise UserError(
            f"{source}: cannot carve a {purpose} split of {fraction:g} from '{key}' "
            f"({n} samples): no training samples would be left; "
            f"provide more samples or a smaller fraction"
        )
    rng = np.random.default_rng(seed)
    if not stratify:
        return _unstratified(rng, n, held)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if counts.min() >= 2:
        alloc = _stratified_allocation(counts, held)
        parts = []
        for c in range(len(classes)):
            members = np.flatnonzero(inverse == c)
            parts.append(rng.permutation(members)[: alloc[c]])
        held_idx = np.sort(np.concatenate(parts)).astype(np.int64)
    else:
        return _unstratified(rng, n, held)
    mask = np.ones(n, dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask).astype(np.int64), held_idx


def _unstratified(rng: np.random.Generator, n: int, held: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keep_idx, held_idx)`` of a plain seeded random split holding out ``held`` of ``n``."""
    held_idx = np.sort(rng.permutation(n)[:held]).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask).astype(np.int64), held_idx


def _stratified_allocation(counts: np.ndarray, held: int) -> np.ndarray:
    """Per-class held-out counts by the largest-remainder method.

    Each class keeps at least one sample unless ``held`` is too large for
    that to be possible.
    """
    n = int(counts.sum())
    quotas = held * counts / n
    alloc = np.minimum(np.floor(quotas).astype(np.int64), counts - 1)
    remainders = quotas - np.floor(quotas)
    # Largest remainder first; ties broken by class order (deterministic).
    order = np.lexsort((np.arange(len(counts)), -remainders))
    remaining = held - int(alloc.sum())
    for cap in (counts - 1, counts):
        while remaining > 0:
            progressed = False
            for c in order:
                if remaining > 0 and alloc[c] < cap[c]:
                    alloc[c] += 1
                    remaining -= 1
                    progressed = True
            if not progressed:
                break
    return alloc


def carve_splits(
    raw: RawSplits,
    *,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    source: str,
) -> tuple[Split, Split, Split]:
    """Choose the rows of the train, validation and test splits from the labels alone.

    Given ``x_val``/``x_test`` are used whole.  A missing test split is carved from ``x`` first (when
    ``test_fraction > 0``; otherwise the test split is empty), then a missing validation split is carved
    from what is left.

    Args:
        raw: Checked arrays.
        validation_fraction: Fraction of the remaining samples to hold out for validation when
            ``raw.x_val`` is None.
        test_fraction: Fraction of ``x`` to hold out for testing when ``raw.x_test`` is None.
        seed: The user's split seed.
        source: Dataset name or file, used in error messages.

    Returns:
        ``(train, val, test)``.

    Raises:
        UserError: If a split would leave the training split empty or with fewer than two classes.
    """
    rows, y = np.arange(len(raw.y), dtype=np.int64), raw.y
    classes = raw.task == "classification"  # regression targets are split at random, without strata
    carved = []
    if raw.x_test is not None and raw.y_test is not None:
        test = Split(raw.x_test, np.arange(len(raw.y_test), dtype=np.int64), raw.y_test)
    elif test_fraction > 0:
        keep, held = split_indices(
            y, test_fraction, [seed, _TEST_STREAM], source=source, purpose="test", stratify=classes
        )
        test = Split(raw.x, rows[held], y[held])
        rows, y = rows[keep], y[keep]
        carved.append("test")
    else:
        test = Split(raw.x, np.zeros(0, dtype=np.int64), np.zeros((0, *y.shape[1:]), dtype=y.dtype))
    if raw.x_val is not None and raw.y_val is not None:
        val = Split(raw.x_val, np.arange(len(raw.y_val), dtype=np.int64), raw.y_val)
    else:
        keep, held = split_indices(
            y, validation_fraction, [seed, _VALIDATION_STREAM], source=source, purpose="validation", stratify=classes
        )
        val = Split(raw.x, rows[held], y[held])
        rows, y = rows[keep], y[keep]
        carved.append("validation")
    if carved and classes and len(np.unique(y)) < 2:
        raise UserError(
            f"{source}: after carving the {' and '.join(carved)} split(s) from 'x', "
            f"the training split has only one class; provide more samples per class "
            f"or give 'x_val'/'y_val' and 'x_test'/'y_test' explicitly"
        )
    return Split(raw.x, rows, y), val, test


def joined_split(first: Split, second: Split) -> Split:
    """Two splits as one (``menndl train`` trains on the training and validation splits together).

    Rows of the same array are merged in row order; rows of two arrays are joined through `JoinedArray`.
    """
    if first.x is second.x:
        rows = np.concatenate([first.rows, second.rows])
        labels = np.concatenate([first.y, second.y])
        order = np.argsort(rows, kind="stable")
        return Split(first.x, rows[order], labels[order])
    joined = JoinedArray(first.x, second.x)
    rows = np.concatenate([first.rows, len(first.x) + second.rows])
    return Split(joined, rows, np.concatenate([first.y, second.y]))
