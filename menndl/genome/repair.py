"""Repair: turn any genome into a valid one without randomness; edits that keep skips pointing right.

Skip spans are relative (see :class:`~menndl.genome.genome.SkipBlock`), so
inserting or removing a feature block between a skip and its source would
silently re-wire it.  :func:`insert_feature` and :func:`remove_feature`
adjust the spans so every skip keeps its source; :func:`repair` does the
same for every block it has to drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from menndl.genome.genome import (
    FITS_MEMO,
    ConvBlock,
    DenseBlock,
    FeatureBlock,
    Genome,
    GlobalPoolBlock,
    PoolBlock,
    SkipBlock,
    TrainParams,
)
from menndl.genome.shapes import skip_strides
from menndl.genome.space import InputSpec, SearchSpace, resolve_space

# ---------------------------------------------------------------- span-keeping edits


def insert_feature(genome: Genome, position: int, block: FeatureBlock) -> Genome:
    """Insert ``block`` before ``genome.features[position]``; later skips keep their sources.

    Args:
        genome: The genome.
        position: Insertion index, ``0 <= position <= len(genome.features)``.
        block: The block to insert (a skip's span is taken as given).

    Returns:
        The new genome (not repaired).
    """
    features = list(genome.features[:position])
    features.append(block)
    for j in range(position, len(genome.features)):
        old = genome.features[j]
        if type(old) is SkipBlock and j - 1 - old.span < position:
            old = SkipBlock(old.span + 1, old.activation)
        features.append(old)
    return Genome(tuple(features), genome.head, genome.train, genome.reduce)


def remove_feature(genome: Genome, position: int) -> Genome:
    """Remove ``genome.features[position]``; later skips keep their sources.

    A skip whose source was the removed block now starts at the block before
    it.  A skip left adding a tensor to itself is removed too.

    Args:
        genome: The genome.
        position: Index of the block to remove.

    Returns:
        The new genome (not repaired).
    """
    features = list(genome.features[:position])
    degenerate = -1
    for j in range(position + 1, len(genome.features)):
        old = genome.features[j]
        if type(old) is SkipBlock and j - 1 - old.span < position:
            if old.span == 1:
                degenerate = j - 1 if degenerate < 0 else degenerate
                old = SkipBlock(1, old.activation)  # placeholder, removed below
            else:
                old = SkipBlock(old.span - 1, old.activation)
        features.append(old)
    child = Genome(tuple(features), genome.head, genome.train, genome.reduce)
    return remove_feature(child, degenerate) if degenerate >= 0 else child


# ---------------------------------------------------------------- clamping


def _nearest(value: int, options: Sequence[int]) -> int:
    if value in options:
        return value
    return min(options, key=lambda o: (abs(o - value), o))


def _clamp(value: Any, bounds: tuple[Any, Any]) -> Any:
    return bounds[0] if value < bounds[0] else bounds[1] if value > bounds[1] else value


def _member(value: str, options: tuple[str, ...]) -> str:
    return value if value in options else options[0]


def _known_fit(block: Any, space: SearchSpace) -> bool:
    """Whether this very block object already came out of a clamp for this resolved space."""
    return block.__dict__.get(FITS_MEMO) is space


def _fits(block: Any, space: SearchSpace) -> Any:
    block.__dict__[FITS_MEMO] = space
    return block


def _clamp_conv(block: ConvBlock, space: SearchSpace) -> ConvBlock:
    if _known_fit(block, space):  # blocks are shared by parent and child: most were clamped before
        return block
    filters = _clamp(block.filters, space.filters)  # type: ignore[arg-type]
    kernel = _nearest(block.kernel, space.kernels)  # type: ignore[arg-type]
    stride = _nearest(block.stride, space.strides)  # type: ignore[arg-type]
    dilation = _nearest(block.dilation, space.dilations)  # type: ignore[arg-type]
    activation = _member(block.activation, space.activations)
    dropout = _clamp(block.dropout, (0.0, space.max_dropout))
    new = (filters, kernel, stride, dilation, activation, dropout)
    if new == (block.filters, block.kernel, block.stride, block.dilation, block.activation, block.dropout):
        return _fits(block, space)
    return _fits(ConvBlock(filters, kernel, activation, block.batch_norm, stride, dilation, dropout), space)


def _clamp_dense(block: DenseBlock, space: SearchSpace) -> DenseBlock:
    if _known_fit(block, space):
        return block
    units = _clamp(block.units, space.dense_units)
    activation = _member(block.activation, space.activations)
    dropout = _clamp(block.dropout, (0.0, space.max_dropout))
    if (units, activation, dropout) == (block.units, block.activation, block.dropout):
        return _fits(block, space)
    return _fits(DenseBlock(units, activation, dropout), space)


def _clamp_train(train: TrainParams, space: SearchSpace) -> TrainParams:
    if _known_fit(train, space):
        return train
    new = {
        "learning_rate": _clamp(train.learning_rate, space.learning_rate),
        "batch_size": _nearest(train.batch_size, space.batch_sizes),
        "optimizer": _member(train.optimizer, space.optimizers),
        "weight_decay": _clamp(train.weight_decay, space.weight_decay),
        "momentum": _clamp(train.momentum, space.momentum),
        "schedule": _member(train.schedule, space.schedules),
        "budget": _clamp(train.budget, space.budget),
    }
    if all(getattr(train, name) == value for name, value in new.items()):
        return _fits(train, space)
    return _fits(replace(train, **new), space)


def default_conv(space: SearchSpace) -> ConvBlock:
    """The convolution repair puts first when a genome has none: smallest everything, batch norm."""
    return ConvBlock(
        filters=space.filters[0],  # type: ignore[index]
        kernel=min(space.kernels),  # type: ignore[arg-type]
        activation=space.activations[0],
        batch_norm=True,
        stride=min(space.strides),  # type: ignore[arg-type]
        dilation=min(space.dilations),  # type: ignore[arg-type]
    )


def _repair_features(blocks: Sequence[FeatureBlock], space: SearchSpace, spec: InputSpec) -> list[FeatureBlock]:
    """Keep the blocks that fit, in order; later skips keep their sources where those survive."""
    channels, spatial = spec.shape[0], spec.shape[1:]
    outputs: list[tuple[int, ...]] = [spec.shape]  # outputs[k + 1]: output of kept block k
    kept: list[FeatureBlock] = []
    last_kept: list[int] = []  # per original block: index in `kept` of the last kept block at or before it
    allow_pool, allow_skip = "pool" in space.block_types, "skip" in space.block_types
    skip_activations = (*space.activations, "none")
    depth = skips = 0
    for j, block in enumerate(blocks):
        keep = False
        if isinstance(block, ConvBlock):
            if depth < space.max_features:
                block = _clamp_conv(block, space)
                stride = block.stride
                spatial = tuple(-(-n // stride) for n in spatial)
                channels = block.filters
                depth += 1
                keep = True
        elif isinstance(block, PoolBlock):
            if allow_pool and depth < space.max_features:
                size = _nearest(block.size, space.pool_sizes)
                smaller = tuple(n // size for n in spatial)
                if min(smaller) >= 1:
                    if size != block.size:
                        block = PoolBlock(block.kind, size)
                    spatial = smaller
                    depth += 1
                    keep = True
        elif allow_skip and skips < space.max_skips:
            old_source = j - 1 - block.span
            source = last_kept[old_source] if old_source >= 0 else -1
            span = len(kept) - 1 - source
            if span >= 1 and skip_strides(outputs[source + 1][1:], spatial) is not None:
                activation = _member(block.activation, skip_activations)
                if span != block.span or activation != block.activation:
                    block = SkipBlock(span, activation)
                skips += 1
                keep = True
        if keep:
            kept.append(block)
            outputs.append((channels, *spatial))
        last_kept.append(len(kept) - 1)
    return kept


def repair(genome: Genome, space: SearchSpace, spec: InputSpec) -> Genome:
    """Make ``genome`` valid without randomness.

    Values are clamped into ``space`` (nearest allowed choice, first allowed
    name); conv/pool blocks beyond ``max_features`` and skips beyond
    ``max_skips`` are dropped, as are pools that would shrink a spatial size
    below 1, skips whose source cannot be mapped onto their shape and blocks
    of types the space does not allow; a genome left with no convolution
    gets :func:`default_conv` first.  A valid genome comes back as the same
    object.

    Args:
        genome: Any genome.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        A genome that passes :func:`menndl.genome.shapes.check`.
    """
    space = resolve_space(space, spec.spatial_rank)
    marker = genome.__dict__.get(_REPAIRED)
    if marker is not None and marker[0] is space and marker[1] is spec:
        return genome  # this very object came out of repair() for this space and input
    fixed = _repaired(genome, space, spec)
    fixed.__dict__[_REPAIRED] = (space, spec)
    return fixed


def known_valid(genome: Genome, space: SearchSpace, spec: InputSpec) -> Genome:
    """Mark ``genome`` as valid for this space and input without checking it: `repair` returns it as it is.

    Only for a genome made from a valid one by a change that keeps it valid (a value drawn inside the
    space for a field no shape depends on: see ``menndl.genome.operators``), where `repair` would walk
    the whole genome to return the same object.  Tests check both agree.
    """
    genome.__dict__[_REPAIRED] = (resolve_space(space, spec.spatial_rank), spec)
    return genome


_REPAIRED = "_repaired_for"  # per-genome memo of (space, spec) it is known valid for; not a dataclass field


def _repaired(genome: Genome, space: SearchSpace, spec: InputSpec) -> Genome:
    features = _repair_features(genome.features, space, spec)
    if not any(type(b) is ConvBlock for b in features):
        features = _repair_features([default_conv(space), *features], space, spec)
    if "dense" in space.block_types:
        head = tuple(_clamp_dense(b, space) for b in genome.head[: space.max_head])
    else:
        head = ()
    reduce: GlobalPoolBlock | None = genome.reduce if "global_pool" in space.block_types else None
    train = _clamp_train(genome.train, space)
    if (
        len(features) == len(genome.features)
        and all(a is b for a, b in zip(features, genome.features))
        and len(head) == len(genome.head)
        and all(a is b for a, b in zip(head, genome.head))
        and reduce is genome.reduce
        and train is genome.train
    ):
        return genome
    return Genome(tuple(features), head, train, reduce)
