"""The master loop: keep every worker busy, record every result, stop on budget.

One loop for every transport, in the manner of mpi4py.futures' manager: wait
for a message, handle it, retire workers past their deadline, fill the free
task slots, keep the library current.  A worker that frees up gets the next
child at once (no generation barrier); every result is written to the library
before anything else happens with it.  Every candidate handed out ends as
exactly one library row: ``ok``, ``failed``, ``lost`` when the workers that ran
it died, or ``timeout`` when they missed its deadline twice.  Who runs what is
the `Scheduler`'s; what to run next is the `CandidateQueue`'s; the clock is
injectable, so the simulated transport runs this same loop on virtual time.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from menndl.genome import Genome, InputSpec
from menndl.job import Job
from menndl.library import LibraryWriter
from menndl.master.budget import Budget
from menndl.master.candidate import Candidate
from menndl.master.candidate_queue import CandidateQueue
from menndl.master.collector import master_collector
from menndl.master.evaluation_record import evaluation_record
from menndl.master.evolution import Evolution, SpaceExhausted, row_candidate
from menndl.master.front_writer import FrontWriter
from menndl.master.loop_stats import LoopStats
from menndl.master.progress import Progress, Status
from menndl.master.resume import ResumeState
from menndl.master.scheduler import Flight, Scheduler
from menndl.master.signals import StopSignals
from menndl.master.stop_request import StopRequest
from menndl.master.stopping import EarlyStopping
from menndl.master.training_plan import TrainingPlan
from menndl.protocol import setup_message, task_message
from menndl.tasks import task_score
from menndl.transport.base import MasterTransport

RECEIVE_TIMEOUT = 1.0  # seconds: how often the loop looks at signals, deadlines and the clock
DEADLINE_GRACE = 60.0  # seconds on top of 2 x training.max_seconds (model build, validation, a slow node)
STARTUP_DEADLINE = 1800.0  # seconds a worker may take to report ready (import storms on big machines)
NO_WORKERS = "no workers left"
PREPARED_LIMIT = 1024  # first candidates proposed before the workers start (a tenth of a second at most)
RNG_STATE_INTERVAL = 1.0  # seconds between random states written to the library's journal


def spent_epochs(record: Mapping[str, Any]) -> int:
    """The training epochs a row's evaluation ran (``spent_epochs``; ``epochs`` in a library from before it)."""
    spent = int(record.get("spent_epochs", -1))
    return spent if spent >= 0 else max(0, int(record.get("epochs", 0)))


def resumed_candidates(records: list[dict[str, Any]]) -> dict[int, Candidate]:
    """The candidate of every ``ok`` row of a resumed library, by id."""
    out = {}
    for row in records:
        if row.get("status") == "ok":
            text = row["genome"]
            genome = Genome.from_json(text) if isinstance(text, str) else Genome.from_dict(text)
            parents = row.get("parents", [])
            out[int(row["id"])] = row_candidate(row, genome, json.loads(parents or "[]") if isinstance(parents, str)
                                                else parents)  # fmt: skip
    return out


def task_deadline(job: Job) -> float:
    """Seconds after which a task's worker is presumed hung or dead (``search.task_deadline``)."""
    if job.search.task_deadline is not None:
        return job.search.task_deadline
    return 2 * job.training.max_seconds + DEADLINE_GRACE


@dataclass
class SearchResult:
    """How a search ended."""

    library: Path
    evaluations: int
    failed: int
    front: list[dict[str, Any]]
    best_score: float
    elapsed: float
    stop_reason: str
    abandoned: bool = False
    score: str = "accuracy"  # the column best_score is of and the front is sorted by (menndl.tasks.SCORES)
    stragglers: bool = False  # some worker may still be running (abandoned, or lost past its deadline)
    ranks_used: set[int] = field(default_factory=set)
    worker_busy: dict[int, float] = field(default_factory=dict)  # seconds each rank spent evaluating
    worker_idle: dict[int, float] = field(default_factory=dict)  # seconds each rank waited for a task
    master_seconds: float = 0.0  # CPU seconds the master spent outside waiting for messages
    longest_turn: float = 0.0  # wall seconds of the master loop's longest turn (outside waiting for messages)
    stalls: int = 0  # turns of the loop longer than `loop_stats.STALL_SECONDS` (the start-up's first fills among them)
    timeouts: int = 0
    all_ready_after: float = math.nan  # seconds from the start until every worker had reported ready
    search_seconds: float = math.nan  # seconds of search over every run of this library (what search.time_limit counts)
    to_rerun: int = 0  # candidates handed out but without a row: a --resume runs them first
    signal_stop: str = ""  # the signal that stopped the search ("" when it ended otherwise)
    data_lost: str = ""  # why a worker could no longer read the data: the search stopped, its tasks left to --resume

    @property
    def utilization(self) -> float:
        """Share of the workers' time spent evaluating while the search dispatched (nan before any result)."""
        busy, idle = sum(self.worker_busy.values()), sum(self.worker_idle.values())
        return busy / (busy + idle) if busy + idle > 0 else math.nan


@dataclass
class _Tally:
    """What the search's results came to so far (a resume starts from the library's counts)."""

    done: int = 0
    failed: int = 0  # not ok and not stopped early
    best: float = math.nan  # best score (the task's: accuracy, or R² for regression) of an ok result
    to_rerun: int = 0  # handed out, without a row at a stop signal: a --resume runs them first
    stragglers: bool = False  # a worker was dropped past a deadline and may still run


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
        self.score = task_score(spec.task)  # the column that ranks results (accuracy, or r2 for regression)
        self.transport, self.writer = transport, writer
        self.progress = progress or Progress()
        search = job.search
        self.evolution = Evolution(
            space=job.space,
            spec=spec,
            objectives=search.objectives,
            population_size=max(2, min(search.population, search.evaluations or search.population)),
            crossover_probability=search.crossover_probability,
            seed=job.seed,
            max_params=search.max_params,
            max_flops=search.max_flops,
            aging=search.aging,
            rerank_interval=search.rerank_interval,
            strategy=search.strategy,
            spread_start=search.spread_start,
            selection=search.selection,
            reference_points=search.reference_points,
            reference_divisions=search.reference_divisions,
        )
        self._clock, self._wallclock = clock, wallclock
        self._worker_setup = dict(worker_setup or {})
        self.scheduler = Scheduler(1 + search.prefetch, task_deadline(job) if deadline is None else deadline,
                                   startup_deadline, clock)  # fmt: skip
        self.candidates = CandidateQueue(self.evolution, seeds or ())
        self.budget = Budget(search.evaluations, search.time_limit, clock, epochs=search.epoch_budget)
        self.plan = TrainingPlan(job, writer.path, lambda: [m.candidate.id for m in self.evolution.population],
                                 self.evolution.promote)  # fmt: skip
        self._count_epochs = search.epoch_budget is not None
        self.stats = LoopStats()
        self.stop = StopRequest(search.stop_grace, clock)
        self.front_writer = FrontWriter(writer, lambda: [m.candidate.id for m in self.evolution.front], clock)
        training = job.training
        self.stopping = (
            EarlyStopping(
                training.early_stopping_fractions, training.early_stopping_quantile, training.early_stopping_min_results
            )
            if training.early_stopping
            else None
        )
        self._tally = _Tally()
        self._start = clock()
        self._stop_reason = ""
        self._data_lost = ""
        self._rng_state_written = -math.inf
        self._host = socket.gethostname()
        if resume is not None:
            self._restore(resume)

    def _restore(self, resume: ResumeState) -> None:
        """Continue a search from its library: population, random state, counts; re-run what was in flight."""
        self.evolution.restore(resume.records, resume.next_id, resume.rng_state)
        self.budget.dispatched = resume.next_id
        self.budget.seconds_before = resume.search_seconds
        self._tally.done = len(resume.records)
        self._tally.failed = sum(1 for record in resume.records if record.get("status") != "ok")
        scores = [float(r.get(self.score, math.nan)) for r in resume.records if r.get("status") == "ok"]
        self._tally.best = max((s for s in scores if not math.isnan(s)), default=math.nan)
        for candidate in resume.pending:
            self.evolution.mark_seen(candidate.genome.hash)
            self.scheduler.rerun(Flight(candidate, self._wallclock()))
        if self.stopping is not None:
            self.stopping.restore(resume.records)
        if self._count_epochs:
            self.budget.epochs_spent = sum(spent_epochs(record) for record in resume.records)
        if self.plan.active:
            self.plan.restore(resume.records, resumed_candidates(resume.records), resume.pending)
        self.front_writer.changed()

    def run(self) -> SearchResult:
        """Run to the end of the budget; always closes the library and the workers.

        The first SIGINT/SIGTERM/SIGUSR2 stops dispatching and waits up to
        ``search.stop_grace`` seconds for the running evaluations, which are
        recorded; a second signal, or the end of the grace period, abandons
        them: they keep no row, so that a ``--resume`` runs them again.
        """
        self._start = self._clock()
        self.budget.start()
        stats = self.stats
        abandoned = True  # unless the loop ends normally
        loop_ended = False  # an exception ended it (the MPI runtime ending the job among them)
        try:
            with StopSignals(self.stop.names.append), master_collector() as collector:
                setup = {**setup_message(self.job, self.fingerprint), **self._worker_setup}
                started = time.process_time()
                self._prepare_first_candidates()
                stats.add_cpu(started)
                workers = self.transport.start(setup)
                started = time.process_time()
                self.scheduler.start(workers)
                self._fill()  # every worker's first task, before the transport's start-up (see MPIMasterTransport)
                self.scheduler.open_queued_slots()  # then the queued ones, in the loop
                stats.add_cpu(started)
                while self._working():
                    if self.stop and self._apply_stop_signals():
                        break  # the running evaluations are left to --resume
                    event = self.transport.receive(RECEIVE_TIMEOUT)
                    started, began = time.process_time(), time.perf_counter()
                    if event is not None:
                        self._handle(*event)
                    self._retire_overdue()
                    self._fill()
                    self.front_writer.write()
                    self.writer.tick()
                    collector.tick()
                    if self.progress.due():
                        self.progress.update(self._status())
                    stats.end_turn(started, began)
            abandoned = self._working()
            self._stop_reason = self._stop_reason or self._spent_reason()
            loop_ended = True
        finally:
            try:
                self._record_unfinished(failed=not loop_ended)
                self.plan.close()
                self.front_writer.write(force=True)
                self.writer.set_session(self._stop_reason or "error", self.budget.search_seconds())
                self.writer.close()
            finally:
                self.transport.close(abandon=abandoned)
        self.progress.finish(self._status())
        return self._result(abandoned)

    def _working(self) -> bool:
        """Tasks are on workers, or every worker is gone but replacements are starting and work is left."""
        if self.scheduler.in_flight > 0:
            return True
        scheduler = self.scheduler
        if scheduler.workers or not scheduler.joining or self._stop_reason or self.stop:
            return False
        return self.budget.allows(scheduler.requeued > 0)

    def _apply_stop_signals(self) -> bool:
        """Act on the stop signals so far (the first stops dispatching); True when they abandon the running ones."""
        decision = self.stop.decide(self.scheduler.busy, self.scheduler.in_flight, self._stop_reason)
        if decision.reason:
            self._stop_reason = decision.reason
        if decision.message:
            self._say(decision.message)
        return decision.abandon

    def _spent_reason(self) -> str:
        return NO_WORKERS if not self.scheduler.workers else self.budget.spent_reason()

    def _may_dispatch(self) -> bool:
        if self._stop_reason or self.stop or not self.scheduler.workers:
            return False
        return self.budget.allows(self.scheduler.requeued > 0)

    def _fill(self) -> None:
        """Fill every free task slot (idle workers first, then prefetch) while the budget allows."""
        scheduler = self.scheduler
        while scheduler.has_free_slot and self._may_dispatch():
            flight = scheduler.next_requeued()
            if flight is not None:
                flight.submitted_at = self._wallclock()
            else:
                promoted = self.plan.promotion()
                try:
                    candidate = promoted if promoted is not None else self.candidates.next()
                except SpaceExhausted as exc:
                    self._stop_reason = f"search space exhausted ({exc})"
                    self._say(self._stop_reason)
                    return
                flight = Flight(candidate, self._wallclock())
                self.budget.dispatched += 1
            worker = scheduler.assign(flight)
            candidate = flight.candidate
            if self._count_epochs:
                self.budget.plan_epochs(candidate.id, self.plan.planned_epochs(candidate))
            self._journal_task(flight)
            stopping = self.stopping
            message = task_message(
                candidate.id,
                candidate.genome.to_json(),
                candidate.seed,
                return_weights=self.job.library.keep_weights > 0,
                checkpoints=stopping.fractions if stopping is not None else (),
                stop_below=stopping.thresholds() if stopping is not None else (),
                training=self.plan.task_keys(candidate),
            )
            self.writer.commit()  # the journal has the task (and the result it replaces) before the worker does
            self.transport.send(worker, message)

    def _prepare_first_candidates(self) -> None:
        """Propose the first tasks before the workers start, so that each goes out the moment they can.

        As many as the transport will have workers (at most `PREPARED_LIMIT`) and the budget allows.
        """
        count = min(self.transport.worker_count_hint or 0, PREPARED_LIMIT)
        left = self.budget.evaluations_left()
        self.candidates.prepare(count if left is None else min(count, left))

    def _journal_task(self, flight: Flight) -> None:
        """Write the dispatched task to the library's journal, so that a resume can re-queue it."""
        candidate = flight.candidate
        task = {
            "id": candidate.id,
            "genome": candidate.genome.to_json(),
            "hash": candidate.genome.hash,
            "parents": list(candidate.parents),
            "operator": candidate.operator,
            "seed": candidate.seed,
            "submitted_at": flight.submitted_at,
            "next_id": self.budget.dispatched,
            **self._master_state_due(),
        }
        if candidate.rung:
            task["rung"] = candidate.rung
        if candidate.continues >= 0:
            task["continues"] = candidate.continues
        self.writer.task_started(task)

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
        return {"rng_state": self.evolution.rng_state(), "search_seconds": round(self.budget.search_seconds(), 3)}

    def _handle(self, worker: int, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            self._on_ready(worker)
        elif kind == "result" and self.scheduler.holds_tasks(worker):
            flight = self.scheduler.complete(worker, message.get("task"))
            self.stats.add_worker_times(worker, float(message.get("busy_seconds", 0.0)),
                                        float(message.get("idle_seconds", 0.0)))  # fmt: skip
            self._record(flight, worker, message)
        elif kind == "fatal" and message.get("data_unavailable"):
            self._on_data_lost(worker, message)
        elif kind in ("fatal", "lost"):
            self._retire(worker, message)
        else:
            self._say(f"ignoring unexpected message {kind!r} from worker {worker}")

    def _on_data_lost(self, worker: int, message: Mapping[str, Any]) -> None:
        """A worker can no longer read the data (the file is gone): stop the search, keep its tasks for --resume.

        Nothing is recorded for the tasks of such workers: the candidates were not at fault, and a resumed
        search runs them first once the data is back.  Workers still running finish their evaluations.
        """
        error = str(message.get("error", "the data is unavailable"))
        if not self._data_lost:
            self._data_lost = error.removeprefix("DataUnavailable: ")
            self._stop_reason = self._stop_reason or "data unavailable"
        self.progress.message(f"[{worker}@{message.get('host', '?')}] worker stopped: {error}")
        self.scheduler.retire(worker, ran=False)  # its tasks go back to the re-run queue, none recorded

    def _on_ready(self, worker: int) -> None:
        """A worker loaded its data: the clock of the task waiting for it starts now (a replacement joins)."""
        status = self.scheduler.mark_ready(worker)
        if status == "unknown":
            self._say(f"ignoring ready from unknown worker {worker}")
            return
        if status == "joined":
            self._say(f"replacement worker {worker} joined ({len(self.scheduler.workers)} workers)")
        if self.scheduler.all_ready and math.isnan(self.stats.all_ready_after):
            elapsed = self.stats.all_ready_after = self._clock() - self._start
            self._say(f"all {len(self.scheduler.workers)} workers ready after {elapsed:.1f}s")

    def _retire_overdue(self) -> None:
        """Retire workers past a deadline: a task on a ready worker, a worker never ready, a replacement never ready."""
        scheduler = self.scheduler
        for worker, overdue in list(scheduler.overdue()):
            replacement = self.transport.discard(worker)
            self._tally.stragglers = True
            if overdue == "replacement":
                error = f"replacement not ready within {scheduler.startup_deadline:.0f}s"
                self._retire(worker, {"type": "lost", "error": error, "replaced_by": replacement})
                continue
            limit, what = (scheduler.deadline, "result") if overdue == "task" else (scheduler.startup_deadline,
                                                                                     "ready message")  # fmt: skip
            self._retire(worker, {"type": "lost", "error": f"no {what} within the {limit:.0f}s deadline",
                                  "timeout": True, "replaced_by": replacement})  # fmt: skip

    def _retire(self, worker: int, message: Mapping[str, Any]) -> None:
        """Stop using a worker that cannot serve; its task is tried again elsewhere (once if it had started).

        A ``replaced_by`` id in the message is a replacement the transport started; it joins when ready.
        """
        scheduler = self.scheduler
        ran = worker in scheduler.ready and message.get("type") != "fatal"  # else the head task never ran
        running = scheduler.running(worker) if ran else None
        exhausted = scheduler.retire(worker, ran)
        replacement = message.get("replaced_by")
        if replacement is not None:
            scheduler.expect_replacement(int(replacement))
        started = f"; replacement worker {replacement} starting" if replacement is not None else ""
        if running is not None and running not in exhausted:
            started += f"; its task {running.candidate.id} runs again"
        self.progress.message(f"[{worker}@{message.get('host', '?')}] worker lost: "
                              f"{message.get('error', 'no reason given')}{started}")  # fmt: skip
        for flight in exhausted:
            status = "timeout" if message.get("timeout") else "lost"
            self.stats.timeouts += status == "timeout"
            self._record(flight, worker, {"status": status, "error": message.get("error", "")})
        if not scheduler.workers and not scheduler.joining and not self._stop_reason:
            self._stop_reason = NO_WORKERS

    def _record_unfinished(self, failed: bool = False) -> None:
        """At the end, give every candidate that ran without a result its row (nothing vanishes).

        A candidate that never ran anywhere (its only worker failed at setup) gets no row.
        After a stop signal, a lost data source or an exception that ended the loop (``failed``:
        the MPI runtime ending the job when a node is lost, for one) nothing gets a row here: no
        candidate is to blame, the tasks stay in flight in the library (journaled), and a
        ``--resume`` runs them first, as after a killed master.
        """
        requeued, held = self.scheduler.drain()
        if self.stop or self._data_lost or failed:
            self._tally.to_rerun = len(requeued) + sum(len(flights) for _, flights in held)
            return
        reason = f"its worker was lost and the search ended before a retry ({self._stop_reason or 'error'})"
        for flight in requeued:
            if flight.requeues > 0:
                self._record(flight, -1, {"status": "lost", "error": reason})
        for worker, flights in held:
            for position, flight in enumerate(flights):
                if position == 0 or flight.requeues > 0:  # queued tasks that never ran get no row
                    self._record(flight, worker, {"status": "lost", "error": f"abandoned while running "
                                                                             f"({self._stop_reason})"})  # fmt: skip

    def _record(self, flight: Flight, worker: int, result: Mapping[str, Any]) -> None:
        """Write one finished evaluation to the library, then let evolution see it."""
        candidate = flight.candidate
        record = evaluation_record(candidate, flight.submitted_at, self._wallclock(), worker, result, self.spec)
        if self.stopping is not None:
            self.stopping.observe(result.get("checkpoints"))
        self.writer.append(record)
        weights = result.get("weights")
        if weights and record["status"] == "ok":
            self.writer.offer_weights(candidate.id, float(record.get(self.score, math.nan)), weights)
        tally = self._tally
        tally.done += 1
        if worker > 0:
            self.stats.ranks_used.add(worker)
        if self.evolution.tell(candidate, record):  # (only ok results join the population)
            self.front_writer.changed()
        self.plan.recorded(candidate, record)
        if self._count_epochs:
            self.budget.spend_epochs(candidate.id, spent_epochs(record))
        if record["status"] == "ok":
            score = float(record.get(self.score, math.nan))
            tally.best = score if math.isnan(tally.best) else max(tally.best, score)
        elif record["status"] not in ("stopped-early", "over-limit"):  # the rules working, not failures
            tally.failed += 1

    def _say(self, text: str) -> None:
        self.progress.message(f"[0@{self._host}] {text}")

    def _status(self) -> Status:
        return Status(
            done=self._tally.done,
            budget=self.job.search.evaluations,
            elapsed=self.budget.search_seconds(),
            time_limit=self.job.search.time_limit,
            best_score=self._tally.best,
            score=self.score,
            front_size=self.evolution.front_size,
            busy=self.scheduler.busy,
            workers=len(self.scheduler.workers),
            failed=self._tally.failed,
        )

    def _result(self, abandoned: bool) -> SearchResult:
        front = sorted(
            (dict(member.metrics) for member in self.evolution.front),
            key=lambda record: (-float(record.get(self.score, math.nan)), record["params"]),
        )
        stats = self.stats
        return SearchResult(
            library=Path(self.writer.path),
            evaluations=self._tally.done,
            failed=self._tally.failed,
            front=front,
            best_score=self._tally.best,
            score=self.score,
            elapsed=self._clock() - self._start,
            stop_reason=self._stop_reason,
            abandoned=abandoned,
            stragglers=abandoned or self._tally.stragglers,
            ranks_used=set(stats.ranks_used),
            worker_busy=dict(stats.worker_busy),
            worker_idle=dict(stats.worker_idle),
            master_seconds=stats.master_seconds,
            longest_turn=stats.longest_turn,
            stalls=stats.stalls,
            timeouts=stats.timeouts,
            all_ready_after=stats.all_ready_after,
            search_seconds=self.budget.search_seconds(),
            to_rerun=self._tally.to_rerun,
            signal_stop=self.stop.first,
            data_lost=self._data_lost,
        )
