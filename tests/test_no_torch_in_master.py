"""The master (and everything it imports) must not import torch, nor MPI in local mode."""

from __future__ import annotations

import subprocess
import sys

MASTER_MODULES = [
    "menndl",
    "menndl.cli",
    "menndl.commands.run",
    "menndl.commands.check",
    "menndl.job",
    "menndl.launch",
    "menndl.protocol",
    "menndl.master",
    "menndl.master.search",
    "menndl.master.evolution",
    "menndl.master.stopping",
    "menndl.worker.devices",
    "menndl.master.nondominated",
    "menndl.master.scale",
    "menndl.transport.simulated",
    "menndl.commands.simulate",
    "menndl.bench.scheduler",
    "menndl.worker.sleep",
    "menndl.genome",
    "menndl.genome.table",
    "menndl.data",
    "menndl.library",
    "menndl.library.writer",
    "menndl.library.reader",
    "menndl.library.journal",
    "menndl.library.recover",
    "menndl.library.query",
    "menndl.library.merge",
    "menndl.library.status",
    "menndl.library.export",
    "menndl.master.resume",
    "menndl.library.stored",
    "menndl.library.columns",
    "menndl.library.state",
    "menndl.library.fold_process",
    "menndl.library.folding_writer",
    "menndl.genome.table",
    "menndl.commands.library",
    "menndl.commands.export",
    "menndl.commands.train",
    "menndl.commands.plot",
    "menndl.bench.library",
    "menndl.transport.local",
    "menndl.transport.mpi",
    "menndl.worker",
]


def test_master_modules_do_not_import_torch() -> None:
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
