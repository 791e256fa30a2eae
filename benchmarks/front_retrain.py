"""What `regression_check.py` and `segmentation_check.py` share: the front members they retrain, and how.

Not a benchmark itself.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def front_choices(library: str, score: str, size_limit: float) -> dict[str, dict[str, Any]]:
    """The (``score``, params) front's best member within ``size_limit`` parameters (``similar``), if any,
    and its best overall (``best``), by ``score``."""
    from menndl.library import Library
    from menndl.library.query import pareto_front

    with Library.open(library) as lib:
        rows = lib.rows(pareto_front(lib, [score, "params"]).tolist())
    similar = [row for row in rows if row["params"] <= size_limit]
    choices = {"best": max(rows, key=lambda row: row[score])}
    if similar:
        choices["similar"] = max(similar, key=lambda row: row[score])
    return choices


def retrain(library: str, eval_id: int, epochs: int, seed: int, output: Path) -> dict[str, Any]:
    """``menndl train LIB ID --epochs E --seed S --json``: its result."""
    command = ["menndl", "train", library, str(eval_id), "--epochs", str(epochs), "--seed", str(seed), "--json",
               "-o", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
