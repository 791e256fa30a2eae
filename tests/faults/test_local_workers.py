"""Local mode: worker processes that die (kill -9, segfault) or hang are replaced; nothing is lost.

Real runs of ``menndl run`` (the sleep evaluator where training is beside the point, real training
on the digits in one case), real processes, real signals, real libraries.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from harness import children, finish, kill_workers, sleep_command, start, wait_for, write_job
from ledger import assert_clean, read_ledger

from menndl.library import Library

pytestmark = pytest.mark.timeout(180)


def test_kill_9_of_workers_mid_search_completes_the_budget(tmp_path: Path) -> None:
    """Five workers killed one after another (two at a time at most): replaced, budget met, nothing lost."""
    job, library, log = write_job(tmp_path, evaluations=60), tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    proc = start(sleep_command(job, library, "--workers", "2", seconds=0.1, log=log))
    killed = kill_workers(proc, log, kills=5, every=8, timeout=60)
    status, stdout, stderr = finish(proc, timeout=120)
    assert status == 0, stderr
    assert killed == 5
    assert stderr.count("killed by signal SIGKILL; replacement worker") == 5
    assert stderr.count("joined") >= 4  # the last replacement may start as the budget ends
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=60)
    assert ledger.statuses == {"ok": 60}  # each killed task ran again elsewhere


def test_segfault_on_a_task_is_retried_once_then_recorded(tmp_path: Path) -> None:
    """Task 4 segfaults its worker every time: re-queued once, then a `lost` row; task 9 only once: `ok`."""
    job, library, log = write_job(tmp_path, evaluations=20), tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    inject = ("--crash", "4:SIGSEGV", "--crash", "9:SIGABRT")
    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "2", seconds=0.05, log=log,
                                                   inject=inject)), timeout=120)  # fmt: skip
    assert status == 0, stderr
    assert stderr.count("killed by signal SIGSEGV") == 2 and stderr.count("killed by signal SIGABRT") == 2
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=20)
    with Library.open(library) as lib:
        rows = {r["id"]: r for r in lib.records()}
    assert rows[4]["status"] == "lost" and "SIGSEGV" in rows[4]["error"]
    assert rows[9]["status"] == "lost" and "SIGABRT" in rows[9]["error"]
    assert ledger.statuses == {"ok": 18, "lost": 2}


def test_crash_once_runs_again_and_succeeds(tmp_path: Path) -> None:
    job, library, log = write_job(tmp_path, evaluations=12), tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    inject = ("--crash", "2:SIGSEGV", "--crash", "5:SIGKILL", "--crash-once")
    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "1", seconds=0.05, log=log,
                                                   inject=inject)), timeout=120)  # fmt: skip
    assert status == 0, stderr  # one worker: without replacements the first crash would end the search
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=12)
    assert ledger.statuses == {"ok": 12}


def test_broken_install_stops_respawning_and_says_why(tmp_path: Path) -> None:
    """Every worker dies before `ready`: three replacements in a row die, then none is started, exit 1."""
    job, library = write_job(tmp_path, evaluations=10), tmp_path / "lib.h5"
    proc = start(sleep_command(job, library, "--workers", "2", inject=("--crash-on-setup", "SIGSEGV")))
    status, _, stderr = finish(proc, timeout=120)
    assert status == 1, stderr
    assert "not replaced: 3 workers in a row died before reporting ready" in stderr
    assert stderr.count("worker lost") == 4  # 2 first workers + 2 replacements (the 3rd death stops it)
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("menndl: error: every worker failed")
    assert not library.exists()  # empty and created by this run: removed


def test_hung_worker_is_killed_at_its_deadline_and_replaced(tmp_path: Path) -> None:
    """Task 3 hangs: past search.task_deadline its worker is killed and replaced; the retry hangs too: `timeout`."""
    job = write_job(tmp_path, evaluations=12, search_extra="task_deadline = 1.5")
    library, log = tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "2", seconds=0.05, log=log,
                                                   inject=("--hang", "3"))), timeout=120)  # fmt: skip
    assert status == 0, stderr
    assert stderr.count("no result within the 2s deadline; replacement worker") == 2
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=12)
    with Library.open(library) as lib:
        row = lib.record(3)
    assert row["status"] == "timeout"
    assert ledger.statuses == {"ok": 11, "timeout": 1}


def test_sigstop_worker_is_caught_by_the_deadline(tmp_path: Path) -> None:
    """A worker stopped from outside (SIGSTOP) misses its deadline: killed, replaced, its task re-run."""
    job = write_job(tmp_path, evaluations=30, search_extra="task_deadline = 2")
    library, log = tmp_path / "lib.h5", tmp_path / "finished.jsonl"
    proc = start(sleep_command(job, library, "--workers", "2", seconds=0.1, log=log))
    wait_for(lambda: sum(1 for _ in open(log)) >= 4 if log.exists() else 0, timeout=60)
    victim = children(proc.pid)[0]
    os.kill(victim, signal.SIGSTOP)
    status, _, stderr = finish(proc, timeout=120)
    assert status == 0, stderr
    assert "no result within the 2s deadline; replacement worker" in stderr
    assert not Path(f"/proc/{victim}").exists() or "Z" in Path(f"/proc/{victim}/stat").read_text().split()[2]
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=30)
    assert ledger.statuses == {"ok": 30}


# Real training: tests/test_local_faults.py kills the only worker of a digits search; it is replaced.
