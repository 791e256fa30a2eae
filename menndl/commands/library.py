"""``menndl library LIB top|pareto|show|stats|lineage`` and ``menndl library merge A B -o C``.

Reads a library (also while its search still writes it, through the journal); never writes one,
except ``merge``, which creates a new file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from datetime import datetime, timezone
from typing import Any

from menndl.errors import OneLineParser, UserError
from menndl.library.stored import stored_parents
from menndl.objectives import DIRECTIONS, RANKINGS

HELP = "query a library: top, pareto, show ID, stats, lineage ID, status; or merge A B -o C"

DEFAULT_OBJECTIVES = "accuracy,params,train_seconds"
"""The objectives of a library whose ``objectives`` attribute is absent (written before it existed)."""


def parse_objectives(text: str, option: str = "--objectives", minimum: int = 1) -> list[str]:
    """The objective names in comma-separated ``text``, in order, each once.

    Raises:
        UserError: A name is not an objective of `menndl.objectives.DIRECTIONS`, or fewer than ``minimum`` names.
    """
    names: list[str] = []
    for name in (part.strip() for part in text.split(",")):
        if name and name not in DIRECTIONS:
            raise UserError(f"{option}: unknown objective {name!r}; expected names from {', '.join(DIRECTIONS)}")
        if name and name not in names:
            names.append(name)
    if len(names) < minimum:
        raise UserError(
            f"{option}: expected at least {minimum} objective{'s' if minimum > 1 else ''} joined by ',', "
            f"got {text!r}; valid names: {', '.join(DIRECTIONS)}"
        )
    return names


def library_objectives(lib: Any) -> list[str]:
    """The objectives of the search that wrote ``lib`` (its ``objectives`` attribute).

    Raises:
        UserError: The attribute names an objective this menndl does not know.
    """
    text = str(lib.attrs.get("objectives", "") or DEFAULT_OBJECTIVES)
    return parse_objectives(text, f"library {lib.path}: attribute 'objectives'")


def table_columns(objectives: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    """The columns of the printed tables: id, the objectives, ``extra`` and params when absent, operator, status."""
    columns = ["id", *objectives]
    columns += [name for name in (*extra, "params") if name not in columns]
    return [*columns, "operator", "status"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``menndl library LIB ACTION ...`` (the action's own options follow it)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = HELP + (
        "\n\nactions:\n"
        "  LIB top [--by NAME] [--where 'params<1e5 and accuracy>0.9'] [--limit K] [--json]\n"
        + textwrap.fill(
            f"best first by NAME: {', '.join(RANKINGS)}", 110, initial_indent=" " * 29, subsequent_indent=" " * 29
        )
        + "\n"
        "  LIB pareto [--objectives accuracy,latency] [--json]\n"
        "                             the Pareto front over the library's objectives (or those given),\n"
        "                             most accurate first\n"
        "  LIB show ID [--json]       one evaluation: every field and the layer table\n"
        "  LIB stats [--json]         counts by status and operator, best values, throughput, hosts\n"
        "  LIB lineage ID [--json]    ancestors of ID and the operators that made each\n"
        "  LIB status [--json]        finished, or stopped/interrupted (exit status 3: `run --resume` continues it)\n"
        "  merge A B [...] -o C       one library from several (ids renumbered, parents kept)\n"
    )
    parser.add_argument("target", metavar="LIB", help="library file (or 'merge')")
    parser.add_argument("action", nargs=argparse.REMAINDER, metavar="ACTION ...", help="see above")


def _action_parser(target: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=f"menndl library {target}")
    actions = parser.add_subparsers(dest="name", required=True, metavar="ACTION")
    top = actions.add_parser("top", help="best evaluations")
    top.add_argument("--by", choices=tuple(RANKINGS), default=None, help="default: the task's score (accuracy, r2)")
    top.add_argument("--where", metavar="EXPR", help="FIELD OP NUMBER [and ...], e.g. 'params<1e5'")
    top.add_argument("--limit", type=int, default=10, metavar="K")
    top.add_argument("--all", action="store_true", help="include failed evaluations")
    for name in ("pareto", "stats", "status"):
        sub = actions.add_parser(name)
        sub.add_argument("--json", action="store_true")
        if name == "pareto":
            sub.add_argument("--objectives", metavar="A,B", help="objectives of the front (default: the library's)")
    for name in ("show", "lineage"):
        sub = actions.add_parser(name)
        sub.add_argument("id", type=int, metavar="ID")
        sub.add_argument("--json", action="store_true")
    top.add_argument("--json", action="store_true")
    return parser


def main(args: argparse.Namespace) -> int:
    """Dispatch to the action."""
    if args.target == "merge":
        return _merge(args.action)
    if not args.action:
        raise UserError("menndl library LIB: missing action; expected top, pareto, show ID, stats or lineage ID")
    action = _action_parser(args.target).parse_args(args.action)
    from menndl.library import Library

    with Library.open(args.target) as lib:
        if action.name == "top":
            return _top(lib, action)
        if action.name == "pareto":
            return _pareto(lib, action)
        if action.name == "show":
            return _show(lib, action.id, action.json)
        if action.name == "stats":
            return _stats(lib, action.json)
        if action.name == "status":
            return _status(lib, args.target, action.json)
        return _lineage(lib, action.id, action.json)


def _top(lib: Any, action: argparse.Namespace) -> int:
    from menndl.library.query import ranked

    if action.limit < 1:
        raise UserError(f"--limit: expected an integer >= 1, got {action.limit}")
    from menndl.library.query import library_score

    by = action.by or library_score(lib)
    rows = ranked(lib, by, action.where, only_ok=not action.all, limit=action.limit)
    columns = table_columns(library_objectives(lib), (RANKINGS[by][0],))
    return _print_rows(lib.rows(rows.tolist()), action.json, lib.path, columns)


def _pareto(lib: Any, action: argparse.Namespace) -> int:
    from menndl.library.query import pareto_front

    objectives = parse_objectives(action.objectives) if action.objectives is not None else library_objectives(lib)
    rows = pareto_front(lib, objectives)
    return _print_rows(lib.rows(rows.tolist()), action.json, lib.path, table_columns(objectives))


TIME_FIELDS = ("submitted_at", "finished_at")  # unix seconds, shown as ISO 8601 dates (UTC)


def _fmt(value: Any, key: str = "") -> str:
    if key in TIME_FIELDS and isinstance(value, float) and math.isfinite(value):
        return datetime.fromtimestamp(value, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, int):
        return "-" if value < 0 else f"{value:,}"
    return str(value)


def _print_rows(rows: list[dict[str, Any]], as_json: bool, lib_path: Any, columns: list[str]) -> int:
    """Print ``rows`` as JSON (every field) or as a right-aligned table of ``columns``."""
    if as_json:
        print(json.dumps([_jsonable(r, lib_path) for r in rows]))
        return 0
    cells = [[_fmt(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[k]) for line in cells)]) for k, c in enumerate(columns)]
    print("  ".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for line in cells:
        print("  ".join(f"{text:>{w}}" for text, w in zip(line, widths)))
    if not rows:
        print("(no evaluations match)")
    return 0


def _jsonable(row: dict[str, Any], library: Any = "") -> dict[str, Any]:
    from menndl.library.stored import stored_json

    out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    for key in ("genome", "parents"):
        text = out.get(key)
        if isinstance(text, str) and text:
            out[key] = stored_json(library, f"evaluation {row.get('id')}: {key}", text)
    return out


def _spec(lib: Any) -> Any:
    """The library's InputSpec, or None when it records none (the layer table is then left out)."""
    from menndl.library.export import spec_of

    try:
        return spec_of(lib)
    except UserError:
        return None


def _show(lib: Any, eval_id: int, as_json: bool) -> int:
    row = lib.record(eval_id)
    if as_json:
        print(json.dumps(_jsonable(row, lib.path)))
        return 0
    for key, value in row.items():
        if key not in ("genome", "error"):
            print(f"{key:>14}: {_fmt(value, key)}")
    if row["error"]:
        print(f"{'error':>14}: {row['error'].strip()}")
    print(f"{'weights':>14}: {'kept in the library' if eval_id in lib.weight_ids() else 'not kept'}")
    spec = _spec(lib)
    if spec is not None and row["genome"]:
        from menndl.genome.layer_table import format_layer_table
        from menndl.library.stored import stored_genome

        genome = stored_genome(lib.path, row, spec)
        print()
        print(format_layer_table(genome, spec))
        print(f"training: {json.dumps(genome.to_dict()['train'])}")
    return 0


def _stats(lib: Any, as_json: bool) -> int:
    from menndl.library.query import stats

    figures = stats(lib)
    if as_json:
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}))
        return 0
    for key, value in figures.items():
        print(f"{key:>20}: {_fmt(value) if not isinstance(value, (dict, list)) else json.dumps(value)}")
    return 0


def _status(lib: Any, path: str, as_json: bool) -> int:
    """Print whether the search is finished; exit 0 when it is, 3 when ``run --resume`` would continue it."""
    from menndl.library.status import EXIT_FINISHED, EXIT_UNFINISHED, describe, search_status

    status = search_status(lib)
    print(json.dumps(status) if as_json else "\n".join(describe(status, path)))
    return EXIT_FINISHED if status["state"] == "finished" else EXIT_UNFINISHED


def _lineage(lib: Any, eval_id: int, as_json: bool) -> int:
    from menndl.library.query import library_score, lineage

    chain = lineage(lib, eval_id)
    score = library_score(lib)
    if as_json:
        print(json.dumps([{"generation": -d, **_jsonable(row, lib.path)} for d, row in chain]))
        return 0
    for depth, row in chain:
        parents = stored_parents(lib.path, row)
        made = f"{row['operator']} of {', '.join(map(str, parents))}" if parents else row["operator"]
        print(
            f"{'  ' * depth}{row['id']}: {made}; {score} {_fmt(row.get(score, math.nan))}, "
            f"{_fmt(row['params'])} params, {row['status']}"
        )
    return 0


def _merge(argv: list[str]) -> int:
    parser = OneLineParser(prog="menndl library merge")
    parser.add_argument("inputs", nargs="+", metavar="LIB")
    parser.add_argument("-o", "--output", required=True, metavar="PATH")
    options = parser.parse_args(argv)
    from menndl.library.merge import merge_libraries

    count = merge_libraries(options.inputs, options.output)
    print(f"{options.output}: {count} evaluations from {len(options.inputs)} libraries", file=sys.stdout)
    return 0
