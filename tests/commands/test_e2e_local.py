"""End to end in local mode: real worker processes, real training, a real HDF5 library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_JOB, run_menndl

from menndl.genome import Genome
from menndl.library import Library

pytestmark = pytest.mark.timeout(300)


def test_local_search_fills_the_library(tiny_job: Path, tmp_path: Path) -> None:
    library = tmp_path / "out" / "lib.h5"
    out = run_menndl(["run", str(tiny_job), "--library", str(library), "--workers", "2"], timeout=240)
    assert out.returncode == 0, out.stderr
    assert "Pareto front" in out.stdout and str(library) in out.stdout

    with Library.open(library) as lib:
        records = lib.records()
        assert lib.job_text == tiny_job.read_text()
        pareto = lib.pareto_ids()
    assert len(records) == 6
    assert sorted(r["id"] for r in records) == list(range(6))
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    assert {r["worker_rank"] for r in records} == {1, 2}
    for record in records:
        assert 0.0 <= record["accuracy"] <= 1.0
        assert record["params"] > 0 and record["train_seconds"] > 0
        assert record["finished_at"] >= record["submitted_at"]
        Genome.from_json(record["genome"])  # every stored genome decodes
    # The first population_size (4) are random; the rest are children of recorded parents.
    ids = {r["id"] for r in records}
    children = [r for r in records if r["operator"] != "random"]
    assert children and all(set(json.loads(r["parents"])) <= ids for r in children)
    assert len({r["hash"] for r in records}) == 6  # no genome trained twice
    assert pareto and set(pareto) <= ids
    # Something learnt: digits are far above chance (0.1) after two epochs.
    assert max(r["accuracy"] for r in records) > 0.5


def test_user_npz_dataset_with_1d_signals(tmp_path: Path) -> None:
    """A user's .npz file of 1-D signals (channels-first) runs through the same pipeline."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300)
    t = np.linspace(0, 1, 32)
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t)[:, None, :] + 0.1 * rng.normal(size=(300, 1, 32))
    np.savez(tmp_path / "waves.npz", x=x.astype(np.float32), y=y)
    job = tmp_path / "waves.toml"
    job.write_text(TINY_JOB.format(source="waves.npz"))  # relative to the job file's folder
    library = tmp_path / "waves.h5"
    out = run_menndl(["run", str(job), "--library", str(library), "--workers", "1", "--evaluations", "3"], timeout=240)
    assert out.returncode == 0, out.stderr
    with Library.open(library) as lib:
        records = lib.records()
        assert json.loads(lib.attrs["input_shape"]) == [1, 32]
    assert len(records) == 3 and all(r["status"] == "ok" for r in records)


def test_time_limit_ends_the_search(tiny_job: Path, tmp_path: Path) -> None:
    library = tmp_path / "timed.h5"
    args = ["run", str(tiny_job), "--library", str(library), "--workers", "2", "--evaluations", "100000"]
    out = run_menndl([*args, "--time-limit", "6"], timeout=240)
    assert out.returncode == 0, out.stderr
    assert "stopped: time limit reached" in out.stdout
    with Library.open(library) as lib:
        records = lib.records()
    assert 0 < len(records) < 100000
    # Nothing dispatched after the limit: every task was submitted within it (plus start-up slack).
    start = min(r["submitted_at"] for r in records)
    assert max(r["submitted_at"] for r in records) - start < 6 + 1


def test_workers_that_cannot_start_end_the_search_clearly(tmp_path: Path) -> None:
    """Every worker failing its setup (here: CUDA asked for on a machine without it) is exit 1, not a hang."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    job = tmp_path / "cuda.toml"
    job.write_text(TINY_JOB.format(source="digits") + 'device = "cuda"\n')
    library = tmp_path / "cuda.h5"
    out = run_menndl(["run", str(job), "--library", str(library), "--workers", "2"], timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no CUDA device" in out.stderr and "every worker failed before any evaluation" in out.stderr
    assert "Traceback" not in out.stderr
    assert not library.exists()  # nothing was evaluated: no empty library left behind
