"""``menndl bench worker``: the worker's training throughput against a plain hand-written PyTorch loop.

Both train the same model (same genome, same seed, same optimizer, same batch
size) on the same resident, standardised digits tensors, on the CPU, in fp32.
The worker runs its real `Trainer.evaluate` (budget clock, NaN checks,
checkpoint logic, metrics) and reports its own samples per second; the plain
loop is what one would write by hand.  Runs alternate A/B, B/A, ... in one
process and the median ratio is reported: absolute figures on a shared
machine are noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

HELP = "worker training throughput against a plain PyTorch loop on the same model and data (CPU)"

GENOME: dict[str, Any] = {
    "features": [
        {"type": "conv", "filters": 32, "kernel": 3, "activation": "relu", "batch_norm": True},
        {"type": "conv", "filters": 32, "kernel": 3, "activation": "relu", "batch_norm": True},
        {"type": "pool", "kind": "max", "size": 2},
    ],
    "head": [{"type": "dense", "units": 64, "activation": "relu", "dropout": 0.0}],
    "train": {"learning_rate": 0.001, "batch_size": 64, "optimizer": "adam", "weight_decay": 0.0},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``menndl bench worker``."""
    parser.add_argument("--rounds", type=int, default=9, help="alternating worker/plain rounds (default 9)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def plain_samples_per_second(data: Any, genome: dict[str, Any], spec: Any, epochs: int, seed: int) -> float:
    """A hand-written training loop over the same resident tensors: samples per second."""
    import torch
    from torch import nn

    from menndl.genome import Genome
    from menndl.genome.decode import build_model

    hyper = genome["train"]
    torch.manual_seed(seed)
    model = build_model(Genome.from_dict(genome), spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=hyper["learning_rate"], weight_decay=hyper["weight_decay"])
    loss_fn = nn.CrossEntropyLoss()
    x, y = data.standardise(data.data.x_train), data.data.y_train  # the resident split, standardised once
    n, batch = len(x), hyper["batch_size"]
    samples = 0
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n)
        for first in range(0, n - 1, batch):
            index = order[first : first + batch]
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            samples += len(index)
    return samples / (time.perf_counter() - start)


def measure(rounds: int, epochs: int, threads: int) -> dict[str, Any]:
    """Alternate worker and plain runs; return the per-round figures and the median ratio."""
    import torch

    from menndl.data import load_dataset
    from menndl.job import TrainingConfig
    from menndl.worker.trainer import Trainer

    torch.set_num_threads(threads)
    training = TrainingConfig(epochs=epochs, max_seconds=1e6, precision="fp32", device="cpu")
    trainer = Trainer(load_dataset("digits"), training, torch.device("cpu"), overrun_limit=1e7)
    task = {"genome": GENOME, "seed": 0}

    def worker() -> float:
        result = trainer.evaluate(task)
        if result["status"] != "ok":
            raise RuntimeError(f"the benchmark candidate failed: {result.get('error')}")
        return float(result["samples_per_second"])

    def plain() -> float:
        return plain_samples_per_second(trainer, GENOME, trainer.spec, epochs, seed=0)

    worker(), plain()  # warm-up: allocator, kernels
    worker_rates, plain_rates = [], []
    for round_ in range(rounds):
        if round_ % 2 == 0:
            worker_rates.append(worker())
            plain_rates.append(plain())
        else:
            plain_rates.append(plain())
            worker_rates.append(worker())
    ratios = [w / p for w, p in zip(worker_rates, plain_rates)]
    return {
        "ratio": statistics.median(ratios),
        "worker_samples_per_second": statistics.median(worker_rates),
        "plain_samples_per_second": statistics.median(plain_rates),
        "ratios": ratios,
        "rounds": rounds,
        "epochs": epochs,
        "threads": threads,
        "device": "cpu",
        "precision": "fp32",
        "train_samples": int(trainer.data.n_train),
    }


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print the figures (one JSON object with ``--json``)."""
    figures = measure(max(1, args.rounds), max(1, args.epochs), max(1, args.threads))
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"worker vs plain PyTorch loop, same model and data, CPU fp32, {figures['threads']} thread(s), "
          f"{figures['rounds']} alternating rounds of {figures['epochs']} epochs")  # fmt: skip
    print(f"  worker  {figures['worker_samples_per_second']:>10.0f} samples/s (median)")
    print(f"  plain   {figures['plain_samples_per_second']:>10.0f} samples/s (median)")
    print(f"  ratio   {figures['ratio']:>10.3f}  (per round: {', '.join(f'{r:.3f}' for r in figures['ratios'])})")
    return 0
