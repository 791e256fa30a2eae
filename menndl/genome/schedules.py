"""Learning-rate schedules of :class:`~menndl.genome.genome.TrainParams`, as plain functions (no torch)."""

from __future__ import annotations

import math

WARMUP_FRACTION = 0.05  # warmup_cosine: linear warmup over the first 5% of the steps


def learning_rate_factor(schedule: str, progress: float) -> float:
    """Multiplier of the peak learning rate at ``progress`` through training.

    ``constant``: 1.  ``cosine``: half a cosine from 1 to 0.  ``step``: 1,
    then 0.1 from 50% and 0.01 from 75% of the steps.  ``warmup_cosine``:
    linear from 0 over the first 5%, then cosine to 0.

    Args:
        schedule: One of :data:`menndl.genome.genome.SCHEDULES`.
        progress: Fraction of the planned optimizer steps done, in ``[0, 1]``.

    Returns:
        The factor, in ``[0, 1]``.

    Raises:
        ValueError: For an unknown schedule.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01
    if schedule == "warmup_cosine":
        if progress < WARMUP_FRACTION:
            return progress / WARMUP_FRACTION
        rest = (progress - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
        return 0.5 * (1.0 + math.cos(math.pi * rest))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")
