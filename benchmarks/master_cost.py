"""The master's cost per finished evaluation: ask + tell by population size, and the library write.

Runs the real `Evolution` (DEAP NSGA-II, genome operators) on synthetic
results, no workers: what the master spends between receiving a result and
sending the freed worker its next child.  Sizes are measured side by side in
one run and reported as ratios to the smallest population, because absolute
times on a shared machine are noise.

    python benchmarks/master_cost.py [--results 2000] [--populations 16 64 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from menndl.genome import InputSpec, SearchSpace, count_params
from menndl.library import LibraryWriter
from menndl.master.evolution import Evolution

SPEC = InputSpec(shape=(1, 28, 28), num_classes=10)


def seconds_per_result(population: int, results: int, seed: int) -> float:
    """Mean seconds of one ask + one tell once the population is full."""
    evolution = Evolution(
        space=SearchSpace(),
        spec=SPEC,
        objectives=("accuracy", "params", "train_seconds"),
        population_size=population,
        crossover_probability=0.3,
        seed=seed,
    )
    rng = random.Random(seed)

    def step() -> None:
        candidate = evolution.ask()
        evolution.tell(
            candidate,
            {
                "status": "ok",
                "accuracy": rng.random(),
                "params": count_params(candidate.genome, SPEC),
                "train_seconds": rng.uniform(1, 100),
            },
        )

    for _ in range(population):  # fill the population first: steady state is what matters
        step()
    start = time.perf_counter()
    for _ in range(results):
        step()
    return (time.perf_counter() - start) / results


def library_seconds_per_record(records: int, folder: Path) -> float:
    """Mean seconds to append (and flush) one evaluation record to a real HDF5 library."""
    record = {
        "id": 0, "genome": '{"features":[]}' * 20, "hash": "0" * 16, "parents": "[1, 2]", "operator": "crossover",
        "status": "ok", "accuracy": 0.9, "params": 1000, "flops": 10000, "train_seconds": 1.0,
        "worker_rank": 1, "host": "node001", "device": "cuda:0", "seed": 1, "submitted_at": 0.0, "finished_at": 1.0,
    }  # fmt: skip
    with LibraryWriter(folder / "bench.h5", job_text="") as writer:
        start = time.perf_counter()
        for i in range(records):
            writer.append({**record, "id": i})
        return (time.perf_counter() - start) / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=2000)
    parser.add_argument("--populations", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    costs = {p: seconds_per_result(p, args.results, seed=0) for p in args.populations}
    base = costs[args.populations[0]]
    rows = [
        {"population": p, "ms_per_result": 1e3 * c, "ratio_to_smallest": c / base, "results_per_second": 1 / c}
        for p, c in costs.items()
    ]
    with tempfile.TemporaryDirectory() as folder:
        library = library_seconds_per_record(args.results, Path(folder))
    if args.json:
        print(json.dumps({"evolution": rows, "library_ms_per_record": 1e3 * library}))
        return
    print(f"{'population':>10}  {'ms/result':>10}  {'ratio':>6}  {'results/s':>10}")
    for row in rows:
        print(
            f"{row['population']:>10}  {row['ms_per_result']:>10.3f}  "
            f"{row['ratio_to_smallest']:>6.2f}  {row['results_per_second']:>10.0f}"
        )
    print(f"library append + flush: {1e3 * library:.3f} ms/record ({1 / library:.0f} records/s)")


if __name__ == "__main__":
    main()
