"""A candidate's training budget in epochs and its ladder of rungs (plain Python: master and worker share it).

A genome's ``train.budget`` is a fraction of the job's ``training.epochs`` (and ``max_seconds``):
`budget_epochs` is the one rounding of it.  With ``search.rungs = R`` and ``search.reduction_factor = f``
the candidate is trained in steps, a rung at a time: rung ``r`` ends after about ``E / f**(R - 1 - r)``
of its ``E`` epochs (`ladder`), so the lowest of three rungs of a 10-epoch candidate is 1 epoch, the next
3, the top 10.  The ladder is strictly increasing and ends at ``E``: a candidate whose budget is too small
for every rung has fewer (one of 2 epochs stops at rung 1, its whole budget).
"""

from __future__ import annotations

import math

__all__ = ["budget_epochs", "ladder", "rung_seconds"]


def budget_epochs(budget: float, epochs: int) -> int:
    """The epochs of a genome's whole budget: ``budget * epochs`` rounded half up, at least 1."""
    return max(1, math.floor(budget * epochs + 0.5))


def ladder(full_epochs: int, rungs: int, factor: int) -> tuple[int, ...]:
    """The epochs trained in all at the end of each rung, lowest first, ending at ``full_epochs``.

    Args:
        full_epochs: the candidate's whole budget (`budget_epochs`, >= 1).
        rungs: ``search.rungs`` (>= 1).
        factor: ``search.reduction_factor`` (>= 2).

    Returns:
        ``rungs`` values or fewer, strictly increasing, the last ``full_epochs``.
    """
    targets: list[int] = []
    for rung in range(rungs):
        target = max(1, math.floor(full_epochs / factor ** (rungs - 1 - rung) + 0.5))
        target = min(full_epochs, max(target, targets[-1] + 1 if targets else 1))
        targets.append(target)
        if target == full_epochs:
            break
    return tuple(targets)


def rung_seconds(max_seconds: float, full_epochs: int, done_epochs: int, target_epochs: int) -> float:
    """The time budget of training from ``done_epochs`` to ``target_epochs``: the same share of ``max_seconds``."""
    return max_seconds * (target_epochs - done_epochs) / full_epochs
