"""Torch-free checks of the ``[augment]`` table against the data (``menndl check`` and the worker's `Augmenter`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from menndl.errors import UserError

if TYPE_CHECKING:
    from menndl.job import AugmentConfig

_NAMES = {1: "signals", 2: "images", 3: "volumes"}


def check_augment(config: AugmentConfig, spatial_rank: int) -> None:
    """Raise a one-line UserError when ``config`` does not fit samples with ``spatial_rank`` spatial axes.

    Args:
        config: The job's ``[augment]`` table.
        spatial_rank: Spatial dimensions of one sample (1 for ``(C, L)``, 2 for ``(C, H, W)``, 3 for volumes).

    Raises:
        UserError: A flip axis beyond the samples' spatial axes (axes are numbered from 1), or a spatial rank
            outside 1..3.
    """
    if not 1 <= spatial_rank <= 3:
        raise UserError(f"augment: samples need 1 to 3 spatial dimensions, got {spatial_rank}")
    for axis in config.flip_axes:
        if not 1 <= axis <= spatial_rank:
            valid = ", ".join(str(a) for a in range(1, spatial_rank + 1))
            raise UserError(
                f"augment.flip_axes: axis {axis} does not exist for {spatial_rank}-D samples "
                f"({_NAMES[spatial_rank]}: spatial axes {valid}, numbered from 1 after the channels)"
            )
