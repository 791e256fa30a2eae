"""Fixed-length parameter encoding of genomes (menndl.genome.encoding): round trips, domains, validity."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from menndl.genome import (
    ConvBlock,
    Genome,
    InputSpec,
    InvalidGenome,
    SearchSpace,
    SkipBlock,
    check,
    crossover,
    is_valid,
    mutate,
    random_genome,
)
from menndl.genome.encoding import Parameter, genome_from_parameters, genome_parameters, parameters_of_genome

SPECS = {
    "1d": InputSpec((1, 40), 3),
    "2d": InputSpec((1, 8, 8), 4),
    "3d": InputSpec((2, 6, 5, 4), 2),
}
SPACES = {
    "default": SearchSpace(),
    "plain": SearchSpace(block_types=("conv", "dense")),  # no skip, pool or global pooling
    "no_head": SearchSpace(max_head=0, max_skips=5),
    "narrow": SearchSpace(filters=(16, 20), kernels=(3,), pool_sizes=(2, 3), max_features=3),
    "fixed": SearchSpace(
        filters=(12, 12),
        budget=(0.5, 0.5),
        momentum=(0.9, 0.9),
        max_dropout=0.0,
        max_features=1,
        block_types=("conv", "global_pool", "dense"),
    ),
    "budget": SearchSpace(budget=(0.25, 1.0), weight_decay=(1e-5, 1e-3), block_types=("conv", "skip", "pool")),
}
CASES = [(s, i) for s in SPACES for i in SPECS]
ALLOWED_CHOICE_TYPES = (type(None), bool, int, float, str)


def _genomes(space: SearchSpace, spec: InputSpec, seed: int, count: int) -> Iterator[Genome]:
    """Random genomes and chains of mutations and crossovers of them."""
    rng = random.Random(seed)
    pool = [random_genome(rng, space, spec) for _ in range(4)]
    yield from pool
    for _ in range(count - len(pool)):
        if rng.random() < 0.3:
            child = crossover(rng.choice(pool), rng.choice(pool), rng, space, spec)
        else:
            child, _name = mutate(rng.choice(pool), rng, space, spec)
        pool[rng.randrange(len(pool))] = child
        yield child


def _draw(parameter: Parameter, rng: random.Random) -> Any:
    """A value drawn uniformly from the parameter's domain."""
    if parameter.kind == "choice":
        return rng.choice(parameter.choices)
    assert parameter.low is not None and parameter.high is not None
    if parameter.kind == "int":
        return rng.randint(int(parameter.low), int(parameter.high))
    return rng.choice([parameter.low, parameter.high, rng.uniform(parameter.low, parameter.high)])


def _case(space_name: str, spec_name: str) -> tuple[SearchSpace, InputSpec, int]:
    return SPACES[space_name], SPECS[spec_name], sorted(SPACES).index(space_name) * 10 + sorted(SPECS).index(spec_name)


@pytest.mark.parametrize(("space_name", "spec_name"), CASES)
def test_round_trip_and_domains(space_name: str, spec_name: str) -> None:
    space, spec, seed = _case(space_name, spec_name)
    parameters = genome_parameters(space, spec)
    for genome in _genomes(space, spec, seed, 150):
        values = parameters_of_genome(genome, space, spec)
        assert list(values) == [p.name for p in parameters]  # every parameter, nothing else, in order
        for p in parameters:
            assert p.contains(values[p.name]), (p, values[p.name])
        back = genome_from_parameters(values, space, spec)
        assert back == genome and back.hash == genome.hash, (genome.to_json(), back.to_json())


@pytest.mark.parametrize(("space_name", "spec_name"), CASES)
def test_arbitrary_values_decode_to_valid_genomes(space_name: str, spec_name: str) -> None:
    space, spec, seed = _case(space_name, spec_name)
    parameters = genome_parameters(space, spec)
    rng = random.Random(seed)
    skips = 0
    for _ in range(150):
        values = {p.name: _draw(p, rng) for p in parameters}
        genome = genome_from_parameters(values, space, spec)
        check(genome, space, spec)
        assert is_valid(genome, space, spec)
        assert genome_from_parameters(dict(values), space, spec).hash == genome.hash  # deterministic
        skips += any(type(b) is SkipBlock for b in genome.features)
        # A decoded genome encodes to values that decode to itself (floats are rounded once).
        assert genome_from_parameters(parameters_of_genome(genome, space, spec), space, spec) == genome
    if "skip" in space.block_types and space.max_skips and space.max_features > 1:
        assert skips > 0  # the skip slots are reachable


@pytest.mark.parametrize(("space_name", "spec_name"), CASES)
def test_parameters_are_stable_and_plain(space_name: str, spec_name: str) -> None:
    space, spec, _seed = _case(space_name, spec_name)
    parameters = genome_parameters(space, spec)
    assert parameters == genome_parameters(SearchSpace(**vars(space)), InputSpec(spec.shape, 9))
    assert len({p.name for p in parameters}) == len(parameters)
    for p in parameters:
        assert p.kind in ("int", "float", "choice")
        if p.kind == "choice":
            assert len(p.choices) >= 2 and p.low is None and p.high is None and not p.log
            assert all(type(c) in ALLOWED_CHOICE_TYPES for c in p.choices)
        else:
            assert p.low is not None and p.high is not None and p.low < p.high and not p.choices
            assert type(p.low) is type(p.high) is (int if p.kind == "int" else float)
            assert not p.log or p.low > 0


def test_layout_mirrors_the_space() -> None:
    spec = SPECS["1d"]
    by_name = {p.name: p for p in genome_parameters(SearchSpace(), spec)}
    assert len(by_name) == 111
    assert by_name["f_count"] == Parameter("f_count", "int", 1, 9)  # max_features 6 + max_skips 3
    assert by_name["f0_type"].choices == ("conv", "pool")  # no skip in the first slot
    assert by_name["f3_type"].choices == ("conv", "pool", "skip")
    assert by_name["f0_filters"] == Parameter("f0_filters", "int", 8, 64, log=True)
    assert by_name["f0_kernel"].choices == (3, 5, 7, 9)
    assert by_name["f0_dropout"] == Parameter("f0_dropout", "float", -0.5, 0.5)  # rectified: below 0 is none
    assert by_name["f4_skip_span"] == Parameter("f4_skip_span", "int", 1, 4)
    assert "f1_skip_span" not in by_name and "f0_pool_size" not in by_name  # one value: fixed
    assert by_name["reduce"].choices == ("flatten", "max", "avg")
    assert by_name["h_count"] == Parameter("h_count", "int", 0, 2)
    assert by_name["learning_rate"].log and not by_name["weight_decay"].log  # weight decay may be 0
    assert "budget" not in by_name  # fixed (1.0, 1.0)

    names = {p.name for p in genome_parameters(SPACES["plain"], spec)}
    assert not any("pool" in n or "skip" in n for n in names) and "reduce" not in names
    assert {p.name: p for p in genome_parameters(SPACES["plain"], spec)}["f_count"].high == 6
    names = {p.name for p in genome_parameters(SPACES["no_head"], spec)}
    assert not any(n.startswith("h") for n in names)
    budget = {p.name: p for p in genome_parameters(SPACES["budget"], spec)}
    assert budget["budget"] == Parameter("budget", "float", 0.25, 1.0)
    assert budget["weight_decay"].log and "h_count" not in budget and "reduce" not in budget  # no dense
    fixed = genome_parameters(SPACES["fixed"], spec)
    assert not any(n in {p.name for p in fixed} for n in ("f_count", "f0_filters", "f0_dropout", "budget"))
    values = {p.name: p.choices[0] if p.choices else p.low for p in fixed}
    genome = genome_from_parameters(values, SPACES["fixed"], spec)
    assert genome.train.budget == 0.5 and genome.train.momentum == 0.9
    assert genome.features == (ConvBlock(12, 3, "relu", False),)  # first choices; dropout 0


def test_decoding_reads_only_what_it_uses_and_rejects_bad_values() -> None:
    space, spec = SearchSpace(), SPECS["2d"]
    genome = random_genome(random.Random(7), space, spec)
    values = parameters_of_genome(genome, space, spec)
    used = {k: v for k, v in values.items() if not k.startswith(("f8_", "h1_"))} | {"f_count": 2, "h_count": 1}
    used["unrelated"] = object()  # keys that name no parameter are ignored
    assert is_valid(genome_from_parameters(used, space, spec), space, spec)
    for name, bad in [("f_count", 10), ("f_count", 2.0), ("f0_kernel", 7), ("f0_batch_norm", 1), ("momentum", 0.999)]:
        with pytest.raises(ValueError, match=name):
            genome_from_parameters({**values, name: bad}, space, spec)
    with pytest.raises(ValueError, match="no value for 'learning_rate'"):
        genome_from_parameters({k: v for k, v in values.items() if k != "learning_rate"}, space, spec)
    with pytest.raises(InvalidGenome):
        parameters_of_genome(genome, SearchSpace(filters=(100, 200)), spec)


def test_decoded_floats_are_rounded_but_bounds_kept() -> None:
    space, spec = SPACES["budget"], SPECS["1d"]
    values = parameters_of_genome(random_genome(random.Random(3), space, spec), space, spec)
    genome = genome_from_parameters({**values, "learning_rate": 0.0012345678, "budget": 0.25}, space, spec)
    assert genome.train.learning_rate == 0.00123 and genome.train.budget == 0.25
    genome = genome_from_parameters({**values, "learning_rate": 1e-4, "weight_decay": 9.9999e-4}, space, spec)
    assert genome.train.learning_rate == 1e-4 and genome.train.weight_decay == 1e-3  # rounding stays in range


def test_dropout_parameters_are_rectified_so_half_the_draws_mean_none() -> None:
    space, spec = SearchSpace(), SPECS["1d"]
    values = {p.name: p.low if p.kind != "choice" else p.choices[0] for p in genome_parameters(space, spec)}
    values.update({"f_count": 1, "f0_type": "conv", "h_count": 1, "f0_dropout": -0.3, "h0_dropout": 0.25})
    genome = genome_from_parameters(values, space, spec)
    assert genome.features[0].dropout == 0.0 and genome.head[0].dropout == 0.25
    assert parameters_of_genome(genome, space, spec)["f0_dropout"] == 0.0
