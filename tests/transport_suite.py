"""One master scenario for every transport (simulated, local processes, MPI): see test_master_transports.py.

Three sleep-evaluator workers, a parameter cap, and task 3 made to hang: its
first worker misses the deadline and is retired, the task is re-queued once,
hangs again on a second worker, and is recorded as ``timeout``; the last
worker finishes the budget.  `run_scenario` returns a plain summary (it must
travel as JSON out of an MPI job); `check` asserts on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from menndl.genome import InputSpec
from menndl.job import parse_job
from menndl.library import Library, LibraryWriter
from menndl.master import Progress, Search
from menndl.transport.base import MasterTransport

EVALUATIONS = 14
MAX_PARAMS = 20000
HUNG_TASK = 3
WORKERS = 3
SPEC = InputSpec(shape=(1, 8, 8), num_classes=10)
JOB = (
    f"[search]\npopulation = 4\nevaluations = {EVALUATIONS}\nmax_params = {MAX_PARAMS}\ntask_deadline = 2.0\n"
    "[space]\nmax_features = 3\nmax_head = 1\n[training]\nmax_seconds = 1\n"
)
SETUP = {"evaluator": "sleep", "sleep": {"seconds": 0.02, "input_shape": list(SPEC.shape), "hang_tasks": [HUNG_TASK]}}


def run_scenario(transport: MasterTransport, folder: Path, **search_options: Any) -> dict[str, Any]:
    """Run the scenario's search over ``transport``; summarise the result and the library."""
    job = parse_job(JOB, path="suite.toml")
    writer = LibraryWriter(folder / "suite.h5", job_text=job.text)
    progress = Progress(open(os.devnull, "w"), tty=False)
    result = Search(job, SPEC, "suite", transport, writer, progress, worker_setup=SETUP, **search_options).run()
    with Library.open(folder / "suite.h5") as library:
        keys = ("id", "hash", "status", "params", "worker_rank")
        rows = [{key: row[key] for key in keys} for row in library.records()]
    return {
        "rows": rows,
        "timeouts": result.timeouts,
        "stop_reason": result.stop_reason,
        "worker_busy": {str(rank): seconds for rank, seconds in result.worker_busy.items()},
        "utilization": result.utilization,
        "stragglers": result.stragglers,
    }


def check(summary: dict[str, Any]) -> None:
    """The scenario's outcome, whatever the transport."""
    rows = summary["rows"]
    assert sorted(row["id"] for row in rows) == list(range(EVALUATIONS)), "every candidate recorded exactly once"
    assert len({row["hash"] for row in rows}) == len(rows), "no genome trained twice"
    assert all(row["params"] <= MAX_PARAMS for row in rows), "no genome over search.max_params was sent"
    status = {row["id"]: row["status"] for row in rows}
    assert status.pop(HUNG_TASK) == "timeout" and set(status.values()) == {"ok"}
    assert summary["timeouts"] == 1 and summary["stop_reason"] == "evaluation budget reached"
    survivors = {row["worker_rank"] for row in rows if row["status"] == "ok"}
    assert len(survivors) >= 1 and set(summary["worker_busy"]) == {str(rank) for rank in survivors}
    assert all(seconds > 0 for seconds in summary["worker_busy"].values()), "busy time tracked per rank"
    assert 0 < summary["utilization"] <= 1
    assert summary["stragglers"]  # ranks were retired past their deadline
