"""Regression data: the task inferred or set, targets checked in one line, random splits, target statistics."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from menndl.data import Dataset, load_dataset
from menndl.data.scan import scan_dataset
from menndl.errors import UserError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 1, 16)).astype(np.float32)
TARGETS = RNG.normal(size=(40, 3)).astype(np.float32) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]


def write_h5(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle[key] = value
    return path


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


WRITERS = {"h5": write_h5, "npz": write_npz}


def one_line_error(source: Path, **kwargs: object) -> str:
    with pytest.raises(UserError) as info:
        with load_dataset(str(source), test_fraction=0.25, **kwargs) as data:  # type: ignore[arg-type]
            scan_dataset(data)
    message = str(info.value)
    assert "\n" not in message and source.name in message, message
    return message


@pytest.mark.parametrize("fmt", ["h5", "npz"])
@pytest.mark.parametrize(
    "y, outputs",
    [(TARGETS, 3), (TARGETS[:, 0], 1), (TARGETS[:, :1], 1), (TARGETS.astype(np.float64), 3)],
    ids=["2-D", "1-D", "one column", "float64"],
)
def test_float_targets_are_a_regression(tmp_path: Path, fmt: str, y: np.ndarray, outputs: int) -> None:
    path = WRITERS[fmt](tmp_path / f"reg.{fmt}", x=X, y=y)
    with load_dataset(str(path), test_fraction=0.25) as data:
        assert data.task == "regression" and data.num_classes == 0 and data.outputs == outputs
        assert data.train.y.dtype == np.float32 and data.train.y.shape[1:] == y.shape[1:]
        assert len(data.train) + len(data.val) + len(data.test) == 40
        assert "regression of" in data.summary()
        # every row keeps its own targets through the split
        for split in (data.train, data.val, data.test):
            np.testing.assert_array_equal(split.y, y[split.rows].astype(np.float32))


def test_whole_number_labels_stay_classes_unless_the_job_says_regression(tmp_path: Path) -> None:
    labels = np.arange(40) % 4
    path = write_h5(tmp_path / "whole.h5", x=X, y=labels.astype(np.float64))
    with load_dataset(str(path)) as data:
        assert data.task == "classification" and data.num_classes == 4
    with load_dataset(str(path), task="regression") as data:
        assert data.task == "regression" and data.outputs == 1 and data.train.y.dtype == np.float32
    integers = write_h5(tmp_path / "int2d.h5", x=X, y=np.stack([labels, labels], 1))
    assert "data.task" in one_line_error(integers)
    with load_dataset(str(integers), task="regression") as data:
        assert data.outputs == 2


@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_bad_targets_are_one_line(tmp_path: Path, fmt: str) -> None:
    nan = TARGETS.copy()
    nan[7, 1] = np.nan
    message = one_line_error(WRITERS[fmt](tmp_path / f"nan.{fmt}", x=X, y=nan))
    assert "'y'" in message and "NaN or infinite" in message and "sample 7" in message
    inf = TARGETS.copy()
    inf[3, 0] = np.inf
    assert "sample 3" in one_line_error(WRITERS[fmt](tmp_path / f"inf.{fmt}", x=X, y=inf))
    test_nan = TARGETS[:10].copy()
    test_nan[2, 2] = np.nan
    message = one_line_error(WRITERS[fmt](tmp_path / f"t.{fmt}", x=X, y=TARGETS, x_test=X[:10], y_test=test_nan))
    assert "'y_test'" in message and "sample 2" in message
    huge = TARGETS.astype(np.float64)
    huge[5, 0] = 1e300
    assert "float32" in one_line_error(WRITERS[fmt](tmp_path / f"huge.{fmt}", x=X, y=huge))
    narrow = WRITERS[fmt](tmp_path / f"w.{fmt}", x=X, y=TARGETS, x_test=X[:10], y_test=TARGETS[:10, :2])
    message = one_line_error(narrow)
    assert "'y_test'" in message and "2 targets" in message and "3 targets" in message
    wrong = WRITERS[fmt](tmp_path / f"n.{fmt}", x=X, y=TARGETS[:30])
    assert "'y'" in one_line_error(wrong) and "30" in one_line_error(wrong)
    strings = WRITERS[fmt](tmp_path / f"c.{fmt}", x=X, y=(TARGETS + 1j).astype(np.complex64))
    assert "regression targets" in one_line_error(strings, task="regression")


def test_num_classes_and_a_wrong_builtin_task_are_refused(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "reg.h5", x=X, y=TARGETS)
    assert "data.num_classes" in one_line_error(path, num_classes=3)
    with pytest.raises(UserError, match="'digits' is a classification dataset, but data.task = 'regression'"):
        load_dataset("digits", task="regression")


def test_regression_splits_are_seeded_random_and_identities_see_the_targets(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "reg.h5", x=X, y=TARGETS)
    with load_dataset(str(path), split_seed=3) as a, load_dataset(str(path), split_seed=3) as b:
        for name in ("train", "val", "test"):
            np.testing.assert_array_equal(a.splits[name].rows, b.splits[name].rows)
        assert a.identity() == b.identity()
        first, fingerprint = a.identity(), scan_dataset(a).fingerprint
    with load_dataset(str(path), split_seed=4) as c:
        assert not np.array_equal(c.val.rows, a.val.rows)
    other = TARGETS.copy()
    other[0, 0] += 1.0
    changed = write_h5(tmp_path / "changed.h5", x=X, y=other)
    with load_dataset(str(changed), split_seed=3) as d:
        assert d.identity() != first and scan_dataset(d).fingerprint != fingerprint


def test_target_statistics_are_the_training_split_s() -> None:
    y = TARGETS.copy()
    y[:, 2] = 4.0  # a constant target: standard deviation 1, not 0
    data = Dataset.from_arrays("arrays", X[:30], y[:30], X[30:], y[30:])
    mean, std = data.target_stats()
    np.testing.assert_allclose(mean, y[:30].astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(std[:2], y[:30, :2].astype(np.float64).std(0), rtol=1e-6)
    assert std[2] == 1.0
    assert Dataset.from_arrays("c", X[:30], np.arange(30) % 3, X[30:], np.arange(10) % 3).target_stats() == ((), ())


def test_the_builtin_oscillator_is_a_regression_with_its_own_test_set() -> None:
    with load_dataset("oscillator1d") as data:
        assert data.task == "regression" and data.outputs == 3 and data.input_shape == (1, 64)
        assert (len(data.train), len(data.val), len(data.test)) == (3200, 800, 1000)
        assert np.isfinite(data.test.y).all() and data.test.y.dtype == np.float32
