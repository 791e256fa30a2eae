"""``menndl bench NAME``: benchmarks of the parts of a search, side by side with a baseline."""

from __future__ import annotations

import argparse
import importlib

from menndl.bench import BENCHMARKS

HELP = "measure a part of the search against a baseline in one run (" + ", ".join(BENCHMARKS) + ")"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-subcommand per module of :mod:`menndl.bench`."""
    names = parser.add_subparsers(dest="benchmark", required=True, metavar="NAME")
    for name in BENCHMARKS:
        module = importlib.import_module(f"menndl.bench.{name}")
        sub = names.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(bench_main=module.main)


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmark."""
    return int(args.bench_main(args))
