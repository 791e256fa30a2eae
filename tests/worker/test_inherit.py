"""Lamarckian weight inheritance (`menndl.worker.inherit`) on real networks built from real genomes.

* hand-made parent/child pairs: the same genome, new training parameters, an inserted identity conv,
  an added projecting skip (and one inserted before another skip), a removed block, a changed filter count;
* property: mutation and crossover children of random genomes (1-D classification, 2-D segmentation)
  never raise, take only same-shaped tensors, layer by layer, and still run; an add_block / add_skip child
  that reports its one added layer preserved and every other layer inherited computes its parent's function.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace

import pytest

from menndl.genome import (
    ConvBlock,
    DenseBlock,
    Genome,
    GlobalPoolBlock,
    InputSpec,
    PoolBlock,
    SearchSpace,
    SkipBlock,
    TrainParams,
    alter_training,
    crossover,
    insert_feature,
    mutate,
    random_genome,
    remove_feature,
)

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from menndl.genome.decode import build_model  # noqa: E402
from menndl.worker.inherit import Inheritance, inherit_weights  # noqa: E402
from menndl.worker.measure import weights_as_arrays  # noqa: E402

TRAIN = TrainParams(learning_rate=0.01, batch_size=32, optimizer="adam", weight_decay=0.0)
SPEC = InputSpec((1, 40), 10)
SEGMENTATION = InputSpec((2, 12, 12), 3, "segmentation")
SEGMENTATION_SPACE = SearchSpace(max_features=4, filters=(4, 16))


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny networks: one thread is faster, and steady on a busy machine (OpenMP threads spin for a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(genome: Genome, spec: InputSpec, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(genome, spec)


def _trained(genome: Genome, spec: InputSpec, seed: int = 0, steps: int = 3) -> nn.Module:
    """A network a few SGD steps away from its initialisation (batch-norm statistics moved too), in eval mode."""
    model = _net(genome, spec, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(4, *spec.shape, generator=generator)).square().mean().backward()
        optimizer.step()
    return model.eval()


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None}


def _same_output(a: nn.Module, b: nn.Module, spec: InputSpec, atol: float = 1e-5) -> bool:
    x = torch.randn(3, *spec.shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=atol, rtol=0)


def _inherit(child_genome: Genome, parent: nn.Module, parent_genome: Genome, spec: InputSpec,
             seed: int = 99) -> tuple[nn.Module, Inheritance]:  # fmt: skip
    child = _net(child_genome, spec, seed)
    return child, inherit_weights(child, child_genome, parent.state_dict(), parent_genome)


# ---------------------------------------------------------------- hand-made pairs


@pytest.mark.parametrize("seed", range(12))
def test_identical_genome_copies_everything(seed: int) -> None:
    spec, space = (SEGMENTATION, SEGMENTATION_SPACE) if seed % 4 == 3 else (SPEC, SearchSpace())
    genome = random_genome(random.Random(seed), space, spec)
    parent = _trained(genome, spec, seed)
    child, got = _inherit(genome, parent, genome, spec)
    assert got.layers == got.total_layers == len(_layers(child)) > 0
    assert got.tensors == len(parent.state_dict()) and got.preserved == 0
    for name, tensor in child.state_dict().items():
        assert torch.equal(tensor, parent.state_dict()[name]), name
    x = torch.randn(2, *spec.shape)
    with torch.no_grad():
        assert torch.equal(child.eval()(x), parent(x))


def test_new_training_parameters_keep_every_layer_and_numpy_state_works() -> None:
    parent_genome = Genome(
        (ConvBlock(8, 5, "relu", True), PoolBlock("max", 2), ConvBlock(16, 3, "gelu", True, dropout=0.2)),
        (DenseBlock(32, "relu", 0.3),),
        TRAIN,
    )
    parent = _trained(parent_genome, SPEC)
    rng = random.Random(3)
    child_genome = alter_training(parent_genome, rng, SearchSpace(), SPEC)
    while child_genome.train == parent_genome.train:
        child_genome = alter_training(parent_genome, rng, SearchSpace(), SPEC)
    assert child_genome.features == parent_genome.features and child_genome.head == parent_genome.head
    for state in (parent.state_dict(), weights_as_arrays(parent)):  # tensors, or the worker's float32 arrays
        child = _net(child_genome, SPEC, 5)
        got = inherit_weights(child, child_genome, state, parent_genome)
        assert got == Inheritance(layers=6, tensors=len(state), preserved=0, total_layers=6)
        assert _same_output(child, parent, SPEC, atol=0)
        assert child.state_dict()["features.0.1.num_batches_tracked"].item() == 3  # int64 from a float32 array


@pytest.mark.parametrize("dilation", [1, 2])
def test_inserted_identity_conv_preserves_the_function(dilation: int) -> None:
    parent_genome = Genome(
        (ConvBlock(8, 5, "relu", True), ConvBlock(16, 3, "gelu", True)),
        (DenseBlock(24, "relu", 0.0),),
        TRAIN,
        GlobalPoolBlock("avg"),
    )
    parent = _trained(parent_genome, SPEC)
    inserted = ConvBlock(8, 3, "relu", False, dilation=dilation)
    child_genome = insert_feature(parent_genome, 1, inserted)
    child, got = _inherit(child_genome, parent, parent_genome, SPEC)
    assert got.preserved == 1 and got.layers == got.total_layers - 1
    conv = child.features[1][0]
    assert conv.weight.sum().item() == 8 and torch.count_nonzero(conv.bias) == 0  # the identity kernel
    assert _same_output(child, parent, SPEC)


@pytest.mark.parametrize(
    "before, inserted",
    [
        ("gelu", ConvBlock(8, 3, "relu", False)),  # relu on an input that may be negative
        ("relu", ConvBlock(8, 3, "relu", True)),  # batch norm at its fresh init is no identity
        ("relu", ConvBlock(8, 3, "silu", False)),
        ("relu", ConvBlock(8, 3, "relu", False, stride=2)),
        ("relu", ConvBlock(12, 3, "relu", False)),  # 8 channels in, 12 out
    ],
)
def test_an_insert_that_cannot_be_the_identity_is_not_counted(before: str, inserted: ConvBlock) -> None:
    parent_genome = Genome(
        (ConvBlock(8, 5, before, False), ConvBlock(16, 3, "relu", False)), (), TRAIN, GlobalPoolBlock("avg")
    )
    parent = _trained(parent_genome, SPEC)
    child_genome = insert_feature(parent_genome, 1, inserted)
    child, got = _inherit(child_genome, parent, parent_genome, SPEC)
    assert got.preserved == 0
    assert got.layers == 3 - (inserted.filters != 8)  # conv 0, classifier, and conv 2 unless its input widened


def test_added_projecting_skip_adds_zero() -> None:
    parent_genome = Genome(
        (ConvBlock(8, 5, "relu", False), ConvBlock(16, 3, "relu", True, stride=2)), (), TRAIN, GlobalPoolBlock("max")
    )
    parent = _trained(parent_genome, SPEC)
    child_genome = insert_feature(parent_genome, 2, SkipBlock(span=1, activation="none"))  # block 0's output
    child, got = _inherit(child_genome, parent, parent_genome, SPEC)
    project = child.features[2].project
    assert isinstance(project, nn.Conv1d) and project.weight.shape == (16, 8, 1) and project.stride == (2,)
    assert torch.count_nonzero(project.weight) == 0
    assert got.preserved == 1 and got.layers == got.total_layers - 1 == 4
    assert _same_output(child, parent, SPEC)


def test_skip_inserted_before_another_skip_leaves_it_its_weights() -> None:
    """insert_feature lengthens the old skip's span; the skips pair by the tensors they join, not by span."""
    parent_genome = Genome(
        (
            ConvBlock(11, 5, "relu", False),
            ConvBlock(30, 3, "relu", True, stride=2),
            SkipBlock(1, "relu"),  # adds block 0's output (11 -> 30 channels, stride 2)
            ConvBlock(15, 3, "silu", False),
            SkipBlock(1, "relu"),  # adds the first skip's output (30 -> 15 channels)
        ),
        (),
        TRAIN,
    )
    parent = _trained(parent_genome, SPEC)
    for position in (2, 3):  # before or after the first skip, joining the same two tensors
        child_genome = insert_feature(parent_genome, position, SkipBlock(1 + position - 2, "relu"))
        child, got = _inherit(child_genome, parent, parent_genome, SPEC)
        assert got.preserved == 1 and got.layers == got.total_layers - 1, position
        assert _same_output(child, parent, SPEC), position


def test_removed_middle_block_keeps_the_blocks_around_it() -> None:
    parent_genome = Genome(
        (
            ConvBlock(8, 5, "relu", True),
            ConvBlock(8, 3, "gelu", False),  # removed: the next conv still sees 8 channels
            ConvBlock(12, 3, "relu", True, dropout=0.1),
            PoolBlock("avg", 2),
            ConvBlock(16, 3, "relu", False),
        ),
        (DenseBlock(20, "relu", 0.2),),
        TRAIN,
        GlobalPoolBlock("avg"),
    )
    parent = _trained(parent_genome, SPEC)
    child_genome = remove_feature(parent_genome, 1)
    child, got = _inherit(child_genome, parent, parent_genome, SPEC)
    assert got.layers == got.total_layers == 7 and got.preserved == 0
    ours, theirs = child.state_dict(), parent.state_dict()
    for child_index, parent_index in ((0, 0), (1, 2), (3, 4)):
        for name in ours:
            if name.startswith(f"features.{child_index}."):
                other = f"features.{parent_index}." + name.split(".", 2)[2]
                assert torch.equal(ours[name], theirs[other]), name  # batch-norm statistics too
    assert torch.equal(ours["head.0.weight"], theirs["head.0.weight"])


def test_changed_filter_count_leaves_that_conv_fresh() -> None:
    parent_genome = Genome(
        (ConvBlock(8, 5, "relu", False), ConvBlock(12, 3, "relu", True), ConvBlock(16, 3, "relu", True)),
        (),
        TRAIN,
        GlobalPoolBlock("max"),
    )
    parent = _trained(parent_genome, SPEC)
    child_genome = replace(parent_genome, features=(*parent_genome.features[:1],
                                                    replace(parent_genome.features[1], filters=20),
                                                    *parent_genome.features[2:]))  # fmt: skip
    child = _net(child_genome, SPEC, 99)
    fresh = {name: t.clone() for name, t in child.state_dict().items()}
    got = inherit_weights(child, child_genome, parent.state_dict(), parent_genome)
    ours, theirs = child.state_dict(), parent.state_dict()
    copied = {"features.0.0", "features.2.1", "head.0"}  # conv 0, the last batch norm, the classifier (16 wide)
    for name, tensor in ours.items():
        layer = name.rsplit(".", 1)[0]
        assert torch.equal(tensor, theirs[name] if layer in copied else fresh[name]), name
    assert got == Inheritance(layers=3, tensors=2 + 5 + 2, preserved=0, total_layers=6)


def test_unknown_missing_and_misshapen_entries_are_ignored() -> None:
    genome = Genome((ConvBlock(8, 3, "relu", True), ConvBlock(8, 3, "relu", False)), (), TRAIN)
    parent = _trained(genome, SPEC)
    state = dict(parent.state_dict())
    del state["features.0.1.running_var"]  # batch norm 0 not whole
    state["features.1.0.weight"] = torch.zeros(3, 3)  # conv 1 misshapen: its bias is not taken alone
    state["no.such.layer"] = torch.ones(2)
    state["features.9.0.weight"] = torch.ones(8, 8, 3)
    child = _net(genome, SPEC, 1)
    bias = child.features[1][0].bias.clone()
    got = inherit_weights(child, genome, state, genome)
    assert got == Inheritance(layers=2, tensors=1 + 4 + 2, preserved=0, total_layers=4)
    assert torch.equal(child.features[1][0].bias, bias)
    other = Genome((PoolBlock("max", 2), ConvBlock(5, 1, "tanh", False)), (DenseBlock(7, "none", 0.0),), TRAIN)
    got = inherit_weights(child, genome, _net(other, SPEC, 2).state_dict(), other)  # a stranger's weights
    assert 0 <= got.layers <= got.total_layers == 4


# ---------------------------------------------------------------- property: random mutation and crossover children


def _constant_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[float, str]]:
    """The model's state dict with entry ``j`` filled with ``1000 + j`` (so a copy says where it came from)."""
    state, origin = {}, {}
    for j, (name, tensor) in enumerate(model.state_dict().items()):
        state[name] = torch.full_like(tensor, 1000 + j)
        origin[1000.0 + j] = name
    return state, origin


def _check_pair(parent_genome: Genome, child_genome: Genome, spec: InputSpec, seed: int) -> None:
    parent_state, origin = _constant_state(_net(parent_genome, spec, seed))
    child = _net(child_genome, spec, seed + 1)
    got = inherit_weights(child, child_genome, parent_state, parent_genome)
    layers = _layers(child)
    assert got.total_layers == len(layers) and 0 <= got.layers <= got.total_layers
    assert 0 <= got.preserved <= got.total_layers - got.layers
    copied = whole = 0
    for name, module in layers.items():
        entries = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
        sources, before = set(), copied
        for attribute, tensor in entries.items():
            value = float(tensor.detach().flatten()[0])
            if value not in origin or not torch.all(tensor == value):
                continue
            source = origin[value]
            assert parent_state[source].shape == tensor.shape, (name, attribute, source)
            assert source.rsplit(".", 1)[1] == attribute, (name, attribute, source)
            sources.add(source.rsplit(".", 1)[0])
            copied += 1
        assert len(sources) <= 1, (name, sources)  # a layer comes from one parent layer
        whole += copied - before == len(entries)
    assert copied == got.tensors and whole == got.layers
    with torch.no_grad():
        out = child.eval()(torch.randn(2, *spec.shape))
    assert out.shape[0] == 2


@pytest.mark.parametrize(
    "spec, space, pairs",
    [(SPEC, SearchSpace(), 150), (SEGMENTATION, SEGMENTATION_SPACE, 40)],
    ids=["1d-classification", "2d-segmentation"],
)
def test_random_children_take_only_same_shaped_tensors(spec: InputSpec, space: SearchSpace, pairs: int) -> None:
    rng = random.Random(11)
    operators = set()
    for n in range(pairs):
        parent = random_genome(rng, space, spec)
        if n % 3 == 2:
            child, operator = crossover(parent, random_genome(rng, space, spec), rng, space, spec), "crossover"
        else:
            child, operator = mutate(parent, rng, space, spec)
        operators.add(operator)
        _check_pair(parent, child, spec, n)
    assert len(operators) >= 5


def test_children_that_report_a_preserving_start_compute_the_parents_function() -> None:
    space = SearchSpace(max_features=5, filters=(8, 9), kernels=(3,), strides=(1,), activations=("relu", "none"))
    rng = random.Random(4)
    checked = 0
    for n in range(200):
        parent_genome = random_genome(rng, space, SPEC)
        child_genome, operator = mutate(parent_genome, rng, space, SPEC, {"add_block": 1.0, "add_skip": 1.0})
        if child_genome == parent_genome:
            continue
        parent = _net(parent_genome, SPEC, n).eval()
        child, got = _inherit(child_genome, parent, parent_genome, SPEC, seed=n + 1)
        if got.preserved == 1 and got.layers == got.total_layers - 1:
            checked += 1
            assert _same_output(child, parent, SPEC, atol=1e-4), (operator, parent_genome, child_genome)
    assert checked >= 15
