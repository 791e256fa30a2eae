"""Two revisions of menndl measured side by side in one run: the master's scaling figures and the worker's throughput.

For a change that must not cost speed (a refactoring), this runs the same
commands on an old and a new revision, alternately (old, new, old, new, ...
with ``--repeat``), on this machine and in this one run, and prints each
figure and the new/old ratio:

* ``menndl bench scheduler --ranks R --task-seconds 0.1`` (real MPI ranks):
  utilization of menndl and of mpi4py.futures, master CPU per result;
* ``menndl simulate benchmarks/scale.toml --workers W --eval-time lognormal:60
  --evaluations E`` (the real master against virtual workers): utilization,
  master CPU per result;
* ``menndl bench worker``: the worker's samples per second over a plain PyTorch loop.

Each revision is exported with ``git archive`` into a temporary folder and run
with ``python -m menndl`` from there (``PYTHONPATH`` set to it), with this
interpreter and its packages.  Usage::

    python benchmarks/side_by_side.py --old 99bac8a [--new HEAD|WORKTREE] [--repeat 2] [--json]

``--new`` defaults to the working tree this script is in (uncommitted changes
included).  Run it on a quiet machine: timings taken under load are not figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

FIGURES: dict[str, list[tuple[str, str]]] = {  # benchmark -> (label, JSON path)
    "scheduler": [
        ("utilization, menndl", "menndl.utilization"),
        ("utilization, mpi4py.futures", "futures.utilization"),
        ("master CPU ms per result", "menndl.master_seconds_per_result"),
    ],
    "simulate": [
        ("utilization", "utilization"),
        ("master CPU ms per result", "master_seconds_per_result"),
        ("longest master turn, s", "longest_master_turn_seconds"),
        ("simulation wall seconds", "simulation_wall_seconds"),
    ],
    "worker": [("worker / plain PyTorch samples per second", "ratio")],
}


def _commands(args: argparse.Namespace) -> dict[str, list[str]]:
    return {
        "scheduler": ["bench", "scheduler", "--ranks", str(args.ranks), "--task-seconds", "0.1", "--json"],
        "simulate": ["simulate", "benchmarks/scale.toml", "--workers", str(args.workers), "--eval-time",
                     "lognormal:60", "--evaluations", str(args.evaluations), "--json"],  # fmt: skip
        "worker": ["bench", "worker", "--json"],
    }


def _export(revision: str, folder: Path) -> Path:
    """The tree of ``revision`` in ``folder`` (``git archive``), or this working tree for ``WORKTREE``."""
    if revision == "WORKTREE":
        return ROOT
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _run(tree: Path, command: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # mpiexec of this environment
    done = subprocess.run([sys.executable, "-m", "menndl", *command], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"side_by_side: {' '.join(command)} failed in {tree} (exit {done.returncode}): "
                         f"{done.stderr.strip().splitlines()[-1:] or ''}")  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _value(report: dict[str, Any], path: str) -> float:
    value: Any = report
    for key in path.split("."):
        value = value[key]
    return float(value)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks on both revisions, alternately; print the figures and the new/old ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="git revision to compare against")
    parser.add_argument("--new", default="WORKTREE", help="git revision, or WORKTREE (default): this working tree")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), default=sorted(FIGURES))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each benchmark per revision (alternating)")
    parser.add_argument("--ranks", type=int, default=128)
    parser.add_argument("--workers", type=int, default=27648)
    parser.add_argument("--evaluations", type=int, default=250000)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per command")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    commands = _commands(args)
    temporary = Path(tempfile.mkdtemp(prefix="menndl-side-by-side-"))
    try:
        trees = {"old": _export(args.old, temporary / "old"), "new": _export(args.new, temporary / "new")}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {"old": [], "new": []} for name in args.only}
        for name in args.only:
            for _ in range(args.repeat):
                for side in ("old", "new"):
                    print(f"[{side}] menndl {' '.join(commands[name])}", file=sys.stderr, flush=True)
                    runs[name][side].append(_run(trees[side], commands[name], args.timeout))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    table = []
    for name in args.only:
        for label, path in FIGURES[name]:
            old = statistics.median(_value(r, path) for r in runs[name]["old"])
            new = statistics.median(_value(r, path) for r in runs[name]["new"])
            scale = 1000.0 if "ms" in label else 1.0
            table.append({"benchmark": name, "figure": label, "old": old * scale, "new": new * scale,
                          "new/old": new / old if old else float("nan")})  # fmt: skip
    if args.json:
        print(json.dumps({"old": args.old, "new": args.new, "repeat": args.repeat, "figures": table, "runs": runs}))
        return 0
    print(f"old = {args.old}, new = {args.new}, median of {args.repeat} run(s) each, alternating")
    print(f"{'benchmark':<10} {'figure':<44} {'old':>12} {'new':>12} {'new/old':>8}")
    for row in table:
        old, new, ratio = row["old"], row["new"], row["new/old"]
        print(f"{row['benchmark']:<10} {row['figure']:<44} {old:>12.4f} {new:>12.4f} {ratio:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
