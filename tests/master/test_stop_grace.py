"""The graceful stop of batch jobs, in the master loop with a scripted transport (no processes).

A stop signal (here SIGUSR2, the batch checkpoint signal) stops dispatching; after ``search.stop_grace``
the evaluations still running are left to ``--resume`` (no row), which runs them first, exactly once.
The search time is recorded in the library and a resume counts ``search.time_limit`` on from it.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import run_menndl
from test_search_loop import SPEC, ScriptedTransport

from menndl.commands.run import resume_command, stop_line
from menndl.errors import UserError
from menndl.job import parse_job
from menndl.library import Library, LibraryWriter
from menndl.library.status import search_status
from menndl.master.progress import Progress
from menndl.master.resume import load_resume
from menndl.master.search import Search, SearchResult

pytestmark = pytest.mark.timeout(60)


class SignalAfter(ScriptedTransport):
    """Scripted workers; the process gets ``signum`` once ``after`` tasks were handed out."""

    def __init__(self, workers: int, after: int, signum: int = signal.SIGUSR2, **kwargs: Any) -> None:
        super().__init__(workers, **kwargs)
        self.after, self.signum, self.sent = after, signum, False

    def receive(self, timeout: float):
        if not self.sent and len(self.tasks_seen) >= self.after:
            self.sent = True
            os.kill(os.getpid(), self.signum)
        return super().receive(timeout)


def _search(path: Path, job_text: str, transport: ScriptedTransport, resume: bool = False) -> SearchResult:
    job = parse_job(job_text, path="t.toml")
    state = load_resume(path) if resume else None
    writer = LibraryWriter.reopen(path) if resume else LibraryWriter(path, job_text=job.text)
    progress = Progress(open(os.devnull, "w"), tty=False)
    return Search(job, SPEC, "fp", transport, writer, progress, resume=state).run()


def test_stop_grace_leaves_running_evaluations_to_resume_which_runs_them_once(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    job = "[search]\npopulation = 4\nevaluations = 12\nstop_grace = 0\n"
    first = SignalAfter(2, after=6, hang={2})  # worker 2 never answers: its tasks are running at the stop
    result = _search(path, job, first)
    assert result.signal_stop == "SIGUSR2" and result.stop_reason == "SIGUSR2 received"
    assert not result.stop_reason.endswith("twice")
    with Library.open(path) as lib:
        done = sorted(lib.column("id").tolist())
        hung = sorted(int(task["id"]) for task in lib.resume_state()[2])  # handed out, no row
        assert not set(done) & set(hung) and "lost" not in lib.column("status").tolist()  # no row for them
        status = search_status(lib)
    assert result.to_rerun == len(hung) == 2  # worker 2's running task and the one queued behind it
    assert status["state"] == "stopped" and status["to_rerun"] == len(hung)
    out = run_menndl(["library", str(path), "status"], timeout=60)
    assert out.returncode == 3 and "state: stopped (SIGUSR2 received)" in out.stdout, out.stderr

    second = ScriptedTransport(2)
    final = _search(path, job, second, resume=True)
    rerun = [task for _, task in second.tasks_seen]
    assert sorted(rerun[: len(hung)]) == hung  # the abandoned ones first
    assert not set(rerun) & set(done)  # nothing that finished is trained again
    assert final.evaluations == 12 and final.stop_reason == "evaluation budget reached"
    with Library.open(path) as lib:
        assert sorted(lib.column("id").tolist()) == list(range(12))
        assert len(set(lib.column("hash").tolist())) == 12
        assert search_status(lib)["state"] == "finished"
    assert run_menndl(["library", str(path), "status"], timeout=60).returncode == 0


def test_all_running_evaluations_back_within_the_grace_period_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    result = _search(path, "[search]\npopulation = 4\nevaluations = 40\n", SignalAfter(2, after=5))
    assert result.signal_stop == "SIGUSR2" and result.to_rerun == 0 and not result.abandoned
    with Library.open(path) as lib:
        assert sorted(lib.column("id").tolist()) == list(range(result.evaluations)) and 0 < len(lib) < 40


def test_the_time_limit_counts_the_search_time_of_earlier_runs(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    _search(path, "[search]\npopulation = 4\nevaluations = 50\n", SignalAfter(2, after=4))
    with Library.open(path) as lib:
        before, seconds = len(lib), lib.session()["search_seconds"]
    assert seconds > 0 and load_resume(path).search_seconds == seconds
    # A limit shorter than the time already spent: the resumed search dispatches nothing new.
    result = _search(path, f"[search]\npopulation = 4\ntime_limit = {seconds / 2}\n", ScriptedTransport(2), True)
    assert result.evaluations == before and result.stop_reason == "time limit reached"
    assert result.search_seconds >= seconds
    with Library.open(path) as lib:
        assert search_status(lib)["state"] == "finished" and lib.session()["search_seconds"] >= seconds


def test_the_exit_line_names_the_signal_the_library_and_the_exact_resume_command(tmp_path: Path) -> None:
    args = argparse.Namespace(job="jobs/my job.toml", evaluations=500, time_limit=None, seed=None)
    library = tmp_path / "lib.h5"
    result = SearchResult(library, 37, 0, [], 0.9, 10.0, "SIGUSR2 received", search_seconds=412.4, to_rerun=3,
                          signal_stop="SIGUSR2")  # fmt: skip
    line = stop_line(result, args, library)
    assert line == (
        f"menndl: stopped by SIGUSR2 after 412s of search: 37 evaluations in {library}, 3 to run again; "
        f"continue with: menndl run 'jobs/my job.toml' --library {library} --evaluations 500 --resume"
    )
    assert "\n" not in line and resume_command(args, library).endswith("--resume")


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_stop_grace_must_be_finite_seconds(value: str) -> None:
    with pytest.raises((ValueError, UserError), match="search.stop_grace: expected (seconds >= 0|a finite number)"):
        parse_job(f"[search]\nevaluations = 4\nstop_grace = {value}\n", path="t.toml")
