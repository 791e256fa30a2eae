"""Mutation and crossover of genomes.

Every operator takes a ``random.Random`` and is deterministic given its
state, and returns a genome that passes :func:`menndl.genome.shapes.check`:
children go through :func:`~menndl.genome.repair.repair`.  A mutation with
nothing to change returns its parent unchanged; :func:`mutate` then draws
again.  The operator that made a child and its parents are recorded by the
caller (``Candidate.operator`` and ``Candidate.parents`` in the evolution,
the ``operator`` and ``parents`` columns in the library).  Altering a field
(:func:`alter_block`, :func:`alter_training`) goes by its row of the field
table (:mod:`menndl.genome.fields`: :func:`changed_value`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from menndl.genome.fields import TRAIN_MOMENTUM, Field, Flag, Ints, Range, Rate, Span
from menndl.genome.genome import (
    ConvBlock,
    Genome,
    GlobalPoolBlock,
    PoolBlock,
    SkipBlock,
    TrainParams,
    field_rows,
)
from menndl.genome.repair import insert_feature, known_valid, remove_feature, repair
from menndl.genome.sampling import (
    POOL_PROBABILITY,
    random_conv_block,
    random_dense_block,
    random_fields,
    random_skip_block,
    random_up_block,
    random_value,
    round_into,
)
from menndl.genome.shapes import downsamplings
from menndl.genome.space import MUTATION_NAMES, InputSpec, SearchSpace, resolve_space

MUTATE_TRIES = 10  # attempts of mutate() to produce a child that differs
SKIP_TRIES = 4  # attempts of add_skip() to find a skip whose source maps onto its shape


def _count(genome: Genome, kind: type) -> int:
    return sum(1 for b in genome.features if type(b) is kind)


def _depth(genome: Genome) -> int:
    return sum(1 for b in genome.features if type(b) is not SkipBlock)


def _decoder_room(genome: Genome, space: SearchSpace, spec: InputSpec) -> bool:
    """Whether a segmentation genome's decoder can take one more up block (one per downsampling at most)."""
    if spec.task != "segmentation" or "up" not in space.block_types:
        return False
    return len(genome.decoder) < min(space.max_decoder, downsamplings(genome.features))


# ---------------------------------------------------------------- add / remove


def add_block(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Insert a random conv or pool block (or a dense block in the head, an up block in a decoder), if depth allows.

    A feature insertion is a pool with probability ``POOL_PROBABILITY``
    (a convolution if the pool does not fit there).  Later skips keep their
    sources.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if both parts are at maximum depth).
    """
    space = resolve_space(space, spec.spatial_rank)
    genome = repair(genome, space, spec)
    parts = []
    if _depth(genome) < space.max_features:
        parts.append("features")
    if spec.task != "segmentation" and "dense" in space.block_types and len(genome.head) < space.max_head:
        parts.append("head")
    if _decoder_room(genome, space, spec):
        parts.append("decoder")
    if not parts:
        return genome
    part = rng.choice(parts)
    if part == "head":
        pos = rng.randint(0, len(genome.head))
        head = genome.head[:pos] + (random_dense_block(rng, space),) + genome.head[pos:]
        return known_valid(Genome(genome.features, head, genome.train, genome.reduce, genome.decoder), space, spec)
    if part == "decoder":  # inside the space, and one per downsampling at most: still valid
        pos = rng.randint(0, len(genome.decoder))
        decoder = genome.decoder[:pos] + (random_up_block(rng, space),) + genome.decoder[pos:]
        return known_valid(Genome(genome.features, genome.head, genome.train, genome.reduce, decoder), space, spec)
    pos = rng.randint(0, len(genome.features))
    if "pool" in space.block_types and rng.random() < POOL_PROBABILITY:
        pool = PoolBlock(**random_fields(rng, PoolBlock, space))  # any size: repair drops one that does not fit
        child = repair(insert_feature(genome, pos, pool), space, spec)
        if len(child.features) > len(genome.features):
            return child
    return repair(insert_feature(genome, pos, random_conv_block(rng, space)), space, spec)


def remove_block(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Remove one random conv, pool, dense or up block; the last convolution is never removed.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if there is nothing to remove).
    """
    genome = repair(genome, space, spec)
    several_convs = _count(genome, ConvBlock) > 1
    slots = [
        ("features", i)
        for i, b in enumerate(genome.features)
        if type(b) is PoolBlock or (type(b) is ConvBlock and several_convs)
    ]
    slots += [("head", i) for i in range(len(genome.head))]
    slots += [("decoder", i) for i in range(len(genome.decoder))]
    if not slots:
        return genome
    part, pos = rng.choice(slots)
    if part == "head":  # the features are untouched: still valid
        head = genome.head[:pos] + genome.head[pos + 1 :]
        return known_valid(Genome(genome.features, head, genome.train, genome.reduce, genome.decoder), space, spec)
    if part == "decoder":  # later up blocks pair with shallower downsamplings: sizes still match
        decoder = genome.decoder[:pos] + genome.decoder[pos + 1 :]
        return known_valid(Genome(genome.features, genome.head, genome.train, genome.reduce, decoder), space, spec)
    return repair(remove_feature(genome, pos), space, spec)


def add_skip(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Insert a skip connection at a random position, with a span whose source fits.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if no skip fits or skips are at their maximum).
    """
    space = resolve_space(space, spec.spatial_rank)
    genome = repair(genome, space, spec)
    if "skip" not in space.block_types or _count(genome, SkipBlock) >= space.max_skips:
        return genome
    for _ in range(SKIP_TRIES):
        pos = rng.randint(1, len(genome.features))
        child = repair(insert_feature(genome, pos, random_skip_block(rng, pos, space)), space, spec)
        if len(child.features) > len(genome.features):
            return child
    return genome


def remove_skip(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Remove one random skip connection.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if it has no skip).
    """
    genome = repair(genome, space, spec)
    skips = [i for i, b in enumerate(genome.features) if type(b) is SkipBlock]
    if not skips:
        return genome
    # A skip keeps its input's shape, so no shape changes; later skips keep their sources (remove_feature).
    return known_valid(remove_feature(genome, rng.choice(skips)), space, spec)


# ---------------------------------------------------------------- alter


def _step_int(rng: random.Random, value: int, bounds: tuple[int, int]) -> int | None:
    """A log-normal step from ``value`` inside ``bounds``; None if stuck."""
    lo, hi = bounds
    if lo == hi:
        return None
    new = min(max(round(value * math.exp(rng.gauss(0.0, 0.5))), lo), hi)
    if new == value:
        new = value + 1 if value < hi else value - 1
    return new


def _other(rng: random.Random, options: Sequence[Any], current: Any) -> Any:
    """A random option different from ``current``; None if there is none."""
    others = [o for o in options if o != current]
    return rng.choice(others) if others else None


def _unless(value: Any, current: Any) -> Any:
    return None if value == current else value


def changed_value(field: Field, value: Any, rng: random.Random, space: SearchSpace, position: int = 0) -> Any:
    """A new value of ``field`` near ``value`` (or drawn afresh), inside the bounds of a resolved ``space``.

    A row with ``redraw`` draws afresh (:func:`~menndl.genome.sampling.random_value`).
    Otherwise an integer range takes a log-normal step (at least 1), a float
    range a log-normal step rounded to 3 significant digits, a rate a
    Gaussian step (sigma 0.15), a choice another allowed option, a flag its
    negation, a skip's span another span that reaches no further than the input.

    Args:
        field: The value's row of the field table.
        value: The current value.
        rng: Random source.
        space: The search space, resolved for the data's rank.
        position: The block's index in ``Genome.features`` (for a skip's span).

    Returns:
        The new value, or None if the field cannot change (its domain has
        one value, or a step or draw gave the same value back).
    """
    kind = field.kind
    if field.redraw:
        return _unless(random_value(rng, field, space), value)
    if isinstance(kind, Range):
        bounds = kind.bounds(space)
        if isinstance(kind.values, Ints):
            return _step_int(rng, value, bounds)
        return _unless(round_into(value * math.exp(rng.gauss(0.0, 0.5)), bounds), value)
    if isinstance(kind, Rate):
        return _unless(round_into(value + rng.gauss(0.0, 0.15), kind.bounds(space)), value)
    if isinstance(kind, Flag):
        return not value
    if isinstance(kind, Span):
        return _other(rng, range(1, position + 1), value)
    return _other(rng, kind.options(space), value)


def _altered(block: Any, rng: random.Random, space: SearchSpace, position: int) -> tuple[Any, Field] | None:
    """``block`` with one field changed, and that field's row; None if no field can change."""
    rows = list(field_rows(type(block)))
    rng.shuffle(rows)
    for field in rows:
        value = changed_value(field, getattr(block, field.name), rng, space, position)
        if value is not None:
            return replace(block, **{field.name: value}), field
    return None


def alter_block(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Change one hyperparameter of one random block (or switch flatten/global pooling).

    Conv: filters (log-normal step), kernel, stride, dilation, activation,
    batch norm, dropout.  Pool: kind, size.  Skip: span, activation.  Dense:
    units (log-normal step), activation, dropout (Gaussian step).  Up: filters,
    kernel, mode, merge, convs, activation, batch norm.  Reduction (not in
    segmentation): flatten <-> global pooling, or max <-> avg.  A change that makes the
    network invalid is repaired (e.g. a pool that no longer fits is dropped).

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if no block can change).
    """
    space = resolve_space(space, spec.spatial_rank)
    genome = repair(genome, space, spec)
    slots = [("features", i) for i in range(len(genome.features))]
    slots += [("head", i) for i in range(len(genome.head))]
    slots += [("decoder", i) for i in range(len(genome.decoder))]
    if "global_pool" in space.block_types and spec.task != "segmentation":
        slots.append(("reduce", 0))
    rng.shuffle(slots)
    for part, i in slots:
        if part == "reduce":
            if genome.reduce is None:
                reduce: GlobalPoolBlock | None = GlobalPoolBlock(**random_fields(rng, GlobalPoolBlock, space))
            else:
                altered = None if rng.random() < 0.5 else _altered(genome.reduce, rng, space, 0)
                reduce = None if altered is None else altered[0]
            return repair(replace(genome, reduce=reduce), space, spec)
        blocks: tuple[Any, ...] = getattr(genome, part)
        altered = _altered(blocks[i], rng, space, i)
        if altered is not None:
            new, field = altered
            changed = blocks[:i] + (new,) + blocks[i + 1 :]
            features, head, decoder = genome.features, genome.head, genome.decoder
            if part == "features":
                features = changed
            elif part == "head":
                head = changed
            else:
                decoder = changed
            child = Genome(features, head, genome.train, genome.reduce, decoder)
            if not field.shaping:  # a value inside the space, no shape moves: still valid
                return known_valid(child, space, spec)  # (what repair would return, without walking it)
            return repair(child, space, spec)
    return genome


def alter_training(genome: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Change one training hyperparameter.

    Learning rate: log-normal step, clamped and rounded.  Batch size,
    optimizer and schedule: another allowed choice.  Weight decay, momentum
    (only with SGD, the one optimizer that uses it) and budget: a fresh draw.

    Args:
        genome: The parent.
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        The child (the repaired parent if nothing can change).
    """
    space = resolve_space(space, spec.spatial_rank)
    genome = repair(genome, space, spec)
    rows = [field for field in field_rows(TrainParams) if field is not TRAIN_MOMENTUM]
    if genome.train.optimizer == "sgd":  # Adam and AdamW ignore momentum: changing it would give the same training
        rows.append(TRAIN_MOMENTUM)  # last, as it always was: the shuffle below draws the same order
    rng.shuffle(rows)
    for field in rows:
        value = changed_value(field, getattr(genome.train, field.name), rng, space)
        if value is not None:  # drawn inside the space; no shape depends on training
            train = replace(genome.train, **{field.name: value})
            return known_valid(Genome(genome.features, genome.head, train, genome.reduce, genome.decoder), space, spec)
    return genome


Mutation = Callable[[Genome, random.Random, SearchSpace, InputSpec], Genome]

MUTATIONS: dict[str, Mutation] = {
    "add_block": add_block,
    "remove_block": remove_block,
    "alter_block": alter_block,
    "add_skip": add_skip,
    "remove_skip": remove_skip,
    "alter_training": alter_training,
}
assert tuple(MUTATIONS) == MUTATION_NAMES


_SPACE_WEIGHTS: dict[int, tuple[SearchSpace, list[str], dict[str, float], float]] = {}  # by id(space)


def _space_weights(space: SearchSpace) -> tuple[list[str], dict[str, float], float]:
    """The operators a (resolved, immutable) space lets mutation draw, their weights and total, once per space."""
    memo = _SPACE_WEIGHTS.get(id(space))
    if memo is None or memo[0] is not space:
        weights = space.mutation_weights
        names = [name for name in MUTATIONS if weights.get(name, 0.0) > 0]
        memo = _SPACE_WEIGHTS[id(space)] = (space, names, weights, sum(weights[name] for name in names))
    return memo[1], memo[2], memo[3]


def _pick(rng: random.Random, names: list[str], weights: Mapping[str, float], total: float) -> str:
    point = rng.random() * total
    for name in names:
        point -= weights[name]
        if point < 0:
            return name
    return names[-1]


def _checked_weights(weights: Mapping[str, float]) -> None:
    for name, weight in weights.items():
        if name not in MUTATIONS:
            raise ValueError(f"mutation weights: unknown operator {name!r} (expected {', '.join(MUTATIONS)})")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise ValueError(f"mutation weights.{name}: expected a finite number >= 0, got {weight!r}")
    if not any(weight > 0 for weight in weights.values()):
        raise ValueError("mutation weights: expected at least one positive weight")


def mutate(
    genome: Genome,
    rng: random.Random,
    space: SearchSpace,
    spec: InputSpec,
    weights: Mapping[str, float] | None = None,
) -> tuple[Genome, str]:
    """Apply one randomly chosen mutation operator.

    The operator is drawn by ``weights`` (by default the space's
    ``mutation_*`` weights).  If the child equals the parent, another draw is
    made, up to ``MUTATE_TRIES`` times; only in a space with no room to
    change can the (repaired) parent come back.

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
    space = resolve_space(space, spec.spatial_rank)
    if weights is None:
        names, weights, total = _space_weights(space)
    else:
        _checked_weights(weights)
        names = [name for name in MUTATIONS if weights.get(name, 0.0) > 0]
        total = sum(weights[name] for name in names)
    child, name = genome, ""
    for _ in range(MUTATE_TRIES):
        name = _pick(rng, names, weights, total)
        child = MUTATIONS[name](genome, rng, space, spec)
        if child != genome:
            break
    return child, name


# ---------------------------------------------------------------- crossover


def crossover(a: Genome, b: Genome, rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Cut-and-splice crossover of two parents.

    Features are ``a.features[:i] + b.features[j:]`` with ``i >= 1`` (so at
    least one block of ``a`` survives): runs of blocks keep their relative
    skips.  The head and a segmentation decoder are spliced the same way
    (``i`` may be 0; the decoder's first blocks undo the deepest
    downsamplings, so a run of up blocks keeps its place), the reduction
    comes from either parent, and each training field from ``a`` or ``b`` at
    random.  The child is repaired (up blocks beyond the child's
    downsamplings are dropped).

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
    reduce = a.reduce if rng.random() < 0.5 else b.reduce
    train = TrainParams(
        **{
            name: getattr(a.train if rng.random() < 0.5 else b.train, name)
            for name in (f.name for f in fields(TrainParams))
        }
    )
    decoder = a.decoder
    if a.decoder or b.decoder:  # (no draw otherwise: classification children come out as they always did)
        i, j = rng.randint(0, len(a.decoder)), rng.randint(0, len(b.decoder))
        decoder = a.decoder[:i] + b.decoder[j:]
    return repair(Genome(features, head, train, reduce, decoder), space, spec)
