"""The messages between master and workers: small dicts of plain data.

master -> worker: ``setup`` once, then ``task`` after task, then ``None`` (stop).
worker -> master: ``ready`` once its data is loaded, then ``result`` per task
(status ``ok`` or ``failed``); or one ``fatal`` when it cannot serve at all.
The transport may add ``lost``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from menndl.job import Job


def setup_message(job: Job, fingerprint: str) -> dict[str, Any]:
    """What every worker needs once: where the data is and how to train."""
    data = dataclasses.asdict(job.data)
    data["base_dir"] = str(job.base_dir)
    return {
        "type": "setup",
        "data": data,
        "training": dataclasses.asdict(job.training),
        "fingerprint": fingerprint,
    }


def task_message(task_id: int, genome: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Have one candidate trained: its genome (as a dict) and its random seed."""
    return {"type": "task", "task": task_id, "genome": dict(genome), "seed": seed}
