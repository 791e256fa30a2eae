"""GPU check: bf16 (or fp16) autocast against fp32, samples/s and peak memory, for three searched models.

Three architectures are drawn from the default search space for 3x32x32
inputs (the smallest, the median and the largest of 24 random genomes by
parameter count) and trained by the worker's own `Trainer` on the same
resident synthetic data (CIFAR-sized; the values do not matter for speed) in
each precision, side by side in one run.  Each run trains twice and reports
the second (the first pays for cuDNN and allocator warm-up).

    python benchmarks/gpu_check.py [--epochs 2] [--samples 16384] [--json]
    python benchmarks/gpu_check.py --cpu      # smoke test of the same code on the CPU

Without a CUDA device (and without ``--cpu``) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

import numpy as np
import torch

from menndl.data import Dataset
from menndl.genome import InputSpec, SearchSpace, count_flops, count_params, random_genome
from menndl.job import TrainingConfig
from menndl.worker.trainer import Trainer

SHAPE = (3, 32, 32)
CLASSES = 10


def searched_models(count: int = 24, seed: int = 0) -> list[dict[str, Any]]:
    """The smallest, median and largest (by parameters) of ``count`` random genomes of the default space."""
    spec = InputSpec(shape=SHAPE, num_classes=CLASSES)
    rng = random.Random(seed)
    genomes = [random_genome(rng, SearchSpace(), spec) for _ in range(count)]
    genomes.sort(key=lambda genome: count_params(genome, spec))
    chosen = [genomes[0], genomes[len(genomes) // 2], genomes[-1]]
    return [{"genome": g.to_dict(), "params": count_params(g, spec), "flops": count_flops(g, spec)} for g in chosen]


def synthetic_data(samples: int, seed: int = 0) -> Dataset:
    """Random CIFAR-sized images and labels: for throughput only."""
    rng = np.random.default_rng(seed)
    validation = max(256, samples // 8)

    def images(n: int) -> np.ndarray:
        return rng.standard_normal((n, *SHAPE), dtype=np.float32)

    return Dataset.from_arrays(
        "synthetic",
        images(samples),
        rng.integers(0, CLASSES, samples),
        images(validation),
        rng.integers(0, CLASSES, validation),
        num_classes=CLASSES,
    )


def run(device: torch.device, precision: str, data: Dataset, models: list[dict[str, Any]], epochs: int) -> list[dict]:
    """Train every model in ``precision``; the second of two runs each."""
    training = TrainingConfig(epochs=epochs, max_seconds=600, precision=precision, device=device.type)
    trainer = Trainer(data, training, device)
    figures = []
    for number, model in enumerate(models):
        task = {"genome": model["genome"], "seed": number}
        trainer.evaluate(task)
        result = trainer.evaluate(task)
        figures.append(
            {
                "status": result["status"],
                "samples_per_second": result.get("samples_per_second", float("nan")),
                "peak_memory_bytes": result.get("peak_memory_bytes", -1),
                "error": result.get("error", "").splitlines()[0] if result.get("error") else "",
            }
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (a smoke test of this script)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.cpu:
        device, samples = torch.device("cpu"), min(args.samples, 256)
    elif torch.cuda.is_available():
        device, samples = torch.device("cuda", 0), args.samples
    else:
        print("gpu_check: no CUDA device visible; nothing measured (use --cpu for a smoke test)")
        return 0
    amp = "bf16" if device.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    data, models = synthetic_data(samples), searched_models()
    fp32 = run(device, "fp32", data, models, args.epochs)
    mixed = run(device, amp, data, models, args.epochs)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []
    for model, full, half in zip(models, fp32, mixed):
        rows.append(
            {
                "params": model["params"],
                "flops": model["flops"],
                "fp32": full,
                amp: half,
                "speedup": half["samples_per_second"] / full["samples_per_second"],
                "memory_ratio": half["peak_memory_bytes"] / max(1, full["peak_memory_bytes"]),
            }
        )
    if args.json:
        print(json.dumps({"device": name, "amp": amp, "epochs": args.epochs, "samples": samples, "models": rows}))
        return 0
    print(f"{name}: {amp} autocast vs fp32, {samples} samples of {SHAPE}, {args.epochs} epochs, second run of two")
    print(f"{'params':>10} {'MFLOPs':>8} {'fp32 s/s':>10} {amp + ' s/s':>10} {'speedup':>8} "
          f"{'fp32 MiB':>9} {amp + ' MiB':>9} {'mem':>6}")  # fmt: skip
    for row in rows:
        full, half = row["fp32"], row[amp]
        print(
            f"{row['params']:>10,} {row['flops'] / 1e6:>8.1f} {full['samples_per_second']:>10.0f} "
            f"{half['samples_per_second']:>10.0f} {row['speedup']:>8.2f} {full['peak_memory_bytes'] / 2**20:>9.0f} "
            f"{half['peak_memory_bytes'] / 2**20:>9.0f} {row['memory_ratio']:>6.2f}"
        )
        for run_ in (full, half):
            if run_["status"] != "ok":
                print(f"    {run_['status']}: {run_['error']}")
    if device.type == "cpu":
        print("(CPU smoke test: peak memory is the process RSS, not comparable between precisions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
