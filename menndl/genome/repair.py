"""Repair: turn any genome into a valid one without randomness; edits that keep skips pointing right.

Skip spans are relative (see :class:`~menndl.genome.genome.SkipBlock`), so
inserting or removing a feature block between a skip and its source would
silently re-wire it.  :func:`insert_feature` and :func:`remove_feature`
adjust the spans so every skip keeps its source; :func:`repair` does the
same for every block it has to drop.  Values are clamped into the bounds
each field's row of the field table (:mod:`menndl.genome.fields`) gets from
the space (:func:`clamp`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from menndl.genome.fields import CONV_BATCH_NORM, Choice, Field, Names, Range, Rate
from menndl.genome.genome import (
    FITS_MEMO,
    ConvBlock,
    FeatureBlock,
    Genome,
    GlobalPoolBlock,
    PoolBlock,
    SkipBlock,
    UpBlock,
    declared_rows,
    field_rows,
)
from menndl.genome.shapes import downsamplings, skip_strides
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
    return Genome(tuple(features), genome.head, genome.train, genome.reduce, genome.decoder)


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
    child = Genome(tuple(features), genome.head, genome.train, genome.reduce, genome.decoder)
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


def clamp(field: Field, value: Any, space: SearchSpace) -> Any:
    """``value`` moved into the bounds ``field`` gets from a resolved ``space``, without randomness.

    A range clamps to its nearer end, a number choice takes the nearest
    allowed number (the smaller on a tie), a name choice keeps an allowed
    name or takes the first; fields without a space key come back as they are
    (a skip's span is :func:`repair`'s structural business).

    Args:
        field: The value's row of the field table.
        value: A value the field's block accepts.
        space: The search space, resolved for the data's rank.

    Returns:
        The value, or the allowed value nearest to it.
    """
    kind = field.kind
    if isinstance(kind, (Range, Rate)):
        return _clamp(value, kind.bounds(space))
    if isinstance(kind, Choice):
        options = kind.options(space)
        return _member(value, options) if isinstance(kind.values, Names) else _nearest(value, options)
    return value


def _known_fit(block: Any, space: SearchSpace) -> bool:
    """Whether this very block object already came out of a clamp for this resolved space."""
    return block.__dict__.get(FITS_MEMO) is space


def _fits(block: Any, space: SearchSpace) -> Any:
    block.__dict__[FITS_MEMO] = space
    return block


def _clamped(block: Any, space: SearchSpace) -> Any:
    """``block`` with every field clamped into ``space`` (:func:`clamp`); the same object if all fit."""
    if _known_fit(block, space):  # blocks are shared by parent and child: most were clamped before
        return block
    values = block.__dict__
    changed = {}
    for field in field_rows(type(block)):
        old = values[field.name]
        new = clamp(field, old, space)
        if new != old:
            changed[field.name] = new
    return _fits(replace(block, **changed) if changed else block, space)


def default_conv(space: SearchSpace) -> ConvBlock:
    """The convolution repair puts first when a genome has none: smallest everything, batch norm.

    Args:
        space: The search space, resolved for the data's rank.

    Returns:
        Every field at its kind's ``least`` value in the field table (the low
        bound, the smallest number, the first name, no dropout), and batch norm.
    """
    values: dict[str, Any] = {field.name: field.kind.least(space) for field in declared_rows(ConvBlock)}
    values[CONV_BATCH_NORM.name] = True
    return ConvBlock(**values)


def _repair_features(blocks: Sequence[FeatureBlock], space: SearchSpace, spec: InputSpec) -> list[FeatureBlock]:
    """Keep the blocks that fit, in order; later skips keep their sources where those survive."""
    channels, spatial = spec.shape[0], spec.shape[1:]
    outputs: list[tuple[int, ...]] = [spec.shape]  # outputs[k + 1]: output of kept block k
    kept: list[FeatureBlock] = []
    last_kept: list[int] = []  # per original block: index in `kept` of the last kept block at or before it
    allow_pool, allow_skip = "pool" in space.block_types, "skip" in space.block_types
    depth = skips = 0
    for j, block in enumerate(blocks):
        keep = False
        if isinstance(block, ConvBlock):
            if depth < space.max_features:
                block = _clamped(block, space)
                stride = block.stride
                spatial = tuple(-(-n // stride) for n in spatial)
                channels = block.filters
                depth += 1
                keep = True
        elif isinstance(block, PoolBlock):
            if allow_pool and depth < space.max_features:
                fitted = _clamped(block, space)
                smaller = tuple(n // fitted.size for n in spatial)
                if min(smaller) >= 1:  # else a pool of this size does not fit here: dropped
                    block = fitted
                    spatial = smaller
                    depth += 1
                    keep = True
        elif allow_skip and skips < space.max_skips:
            old_source = j - 1 - block.span
            source = last_kept[old_source] if old_source >= 0 else -1
            span = len(kept) - 1 - source
            if span >= 1 and skip_strides(outputs[source + 1][1:], spatial) is not None:
                block = _clamped(block, space)
                if span != block.span:  # re-spanned onto the kept blocks (SKIP_SPAN: structural)
                    block = replace(block, span=span)
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
    gets :func:`default_conv` first.  A segmentation genome loses its reduce
    and head and keeps the first up blocks of its decoder, one per
    downsampling of its encoder at most (and ``max_decoder``); any other
    genome loses its decoder.  A valid genome comes back as the same
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
    head: tuple[Any, ...] = ()
    reduce: GlobalPoolBlock | None = None
    decoder: tuple[UpBlock, ...] = ()
    if spec.task == "segmentation":  # no reduce, no head; an up block per downsampling at most
        if "up" in space.block_types:
            limit = min(space.max_decoder, downsamplings(features))
            decoder = tuple(_clamped(b, space) for b in genome.decoder[:limit])
    else:
        if "dense" in space.block_types:
            head = tuple(_clamped(b, space) for b in genome.head[: space.max_head])
        if genome.reduce is not None and "global_pool" in space.block_types:
            reduce = _clamped(genome.reduce, space)
    train = _clamped(genome.train, space)
    if (
        _same(features, genome.features)
        and _same(head, genome.head)
        and _same(decoder, genome.decoder)
        and reduce is genome.reduce
        and train is genome.train
    ):
        return genome
    return Genome(tuple(features), head, train, reduce, decoder)


def _same(blocks: Sequence[Any], old: Sequence[Any]) -> bool:
    """Whether repair kept every block of a part as the very same object."""
    return len(blocks) == len(old) and all(a is b for a, b in zip(blocks, old))
