"""The master (and everything it imports) must not import torch, nor MPI in local mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TORCH_MODULES = {  # the modules that are meant to load torch when imported (worker side, training, decoding)
    "menndl.genome.decode",
    "menndl.worker.trainer",
    "menndl.worker.numerics",
    "menndl.worker.measure",
    "menndl.worker.hardware_cost",
    "menndl.worker.onnx_runtime",
    "menndl.worker.targets",
    "menndl.worker.faults",
    "menndl.worker.augment",
    "menndl.worker.checkpoint",
    "menndl.worker.inherit",
    "menndl.worker.placements",
    "menndl.worker.placements.base",
    "menndl.worker.placements.device",
    "menndl.worker.placements.node",
    "menndl.worker.placements.staging",
    "menndl.worker.placements.stream",
    "menndl.bench.worker",
}
PACKAGE = Path(__file__).resolve().parent.parent / "menndl"


def _all_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


MASTER_MODULES = [name for name in _all_modules() if name not in TORCH_MODULES]


def test_master_modules_do_not_import_torch() -> None:
    """Every module but `TORCH_MODULES` (and so every module the master uses) imports without torch or MPI."""
    assert len(MASTER_MODULES) > 60 and "menndl.master.search" in MASTER_MODULES
    code = (
        "import sys, importlib\n"
        f"for name in {MASTER_MODULES!r}: importlib.import_module(name)\n"
        "import menndl.cli; menndl.cli.build_parser()\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m.startswith('mpi4py.MPI'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"master imports pulled in: {out.stdout.strip()}"


def test_the_trainer_does_import_torch() -> None:
    """The check above can fail: the worker's trainer really loads torch."""
    code = "import sys, menndl.worker.trainer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
