"""Search quality: menndl's NSGA-II against random search and Optuna's NSGA-II at equal budgets.

For every seed and strategy this runs a real local search (``menndl run``, real training) on the
same job with only ``search.strategy`` and ``seed`` changed, so the search space, the evaluation
budget and the training budget per candidate are the same for all.  It then reads each library and
prints, per strategy, the median over seeds of

* the best validation accuracy after 10%, 25%, 50% and 100% of the evaluations (the anytime curve),
* the hypervolume over (validation accuracy, parameters) (`menndl.bench.quality.hypervolume`),
* the test accuracy and parameters of each run's top architecture by validation accuracy,
  retrained by ``menndl train`` on the training + validation splits (``--retrain-epochs``).

The test split is never seen by the search: it is read only by ``menndl train``.

    python benchmarks/search_quality.py                       # MNIST-1D (jobs/mnist1d.toml), 5 seeds
    python benchmarks/search_quality.py --job jobs/digits.toml --seeds 3
    python benchmarks/search_quality.py --data my.h5 --evaluations 100
    python benchmarks/search_quality.py --strategies nsga2 --seeds 1 --evaluations 200   # one long search
    python benchmarks/search_quality.py --strategies nsga2 --set search.population=10      # tune a default

Libraries, job files and logs stay in ``--out`` (default ``results/search-quality-<time>``); a
summary is written to ``summary.json`` there.  Runs already finished in ``--out`` are read, not
run again, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from menndl.bench.quality import SIZE_RANGE, anytime_best, hypervolume
from menndl.library import Library

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("nsga2", "random", "optuna")
CURVE_AT = (0.1, 0.25, 0.5, 1.0)  # fractions of the evaluation budget where the anytime curve is reported
RANK_KEYS = ("filters", "kernels", "strides", "dilations")  # [space] keys whose defaults depend on the data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def to_toml(job: dict[str, Any]) -> str:
    """A job dict (top-level keys and one level of tables) as TOML text."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in job.items() if not isinstance(v, dict)]
    for table, values in job.items():
        if isinstance(values, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def base_job(args: argparse.Namespace) -> dict[str, Any]:
    """The job every run starts from, with data paths made absolute (run jobs live in --out)."""
    path = Path(args.job)
    try:
        job = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        sys.exit(f"search_quality: cannot read job {path}: {exc}")
    data = job.setdefault("data", {})
    if args.data:
        data["source"] = str(Path(args.data).resolve())
        job["name"] = Path(args.data).stem
        for key in RANK_KEYS:  # the job's rank-specific choices may not fit the user's data
            job.get("space", {}).pop(key, None)
    elif data.get("source") not in ("digits", "mnist1d"):
        data["source"] = str((path.parent / data["source"]).resolve())
    for setting in args.set:
        apply_setting(job, setting)
    return job


def apply_setting(job: dict[str, Any], setting: str) -> None:
    """``SECTION.KEY=VALUE`` (VALUE in TOML, e.g. ``search.population=10``, ``search.objectives=["accuracy"]``)."""
    name, _, text = setting.partition("=")
    section, _, key = name.strip().partition(".")
    if not (section and key and text):
        sys.exit(f"search_quality: --set {setting!r}: expected SECTION.KEY=VALUE, e.g. search.population=10")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word: a string
    job.setdefault(section, {})[key] = value


def run_job(args: argparse.Namespace, job: dict[str, Any], strategy: str, seed: int) -> dict[str, Any]:
    """One search: its derived job file, library and log in --out (an existing complete library is reused)."""
    out = Path(args.out)
    name = f"{strategy}-s{seed}"
    library, log = out / f"{name}.h5", out / f"{name}.log"
    if library.exists() and (out / f"{name}.done").exists():
        return {"strategy": strategy, "seed": seed, "library": str(library), "seconds": math.nan, "reused": True}
    for stale in (library, library.with_name(library.name + ".journal")):
        stale.unlink(missing_ok=True)  # an interrupted run of an earlier invocation: run it again
    derived = json.loads(json.dumps(job))
    derived["seed"] = seed
    derived["name"] = f"{job.get('name', 'job')}-{name}"
    search = derived.setdefault("search", {})
    search["strategy"] = strategy
    search["evaluations"] = args.evaluations
    search["time_limit"] = args.time_limit
    training = derived.setdefault("training", {})
    if args.epochs is not None:
        training["epochs"] = args.epochs
    if args.max_seconds is not None:
        training["max_seconds"] = args.max_seconds
    job_file = out / f"{name}.toml"
    job_file.write_text(to_toml(derived))
    command = [sys.executable, "-m", "menndl", "run", str(job_file), "--library", str(library)]
    command += ["--workers", str(args.workers)]
    started = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - started
    if code != 0:
        sys.exit(f"search_quality: {' '.join(command)} exited with {code}; see {log}")
    (out / f"{name}.done").write_text(f"{seconds:.1f}\n")
    return {"strategy": strategy, "seed": seed, "library": str(library), "seconds": seconds, "reused": False}


def measure(run: dict[str, Any], budget: int) -> dict[str, Any]:
    """Anytime curve, hypervolume, failures and the top architecture of one finished search."""
    with Library.open(run["library"]) as lib:
        rows = sorted(lib.records(), key=lambda row: (row["finished_at"], row["id"]))
    ok = [row for row in rows if row["status"] == "ok" and not math.isnan(row["accuracy"])]
    curve = anytime_best([row["accuracy"] if row["status"] == "ok" else math.nan for row in rows])
    at = {f: curve[min(len(curve), max(1, round(f * budget))) - 1] if curve else math.nan for f in CURVE_AT}
    top = max(ok, key=lambda row: (row["accuracy"], -row["params"], -row["id"])) if ok else None
    return {
        **run,
        "evaluations": len(rows),
        "failed": len(rows) - len(ok),
        "curve": {str(f): v for f, v in at.items()},
        "anytime": curve,  # best validation accuracy after each evaluation, in finishing order (summary.json)
        "best_accuracy": curve[-1] if curve else math.nan,
        "hypervolume": hypervolume([(row["accuracy"], row["params"]) for row in ok]),
        "top_id": None if top is None else int(top["id"]),
        "top_params": None if top is None else int(top["params"]),
        "operators": dict(Counter(row["operator"] for row in rows)),
    }


def retrain(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """``menndl train`` on the run's top architecture: test accuracy (median over --retrain-seeds)."""
    if result["top_id"] is None or args.retrain_epochs == 0:
        return
    tests = []
    for seed in range(args.retrain_seeds):
        weights = Path(result["library"]).with_suffix(f".top{result['top_id']}-r{seed}.pt")
        command = [sys.executable, "-m", "menndl", "train", result["library"], str(result["top_id"]), "--json",
                   "--epochs", str(args.retrain_epochs), "--seed", str(seed), "--device", "cpu",
                   "-o", str(weights)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"search_quality: {' '.join(command)} failed: {done.stderr.strip()}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        tests.append(float("nan") if report["test_accuracy"] is None else report["test_accuracy"])
    result["test_accuracies"] = tests
    result["test_accuracy"] = statistics.median(tests)


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def summarise(results: list[dict[str, Any]], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """Per strategy: medians over seeds of every measure, and each seed's figures."""
    summary: dict[str, dict[str, Any]] = {}
    for strategy in strategies:
        mine = [r for r in results if r["strategy"] == strategy]
        summary[strategy] = {
            "seeds": len(mine),
            "best_accuracy": _median([r["best_accuracy"] for r in mine]),
            "hypervolume": _median([r["hypervolume"] for r in mine]),
            "curve": {f: _median([r["curve"][f] for r in mine]) for f in map(str, CURVE_AT)},
            "test_accuracy": _median([r.get("test_accuracy", math.nan) for r in mine]),
            "top_params": _median([r["top_params"] for r in mine if r["top_params"] is not None]),
            "failed": sum(r["failed"] for r in mine),
            "seconds": _median([r["seconds"] for r in mine]),
            "per_seed": [
                {k: r.get(k) for k in ("seed", "best_accuracy", "hypervolume", "test_accuracy", "top_params", "top_id")}
                for r in mine
            ],
        }
    return summary


def print_summary(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    """The comparison table, then the ratios to random search and Optuna."""
    print(f"\n{args.evaluations} evaluations per run, {args.seeds} seeds, medians over seeds "
          f"(hypervolume over accuracy x size score, size range {SIZE_RANGE[0]:g}-{SIZE_RANGE[1]:g} "
          "parameters)")  # fmt: skip
    curve = " ".join(f"best@{float(f):.0%}".rjust(9) for f in map(str, CURVE_AT))
    print(f"{'strategy':<9} {curve} {'hypervol':>9} {'test acc':>9} {'params':>8} {'failed':>6} {'seconds':>8}")
    for strategy, s in summary.items():
        points = " ".join(f"{s['curve'][f]:9.4f}" for f in map(str, CURVE_AT))
        print(f"{strategy:<9} {points} {s['hypervolume']:9.4f} {s['test_accuracy']:9.4f} "
              f"{s['top_params']:8.0f} {s['failed']:6d} {s['seconds']:8.1f}")  # fmt: skip
    if "nsga2" in summary:
        for other in (name for name in summary if name != "nsga2"):
            a, b = summary["nsga2"], summary[other]
            print(f"nsga2 - {other}: best accuracy {a['best_accuracy'] - b['best_accuracy']:+.4f}, "
                  f"hypervolume {a['hypervolume'] - b['hypervolume']:+.4f}, "
                  f"test accuracy {a['test_accuracy'] - b['test_accuracy']:+.4f}")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", default=str(ROOT / "jobs" / "mnist1d.toml"), help="base job (default: MNIST-1D)")
    parser.add_argument("--data", metavar="FILE", help="a dataset file (.h5/.hdf5/.npz) instead of the job's data")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated, from nsga2,random,optuna")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per strategy (0, 1, ...)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--evaluations", type=int, default=60, help="evaluation budget of every run")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds per run (a safety net)")
    parser.add_argument("--epochs", type=int, help="training.epochs per candidate (default: the job's)")
    parser.add_argument("--max-seconds", type=float, help="training.max_seconds per candidate (default: the job's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change the base job for every run, e.g. search.population=10 (repeatable)")
    parser.add_argument("--retrain-epochs", type=int, default=100, help="menndl train epochs (0: no retraining)")
    parser.add_argument("--retrain-seeds", type=int, default=1, help="retrainings of each top architecture")
    parser.add_argument("--out", help="folder for jobs, libraries and logs (default: results/search-quality-<time>)")
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown or not args.strategies:
        parser.error(f"--strategies: expected names from {','.join(STRATEGIES)}, got {unknown or 'none'}")
    for name in ("seeds", "evaluations", "workers", "retrain_seeds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected an integer >= 1, got {getattr(args, name)}")
    if args.data and not Path(args.data).is_file():
        parser.error(f"--data: {args.data} is not a file")
    args.out = args.out or str(ROOT / "results" / f"search-quality-{time.strftime('%Y%m%d-%H%M%S')}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every strategy for every seed, measure, retrain, print and save the summary."""
    args = parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    job = base_job(args)
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):  # seeds outermost: a cut run stays balanced
        for strategy in args.strategies:
            run = run_job(args, job, strategy, seed)
            result = measure(run, args.evaluations)
            retrain(args, result)
            results.append(result)
            print(f"{strategy:>6} seed {seed}: best accuracy {result['best_accuracy']:.4f}, "
                  f"hypervolume {result['hypervolume']:.4f}, top #{result['top_id']} "
                  f"({result['top_params']} params) test accuracy {result.get('test_accuracy', math.nan):.4f}, "
                  f"{result['failed']} failed, {result['seconds']:.0f}s", flush=True)  # fmt: skip
    summary = summarise(results, args.strategies)
    print_summary(summary, args)
    options = {k: v for k, v in vars(args).items()}
    (Path(args.out) / "summary.json").write_text(json.dumps({"options": options, "summary": summary,
                                                            "runs": results}, indent=1, default=str))  # fmt: skip
    print(f"\nsummary: {Path(args.out) / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
