"""``menndl report LIB -o report.html``: one self-contained HTML file (no server, nothing fetched when opened)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from menndl.errors import UserError

HELP = "one self-contained HTML report of a library: Pareto front, progress, utilization, genealogy, failures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl report``."""
    parser.add_argument("library", metavar="LIB", help="library file (a running search's too)")
    parser.add_argument("-o", "--output", required=True, metavar="HTML", help="file to write")
    parser.add_argument(
        "--max-points",
        type=int,
        default=20_000,
        metavar="N",
        help="rows beyond the Pareto front shown at most, sampled (20000; the front is all there)",
    )


def main(args: argparse.Namespace) -> int:
    """Write the report; says where on stderr."""
    if args.max_points < 0:
        raise UserError(f"--max-points: expected an integer >= 0, got {args.max_points}")
    out = Path(args.output)
    if not out.parent.is_dir():
        raise UserError(f"-o: folder {out.parent} does not exist")
    try:
        from menndl.library.report import report_html
    except ModuleNotFoundError as exc:  # plotly is an extra
        raise UserError(f"menndl report needs {exc.name}: pip install 'menndl[report]'") from None
    from menndl.library import Library

    with Library.open(args.library) as lib:
        text = report_html(lib, max_points=args.max_points)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, out)  # a reader never sees half a report
    print(f"{out}: {len(text) / 2**20:.1f} MiB", file=sys.stderr)
    return 0
