"""Master scenarios for every transport (simulated, local processes, MPI): see test_master_transports.py.

Each scenario is a small search whose three workers run the sleep evaluator
(virtual workers with the simulated evaluator on the simulated transport),
with one fault injected, and real libraries:

* ``hung-task``: task 3 hangs: its first worker misses the deadline and is
  retired, the task is re-queued once, hangs again on a second worker, and is
  recorded as ``timeout``; the last worker finishes the budget.
* ``worker-dies``: task 4 kills its worker (SIGKILL) each time it starts: it is
  re-run once on another worker, then recorded as ``lost``; every dead worker
  is replaced (local processes only: under MPICH a dead rank ends the job).
* ``never-ready``: worker 2 never reports ready: it is retired at the startup
  deadline, the tasks it was sent (never started) run elsewhere, and the budget
  completes on the others.
* ``stop-grace``: the master gets SIGUSR2 (a batch job's checkpoint signal) as
  it records its 6th result, while worker 2 is on a task that hangs:
  dispatching stops, the evaluations that come back within the grace period
  are recorded, and at its end the hung task and the one queued behind it are
  left to ``--resume`` without a row; the library says so.

`run_scenario` returns a plain summary (it must travel as JSON out of an MPI
job); `check` asserts on it.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from menndl.genome import InputSpec
from menndl.job import parse_job
from menndl.library import Library, LibraryWriter
from menndl.library.status import describe, search_status
from menndl.master import Progress, Search
from menndl.transport.base import MasterTransport
from menndl.transport.simulated import SimulatedTransport
from menndl.worker.simulated import SimulatedEvaluator, parse_eval_time

WORKERS = 3
MAX_PARAMS = 20000
SPEC = InputSpec(shape=(1, 8, 8), num_classes=10)
TRANSPORTS = ("simulated", "local", "mpi")

HUNG_TASK = 3
DYING_TASK = 4
NEVER_READY = 2  # the worker (rank) that never reports ready
STARTUP_DEADLINE = 5.0  # seconds: every other local worker process is ready well before
STOP_AFTER = 6  # results recorded when the stop signal comes
STOP_GRACE = 2.0
HUNG_AT_STOP = 1  # task 1 goes to worker 2 first; the task queued on that worker waits behind it
HUNG_WORKER = 2


def _job(evaluations: int, search_extra: str = "") -> str:
    return (f"[search]\npopulation = 4\nevaluations = {evaluations}\nmax_params = {MAX_PARAMS}\n{search_extra}"
            "[space]\nmax_features = 3\nmax_head = 1\n[training]\nmax_seconds = 1\n")  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """A search with one fault: its job, the sleep evaluator's setup table, where it runs, what must hold."""

    job: str
    sleep: dict[str, Any]
    transports: tuple[str, ...]
    check: Callable[[dict[str, Any]], None]
    search: dict[str, Any] = field(default_factory=dict)  # extra `Search` arguments
    stop_after: int = 0  # send the master SIGUSR2 as it records this many results (0: never)

    @property
    def setup(self) -> dict[str, Any]:
        """The search's ``worker_setup``: the sleep evaluator with this scenario's table."""
        return {"evaluator": "sleep", "sleep": {"input_shape": list(SPEC.shape), **self.sleep}}

    def simulated_transport(self) -> SimulatedTransport:
        """Virtual workers whose evaluator times and hangs tasks as the sleep table says."""
        model = parse_eval_time(f"fixed:{self.sleep['seconds']}")
        evaluator = SimulatedEvaluator(model, SPEC, hang_tasks=frozenset(self.sleep.get("hang_tasks", ())))
        return SimulatedTransport(WORKERS, evaluator)


class _SignalAfter(LibraryWriter):
    """The real library writer; the master's own process gets SIGUSR2 as it records its ``after``-th result."""

    def __init__(self, path: Path, after: int, **options: Any) -> None:
        super().__init__(path, **options)
        self._left = after

    def append(self, record: Mapping[str, Any]) -> None:
        super().append(record)
        self._left -= 1
        if self._left == 0:
            os.kill(os.getpid(), signal.SIGUSR2)


def run_scenario(name: str, transport: MasterTransport, folder: Path) -> dict[str, Any]:
    """Run scenario ``name``'s search over ``transport``; summarise the result and the library."""
    scenario = SCENARIOS[name]
    job = parse_job(scenario.job, path="suite.toml")
    path = folder / "suite.h5"
    writer = _SignalAfter(path, scenario.stop_after, job_text=job.text)
    stream = io.StringIO()
    options: dict[str, Any] = dict(scenario.search)
    if isinstance(transport, SimulatedTransport):
        options["clock"] = transport.clock
    search = Search(job, SPEC, "suite", transport, writer, Progress(stream, tty=False), worker_setup=scenario.setup,
                    **options)  # fmt: skip
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # a late signal must not end the test's process
    try:
        result = search.run()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    with Library.open(path) as library:
        keys = ("id", "hash", "status", "params", "worker_rank")
        rows = [{**{key: row[key] for key in keys}, "error": str(row.get("error", ""))[:200]}
                for row in library.records()]  # fmt: skip
        pending = sorted(int(task["id"]) for task in library.resume_state()[2])
        status = search_status(library)
    return {
        "rows": rows,
        "pending": pending,
        "library_status": status,
        "status_lines": describe(status, str(path)),
        "timeouts": result.timeouts,
        "stop_reason": result.stop_reason,
        "signal_stop": result.signal_stop,
        "to_rerun": result.to_rerun,
        "abandoned": result.abandoned,
        "worker_busy": {str(rank): seconds for rank, seconds in result.worker_busy.items()},
        "utilization": result.utilization,
        "stragglers": result.stragglers,
        "elapsed": result.elapsed,
        "messages": stream.getvalue().splitlines(),
        "respawned": getattr(transport, "respawned", None),
    }


def check(name: str, summary: dict[str, Any]) -> None:
    """Scenario ``name``'s outcome, whatever the transport."""
    SCENARIOS[name].check(summary)


def _statuses(summary: dict[str, Any]) -> dict[int, str]:
    return {row["id"]: row["status"] for row in summary["rows"]}


def _every_candidate_once(summary: dict[str, Any], evaluations: int) -> None:
    rows = summary["rows"]
    assert sorted(row["id"] for row in rows) == list(range(evaluations)), "every candidate recorded exactly once"
    assert len({row["hash"] for row in rows}) == len(rows), "no genome trained twice"
    assert all(row["params"] <= MAX_PARAMS for row in rows), "no genome over search.max_params was sent"
    assert summary["pending"] == [], "nothing left in flight"
    assert summary["library_status"]["state"] == "finished"


def _messages(summary: dict[str, Any], text: str) -> list[str]:
    return [line for line in summary["messages"] if text in line]


def _check_hung_task(summary: dict[str, Any]) -> None:
    _every_candidate_once(summary, 14)
    status = _statuses(summary)
    assert status.pop(HUNG_TASK) == "timeout" and set(status.values()) == {"ok"}
    assert summary["timeouts"] == 1 and summary["stop_reason"] == "evaluation budget reached"
    assert len(_messages(summary, "worker lost: no result within the 2s deadline")) == 2
    survivors = {row["worker_rank"] for row in summary["rows"] if row["status"] == "ok"}
    assert len(survivors) >= 1 and set(summary["worker_busy"]) == {str(rank) for rank in survivors}
    assert all(seconds > 0 for seconds in summary["worker_busy"].values()), "busy time tracked per rank"
    assert 0 < summary["utilization"] <= 1
    assert summary["stragglers"]  # ranks were retired past their deadline


def _check_worker_dies(summary: dict[str, Any]) -> None:
    _every_candidate_once(summary, 14)
    rows = {row["id"]: row for row in summary["rows"]}
    assert rows[DYING_TASK]["status"] == "lost" and "SIGKILL" in rows[DYING_TASK]["error"]
    assert {row["status"] for key, row in rows.items() if key != DYING_TASK} == {"ok"}
    assert summary["stop_reason"] == "evaluation budget reached" and summary["timeouts"] == 0
    deaths = _messages(summary, "worker lost: worker process")
    assert len(deaths) == 2 and all("killed by signal SIGKILL; replacement worker" in line for line in deaths)
    assert summary["respawned"] == 2
    assert not summary["stragglers"]  # a dead worker leaves nothing running


def _check_never_ready(summary: dict[str, Any]) -> None:
    _every_candidate_once(summary, 12)
    assert set(_statuses(summary).values()) == {"ok"}  # the tasks it was sent had not run: no retry spent
    assert NEVER_READY not in {row["worker_rank"] for row in summary["rows"]}
    retired = _messages(summary, f"[{NEVER_READY}@")
    assert len(retired) == 1 and f"no ready message within the {STARTUP_DEADLINE:.0f}s deadline" in retired[0]
    assert summary["elapsed"] >= STARTUP_DEADLINE and summary["timeouts"] == 0
    assert summary["stop_reason"] == "evaluation budget reached" and summary["stragglers"]
    assert summary["respawned"] in (None, 1)  # local mode replaced it


def _check_stop_grace(summary: dict[str, Any]) -> None:
    rows, pending = summary["rows"], summary["pending"]
    assert summary["signal_stop"] == "SIGUSR2" and summary["stop_reason"] == "SIGUSR2 received"
    assert summary["abandoned"] and summary["stragglers"]
    assert HUNG_AT_STOP in pending and len(pending) == summary["to_rerun"] == 2  # the hung task and one queued
    assert len(rows) > STOP_AFTER, "evaluations back within the grace period are recorded"
    assert {row["status"] for row in rows} == {"ok"} and HUNG_WORKER not in {row["worker_rank"] for row in rows}
    ids = sorted([row["id"] for row in rows] + pending)
    assert ids == list(range(len(ids))) and len(ids) < 40, "every task handed out: a row or left to resume"
    assert summary["elapsed"] >= STOP_GRACE
    assert _messages(summary, "grace period of 2s (search.stop_grace) over; leaving 1 running evaluations")
    status = summary["library_status"]
    assert status["state"] == "stopped" and status["stop_reason"] == "SIGUSR2 received"
    assert status["to_rerun"] == 2 and status["evaluations"] == len(rows)
    lines = summary["status_lines"]  # what `menndl library LIB status` prints
    assert lines[1].startswith("state: stopped (SIGUSR2 received)") and "--resume` continues it" in lines[1]
    assert "2 handed out without a result" in lines[2]


SCENARIOS: dict[str, Scenario] = {
    "hung-task": Scenario(
        _job(14, "task_deadline = 2.0\n"), {"seconds": 0.02, "hang_tasks": [HUNG_TASK]}, TRANSPORTS,
        _check_hung_task,
    ),
    "worker-dies": Scenario(
        _job(14), {"seconds": 0.05, "crash_tasks": {DYING_TASK: "SIGKILL"}}, ("local",), _check_worker_dies
    ),
    "never-ready": Scenario(
        _job(12), {"seconds": 0.05, "hang_on_setup": [NEVER_READY]}, ("local", "mpi"), _check_never_ready,
        search={"startup_deadline": STARTUP_DEADLINE},
    ),
    "stop-grace": Scenario(
        _job(40, f"stop_grace = {STOP_GRACE}\n"), {"seconds": 0.2, "hang_tasks": [HUNG_AT_STOP]}, TRANSPORTS,
        _check_stop_grace, stop_after=STOP_AFTER,
    ),
}  # fmt: skip


def scenarios_on(transport: str) -> list[str]:
    """The scenarios that run over ``transport``."""
    return [name for name, scenario in SCENARIOS.items() if transport in scenario.transports]
