"""Layout of the HDF5 architecture library (format ``menndl-library``).

This module is the single source of truth for the field list; the writer, the
reader and ``docs/library-format.md`` all follow it.  It imports neither h5py
nor numpy so that it stays cheap to import.

A library file holds, per finished evaluation, one row across the 1-D datasets
``/evaluations/<field>``.  Every field has a *kind*:

* ``"int"``   -> 64-bit signed integer, missing value ``-1``
* ``"float"`` -> 64-bit IEEE float, missing value ``nan``
* ``"str"``   -> variable-length UTF-8 string, missing value ``""``
"""

from __future__ import annotations

import math
from typing import Any

FORMAT_NAME = "menndl-library"
"""Value of the root attribute ``format``."""

FORMAT_VERSION = 1
"""Value of the root attribute ``format_version`` written by this menndl.

Readers refuse files whose version is newer than this.  The version is bumped
whenever a field is removed, renamed, changes kind or changes meaning; adding
a new dataset or attribute that old readers may safely ignore does not bump it.
"""

EVALUATIONS_GROUP = "evaluations"
"""Name of the group holding one dataset per field."""

PARETO_DATASET = "pareto"
"""Name of the root dataset holding the ids of the current Pareto front."""

COUNT_ATTR = "count"
"""Attribute of ``/evaluations``: number of complete rows (all columns written)."""

RESERVED_ROOT_ATTRS = ("format", "format_version", "job", "created_at")
"""Root attributes written by the library itself; callers may not override them."""

EVALUATION_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "int"),
    ("genome", "str"),
    ("hash", "str"),
    ("parents", "str"),
    ("operator", "str"),
    ("status", "str"),
    ("error", "str"),
    ("accuracy", "float"),
    ("loss", "float"),
    ("params", "int"),
    ("flops", "int"),
    ("train_seconds", "float"),
    ("epochs", "int"),
    ("worker_rank", "int"),
    ("host", "str"),
    ("device", "str"),
    ("seed", "int"),
    ("submitted_at", "float"),
    ("finished_at", "float"),
    ("samples_per_second", "float"),
    ("peak_memory_bytes", "int"),
    ("latency_seconds", "float"),
    ("train_loss", "float"),
    ("precision", "str"),
    ("local_rank", "int"),
    ("checkpoints", "str"),
    ("latency", "float"),
    ("batch_latency", "float"),
    ("memory", "int"),
    ("train_memory", "int"),
    ("energy", "float"),
    ("train_energy", "float"),
    ("inference_precision", "str"),
    ("inference_runtime", "str"),
    ("r2", "float"),
    ("mse", "float"),
    ("miou", "float"),
    ("pixel_accuracy", "float"),
    ("rung", "int"),
    ("inherited_from", "int"),
    ("inherited_layers", "int"),
    ("spent_epochs", "int"),
    ("spent_seconds", "float"),
)
"""``(name, kind)`` of every per-evaluation field, in on-disk creation order."""

LATER_FIELDS: frozenset[str] = frozenset(
    {
        "latency",
        "batch_latency",
        "memory",
        "train_memory",
        "energy",
        "train_energy",
        "inference_precision",
        "inference_runtime",
        "r2",
        "mse",
        "miou",
        "pixel_accuracy",
        "rung",
        "inherited_from",
        "inherited_layers",
        "spent_epochs",
        "spent_seconds",
    }
)
"""Fields added after the first layout: a library written before them lacks their datasets, which read as
missing values and are created (filled with missing values) when a search resumes it."""

FIELD_NAMES: tuple[str, ...] = tuple(name for name, _ in EVALUATION_FIELDS)
"""Names of all fields, in the order of :data:`EVALUATION_FIELDS`."""

FIELD_KINDS: dict[str, str] = dict(EVALUATION_FIELDS)
"""Mapping field name -> kind."""

JSON_FIELDS: frozenset[str] = frozenset({"genome", "parents", "checkpoints"})
"""String fields whose content is JSON text."""

FIELD_DESCRIPTIONS: dict[str, str] = {
    "id": "evaluation id, unique within the library",
    "genome": "the candidate's genome as JSON text",
    "hash": "canonical hash of the genome (identical architectures share it)",
    "parents": "JSON list of the ids of the parent evaluations ([] for random ones)",
    "operator": "operator that produced the genome (e.g. random, mutate, crossover)",
    "status": "outcome: ok, failed, nan, oom, timeout, stopped-early, over-limit, lost, or another status word",
    "error": "traceback or error text when the evaluation did not succeed",
    "accuracy": "validation accuracy (fraction in [0, 1]; classification)",
    "loss": "validation loss (the training loss: cross entropy; MSE or Huber of standardised targets; per-pixel "
    "cross entropy, plus Dice)",
    "params": "number of trainable parameters",
    "flops": "forward-pass floating point operations for one sample",
    "train_seconds": "wall-clock training time in seconds",
    "epochs": "number of training epochs completed",
    "worker_rank": "rank of the worker process that ran the evaluation",
    "host": "host name of the worker",
    "device": "device the candidate was trained on (e.g. cuda:0, cpu)",
    "seed": "random seed used for training",
    "submitted_at": "time the evaluation was handed to a worker (unix seconds)",
    "finished_at": "time the result reached the master (unix seconds)",
    "samples_per_second": "training throughput: samples trained per second of training steps",
    "peak_memory_bytes": "peak device memory (torch.cuda.max_memory_allocated), or the worker's RSS on a CPU",
    "latency_seconds": "inference seconds per sample, measured over the validation split",
    "train_loss": "mean training loss over the last epoch",
    "precision": "numerics the candidate trained in: bf16, fp16 or fp32",
    "local_rank": "the worker's node-local index, which chose its GPU",
    "checkpoints": "JSON list of [budget fraction, validation score] at early-stopping checkpoints (the score: "
    "accuracy, r2 for regression, miou for segmentation)",
    "latency": "inference seconds per sample at batch 1 (median of timed runs after a warm-up, worker's device)",
    "batch_latency": "inference seconds per sample at the job's measure.batch_size",
    "memory": "peak device memory of inference at measure.batch_size, bytes",
    "train_memory": "peak device memory of one training step at the genome's batch size, bytes",
    "energy": "joules per inference sample at measure.batch_size (NVML or RAPL)",
    "train_energy": "joules per training sample over the candidate's training (NVML or RAPL)",
    "inference_precision": "numerics of the latency, memory and energy measurements: fp32, bf16 or fp16",
    "inference_runtime": "what ran inference for latency and energy: torch or onnxruntime",
    "r2": "validation coefficient of determination R², averaged over the targets (regression)",
    "mse": "validation mean squared error over samples and targets, in the targets' units (regression)",
    "miou": "validation mean intersection over union of the classes present (segmentation)",
    "pixel_accuracy": "validation fraction of pixels labelled right, ignored pixels left out (segmentation)",
    "rung": "fidelity level the row was trained to (0 = the lowest; search.rungs - 1 = the whole budget)",
    "inherited_from": "id of the row whose trained weights this one started from (-1: trained from scratch)",
    "inherited_layers": "layers of the network that started from inherited_from's weights",
    "spent_epochs": "training epochs this row's evaluation ran (a search's compute is the column's sum)",
    "spent_seconds": "training seconds this row's evaluation ran (epochs and seconds count from inherited weights)",
}
"""One-line human description of every field (also stored as a dataset attribute)."""

KINDS: tuple[str, ...] = ("int", "float", "str")
"""All valid field kinds."""

MISSING: dict[str, Any] = {"int": -1, "float": math.nan, "str": ""}
"""Value stored for a field absent from a record, per kind.

Note that the float missing value is NaN: test it with :func:`math.isnan`,
never with ``==``.
"""

NUMPY_DTYPES: dict[str, str] = {"int": "<i8", "float": "<f8"}
"""numpy dtype strings of the numeric kinds (strings use ``h5py.string_dtype``)."""


def is_missing(kind: str, value: Any) -> bool:
    """Tell whether ``value`` is the missing value for ``kind``.

    Args:
        kind: One of ``"int"``, ``"float"``, ``"str"``.
        value: A value read from the library.

    Returns:
        True when ``value`` equals :data:`MISSING` ``[kind]`` (NaN-aware).

    Raises:
        ValueError: ``kind`` is not a valid kind.
    """
    if kind == "float":
        try:
            return math.isnan(value)
        except TypeError:
            return False
    if kind in ("int", "str"):
        return bool(value == MISSING[kind])
    raise ValueError(f"unknown field kind {kind!r}; expected one of {', '.join(KINDS)}")


STATE_GROUP = "state"
"""Group whose attributes hold what ``menndl run --resume`` needs beyond the rows.

``rng_state`` (JSON text of the master's random state), ``next_id`` (int64: the
id the next candidate gets) and ``pending`` (JSON list of the tasks that were
in flight: id, genome, hash, parents, operator, seed, submitted_at)."""

WEIGHTS_GROUP = "weights"
"""Group of ``weights/<id>/<parameter name>`` float32 arrays (the kept top candidates)."""
