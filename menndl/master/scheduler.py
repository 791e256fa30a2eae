"""The worker pool: each worker's tasks in flight, the free task slots, the re-run queue and the deadlines.

The master loop's bookkeeping of who runs what, apart from what it runs (the
search) and how messages travel (the transport).  Each worker holds a queue of
tasks, the running one first and up to ``depth - 1`` queued behind it; a free
slot is an entry in one FIFO of worker ids.  A task's deadline starts when it
reaches the head of its worker's queue: ``deadline`` seconds on a worker that
reported ready, ``startup_deadline`` on one that has not.  Deadlines sit in two
FIFO queues, one per limit, so each is in deadline order and the cost per
result is O(1) however many workers there are; an entry is stale once its task
left the head of its worker's queue.  Counts are kept, never recounted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from menndl.master.candidate import Candidate

MAX_REQUEUES = 1  # a task whose worker died is tried once more, then recorded as lost
EXPIRY_SLACK = 4  # the deadline queues are compacted when they hold this many entries per worker

Readiness = Literal["ready", "joined", "unknown"]
Overdue = Literal["task", "startup", "replacement"]


@dataclass(eq=False)
class Flight:
    """A task handed to a worker (or waiting to be handed again) and its timing."""

    candidate: Candidate
    submitted_at: float  # epoch seconds when it was (last) sent
    requeues: int = 0
    started: float = 0.0  # when it began to run (or was sent to a worker not yet ready)
    expires: float = math.inf


class Scheduler:
    """Which worker runs which tasks, which slots are free, and which workers are past their deadline."""

    def __init__(self, depth: int, deadline: float, startup_deadline: float, clock: Callable[[], float]) -> None:
        """An empty pool.

        Args:
            depth: tasks each worker holds: the running one and ``depth - 1`` queued.
            deadline: seconds a task may run on a ready worker.
            startup_deadline: seconds a worker may take to report ready (and a replacement to join).
            clock: monotonic seconds (a simulation passes its virtual clock).
        """
        self.depth, self.deadline, self.startup_deadline = depth, deadline, startup_deadline
        self._clock = clock
        self.workers: set[int] = set()
        self.ready: set[int] = set()
        self.joining: dict[int, float] = {}  # replacement workers started by the transport, not ready yet -> since
        self._free: deque[int] = deque()  # one entry per free task slot of a worker
        self._queues: dict[int, deque[Flight]] = {}  # worker -> its tasks, the running one first
        self._requeued: deque[Flight] = deque()  # tasks whose worker was lost, to hand out again first
        self._in_flight = 0  # tasks in every worker's queue together
        self._busy = 0  # workers with at least one task
        # (deadline, task id, worker) of each task when it starts, in start order: [False] for workers not
        # ready yet, [True] for ready ones.  Entries hold ids, not flights, so a finished task's genome is not
        # kept alive until its deadline passes.
        self._expiries: tuple[deque[tuple[float, int, int]], ...] = (deque(), deque())

    @property
    def in_flight(self) -> int:
        """Tasks held by workers (running or queued behind the running one)."""
        return self._in_flight

    @property
    def busy(self) -> int:
        """Workers holding at least one task."""
        return self._busy

    @property
    def requeued(self) -> int:
        """Tasks waiting to be handed out again."""
        return len(self._requeued)

    @property
    def has_free_slot(self) -> bool:
        """Whether some worker can take one more task."""
        return bool(self._free)

    def start(self, workers: Iterable[int]) -> None:
        """The transport's workers join, with one free slot each (`open_queued_slots` adds the rest)."""
        self.workers = set(workers)
        for worker in sorted(self.workers):
            self._queues[worker] = deque()
        self._free.extend(sorted(self.workers))

    def open_queued_slots(self) -> None:
        """Every worker's queued slots (after each got its first task): ``depth - 1`` more each."""
        for _ in range(self.depth - 1):
            self._free.extend(sorted(self.workers))

    def assign(self, flight: Flight) -> int:
        """Put ``flight`` in the next free slot; returns its worker.  Its clock starts if it runs at once."""
        worker = self._free.popleft()
        queue = self._queues[worker]
        queue.append(flight)
        self._in_flight += 1
        if len(queue) == 1:
            self._busy += 1
            self._start_clock(worker, flight)
        return worker

    def rerun(self, flight: Flight) -> None:
        """Hand ``flight`` out again before any new task (a task a resumed library had in flight)."""
        self._requeued.append(flight)

    def next_requeued(self) -> Flight | None:
        """The oldest task to hand out again, or None."""
        return self._requeued.popleft() if self._requeued else None

    def holds_tasks(self, worker: int) -> bool:
        """Whether ``worker`` holds a task (a result from a worker that holds none is unexpected)."""
        return bool(self._queues.get(worker))

    def complete(self, worker: int, task: object) -> Flight:
        """``worker`` returned the result of ``task`` (it must hold a task): its slot is free again.

        The task is expected at the head of the worker's queue; one found elsewhere is taken from there.
        """
        queue = self._queues[worker]
        flight = queue.popleft()
        if flight.candidate.id != task:  # out of order: find it (never expected)
            queue.appendleft(flight)
            flight = next((f for f in queue if f.candidate.id == task), queue[0])
            queue.remove(flight)
        self._in_flight -= 1
        self._free.append(worker)
        if queue:
            self._start_clock(worker, queue[0])
        else:
            self._busy -= 1
        return flight

    def mark_ready(self, worker: int) -> Readiness:
        """``worker`` reported ready: ``ready``, ``joined`` (a replacement, now in the pool) or ``unknown``.

        A replacement joins with ``depth`` free slots.  The clock of a task waiting for the worker starts now.
        """
        status: Readiness = "ready"
        if worker not in self.workers:
            if self.joining.pop(worker, None) is None:
                return "unknown"
            self.workers.add(worker)
            self._queues[worker] = deque()
            self._free.extend([worker] * self.depth)
            status = "joined"
        self.ready.add(worker)
        if self._queues.get(worker):
            self._start_clock(worker, self._queues[worker][0])
        return status

    @property
    def all_ready(self) -> bool:
        """Whether every worker in the pool has reported ready."""
        return len(self.ready) == len(self.workers)

    def overdue(self) -> Iterator[tuple[int, Overdue]]:
        """Workers past a deadline, with which one: a ``task``, a ``startup`` or a ``replacement`` never ready.

        A replacement overdue is forgotten here; the others stay in the pool until `retire`.
        """
        now = self._clock()
        for ready, queue in zip((False, True), self._expiries):
            while queue and queue[0][0] < now:
                expires, task, worker = queue.popleft()
                if self._live_expiry(expires, task, worker):
                    yield worker, "task" if ready else "startup"
        for worker, since in list(self.joining.items()) if self.joining else ():
            if now - since > self.startup_deadline:
                del self.joining[worker]
                yield worker, "replacement"

    def expect_replacement(self, worker: int) -> None:
        """The transport is starting ``worker`` in place of a lost one: it joins when it reports ready."""
        self.joining[worker] = self._clock()

    def running(self, worker: int) -> Flight | None:
        """The task at the head of ``worker``'s queue (the one it runs, if it is ready), or None."""
        queue = self._queues.get(worker)
        return queue[0] if queue else None

    def retire(self, worker: int, ran: bool) -> list[Flight]:
        """Stop using ``worker``; its tasks go to the re-run queue, except those out of tries (returned).

        Args:
            ran: whether the head task ran on it (a ready worker, not a fatal start-up): such a task is
                tried again at most `MAX_REQUEUES` times; tasks queued behind it had not started.
        """
        self.workers.discard(worker)
        self.joining.pop(worker, None)
        self._free = deque(slot for slot in self._free if slot != worker)
        queue = self._queues.pop(worker, deque())
        self._in_flight -= len(queue)
        self._busy -= bool(queue)
        exhausted = []
        for position, flight in enumerate(queue):
            if position > 0 or not ran:  # queued behind the running task (or never started): not tried yet
                self._requeued.append(flight)
            elif flight.requeues < MAX_REQUEUES:
                flight.requeues += 1
                self._requeued.append(flight)
            else:
                exhausted.append(flight)
        return exhausted

    def drain(self) -> tuple[list[Flight], list[tuple[int, list[Flight]]]]:
        """Empty the pool at the end: the re-run queue, and each worker's tasks (the running one first)."""
        requeued = list(self._requeued)
        held = [(worker, list(queue)) for worker, queue in self._queues.items()]
        self._requeued.clear()
        self._queues.clear()
        self._in_flight = self._busy = 0
        return requeued, held

    def _start_clock(self, worker: int, flight: Flight) -> None:
        """The task at the head of a worker's queue runs from now: its deadline is set."""
        flight.started = self._clock()
        ready = worker in self.ready
        flight.expires = flight.started + (self.deadline if ready else self.startup_deadline)
        self._expiries[ready].append((flight.expires, flight.candidate.id, worker))
        if len(self._expiries[True]) + len(self._expiries[False]) > EXPIRY_SLACK * max(len(self._queues), 256):
            self._compact_expiries()

    def _live_expiry(self, expires: float, task: int, worker: int) -> bool:
        queue = self._queues.get(worker)
        if not queue:
            return False
        return queue[0].candidate.id == task and queue[0].expires == expires

    def _compact_expiries(self) -> None:
        """Drop stale deadline entries (at most one per worker is live): O(1) amortised per result.

        Without this the queues would keep an entry per task until its deadline passed: with thousands
        of workers and deadlines of many minutes, hundreds of thousands of entries, and a master whose
        memory (and garbage-collection time) would grow with every result.
        """
        self._expiries = tuple(deque(entry for entry in queue if self._live_expiry(*entry)) for queue in self._expiries)
