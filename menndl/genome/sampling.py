"""Random sampling of genomes and their parts from a search space.

Plain Python: no torch.  Every draw takes a ``random.Random`` and is
deterministic given its state.
"""

from __future__ import annotations

import math
import random

from menndl.genome.genome import (
    POOL_KINDS,
    ConvBlock,
    DenseBlock,
    FeatureBlock,
    Genome,
    GlobalPoolBlock,
    PoolBlock,
    SkipBlock,
    TrainParams,
    round_sig,
)
from menndl.genome.repair import insert_feature, known_valid, repair
from menndl.genome.space import InputSpec, SearchSpace, resolve_space

POOL_PROBABILITY = 0.3  # chance that a non-first random feature block is a pool
SKIP_PROBABILITY = 0.3  # chance of each of the up to max_skips skip connections of a random genome
GLOBAL_POOL_PROBABILITY = 0.3  # chance that a random genome ends its features with global pooling


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


def random_conv_block(rng: random.Random, space: SearchSpace, first: bool = False) -> ConvBlock:
    """Draw a random convolution block from a resolved ``space``.

    Stride and dilation other than the smallest allowed are each drawn one
    time in four (when the space allows them), so most convolutions keep the
    spatial size; the first block of a network keeps the smallest stride.

    Args:
        rng: Random source.
        space: The search space, resolved for the data's rank.
        first: Whether the block opens the network.

    Returns:
        The block.
    """
    strides, dilations = space.strides, space.dilations  # rank-resolved (resolve_space) by every caller
    assert strides is not None and dilations is not None and space.filters is not None and space.kernels
    return ConvBlock(
        filters=log_uniform_int(rng, space.filters),
        kernel=rng.choice(space.kernels),
        activation=rng.choice(space.activations),
        batch_norm=rng.random() < 0.5,
        stride=rng.choice(strides) if not first and rng.random() < 0.25 else min(strides),
        dilation=rng.choice(dilations) if rng.random() < 0.25 else min(dilations),
        dropout=random_dropout(rng, space) if rng.random() < 0.25 else 0.0,
    )


def random_dropout(rng: random.Random, space: SearchSpace) -> float:
    """Draw a dropout: 0 one time in three, else uniform in ``[0, max_dropout]``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The dropout, rounded to 3 significant digits.
    """
    if rng.random() < 1 / 3:
        return 0.0
    return round_into(rng.uniform(0.0, space.max_dropout), (0.0, space.max_dropout))


def random_dense_block(rng: random.Random, space: SearchSpace) -> DenseBlock:
    """Draw a random dense block from ``space``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The block.
    """
    return DenseBlock(
        units=log_uniform_int(rng, space.dense_units),
        activation=rng.choice(space.activations),
        dropout=random_dropout(rng, space),
    )


def random_learning_rate(rng: random.Random, space: SearchSpace) -> float:
    """Draw a learning rate log-uniformly, rounded to 3 significant digits."""
    lo, hi = space.learning_rate
    return round_into(math.exp(rng.uniform(math.log(lo), math.log(hi))), space.learning_rate)


def random_weight_decay(rng: random.Random, space: SearchSpace) -> float:
    """Draw a weight decay (log-uniform if the minimum is > 0, else uniform)."""
    lo, hi = space.weight_decay
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if lo > 0 else rng.uniform(lo, hi)
    return round_into(x, space.weight_decay)


def random_momentum(rng: random.Random, space: SearchSpace) -> float:
    """Draw an SGD momentum uniformly from ``space.momentum``, rounded to 3 significant digits."""
    return round_into(rng.uniform(*space.momentum), space.momentum)


def random_budget(rng: random.Random, space: SearchSpace) -> float:
    """Draw a training budget fraction uniformly from ``space.budget``, rounded to 3 significant digits."""
    return round_into(rng.uniform(*space.budget), space.budget)


def random_train_params(rng: random.Random, space: SearchSpace) -> TrainParams:
    """Draw random training hyperparameters from ``space``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The training parameters.
    """
    return TrainParams(
        learning_rate=random_learning_rate(rng, space),
        batch_size=rng.choice(space.batch_sizes),
        optimizer=rng.choice(space.optimizers),
        weight_decay=random_weight_decay(rng, space),
        momentum=random_momentum(rng, space),
        schedule=rng.choice(space.schedules),
        budget=random_budget(rng, space),
    )


def random_pool_block(rng: random.Random, spatial: tuple[int, ...], space: SearchSpace) -> PoolBlock | None:
    """Draw a pooling block that keeps every spatial size >= 1, or None if none fits.

    Args:
        rng: Random source.
        spatial: Spatial sizes where the block goes.
        space: The search space.

    Returns:
        The block or None.
    """
    smallest = min(spatial)
    sizes = [s for s in space.pool_sizes if smallest // s >= 1]
    if not sizes:
        return None
    return PoolBlock(kind=rng.choice(POOL_KINDS), size=rng.choice(sizes))


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
    return SkipBlock(span=span, activation=rng.choice((*space.activations, "none")))


def random_reduce(rng: random.Random, space: SearchSpace) -> GlobalPoolBlock | None:
    """Global pooling (avg or max) with probability ``GLOBAL_POOL_PROBABILITY`` if allowed, else None (flatten)."""
    if "global_pool" in space.block_types and rng.random() < GLOBAL_POOL_PROBABILITY:
        return GlobalPoolBlock(rng.choice(POOL_KINDS))
    return None


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
        A genome with 1..max_features conv/pool blocks and 0..max_head dense blocks.
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
    genome = Genome(tuple(features), (), random_train_params(rng, space), random_reduce(rng, space))
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
    if "dense" in space.block_types:
        head = tuple(random_dense_block(rng, space) for _ in range(rng.randint(0, space.max_head)))
        genome = Genome(genome.features, head, genome.train, genome.reduce)
    # Every value is drawn inside the space and every pool fits where it goes: only a skip may not map.
    return repair(genome, space, spec) if skips else known_valid(genome, space, spec)
