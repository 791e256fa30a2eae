"""A worker process under a host memory limit (RLIMIT_AS): a candidate too big for it, then a small one.

    python tests/faults/oom_worker.py LIMIT_BYTES

Prints one JSON line per result (status, first line of the error). Run by test_resources.py.
"""

from __future__ import annotations

import json
import random
import resource
import sys

import torch

from menndl.data import load_dataset
from menndl.genome import InputSpec, SearchSpace, random_genome
from menndl.job import TrainingConfig
from menndl.worker.trainer import Trainer


def main() -> None:
    """Train a candidate with a 16 GB dense layer under the limit, then a normal one."""
    torch.set_num_threads(1)
    data = load_dataset("digits")
    trainer = Trainer(data, TrainingConfig(epochs=1, max_seconds=10), torch.device("cpu"))
    spec = InputSpec(shape=(1, 8, 8), num_classes=10)
    small = random_genome(random.Random(5), SearchSpace(max_features=2), spec).to_dict()
    huge = json.loads(json.dumps(small))
    huge["features"] = [{"type": "conv", "filters": 64, "kernel": 3, "stride": 1, "dilation": 1,
                         "activation": "relu", "batch_norm": False, "dropout": 0.0}]  # fmt: skip
    huge["reduce"] = None
    huge["head"] = [{"type": "dense", "units": 1_000_000, "activation": "relu", "dropout": 0.0}]
    used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    limit = int(sys.argv[1]) + used * 4  # room for what is loaded, not for 16 GB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for task, genome in enumerate((huge, small)):
        result = trainer.evaluate({"task": task, "genome": genome, "seed": 0})
        print(json.dumps({"status": result["status"], "error": result.get("error", "").splitlines()[:1]}), flush=True)


if __name__ == "__main__":
    main()
