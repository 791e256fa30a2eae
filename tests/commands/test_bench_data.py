"""``menndl bench data`` end to end: every placement that exists trains and reports positive samples/s."""

from __future__ import annotations

import json

import pytest
from conftest import run_menndl

pytest.importorskip("torch")
pytestmark = pytest.mark.timeout(300)


def test_bench_data_json_reports_each_placement() -> None:
    done = run_menndl(
        ["bench", "data", "--source", "digits", "--steps", "5", "--warmup", "1", "--threads", "1",
         "--placements", "device", "node", "stream", "--cache-bytes", "64K", "--json"],
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    placements = figures["placements"]
    assert set(placements) == {"device", "node", "stream"}
    assert placements["device"]["status"] == "ok", placements["device"]
    for name, p in placements.items():
        if p["status"] == "unavailable":  # its module is not written yet: reported, not a crash
            assert f"placement {name} not available" in p["error"]
            continue
        assert p["status"] == "ok", (name, p)
        assert p["samples_per_second"] > 0
        assert p["peak_rss_bytes"] > 0
        assert p["ratio_to_device"] > 0
        assert p["runs"][0]["samples"] == 5 * 64


def test_bench_data_table() -> None:
    done = run_menndl(["bench", "data", "--steps", "3", "--warmup", "1", "--threads", "1", "--placements", "device"],
                      timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("device ")]
    assert len(rows) == 1
    assert float(rows[0].split()[1]) > 0
    assert "samples/s" in done.stdout and "peak RSS" in done.stdout
