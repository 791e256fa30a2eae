"""Does a regression search beat a hand-written CNN of similar size?  (issue 21, acceptance 2)

    menndl run jobs/oscillator1d.toml --library LIB          # the search (at most 25 minutes on 2 cores)
    python benchmarks/regression_check.py LIB [--epochs 20] [--seeds 0 1 2] [--size-factor 2]

From the search's Pareto front (validation R² against parameters) it takes the member with the best
validation R² among those with at most ``--size-factor`` times the baseline's parameters (the
baseline is `regression_baseline.baseline_cnn`, 4,403 parameters), and the front's best overall.
Each is retrained by ``menndl train LIB ID --epochs E --seed S`` (training and validation splits,
4,000 signals; tested on the 1,000 test signals), and the baseline is trained as long on the same
4,000 signals (`regression_baseline.train_baseline`), once per seed.  Printed: parameters, the median
test R² and MSE over the seeds, and whether the searched network's median R² is at least the
baseline's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from front_retrain import front_choices, retrain  # noqa: E402
from regression_baseline import baseline_cnn, train_baseline  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Retrain the chosen front members and the baseline; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("library", metavar="LIB")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size-factor", type=float, default=2.0, help="'similar size': at most this x baseline")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the baseline (menndl train: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from menndl.data.builtin import load_oscillator1d_raw

    raw = load_oscillator1d_raw()
    assert raw.x_test is not None and raw.y_test is not None
    x, x_test = raw.x.take(np.arange(len(raw.x))), raw.x_test.take(np.arange(len(raw.x_test)))
    baseline_params = sum(p.numel() for p in baseline_cnn(x.shape[-1], raw.y.shape[1]).parameters())
    choices = front_choices(args.library, "r2", args.size_factor * baseline_params)
    out: dict[str, Any] = {"epochs": args.epochs, "seeds": args.seeds}
    runs = [train_baseline(x, raw.y, x_test, raw.y_test, epochs=args.epochs, seed=seed, threads=args.threads)
            for seed in args.seeds]  # fmt: skip
    out["baseline"] = {
        "params": baseline_params,
        "r2": statistics.median(r["r2"] for r in runs),
        "mse": statistics.median(r["mse"] for r in runs),
        "r2_per_seed": [r["r2"] for r in runs],
    }
    folder = Path(args.library).resolve().parent
    for name, row in choices.items():
        results = [retrain(args.library, int(row["id"]), args.epochs, seed, folder / f"retrained-{row['id']}.pt")
                   for seed in args.seeds]  # fmt: skip
        out[name] = {
            "id": int(row["id"]),
            "params": int(row["params"]),
            "validation_r2": float(row["r2"]),
            "r2": statistics.median(r["test_r2"] for r in results),
            "mse": statistics.median(r["test_mse"] for r in results),
            "r2_per_seed": [r["test_r2"] for r in results],
        }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"retrained {args.epochs} epochs on 4,000 signals, tested on 1,000; median over seeds {args.seeds}")
    print(f"{'model':>26} {'params':>8} {'test R2':>8} {'test MSE':>9}  per seed")
    for name, label in (("baseline", "hand-written CNN"), ("similar", "searched, similar size"),
                        ("best", "searched, front's best")):  # fmt: skip
        if name in out:
            entry = out[name]
            where = f" (id {entry['id']})" if "id" in entry else ""
            seeds = ", ".join(f"{v:.4f}" for v in entry["r2_per_seed"])
            print(f"{label + where:>26} {entry['params']:>8,} {entry['r2']:>8.4f} {entry['mse']:>9.4f}  {seeds}")
    if "similar" in out:
        verdict = "at least" if out["similar"]["r2"] >= out["baseline"]["r2"] else "BELOW"
        ratio = out["similar"]["params"] / baseline_params
        print(f"searched network of {ratio:.2f}x the baseline's parameters: median test R2 {verdict} the baseline's")
    else:
        print(f"no front member within {args.size_factor:g}x the baseline's {baseline_params:,} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
