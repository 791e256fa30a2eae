"""Errors that reach the user as one line and a non-zero exit status."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in user input (job file, dataset, library, CLI argument).

    The CLI prints ``menndl: error: <message>`` on one line and exits with
    status 2; no traceback.  The message must name the file, key or value at
    fault and say what was expected.
    """

    exit_status = 2
