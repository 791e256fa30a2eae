"""The master loop: keep every worker busy, record every result, stop on budget.

One loop for every transport.  A worker that frees up gets the next child at
once (no generation barrier); every result is written to the library before
anything else happens with it.  Every candidate handed out ends as exactly one
library row: ``ok``, ``failed``, ``lost`` when the workers that ran it died,
or ``timeout`` when they missed its deadline twice.

With ``search.prefetch`` (1 by default) each worker holds one more task queued
behind the one it runs, so a worker never waits for the master between tasks.
The clock is injectable: the simulated transport runs this same loop on
virtual time.
"""

from __future__ import annotations

import math
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from menndl.genome import Genome, InputSpec, count_flops, count_params
from menndl.job import Job
from menndl.library import LibraryWriter
from menndl.master.collector import master_collector
from menndl.master.evolution import Candidate, Evolution, SpaceExhausted
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
STARTUP_DEADLINE = 1800.0  # seconds a worker may take to report ready (import storms on big machines)
NO_WORKERS = "no workers left"
PREPARED_LIMIT = 1024  # first candidates proposed before the workers start (a tenth of a second at most)
EXPIRY_SLACK = 4  # the deadline queues are compacted when they hold this many entries per worker
STALL_SECONDS = 0.01  # a turn of the loop this long is counted as a stall (workers that finish meanwhile wait)
RNG_STATE_INTERVAL = 1.0  # seconds between random states written to the library's journal
WORKER_METRICS = (  # result keys stored as they come (see menndl.protocol and the library schema)
    "samples_per_second", "peak_memory_bytes", "latency_seconds", "train_loss", "precision", "local_rank", "checkpoints"
)  # fmt: skip


def task_deadline(job: Job) -> float:
    """Seconds after which a task's worker is presumed hung or dead (``search.task_deadline``)."""
    if job.search.task_deadline is not None:
        return job.search.task_deadline
    return 2 * job.training.max_seconds + DEADLINE_GRACE


@dataclass(eq=False)
class _InFlight:
    candidate: Candidate
    submitted_at: float
    requeues: int = 0
    started: float = 0.0  # when it began to run (or was sent to a worker not yet ready)
    expires: float = math.inf


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
    worker_busy: dict[int, float] = field(default_factory=dict)  # seconds each rank spent evaluating
    worker_idle: dict[int, float] = field(default_factory=dict)  # seconds each rank waited for a task
    master_seconds: float = 0.0  # CPU seconds the master spent outside waiting for messages
    longest_turn: float = 0.0  # wall seconds of the master loop's longest turn (outside waiting for messages)
    stalls: int = 0  # turns of the loop longer than STALL_SECONDS (the start-up's first fills among them)
    timeouts: int = 0
    all_ready_after: float = math.nan  # seconds from the start until every worker had reported ready
    search_seconds: float = math.nan  # seconds of search over every run of this library (what search.time_limit counts)
    to_rerun: int = 0  # candidates handed out but without a row: a --resume runs them first
    signal_stop: str = ""  # the signal that stopped the search ("" when it ended otherwise)

    @property
    def utilization(self) -> float:
        """Share of the workers' time spent evaluating while the search dispatched (nan before any result)."""
        busy, idle = sum(self.worker_busy.values()), sum(self.worker_idle.values())
        return busy / (busy + idle) if busy + idle > 0 else math.nan


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
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        worker_setup: Mapping[str, Any] | None = None,
    ) -> None:
        """Set up the search; nothing starts before `run`.

        Args:
            deadline: seconds a task may run on a ready worker before the
                worker is presumed lost (default: `task_deadline`).
            startup_deadline: seconds a worker may take to report ready.
            clock: monotonic seconds for deadlines, time limits and progress
                (a simulation passes its virtual clock).
            wallclock: epoch seconds for the library's timestamps.
            worker_setup: extra keys for the workers' setup message (e.g. a
                benchmark's ``{"evaluator": "sleep", ...}``).
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
            max_params=job.search.max_params,
            max_flops=job.search.max_flops,
            aging=job.search.aging,
            rerank_interval=job.search.rerank_interval,
            strategy=job.search.strategy,
            spread_start=job.search.spread_start,
        )
        self._clock, self._wallclock = clock, wallclock
        self._worker_setup = dict(worker_setup or {})
        self._depth = 1 + job.search.prefetch  # tasks held by each worker: the running one + the queued ones
        self._deadline = task_deadline(job) if deadline is None else deadline
        self._startup_deadline = startup_deadline
        self._ready: set[int] = set()
        self._all_ready_reported = False
        self._idle: deque[int] = deque()  # one entry per free task slot of a worker
        self._busy: dict[int, deque[_InFlight]] = {}  # worker -> its tasks, the running one first
        self._flights = 0  # tasks in every queue together
        self._busy_workers = 0  # workers with at least one task
        # (deadline, task id, worker) of each task when it starts, in start order: one queue per limit
        # ([False]: workers not ready yet, [True]: ready ones), so each queue is in deadline order.  An
        # entry is stale once its task left the head of its worker's queue; entries hold ids, not
        # flights, so a finished task's genome is not kept alive until its deadline passes.
        self._expiries: tuple[deque[tuple[float, int, int]], ...] = (deque(), deque())
        self._worker_busy: dict[int, float] = {}
        self._worker_idle: dict[int, float] = {}
        self._master_seconds = 0.0
        self._longest_turn = 0.0  # wall seconds of the longest turn of the loop (a stall every worker may wait on)
        self._stalls = 0  # turns longer than STALL_SECONDS
        self._timeouts = 0
        self._all_ready_after = math.nan
        self._requeued: deque[_InFlight] = deque()
        self._workers: set[int] = set()
        self._joining: dict[int, float] = {}  # replacement workers started by the transport, not ready yet -> since
        self._dispatched = self._done = self._failed = 0
        self._ranks_used: set[int] = set()
        self._best = math.nan
        self._start = self._clock()
        self._stop_reason = ""
        self._signals: list[str] = []
        self._pareto_dirty = False  # results came since the front was last written
        self._pareto_ids: list[int] = []  # the front last written
        self._pareto_written = self._clock()
        self._rng_state_written = -math.inf
        self._stragglers = False
        self._host = socket.gethostname()
        self._stop_requested_at = math.nan  # clock time of the first stop signal
        self._grace = job.search.stop_grace
        self._seconds_before = 0.0  # search seconds of earlier runs of this library (a resume continues counting)
        self._to_rerun = 0
        training = job.training
        self.stopping = (
            EarlyStopping(
                training.early_stopping_fractions, training.early_stopping_quantile, training.early_stopping_min_results
            )
            if training.early_stopping
            else None
        )
        self._seeds: deque[Genome] = deque(seeds or ())
        self._prepared: deque[Candidate] = deque()  # proposed before the workers started, handed out first
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
            self._requeued.append(_InFlight(candidate, self._wallclock()))
        if self.stopping is not None:
            self.stopping.restore(resume.records)
        self._pareto_dirty = True
        self._seconds_before = resume.search_seconds

    def run(self) -> SearchResult:
        """Run to the end of the budget; always closes the library and the workers.

        The first SIGINT/SIGTERM/SIGUSR2 stops dispatching and waits up to
        ``search.stop_grace`` seconds for the running evaluations, which are
        recorded; a second signal, or the end of the grace period, abandons
        them: they keep no row, so that a ``--resume`` runs them again.
        """
        self._start = self._clock()
        abandoned = True  # unless the loop ends normally
        try:
            with StopSignals(self._signals.append), master_collector() as collector:
                setup = {**setup_message(self.job, self.fingerprint), **self._worker_setup}
                started = time.process_time()
                self._prepare_first_candidates()
                self._master_seconds += time.process_time() - started
                self._workers = set(self.transport.start(setup))
                started = time.process_time()
                for worker in sorted(self._workers):
                    self._busy[worker] = deque()
                self._idle.extend(sorted(self._workers))
                self._fill()  # every worker's first task, before the transport's start-up (see MPIMasterTransport)
                for _ in range(self._depth - 1):  # then the queued ones, in the loop
                    self._idle.extend(sorted(self._workers))
                self._master_seconds += time.process_time() - started
                while self._in_flight() and not self._abandon_requested():
                    event = self.transport.receive(RECEIVE_TIMEOUT)
                    started, began = time.process_time(), time.perf_counter()
                    if event is not None:
                        self._handle(*event)
                    self._check_deadlines()
                    self._fill()
                    self._write_pareto()
                    self.writer.tick()
                    collector.tick()
                    if self.progress.due():
                        self.progress.update(self._status())
                    self._master_seconds += time.process_time() - started
                    turn = time.perf_counter() - began
                    if turn > STALL_SECONDS:
                        self._stalls += 1
                        self._longest_turn = max(self._longest_turn, turn)
            abandoned = self._in_flight()
            self._stop_reason = self._stop_reason or self._budget_reason()
        finally:
            try:
                self._record_unfinished()
                self._write_pareto(force=True)
                self.writer.set_session(self._stop_reason or "error", self._search_seconds())
                self.writer.close()
            finally:
                self.transport.close(abandon=abandoned)
        self.progress.finish(self._status())
        return self._result(abandoned)

    def _in_flight(self) -> bool:
        return self._flights > 0 or self._awaiting_replacement()

    def _awaiting_replacement(self) -> bool:
        """Every worker is gone but replacements are starting and work is left: wait for them."""
        if self._workers or not self._joining or self._stop_reason or self._signals:
            return False
        return self._budget_left()

    def _abandon_requested(self) -> bool:
        """Handle stop signals (the handler only queues their names): first stops, second abandons."""
        if not self._signals:
            return False
        name = self._signals[-1]
        if math.isnan(self._stop_requested_at):
            self._stop_requested_at = self._clock()
        elif self._clock() - self._stop_requested_at > self._grace and len(self._signals) == 1:
            running = sum(1 for queue in self._busy.values() if queue)
            self.progress.message(
                f"[0@{self._host}] {name}: grace period of {self._grace:.0f}s (search.stop_grace) over; "
                f"leaving {running} running evaluations to --resume"
            )
            return True
        if len(self._signals) >= 2:
            running = sum(1 for queue in self._busy.values() if queue)
            self.progress.message(f"[0@{self._host}] {name} again: abandoning {running} running evaluations")
            self._stop_reason = f"{name} received twice"
            return True
        if not self._stop_reason:
            self._stop_reason = f"{name} received"
            self.progress.message(
                f"[0@{self._host}] {name}: no new evaluations; waiting up to {self._grace:.0f}s for "
                f"{sum(map(len, self._busy.values()))} running or queued ones "
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
        return self._budget_left()

    def _budget_left(self) -> bool:
        """Evaluations left to hand out (or re-queued ones to re-run), and search time left."""
        evaluations, limit = self.job.search.evaluations, self.job.search.time_limit
        if evaluations is not None and self._dispatched >= evaluations and not self._requeued:
            return False
        return limit is None or self._search_seconds() < limit

    def _search_seconds(self) -> float:
        """Seconds of search so far, earlier runs of this library included (``search.time_limit`` counts these)."""
        return self._seconds_before + self._clock() - self._start

    def _fill(self) -> None:
        """Fill every free task slot (idle workers first, then prefetch) while the budget allows."""
        while self._idle and self._may_dispatch():
            if self._requeued:
                flight = self._requeued.popleft()
                flight.submitted_at = self._wallclock()
            else:
                try:
                    candidate = self._next_candidate()
                except SpaceExhausted as exc:
                    self._stop_reason = f"search space exhausted ({exc})"
                    self.progress.message(f"[0@{self._host}] {self._stop_reason}")
                    return
                flight = _InFlight(candidate, self._wallclock())
                self._dispatched += 1
            worker = self._idle.popleft()
            queue = self._busy[worker]
            queue.append(flight)
            self._flights += 1
            if len(queue) == 1:
                self._busy_workers += 1
                self._start_clock(worker, flight)
            candidate = flight.candidate
            self._journal_task(flight)
            stopping = self.stopping
            message = task_message(
                candidate.id,
                candidate.genome.to_json(),
                candidate.seed,
                return_weights=self.job.library.keep_weights > 0,
                checkpoints=stopping.fractions if stopping is not None else (),
                stop_below=stopping.thresholds() if stopping is not None else (),
            )
            self.writer.commit()  # the journal has the task (and the result it replaces) before the worker does
            self.transport.send(worker, message)

    def _prepare_first_candidates(self) -> None:
        """Propose the first tasks before the workers start, so that each goes out the moment they can.

        As many as the transport will have workers (at most `PREPARED_LIMIT`) and
        the budget allows.  Handed out in order, before anything else is proposed.
        """
        count = min(self.transport.worker_count_hint or 0, PREPARED_LIMIT)
        if self.job.search.evaluations is not None:
            count = min(count, self.job.search.evaluations - self._dispatched)
        try:
            while len(self._prepared) < count:
                self._prepared.append(self._propose())
        except SpaceExhausted:
            pass  # `_fill` meets it again and stops the search with the reason

    def _next_candidate(self) -> Candidate:
        """Seeds from earlier libraries first (those not seen yet), then what evolution proposes."""
        return self._prepared.popleft() if self._prepared else self._propose()

    def _propose(self) -> Candidate:
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
                **self._master_state_due(),
            }
        )

    def _master_state_due(self) -> dict[str, Any]:
        """The random state and the search time, at most once per `RNG_STATE_INTERVAL` (the state is ~5 KB of
        JSON: too dear per task).

        A resume restores the newest state journaled; genomes proposed since are
        known by their hashes and never proposed again.  The search time lets a
        resume after a crash count on from where the killed run was.
        """
        now = self._clock()
        if now - self._rng_state_written < RNG_STATE_INTERVAL:
            return {}
        self._rng_state_written = now
        return {"rng_state": self.evolution.rng_state(), "search_seconds": round(self._search_seconds(), 3)}

    def _start_clock(self, worker: int, flight: _InFlight) -> None:
        """The task at the head of a worker's queue runs from now: its deadline is set."""
        flight.started = self._clock()
        ready = worker in self._ready
        flight.expires = flight.started + (self._deadline if ready else self._startup_deadline)
        self._expiries[ready].append((flight.expires, flight.candidate.id, worker))
        if len(self._expiries[True]) + len(self._expiries[False]) > EXPIRY_SLACK * max(len(self._busy), 256):
            self._compact_expiries()

    def _live_expiry(self, expires: float, task: int, worker: int) -> bool:
        queue = self._busy.get(worker)
        if not queue:
            return False
        return queue[0].candidate.id == task and queue[0].expires == expires

    def _compact_expiries(self) -> None:
        """Drop stale deadline entries (at most one per worker is live): O(1) amortised per result.

        Without this the queues would keep an entry per task until its deadline passed: with thousands of
        workers and deadlines of many minutes, hundreds of thousands of entries, and a master whose
        memory (and garbage-collection time) would grow with every result.
        """
        self._expiries = tuple(deque(entry for entry in queue if self._live_expiry(*entry)) for queue in self._expiries)

    def _handle(self, worker: int, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            self._on_ready(worker)
        elif kind == "result" and self._busy.get(worker):
            queue = self._busy[worker]
            flight = queue.popleft()
            if flight.candidate.id != message.get("task"):  # out of order: find it (never expected)
                queue.appendleft(flight)
                flight = next((f for f in queue if f.candidate.id == message.get("task")), queue[0])
                queue.remove(flight)
            self._worker_busy[worker] = self._worker_busy.get(worker, 0.0) + float(message.get("busy_seconds", 0.0))
            self._worker_idle[worker] = self._worker_idle.get(worker, 0.0) + float(message.get("idle_seconds", 0.0))
            self._flights -= 1
            self._record(flight, worker, message)
            self._idle.append(worker)
            if queue:
                self._start_clock(worker, queue[0])
            else:
                self._busy_workers -= 1
        elif kind in ("fatal", "lost"):
            self._retire(worker, message)
        else:
            self.progress.message(f"[0@{self._host}] ignoring unexpected message {kind!r} from worker {worker}")

    def _on_ready(self, worker: int) -> None:
        """A worker loaded its data: the clock of the task waiting for it starts now.

        A worker not in the pool is a replacement the transport started for a lost one: it joins
        with `_depth` free task slots.
        """
        if worker not in self._workers:
            if self._joining.pop(worker, None) is None:
                self.progress.message(f"[0@{self._host}] ignoring ready from unknown worker {worker}")
                return
            self._workers.add(worker)
            self._busy[worker] = deque()
            self._idle.extend([worker] * self._depth)
            self.progress.message(f"[0@{self._host}] replacement worker {worker} joined ({len(self._workers)} workers)")
        self._ready.add(worker)
        if self._busy.get(worker):
            self._start_clock(worker, self._busy[worker][0])
        if len(self._ready) == len(self._workers) and not self._all_ready_reported:
            self._all_ready_reported = True
            elapsed = self._all_ready_after = self._clock() - self._start
            self.progress.message(f"[0@{self._host}] all {len(self._workers)} workers ready after {elapsed:.1f}s")

    def _check_deadlines(self) -> None:
        """Retire workers past their deadline: a task on a ready worker, or a worker never ready.

        Deadlines sit in two queues in deadline order (an entry is stale once its task left the head
        of its worker's queue), so the cost per result is O(1) however many workers there are.
        """
        now = self._clock()
        for queue in self._expiries:
            while queue and queue[0][0] < now:
                self._expire(*queue.popleft())
        for worker, since in list(self._joining.items()) if self._joining else ():  # a replacement never ready
            if now - since > self._startup_deadline:
                del self._joining[worker]
                replacement = self.transport.discard(worker)
                self._stragglers = True
                self._retire(worker, {"type": "lost", "error": f"replacement not ready within "
                                      f"{self._startup_deadline:.0f}s", "replaced_by": replacement})  # fmt: skip

    def _expire(self, expires: float, task: int, worker: int) -> None:
        """A deadline passed: retire its worker, unless the entry is stale."""
        if not self._live_expiry(expires, task, worker):
            return
        replacement = self.transport.discard(worker)
        self._stragglers = True
        limit = self._deadline if worker in self._ready else self._startup_deadline
        what = "result" if worker in self._ready else "ready message"
        self._retire(worker, {"type": "lost", "error": f"no {what} within the {limit:.0f}s deadline",
                              "timeout": True, "replaced_by": replacement})  # fmt: skip

    def _retire(self, worker: int, message: Mapping[str, Any]) -> None:
        """Stop using a worker that cannot serve; its task is tried again elsewhere (once if it had started).

        A ``replaced_by`` id in the message is a replacement the transport started; it joins when ready.
        """
        self._workers.discard(worker)
        self._joining.pop(worker, None)
        host = message.get("host", "?")
        replacement = message.get("replaced_by")
        if replacement is not None:
            self._joining[int(replacement)] = self._clock()
        started = f"; replacement worker {replacement} starting" if replacement is not None else ""
        self.progress.message(f"[{worker}@{host}] worker lost: {message.get('error', 'no reason given')}{started}")
        self._idle = deque(slot for slot in self._idle if slot != worker)
        queue = self._busy.pop(worker, deque())
        self._flights -= len(queue)
        self._busy_workers -= bool(queue)
        ran = worker in self._ready and message.get("type") != "fatal"  # else the head task never ran
        for position, flight in enumerate(queue):
            if position > 0 or not ran:  # queued behind the running task (or never started): not tried yet
                self._requeued.append(flight)
            elif flight.requeues < MAX_REQUEUES:
                flight.requeues += 1
                self._requeued.append(flight)
            else:
                status = "timeout" if message.get("timeout") else "lost"
                self._timeouts += status == "timeout"
                self._record(flight, worker, {"status": status, "error": message.get("error", "")})
        if not self._workers and not self._joining and not self._stop_reason:
            self._stop_reason = NO_WORKERS

    def _record_unfinished(self) -> None:
        """At the end, give every candidate that ran without a result its row (nothing vanishes).

        A candidate that never ran anywhere (its only worker failed at setup) gets no row.
        After a stop signal nothing gets a row here: the tasks stay in flight in the
        library (journaled), and a ``--resume`` runs them first.
        """
        if self._signals:
            self._to_rerun = len(self._requeued) + self._flights
            self._requeued.clear()
            self._busy.clear()
            self._flights = self._busy_workers = 0
            return
        reason = f"its worker was lost and the search ended before a retry ({self._stop_reason or 'error'})"
        while self._requeued:
            flight = self._requeued.popleft()
            if flight.requeues > 0:
                self._record(flight, -1, {"status": "lost", "error": reason})
        for worker, queue in list(self._busy.items()):
            for position, flight in enumerate(queue):
                if position == 0 or flight.requeues > 0:  # queued tasks that never ran get no row
                    error = f"abandoned while running ({self._stop_reason})"
                    self._record(flight, worker, {"status": "lost", "error": error})
        self._busy.clear()
        self._flights = self._busy_workers = 0

    def _record(self, flight: _InFlight, worker: int, result: Mapping[str, Any]) -> None:
        """Write one finished evaluation to the library, then let evolution see it."""
        candidate = flight.candidate
        genome = candidate.genome
        record = {
            "id": candidate.id,
            "genome": genome.to_json(),
            "hash": genome.hash,
            "parents": "[" + ",".join(map(str, candidate.parents)) + "]",  # JSON text of the id list
            "operator": candidate.operator,
            "status": result.get("status", "failed"),
            "error": result.get("error", ""),
            "worker_rank": worker,
            "seed": candidate.seed,
            "submitted_at": flight.submitted_at,
            "finished_at": self._wallclock(),
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
        self._pareto_dirty |= self.evolution.tell(candidate, record)  # (only ok results join the population)
        if record["status"] == "ok":
            self._best = record["accuracy"] if math.isnan(self._best) else max(self._best, record["accuracy"])
        elif record["status"] != "stopped-early":  # stopped early is the rule working, not a failure
            self._failed += 1

    def _write_pareto(self, force: bool = False) -> None:
        """Keep the library's Pareto front current, at most every PARETO_INTERVAL seconds."""
        if not (force or self._pareto_dirty):  # (most turns: no clock read)
            return
        now = self._clock()
        if force or now - self._pareto_written >= PARETO_INTERVAL:
            ids = [member.candidate.id for member in self.evolution.front]
            if force or ids != self._pareto_ids:
                self.writer.set_pareto(ids)
                self._pareto_ids = ids
            self._pareto_dirty, self._pareto_written = False, now

    def _status(self) -> Status:
        return Status(
            done=self._done,
            budget=self.job.search.evaluations,
            elapsed=self._search_seconds(),
            time_limit=self.job.search.time_limit,
            best_accuracy=self._best,
            front_size=self.evolution.front_size,
            busy=self._busy_workers,
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
            elapsed=self._clock() - self._start,
            stop_reason=self._stop_reason,
            abandoned=abandoned,
            stragglers=abandoned or self._stragglers,
            ranks_used=set(self._ranks_used),
            worker_busy=dict(self._worker_busy),
            worker_idle=dict(self._worker_idle),
            master_seconds=self._master_seconds,
            longest_turn=self._longest_turn,
            stalls=self._stalls,
            timeouts=self._timeouts,
            all_ready_after=self._all_ready_after,
            search_seconds=self._search_seconds(),
            to_rerun=self._to_rerun,
            signal_stop=self._signals[0] if self._signals else "",
        )
