"""The ``menndl`` command line: a thin dispatcher over :mod:`menndl.commands`.

Every user mistake ends as one line on stderr (``menndl: error: ...``) and
exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from menndl import __version__
from menndl.commands import COMMANDS
from menndl.errors import OneLineParser, UserError, report_stop


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = OneLineParser(prog="menndl", description="MENNDL-style neural architecture search for HPC clusters.")
    parser.add_argument("--version", action="version", version=f"menndl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"menndl.commands.{name.replace('-', '_')}")
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``menndl`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (UserError, KeyboardInterrupt) as exc:
        return report_stop(exc)
    except BrokenPipeError:  # the output was piped to a reader that left (`menndl library LIB top | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141  # 128 + SIGPIPE, like a shell tool
