"""How many valid children per second the genome operators produce on one core.

For 1-D, 2-D and 3-D inputs, a population of random genomes breeds children
the way the master does (crossover with probability 0.3, else one mutation
drawn by the space's weights) and each child's content hash is computed (the
master deduplicates by it).  Only the breeding is timed; afterwards every
child is checked with ``menndl.genome.check`` and an invalid one fails the
run.  Per-operator rates are measured side by side in the same run.  The
target is >= 5,000 valid children per second on one core.

    python benchmarks/children_per_second.py [--seconds 2] [--population 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from typing import Any

from menndl.genome import MUTATIONS, Genome, InputSpec, SearchSpace, check, crossover, mutate, random_genome

TARGET = 5000.0
INPUTS = {
    "1-D (1, 40)": InputSpec((1, 40), 10),
    "2-D (1, 28, 28)": InputSpec((1, 28, 28), 10),
    "3-D (1, 16, 16, 16)": InputSpec((1, 16, 16, 16), 10),
}


def breed(spec: InputSpec, space: SearchSpace, seconds: float, population: int, seed: int) -> dict[str, Any]:
    """Children per second for ``seconds`` of steady-state breeding; every child is checked afterwards."""
    rng = random.Random(seed)
    pool = [random_genome(rng, space, spec) for _ in range(population)]
    children: list[Genome] = []
    operators: Counter[str] = Counter()
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for _ in range(100):
            if rng.random() < 0.3:
                child, name = crossover(rng.choice(pool), rng.choice(pool), rng, space, spec), "crossover"
            else:
                child, name = mutate(rng.choice(pool), rng, space, spec)
            child.hash  # noqa: B018 - the master hashes every child
            pool[rng.randrange(population)] = child
            children.append(child)
            operators[name] += 1
    elapsed = time.perf_counter() - start
    for child in children:
        check(child, space, spec)
    return {"children_per_second": len(children) / elapsed, "children": len(children), "operators": dict(operators)}


def operator_rates(spec: InputSpec, space: SearchSpace, seconds: float, seed: int) -> dict[str, float]:
    """Calls per second of each operator alone on the same random parents, side by side."""
    rng = random.Random(seed)
    parents = [random_genome(rng, space, spec) for _ in range(256)]
    rates = {}
    ops: dict[str, Any] = {name: (lambda g, op=op: op(g, rng, space, spec)) for name, op in MUTATIONS.items()}
    ops["crossover"] = lambda g: crossover(g, rng.choice(parents), rng, space, spec)
    ops["random_genome"] = lambda g: random_genome(rng, space, spec)
    for name, op in ops.items():
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for parent in parents:
                op(parent).hash  # noqa: B018
            calls += len(parents)
        rates[name] = calls / (time.perf_counter() - start)
    return rates


def main() -> None:
    """Print children/s per input rank, the ratio to the target, and per-operator rates."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="breeding time per input rank")
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    space = SearchSpace()
    report: dict[str, Any] = {"target_children_per_second": TARGET, "inputs": {}}
    for label, spec in INPUTS.items():
        result = breed(spec, space, args.seconds, args.population, args.seed)
        result["ratio_to_target"] = result["children_per_second"] / TARGET
        result["operator_calls_per_second"] = operator_rates(spec, space, args.seconds / 8, args.seed)
        report["inputs"][label] = result
    if args.json:
        print(json.dumps(report))
        return
    print(f"valid children per second on one core (target {TARGET:,.0f}/s; default search space)")
    for label, result in report["inputs"].items():
        print(
            f"  {label:<20} {result['children_per_second']:>8,.0f}/s  "
            f"({result['ratio_to_target']:.2f}x target, {result['children']:,} children, all valid)"
        )
    print("calls per second of each operator alone (same parents, side by side):")
    names = list(next(iter(report["inputs"].values()))["operator_calls_per_second"])
    print("  " + f"{'':<20}" + "".join(f"{n:>15}" for n in names))
    for label, result in report["inputs"].items():
        rates = result["operator_calls_per_second"]
        print("  " + f"{label:<20}" + "".join(f"{rates[n]:>15,.0f}" for n in names))


if __name__ == "__main__":
    main()
