"""Property-based tests of genomes (hypothesis): random inputs, spaces and operator chains.

Two tiers, sized for the suite's time budget on a 2-core machine:

* torch-free: 800 drawn (input, space, seed) cases, each two random genomes
  and a chain of up to 12 mutations/crossovers, every genome checked
  (shapes, space, JSON round trip, hash under key reordering, repair
  idempotent): about 5,300 genomes over 1-D, 2-D and 3-D inputs.
* torch: 60 cases per spatial rank, each two random genomes and a chain of
  up to 4 operators; every genome is decoded and runs a forward and a
  backward pass on a random batch of 2, its parameter count must equal
  ``sum(p.numel())`` and its FLOPs ``torch.utils.flop_counter``'s within 1%:
  about 720 networks (240 per rank).

``derandomize=True`` makes every run draw the same cases.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from menndl.genome import (
    MUTATIONS,
    Genome,
    InputSpec,
    SearchSpace,
    check,
    count_flops,
    count_params,
    crossover,
    mutate,
    random_genome,
    repair,
)

MAX_SPATIAL = {1: 48, 2: 12, 3: 6}


def _subset(options: tuple[Any, ...], required: tuple[Any, ...] = ()) -> st.SearchStrategy[tuple[Any, ...]]:
    """A non-empty sub-tuple of ``options`` (in their order) that contains ``required``."""
    extra = [o for o in options if o not in required]
    return st.lists(st.sampled_from(extra), unique=True, min_size=0 if required else 1).map(
        lambda chosen: tuple(o for o in options if o in chosen or o in required)
    )


@st.composite
def specs(draw: st.DrawFn, rank: int | None = None) -> InputSpec:
    """An input shape of rank 1-3 with small sizes, and a class count."""
    rank = rank or draw(st.integers(1, 3))
    spatial = [draw(st.integers(1, MAX_SPATIAL[rank])) for _ in range(rank)]
    return InputSpec((draw(st.integers(1, 3)), *spatial), draw(st.integers(1, 5)))


@st.composite
def spaces(draw: st.DrawFn, small: bool = False) -> SearchSpace:
    """A search space; ``small`` keeps widths tiny so decoded networks are cheap."""
    lo = draw(st.integers(1, 4 if small else 16))
    hi = draw(st.integers(lo, 8 if small else 64))
    units_lo = draw(st.integers(1, 8))
    return SearchSpace(
        max_features=draw(st.integers(1, 6)),
        max_head=draw(st.integers(0, 2)),
        max_skips=draw(st.integers(0, 3)),
        filters=(lo, hi),
        kernels=draw(_subset((1, 3, 5, 7))),
        strides=draw(_subset((1, 2, 3))),
        dilations=draw(_subset((1, 2, 3))),
        pool_sizes=draw(_subset((2, 3, 4))),
        dense_units=(units_lo, draw(st.integers(units_lo, 16 if small else 256))),
        activations=draw(_subset(("relu", "gelu", "silu", "tanh", "none"))),
        block_types=draw(_subset(("conv", "pool", "skip", "global_pool", "dense"), required=("conv",))),
        max_dropout=draw(st.sampled_from([0.0, 0.5])),
        mutation_add_skip=draw(st.sampled_from([0.0, 1.0])),
    )


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


def _chain(rng: random.Random, space: SearchSpace, spec: InputSpec, length: int) -> list[Genome]:
    """A random genome and ``length`` children, each by mutation or crossover of the ones before."""
    genomes = [random_genome(rng, space, spec), random_genome(rng, space, spec)]
    for _ in range(length):
        if rng.random() < 0.3:
            child = crossover(rng.choice(genomes), rng.choice(genomes), rng, space, spec)
        else:
            child, name = mutate(rng.choice(genomes), rng, space, spec)
            assert name in MUTATIONS
        genomes.append(child)
    return genomes


@settings(max_examples=800, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), space=spaces(), seed=st.integers(0, 2**32 - 1), length=st.integers(1, 12))
def test_every_child_is_valid_and_serialises_losslessly(
    spec: InputSpec, space: SearchSpace, seed: int, length: int
) -> None:
    for genome in _chain(random.Random(seed), space, spec, length):
        check(genome, space, spec)
        assert repair(genome, space, spec) is genome
        assert count_params(genome, spec) > 0 and count_flops(genome, spec) >= 0
        back = Genome.from_json(genome.to_json())
        assert back == genome and back.to_json() == genome.to_json()
        shuffled = Genome.from_json(json.dumps(_reverse_keys(genome.to_dict()), indent=1))
        assert shuffled.hash == genome.hash


def _decode_forward_backward(genomes: list[Genome], spec: InputSpec) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from menndl.genome.decode import build_model

    for genome in genomes:
        model = build_model(genome, spec)
        assert sum(p.numel() for p in model.parameters()) == count_params(genome, spec)
        x = torch.randn(2, *spec.shape)
        with FlopCounterMode(display=False) as counter:
            out = model(x)
        assert out.shape == (2, spec.num_classes)
        measured = counter.get_total_flops() / 2
        assert abs(measured - count_flops(genome, spec)) <= 0.01 * max(measured, 1)
        out.square().mean().backward()
        assert all(p.grad is not None for p in model.parameters())


@pytest.fixture
def one_thread() -> Any:
    """Tiny networks run fastest on one thread (and do not fight the other tests for cores)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_every_child_decodes_runs_and_matches_size_and_cost(rank: int, one_thread: Any) -> None:

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=specs(rank), space=spaces(small=True), seed=st.integers(0, 2**32 - 1), length=st.integers(1, 4))
    def run(spec: InputSpec, space: SearchSpace, seed: int, length: int) -> None:
        _decode_forward_backward(_chain(random.Random(seed), space, spec, length), spec)

    run()
