"""A worker measures latency and memory of a real network on its device, and rejects one over a limit untrained."""

from __future__ import annotations

import math
import random

import pytest

from menndl.data import load_dataset
from menndl.genome import SearchSpace, random_genome
from menndl.job import TrainingConfig
from menndl.worker.trainer import Trainer

torch = pytest.importorskip("torch")
from menndl.worker.hardware_cost import CostSettings, HardwareCost  # noqa: E402


def _network() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 16, 5, padding=2), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    )  # fmt: skip


def test_measures_latency_and_memory_without_changing_the_network() -> None:
    torch.set_num_threads(1)
    model = _network()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seed_state = torch.get_rng_state()
    cost = HardwareCost(
        CostSettings(kinds=("latency", "memory"), batch_size=32, seconds=0.05), torch.device("cpu"), (1, 40)
    )
    result = cost.measure(model, 64)
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert 0 < result["latency"] < 0.1 and 0 < result["batch_latency"] < 0.1
    assert result["memory"] >= weights  # the weights and the activations of a batch of 32
    assert result["train_memory"] >= 3 * weights  # weights, gradients and Adam's two moments at least
    assert result["inference_precision"] == "fp32"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training  # the caller's network keeps its mode
    assert torch.equal(torch.get_rng_state(), seed_state)  # the training seed stream is untouched


def test_a_larger_network_measures_slower_and_bigger() -> None:
    torch.set_num_threads(1)
    small = _network()
    large = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Conv1d(1 if i == 0 else 128, 128, 7, padding=3),
                                                      torch.nn.ReLU()) for i in range(4)],
                                torch.nn.Flatten(), torch.nn.Linear(128 * 40, 10))  # fmt: skip
    cost = HardwareCost(
        CostSettings(kinds=("latency", "memory"), batch_size=16, seconds=0.05), torch.device("cpu"), (1, 40)
    )
    a, b = cost.measure(small, 16), cost.measure(large, 16)
    assert b["latency"] > 3 * a["latency"]
    assert b["memory"] > 10 * a["memory"] and b["train_memory"] > 10 * a["train_memory"]


def test_energy_without_a_counter_is_refused_at_setup() -> None:
    from menndl.energy import energy_unavailable

    if energy_unavailable("cpu") is None:
        pytest.skip("this machine has a readable RAPL counter")
    with pytest.raises(RuntimeError, match="RAPL"):
        HardwareCost(CostSettings(kinds=("energy",)), torch.device("cpu"), (1, 40))


@pytest.fixture(scope="module")
def digits() -> object:
    return load_dataset("digits")


def _trainer(digits: object, limits: dict[str, float]) -> Trainer:
    torch.set_num_threads(1)
    measure = {"kinds": ["latency", "memory"], "seconds": 0.05, "batch_size": 32, "limits": limits}
    return Trainer(digits, TrainingConfig(epochs=1, max_seconds=20), torch.device("cpu"), measure=measure)  # type: ignore[arg-type]


def test_a_candidate_over_a_latency_limit_is_not_trained(digits: object) -> None:
    trainer = _trainer(digits, {"latency": 1e-9})
    genome = random_genome(random.Random(3), SearchSpace(max_features=2), trainer.spec)
    result = trainer.evaluate({"genome": genome.to_dict(), "seed": 1})
    assert result["status"] == "over-limit"
    assert result["error"].startswith("latency ") and "search.max_latency" in result["error"]
    assert result["epochs"] == 0 and result["train_seconds"] == 0.0 and "accuracy" not in result
    assert result["latency"] > 1e-9 and result["memory"] > 0 and result["params"] > 0


def test_within_the_limits_it_trains_and_reports_the_measurements(digits: object) -> None:
    trainer = _trainer(digits, {"latency": 10.0, "memory": 2**40})
    genome = random_genome(random.Random(3), SearchSpace(max_features=2), trainer.spec)
    result = trainer.evaluate({"genome": genome.to_dict(), "seed": 1})
    assert result["status"] == "ok", result.get("error")
    assert result["epochs"] == 1 and math.isfinite(result["accuracy"])
    for key in ("latency", "batch_latency", "memory", "train_memory"):
        assert result[key] > 0, key
    plain = Trainer(digits, TrainingConfig(epochs=1, max_seconds=20), torch.device("cpu"))  # type: ignore[arg-type]
    again = plain.evaluate({"genome": genome.to_dict(), "seed": 1})
    assert again["accuracy"] == result["accuracy"]  # measuring first does not change what training does
    assert "latency" not in again


def test_onnxruntime_measures_the_converted_network_faster_than_eager_torch_at_batch_1() -> None:
    """``measure.runtime = "onnxruntime"``: the latency of the ONNX export in ONNX Runtime; memory from torch."""
    pytest.importorskip("onnxruntime")
    torch.set_num_threads(1)
    model = _network()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = dict(kinds=("latency", "memory"), batch_size=16, seconds=0.1, warmup_seconds=0.1)
    in_torch = HardwareCost(CostSettings(**settings), torch.device("cpu"), (1, 40)).measure(model, 16)
    in_onnx = HardwareCost(CostSettings(**settings, runtime="onnxruntime"), torch.device("cpu"), (1, 40)).measure(
        model, 16
    )
    assert in_onnx["inference_runtime"] == "onnxruntime" and in_torch["inference_runtime"] == "torch"
    assert 0 < in_onnx["latency"] < in_torch["latency"]  # no per-operator dispatch of eager torch
    assert 0 < in_onnx["batch_latency"] < in_onnx["latency"]
    assert in_onnx["memory"] == in_torch["memory"]  # the torch graph's, whatever runs the timing
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_onnxruntime_settings_default_to_fp32_and_refuse_a_gpu_and_half_precision() -> None:
    settings = CostSettings.from_table({"kinds": ["latency"], "runtime": "onnxruntime"}, training_precision="bf16")
    assert settings.precision == "fp32" and settings.runtime == "onnxruntime"
    with pytest.raises(RuntimeError, match="CPU only"):
        HardwareCost(settings, torch.device("cuda"), (1, 40))
    half = CostSettings(kinds=("latency",), precision="bf16", runtime="onnxruntime")
    with pytest.raises(RuntimeError, match="fp32"):
        HardwareCost(half, torch.device("cpu"), (1, 40))
