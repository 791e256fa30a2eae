"""``menndl check JOB``: validate a job and its dataset, describe the search, run nothing."""

from __future__ import annotations

import argparse

from menndl.commands.common import check_strategy, inspect_data
from menndl.genome import InputSpec
from menndl.job import Job, load_job

HELP = "validate a job and its dataset without running anything (before you queue a batch job)"


def add_arguments(check: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl check``."""
    check.description = (
        "Validate a job file and its dataset exactly as 'run' would, print what the search would "
        "do, and exit 0; or print the first problem on one line and exit 2."
    )
    check.add_argument("job", help="job file (TOML)")


def main(args: argparse.Namespace) -> int:
    """``menndl check``: validate the job and its data, describe the search, run nothing."""
    job = load_job(args.job)
    check_strategy(job)
    spec, fingerprint, summary = inspect_data(job)
    search, training = job.search, job.training
    budget = " or ".join(
        part
        for part in (
            f"{search.evaluations} evaluations" if search.evaluations else "",
            f"{search.time_limit:g} s" if search.time_limit else "",
        )
        if part
    )
    print(f"{job.path}: ok")
    print(f"  data:     {summary} (fingerprint {fingerprint[:12]})")
    print(
        f"  search:   {budget}; population {search.population}; objectives {', '.join(search.objectives)}; "
        f"strategy {search.strategy}"
    )
    print(
        f"  training: {training.epochs} epochs or {training.max_seconds:g} s per candidate; "
        f"precision {training.precision}, device {training.device}"
    )
    if training.early_stopping:
        fractions = ", ".join(f"{f:g}" for f in training.early_stopping_fractions)
        print(
            f"  stopping: below the {training.early_stopping_quantile:g} quantile at {fractions} of the budget, "
            f"after {training.early_stopping_min_results} results"
        )
    print(f"  space:    {_space_sample(job, spec)}")
    print(f"  blocks:   {_space_choices(job, spec)}")
    return 0


def _space_choices(job: Job, spec: InputSpec) -> str:
    """Block types and the conv choices in force for this input's rank (rank defaults filled in)."""
    from menndl.genome import resolve_space

    space = resolve_space(job.space, spec.spatial_rank)

    def listed(values: tuple[int, ...] | None) -> str:
        return "[" + ", ".join(str(v) for v in values or ()) + "]"

    return (
        f"{', '.join(space.block_types)}; kernels {listed(space.kernels)}, strides {listed(space.strides)}, "
        f"dilations {listed(space.dilations)}, filters {listed(space.filters)} ({spec.spatial_rank}-D input)"
    )


def _space_sample(job: Job, spec: InputSpec, samples: int = 200) -> str:
    """Parameter counts of random architectures from the job's space, to sanity-check its bounds."""
    import random

    from menndl.genome import count_params, random_genome

    rng = random.Random(job.seed)
    sizes = sorted(count_params(random_genome(rng, job.space, spec), spec) for _ in range(samples))
    return (
        f"{samples} random architectures have {_human(sizes[0])} to {_human(sizes[-1])} parameters "
        f"(median {_human(sizes[len(sizes) // 2])})"
    )


def _human(count: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)
