"""Resume and seeding in the master loop, driven by the scripted transport (no processes)."""

from __future__ import annotations

import gc
import random
from pathlib import Path

import pytest
from test_search_loop import SPEC, ScriptedTransport

from menndl.genome import InputSpec, SearchSpace, is_valid, random_genome
from menndl.job import parse_job
from menndl.library import Library, LibraryWriter
from menndl.library.journal import journal_path
from menndl.master.progress import Progress
from menndl.master.resume import load_resume, seed_genomes
from menndl.master.search import Search

pytestmark = pytest.mark.timeout(60)


def _search(path: Path, evaluations: int, transport: ScriptedTransport, resume: bool = False, seeds=None):
    job = parse_job(f"[search]\npopulation = 4\nevaluations = {evaluations}\n", path="t.toml")
    state = load_resume(path) if resume else None
    writer = LibraryWriter.reopen(path) if resume else LibraryWriter(path, job_text=job.text)
    progress = Progress(open("/dev/null", "w"), tty=False)
    return Search(job, SPEC, "fp", transport, writer, progress, resume=state, seeds=seeds).run()


def test_resume_extends_the_budget_without_repeating_a_genome(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    _search(path, 6, ScriptedTransport(2))
    transport = ScriptedTransport(2)
    result = _search(path, 12, transport, resume=True)
    assert sorted(task for _, task in transport.tasks_seen) == list(range(6, 12))  # only new ids ran
    assert result.evaluations == 12
    with Library.open(path) as lib:
        assert sorted(lib.column("id").tolist()) == list(range(12))
        assert len(set(lib.column("hash").tolist())) == 12
        assert not lib.live


def test_resume_requeues_what_was_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    first = ScriptedTransport(2)
    _search(path, 4, first)
    # a crashed master: two tasks handed out, one finished, the process gone (journal left behind)
    writer = LibraryWriter.reopen(path)
    genomes = [random_genome(random.Random(1000 + i), SearchSpace(), SPEC) for i in range(2)]
    for i, genome in enumerate(genomes):
        writer.task_started(
            {
                "id": 4 + i,
                "genome": genome.to_json(),
                "hash": genome.hash,
                "parents": [],
                "operator": "random",
                "seed": 7,
                "submitted_at": 0.0,
                "next_id": 5 + i,
            }  # fmt: skip
        )
    writer.append({"id": 4, "genome": genomes[0].to_json(), "hash": genomes[0].hash, "status": "ok",
                   "accuracy": 0.5, "params": 10, "train_seconds": 1.0, "operator": "random", "seed": 7})  # fmt: skip
    writer.commit()  # a crashed master: the journal as committed, the writer never closed
    del writer
    gc.collect()
    assert journal_path(path).exists()
    transport = ScriptedTransport(1)
    result = _search(path, 8, transport, resume=True)
    ids = [task for _, task in transport.tasks_seen]
    assert ids[0] == 5 and sorted(ids) == [5, 6, 7]  # the lost task first, then new ones
    assert result.evaluations == 8
    with Library.open(path) as lib:
        assert sorted(lib.column("id").tolist()) == list(range(8))
        assert len(set(lib.column("hash").tolist())) == 8


def test_seed_from_an_earlier_library_repaired_for_the_new_problem(tmp_path: Path) -> None:
    old = tmp_path / "old.h5"
    _search(old, 8, ScriptedTransport(2))
    spec = InputSpec((3, 16, 16), 4)
    space = SearchSpace()
    seeds = seed_genomes((str(old),), 3, "accuracy", space, spec, tmp_path)
    assert len(seeds) == 3 and all(is_valid(g, space, spec) for g in seeds)
    transport = ScriptedTransport(1)
    new = tmp_path / "new.h5"
    _search(new, 5, transport, seeds=seeds)
    with Library.open(new) as lib:
        records = sorted(lib.records(), key=lambda r: r["id"])
    assert [r["operator"] for r in records[:3]] == ["seed"] * 3
    assert [r["hash"] for r in records[:3]] == [g.hash for g in seeds]


class _RuntimeEnds(ScriptedTransport):
    """Workers that answer at once until ``after`` results, then hold their tasks; the next poll raises."""

    def __init__(self, workers: int, after: int) -> None:
        super().__init__(workers)
        self.after, self.results = after, 0

    def receive(self, timeout: float):
        if self.results >= self.after and not any(m.get("type") == "ready" for _, m in self.outbox):
            raise RuntimeError("the MPI runtime ended the job")  # e.g. PRRTE after losing a node's daemon
        event = super().receive(timeout)
        if event is not None and event[1].get("type") == "result":
            self.results += 1
        return event

    def send(self, worker: int, message) -> None:
        if self.results < self.after:
            super().send(worker, message)
        elif message is not None:
            self.tasks_seen.append((worker, message["task"]))  # handed out, never answered


def test_an_exception_in_the_loop_leaves_the_running_tasks_to_resume_not_lost_rows(tmp_path: Path) -> None:
    """No candidate is to blame when the runtime ends the job: no ``lost`` row; --resume runs them first."""
    path = tmp_path / "lib.h5"
    transport = _RuntimeEnds(3, after=5)
    with pytest.raises(RuntimeError, match="runtime ended"):
        _search(path, 12, transport)
    unanswered = sorted({task for _, task in transport.tasks_seen} - set(range(5)))
    assert unanswered  # tasks were in flight when it ended
    with Library.open(path) as lib:
        assert sorted(lib.column("id").tolist()) == list(range(5))  # only the answered ones have rows
        assert set(lib.column("status").tolist()) == {"ok"}
    resumed = ScriptedTransport(2)
    result = _search(path, 12, resumed, resume=True)
    ids = [task for _, task in resumed.tasks_seen]
    assert sorted(ids[: len(unanswered)]) == unanswered  # the unanswered tasks run first
    assert result.evaluations == 12
    with Library.open(path) as lib:
        assert sorted(lib.column("id").tolist()) == list(range(12))
        assert set(lib.column("status").tolist()) == {"ok"}
