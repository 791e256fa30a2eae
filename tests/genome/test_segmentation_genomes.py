"""Segmentation genomes (encoder + decoder of up blocks): property tests in 1-D, 2-D and 3-D.

* torch-free: 400 drawn (input, space, seed) cases, each two random segmentation genomes and a
  chain of up to 10 mutations/crossovers; every genome passes `check`, is its own repair, has at
  most one up block per downsampling, survives JSON (and key reordering) and the fixed-length
  encoding unchanged.
* torch: 40 cases per spatial rank with odd sizes; every genome decodes, runs forward and
  backward, gives logits ``(N, classes, *spatial)``, and its torch-free parameter and FLOP counts
  equal ``sum(p.numel())`` and ``torch.utils.flop_counter``'s exactly.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from menndl.genome import (
    ConvBlock,
    DenseBlock,
    Genome,
    GlobalPoolBlock,
    InputSpec,
    InvalidGenome,
    PoolBlock,
    SearchSpace,
    TrainParams,
    UpBlock,
    check,
    count_flops,
    count_params,
    crossover,
    layer_shapes,
    mutate,
    random_genome,
    repair,
)
from menndl.genome.encoding import genome_from_parameters, genome_parameters, parameters_of_genome
from menndl.genome.shapes import downsamplings

MAX_SPATIAL = {1: 61, 2: 23, 3: 9}
SEEN: Counter[str] = Counter()  # what the torch-free cases drew, checked by the last test


def _subset(options: tuple[Any, ...], required: tuple[Any, ...] = ()) -> st.SearchStrategy[tuple[Any, ...]]:
    extra = [o for o in options if o not in required]
    return st.lists(st.sampled_from(extra), unique=True, min_size=0 if required else 1).map(
        lambda chosen: tuple(o for o in options if o in chosen or o in required)
    )


@st.composite
def specs(draw: st.DrawFn, rank: int | None = None) -> InputSpec:
    """A segmentation input of rank 1-3 (sizes often odd) and a class count."""
    rank = rank or draw(st.integers(1, 3))
    spatial = [draw(st.integers(3, MAX_SPATIAL[rank])) for _ in range(rank)]
    return InputSpec((draw(st.integers(1, 3)), *spatial), draw(st.integers(2, 5)), "segmentation")


@st.composite
def spaces(draw: st.DrawFn, small: bool = False) -> SearchSpace:
    lo = draw(st.integers(1, 4 if small else 16))
    hi = draw(st.integers(lo, 8 if small else 48))
    return SearchSpace(
        max_features=draw(st.integers(1, 6)),
        max_skips=draw(st.integers(0, 2)),
        max_decoder=draw(st.integers(0, 4)),
        filters=(lo, hi),
        kernels=draw(_subset((1, 3, 5))),
        strides=draw(_subset((1, 2, 3))),
        pool_sizes=draw(_subset((2, 3))),
        activations=draw(_subset(("relu", "gelu", "none"))),
        block_types=draw(_subset(("conv", "pool", "skip", "global_pool", "dense", "up"), required=("conv", "up"))),
        up_modes=draw(_subset(("transpose", "interpolate"))),
        merges=draw(_subset(("concat", "add", "none"))),
        up_convs=draw(_subset((1, 2))),
        max_dropout=draw(st.sampled_from([0.0, 0.5])),
    )


def _chain(rng: random.Random, space: SearchSpace, spec: InputSpec, length: int) -> list[Genome]:
    genomes = [random_genome(rng, space, spec), random_genome(rng, space, spec)]
    for _ in range(length):
        if rng.random() < 0.3:
            child = crossover(rng.choice(genomes), rng.choice(genomes), rng, space, spec)
            SEEN["crossover"] += 1
        else:
            child, name = mutate(rng.choice(genomes), rng, space, spec)
            SEEN[name] += 1
        genomes.append(child)
    return genomes


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), space=spaces(), seed=st.integers(0, 2**32 - 1), length=st.integers(1, 10))
def test_every_segmentation_child_is_valid_and_round_trips(spec: InputSpec, space: SearchSpace, seed: int,
                                                           length: int) -> None:  # fmt: skip
    for genome in _chain(random.Random(seed), space, spec, length):
        check(genome, space, spec)
        assert repair(genome, space, spec) is genome
        assert genome.reduce is None and genome.head == ()
        assert len(genome.decoder) <= min(downsamplings(genome.features), space.max_decoder)
        assert layer_shapes(genome, spec)[-1] == (spec.num_classes, *spec.shape[1:])
        back = Genome.from_json(genome.to_json())
        assert back == genome and back.hash == genome.hash
        assert Genome.from_json(json.dumps(_reverse_keys(genome.to_dict()))).hash == genome.hash
        assert genome_from_parameters(parameters_of_genome(genome, space, spec), space, spec) == genome
        SEEN["genomes"] += 1
        SEEN["with decoder"] += bool(genome.decoder)
        SEEN["full decoder"] += bool(genome.decoder) and len(genome.decoder) == downsamplings(genome.features)
        for up in genome.decoder:
            SEEN[up.mode] += 1
            SEEN[up.merge] += 1


def test_the_property_cases_covered_decoders_of_every_kind() -> None:
    """Runs after the property test above (file order): its cases must have exercised what they claim."""
    if not SEEN["genomes"]:
        pytest.skip("run with the property test")
    assert SEEN["with decoder"] > 0.2 * SEEN["genomes"] and SEEN["full decoder"] > 0.1 * SEEN["genomes"]
    for kind in ("transpose", "interpolate", "concat", "add", "none", "crossover", "add_block", "remove_block",
                 "alter_block"):  # fmt: skip
        assert SEEN[kind] > 20, (kind, SEEN)


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
        assert out.shape == (2, spec.num_classes, *spec.shape[1:])
        assert counter.get_total_flops() == 2 * count_flops(genome, spec)
        out.square().mean().backward()
        assert all(p.grad is not None for p in model.parameters())


@pytest.fixture
def one_thread() -> Any:
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_every_segmentation_child_decodes_runs_and_matches_size_and_cost(rank: int, one_thread: Any) -> None:

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=specs(rank), space=spaces(small=True), seed=st.integers(0, 2**32 - 1), length=st.integers(1, 4))
    def run(spec: InputSpec, space: SearchSpace, seed: int, length: int) -> None:
        _decode_forward_backward(_chain(random.Random(seed), space, spec, length), spec)

    run()


TRAIN = TrainParams(1e-3, 32, "adam", 0.0)
CONV, POOL = ConvBlock(8, 3, "relu", True), PoolBlock("max", 2)
UP = UpBlock(8, 3, "transpose", "concat", 2, "relu", True)
SPACE = SearchSpace()
SEGMENT = InputSpec((1, 17, 15), 3, "segmentation")


def test_a_unet_genome_has_the_layers_and_sizes_of_a_unet() -> None:
    """Odd sizes round-trip: 17x15 -> 8x7 -> 4x3 and back to 8x7 and 17x15, each up block joining its skip."""
    genome = Genome((CONV, POOL, CONV, POOL, CONV), (), TRAIN, None, (UP, replace_mode(UP, "interpolate")))
    check(genome, SPACE, SEGMENT)
    assert layer_shapes(genome, SEGMENT) == [(8, 17, 15), (8, 8, 7), (8, 8, 7), (8, 4, 3), (8, 4, 3), (8, 8, 7),
                                             (8, 17, 15), (3, 17, 15)]  # fmt: skip


def replace_mode(up: UpBlock, mode: str) -> UpBlock:
    return UpBlock(up.filters, up.kernel, mode, up.merge, up.convs, up.activation, up.batch_norm)


def test_decoders_outside_segmentation_and_heads_inside_it_are_refused_and_repaired() -> None:
    classify = InputSpec((1, 17, 15), 3)
    with_decoder = Genome((CONV, POOL, CONV), (), TRAIN, None, (UP,))
    with pytest.raises(InvalidGenome, match="genome.decoder: a classification network has no decoder"):
        check(with_decoder, SPACE, classify)
    assert repair(with_decoder, SPACE, classify).decoder == ()
    headed = Genome((CONV, POOL, CONV), (DenseBlock(16, "relu", 0.0),), TRAIN, GlobalPoolBlock("avg"), (UP,))
    with pytest.raises(InvalidGenome, match="no reduce and no head"):
        check(headed, SPACE, SEGMENT)
    fixed = repair(headed, SPACE, SEGMENT)
    assert (fixed.head, fixed.reduce, fixed.decoder) == ((), None, (UP,))
    too_long = Genome((CONV, POOL, CONV), (), TRAIN, None, (UP, UP))
    with pytest.raises(InvalidGenome, match=r"genome.decoder\[1\]: no downsampling left to undo"):
        check(too_long, SPACE, SEGMENT)
    assert repair(too_long, SPACE, SEGMENT).decoder == (UP,)
    assert repair(too_long, SearchSpace(block_types=("conv", "pool")), SEGMENT).decoder == ()


def test_a_classification_genome_reads_and_hashes_as_before() -> None:
    """No ``decoder`` key unless there is one: every genome already in a library keeps its JSON and hash."""
    genome = Genome((CONV, POOL, CONV), (DenseBlock(16, "relu", 0.0),), TRAIN, None)
    assert "decoder" not in genome.to_dict() and '"decoder"' not in genome.to_json()
    assert Genome.from_dict({**genome.to_dict(), "decoder": []}) == genome
    with pytest.raises(ValueError, match=r"genome.decoder\[0\]: unknown block type 'conv' \(expected up\)"):
        Genome.from_dict({**genome.to_dict(), "decoder": [{"type": "conv"}]})


def test_the_encoding_has_decoder_slots_for_segmentation_only() -> None:
    segment = {p.name for p in genome_parameters(SPACE, SEGMENT)}
    classify = {p.name for p in genome_parameters(SPACE, InputSpec((1, 17, 15), 3))}
    assert {"d_count", "d0_mode", "d0_merge", "d3_filters"} <= segment and "h_count" not in segment
    assert "reduce" not in segment and not any(name.startswith("d") and name[1].isdigit() for name in classify)
    rng = random.Random(3)
    parameters = genome_parameters(SPACE, SEGMENT)
    decoders = 0
    for _ in range(200):  # an optimiser's uniform draws decode to valid genomes
        values = {p.name: rng.choice(p.choices) if p.kind == "choice" else
                  (rng.randint(p.low, p.high) if p.kind == "int" else rng.uniform(p.low, p.high))
                  for p in parameters}  # fmt: skip
        genome = genome_from_parameters(values, SPACE, SEGMENT)
        check(genome, SPACE, SEGMENT)
        decoders += bool(genome.decoder)
    assert decoders > 50


def test_classification_draws_are_what_a_seed_always_gave() -> None:
    """Segmentation added no draw to classification: 20 random genomes and 30 children from seed 0 hash as
    they did before decoders existed (the digest was computed with menndl at commit 84de51a)."""
    import hashlib

    space, spec = SearchSpace(), InputSpec((1, 8, 8), 10)
    rng = random.Random(0)
    genomes = [random_genome(rng, space, spec) for _ in range(20)]
    for _ in range(30):
        a, b = rng.choice(genomes), rng.choice(genomes)
        genomes.append(crossover(a, b, rng, space, spec) if rng.random() < 0.3 else mutate(a, rng, space, spec)[0])
    assert hashlib.sha256("".join(g.hash for g in genomes).encode()).hexdigest()[:16] == "cc54a85e1a0ef90a"


def test_the_layer_table_describes_up_blocks_and_the_per_pixel_classifier() -> None:
    from menndl.genome.layer_table import format_layer_table

    add = UpBlock(6, 3, "transpose", "add", 1, "none", False)
    genome = Genome((CONV, POOL, CONV, POOL, CONV), (), TRAIN, None, (UP, add))
    table = format_layer_table(genome, SEGMENT)
    assert re.search(r"^ +up: transposed conv, concat #3's input, 2 x conv 3x3, 8 filters, batch norm, relu +"
                     r"\(8, 8, 7\) +2,024$", table, re.M), table
    assert re.search(r"^ +up: transposed conv, \+ #1's input \(1x1 conv projection\), 1 x conv 3x3, 6 filters +"
                     r"\(6, 17, 15\) +[\d,]+$", table, re.M), table
    assert "conv 1x1 (classifier, per pixel)" in table
    assert f"total: {count_params(genome, SEGMENT):,} parameters" in table
