"""Random sampling of genomes and their parts from a search space.

Plain Python: no torch.  Every draw takes a ``random.Random`` and is
deterministic given its state.  A field's value is drawn by its row of the
field table (:mod:`menndl.genome.fields`: :func:`random_value`); what is
drawn here by structure is the network's layout: block types and counts,
the first block's stride, pool sizes that fit, skip positions and spans.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from menndl.genome.fields import CONV_STRIDE, POOL_SIZE, SKIP_SPAN, Choice, Field, Fixed, Flag, Ints, Range, Rate
from menndl.genome.genome import (
    ConvBlock,
    DenseBlock,
    FeatureBlock,
    Genome,
    GlobalPoolBlock,
    PoolBlock,
    SkipBlock,
    TrainParams,
    UpBlock,
    declared_rows,
    round_sig,
)
from menndl.genome.repair import insert_feature, known_valid, repair
from menndl.genome.shapes import downsamplings
from menndl.genome.space import InputSpec, SearchSpace, resolve_space

POOL_PROBABILITY = 0.3  # chance that a non-first random feature block is a pool
SKIP_PROBABILITY = 0.3  # chance of each of the up to max_skips skip connections of a random genome
GLOBAL_POOL_PROBABILITY = 0.3  # chance that a random genome ends its features with global pooling
FULL_DECODER_PROBABILITY = 0.5  # chance that a random segmentation decoder undoes every downsampling (U-Net)


def round_into(x: float, bounds: tuple[float, float]) -> float:
    """Clamp ``x`` into ``bounds`` and round it to 3 significant digits.

    If rounding would leave the range, the bound itself is returned.

    Args:
        x: The value.
        bounds: Inclusive ``(min, max)``.

    Returns:
        The rounded, in-range value.
    """
    lo, hi = bounds
    r = round_sig(min(max(x, lo), hi))
    return float(lo) if r < lo else float(hi) if r > hi else r


def log_uniform_int(rng: random.Random, bounds: tuple[int, int]) -> int:
    """Draw an integer log-uniformly from the inclusive ``bounds``.

    Args:
        rng: Random source.
        bounds: Inclusive ``(min, max)``, ``min >= 1``.

    Returns:
        The integer.
    """
    lo, hi = bounds
    value = math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))
    return min(max(value, lo), hi)


def random_value(rng: random.Random, field: Field, space: SearchSpace) -> Any:
    """Draw a value of ``field`` inside the bounds it gets from a resolved ``space``.

    With probability ``field.chance`` (else the kind's least value, no draw
    beyond that coin): a range log-uniformly (an integer one by
    :func:`log_uniform_int`; a float one when its minimum is > 0) if its row
    says ``log``, else uniformly; a rate 0 one time in three, else uniformly
    in ``[0, max]``; a choice uniformly among its options; a flag with
    probability 1/2.  Floats are rounded to 3 significant digits
    (:func:`round_into`).

    Args:
        rng: Random source.
        field: A row of the field table (not a skip's span: that is drawn by
            :func:`random_skip_block`, from the block's position).
        space: The search space, resolved for the data's rank.

    Returns:
        The value.

    Raises:
        ValueError: For a skip's span.
    """
    kind = field.kind
    if field.chance < 1.0 and not rng.random() < field.chance:
        return kind.least(space)
    if isinstance(kind, Range):
        bounds = kind.bounds(space)
        lo, hi = bounds
        if isinstance(kind.values, Ints):
            return log_uniform_int(rng, bounds) if kind.log else rng.randint(lo, hi)
        x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if kind.log and lo > 0 else rng.uniform(lo, hi)
        return round_into(x, bounds)
    if isinstance(kind, Rate):
        bounds = kind.bounds(space)
        if rng.random() < 1 / 3:
            return 0.0
        return round_into(rng.uniform(*bounds), bounds)
    if isinstance(kind, Flag):
        return rng.random() < 0.5
    if isinstance(kind, (Choice, Fixed)):
        return rng.choice(kind.options(space))
    raise ValueError(f"{field.block}.{field.name}: drawn from its position, not from the space")


def random_fields(
    rng: random.Random, cls: type, space: SearchSpace, given: Mapping[Field, Any] | None = None
) -> dict[str, Any]:
    """Draw every field of a block class, in the order its constructor declares them.

    Args:
        rng: Random source.
        cls: A block class (or :class:`~menndl.genome.genome.TrainParams`).
        space: The search space, resolved for the data's rank.
        given: Values of fields that are not drawn (by their rows).

    Returns:
        Field name -> value, ready for ``cls(**values)``.
    """
    rows = declared_rows(cls)
    if not given:
        return {field.name: random_value(rng, field, space) for field in rows}
    return {field.name: given[field] if field in given else random_value(rng, field, space) for field in rows}


def random_conv_block(rng: random.Random, space: SearchSpace, first: bool = False) -> ConvBlock:
    """Draw a random convolution block from a resolved ``space``.

    Stride and dilation other than the smallest allowed are each drawn one
    time in four, and a dropout one time in four (their rows' ``chance``),
    so most convolutions keep the spatial size; the first block of a network
    keeps the smallest stride.

    Args:
        rng: Random source.
        space: The search space, resolved for the data's rank.
        first: Whether the block opens the network.

    Returns:
        The block.
    """
    given = {CONV_STRIDE: CONV_STRIDE.kind.least(space)} if first else None
    return ConvBlock(**random_fields(rng, ConvBlock, space, given))


def random_dense_block(rng: random.Random, space: SearchSpace) -> DenseBlock:
    """Draw a random dense block from ``space``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The block.
    """
    return DenseBlock(**random_fields(rng, DenseBlock, space))


def random_train_params(rng: random.Random, space: SearchSpace) -> TrainParams:
    """Draw random training hyperparameters from ``space``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The training parameters.
    """
    return TrainParams(**random_fields(rng, TrainParams, space))


def random_pool_block(rng: random.Random, spatial: tuple[int, ...], space: SearchSpace) -> PoolBlock | None:
    """Draw a pooling block that keeps every spatial size >= 1, or None if none fits.

    Its size is drawn among the space's sizes that fit here.

    Args:
        rng: Random source.
        spatial: Spatial sizes where the block goes.
        space: The search space.

    Returns:
        The block or None.
    """
    smallest = min(spatial)
    assert isinstance(POOL_SIZE.kind, Choice)
    sizes = [s for s in POOL_SIZE.kind.options(space) if smallest // s >= 1]
    if not sizes:
        return None
    values: dict[str, Any] = {
        field.name: rng.choice(sizes) if field is POOL_SIZE else random_value(rng, field, space)
        for field in declared_rows(PoolBlock)
    }
    return PoolBlock(**values)


def random_skip_block(rng: random.Random, position: int, space: SearchSpace) -> SkipBlock:
    """Draw a skip block for ``position`` in the features.

    Its source is an earlier block's output (the input only at position 1);
    spans of 2 (a residual pair) are drawn half the time when possible.

    Args:
        rng: Random source.
        position: Index the block will have in ``Genome.features`` (>= 1).
        space: The search space.

    Returns:
        The block (its shapes still need checking).
    """
    if position >= 3 and rng.random() < 0.5:
        span = 2
    else:
        span = rng.randint(1, max(1, position - 1))
    return SkipBlock(**random_fields(rng, SkipBlock, space, {SKIP_SPAN: span}))


def random_reduce(rng: random.Random, space: SearchSpace) -> GlobalPoolBlock | None:
    """Global pooling (avg or max) with probability ``GLOBAL_POOL_PROBABILITY`` if allowed, else None (flatten)."""
    if "global_pool" in space.block_types and rng.random() < GLOBAL_POOL_PROBABILITY:
        return GlobalPoolBlock(**random_fields(rng, GlobalPoolBlock, space))
    return None


def random_up_block(rng: random.Random, space: SearchSpace) -> UpBlock:
    """Draw a decoder's up block (every field inside the space).

    Args:
        rng: Random source.
        space: The search space, resolved for the data's rank.

    Returns:
        The block.
    """
    return UpBlock(**random_fields(rng, UpBlock, space))


def random_decoder(rng: random.Random, space: SearchSpace, levels: int) -> tuple[UpBlock, ...]:
    """Draw a segmentation decoder for an encoder with ``levels`` downsampling blocks.

    It undoes all of them (up to ``max_decoder``) with probability :data:`FULL_DECODER_PROBABILITY`,
    else a uniform number from 0 (the classifier's output is resized) to that many.

    Args:
        rng: Random source.
        space: The search space, resolved for the data's rank.
        levels: The encoder's downsampling blocks.

    Returns:
        The up blocks (none if the space does not allow ``up``).
    """
    if "up" not in space.block_types:
        return ()
    most = min(levels, space.max_decoder)
    count = most if rng.random() < FULL_DECODER_PROBABILITY else rng.randint(0, most)
    return tuple(random_up_block(rng, space) for _ in range(count))


def random_genome(rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Draw a random valid genome.

    The first feature block is a convolution; later ones are pools with
    probability :data:`POOL_PROBABILITY` where a pool size still fits.
    Skip connections are then inserted after convolutions (each of up to ``max_skips`` with
    probability :data:`SKIP_PROBABILITY`), the reduction and head drawn, and
    the result repaired (a skip that cannot map its source is dropped).

    Args:
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        A genome with 1..max_features conv/pool blocks and 0..max_head dense blocks; for
        segmentation, no reduce nor head and a decoder (:func:`random_decoder`).
    """
    space = resolve_space(space, spec.spatial_rank)
    spatial = spec.shape[1:]
    pools = "pool" in space.block_types
    first = random_conv_block(rng, space, first=True)
    features: list[FeatureBlock] = [first]
    spatial = tuple(-(-n // first.stride) for n in spatial)  # (a space may allow only strides > 1)
    for _ in range(rng.randint(1, space.max_features) - 1):
        pool = random_pool_block(rng, spatial, space) if pools and rng.random() < POOL_PROBABILITY else None
        block = pool or random_conv_block(rng, space)
        if isinstance(block, PoolBlock):
            spatial = tuple(n // block.size for n in spatial)
        else:
            spatial = tuple(-(-n // block.stride) for n in spatial)
        features.append(block)
    segmentation = spec.task == "segmentation"
    train = random_train_params(rng, space)  # (then the reduction: the order of draws a seed has always given)
    genome = Genome(tuple(features), (), train, None if segmentation else random_reduce(rng, space))
    skips = False
    if "skip" in space.block_types:
        for _ in range(space.max_skips):
            blocks = (*genome.features, None)
            after_conv = [
                i + 1
                for i, b in enumerate(blocks[:-1])
                if i > 0 and isinstance(b, ConvBlock) and not isinstance(blocks[i + 1], SkipBlock)
            ]
            if after_conv and rng.random() < SKIP_PROBABILITY:
                position = rng.choice(after_conv)
                genome = insert_feature(genome, position, random_skip_block(rng, position, space))
                skips = True
    if segmentation:
        genome = replace(genome, decoder=random_decoder(rng, space, downsamplings(genome.features)))
    elif "dense" in space.block_types:
        head = tuple(random_dense_block(rng, space) for _ in range(rng.randint(0, space.max_head)))
        genome = Genome(genome.features, head, genome.train, genome.reduce)
    # Every value is drawn inside the space and every pool fits where it goes: only a skip may not map.
    return repair(genome, space, spec) if skips else known_valid(genome, space, spec)
