"""Turn a genome into a torch module.  The only genome module that imports torch.

This file is self-contained on purpose: at module level it imports only
torch and the standard library, and :func:`build_model_from_dict` works from
``Genome.to_dict()`` output, so an exported model script can inline this
source and rebuild the network without menndl installed.  The shapes it
produces are the ones :mod:`menndl.genome.shapes` predicts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from menndl.genome.genome import Genome
    from menndl.genome.space import InputSpec

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}  # interpolate's mode per spatial rank
_ACTIVATION = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "none": nn.Identity}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATION:
        raise ValueError(f"unknown activation {name!r}")
    return _ACTIVATION[name]()


def _conv_unit(block: dict[str, Any], in_channels: int, rank: int) -> nn.Sequential:
    """Conv (padding ``dilation * (kernel - 1) // 2``), batch norm, activation, dropout."""
    kernel, dilation = block["kernel"], block["dilation"]
    layers: list[nn.Module] = [
        _CONV[rank](
            in_channels,
            block["filters"],
            kernel,
            stride=block["stride"],
            padding=dilation * (kernel - 1) // 2,
            dilation=dilation,
            bias=not block["batch_norm"],
        )
    ]
    if block["batch_norm"]:
        layers.append(_NORM[rank](block["filters"]))
    layers.append(_activation(block["activation"]))
    if block["dropout"] > 0:
        layers.append(nn.Dropout(block["dropout"]))
    return nn.Sequential(*layers)


class Skip(nn.Module):
    """Adds the output of an earlier block (through ``project``) to the current tensor."""

    def __init__(self, span: int, project: nn.Module, activation: nn.Module) -> None:
        super().__init__()
        self.span = span
        self.project = project
        self.activation = activation

    def forward(self, current: torch.Tensor, source: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.activation(current + self.project(source))


def _skip_unit(block: dict[str, Any], source: tuple[int, ...], target: tuple[int, ...], rank: int) -> Skip:
    """The skip connection; 1x1 (strided) conv if channels differ, else pooling if sizes differ."""
    strides: list[int] = []
    for n, t in zip(source[1:], target[1:]):
        s = 1 if n == t else -(-n // t)
        if t > n or -(-n // s) != t:
            raise ValueError(f"skip cannot map shape {source} onto {target}")
        strides.append(s)
    project: nn.Module
    if source[0] != target[0]:
        project = _CONV[rank](source[0], target[0], 1, stride=tuple(strides), bias=False)  # type: ignore[arg-type]
    elif any(s != 1 for s in strides):
        project = _AVG_POOL[rank](tuple(strides), stride=tuple(strides), ceil_mode=True)
    else:
        project = nn.Identity()
    return Skip(block["span"], project, _activation(block["activation"]))


class GlobalPool(nn.Module):
    """Max or mean over every spatial axis: ``(N, C, *spatial) -> (N, C)``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        flat = x.flatten(2)
        return flat.amax(dim=2) if self.kind == "max" else flat.mean(dim=2)


class GenomeNet(nn.Module):
    """The decoded network: ``features`` (with skips), ``reduce``, ``head`` (dense blocks and classifier)."""

    def __init__(self, features: list[nn.Module], reduce: nn.Module, head: nn.Sequential) -> None:
        super().__init__()
        self.features = nn.ModuleList(features)
        self.reduce = reduce
        self.head = head
        spans = [m.span for m in features if isinstance(m, Skip)]
        positions = [i for i, m in enumerate(features) if isinstance(m, Skip)]
        # outputs[k] is the input of feature block k (outputs[0]: the network input); keep only sources
        self._keep = frozenset(i - span for i, span in zip(positions, spans))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        saved: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            if i in self._keep:
                saved[i] = x
            if isinstance(layer, Skip):
                x = layer(x, saved[i - layer.span])
            else:
                x = layer(x)
        return self.head(self.reduce(x))


class Resize(nn.Module):
    """(Bi/tri)linear resize to a fixed spatial ``size`` (``align_corners=False``)."""

    def __init__(self, size: tuple[int, ...]) -> None:
        super().__init__()
        self.size = tuple(size)
        self.mode = _LINEAR[len(size)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return nn.functional.interpolate(x, size=self.size, mode=self.mode, align_corners=False)


class Up(nn.Module):
    """A decoder stage: ``upsample`` to the skip's size, join the skip (``merge``), then ``convs``."""

    def __init__(self, source: int, upsample: nn.Module, pad: list[int], merge: str, project: nn.Module,
                 convs: nn.Sequential) -> None:  # fmt: skip
        super().__init__()
        self.source = source  # the feature block whose input is the skip
        self.upsample = upsample
        self.pad = pad  # F.pad's list (last axis first): the remainder a transposed convolution misses or overshoots
        self.merge = merge
        self.project = project
        self.convs = convs

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.upsample(x)
        if self.pad:
            x = nn.functional.pad(x, self.pad)
        if self.merge == "concat":
            x = torch.cat([x, skip], dim=1)
        elif self.merge == "add":
            x = x + self.project(skip)
        return self.convs(x)


def _up_unit(up: dict[str, Any], source: int, current: tuple[int, ...], skip: tuple[int, ...], factor: int,
             rank: int) -> tuple[Up, tuple[int, ...]]:  # fmt: skip
    """The module of one up block and its output shape (``(filters, *skip spatial)``)."""
    channels, target = current[0], skip[1:]
    upsample: nn.Module
    pad: list[int] = []
    if up["mode"] == "transpose":
        upsample = _TRANSPOSED[rank](channels, up["filters"], factor, stride=factor)
        channels = up["filters"]
        for n, t in zip(reversed(current[1:]), reversed(target)):
            pad += [0, t - n * factor]
        if not any(pad):
            pad = []
    else:
        upsample = Resize(target)
    project: nn.Module = nn.Identity()
    if up["merge"] == "concat":
        merged = channels + skip[0]
    else:
        merged = channels
        if up["merge"] == "add" and skip[0] != channels:
            project = _CONV[rank](skip[0], channels, 1, bias=False)
    convs: list[nn.Module] = []
    for _ in range(up["convs"]):
        unit = {"filters": up["filters"], "kernel": up["kernel"], "stride": 1, "dilation": 1, "dropout": 0.0,
                "batch_norm": up["batch_norm"], "activation": up["activation"]}  # fmt: skip
        convs.extend(_conv_unit(unit, merged, rank))
        merged = up["filters"]
    return Up(source, upsample, pad, up["merge"], project, nn.Sequential(*convs)), (up["filters"], *target)


class SegmentationNet(nn.Module):
    """The decoded segmentation network: encoder ``features`` (with skips), ``decoder``, 1x1 ``classifier``.

    Maps ``(N, C, *spatial)`` to per-pixel logits ``(N, classes, *spatial)``; ``resize`` brings them to
    the input's size when the decoder stops short of it.
    """

    def __init__(self, features: list[nn.Module], decoder: list[Up], classifier: nn.Module, resize: nn.Module
                 ) -> None:  # fmt: skip
        super().__init__()
        self.features = nn.ModuleList(features)
        self.decoder = nn.ModuleList(decoder)
        self.classifier = classifier
        self.resize = resize
        spans = [(i, m.span) for i, m in enumerate(features) if isinstance(m, Skip)]
        self._sources = [m.source for m in decoder]
        self._keep = frozenset([i - span for i, span in spans] + self._sources)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        saved: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            if i in self._keep:
                saved[i] = x
            if isinstance(layer, Skip):
                x = layer(x, saved[i - layer.span])
            else:
                x = layer(x)
        for up, source in zip(self.decoder, self._sources):
            x = up(x, saved[source])
        return self.resize(self.classifier(x))


class Standardised(nn.Module):
    """A network that takes samples as stored: subtracts the search's per-channel mean, divides by its std."""

    def __init__(self, network: nn.Module, mean: list[float], std: list[float], spatial_rank: int) -> None:
        super().__init__()
        shape = (1, len(mean)) + (1,) * spatial_rank
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape))
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        return self.network((x.float() - mean) / std)


def build_model_from_dict(genome: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
                          task: str = "classification") -> nn.Module:  # fmt: skip
    """Build the network of a genome dict (``Genome.to_dict()`` output, format 2).

    Feature blocks in order (a skip at position ``i`` with span ``k`` adds
    the output of block ``i - 1 - k``), then global pooling or flatten, then
    per dense block Linear, activation and Dropout (if dropout > 0), then a
    final Linear to ``num_classes``.  For ``task = "segmentation"`` the
    feature blocks are followed by the decoder's up blocks (the ``k``-th
    undoes the ``k``-th downsampling from the end and joins its input), then
    a 1x1 convolution to ``num_classes``, resized to the input's spatial size
    if needed.  Layer types follow the number of spatial axes of
    ``input_shape`` (1-D, 2-D or 3-D).

    Args:
        genome: The genome as a dict.
        input_shape: ``(channels, *spatial)`` of one sample.
        num_classes: Number of outputs (of each pixel, for segmentation).
        task: ``classification``, ``regression`` or ``segmentation``.

    Returns:
        A module mapping ``(batch, *input_shape)`` to ``(batch, num_classes)``
        (segmentation: ``(batch, num_classes, *spatial)``).

    Raises:
        ValueError: A format other than 2, an unknown block, a pool below
            size 1, a skip that cannot be mapped or an up block with no
            downsampling left to undo.
    """
    if genome.get("format") != 2:
        raise ValueError(f"genome format {genome.get('format')!r}: this decoder reads format 2")
    rank = len(input_shape) - 1
    shape = tuple(input_shape)
    outputs = [shape]
    features: list[nn.Module] = []
    levels: list[tuple[int, tuple[int, ...], int]] = []  # (block, its input shape, factor) per downsampling
    for i, block in enumerate(genome["features"]):
        kind = block["type"]
        factor = block["size"] if kind == "pool" else block["stride"] if kind == "conv" else 1
        if factor > 1:
            levels.append((i, shape, factor))
        if kind == "conv":
            features.append(_conv_unit(block, shape[0], rank))
            shape = (block["filters"], *(-(-n // block["stride"]) for n in shape[1:]))
        elif kind == "pool":
            size = block["size"]
            pool = _MAX_POOL if block["kind"] == "max" else _AVG_POOL
            features.append(pool[rank](size))
            shape = (shape[0], *(n // size for n in shape[1:]))
            if min(shape[1:]) < 1:
                raise ValueError(f"features[{i}]: pool of size {size} shrinks a spatial size below 1")
        elif kind == "skip":
            source = i - 1 - block["span"]
            if source < -1:
                raise ValueError(f"features[{i}]: skip of span {block['span']} reaches before the input")
            features.append(_skip_unit(block, outputs[source + 1], shape, rank))
        else:
            raise ValueError(f"features[{i}]: unknown block type {kind!r}")
        outputs.append(shape)
    if task == "segmentation":
        decoder: list[Up] = []
        for k, up in enumerate(genome.get("decoder", [])):
            if not levels:
                raise ValueError(f"decoder[{k}]: no downsampling left to undo")
            source, skip, factor = levels.pop()
            unit, shape = _up_unit(up, source, shape, skip, factor, rank)
            decoder.append(unit)
        classifier = _CONV[rank](shape[0], num_classes, 1)
        resize = Resize(tuple(input_shape[1:])) if shape[1:] != tuple(input_shape[1:]) else nn.Identity()
        return SegmentationNet(features, decoder, classifier, resize)
    if genome["reduce"] is None:
        reduce: nn.Module = nn.Flatten()
        width = math.prod(shape)
    else:
        reduce = GlobalPool(genome["reduce"]["kind"])
        width = shape[0]
    head: list[nn.Module] = []
    for dense in genome["head"]:
        head.append(nn.Linear(width, dense["units"]))
        head.append(_activation(dense["activation"]))
        if dense["dropout"] > 0:
            head.append(nn.Dropout(dense["dropout"]))
        width = dense["units"]
    head.append(nn.Linear(width, num_classes))
    return GenomeNet(features, reduce, nn.Sequential(*head))


def build_model(genome: Genome, spec: InputSpec) -> nn.Module:
    """Build the network a genome describes (see :func:`build_model_from_dict`).

    Args:
        genome: The genome.
        spec: Input shape and class count.

    Returns:
        A module mapping ``(batch, *spec.shape)`` to ``(batch, num_classes)``
        (segmentation: ``(batch, num_classes, *spatial)``).
    """
    return build_model_from_dict(genome.to_dict(), tuple(spec.shape), spec.num_classes, spec.task)
