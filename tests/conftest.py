"""Shared helpers: run the real ``menndl`` command in a subprocess, under a hard timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# oneDNN's AVX-512 convolution kernels corrupt the heap on this suite's CPUs: the full run
# aborted 4 times in 4 with glibc's "double free or corruption (!prev)" inside
# mkldnn_convolution_backward_weights (3-D convolutions in tests/genome), and passed with
# oneDNN held to AVX2. Set before any test imports torch; subprocesses inherit it.
# See docs/faults.md, "oneDNN on AVX-512 CPUs".
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

TINY_JOB = """
name = "tiny"
seed = 1

[data]
source = "{source}"

[search]
population = 4
evaluations = 6

[space]
max_features = 3
max_head = 1
filters = [4, 16]
dense_units = [8, 32]

[training]
epochs = 2
max_seconds = 5
"""


def menndl_env() -> dict[str, str]:
    """The environment for subprocesses: this venv's bin first, no launcher variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_menndl(args: list[str], *, timeout: float, cwd: Path | None = None, launcher: list[str] | None = None):
    """Run ``menndl ARGS`` (optionally under a launcher such as mpiexec); kill it after ``timeout`` s."""
    command = [*(launcher or []), str(BIN / "menndl"), *args]
    return subprocess.run(
        command, cwd=cwd or REPO, env=menndl_env(), capture_output=True, text=True, timeout=timeout
    )


def refused(capsys: pytest.CaptureFixture[str], job: Path, command: str = "check") -> str:
    """``menndl check JOB`` (or run) in this process: exit 2, one ``menndl: error:`` line, no output, nothing
    written (no library beside the job), so no worker started; returns the line."""
    from menndl.cli import main

    status = main([command, str(job), *(["--library", str(job.with_suffix(".h5"))] if command == "run" else [])])
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("menndl: error: ") and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    assert not job.with_suffix(".h5").exists()
    return lines[0]


@pytest.fixture
def tiny_job(tmp_path: Path) -> Path:
    """A job small enough for tests: 6 evaluations of 2 epochs on the digits."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_JOB.format(source="digits"))
    return path
