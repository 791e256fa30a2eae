"""Local mode under faults: a killed worker and a stop signal lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, menndl_env

from menndl.library import Library

pytestmark = pytest.mark.timeout(300)


def start(job: Path, library: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "menndl"), "run", str(job), "--library", str(library), *extra],
        env=menndl_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master), "-f", "spawn_main"], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def wait_for_workers(master: int, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [pid for pid in worker_pids(master) if "pipe_handle" in Path(f"/proc/{pid}/cmdline").read_text()]
        if len(pids) >= count:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"{count} workers did not start")


def test_killed_worker_task_is_rerun_by_another_and_nothing_is_lost(tiny_job: Path, tmp_path: Path) -> None:
    library = tmp_path / "lib.h5"
    proc = start(tiny_job, library, "--workers", "2", "--evaluations", "30")
    victim = wait_for_workers(proc.pid, 2)[0]
    time.sleep(2)  # let it take a task
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert "worker lost" in stderr and "SIGKILL" in stderr
    with Library.open(library) as lib:
        records = lib.records()
    assert sorted(r["id"] for r in records) == list(range(30))  # every candidate recorded once
    assert all(r["status"] == "ok" for r in records)  # the killed worker's task was re-run


def test_sigterm_stops_dispatching_and_keeps_running_results(tiny_job: Path, tmp_path: Path) -> None:
    library = tmp_path / "lib.h5"
    proc = start(tiny_job, library, "--workers", "2", "--evaluations", "200")
    wait_for_workers(proc.pid, 2)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "SIGTERM: no new evaluations" in stderr and "SIGTERM received" in stdout
    with Library.open(library) as lib:
        records = lib.records()
        pareto = lib.pareto_ids()
    assert 0 < len(records) < 200
    assert len({r["id"] for r in records}) == len(records)
    assert pareto and set(pareto) <= {r["id"] for r in records}
    assert worker_pids(proc.pid) == []
