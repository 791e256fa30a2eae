"""The master's cost per finished evaluation (ask + tell), by population size.

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
import time

from menndl.genome import InputSpec, SearchSpace, count_params
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
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'population':>10}  {'ms/result':>10}  {'ratio':>6}  {'results/s':>10}")
    for row in rows:
        print(
            f"{row['population']:>10}  {row['ms_per_result']:>10.3f}  "
            f"{row['ratio_to_smallest']:>6.2f}  {row['results_per_second']:>10.0f}"
        )


if __name__ == "__main__":
    main()
