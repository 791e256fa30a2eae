"""MPI mode under faults, with real ranks under MPICH's ``mpiexec`` (every run under a hard timeout).

* a worker rank that stops answering (SIGSTOP) is caught by ``search.task_deadline``, gets no more
  work, and the search completes its budget on the other ranks (then ends the job with MPI_Abort,
  since the stopped rank cannot finalize);
* a worker rank or the master killed outright (kill -9) makes MPICH end the whole job: the library
  opens with everything recorded before, and ``--resume`` completes the budget with nothing lost
  and nothing trained twice.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from harness import MPIEXEC, finish, sleep_command, start, wait_for, write_job
from ledger import assert_clean, read_ledger

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(180),
              pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")]  # fmt: skip

EVALUATIONS = 60


def mpirun(job: Path, library: Path, log: Path, *extra: str):
    return start([str(MPIEXEC), "-n", "3", *sleep_command(job, library, *extra, seconds=0.1, log=log)])


def worker_pids(log: Path, count: int) -> list[int]:
    """Pids of worker ranks, from the evaluations they finished (the master writes no log lines)."""
    def found() -> list[int]:
        pids = {json.loads(line)["pid"] for line in log.read_text().splitlines()} if log.exists() else set()
        return sorted(pids) if len(pids) >= count else []
    return wait_for(found, timeout=60)


def master_pid(run_pid: int, workers: list[int]) -> int:
    """The rank that runs the master: the sleep_run process that is not a worker."""
    def find() -> int:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in workers:
                try:
                    command = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"sleep_run.py" in command and b"mpiexec" not in command:
                    return int(entry.name)
        return 0
    return wait_for(find, timeout=30)


def test_stopped_worker_rank_is_dropped_at_its_deadline(tmp_path: Path) -> None:
    job = write_job(tmp_path, EVALUATIONS, search_extra="task_deadline = 2")
    library, log = tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    proc = mpirun(job, library, log)
    victim = worker_pids(log, 2)[0]
    os.kill(victim, signal.SIGSTOP)
    try:
        status, stdout, stderr = finish(proc, timeout=120)
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(victim, sig)
            except ProcessLookupError:
                pass
    assert "worker lost: no result within the 2s deadline" in stderr, stderr
    assert "stopped: evaluation budget reached" in stdout
    assert status == 1 and "ending the MPI job with MPI_Abort(1)" in stderr  # the stopped rank cannot finalize
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=EVALUATIONS)
    with_victim = {entry["task"] for entry in map(json.loads, log.read_text().splitlines()) if entry["pid"] == victim}
    assert ledger.statuses == {"ok": EVALUATIONS} and with_victim  # its retried task ran elsewhere


@pytest.mark.parametrize("who", ["worker", "master"])
def test_killed_rank_aborts_the_job_and_resume_completes(who: str, tmp_path: Path) -> None:
    job = write_job(tmp_path, EVALUATIONS)
    library, log = tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    proc = mpirun(job, library, log)
    workers = worker_pids(log, 2)
    wait_for(lambda: log.read_text().count("\n") >= 15, timeout=60)
    victim = workers[0] if who == "worker" else master_pid(proc.pid, workers)
    os.kill(victim, signal.SIGKILL)
    status, stdout, stderr = finish(proc, timeout=60)
    assert status != 0 and "BAD TERMINATION" in stdout + stderr  # MPICH ends every rank
    assert "a rank that dies ends the MPI job; --resume continues (MPICH" in stderr  # said at start
    stopped = read_ledger(library, log, may_be_missing=range(EVALUATIONS))  # the library opens
    assert 0 < stopped.rows < EVALUATIONS and stopped.twice == 0
    time.sleep(0.2)
    status, _, stderr = finish(mpirun(job, library, log, "--resume"), timeout=120)
    assert status == 0, stderr
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=EVALUATIONS)
    assert ledger.statuses == {"ok": EVALUATIONS}
