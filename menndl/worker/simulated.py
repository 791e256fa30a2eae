"""Made-up evaluations: the synthetic metrics every fake evaluator reports, and evaluation-time models.

`synthetic_metrics` is the one formula for a result that was not trained: the
genome's real size, and an accuracy that grows with it and saturates, plus
noise fixed by the genome (`synthetic_accuracy`), so selection has a real
trade-off to work on.  The sleep evaluator (`menndl.worker.sleep`), the
`SimulatedEvaluator` below (``menndl simulate``, the simulated transport),
the tests' scripted workers and the benchmarks all report it.

`SimulatedEvaluator` draws each task's evaluation time from an
`EvalTimeModel` (``fixed:S``, ``lognormal:MEAN[:SIGMA]``, ``library:PATH``)
and returns at once; the simulated transport (`menndl.transport.simulated`)
asks it for the time when the task is sent and for the result when the time
is up.  No torch here.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from menndl.errors import UserError
from menndl.genome import InputSpec, count_flops, count_params
from menndl.protocol import task_genome
from menndl.worker.evaluator import Evaluator

DEFAULT_SIGMA = 0.5  # lognormal shape when none is given
HANG_SECONDS = 3600.0  # how long a worker's "never ending" evaluation really sleeps


def synthetic_accuracy(key: str, params: int) -> float:
    """A made-up accuracy: larger models do better, with saturation, plus noise fixed by ``key``.

    Args:
        key: what fixes the noise (a genome's hash): the same key, the same accuracy.
        params: the model's parameter count.

    Returns:
        ``0.5 + 0.35 * (1 - exp(-params / 20000)) + 0.15 * noise``, at most 0.999,
        with ``noise`` in ``[0, 1)`` from the SHA-256 of ``key``.
    """
    noise = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") / 2**32
    return min(0.999, 0.5 + 0.35 * (1 - math.exp(-params / 20000)) + 0.15 * noise)


def synthetic_metrics(
    task: Mapping[str, Any], spec: InputSpec, seconds: float, *, light: bool = False
) -> dict[str, Any]:
    """The result of a task that was not trained (status ``ok``), as a worker would report it.

    Args:
        task: the task message (its genome and seed).
        spec: the input shape and classes, for the genome's parameters and FLOPs.
        seconds: the evaluation time to report as ``train_seconds``.
        light: do not parse the genome: sizes and the accuracy's key come from
            the task's seed (a few microseconds, for benchmarks at thousands of
            tasks per second where the workers' CPU competes with the master).

    Returns:
        ``status``, ``accuracy`` (`synthetic_accuracy`; ``r2`` the same, ``mse`` one minus it), ``loss``, ``params``,
        ``flops``, ``train_seconds``, ``epochs``, and made-up ``latency``,
        ``batch_latency``, ``memory``, ``train_memory``, ``energy`` and
        ``train_energy`` that grow with the FLOPs (so any objective can be simulated).
    """
    if light:
        seed = int(task["seed"])
        key, params = str(seed), 1000 + seed % 99991
        flops = 10 * params
    else:
        genome = task_genome(task)
        key, params, flops = genome.hash, count_params(genome, spec), count_flops(genome, spec)
    spread = 0.5 + int.from_bytes(hashlib.sha256(f"cost {key}".encode()).digest()[:4], "big") / 2**32
    score = synthetic_accuracy(key, params)  # also the made-up R² (and 1 - R² its MSE) and mIoU of other tasks
    return {"status": "ok", "accuracy": score, "r2": score, "mse": 1.0 - score, "miou": score, "pixel_accuracy": score,
            "loss": 1.0, "params": params,
            "flops": flops, "train_seconds": seconds, "epochs": 1,
            # made-up hardware costs: FLOPs at 1 GFLOP/s (batch 1) and 10 GFLOP/s (batched), times 0.5-1.5
            "latency": 1e-5 + flops * 1e-9 * spread, "batch_latency": 1e-6 + flops * 1e-10 * spread,
            "memory": 8 * params + 4 * flops // 10, "train_memory": 16 * params + 4 * flops // 5,
            "energy": flops * 1e-8 * spread, "train_energy": 3 * flops * 1e-8 * spread}  # fmt: skip


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


def rung_share(task: Mapping[str, Any]) -> float:
    """The share of a candidate's whole budget a task trains (1 without rungs: ``train_epochs`` absent)."""
    if "train_epochs" not in task:
        return 1.0
    plan = max(1, int(task.get("plan_epochs", 1)))
    return (int(task["train_epochs"]) - int(task.get("from_epochs", 0))) / plan


class SimulatedEvaluator(Evaluator):
    """Evaluations that take ``model`` seconds of (virtual) time and report `synthetic_metrics`.

    Nothing sleeps: `duration` draws a task's time, `evaluate` returns its
    result at once with that time as ``train_seconds``.  The simulated
    transport calls `duration` when it sends a task and `evaluate` when the
    virtual time is up; a worker that runs this evaluator (``{"evaluator":
    "simulated"}``) answers every task immediately.

    Args:
        model: the evaluation-time model.
        spec: the input shape and classes, for the genomes' sizes.
        seed: seeds the draws of evaluation times (in the order tasks are sent).
        max_seconds: draws are cut here, as the trainer's time limit cuts real training.
        hang_tasks: task ids that never end (`duration` is infinite): the master's deadline must notice.
    """

    precision = "none"

    def __init__(
        self,
        model: EvalTimeModel,
        spec: InputSpec,
        *,
        seed: int = 0,
        max_seconds: float = math.inf,
        hang_tasks: frozenset[int] = frozenset(),
    ) -> None:
        self.model, self.spec, self.max_seconds, self.hang_tasks = model, spec, max_seconds, frozenset(hang_tasks)
        self._rng = random.Random(seed)
        self._drawn: dict[int, float] = {}  # task id -> its time, from `duration` until `evaluate`

    @classmethod
    def from_setup(
        cls, setup: Mapping[str, Any], *, rank: int = 0, local_rank: int = 0, threads: int = 1
    ) -> SimulatedEvaluator:
        """Build from the setup message's ``simulated`` table.

        Keys: ``eval_time`` (default ``fixed:1``), ``seed``, ``max_seconds``,
        ``input_shape``, ``num_classes``, ``hang_tasks``.
        """
        table = setup.get("simulated", {})
        shape = tuple(table.get("input_shape", (1, 8, 8)))
        spec = InputSpec(shape=shape, num_classes=int(table.get("num_classes", 10)))
        return cls(parse_eval_time(str(table.get("eval_time", "fixed:1"))), spec, seed=int(table.get("seed", 0)),
                   max_seconds=float(table.get("max_seconds", math.inf)),
                   hang_tasks=frozenset(table.get("hang_tasks", ())))  # fmt: skip

    @property
    def device_name(self) -> str:
        """Nothing is computed on a device."""
        return "virtual"

    def __str__(self) -> str:
        return f"evaluation time {self.model}"

    def duration(self, task: Mapping[str, Any]) -> float:
        """The task's evaluation time in seconds, drawn once per task (``math.inf`` for a hanging task)."""
        task_id = int(task["task"])
        if task_id in self.hang_tasks:
            return math.inf
        seconds = min(self.model.sample(self._rng), self.max_seconds) * rung_share(task)
        self._drawn[task_id] = seconds
        return seconds

    def evaluate(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """The task's result at once: `synthetic_metrics` with its drawn time (drawn now if not yet).

        A hanging task (never sent back by the simulated transport) makes a
        worker that runs this evaluator sleep `HANG_SECONDS` first.
        """
        task_id = int(task["task"])
        seconds = self._drawn.pop(task_id, None)
        if seconds is None:
            seconds = self.duration(task)
            self._drawn.pop(task_id, None)
        if not math.isfinite(seconds):
            time.sleep(HANG_SECONDS)
            seconds = HANG_SECONDS
        result = synthetic_metrics(task, self.spec, seconds)
        if "train_epochs" in task:  # a rung: accuracy grows with the share of the budget trained
            trained, start = int(task["train_epochs"]), int(task.get("from_epochs", 0))
            share = trained / max(1, int(task.get("plan_epochs", trained)))
            result["accuracy"] = result["accuracy"] * (0.7 + 0.3 * share)
            result.update(epochs=trained, spent_epochs=trained - start, spent_seconds=seconds)
            if "resume_from" in task:
                result["inherited_from"] = int(task["resume_from"]["id"])
        return result
