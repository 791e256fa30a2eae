"""Search space and input shape: :class:`InputSpec`, :class:`SearchSpace`, :class:`InvalidGenome`.

Plain Python: no torch.  Shape tracking, size estimates and validity checks
live in :mod:`menndl.genome.shapes`; random sampling in
:mod:`menndl.genome.sampling`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace
from typing import Any

from menndl.genome.fields import MERGES, SCHEDULES, UP_MODES, Choice, Floats, Ints, Keyed, Range, Rate, space_keys

BLOCK_TYPES: tuple[str, ...] = ("conv", "pool", "skip", "global_pool", "dense", "up")
MUTATION_NAMES: tuple[str, ...] = (
    "add_block",
    "remove_block",
    "alter_block",
    "add_skip",
    "remove_skip",
    "alter_training",
)
_FIELD_KEYS: dict[str, Keyed] = space_keys()  # the space keys genome fields read, from the field table
# Defaults of the rank-dependent [space] keys (a key left unset, i.e. None, takes these), from the field table.
RANK_DEFAULTS: dict[int, dict[str, tuple[int, ...]]] = {
    rank: {key: kind.by_rank[rank - 1] for key, kind in _FIELD_KEYS.items() if kind.by_rank is not None}
    for rank in (1, 2, 3)
}


class InvalidGenome(ValueError):
    """A genome that does not fit its input shape or search space."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


@dataclass(frozen=True)
class InputSpec:
    """Shape of one input sample and what the network outputs for it.

    Attributes:
        shape: ``(channels, *spatial)`` with 1 to 3 spatial dimensions.
        num_classes: Number of outputs per sample (>= 1): the classes, or for regression the targets
            (for segmentation: the classes of each pixel).
        task: ``classification``, ``regression`` or ``segmentation`` (`menndl.tasks.TASKS`): a
            segmentation network maps ``(C, *spatial)`` to ``(num_classes, *spatial)`` through a decoder.
    """

    shape: tuple[int, ...]
    num_classes: int
    task: str = "classification"

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else self.shape
        if not isinstance(shape, tuple) or not 2 <= len(shape) <= 4 or not all(_is_int(n) and n >= 1 for n in shape):
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


def _float_range(value: Any, values: Floats) -> str | None:
    low = f"{values.low:g} {'<' if values.low_open else '<='} min"
    high = "" if math.isinf(values.high) else f" {'<' if values.high_open else '<='} {values.high:g}"
    if not (
        isinstance(value, tuple)
        and len(value) == 2
        and all(_is_num(v) and values.contains(v) for v in value)
        and value[0] <= value[1]
    ):
        return f"a [min, max] pair of numbers with {low} <= max{high}"
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


def _key_problem(kind: Keyed, value: Any) -> str | None:
    """What the space key a field reads should be, from the field's kind, if ``value`` is wrong."""
    if isinstance(kind, Rate):
        ok = _is_num(value) and kind.values.contains(value)
        return None if ok else f"a number in {kind.values.text()}"
    values = kind.values
    if isinstance(values, Ints):
        if isinstance(kind, Range):
            return _int_range(value, values.minimum)
        return _ints(value, values.minimum, values.odd)
    if isinstance(values, Floats):
        return _float_range(value, values)
    assert isinstance(kind, Choice)
    return _names(value, values.names)


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of the architecture and training search (a job's ``[space]``).

    Ranges are inclusive ``(min, max)`` pairs.  Lists given as Python lists
    are converted to tuples.  Keys that default to ``None`` take a default
    that depends on the data's spatial rank (:data:`RANK_DEFAULTS`); the
    genome functions resolve them with :func:`resolve_space`.

    Attributes:
        max_features: Maximum number of conv + pool blocks (>= 1).
        max_head: Maximum number of dense blocks (>= 0).
        filters: Range of conv output channels, sampled log-uniformly
            (rank default: [8, 64]; 3-D [4, 32]).
        kernels: Allowed conv kernel sizes (odd; rank default: 1-D [3, 5, 7, 9],
            2-D [1, 3, 5], 3-D [1, 3]).
        pool_sizes: Allowed pooling sizes (>= 2).
        dense_units: Range of dense units, sampled log-uniformly.
        activations: Allowed activations.
        learning_rate: Range of learning rates, sampled log-uniformly.
        batch_sizes: Allowed batch sizes.
        optimizers: Allowed optimizers.
        weight_decay: Range of weight decay (log-uniform if min > 0, else uniform).
        max_dropout: Largest dropout probability, in ``[0, 0.9)``.
        block_types: Block types the search may use, from :data:`BLOCK_TYPES`
            (``conv`` is required; ``up`` is the segmentation decoder's block).
        max_skips: Maximum number of skip connections (>= 0).
        strides: Allowed conv strides (rank default [1, 2]).
        dilations: Allowed conv dilations (rank default: 1-D [1, 2, 4], 2-D [1, 2], 3-D [1]).
        momentum: Range of SGD momentum, in ``[0, 1)``.
        schedules: Allowed learning-rate schedules, from :data:`SCHEDULES`.
        budget: Range of the training budget, as a fraction in ``(0, 1]`` of
            the job's ``[training]`` epochs and seconds.
        max_decoder: Maximum number of up blocks of a segmentation decoder (>= 0; a decoder has
            at most one per downsampling block of its encoder).
        up_modes: Allowed upsampling of up blocks, from ``transpose`` and ``interpolate``.
        merges: Allowed ways an up block joins its encoder skip, from ``concat``, ``add``, ``none``.
        up_convs: Allowed numbers of convolutions after an up block's merge.
        mutation_add_block ... mutation_alter_training: Relative weight of
            each mutation operator (its probability is weight / sum of weights).
    """

    max_features: int = 6
    max_head: int = 2
    filters: tuple[int, int] | None = None
    kernels: tuple[int, ...] | None = None
    pool_sizes: tuple[int, ...] = (2,)
    dense_units: tuple[int, int] = (16, 256)
    activations: tuple[str, ...] = ("relu", "gelu", "silu")
    learning_rate: tuple[float, float] = (1e-4, 3e-2)
    batch_sizes: tuple[int, ...] = (32, 64, 128)
    optimizers: tuple[str, ...] = ("adam", "adamw", "sgd")
    weight_decay: tuple[float, float] = (0.0, 1e-3)
    max_dropout: float = 0.5
    block_types: tuple[str, ...] = BLOCK_TYPES
    max_skips: int = 3
    strides: tuple[int, ...] | None = None
    dilations: tuple[int, ...] | None = None
    momentum: tuple[float, float] = (0.8, 0.99)
    schedules: tuple[str, ...] = SCHEDULES
    budget: tuple[float, float] = (1.0, 1.0)
    max_decoder: int = 4
    up_modes: tuple[str, ...] = UP_MODES
    merges: tuple[str, ...] = MERGES
    up_convs: tuple[int, ...] = (1, 2)
    mutation_add_block: float = 1.0
    mutation_remove_block: float = 1.0
    mutation_alter_block: float = 2.0
    mutation_add_skip: float = 0.5
    mutation_remove_skip: float = 0.5
    mutation_alter_training: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            expected = self._problem(f.name, value)
            if expected is not None:
                raise ValueError(f"space.{f.name}: expected {expected}, got {value!r}")
        for name, kind in _FIELD_KEYS.items():  # float bounds as floats
            if isinstance(kind, Rate):
                object.__setattr__(self, name, float(getattr(self, name)))
            elif isinstance(kind, Range) and isinstance(kind.values, Floats):
                object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        for name in MUTATION_NAMES:
            object.__setattr__(self, f"mutation_{name}", float(getattr(self, f"mutation_{name}")))
        if not any(w > 0 for w in self.mutation_weights.values()):
            raise ValueError("space.mutation_*: expected at least one positive mutation weight")

    @property
    def mutation_weights(self) -> dict[str, float]:
        """Relative weight of each mutation operator, by operator name."""
        return {name: getattr(self, f"mutation_{name}") for name in MUTATION_NAMES}

    def for_rank(self, rank: int) -> SearchSpace:
        """This space with every unset rank-dependent key filled in for ``rank`` (1, 2 or 3)."""
        unset: dict[str, Any] = {k: v for k, v in RANK_DEFAULTS[rank].items() if getattr(self, k) is None}
        return replace(self, **unset) if unset else self

    @staticmethod
    def _problem(name: str, value: Any) -> str | None:
        """Return what ``name`` should be if ``value`` is wrong, else None."""
        kind = _FIELD_KEYS.get(name)
        if kind is not None:  # a key genome fields read: the field table says what it holds
            return None if value is None and kind.by_rank is not None else _key_problem(kind, value)
        if name == "max_skips":
            return None if _is_int(value) and value >= 0 else "an integer >= 0"
        if name == "block_types":
            problem = _names(value, BLOCK_TYPES)
            return problem or (None if "conv" in value else "a list of block types that includes 'conv'")
        if name.startswith("mutation_"):
            return None if _is_num(value) and value >= 0 else "a number >= 0"
        if name == "max_features":
            return None if _is_int(value) and value >= 1 else "an integer >= 1"
        if name in ("max_head", "max_decoder"):
            return None if _is_int(value) and value >= 0 else "an integer >= 0"
        raise AssertionError(name)  # pragma: no cover - every field is listed


_RESOLVED: dict[tuple[int, int], tuple[SearchSpace, SearchSpace]] = {}  # (id(space), rank) -> (space, resolved)


def resolve_space(space: SearchSpace, rank: int) -> SearchSpace:
    """``space.for_rank(rank)``, cached: the space every genome function works in.

    Every operator calls this, several times per child: a lookup by the
    object's identity first (hashing a space hashes every one of its fields),
    then by value, so equal spaces share one result.

    Args:
        space: A search space, possibly with rank-dependent keys unset.
        rank: Spatial rank of the data (1, 2 or 3).

    Returns:
        A space whose ``filters``, ``kernels``, ``strides`` and ``dilations`` are set.
    """
    hit = _RESOLVED.get((id(space), rank))
    if hit is not None and hit[0] is space:
        return hit[1]
    resolved = _resolve_by_value(space, rank)
    if len(_RESOLVED) >= 256:
        _RESOLVED.clear()
    _RESOLVED[(id(space), rank)] = (space, resolved)  # holds `space`, so its id is not reused while cached
    return resolved


@functools.lru_cache(maxsize=64)
def _resolve_by_value(space: SearchSpace, rank: int) -> SearchSpace:
    return space.for_rank(rank)
