"""Tests for menndl.genome without torch: data, JSON, space, shapes, repair, operators.

Property-based tests over thousands of genomes are in test_genome_properties.py;
decoding, the reference models and the layer table in test_genome_models.py.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from menndl.genome import (
    ACTIVATIONS,
    MUTATIONS,
    ConvBlock,
    DenseBlock,
    Genome,
    GlobalPoolBlock,
    InputSpec,
    InvalidGenome,
    PoolBlock,
    SearchSpace,
    SkipBlock,
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
    resolve_space,
    walk,
)
from menndl.genome.repair import default_conv, insert_feature, remove_feature
from menndl.genome.shapes import skip_strides

ROOT = Path(__file__).resolve().parents[2]
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
    conv = g.features[0]
    variants = [
        replace(g, features=(replace(conv, batch_norm=False),)),
        replace(g, features=(replace(conv, stride=2),)),
        replace(g, features=(replace(conv, dilation=2),)),
        replace(g, features=(replace(conv, dropout=0.1),)),
        replace(g, features=(conv, SkipBlock(1))),
        replace(g, reduce=GlobalPoolBlock("avg")),
        replace(g, reduce=GlobalPoolBlock("max")),
        replace(g, head=(DenseBlock(16, "gelu", 0.2),)),
        replace(g, train=replace(TRAIN, learning_rate=0.002)),
        replace(g, train=replace(TRAIN, momentum=0.8)),
        replace(g, train=replace(TRAIN, schedule="cosine")),
        replace(g, train=replace(TRAIN, budget=0.5)),
    ]
    assert len({g.hash, *(v.hash for v in variants)}) == len(variants) + 1
    for v in variants:
        assert Genome.from_json(v.to_json()) == v


def test_format_version_and_format_1_upgrade() -> None:
    assert _good()["format"] == 2
    v1 = {
        "features": [
            {"type": "conv", "filters": 8, "kernel": 3, "activation": "relu", "batch_norm": True},
            {"type": "pool", "kind": "max", "size": 2},
        ],
        "head": [{"type": "dense", "units": 16, "activation": "gelu", "dropout": 0.0}],
        "train": {"learning_rate": 0.001, "batch_size": 32, "optimizer": "sgd", "weight_decay": 0.0},
    }
    g = Genome.from_dict(v1)
    assert g.features == (ConvBlock(8, 3, "relu", True, stride=1, dilation=1, dropout=0.0), PoolBlock("max", 2))
    assert g.reduce is None and g.train.momentum == 0.9 and g.train.schedule == "constant"
    assert g.train.budget == 1.0 and g.to_dict()["format"] == 2
    for version in (3, "2", True, None):
        data = _good()
        data["format"] = version
        with pytest.raises(ValueError, match="genome.format: unsupported genome format"):
            Genome.from_dict(data)


def test_int_weight_decay_gives_same_hash_as_float() -> None:
    g = Genome((ConvBlock(8, 3, "relu", True),), (), TRAIN)
    data = g.to_dict()
    data["train"]["weight_decay"] = 0
    assert Genome.from_dict(data).hash == g.hash


def _good() -> dict[str, Any]:
    g = Genome(
        (ConvBlock(8, 3, "relu", True), PoolBlock("max", 2), ConvBlock(16, 5, "silu", False), SkipBlock(1, "relu")),
        (DenseBlock(32, "gelu", 0.25),),
        TRAIN,
        GlobalPoolBlock("avg"),
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
            "genome.features[2]: unknown block type 'lstm' (expected conv, pool, skip)",
        ),
        (_set(("features", 0, "kernel"), 4), "genome.features[0].kernel"),
        (_set(("features", 0, "filters"), 0), "genome.features[0].filters"),
        (_set(("features", 0, "filters"), 8.0), "genome.features[0].filters"),
        (_set(("features", 0, "activation"), "swish"), "genome.features[0].activation"),
        (_set(("features", 0, "stride"), 0), "genome.features[0].stride"),
        (_set(("features", 0, "dilation"), 1.5), "genome.features[0].dilation"),
        (_set(("features", 0, "dropout"), -0.1), "genome.features[0].dropout"),
        (_delete(("features", 0, "stride")), "genome.features[0]: missing key 'stride'"),
        (_set(("features", 3), {"type": "skip", "span": 0, "activation": "none"}), "genome.features[3].span"),
        (_set(("features", 3), {"type": "skip", "span": 1}), "genome.features[3]: missing key 'activation'"),
        (_set(("features", 3), {"type": "os.system", "span": 1}), "unknown block type 'os.system'"),
        (_set(("reduce",), {"type": "global_pool", "kind": "median"}), "genome.reduce.kind"),
        (_set(("reduce",), {"type": "dense", "kind": "max"}), "genome.reduce: unknown block type 'dense'"),
        (_set(("train", "momentum"), 1.0), "genome.train.momentum"),
        (_set(("train", "schedule"), "exponential"), "genome.train.schedule"),
        (_set(("train", "budget"), 0.0), "genome.train.budget"),
        (_delete(("reduce",)), "genome: missing key 'reduce'"),
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
        ("activations", ("relu", "swish")),
        ("block_types", ("pool", "dense")),
        ("block_types", ("conv", "lstm")),
        ("max_skips", -1),
        ("strides", (0, 1)),
        ("dilations", ()),
        ("momentum", (0.5, 1.0)),
        ("budget", (0.0, 1.0)),
        ("budget", (0.5, 1.5)),
        ("schedules", ("linear",)),
        ("mutation_add_block", -1.0),
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


def test_search_space_defaults_depend_on_rank() -> None:
    default = SearchSpace()
    assert default.kernels is None and default.strides is None
    one, two, three = (resolve_space(default, rank) for rank in (1, 2, 3))
    assert one.kernels == (3, 5, 7, 9) and two.kernels == (1, 3, 5) and three.kernels == (1, 3)
    assert three.filters == (4, 32) and one.dilations == (1, 2, 4) and three.dilations == (1,)
    mine = resolve_space(SearchSpace(kernels=(7,)), 3)
    assert mine.kernels == (7,) and mine.filters == (4, 32)
    with pytest.raises(ValueError, match="at least one positive mutation weight"):
        SearchSpace(**{f"mutation_{name}": 0.0 for name in MUTATIONS})


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
    assert layer_shapes(g, spec) == [(4, 8, 6), (4, 4, 3), (6, 4, 3), (72,), (5,), (3,)]
    conv1 = 2 * 4 * 9 + 4
    conv2 = 4 * 6 + 2 * 6
    dense = 72 * 5 + 5
    out = 5 * 3 + 3
    assert count_params(g, spec) == conv1 + conv2 + dense + out
    flops = 2 * (2 * 9 * 4 * 48) + 2 * (4 * 6 * 12) + 2 * 72 * 5 + 2 * 5 * 3
    assert count_flops(g, spec) == flops


def test_strides_skips_and_global_pool_by_hand() -> None:
    g = Genome(
        (
            ConvBlock(4, 3, "relu", True),  # (4, 7, 5)
            ConvBlock(6, 3, "relu", False, stride=2, dilation=2),  # (6, 4, 3)
            SkipBlock(2, "relu"),  # input (2, 7, 5) -> 1x1 conv stride 2 -> (6, 4, 3)
            PoolBlock("max", 2),  # (6, 2, 1)
            SkipBlock(1),  # block 2's (6, 4, 3) -> avg pool stride (2, 3) -> (6, 2, 1)
        ),
        (),
        TRAIN,
        GlobalPoolBlock("avg"),
    )
    spec = InputSpec((2, 7, 5), 3)
    assert layer_shapes(g, spec) == [(4, 7, 5), (6, 4, 3), (6, 4, 3), (6, 2, 1), (6, 2, 1), (6,), (3,)]
    params = (2 * 4 * 9 + 8) + (4 * 6 * 9 + 6) + 2 * 6 + 0 + 0 + (6 * 3 + 3)
    assert count_params(g, spec) == params
    flops = 2 * 2 * 4 * 9 * 35 + 2 * 4 * 6 * 9 * 12 + 2 * 2 * 6 * 12 + 2 * 6 * 3
    assert count_flops(g, spec) == flops
    layers = list(walk(g, spec))
    assert (layers[2].source, layers[2].projection) == (-1, "conv")
    assert (layers[4].source, layers[4].projection) == (2, "pool")
    assert skip_strides((4, 3), (2, 1)) == (2, 3)
    assert skip_strides((10,), (6,)) is None and skip_strides((3,), (4,)) is None


@pytest.mark.parametrize(
    "features, message, repaired",
    [  # a skip reaching before the input is re-pointed at the input; one that cannot be mapped is dropped
        ((ConvBlock(8, 3, "relu", True), SkipBlock(2)), "reaches before the input", 1),
        ((ConvBlock(8, 3, "relu", True), PoolBlock("max", 2), SkipBlock(2)), "cannot map shape", 0),  # 9 -> 4
    ],
)
def test_invalid_skips_are_rejected_and_repaired(features: tuple[Any, ...], message: str, repaired: int) -> None:
    spec = InputSpec((1, 9, 9), 2)
    g = Genome(features, (), TRAIN)
    with pytest.raises(InvalidGenome, match=message):
        check(g, SPACE, spec)
    fixed = repair(g, SPACE, spec)
    check(fixed, SPACE, spec)
    assert fixed.features == features[:-1] + (SkipBlock(1),) * repaired


def test_span_keeping_insert_and_remove() -> None:
    conv = ConvBlock(8, 3, "relu", True)
    g = Genome((conv, replace(conv, filters=9), replace(conv, filters=10), SkipBlock(2, "relu")), (), TRAIN)
    sources = [layer.source for layer in walk(g, SPECS["2d"])]
    assert sources[3] == 0
    inserted = insert_feature(g, 2, PoolBlock("max", 2))
    assert inserted.features[4] == SkipBlock(3, "relu")
    assert [layer.source for layer in walk(inserted, SPECS["2d"])][4] == 0
    removed = remove_feature(g, 1)
    assert removed.features == (conv, replace(conv, filters=10), SkipBlock(1, "relu"))
    gone = remove_feature(removed, 1)  # the skip would add block 0 to itself: it goes too
    assert gone.features == (conv,)
    assert remove_feature(g, 0).features[-1] == SkipBlock(2, "relu")  # source was block 0: now the input


def test_layer_shapes_rejects_pool_chain_below_one() -> None:
    pools = tuple(PoolBlock("max", 2) for _ in range(3))
    g = Genome((ConvBlock(8, 3, "relu", True), *pools), (), TRAIN)
    assert layer_shapes(g, InputSpec((1, 8, 8), 2))[-3] == (8, 1, 1)
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
        replace(base, features=(ConvBlock(8, 3, "relu", True, stride=4),)),
        replace(base, features=(ConvBlock(8, 3, "relu", True, dilation=3),)),
        replace(base, features=(ConvBlock(8, 3, "relu", True, dropout=0.7),)),
        replace(base, features=(PoolBlock("max", 2),)),
        replace(base, features=base.features + (SkipBlock(1),) * 4),
        replace(base, train=replace(TRAIN, momentum=0.5)),
        replace(base, train=replace(TRAIN, budget=0.5)),
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
    assert fixed.features == (ConvBlock(32, 3, "relu", True), PoolBlock("max", 2), ConvBlock(8, 3, "relu", True))
    assert fixed.head == (DenseBlock(256, "relu", 0.0),)
    check(fixed, space, spec)
    assert repair(fixed, space, spec) is fixed
    narrow = SearchSpace(block_types=("conv",))
    stripped = repair(replace(g, reduce=GlobalPoolBlock("max")), narrow, spec)
    assert stripped.head == () and stripped.reduce is None
    assert all(isinstance(b, ConvBlock) for b in stripped.features)
    check(stripped, narrow, spec)


@pytest.mark.parametrize("rank", list(SPECS))
def test_random_genomes_valid_and_varied(rank: str) -> None:
    spec = SPECS[rank]
    rng = random.Random(7)
    genomes = [random_genome(rng, SPACE, spec) for _ in range(300)]
    for g in genomes:
        check(g, SPACE, spec)
        for x in (g.train.learning_rate, g.train.weight_decay, *(d.dropout for d in g.head)):
            assert _sig_digits(x) <= 3
    depths = Counter(sum(not isinstance(b, SkipBlock) for b in g.features) for g in genomes)
    assert set(depths) == set(range(1, SPACE.max_features + 1))
    assert {len(g.head) for g in genomes} == {0, 1, 2}
    assert {g.reduce is None for g in genomes} == {True, False}
    for kind in (PoolBlock, SkipBlock):
        assert any(isinstance(b, kind) for g in genomes for b in g.features)
    assert {g.train.schedule for g in genomes} == set(SPACE.schedules)
    assert len({g.hash for g in genomes}) == len(genomes)


def test_random_genome_never_pools_tiny_input() -> None:
    spec = InputSpec((1, 1, 5), 2)
    rng = random.Random(3)
    for _ in range(100):
        g = random_genome(rng, SPACE, spec)
        assert not any(isinstance(b, PoolBlock) for b in g.features)


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
        assert child.features[0] in (a.features[0], default_conv(resolve_space(SPACE, spec.spatial_rank)))


def test_each_operator_valid_on_tight_space() -> None:
    space = SearchSpace(max_features=2, max_head=1, pool_sizes=(2, 3), filters=(4, 5))
    spec = InputSpec((1, 3, 3), 2)
    rng = random.Random(5)
    for _ in range(200):
        g = random_genome(rng, space, spec)
        for name, op in MUTATIONS.items():
            child = op(g, rng, space, spec)
            assert is_valid(child, space, spec), name


@pytest.mark.parametrize("rank", list(SPECS))
def test_children_marked_valid_without_a_walk_are_what_repair_gives(rank: str) -> None:
    """Operators skip `repair` for shape-neutral changes (`known_valid`): a full repair must agree."""
    from menndl.genome.repair import _REPAIRED

    checked: Counter[str] = Counter()
    for space in (SPACE, SearchSpace(max_features=2, max_head=1, pool_sizes=(2, 3), filters=(4, 5))):
        spec = SPECS[rank]
        rng = random.Random(7)
        population = [random_genome(rng, space, spec) for _ in range(30)]
        for step in range(1500):
            parent = population[step % len(population)]
            for name in ("alter_block", "alter_training", "remove_block", "remove_skip", "add_block", "add_skip"):
                child = MUTATIONS[name](parent, rng, space, spec)
                marked = child.__dict__.pop(_REPAIRED, None)
                if marked is None or child is parent:
                    continue
                checked[name] += 1
                check(child, space, spec)
                assert repair(child, space, spec) is child  # a walk keeps every block: same object back
                population[step % len(population)] = child
        for _ in range(300):  # random genomes without a skip are not walked either
            genome = random_genome(rng, space, spec)
            genome.__dict__.pop(_REPAIRED)
            check(genome, space, spec)
            assert repair(genome, space, spec) is genome
            checked["random"] += 1
    assert min(checked.values()) > 20 and len(checked) == 7


def _layers(g: Genome) -> int:
    return sum(not isinstance(b, SkipBlock) for b in g.features) + len(g.head)


def _skips(g: Genome) -> int:
    return sum(isinstance(b, SkipBlock) for b in g.features)


def test_mutation_operators_do_what_they_say() -> None:
    spec = SPECS["2d"]
    space = SearchSpace(strides=(1,), pool_sizes=(2,))  # nothing but pools changes spatial sizes
    rng = random.Random(9)
    for _ in range(100):
        g = random_genome(rng, space, spec)
        n = _layers(g)
        added = MUTATIONS["add_block"](g, rng, space, spec)
        assert _layers(added) in ({n + 1} if added != g else {n})
        removed = MUTATIONS["remove_block"](g, rng, space, spec)
        assert _layers(removed) in ({n - 1} if removed != g else {n})
        altered = MUTATIONS["alter_block"](g, rng, space, spec)
        assert altered.train == g.train and altered != g
        if len(altered.features) == len(g.features) and len(altered.head) == len(g.head):
            diffs = [x != y for x, y in zip(altered.features + altered.head, g.features + g.head)]
            assert sum(diffs) + (altered.reduce != g.reduce) == 1
        skipped = MUTATIONS["add_skip"](g, rng, space, spec)
        assert _skips(skipped) == _skips(g) + (skipped != g) and _layers(skipped) == n
        unskipped = MUTATIONS["remove_skip"](g, rng, space, spec)
        assert _skips(unskipped) == max(0, _skips(g) - 1) and _layers(unskipped) == n
        trained = MUTATIONS["alter_training"](g, rng, space, spec)
        assert trained.features == g.features and trained.head == g.head
        changed = [getattr(trained.train, f.name) != getattr(g.train, f.name) for f in fields(g.train)]
        assert sum(changed) == 1
        assert g.train.optimizer == "sgd" or trained.train.momentum == g.train.momentum  # unused by Adam(W)
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


def test_import_genome_does_not_import_torch() -> None:
    code = "import sys, menndl.genome; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_job_space_keys(tmp_path: Path) -> None:
    from menndl.errors import UserError
    from menndl.job import parse_job

    text = (
        '[search]\nevaluations = 3\n[space]\nblock_types = ["conv", "skip"]\nmax_skips = 1\n'
        'strides = [1]\ndilations = [1, 2]\nmomentum = [0.9, 0.9]\nschedules = ["cosine"]\n'
        "budget = [0.25, 1]\nmutation_add_skip = 3\nmutation_remove_block = 0\n"
    )
    space = parse_job(text).space
    assert space.block_types == ("conv", "skip") and space.strides == (1,) and space.budget == (0.25, 1.0)
    assert space.mutation_weights["add_skip"] == 3.0 and space.mutation_weights["remove_block"] == 0.0
    assert space.kernels is None and resolve_space(space, 1).kernels == (3, 5, 7, 9)
    rng = random.Random(0)
    g = random_genome(rng, space, SPECS["1d"])
    assert g.head == () and g.reduce is None and g.train.schedule == "cosine"
    names = Counter(mutate(g, rng, space, SPECS["1d"])[1] for _ in range(200))
    assert "remove_block" not in names and names.most_common(1)[0][0] == "add_skip"
    with pytest.raises(UserError, match=r"<job>: space.budget: expected a \[min, max\] pair"):
        parse_job("[search]\nevaluations = 3\n[space]\nbudget = [0, 1]\n")


def test_block_instance_dicts_hold_exactly_their_fields() -> None:
    """`to_dict` copies a block's instance dict: it must hold the fields, in order, then only memos."""
    import dataclasses

    from menndl.genome.genome import _FIELD_NAMES, _MEMO_KEYS

    def check_fields(block: Any) -> None:
        names = list(vars(block))
        count = len(_FIELD_NAMES[type(block)])
        assert names[:count] == list(_FIELD_NAMES[type(block)]) == [f.name for f in dataclasses.fields(block)]
        assert set(names[count:]) <= set(_MEMO_KEYS)

    rng = random.Random(3)
    seen: set[type] = set()
    memos: set[str] = set()
    for _ in range(200):
        genome = random_genome(rng, SearchSpace(), InputSpec((1, 16, 16), 10))  # repaired: fit memos
        genome.to_json()  # JSON memos
        for block in (*genome.features, *genome.head, genome.train, genome.reduce):
            if block is None:
                continue
            seen.add(type(block))
            check_fields(block)
            memos.update(set(vars(block)) - set(_FIELD_NAMES[type(block)]))
        data = genome.to_dict()
        assert [list(b) for b in data["features"]] == [["type", *_FIELD_NAMES[type(b)]] for b in genome.features]
        assert list(data["train"]) == list(_FIELD_NAMES[type(genome.train)])
        assert Genome.from_dict(data) == genome
    assert len(seen) >= 5  # conv, pool, skip or global_pool, dense, train
    assert memos == set(_MEMO_KEYS)


def test_canonical_json_is_sorted_json_of_to_dict_byte_for_byte() -> None:
    """Joined per-block texts equal json.dumps(sort_keys) of the whole dict: hashes in libraries depend on it."""
    rng = random.Random(11)
    for spec in (InputSpec((1, 16, 16), 10), InputSpec((1, 40), 10), InputSpec((3, 8, 8, 8), 4)):
        space = SearchSpace()
        parents = [random_genome(rng, space, spec) for _ in range(40)]
        children = [mutate(p, rng, space, spec)[0] for p in parents]
        children += [crossover(a, b, rng, space, spec) for a, b in zip(parents, reversed(parents))]
        kinds = set()
        for genome in parents + children + [Genome.from_json(children[0].to_json())]:
            expected = json.dumps(genome.to_dict(), sort_keys=True, separators=(",", ":"))
            assert genome.to_json() == expected
            kinds.add((genome.reduce is None, genome.head == ()))
        assert len(kinds) >= 3  # with and without global pooling and a head
    odd = Genome((ConvBlock(4, 3, "relu", True, dropout=0.5),), (), TrainParams(1e-300, 2, "sgd", 0.0, 0.0, budget=1))
    assert odd.to_json() == json.dumps(odd.to_dict(), sort_keys=True, separators=(",", ":"))


def test_block_templates_write_every_accepted_value_as_json_dumps() -> None:
    """Block texts come from `%` templates: each value a constructor accepts must read as json.dumps writes it."""
    from menndl.genome.genome import _RULES, _TYPE_NAMES, _block_json

    odd_values: list[Any] = [0, 1, 2, 3, 7, 2**70, True, False, -0.0, 0.0, 1e-300, 0.1, 0.89, 1.5e300, 3.0,
                             *ACTIVATIONS, "max", "avg", "adam", "adamw", "sgd", "constant", "cosine", "step",
                             "warmup_cosine", "transpose", "interpolate", "concat", "add"]  # fmt: skip
    checked = 0
    for cls, rules in _RULES.items():
        base = {name: next(v for v in odd_values if _accepts(rule, v)) for name, rule in rules.items()}
        for name, rule in rules.items():
            for value in odd_values:
                if not _accepts(rule, value):
                    continue
                block = cls(**{**base, name: value})
                data = {field: getattr(block, field) for field in rules}
                for typed in (True, False) if cls in _TYPE_NAMES else (False,):
                    expected = json.dumps({"type": _TYPE_NAMES[cls], **data} if typed else data, sort_keys=True,
                                          separators=(",", ":"))  # fmt: skip
                    block.__dict__.pop("_canonical_json_text", None)
                    assert _block_json(block, typed) == expected, (cls.__name__, name, value)
                    checked += 1
    assert checked > 80


def test_fast_field_checks_agree_with_the_rules() -> None:
    """`_validate` lets common values pass inline: every value must end up exactly as its rule makes it."""
    from menndl.genome.genome import _RULES, _Bad

    odd_values: list[Any] = [0, 1, 2, 3, -1, 1.0, 3.0, True, False, -0.0, 0.0, 0.5, 0.9, 0.89, 1e-300, math.inf,
                             math.nan, "relu", "max", "adam", "cosine", "transpose", "concat", "x", None,
                             2**70]  # fmt: skip
    checked = 0
    for cls, rules in _RULES.items():
        base = {name: next(v for v in odd_values if _accepts(rule, v)) for name, rule in rules.items()}
        for name, rule in rules.items():
            for value in odd_values:
                try:
                    expected = rule(value)
                except _Bad:
                    with pytest.raises(ValueError, match=name):
                        cls(**{**base, name: value})
                    continue
                got = getattr(cls(**{**base, name: value}), name)
                assert type(got) is type(expected) and (got == expected or got != got)
                assert math.copysign(1, got) == math.copysign(1, expected) if isinstance(got, float) else True
                checked += 1
    assert checked > 60


def _accepts(rule: Callable[[Any], Any], value: Any) -> bool:
    from menndl.genome.genome import _Bad

    try:
        rule(value)
    except _Bad:
        return False
    return True
