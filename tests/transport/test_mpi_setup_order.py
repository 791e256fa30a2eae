"""Every MPI worker rank receives its setup before anything else, however late it says hello (real mpiexec)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, REPO, menndl_env

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(120)]

MPIEXEC = shutil.which("mpiexec", path=f"{BIN}:/usr/bin:/usr/local/bin")


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_setup_comes_first_with_a_task_without_one_and_for_a_rank_heard_from_late(tmp_path: Path) -> None:
    out_file = tmp_path / "echoed.json"
    env = menndl_env()
    env["PYTHONPATH"] = f"{REPO}:{REPO / 'tests'}"
    script = REPO / "tests" / "transport" / "mpi_setup_order_probe.py"
    assert MPIEXEC is not None
    out = subprocess.run([MPIEXEC, "-n", "4", sys.executable, str(script), str(out_file)],
                         env=env, capture_output=True, text=True, timeout=90)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    echoed = {int(rank): got for rank, got in json.loads(out_file.read_text()).items()}
    # 1: its setup went out right before its task; 2: no task, set up at the first receive;
    # 3: its task was sent before its hello came, and held until its setup had gone
    assert echoed == {1: ["setup", "task 1"], 2: ["setup"], 3: ["setup", "task 3"]}
