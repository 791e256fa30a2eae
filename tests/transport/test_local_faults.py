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


def wait_for_rows(library: Path, count: int, timeout: float = 120) -> None:
    """Until the library's journal holds ``count`` result rows (or the timeout passes)."""
    journal = library.with_name(library.name + ".journal")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b'"type":"row"') >= count:
            return
        time.sleep(0.1)


def test_killed_worker_is_replaced_its_task_rerun_and_nothing_is_lost(tiny_job: Path, tmp_path: Path) -> None:
    """Real training on the digits with one worker: kill -9 it mid-search; its replacement finishes the budget."""
    library = tmp_path / "lib.h5"
    proc = start(tiny_job, library, "--workers", "1", "--evaluations", "5")
    wait_for_rows(library, 1)
    victim = wait_for_workers(proc.pid, 1)[0]
    time.sleep(0.3)  # inside a training
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert "killed by signal SIGKILL; replacement worker 2 starting" in stderr and "worker 2 joined" in stderr
    with Library.open(library) as lib:
        records = lib.records()
    assert sorted(r["id"] for r in records) == list(range(5))  # every candidate recorded once
    assert all(r["status"] == "ok" for r in records)  # the killed worker's task was re-run
    assert len({r["hash"] for r in records}) == 5  # none trained twice


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


def test_killed_master_leaves_quiet_workers_and_a_library_that_resumes(tiny_job: Path, tmp_path: Path) -> None:
    """kill -9 of the master mid-search: its workers end without a traceback; --resume finishes the budget."""
    library = tmp_path / "lib.h5"
    proc = start(tiny_job, library, "--workers", "2", "--evaluations", "8")
    wait_for_rows(library, 2)
    workers = wait_for_workers(proc.pid, 2)
    searched = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and searched <= 0:  # the journal carries the search time (once a second)
        with Library.open(library) as lib:
            searched = lib.session()["search_seconds"]
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)  # EOF once the orphaned workers have ended too
    assert all(not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
               for pid in workers)  # fmt: skip
    assert "Traceback" not in stderr, stderr
    resumed = start(tiny_job, library, "--workers", "2", "--evaluations", "8", "--resume")
    _, stderr = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, stderr
    with Library.open(library) as lib:
        records = lib.records()
        session = lib.session()
    assert len(records) == 8 and len({r["hash"] for r in records}) == 8
    assert session["search_seconds"] > searched > 0  # the killed run's search time counted, then the resumed one's
