"""benchmarks/make_large_dataset.py at tiny sizes: files load_dataset opens, the planted faults are found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from menndl.data import load_dataset
from menndl.data.arrays import DataReadError
from menndl.data.scan import scan_dataset
from menndl.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "make_large_dataset.py"
TINY = ["--gib", "0.002", "--shape", "1", "16", "16"]  # 2 MiB: 2097 samples of 1 KiB

pytestmark = pytest.mark.timeout(120)


def make(*args: str) -> dict:
    """Run the script with ``--json``; its report."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json"], capture_output=True, text=True, env=env,
                          timeout=100)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_planted_nan_and_bad_label_are_found(tmp_path: Path) -> None:
    path = tmp_path / "faults.h5"
    report = make(str(path), *TINY, "--nan-at", "2090", "--bad-label", "5:12")
    assert report["samples"] == 2097
    with load_dataset(str(path)) as data:
        assert data.input_shape == (1, 16, 16)
        with pytest.raises(UserError, match=r"sample 2090: NaN"):
            scan_dataset(data)
    with pytest.raises(UserError, match=r"sample 5: label 12 is outside 0\.\.9"):
        load_dataset(str(path), num_classes=10)


def test_shards_and_virtual_dataset_read_as_the_single_file(tmp_path: Path) -> None:
    single, sharded = tmp_path / "one.h5", tmp_path / "many.h5"
    make(str(single), *TINY)
    report = make(str(sharded), *TINY, "--shards", "3")
    assert report["shards"] == 3 and len(report["files"]) == 4
    with load_dataset(str(single), num_classes=10) as one, load_dataset(str(sharded), num_classes=10) as many:
        assert np.array_equal(one.raw.x.read(0, 2097), many.raw.x.read(0, 2097))
        assert np.array_equal(one.raw.y, many.raw.y)
        assert scan_dataset(one).fingerprint == scan_dataset(many).fingerprint


def test_npy_matches_and_samples_are_learnable(tmp_path: Path) -> None:
    single = tmp_path / "one.h5"
    make(str(single), *TINY)
    make(str(tmp_path / "npy"), *TINY, "--npy")
    with load_dataset(str(single), num_classes=10) as one, load_dataset(str(tmp_path / "npy" / "x.npy")) as npy:
        assert np.array_equal(one.raw.x.read(0, 2097), npy.raw.x.read(0, 2097))
        # the nearest class mean of the training split classifies the validation split far above chance
        x, y = one.train.read().reshape(len(one.train), -1), one.train.y
        means = np.stack([x[y == c].mean(axis=0) for c in range(10)])
        val = one.val.read().reshape(len(one.val), -1)
        guess = np.argmin(((val[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
        assert (guess == one.val.y).mean() > 0.5


def test_corrupted_chunk_fails_the_scan(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    report = make(str(path), *TINY, "--compression", "gzip", "--corrupt-chunk", "3")
    assert report["corrupt_chunk"]["first_sample"] == 24
    with load_dataset(str(path), num_classes=10) as data, pytest.raises(DataReadError, match="cannot be read"):
        scan_dataset(data)


def test_uint8_contiguous(tmp_path: Path) -> None:
    path = tmp_path / "u8.h5"
    make(str(path), *TINY, "--dtype", "uint8", "--layout", "contiguous")
    with load_dataset(str(path), num_classes=10) as data:
        assert data.train.x.dtype == np.uint8 and data.train.x.chunk_rows == 1
        scan_dataset(data)
