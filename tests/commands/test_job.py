"""Job files: defaults, types, ranges and unknown keys, each a one-line UserError."""

from __future__ import annotations

from pathlib import Path

import pytest

from menndl.errors import UserError
from menndl.job import load_job, parse_job

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_shipped_jobs_load(name: str) -> None:
    job = load_job(REPO / "jobs" / f"{name}.toml")
    assert job.name == name and job.data.source == name
    assert job.search.evaluations and job.search.time_limit
    assert job.text.startswith("#")


def test_defaults_fill_missing_tables() -> None:
    job = parse_job('[search]\nevaluations = 5\n', path="x.toml")
    assert job.search.population == 16 and job.training.epochs == 10 and job.space.max_features == 6
    assert job.name == "x"


def test_overrides_apply_and_validate() -> None:
    job = parse_job("[search]\nevaluations = 5\n").with_overrides(evaluations=9, time_limit=3.5, seed=7)
    assert (job.search.evaluations, job.search.time_limit, job.seed) == (9, 3.5, 7)
    with pytest.raises(UserError, match="--evaluations"):
        job.with_overrides(evaluations=0)
    with pytest.raises(UserError, match="--time-limit"):
        job.with_overrides(time_limit=float("nan"))
    with pytest.raises(UserError, match="--seed"):
        job.with_overrides(seed=10**20)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[search]\nevaluations = 5\nbogus = 1\n", "unknown key 'search.bogus'"),
        ("colour = 'red'\n", "unknown key 'colour'"),
        ('[search]\npopulation = "ten"\nevaluations = 5\n', "search.population: expected an integer, got string 'ten'"),
        ("[search]\npopulation = 1\nevaluations = 5\n", "search.population: expected an integer >= 2"),
        ("[search]\nevaluations = true\n", "search.evaluations: expected an integer, got boolean"),
        ("[search]\nevaluations = 5\nobjectives = ['speed']\n", "unknown objective 'speed'"),
        ("[search]\npopulation = 4\n", "search: set evaluations, time_limit or epoch_budget (or more)"),
        ("[training]\nprecision = 'fp8'\n[search]\nevaluations = 3\n", "training.precision: expected one of"),
        ("[space]\nkernels = [2]\n[search]\nevaluations = 3\n", "space.kernels"),
        ("[space]\nfilters = 8\n[search]\nevaluations = 3\n", "space.filters: expected an array"),
        ("[space]\nfilters = [8]\n[search]\nevaluations = 3\n", "space.filters: expected an array of 2 values"),
        ("search = 3\n", "'search' must be a table"),
        ("[data]\nvalidation_fraction = 1.5\n[search]\nevaluations = 3\n", "data.validation_fraction"),
        ("[search\n", "not valid TOML"),
        ("[search]\ntime_limit = nan\n", "search.time_limit: expected a finite number"),
        ("[training]\nmax_seconds = inf\n[search]\nevaluations = 3\n", "training.max_seconds: expected a finite"),
        ("seed = -1\n[search]\nevaluations = 3\n", "seed: expected an integer in [0, 2**63 - 1]"),
    ],
)
def test_bad_jobs_name_file_and_key(text: str, expected: str) -> None:
    with pytest.raises(UserError) as error:
        parse_job(text, path="jobs/bad.toml")
    message = str(error.value)
    assert message.startswith("jobs/bad.toml: ") and expected in message
    assert "\n" not in message


def test_missing_and_directory_job_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="job file not found"):
        load_job(tmp_path / "none.toml")
    with pytest.raises(UserError, match="is a directory"):
        load_job(tmp_path)


def test_search_scale_keys() -> None:
    job = parse_job(
        "[search]\nevaluations = 5\nmax_params = 10000\nmax_flops = 99999\naging = true\ntask_deadline = 12.5\n"
        "prefetch = 0\nrerank_interval = 7\n"
    )
    search = job.search
    assert (search.max_params, search.max_flops, search.aging, search.task_deadline) == (10000, 99999, True, 12.5)
    assert search.prefetch == 0 and search.rerank_interval == 7
    default = parse_job("[search]\nevaluations = 5\n").search
    assert default.prefetch == 1 and default.aging is False and default.max_params is None


@pytest.mark.parametrize(
    "line, message",
    [
        ("max_params = 0", "search.max_params: expected an integer >= 1, got 0"),
        ("task_deadline = -1", "search.task_deadline: expected seconds > 0"),
        ("prefetch = true", "search.prefetch: expected an integer, got boolean"),
        ("prefetch = -1", "search.prefetch: expected an integer >= 0"),
        ("rerank_interval = 0", "search.rerank_interval: expected an integer >= 1"),
    ],
)
def test_search_scale_keys_rejected(line: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_job(f"[search]\nevaluations = 5\n{line}\n", path="j.toml")
