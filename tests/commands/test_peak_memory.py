"""benchmarks/peak_memory.py: the command's exit status passes through, its tree's peaks are recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)

CHILDREN = """
import subprocess, sys, time
import numpy as np
kept = np.ones(40 * 2**20, np.uint8)
child = subprocess.Popen([sys.executable, "-c", "import numpy, time; a = numpy.ones(30 * 2**20, 'u1'); time.sleep(1)"])
time.sleep(0.6)
child.wait()
sys.exit(3)
"""


def test_peaks_and_exit_status(tmp_path: Path) -> None:
    out = tmp_path / "peaks.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "peak_memory.py"), "--interval", "0.05", "--json", str(out), "--",
         sys.executable, "-c", CHILDREN],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    figures = json.loads(out.read_text())
    assert figures["returncode"] == 3 and figures["killed_by"] == ""
    assert len(figures["processes"]) >= 2
    top = figures["processes"][0]
    assert top["uss"] > 40 * 2**20 and top["rss"] >= top["uss"] and top["ended"] == "exit 3"
    assert figures["peak_sum_uss"] >= top["uss"]
    assert "total = sum USS + shm" in done.stderr


def test_killed_command_reports_the_signal(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "peak_memory.py"), "--", sys.executable, "-c",
         "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert done.returncode == 128 + 9
    assert "signal SIGKILL" in done.stderr
