"""End to end: a search on measured latency, with a latency limit and NSGA-III, real workers and training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_menndl

from menndl.library import Library

pytestmark = pytest.mark.timeout(300)

JOB = """
name = "latency"
seed = 2

[data]
source = "digits"

[search]
population = 4
evaluations = 10
objectives = ["accuracy", "params", "latency", "train_seconds"]
selection = "nsga3"
max_latency = {limit}

[space]
max_features = 3
max_head = 1
filters = [4, 32]
dense_units = [8, 64]

[training]
epochs = 1
max_seconds = 5

[measure]
seconds = 0.05
batch_size = 16
record = ["memory"]  # measured and kept, though no objective or limit needs it
"""


def test_search_on_latency_with_a_limit(tmp_path: Path) -> None:
    probe = tmp_path / "probe.toml"  # first: no limit that binds, to learn what latencies this machine gives
    probe.write_text(JOB.format(limit=1.0))
    library = tmp_path / "probe.h5"
    out = run_menndl(["run", str(probe), "--library", str(library), "--workers", "2"], timeout=240)
    assert out.returncode == 0, out.stderr
    with Library.open(library) as lib:
        assert (lib.column("status") == "ok").all(), lib.column("error")
        latency = lib.column("latency")
        assert np.isfinite(latency).all() and (latency > 0).all()
        assert (lib.column("memory") > 0).all() and set(lib.column("inference_precision")) == {"fp32"}
    limit = float(np.median(latency))  # about half of these architectures are over it

    job = tmp_path / "limited.toml"
    job.write_text(JOB.format(limit=limit))
    library = tmp_path / "limited.h5"
    out = run_menndl(["run", str(job), "--library", str(library), "--workers", "2"], timeout=240)
    assert out.returncode == 0, out.stderr
    with Library.open(library) as lib:
        status, latency, epochs = lib.column("status"), lib.column("latency"), lib.column("epochs")
        over = status == "over-limit"
        assert over.any() and (status == "ok").any(), status
        assert (latency[over] > limit).all() and (epochs[over] == 0).all()
        assert (latency[status == "ok"] <= limit).all()
        errors = lib.column("error")[over]
        assert all(text.startswith("latency ") and "search.max_latency" in text for text in errors)
        pareto = set(lib.pareto_ids())
        ids = lib.column("id")
        assert pareto and pareto <= set(ids[status == "ok"].tolist())  # a rejected candidate is never on the front
    out = run_menndl(["library", str(library), "pareto"], timeout=60)
    assert out.returncode == 0 and "latency" in out.stdout.splitlines()[0], out.stderr
    out = run_menndl(["library", str(library), "status"], timeout=60)
    assert "(0 failed)" in out.stdout, out.stdout  # over the limit is the rule working, not a failure
