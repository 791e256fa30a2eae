"""Search space, input shape, validity checks, size estimates and sampling.

Plain Python: no torch.  Shapes follow the decoder in
:mod:`menndl.genome.decode`: convolutions use 'same' padding and stride 1,
pooling uses kernel = stride = size, so a spatial size ``n`` becomes
``n // size``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from typing import Any

from menndl.genome.genome import (
    ACTIVATIONS,
    MAX_DROPOUT,
    OPTIMIZERS,
    POOL_KINDS,
    ConvBlock,
    DenseBlock,
    Genome,
    PoolBlock,
    TrainParams,
    round_sig,
)

POOL_PROBABILITY = 0.3  # chance that a non-first random feature block is a pool


class InvalidGenome(ValueError):
    """A genome that does not fit its input shape or search space."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class InputSpec:
    """Shape of one input sample and number of classes.

    Attributes:
        shape: ``(channels, *spatial)`` with 1 to 3 spatial dimensions.
        num_classes: Number of output classes (>= 1).
    """

    shape: tuple[int, ...]
    num_classes: int

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else self.shape
        if not isinstance(shape, tuple) or not 2 <= len(shape) <= 4 or not all(
            _is_int(n) and n >= 1 for n in shape
        ):
            raise ValueError(
                "input.shape: expected (channels, *spatial) with 1 to 3 spatial sizes, "
                f"all positive integers, got {self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise ValueError(f"input.num_classes: expected an integer >= 1, got {self.num_classes!r}")

    @property
    def spatial_rank(self) -> int:
        """Number of spatial dimensions (1, 2 or 3)."""
        return len(self.shape) - 1


def _int_range(value: Any, lo: int) -> str | None:
    if not (isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) for v in value)):
        return f"a [min, max] pair of integers >= {lo}"
    if value[0] < lo or value[0] > value[1]:
        return f"a [min, max] pair of integers with {lo} <= min <= max"
    return None


def _float_range(value: Any, positive: bool) -> str | None:
    bound = "0 < min" if positive else "0 <= min"
    if not (isinstance(value, tuple) and len(value) == 2 and all(_is_num(v) for v in value)):
        return f"a [min, max] pair of numbers with {bound} <= max"
    if value[0] < 0 or (positive and value[0] == 0) or value[0] > value[1]:
        return f"a [min, max] pair of numbers with {bound} <= max"
    return None


def _ints(value: Any, lo: int, odd: bool = False) -> str | None:
    what = f"a non-empty list of {'odd ' if odd else ''}integers >= {lo}"
    if not (isinstance(value, tuple) and value and all(_is_int(v) and v >= lo for v in value)):
        return what
    if odd and any(v % 2 == 0 for v in value):
        return what
    return None


def _names(value: Any, known: tuple[str, ...]) -> str | None:
    if not (isinstance(value, tuple) and value and all(v in known for v in value)):
        return "a non-empty list drawn from " + ", ".join(known)
    return None


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of the architecture and training search (a job's ``[space]``).

    Ranges are inclusive ``(min, max)`` pairs.  Lists given as Python lists
    are converted to tuples.

    Attributes:
        max_features: Maximum number of conv + pool blocks (>= 1).
        max_head: Maximum number of dense blocks (>= 0).
        filters: Range of conv output channels, sampled log-uniformly.
        kernels: Allowed conv kernel sizes (odd).
        pool_sizes: Allowed pooling sizes (>= 2).
        dense_units: Range of dense units, sampled log-uniformly.
        activations: Allowed activations.
        learning_rate: Range of learning rates, sampled log-uniformly.
        batch_sizes: Allowed batch sizes.
        optimizers: Allowed optimizers.
        weight_decay: Range of weight decay (log-uniform if min > 0, else uniform).
        max_dropout: Largest dropout probability, in ``[0, 0.9)``.
    """

    max_features: int = 6
    max_head: int = 2
    filters: tuple[int, int] = (8, 64)
    kernels: tuple[int, ...] = (1, 3, 5)
    pool_sizes: tuple[int, ...] = (2,)
    dense_units: tuple[int, int] = (16, 256)
    activations: tuple[str, ...] = ("relu", "gelu", "silu")
    learning_rate: tuple[float, float] = (1e-4, 3e-2)
    batch_sizes: tuple[int, ...] = (32, 64, 128)
    optimizers: tuple[str, ...] = ("adam", "adamw", "sgd")
    weight_decay: tuple[float, float] = (0.0, 1e-3)
    max_dropout: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            expected = self._problem(f.name, value)
            if expected is not None:
                raise ValueError(f"space.{f.name}: expected {expected}, got {value!r}")
        for name in ("learning_rate", "weight_decay"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "max_dropout", float(self.max_dropout))

    @staticmethod
    def _problem(name: str, value: Any) -> str | None:
        """Return what ``name`` should be if ``value`` is wrong, else None."""
        if name == "max_features":
            return None if _is_int(value) and value >= 1 else "an integer >= 1"
        if name == "max_head":
            return None if _is_int(value) and value >= 0 else "an integer >= 0"
        if name in ("filters", "dense_units"):
            return _int_range(value, 1)
        if name == "kernels":
            return _ints(value, 1, odd=True)
        if name == "pool_sizes":
            return _ints(value, 2)
        if name == "batch_sizes":
            return _ints(value, 1)
        if name == "activations":
            return _names(value, ACTIVATIONS)
        if name == "optimizers":
            return _names(value, OPTIMIZERS)
        if name in ("learning_rate", "weight_decay"):
            return _float_range(value, positive=name == "learning_rate")
        if name == "max_dropout":
            ok = _is_num(value) and 0 <= value < MAX_DROPOUT
            return None if ok else f"a number in [0, {MAX_DROPOUT})"
        raise AssertionError(name)  # pragma: no cover - every field is listed


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


# ---------------------------------------------------------------- sampling


def round_into(x: float, bounds: tuple[float, float]) -> float:
    """Clamp ``x`` into ``bounds`` and round it to 3 significant digits.

    If rounding would leave the range, the bound itself is returned.

    Args:
        x: The value.
        bounds: Inclusive ``(min, max)``.

    Returns:
        The rounded, in-range value.
    """
    lo, hi = bounds
    r = round_sig(min(max(x, lo), hi))
    return float(lo) if r < lo else float(hi) if r > hi else r


def log_uniform_int(rng: random.Random, bounds: tuple[int, int]) -> int:
    """Draw an integer log-uniformly from the inclusive ``bounds``.

    Args:
        rng: Random source.
        bounds: Inclusive ``(min, max)``, ``min >= 1``.

    Returns:
        The integer.
    """
    lo, hi = bounds
    value = math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))
    return min(max(value, lo), hi)


def random_conv_block(rng: random.Random, space: SearchSpace) -> ConvBlock:
    """Draw a random convolution block from ``space``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The block.
    """
    return ConvBlock(
        filters=log_uniform_int(rng, space.filters),
        kernel=rng.choice(space.kernels),
        activation=rng.choice(space.activations),
        batch_norm=rng.random() < 0.5,
    )


def random_dropout(rng: random.Random, space: SearchSpace) -> float:
    """Draw a dropout: 0 one time in three, else uniform in ``[0, max_dropout]``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The dropout, rounded to 3 significant digits.
    """
    if rng.random() < 1 / 3:
        return 0.0
    return round_into(rng.uniform(0.0, space.max_dropout), (0.0, space.max_dropout))


def random_dense_block(rng: random.Random, space: SearchSpace) -> DenseBlock:
    """Draw a random dense block from ``space``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The block.
    """
    return DenseBlock(
        units=log_uniform_int(rng, space.dense_units),
        activation=rng.choice(space.activations),
        dropout=random_dropout(rng, space),
    )


def random_learning_rate(rng: random.Random, space: SearchSpace) -> float:
    """Draw a learning rate log-uniformly, rounded to 3 significant digits."""
    lo, hi = space.learning_rate
    return round_into(math.exp(rng.uniform(math.log(lo), math.log(hi))), space.learning_rate)


def random_weight_decay(rng: random.Random, space: SearchSpace) -> float:
    """Draw a weight decay (log-uniform if the minimum is > 0, else uniform)."""
    lo, hi = space.weight_decay
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if lo > 0 else rng.uniform(lo, hi)
    return round_into(x, space.weight_decay)


def random_train_params(rng: random.Random, space: SearchSpace) -> TrainParams:
    """Draw random training hyperparameters from ``space``.

    Args:
        rng: Random source.
        space: The search space.

    Returns:
        The training parameters.
    """
    return TrainParams(
        learning_rate=random_learning_rate(rng, space),
        batch_size=rng.choice(space.batch_sizes),
        optimizer=rng.choice(space.optimizers),
        weight_decay=random_weight_decay(rng, space),
    )


def fitting_pool_sizes(spatial: tuple[int, ...], space: SearchSpace) -> list[int]:
    """Pool sizes of ``space`` that keep every size of ``spatial`` >= 1.

    Args:
        spatial: Current spatial sizes.
        space: The search space.

    Returns:
        The fitting sizes, in the order of ``space.pool_sizes``.
    """
    return [s for s in space.pool_sizes if min(spatial) // s >= 1]


def random_genome(rng: random.Random, space: SearchSpace, spec: InputSpec) -> Genome:
    """Draw a random valid genome.

    The first feature block is a convolution; later ones are pools with
    probability :data:`POOL_PROBABILITY` where a pool size still fits.

    Args:
        rng: Random source.
        space: The search space.
        spec: Input shape and class count.

    Returns:
        A genome with 1..max_features feature blocks and 0..max_head dense blocks.
    """
    spatial = spec.shape[1:]
    features: list[ConvBlock | PoolBlock] = [random_conv_block(rng, space)]
    for _ in range(rng.randint(1, space.max_features) - 1):
        sizes = fitting_pool_sizes(spatial, space)
        if sizes and rng.random() < POOL_PROBABILITY:
            size = rng.choice(sizes)
            features.append(PoolBlock(kind=rng.choice(POOL_KINDS), size=size))
            spatial = tuple(n // size for n in spatial)
        else:
            features.append(random_conv_block(rng, space))
    head = [random_dense_block(rng, space) for _ in range(rng.randint(0, space.max_head))]
    return Genome(tuple(features), tuple(head), random_train_params(rng, space))
