"""Errors that reach the user as one line and a non-zero exit status."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class UserError(Exception):
    """A mistake in user input (job file, dataset, library, CLI argument).

    The CLI prints ``menndl: error: <message>`` on one line and exits with
    status 2; no traceback.  The message must name the file, key or value at
    fault and say what was expected.
    """

    exit_status = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line ``menndl: error: ...`` and exit 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        """Print the one line (naming the command and where its help is) and exit 2."""
        command = self.prog.removeprefix("menndl").strip()
        hint = f"see 'menndl {command.split()[0]} --help'" if command else "see 'menndl --help'"
        self.exit(2, f"menndl: error: {command + ': ' if command else ''}{' '.join(message.split())} ({hint})\n")


class StorageError(UserError):
    """The library cannot be written (disk full, quota, file size limit, read-only file system).

    One line like a `UserError`, but exit status 1: the input was fine, the machine was not.  The
    search stops cleanly; what reached the library before stays there (``--resume`` continues).
    """

    exit_status = 1


def report_stop(exc: UserError | KeyboardInterrupt) -> int:
    """Say on stderr, in one line, why the command stopped, and return its exit status (130 for Ctrl-C)."""
    if isinstance(exc, KeyboardInterrupt):
        print("menndl: interrupted", file=sys.stderr)
        return 130
    print(f"menndl: error: {exc}", file=sys.stderr)
    return exc.exit_status
