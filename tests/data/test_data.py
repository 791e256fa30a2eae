"""Tests for menndl.data: built-in datasets, user files, splits and errors (the row-index API)."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from menndl.data import Dataset, load_dataset
from menndl.data.scan import scan_dataset
from menndl.data.splits import split_indices
from menndl.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------
# helpers


def write_h5(path: Path, **arrays: object) -> Path:
    """Write arrays as root datasets of a new HDF5 file."""
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle[key] = value
    return path


def write_npz(path: Path, **arrays: object) -> Path:
    """Write arrays to a new .npz archive."""
    np.savez(path, **arrays)
    return path


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write a single .npy array under the given name (whatever its suffix)."""
    with open(path, "wb") as handle:
        np.save(handle, array)


WRITERS = {"h5": write_h5, "npz": write_npz}


def make_xy(
    n: int = 60, sample_shape: tuple[int, ...] = (1, 8), classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random float64 samples and balanced labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *sample_shape))
    y = np.arange(n) % classes
    return x, y


def rows(x: np.ndarray) -> set[bytes]:
    """Each sample's bytes, for overlap checks."""
    return {sample.tobytes() for sample in np.ascontiguousarray(x)}


def materialise(ds: Dataset) -> dict[str, np.ndarray]:
    """``x_train``, ``y_train``, ... of a (small) dataset, read into memory."""
    out = {}
    for name, split in ds.splits.items():
        out[f"x_{name}"], out[f"y_{name}"] = split.read(), split.y
    return out


def fingerprint(source: str, **kwargs: object) -> str:
    """The scan's fingerprint of a dataset opened with ``kwargs``."""
    with load_dataset(source, **kwargs) as ds:
        return scan_dataset(ds).fingerprint


def open_and_scan(source: str, **kwargs: object) -> None:
    """Open and scan the dataset: what the master does before a search (metadata, labels, then values)."""
    with load_dataset(source, **kwargs) as ds:
        scan_dataset(ds)


def assert_user_error(
    source: str, must_contain: list[str], **kwargs: object
) -> str:
    """Open and scan ``source``, expect a one-line UserError containing every string."""
    with pytest.raises(UserError) as info:
        open_and_scan(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    for text in must_contain:
        assert text in message, f"{text!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------
# built-in datasets


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mnist1d() -> Dataset:
    return load_dataset("mnist1d")


def check_layout(ds: Dataset) -> None:
    for name, split in ds.splits.items():
        x, y = split.read(), split.y
        assert x.dtype == split.x.memory_dtype and x.flags.c_contiguous, name
        assert y.dtype == np.int64 and y.ndim == 1 and len(y) == len(x) == len(split.rows), name
        assert split.rows.dtype == np.int64 and np.all(np.diff(split.rows) > 0), name
        assert x.shape[1:] == ds.input_shape


def test_digits_shapes_and_classes(digits: Dataset) -> None:
    check_layout(digits)
    data = materialise(digits)
    assert digits.name == "digits"
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    sizes = (len(digits.train), len(digits.val), len(digits.test))
    assert sum(sizes) == 1797
    assert sizes == (1150, 288, 359)  # test 0.2 * 1797, then val 0.2 * 1438, rounded
    for y in (digits.train.y, digits.val.y, digits.test.y):
        assert np.unique(y).tolist() == list(range(10))  # stratified: every class everywhere
    assert data["x_train"].dtype == np.float32
    assert 0.0 <= data["x_train"].min() and data["x_train"].max() <= 1.0
    assert digits.summary() == (
        "digits: 1150 train / 288 val / 359 test, input (1, 8, 8) float32, 10 classes, 449.2 KiB"
    )


def test_digits_splits_partition_the_data(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    original = (bunch.images / 16.0).astype(np.float32)[:, None]
    data = materialise(digits)
    train, val, test = rows(data["x_train"]), rows(data["x_val"]), rows(data["x_test"])
    assert not train & val and not train & test and not val & test
    assert train | val | test == rows(original)
    # The splits are rows of the one array: disjoint, covering it, and each split's rows are its samples.
    every = np.concatenate([digits.train.rows, digits.val.rows, digits.test.rows])
    assert sorted(every.tolist()) == list(range(1797))
    for split in digits.splits.values():
        assert split.x is digits.train.x
        np.testing.assert_array_equal(split.read(), original[split.rows])
    # Labels travel with their samples.
    label_of = {s.tobytes(): int(t) for s, t in zip(original, bunch.target)}
    for x, y in ((data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])):
        assert [label_of[s.tobytes()] for s in x] == y.tolist()


def test_digits_test_fraction_zero_gives_empty_test() -> None:
    ds = load_dataset("digits", test_fraction=0.0, validation_fraction=0.25)
    check_layout(ds)
    assert ds.test.read().shape == (0, 1, 8, 8) and ds.test.y.shape == (0,)
    assert len(ds.val) == round(0.25 * 1797)
    assert "/ 0 test, input (1, 8, 8) float32, 10 classes" in ds.summary()


def test_mnist1d_shapes_and_classes(mnist1d: Dataset) -> None:
    check_layout(mnist1d)
    data = materialise(mnist1d)
    assert mnist1d.input_shape == (1, 40)
    assert mnist1d.num_classes == 10
    assert len(mnist1d.train) + len(mnist1d.val) == 4000
    assert len(mnist1d.val) == 800
    assert data["x_test"].shape == (1000, 1, 40)  # its own test set, not carved
    assert mnist1d.test.x is not mnist1d.train.x and mnist1d.test.x.key == "x_test"
    assert not rows(data["x_train"]) & rows(data["x_val"])
    for y in (mnist1d.train.y, mnist1d.val.y, mnist1d.test.y):
        assert np.unique(y).tolist() == list(range(10))


def test_mnist1d_leaves_global_random_state_alone() -> None:
    from menndl.data import builtin

    builtin._mnist1d_arrays.cache_clear()
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    load_dataset("mnist1d")
    assert np.random.random() == expected_np
    assert random.random() == expected_py


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_builtin_is_deterministic(name: str, digits: Dataset, mnist1d: Dataset) -> None:
    first = {"digits": digits, "mnist1d": mnist1d}[name]
    second = load_dataset(name)
    a, b = materialise(first), materialise(second)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(a[field], b[field])
    for split in ("train", "val", "test"):
        assert np.array_equal(first.splits[split].rows, second.splits[split].rows)
    print_first = scan_dataset(first).fingerprint
    assert print_first == scan_dataset(second).fingerprint
    assert len(print_first) == 64
    assert first.identity() == second.identity() and len(first.identity()) == 64
    other_seed = load_dataset(name, split_seed=1)
    assert scan_dataset(other_seed).fingerprint != print_first
    assert other_seed.identity() != first.identity()


def test_loaded_arrays_are_independent_copies(digits: Dataset) -> None:
    fresh = load_dataset("digits")
    before = scan_dataset(digits).fingerprint
    read = fresh.train.read()
    read[0] = 99.0  # a materialised split is a copy
    assert scan_dataset(fresh).fingerprint == before
    fresh.train.x.array[0] = 99.0  # type: ignore[attr-defined]  # the loaded array itself: not the cache
    assert scan_dataset(fresh).fingerprint != before
    assert scan_dataset(digits).fingerprint == before
    assert fingerprint("digits") == before


def test_fingerprint_is_identical_in_another_process(
    digits: Dataset, mnist1d: Dataset
) -> None:
    code = (
        "from menndl.data import load_dataset\n"
        "from menndl.data.scan import scan_dataset\n"
        "print(scan_dataset(load_dataset('digits')).fingerprint)\n"
        "print(scan_dataset(load_dataset('mnist1d')).fingerprint)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == [scan_dataset(digits).fingerprint, scan_dataset(mnist1d).fingerprint]


def test_fingerprint_ignores_name(digits: Dataset) -> None:
    renamed = dataclasses.replace(digits, name="other")
    assert scan_dataset(renamed).fingerprint == scan_dataset(digits).fingerprint
    assert renamed.identity() == digits.identity()


def test_import_is_light() -> None:
    code = (
        "import sys, menndl.data, menndl.data.scan\n"
        "heavy = [m for m in ('torch', 'sklearn', 'mnist1d') if m in sys.modules]\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "none"


def test_loading_builtins_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from menndl.data import load_dataset\n"
        "from menndl.data.scan import scan_dataset\n"
        "scan_dataset(load_dataset('digits'))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------
# user files


@pytest.mark.parametrize("fmt", ["h5", "npz"])
@pytest.mark.parametrize("sample_shape", [(2, 16), (1, 6, 5), (3, 4, 4, 4)])
def test_user_file_layouts(tmp_path: Path, fmt: str, sample_shape: tuple[int, ...]) -> None:
    x, y = make_xy(100, sample_shape, classes=4)
    path = WRITERS[fmt](tmp_path / f"data.{fmt}", x=x, y=y)
    with load_dataset(str(path)) as ds:
        check_layout(ds)
        data = materialise(ds)
        assert ds.input_shape == sample_shape
        assert ds.num_classes == 4
        assert (len(ds.train), len(ds.val), len(ds.test)) == (64, 16, 20)
        combined = np.concatenate([data["x_train"], data["x_val"], data["x_test"]])
        assert rows(combined) == rows(x.astype(np.float32))
        assert len(rows(data["x_train"]) | rows(data["x_val"]) | rows(data["x_test"])) == 100
        for split in ds.splits.values():
            np.testing.assert_array_equal(split.read(), x[split.rows].astype(np.float32))
            np.testing.assert_array_equal(split.y, y[split.rows])


def test_hdf5_suffix_variants_and_extra_keys(tmp_path: Path) -> None:
    x, y = make_xy(40)
    path = write_h5(tmp_path / "DATA.HDF5", x=x, y=y, notes=np.arange(3), X=np.ones(2))
    with h5py.File(path, "a") as handle:
        handle.create_group("extra")["x"] = np.zeros(3)
    with load_dataset(str(path), test_fraction=0.0) as ds:
        assert len(ds.train) + len(ds.val) == 40


def test_given_val_and_test_used_as_is(tmp_path: Path) -> None:
    x, y = make_xy(50, (1, 4, 4), seed=1)
    x_val, y_val = make_xy(7, (1, 4, 4), seed=2)
    x_test, y_test = make_xy(9, (1, 4, 4), seed=3)
    for fmt, writer in WRITERS.items():
        path = writer(
            tmp_path / f"given.{fmt}",
            x=x, y=y, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
        )
        with load_dataset(str(path)) as ds:
            data = materialise(ds)
            np.testing.assert_array_equal(data["x_train"], x.astype(np.float32))
            np.testing.assert_array_equal(data["y_train"], y)
            np.testing.assert_array_equal(data["x_val"], x_val.astype(np.float32))
            np.testing.assert_array_equal(data["y_val"], y_val)
            np.testing.assert_array_equal(data["x_test"], x_test.astype(np.float32))
            np.testing.assert_array_equal(data["y_test"], y_test)
            assert (ds.val.x.key, ds.test.x.key) == ("x_val", "x_test")
            np.testing.assert_array_equal(ds.val.rows, np.arange(7))


def test_given_test_only_carves_validation(tmp_path: Path) -> None:
    x, y = make_xy(50)
    x_test, y_test = make_xy(10, seed=5)
    path = write_npz(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    with load_dataset(str(path), validation_fraction=0.3) as ds:
        assert (len(ds.train), len(ds.val), len(ds.test)) == (35, 15, 10)
        np.testing.assert_array_equal(ds.test.read(), x_test.astype(np.float32))


def test_given_val_only_carves_test(tmp_path: Path) -> None:
    x, y = make_xy(50)
    x_val, y_val = make_xy(10, seed=5)
    path = write_h5(tmp_path / "d.h5", x=x, y=y, x_val=x_val, y_val=y_val)
    with load_dataset(str(path), test_fraction=0.1) as ds:
        assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 10, 5)
        np.testing.assert_array_equal(ds.val.read(), x_val.astype(np.float32))
    with load_dataset(str(path), test_fraction=0.0) as no_test:
        assert no_test.test.read().shape == (0, 1, 8)
        np.testing.assert_array_equal(no_test.train.read(), x.astype(np.float32))


def test_conversions(tmp_path: Path) -> None:
    """uint8 samples stay uint8 in memory (converted per batch on the device); float labels become int64."""
    x = np.arange(30 * 1 * 5, dtype=np.uint8).reshape(30, 1, 5)
    y = (np.arange(30) % 3).astype(np.float32)  # integral float labels
    path = write_h5(tmp_path / "ints.h5", x=x, y=y)
    with load_dataset(str(path), test_fraction=0.0) as ds:
        check_layout(ds)
        assert ds.num_classes == 3
        data = materialise(ds)
        assert data["x_train"].dtype == np.uint8 and ds.sample_bytes == 5
        combined = np.sort(np.concatenate([data["x_train"], data["x_val"]]).ravel())
        np.testing.assert_array_equal(combined, np.arange(150, dtype=np.uint8))
    wide = write_h5(tmp_path / "wide.h5", x=x.astype(np.int64), y=y)
    with load_dataset(str(wide), test_fraction=0.0) as ds:  # dtypes not kept are read as float32
        assert ds.train.read().dtype == np.float32 and ds.sample_bytes == 20


def test_num_classes_counts_labels_in_every_split(tmp_path: Path) -> None:
    x, y = make_xy(20, classes=2)
    x_val, _ = make_xy(4, seed=1)
    path = write_npz(tmp_path / "d.npz", x=x, y=y, x_val=x_val, y_val=np.array([0, 1, 4, 1]))
    with load_dataset(str(path), test_fraction=0.0) as ds:
        assert ds.num_classes == 5
    with load_dataset(str(path), test_fraction=0.0, num_classes=7) as ds:
        assert ds.num_classes == 7
    message = assert_user_error(str(path), ["d.npz", "'y_val'", "sample 2", "label 4"], test_fraction=0.0,
                                num_classes=3)  # fmt: skip
    assert "0..2" in message


def test_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    x, y = make_xy(30)
    write_npz(tmp_path / "data" / "rel.npz", x=x, y=y)
    with load_dataset("data/rel.npz", base_dir=tmp_path) as ds:
        assert ds.name == "data/rel.npz"
        expected = scan_dataset(ds).fingerprint
    monkeypatch.chdir(tmp_path)
    assert fingerprint("data/rel.npz") == expected
    assert_user_error("data/rel.npz", ["data/rel.npz", "no such file"], base_dir=tmp_path / "data")


def test_user_file_is_deterministic(tmp_path: Path) -> None:
    x, y = make_xy(80, classes=5)
    path = str(write_h5(tmp_path / "d.h5", x=x, y=y))
    assert fingerprint(path) == fingerprint(path)
    assert fingerprint(path) != fingerprint(path, split_seed=3)


# --------------------------------------------------------------------------
# split_indices


def test_split_indices_stratified() -> None:
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = split_indices(y, 0.2, 7)
    assert len(held) == 20 and len(keep) == 80
    assert np.bincount(y[held]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    again = split_indices(y, 0.2, 7)
    assert np.array_equal(keep, again[0]) and np.array_equal(held, again[1])
    assert not np.array_equal(held, split_indices(y, 0.2, 8)[1])


def test_split_indices_random_when_a_class_is_singleton() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 1, 0])
    keep, held = split_indices(y, 0.3, 0)
    assert len(held) == 3 and len(keep) == 7
    assert not set(keep.tolist()) & set(held.tolist())


def test_split_indices_sizes() -> None:
    y = np.array([0, 1] * 5)
    assert [len(split_indices(y, f, 0)[1]) for f in (0.0, 0.01, 0.25, 0.5)] == [0, 1, 3, 5]
    with pytest.raises(UserError, match="no training samples"):
        split_indices(y, 0.96, 0)


# --------------------------------------------------------------------------
# errors


def good_xy() -> dict[str, np.ndarray]:
    x, y = make_xy(20)
    return {"x": x, "y": y}


def with_(**changes: object) -> dict[str, object]:
    arrays: dict[str, object] = dict(good_xy())
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    return arrays


X, Y = make_xy(20)
NAN_X = X.copy()
NAN_X[0, 0, :2] = np.nan
NAN_X[3, 0, 1] = np.inf

# (case id, arrays to write, strings the message must contain besides the file name)
ARRAY_CASES: list[tuple[str, dict[str, object], list[str]]] = [
    ("missing x", with_(x=None, data=X), ["'x'", "'data'", "'y'"]),
    ("missing y", with_(y=None, labels=Y), ["'y'", "'labels'"]),
    ("x_val without y_val", with_(x_val=X), ["'x_val'", "'y_val'"]),
    ("y_val without x_val", with_(y_val=Y), ["'x_val'", "'y_val'"]),
    ("x_test without y_test", with_(x_test=X), ["'x_test'", "'y_test'"]),
    ("y_test without x_test", with_(y_test=Y), ["'x_test'", "'y_test'"]),
    ("x bool", with_(x=X > 0), ["'x'", "bool"]),
    ("x complex", with_(x=X + 1j), ["'x'", "complex"]),
    ("x strings", with_(x=np.full((20, 1, 3), "a")), ["'x'", "string"]),
    ("x 2-D", with_(x=X[:, 0, :]), ["'x'", "(20, 8)", "(samples, channels, *spatial)"]),
    ("x 6-D", with_(x=np.zeros((20, 1, 2, 2, 2, 2))), ["'x'", "3 to 5 dimensions"]),
    ("x_val 2-D", with_(x_val=X[:, 0, :], y_val=Y), ["'x_val'", "(samples, channels"]),
    ("x zero-size sample", with_(x=np.zeros((20, 1, 0))), ["'x'", "(20, 1, 0)"]),
    ("y 2-D", with_(y=Y[:, None]), ["'y'", "(20, 1)", "1-D"]),
    ("y NaN", with_(y=np.where(Y == 1, np.nan, Y)), ["'y'", "NaN"]),
    ("y bool", with_(y=Y > 0), ["'y'", "bool"]),
    ("y strings", with_(y=np.array(["cat"] * 20)), ["'y'", "string"]),
    ("y too few", with_(y=Y[:19]), ["'y'", "19", "'x'", "20"]),
    ("y_val too many", with_(x_val=X[:5], y_val=Y[:6]), ["'y_val'", "6", "'x_val'", "5"]),
    ("y_test too few", with_(x_test=X[:5], y_test=Y[:4]), ["'y_test'", "4", "'x_test'"]),
    ("empty x", with_(x=np.zeros((0, 1, 8)), y=np.zeros(0, dtype=int)), ["'x'", "no samples"]),
    ("empty x_val", with_(x_val=np.zeros((0, 1, 8)), y_val=np.zeros(0, dtype=int)), ["'x_val'"]),
    ("x_val shape differs", with_(x_val=X[:, :, :7], y_val=Y), ["'x_val'", "(1, 7)", "(1, 8)"]),
    ("x_test shape differs", with_(x_test=X[:, None], y_test=Y), ["'x_test'", "(1, 1, 8)"]),
    # Found by the streaming scan (not by opening): the first bad sample is named, and the count in its block.
    ("x NaN", with_(x=NAN_X), ["'x'", "sample 0", "NaN or infinite", "3 in samples 0..19"]),
    ("x_test NaN", with_(x_test=NAN_X, y_test=Y), ["'x_test'", "sample 0", "NaN or infinite"]),
    ("x overflows float32", with_(x=np.full((20, 1, 2), 1e300)), ["'x'", "sample 0", "too large for float32"]),
    ("negative labels", with_(y=Y - 1), ["'y'", "negative", "-1"]),
    ("negative test labels", with_(x_test=X, y_test=-Y), ["'y_test'", "negative"]),
    ("huge label", with_(y=np.where(Y == 0, 2**40, Y)), ["'y'", str(2**40)]),
    ("only one class", with_(y=np.zeros(20, dtype=int)), ["'y'", "only one class"]),
]


@pytest.mark.parametrize("fmt", ["h5", "npz"])
@pytest.mark.parametrize(
    "arrays, expected", [c[1:] for c in ARRAY_CASES], ids=[c[0] for c in ARRAY_CASES]
)
def test_bad_arrays(
    tmp_path: Path, fmt: str, arrays: dict[str, object], expected: list[str]
) -> None:
    if fmt == "h5" and any(np.asarray(v).dtype.kind == "U" for v in arrays.values()):
        arrays = {
            k: (np.char.encode(v) if np.asarray(v).dtype.kind == "U" else v)
            for k, v in arrays.items()
        }
    path = WRITERS[fmt](tmp_path / f"bad.{fmt}", **arrays)
    assert_user_error(str(path), [f"bad.{fmt}", *expected])


@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_non_integer_labels_of_a_classification(tmp_path: Path, fmt: str) -> None:
    # auto reads them as regression targets; data.task = "classification" refuses them in one line
    path = WRITERS[fmt](tmp_path / f"bad.{fmt}", **with_(y=Y + 0.5))
    assert_user_error(str(path), [f"bad.{fmt}", "'y'", "non-integer"], task="classification")


def test_hdf5_specific_errors(tmp_path: Path) -> None:
    path = tmp_path / "group.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("x")["inner"] = X
        handle["y"] = Y
    assert_user_error(str(path), ["group.h5", "'x'", "group"])

    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=["a", "b"], dtype=h5py.string_dtype())
        handle["y"] = Y[:2]
    assert_user_error(str(path), ["vlen.h5", "'x'", "dtype"])

    path = tmp_path / "null.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = X
        handle.create_dataset("y", data=h5py.Empty("f"))
    assert_user_error(str(path), ["null.h5", "'y'", "null"])

    path = tmp_path / "compound.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = np.zeros((20, 1, 2), dtype=[("a", "f4"), ("b", "i4")])
        handle["y"] = Y
    assert_user_error(str(path), ["compound.h5", "'x'", "dtype"])


def test_npz_object_array(tmp_path: Path) -> None:
    obj = np.empty((20, 1, 2), dtype=object)
    obj[...] = 1.0
    path = write_npz(tmp_path / "objects.npz", x=obj, y=Y)
    assert_user_error(str(path), ["objects.npz", "'x'", "Python objects"])


def test_file_level_errors(tmp_path: Path) -> None:
    x, y = make_xy(20)
    good_h5 = write_h5(tmp_path / "good.h5", x=x, y=y).read_bytes()
    good_npz = write_npz(tmp_path / "good.npz", x=x, y=y).read_bytes()

    cases: list[tuple[Path, Callable[[Path], object], list[str]]] = [
        (tmp_path / "absent.h5", lambda p: None, ["no such file"]),
        (tmp_path / "folder.h5", lambda p: p.mkdir(), ["directory"]),
        (tmp_path / "text.h5", lambda p: p.write_text("x,y\n1,2\n"), ["not an HDF5 file"]),
        (tmp_path / "empty.hdf5", lambda p: p.write_bytes(b""), ["not an HDF5 file"]),
        (tmp_path / "zip.h5", lambda p: p.write_bytes(good_npz), ["rename it to .npz"]),
        (tmp_path / "cut.h5", lambda p: p.write_bytes(good_h5[: len(good_h5) // 2]), ["HDF5"]),
        (tmp_path / "text.npz", lambda p: p.write_text("x,y\n1,2\n"), [".npz"]),
        (tmp_path / "empty.npz", lambda p: p.write_bytes(b""), [".npz"]),
        (tmp_path / "hdf.npz", lambda p: p.write_bytes(good_h5), ["rename it to .h5"]),
        (tmp_path / "cut.npz", lambda p: p.write_bytes(good_npz[: len(good_npz) // 2]), ["corrupt"]),
        (tmp_path / "single.npz", lambda p: save_npy(p, x), [".npy"]),
        (tmp_path / "folder.npz", lambda p: p.mkdir(), ["directory"]),
    ]
    for path, make, expected in cases:
        make(path)
        assert_user_error(str(path), [path.name, *expected])


def test_truncated_npz_member(tmp_path: Path) -> None:
    x, y = make_xy(200)
    path = tmp_path / "member.npz"
    np.savez_compressed(path, x=x, y=y)
    data = bytearray(path.read_bytes())
    data[100:400] = bytes(300)  # corrupt the compressed payload of 'x'
    path.write_bytes(bytes(data))
    assert_user_error(str(path), ["member.npz"])


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "secret.h5", x=X, y=Y)
    path.chmod(0)
    try:
        assert_user_error(str(path), ["secret.h5", "cannot be read"])
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("data/train.csv", ["data/train.csv", "'digits'", "'mnist1d'", ".h5", ".npz"]),
        ("digitz", ["digitz", "'digits'", "'mnist1d'"]),
        ("mnist", ["mnist", ".hdf5"]),
        ("", ["''", "'digits'"]),
    ],
)
def test_unknown_source(source: str, expected: list[str]) -> None:
    assert_user_error(source, expected)


def test_bad_parameters(tmp_path: Path) -> None:
    assert_user_error("digits", ["validation_fraction", "0"], validation_fraction=0.0)
    assert_user_error("digits", ["validation_fraction", "1.0"], validation_fraction=1.0)
    assert_user_error("digits", ["test_fraction", "-0.1"], test_fraction=-0.1)
    assert_user_error("digits", ["test_fraction", "nan"], test_fraction=float("nan"))
    assert_user_error("digits", ["split_seed", "-1"], split_seed=-1)
    assert_user_error("digits", ["split_seed", "'1'"], split_seed="1")


def test_splits_that_leave_no_training_data(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "tiny.npz", x=np.zeros((2, 1, 3)), y=np.array([0, 1]))
    assert_user_error(str(path), ["tiny.npz", "'x'", "no training samples"], test_fraction=0.9)
    assert_user_error(str(path), ["tiny.npz", "'x'", "only one class"], test_fraction=0.0)


def test_digits_read_without_sklearn_equal_sklearns_byte_for_byte(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    """The CSV read directly and the fallback through scikit-learn give sklearn's load_digits arrays."""
    import importlib.util
    from types import SimpleNamespace

    from sklearn.datasets import load_digits

    from menndl.data import builtin

    bunch = load_digits()
    expected_x = np.ascontiguousarray((bunch.images / 16.0)[:, None, :, :], dtype=np.float32)
    x, y = builtin._digits_arrays()
    assert x.tobytes() == expected_x.tobytes() and y.tobytes() == bunch.target.astype(np.int64).tobytes()
    direct = builtin._digits_table()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: SimpleNamespace(origin=str(tmp_path / "x.py")))
    fallback = builtin._digits_table()  # no CSV where it is looked for: scikit-learn reads it
    assert fallback.tobytes() == direct.tobytes() and direct.shape == (1797, 65)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="needs scikit-learn"):
        builtin._digits_table()


def test_master_reads_digits_without_importing_sklearn_scipy_or_pandas() -> None:
    """The master needs two arrays' shapes, the scan and the fingerprint, not 1,300 modules."""
    code = (
        "import sys\n"
        "from menndl.data import load_dataset\n"
        "from menndl.data.scan import scan_dataset\n"
        "from menndl.job import load_job\n"
        "job = load_job('jobs/digits.toml')\n"
        "scan_dataset(load_dataset(job.data.source, keys=job.data.keys()))\n"
        "print(','.join(sorted(m for m in ('sklearn', 'scipy', 'pandas') if m in sys.modules)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"the master imported {out.stdout.strip()}"
