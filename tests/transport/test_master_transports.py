"""One master test suite over all three transports: simulated, local processes, MPI (real mpiexec).

Each scenario of transport_suite.py (a hung task, a worker that dies, a worker
never ready, a stop signal and its grace period) runs over every transport it
makes sense on, with real processes, real ranks and real libraries, each
under a hard timeout.  Under MPICH a rank that dies ends the whole job, so
``worker-dies`` runs over local processes only (tests/faults/test_mpi_faults.py
checks that the library survives that abort and resumes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, REPO, menndl_env
from transport_suite import SCENARIOS, WORKERS, check, run_scenario, scenarios_on

from menndl.transport.local import LocalTransport
from menndl.worker.loop import worker_main

pytestmark = pytest.mark.timeout(120)

MPIEXEC = shutil.which("mpiexec", path=f"{BIN}:/usr/bin:/usr/local/bin")
MPI_TIMEOUT = 90  # seconds for one mpiexec job, start-up included


@pytest.mark.parametrize("name", scenarios_on("simulated"))
def test_simulated(name: str, tmp_path: Path) -> None:
    check(name, run_scenario(name, SCENARIOS[name].simulated_transport(), tmp_path))


@pytest.mark.parametrize("name", scenarios_on("local"))
def test_local_processes(name: str, tmp_path: Path) -> None:
    check(name, run_scenario(name, LocalTransport(WORKERS, worker_main), tmp_path))


@pytest.mark.mpiexec
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
@pytest.mark.parametrize("name", scenarios_on("mpi"))
def test_mpi(name: str, tmp_path: Path) -> None:
    out_file = tmp_path / "summary.json"
    env = menndl_env()
    env["PYTHONPATH"] = f"{REPO}:{REPO / 'tests'}"
    script = REPO / "tests" / "transport" / "transport_suite_mpi.py"
    command = [MPIEXEC, "-n", str(WORKERS + 1), sys.executable, str(script), name, str(out_file)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=MPI_TIMEOUT)
    assert out_file.exists(), out.stdout + out.stderr
    check(name, json.loads(out_file.read_text()))


def test_every_scenario_runs_somewhere_real() -> None:
    """Each scenario runs over real processes; only the one MPICH cannot survive skips MPI."""
    assert all("local" in scenario.transports for scenario in SCENARIOS.values())
    assert [name for name in SCENARIOS if name not in scenarios_on("mpi")] == ["worker-dies"]


def test_transports_import_no_genome_master_worker_or_torch() -> None:
    """The layering: a transport moves messages; what a worker runs is handed to it."""
    code = (
        "import sys\n"
        "import menndl.transport, menndl.transport.local, menndl.transport.simulated, menndl.transport.mpi\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith(('menndl.genome', "
        "'menndl.master', 'menndl.worker', 'menndl.protocol', 'menndl.library')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr


def test_local_transport_takes_only_an_entry_point_a_spawned_process_can_import() -> None:
    def inner(channel: object) -> None:
        pass

    for bad in (inner, lambda channel: None, "menndl.worker.loop.worker_main"):
        with pytest.raises(ValueError, match="top-level function"):
            LocalTransport(1, bad)  # type: ignore[arg-type]
    assert LocalTransport(1, worker_main).description == "local: 1 worker processes"
