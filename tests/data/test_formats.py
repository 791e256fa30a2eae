"""Dataset files as they come from real projects: custom keys, ``.npy`` memory maps, HDF5 virtual datasets
and external links, and splits by row index (the same rows as before the samples stayed on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from menndl.data import load_dataset
from menndl.data.arrays import H5Array, NpyArray
from menndl.data.keys import DataKeys
from menndl.data.scan import scan_dataset
from menndl.data.splits import split_indices
from menndl.errors import UserError

KEYS = DataKeys(x="images/train", y="labels/train", x_val="images/val", y_val="labels/val",
                x_test="images/test", y_test="labels/test")  # fmt: skip


def make_xy(n: int, sample_shape: tuple[int, ...] = (2, 6), classes: int = 3, seed: int = 0):
    """Random float32 samples and balanced int64 labels."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *sample_shape)).astype(np.float32), (np.arange(n) % classes).astype(np.int64)


def one_line_error(match: list[str], source: str, **kwargs: object) -> str:
    """Open and scan ``source``; expect a one-line UserError containing every string of ``match``."""
    with pytest.raises(UserError) as info:
        with load_dataset(source, **kwargs) as ds:
            scan_dataset(ds)
    message = str(info.value)
    assert "\n" not in message, message
    for text in match:
        assert text in message, f"{text!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------------------ custom keys


def test_hdf5_custom_keys_with_given_splits(tmp_path: Path) -> None:
    x, y = make_xy(30)
    x_val, y_val = make_xy(8, seed=1)
    x_test, y_test = make_xy(6, seed=2)
    path = tmp_path / "nested.h5"
    with h5py.File(path, "w") as f:
        f["images/train"], f["labels/train"] = x, y
        f["images/val"], f["labels/val"] = x_val, y_val
        f["images/test"], f["labels/test"] = x_test, y_test
        f["x"] = np.zeros((3, 1, 1))  # the default names hold something else: not read
    with load_dataset(str(path), keys=KEYS) as ds:
        assert isinstance(ds.train.x, H5Array) and ds.train.x.key == "images/train"
        assert (ds.val.x.key, ds.test.x.key) == ("images/val", "images/test")
        np.testing.assert_array_equal(ds.train.read(), x)
        np.testing.assert_array_equal(ds.train.y, y)
        np.testing.assert_array_equal(ds.val.read(), x_val)
        np.testing.assert_array_equal(ds.val.y, y_val)
        np.testing.assert_array_equal(ds.test.read(), x_test)
        np.testing.assert_array_equal(ds.test.y, y_test)
        assert ds.input_shape == (2, 6) and ds.num_classes == 3


def test_hdf5_custom_keys_carve_missing_splits_and_name_the_keys(tmp_path: Path) -> None:
    x, y = make_xy(40)
    path = tmp_path / "only-train.h5"
    with h5py.File(path, "w") as f:
        f["images/train"], f["labels/train"] = x, y
    with load_dataset(str(path), keys=KEYS) as ds:
        assert (len(ds.train), len(ds.val), len(ds.test)) == (26, 6, 8)  # test 0.2 * 40, val 0.2 * 32
        assert ds.val.x is ds.train.x is ds.test.x
    with h5py.File(path, "a") as f:
        f["images/val"] = x[:5]
    one_line_error(["only-train.h5", "'images/val'", "'labels/val'"], str(path), keys=KEYS)
    one_line_error(["only-train.h5", "missing 'imgs'"], str(path), keys=DataKeys(x="imgs", y="labels/train"))


# ------------------------------------------------------------------------------------------------ .npy


def test_npy_samples_are_memory_mapped_with_labels_beside(tmp_path: Path) -> None:
    x, y = make_xy(50, (1, 4, 4))
    x_val, y_val = make_xy(7, (1, 4, 4), seed=3)
    np.save(tmp_path / "images.npy", x)
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "val_images.npy", x_val)
    np.save(tmp_path / "val_labels.npy", y_val)
    keys = DataKeys(y="labels", x_val="val_images", y_val="val_labels")
    with load_dataset(str(tmp_path / "images.npy"), keys=keys, test_fraction=0.2) as ds:
        array = ds.train.x
        assert isinstance(array, NpyArray) and isinstance(array.array, np.memmap)
        assert array.array.mode == "r" and array.key == "images"
        assert isinstance(ds.val.x, NpyArray) and isinstance(ds.val.x.array, np.memmap)
        block = array.read(3, 9)
        assert not isinstance(block, np.memmap) and block.base is None  # a copy of rows, not the map
        np.testing.assert_array_equal(block, x[3:9])
        np.testing.assert_array_equal(ds.train.read(), x[ds.train.rows])
        np.testing.assert_array_equal(ds.test.read(), x[ds.test.rows])
        np.testing.assert_array_equal(ds.val.read(), x_val)
        assert isinstance(ds.train.y, np.ndarray) and not isinstance(ds.train.y, np.memmap)
        np.testing.assert_array_equal(ds.train.y, y[ds.train.rows])
        assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 7, 10)
    assert array.array.size == 0  # closed: the map is dropped


def test_npy_missing_labels_and_pickles(tmp_path: Path) -> None:
    x, _ = make_xy(20, (1, 3))
    np.save(tmp_path / "samples.npy", x)
    one_line_error(["samples.npy", "missing 'y'", "'samples'"], str(tmp_path / "samples.npy"))
    np.save(tmp_path / "y.npy", np.array([object()] * 20, dtype=object), allow_pickle=True)
    one_line_error(["y.npy", "Python objects"], str(tmp_path / "samples.npy"))
    (tmp_path / "text.npy").write_text("x,y\n")
    one_line_error(["text.npy", "not a .npy file"], str(tmp_path / "text.npy"))


def test_npy_fortran_order_and_big_endian_read_as_native_c_rows(tmp_path: Path) -> None:
    x, y = make_xy(30, (2, 5))
    np.save(tmp_path / "x.npy", np.asfortranarray(x.astype(">f4")))
    np.save(tmp_path / "y.npy", y)
    with load_dataset(str(tmp_path / "x.npy")) as ds:
        rows = ds.train.x.read(0, 30)
        assert rows.flags.c_contiguous and rows.dtype == np.dtype("=f4") and rows.dtype.isnative
        np.testing.assert_array_equal(rows, x)
        scan_dataset(ds)


# ---------------------------------------------------------------------- virtual datasets, external links


def write_shards(folder: Path, sizes=(7, 11, 5), sample_shape=(3, 4)) -> tuple[np.ndarray, np.ndarray, Path]:
    """Three shard files and a file whose virtual 'x' and 'y' join them; returns (x, y, joined file)."""
    xs, ys = [], []
    for i, n in enumerate(sizes):
        x, y = make_xy(n, sample_shape, seed=10 + i)
        y = (y + i) % 3
        with h5py.File(folder / f"shard{i}.h5", "w") as f:
            f.create_dataset("x", data=x, chunks=(2, *sample_shape))
            f["y"] = y
        xs.append(x)
        ys.append(y)
    total = sum(sizes)
    x_layout = h5py.VirtualLayout(shape=(total, *sample_shape), dtype="f4")
    y_layout = h5py.VirtualLayout(shape=(total,), dtype="i8")
    at = 0
    for i, n in enumerate(sizes):
        x_layout[at : at + n] = h5py.VirtualSource(f"shard{i}.h5", "x", shape=(n, *sample_shape))
        y_layout[at : at + n] = h5py.VirtualSource(f"shard{i}.h5", "y", shape=(n,))
        at += n
    joined = folder / "joined.h5"
    with h5py.File(joined, "w") as f:
        f.create_virtual_dataset("x", x_layout, fillvalue=0)
        f.create_virtual_dataset("y", y_layout, fillvalue=0)
    return np.concatenate(xs), np.concatenate(ys), joined


def test_virtual_dataset_reads_as_the_concatenation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, joined = write_shards(tmp_path)
    np.savez(tmp_path / "flat.npz", x=x, y=y)
    monkeypatch.chdir("/")  # shard names are relative to the joined file, not the working directory
    with load_dataset(str(joined)) as ds:
        assert isinstance(ds.train.x, H5Array) and ds.train.x.dataset.is_virtual
        assert ds.train.x.shape == (23, 3, 4)
        np.testing.assert_array_equal(ds.train.x.read(0, 23), x)
        np.testing.assert_array_equal(ds.train.x.read(5, 9), x[5:9])  # across the shard boundary
        np.testing.assert_array_equal(ds.train.y, y[ds.train.rows])
        np.testing.assert_array_equal(ds.val.read(), x[ds.val.rows])
        np.testing.assert_array_equal(ds.train.x.take(np.array([0, 6, 7, 17, 18, 22])), x[[0, 6, 7, 17, 18, 22]])
        virtual = scan_dataset(ds, block_bytes=100)
    with load_dataset(str(tmp_path / "flat.npz")) as flat:
        plain = scan_dataset(flat)
        assert [s.rows.tolist() for s in flat.splits.values()] == [s.rows.tolist() for s in ds.splits.values()]
    assert virtual.fingerprint == plain.fingerprint  # the same bytes, labels and rows
    np.testing.assert_allclose(virtual.stats.mean, plain.stats.mean, rtol=1e-12, atol=1e-15)  # merged blocks
    np.testing.assert_allclose(virtual.stats.std, plain.stats.std, rtol=1e-12)


def test_virtual_dataset_with_a_missing_shard_is_refused(tmp_path: Path) -> None:
    _, _, joined = write_shards(tmp_path)
    (tmp_path / "shard1.h5").unlink()
    message = one_line_error(["joined.h5", "virtual dataset 'x'", "shard1.h5", "does not exist"], str(joined))
    assert "shard0.h5" not in message and "shard2.h5" not in message


def test_external_link_to_samples_in_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = make_xy(36, (1, 5, 5))
    with h5py.File(tmp_path / "store.h5", "w") as f:
        f.create_dataset("big/samples", data=x, chunks=(4, 1, 5, 5), compression="gzip")
    with h5py.File(tmp_path / "index.h5", "w") as f:
        f["x"] = h5py.ExternalLink("store.h5", "/big/samples")
        f["y"] = y
    monkeypatch.chdir("/")
    with load_dataset(str(tmp_path / "index.h5")) as ds:
        assert ds.train.x.chunk_rows == 4 and ds.train.x.block_rows(4 * 25 * 4 * 2) == 8
        np.testing.assert_array_equal(ds.train.x.read(0, 36), x)
        for split in ds.splits.values():
            np.testing.assert_array_equal(split.read(), x[split.rows])
        scan_dataset(ds)


def test_dangling_external_link_is_one_line(tmp_path: Path) -> None:
    _, y = make_xy(20)
    with h5py.File(tmp_path / "index.h5", "w") as f:
        f["x"] = h5py.ExternalLink("gone.h5", "/samples")
        f["y"] = y
    one_line_error(["index.h5", "'x'", "gone.h5", "cannot be opened"], str(tmp_path / "index.h5"))
    x, _ = make_xy(20)
    with h5py.File(tmp_path / "store.h5", "w") as f:
        f["other"] = x
    with h5py.File(tmp_path / "index.h5", "a") as f:
        del f["x"]
        f["x"] = h5py.ExternalLink("store.h5", "/samples")  # the file is there, the dataset is not
    one_line_error(["index.h5", "'x'", "store.h5", "/samples"], str(tmp_path / "index.h5"))


# ---------------------------------------------------------------------------------------- splits by row


def old_split_rows(y: np.ndarray, validation_fraction: float, test_fraction: float, seed: int):
    """The rows the arrays-in-memory loader gave each split (test carved first, then validation)."""
    keep, held = split_indices(y, test_fraction, [seed, 1])
    keep_val, held_val = split_indices(y[keep], validation_fraction, [seed, 2])
    return keep[keep_val], keep[held_val], held


@pytest.mark.parametrize("seed", [0, 5])
def test_splits_are_rows_stable_and_as_before(tmp_path: Path, seed: int) -> None:
    x, y = make_xy(97, (1, 6), classes=4)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(8, 1, 6))
        f["y"] = y
    train_rows, val_rows, test_rows = old_split_rows(y, 0.25, 0.15, seed)
    with load_dataset(str(path), validation_fraction=0.25, test_fraction=0.15, split_seed=seed) as ds:
        for split, expected in zip(ds.splits.values(), (train_rows, val_rows, test_rows)):
            np.testing.assert_array_equal(split.rows, expected)
            np.testing.assert_array_equal(split.read(), x[split.rows])
            np.testing.assert_array_equal(split.y, y[split.rows])
        everything = np.concatenate([s.rows for s in ds.splits.values()])
        assert sorted(everything.tolist()) == list(range(97))
        for name in ("train", "val", "test"):
            assert np.bincount(ds.splits[name].y, minlength=4).min() >= 1  # stratified
        first = [s.rows.copy() for s in ds.splits.values()]
    with load_dataset(str(path), validation_fraction=0.25, test_fraction=0.15, split_seed=seed) as again:
        assert all(np.array_equal(a, s.rows) for a, s in zip(first, again.splits.values()))
    with load_dataset(str(path), validation_fraction=0.25, test_fraction=0.15, split_seed=seed + 1) as other:
        assert not np.array_equal(first[1], other.val.rows)


def test_read_rows_do_not_depend_on_block_size(tmp_path: Path) -> None:
    x, y = make_xy(64, (2, 3))
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(5, 2, 3))
        f["y"] = y
    with load_dataset(str(path)) as ds:
        for target in (1, 24 * 5, 24 * 13, 2**20):
            np.testing.assert_array_equal(ds.train.x.take(ds.train.rows, target_bytes=target), x[ds.train.rows])
        assert ds.train.x.block_rows(1) == 5 and ds.train.x.block_rows(24 * 13) == 10


def test_reads_after_close_fail_and_a_removed_file_is_data_unavailable(tmp_path: Path) -> None:
    from menndl.data.arrays import DataReadError, DataUnavailable

    x, y = make_xy(20, (1, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = x, y
    for name in ("x.npy", "d.h5"):
        ds = load_dataset(str(tmp_path / name))
        ds.close()
        with pytest.raises(DataReadError) as info:  # never an empty or short read
            ds.train.x.read(0, 2)
        assert name in str(info.value) and "samples 0..1" in str(info.value)
        os.remove(tmp_path / name)
        with pytest.raises(DataUnavailable) as gone:
            ds.train.x.read(0, 2)
        assert name in str(gone.value) and "gone" in str(gone.value) and gone.value.exit_status == 1
