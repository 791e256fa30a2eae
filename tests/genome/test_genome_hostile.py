"""Genomes and jobs from files: hostile or odd values give a clear ValueError/UserError, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from menndl.errors import UserError
from menndl.genome import Genome, SearchSpace
from menndl.job import load_job

V1 = {
    "features": [{"type": "conv", "filters": 8, "kernel": 3, "activation": "relu", "batch_norm": False}],
    "head": [],
    "train": {"learning_rate": 0.01, "batch_size": 32, "optimizer": "sgd", "weight_decay": 0.0},
}


def test_deeply_nested_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        Genome.from_json("[" * 100_000)


def test_a_number_too_large_for_a_float_is_a_value_error() -> None:
    text = json.dumps(V1).replace('"learning_rate": 0.01', '"learning_rate": 1' + "0" * 400)
    with pytest.raises(ValueError, match="learning_rate"):
        Genome.from_json(text)
    with pytest.raises(ValueError, match="max_dropout"):
        SearchSpace(max_dropout=10**400)


def test_negative_zero_hashes_like_zero() -> None:
    minus = json.loads(json.dumps(V1))
    minus["train"]["weight_decay"] = -0.0
    assert Genome.from_dict(minus).hash == Genome.from_dict(V1).hash


def test_batch_size_one_is_rejected_it_would_train_nothing() -> None:
    one = json.loads(json.dumps(V1))
    one["train"]["batch_size"] = 1
    with pytest.raises(ValueError, match="batch_size"):
        Genome.from_dict(one)
    with pytest.raises(ValueError, match="batch_sizes"):
        SearchSpace(batch_sizes=[1, 32])


def test_format_1_upgrade_fills_defaults_without_overwriting_given_values() -> None:
    genome = Genome.from_dict(V1)
    conv = genome.features[0]
    assert (conv.stride, conv.dilation, conv.dropout) == (1, 1, 0.0)
    assert (genome.train.momentum, genome.train.schedule, genome.train.budget) == (0.9, "constant", 1.0)
    given = json.loads(json.dumps(V1))
    given["features"][0].update(dilation=2, dropout=0.25)
    given["train"].update(momentum=0.5)
    genome = Genome.from_dict(given)
    assert (genome.features[0].dilation, genome.features[0].dropout, genome.train.momentum) == (2, 0.25, 0.5)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_seconds = 1" + "0" * 400, "training.max_seconds: expected a finite number"),
        ("max_seconds = 1e12", "training.max_seconds: expected seconds in (0, 1e+07]"),
    ],
)
def test_absurd_candidate_budgets_are_user_errors(tmp_path: Path, line: str, expected: str) -> None:
    job = tmp_path / "j.toml"
    job.write_text(f"[search]\nevaluations = 2\n[training]\n{line}\n")
    with pytest.raises(UserError) as err:
        load_job(job)
    assert expected in str(err.value) and str(job) in str(err.value)
