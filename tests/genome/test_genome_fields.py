"""The genome field table (menndl.genome.fields): one row per field, and every consumer handles every row.

A new field is one row: these tests check that the table and the block
dataclasses match one to one, that the space keys rows read exist, and that
validation, repair, sampling, mutation and the encoding handle any row by its
kind (every row of the table, and rows of kinds the table does not use yet),
with no module but the table naming a field's space key.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from menndl.genome import (
    FIELDS,
    ConvBlock,
    DenseBlock,
    Field,
    GlobalPoolBlock,
    InvalidGenome,
    PoolBlock,
    SearchSpace,
    SkipBlock,
    TrainParams,
    resolve_space,
)
from menndl.genome.encoding import _add, _Builder
from menndl.genome.fields import (
    CONV_BATCH_NORM,
    CONV_STRIDE,
    GLOBAL_POOL_KIND,
    POOL_SIZE,
    SKIP_SPAN,
    TRAIN_MOMENTUM,
    Choice,
    Fixed,
    Flag,
    Floats,
    Ints,
    Names,
    Range,
    Rate,
    Span,
    fields_of,
    space_keys,
)
from menndl.genome.genome import _RULES, UpBlock, _Bad, declared_rows, field_rows
from menndl.genome.operators import changed_value
from menndl.genome.repair import clamp
from menndl.genome.sampling import random_value
from menndl.genome.shapes import _check_field
from menndl.genome.space import RANK_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
BLOCKS: dict[type, str] = {
    ConvBlock: "conv",
    PoolBlock: "pool",
    SkipBlock: "skip",
    GlobalPoolBlock: "global_pool",
    DenseBlock: "dense",
    UpBlock: "up",
    TrainParams: "train",
}
CLASSES = {name: cls for cls, name in BLOCKS.items()}
SPACES = [resolve_space(SearchSpace(), rank) for rank in (1, 2, 3)] + [
    resolve_space(space, 2)
    for space in (
        SearchSpace(  # one value everywhere: nothing can change
            filters=(16, 16), kernels=(3,), strides=(1,), dilations=(1,), activations=("gelu",), dense_units=(32, 32),
            batch_sizes=(64,), optimizers=("sgd",), schedules=("cosine",), learning_rate=(1e-3, 1e-3),
            weight_decay=(1e-4, 1e-4), momentum=(0.9, 0.9), budget=(0.5, 0.5), max_dropout=0.0, pool_sizes=(3,),
        ),
        SearchSpace(  # wide, and a weight decay drawn log-uniformly
            filters=(1, 500), kernels=(1, 3, 5, 7, 9, 11), strides=(1, 2, 3), dilations=(1, 2, 3, 4),
            pool_sizes=(2, 3, 4, 5), dense_units=(1, 1000), learning_rate=(1e-6, 1.0), batch_sizes=(2, 7, 64, 512),
            weight_decay=(1e-6, 0.5), max_dropout=0.85, momentum=(0.0, 0.999), budget=(0.01, 1.0),
        ),
    )
]  # fmt: skip
# Rows of kinds and options the table does not use (yet): a new field's row must work as well as the table's.
SYNTHETIC = (
    Field("dense", "units", Range("dense_units", Ints(1))),  # a uniform integer range
    Field("train", "momentum", Range("momentum", Floats(0.0, 1.0, high_open=True))),  # a stepped uniform float
    Field("train", "learning_rate", Range("learning_rate", Floats(0.0, math.inf, True), log=True), redraw=True),
    Field("conv", "activation", Choice("activations", Names(("relu", "gelu", "silu", "tanh", "none"))), chance=0.5),
    Field("train", "batch_size", Choice("batch_sizes", Ints(2)), chance=0.5, redraw=True),
    Field("dense", "dropout", Rate("max_dropout"), redraw=True),
    Field("pool", "kind", Fixed(Names(("max", "avg"))), chance=0.3),
    Field("conv", "batch_norm", Flag(), chance=0.7, redraw=True),
)


def _name(field: Field) -> str:
    return f"{field.block}.{field.name}"


def test_every_field_of_every_block_has_exactly_one_row() -> None:
    rows = [(field.block, field.name) for field in FIELDS]
    assert len(rows) == len(set(rows))
    assert set(rows) == {(name, f.name) for cls, name in BLOCKS.items() for f in dataclasses.fields(cls)}
    for cls, name in BLOCKS.items():
        assert field_rows(cls) == fields_of(name)  # table order
        assert [field.name for field in declared_rows(cls)] == [f.name for f in dataclasses.fields(cls)]
        assert set(declared_rows(cls)) == set(field_rows(cls))
        assert set(_RULES[cls]) == {f.name for f in dataclasses.fields(cls)}
    for row in (CONV_STRIDE, CONV_BATCH_NORM, POOL_SIZE, SKIP_SPAN, GLOBAL_POOL_KIND, TRAIN_MOMENTUM):
        assert any(row is field for field in FIELDS), _name(row)


def test_every_space_key_a_field_reads_exists_and_its_readers_agree() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(SearchSpace)}
    readers: dict[str, list[Any]] = defaultdict(list)
    for field in FIELDS:
        if field.key is not None:
            readers[field.key].append(field.kind)
    assert set(readers) <= set(defaults), set(readers) - set(defaults)
    assert set(space_keys()) == set(readers)
    for key, kinds in readers.items():
        assert len({(type(kind), kind.values, kind.by_rank) for kind in kinds}) == 1, key
        assert (defaults[key] is None) == (kinds[0].by_rank is not None), key  # unset until resolved per rank
    for field in FIELDS:
        assert (field.key is None) == isinstance(field.kind, (Fixed, Flag, Span)), _name(field)


def test_rank_defaults_come_from_the_table_and_pass_the_space_checks() -> None:
    assert set(RANK_DEFAULTS) == {1, 2, 3}
    for rank, defaults in RANK_DEFAULTS.items():
        assert defaults == {key: kind.by_rank[rank - 1] for key, kind in space_keys().items() if kind.by_rank}
        assert SearchSpace(**defaults) == resolve_space(SearchSpace(), rank)
    assert RANK_DEFAULTS[2] == {"filters": (8, 64), "kernels": (1, 3, 5), "strides": (1, 2), "dilations": (1, 2)}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("filters", (0, 4), "a [min, max] pair of integers with 1 <= min <= max"),
        ("filters", (1.0, 4), "a [min, max] pair of integers >= 1"),
        ("dense_units", (5, 4), "a [min, max] pair of integers with 1 <= min <= max"),
        ("kernels", (2, 3), "a non-empty list of odd integers >= 1"),
        ("strides", (), "a non-empty list of integers >= 1"),
        ("dilations", (0,), "a non-empty list of integers >= 1"),
        ("pool_sizes", (1,), "a non-empty list of integers >= 2"),
        ("batch_sizes", (1, 2), "a non-empty list of integers >= 2"),
        ("activations", ("relu", "bad"), "a non-empty list drawn from relu, gelu, silu, tanh, none"),
        ("optimizers", ("adagrad",), "a non-empty list drawn from adam, adamw, sgd"),
        ("schedules", (), "a non-empty list drawn from constant, cosine, step, warmup_cosine"),
        ("learning_rate", (0.0, 1.0), "a [min, max] pair of numbers with 0 < min <= max"),
        ("learning_rate", (1e-3, math.inf), "a [min, max] pair of numbers with 0 < min <= max"),
        ("weight_decay", (-1.0, 1.0), "a [min, max] pair of numbers with 0 <= min <= max"),
        ("weight_decay", (10**400, 1.0), "a [min, max] pair of numbers with 0 <= min <= max"),
        ("momentum", (0.5, 1.0), "a [min, max] pair of numbers with 0 <= min <= max < 1"),
        ("budget", (0.0, 1.0), "a [min, max] pair of numbers with 0 < min <= max <= 1"),
        ("budget", (0.5, 0.25), "a [min, max] pair of numbers with 0 < min <= max <= 1"),
        ("max_dropout", 0.9, "a number in [0, 0.9)"),
        ("max_dropout", True, "a number in [0, 0.9)"),
    ],
)
def test_space_keys_that_fields_read_say_what_they_expect(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        SearchSpace(**{key: value})
    assert str(info.value) == f"space.{key}: expected {expected}, got {value!r}"


def test_float_keys_become_floats() -> None:
    space = SearchSpace(learning_rate=(1, 1), weight_decay=(0, 1), momentum=(0, 0), budget=(1, 1), max_dropout=0)
    for key in ("learning_rate", "weight_decay", "momentum", "budget"):
        assert all(type(v) is float for v in getattr(space, key)), key
    assert type(space.max_dropout) is float


def _accepted(field: Field, value: Any) -> bool:
    try:
        _RULES[CLASSES[field.block]][field.name](value)
    except _Bad:
        return False
    return True


def _inside(field: Field, value: Any, space: SearchSpace) -> bool:
    try:
        _check_field("x", field, value, space)
    except InvalidGenome:
        return False
    return _accepted(field, value)


def _encodable(field: Field, value: Any, space: SearchSpace, position: int) -> bool:
    """The encoding's parameter (or fixed value) for this field holds ``value``."""
    builder = _Builder()
    _add(builder, "p", field, space, position)
    if "p" in builder.fixed:
        return builder.fixed["p"] == value and type(builder.fixed["p"]) is type(value)
    (parameter,) = builder.parameters
    return parameter.contains(value)


@pytest.mark.parametrize("field", FIELDS + SYNTHETIC, ids=_name)
def test_every_consumer_handles_every_row(field: Field) -> None:
    """Draws lie inside the space and fit the block; clamp keeps them; mutations stay inside; encodings hold them."""
    rng = random.Random(5)
    changed = 0
    for space in SPACES:
        for _ in range(150):
            position = rng.randint(1, 6)
            if isinstance(field.kind, Span):
                value = rng.randint(1, position)  # spans are drawn by structure (random_skip_block)
                with pytest.raises(ValueError, match="position"):
                    random_value(rng, field, space)
            else:
                value = random_value(rng, field, space)
            assert _inside(field, value, space), (value, space)
            assert clamp(field, value, space) == value
            assert _encodable(field, value, space, position), value
            new = changed_value(field, value, rng, space, position)
            if new is not None:
                changed += 1
                assert new != value and _inside(field, new, space)
                assert not isinstance(field.kind, Span) or 1 <= new <= position  # no further back than the input
                assert _encodable(field, new, space, position)
        assert _inside(field, field.kind.least(space), space)
    assert changed > 0


@pytest.mark.parametrize("field", [f for f in FIELDS + SYNTHETIC if f.key is not None], ids=_name)
def test_clamp_moves_any_value_the_block_takes_into_the_space(field: Field) -> None:
    values = field.kind.values
    if isinstance(values, Ints):
        candidates: list[Any] = [n for n in range(values.minimum, 1200) if not values.odd or n % 2]
    elif isinstance(values, Floats):
        numbers = (0.0, 1e-9, 1e-4, 0.05, 0.3, 0.5, 0.89, 0.95, 0.999, 1.0, 7.0, 1e6)
        candidates = [x for x in numbers if values.contains(x)]
    else:
        assert isinstance(values, Names)
        candidates = list(values.names)
    for space in SPACES:
        for value in candidates:
            assert _accepted(field, value)
            fitted = clamp(field, value, space)
            assert _inside(field, fitted, space), (value, fitted)
            assert (fitted == value) == _inside(field, value, space)


GUARDED = ("repair.py", "sampling.py", "operators.py", "encoding.py", "shapes.py", "space.py", "layer_table.py")


@pytest.mark.parametrize("module", GUARDED)
def test_no_module_but_the_table_maps_a_field_to_its_space_key(module: str) -> None:
    """No ``space.<key>`` of a field and no field name or key as a string outside fields.py (docstrings aside)."""
    keys = {field.key for field in FIELDS if field.key is not None}
    names = keys | {field.name for field in FIELDS}
    tree = ast.parse((ROOT / "menndl" / "genome" / module).read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings:
            found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, ast.Attribute) and node.attr in keys and isinstance(node.value, ast.Name):
            if node.value.id in ("space", "resolved", "self"):
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not found, found
