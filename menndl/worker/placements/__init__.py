"""Where a worker keeps the samples: `DevicePlacement`, `NodePlacement`, `StreamPlacement` behind `Placement`."""

from __future__ import annotations

from menndl.worker.placements.base import Placement, open_placement

__all__ = ["Placement", "open_placement"]
