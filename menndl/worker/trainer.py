"""Train one candidate within its budget and measure it (the only torch-heavy module).

The dataset is loaded once per worker and kept resident on the device as
standardised tensors; batches are drawn by index, with no DataLoader.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from menndl.data import Dataset, load_dataset
from menndl.genome import Genome, InputSpec, count_flops, learning_rate_factor
from menndl.genome.decode import build_model
from menndl.job import TrainingConfig

EVAL_BATCH = 1024


@dataclass
class DeviceData:
    """The splits the search uses, standardised per channel, on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    @classmethod
    def from_dataset(cls, data: Dataset, device: torch.device) -> DeviceData:
        """Standardise with the training split's per-channel statistics and move to ``device``."""
        x_train = torch.from_numpy(data.x_train)
        axes = [0, *range(2, x_train.dim())]
        mean = x_train.mean(dim=axes, keepdim=True)
        std = x_train.std(dim=axes, keepdim=True).clamp_min(1e-6)

        def prepare(x: Any) -> torch.Tensor:
            return ((torch.from_numpy(x) - mean) / std).to(device).contiguous()

        return cls(
            x_train=prepare(data.x_train),
            y_train=torch.from_numpy(data.y_train).to(device),
            x_val=prepare(data.x_val),
            y_val=torch.from_numpy(data.y_val).to(device),
        )


def choose_device(requested: str, local_rank: int) -> torch.device:
    """The device for a worker: a GPU chosen by node-local rank when there is one, else the CPU."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but this worker sees no CUDA device")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def choose_precision(requested: str, device: torch.device) -> str:
    """Resolve ``auto``: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on the CPU."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


class Trainer:
    """Holds the resident data and trains candidates one after another."""

    def __init__(self, data: Dataset, training: TrainingConfig, device: torch.device) -> None:
        self.training = training
        self.device = device
        self.precision = choose_precision(training.precision, device)
        self.spec = InputSpec(shape=tuple(data.input_shape), num_classes=data.num_classes)
        self.data = DeviceData.from_dataset(data, device)

    @classmethod
    def from_setup(cls, setup: Mapping[str, Any], *, local_rank: int, threads: int) -> Trainer:
        """Build from the master's setup message: load the data, pick the device.

        Raises:
            RuntimeError: the data this worker loaded differs from the master's.
        """
        torch.set_num_threads(threads)
        options = dict(setup["data"])
        options["base_dir"] = Path(options["base_dir"])
        data = load_dataset(options.pop("source"), **options)
        if data.fingerprint() != setup["fingerprint"]:
            raise RuntimeError(
                f"dataset fingerprint {data.fingerprint()[:12]} differs from the master's "
                f"{setup['fingerprint'][:12]}: the data file differs between nodes"
            )
        training = TrainingConfig(**setup["training"])
        return cls(data, training, choose_device(training.device, local_rank))

    @property
    def device_name(self) -> str:
        """The device as recorded in the library, e.g. ``cpu`` or ``cuda:0 (NVIDIA H200)``."""
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)

    def evaluate(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Train and validate one candidate; never raises.

        Returns:
            ``status`` (``ok``/``failed``) with accuracy, loss, params, flops,
            train_seconds and epochs, or the error and traceback.
        """
        model = None
        try:
            genome = Genome.from_dict(task["genome"])
            torch.manual_seed(int(task["seed"]))
            model = build_model(genome, self.spec).to(self.device)
            seconds, epochs = self._train(model, genome)
            accuracy, loss = self._validate(model)
            return {
                "status": "ok",
                "accuracy": accuracy,
                "loss": loss,
                "params": sum(p.numel() for p in model.parameters()),
                "flops": count_flops(genome, self.spec),
                "train_seconds": seconds,
                "epochs": epochs,
            }
        except Exception as exc:
            return {"status": "failed", "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
        finally:
            del model
            if self.device.type == "cuda":
                try:
                    torch.cuda.empty_cache()
                except Exception:  # a broken device shows again in the next task; report it there
                    pass

    def _autocast(self) -> Any:
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.precision != "fp32")

    def _train(self, model: nn.Module, genome: Genome) -> tuple[float, int]:
        """Train until the epoch or wall-time budget runs out; returns (seconds, full epochs).

        The genome's ``budget`` scales the job's epochs and seconds; its
        learning-rate schedule runs over the planned steps of those epochs.
        """
        hyper = genome.train
        optimizer = make_optimizer(model, hyper.optimizer, hyper.learning_rate, hyper.weight_decay, hyper.momentum)
        epochs = max(1, round(hyper.budget * self.training.epochs))
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        loss_fn = nn.CrossEntropyLoss()
        x, y = self.data.x_train, self.data.y_train
        n, batch = len(x), min(hyper.batch_size, len(x))
        steps = max(1, epochs * len(range(0, n - 1, batch)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: learning_rate_factor(hyper.schedule, step / steps)
        )
        start = time.perf_counter()
        deadline = start + hyper.budget * self.training.max_seconds
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n, device=self.device)
            total = torch.zeros((), device=self.device)
            for first in range(0, n - 1, batch):
                index = order[first : first + batch]
                if len(index) < 2:  # batch norm needs two samples
                    break
                with self._autocast():
                    loss = loss_fn(model(x[index]), y[index])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                total += loss.detach().float()
                if time.perf_counter() > deadline:
                    break
            if not math.isfinite(float(total)):
                raise FloatingPointError(f"non-finite training loss in epoch {epoch + 1}")
            if time.perf_counter() > deadline:
                return time.perf_counter() - start, epoch
        return time.perf_counter() - start, epochs

    @torch.no_grad()
    def _validate(self, model: nn.Module) -> tuple[float, float]:
        """Accuracy and mean cross-entropy on the validation split."""
        model.eval()
        x, y = self.data.x_val, self.data.y_val
        correct = torch.zeros((), device=self.device)
        loss = torch.zeros((), device=self.device)
        for first in range(0, len(x), EVAL_BATCH):
            with self._autocast():
                logits = model(x[first : first + EVAL_BATCH]).float()
            target = y[first : first + EVAL_BATCH]
            loss += nn.functional.cross_entropy(logits, target, reduction="sum")
            correct += (logits.argmax(dim=1) == target).sum()
        return float(correct) / len(x), float(loss) / len(x)


def make_optimizer(
    model: nn.Module, name: str, learning_rate: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """The optimizer a genome asks for (SGD with Nesterov momentum when momentum > 0)."""
    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=learning_rate, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}'")
