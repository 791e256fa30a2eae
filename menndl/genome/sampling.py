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
    Genome,
    PoolBlock,
    TrainParams,
    round_sig,
)
from menndl.genome.space import InputSpec, SearchSpace

POOL_PROBABILITY = 0.3  # chance that a non-first random feature block is a pool


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


def random_conv_block(rng: random.Random, space: SearchSpace) -> ConvBlock:
    """Draw a random convolution block from ``space``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The block.
    """
    return ConvBlock(
        filters=log_uniform_int(rng, space.filters),
        kernel=rng.choice(space.kernels),
        activation=rng.choice(space.activations),
        batch_norm=rng.random() < 0.5,
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
    )


def fitting_pool_sizes(spatial: tuple[int, ...], space: SearchSpace) -> list[int]:
    """Pool sizes of ``space`` that keep every size of ``spatial`` >= 1.

    Args:
        spatial: Current spatial sizes.
        space: The search space.

    Returns:
        The fitting sizes, in the order of ``space.pool_sizes``.
    """
    return [s for s in space.pool_sizes if min(spatial) // s >= 1]


def random_genome(rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Draw a random valid genome.

    The first feature block is a convolution; later ones are pools with
    probability :data:`POOL_PROBABILITY` where a pool size still fits.

    Args:
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        A genome with 1..max_features feature blocks and 0..max_head dense blocks.
    """
    spatial = spec.shape[1:]
    features: list[ConvBlock | PoolBlock] = [random_conv_block(rng, space)]
    for _ in range(rng.randint(1, space.max_features) - 1):
        sizes = fitting_pool_sizes(spatial, space)
        if sizes and rng.random() < POOL_PROBABILITY:
            size = rng.choice(sizes)
            features.append(PoolBlock(kind=rng.choice(POOL_KINDS), size=size))
            spatial = tuple(n // size for n in spatial)
        else:
            features.append(random_conv_block(rng, space))
    head = [random_dense_block(rng, space) for _ in range(rng.randint(0, space.max_head))]
    return Genome(tuple(features), tuple(head), random_train_params(rng, space))
