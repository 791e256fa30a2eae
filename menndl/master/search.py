"""The master loop: keep every worker busy, record every result, stop on budget.

One loop for every transport.  A worker that frees up gets the next child at
once (no generation barrier); every result is written to the library before
anything else happens with it.  Every candidate handed out ends as exactly one
library row: ``ok``, ``failed``, or ``lost`` when the workers that ran it died
or missed its deadline.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from menndl.genome import Genome, InputSpec, count_flops, count_params
from menndl.job import Job
from menndl.library import LibraryWriter
from menndl.master.evolution import Candidate, Evolution
from menndl.master.progress import Progress, Status
from menndl.master.resume import ResumeState
from menndl.master.signals import StopSignals
from menndl.master.stopping import EarlyStopping
from menndl.protocol import setup_message, task_message
from menndl.transport.base import MasterTransport

RECEIVE_TIMEOUT = 1.0  # seconds: how often the loop looks at signals, deadlines and the clock
MAX_REQUEUES = 1  # a task whose worker died is tried once more, then recorded as lost
PARETO_INTERVAL = 5.0  # seconds between rewrites of the library's Pareto front while it changes
DEADLINE_GRACE = 60.0  # seconds on top of 2 x training.max_seconds (model build, validation, a slow node)
DEADLINE_CHECK_INTERVAL = 1.0  # seconds between scans of the in-flight tasks
STARTUP_DEADLINE = 1800.0  # seconds a worker may take to report ready (import storms on big machines)
NO_WORKERS = "no workers left"
WORKER_METRICS = (  # result keys stored as they come (see menndl.protocol and the library schema)
    "samples_per_second", "peak_memory_bytes", "latency_seconds", "train_loss", "precision", "local_rank", "checkpoints"
)  # fmt: skip


def task_deadline(job: Job) -> float:
    """Seconds after which a task's worker is presumed hung or dead."""
    return 2 * job.training.max_seconds + DEADLINE_GRACE


@dataclass
class _InFlight:
    candidate: Candidate
    submitted_at: float
    requeues: int = 0
    started: float = field(default_factory=time.monotonic)


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
    abandoned: bool = False
    stragglers: bool = False  # some worker may still be running (abandoned, or lost past its deadline)
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
        deadline: float | None = None,
        startup_deadline: float = STARTUP_DEADLINE,
        resume: ResumeState | None = None,
        seeds: list[Genome] | None = None,
    ) -> None:
        """Set up the search; nothing starts before `run`.

        Args:
            deadline: seconds a task may run on a ready worker before the
                worker is presumed lost (default: `task_deadline`).
            startup_deadline: seconds a worker may take to report ready.
        """
        self.job, self.spec, self.fingerprint = job, spec, fingerprint
        self.transport, self.writer = transport, writer
        self.progress = progress or Progress()
        self.evolution = Evolution(
            space=job.space,
            spec=spec,
            objectives=job.search.objectives,
            population_size=max(2, min(job.search.population, job.search.evaluations or job.search.population)),
            crossover_probability=job.search.crossover_probability,
            seed=job.seed,
        )
        self._deadline = task_deadline(job) if deadline is None else deadline
        self._startup_deadline = startup_deadline
        self._ready: set[int] = set()
        self._all_ready_reported = False
        self._idle: deque[int] = deque()
        self._busy: dict[int, _InFlight] = {}
        self._requeued: deque[_InFlight] = deque()
        self._workers: set[int] = set()
        self._dispatched = self._done = self._failed = 0
        self._ranks_used: set[int] = set()
        self._best = math.nan
        self._start = time.monotonic()
        self._stop_reason = ""
        self._signals: list[str] = []
        self._pareto_dirty = False
        self._pareto_written = time.monotonic()
        self._stragglers = False
        self._deadlines_checked = time.monotonic()
        self._host = socket.gethostname()
        training = job.training
        self.stopping = (
            EarlyStopping(
                training.early_stopping_fractions, training.early_stopping_quantile, training.early_stopping_min_results
            )
            if training.early_stopping
            else None
        )
        self._seeds: deque[Genome] = deque(seeds or ())
        if resume is not None:
            self._restore(resume)

    def _restore(self, resume: ResumeState) -> None:
        """Continue a search from its library: population, random state, counts; re-queue what was in flight."""
        self.evolution.restore(resume.records, resume.next_id, resume.rng_state)
        self._dispatched = resume.next_id
        self._done = len(resume.records)
        self._failed = sum(1 for record in resume.records if record.get("status") != "ok")
        ok = [r for r in resume.records if r.get("status") == "ok"]
        accuracies = [r["accuracy"] for r in ok if not math.isnan(r["accuracy"])]
        self._best = max(accuracies) if accuracies else math.nan
        for candidate in resume.pending:
            self.evolution.mark_seen(candidate.genome.hash)
            self._requeued.append(_InFlight(candidate, time.time()))
        if self.stopping is not None:
            self.stopping.restore(resume.records)
        self._pareto_dirty = True

    def run(self) -> SearchResult:
        """Run to the end of the budget; always closes the library and the workers.

        The first SIGINT/SIGTERM stops dispatching and waits for the running
        evaluations, which are recorded; a second one abandons them.
        """
        self._start = time.monotonic()
        abandoned = True  # unless the loop ends normally
        try:
            with StopSignals(self._signals.append):
                self._workers = set(self.transport.start(setup_message(self.job, self.fingerprint)))
                self._idle.extend(sorted(self._workers))
                self._fill()
                while self._busy and not self._abandon_requested():
                    event = self.transport.receive(RECEIVE_TIMEOUT)
                    if event is not None:
                        self._handle(*event)
                    self._check_deadlines()
                    self._fill()
                    self._write_pareto()
                    self.writer.tick()
                    self.progress.update(self._status())
            abandoned = bool(self._busy)
            self._stop_reason = self._stop_reason or self._budget_reason()
        finally:
            try:
                self._record_unfinished()
                self._write_pareto(force=True)
                self.writer.close()
            finally:
                self.transport.close(abandon=abandoned)
        self.progress.finish(self._status())
        return self._result(abandoned)

    def _abandon_requested(self) -> bool:
        """Handle stop signals (the handler only queues their names): first stops, second abandons."""
        if not self._signals:
            return False
        name = self._signals[-1]
        if len(self._signals) >= 2:
            self.progress.message(f"[0@{self._host}] {name} again: abandoning {len(self._busy)} running evaluations")
            self._stop_reason = f"{name} received twice"
            return True
        if not self._stop_reason:
            self._stop_reason = f"{name} received"
            self.progress.message(
                f"[0@{self._host}] {name}: no new evaluations; waiting for {len(self._busy)} running ones "
                f"(send {name} again to abandon them)"
            )
        return False

    def _budget_reason(self) -> str:
        if not self._workers:
            return NO_WORKERS
        evaluations = self.job.search.evaluations
        if evaluations is not None and self._dispatched >= evaluations:
            return "evaluation budget reached"
        return "time limit reached"

    def _may_dispatch(self) -> bool:
        if self._stop_reason or self._signals or not self._workers:
            return False
        evaluations, limit = self.job.search.evaluations, self.job.search.time_limit
        if evaluations is not None and self._dispatched >= evaluations and not self._requeued:
            return False
        return limit is None or time.monotonic() - self._start < limit

    def _fill(self) -> None:
        """Give every idle worker a task while the budget allows."""
        while self._idle and self._may_dispatch():
            worker = self._idle.popleft()
            if self._requeued:
                flight = self._requeued.popleft()
                flight.submitted_at, flight.started = time.time(), time.monotonic()
            else:
                flight = _InFlight(self._next_candidate(), time.time())
                self._dispatched += 1
            self._busy[worker] = flight
            candidate = flight.candidate
            self._journal_task(flight)
            message = task_message(candidate.id, candidate.genome.to_dict(), candidate.seed)
            if self.job.library.keep_weights > 0:
                message["return_weights"] = True
            if self.stopping is not None:
                message["checkpoints"] = list(self.stopping.fractions)
                message["stop_below"] = self.stopping.thresholds()
            self.transport.send(worker, message)

    def _next_candidate(self) -> Candidate:
        """Seeds from earlier libraries first (those not seen yet), then what evolution proposes."""
        while self._seeds:
            candidate = self.evolution.propose(self._seeds.popleft(), (), "seed")
            if candidate is not None:
                return candidate
        return self.evolution.ask()

    def _journal_task(self, flight: _InFlight) -> None:
        """Write the dispatched task to the library's journal, so that a resume can re-queue it."""
        candidate = flight.candidate
        self.writer.task_started(
            {
                "id": candidate.id,
                "genome": candidate.genome.to_json(),
                "hash": candidate.genome.hash,
                "parents": list(candidate.parents),
                "operator": candidate.operator,
                "seed": candidate.seed,
                "submitted_at": flight.submitted_at,
                "next_id": self._dispatched,
                "rng_state": self.evolution.rng_state(),
            }
        )

    def _handle(self, worker: int, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            self._on_ready(worker)
        elif kind == "result" and worker in self._busy:
            self._record(self._busy.pop(worker), worker, message)
            self._idle.append(worker)
        elif kind in ("fatal", "lost"):
            self._retire(worker, message)
        else:
            self.progress.message(f"[0@{self._host}] ignoring unexpected message {kind!r} from worker {worker}")

    def _on_ready(self, worker: int) -> None:
        """A worker loaded its data: the clock of the task waiting for it starts now."""
        self._ready.add(worker)
        if worker in self._busy:
            self._busy[worker].started = time.monotonic()
        if len(self._ready) == len(self._workers) and not self._all_ready_reported:
            self._all_ready_reported = True
            elapsed = time.monotonic() - self._start
            self.progress.message(f"[0@{self._host}] all {len(self._workers)} workers ready after {elapsed:.1f}s")

    def _check_deadlines(self) -> None:
        """Retire workers past their deadline: a task on a ready worker, or a worker never ready.

        Scans every busy worker, so it runs at most once per DEADLINE_CHECK_INTERVAL: the cost per
        result stays flat however many workers there are.
        """
        now = time.monotonic()
        if now - self._deadlines_checked < DEADLINE_CHECK_INTERVAL:
            return
        self._deadlines_checked = now
        for worker, flight in list(self._busy.items()):
            limit = self._deadline if worker in self._ready else self._startup_deadline
            if now - flight.started > limit:
                self.transport.discard(worker)
                self._stragglers = True
                what = "result" if worker in self._ready else "ready message"
                self._retire(worker, {"type": "lost", "error": f"no {what} within the {limit:.0f}s deadline"})

    def _retire(self, worker: int, message: Mapping[str, Any]) -> None:
        """Stop using a worker that cannot serve; its task is tried again elsewhere (once if it had started)."""
        self._workers.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        host = message.get("host", "?")
        self.progress.message(f"[{worker}@{host}] worker lost: {message.get('error', 'no reason given')}")
        flight = self._busy.pop(worker, None)
        if flight is not None:
            if message.get("type") == "fatal":  # the worker could not start: the task never ran
                self._requeued.append(flight)
            elif flight.requeues < MAX_REQUEUES:
                flight.requeues += 1
                self._requeued.append(flight)
            else:
                self._record(flight, worker, {"status": "lost", "error": message.get("error", "")})
        if not self._workers and not self._stop_reason:
            self._stop_reason = NO_WORKERS

    def _record_unfinished(self) -> None:
        """At the end, give every candidate that ran without a result its row (nothing vanishes).

        A candidate that never ran anywhere (its only worker failed at setup) gets no row.
        """
        reason = f"its worker was lost and the search ended before a retry ({self._stop_reason or 'error'})"
        while self._requeued:
            flight = self._requeued.popleft()
            if flight.requeues > 0:
                self._record(flight, -1, {"status": "lost", "error": reason})
        for worker, flight in list(self._busy.items()):
            self._record(flight, worker, {"status": "lost", "error": f"abandoned while running ({self._stop_reason})"})
        self._busy.clear()

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
            "worker_rank": worker,
            "seed": candidate.seed,
            "submitted_at": flight.submitted_at,
            "finished_at": time.time(),
        }
        for key in ("accuracy", "loss", "params", "flops", "train_seconds", "epochs", "host", "device"):
            if key in result:
                record[key] = result[key]
        record.update({key: result[key] for key in WORKER_METRICS if key in result})
        if self.stopping is not None:
            self.stopping.observe(result.get("checkpoints"))
        if "params" not in record:  # failures: size still known from the genome, without torch
            record["params"] = count_params(genome, self.spec)
            record["flops"] = count_flops(genome, self.spec)
        self.writer.append(record)
        weights = result.get("weights")
        if weights and record["status"] == "ok":
            self.writer.offer_weights(candidate.id, float(record["accuracy"]), weights)
        self._done += 1
        if worker > 0:
            self._ranks_used.add(worker)
        if record["status"] == "ok":
            self._best = record["accuracy"] if math.isnan(self._best) else max(self._best, record["accuracy"])
            self._pareto_dirty |= self.evolution.tell(candidate, record)
        elif record["status"] != "stopped-early":  # stopped early is the rule working, not a failure
            self._failed += 1

    def _write_pareto(self, force: bool = False) -> None:
        """Keep the library's Pareto front current, at most every PARETO_INTERVAL seconds."""
        now = time.monotonic()
        if force or (self._pareto_dirty and now - self._pareto_written >= PARETO_INTERVAL):
            self.writer.set_pareto([member.candidate.id for member in self.evolution.front])
            self._pareto_dirty, self._pareto_written = False, now

    def _status(self) -> Status:
        return Status(
            done=self._done,
            budget=self.job.search.evaluations,
            elapsed=time.monotonic() - self._start,
            time_limit=self.job.search.time_limit,
            best_accuracy=self._best,
            front_size=self.evolution.front_size,
            busy=len(self._busy),
            workers=len(self._workers),
            failed=self._failed,
        )

    def _result(self, abandoned: bool) -> SearchResult:
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
            abandoned=abandoned,
            stragglers=abandoned or self._stragglers,
            ranks_used=set(self._ranks_used),
        )
