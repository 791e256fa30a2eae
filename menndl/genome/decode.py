"""Turn a genome into a torch module.  The only genome module that imports torch."""

from __future__ import annotations

from torch import nn

from menndl.genome.genome import ConvBlock, Genome
from menndl.genome.shapes import layer_shapes
from menndl.genome.space import InputSpec

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {
    ("max", 1): nn.MaxPool1d,
    ("max", 2): nn.MaxPool2d,
    ("max", 3): nn.MaxPool3d,
    ("avg", 1): nn.AvgPool1d,
    ("avg", 2): nn.AvgPool2d,
    ("avg", 3): nn.AvgPool3d,
}
_ACTIVATION = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def build_model(genome: Genome, spec: InputSpec) -> nn.Module:
    """Build the network a genome describes.

    Feature blocks ('same'-padded stride-1 convolutions with optional batch
    norm and activation; pools with kernel = stride = size), then Flatten,
    then per dense block Linear, activation and Dropout (if dropout > 0),
    then a final Linear to ``spec.num_classes``.  Layer types follow
    ``spec.spatial_rank`` (1-D, 2-D or 3-D).

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        An ``nn.Sequential`` mapping ``(batch, *spec.shape)`` to
        ``(batch, num_classes)``.

    Raises:
        InvalidGenome: If a pool shrinks a spatial size below 1.
    """
    shapes = layer_shapes(genome, spec)
    rank = spec.spatial_rank
    layers: list[nn.Module] = []
    channels = spec.shape[0]
    for block in genome.features:
        if isinstance(block, ConvBlock):
            conv = _CONV[rank](
                channels, block.filters, block.kernel, padding=block.kernel // 2, bias=not block.batch_norm
            )
            layers.append(conv)
            if block.batch_norm:
                layers.append(_NORM[rank](block.filters))
            layers.append(_ACTIVATION[block.activation]())
            channels = block.filters
        else:
            layers.append(_POOL[(block.kind, rank)](block.size))
    layers.append(nn.Flatten())
    flat = shapes[len(genome.features) - 1] if genome.features else spec.shape
    width = 1
    for n in flat:
        width *= n
    for dense in genome.head:
        layers.append(nn.Linear(width, dense.units))
        layers.append(_ACTIVATION[dense.activation]())
        if dense.dropout > 0:
            layers.append(nn.Dropout(dense.dropout))
        width = dense.units
    layers.append(nn.Linear(width, spec.num_classes))
    return nn.Sequential(*layers)
