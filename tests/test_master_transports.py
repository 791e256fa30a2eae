"""One master test suite over all three transports: simulated, local processes, MPI (real mpiexec)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, REPO, menndl_env
from transport_suite import HUNG_TASK, SPEC, WORKERS, check, run_scenario

from menndl.transport.local import LocalTransport
from menndl.transport.simulated import SimulatedTransport
from menndl.worker.loop import worker_main
from menndl.worker.simulated import SimulatedEvaluator, parse_eval_time

pytestmark = pytest.mark.timeout(180)

MPIEXEC = shutil.which("mpiexec", path=f"{BIN}:/usr/bin:/usr/local/bin")


def test_simulated(tmp_path: Path) -> None:
    evaluator = SimulatedEvaluator(parse_eval_time("fixed:0.02"), SPEC, hang_tasks=frozenset({HUNG_TASK}))
    transport = SimulatedTransport(WORKERS, evaluator)
    check(run_scenario(transport, tmp_path, clock=transport.clock))


def test_local_processes(tmp_path: Path) -> None:
    check(run_scenario(LocalTransport(WORKERS, worker_main), tmp_path))


@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_mpi(tmp_path: Path) -> None:
    out_file = tmp_path / "summary.json"
    env = menndl_env()
    env["PYTHONPATH"] = f"{REPO}:{REPO / 'tests'}"
    command = [MPIEXEC, "-n", str(WORKERS + 1), sys.executable, str(REPO / "tests" / "transport_suite_mpi.py"),
               str(out_file)]  # fmt: skip
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    assert out_file.exists(), out.stdout + out.stderr
    check(json.loads(out_file.read_text()))
