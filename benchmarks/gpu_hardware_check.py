"""GPU check of the hardware objectives (issue 23, acceptance 5): latency in fp32 and bf16, memory, NVML energy.

For three architectures of the default search space for 3x32x32 inputs (the smallest, median and largest
of 24 random genomes, as in ``benchmarks/gpu_check.py``) and, with ``--library``, for the members of a
library's Pareto front, a worker's own `menndl.worker.hardware_cost.HardwareCost` measures on the GPU:
inference latency at batch 1 and at ``--batch`` in fp32 and in bf16 (``--repeats`` times: the coefficient
of variation is printed), peak inference and training-step memory, and energy per inference sample from
NVML's counter; then one short training by the worker's `Trainer` gives energy per training sample.

    python benchmarks/gpu_hardware_check.py [--library LIB] [--batch 64] [--repeats 5] [--json]
    python benchmarks/gpu_hardware_check.py --cpu      # smoke test of the same code on the CPU (no energy)

NVML comes from the ``nvidia-ml-py`` package (``import pynvml``); without it energy is reported as
unavailable and the rest still runs.  Without a CUDA device (and without ``--cpu``) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from gpu_check import CLASSES, SHAPE, searched_models, synthetic_data  # noqa: E402

from menndl.genome import Genome, InputSpec  # noqa: E402
from menndl.genome.decode import build_model  # noqa: E402
from menndl.job import TrainingConfig  # noqa: E402
from menndl.worker.hardware_cost import CostSettings, HardwareCost  # noqa: E402
from menndl.worker.trainer import Trainer  # noqa: E402


def library_models(path: str) -> tuple[InputSpec, list[dict[str, Any]]]:
    """The input spec and Pareto-front genomes of a library."""
    from menndl.library import Library
    from menndl.library.export import spec_of
    from menndl.library.query import pareto_front

    with Library.open(path) as lib:
        spec = spec_of(lib)
        rows = lib.rows(pareto_front(lib).tolist())
    return spec, [{"genome": Genome.from_json(r["genome"]).to_dict(), "params": r["params"], "id": r["id"]}
                  for r in rows]  # fmt: skip


def measure(model: torch.nn.Module, device: torch.device, shape: tuple[int, ...], precision: str, batch: int,
            repeats: int, energy: bool) -> dict[str, Any]:  # fmt: skip
    """``repeats`` measurements of ``model`` in ``precision``: medians and coefficients of variation."""
    kinds = ("latency", "memory", "energy") if energy else ("latency", "memory")
    cost = HardwareCost(CostSettings(kinds=kinds, batch_size=batch, precision=precision, energy_seconds=2.0),
                        device, shape, training_precision="bf16" if precision == "bf16" else "fp32")  # fmt: skip
    runs = [cost.measure(model, batch) for _ in range(repeats)]
    out: dict[str, Any] = {"precision": precision}
    for key in ("latency", "batch_latency", "memory", "train_memory", "energy"):
        values = [float(r[key]) for r in runs if key in r]
        if values:
            out[key] = statistics.median(values)
            out[f"{key}_cv"] = statistics.pstdev(values) / statistics.mean(values) if statistics.mean(values) else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure every model in fp32 and bf16; print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", help="also measure this library's Pareto front")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (smoke test)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_hardware_check: no CUDA device here; nothing measured (use --cpu for a smoke test)")
        return 0
    device = torch.device("cpu" if args.cpu else "cuda")
    energy = False
    if device.type == "cuda":
        try:
            from menndl.worker.hardware_cost import open_energy_counter

            open_energy_counter(device)
            energy = True
        except RuntimeError as exc:
            print(f"gpu_hardware_check: energy not measured ({exc})")
    spec = InputSpec(shape=SHAPE, num_classes=CLASSES)
    models = [("random", spec, m) for m in searched_models()]
    if args.library:
        front_spec, front = library_models(args.library)
        models += [("front", front_spec, m) for m in front]
    results = []
    data = synthetic_data(4096)
    for source, model_spec, entry in models:
        torch.manual_seed(0)
        model = build_model(Genome.from_dict(entry["genome"]), model_spec).to(device)
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and device.type == "cpu":
                continue
            row = {"source": source, "id": entry.get("id"), "params": entry["params"], "device": str(device),
                   **measure(model, device, model_spec.shape, precision, args.batch, args.repeats, energy)}  # fmt: skip
            results.append(row)
        if energy and source == "random":
            measure_table = {"kinds": ["energy"], "energy_seconds": 2.0}
            trainer = Trainer(data, TrainingConfig(epochs=1, max_seconds=30), device, measure=measure_table)
            trained = trainer.evaluate({"genome": entry["genome"], "seed": 0})
            results[-1]["train_energy"] = trained.get("train_energy")
            results[-1]["train_status"] = trained["status"]
    if args.json:
        print(json.dumps(results))
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; batch {args.batch}; {args.repeats} repeats (CV over repeats)")
    print(f"{'model':>10} {'params':>10} {'prec':>5} {'lat us':>9} {'cv':>5} {'batch us':>9} {'cv':>5} "
          f"{'mem MiB':>8} {'train MiB':>9} {'mJ/sample':>10} {'cv':>5} {'train mJ':>9}")  # fmt: skip
    nan = float("nan")
    for r in results:
        train_energy = r.get("train_energy") or nan
        print(f"{r['source'] + ('' if r['id'] is None else ' ' + str(r['id'])):>10} {r['params']:>10,} "
              f"{r['precision']:>5} {r['latency'] * 1e6:>9.1f} {r['latency_cv']:>5.1%} "
              f"{r['batch_latency'] * 1e6:>9.2f} {r['batch_latency_cv']:>5.1%} {r['memory'] / 2**20:>8.1f} "
              f"{r['train_memory'] / 2**20:>9.1f} {r.get('energy', nan) * 1e3:>10.3f} "
              f"{r.get('energy_cv', nan):>5.1%} {train_energy * 1e3:>9.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
