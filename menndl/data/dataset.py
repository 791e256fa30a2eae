"""The :class:`Dataset` container and :func:`load_dataset`.

Every MPI rank calls :func:`load_dataset` itself; for a given source,
fractions and split seed the result is bit-identical everywhere, which
:meth:`Dataset.fingerprint` lets ranks verify cheaply.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from menndl.data.builtin import BUILTIN_DATASETS
from menndl.data.files import FILE_SUFFIXES, read_dataset_file
from menndl.data.splits import RawSplits, carve_splits
from menndl.errors import UserError

_SPLIT_NAMES = ("train", "val", "test")
_FINGERPRINT_VERSION = b"menndl.dataset.v1\0"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset split into train, validation and test.

    The constructor converts x arrays to C-contiguous float32 and y arrays
    to int64, and checks that the splits are consistent; an empty test
    split of any shape is reshaped to ``(0, *input_shape)``.

    Attributes:
        name: The source it was loaded from (``"digits"``, a file path, ...).
        x_train: Samples, float32, ``(N, C, *spatial)``, 1 to 3 spatial dims.
        y_train: Labels, int64, ``(N,)``.
        x_val: Validation samples (at least one).
        y_val: Validation labels.
        x_test: Test samples; may have 0 samples when there is no test split.
        y_test: Test labels.
        num_classes: Number of classes: the largest label in any split + 1.

    Raises:
        ValueError: If the arrays are inconsistent (a programming error;
            user data is checked by :func:`load_dataset`).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        num_classes = self.num_classes
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, (int, np.integer))
            or num_classes < 2
        ):
            raise ValueError(f"num_classes is {num_classes!r}; expected an integer >= 2")
        object.__setattr__(self, "num_classes", int(num_classes))
        x_train = np.ascontiguousarray(self.x_train, dtype=np.float32)
        if not 3 <= x_train.ndim <= 5 or x_train.shape[0] == 0:
            raise ValueError(
                f"x_train has shape {x_train.shape}; expected (N>0, C, *spatial) "
                "with 1 to 3 spatial dims"
            )
        sample_shape = x_train.shape[1:]
        for split in _SPLIT_NAMES:
            x = np.ascontiguousarray(getattr(self, f"x_{split}"), dtype=np.float32)
            y = np.asarray(getattr(self, f"y_{split}"))
            if y.size == 0:
                y = y.reshape(0)
            if y.dtype.kind not in "iu" and y.size:
                raise ValueError(f"y_{split} has dtype {y.dtype}; expected integer labels")
            y = np.ascontiguousarray(y, dtype=np.int64)
            if x.size == 0 and split == "test":
                x = x.reshape((0, *sample_shape))
            if x.shape[1:] != sample_shape:
                raise ValueError(
                    f"x_{split} samples have shape {x.shape[1:]}; x_train's have {sample_shape}"
                )
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(
                    f"y_{split} has shape {y.shape}; expected ({len(x)},) to match x_{split}"
                )
            if split == "val" and len(x) == 0:
                raise ValueError("x_val has no samples")
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(
                    f"y_{split} has labels outside 0..{self.num_classes - 1}"
                )
            object.__setattr__(self, f"x_{split}", x)
            object.__setattr__(self, f"y_{split}", y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, ``(C, *spatial)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the content, independent of the name.

        Covers num_classes and the shapes, dtypes and bytes of all six
        arrays, so ranks can check that they loaded identical data.

        Returns:
            A 64-character lowercase hex string.
        """
        digest = hashlib.sha256(_FINGERPRINT_VERSION)
        digest.update(f"num_classes={self.num_classes}\0".encode())
        for split in _SPLIT_NAMES:
            for prefix in ("x", "y"):
                array = getattr(self, f"{prefix}_{split}")
                header = f"{prefix}_{split}:{array.dtype.str}:{array.shape}\0"
                digest.update(header.encode())
                if array.size:
                    digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))  # type: ignore[arg-type]  # no copy
        return digest.hexdigest()

    def summary(self) -> str:
        """One line describing the dataset.

        Returns:
            E.g. ``"digits: 1150 train / 288 val / 359 test, input (1, 8, 8),
            10 classes"``.
        """
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} val / "
            f"{len(self.x_test)} test, input {self.input_shape}, "
            f"{self.num_classes} classes"
        )


def load_dataset(
    source: str,
    *,
    base_dir: Path | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Dataset:
    """Load a built-in dataset or a dataset file and split it.

    Args:
        source: ``"digits"``, ``"mnist1d"``, or a path ending in ``.h5``,
            ``.hdf5`` or ``.npz``.
        base_dir: Folder that relative paths are resolved against (the job
            file's folder); None resolves them against the working directory.
        validation_fraction: Fraction held out for validation when the data
            has no validation split, taken from what is left after the test
            split; in (0, 1).
        test_fraction: Fraction of ``x`` held out for testing when the data
            has no test split; in [0, 1).  0 gives an empty test split.
        split_seed: Non-negative seed for the carved splits.

    Returns:
        The dataset, identical for identical arguments on every process.

    Raises:
        UserError: If the source is not recognised, a fraction or the seed
            is out of range, or the data is missing or malformed.
    """
    _check_fraction("validation_fraction", validation_fraction, allow_zero=False)
    _check_fraction("test_fraction", test_fraction, allow_zero=True)
    if (
        isinstance(split_seed, bool)
        or not isinstance(split_seed, (int, np.integer))
        or split_seed < 0
    ):
        raise UserError(f"split_seed: expected a non-negative integer, got {split_seed!r}")
    display, raw = _read_source(source, base_dir)
    x_train, y_train, x_val, y_val, x_test, y_test = carve_splits(
        raw,
        validation_fraction=float(validation_fraction),
        test_fraction=float(test_fraction),
        seed=int(split_seed),
        source=display,
    )
    num_classes = 1 + max(int(y.max()) for y in (y_train, y_val, y_test) if y.size)
    return Dataset(
        name=display,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
    )


def _read_source(source: str, base_dir: Path | None) -> tuple[str, RawSplits]:
    """Resolve ``source`` and read its raw arrays; returns (display name, raw)."""
    accepted = (
        f"expected one of {', '.join(repr(n) for n in BUILTIN_DATASETS)} "
        f"or a path ending in {', '.join(FILE_SUFFIXES)}"
    )
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise UserError(f"dataset source {source!r} is not valid; {accepted}")
    display = os.fspath(source)
    if display in BUILTIN_DATASETS:
        return display, BUILTIN_DATASETS[display]()
    path = Path(display).expanduser()
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise UserError(f"dataset source {display!r} is not recognised; {accepted}")
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return display, read_dataset_file(path, display)


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
