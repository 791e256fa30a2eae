"""``menndl run`` with the sleep evaluator: the real CLI, master, transports and worker loop, no training.

    python tests/faults/sleep_run.py --seconds 0.2 --log FINISHED.jsonl [--crash 3:SIGSEGV ...]
        [--die-after-result 20:0.001 ...] -- run JOB ...

Everything after ``--`` is a normal ``menndl`` command line (``run`` only). Works under ``mpiexec`` too:
each rank runs this script, rank 0 as the master, the others as workers. Exit statuses are those of
``menndl``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from menndl.cli import build_parser
from menndl.errors import UserError


def main(argv: Sequence[str]) -> int:
    """Parse the sleep options, then run the ``menndl`` command after ``--`` with them."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    options = argparse.ArgumentParser(prog="sleep_run")
    options.add_argument("--seconds", type=float, default=0.2)
    options.add_argument("--log", default="")
    options.add_argument("--crash", action="append", default=[], metavar="TASK:SIGNAL")
    options.add_argument("--crash-once", action="store_true")
    options.add_argument("--hang", type=int, action="append", default=[], metavar="TASK")
    options.add_argument("--crash-on-setup", default="", metavar="SIGNAL")
    options.add_argument("--die-after-result", action="append", default=[], metavar="TASK:SECONDS")
    mine = options.parse_args(argv[:split])
    args = build_parser().parse_args(argv[split + 1 :])
    crash = {int(item.split(":")[0]): item.split(":")[1] for item in mine.crash}
    table = {"seconds": mine.seconds, "log": mine.log, "crash_tasks": crash, "crash_once": mine.crash_once,
             "hang_tasks": mine.hang, "crash_on_setup": mine.crash_on_setup,
             "die_after_result": {int(item.split(":")[0]): float(item.split(":")[1])
                                  for item in mine.die_after_result}}  # fmt: skip
    args.worker_setup = {"evaluator": "sleep", "sleep": table}
    try:
        return int(args.handler(args))
    except UserError as exc:
        print(f"menndl: error: {exc}", file=sys.stderr)
        return exc.exit_status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
