"""End to end under a real ``mpiexec``: rank 0 is the master, the other ranks are workers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import BIN, run_menndl

from menndl.library import Library

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(300)]

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
