"""The three placements give the same batches; the node's shared copy is written once and cleaned up; streaming
reads in bounded windows, stops its thread when closed early and raises read errors as they were raised."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from menndl.data.arrays import DataReadError, DataUnavailable, MemoryArray
from menndl.data.dataset import Dataset, load_dataset
from menndl.data.order import EpochOrder, epoch_order, seeded_permute
from menndl.data.shared_copy import (
    TEMP_SUFFIX,
    USERS_SUFFIX,
    WRITER_SUFFIX,
    Part,
    clean_stale_segments,
    open_shared_copy,
    sanitize_key,
    segment_path,
)
from menndl.data.splits import Split
from menndl.errors import UserError
from menndl.worker.placements import open_placement
from menndl.worker.placements.base import Batch, Placement
from menndl.worker.placements.stream import StreamPlacement

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
N, SHAPE, CLASSES = 600, (2, 5, 5), 5


def _epoch(placement: Placement, seed: int, epoch: int, batch: int) -> Iterator[Batch]:
    """The placement's training batches for windows drawn from a numpy generator (the trainer draws them from torch)."""
    return placement.epoch(placement.order.windows(seeded_permute(seed, epoch)), batch)


def _h5(path: Path, dtype: str, layout: str, targets: int = 0, masks: bool = False) -> Path:
    """An HDF5 dataset file: ``contiguous``, ``chunked`` or ``gzip`` (chunked, compressed); class labels,
    ``targets`` float regression targets per sample, or segmentation ``masks``."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (N, *SHAPE)).astype(dtype) if dtype == "uint8" else rng.standard_normal((N, *SHAPE))
    y = np.arange(N) % CLASSES if not targets else rng.standard_normal((N, targets)).astype(np.float32)
    if masks:
        y = rng.integers(0, CLASSES, (N, *SHAPE[1:])).astype(np.int64)
    options: dict[str, object] = {}
    if layout != "contiguous":
        options["chunks"] = (20, *SHAPE)
    if layout == "gzip":
        options["compression"] = "gzip"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=x.astype(dtype), **options)
        handle.create_dataset("y", data=y)
    return path


def _key() -> str:
    return "test" + uuid.uuid4().hex[:16]


def _batches(iterator: Iterator[Batch]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy().copy(), y.numpy().copy()) for x, y in iterator]


def _assert_same(expected: list[tuple[np.ndarray, np.ndarray]], got: list[tuple[np.ndarray, np.ndarray]]) -> None:
    assert len(got) == len(expected)
    for (x0, y0), (x1, y1) in zip(expected, got):
        assert x1.dtype == x0.dtype and x1.shape == x0.shape
        assert np.array_equal(x0, x1) and np.array_equal(y0, y1)


def _open_all(ds: Dataset, order: EpochOrder, cache_bytes: int) -> dict[str, Placement]:
    key = _key()
    return {
        name: open_placement(name, ds.train, ds.val, CPU, order, cache_bytes=cache_bytes, node_key=key)
        for name in ("device", "node", "stream")
    }


@pytest.mark.parametrize(
    "source",
    ["digits", "uint8-gzip", "uint8-contiguous", "float32-chunked", "float32-contiguous", "regression-chunked",
     "segmentation-chunked"],
)
def test_the_three_placements_give_identical_batches(tmp_path: Path, source: str) -> None:
    if source == "digits":
        ds = load_dataset("digits")
    elif source.startswith("regression"):  # (N, 3) float32 targets travel with their samples
        ds = load_dataset(str(_h5(tmp_path / "data.h5", "float32", "chunked", targets=3)))
        assert ds.task == "regression"
    elif source.startswith("segmentation"):  # (N, *spatial) masks, kept as uint8, travel with their samples
        ds = load_dataset(str(_h5(tmp_path / "data.h5", "float32", "chunked", masks=True)))
        assert ds.task == "segmentation" and ds.train.y.dtype == np.uint8
    else:
        dtype, layout = source.split("-")
        ds = load_dataset(str(_h5(tmp_path / "data.h5", dtype, layout)))
    try:
        sample_bytes = ds.sample_bytes
        # Blocks of 40 samples, windows of 3 blocks: several windows, a batch spanning two or more of them.
        cache_bytes = 2 * 3 * 40 * sample_bytes
        order = epoch_order(len(ds.train), sample_bytes, cache_bytes, read_bytes=40 * sample_bytes)
        assert (order.block_size, order.window_blocks) == (40, 3) and len(order.windows(seeded_permute(0, 0))) > 2
        placements = _open_all(ds, order, cache_bytes)
        try:
            for seed in (0, 11):
                for epoch in (0, 3):
                    for batch in (32, 150, 7 * len(ds.train)):  # 32 divides no split here; one batch of all
                        expected = _batches(_epoch(placements["device"], seed, epoch, batch))
                        assert sum(len(y) for _, y in expected) >= len(ds.train) - 1
                        labels = expected[0][1]
                        assert labels.dtype == ds.train.y.dtype and labels.shape[1:] == ds.train.y.shape[1:]
                        for name in ("node", "stream"):
                            _assert_same(expected, _batches(_epoch(placements[name], seed, epoch, batch)))
            for batch in (13, 10_000):
                expected = _batches(placements["device"].held_out(batch))
                assert sum(len(y) for _, y in expected) == len(ds.val)
                for name in ("node", "stream"):
                    _assert_same(expected, _batches(placements[name].held_out(batch)))
        finally:
            for placement in placements.values():
                placement.close()
    finally:
        ds.close()


def test_batches_larger_than_a_window_and_single_block_windows() -> None:
    ds = load_dataset("digits")
    order = EpochOrder(len(ds.train), 7, 1)  # windows of 7 samples: a batch of 50 spans eight of them
    placements = _open_all(ds, order, cache_bytes=2 * 7 * ds.sample_bytes)
    try:
        for batch in (2, 50, len(ds.train) - 1):
            expected = _batches(_epoch(placements["device"], 5, 1, batch))
            for name in ("node", "stream"):
                _assert_same(expected, _batches(_epoch(placements[name], 5, 1, batch)))
    finally:
        for placement in placements.values():
            placement.close()
        ds.close()


class _CountingArray(MemoryArray):
    """Records every read (start, stop)."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__(array, "counted.h5", "x")
        self.reads: list[tuple[int, int]] = []

    def _read(self, start: int, stop: int) -> np.ndarray:
        self.reads.append((start, stop))
        return super()._read(start, stop)


def test_stream_reads_each_training_row_once_per_epoch_in_small_reads() -> None:
    rng = np.random.default_rng(0)
    array = _CountingArray(rng.standard_normal((1000, 3)).astype(np.float32))
    rows = np.sort(rng.choice(1000, 700, replace=False)).astype(np.int64)
    train = Split(array, rows, np.arange(700, dtype=np.int64) % 3)
    held = Split(array, np.setdiff1d(np.arange(1000), rows), np.zeros(300, dtype=np.int64))
    order = EpochOrder(700, 50, 2)
    placement = StreamPlacement(train, held, CPU, order, cache_bytes=2 * 2 * 50 * 12)
    list(_epoch(placement, 1, 0, 64))
    assert array.reads and max(stop - start for start, stop in array.reads) < 200  # never the whole split
    read = np.zeros(1000, dtype=np.int64)
    for start, stop in array.reads:
        read[start:stop] += 1
    assert read[rows].max() == 1 and read[rows].min() == 1
    array.reads.clear()
    list(placement.held_out(32))
    assert max(stop - start for start, stop in array.reads) < 1000
    assert placement.order.window_blocks * placement.order.block_size * 12 * 2 <= placement.cache_bytes


def test_closing_the_epoch_early_stops_the_reader_thread() -> None:
    ds = load_dataset("digits")
    try:
        placement = StreamPlacement(ds.train, ds.val, CPU, EpochOrder(len(ds.train), 10, 2), cache_bytes=1)
        before = threading.active_count()
        batches = _epoch(placement, 0, 0, 16)
        next(batches)
        assert threading.active_count() == before + 1  # the reader waits for a buffer
        started = time.monotonic()
        batches.close()
        assert time.monotonic() - started < 5
        assert threading.active_count() == before
        held = placement.held_out(4)
        next(held)
        held.close()
        assert threading.active_count() == before
        unstarted = _epoch(placement, 0, 1, 16)  # never iterated: no thread at all
        assert threading.active_count() == before
        unstarted.close()
    finally:
        ds.close()


def _corrupt_middle_chunk(path: Path) -> tuple[int, int]:
    """Overwrite the bytes of the middle chunk of 'x'; returns its sample range."""
    with h5py.File(path, "r") as handle:
        dataset = handle["x"]
        chunks = dataset.id.get_num_chunks()
        info = dataset.id.get_chunk_info(chunks // 2)
        first = int(info.chunk_offset[0])
        rows = int(dataset.chunks[0])
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write((bytes(range(256)) * (info.size // 256 + 1))[: info.size])
    return first, first + rows


def test_a_corrupted_chunk_raises_data_read_error_naming_file_and_samples(tmp_path: Path) -> None:
    path = _h5(tmp_path / "bad.h5", "float32", "gzip")
    first, stop = _corrupt_middle_chunk(path)
    ds = load_dataset(str(path))
    try:
        order = EpochOrder(len(ds.train), 40, 2)
        placement = StreamPlacement(ds.train, ds.val, CPU, order, cache_bytes=2 * 2 * 40 * ds.sample_bytes)
        before = threading.active_count()
        with pytest.raises(DataReadError) as caught:
            list(_epoch(placement, 0, 0, 32))
        message = str(caught.value)
        assert str(path) in message and "dataset 'x'" in message and "cannot be read" in message
        low, high = (int(v) for v in re.search(r"samples (\d+)\.\.(\d+)", message).groups())
        assert low < stop and high >= first  # the range named holds the broken chunk
        assert "\n" not in message
        assert threading.active_count() == before
    finally:
        ds.close()


def test_a_file_gone_when_the_stream_opens_is_data_unavailable(tmp_path: Path) -> None:
    path = _h5(tmp_path / "gone.h5", "uint8", "chunked")
    ds = load_dataset(str(path))
    try:
        os.unlink(path)
        with pytest.raises(DataUnavailable, match=r"gone\.h5.*the file is gone"):
            StreamPlacement(ds.train, ds.val, CPU, EpochOrder(len(ds.train), 40, 2), cache_bytes=10**6)
    finally:
        ds.close()


class _VanishingArray(MemoryArray):
    """Reads fail from row 400 on, and the file is gone from then on."""

    gone = False

    def _read(self, start: int, stop: int) -> np.ndarray:
        if stop > 400:
            self.gone = True
            raise OSError("Input/output error")
        return super()._read(start, stop)

    def exists(self) -> bool:
        return not self.gone


def test_a_file_gone_mid_epoch_is_data_unavailable_in_the_training_loop() -> None:
    array = _VanishingArray(np.zeros((600, 4), dtype=np.float32), "vanishing.h5", "x")
    train = Split(array, np.arange(500, dtype=np.int64), np.arange(500, dtype=np.int64) % 2)
    held = Split(array, np.arange(500, 600, dtype=np.int64), np.zeros(100, dtype=np.int64))
    placement = StreamPlacement(train, held, CPU, EpochOrder(500, 20, 2), cache_bytes=2 * 2 * 20 * 16)
    before = threading.active_count()
    with pytest.raises(DataUnavailable, match=r"vanishing\.h5: dataset 'x', samples \d+\.\.\d+: the file is gone"):
        list(_epoch(placement, 0, 0, 16))
    assert threading.active_count() == before


# --- the node's shared copy ---------------------------------------------------------------------------------------

_USER = """
import hashlib, json, os, sys, time
from pathlib import Path
import torch
from menndl.data import arrays
from menndl.data.dataset import load_dataset
from menndl.data.order import EpochOrder, seeded_permute
from menndl.worker.placements.node import NodePlacement

source, key, release, delay = sys.argv[1:5]
original = arrays.H5Array._read
def slow(self, start, stop):
    time.sleep(float(delay))
    return original(self, start, stop)
arrays.H5Array._read = slow
ds = load_dataset(source)
placement = NodePlacement(ds.train, ds.val, torch.device("cpu"), EpochOrder(len(ds.train), 37, 3), node_key=key)
digest = hashlib.sha256()
for x, y in placement.epoch(placement.order.windows(seeded_permute(3, 1)), 50):
    digest.update(x.numpy().tobytes())
    digest.update(y.numpy().tobytes())
report = {"wrote": placement.wrote, "inode": os.stat(placement.copy.path).st_ino, "digest": digest.hexdigest()}
print(json.dumps(report), flush=True)
while not Path(release).exists():
    time.sleep(0.05)
placement.close()
"""


def _start_users(tmp_path: Path, source: Path, key: str, count: int, delay: float) -> list[subprocess.Popen[str]]:
    script = tmp_path / "user.py"
    script.write_text(_USER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    release = tmp_path / "release"
    command = [sys.executable, str(script), str(source), key, str(release), str(delay)]
    return [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(count)]


def _reports(users: list[subprocess.Popen[str]]) -> list[dict[str, object]]:
    out = []
    for user in users:
        assert user.stdout is not None
        line = user.stdout.readline()
        assert line, f"user {user.pid} exited with {user.wait()}"
        out.append(json.loads(line))
    return out


def _expected_digest(source: Path) -> str:
    with load_dataset(str(source)) as ds:
        placement = open_placement("device", ds.train, ds.val, CPU, EpochOrder(len(ds.train), 37, 3), cache_bytes=0)
        digest = hashlib.sha256()
        for x, y in placement.epoch(placement.order.windows(seeded_permute(3, 1)), 50):
            digest.update(x.numpy().tobytes())
            digest.update(y.numpy().tobytes())
        return digest.hexdigest()


def _leftovers(segment: Path) -> list[Path]:
    return [p for p in (segment.with_name(segment.name + s) for s in ("", USERS_SUFFIX, WRITER_SUFFIX, TEMP_SUFFIX))
            if p.exists()]  # fmt: skip


@pytest.mark.timeout(240)
def test_three_processes_share_one_copy_written_once_and_removed_after_the_last(tmp_path: Path) -> None:
    source, key = _h5(tmp_path / "shared.h5", "uint8", "gzip"), _key()
    segment = segment_path(key)
    users = _start_users(tmp_path, source, key, 3, delay=0.5)  # a slow write: the others wait on the lock
    try:
        reports = _reports(users)
        assert sorted(bool(r["wrote"]) for r in reports) == [False, False, True]
        assert len({r["inode"] for r in reports}) == 1 and segment.exists()
        assert os.stat(segment).st_ino == reports[0]["inode"]
        assert {r["digest"] for r in reports} == {_expected_digest(source)}
        (tmp_path / "release").touch()
        assert [user.wait(timeout=60) for user in users] == [0, 0, 0]
        assert _leftovers(segment) == []
    finally:
        for user in users:
            if user.poll() is None:
                user.kill()


@pytest.mark.timeout(240)
def test_a_killed_users_copy_is_stale_and_cleaned_but_one_in_use_is_kept(tmp_path: Path) -> None:
    source = _h5(tmp_path / "stale.h5", "float32", "contiguous")
    killed_key, live_key = _key(), _key()
    killed = _start_users(tmp_path, source, killed_key, 1, delay=0)[0]
    live = _start_users(tmp_path, source, live_key, 1, delay=0)[0]
    try:
        _reports([killed, live])
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        stale, in_use = segment_path(killed_key), segment_path(live_key)
        assert stale.exists() and in_use.exists()  # a killed worker cleans nothing
        removed = clean_stale_segments()
        assert stale in removed and in_use not in removed
        assert _leftovers(stale) == [] and in_use.exists()
        (tmp_path / "release").touch()
        assert live.wait(timeout=60) == 0
        assert _leftovers(in_use) == []
    finally:
        for user in (killed, live):
            if user.poll() is None:
                user.kill()


def _part(values: np.ndarray, calls: list[int] | None = None) -> Part:
    def fill(out: np.ndarray) -> None:
        if calls is not None:
            calls.append(1)
        out[...] = values

    return Part("train", values.shape, values.dtype, fill)


def test_shared_copy_in_one_process(tmp_path: Path) -> None:
    values, calls = np.arange(24, dtype=np.uint8).reshape(6, 4), []
    key = _key()
    first = open_shared_copy(key, [_part(values, calls)], directory=tmp_path)
    second = open_shared_copy(key, [_part(values, calls)], directory=tmp_path)
    assert (first.wrote, second.wrote, len(calls)) == (True, False, 1)
    assert np.array_equal(second.arrays[0], values) and not second.arrays[0].flags.writeable
    assert clean_stale_segments(tmp_path) == []  # held by this process
    assert first.close() is False and first.path.exists()
    assert second.close() is True and _leftovers(first.path) == []


def test_a_failed_write_leaves_nothing_and_the_next_user_writes(tmp_path: Path) -> None:
    key = _key()

    def broken(out: np.ndarray) -> None:
        raise DataReadError("data.h5: dataset 'x', samples 0..5: cannot be read (boom)")

    with pytest.raises(DataReadError, match="boom"):
        open_shared_copy(key, [Part("train", (6, 4), np.dtype(np.float32), broken)], directory=tmp_path)
    assert not segment_path(key, tmp_path).exists()
    assert not segment_path(key, tmp_path).with_name(segment_path(key, tmp_path).name + TEMP_SUFFIX).exists()
    with open_shared_copy(key, [_part(np.ones((6, 4), np.float32))], directory=tmp_path) as copy:
        assert copy.wrote and copy.arrays[0].sum() == 24
    assert os.listdir(tmp_path) == []


def test_a_segment_holding_other_arrays_is_refused(tmp_path: Path) -> None:
    key = _key()
    with open_shared_copy(key, [_part(np.ones((6, 4), np.float32))], directory=tmp_path):
        with pytest.raises(UserError, match="holds other data"):
            open_shared_copy(key, [_part(np.ones((7, 4), np.float32))], directory=tmp_path)


def test_segment_names() -> None:
    assert segment_path("ab12", "/dev/shm", uid=5) == Path("/dev/shm/menndl-ab12-5")
    odd = segment_path("../x/y z", "/dev/shm", uid=5).name
    assert re.fullmatch(r"menndl-[0-9a-f]{32}-5", odd)
    assert sanitize_key("a" * 65) != "a" * 65
    with pytest.raises(ValueError):
        sanitize_key("")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_identical_batches_on_a_gpu(tmp_path: Path) -> None:
    """Pinned staging and asynchronous copies give the batches the device placement draws on the GPU."""
    gpu = torch.device("cuda")
    with load_dataset(str(_h5(tmp_path / "gpu.h5", "uint8", "gzip"))) as ds:
        order, key = EpochOrder(len(ds.train), 40, 2), _key()
        placements = {
            name: open_placement(name, ds.train, ds.val, gpu, order, cache_bytes=4 * 40 * ds.sample_bytes, node_key=key)
            for name in ("device", "node", "stream")
        }
        try:
            for batch in (32, 1000):
                expected = [(x.cpu().numpy(), y.cpu().numpy()) for x, y in _epoch(placements["device"], 2, 1, batch)]
                for name in ("node", "stream"):
                    got = []
                    for x, y in _epoch(placements[name], 2, 1, batch):
                        assert x.device.type == "cuda" and y.device.type == "cuda"
                        got.append((x.cpu().numpy(), y.cpu().numpy()))
                    _assert_same(expected, got)
                held = [(x.cpu().numpy(), y.cpu().numpy()) for x, y in placements["device"].held_out(batch)]
                for name in ("node", "stream"):
                    got = [(x.cpu().numpy(), y.cpu().numpy()) for x, y in placements[name].held_out(batch)]
                    _assert_same(held, got)
        finally:
            for placement in placements.values():
                placement.close()
