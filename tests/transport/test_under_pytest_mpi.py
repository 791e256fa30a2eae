"""Run tests/transport/under_mpi with pytest-mpi on 3 real ranks (``mpiexec -n 3 python -m pytest --with-mpi``)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import BIN, REPO, menndl_env

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(300)]

MPIEXEC = shutil.which("mpiexec", path=f"{BIN}:/usr/bin:/usr/local/bin")


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")
def test_the_transport_unit_tests_pass_on_three_ranks_under_pytest_mpi() -> None:
    pytest.importorskip("pytest_mpi")
    assert MPIEXEC is not None
    command = [MPIEXEC, "-n", "3", sys.executable, "-m", "pytest", "--with-mpi", "-q", "-p", "no:cacheprovider",
               "--timeout", "60", str(REPO / "tests" / "transport" / "under_mpi")]  # fmt: skip
    env = menndl_env()
    env["PYTHONPATH"] = f"{REPO}:{REPO / 'tests'}"
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("3 passed") == 3, done.stdout[-3000:]  # every rank ran all three
