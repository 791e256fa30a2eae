"""Hand-designed networks as genomes, the decoder, the layer table, schedules and safe loading."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from menndl.genome import (
    ConvBlock,
    DenseBlock,
    Genome,
    GlobalPoolBlock,
    InputSpec,
    SearchSpace,
    SkipBlock,
    TrainParams,
    check,
    count_flops,
    count_params,
    learning_rate_factor,
)
from menndl.genome.layer_table import format_layer_table

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from menndl.genome.decode import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TRAIN = TrainParams(learning_rate=0.01, batch_size=128, optimizer="adam", weight_decay=0.0)
MNIST1D = InputSpec((1, 40), 10)
CIFAR = InputSpec((3, 32, 32), 10)


def mnist1d_cnn() -> Genome:
    """The CNN of the MNIST-1D paper (Greydanus 2020): three conv layers of 25 channels, then a linear layer."""
    return Genome(
        (
            ConvBlock(25, 5, "relu", False, stride=2),
            ConvBlock(25, 3, "relu", False, stride=2),
            ConvBlock(25, 3, "none", False, stride=2),
        ),
        (),
        TRAIN,
    )


def paper_cnn() -> nn.Module:
    """The paper's model as its repository writes it (ConvBase), for comparison."""
    return nn.Sequential(
        nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1),
        nn.Flatten(), nn.Linear(125, 10),
    )


def resnet(widths: tuple[int, ...] = (16, 32, 64)) -> Genome:
    """A small ResNet: stem, one basic block per stage (strided with a 1x1 projection after the first)."""
    blocks: list = [ConvBlock(widths[0], 3, "relu", True)]
    for stage, width in enumerate(widths):
        stride = 1 if stage == 0 else 2
        blocks += [
            ConvBlock(width, 3, "relu", True, stride=stride),
            ConvBlock(width, 3, "none", True),
            SkipBlock(2, "relu"),
        ]
    return Genome(tuple(blocks), (), TRAIN, GlobalPoolBlock("avg"))


class BasicBlock(nn.Module):
    """He et al.'s basic block; the shortcut is a bias-free 1x1 conv when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity() if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def reference_resnet(widths: tuple[int, ...] = (16, 32, 64)) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    cin = widths[0]
    for stage, width in enumerate(widths):
        layers.append(BasicBlock(cin, width, 1 if stage == 0 else 2))
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _flops(model: nn.Module, spec: InputSpec) -> float:
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, *spec.shape))
    return counter.get_total_flops() / 2


def test_mnist1d_paper_cnn_is_a_genome() -> None:
    genome = mnist1d_cnn()
    check(genome, SearchSpace(activations=("relu", "none"), filters=(25, 25)), MNIST1D)
    assert count_params(genome, MNIST1D) == 5210 == _params(paper_cnn())  # "about 5.2k parameters"
    model = build_model(genome, MNIST1D)
    assert _params(model) == 5210
    assert model(torch.randn(4, 1, 40)).shape == (4, 10)
    assert count_flops(genome, MNIST1D) == _flops(model, MNIST1D)


def test_small_resnet_is_a_genome() -> None:
    genome = resnet()
    space = SearchSpace(activations=("relu", "none"), filters=(16, 64), max_features=8, max_skips=3)
    check(genome, space, CIFAR)
    reference = reference_resnet()
    assert count_params(genome, CIFAR) == _params(reference) == _params(build_model(genome, CIFAR))
    assert count_params(genome, CIFAR) == 77_850  # by hand below
    by_hand = (3 * 16 * 9 + 32) + 2 * (16 * 16 * 9 + 32)
    by_hand += (16 * 32 * 9 + 64) + (32 * 32 * 9 + 64) + 16 * 32
    by_hand += (32 * 64 * 9 + 128) + (64 * 64 * 9 + 128) + 32 * 64 + 64 * 10 + 10
    assert by_hand == 77_850
    model = build_model(genome, CIFAR)
    assert math.isclose(count_flops(genome, CIFAR), _flops(reference, CIFAR), rel_tol=0.01)
    out = model(torch.randn(2, *CIFAR.shape))
    out.sum().backward()
    assert out.shape == (2, 10)


def test_resnet_blocks_add_the_right_tensors() -> None:
    """With every conv weight zero, a residual block passes its input through: the skip really adds it."""
    genome = Genome((ConvBlock(4, 3, "none", False), ConvBlock(4, 3, "none", False), SkipBlock(1)), (), TRAIN)
    spec = InputSpec((4, 5, 5), 3)
    model = build_model(genome, spec).eval()
    with torch.no_grad():
        second = model.features[1][0]
        second.weight.zero_()
        second.bias.zero_()
        x = torch.randn(1, *spec.shape)
        first = model.features[0](x)
        expected = model.head(model.reduce(first + 0))  # skip adds block 0's output to block 1's (zero)
        assert torch.allclose(model(x), expected)


def test_layer_table() -> None:
    table = format_layer_table(resnet(), CIFAR)
    lines = table.splitlines()
    assert lines[0].split() == ["#", "layer", "output", "shape", "parameters"]
    assert "input" in lines[2] and "(3, 32, 32)" in lines[2]
    assert "conv 3x3 /2, 32 filters, batch norm, relu" in table and "(32, 16, 16)" in table
    assert "skip: + #3 (1x1 conv projection), relu" in table and "skip: + #0, relu" in table
    assert "global avg pool" in table and "linear (classifier)" in table
    assert lines[-1].startswith(f"total: {count_params(resnet(), CIFAR):,} parameters, ")
    assert len(lines) == 2 + 1 + 10 + 2 + 1
    flat = format_layer_table(mnist1d_cnn(), MNIST1D)
    assert "conv 5 /2, 25 filters, relu" in flat and "flatten" in flat and "(125)" in flat


def test_decoder_is_self_contained_and_reads_only_format_2(tmp_path: Path) -> None:
    source = (ROOT / "menndl" / "genome" / "decode.py").read_text()
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert all(n.split(".")[0] in ("torch", "__future__", "math", "typing") for n in names), names
    script = tmp_path / "standalone.py"
    genome = resnet((4, 8)).to_dict()
    script.write_text(
        source
        + f"\nimport json\nm = build_model_from_dict(json.loads({json.dumps(genome)!r}), (3, 9, 9), 5)\n"
        + "print(tuple(m(torch.randn(2, 3, 9, 9)).shape))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 5)"


def test_loading_a_genome_runs_no_code() -> None:
    for name in ("genome.py", "fields.py", "space.py", "shapes.py", "repair.py", "operators.py", "sampling.py"):
        tree = ast.parse((ROOT / "menndl" / "genome" / name).read_text())
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not calls & {"eval", "exec", "compile", "__import__"}, name
        imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import)) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"pickle", "importlib", "marshal", "shelve", "torch"}, name
    hostile = {"format": 2, "features": [{"type": "__import__('os').system('false')"}], "reduce": None,
               "head": [], "train": {}}
    with pytest.raises(ValueError, match="unknown block type"):
        Genome.from_dict(hostile)
    with pytest.raises(ValueError, match="unknown key"):
        Genome.from_json(json.dumps({**mnist1d_cnn().to_dict(), "__reduce__": "os.system"}))


def test_learning_rate_schedules() -> None:
    assert [learning_rate_factor("constant", p) for p in (0, 0.5, 1)] == [1, 1, 1]
    assert learning_rate_factor("cosine", 0) == 1 and learning_rate_factor("cosine", 1) < 1e-12
    assert math.isclose(learning_rate_factor("cosine", 0.5), 0.5)
    assert [learning_rate_factor("step", p) for p in (0.2, 0.6, 0.9)] == [1, 0.1, 0.01]
    assert learning_rate_factor("warmup_cosine", 0) == 0 and learning_rate_factor("warmup_cosine", 0.05) == 1
    with pytest.raises(ValueError, match="schedule"):
        learning_rate_factor("exponential", 0.5)


def test_trainer_uses_budget_schedule_and_momentum() -> None:
    from menndl.data import load_dataset
    from menndl.job import TrainingConfig
    from menndl.worker.trainer import Trainer, make_optimizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(load_dataset("digits"), TrainingConfig(epochs=4, max_seconds=20), torch.device("cpu"))
        train = TrainParams(0.05, 64, "sgd", 0.0, momentum=0.5, schedule="cosine", budget=0.5)
        genome = Genome((ConvBlock(8, 3, "relu", True),), (DenseBlock(16, "relu", 0.0),), train)
        result = trainer.evaluate({"genome": genome.to_dict(), "seed": 0})
        assert result["status"] == "ok", result.get("error")
        assert result["epochs"] == 2 and result["accuracy"] > 0.5
    finally:
        torch.set_num_threads(threads)
    optimizer = make_optimizer(nn.Linear(2, 2), "sgd", 0.1, 0.0, momentum=0.0)
    assert optimizer.param_groups[0]["momentum"] == 0.0 and not optimizer.param_groups[0]["nesterov"]
