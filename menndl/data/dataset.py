"""The :class:`Dataset`: splits as rows of sample arrays that stay where they are, and :func:`load_dataset`.

Every process opens the dataset itself (the master, each worker, ``menndl train``); for a given source,
keys, fractions and split seed the splits are identical everywhere.  Opening reads metadata and labels
only: the samples are read in blocks by the streaming check (`menndl.data.scan`) and by the worker's
placement.  :meth:`Dataset.identity` lets a worker confirm cheaply that it opened the data the master
checked.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from menndl.data.arrays import SampleArray, human_bytes
from menndl.data.builtin import BUILTIN_DATASETS
from menndl.data.files import FILE_SUFFIXES, mask_pixel, open_dataset_file
from menndl.data.keys import DataKeys
from menndl.data.splits import RawSplits, Split, carve_splits
from menndl.errors import UserError

SPLIT_NAMES = ("train", "val", "test")
_IDENTITY_VERSION = b"menndl.dataset.identity.v1\0"
#: Rows of each sample array hashed into the identity (evenly spaced, first and last included).
IDENTITY_ROWS = 16


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification, regression or segmentation dataset split into train, validation and test, by row index.

    Attributes:
        name: The source it was opened from (``"digits"``, a file path, ...).
        train: The training split.
        val: The validation split (at least one sample).
        test: The test split (may be empty).
        num_classes: The number of classes (given in the job, or the largest label in any split + 1);
            0 for regression.
        raw: The arrays the splits are rows of (closed by `close`).
        ignore_label: The mask label that marks pixels no loss or metric counts (segmentation), or None.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    raw: RawSplits
    ignore_label: int | None = None

    @property
    def task(self) -> str:
        """What the labels are: ``classification``, ``regression`` or ``segmentation`` (`menndl.tasks.TASKS`)."""
        return self.raw.task

    @property
    def outputs(self) -> int:
        """Values the network predicts per sample (per pixel: segmentation): the classes, or the regression targets."""
        if self.task == "regression":
            return int(np.prod(self.train.y.shape[1:], dtype=np.int64))
        return self.num_classes

    def target_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and standard deviation of each regression target over the training split.

        The worker trains on targets standardised with these (a constant target gets 1, not 0), and the
        library records them.  Empty tuples for classification.
        """
        if self.task != "regression":
            return (), ()
        y = self.train.y.reshape(len(self.train), -1).astype(np.float64)
        std = y.std(axis=0)
        std[~(std > 0)] = 1.0
        return tuple(float(v) for v in y.mean(axis=0)), tuple(float(v) for v in std)

    def class_pixels(self) -> tuple[int, ...]:
        """Pixels of each class in the training masks, the ignore label's left out (segmentation; else empty).

        What ``training.class_weights = "balanced"`` weighs by.
        """
        if self.task != "segmentation":
            return ()
        y = self.train.y.reshape(-1)
        if self.ignore_label is not None:
            y = y[y != self.ignore_label]
        return tuple(int(n) for n in np.bincount(y, minlength=self.num_classes)[: self.num_classes])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, ``(C, *spatial)``."""
        return tuple(int(d) for d in self.train.x.shape[1:])

    @property
    def splits(self) -> dict[str, Split]:
        """The splits by name (``train``, ``val``, ``test``)."""
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample in memory (its kept dtype, see `SampleArray.memory_dtype`)."""
        x = self.train.x
        return int(np.prod(x.shape[1:], dtype=np.int64)) * x.memory_dtype.itemsize

    def split_bytes(self, *names: str) -> int:
        """Bytes in memory of the samples of the named splits."""
        return sum(len(self.splits[name]) for name in names) * self.sample_bytes

    def identity(self) -> str:
        """SHA-256 hex digest of what a worker can check without reading the data.

        Covers num_classes, the shapes and dtypes of the sample arrays, every label, every split's rows,
        and `IDENTITY_ROWS` evenly spaced samples of each array: another file, another split or another
        shard at a sampled place gives another identity.

        Returns:
            A 64-character lowercase hex string.
        """
        digest = hashlib.sha256(_IDENTITY_VERSION)
        digest.update(f"num_classes={self.num_classes}\0".encode())
        if self.task != "classification":
            digest.update(f"task={self.task}\0".encode())
        for array in self.raw.arrays():
            digest.update(f"{array.key}:{array.dtype.str}:{array.shape}\0".encode())
            if len(array):
                for row in np.unique(np.linspace(0, len(array) - 1, IDENTITY_ROWS).round().astype(np.int64)):
                    digest.update(np.ascontiguousarray(array.read(int(row), int(row) + 1)).tobytes())
        for name, split in self.splits.items():
            digest.update(f"{name}:{len(split)}\0".encode())
            digest.update(np.ascontiguousarray(split.rows, dtype=np.int64).tobytes())
            digest.update(label_bytes(split.y))
        return digest.hexdigest()

    def summary(self) -> str:
        """One line describing the dataset.

        Returns:
            E.g. ``"digits: 1150 train / 288 val / 359 test, input (1, 8, 8), 10 classes"``.
        """
        x = self.train.x
        size = human_bytes(sum(len(a) * a.row_bytes for a in self.raw.arrays()))
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test, "
            f"input {self.input_shape} {x.dtype}, {self._labels_summary()}, {size}"
        )

    def _labels_summary(self) -> str:
        """``10 classes``, ``regression of 3 targets`` or ``segmentation into 4 classes``."""
        if self.task == "segmentation":
            ignore = "" if self.ignore_label is None else f" (label {self.ignore_label} ignored)"
            return f"segmentation into {self.num_classes} classes{ignore}"
        if self.task == "regression":
            return f"regression of {self.outputs} target{'s' if self.outputs != 1 else ''}"
        return f"{self.num_classes} classes"

    def close(self) -> None:
        """Close the files behind the splits."""
        self.raw.close()

    @classmethod
    def from_arrays(
        cls,
        name: str,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        x_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        num_classes: int = 0,
    ) -> Dataset:
        """A dataset of arrays in memory, split as given (benchmarks and tests).

        Args:
            name: What it is called.
            x_train: Training samples ``(N, C, *spatial)``.
            y_train: Their integer labels.
            x_val: Validation samples (at least one).
            y_val: Their labels.
            x_test: Test samples (none when None).
            y_test: Their labels.
            num_classes: The class count (0: the largest label + 1).

        Raises:
            UserError: the arrays are inconsistent.
        """
        from menndl.data.arrays import MemoryArray
        from menndl.data.files import check_arrays

        arrays = {"x": x_train, "x_val": x_val}
        labels = {"y": np.asarray(y_train), "y_val": np.asarray(y_val)}
        if x_test is not None and y_test is not None:
            arrays["x_test"], labels["y_test"] = x_test, np.asarray(y_test)
        samples: dict[str, SampleArray] = {key: MemoryArray(np.asarray(v), name, key) for key, v in arrays.items()}
        raw = check_arrays(samples, labels, sorted([*arrays, *labels]), name)
        train, val, test = carve_splits(raw, validation_fraction=0.5, test_fraction=0.0, seed=0, source=name)
        if raw.task == "regression":
            return cls(name=name, train=train, val=val, test=test, num_classes=0, raw=raw)
        largest = max(int(split.y.max()) for split in (train, val, test) if split.y.size)
        return cls(name=name, train=train, val=val, test=test, num_classes=num_classes or largest + 1, raw=raw)

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_dataset(
    source: str,
    *,
    base_dir: Path | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    keys: DataKeys | None = None,
    num_classes: int = 0,
    task: str = "auto",
    ignore_label: int | None = None,
) -> Dataset:
    """Open a built-in dataset or a dataset file and choose its splits (the samples are not read).

    Args:
        source: ``"digits"``, ``"mnist1d"``, or a path ending in ``.h5``, ``.hdf5``, ``.npz`` or ``.npy``.
        base_dir: Folder that relative paths are resolved against (the job file's folder); None resolves
            them against the working directory.
        validation_fraction: Fraction held out for validation when the data has no validation split,
            taken from what is left after the test split; in (0, 1).
        test_fraction: Fraction of ``x`` held out for testing when the data has no test split; in [0, 1).
            0 gives an empty test split.
        split_seed: Non-negative seed for the carved splits.
        keys: Where the arrays are in the file (`DataKeys` defaults when None).
        num_classes: The number of classes; a label outside ``0..num_classes-1`` is an error.  0 infers
            it from the largest label.
        task: ``classification``, ``regression``, ``segmentation``, or ``auto`` to infer it from the
            training labels (`menndl.data.files.infer_task`).
        ignore_label: A segmentation mask label that marks pixels to leave out of every loss and metric
            (not a class: ``num_classes`` need not cover it); None for none.

    Returns:
        The dataset, identical for identical arguments on every process; close it when done.

    Raises:
        UserError: If the source is not recognised, a fraction or the seed is out of range, or the data
            is missing or malformed.
    """
    _check_fraction("validation_fraction", validation_fraction, allow_zero=False)
    _check_fraction("test_fraction", test_fraction, allow_zero=True)
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or split_seed < 0:
        raise UserError(f"split_seed: expected a non-negative integer, got {split_seed!r}")
    display, raw = _open_source(source, base_dir, keys, task)
    try:
        train, val, test = carve_splits(
            raw,
            validation_fraction=float(validation_fraction),
            test_fraction=float(test_fraction),
            seed=int(split_seed),
            source=display,
        )
        if ignore_label is not None and raw.task != "segmentation":
            raise UserError(f"{display}: data.ignore_label = {ignore_label} is for segmentation masks, but the "
                            f"labels are {_TASK_LABELS[raw.task]}; leave it out")  # fmt: skip
        if raw.task == "regression":
            if num_classes:
                raise UserError(f"{display}: data.num_classes = {num_classes} is for class labels, but the "
                                "labels are regression targets; leave it out")  # fmt: skip
            return Dataset(name=display, train=train, val=val, test=test, num_classes=0, raw=raw)
        if raw.task == "segmentation":
            classes = _mask_classes(raw, keys or DataKeys(), display, num_classes, ignore_label)
        else:
            largest = max(int(split.y.max()) for split in (train, val, test) if len(split))
            if num_classes:
                _check_label_range(raw, keys or DataKeys(), display, num_classes)
            classes = num_classes or largest + 1
        if classes < 2:
            raise UserError(f"{display}: the labels hold {classes} class; at least 2 are needed")
    except BaseException:
        raw.close()
        raise
    return Dataset(name=display, train=train, val=val, test=test, num_classes=classes, raw=raw,
                   ignore_label=ignore_label)  # fmt: skip


_TASK_LABELS = {"classification": "class labels", "regression": "regression targets"}


def _mask_classes(raw: RawSplits, keys: DataKeys, display: str, num_classes: int, ignore: int | None) -> int:
    """The class count of segmentation masks: ``num_classes``, checked against every label but ``ignore``, or
    the largest such label + 1; a training split with a single class is refused.

    Raises:
        UserError: naming the first label out of range with its sample and pixel.
    """
    largest = -1
    for (_, y_key), masks in zip(keys.pairs(), (raw.y, raw.y_val, raw.y_test)):
        if masks is None or not masks.size:
            continue
        counted = masks if ignore is None else np.where(masks == ignore, 0, masks)
        top = int(counted.max())
        if num_classes and top >= num_classes:
            flat = int(np.flatnonzero(counted.reshape(-1) >= num_classes)[0])
            sample, position = mask_pixel(flat, masks.shape[1:])
            ignored = "" if ignore is None else f", data.ignore_label = {ignore}"
            raise UserError(f"{display}: dataset '{y_key}', sample {sample}, pixel {position}: label "
                            f"{int(counted.reshape(-1)[flat])} is outside 0..{num_classes - 1} (data.num_classes = "
                            f"{num_classes}{ignored})")  # fmt: skip
        largest = max(largest, top)
    present = np.unique(raw.y if ignore is None else raw.y[raw.y != ignore])
    if len(present) < 2:
        what = f"only class {int(present[0])}" if len(present) else "no labelled pixel"
        raise UserError(f"{display}: the training masks '{keys.y}' hold {what}; at least 2 classes are needed to "
                        "train a segmentation")  # fmt: skip
    return num_classes or largest + 1


def _check_label_range(raw: RawSplits, keys: DataKeys, display: str, num_classes: int) -> None:
    """Raise UserError naming the first label outside ``0..num_classes-1`` and its sample index."""
    for (_, y_key), labels in zip(keys.pairs(), (raw.y, raw.y_val, raw.y_test)):
        if labels is None:
            continue
        bad = np.flatnonzero(labels >= num_classes)
        if bad.size:
            raise UserError(
                f"{display}: dataset '{y_key}', sample {bad[0]}: label {labels[bad[0]]} is outside "
                f"0..{num_classes - 1} (data.num_classes = {num_classes}; {bad.size} such labels)"
            )


def label_bytes(y: np.ndarray) -> bytes:
    """The bytes of a split's labels that identities and fingerprints hash (int64 class labels as ever;
    segmentation masks as stored, in their compact type)."""
    if y.ndim > 1 and y.dtype.kind in "iu":
        return np.ascontiguousarray(y).tobytes()
    return np.ascontiguousarray(y, dtype=np.int64 if y.dtype.kind in "iu" else np.float32).tobytes()


def _open_source(source: str, base_dir: Path | None, keys: DataKeys | None, task: str) -> tuple[str, RawSplits]:
    """Resolve ``source`` and open its arrays; returns (display name, raw)."""
    accepted = (
        f"expected one of {', '.join(repr(n) for n in BUILTIN_DATASETS)} or a path ending in {', '.join(FILE_SUFFIXES)}"
    )
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise UserError(f"dataset source {source!r} is not valid; {accepted}")
    display = os.fspath(source)
    if display in BUILTIN_DATASETS:
        raw = BUILTIN_DATASETS[display]()
        if task not in ("auto", raw.task):
            raise UserError(f"dataset {display!r} is a {raw.task} dataset, but data.task = {task!r}")
        return display, raw
    path = Path(display).expanduser()
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise UserError(f"dataset source {display!r} is not recognised; {accepted}")
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return display, open_dataset_file(path, display, keys, task)


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> None:
    """Raise UserError unless ``value`` is a finite number in range."""
    low = "[0" if allow_zero else "(0"
    ok = (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
        and value < 1
    )
    if not ok:
        raise UserError(f"{name}: expected a number in {low}, 1), got {value!r}")


def open_configured(options: Mapping[str, Any], base_dir: Path | str | None) -> Dataset:
    """Open the dataset a job's ``[data]`` table describes (a `menndl.job.DataConfig` as a dict).

    Args:
        options: The table's fields (``source``, the fractions, ``split_seed``, the ``*_key`` names,
            ``num_classes``, ``task``, ``ignore_label`` (-1: none); others are ignored).
        base_dir: Folder that relative paths are resolved against.

    Returns:
        The opened dataset.

    Raises:
        UserError: as `load_dataset`.
    """
    defaults = DataKeys()
    keys = DataKeys(**{name: str(options.get(f"{name}_key", getattr(defaults, name))) for name in _KEY_NAMES})
    return load_dataset(
        str(options["source"]),
        base_dir=None if base_dir is None else Path(base_dir),
        validation_fraction=float(options.get("validation_fraction", 0.2)),
        test_fraction=float(options.get("test_fraction", 0.2)),
        split_seed=int(options.get("split_seed", 0)),
        keys=keys,
        num_classes=int(options.get("num_classes", 0)),
        task=str(options.get("task", "auto")),
        ignore_label=None if options.get("ignore_label", -1) in (-1, None) else int(options["ignore_label"]),
    )


_KEY_NAMES = ("x", "y", "x_val", "y_val", "x_test", "y_test")
