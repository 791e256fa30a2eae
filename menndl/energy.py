"""Energy counters a worker reads around its work: NVML on an NVIDIA GPU, RAPL on a CPU (no torch).

Both are cumulative hardware counters: the joules spent between two readings
are their difference.  RAPL (``/sys/class/powercap/intel-rapl:N/energy_uj``,
one per CPU package) counts microjoules and wraps at ``max_energy_range_uj``;
it measures the whole package, so other processes on the same socket are
counted too (one worker per socket, or an idle node, gives clean figures).
NVML's ``nvmlDeviceGetTotalEnergyConsumption`` counts millijoules since the
driver loaded (Volta and later) and is updated every few tens of
milliseconds: readings need windows of a second or so.  The master calls
`energy_unavailable` before any worker starts, so that a job asking for an
energy objective on a machine without either counter is refused in one line.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Protocol

RAPL_ROOT = Path("/sys/class/powercap")


class EnergyCounter(Protocol):
    """A cumulative energy counter."""

    source: str  # what is read: "rapl (2 packages)" or "nvml (NVIDIA H100 80GB HBM3)"

    def joules(self) -> float:
        """Joules since an arbitrary origin; the difference of two readings is the energy in between."""
        ...


def rapl_packages(root: Path = RAPL_ROOT) -> list[Path]:
    """The readable RAPL package domains under ``root`` (``intel-rapl:0``, ``intel-rapl:1``, ...)."""
    domains = []
    for name in sorted(glob.glob(str(root / "intel-rapl:*"))):
        path = Path(name)
        if path.name.count(":") != 1:  # intel-rapl:0:0 and the like are sub-domains of a package
            continue
        if os.access(path / "energy_uj", os.R_OK):
            try:
                int((path / "energy_uj").read_text())
            except (OSError, ValueError):
                continue
            domains.append(path)
    return domains


class RaplCounter:
    """The sum of the CPU packages' RAPL counters, each unwrapped at its ``max_energy_range_uj``."""

    def __init__(self, packages: list[Path]) -> None:
        """Read ``packages`` (from `rapl_packages`; at least one)."""
        if not packages:
            raise ValueError("no readable RAPL package domain")
        self.packages = packages
        self.source = f"rapl ({len(packages)} package{'s' if len(packages) > 1 else ''})"
        self._ranges = [_read_int(p / "max_energy_range_uj", default=2**32) for p in packages]
        self._last = [_read_int(p / "energy_uj") for p in packages]
        self._total_uj = 0

    def joules(self) -> float:
        """Joules since this counter was made (a wrap of a package's counter is added back)."""
        for i, path in enumerate(self.packages):
            value = _read_int(path / "energy_uj")
            step = value - self._last[i]
            if step < 0:  # the counter wrapped once since the last reading
                step += self._ranges[i]
            self._total_uj += step
            self._last[i] = value
        return self._total_uj / 1e6


class NvmlCounter:
    """NVML's total energy counter of one GPU (millijoules since the driver loaded)."""

    def __init__(self, uuid: str | None = None, index: int = 0) -> None:
        """The GPU with ``uuid`` (as torch reports it), else the one at NVML index ``index``.

        Raises:
            RuntimeError: pynvml is missing, NVML does not start, or the GPU has no energy counter.
        """
        try:
            import pynvml
        except ImportError:
            raise RuntimeError("NVML is not installed (pip install nvidia-ml-py)") from None
        try:
            pynvml.nvmlInit()
            if uuid:
                text = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(text)
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(self._handle)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except pynvml.NVMLError as exc:
            raise RuntimeError(f"NVML cannot read the GPU's energy counter ({exc})") from None
        self._nvml = pynvml
        self.source = f"nvml ({name.decode() if isinstance(name, bytes) else name})"

    def joules(self) -> float:
        """Joules the GPU has used since the driver loaded."""
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / 1e3


def energy_unavailable(device: str, root: Path = RAPL_ROOT) -> str | None:
    """Why energy cannot be measured for ``training.device`` (``auto``, ``cpu`` or ``cuda``) here, or None.

    ``cuda`` needs NVML with a GPU that has an energy counter; ``cpu`` a readable RAPL package;
    ``auto`` either (the worker takes a GPU when it sees one).
    """
    reasons = []
    if device in ("auto", "cuda"):
        try:
            NvmlCounter()
            return None
        except RuntimeError as exc:
            reasons.append(str(exc))
    if device in ("auto", "cpu"):
        if rapl_packages(root):
            return None
        reasons.append(f"no readable RAPL counter under {root} (intel-rapl:N/energy_uj)")
    return "; ".join(reasons)


def _read_int(path: Path, default: int | None = None) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        if default is None:
            raise
        return default
