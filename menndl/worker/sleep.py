"""A stand-in evaluator that sleeps instead of training: the real worker loop, without torch.

Benchmarks of the scheduler (``menndl bench scheduler``) and the transport
tests put ``{"evaluator": "sleep", "sleep": {...}}`` in the setup message; the
worker then runs its normal loop, but each task sleeps a fixed time and
reports the synthetic metrics of `menndl.worker.simulated.synthetic_metrics`
(the genome's real size and an accuracy made up from it, so selection has
something to work with).  ``light`` skips decoding the genome (sizes made up
from the task's seed) for benchmarks at thousands of tasks per second, where
the workers' own CPU would otherwise compete with the master.

For fault-injection tests: ``hang_tasks`` makes chosen task ids sleep far
past any deadline, to exercise the master's timeout path; ``hang_on_setup``
lists worker ranks that never report ready (they sleep while being set up);
``log`` names a file to which the worker appends one JSON line ``{"task",
"hash", "pid"}`` per evaluation it finished (before sending the result), so a
test can check that no finished evaluation was lost or run twice;
``crash_tasks`` maps task ids to a signal name (``SIGSEGV``, ``SIGKILL``, ...)
that the worker sends itself when it starts that task (only on the first
attempt with ``crash_once``); ``crash_on_setup`` names a signal the worker
sends itself while being set up (a broken install); ``die_after_result``
maps task ids to a delay in seconds: once that task's result is made, a timer
kills the worker with SIGKILL after the delay, while the worker loop sends the
result (a rank that dies with its result on the wire; first attempt only when
there is a ``log``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from menndl.genome import InputSpec
from menndl.protocol import task_genome
from menndl.worker.evaluator import Evaluator
from menndl.worker.simulated import HANG_SECONDS, synthetic_metrics

__all__ = ["HANG_SECONDS", "SleepEvaluator"]


class SleepEvaluator(Evaluator):
    """Sleeps ``seconds`` per task; reports `synthetic_metrics`."""

    device_name = "sleep"
    precision = "none"

    def __init__(
        self, seconds: float, spec: InputSpec, hang_tasks: frozenset[int] = frozenset(), light: bool = False
    ) -> None:
        self.seconds, self.spec, self.hang_tasks, self.light = seconds, spec, hang_tasks, light
        self.log: Path | None = None
        self.crash_tasks: dict[int, str] = {}
        self.crash_once = False
        self.die_after_result: dict[int, float] = {}

    @classmethod
    def from_setup(
        cls, setup: Mapping[str, Any], *, rank: int = 0, local_rank: int = 0, threads: int = 1
    ) -> SleepEvaluator:
        """Build from the setup message's ``sleep`` table (keys: see the module's docstring).

        ``seconds`` (default 0.1), ``input_shape`` and ``num_classes`` (default
        ``(1, 8, 8)`` and 10), ``light``, and the fault injections.  A worker
        whose ``rank`` is in ``hang_on_setup`` sleeps here and never reports ready.
        """
        table = setup.get("sleep", {})
        if table.get("crash_on_setup"):  # fault injection: a worker that dies before "ready" (a broken install)
            os.kill(os.getpid(), signal.Signals[str(table["crash_on_setup"])])
        if rank in set(table.get("hang_on_setup", ())):  # fault injection: a worker that is never ready
            time.sleep(HANG_SECONDS)
        shape = tuple(table.get("input_shape", (1, 8, 8)))
        spec = InputSpec(shape=shape, num_classes=int(table.get("num_classes", 10)))
        hang = frozenset(table.get("hang_tasks", ()))
        evaluator = cls(float(table.get("seconds", 0.1)), spec, hang, light=bool(table.get("light", False)))
        evaluator.log = Path(table["log"]) if table.get("log") else None
        evaluator.crash_tasks = {int(task): str(name) for task, name in dict(table.get("crash_tasks", {})).items()}
        evaluator.crash_once = bool(table.get("crash_once", False))
        evaluator.die_after_result = {
            int(task): float(delay) for task, delay in dict(table.get("die_after_result", {})).items()
        }
        return evaluator

    def _maybe_crash(self, task_id: int) -> None:
        """Fault injection: die by the signal named for this task (once per task with ``crash_once``)."""
        name = self.crash_tasks.get(task_id)
        if name is None:
            return
        if self.crash_once and not self._first_attempt(task_id, "crashed"):
            return
        os.kill(os.getpid(), signal.Signals[name])
        time.sleep(5)  # a signal that does not end the process (ignored): carry on

    def _first_attempt(self, task_id: int, what: str) -> bool:
        """True the first time this is asked for ``task_id`` (a marker file beside the log; always without one)."""
        if self.log is None:
            return True
        try:
            self.log.with_name(f"{self.log.name}.{what}-{task_id}").touch(exist_ok=False)
        except FileExistsError:
            return False
        return True

    def _log_finished(self, task: Mapping[str, Any]) -> None:
        if self.log is not None:
            line = json.dumps({"task": int(task["task"]), "hash": task_genome(task).hash, "pid": os.getpid()})
            with open(self.log, "a", encoding="utf-8") as handle:  # one short append: atomic
                handle.write(line + "\n")

    def evaluate(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Sleep, then report ``ok`` with the synthetic metrics (light ones with ``light``, which logs nothing)."""
        self._maybe_crash(int(task["task"]))
        time.sleep(HANG_SECONDS if task["task"] in self.hang_tasks else self.seconds)
        result = synthetic_metrics(task, self.spec, self.seconds, light=self.light)
        if not self.light:
            self._log_finished(task)
        delay = self.die_after_result.get(int(task["task"]))
        if delay is not None and self._first_attempt(int(task["task"]), "died"):  # die while the loop sends it
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()
        return result
