"""An idle MPI worker (and an idle master) must not busy-spin: under 5% of a core, measured with psutil."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import BIN, REPO, menndl_env

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180)]

MPIEXEC = shutil.which("mpiexec", path=f"{BIN}:/usr/bin:/usr/local/bin")


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_idle_worker_and_master_use_under_five_percent_of_a_core() -> None:
    env = menndl_env()
    env["PYTHONPATH"] = str(REPO)
    command = [MPIEXEC, "-n", "2", sys.executable, str(REPO / "tests" / "transport" / "mpi_idle_probe.py"), "3"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stdout + out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["seconds"] >= 2.9
    assert figures["worker_core_share"] < 0.05, figures
    assert figures["master_core_share"] < 0.05, figures
