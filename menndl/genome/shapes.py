"""Shape tracking, size/cost estimates and validity checks of genomes.

Plain Python: no torch.  Shapes follow the decoder in
:mod:`menndl.genome.decode`: convolutions use 'same' padding and stride 1,
pooling uses kernel = stride = size, so a spatial size ``n`` becomes
``n // size``.
"""

from __future__ import annotations

import math
from typing import Any

from menndl.genome.genome import ConvBlock, Genome
from menndl.genome.space import InputSpec, InvalidGenome, SearchSpace

# ---------------------------------------------------------------- shapes


def layer_shapes(genome: Genome, spec: InputSpec) -> list[tuple[int, ...]]:
    """Output shape after every layer block of the decoded network.

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        ``(C, *spatial)`` after each feature block, ``(units,)`` after each
        dense block, then ``(num_classes,)``.

    Raises:
        InvalidGenome: If a pooling block shrinks a spatial size below 1.
    """
    channels, spatial = spec.shape[0], spec.shape[1:]
    shapes: list[tuple[int, ...]] = []
    for i, block in enumerate(genome.features):
        if isinstance(block, ConvBlock):
            channels = block.filters
        else:
            smaller = tuple(n // block.size for n in spatial)
            if min(smaller) < 1:
                raise InvalidGenome(
                    f"genome.features[{i}]: pool of size {block.size} shrinks spatial shape "
                    f"{spatial} to {smaller}"
                )
            spatial = smaller
        shapes.append((channels, *spatial))
    shapes.extend((block.units,) for block in genome.head)
    shapes.append((spec.num_classes,))
    return shapes


def _flat_size(genome: Genome, spec: InputSpec, shapes: list[tuple[int, ...]]) -> int:
    last = shapes[len(genome.features) - 1] if genome.features else spec.shape
    return math.prod(last)


def count_params(genome: Genome, spec: InputSpec) -> int:
    """Exact number of trainable parameters of ``decode.build_model``.

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        Parameter count (conv bias only without batch norm; batch norm has
        ``2 * C``).

    Raises:
        InvalidGenome: If the genome does not fit ``spec``.
    """
    shapes = layer_shapes(genome, spec)
    total, channels = 0, spec.shape[0]
    for block in genome.features:
        if isinstance(block, ConvBlock):
            total += channels * block.filters * block.kernel ** spec.spatial_rank
            total += 2 * block.filters if block.batch_norm else block.filters
            channels = block.filters
    width = _flat_size(genome, spec, shapes)
    for units in [b.units for b in genome.head] + [spec.num_classes]:
        total += width * units + units
        width = units
    return total


def count_flops(genome: Genome, spec: InputSpec) -> int:
    """Forward FLOPs per sample of conv and linear layers (2 per multiply-add).

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        The FLOP count; pooling, normalisation and activations are ignored.

    Raises:
        InvalidGenome: If the genome does not fit ``spec``.
    """
    shapes = layer_shapes(genome, spec)
    total, channels = 0, spec.shape[0]
    for block, shape in zip(genome.features, shapes):
        if isinstance(block, ConvBlock):
            total += 2 * channels * block.kernel ** spec.spatial_rank * math.prod(shape)
            channels = block.filters
    width = _flat_size(genome, spec, shapes)
    for units in [b.units for b in genome.head] + [spec.num_classes]:
        total += 2 * width * units
        width = units
    return total


# ---------------------------------------------------------------- validity


def _outside(where: str, value: Any, allowed: str) -> InvalidGenome:
    return InvalidGenome(f"{where}: {value!r} is outside the search space ({allowed})")


def _check_range(where: str, value: float, bounds: tuple[Any, Any], field: str) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise _outside(where, value, f"space.{field} = [{bounds[0]}, {bounds[1]}]")


def _check_member(where: str, value: Any, options: tuple[Any, ...], field: str) -> None:
    if value not in options:
        raise _outside(where, value, f"space.{field} = {list(options)}")


def check(genome: Genome, space: SearchSpace, spec: InputSpec) -> None:
    """Raise :class:`InvalidGenome` unless ``genome`` fits ``space`` and ``spec``.

    Args:
        genome: The genome.
        space: The search space.
        spec: Input shape and class count.

    Raises:
        InvalidGenome: No feature blocks, too many blocks, a value outside the
            space, or a spatial size shrunk below 1.
    """
    if not genome.features:
        raise InvalidGenome("genome.features: at least one feature block is required")
    if len(genome.features) > space.max_features:
        raise InvalidGenome(
            f"genome.features: {len(genome.features)} blocks, space.max_features is {space.max_features}"
        )
    if len(genome.head) > space.max_head:
        raise InvalidGenome(f"genome.head: {len(genome.head)} blocks, space.max_head is {space.max_head}")
    for i, block in enumerate(genome.features):
        where = f"genome.features[{i}]"
        if isinstance(block, ConvBlock):
            _check_range(f"{where}.filters", block.filters, space.filters, "filters")
            _check_member(f"{where}.kernel", block.kernel, space.kernels, "kernels")
            _check_member(f"{where}.activation", block.activation, space.activations, "activations")
        else:
            _check_member(f"{where}.size", block.size, space.pool_sizes, "pool_sizes")
    for i, dense in enumerate(genome.head):
        where = f"genome.head[{i}]"
        _check_range(f"{where}.units", dense.units, space.dense_units, "dense_units")
        _check_member(f"{where}.activation", dense.activation, space.activations, "activations")
        _check_range(f"{where}.dropout", dense.dropout, (0.0, space.max_dropout), "max_dropout")
    t = genome.train
    _check_range("genome.train.learning_rate", t.learning_rate, space.learning_rate, "learning_rate")
    _check_member("genome.train.batch_size", t.batch_size, space.batch_sizes, "batch_sizes")
    _check_member("genome.train.optimizer", t.optimizer, space.optimizers, "optimizers")
    _check_range("genome.train.weight_decay", t.weight_decay, space.weight_decay, "weight_decay")
    layer_shapes(genome, spec)


def is_valid(genome: Genome, space: SearchSpace, spec: InputSpec) -> bool:
    """Return whether :func:`check` passes.

    Args:
        genome: The genome.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        True if the genome is valid.
    """
    try:
        check(genome, space, spec)
    except InvalidGenome:
        return False
    return True
