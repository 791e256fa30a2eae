"""Is measured latency repeatable, and what did a latency search find?  (issue 23, acceptance 1 and 2)

    python benchmarks/latency_check.py LIB [--workers 5] [--threads 1]

LIB is a library of a search with ``latency`` among its objectives (e.g. ``menndl run
jobs/mnist1d_latency.toml --library LIB``).  Each model is measured by ``--workers`` fresh worker
processes in turn (one after another, so none shares the CPU with another), each building its own
`menndl.worker.hardware_cost.HardwareCost` with the job's ``[measure]`` settings, exactly as a
search's workers do.  Measured: the paper's CNN for MNIST-1D (Greydanus 2020, 5,210 parameters), and
the search's fastest and slowest successful models.  Printed: per model the median latency at batch 1
and at the batch size and their coefficients of variation over the workers; the span of the
(accuracy, latency) front; and the fastest front member with validation accuracy >= ``--accuracy``
against the paper's CNN, measured the same way.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from typing import Any

import numpy as np

PAPER_CNN_PARAMS = 5210


def paper_cnn(length: int = 40, classes: int = 10) -> Any:
    """The MNIST-1D paper's CNN: three convolutions of 25 channels (stride 2) and a linear layer."""
    import torch
    from torch import nn

    class ConvBase(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv1d(1, 25, 5, stride=2, padding=1)
            self.conv2 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
            self.conv3 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
            out = length
            for kernel in (5, 3, 3):
                out = (out + 2 - kernel) // 2 + 1
            self.linear = nn.Linear(25 * out, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv3(self.conv2(self.conv1(x).relu()).relu()).relu()
            return self.linear(h.flatten(1))

    return ConvBase()


def _measure(job: dict[str, Any], shape: list[int], classes: int, genome: str | None, threads: int) -> dict[str, float]:
    """One worker process: build the model (the paper's CNN when ``genome`` is None) and measure it."""
    import torch

    from menndl.genome import Genome, InputSpec
    from menndl.genome.decode import build_model
    from menndl.worker.hardware_cost import CostSettings, HardwareCost

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = InputSpec(tuple(shape), classes)
    model = paper_cnn(shape[-1], classes) if genome is None else build_model(Genome.from_json(genome), spec)
    settings = CostSettings.from_table({**job, "kinds": ["latency"]}, "fp32")  # (a CPU trains in fp32)
    cost = HardwareCost(settings, torch.device("cpu"), tuple(shape))
    result = cost.measure(model, 64)
    return {"latency": result["latency"], "batch_latency": result["batch_latency"],
            "params": float(sum(p.numel() for p in model.parameters()))}  # fmt: skip


def measure_in_turn(job: dict[str, Any], shape: list[int], classes: int, genome: str | None, workers: int,
                    threads: int) -> list[dict[str, float]]:  # fmt: skip
    """``workers`` fresh processes measure the model one after another."""
    context = multiprocessing.get_context("spawn")
    results = []
    for _ in range(workers):
        with context.Pool(1) as pool:
            results.append(pool.apply(_measure, (job, shape, classes, genome, threads)))
    return results


def _cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.mean(values)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the two acceptance figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("library")
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (a search's setting)")
    parser.add_argument("--accuracy", type=float, default=0.95)
    args = parser.parse_args(argv)

    import tomllib

    from menndl.library import Library
    from menndl.library.query import pareto_front

    with Library.open(args.library) as lib:
        job = tomllib.loads(str(lib.attrs["job"])).get("measure", {})
        shape, classes = json.loads(str(lib.attrs["input_shape"])), int(lib.attrs["num_classes"])
        ok = np.flatnonzero((lib.column("status") == "ok") & np.isfinite(lib.column("latency")))
        latency, accuracy = lib.column("latency"), lib.column("accuracy")
        fastest, slowest = ok[np.argmin(latency[ok])], ok[np.argmax(latency[ok])]
        front = pareto_front(lib, ["accuracy", "latency"])
        eligible = [int(r) for r in front if accuracy[r] >= args.accuracy]
        chosen = min(eligible, key=lambda r: latency[r]) if eligible else None
        rows = {int(r): lib.rows([int(r)])[0] for r in {fastest, slowest, *([chosen] if chosen is not None else [])}}
        span = float(latency[front].max() / latency[front].min())
        low, high = latency[front].min() * 1e6, latency[front].max() * 1e6
        print(f"{lib.path.name}: {len(ok)} measured ok rows; front over (accuracy, latency): {len(front)} members, "
              f"latency {low:.1f}-{high:.1f} us, span {span:.1f}x")  # fmt: skip

    models: list[tuple[str, str | None]] = [("paper CNN", None)]
    models += [(f"fastest (id {rows[fastest]['id']})", rows[fastest]["genome"])]
    models += [(f"slowest (id {rows[slowest]['id']})", rows[slowest]["genome"])]
    if chosen is not None and chosen != fastest:
        models += [(f"fastest with accuracy >= {args.accuracy:g} (id {rows[chosen]['id']})", rows[chosen]["genome"])]
    print(
        f"each measured by {args.workers} fresh worker processes in turn, {args.threads} thread(s), "
        f"measure settings {job or 'defaults'}"
    )
    print(f"{'model':<44} {'params':>8} {'latency us':>11} {'CV':>6} {'batch us/sample':>16} {'CV':>6}")
    medians: dict[str, float] = {}
    for name, genome in models:
        runs = measure_in_turn(job, shape, classes, genome, args.workers, args.threads)
        lat = [r["latency"] for r in runs]
        batch = [r["batch_latency"] for r in runs]
        medians[name] = statistics.median(lat)
        print(f"{name:<44} {int(runs[0]['params']):>8,} {medians[name] * 1e6:>11.2f} {_cv(lat):>6.1%} "
              f"{statistics.median(batch) * 1e6:>16.3f} {_cv(batch):>6.1%}")  # fmt: skip
    if chosen is None:
        print(f"no front member reached validation accuracy {args.accuracy:g}")
        return 1
    name = models[-1][0] if chosen != fastest else models[1][0]
    print(f"fastest front member with accuracy >= {args.accuracy:g}: validation accuracy {accuracy[chosen]:.4f}, "
          f"{medians[name] / medians['paper CNN']:.2f}x the paper CNN's latency at batch 1")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
