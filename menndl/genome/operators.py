"""Mutation, crossover and repair of genomes.

Every operator takes a ``random.Random`` and is deterministic given its
state.  Every operator returns a genome that passes
:func:`menndl.genome.shapes.check`: children are passed through
:func:`repair`.  A mutation with nothing to change returns its parent
unchanged; :func:`mutate` then retries.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from menndl.genome.genome import POOL_KINDS, ConvBlock, DenseBlock, Genome, PoolBlock, TrainParams
from menndl.genome.sampling import (
    POOL_PROBABILITY,
    random_conv_block,
    random_dense_block,
    random_weight_decay,
    round_into,
)
from menndl.genome.shapes import layer_shapes
from menndl.genome.space import InputSpec, InvalidGenome, SearchSpace

MUTATE_TRIES = 10  # attempts of mutate() to produce a child that differs


# ---------------------------------------------------------------- repair


def _nearest(value: int, options: Sequence[int]) -> int:
    return min(options, key=lambda o: (abs(o - value), o))


def _clamp(value: Any, bounds: tuple[Any, Any]) -> Any:
    return min(max(value, bounds[0]), bounds[1])


def _member(value: str, options: tuple[str, ...]) -> str:
    return value if value in options else options[0]


def _clamp_feature(block: ConvBlock | PoolBlock, space: SearchSpace) -> ConvBlock | PoolBlock:
    if isinstance(block, PoolBlock):
        return replace(block, size=_nearest(block.size, space.pool_sizes))
    return replace(
        block,
        filters=_clamp(block.filters, space.filters),
        kernel=_nearest(block.kernel, space.kernels),
        activation=_member(block.activation, space.activations),
    )


def _clamp_dense(block: DenseBlock, space: SearchSpace) -> DenseBlock:
    return replace(
        block,
        units=_clamp(block.units, space.dense_units),
        activation=_member(block.activation, space.activations),
        dropout=_clamp(block.dropout, (0.0, space.max_dropout)),
    )


def _clamp_train(train: TrainParams, space: SearchSpace) -> TrainParams:
    return replace(
        train,
        learning_rate=_clamp(train.learning_rate, space.learning_rate),
        batch_size=_nearest(train.batch_size, space.batch_sizes),
        optimizer=_member(train.optimizer, space.optimizers),
        weight_decay=_clamp(train.weight_decay, space.weight_decay),
    )


def repair(genome: Genome, space: SearchSpace, spec: InputSpec) -> Genome:
    """Make ``genome`` valid without randomness.

    Values are clamped into ``space`` (nearest allowed choice, first allowed
    name), blocks beyond the maximum depths are cut, pools that would shrink
    a spatial size below 1 are dropped, and a genome left with no feature
    block gets one default convolution.

    Args:
        genome: Any genome.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        A genome that passes :func:`menndl.genome.shapes.check`.
    """
    spatial = spec.shape[1:]
    features: list[ConvBlock | PoolBlock] = []
    for block in genome.features[: space.max_features]:
        block = _clamp_feature(block, space)
        if isinstance(block, PoolBlock):
            if min(spatial) // block.size < 1:
                continue
            spatial = tuple(n // block.size for n in spatial)
        features.append(block)
    if not features:
        features.append(ConvBlock(space.filters[0], min(space.kernels), space.activations[0], True))
    head = tuple(_clamp_dense(b, space) for b in genome.head[: space.max_head])
    return Genome(tuple(features), head, _clamp_train(genome.train, space))


# ---------------------------------------------------------------- mutations


def _fits(genome: Genome, spec: InputSpec) -> bool:
    try:
        layer_shapes(genome, spec)
    except InvalidGenome:
        return False
    return True


def add_block(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Insert a random block at a random position, if depth allows.

    A feature insertion is a pool (where one fits) with probability
    ``POOL_PROBABILITY``, else a convolution.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if both parts are at maximum depth).
    """
    parts = []
    if len(genome.features) < space.max_features:
        parts.append("features")
    if len(genome.head) < space.max_head:
        parts.append("head")
    if not parts:
        return repair(genome, space, spec)
    if rng.choice(parts) == "head":
        pos = rng.randint(0, len(genome.head))
        head = genome.head[:pos] + (random_dense_block(rng, space),) + genome.head[pos:]
        return repair(replace(genome, head=head), space, spec)
    pos = rng.randint(0, len(genome.features))
    if rng.random() < POOL_PROBABILITY:
        pool = PoolBlock(kind=rng.choice(POOL_KINDS), size=rng.choice(space.pool_sizes))
        child = replace(genome, features=genome.features[:pos] + (pool,) + genome.features[pos:])
        if _fits(child, spec):
            return repair(child, space, spec)
    conv = random_conv_block(rng, space)
    child = replace(genome, features=genome.features[:pos] + (conv,) + genome.features[pos:])
    return repair(child, space, spec)


def remove_block(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Remove one random block; the last feature block is never removed.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if there is nothing to remove).
    """
    parts = []
    if len(genome.features) > 1:
        parts.append("features")
    if genome.head:
        parts.append("head")
    if not parts:
        return repair(genome, space, spec)
    part = rng.choice(parts)
    blocks = getattr(genome, part)
    pos = rng.randrange(len(blocks))
    return repair(replace(genome, **{part: blocks[:pos] + blocks[pos + 1 :]}), space, spec)


def _step_int(rng: random.Random, value: int, bounds: tuple[int, int]) -> int | None:
    """A log-normal step from ``value`` inside ``bounds``; None if stuck."""
    lo, hi = bounds
    if lo == hi:
        return None
    new = _clamp(round(value * math.exp(rng.gauss(0.0, 0.5))), bounds)
    if new == value:
        new = value + 1 if value < hi else value - 1
    return new


def _other(rng: random.Random, options: Sequence[Any], current: Any) -> Any:
    """A random option different from ``current``; None if there is none."""
    others = [o for o in options if o != current]
    return rng.choice(others) if others else None


def _conv_change(block: ConvBlock, name: str, rng: random.Random, space: SearchSpace) -> Any:
    if name == "filters":
        return _step_int(rng, block.filters, space.filters)
    if name == "kernel":
        return _other(rng, space.kernels, block.kernel)
    if name == "activation":
        return _other(rng, space.activations, block.activation)
    return not block.batch_norm


def _dense_change(block: DenseBlock, name: str, rng: random.Random, space: SearchSpace) -> Any:
    if name == "units":
        return _step_int(rng, block.units, space.dense_units)
    if name == "activation":
        return _other(rng, space.activations, block.activation)
    new = round_into(block.dropout + rng.gauss(0.0, 0.15), (0.0, space.max_dropout))
    return None if new == block.dropout else new


def _altered_feature(
    genome: Genome, i: int, rng: random.Random, space: SearchSpace, spec: InputSpec
) -> Genome | None:
    block = genome.features[i]
    if isinstance(block, ConvBlock):
        names = ["filters", "kernel", "activation", "batch_norm"]
    else:
        names = ["kind", "size"]
    rng.shuffle(names)
    for name in names:
        if isinstance(block, ConvBlock):
            values = [_conv_change(block, name, rng, space)]
        elif name == "kind":
            values = [_other(rng, POOL_KINDS, block.kind)]
        else:
            values = [s for s in space.pool_sizes if s != block.size]
            rng.shuffle(values)
        for value in values:
            if value is None:
                continue
            features = list(genome.features)
            features[i] = replace(block, **{name: value})
            child = replace(genome, features=tuple(features))
            if _fits(child, spec):
                return child
    return None


def _altered_dense(genome: Genome, i: int, rng: random.Random, space: SearchSpace) -> Genome | None:
    block = genome.head[i]
    names = ["units", "activation", "dropout"]
    rng.shuffle(names)
    for name in names:
        value = _dense_change(block, name, rng, space)
        if value is not None:
            head = list(genome.head)
            head[i] = replace(block, **{name: value})
            return replace(genome, head=tuple(head))
    return None


def alter_block(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Change one hyperparameter of one random block.

    Conv: filters (log-normal step), kernel, activation, batch norm.  Pool:
    kind, size.  Dense: units (log-normal step), activation, dropout
    (Gaussian step).  Blocks and fields with no possible change are skipped.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if no block can change).
    """
    genome = repair(genome, space, spec)
    slots = [("features", i) for i in range(len(genome.features))]
    slots += [("head", i) for i in range(len(genome.head))]
    rng.shuffle(slots)
    for part, i in slots:
        if part == "features":
            child = _altered_feature(genome, i, rng, space, spec)
        else:
            child = _altered_dense(genome, i, rng, space)
        if child is not None:
            return repair(child, space, spec)
    return genome


def _train_change(train: TrainParams, name: str, rng: random.Random, space: SearchSpace) -> Any:
    if name == "learning_rate":
        new = round_into(train.learning_rate * math.exp(rng.gauss(0.0, 0.5)), space.learning_rate)
        return None if new == train.learning_rate else new
    if name == "batch_size":
        return _other(rng, space.batch_sizes, train.batch_size)
    if name == "optimizer":
        return _other(rng, space.optimizers, train.optimizer)
    new = random_weight_decay(rng, space)
    return None if new == train.weight_decay else new


def alter_training(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Change one training hyperparameter.

    Learning rate: log-normal step, clamped and rounded.  Batch size and
    optimizer: another allowed choice.  Weight decay: a fresh draw.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if nothing can change).
    """
    genome = repair(genome, space, spec)
    names = ["learning_rate", "batch_size", "optimizer", "weight_decay"]
    rng.shuffle(names)
    for name in names:
        value = _train_change(genome.train, name, rng, space)
        if value is not None:
            return replace(genome, train=replace(genome.train, **{name: value}))
    return genome


Mutation = Callable[[Genome, random.Random, SearchSpace, InputSpec], Genome]

MUTATIONS: dict[str, Mutation] = {
    "add_block": add_block,
    "remove_block": remove_block,
    "alter_block": alter_block,
    "alter_training": alter_training,
}


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = [name for name in MUTATIONS if weights.get(name, 0.0) > 0]
    total = sum(weights[name] for name in names)
    point = rng.random() * total
    for name in names:
        point -= weights[name]
        if point < 0:
            return name
    return names[-1]


def mutate(
    genome: Genome,
    rng: random.Random,
    space: SearchSpace,
    spec: InputSpec,
    weights: Mapping[str, float] | None = None,
) -> tuple[Genome, str]:
    """Apply one randomly chosen mutation operator.

    The operator is drawn by ``weights`` (equal by default).  If the child
    equals the parent, another draw is made, up to ``MUTATE_TRIES`` times;
    only in a space with no room to change can the parent come back.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.
        weights: Relative weight per name in :data:`MUTATIONS`; missing names
            weigh 0.

    Returns:
        ``(child, operator name)``.

    Raises:
        ValueError: If ``weights`` names an unknown operator, has a negative
            or non-numeric weight, or has no positive weight.
    """
    if weights is None:
        weights = {name: 1.0 for name in MUTATIONS}
    for name, weight in weights.items():
        if name not in MUTATIONS:
            raise ValueError(f"mutation weights: unknown operator {name!r} (expected {', '.join(MUTATIONS)})")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise ValueError(f"mutation weights.{name}: expected a finite number >= 0, got {weight!r}")
    if not any(weight > 0 for weight in weights.values()):
        raise ValueError("mutation weights: expected at least one positive weight")
    child, name = genome, ""
    for _ in range(MUTATE_TRIES):
        name = _pick(rng, weights)
        child = MUTATIONS[name](genome, rng, space, spec)
        if child != genome:
            break
    return child, name


# ---------------------------------------------------------------- crossover


def crossover(a: Genome, b: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Cut-and-splice crossover of two parents.

    Features are ``a.features[:i] + b.features[j:]`` with ``i >= 1`` (so at
    least one block of ``a`` survives); the head is spliced the same way
    (``i`` may be 0).  Each training field comes from ``a`` or ``b`` at
    random.  The child is repaired.

    Args:
        a: First parent.
        b: Second parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        A valid child.
    """
    i = rng.randint(min(1, len(a.features)), len(a.features))
    j = rng.randint(0, len(b.features))
    features = a.features[:i] + b.features[j:]
    i = rng.randint(0, len(a.head))
    j = rng.randint(0, len(b.head))
    head = a.head[:i] + b.head[j:]
    train = TrainParams(
        **{
            name: getattr(rng.choice((a.train, b.train)), name)
            for name in ("learning_rate", "batch_size", "optimizer", "weight_decay")
        }
    )
    return repair(Genome(features, head, train), space, spec)
