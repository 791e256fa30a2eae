"""How long one re-ranking's non-dominated sort takes at population 10,000 with four objectives or more.

The rows are a real re-ranking's: a simulated NSGA-III search (`menndl simulate`'s evaluator, 27,648
workers, population 10,000) runs until its ``--rerank``-th re-ranking of at least 11,000 rows, whose
input is kept.  Then, side by side on those rows: `menndl.master.nondominated.front_ranks` and a
plain numpy reference (dominance counted block by block, fronts peeled by counts), best of
``--repeats`` each, fronts checked equal.

    python benchmarks/sort_at_scale.py [--job benchmarks/scale_nsga3.toml] [--rerank 6] [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def captured_rows(job: str, rerank: int) -> np.ndarray:
    """The input of the ``rerank``-th re-ranking of at least 11,000 rows of a simulated search of ``job``."""
    import menndl.master.population as population
    from menndl.cli import main

    kept: list[np.ndarray] = []
    sort = population.front_ranks

    class Enough(Exception):
        pass

    def capture(values: np.ndarray) -> np.ndarray:
        if len(values) >= 11_000:
            kept.append(np.array(values))
            if len(kept) == rerank:
                raise Enough
        return sort(values)

    population.front_ranks = capture  # type: ignore[assignment]
    try:
        main(["simulate", job, "--workers", "27648", "--eval-time", "lognormal:60", "--no-library"])
    except Enough:
        pass
    finally:
        population.front_ranks = sort
    if len(kept) < rerank:
        sys.exit(f"{job}: only {len(kept)} re-rankings of 11,000 rows or more; ask for fewer (--rerank)")
    return kept[-1]


def reference_ranks(values: np.ndarray, block: int = 256) -> np.ndarray:
    """Fronts by counting each row's dominators, block by block, and peeling rows whose count is zero."""
    count = len(values)
    dominates = np.zeros((count, count), dtype=bool)  # [i, j]: row i dominates row j
    for start in range(0, count, block):
        rows = values[start : start + block, None, :]
        dominates[start : start + block] = np.all(rows <= values[None], axis=2) & np.any(rows < values[None], axis=2)
    remaining = dominates.sum(axis=0)
    ranks = np.full(count, -1)
    front, rank = np.flatnonzero(remaining == 0), 0
    while len(front):
        ranks[front] = rank
        remaining -= dominates[front].sum(axis=0)
        remaining[ranks >= 0] = -1
        front, rank = np.flatnonzero(remaining == 0), rank + 1
    return ranks


def best_of(repeats: int, call: object) -> float:
    """The fastest of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default=str(ROOT / "benchmarks" / "scale_nsga3.toml"))
    parser.add_argument("--rerank", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    from menndl.master.nondominated import front_ranks

    values = captured_rows(args.job, args.rerank)
    ranks = front_ranks(values)
    assert np.array_equal(ranks, reference_ranks(values)), "front_ranks differs from the reference"
    fast = best_of(args.repeats, lambda: front_ranks(values))
    slow = best_of(max(1, args.repeats // 3), lambda: reference_ranks(values))
    print(f"{len(values):,} rows x {values.shape[1]} objectives, {ranks.max() + 1} fronts "
          f"(first: {int((ranks == 0).sum()):,} rows)")  # fmt: skip
    print(f"front_ranks          {fast * 1e3:8.1f} ms")
    print(f"numpy reference      {slow * 1e3:8.1f} ms   ({slow / fast:.1f}x front_ranks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
