"""``menndl plot LIB -o DIR``: PNGs of the Pareto front and of the best accuracy over evaluations."""

from __future__ import annotations

import argparse
from pathlib import Path

from menndl.errors import UserError

HELP = "plot a library: Pareto front (accuracy vs parameters) and best accuracy vs evaluations (PNG)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl plot``."""
    parser.add_argument("library", metavar="LIB", help="library file")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNG files")


def main(args: argparse.Namespace) -> int:
    """Write pareto.png and progress.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from menndl.library import Library
    from menndl.library.query import pareto_front

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o: {out} is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with Library.open(args.library) as lib:
        ok = lib.column("status") == "ok"
        accuracy, params = lib.column("accuracy"), lib.column("params").astype(float)
        seconds, finished = lib.column("train_seconds"), lib.column("finished_at")
        front = pareto_front(lib, ["accuracy", "params"])
        name = lib.path.name

    fig, ax = plt.subplots(figsize=(7, 5))
    points = ax.scatter(params[ok], accuracy[ok], c=seconds[ok], cmap="viridis", s=18, alpha=0.8)
    fig.colorbar(points, ax=ax, label="training seconds")
    order = front[np.argsort(params[front])]
    ax.step(params[order], accuracy[order], where="post", color="crimson", label="Pareto front")
    ax.scatter(params[order], accuracy[order], color="crimson", s=30)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{name}: {int(ok.sum())} successful evaluations")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)

    by_time = np.argsort(finished, kind="stable")
    acc = np.where(ok, accuracy, np.nan)[by_time]
    best = np.fmax.accumulate(np.where(np.isnan(acc), -np.inf, acc))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(best) + 1), np.where(np.isinf(best), np.nan, best), color="navy")
    ax.scatter(np.arange(1, len(acc) + 1), acc, s=8, color="gray", alpha=0.5, label="each evaluation")
    ax.set_xlabel("evaluations (in the order they finished)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(name)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "progress.png", dpi=120)
    plt.close(fig)
    print(f"{out / 'pareto.png'}\n{out / 'progress.png'}")
    return 0
