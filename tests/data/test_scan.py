"""The streaming scan: per-channel statistics, the fingerprint, bad values named by sample, read errors,
and memory bounded by a few blocks whatever the file's size."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from menndl.data import load_dataset
from menndl.data.arrays import DataReadError
from menndl.data.scan import scan_dataset
from menndl.errors import UserError


def write_chunked(path: Path, x: np.ndarray, y: np.ndarray, chunk_rows: int, **options: object) -> Path:
    """An HDF5 file with a chunked 'x' (``chunk_rows`` samples a chunk) and 'y'."""
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(chunk_rows, *x.shape[1:]), **options)
        f["y"] = y
    return path


def scan_error(path: Path, **kwargs: object) -> str:
    """The one-line message of the UserError that opening and scanning ``path`` gives."""
    with pytest.raises(UserError) as info:
        with load_dataset(str(path), **kwargs) as ds:
            scan_dataset(ds, block_bytes=1)  # one chunk per read: many blocks
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ----------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64"])
@pytest.mark.parametrize("sample_shape", [(3, 17), (2, 5, 6), (4, 3, 2, 5)])
def test_stats_equal_numpy_over_the_training_rows(tmp_path: Path, dtype: str, sample_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    n = 230
    offsets = np.arange(sample_shape[0]).reshape(1, -1, *[1] * (len(sample_shape) - 1))
    if dtype == "uint8":
        x = rng.integers(0, 256, size=(n, *sample_shape)).astype(np.uint8)
    else:
        x = (rng.normal(size=(n, *sample_shape)) * (1 + offsets) + 10 * offsets).astype(dtype)
    y = np.arange(n) % 4
    path = write_chunked(tmp_path / "d.h5", x, y, chunk_rows=7)
    with load_dataset(str(path)) as ds:
        reference = x[ds.train.rows].astype(np.float32).astype(np.float64)  # as the samples are trained on
        axes = (0, *range(2, reference.ndim))
        mean, std = reference.mean(axis=axes), reference.std(axis=axes)
        row_bytes = ds.train.x.row_bytes
        assert ds.train.x.block_rows(row_bytes * 20) == 14  # whole chunks: several blocks merged
        for block_bytes in (1, row_bytes * 20, row_bytes * 1000):
            stats = scan_dataset(ds, block_bytes=block_bytes).stats
            assert len(stats.mean) == sample_shape[0]
            np.testing.assert_allclose(stats.mean, mean, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(stats.std, std, rtol=1e-10)
    if dtype != "uint8":
        assert np.ptp(mean) > 5  # the channels really differ: a mix-up would show


def test_stats_use_only_the_training_split(tmp_path: Path) -> None:
    x = np.zeros((60, 1, 4), np.float32)
    y = np.arange(60) % 2
    x_val = np.full((10, 1, 4), 1000.0, np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"], f["x_val"], f["y_val"] = x, y, x_val, y[:10]
    with load_dataset(str(tmp_path / "d.h5"), test_fraction=0.5) as ds:
        x[ds.test.rows] = 7.0  # the carved test rows differ from the training rows
    with h5py.File(tmp_path / "d.h5", "a") as f:
        f["x"][...] = x
    with load_dataset(str(tmp_path / "d.h5"), test_fraction=0.5) as ds:
        stats = scan_dataset(ds, block_bytes=16).stats
    assert stats.mean == (0.0,) and stats.std == (1e-6,)  # a constant channel: the smallest std


# ---------------------------------------------------------------------------------------- fingerprint


def fingerprint(path: Path, block_bytes: int = 2**25, **kwargs: object) -> str:
    with load_dataset(str(path), **kwargs) as ds:
        return scan_dataset(ds, block_bytes=block_bytes).fingerprint


def test_fingerprint_follows_the_content_and_the_split_not_the_block_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 2, 9)).astype(np.float32)
    y = np.arange(120) % 3
    path = write_chunked(tmp_path / "d.h5", x, y, chunk_rows=6)
    base = fingerprint(path)
    assert len(base) == 64
    assert {fingerprint(path, block_bytes=b) for b in (1, 72 * 6, 72 * 6 * 7, 2**30)} == {base}
    changed = x.copy()
    changed[117, 1, 4] += 1e-3  # one value of one sample, in the last chunk
    assert fingerprint(write_chunked(tmp_path / "e.h5", changed, y, chunk_rows=6)) != base
    assert fingerprint(write_chunked(tmp_path / "f.h5", x, y, chunk_rows=30)) == base  # another chunking
    assert fingerprint(path, split_seed=1) != base
    assert fingerprint(path, validation_fraction=0.3) != base
    assert fingerprint(path, num_classes=4) != base
    relabelled = y.copy()
    relabelled[[0, 1]] = relabelled[[1, 0]]
    assert fingerprint(write_chunked(tmp_path / "g.h5", x, relabelled, chunk_rows=6)) != base


def test_progress_reports_every_byte(tmp_path: Path) -> None:
    x = np.ones((50, 1, 8), np.float32)
    path = write_chunked(tmp_path / "d.h5", x, np.arange(50) % 2, chunk_rows=5)
    seen: list[tuple[int, int]] = []
    with load_dataset(str(path)) as ds:
        scan = scan_dataset(ds, block_bytes=32 * 10, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) == 5 and seen[-1] == (1600, 1600) and scan.bytes_read == 1600
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


# ------------------------------------------------------------------------------------------ bad values


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_bad_value_in_the_last_chunk_names_the_sample(tmp_path: Path, value: float, word: str) -> None:
    x = np.random.default_rng(3).normal(size=(103, 2, 4, 4)).astype(np.float32)
    x[101, 1, 2, 3] = value  # chunks of 10 rows: the last chunk is rows 100..102
    path = write_chunked(tmp_path / "bad.h5", x, np.arange(103) % 3, chunk_rows=10)
    message = scan_error(path)
    assert f"{path}: dataset 'x', sample 101:" in message and word in message
    assert "samples 100..102" in message  # the block it was found in


def test_bad_value_in_a_given_test_split_names_its_dataset(tmp_path: Path) -> None:
    x = np.zeros((20, 1, 3), np.float32)
    x_test = np.zeros((9, 1, 3), np.float32)
    x_test[8, 0, 0] = np.nan
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["images/train"], f["labels"] = x, np.arange(20) % 2
        f["images/test"], f["labels_test"] = x_test, np.arange(9) % 2
    from menndl.data.keys import DataKeys

    keys = DataKeys(x="images/train", y="labels", x_test="images/test", y_test="labels_test")
    message = scan_error(tmp_path / "d.h5", keys=keys)
    assert "d.h5: dataset 'images/test', sample 8: NaN" in message


def test_float64_too_large_for_float32_is_named(tmp_path: Path) -> None:
    x = np.zeros((40, 1, 3))
    x[33, 0, 1] = -1e300
    x[35, 0, 1] = np.inf  # a real infinity later: the first bad sample is named, as an overflow
    path = write_chunked(tmp_path / "big.h5", x, np.arange(40) % 2, chunk_rows=40)
    message = scan_error(path)
    assert "big.h5: dataset 'x', sample 33: a value too large for float32" in message
    x[33, 0, 1] = 0
    message = scan_error(write_chunked(tmp_path / "inf.h5", x, np.arange(40) % 2, chunk_rows=40))
    assert "inf.h5: dataset 'x', sample 35: NaN or infinite" in message


def test_label_out_of_range_names_the_sample(tmp_path: Path) -> None:
    y = np.arange(70) % 3
    y[64] = 5
    path = write_chunked(tmp_path / "labels.h5", np.zeros((70, 1, 2), np.float32), y, chunk_rows=10)
    with pytest.raises(UserError) as info:
        load_dataset(str(path), num_classes=3)
    message = str(info.value)
    assert "\n" not in message
    assert f"{path}: dataset 'y', sample 64: label 5 is outside 0..2" in message
    with load_dataset(str(path)) as ds:  # without num_classes, the classes are counted
        assert ds.num_classes == 6


def test_corrupted_chunk_is_a_read_error_naming_the_samples(tmp_path: Path) -> None:
    x = np.random.default_rng(4).normal(size=(100, 1, 32)).astype(np.float32)
    path = write_chunked(tmp_path / "gz.h5", x, np.arange(100) % 2, chunk_rows=10, compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["x"].id.get_chunk_info(4)  # rows 40..49
        assert info.chunk_offset[0] == 40 and info.size > 16
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(bytes(range(256))[: info.size])
    with load_dataset(str(path)) as ds:
        np.testing.assert_array_equal(ds.train.x.read(0, 40), x[:40])  # the other chunks still read
        with pytest.raises(DataReadError) as caught:
            scan_dataset(ds, block_bytes=1)
        message = str(caught.value)
        assert "\n" not in message and caught.value.exit_status == 2
        assert f"{path}: dataset 'x', samples 40..49: cannot be read" in message
        with pytest.raises(DataReadError, match="samples 40..45"):
            ds.train.x.read(40, 46)


# ---------------------------------------------------------------------------------------------- memory


def test_scan_memory_is_bounded_by_a_few_blocks(tmp_path: Path) -> None:
    """A 200 MB file scanned with the default 32 MiB blocks: the peak stays far below the file's size."""
    rows, row = 3200, (4, 64, 64)  # 3200 * 64 KiB = 200 MiB of float32
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", shape=(rows, *row), dtype="f4", chunks=(32, *row))
        rng = np.random.default_rng(5)
        piece = rng.normal(size=(32, *row)).astype(np.float32)
        for start in range(0, rows, 32):
            x[start : start + 32] = piece + start
        f["y"] = np.arange(rows) % 10
    size = path.stat().st_size
    assert size > 200 * 10**6
    gc.collect()
    with load_dataset(str(path)) as ds:
        tracemalloc.start()
        try:
            scan = scan_dataset(ds)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert scan.bytes_read == rows * 4 * 64 * 64 * 4
    assert peak < 150 * 2**20, f"the scan held {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"
