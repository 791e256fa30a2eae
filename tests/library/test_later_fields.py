"""A library written before the hardware columns (`schema.LATER_FIELDS`) reads, queries and resumes.

The library is written by today's `LibraryWriter`; its LATER_FIELDS datasets are then deleted with h5py,
which leaves the layout an earlier menndl wrote.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import run_menndl

from menndl.library import Library, LibraryWriter
from menndl.library.recover import recover
from menndl.library.schema import EVALUATIONS_GROUP, FIELD_KINDS, FIELD_NAMES, LATER_FIELDS, MISSING

pytestmark = pytest.mark.timeout(120)

JOB = 'name = "old"\n[search]\nevaluations = 6\n'
ROWS = 6


def old_record(i: int) -> dict[str, Any]:
    """Row ``i`` as an earlier menndl wrote it: no hardware columns (one in three failed)."""
    ok = i % 3 != 2
    return {
        "id": i,
        "genome": json.dumps({"layers": [{"type": "conv", "filters": 4 * (i + 1)}]}),
        "hash": f"{i:064x}",
        "parents": json.dumps([i - 1] if i else []),
        "operator": "mutate" if i else "random",
        "status": "ok" if ok else "failed",
        "error": "" if ok else "boom",
        "accuracy": 0.5 + 0.07 * i if ok else math.nan,
        "params": 1000 + 700 * i * (-1) ** i + 5000,
        "flops": 10_000 * (i + 1),
        "train_seconds": 2.0 + i,
        "epochs": 2,
        "seed": 100 + i,
        "submitted_at": 1_700_000_000.0 + i,
        "finished_at": 1_700_000_010.0 + i,
    }


def write_old_library(path: Path, rows: int = ROWS) -> list[dict[str, Any]]:
    """Write ``rows`` records with `LibraryWriter`, then delete the LATER_FIELDS datasets (an older layout)."""
    records = [old_record(i) for i in range(rows)]
    with LibraryWriter(path, job_text=JOB, attrs={"objectives": "accuracy,params"}, flush_every=rows) as writer:
        for record in records:
            writer.append(record)
        writer.set_pareto([r["id"] for r in records if r["status"] == "ok"][:2])
    with h5py.File(path, "a") as f:
        group = f[EVALUATIONS_GROUP]
        for name in LATER_FIELDS:
            del group[name]
        assert not LATER_FIELDS & set(group)
    return records


@pytest.fixture
def old_library(tmp_path: Path) -> Path:
    """A library of `ROWS` rows without the LATER_FIELDS datasets."""
    path = tmp_path / "old.h5"
    write_old_library(path)
    return path


def assert_missing(kind: str, value: Any) -> None:
    """``value`` is the missing value of ``kind`` (NaN for floats)."""
    if kind == "float":
        assert isinstance(value, float) and math.isnan(value)
    else:
        assert value == MISSING[kind] and type(value) is type(MISSING[kind])


def test_open_reads_later_fields_as_missing(old_library: Path) -> None:
    with Library.open(old_library) as lib:
        assert len(lib) == ROWS
        latency = lib.column("latency")
        assert latency.dtype == np.float64 and latency.shape == (ROWS,) and np.all(np.isnan(latency))
        memory = lib.column("memory")
        assert memory.dtype == np.int64 and memory.tolist() == [-1] * ROWS
        assert lib.column("train_memory").tolist() == [-1] * ROWS
        assert np.all(np.isnan(lib.column("energy"))) and np.all(np.isnan(lib.column("batch_latency")))
        assert lib.column("inference_precision").tolist() == [""] * ROWS
        assert lib.column("params").tolist() == [old_record(i)["params"] for i in range(ROWS)]  # the rest is there


def test_rows_and_record_of_an_old_library(old_library: Path) -> None:
    with Library.open(old_library) as lib:
        rows = lib.rows([4, 0, 2])
        assert [row["id"] for row in rows] == [4, 0, 2]
        record = lib.record(3)
        records = lib.records()
    for row in [*rows, record, *records]:
        assert set(row) == set(FIELD_NAMES)
        for name in LATER_FIELDS:
            assert_missing(FIELD_KINDS[name], row[name])
    assert record["accuracy"] == pytest.approx(0.71) and record["status"] == "ok" and record["train_seconds"] == 5.0
    assert rows[2]["status"] == "failed" and rows[2]["error"] == "boom"
    assert [r["id"] for r in records] == list(range(ROWS))


def test_many_rows_of_an_old_library(tmp_path: Path) -> None:
    """More than 256 rows at once: the rows are read from whole columns (another path of `Library.rows`)."""
    path = tmp_path / "big.h5"
    write_old_library(path, rows=300)
    with Library.open(path) as lib:
        rows = lib.rows(list(range(299, -1, -1)))
    assert [row["id"] for row in rows] == list(range(299, -1, -1))
    assert all(row["memory"] == -1 and math.isnan(row["latency"]) for row in rows)


def test_library_commands_on_an_old_library(old_library: Path) -> None:
    lib = str(old_library)
    pareto = run_menndl(["library", lib, "pareto", "--json"], timeout=60)
    assert pareto.returncode == 0, pareto.stderr
    front = json.loads(pareto.stdout)
    assert [row["id"] for row in front] == [4, 3]  # over accuracy and params: 3 dominates 0 and 1
    assert all(row["latency"] is None and row["energy"] is None and row["memory"] == -1 for row in front)
    top = run_menndl(["library", lib, "top", "--limit", "3"], timeout=60)
    assert top.returncode == 0, top.stderr
    assert "accuracy" in top.stdout and "Traceback" not in top.stderr
    best = run_menndl(["library", lib, "top", "--limit", "2", "--json"], timeout=60)
    assert best.returncode == 0, best.stderr
    assert [row["id"] for row in json.loads(best.stdout)] == [4, 3]  # by accuracy
    by_latency = run_menndl(["library", lib, "top", "--by", "latency", "--json"], timeout=60)
    assert by_latency.returncode == 0, by_latency.stderr
    assert json.loads(by_latency.stdout) == []  # nothing measured, nothing ranked
    hardware = run_menndl(["library", lib, "pareto", "--objectives", "accuracy,latency", "--json"], timeout=60)
    assert hardware.returncode == 0, hardware.stderr
    assert json.loads(hardware.stdout) == []  # no row has a latency: no front over it


def test_reopened_old_library_appends_rows_with_hardware_columns(old_library: Path) -> None:
    recover(old_library)  # what `run --resume` does first (nothing to fold here)
    with LibraryWriter.reopen(old_library) as writer:
        assert writer.written == ROWS
        new = {**old_record(ROWS), "latency": 0.0025, "memory": 123_456, "energy": 0.75,
               "inference_precision": "fp32"}  # fmt: skip
        writer.append(new)
    with h5py.File(old_library, "r") as f:
        group = f[EVALUATIONS_GROUP]
        assert LATER_FIELDS <= set(group)  # created on reopening
        assert all(group[name].shape[0] >= ROWS + 1 for name in FIELD_NAMES)
    with Library.open(old_library) as lib:
        assert len(lib) == ROWS + 1
        latency, memory = lib.column("latency"), lib.column("memory")
        assert np.all(np.isnan(latency[:ROWS])) and latency[ROWS] == 0.0025
        assert memory.tolist() == [-1] * ROWS + [123_456]
        assert np.all(np.isnan(lib.column("batch_latency")))  # not in the new record either
        assert lib.column("inference_precision").tolist() == [""] * ROWS + ["fp32"]
        record = lib.record(ROWS)
        assert record["energy"] == 0.75 and record["train_memory"] == -1
        earlier = lib.record(1)
        for name in LATER_FIELDS:
            assert_missing(FIELD_KINDS[name], earlier[name])
        assert earlier["params"] == old_record(1)["params"]
        assert lib.column("id").tolist() == list(range(ROWS + 1))


def test_reopened_old_library_appends_many_rows(old_library: Path) -> None:
    """Appending several batches after the columns were created: every column grows together."""
    recover(old_library)
    with LibraryWriter.reopen(old_library, flush_every=3) as writer:
        for i in range(ROWS, ROWS + 10):
            writer.append({**old_record(i), "latency": 0.001 * i, "train_memory": 1000 * i})
    with Library.open(old_library) as lib:
        assert len(lib) == ROWS + 10
        latency = lib.column("latency")
        assert np.all(np.isnan(latency[:ROWS]))
        assert np.allclose(latency[ROWS:], [0.001 * i for i in range(ROWS, ROWS + 10)])
        assert lib.column("train_memory").tolist() == [-1] * ROWS + [1000 * i for i in range(ROWS, ROWS + 10)]
    top = run_menndl(["library", str(old_library), "top", "--by", "latency", "--limit", "2", "--json"], timeout=60)
    assert top.returncode == 0, top.stderr
    assert [row["id"] for row in json.loads(top.stdout)] == [6, 7]  # the fastest of the measured (ok) rows
