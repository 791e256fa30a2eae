"""Built-in datasets that need no download: ``digits``, ``mnist1d``, ``oscillator1d`` (regression) and ``shapes2d``
(segmentation).

scikit-learn and mnist1d are imported inside the loaders, so importing
:mod:`menndl.data` stays cheap; ``digits`` is read from the CSV file that
scikit-learn ships without importing scikit-learn at all (it pulls in scipy
and pandas: about 1,300 modules on a master that needs two arrays).  Raw
arrays are generated once per process and cached; callers get fresh copies.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from menndl.data.arrays import MemoryArray
from menndl.data.splits import RawSplits
from menndl.errors import UserError


def load_digits_raw() -> RawSplits:
    """The scikit-learn 8x8 digits: 1797 samples, 10 classes, no test split.

    Returns:
        x of shape (1797, 1, 8, 8) float32 in [0, 1] (pixel / 16) and int64 y;
        the test split is left to be carved.

    Raises:
        UserError: If scikit-learn is not installed.
    """
    x, y = _digits_arrays()
    return RawSplits(x=MemoryArray(x.copy(), "digits", "x"), y=y.copy())


def load_mnist1d_raw() -> RawSplits:
    """MNIST-1D generated locally with its default arguments (seed 42).

    Uses ``mnist1d.data.make_dataset`` (never ``get_dataset``, which
    downloads).  The generator reseeds numpy's and Python's global random
    state; that state is restored afterwards.

    Returns:
        x of shape (4000, 1, 40) float32, int64 y, and MNIST-1D's own test set
        (1000 samples) as x_test/y_test.

    Raises:
        UserError: If mnist1d is not installed.
    """
    return _with_test_split("mnist1d", *_mnist1d_arrays())


def load_oscillator1d_raw() -> RawSplits:
    """Damped oscillations and their frequency, damping and amplitude (`menndl.data.oscillator`, seed 0).

    Returns:
        x of shape (4000, 1, 64) float32, float32 targets y of shape (4000, 3), and a test set of 1000
        samples drawn from an independent stream as x_test/y_test; the task is regression.
    """
    return _with_test_split("oscillator1d", *_oscillator1d_arrays(), task="regression")


def load_shapes2d_raw() -> RawSplits:
    """Noisy 32x32 images of discs, rectangles and triangles and their masks (`menndl.data.shapes`, seed 0).

    Returns:
        x of shape (2000, 1, 32, 32) float32, uint8 masks y of shape (2000, 32, 32) (0 background, 1 disc,
        2 rectangle, 3 triangle), and a test set of 500 images drawn from an independent stream as
        x_test/y_test; the task is segmentation.
    """
    return _with_test_split("shapes2d", *_shapes2d_arrays(), task="segmentation")


def _with_test_split(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     task: str = "classification") -> RawSplits:  # fmt: skip
    """Fresh copies of a built-in dataset's cached arrays, with its own test split."""
    return RawSplits(
        x=MemoryArray(x.copy(), name, "x"),
        y=y.copy(),
        x_test=MemoryArray(x_test.copy(), name, "x_test"),
        y_test=y_test.copy(),
        task=task,
    )


#: Built-in dataset names and their loaders.
BUILTIN_DATASETS: dict[str, Callable[[], RawSplits]] = {
    "digits": load_digits_raw,
    "mnist1d": load_mnist1d_raw,
    "oscillator1d": load_oscillator1d_raw,
    "shapes2d": load_shapes2d_raw,
}


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    data = _digits_table()
    images = data[:, :-1].reshape(-1, 8, 8)  # what sklearn.datasets.load_digits does with the same file
    x = np.ascontiguousarray((images / 16.0)[:, None, :, :], dtype=np.float32)
    y = np.asarray(data[:, -1].astype(int), dtype=np.int64)
    return _frozen(x), _frozen(y)


def _digits_table() -> np.ndarray:
    """The 1797 x 65 table (64 pixels, then the digit) of scikit-learn's ``digits.csv.gz``.

    Read straight from the installed package when the file is where scikit-learn keeps it (locating
    a package imports nothing); else through ``sklearn.datasets.load_digits``.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UserError("dataset 'digits' needs scikit-learn, which is not installed (pip install scikit-learn)")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        with gzip.open(path, "rt") as fh:
            table: np.ndarray = np.loadtxt(fh, delimiter=",")
        if table.shape == (1797, 65):
            return table
    from sklearn.datasets import load_digits  # another layout: let scikit-learn read it

    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target])


@functools.cache
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise UserError(
            "dataset 'mnist1d' needs the mnist1d package, which is not installed (pip install mnist1d)"
        ) from exc
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x = np.ascontiguousarray(np.asarray(data["x"])[:, None, :], dtype=np.float32)
    y = np.asarray(data["y"], dtype=np.int64)
    x_test = np.ascontiguousarray(np.asarray(data["x_test"])[:, None, :], dtype=np.float32)
    y_test = np.asarray(data["y_test"], dtype=np.int64)
    return _frozen(x), _frozen(y), _frozen(x_test), _frozen(y_test)


@functools.cache
def _oscillator1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from menndl.data.oscillator import make_oscillator1d

    x, y, x_test, y_test = make_oscillator1d(seed=0, n_train=4000, n_test=1000, length=64)
    return _frozen(x), _frozen(y), _frozen(x_test), _frozen(y_test)


@functools.cache
def _shapes2d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from menndl.data.shapes import make_shapes2d

    x, y, x_test, y_test = make_shapes2d(seed=0, n_train=2000, n_test=500, size=32)
    return _frozen(x), _frozen(y), _frozen(x_test), _frozen(y_test)


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so it cannot be changed by accident."""
    array.flags.writeable = False
    return array
