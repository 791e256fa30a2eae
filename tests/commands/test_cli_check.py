"""``menndl check``: validate a job and its data without running a search."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, run_menndl

pytestmark = pytest.mark.timeout(120)


def test_check_describes_a_valid_job_and_writes_nothing(tmp_path: Path) -> None:
    out = run_menndl(["check", str(REPO / "jobs" / "digits.toml")], timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("digits.toml: ok")
    assert "input (1, 8, 8) float32, 10 classes" in out.stdout and "120 evaluations or 240 s" in out.stdout
    assert "random architectures have" in out.stdout
    assert "kernels [1, 3, 5], strides [1, 2], dilations [1, 2]" in out.stdout  # 2-D rank defaults filled in
    assert list(tmp_path.iterdir()) == []  # no library, no results folder


def test_check_reports_the_first_problem_in_one_line(tmp_path: Path) -> None:
    job = tmp_path / "bad.toml"
    job.write_text('[data]\nsource = "absent.npz"\n[search]\nevaluations = 3\n')
    out = run_menndl(["check", str(job)], timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "absent.npz" in out.stderr
