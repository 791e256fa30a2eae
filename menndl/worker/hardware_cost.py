"""What a candidate costs on the worker's own device: inference latency, peak memory, energy.

Measured on the freshly built network before it trains (none of these depends on the weights),
in the form inference runs it (traced, batch norms folded), so that a candidate over a
``search.max_*`` limit is rejected without spending its training budget.

* Latency: the network in the deployed precision (``measure.precision``), in eval mode under
  ``torch.inference_mode``; untimed calls for ``measure.warmup_seconds`` (a worker's first
  measurement: `FIRST_WARMUP_SECONDS`); then `torch.utils.benchmark.Timer.blocked_autorange`
  (it synchronises a GPU around each block and sizes blocks to the clock's resolution) in
  `ROUNDS` rounds of ``measure.seconds`` in all: the median block of the fastest round, per
  sample, at batch 1 and at ``measure.batch_size``.  On a shared 2-core VM an idle core ran the
  first second of calls up to twice as slow, and a round in a few was slowed by the host; the
  fastest round's median after the warm-up repeated within 2% across worker processes where one
  0.2 s median varied by 30% (docs/benchmarks.md).
* ``measure.runtime = "onnxruntime"``: latency and inference energy are measured on the network
  converted to ONNX and run by ONNX Runtime on the CPU (`menndl.worker.onnx_runtime`), fp32;
  memory stays that of the torch graph.
* Memory: the CUDA allocator's peak above what was allocated before (plus the network's own
  weights for inference) on a GPU; torch's `MemTracker` (parameters, gradients, optimizer
  state, activations, temporaries) on a CPU.
* Energy: a cumulative counter (`menndl.energy`) read around at least
  ``measure.energy_seconds`` of inference at the batch size.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.utils import benchmark

from menndl.energy import EnergyCounter, NvmlCounter, RaplCounter, rapl_packages
from menndl.worker.numerics import autocast_context, make_optimizer

FIRST_WARMUP_SECONDS = 1.0  # the warm-up of a worker's first measurement (after that, measure.warmup_seconds)
ROUNDS = 3  # timed rounds per batch size: the fastest round's median counts (others only ever slow one down)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class CostSettings:
    """What to measure and how: the job's ``[measure]`` table as the worker uses it."""

    kinds: tuple[str, ...]  # of "latency", "memory", "energy"
    batch_size: int = 64
    seconds: float = 0.2
    warmup_seconds: float = 0.25
    precision: str = "fp32"  # deployed numerics: fp32, bf16 or fp16
    energy_seconds: float = 1.0
    runtime: str = "torch"  # what runs inference for latency and energy: torch or onnxruntime

    @classmethod
    def from_table(cls, table: Mapping[str, Any], training_precision: str) -> CostSettings:
        """The settings of a setup's ``measure`` table (`menndl.protocol.setup_message`); its ``precision``
        ``training`` (or none) means the candidate's own ``training_precision`` (fp32 in ONNX Runtime)."""
        numbers = {
            key: table[key] for key in ("batch_size", "seconds", "warmup_seconds", "energy_seconds") if key in table
        }
        runtime = str(table.get("runtime", "torch"))
        deployed = str(table.get("precision", "training"))
        if deployed == "training":
            deployed = "fp32" if runtime == "onnxruntime" else training_precision
        return cls(kinds=tuple(table.get("kinds", ())), precision=deployed, runtime=runtime, **numbers)


def open_energy_counter(device: torch.device) -> EnergyCounter:
    """The energy counter of ``device``: NVML for a GPU (matched by UUID), RAPL for the CPU.

    Raises:
        RuntimeError: the device has no readable counter.
    """
    if device.type == "cuda":
        uuid = str(getattr(torch.cuda.get_device_properties(device), "uuid", "") or "")
        return NvmlCounter(uuid=uuid or None, index=device.index or 0)
    packages = rapl_packages()
    if not packages:
        raise RuntimeError("no readable RAPL counter (/sys/class/powercap/intel-rapl:N/energy_uj)")
    return RaplCounter(packages)


class HardwareCost:
    """Measures candidates on one device (one per worker)."""

    def __init__(self, settings: CostSettings, device: torch.device, sample_shape: tuple[int, ...],
                 channels_last: bool = False, training_precision: str = "fp32") -> None:  # fmt: skip
        """Check that what ``settings`` asks for is measurable on ``device``.

        Raises:
            RuntimeError: energy was asked for and the device has no counter, the memory tracker is missing,
                or ONNX Runtime was asked for on a GPU, in half precision or without its packages.
        """
        self.settings, self.device = settings, device
        self.sample_shape = tuple(sample_shape)
        self.channels_last = channels_last
        self.training_precision = training_precision
        self.dtype = DTYPES[settings.precision]
        self._warm = False  # whether this worker has measured before (its first warm-up is longer)
        self.counter: EnergyCounter | None = open_energy_counter(device) if "energy" in settings.kinds else None
        if "memory" in settings.kinds and device.type != "cuda":
            from torch.distributed._tools.mem_tracker import MemTracker  # noqa: F401  (fails here, not per candidate)
        if settings.runtime == "onnxruntime":
            _check_onnxruntime(device, settings.precision)

    def measure(self, model: nn.Module, train_batch: int) -> dict[str, Any]:
        """The settings' measurements of ``model`` (not changed: copies are measured) at batch 1 and the batch size.

        Returns:
            Some of ``latency``, ``batch_latency`` (seconds per sample), ``memory``, ``train_memory``
            (bytes), ``energy`` (joules per inference sample), and ``inference_precision``.
        """
        kinds = self.settings.kinds
        out: dict[str, Any] = {
            "inference_precision": self.settings.precision,
            "inference_runtime": self.settings.runtime,
        }
        deployed = self._deployed(model)
        batch = self.settings.batch_size
        converted = None
        if self.settings.runtime == "onnxruntime" and ("latency" in kinds or "energy" in kinds):
            from menndl.worker.onnx_runtime import OnnxRuntimeNetwork

            converted = OnnxRuntimeNetwork(deployed, self.sample_shape, torch.get_num_threads())
        if "latency" in kinds:
            out["latency"] = self._latency(self._inference(deployed, converted, 1), 1)
            out["batch_latency"] = self._latency(self._inference(deployed, converted, batch), batch)
        if "memory" in kinds:
            out["memory"] = self._inference_memory(deployed, batch)
        if "energy" in kinds:
            out["energy"] = self._inference_energy(self._inference(deployed, converted, batch), batch)
        del deployed, converted
        if "memory" in kinds:
            out["train_memory"] = self._train_memory(model, train_batch)
        return out

    def _deployed(self, model: nn.Module) -> nn.Module:
        """``model`` as inference runs it: a copy in eval mode, traced into one graph with each batch norm folded
        into its convolution (`torch.fx.experimental.optimization.fuse`, what ONNX Runtime or TensorRT also
        do), in the deployed precision and the trainer's memory format.  A network that cannot be traced is
        measured as it is."""
        deployed = copy.deepcopy(model).eval()
        try:
            deployed = fuse(deployed).requires_grad_(True)  # (inference_mode ignores it; MemTracker's hooks need it)
        except Exception:  # (tracing refuses data-dependent control flow: measured unfused)
            pass
        deployed = deployed.to(self.dtype)
        if self.channels_last:
            deployed = deployed.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return deployed

    def _input(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """A batch of random inputs from a generator of its own (the candidate's training seed stream is untouched)."""
        generator = torch.Generator(self.device).manual_seed(0)
        x = torch.randn((batch, *self.sample_shape), device=self.device, generator=generator).to(dtype)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _inference(self, model: nn.Module, converted: Any, batch: int) -> Callable[[], Any]:
        """One inference at ``batch`` as the settings' runtime runs it: ``converted`` (ONNX Runtime) or ``model``."""
        if converted is not None:
            return converted.runner(self._input(batch, torch.float32))  # type: ignore[no-any-return]
        return self._call(model, batch)

    def _call(self, model: nn.Module, batch: int) -> Callable[[], Any]:
        """One torch inference of ``model`` at ``batch`` (random inputs in the deployed precision)."""
        x = self._input(batch, self.dtype)

        @torch.inference_mode()
        def run() -> Any:
            return model(x)

        return run

    def _latency(self, run: Callable[[], Any], batch: int) -> float:
        """Median seconds per sample of ``run``, one inference at ``batch`` (after the warm-up)."""
        warmup = self.settings.warmup_seconds
        if batch == 1 and not self._warm:  # a worker's first measurement: an idle core runs slow for a second
            warmup, self._warm = max(warmup, FIRST_WARMUP_SECONDS), True
        calls, end = 0, time.perf_counter() + warmup
        while calls < 3 or time.perf_counter() < end:
            run()
            calls += 1
        _synchronize(self.device)
        timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
        rounds = [timer.blocked_autorange(min_run_time=self.settings.seconds / ROUNDS).median for _ in range(ROUNDS)]
        return float(min(rounds)) / batch

    def _inference_energy(self, run: Callable[[], Any], batch: int) -> float:
        """Joules per sample over at least ``energy_seconds`` of ``run``, one inference at ``batch``."""
        assert self.counter is not None
        run()
        _synchronize(self.device)
        calls, start, before = 0, time.perf_counter(), self.counter.joules()
        while True:
            run()
            calls += 1
            if calls % 8 == 0 or calls < 8:
                _synchronize(self.device)
                if time.perf_counter() - start >= self.settings.energy_seconds:
                    break
        joules = self.counter.joules() - before
        return joules / (calls * batch)

    def _inference_memory(self, model: nn.Module, batch: int) -> int:
        """Peak bytes of one inference at ``batch``: the network's weights and its activations."""
        run = self._call(model, batch)
        if self.device.type == "cuda":
            weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
            return weights + _cuda_peak_above_now(self.device, run)
        from torch.distributed._tools.mem_tracker import MemTracker

        tracker = MemTracker()
        tracker.track_external(model)
        with tracker:
            run()
        return _tracked_peak(tracker, self.device)

    def _train_memory(self, model: nn.Module, batch: int) -> int:
        """Peak bytes of one training step at ``batch``: a copy of ``model`` with its weights, gradients,
        Adam's state and the step's activations (``model`` itself is not changed)."""
        x = self._input(max(2, batch), torch.float32)
        amp = autocast_context(self.device, self.training_precision)
        held: dict[str, Any] = {}

        def prepare() -> None:
            trained = copy.deepcopy(model).train()
            if self.channels_last:
                trained = trained.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            held["model"], held["optimizer"] = trained, make_optimizer(trained, "adam", 1e-3, 0.0)

        def step() -> None:
            with amp:
                out = held["model"](x)
            out.float().square().mean().backward()
            held["optimizer"].step()
            held["optimizer"].zero_grad(set_to_none=True)

        def both() -> None:
            prepare()
            step()

        if self.device.type == "cuda":  # counted from the copy's allocation on
            return _cuda_peak_above_now(self.device, both)
        from torch.distributed._tools.mem_tracker import MemTracker

        prepare()
        tracker = MemTracker()
        tracker.track_external(held["model"], held["optimizer"])
        with tracker:
            step()
        return _tracked_peak(tracker, self.device)

    def train_energy_start(self) -> float:
        """A counter reading before training (NaN without a counter)."""
        if self.counter is None:
            return math.nan
        _synchronize(self.device)
        return self.counter.joules()

    def train_energy_per_sample(self, start: float, samples: int) -> float:
        """Joules per training sample since ``start`` (from `train_energy_start`)."""
        if self.counter is None or not samples or not math.isfinite(start):
            return math.nan
        _synchronize(self.device)
        return (self.counter.joules() - start) / samples


def _check_onnxruntime(device: torch.device, precision: str) -> None:
    """Raise RuntimeError unless ONNX Runtime can measure here: a CPU device, fp32, its packages installed."""
    from menndl.job import missing_runtime_packages

    if device.type != "cpu":
        raise RuntimeError(f'measure.runtime = "onnxruntime" measures on the CPU only; this worker trains on {device}')
    if precision != "fp32":
        raise RuntimeError(f'measure.runtime = "onnxruntime" measures fp32 networks; measure.precision is {precision}')
    missing = missing_runtime_packages("onnxruntime")
    if missing:
        raise RuntimeError(
            f'measure.runtime = "onnxruntime" needs {", ".join(missing)} (pip install "menndl[export]")'
        )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cuda_peak_above_now(device: torch.device, run: Callable[[], Any]) -> int:
    """Peak CUDA bytes allocated while ``run`` runs, above what was allocated before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def _tracked_peak(tracker: Any, device: torch.device) -> int:
    """The peak total bytes a `MemTracker` saw on ``device``."""
    snapshot = tracker.get_tracker_snapshot("peak")
    for key, figures in snapshot.items():
        if torch.device(key).type == device.type:
            return int(figures["Total"])
    return 0
