"""A finished (or given up) evaluation as the library row the master writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from menndl.genome import InputSpec, count_flops, count_params
from menndl.master.candidate import Candidate

WORKER_FIELDS = ("accuracy", "loss", "params", "flops", "train_seconds", "epochs", "host", "device")
WORKER_METRICS = (  # result keys stored as they come (see menndl.protocol and the library schema)
    "samples_per_second", "peak_memory_bytes", "latency_seconds", "train_loss", "precision", "local_rank",
    "checkpoints", "latency", "batch_latency", "memory", "train_memory", "energy", "train_energy",
    "inference_precision", "inference_runtime", "r2", "mse", "miou", "pixel_accuracy", "spent_epochs",
    "spent_seconds", "inherited_from", "inherited_layers",
)  # fmt: skip


def evaluation_record(candidate: Candidate, submitted_at: float, finished_at: float, worker: int,
                      result: Mapping[str, Any], spec: InputSpec) -> dict[str, Any]:  # fmt: skip
    """The library row of ``candidate``'s evaluation on ``worker`` (-1: none) from its ``result`` message.

    A result without sizes (a failure) gets the genome's parameters and FLOPs, computed without torch.
    """
    genome = candidate.genome
    record = {
        "id": candidate.id,
        "genome": genome.to_json(),
        "hash": genome.hash,
        "parents": "[" + ",".join(map(str, candidate.parents)) + "]",  # JSON text of the id list
        "operator": candidate.operator,
        "status": result.get("status", "failed"),
        "error": result.get("error", ""),
        "worker_rank": worker,
        "seed": candidate.seed,
        "submitted_at": submitted_at,
        "finished_at": finished_at,
        "rung": candidate.rung,
    }
    for key in WORKER_FIELDS:
        if key in result:
            record[key] = result[key]
    record.update({key: result[key] for key in WORKER_METRICS if key in result})
    if "inherited_from" not in record and candidate.continues >= 0:  # a promotion that failed before it loaded
        record["inherited_from"] = candidate.continues
    if "params" not in record:  # failures: size still known from the genome, without torch
        record["params"] = count_params(genome, spec)
        record["flops"] = count_flops(genome, spec)
    return record
