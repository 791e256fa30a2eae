"""The master loop's bookkeeping, driven by an in-memory transport (no processes).

The real transports are exercised end to end in test_e2e_*.py and, scenario by
scenario, in test_master_transports.py; here a scripted transport makes workers
answer (with the synthetic metrics every fake evaluator reports), fail, die or
hang on cue.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from menndl.genome import Genome, InputSpec, count_params
from menndl.job import parse_job
from menndl.library import Library, LibraryWriter
from menndl.master.progress import Progress
from menndl.master.search import Search
from menndl.transport.base import MasterTransport, Message
from menndl.worker.simulated import synthetic_metrics

pytestmark = pytest.mark.timeout(60)

SPEC = InputSpec(shape=(1, 8, 8), num_classes=10)


class ScriptedTransport(MasterTransport):
    """Workers that answer at once, except those told to hang, fail setup, or die."""

    def __init__(self, workers: int, *, hang: set[int] = frozenset(), fatal: set[int] = frozenset(),
                 never_ready: set[int] = frozenset(), die_on_task: dict[int, int] | None = None) -> None:  # fmt: skip
        self.ids = list(range(1, workers + 1))
        self.hang, self.fatal, self.never_ready = set(hang), set(fatal), set(never_ready)
        self.die_on_task = dict(die_on_task or {})  # worker -> task id whose receipt kills it
        self.outbox: deque[tuple[int, Message]] = deque()
        self.discarded: list[int] = []
        self.tasks_seen: list[tuple[int, int]] = []
        self.closed = False

    @property
    def description(self) -> str:
        return "scripted"

    def start(self, setup: Mapping[str, Any]) -> list[int]:
        assert setup["type"] == "setup"
        for worker in self.ids:
            if worker not in self.fatal and worker not in self.never_ready:
                self.outbox.append((worker, {"type": "ready", "host": "h", "device": "cpu"}))
        return list(self.ids)

    def send(self, worker: int, message: Mapping[str, Any] | None) -> None:
        if message is None or worker in self.hang or worker in self.never_ready:
            return
        self.tasks_seen.append((worker, message["task"]))
        if worker in self.fatal:
            self.outbox.append((worker, {"type": "fatal", "error": "cannot load data"}))
        elif self.die_on_task.get(worker) == message["task"]:
            self.outbox.append((worker, {"type": "lost", "error": "killed by signal SIGKILL"}))
        else:
            result = synthetic_metrics(message, SPEC, 0.01)
            self.outbox.append((worker, {"type": "result", "task": message["task"], **result, "host": "h",
                                         "device": "cpu"}))  # fmt: skip

    def receive(self, timeout: float) -> tuple[int, Message] | None:
        if self.outbox:
            return self.outbox.popleft()
        time.sleep(min(timeout, 0.01))
        return None

    def discard(self, worker: int) -> None:
        self.discarded.append(worker)

    def close(self, abandon: bool = False) -> None:
        self.closed = True


def run(tmp_path: Path, transport: ScriptedTransport, evaluations: int = 12, **deadlines: float):
    job = parse_job(f"[search]\npopulation = 4\nevaluations = {evaluations}\n", path="t.toml")
    writer = LibraryWriter(tmp_path / "lib.h5", job_text=job.text)
    progress = Progress(open("/dev/null", "w"), tty=False)
    result = Search(job, SPEC, "fp", transport, writer, progress, **deadlines).run()
    with Library.open(tmp_path / "lib.h5") as lib:
        return result, lib.records(), lib.pareto_ids()


def test_every_candidate_recorded_once_and_front_written(tmp_path: Path) -> None:
    transport = ScriptedTransport(3)
    result, records, pareto = run(tmp_path, transport)
    assert sorted(r["id"] for r in records) == list(range(12))
    assert result.stop_reason == "evaluation budget reached" and transport.closed
    assert pareto and set(pareto) == {r["id"] for r in result.front}


def test_worker_that_dies_has_its_task_rerun_elsewhere(tmp_path: Path) -> None:
    transport = ScriptedTransport(2, die_on_task={2: 1})
    result, records, _ = run(tmp_path, transport)
    assert sorted(r["id"] for r in records) == list(range(12))
    assert all(r["status"] == "ok" for r in records)
    assert (1, 1) in transport.tasks_seen  # task 1 went to worker 1 after worker 2 died on it
    assert {r["worker_rank"] for r in records} == {1}


def test_task_lost_twice_is_recorded_as_lost(tmp_path: Path) -> None:
    transport = ScriptedTransport(3, die_on_task={2: 1, 3: 1})
    _, records, _ = run(tmp_path, transport)
    by_id = {r["id"]: r for r in records}
    assert by_id[1]["status"] == "lost" and "SIGKILL" in by_id[1]["error"]
    assert by_id[1]["params"] == count_params(Genome.from_json(by_id[1]["genome"]), SPEC)  # size known anyway
    assert sorted(by_id) == list(range(12))


def test_hung_worker_is_retired_at_its_deadline(tmp_path: Path) -> None:
    transport = ScriptedTransport(2, hang={2})
    result, records, _ = run(tmp_path, transport, evaluations=6, deadline=0.5)
    assert transport.discarded == [2] and result.stragglers
    assert sorted(r["id"] for r in records) == list(range(6))
    assert all(r["status"] == "ok" and r["worker_rank"] == 1 for r in records)


def test_deadline_clock_starts_when_the_worker_is_ready(tmp_path: Path) -> None:
    """A slow start-up is not a hung task: a worker never ready is retired only at the startup deadline."""
    transport = ScriptedTransport(2, never_ready={2})
    result, records, _ = run(tmp_path, transport, evaluations=6, deadline=0.05, startup_deadline=0.5)
    assert transport.discarded == [2]  # by the startup deadline; worker 1 answered every task in time
    assert sorted(r["id"] for r in records) == list(range(6)) and {r["worker_rank"] for r in records} == {1}


def test_workers_failing_setup_end_the_search(tmp_path: Path) -> None:
    transport = ScriptedTransport(2, fatal={1, 2})
    result, records, _ = run(tmp_path, transport)
    assert result.stop_reason == "no workers left" and records == []
    assert math.isnan(result.best_score)


def test_one_evaluation_budget(tmp_path: Path) -> None:
    result, records, _ = run(tmp_path, ScriptedTransport(2), evaluations=1)
    assert len(records) == 1 and records[0]["operator"] == "random"


class HintedTransport(ScriptedTransport):
    """Scripted workers whose number is known before start (as under MPI): the first tasks are proposed early."""

    @property
    def worker_count_hint(self) -> int | None:
        return len(self.ids)


def test_first_tasks_proposed_before_start_go_out_first_in_order(tmp_path: Path) -> None:
    transport = HintedTransport(3)
    result, records, _ = run(tmp_path, transport, evaluations=12)
    assert sorted(r["id"] for r in records) == list(range(12))  # nothing skipped, nothing twice
    assert [task for _, task in transport.tasks_seen[:3]] == [0, 1, 2]  # the prepared ones, one per worker
    assert [worker for worker, _ in transport.tasks_seen[:3]] == [1, 2, 3]


def test_first_tasks_proposed_early_respect_a_small_budget(tmp_path: Path) -> None:
    transport = HintedTransport(4)
    result, records, _ = run(tmp_path, transport, evaluations=2)
    assert sorted(r["id"] for r in records) == [0, 1] and result.stop_reason == "evaluation budget reached"


def test_node_layouts_index_workers_per_node_in_rank_order() -> None:
    from menndl.transport.mpi import node_layouts

    layouts = node_layouts({3: "b", 1: "a", 2: "a", 5: "b", 4: "c"})
    assert layouts == {1: (0, 2), 2: (1, 2), 3: (0, 2), 5: (1, 2), 4: (0, 1)}


def test_deadline_queues_stay_bounded_and_still_catch_a_hung_worker(tmp_path: Path, monkeypatch) -> None:
    """Every task start adds a deadline entry; finished tasks' entries are dropped in bulk, live ones kept."""
    from menndl.master import scheduler
    from menndl.master.scheduler import Scheduler

    compactions = []
    original = Scheduler._compact_expiries

    def counting(self: Scheduler) -> None:
        original(self)
        compactions.append(sum(map(len, self._expiries)))

    monkeypatch.setattr(Scheduler, "_compact_expiries", counting)
    monkeypatch.setattr(scheduler, "EXPIRY_SLACK", 1)  # compact past 256 entries
    transport = ScriptedTransport(3, hang={2})
    result, records, _ = run(tmp_path, transport, evaluations=1200, deadline=2.0)
    assert len(compactions) >= 3 and all(size <= 3 for size in compactions)  # at most one live entry per worker
    assert transport.discarded == [2] and result.stragglers  # the hung worker's deadline survived compaction
    assert len(records) == 1200 and sum(1 for r in records if r["status"] == "ok") == 1200
