"""The worker's evaluator: what turns a task into a result, chosen by the setup message.

A worker builds one `Evaluator` from the master's setup message and hands it
task after task.  ``setup["evaluator"]`` names the implementation (`EVALUATORS`):
``train`` (the default: `menndl.worker.trainer.Trainer`, real training with
torch), ``sleep`` (`menndl.worker.sleep.SleepEvaluator`: sleeps, then reports
made-up metrics; fault injection for tests) or ``simulated``
(`menndl.worker.simulated.SimulatedEvaluator`: made-up metrics and a drawn
evaluation time, at once).  Implementations are imported only when chosen, so
this module, like the sleep and simulated evaluators, never imports torch.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

# setup["evaluator"] -> "module:class" of its implementation
EVALUATORS: dict[str, str] = {
    "train": "menndl.worker.trainer:Trainer",
    "sleep": "menndl.worker.sleep:SleepEvaluator",
    "simulated": "menndl.worker.simulated:SimulatedEvaluator",
}
DEFAULT_EVALUATOR = "train"


class Evaluator(ABC):
    """Evaluates one candidate per `evaluate` call; the worker loop reports what it returns.

    Attributes:
        precision: the numeric precision recorded with each result (``fp32``,
            ``bf16``, ...; ``none`` where nothing is computed).
    """

    precision: str

    @classmethod
    @abstractmethod
    def from_setup(cls, setup: Mapping[str, Any], *, rank: int, local_rank: int, threads: int) -> Evaluator:
        """Build the evaluator a worker uses from the master's setup message.

        Args:
            setup: the setup message (`menndl.protocol.setup_message` plus the
                search's ``worker_setup`` keys).
            rank: the worker's id, as the master addresses it.
            local_rank: the worker's index among the workers of its node (device binding).
            threads: the CPU threads this worker may use.

        Raises:
            Exception: the setup cannot be honoured (the data does not load, a
                device asked for is absent); the worker reports it as ``fatal``.
        """

    @property
    @abstractmethod
    def device_name(self) -> str:
        """The device as recorded in the library, e.g. ``cpu`` or ``cuda:0 (NVIDIA H200)``."""

    @abstractmethod
    def evaluate(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Evaluate the task's candidate; a candidate's failure is a result, not an exception.

        Returns:
            The result's keys besides ``type`` and ``task`` (`menndl.protocol`):
            ``status`` and the metrics known.
        """

    def device_ok(self) -> bool:
        """Whether the device still works after a failed candidate (False ends the worker)."""
        return True

    def close(self) -> None:
        """Release what the evaluator holds (data, files, a node's shared copy); the worker calls it last."""


def evaluator_class(name: str) -> type[Evaluator]:
    """The implementation ``setup["evaluator"]`` names (imported now).

    Raises:
        ValueError: no evaluator has that name.
    """
    if name not in EVALUATORS:
        raise ValueError(f"unknown evaluator {name!r} in the setup message; expected one of {', '.join(EVALUATORS)}")
    module, _, attribute = EVALUATORS[name].partition(":")
    found: type[Evaluator] = getattr(importlib.import_module(module), attribute)
    return found


def build_evaluator(setup: Mapping[str, Any], *, rank: int, local_rank: int, threads: int) -> Evaluator:
    """The evaluator the setup message asks for (``train`` when it names none), built from it."""
    cls = evaluator_class(str(setup.get("evaluator", DEFAULT_EVALUATOR)))
    return cls.from_setup(setup, rank=rank, local_rank=local_rank, threads=threads)
