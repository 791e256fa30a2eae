"""The messages between master and workers: small dicts of plain data.

master -> worker: ``setup`` once, then ``task`` after task, then ``None`` (stop).
worker -> master: ``ready`` once its data is loaded, then ``result`` per task;
or one ``fatal`` when it cannot serve at all.  The transport may add ``lost``.

The setup's ``evaluator`` key names what the worker evaluates with
(`menndl.worker.evaluator.EVALUATORS`): ``train`` when absent, or ``sleep`` /
``simulated`` with their options in a table of the same name.

A result's ``status`` is one of `RESULT_STATUSES`: ``ok``; ``failed`` (an
exception while decoding or training, with its traceback in ``error``);
``nan`` (a non-finite training loss); ``oom`` (the device ran out of memory;
the worker freed it and goes on); ``timeout`` (the candidate overran its
budget far enough for the worker to abandon it); ``stopped-early`` (below the
master's early-stopping threshold at a checkpoint; ``accuracy`` is the
partial one); ``over-limit`` (a measured ``latency``, ``memory`` or ``energy``
above its ``search.max_*`` limit: not trained, and never a parent).  The
master adds ``lost`` for candidates whose worker vanished.

Result keys besides ``type``, ``task`` and ``status``: ``rank``, ``host``,
``device``, ``local_rank``; ``accuracy`` and ``loss`` (validation),
``train_loss``, ``params``, ``flops``, ``train_seconds``, ``epochs``,
``samples_per_second``, ``peak_memory_bytes``, ``latency_seconds`` (inference,
per sample), ``precision``, ``checkpoints``; when the setup's ``measure`` asks
for them, ``latency``, ``batch_latency``, ``memory``, ``train_memory``,
``energy``, ``train_energy``, ``inference_precision`` and ``inference_runtime``; ``spent_epochs`` and
``spent_seconds`` (what this task trained: ``epochs`` and ``train_seconds`` count from the start of the
network's training, a continued rung's included), ``inherited_from`` and ``inherited_layers`` (whose weights it
started from, and how many layers); ``error`` (with the traceback) unless ``ok``.  A candidate that did not
finish carries the partial figures known (epochs, seconds, checkpoints).

Optional task keys: ``return_weights`` (bool: send the trained weights back as
``weights``, ``{name: float32 numpy array}``), ``checkpoints`` (fractions of
the budget at which to validate and report ``[[fraction, accuracy], ...]``)
and ``stop_below`` (``[[fraction, accuracy threshold], ...]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from menndl.genome import Genome
from menndl.job import Job


def setup_message(job: Job, fingerprint: str) -> dict[str, Any]:
    """What every worker needs once: where the data is, how to train and how to augment.

    ``menndl run`` adds ``data_facts`` (`menndl.commands.common.DataReport.facts`): the data's identity,
    its per-channel statistics and the placement the master chose.
    """
    data = dataclasses.asdict(job.data)
    data["base_dir"] = str(job.base_dir)
    augment = {key: list(value) if isinstance(value, tuple) else value
               for key, value in dataclasses.asdict(job.augment).items()}  # fmt: skip
    measure = {
        **{
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(job.measure).items()
        },  # fmt: skip
        "kinds": job.measurements,
        "limits": job.search.limits,
    }
    return {
        "type": "setup",
        "data": data,
        "training": dataclasses.asdict(job.training),
        "augment": augment,
        "measure": measure,
        "fingerprint": fingerprint,
    }


RESULT_STATUSES: tuple[str, ...] = ("ok", "failed", "nan", "oom", "timeout", "stopped-early", "over-limit", "lost")


def task_message(
    task_id: int,
    genome: str | Mapping[str, Any],
    seed: int,
    *,
    return_weights: bool = False,
    checkpoints: Sequence[float] = (),
    stop_below: Sequence[Sequence[float]] = (),
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Have one candidate trained: its genome and its random seed.

    Args:
        genome: the genome's JSON text (``Genome.to_json``, computed once per
            genome and cheaper to send than its dict) or its dict.
        return_weights: ask for the trained weights in the result.
        checkpoints: fractions of the training budget at which the worker
            validates and reports the accuracy (early stopping).
        stop_below: ``[fraction, threshold]`` pairs: stop the candidate when its
            accuracy at that checkpoint is below the threshold (sent with the
            checkpoints, empty while nothing is known yet).
        training: how far to train and from which weights (`menndl.master.training_plan`): ``train_epochs``
            (the epochs trained in all at the task's end), ``plan_epochs`` (the whole budget: the learning-rate
            schedule spans it), ``from_epochs`` (where the rung before ended: the trainer counts from its
            checkpoint's epochs instead, the simulated evaluator from this), ``resume_from`` (``{"id", "path"}``:
            continue that row's checkpoint), ``inherit_from`` (``{"id", "path", "genome"}``: start from a
            parent's weights where shapes allow) and ``save_checkpoint`` (a path: write this task's checkpoint
            there when it succeeds).
    """
    text_or_dict = genome if isinstance(genome, str) else dict(genome)
    message: dict[str, Any] = {"type": "task", "task": task_id, "genome": text_or_dict, "seed": seed}
    if return_weights:
        message["return_weights"] = True
    if checkpoints:
        message["checkpoints"] = [float(f) for f in checkpoints]
        message["stop_below"] = [[float(f), float(t)] for f, t in stop_below]
    if training:
        message.update(training)
    return message


def task_genome(task: Mapping[str, Any]) -> Genome:
    """The genome of a task message (JSON text or a dict); ``ValueError`` if it is not a valid genome."""
    genome = task["genome"]
    return Genome.from_json(genome) if isinstance(genome, str) else Genome.from_dict(genome)
