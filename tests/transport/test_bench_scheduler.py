"""`menndl bench scheduler` runs the real MPI path end to end and reports its figures (no timing asserted)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_menndl

pytestmark = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs mpiexec")


def test_bench_scheduler_json_has_the_figures(tmp_path: Path) -> None:
    args = ["bench", "scheduler", "--ranks", "3", "--task-seconds", "0.01", "--tasks-per-worker", "5", "--json"]
    out = run_menndl([*args, "--no-futures", "--timeout", "120"], timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["tasks"] == 10 and "error" not in figures["menndl"], figures
    assert 0 < figures["utilization"] <= 1
    assert figures["master_seconds_per_result"] > 0 and figures["results_per_second"] > 0
