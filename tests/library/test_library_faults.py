"""kill -9 a real local search at random instants; every time the library opens, --resume completes
the budget, and no finished evaluation is lost or trained twice (benchmarks/library_faults.py does 20)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from library_faults import run_faults  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_three_kills_then_resume_completes_the_budget() -> None:
    """3 kills (the script's 20 take minutes); run_faults raises on any lost, changed or repeated row."""
    result = run_faults(kills=3, evaluations=10, seed=1)
    assert result["final_rows"] == 10 and result["distinct_hashes"] == 10
    assert result["kills"] >= 1
    assert result["journal_left"] is False
