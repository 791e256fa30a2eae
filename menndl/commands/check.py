"""``menndl check JOB``: validate a job and its dataset, describe the search, run nothing."""

from __future__ import annotations

import argparse

from menndl.commands.common import check_strategy, inspect_data, measurable
from menndl.genome import InputSpec
from menndl.job import Job, load_job
from menndl.tasks import loss_for

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
    transport_workers = _workers_per_node(job)
    report = inspect_data(job, workers_per_node=transport_workers)
    job = job.for_task(report.task)
    spec, fingerprint, summary = report.spec, report.fingerprint, report.summary
    search, training = job.search, job.training
    budget = " or ".join(
        part
        for part in (
            f"{search.evaluations} evaluations" if search.evaluations else "",
            f"{search.time_limit:g} s" if search.time_limit else "",
            f"{search.epoch_budget} training epochs" if search.epoch_budget else "",
        )
        if part
    )
    print(f"{job.path}: ok")
    print(f"  data:     {summary} (fingerprint {fingerprint[:12]})")
    mean = ", ".join(f"{m:.4g}" for m in report.stats.mean)
    std = ", ".join(f"{s:.4g}" for s in report.stats.std)
    print(f"  checked:  every sample in {report.seconds:.1f}s; per-channel mean [{mean}], std [{std}]")
    if report.task == "regression":
        mean = ", ".join(f"{m:.4g}" for m in report.target_mean)
        std = ", ".join(f"{s:.4g}" for s in report.target_std)
        print(f"  targets:  standardised with the training split's mean [{mean}], std [{std}]")
    if report.task == "segmentation":
        ignore = "none" if report.ignore_label is None else str(report.ignore_label)
        weights = ", ".join(f"{w:.3g}" for w in report.class_weights) or "none"
        print(f"  masks:    {report.spec.num_classes} classes per pixel; ignored label {ignore}; class weights "
              f"[{weights}]")  # fmt: skip
    print(
        f"  place:    {report.placement.name} ({report.placement.reason}; {transport_workers} workers per node "
        f"assumed; data.cache_bytes {job.data.cache_bytes / 2**20:.0f} MiB)"
    )
    if job.augment.active:
        augment = job.augment
        parts = [f"flips along axes {list(augment.flip_axes)}" if augment.flip_axes else "",
                 f"crops with padding {augment.crop_padding}" if augment.crop_padding else "",
                 f"noise std {augment.noise_std:g}" if augment.noise_std else ""]  # fmt: skip
        print(f"  augment:  {', '.join(p for p in parts if p)} (training batches, on the device)")
    selection = search.selection
    if selection == "nsga3":
        from menndl.master.survival import reference_points

        points = reference_points(len(search.objectives), search.population, search.reference_divisions,
                                  search.reference_points)  # fmt: skip
        selection += f" ({len(points)} reference points{'' if search.reference_points else ', Das-Dennis'})"
    print(
        f"  search:   {budget}; population {search.population}; objectives {', '.join(search.objectives)}; "
        f"strategy {search.strategy}, selection {selection}"
    )
    limits = [f"max_{column} {value:g}" for column, value in search.limits.items()]
    answers = measurable(job)
    measure = job.measure
    print(
        f"  measure:  {', '.join(job.measurements) or 'nothing beyond training'}"
        + (f" (limits {', '.join(limits)})" if limits else "")
        + f"; at batch 1 and {measure.batch_size}, {measure.seconds:g} s each, precision {measure.precision}, "
        + f"runtime {measure.runtime}; "
        + "here: "
        + "; ".join(f"{kind} {answer}" for kind, answer in answers.items())
    )
    print(
        f"  training: {training.epochs} epochs or {training.max_seconds:g} s per candidate; "
        f"precision {training.precision}, device {training.device}, loss {loss_for(report.task, training.loss)} "
        f"({report.task})"
    )
    if search.rungs > 1 or search.inherit_weights:
        from menndl.fidelity import ladder

        steps = ", ".join(map(str, ladder(training.epochs, search.rungs, search.reduction_factor)))
        rungs = (f"{search.rungs} rungs (epochs {steps} of a whole budget), the best 1/{search.reduction_factor} of "
                 "each promoted" if search.rungs > 1 else "every candidate trains its whole budget")  # fmt: skip
        inherit = "; children start from their parent's weights" if search.inherit_weights else ""
        print(f"  rungs:    {rungs}{inherit}; checkpoints beside the library (LIB.h5.checkpoints)")
    if training.early_stopping:
        fractions = ", ".join(f"{f:g}" for f in training.early_stopping_fractions)
        print(
            f"  stopping: below the {training.early_stopping_quantile:g} quantile at {fractions} of the budget, "
            f"after {training.early_stopping_min_results} results"
        )
    print(f"  space:    {_space_sample(job, spec)}")
    print(f"  blocks:   {_space_choices(job, spec)}")
    return 0


def _workers_per_node(job: Job) -> int:
    """Workers per node a run would have here: the launcher's count under MPI, else the local default."""
    from menndl.commands.run import default_local_workers
    from menndl.launch import launcher_size, ranks_per_node

    if launcher_size() > 1:
        return max(1, ranks_per_node() - 1)
    return default_local_workers(job.training.device)


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
