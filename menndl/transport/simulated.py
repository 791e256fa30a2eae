"""Simulated transport: N virtual workers on a virtual clock, driving the real master code.

Nothing is trained and nothing sleeps.  The transport is handed an evaluator
(`TimedEvaluator`, e.g. `menndl.worker.simulated.SimulatedEvaluator`) that
says how long each task takes and what it returns; the transport keeps every
worker's queue and returns results in virtual-time order.  Virtual time moves
two ways: while the master waits (`receive`), it jumps to the next result;
while the master works (everything outside `receive`), it advances by the
real time the master spends.  So a slow master shows up as idle virtual
workers, exactly as it would on a real machine; the transport's own
bookkeeping (asking the evaluator for the result) is not charged to the
master.  A task whose time is infinite never ends: the master's deadline must
notice.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

from menndl.transport.base import MasterTransport, Message


class TimedEvaluator(Protocol):
    """What the simulated transport asks of its evaluator."""

    def duration(self, task: Mapping[str, Any]) -> float:
        """Seconds of virtual time the task takes (``math.inf``: it never ends); asked once, when it is sent."""
        ...

    def evaluate(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """The task's result (``status`` and metrics), asked when its time is up."""
        ...


class VirtualClock:
    """Monotonic seconds: a virtual origin plus the real time elapsed since the last jump."""

    def __init__(self) -> None:
        self._virtual = 0.0
        self._anchor = time.perf_counter()

    def __call__(self) -> float:
        return self._virtual + (time.perf_counter() - self._anchor)

    def jump(self, when: float) -> None:
        """Set the virtual time to ``when`` (never backwards) and restart the real-time part."""
        self._virtual = max(when, self._virtual)
        self._anchor = time.perf_counter()


class _Running:
    """A task a virtual worker is on: the message, its evaluation time, the worker's wait before it."""

    __slots__ = ("task", "seconds", "idle")

    def __init__(self, task: Mapping[str, Any], seconds: float, idle: float) -> None:
        self.task, self.seconds, self.idle = task, seconds, idle


class SimulatedTransport(MasterTransport):
    """``workers`` virtual workers whose evaluations ``evaluator`` times and answers.

    Args:
        workers: how many virtual workers.
        evaluator: gives each task's evaluation time when it is sent and its
            result when that time is up (`TimedEvaluator`).
        latency: one-way message latency in seconds.
        startup: seconds until every worker reports ready.
        clock: the virtual clock (shared with the master's `Search`).
    """

    def __init__(
        self,
        workers: int,
        evaluator: TimedEvaluator,
        *,
        latency: float = 0.0,
        startup: float = 0.0,
        clock: VirtualClock | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not (latency >= 0 and math.isfinite(latency)):
            raise ValueError(f"latency must be finite seconds >= 0, got {latency}")
        if not (startup >= 0 and math.isfinite(startup)):
            raise ValueError(f"startup must be finite seconds >= 0, got {startup}")
        self.workers, self.evaluator = workers, evaluator
        self.latency, self.startup = latency, startup
        self.clock = clock or VirtualClock()
        self._events: list[tuple[float, int, int, Message | _Running]] = []  # (arrival, seq, worker, what)
        self._sequence = itertools.count()
        self._free_at: dict[int, float] = {}  # when each worker's queue drains
        self._discarded: set[int] = set()
        self.busy_seconds = 0.0  # evaluation time handed out (the drain at the end included)
        self.last_result_at = 0.0

    @property
    def description(self) -> str:
        return f"simulated: {self.workers} virtual workers, {self.evaluator}"

    def start(self, setup: Mapping[str, Any]) -> list[int]:
        ready = self.clock() + self.startup
        for worker in range(1, self.workers + 1):
            self._free_at[worker] = ready
            self._push(ready + self.latency, worker, {"type": "ready", "host": "virtual", "device": "virtual"})
        return list(range(1, self.workers + 1))

    def send(self, worker: int, message: Mapping[str, Any] | None) -> None:
        if message is None or worker in self._discarded or message.get("type") != "task":
            return
        begins = max(self.clock() + self.latency, self._free_at[worker])
        idle = begins - self._free_at[worker] if begins > self._free_at[worker] else 0.0
        seconds = self.evaluator.duration(message)
        if not math.isfinite(seconds):
            self._free_at[worker] = math.inf  # never answers: the master's deadline must notice
            return
        self._free_at[worker] = begins + seconds
        self.busy_seconds += seconds
        self._push(begins + seconds + self.latency, worker, _Running(message, seconds, idle))

    def _push(self, when: float, worker: int, what: Message | _Running) -> None:
        heapq.heappush(self._events, (when, next(self._sequence), worker, what))

    def receive(self, timeout: float) -> tuple[int, Message] | None:
        now = self.clock()
        while self._events and self._events[0][2] in self._discarded:
            heapq.heappop(self._events)
        if not self._events or self._events[0][0] > now + timeout:
            self.clock.jump(now + timeout)
            return None
        when, _, worker, what = heapq.heappop(self._events)
        if isinstance(what, _Running):
            message = self._result(what)
            self.last_result_at = max(self.last_result_at, when)
        else:
            message = what
        self.clock.jump(max(now, when))
        return worker, message

    def _result(self, running: _Running) -> Message:
        """What a worker would send back for this task (built here, not charged to the master)."""
        return {
            "type": "result", "task": running.task["task"], **self.evaluator.evaluate(running.task),
            "host": "virtual", "device": "virtual", "busy_seconds": running.seconds, "idle_seconds": running.idle,
        }  # fmt: skip

    def discard(self, worker: int) -> None:
        self._discarded.add(worker)

    def close(self, abandon: bool = False) -> None:
        self._events.clear()
