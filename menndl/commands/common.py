"""Helpers shared by several subcommands."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from menndl.data import Dataset, open_configured
from menndl.data.augment_check import check_augment
from menndl.data.placement import PlacementChoice, choose_placement
from menndl.data.scan import ChannelStats, scan_dataset
from menndl.errors import UserError
from menndl.genome import InputSpec
from menndl.job import Job
from menndl.tasks import class_weights_for

#: Seconds between progress lines of a long data check.
CHECK_PROGRESS_SECONDS = 10.0


def load_job_data(job: Job) -> Dataset:
    """The job's dataset, opened and split as its ``[data]`` table says (raises UserError for bad data)."""
    import dataclasses

    return open_configured(dataclasses.asdict(job.data), job.base_dir)


@dataclass(frozen=True)
class DataReport:
    """What the master's check of the job's data found; the workers get `facts`.

    Attributes:
        spec: The input shape and the outputs per sample (classes, or regression targets).
        task: What the labels are (`menndl.tasks.TASKS`): ``data.task``, or what the labels say.
        target_mean: Mean of each regression target over the training split (empty for classification).
        target_std: Their standard deviations (what the worker standardises the targets with).
        class_weights: The per-class loss weights of a segmentation (``training.class_weights``), or empty.
        ignore_label: The segmentation masks' ignored label, or None.
        fingerprint: The content fingerprint (recorded in the library).
        identity: What a worker checks cheaply (`menndl.data.Dataset.identity`).
        stats: The training split's per-channel mean and standard deviation.
        placement: Where workers keep the data.
        summary: One line describing the data.
        seconds: How long the check took.
        search_bytes: Bytes of the training and validation samples in memory.
    """

    spec: InputSpec
    fingerprint: str
    identity: str
    stats: ChannelStats
    placement: PlacementChoice
    summary: str
    seconds: float
    search_bytes: int
    task: str = "classification"
    target_mean: tuple[float, ...] = ()
    target_std: tuple[float, ...] = ()
    class_weights: tuple[float, ...] = ()
    ignore_label: int | None = None

    def facts(self) -> dict[str, Any]:
        """The setup message's ``data_facts``: what every worker needs to open and use the data as checked."""
        return {
            "fingerprint": self.fingerprint,
            "identity": self.identity,
            "placement": self.placement.name,
            **self.stats.as_dict(),
        }


def inspect_data(job: Job, *, workers_per_node: int = 1, quiet: bool = False) -> DataReport:
    """Open and check the job's dataset on the master in one streaming pass, and choose its placement.

    Memory stays bounded (a few blocks) whatever the file's size; a check of more than
    `CHECK_PROGRESS_SECONDS` reports its progress on stderr unless ``quiet``.

    Args:
        job: The job.
        workers_per_node: Worker processes per node (to size the placement).
        quiet: No progress lines.

    Returns:
        The report.

    Raises:
        UserError: the data is missing, malformed, holds NaN or infinity, a label out of range, an unreadable
            chunk, or cannot be placed as asked; or the job's objectives or loss do not fit its task (check
            the job for the data's task with `Job.for_task`).
    """
    started = time.perf_counter()
    last = [started]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if not quiet and now - last[0] >= CHECK_PROGRESS_SECONDS:
            last[0] = now
            print(f"menndl: checking data: {done / 2**30:.1f} of {total / 2**30:.1f} GiB in {now - started:.0f}s",
                  file=sys.stderr, flush=True)  # fmt: skip

    with load_job_data(job) as data:
        job.for_task(data.task)  # objectives and loss of another task: one line, before the pass over the data
        spec = InputSpec(shape=tuple(data.input_shape), num_classes=data.outputs, task=data.task)
        target_mean, target_std = data.target_stats()
        try:
            check_augment(job.augment, spec.spatial_rank)
            weights = class_weights_for(job.training.class_weights, data.class_pixels())
        except ValueError as exc:
            raise UserError(f"{job.path}: {exc}") from None
        scan = scan_dataset(data, progress=progress)
        search_bytes = data.split_bytes("train", "val")
        placement = choose_placement(job.data.placement, search_bytes=search_bytes, workers_per_node=workers_per_node)
        return DataReport(
            spec=spec,
            fingerprint=scan.fingerprint,
            identity=data.identity(),
            stats=scan.stats,
            placement=placement,
            summary=data.summary(),
            seconds=time.perf_counter() - started,
            search_bytes=search_bytes,
            task=data.task,
            target_mean=target_mean,
            target_std=target_std,
            class_weights=weights or (),
            ignore_label=data.ignore_label,
        )


def measurable(job: Job) -> dict[str, str]:
    """Each measurement the job's objectives and limits could use -> "yes (how)" or why not, on this machine.

    Read without torch (the master never imports it): energy from `menndl.energy.energy_unavailable`;
    latency and memory wherever torch runs, except half precision on a CPU.
    """
    from menndl.energy import energy_unavailable
    from menndl.job import missing_runtime_packages

    device, precision = job.training.device, job.measure.precision
    on_cpu = device == "cpu"
    half = precision == "fp16" or (precision == "training" and job.training.precision == "fp16")
    refused = 'no: fp16 inference on the CPU (training.device = "cpu"); set measure.precision'
    energy = energy_unavailable(device)
    latency = refused if on_cpu and half else "yes (torch.utils.benchmark on the worker's device)"
    if job.measure.runtime == "onnxruntime":
        missing = missing_runtime_packages("onnxruntime")
        if device == "cuda":
            latency = 'no: measure.runtime = "onnxruntime" runs on the CPU only (training.device = "cuda")'
        elif missing:
            latency = f'no: measure.runtime = "onnxruntime" needs {", ".join(missing)} (pip install "menndl[export]")'
        else:
            latency = "yes (ONNX Runtime on the CPU, timed by torch.utils.benchmark)"
    return {
        "latency": latency,
        "memory": refused
        if on_cpu and half
        else "yes (the CUDA allocator or torch's MemTracker on the worker's device)",
        "energy": "yes" if energy is None else f"no: {energy}",
    }


def check_measurable(job: Job) -> None:
    """Raise UserError when an objective, a ``search.max_*`` limit or ``measure.record`` needs a measurement
    this machine cannot make (energy without NVML or RAPL, fp16 latency on a CPU)."""
    from menndl.objectives import MEASUREMENTS

    needed = job.measurements
    if not needed:
        return
    answers = measurable(job)
    for kind in needed:
        if answers[kind].startswith("no"):
            users = [f"search.objectives '{name}'" for name in job.search.objectives if MEASUREMENTS.get(name) == kind]
            users += [f"search.max_{column}" for column in job.search.limits if MEASUREMENTS[column] == kind]
            users += ["measure.record"] if kind in job.measure.record else []
            raise UserError(f"{job.path}: {users[0]}: {kind} is not measurable on this machine ({answers[kind][4:]})")


def check_strategy(job: Job) -> None:
    """Raise UserError when the job's ``search.strategy`` needs a package that is not installed, or its
    objectives and limits a measurement this machine cannot make (`check_measurable`)."""
    check_measurable(job)
    if job.search.strategy == "optuna":
        from menndl.master.optuna_proposer import optuna_available

        if not optuna_available():
            raise UserError(
                f'{job.path}: search.strategy = "optuna" needs the optuna package, which is not installed '
                "(pip install optuna)"
            )
