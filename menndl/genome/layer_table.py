"""An architecture as a layer table (layer, output shape, parameters), without torch."""

from __future__ import annotations

from menndl.genome.genome import ConvBlock, DenseBlock, Genome, PoolBlock, SkipBlock, UpBlock
from menndl.genome.shapes import Layer, walk
from menndl.genome.space import InputSpec


def _axes(value: int, rank: int) -> str:
    return "x".join([str(value)] * rank)


def describe_layer(layer: Layer, rank: int) -> str:
    """A short description of one layer, e.g. ``conv 3x3 /2, 32 filters, batch norm, relu``.

    Args:
        layer: A layer from :func:`menndl.genome.shapes.walk`.
        rank: Spatial rank of the input.

    Returns:
        The description.
    """
    block = layer.block
    if layer.part == "classifier":
        return "conv 1x1 (classifier, per pixel)" if len(layer.shape) > 1 else "linear (classifier)"
    if layer.part == "reduce":
        return "flatten" if block is None else f"global {block.kind} pool"
    if isinstance(block, ConvBlock):
        parts = [f"conv {_axes(block.kernel, rank)}"]
        if block.stride > 1:
            parts[0] += f" /{block.stride}"
        if block.dilation > 1:
            parts[0] += f" dilation {block.dilation}"
        parts.append(f"{block.filters} filters")
        if block.batch_norm:
            parts.append("batch norm")
        if block.activation != "none":
            parts.append(block.activation)
        if block.dropout > 0:
            parts.append(f"dropout {block.dropout:g}")
        return ", ".join(parts)
    if isinstance(block, PoolBlock):
        return f"{block.kind} pool {_axes(block.size, rank)}"
    if isinstance(block, SkipBlock):
        source = "input" if layer.source < 0 else f"#{layer.source}"
        text = f"skip: + {source}"
        if layer.projection == "conv":
            text += " (1x1 conv projection)"
        elif layer.projection == "pool":
            text += " (avg pool)"
        return text + ("" if block.activation == "none" else f", {block.activation}")
    if isinstance(block, UpBlock):
        how = "transposed conv" if block.mode == "transpose" else "linear resize"
        join = {"concat": f"concat #{layer.source}'s input", "add": f"+ #{layer.source}'s input",
                "none": "no skip"}[block.merge]  # fmt: skip
        if layer.projection == "conv":
            join += " (1x1 conv projection)"
        convs = f"{block.convs} x conv {_axes(block.kernel, rank)}, {block.filters} filters"
        extras = [part for part in ("batch norm" if block.batch_norm else "",
                                    block.activation if block.activation != "none" else "") if part]  # fmt: skip
        return ", ".join([f"up: {how}", join, convs, *extras])
    assert isinstance(block, DenseBlock)
    text = f"linear, {block.activation}" if block.activation != "none" else "linear"
    return text + (f", dropout {block.dropout:g}" if block.dropout > 0 else "")


def format_layer_table(genome: Genome, spec: InputSpec) -> str:
    """The decoded network as a text table: one row per layer, then the totals.

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        Lines ``#  layer  output shape  parameters`` (the input first), a
        total line with parameters and forward FLOPs per sample.

    Raises:
        InvalidGenome: If the genome does not fit ``spec``.
    """
    rank = spec.spatial_rank
    rows = [("", "input", _shape(spec.shape), "")]
    total_params = total_flops = 0
    for number, layer in enumerate(walk(genome, spec)):
        label = str(number) if layer.part == "features" else ""
        rows.append((label, describe_layer(layer, rank), _shape(layer.shape), f"{layer.params:,}"))
        total_params += layer.params
        total_flops += layer.flops
    header = ("#", "layer", "output shape", "parameters")
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(4)]
    lines = [_row(header, widths), _row(tuple("-" * w for w in widths), widths)]
    lines += [_row(row, widths) for row in rows]
    lines.append(f"total: {total_params:,} parameters, {total_flops:,} FLOPs per sample (forward)")
    return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    number, layer, shape, params = cells
    return f"{number:>{widths[0]}}  {layer:<{widths[1]}}  {shape:<{widths[2]}}  {params:>{widths[3]}}".rstrip()
