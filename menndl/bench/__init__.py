"""Benchmarks reachable as ``menndl bench NAME``: one module per benchmark.

Each module has ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``; with ``--json`` it prints one JSON object.  Figures
are always ratios or rates measured side by side in one run.
"""

# The benchmarks ``menndl bench`` offers; a module menndl/bench/<name>.py each.
BENCHMARKS: tuple[str, ...] = ("scheduler", "worker", "library", "data")
