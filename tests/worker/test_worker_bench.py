"""``menndl bench worker --json`` prints one JSON object with the figures the issue asks for (not a timing test)."""

from __future__ import annotations

import json

import pytest
from conftest import run_menndl

pytestmark = pytest.mark.timeout(180)


def test_bench_worker_prints_one_json_object() -> None:
    out = run_menndl(["bench", "worker", "--json", "--rounds", "1", "--epochs", "1"], timeout=170)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert {"ratio", "worker_samples_per_second", "plain_samples_per_second"} <= set(figures)
    assert figures["ratio"] == pytest.approx(figures["worker_samples_per_second"] / figures["plain_samples_per_second"])
    assert figures["worker_samples_per_second"] > 0 and figures["plain_samples_per_second"] > 0
