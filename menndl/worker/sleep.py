"""A stand-in evaluator that sleeps instead of training: the real worker loop, without torch.

Benchmarks of the scheduler (``menndl bench scheduler``) and the transport
tests put ``{"evaluator": "sleep", "sleep": {...}}`` in the setup message; the
worker then runs its normal loop, but each task sleeps a fixed time and
reports made-up metrics that depend only on the genome (so selection has
something to work with).  ``hang_tasks`` makes chosen task ids sleep far past
any deadline, to exercise the master's timeout path; ``light`` skips
decoding the genome (made-up sizes) for benchmarks at thousands of tasks per
second, where the workers' own CPU would otherwise compete with the master.

For fault-injection tests: ``log`` names a file to which the worker appends
one JSON line ``{"task", "hash", "pid"}`` per evaluation it finished (before
sending the result), so a test can check that no finished evaluation was lost
or run twice; ``crash_tasks`` maps task ids to a signal name (``SIGSEGV``,
``SIGKILL``, ...) that the worker sends itself when it starts that task (only
on the first attempt with ``crash_once``).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from menndl.genome import InputSpec, count_flops, count_params
from menndl.protocol import task_genome

HANG_SECONDS = 3600.0


class SleepEvaluator:
    """Sleeps ``seconds`` per task; metrics from the genome alone."""

    device_name = "sleep"
    precision = "none"

    def device_ok(self) -> bool:
        """A sleeping evaluator has no device to lose."""
        return True

    def __init__(
        self, seconds: float, spec: InputSpec, hang_tasks: frozenset[int] = frozenset(), light: bool = False
    ) -> None:
        self.seconds, self.spec, self.hang_tasks, self.light = seconds, spec, hang_tasks, light
        self.log: Path | None = None
        self.crash_tasks: dict[int, str] = {}
        self.crash_once = False

    @classmethod
    def from_setup(cls, setup: Mapping[str, Any]) -> SleepEvaluator:
        """Build from the setup message's ``sleep`` table: seconds, input_shape, num_classes, hang_tasks."""
        table = setup.get("sleep", {})
        shape = tuple(table.get("input_shape", (1, 8, 8)))
        spec = InputSpec(shape=shape, num_classes=int(table.get("num_classes", 10)))
        hang = frozenset(table.get("hang_tasks", ()))
        evaluator = cls(float(table.get("seconds", 0.1)), spec, hang, light=bool(table.get("light", False)))
        evaluator.log = Path(table["log"]) if table.get("log") else None
        evaluator.crash_tasks = {int(task): str(name) for task, name in dict(table.get("crash_tasks", {})).items()}
        evaluator.crash_once = bool(table.get("crash_once", False))
        if table.get("crash_on_setup"):  # fault injection: a worker that dies before "ready" (a broken install)
            os.kill(os.getpid(), signal.Signals[str(table["crash_on_setup"])])
        return evaluator

    def _maybe_crash(self, task_id: int) -> None:
        """Fault injection: die by the signal named for this task (once per task with ``crash_once``)."""
        name = self.crash_tasks.get(task_id)
        if name is None:
            return
        if self.crash_once and self.log is not None:
            marker = self.log.with_name(f"{self.log.name}.crashed-{task_id}")
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.Signals[name])
        time.sleep(5)  # a signal that does not end the process (ignored): carry on

    def _log_finished(self, task_id: int, genome_hash: str) -> None:
        if self.log is not None:
            line = json.dumps({"task": task_id, "hash": genome_hash, "pid": os.getpid()}) + "\n"
            with open(self.log, "a", encoding="utf-8") as handle:  # one short append: atomic
                handle.write(line)

    def evaluate(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Sleep, then report ``ok`` with the genome's real size and a pseudo-accuracy from its hash."""
        self._maybe_crash(int(task["task"]))
        time.sleep(HANG_SECONDS if task["task"] in self.hang_tasks else self.seconds)
        if self.light:  # a few microseconds: at 1,000+ tasks per second on 2 cores, worker CPU matters
            noise = (int(task["seed"]) * 2654435761 % 2**32) / 2**32
            params = 1000 + int(task["seed"]) % 99991
            return {"status": "ok", "accuracy": noise, "loss": 1.0, "params": params, "flops": 10 * params,
                    "train_seconds": self.seconds, "epochs": 1}  # fmt: skip
        genome = task_genome(task)
        self._log_finished(int(task["task"]), genome.hash)
        digest = hashlib.sha256(genome.hash.encode()).digest()
        return {
            "status": "ok",
            "accuracy": int.from_bytes(digest[:4], "big") / 2**32,
            "loss": 1.0,
            "params": count_params(genome, self.spec),
            "flops": count_flops(genome, self.spec),
            "train_seconds": self.seconds,
            "epochs": 1,
        }
