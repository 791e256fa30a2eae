"""Simulated transport: N virtual workers on a virtual clock, driving the real master code.

Nothing is trained and nothing sleeps.  Each task's evaluation time is drawn
from a model (`EvalTimeModel`); the transport keeps every worker's queue and
returns results in virtual-time order.  Virtual time moves two ways: while
the master waits (`receive`), it jumps to the next result; while the master
works (everything outside `receive`), it advances by the real time the master
spends.  So a slow master shows up as idle virtual workers, exactly as it
would on a real machine; the transport's own bookkeeping (building results)
is not charged to the master.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from menndl.errors import UserError
from menndl.genome import Genome, InputSpec, count_flops, count_params
from menndl.protocol import task_genome
from menndl.transport.base import MasterTransport, Message

DEFAULT_SIGMA = 0.5  # lognormal shape when none is given


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


@dataclass(frozen=True)
class EvalTimeModel:
    """How long an evaluation takes: ``fixed:S``, ``lognormal:MEAN[:SIGMA]`` or ``library:PATH``."""

    kind: str
    mean: float = 0.0
    sigma: float = 0.0
    samples: tuple[float, ...] = ()
    text: str = ""

    def sample(self, rng: random.Random) -> float:
        """One evaluation time in seconds."""
        if self.kind == "fixed":
            return self.mean
        if self.kind == "lognormal":
            return rng.lognormvariate(math.log(self.mean) - self.sigma**2 / 2, self.sigma)  # mean is MEAN
        return rng.choice(self.samples)

    def __str__(self) -> str:
        return self.text


def parse_eval_time(text: str) -> EvalTimeModel:
    """Parse ``fixed:S``, ``lognormal:MEAN[:SIGMA]`` (MEAN is the mean) or ``library:PATH`` (replay).

    Raises:
        UserError: the text is malformed, a number is not positive, or the
            library holds no successful evaluation.
    """
    kind, _, rest = text.partition(":")
    try:
        if kind == "fixed":
            seconds = float(rest)
            if math.isfinite(seconds) and seconds > 0:
                return EvalTimeModel("fixed", mean=seconds, text=text)
        elif kind == "lognormal":
            mean_text, _, sigma_text = rest.partition(":")
            mean, sigma = float(mean_text), float(sigma_text) if sigma_text else DEFAULT_SIGMA
            if math.isfinite(mean) and mean > 0 and math.isfinite(sigma) and sigma > 0:
                return EvalTimeModel("lognormal", mean=mean, sigma=sigma, text=text)
        elif kind == "library" and rest:
            return _library_model(rest, text)
    except ValueError:
        pass
    raise UserError(
        f"--eval-time: expected fixed:SECONDS, lognormal:MEAN[:SIGMA] or library:PATH with positive numbers, "
        f"got '{text}'"
    )


def _library_model(path: str, text: str) -> EvalTimeModel:
    from menndl.library import Library

    with Library.open(path) as library:
        seconds = [float(row["train_seconds"]) for row in library.records()
                   if row.get("status") == "ok" and float(row.get("train_seconds", 0)) > 0]  # fmt: skip
    if not seconds:
        raise UserError(f"{path}: no successful evaluation with train_seconds to replay (--eval-time {text})")
    return EvalTimeModel("library", mean=sum(seconds) / len(seconds), samples=tuple(seconds), text=text)


def simulated_accuracy(genome: Genome, params: int) -> float:
    """A made-up accuracy: larger models do better, with saturation, plus genome-dependent noise."""
    noise = int.from_bytes(hashlib.sha256(genome.hash.encode()).digest()[:4], "big") / 2**32
    return min(0.999, 0.5 + 0.35 * (1 - math.exp(-params / 20000)) + 0.15 * noise)


class SimulatedTransport(MasterTransport):
    """``workers`` virtual workers whose evaluations take ``model`` seconds of virtual time.

    Args:
        spec: the input shape, to compute made-up results (params, flops) like a worker would.
        max_seconds: evaluations are cut here, as the trainer's time limit cuts real training.
        latency: one-way message latency in seconds.
        startup: seconds until every worker reports ready.
    """

    def __init__(
        self,
        workers: int,
        model: EvalTimeModel,
        spec: InputSpec,
        *,
        seed: int = 0,
        max_seconds: float = math.inf,
        latency: float = 0.0,
        startup: float = 0.0,
        clock: VirtualClock | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.model, self.spec = workers, model, spec
        self.max_seconds, self.latency, self.startup = max_seconds, latency, startup
        self.clock = clock or VirtualClock()
        self._rng = random.Random(seed)
        self._events: list[tuple[float, int, int, Message]] = []  # (arrival, seq, worker, message)
        self._sequence = itertools.count()
        self._free_at: dict[int, float] = {}  # when each worker's queue drains
        self._discarded: set[int] = set()
        self._hang: frozenset[int] = frozenset()
        self.busy_seconds = 0.0  # evaluation time handed out (the drain at the end included)
        self.last_result_at = 0.0

    @property
    def description(self) -> str:
        return f"simulated: {self.workers} virtual workers, evaluation time {self.model}"

    def start(self, setup: Mapping[str, Any]) -> list[int]:
        self._hang = frozenset(setup.get("sleep", {}).get("hang_tasks", ()))
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
        if message["task"] in self._hang:
            self._free_at[worker] = math.inf  # never answers: the master's deadline must notice
            return
        seconds = min(self.model.sample(self._rng), self.max_seconds)
        self._free_at[worker] = begins + seconds
        self.busy_seconds += seconds
        task = {"task": message["task"], "genome": message["genome"], "busy_seconds": seconds, "idle_seconds": idle}
        self._push(begins + seconds + self.latency, worker, task)

    def _push(self, when: float, worker: int, message: Message) -> None:
        heapq.heappush(self._events, (when, next(self._sequence), worker, message))

    def receive(self, timeout: float) -> tuple[int, Message] | None:
        now = self.clock()
        while self._events and self._events[0][2] in self._discarded:
            heapq.heappop(self._events)
        if not self._events or self._events[0][0] > now + timeout:
            self.clock.jump(now + timeout)
            return None
        when, _, worker, message = heapq.heappop(self._events)
        if message.get("type") != "ready":
            message = self._result(message)
            self.last_result_at = max(self.last_result_at, when)
        self.clock.jump(max(now, when))
        return worker, message

    def _result(self, task: Message) -> Message:
        """What a worker would send back for this task (built here, not charged to the master)."""
        genome = task_genome(task)
        params = count_params(genome, self.spec)
        return {
            "type": "result", "task": task["task"], "status": "ok",
            "accuracy": simulated_accuracy(genome, params), "loss": 1.0, "params": params,
            "flops": count_flops(genome, self.spec), "train_seconds": task["busy_seconds"], "epochs": 1,
            "host": "virtual", "device": "virtual",
            "busy_seconds": task["busy_seconds"], "idle_seconds": task["idle_seconds"],
        }  # fmt: skip

    def discard(self, worker: int) -> None:
        self._discarded.add(worker)

    def close(self, abandon: bool = False) -> None:
        self._events.clear()
