"""A genome as a text table of layers (minimal version by LIBRARY; GENOME's version replaces it)."""

from __future__ import annotations

import math

from menndl.genome.genome import ConvBlock, Genome
from menndl.genome.shapes import count_params, layer_shapes
from menndl.genome.space import InputSpec


def format_layer_table(genome: Genome, spec: InputSpec) -> str:
    """Layer, output shape and parameters of each block of the decoded network, and a total line."""
    shapes = layer_shapes(genome, spec)
    rows: list[tuple[str, str, int]] = []
    channels = spec.shape[0]
    for block, shape in zip(genome.features, shapes):
        if isinstance(block, ConvBlock):
            weights = channels * block.filters * block.kernel ** (len(spec.shape) - 1)
            params = weights + (2 * block.filters if block.batch_norm else block.filters)
            name = f"conv {block.filters}x{block.kernel} {block.activation}" + (" +bn" if block.batch_norm else "")
            channels = block.filters
        else:
            params, name = 0, f"{block.kind}pool {block.size}"
        rows.append((name, "x".join(map(str, shape)), params))
    width = math.prod(shapes[len(genome.features) - 1] if genome.features else spec.shape)
    for dense, shape in zip(genome.head, shapes[len(genome.features) :]):
        rows.append(
            (
                f"dense {dense.units} {dense.activation} drop {dense.dropout:g}",
                str(shape[0]),
                width * dense.units + dense.units,
            )
        )
        width = dense.units
    rows.append(("classifier", str(spec.num_classes), width * spec.num_classes + spec.num_classes))
    lines = [f"{'layer':<34} {'output':>14} {'params':>10}"]
    lines += [f"{name:<34} {shape:>14} {params:>10,}" for name, shape, params in rows]
    lines.append(f"{'total':<34} {'':>14} {count_params(genome, spec):>10,}")
    return "\n".join(lines)
