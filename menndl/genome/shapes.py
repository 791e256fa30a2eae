"""Shape tracking, size/cost estimates and validity checks of genomes.

Plain Python: no torch.  Shapes follow the decoder in
:mod:`menndl.genome.decode`: a convolution maps a spatial size ``n`` to
``ceil(n / stride)``, a pooling block to ``n // size``; a skip connection
keeps the current shape and maps its source onto it (see
:func:`skip_strides`); a segmentation decoder's up block brings the tensor
back to the size the input of the encoder's matching downsampling block had
(see :func:`downsampling_factor`).  Parameter counts are exact; FLOPs are
counted the way ``torch.utils.flop_counter`` counts them: 2 per multiply-add of convolutions
(a transposed one counted over its input), and linear layers, nothing for biases,
normalisation, activations, pooling, resizing, padding or additions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

from menndl.genome.fields import Choice, Field, Range, Rate
from menndl.genome.genome import ConvBlock, FeatureBlock, Genome, PoolBlock, UpBlock, field_rows
from menndl.genome.space import InputSpec, InvalidGenome, SearchSpace, resolve_space

# ---------------------------------------------------------------- shapes


def skip_strides(source: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...] | None:
    """Per-axis stride that maps a skip's source spatial sizes onto the target's.

    A strided 1x1 convolution or a pooling with kernel = stride = ``s`` in
    ``ceil_mode`` maps ``n`` to ``ceil(n / s)``; the smallest fitting ``s``
    per axis is returned.

    Args:
        source: Spatial sizes of the skip's source.
        target: Spatial sizes of the tensor it is added to.

    Returns:
        The strides, or None if some axis cannot be mapped exactly.
    """
    strides = []
    for n, t in zip(source, target):
        if t == n:
            strides.append(1)
            continue
        if t > n:
            return None
        s = -(-n // t)
        if -(-n // s) != t:
            return None
        strides.append(s)
    return tuple(strides)


def downsampling_factor(block: FeatureBlock) -> int:
    """How much a feature block shrinks each spatial size: a pool's size, a convolution's stride, else 1.

    A segmentation decoder has one up block per block whose factor is above 1, at most.
    """
    if type(block) is PoolBlock:
        return block.size
    if type(block) is ConvBlock:
        return block.stride
    return 1


def downsamplings(features: tuple[FeatureBlock, ...] | list[FeatureBlock]) -> int:
    """The number of feature blocks that shrink the spatial sizes (the most up blocks a decoder can pair)."""
    return sum(1 for block in features if downsampling_factor(block) > 1)


class Layer(NamedTuple):
    """One row of the decoded network: a genome block and what it produces."""

    part: str  # "features", "reduce", "head", "decoder" or "classifier"
    position: int  # index within its part
    block: Any  # the genome block; None for flatten and the classifier
    shape: tuple[int, ...]  # output shape without the batch axis
    params: int
    flops: int  # forward FLOPs per sample
    source: int  # skip: feature index of the source (-1: network input); up: the downsampling block it undoes
    projection: str  # skip: "", "conv" (1x1 projection) or "pool"; up: "conv" when an added skip is projected


def walk(genome: Genome, spec: InputSpec) -> Iterator[Layer]:
    """Yield every layer of the decoded network with its shape, parameters and FLOPs.

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Yields:
        One :class:`Layer` per feature block, one for the reduction (global
        pooling or flatten), one per dense block, one for the classifier; for
        segmentation, one per feature block, one per up block and the classifier
        (a 1x1 convolution, its shape the input's spatial size).

    Raises:
        InvalidGenome: A pool shrinks a spatial size below 1, a skip reaches
            before the input or cannot be mapped onto the current shape, or an
            up block has no downsampling left to undo.
    """
    rank = spec.spatial_rank
    channels, spatial = spec.shape[0], spec.shape[1:]
    outputs: list[tuple[int, ...]] = [spec.shape]  # outputs[j + 1]: output of feature block j
    levels: Levels = []
    for i, block in enumerate(genome.features):
        factor = downsampling_factor(block)
        if factor > 1:
            levels.append((i, (channels, *spatial), factor))
        params = flops = 0
        source, projection = -1, ""
        if isinstance(block, ConvBlock):
            stride = block.stride
            spatial = tuple(-(-n // stride) for n in spatial)
            weights = channels * block.filters * block.kernel**rank
            params = weights + (2 * block.filters if block.batch_norm else block.filters)
            flops = 2 * weights * math.prod(spatial)
            channels = block.filters
        elif isinstance(block, PoolBlock):
            smaller = tuple(n // block.size for n in spatial)
            if min(smaller) < 1:
                raise InvalidGenome(
                    f"genome.features[{i}]: pool of size {block.size} shrinks spatial shape {spatial} to {smaller}"
                )
            spatial = smaller
        else:
            source = i - 1 - block.span
            if source < -1:
                raise InvalidGenome(
                    f"genome.features[{i}]: skip of span {block.span} reaches before the input "
                    f"(at most {i} blocks precede it)"
                )
            src = outputs[source + 1]
            strides = skip_strides(src[1:], spatial)
            if strides is None:
                raise InvalidGenome(
                    f"genome.features[{i}]: skip cannot map shape {src} of block {source} onto {(channels, *spatial)}"
                )
            if src[0] != channels:
                projection = "conv"
                params = src[0] * channels
                flops = 2 * params * math.prod(spatial)
            elif any(s != 1 for s in strides):
                projection = "pool"
        shape = (channels, *spatial)
        outputs.append(shape)
        yield Layer("features", i, block, shape, params, flops, source, projection)
    if spec.task == "segmentation":
        yield from _decoder_layers(genome.decoder, spec, levels, (channels, *spatial))
        return
    width = channels if genome.reduce is not None else channels * math.prod(spatial)
    yield Layer("reduce", 0, genome.reduce, (width,), 0, 0, -1, "")
    for i, dense in enumerate(genome.head):
        weights = width * dense.units
        yield Layer("head", i, dense, (dense.units,), weights + dense.units, 2 * weights, -1, "")
        width = dense.units
    classes = spec.num_classes
    yield Layer("classifier", 0, None, (classes,), width * classes + classes, 2 * width * classes, -1, "")


Levels = list[tuple[int, tuple[int, ...], int]]  # (feature index, its input shape, factor) per downsampling


def _decoder_layers(decoder: tuple[UpBlock, ...], spec: InputSpec, levels: Levels, shape: tuple[int, ...]
                    ) -> Iterator[Layer]:  # fmt: skip
    """The up blocks (each undoing the last downsampling left in ``levels``) and the 1x1 classifier."""
    rank = spec.spatial_rank
    channels, spatial = shape[0], shape[1:]
    for k, up in enumerate(decoder):
        if not levels:
            raise InvalidGenome(
                f"genome.decoder[{k}]: no downsampling left to undo (the encoder has {k}; "
                "a decoder has at most one up block per pool or strided convolution)"
            )
        source, (skip_channels, *target), factor = levels.pop()
        params = flops = 0
        projection = ""
        if up.mode == "transpose":  # kernel = stride = factor, with a bias; counted over its input
            weights = channels * up.filters * factor**rank
            params += weights + up.filters
            flops += 2 * weights * math.prod(spatial)
            channels = up.filters
        pixels = math.prod(target)
        if up.merge == "concat":
            channels += skip_channels
        elif up.merge == "add" and skip_channels != channels:
            projection = "conv"
            params += skip_channels * channels
            flops += 2 * skip_channels * channels * pixels
        for _ in range(up.convs):
            weights = channels * up.filters * up.kernel**rank
            params += weights + (2 * up.filters if up.batch_norm else up.filters)
            flops += 2 * weights * pixels
            channels = up.filters
        spatial = tuple(target)
        yield Layer("decoder", k, up, (channels, *spatial), params, flops, source, projection)
    classes = spec.num_classes
    weights = channels * classes
    yield Layer("classifier", 0, None, (classes, *spec.shape[1:]), weights + classes, 2 * weights * math.prod(spatial),
                -1, "")  # fmt: skip


def layer_shapes(genome: Genome, spec: InputSpec) -> list[tuple[int, ...]]:
    """Output shape after every layer of the decoded network.

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        ``(C, *spatial)`` after each feature block, ``(width,)`` after the
        reduction (global pooling or flatten), ``(units,)`` after each dense
        block, then ``(num_classes,)``.

    Raises:
        InvalidGenome: As :func:`walk`.
    """
    return [layer.shape for layer in walk(genome, spec)]


def count_params(genome: Genome, spec: InputSpec) -> int:
    """Exact number of trainable parameters of ``decode.build_model``.

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        Parameter count (conv bias only without batch norm; batch norm has
        ``2 * C``; a skip's 1x1 projection has no bias).

    Raises:
        InvalidGenome: If the genome does not fit ``spec``.
    """
    return sum(layer.params for layer in walk(genome, spec))


def count_flops(genome: Genome, spec: InputSpec) -> int:
    """Forward FLOPs per sample of conv and linear layers (2 per multiply-add).

    Counted as ``torch.utils.flop_counter.FlopCounterMode`` does.

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        The FLOP count; biases, pooling, normalisation, additions and
        activations are ignored.

    Raises:
        InvalidGenome: If the genome does not fit ``spec``.
    """
    return sum(layer.flops for layer in walk(genome, spec))


# ---------------------------------------------------------------- validity


def _outside(where: str, value: Any, allowed: str) -> InvalidGenome:
    return InvalidGenome(f"{where}: {value!r} is outside the search space ({allowed})")


def _check_range(where: str, value: float, bounds: tuple[Any, Any], field: str) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise _outside(where, value, f"space.{field} = [{bounds[0]}, {bounds[1]}]")


def _check_member(where: str, value: Any, options: tuple[Any, ...], field: str) -> None:
    if value not in options:
        raise _outside(where, value, f"space.{field} = {list(options)}")


def _check_field(where: str, field: Field, value: Any, space: SearchSpace) -> None:
    """Raise :class:`InvalidGenome` if ``value`` lies outside the bounds ``field`` gets from a resolved ``space``.

    Fields without a space key (a pool's kind, batch norm, a skip's span) pass:
    the block's constructor checked them, and :func:`walk` checks spans.

    Args:
        where: The value's place in the genome, e.g. ``genome.features[0].kernel``.
        field: Its row of the field table.
        value: The value.
        space: The search space, resolved for the data's rank.

    Raises:
        InvalidGenome: The value is outside the range or not among the choices.
    """
    kind = field.kind
    if isinstance(kind, (Range, Rate)):
        _check_range(where, value, kind.bounds(space), kind.key)
    elif isinstance(kind, Choice):
        _check_member(where, value, kind.options(space), kind.key)


def _check_fields(where: str, block: Any, space: SearchSpace) -> None:
    for field in field_rows(type(block)):
        _check_field(f"{where}.{field.name}", field, getattr(block, field.name), space)


def _check_type(where: str, name: str, space: SearchSpace) -> None:
    if name not in space.block_types:
        raise InvalidGenome(f"{where}: block type {name!r} is not in space.block_types = {list(space.block_types)}")


def _check_features(genome: Genome, space: SearchSpace) -> None:
    convs = pools = skips = 0
    for i, block in enumerate(genome.features):
        where = f"genome.features[{i}]"
        if isinstance(block, ConvBlock):
            convs += 1
        elif isinstance(block, PoolBlock):
            pools += 1
            _check_type(where, "pool", space)
        else:
            skips += 1
            _check_type(where, "skip", space)
        _check_fields(where, block, space)
    if convs == 0:
        raise InvalidGenome("genome.features: at least one conv block is required")
    if convs + pools > space.max_features:
        raise InvalidGenome(
            f"genome.features: {convs + pools} conv/pool blocks, space.max_features is {space.max_features}"
        )
    if skips > space.max_skips:
        raise InvalidGenome(f"genome.features: {skips} skip blocks, space.max_skips is {space.max_skips}")


def _check_segmentation(genome: Genome, space: SearchSpace) -> None:
    if genome.reduce is not None or genome.head:
        raise InvalidGenome("genome: a segmentation network has no reduce and no head (its decoder keeps the pixels)")
    if genome.decoder:
        _check_type("genome.decoder", "up", space)
    if len(genome.decoder) > space.max_decoder:
        raise InvalidGenome(f"genome.decoder: {len(genome.decoder)} blocks, space.max_decoder is {space.max_decoder}")
    for i, up in enumerate(genome.decoder):
        _check_fields(f"genome.decoder[{i}]", up, space)


def check(genome: Genome, space: SearchSpace, spec: InputSpec) -> None:
    """Raise :class:`InvalidGenome` unless ``genome`` fits ``space`` and ``spec``.

    Each field's bounds come from its row of the field table (:mod:`menndl.genome.fields`).

    Args:
        genome: The genome.
        space: The search space.
        spec: Input shape and class count.

    Raises:
        InvalidGenome: No conv block, too many blocks, a block type or value
            outside the space, a spatial size shrunk below 1, a skip whose
            source does not exist or cannot be mapped, a decoder outside a
            segmentation network (or a reduce or head inside one), or more up
            blocks than downsamplings.
    """
    space = resolve_space(space, spec.spatial_rank)
    _check_features(genome, space)
    if spec.task == "segmentation":
        _check_segmentation(genome, space)
    elif genome.decoder:
        raise InvalidGenome(f"genome.decoder: a {spec.task} network has no decoder (only segmentation does)")
    if genome.reduce is not None:
        _check_type("genome.reduce", "global_pool", space)
        _check_fields("genome.reduce", genome.reduce, space)
    if genome.head:
        _check_type("genome.head", "dense", space)
    if len(genome.head) > space.max_head:
        raise InvalidGenome(f"genome.head: {len(genome.head)} blocks, space.max_head is {space.max_head}")
    for i, dense in enumerate(genome.head):
        _check_fields(f"genome.head[{i}]", dense, space)
    _check_fields("genome.train", genome.train, space)
    for _ in walk(genome, spec):
        pass


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
