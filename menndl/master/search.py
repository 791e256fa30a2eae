"""The master loop: keep every worker busy, record every result, stop on budget.

One loop for every transport.  A worker that frees up gets the next child at
once (no generation barrier); every result is written to the library before
anything else happens with it.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from menndl.genome import InputSpec, count_flops, count_params
from menndl.job import Job
from menndl.library import LibraryWriter
from menndl.master.evolution import Candidate, Evolution
from menndl.master.progress import Progress, Status
from menndl.master.signals import StopSignals
from menndl.protocol import setup_message, task_message
from menndl.transport.base import MasterTransport

RECEIVE_TIMEOUT = 1.0
MAX_REQUEUES = 1


@dataclass
class _InFlight:
    candidate: Candidate
    submitted_at: float
    requeues: int = 0


@dataclass
class SearchResult:
    """How a search ended."""

    library: Path
    evaluations: int
    failed: int
    front: list[dict[str, Any]]
    best_accuracy: float
    elapsed: float
    stop_reason: str
    workers: int = 0
    ranks_used: set[int] = field(default_factory=set)


class Search:
    """Runs one search over ``transport``, writing every evaluation to ``writer``."""

    def __init__(
        self,
        job: Job,
        spec: InputSpec,
        fingerprint: str,
        transport: MasterTransport,
        writer: LibraryWriter,
        progress: Progress | None = None,
    ) -> None:
        self.job, self.spec, self.fingerprint = job, spec, fingerprint
        self.transport, self.writer = transport, writer
        self.progress = progress or Progress()
        self.evolution = Evolution(
            space=job.space,
            spec=spec,
            objectives=job.search.objectives,
            population_size=min(job.search.population, job.search.evaluations or job.search.population),
            crossover_probability=job.search.crossover_probability,
            seed=job.seed,
        )
        self._idle: deque[int] = deque()
        self._busy: dict[int, _InFlight] = {}
        self._requeued: deque[_InFlight] = deque()
        self._workers: set[int] = set()
        self._dispatched = 0
        self._done = 0
        self._failed = 0
        self._ranks_used: set[int] = set()
        self._best = math.nan
        self._start = time.monotonic()
        self._stop_reason = ""
        self._host = socket.gethostname()

    def run(self) -> SearchResult:
        """Run to the end of the budget; always closes workers and library.

        The first SIGINT/SIGTERM stops dispatching and waits for the running
        evaluations, which are recorded; a second one abandons them.
        """
        self._start = time.monotonic()
        abandoned = False
        try:
            with StopSignals(self._on_stop_signal):
                self._workers = set(self.transport.start(setup_message(self.job, self.fingerprint)))
                self._idle.extend(sorted(self._workers))
                self._fill()
                while self._busy:
                    event = self.transport.receive(RECEIVE_TIMEOUT)
                    if event is not None:
                        self._handle(*event)
                    self._fill()
                    self.progress.update(self._status())
            self._stop_reason = self._stop_reason or self._budget_reason()
        except KeyboardInterrupt:
            abandoned = True
            self._stop_reason = f"interrupted, {len(self._busy)} running evaluations abandoned"
        finally:
            self.writer.set_pareto([member.candidate.id for member in self.evolution.front])
            self.writer.close()
            self.transport.close(abandon=abandoned)
        self.progress.finish(self._status())
        return self._result()

    def _on_stop_signal(self, name: str) -> None:
        if self._stop_reason.endswith(" received"):
            raise KeyboardInterrupt  # the second signal: abandon the running evaluations
        self._stop_reason = f"{name} received"
        self.progress.message(
            f"[0@{self._host}] {name}: no new evaluations; waiting for {len(self._busy)} running ones "
            f"(send {name} again to abandon them)"
        )

    def _budget_reason(self) -> str:
        if not self._workers:
            return "no workers left"
        evaluations = self.job.search.evaluations
        if evaluations is not None and self._dispatched >= evaluations:
            return "evaluation budget reached"
        return "time limit reached"

    def _may_dispatch(self) -> bool:
        if self._stop_reason:
            return False
        evaluations, limit = self.job.search.evaluations, self.job.search.time_limit
        if evaluations is not None and self._dispatched >= evaluations and not self._requeued:
            return False
        if limit is not None and time.monotonic() - self._start >= limit:
            return False
        return bool(self._workers)

    def _fill(self) -> None:
        """Give every idle worker a task while the budget allows."""
        while self._idle and self._may_dispatch():
            worker = self._idle.popleft()
            if self._requeued:
                flight = self._requeued.popleft()
                flight.submitted_at = time.time()
            else:
                flight = _InFlight(self.evolution.ask(), time.time())
                self._dispatched += 1
            self._busy[worker] = flight
            candidate = flight.candidate
            self.transport.send(worker, task_message(candidate.id, candidate.genome.to_dict(), candidate.seed))

    def _handle(self, worker: int, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "result":
            flight = self._busy.pop(worker)
            self._record(flight, worker, message)
            self._idle.append(worker)
        elif kind in ("fatal", "lost"):
            self._retire(worker, message)
        else:
            self.progress.message(f"[0@{self._host}] ignoring unexpected message {kind!r} from worker {worker}")

    def _retire(self, worker: int, message: Mapping[str, Any]) -> None:
        """Stop using a worker that cannot serve; re-queue its task once."""
        self._workers.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        host = message.get("host", "?")
        self.progress.message(f"[{worker}@{host}] worker lost: {message.get('error', 'no reason given')}")
        flight = self._busy.pop(worker, None)
        if flight is None:
            return
        if flight.requeues < MAX_REQUEUES and message.get("type") == "lost":
            flight.requeues += 1
            self._requeued.append(flight)
        elif message.get("type") == "fatal":
            self._requeued.append(flight)  # the task never started: no harm done to it
        else:
            self._record(flight, worker, {"status": "lost", "error": message.get("error", "")})
        if not self._workers:
            self._stop_reason = "no workers left"
            self._requeued.clear()

    def _record(self, flight: _InFlight, worker: int, result: Mapping[str, Any]) -> None:
        """Write one finished evaluation to the library, then let evolution see it."""
        candidate = flight.candidate
        genome = candidate.genome
        record = {
            "id": candidate.id,
            "genome": genome.to_json(),
            "hash": genome.hash,
            "parents": json.dumps(list(candidate.parents)),
            "operator": candidate.operator,
            "status": result.get("status", "failed"),
            "error": result.get("error", ""),
            "params": count_params(genome, self.spec),
            "flops": count_flops(genome, self.spec),
            "worker_rank": worker,
            "seed": candidate.seed,
            "submitted_at": flight.submitted_at,
            "finished_at": time.time(),
        }
        for key in ("accuracy", "loss", "params", "flops", "train_seconds", "epochs", "host", "device"):
            if key in result:
                record[key] = result[key]
        self.writer.append(record)
        self._done += 1
        self._ranks_used.add(worker)
        if record["status"] == "ok":
            self._best = record["accuracy"] if math.isnan(self._best) else max(self._best, record["accuracy"])
        else:
            self._failed += 1
        self.evolution.tell(candidate, record)

    def _status(self) -> Status:
        return Status(
            done=self._done,
            budget=self.job.search.evaluations,
            elapsed=time.monotonic() - self._start,
            time_limit=self.job.search.time_limit,
            best_accuracy=self._best,
            front_size=len(self.evolution.front),
            busy=len(self._busy),
            workers=len(self._workers),
            failed=self._failed,
        )

    def _result(self) -> SearchResult:
        front = sorted(
            (dict(member.metrics) for member in self.evolution.front),
            key=lambda record: (-record["accuracy"], record["params"]),
        )
        return SearchResult(
            library=Path(self.writer.path),
            evaluations=self._done,
            failed=self._failed,
            front=front,
            best_accuracy=self._best,
            elapsed=time.monotonic() - self._start,
            stop_reason=self._stop_reason,
            workers=len(self._workers),
            ranks_used=set(self._ranks_used),
        )
