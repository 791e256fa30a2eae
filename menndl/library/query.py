"""Queries over a library: ``--where`` filters, rankings, Pareto fronts, lineage, statistics.

Plain numpy over the library's columns; no ``eval`` of user text: ``--where`` is parsed by a
small grammar, ``FIELD OP NUMBER [and FIELD OP NUMBER ...]`` with ``OP`` one of
``< <= > >= == !=``, e.g. ``params<1e5 and accuracy>=0.9``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from menndl.errors import UserError
from menndl.library.reader import Library
from menndl.library.schema import FIELD_KINDS, MISSING
from menndl.library.stored import stored_parents
from menndl.objectives import DIRECTIONS, RANKINGS
from menndl.tasks import task_score

ALIASES = {"seconds": "train_seconds"}

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_CONDITION = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|==|!=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
NUMERIC_FIELDS = tuple(name for name, kind in FIELD_KINDS.items() if kind != "str")


def parse_where(text: str) -> list[tuple[str, str, float]]:
    """Parse ``FIELD OP NUMBER [and ...]`` into (column, op, number) triples.

    Raises:
        UserError: The text does not follow the grammar or names an unknown field.
    """
    conditions = []
    for part in re.split(r"\s+and\s+", text.strip()):
        match = _CONDITION.match(part)
        if not match:
            raise UserError(
                f"--where: cannot parse {part.strip()!r}; expected FIELD OP NUMBER joined by 'and', "
                "e.g. 'params<1e5 and accuracy>=0.9'"
            )
        name, op, number = match.groups()
        column = ALIASES.get(name, name)
        if column not in NUMERIC_FIELDS:
            raise UserError(
                f"--where: unknown field {name!r}; expected one of {', '.join((*NUMERIC_FIELDS, 'seconds'))}"
            )
        conditions.append((column, op, float(number)))
    return conditions


def measured(lib: Library, name: str) -> np.ndarray:
    """Numeric column ``name`` as float64, its missing values (an int column's -1) as NaN."""
    values = lib.column(name).astype(np.float64)
    if FIELD_KINDS[name] == "int":
        values[values == MISSING["int"]] = np.nan
    return values


def where_mask(lib: Library, conditions: Sequence[tuple[str, str, float]]) -> np.ndarray:
    """Rows that satisfy every condition (a missing value never does)."""
    mask = np.ones(len(lib), dtype=bool)
    for column, op, number in conditions:
        values = measured(lib, column)
        with np.errstate(invalid="ignore"):
            mask &= _OPS[op](values, number) & ~np.isnan(values)
    return mask


def library_score(lib: Library) -> str:
    """The column that ranks ``lib``'s rows by default: its task's score (``accuracy``; ``r2`` for regression)."""
    return task_score(str(lib.attrs.get("task", "classification")))


def ranked(
    lib: Library, by: str | None = None, where: str | None = None, only_ok: bool = True, limit: int | None = None
) -> np.ndarray:
    """Row positions, best first by ``by`` (ties: fewer parameters, then lower id); at most ``limit``.

    ``by`` is a `menndl.objectives.RANKINGS` name; None ranks by the library's score (`library_score`).

    With a limit only the best few rows are sorted and only their ``status`` is read, so ``top``
    stays well under a second on a million rows.
    """
    column, sign = RANKINGS[by or library_score(lib)]
    mask = where_mask(lib, parse_where(where)) if where else np.ones(len(lib), dtype=bool)
    key = sign * measured(lib, column)
    mask &= ~np.isnan(key)
    rows = np.flatnonzero(mask)
    params = lib.column("params")
    ids = lib.column("id")
    wanted = len(rows) if limit is None else limit
    take = wanted if not only_ok else 4 * wanted + 16
    while True:
        if take < len(rows):
            kth = np.partition(key[rows], take)[take]
            chosen = rows[key[rows] <= kth]  # every row tied with the cut stays in
        else:
            chosen = rows
        order = chosen[np.lexsort((ids[chosen], params[chosen].astype(np.float64), key[chosen]))]
        if only_ok:
            order = order[lib.column_at("status", order) == "ok"]
        if len(order) >= wanted or len(chosen) == len(rows):
            return order[:wanted]
        take *= 4


PARETO_CHUNK = 4096  # rows screened together against the front found so far


def pareto_rows(values: np.ndarray, directions: Sequence[float]) -> np.ndarray:
    """Indices of the non-dominated rows of ``values`` (n x k), each column maximised if its direction > 0.

    Of rows with equal values only the first (in sort order) is kept.  Rows are taken in lexicographic
    order of their costs, so a row can only be dominated by rows before it: each chunk is first screened
    against the front so far in one vectorised step, and only the few rows left are compared one by one.
    """
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    cost = -values * np.asarray(directions, dtype=np.float64)  # minimise every column
    order = np.lexsort(cost.T[::-1])
    front: list[int] = []
    front_cost = np.empty((0, cost.shape[1]))
    for start in range(0, len(order), PARETO_CHUNK):
        rows = order[start : start + PARETO_CHUNK]
        chunk = cost[rows]
        if len(front_cost):
            keep = ~_covered(front_cost, chunk)
            rows, chunk = rows[keep], chunk[keep]
        for i, row in zip(rows.tolist(), chunk):
            if len(front_cost) and np.any(np.all(front_cost <= row, axis=1)):  # dominated by, or equal to, one
                continue
            front.append(i)
            front_cost = np.vstack([front_cost, row])
    return np.asarray(front, dtype=np.int64)


def _covered(front_cost: np.ndarray, chunk: np.ndarray, block: int = 2048) -> np.ndarray:
    """For each row of ``chunk``: whether some row of ``front_cost`` is no worse in every column."""
    covered = np.zeros(len(chunk), dtype=bool)
    for first in range(0, len(front_cost), block):
        part = front_cost[first : first + block]
        covered |= np.any(np.all(part[:, None, :] <= chunk[None, :, :], axis=2), axis=0)
    return covered


def pareto_front(lib: Library, objectives: Sequence[str] | None = None) -> np.ndarray:
    """Row positions on the Pareto front of the successful rows, best first by the library's score."""
    names = list(objectives or str(lib.attrs.get("objectives", "accuracy,params,train_seconds")).split(","))
    ok = np.flatnonzero(lib.column("status") == "ok")
    values = np.stack([measured(lib, n)[ok] for n in names], axis=1) if len(ok) else np.empty((0, 1))
    finite = np.all(np.isfinite(values), axis=1)
    ok, values = ok[finite], values[finite]
    rows = ok[pareto_rows(values, [DIRECTIONS[n] for n in names])]
    score = measured(lib, library_score(lib))[rows]
    return rows[np.argsort(-score, kind="stable")]


def lineage(lib: Library, eval_id: int) -> list[tuple[int, dict[str, Any]]]:
    """The evaluation and its ancestors, breadth first: (generation back, row); unknown parents skipped."""
    ids = lib.column("id")
    where = {int(i): k for k, i in enumerate(ids.tolist())}
    if eval_id not in where:
        raise UserError(f"library {lib.path} has no evaluation with id {eval_id}")
    out: list[tuple[int, dict[str, Any]]] = []
    queue, seen = [(0, eval_id)], {eval_id}
    while queue:
        depth, current = queue.pop(0)
        row = lib.rows([where[current]])[0]
        out.append((depth, row))
        for parent in stored_parents(lib.path, row):
            if parent not in seen and parent in where:
                seen.add(parent)
                queue.append((depth + 1, int(parent)))
    return out


def spent_compute(lib: Library) -> dict[str, Any]:
    """A search's compute: training epochs and seconds over every row (``spent_epochs``, ``spent_seconds``;
    ``epochs`` and ``train_seconds`` in a library from before them), and how many rows started from inherited
    weights other than their own earlier rung's."""
    epochs, seconds = lib.column("spent_epochs"), lib.column("spent_seconds")
    old_epochs, old_seconds = lib.column("epochs"), lib.column("train_seconds")
    epochs = np.where(epochs >= 0, epochs, np.maximum(old_epochs, 0))
    seconds = np.where(np.isfinite(seconds), seconds, old_seconds)
    inherited = (lib.column("inherited_from") >= 0) & (lib.column("operator") != "promote")
    return {"epochs": int(epochs.sum()), "seconds": float(np.nansum(seconds)), "inherited": int(inherited.sum())}


def stats(lib: Library) -> dict[str, Any]:
    """Counts by status, operator and rung, the best score, the compute spent (`spent_compute`), time span and
    throughput, hosts and devices."""
    status = lib.column("status")
    ok = status == "ok"
    score = library_score(lib)
    accuracy = measured(lib, score)
    submitted, finished = lib.column("submitted_at"), lib.column("finished_at")
    span = float(np.nanmax(finished) - np.nanmin(submitted)) if len(lib) and np.isfinite(finished).any() else math.nan

    def counts(values: np.ndarray) -> dict[str, int]:
        if not len(values):
            return {}
        names, numbers = np.unique(values.astype(str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names.tolist(), numbers.tolist())}

    best = int(np.nanargmax(np.where(ok, accuracy, np.nan))) if ok.any() and np.isfinite(accuracy[ok]).any() else None
    compute = spent_compute(lib)
    return {
        "evaluations": len(lib),
        "status": counts(status),
        "operators": counts(lib.column("operator")),
        "task": str(lib.attrs.get("task", "classification")),
        f"best_{score}": float(accuracy[best]) if best is not None else None,
        "best_id": int(lib.column("id")[best]) if best is not None else None,
        "smallest_ok_params": int(lib.column("params")[ok].min()) if ok.any() else None,
        "train_seconds_total": compute["seconds"],
        "train_epochs_total": compute["epochs"],
        "rungs": counts(lib.column("rung").clip(min=0)),
        "inherited": compute["inherited"],
        "span_seconds": span,
        "evaluations_per_hour": len(lib) / span * 3600 if span and span > 0 else None,
        "hosts": counts(lib.column("host")),
        "devices": counts(lib.column("device")),
        "pareto_front": len(lib.pareto_ids()),
        "kept_weights": lib.weight_ids(),
        "live": bool(lib.live),
        "job": lib.attrs.get("job_name", ""),
        "objectives": lib.attrs.get("objectives", ""),
    }
