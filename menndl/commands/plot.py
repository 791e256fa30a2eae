"""``menndl plot LIB -o DIR``: PNGs of the Pareto front and of the best score over evaluations.

``pareto.png`` shows the front over all the search's objectives (or those of ``--objectives``) as one
panel per pair of objectives: the successful evaluations in grey, the members of the front over every
objective highlighted, and the two-objective front of the panel's pair as a step line.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Any

from menndl.errors import UserError
from menndl.tasks import SCORES

HELP = "plot a library: Pareto front (each pair of its objectives) and best score vs evaluations (PNG)"

LABELS: dict[str, str] = {
    "accuracy": "validation accuracy",
    "r2": "validation R²",
    "mse": "validation MSE",
    "miou": "validation mIoU",
    "pixel_accuracy": "validation pixel accuracy",
    "params": "parameters",
    "flops": "FLOPs per sample",
    "train_seconds": "training seconds",
    "latency": "latency (s per sample, batch 1)",
    "batch_latency": "batch latency (s per sample)",
    "memory": "inference memory (bytes)",
    "train_memory": "training memory (bytes)",
    "energy": "energy (J per inference sample)",
    "train_energy": "training energy (J per sample)",
}
"""Axis label of each objective."""

SCORE_COLUMNS = frozenset(SCORES.values())
"""Objectives drawn on the y axis of a panel, on a linear scale."""

PANEL_COLUMNS = 3
"""Panels per row of pareto.png when there are several."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl plot``."""
    parser.add_argument("library", metavar="LIB", help="library file")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNG files")
    parser.add_argument(
        "--objectives",
        metavar="A,B,...",
        help="objectives of the Pareto plot, at least two (default: the library's, from its 'objectives' attribute)",
    )


def axes_pair(first: str, second: str) -> tuple[str, str]:
    """(x, y) of the panel of two objectives: a score (accuracy, R²) on y when it is one of them, else as given."""
    return (second, first) if first in SCORE_COLUMNS and second not in SCORE_COLUMNS else (first, second)


def use_log(name: str, values: Any) -> bool:
    """Whether the axis of objective ``name`` is logarithmic: not a score, all positive, spanning more than 10x."""
    import numpy as np

    if name in SCORE_COLUMNS or not len(values) or np.any(values <= 0):
        return False
    return bool(values.max() > 10 * values.min())


def main(args: argparse.Namespace) -> int:
    """Write pareto.png and progress.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from menndl.commands.library import library_objectives, parse_objectives
    from menndl.library import Library
    from menndl.library.query import library_score
    from menndl.objectives import DIRECTIONS

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o: {out} is not a folder")
    objectives = parse_objectives(args.objectives, minimum=2) if args.objectives is not None else None
    with Library.open(args.library) as lib:
        if objectives is None:
            objectives = library_objectives(lib)
            if len(objectives) < 2:
                raise UserError(
                    f"library {lib.path} has the single objective {objectives[0]!r}: name at least two to plot "
                    "with --objectives, e.g. --objectives accuracy,params"
                )
        ok = lib.column("status") == "ok"
        values = {name: _measured(lib, name) for name in objectives}
        for objective in objectives:
            if ok.any() and not np.isfinite(values[objective][ok]).any():
                measured = [n for n in DIRECTIONS if np.isfinite(_measured(lib, n)[ok]).any()]
                raise UserError(
                    f"column {objective!r} holds no measured values in {lib.path}; choose others with "
                    f"--objectives (these have values: {', '.join(measured)})"
                )
        score = library_score(lib)
        finished, accuracy = lib.column("finished_at"), _measured(lib, score)
        name = lib.path.name
    out.mkdir(parents=True, exist_ok=True)
    front = _front(values, objectives, ok)
    _plot_pareto(plt, values, objectives, ok, front, f"{name}: {int(ok.sum())} successful evaluations", out)

    by_time = np.argsort(finished, kind="stable")
    acc = np.where(ok, accuracy, np.nan)[by_time]
    best = np.fmax.accumulate(np.where(np.isnan(acc), -np.inf, acc))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(best) + 1), np.where(np.isinf(best), np.nan, best), color="navy")
    ax.scatter(np.arange(1, len(acc) + 1), acc, s=8, color="gray", alpha=0.5, label="each evaluation")
    ax.set_xlabel("evaluations (in the order they finished)")
    ax.set_ylabel(f"best {LABELS[score]} so far")
    ax.set_title(name)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "progress.png", dpi=120)
    plt.close(fig)
    print(f"{out / 'pareto.png'}\n{out / 'progress.png'}")
    return 0


def _measured(lib: Any, name: str) -> Any:
    """Column ``name`` as floats, NaN where not measured (an int column's missing value is -1)."""
    import numpy as np

    from menndl.library.schema import FIELD_KINDS

    column = lib.column(name).astype(np.float64)
    if FIELD_KINDS[name] == "int":
        column[column < 0] = np.nan
    return column


def _front(values: dict[str, Any], names: list[str], mask: Any) -> Any:
    """Row positions on the Pareto front over ``names`` of the rows in ``mask`` with every value measured."""
    import numpy as np

    from menndl.library.query import pareto_rows
    from menndl.objectives import DIRECTIONS

    table = np.stack([values[n] for n in names], axis=1)
    rows = np.flatnonzero(mask & np.all(np.isfinite(table), axis=1))
    return rows[pareto_rows(table[rows], [DIRECTIONS[n] for n in names])]


def _plot_pareto(
    plt: Any, values: dict[str, Any], objectives: list[str], ok: Any, front: Any, title: str, out: Path
) -> None:
    """Write ``out/pareto.png``: one panel per pair of ``objectives``."""
    import numpy as np

    pairs = [axes_pair(a, b) for a, b in itertools.combinations(objectives, 2)]
    single = len(pairs) == 1
    columns = min(len(pairs), PANEL_COLUMNS)
    rows = math.ceil(len(pairs) / columns)
    size = (7.0, 5.0) if single else (5.0 * columns, 4.0 * rows + 0.6)
    fig, grid = plt.subplots(rows, columns, figsize=size, squeeze=False)
    in_front = np.zeros(len(ok), dtype=bool)
    in_front[front] = True
    many = f"Pareto front over {len(objectives)} objectives"
    for ax, (x_name, y_name) in zip(grid.flat, pairs):
        x, y = values[x_name], values[y_name]
        shown = ok & np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[shown], y[shown], color="gray", s=14, alpha=0.5, label="successful evaluations")
        if not single:
            members = shown & in_front
            ax.scatter(x[members], y[members], color="darkorange", s=26, zorder=3, label=many)
        pair = _front(values, [x_name, y_name], ok)
        order = pair[np.argsort(x[pair], kind="stable")]
        ax.step(
            x[order],
            y[order],
            where="post",
            color="crimson",
            zorder=4,
            label="Pareto front" if single else "Pareto front of the pair",
        )
        ax.scatter(x[order], y[order], color="crimson", s=30 if single else 12, zorder=5)
        for name, set_scale in ((x_name, ax.set_xscale), (y_name, ax.set_yscale)):
            if use_log(name, values[name][shown]):
                set_scale("log")
        ax.set_xlabel(LABELS.get(x_name, x_name))
        ax.set_ylabel(LABELS.get(y_name, y_name))
    for ax in list(grid.flat)[len(pairs) :]:
        ax.set_visible(False)
    if single:
        grid[0, 0].set_title(title)
        grid[0, 0].legend(loc="lower right" if pairs[0][1] in SCORE_COLUMNS else "best")
    else:
        fig.suptitle(f"{title}; {many} ({int(len(front))} members): {', '.join(objectives)}")
        handles, labels = grid[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncols=3, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1) if single else (0, 0.6 / size[1], 1, 1))
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)
