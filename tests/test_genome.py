"""Tests for menndl.genome: data, space, operators, decoding."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from menndl.genome import (
    MUTATIONS,
    ConvBlock,
    DenseBlock,
    Genome,
    InputSpec,
    InvalidGenome,
    PoolBlock,
    SearchSpace,
    TrainParams,
    check,
    count_flops,
    count_params,
    crossover,
    is_valid,
    layer_shapes,
    mutate,
    random_genome,
    repair,
)

ROOT = Path(__file__).resolve().parents[1]
SPACE = SearchSpace()
SPECS = {
    "1d": InputSpec((1, 40), 3),
    "2d": InputSpec((1, 8, 8), 10),
    "3d": InputSpec((2, 8, 8, 8), 4),
}
TRAIN = TrainParams(learning_rate=0.001, batch_size=32, optimizer="adam", weight_decay=0.0)


def _reverse_keys(value: Any) -> Any:
    """Rebuild dicts with their keys in reverse order, recursively."""
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


def _sig_digits(x: float) -> int:
    return len(f"{x:.15g}".split("e")[0].replace(".", "").replace("-", "").strip("0"))


# ---------------------------------------------------------------- data


def test_hash_stable_under_key_order_and_json_roundtrip() -> None:
    rng = random.Random(1)
    hashes = set()
    for _ in range(50):
        g = random_genome(rng, SPACE, SPECS["2d"])
        shuffled = json.dumps(_reverse_keys(g.to_dict()), indent=2)
        assert shuffled != g.to_json()
        back = Genome.from_json(shuffled)
        assert back == g
        assert back.hash == g.hash
        assert Genome.from_json(g.to_json()).to_json() == g.to_json()
        assert len(g.hash) == 16 and int(g.hash, 16) >= 0
        hashes.add(g.hash)
    assert len(hashes) == 50


def test_hash_changes_with_any_field() -> None:
    g = Genome((ConvBlock(8, 3, "relu", True),), (DenseBlock(16, "gelu", 0.1),), TRAIN)
    variants = [
        replace(g, features=(ConvBlock(8, 3, "relu", False),)),
        replace(g, head=(DenseBlock(16, "gelu", 0.2),)),
        replace(g, train=replace(TRAIN, learning_rate=0.002)),
    ]
    assert len({g.hash, *(v.hash for v in variants)}) == 4


def test_int_weight_decay_gives_same_hash_as_float() -> None:
    g = Genome((ConvBlock(8, 3, "relu", True),), (), TRAIN)
    data = g.to_dict()
    data["train"]["weight_decay"] = 0
    assert Genome.from_dict(data).hash == g.hash


def _good() -> dict[str, Any]:
    g = Genome(
        (ConvBlock(8, 3, "relu", True), PoolBlock("max", 2), ConvBlock(16, 5, "silu", False)),
        (DenseBlock(32, "gelu", 0.25),),
        TRAIN,
    )
    return g.to_dict()


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value

    return edit


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]

    return edit


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (
            _set(("features", 2, "type"), "lstm"),
            "genome.features[2]: unknown block type 'lstm' (expected conv, pool)",
        ),
        (_set(("features", 0, "kernel"), 4), "genome.features[0].kernel"),
        (_set(("features", 0, "filters"), 0), "genome.features[0].filters"),
        (_set(("features", 0, "filters"), 8.0), "genome.features[0].filters"),
        (_set(("features", 0, "activation"), "tanh"), "genome.features[0].activation"),
        (_set(("features", 0, "batch_norm"), 1), "genome.features[0].batch_norm"),
        (_set(("features", 1, "size"), 1), "genome.features[1].size"),
        (_set(("features", 1, "kind"), "min"), "genome.features[1].kind"),
        (_set(("head", 0, "dropout"), 0.95), "genome.head[0].dropout"),
        (_set(("head", 0, "type"), "conv"), "genome.head[0]: unknown block type 'conv'"),
        (_set(("head", 0, "extra"), 1), "genome.head[0]: unknown key 'extra'"),
        (_delete(("head", 0, "units")), "genome.head[0]: missing key 'units'"),
        (_set(("train", "learning_rate"), -0.1), "genome.train.learning_rate"),
        (_set(("train", "learning_rate"), float("nan")), "genome.train.learning_rate"),
        (_set(("train", "optimizer"), "rmsprop"), "genome.train.optimizer"),
        (_set(("train", "batch_size"), "32"), "genome.train.batch_size"),
        (_delete(("train",)), "genome: missing key 'train'"),
        (_set(("features",), {"type": "conv"}), "genome.features: expected a list"),
        (_set(("features", 0), [1, 2]), "genome.features[0]: expected a mapping"),
        (_set(("colour",), "red"), "genome: unknown key 'colour'"),
    ],
)
def test_from_dict_rejects_malformed(edit: Callable[[dict[str, Any]], None], fragment: str) -> None:
    data = _good()
    Genome.from_dict(data)  # the unedited dict is fine
    edit(data)
    with pytest.raises(ValueError) as info:
        Genome.from_dict(data)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["{", "[1, 2", "", "not json", "[]"])
def test_from_json_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError) as info:
        Genome.from_json(text)
    assert "\n" not in str(info.value) and str(info.value).startswith("genome")


def test_blocks_validate_on_construction() -> None:
    with pytest.raises(ValueError, match="ConvBlock.kernel"):
        ConvBlock(8, 2, "relu", True)
    with pytest.raises(ValueError, match="Genome.head"):
        Genome((ConvBlock(8, 3, "relu", True),), (PoolBlock("max", 2),), TRAIN)


# ---------------------------------------------------------------- space


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_features", 0),
        ("max_head", -1),
        ("filters", (64, 8)),
        ("filters", (0, 8)),
        ("filters", (8,)),
        ("kernels", (3, 4)),
        ("kernels", ()),
        ("pool_sizes", (1,)),
        ("dense_units", (16.5, 32)),
        ("activations", ("relu", "tanh")),
        ("learning_rate", (0.0, 0.1)),
        ("learning_rate", (0.1, 0.01)),
        ("batch_sizes", (0, 32)),
        ("optimizers", ("lbfgs",)),
        ("weight_decay", (-1.0, 0.0)),
        ("max_dropout", 0.9),
        ("max_dropout", True),
    ],
)
def test_search_space_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValueError) as info:
        SearchSpace(**{field: value})
    assert str(info.value).startswith(f"space.{field}: expected ")


def test_search_space_accepts_lists_and_ints() -> None:
    space = SearchSpace(kernels=[3], learning_rate=[1, 2], max_dropout=0)
    assert space.kernels == (3,) and space.learning_rate == (1.0, 2.0)
    assert isinstance(space.max_dropout, float)


def test_input_spec() -> None:
    assert [s.spatial_rank for s in SPECS.values()] == [1, 2, 3]
    for shape in [(3,), (1, 2, 3, 4, 5), (1, 0, 4)]:
        with pytest.raises(ValueError, match="input.shape"):
            InputSpec(shape, 2)
    with pytest.raises(ValueError, match="input.num_classes"):
        InputSpec((1, 4), 0)


def test_layer_shapes_params_and_flops_by_hand() -> None:
    g = Genome(
        (ConvBlock(4, 3, "relu", False), PoolBlock("avg", 2), ConvBlock(6, 1, "gelu", True)),
        (DenseBlock(5, "relu", 0.0),),
        TRAIN,
    )
    spec = InputSpec((2, 8, 6), 3)
    assert layer_shapes(g, spec) == [(4, 8, 6), (4, 4, 3), (6, 4, 3), (5,), (3,)]
    conv1 = 2 * 4 * 9 + 4
    conv2 = 4 * 6 + 2 * 6
    dense = 72 * 5 + 5
    out = 5 * 3 + 3
    assert count_params(g, spec) == conv1 + conv2 + dense + out
    flops = 2 * (2 * 9 * 4 * 48) + 2 * (4 * 6 * 12) + 2 * 72 * 5 + 2 * 5 * 3
    assert count_flops(g, spec) == flops


def test_layer_shapes_rejects_pool_chain_below_one() -> None:
    pools = tuple(PoolBlock("max", 2) for _ in range(3))
    g = Genome((ConvBlock(8, 3, "relu", True), *pools), (), TRAIN)
    assert layer_shapes(g, InputSpec((1, 8, 8), 2))[-2] == (8, 1, 1)
    with pytest.raises(InvalidGenome, match=r"genome.features\[3\]"):
        layer_shapes(g, InputSpec((1, 8, 4), 2))
    assert not is_valid(g, SPACE, InputSpec((1, 8, 4), 2))


def test_check_rejects_out_of_space() -> None:
    spec = SPECS["2d"]
    base = Genome((ConvBlock(8, 3, "relu", True),), (), TRAIN)
    check(base, SPACE, spec)
    bad = [
        replace(base, features=()),
        replace(base, features=(ConvBlock(128, 3, "relu", True),)),
        replace(base, features=(ConvBlock(8, 7, "relu", True),)),
        replace(base, features=base.features * 7),
        replace(base, head=(DenseBlock(16, "relu", 0.0),) * 3),
        replace(base, head=(DenseBlock(16, "relu", 0.6),)),
        replace(base, train=replace(TRAIN, learning_rate=0.5)),
        replace(base, train=replace(TRAIN, batch_size=48)),
    ]
    for g in bad:
        with pytest.raises(InvalidGenome):
            check(g, SPACE, spec)
        assert not is_valid(g, SPACE, spec)
        assert is_valid(repair(g, SPACE, spec), SPACE, spec)


def test_repair_clamps_and_truncates() -> None:
    space = SearchSpace(max_features=3, max_head=1, kernels=(3, 5), filters=(8, 32), pool_sizes=(2, 4))
    spec = InputSpec((1, 4), 2)
    g = Genome(
        (
            ConvBlock(100, 1, "relu", True),
            PoolBlock("max", 2),
            PoolBlock("max", 4),
            ConvBlock(8, 3, "relu", True),
        ),
        (DenseBlock(1000, "relu", 0.0), DenseBlock(20, "relu", 0.0)),
        TRAIN,
    )
    fixed = repair(g, space, spec)
    assert fixed.features == (ConvBlock(32, 3, "relu", True), PoolBlock("max", 2))
    assert fixed.head == (DenseBlock(256, "relu", 0.0),)
    check(fixed, space, spec)
    assert repair(fixed, space, spec) == fixed


@pytest.mark.parametrize("rank", list(SPECS))
def test_random_genomes_valid_and_varied(rank: str) -> None:
    spec = SPECS[rank]
    rng = random.Random(7)
    genomes = [random_genome(rng, SPACE, spec) for _ in range(300)]
    for g in genomes:
        check(g, SPACE, spec)
        for x in (g.train.learning_rate, g.train.weight_decay, *(d.dropout for d in g.head)):
            assert _sig_digits(x) <= 3
    depths = Counter(len(g.features) for g in genomes)
    assert set(depths) == set(range(1, SPACE.max_features + 1))
    assert {len(g.head) for g in genomes} == {0, 1, 2}
    assert any(isinstance(b, PoolBlock) for g in genomes for b in g.features)
    assert len({g.hash for g in genomes}) == len(genomes)


def test_random_genome_never_pools_tiny_input() -> None:
    spec = InputSpec((1, 1, 5), 2)
    rng = random.Random(3)
    for _ in range(100):
        g = random_genome(rng, SPACE, spec)
        assert all(isinstance(b, ConvBlock) for b in g.features)


def test_random_genome_is_deterministic() -> None:
    a = [random_genome(random.Random(11), SPACE, SPECS["3d"]) for _ in range(2)]
    assert a[0] == a[1]


# ---------------------------------------------------------------- operators


@pytest.mark.parametrize("rank", list(SPECS))
def test_mutations_and_crossovers_stay_valid(rank: str) -> None:
    spec = SPECS[rank]
    rng = random.Random(42)
    population = [random_genome(rng, SPACE, spec) for _ in range(20)]
    used: Counter[str] = Counter()
    for step in range(500):
        parent = population[step % len(population)]
        child, name = mutate(parent, rng, SPACE, spec)
        check(child, SPACE, spec)
        assert child != parent
        used[name] += 1
        population[step % len(population)] = child
    assert set(used) == set(MUTATIONS)
    for _ in range(500):
        a, b = rng.sample(population, 2)
        child = crossover(a, b, rng, SPACE, spec)
        check(child, SPACE, spec)
        assert child.features[0] == a.features[0]


def test_each_operator_valid_on_tight_space() -> None:
    space = SearchSpace(max_features=2, max_head=1, pool_sizes=(2, 3), filters=(4, 5))
    spec = InputSpec((1, 3, 3), 2)
    rng = random.Random(5)
    for _ in range(200):
        g = random_genome(rng, space, spec)
        for name, op in MUTATIONS.items():
            child = op(g, rng, space, spec)
            assert is_valid(child, space, spec), name


def test_mutation_operators_do_what_they_say() -> None:
    spec = SPECS["2d"]
    rng = random.Random(9)
    for _ in range(100):
        g = random_genome(rng, SPACE, spec)
        n = len(g.features) + len(g.head)
        added = MUTATIONS["add_block"](g, rng, SPACE, spec)
        assert len(added.features) + len(added.head) in ({n + 1} if added != g else {n})
        removed = MUTATIONS["remove_block"](g, rng, SPACE, spec)
        assert len(removed.features) + len(removed.head) in ({n - 1} if removed != g else {n})
        altered = MUTATIONS["alter_block"](g, rng, SPACE, spec)
        assert altered.train == g.train and altered != g
        assert len(altered.features) == len(g.features) and len(altered.head) == len(g.head)
        diffs = [x != y for x, y in zip(altered.features + altered.head, g.features + g.head)]
        assert sum(diffs) == 1
        trained = MUTATIONS["alter_training"](g, rng, SPACE, spec)
        assert trained.features == g.features and trained.head == g.head
        changed = [getattr(trained.train, f) != getattr(g.train, f) for f in vars(g.train)]
        assert sum(changed) == 1
        assert _sig_digits(trained.train.learning_rate) <= 3


def test_mutate_weights_and_determinism() -> None:
    spec = SPECS["1d"]
    g = random_genome(random.Random(0), SPACE, spec)
    rng = random.Random(1)
    names = {mutate(g, rng, SPACE, spec, {"alter_training": 1.0})[1] for _ in range(50)}
    assert names == {"alter_training"}
    runs = []
    for _ in range(2):
        rng = random.Random(2)
        runs.append([mutate(g, rng, SPACE, spec)[0].hash for _ in range(20)])
    assert runs[0] == runs[1]
    for bad in ({"grow": 1.0}, {"add_block": -1.0}, {"add_block": 0.0}):
        with pytest.raises(ValueError, match="mutation weights"):
            mutate(g, rng, SPACE, spec, bad)


# ---------------------------------------------------------------- decode


@pytest.mark.parametrize("rank", list(SPECS))
def test_count_params_matches_torch_and_forward_shape(rank: str) -> None:
    torch = pytest.importorskip("torch")
    from menndl.genome.decode import build_model

    spec = SPECS[rank]
    rng = random.Random(13)
    small = SearchSpace(filters=(2, 12), dense_units=(4, 32))
    for i in range(40):
        g = random_genome(rng, SPACE if i % 2 else small, spec)
        model = build_model(g, spec)
        assert count_params(g, spec) == sum(p.numel() for p in model.parameters())
        if i % 2 == 0:
            model.eval()
            with torch.no_grad():
                out = model(torch.randn(3, *spec.shape))
            assert out.shape == (3, spec.num_classes)
            model.train()
            assert model(torch.randn(2, *spec.shape)).shape == (2, spec.num_classes)


def test_import_genome_does_not_import_torch() -> None:
    code = "import sys, menndl.genome; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
