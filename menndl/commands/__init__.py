"""One module per ``menndl`` subcommand.

Each module has ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``.  Modules import only what their parser needs at the top;
heavy imports (torch, mpi4py) happen inside ``main``, so ``menndl --help`` and
the master stay fast and torch-free.
"""

# The order in which the subcommands appear in ``menndl --help``.
COMMANDS: tuple[str, ...] = (
    "run",
    "check",
    "library",
    "export",
    "train",
    "plot",
    "report",
    "simulate",
    "bench",
)
