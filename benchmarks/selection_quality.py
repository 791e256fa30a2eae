"""Many objectives: NSGA-III (and SPEA2) against NSGA-II at equal evaluations  (issue 23, acceptance 3).

For every seed and selection this runs a real local search (``menndl run``, real training, latency measured
on the workers) on the same job with only ``search.selection`` and ``seed`` changed, then prints per selection
the median over seeds of the hypervolume over all the objectives (`menndl.bench.quality.hypervolume_nd`: a
fixed box, log scales for sizes and times), the best validation accuracy and the size of the front.

    python benchmarks/selection_quality.py                           # MNIST-1D, 4 objectives, 5 seeds
    python benchmarks/selection_quality.py --selections nsga2,nsga3,spea2 --seeds 3 --evaluations 60

Libraries, job files and logs stay in ``--out``; runs already finished there are read, not run again.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import ROOT, base_job, to_toml  # noqa: E402

from menndl.bench.quality import hypervolume_nd  # noqa: E402
from menndl.library import Library  # noqa: E402
from menndl.library.query import pareto_front  # noqa: E402


def run(args: argparse.Namespace, job: dict[str, Any], selection: str, seed: int) -> Path:
    """One search with ``selection`` and ``seed`` (a finished library in --out is reused)."""
    out = Path(args.out)
    name = f"{selection}-s{seed}"
    library = out / f"{name}.h5"
    if library.exists() and (out / f"{name}.done").exists():
        return library
    for stale in (library, library.with_name(library.name + ".journal")):
        stale.unlink(missing_ok=True)
    derived = json.loads(json.dumps(job))
    derived["seed"], derived["name"] = seed, f"{job.get('name', 'job')}-{name}"
    search = derived.setdefault("search", {})
    search.update({"selection": selection, "evaluations": args.evaluations, "objectives": args.objectives})
    search.pop("time_limit", None)
    if args.epochs is not None:
        derived.setdefault("training", {})["epochs"] = args.epochs
    job_file = out / f"{name}.toml"
    job_file.write_text(to_toml(derived))
    command = [sys.executable, "-m", "menndl", "run", str(job_file), "--library", str(library),
               "--workers", str(args.workers)]  # fmt: skip
    started = time.perf_counter()
    with open(out / f"{name}.log", "w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        sys.exit(f"selection_quality: {' '.join(command)} exited with {code}; see {out / (name + '.log')}")
    (out / f"{name}.done").write_text(f"{time.perf_counter() - started:.1f}\n")
    return library


def measure(library: Path, objectives: list[str]) -> dict[str, float]:
    """Hypervolume over ``objectives``, best accuracy and front size of one finished search."""
    with Library.open(library) as lib:
        ok = lib.column("status") == "ok"
        columns = {name: lib.column(name).astype(float)[ok] for name in objectives}
        accuracy = lib.column("accuracy")[ok]
        front = len(pareto_front(lib, objectives))
        seconds = float(np.nansum(lib.column("train_seconds")))
    return {"hypervolume": hypervolume_nd(columns), "best_accuracy": float(np.nanmax(accuracy)) if len(accuracy)
            else math.nan, "front": float(front), "ok": float(ok.sum()), "train_seconds": seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run every (selection, seed) and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--job", default=str(ROOT / "jobs" / "mnist1d.toml"))
    parser.add_argument("--data", help="an HDF5/NPZ dataset instead of the job's")
    parser.add_argument("--selections", default="nsga2,nsga3")
    parser.add_argument("--objectives", default="accuracy,params,latency,train_seconds")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / f"selection-quality-{time.strftime('%Y%m%d-%H%M%S')}"))
    args = parser.parse_args(argv)
    args.set, args.objectives = [], args.objectives.split(",")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    job = base_job(args)
    selections = args.selections.split(",")
    results: dict[str, list[dict[str, float]]] = {selection: [] for selection in selections}
    for seed in range(args.seeds):
        for selection in selections:
            figures = measure(run(args, job, selection, seed), args.objectives)
            results[selection].append(figures)
            print(f"{selection} seed {seed}: hypervolume {figures['hypervolume']:.4f}, best accuracy "
                  f"{figures['best_accuracy']:.4f}, front {figures['front']:.0f}", flush=True)  # fmt: skip
    print(f"\n{args.evaluations} evaluations, objectives {', '.join(args.objectives)}, {args.seeds} seeds "
          f"(medians; per seed in {args.out}/summary.json)")  # fmt: skip
    print(f"{'selection':<10} {'hypervolume':>12} {'best accuracy':>14} {'front':>6} {'wins':>5}")
    for selection in selections:
        runs = results[selection]
        wins = sum(r["hypervolume"] >= o["hypervolume"] for r, o in zip(runs, results[selections[0]]))
        print(f"{selection:<10} {statistics.median(r['hypervolume'] for r in runs):>12.4f} "
              f"{statistics.median(r['best_accuracy'] for r in runs):>14.4f} "
              f"{statistics.median(r['front'] for r in runs):>6.0f} {wins:>3}/{len(runs)}")  # fmt: skip
    (Path(args.out) / "summary.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
