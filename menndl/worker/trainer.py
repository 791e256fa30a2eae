"""Train one candidate within its budget and measure it (the only torch-heavy module).

The worker opens the dataset once and keeps it where its `Placement` says (resident, one shared copy per
node, or streamed from the file); batches arrive on the device as stored and are converted, standardised
with the checked per-channel statistics and augmented there, with no DataLoader.  `Trainer.fit` is the one
training loop: the search's `Trainer.evaluate` runs it within a candidate's
budget, ``menndl train`` runs it to retrain a chosen architecture.
`Trainer.evaluate` never raises: whatever goes wrong with a candidate becomes
its result's status (see `menndl.protocol`), its memory is released, and the
next task runs.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from menndl.data import Dataset, open_configured
from menndl.data.arrays import DataUnavailable
from menndl.data.order import epoch_order
from menndl.data.scan import ChannelStats, scan_dataset
from menndl.data.splits import joined_split
from menndl.fidelity import budget_epochs, rung_seconds
from menndl.genome import Genome, InputSpec, TrainParams, count_flops, learning_rate_factor
from menndl.genome.decode import build_model
from menndl.job import AugmentConfig, TrainingConfig
from menndl.protocol import task_genome
from menndl.tasks import class_weights_for
from menndl.worker.augment import Augmenter
from menndl.worker.checkpoint import (
    CheckpointError,
    TrainingState,
    load_checkpoint,
    restore_optimizer,
    save_checkpoint,
)
from menndl.worker.evaluator import Evaluator
from menndl.worker.faults import CandidateTimeout, NonFiniteLoss, hard_deadline, status_of
from menndl.worker.hardware_cost import CostSettings, HardwareCost
from menndl.worker.inherit import inherit_weights
from menndl.worker.measure import (
    now,
    peak_memory_bytes,
    release_memory,
    reset_peak_memory,
    weights_as_arrays,
)
from menndl.worker.numerics import (
    autocast_context,
    choose_device,
    choose_precision,
    make_optimizer,
    use_channels_last,
)
from menndl.worker.placements import Placement, open_placement
from menndl.worker.targets import Targets, targets_for

__all__ = ["FitProgress", "Trainer", "choose_device", "choose_precision", "make_optimizer"]

EVAL_BATCH = 1024  # samples per validation batch, at most ...
EVAL_INPUT_BYTES = 8 * 2**20  # ... and at most this many input bytes (large samples: the activations scale with it)
LOSS_CHECK_EVERY = 25  # training steps between checks that the loss is finite (one device sync each)
OVERRUN_FACTOR = 1.5  # a candidate still running at 1.5 x max_seconds + OVERRUN_GRACE is abandoned: timeout
OVERRUN_GRACE = 10.0  # seconds; the master's own deadline (2 x max_seconds + 60 s) comes later

ModelBuilder = Callable[[Genome, InputSpec], nn.Module]


@dataclass
class FitProgress:
    """How far a fit got; `Trainer.fit` fills it in as it goes, so it keeps the partial figures when a fit raises.

    Attributes:
        epochs: Epochs completed (an epoch cut short by the time budget does not count).
        samples: Training samples seen.
        train_seconds: Wall time of training, checkpoint validations included (what the time budget counts).
        step_seconds: Wall time of the training steps alone (for samples per second).
        train_loss: Mean training loss of the last epoch (NaN before the first one ends).
        checkpoints: ``[fraction, score]`` at each early-stopping checkpoint validated (the task's score,
            `menndl.tasks.SCORES`: accuracy, or R² for regression).
        stopped_at: ``(metrics, loss, latency)`` at the checkpoint that stopped the fit, or ``None``.
        steps: Optimizer steps since the network's training began (a continued fit's earlier steps included).
        first_epoch: Epochs the network had trained before this fit (a continued rung), counted in ``epochs``.
        seconds_before: Training seconds before this fit (a continued rung); ``train_seconds`` counts this fit only.
        optimizer: The fit's optimizer (its state goes into a checkpoint).
    """

    epochs: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    step_seconds: float = 0.0
    train_loss: float = math.nan
    checkpoints: list[list[float]] = field(default_factory=list)
    stopped_at: tuple[dict[str, float], float, float] | None = None
    steps: int = 0
    first_epoch: int = 0
    seconds_before: float = 0.0
    optimizer: torch.optim.Optimizer | None = None


def _randperm(size: int) -> np.ndarray:
    """A permutation of ``range(size)`` from torch's global generator (CPU, so every placement draws alike)."""
    return torch.randperm(size).numpy()


class Trainer(Evaluator):
    """Holds the resident data and trains candidates one after another."""

    def __init__(
        self,
        data: Dataset,
        training: TrainingConfig,
        device: torch.device,
        *,
        build: ModelBuilder = build_model,
        overrun_limit: float | None = None,
        retrain: bool = False,
        stats: ChannelStats | None = None,
        placement: str = "device",
        cache_bytes: int = 2**30,
        node_key: str = "",
        augment: AugmentConfig | None = None,
        measure: Mapping[str, Any] | None = None,
    ) -> None:
        """Place the data for ``device`` and fix the numerics for every candidate.

        Args:
            data: The opened dataset.
            training: The job's ``[training]`` table (budget, precision, memory format).
            device: The training device.
            build: turns a genome into a module (``build_model``); tests pass a
                wrapper to inject faults such as an out-of-memory error.
            overrun_limit: seconds after which a candidate is abandoned as
                ``timeout`` (default ``OVERRUN_FACTOR * max_seconds + OVERRUN_GRACE``).
            retrain: train on the training and validation splits and validate
                on the test split (``menndl train``).
            stats: The training split's per-channel statistics from the master's check (recorded in the
                library); computed here by a streaming pass when None.
            placement: ``device``, ``node`` or ``stream`` (resolved by the master, see `menndl.data.placement`).
            cache_bytes: ``data.cache_bytes``: what a streaming placement may hold.
            node_key: Names the node's shared copy (``node``).
            augment: The job's ``[augment]`` table (none by default).
            measure: The setup's ``measure`` table (`menndl.protocol.setup_message`): the job's ``[measure]``
                settings, the ``kinds`` to measure and the ``limits`` a candidate must stay under.

        Raises:
            RuntimeError: a measurement asked for is not possible on ``device`` (energy without a counter).
        """
        self.training = training
        self.device = device
        self.precision = choose_precision(training.precision, device)
        self.spec = InputSpec(shape=tuple(data.input_shape), num_classes=data.outputs, task=data.task)
        mean, std = data.target_stats()
        segmentation = data.task == "segmentation"
        weights = class_weights_for(training.class_weights, data.class_pixels()) if segmentation else None
        self.targets: Targets = targets_for(data.task, device, mean=mean, std=std, loss=training.loss,
                                            num_classes=data.num_classes, ignore_index=data.ignore_label,
                                            class_weights=weights)  # fmt: skip
        stats = scan_dataset(data).stats if stats is None else stats
        shape = (1, -1, *([1] * (len(data.input_shape) - 1)))
        self.mean = torch.tensor(stats.mean, dtype=torch.float32).reshape(shape).to(device)
        self.std = torch.tensor(stats.std, dtype=torch.float32).reshape(shape).to(device)
        self.stats = stats
        self.dataset = data
        self.sample_bytes = int(np.prod(data.input_shape)) * 4  # float32 on the device
        fit_split, held_split = (joined_split(data.train, data.val), data.test) if retrain else (data.train, data.val)
        order = epoch_order(len(fit_split), data.sample_bytes, cache_bytes)
        self.data: Placement = open_placement(
            placement, fit_split, held_split, device, order, cache_bytes=cache_bytes, node_key=node_key
        )
        self.augment = Augmenter(augment or AugmentConfig(), len(data.input_shape) - 1)
        ndim = len(data.input_shape) + 1  # of a batch
        self.channels_last = use_channels_last(training.channels_last, device, self.precision, ndim)
        measure = dict(measure or {})
        self.limits = {str(k): float(v) for k, v in dict(measure.get("limits") or {}).items()}
        self.cost: HardwareCost | None = None
        if measure.get("kinds"):
            self.cost = HardwareCost(
                CostSettings.from_table(measure, self.precision), device, tuple(data.input_shape),
                channels_last=self.channels_last, training_precision=self.precision,
            )  # fmt: skip
        self.build = build
        self.overrun_limit = (
            OVERRUN_FACTOR * training.max_seconds + OVERRUN_GRACE if overrun_limit is None else overrun_limit
        )

    @classmethod
    def from_setup(cls, setup: Mapping[str, Any], *, rank: int = 0, local_rank: int, threads: int) -> Trainer:
        """Build from the master's setup message: open the data, check it is the master's, pick the device.

        Raises:
            RuntimeError: the data this worker opened differs from the master's,
                or CUDA was asked for and there is none.
        """
        torch.set_num_threads(threads)
        options = dict(setup["data"])
        facts = dict(setup.get("data_facts") or {})
        data = open_configured(options, options.get("base_dir"))
        if facts.get("identity") and data.identity() != facts["identity"]:
            data.close()
            raise RuntimeError(
                f"dataset {data.name} differs from the one the master checked (identity "
                f"{data.identity()[:12]}, the master's {str(facts['identity'])[:12]}): the data file differs "
                "between nodes"
            )
        stats = ChannelStats(tuple(facts["mean"]), tuple(facts["std"])) if "mean" in facts else None
        training = TrainingConfig(**setup["training"])
        table: dict[str, Any] = setup.get("augment", {})
        augment = AugmentConfig(**{key: tuple(v) if isinstance(v, list) else v for key, v in table.items()})  # type: ignore[arg-type]
        return cls(
            data,
            training,
            choose_device(training.device, local_rank),
            stats=stats,
            placement=str(facts.get("placement", "device")),
            cache_bytes=int(options.get("cache_bytes", 2**30)),
            node_key=str(facts.get("fingerprint", ""))[:32],
            augment=augment,
            measure=setup.get("measure"),
        )

    @property
    def device_name(self) -> str:
        """The device as recorded in the library, e.g. ``cpu`` or ``cuda:0 (NVIDIA H200)``."""
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)

    def device_ok(self) -> bool:
        """Whether the device still works (a CUDA error such as an illegal access poisons the context)."""
        if self.device.type != "cuda":
            return True
        try:
            torch.ones(1, device=self.device).add_(1)
            torch.cuda.synchronize(self.device)
            return True
        except Exception:
            return False

    def evaluate(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Train and validate one candidate; never raises.

        Returns:
            ``status`` (``ok``, ``stopped-early``, ``over-limit``, ``failed``, ``nan``, ``oom``
            or ``timeout``) with the metrics known (partial ones for a
            candidate that did not finish), and ``error`` with the traceback
            when it failed; ``weights`` when the task asked for them.
        """
        progress = FitProgress()
        model: nn.Module | None = None
        started = time.perf_counter()
        self.check_data()
        try:
            reset_peak_memory(self.device)
            with hard_deadline(self.overrun_limit):
                genome = task_genome(task)
                torch.manual_seed(int(task["seed"]))
                model = self.new_model(genome)
                end = started + self.overrun_limit
                costs = self.cost.measure(model, genome.train.batch_size) if self.cost is not None else {}
                over = self._over_limit(costs)
                if over:
                    result = self._rejected(over, costs, model, genome)
                else:
                    result = self._train(model, genome, task, costs, progress, end)
        except DataUnavailable:
            raise  # not the candidate's fault: the worker reports it and the master stops the search cleanly
        except Exception as exc:  # every candidate failure is data
            result = {
                "status": status_of(exc),
                "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                **self._partial(progress),
            }
        model = None  # the exception and its frames are gone here: the memory can really be released
        release_memory(self.device)
        return result

    def _train(self, model: nn.Module, genome: Genome, task: Mapping[str, Any], costs: Mapping[str, Any],
               progress: FitProgress, end: float) -> dict[str, Any]:  # fmt: skip
        """Train ``model`` within the genome's budget and validate it: the result of `evaluate`.

        A task of a rung (``train_epochs``) trains to that many epochs in all, continuing ``resume_from``'s
        checkpoint when it names one, or starting from ``inherit_from``'s weights where shapes allow; the
        learning-rate schedule spans the whole budget (``plan_epochs``), so a network trained rung by rung
        is the one trained straight through (exactly, on a CPU).  A missing or unreadable checkpoint is
        not the candidate's fault: it trains from scratch instead, and its row says so (``inherited_from`` -1).
        """
        hyper = genome.train
        energy_start = self.cost.train_energy_start() if self.cost is not None else math.nan
        full = budget_epochs(hyper.budget, self.training.epochs)  # the job's epochs scaled by the genome's budget
        plan = int(task.get("plan_epochs", full))
        target = min(int(task.get("train_epochs", plan)), plan)
        budget_seconds = hyper.budget * self.training.max_seconds
        resume, weights_from, layers, notes = self._starting_weights(model, genome, task)
        done = resume.epochs if resume is not None else 0
        if resume is not None and resume.rng is not None:
            torch.set_rng_state(resume.rng)
        progress.first_epoch = progress.epochs = done
        progress.seconds_before = resume.seconds if resume is not None else 0.0
        progress.steps = resume.steps if resume is not None else 0
        if done < target:
            self.fit(
                model,
                hyper,
                epochs=target,
                max_seconds=rung_seconds(budget_seconds, plan, done, target),
                hard_end=end,
                checkpoints=[float(f) for f in task.get("checkpoints", ())],
                stop_below={float(f): float(t) for f, t in task.get("stop_below", ())},
                progress=progress,
                schedule_epochs=plan,
                schedule_seconds=budget_seconds,
                optimizer_state=resume.optimizer if resume is not None else None,
            )
        rng = torch.get_rng_state()
        if progress.stopped_at is None:
            status, (metrics, loss, latency) = "ok", self.validate(model, end)
        else:
            status, (metrics, loss, latency) = "stopped-early", progress.stopped_at
        result = self._metrics(status, progress, metrics, loss, latency, model, genome)
        result.update(costs)
        result["inherited_from"], result["inherited_layers"] = weights_from, layers
        if self.cost is not None and "energy" in self.cost.settings.kinds:
            result["train_energy"] = self.cost.train_energy_per_sample(energy_start, progress.samples)
        if task.get("save_checkpoint") and status == "ok":
            notes += self._save(str(task["save_checkpoint"]), model, progress, rng, task, genome)
        if notes:
            result["error"] = notes.strip()
        if task.get("return_weights"):
            result["weights"] = weights_as_arrays(model)
        return result

    def _starting_weights(self, model: nn.Module, genome: Genome,
                          task: Mapping[str, Any]) -> tuple[TrainingState | None, int, int, str]:  # fmt: skip
        """Load what the task starts from: ``(checkpoint to continue or None, row id, layers taken, notes)``."""
        resume_from = task.get("resume_from")
        inherit_from = task.get("inherit_from")
        if isinstance(resume_from, Mapping):
            try:
                state = load_checkpoint(str(resume_from["path"]), self.device)
                model.load_state_dict(state.model)
            except (CheckpointError, RuntimeError) as exc:  # gone with its disk, or another network's
                return None, -1, 0, f"trained from scratch: checkpoint of {resume_from.get('id')} unusable ({exc}); "
            layers = sum(1 for module in model.modules() if any(True for _ in module.parameters(recurse=False)))
            return state, int(resume_from["id"]), layers, ""
        if isinstance(inherit_from, Mapping):
            try:
                state = load_checkpoint(str(inherit_from["path"]), self.device)
                parent = Genome.from_json(str(inherit_from["genome"]))
                taken = inherit_weights(model, genome, state.model, parent)
            except (CheckpointError, ValueError, RuntimeError) as exc:
                return None, -1, 0, f"no weights inherited from {inherit_from.get('id')} ({exc}); "
            if taken.layers or taken.preserved:
                return None, int(inherit_from["id"]), taken.layers, ""
        return None, -1, 0, ""

    def _save(self, path: str, model: nn.Module, progress: FitProgress, rng: torch.Tensor, task: Mapping[str, Any],
              genome: Genome) -> str:  # fmt: skip
        """Write the checkpoint a task asked for; a note for the row's ``error`` when it could not be written."""
        optimizer = progress.optimizer
        state = TrainingState(
            model={name: tensor.detach() for name, tensor in model.state_dict().items()},
            optimizer=optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": []},
            epochs=progress.epochs,
            steps=progress.steps,
            seconds=progress.seconds_before + progress.train_seconds,
            rng=rng,
            meta={"id": int(task["task"]), "hash": genome.hash},
        )
        try:
            save_checkpoint(path, state)
        except (OSError, CheckpointError) as exc:
            return f"checkpoint not written: {exc}; "
        return ""

    def new_model(self, genome: Genome) -> nn.Module:
        """The genome's network on the training device, in the memory format of training.

        Its initial weights come from torch's global generator: seed it first for reproducible weights.

        Args:
            genome: The candidate.

        Returns:
            The module, in training mode.
        """
        model = self.build(genome, self.spec).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def _over_limit(self, costs: Mapping[str, Any]) -> str:
        """Which measured limit ``costs`` exceeds, as the one-line error of the result ("" when none)."""
        units = {"latency": "s per sample at batch 1", "memory": "bytes", "energy": "J per inference sample"}
        for name, limit in self.limits.items():
            value = costs.get(name)
            if value is not None and math.isfinite(float(value)) and float(value) > limit:
                return f"{name} {float(value):.4g} {units[name]} over search.max_{name} = {limit:.4g}"
        return ""

    def _rejected(self, reason: str, costs: Mapping[str, Any], model: nn.Module, genome: Genome) -> dict[str, Any]:
        """The result of a candidate over a measured limit: its measurements, its size, no training."""
        return {
            "status": "over-limit",
            "error": reason,
            "params": sum(p.numel() for p in model.parameters()),
            "flops": count_flops(genome, self.spec),
            "train_seconds": 0.0,
            "epochs": 0,
            "spent_epochs": 0,
            "spent_seconds": 0.0,
            "precision": self.precision,
            **costs,
        }

    def _metrics(
        self,
        status: str,
        progress: FitProgress,
        metrics: dict[str, float],
        loss: float,
        latency: float,
        model: nn.Module,
        genome: Genome,
    ) -> dict[str, Any]:
        """The result of a candidate that finished (or was stopped early)."""
        return {
            "status": status,
            **metrics,
            "loss": loss,
            "params": sum(p.numel() for p in model.parameters()),
            "flops": count_flops(genome, self.spec),
            "latency_seconds": latency,
            "peak_memory_bytes": peak_memory_bytes(self.device),
            **self._partial(progress),
        }

    def _partial(self, progress: FitProgress) -> dict[str, Any]:
        """What is known of a candidate however it ended: budget used, speed, training loss, checkpoints."""
        partial: dict[str, Any] = {
            "train_seconds": progress.seconds_before + progress.train_seconds,
            "epochs": progress.epochs,
            "spent_epochs": progress.epochs - progress.first_epoch,
            "spent_seconds": progress.train_seconds,
            "precision": self.precision,
        }
        if progress.step_seconds > 0:
            partial["samples_per_second"] = progress.samples / progress.step_seconds
        if math.isfinite(progress.train_loss):
            partial["train_loss"] = progress.train_loss
        if progress.checkpoints:
            partial["checkpoints"] = [list(pair) for pair in progress.checkpoints]
        return partial

    def fit(
        self,
        model: nn.Module,
        hyper: TrainParams,
        *,
        epochs: int,
        max_seconds: float = math.inf,
        hard_end: float = math.inf,
        checkpoints: Sequence[float] = (),
        stop_below: Mapping[float, float] | None = None,
        progress: FitProgress | None = None,
        schedule_epochs: int | None = None,
        schedule_seconds: float | None = None,
        optimizer_state: dict[str, Any] | None = None,
    ) -> FitProgress:
        """Train ``model`` on the resident training split: the one training loop of the search and of ``menndl train``.

        Batches are drawn by index from a fresh permutation each epoch (torch's
        global generator), in the trainer's precision (autocast to bf16/fp16, a
        gradient scaler for fp16) and memory format; the learning rate follows
        ``hyper.schedule`` over the whole fit, by steps or by time, whichever is
        further.  Training ends after ``epochs``, or after the step that passes
        ``max_seconds``, or at an early-stopping checkpoint whose score (the
        task's validation metric, `menndl.tasks.SCORES`) is below its threshold.

        Args:
            model: The network, on the training device (`new_model`).
            hyper: The genome's optimizer, learning rate, batch size and schedule.
            epochs: Epochs to train (at least 1).
            max_seconds: Time budget in seconds (> 0); no limit by default.
            hard_end: ``time.perf_counter()`` instant past which a step or a
                checkpoint validation raises `CandidateTimeout`.
            checkpoints: Fractions of the budget (progress is the further of
                epochs done / ``epochs`` and seconds / ``max_seconds``, at an
                epoch's end) at which to validate, for early stopping.
            stop_below: Score thresholds per checkpoint fraction: a fit
                validated below one stops there (``stopped_at``).
            progress: Filled in as the fit goes (a new one by default); pass one
                to keep the partial figures of a fit that raises.  A fit that continues an earlier one (a
                rung) starts at ``progress.first_epoch`` epochs and ``progress.steps`` steps, and trains to
                ``epochs`` in all.
            schedule_epochs, schedule_seconds: The budget the learning-rate schedule spans (default: ``epochs``
                and ``max_seconds``); a rung trains part of it, ``progress.seconds_before`` already spent.
            optimizer_state: The optimizer's state to continue from (a checkpoint's).

        Returns:
            ``progress``.

        Raises:
            NonFiniteLoss: the training loss became NaN or infinite (checked every
                ``LOSS_CHECK_EVERY`` steps and at each epoch's end).
            CandidateTimeout: one step or validation ran past ``hard_end``.
            torch.OutOfMemoryError: the device ran out of memory.
            ValueError: ``epochs`` < 1, ``max_seconds`` <= 0, or an epoch without a step.
        """
        if epochs < 1:
            raise ValueError(f"epochs: expected an integer >= 1, got {epochs}")
        if not max_seconds > 0:
            raise ValueError(f"max_seconds: expected seconds > 0, got {max_seconds}")
        progress = FitProgress() if progress is None else progress
        optimizer = make_optimizer(model, hyper.optimizer, hyper.learning_rate, hyper.weight_decay, hyper.momentum)
        base_rates = [group["lr"] for group in optimizer.param_groups]
        if optimizer_state is not None:
            restore_optimizer(optimizer, optimizer_state)
        progress.optimizer = optimizer
        schedule_epochs = epochs if schedule_epochs is None else schedule_epochs
        schedule_seconds = max_seconds if schedule_seconds is None else schedule_seconds
        scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        targets = self.targets
        data, channels_last = self.data, self.channels_last
        n, batch = data.n_train, max(2, min(hyper.batch_size, data.n_train))  # batch norm needs two samples
        planned_steps = max(1, schedule_epochs * len(range(0, n - 1, batch)))
        scheduled = hyper.schedule != "constant"
        pending = sorted(float(f) for f in checkpoints)
        stop_below = {} if stop_below is None else stop_below
        start = time.perf_counter()
        soft_end = start + max_seconds
        checking = 0.0  # seconds spent validating at checkpoints
        step = progress.steps
        seconds_before = progress.seconds_before
        amp = autocast_context(self.device, self.precision)  # one context, entered once per step
        segmentation = self.spec.task == "segmentation"
        model.train()
        for epoch in range(progress.first_epoch, epochs):
            total = torch.zeros((), device=self.device)
            steps_this_epoch = 0
            out_of_time = False
            windows = data.order.windows(_randperm)  # drawn here, on the global generator: every placement alike
            with contextlib.closing(data.epoch(windows, batch)) as batches:
                for first, (xb, yb) in zip(range(0, n - 1, batch), batches):
                    size = xb.shape[0]  # >= 2: batch >= 2 and first <= n - 2 (batch norm needs two samples)
                    if segmentation:  # flips and crops move the masks with the pixels
                        xb, yb = self.augment.pair(self.standardise(xb), yb, self.dataset.ignore_label or 0)
                    else:
                        xb = self.augment(self.standardise(xb))
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    yb = targets.prepare(yb)
                    with amp:
                        loss = targets.loss(model(xb), yb)
                    optimizer.zero_grad(set_to_none=True)
                    if scheduled:  # progress through the budget, by steps or by time, whichever is further
                        done = max((step + 0.5) / planned_steps,
                                   (seconds_before + time.perf_counter() - start) / schedule_seconds)  # fmt: skip
                        factor = learning_rate_factor(hyper.schedule, min(1.0, done))
                        for group, rate in zip(optimizer.param_groups, base_rates):
                            group["lr"] = rate * factor
                    if scaler is None:
                        loss.backward()
                        optimizer.step()
                    else:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    total += loss.detach()
                    steps_this_epoch += 1
                    progress.samples += size
                    step += 1
                    progress.steps = step
                    if step % LOSS_CHECK_EVERY == 0 and not math.isfinite(float(loss.detach())):
                        raise NonFiniteLoss(f"non-finite training loss in epoch {epoch + 1}, step {step}")
                    clock = time.perf_counter()
                    if clock > soft_end:
                        out_of_time = first + batch < n - 1  # not when this was the epoch's last batch anyway
                        if clock > hard_end:
                            raise CandidateTimeout(f"one training step ran past the hard limit (epoch {epoch + 1})")
                        break
            if steps_this_epoch == 0:
                raise ValueError(f"no training step in epoch {epoch + 1}: {n} training samples, batch {batch}")
            mean_loss = float(total) / steps_this_epoch
            if not math.isfinite(mean_loss):
                raise NonFiniteLoss(f"non-finite training loss in epoch {epoch + 1}")
            progress.train_loss = mean_loss
            progress.train_seconds = time.perf_counter() - start
            progress.step_seconds = progress.train_seconds - checking
            if out_of_time:
                return progress
            progress.epochs = epoch + 1
            if progress.train_seconds > max_seconds:
                return progress
            fraction = max((epoch + 1) / epochs, progress.train_seconds / max_seconds)
            due = [f for f in pending if f <= fraction]
            if not due or epoch + 1 == epochs:
                continue
            before = time.perf_counter()
            metrics, val_loss, latency = self.validate(model, hard_end)
            score = metrics[targets.score]
            model.train()
            checking += time.perf_counter() - before
            pending = [f for f in pending if f > fraction]
            # One entry, at the furthest checkpoint passed: a score measured later than an earlier
            # checkpoint would raise that checkpoint's threshold for everyone.
            progress.checkpoints.append([max(due), score])
            progress.train_seconds = time.perf_counter() - start
            if max(due) in stop_below and not score >= stop_below[max(due)]:
                progress.stopped_at = (metrics, val_loss, latency)
                return progress
            if progress.train_seconds > max_seconds:
                return progress
        return progress

    @torch.no_grad()
    def validate(self, model: nn.Module, hard_end: float = math.inf) -> tuple[dict[str, float], float, float]:
        """The task's metrics, the mean loss and inference seconds per sample on the held-out split.

        The held-out split is the validation split (the test split for a trainer built with ``retrain``). The model
        runs in the trainer's precision and memory format, in eval mode, in batches of ``EVAL_BATCH`` samples or
        ``EVAL_INPUT_BYTES`` of input, whichever is fewer.

        Args:
            model: The trained network.
            hard_end: ``time.perf_counter()`` instant past which `CandidateTimeout` is raised.

        Returns:
            ``(metrics, loss, seconds per sample)``: metrics by objective name (``accuracy``; ``r2`` and
            ``mse`` for regression; ``miou`` and ``pixel_accuracy`` for segmentation) and the loss of the
            task's training loss; NaNs when the held-out split is empty.
        """
        model.eval()
        held = self.data.n_held
        sums = self.targets.validation()
        if held == 0:
            return sums.metrics()[0], math.nan, math.nan
        start = now(self.device)
        batch = max(2, min(EVAL_BATCH, EVAL_INPUT_BYTES // max(1, self.sample_bytes)))
        with contextlib.closing(self.data.held_out(batch)) as batches:
            for xb, target in batches:
                xb = self.standardise(xb)
                if self.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with autocast_context(self.device, self.precision):
                    output = model(xb).float()
                sums.add(output, target)
                if time.perf_counter() > hard_end:
                    raise CandidateTimeout("validation ran past the hard limit")
        metrics, mean_loss = sums.metrics()
        return metrics, mean_loss, (now(self.device) - start) / held

    def check_data(self) -> None:
        """Raise `DataUnavailable` when a file of the dataset is gone (checked before every candidate).

        Whatever the placement, a search whose data file disappeared stops cleanly rather than training on,
        so that a resumed search on the restored file gives the same results.
        """
        for array in self.dataset.raw.arrays():
            if not array.exists():
                raise DataUnavailable(f"{array.display}: the data file is gone (dataset '{array.key}')")

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as stored, on the device, converted to float32 and standardised per channel."""
        return (x.float() - self.mean) / self.std

    def close(self) -> None:
        """Release the placement (its memory, files and shared segment) and the dataset's files."""
        self.data.close()
        self.dataset.close()
