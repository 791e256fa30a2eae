"""Search quality per unit of compute: rungs and weight inheritance against full training, ASHA and Optuna.

Every run is a real local search (``menndl run``: real training, real library) of one job under one
``search.epoch_budget`` (the sum of training epochs over all evaluations), with only the settings of its
configuration changed:

* ``full``: today's defaults, every candidate trains its whole budget at once;
* ``rungs``: ``search.rungs = 3`` (asynchronous multi-objective successive halving);
* ``inherit``: ``search.inherit_weights = true``;
* ``rungs+inherit``: both;
* ``asha-random``: random search with the same rungs (ASHA; selection off);
* ``optuna-hyperband``: Optuna's TPE with its HyperbandPruner on accuracy alone (``benchmarks/optuna_hyperband.py``).

Per run it reads the rows in the order they finished and reports, at 1/3, 1/2 and all of the epoch
budget (the epochs spent so far, ``spent_epochs``), the best validation accuracy and the hypervolume over
(accuracy, parameters) (`menndl.bench.quality.hypervolume`); then medians over seeds, and the top
architecture's test accuracy after ``menndl train`` (``--retrain-epochs``).

    python benchmarks/fidelity_quality.py --seeds 5 --epoch-budget 1000                 # MNIST-1D
    python benchmarks/fidelity_quality.py --job jobs/digits.toml --epoch-budget 600 --epochs 10
    python benchmarks/fidelity_quality.py --configs full,rungs+inherit --seeds 1

Libraries, jobs and logs stay in ``--out``; a finished run found there is read, not run again.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_quality import apply_setting, base_job, retrain, to_toml  # noqa: E402

from menndl.bench.quality import hypervolume  # noqa: E402
from menndl.library import Library  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIGS: dict[str, list[str]] = {  # every setting given, whatever the defaults are
    "full": ["search.rungs=1", "search.inherit_weights=false"],
    "rungs": ["search.rungs=3", "search.inherit_weights=false"],
    "inherit": ["search.rungs=1", "search.inherit_weights=true"],
    "rungs+inherit": ["search.rungs=3", "search.inherit_weights=true"],
    "asha-random": ["search.strategy=random", "search.rungs=3", "search.inherit_weights=false"],
    "optuna-hyperband": [],
}
AT = (1 / 3, 0.5, 1.0)  # shares of the epoch budget where the figures are taken


def run_search(args: argparse.Namespace, job: dict[str, Any], config: str, seed: int) -> dict[str, Any]:
    """One search of ``config`` (or Optuna's study); reuses a finished one in --out."""
    out = Path(args.out)
    name = f"{config}-s{seed}"
    done = out / f"{name}.done"
    if config == "optuna-hyperband":
        result = out / f"optuna-hyperband-s{seed}.json"
        if not done.exists():
            script = str(ROOT / "benchmarks" / "optuna_hyperband.py")
            command = [sys.executable, script, "--job", str(out / "base.toml"),
                       "--seed", str(seed), "--epoch-budget", str(args.epoch_budget), "--workers", str(args.workers),
                       "--out", str(out)]  # fmt: skip
            _call(command, out / f"{name}.log")
            done.write_text("")
        return {"config": config, "seed": seed, "optuna": str(result)}
    library = out / f"{name}.h5"
    if not (library.exists() and done.exists()):
        for stale in out.glob(f"{name}.h5*"):
            if stale.is_file():
                stale.unlink()
        derived = json.loads(json.dumps(job))
        for setting in CONFIGS[config]:
            apply_setting(derived, setting)
        derived["seed"], derived["name"] = seed, f"{job.get('name', 'job')}-{name}"
        search = derived.setdefault("search", {})
        search["epoch_budget"] = args.epoch_budget
        search.pop("evaluations", None)
        search["time_limit"] = args.time_limit
        job_file = out / f"{name}.toml"
        job_file.write_text(to_toml(derived))
        command = [sys.executable, "-m", "menndl", "run", str(job_file), "--library", str(library),
                   "--workers", str(args.workers)]  # fmt: skip
        _call(command, out / f"{name}.log")
        done.write_text("")
    return {"config": config, "seed": seed, "library": str(library)}


def _call(command: list[str], log: Path) -> None:
    with open(log, "w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        sys.exit(f"fidelity_quality: {' '.join(command)} exited with {code}; see {log}")


def measure(run: dict[str, Any], budget: int) -> dict[str, Any]:
    """Best accuracy and hypervolume at each share of the epoch budget, compute spent, the top architecture."""
    if "optuna" in run:
        report = json.loads(Path(run["optuna"]).read_text())
        points = [(t["cumulative_epochs"], t["accuracy"], t["params"], t["state"]) for t in
                  sorted(report["trials"], key=lambda t: t["finished_order"])]  # fmt: skip
        rows = [{"spent": e, "accuracy": a, "params": p, "ok": s in ("complete", "pruned")} for e, a, p, s in points]
        top_id = None
    else:
        with Library.open(run["library"]) as lib:
            records = sorted(lib.records(), key=lambda row: (row["finished_at"], row["id"]))
        total = 0
        rows = []
        for row in records:
            total += max(0, int(row["spent_epochs"]) if int(row["spent_epochs"]) >= 0 else int(row["epochs"]))
            ok = row["status"] == "ok" and not math.isnan(row["accuracy"])
            rows.append({"spent": total, "accuracy": row["accuracy"], "params": row["params"], "ok": ok,
                         "id": int(row["id"]), "rung": int(row["rung"])})  # fmt: skip
        done = [r for r in rows if r["ok"]]
        top = max(done, key=lambda r: (r["accuracy"], -r["params"], -r["id"])) if done else None
        top_id = None if top is None else top["id"]
        seconds = [float(row["spent_seconds"]) if math.isfinite(row["spent_seconds"]) else float(row["train_seconds"])
                   for row in records]  # fmt: skip
        run["train_seconds"] = float(sum(s for s in seconds if math.isfinite(s)))
        run["wall_seconds"] = max(r["finished_at"] for r in records) - min(r["submitted_at"] for r in records)
    figures: dict[str, dict[str, float]] = {}
    for share in AT:
        seen = [r for r in rows if r["ok"] and r["spent"] <= share * budget + 1e-9]
        figures[f"{share:.2f}"] = {
            "best": max((r["accuracy"] for r in seen), default=math.nan),
            "hypervolume": hypervolume([(r["accuracy"], r["params"]) for r in seen]),
        }
    return {**run, "figures": figures, "epochs": rows[-1]["spent"] if rows else 0, "rows": len(rows),
            "top_id": top_id}  # fmt: skip


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def main(argv: list[str] | None = None) -> int:
    """Run every configuration for every seed, print the medians and save ``summary.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", default=str(ROOT / "jobs" / "mnist1d.toml"))
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--configs", default="full,rungs+inherit,asha-random,optuna-hyperband")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epoch-budget", type=int, default=1000, help="training epochs per run, all evaluations")
    parser.add_argument("--epochs", type=int, help="training.epochs per candidate (default: the job's)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="training.max_seconds (large: epochs rule)")
    parser.add_argument("--time-limit", type=float, default=7200.0, help="seconds per run (a safety net)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--retrain-epochs", type=int, default=0, help="menndl train epochs of each top (0: none)")
    parser.add_argument("--retrain-seeds", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown {unknown}; expected names from {','.join(CONFIGS)}")
    args.out = args.out or str(ROOT / "results" / f"fidelity-{time.strftime('%Y%m%d-%H%M%S')}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    job = base_job(args)
    training = job.setdefault("training", {})
    if args.epochs is not None:
        training["epochs"] = args.epochs
    training["max_seconds"] = args.max_seconds
    (Path(args.out) / "base.toml").write_text(to_toml({**job, "search": {**job.get("search", {}),
                                                                          "evaluations": 1}}))  # fmt: skip
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for config in configs:
            result = measure(run_search(args, job, config, seed), args.epoch_budget)
            if result.get("library") and args.retrain_epochs:
                retrain(args, result)
            results.append(result)
            cells = ", ".join(f"@{k}: best {v['best']:.4f} hv {v['hypervolume']:.4f}" for k, v in
                              result["figures"].items())  # fmt: skip
            print(f"{config:>16} seed {seed}: {cells}; {result['rows']} rows, {result['epochs']} epochs, "
                  f"{result.get('train_seconds', math.nan):.0f} s training, "
                  f"{result.get('wall_seconds', math.nan):.0f} s wall, "
                  f"test {result.get('test_accuracy', math.nan):.4f}", flush=True)  # fmt: skip
    print(f"\nmedians over seeds, epoch budget {args.epoch_budget}")
    summary: dict[str, Any] = {}
    for config in configs:
        mine = [r for r in results if r["config"] == config]
        summary[config] = {
            share: {key: _median([r["figures"][share][key] for r in mine]) for key in ("best", "hypervolume")}
            for share in mine[0]["figures"]
        } if mine else {}
        summary[config]["test_accuracy"] = _median([r.get("test_accuracy", math.nan) for r in mine])
        cells = "  ".join(f"@{k}: {v['best']:.4f} / {v['hypervolume']:.4f}" for k, v in summary[config].items()
                          if isinstance(v, dict))  # fmt: skip
        print(f"{config:>16}  {cells}  test {summary[config]['test_accuracy']:.4f}")
    (Path(args.out) / "summary.json").write_text(json.dumps({"options": vars(args), "summary": summary,
                                                            "runs": results}, indent=1, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
