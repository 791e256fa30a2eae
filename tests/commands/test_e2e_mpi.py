"""End to end under a real ``mpiexec``: rank 0 is the master, the other ranks are workers."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, TINY_JOB, menndl_env, run_menndl

from menndl.library import Library

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(300)]

MPIEXEC = shutil.which("mpiexec", path=f"{BIN}:/usr/bin:/usr/local/bin")


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_mpiexec_three_ranks(tiny_job: Path, tmp_path: Path) -> None:
    library = tmp_path / "mpi.h5"
    out = run_menndl(
        ["run", str(tiny_job), "--library", str(library)],
        launcher=[MPIEXEC, "-n", "3"],
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mpi: 2 worker ranks" in out.stderr
    with Library.open(library) as lib:
        records = lib.records()
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    assert {r["worker_rank"] for r in records} == {1, 2}
    with Library.open(library) as lib:  # node-local worker index from the transport's all-gather of node names
        layout = dict(zip(lib.column("worker_rank").tolist(), lib.column("local_rank").tolist()))
    assert layout == {1: 0, 2: 1}


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_mpiexec_rungs_continue_checkpoints_across_ranks(tmp_path: Path) -> None:
    """Promotions continue on whichever rank is free from checkpoints another rank wrote; children inherit."""
    job = tmp_path / "rungs.toml"
    text = TINY_JOB.format(source="digits").replace("epochs = 2", "epochs = 9")
    text = text.replace("max_seconds = 5", "max_seconds = 60")
    job.write_text(text.replace("evaluations = 6", "evaluations = 24\nrungs = 3\ninherit_weights = true"))
    library = tmp_path / "mpi.h5"
    out = run_menndl(["run", str(job), "--library", str(library)], launcher=[MPIEXEC, "-n", "3"], timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    with Library.open(library) as lib:
        rows = {int(r["id"]): r for r in lib.records()}
    promoted = [r for r in rows.values() if r["operator"] == "promote"]
    assert promoted and all(r["status"] == "ok" for r in rows.values())
    for row in promoted:  # each continued its source's checkpoint, wherever the source ran
        source = rows[int(row["inherited_from"])]
        assert source["hash"] == row["hash"] and row["epochs"] == (3, 9)[row["rung"] - 1]
        assert row["spent_epochs"] == row["epochs"] - source["epochs"]
    assert any(r["worker_rank"] != rows[int(r["inherited_from"])]["worker_rank"] for r in promoted)
    assert any(r["inherited_layers"] > 0 for r in rows.values() if r["operator"] not in ("promote", "random"))


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_mpiexec_bad_job_stops_every_rank(tmp_path: Path) -> None:
    """A user mistake on the master ends the whole MPI job with status 2, no hang, one line."""
    job = tmp_path / "bad.toml"
    job.write_text('[search]\npopulation = "many"\n')
    out = run_menndl(["run", str(job), "--library", str(tmp_path / "x.h5")], launcher=[MPIEXEC, "-n", "3"], timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "search.population: expected an integer" in out.stderr
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_mpiexec_workers_that_cannot_start_end_the_job(tmp_path: Path) -> None:
    """Every worker rank failing its setup: exit 1 with the reason, every rank ends, no empty library."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    job = tmp_path / "cuda.toml"
    job.write_text(TINY_JOB.format(source="digits") + 'device = "cuda"\n')
    library = tmp_path / "cuda.h5"
    out = run_menndl(["run", str(job), "--library", str(library)], launcher=[MPIEXEC, "-n", "3"], timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.count("no CUDA device") == 2 and "every worker failed before any evaluation" in out.stderr
    assert not library.exists()


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_ctrl_c_to_mpiexec_stops_gracefully(tiny_job: Path, tmp_path: Path) -> None:
    """SIGINT to mpiexec reaches every rank; rank 0 stops dispatching, records what runs, all exit 0."""
    library = tmp_path / "int.h5"
    command = [MPIEXEC, "-n", "3", str(BIN / "menndl"), "run", str(tiny_job), "--library", str(library)]
    proc = subprocess.Popen(
        [*command, "--evaluations", "500"], env=menndl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    seen = ""
    while "workers ready" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, seen + stderr
    assert "SIGINT received" in stdout and "Traceback" not in stderr
    with Library.open(library) as lib:
        records = lib.records()
    assert 0 < len(records) < 500 and len({r["id"] for r in records}) == len(records)
    assert all(r["status"] == "ok" for r in records)
