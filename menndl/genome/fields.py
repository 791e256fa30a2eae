"""The genome field table: every field of every block, the search-space key that bounds it, and how.

One :class:`Field` row per field of :class:`~menndl.genome.genome.ConvBlock`,
:class:`~menndl.genome.genome.PoolBlock`, :class:`~menndl.genome.genome.SkipBlock`,
:class:`~menndl.genome.genome.GlobalPoolBlock`, :class:`~menndl.genome.genome.DenseBlock`,
:class:`~menndl.genome.genome.UpBlock` (a segmentation decoder's block)
and :class:`~menndl.genome.genome.TrainParams`.  A row names the block type
(as in ``space.block_types``; ``"train"`` for the training parameters), the
field, and its kind, which says what values the field holds whatever the
space (:class:`Ints`, :class:`Floats`, :class:`Names`, :class:`Bools`) and
how a :class:`~menndl.genome.space.SearchSpace` bounds it:

* :class:`Range`: an inclusive ``[min, max]`` pair, ``space.<key>``;
* :class:`Choice`: one of the list ``space.<key>`` (plus fixed extras);
* :class:`Rate`: a probability in ``[0, space.<key>]``, 0 meaning off (dropout);
* :class:`Fixed`: one of fixed options, the same in every space;
* :class:`Flag`: true or false;
* :class:`Span`: a skip's span, bounded by the block's position, not by the space.

Every module reads this one table: the block constructors check each field's
values (:mod:`menndl.genome.genome`), the space checks the keys fields read
and fills in their rank defaults (:mod:`menndl.genome.space`),
:func:`~menndl.genome.shapes.check` rejects a value outside its bounds,
:func:`~menndl.genome.repair.repair` clamps into them, sampling draws inside
them, ``alter_block``/``alter_training`` step or redraw one field, and the
fixed-length encoding makes one parameter of each.  Adding a field is one row
here (and the dataclass field, the space key if it reads a new one, and its
use in ``decode.py``).  What stays field-specific elsewhere reads the field's
bounds from its row: pools that would shrink a size below 1 and skip spans
(repair, sampling), the first block's stride (sampling), momentum only with
SGD (``alter_training``), flatten-or-global-pooling as one parameter (encoding).

A block's rows come in the order the operators, :func:`~menndl.genome.shapes.check`
and the encoding visit them; its constructor, and so a random draw, takes them
in the order its dataclass declares them (:func:`menndl.genome.genome.declared_rows`).
Plain data: no torch, and no import of the genome or space modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from menndl.genome.space import SearchSpace

ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "silu", "tanh", "none")  # "none": identity
POOL_KINDS: tuple[str, ...] = ("max", "avg")
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step", "warmup_cosine")
UP_MODES: tuple[str, ...] = ("transpose", "interpolate")  # learned transposed convolution, or resize then convolve
MERGES: tuple[str, ...] = ("concat", "add", "none")  # how an up block joins its encoder skip
MAX_DROPOUT: float = 0.9  # dropout must lie in [0, MAX_DROPOUT)

BlockName = Literal["conv", "pool", "skip", "global_pool", "dense", "up", "train"]

# ---------------------------------------------------------------- values a field holds, whatever the space


@dataclass(frozen=True)
class Ints:
    """Integers (not bools) ``>= minimum``; only odd ones if ``odd``."""

    minimum: int
    odd: bool = False


@dataclass(frozen=True)
class Floats:
    """Finite numbers from ``low`` to ``high``; each end open or closed."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, x: float) -> bool:
        """Whether the number ``x`` lies between the ends (False for nan).

        Args:
            x: A number.

        Returns:
            True if ``x`` is inside.
        """
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def text(self) -> str:
        """The interval as text, e.g. ``[0, 0.9)``."""
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{left}{self.low:g}, {self.high:g}{right}"


@dataclass(frozen=True)
class Names:
    """One of ``names``."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Bools:
    """True or false."""


Values = Ints | Floats | Names | Bools

# ---------------------------------------------------------------- how the space bounds a field


def _key(space: SearchSpace, key: str) -> Any:
    value = getattr(space, key)
    assert value is not None, f"space.{key} is unset: resolve the space for a rank first (resolve_space)"
    return value


@dataclass(frozen=True)
class Range:
    """Inclusive ``[min, max]`` bounds from the space's pair ``space.<key>``.

    Attributes:
        key: The :class:`~menndl.genome.space.SearchSpace` attribute.
        values: What the field and both ends of the pair may be.
        log: Drawn log-uniformly and encoded with ``log=True`` (floats: when
            the minimum is > 0).
        by_rank: The key's default for spatial rank 1, 2 and 3, for a key the
            space leaves unset (``None``) until it is resolved; None if the key
            has a plain default.
    """

    key: str
    values: Ints | Floats
    log: bool = False
    by_rank: tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]] | None = None

    def bounds(self, space: SearchSpace) -> tuple[Any, Any]:
        """``(min, max)`` in a resolved space."""
        low, high = _key(space, self.key)
        return low, high

    def least(self, space: SearchSpace) -> Any:
        """The low bound."""
        return self.bounds(space)[0]


@dataclass(frozen=True)
class Choice:
    """One of the space's list ``space.<key>``, or of ``extra``, which every space allows.

    Repair moves a number to the nearest allowed one and a name to the first.

    Attributes:
        key: The :class:`~menndl.genome.space.SearchSpace` attribute.
        values: What the field and every element of the list may be.
        extra: Options allowed besides the space's (a skip's ``"none"``).
        by_rank: As :attr:`Range.by_rank`.
    """

    key: str
    values: Ints | Names
    extra: tuple[Any, ...] = ()
    by_rank: tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]] | None = None

    def options(self, space: SearchSpace) -> tuple[Any, ...]:
        """The allowed values in a resolved space, the space's first."""
        options: tuple[Any, ...] = _key(space, self.key)
        return (*options, *self.extra) if self.extra else options

    def least(self, space: SearchSpace) -> Any:
        """The smallest allowed number, or the first allowed name."""
        options = self.options(space)
        return options[0] if isinstance(self.values, Names) else min(options)


@dataclass(frozen=True)
class Rate:
    """A probability from 0 (off) to the space's maximum ``space.<key>``.

    Drawn as 0 one time in three, else uniformly; mutated by a Gaussian step;
    encoded over ``[-max, max]``, its negative half meaning 0.

    Attributes:
        key: The :class:`~menndl.genome.space.SearchSpace` attribute holding the maximum.
    """

    key: str
    values: ClassVar[Floats] = Floats(0.0, MAX_DROPOUT, high_open=True)
    by_rank: ClassVar[None] = None

    def bounds(self, space: SearchSpace) -> tuple[float, float]:
        """``(0.0, max)`` in a space."""
        return 0.0, _key(space, self.key)

    def least(self, space: SearchSpace) -> float:
        """0.0: off."""
        return 0.0


@dataclass(frozen=True)
class Fixed:
    """One of ``values.names`` in every space (no space key)."""

    values: Names

    def options(self, space: SearchSpace) -> tuple[str, ...]:
        """The names."""
        return self.values.names

    def least(self, space: SearchSpace) -> str:
        """The first name."""
        return self.values.names[0]


@dataclass(frozen=True)
class Flag:
    """True or false in every space (no space key): drawn with probability 1/2, mutated by negation."""

    values: ClassVar[Bools] = Bools()

    def least(self, space: SearchSpace) -> bool:
        """False."""
        return False


@dataclass(frozen=True)
class Span:
    """A skip's span: 1 to its position in the features; structural, no space key."""

    values: ClassVar[Ints] = Ints(1)

    def least(self, space: SearchSpace) -> int:
        """1: the block just before the previous one."""
        return 1


Kind = Range | Choice | Rate | Fixed | Flag | Span
Keyed = Range | Choice | Rate  # the kinds that read a space key

# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Field:
    """One genome field: its block type, name, kind, and how the search treats it.

    Attributes:
        block: ``conv``, ``pool``, ``skip``, ``global_pool``, ``dense``, ``up`` or ``train``.
        name: The field's name in its dataclass.
        kind: Its values and how the space bounds them.
        chance: Probability that a random block draws it; otherwise it takes
            its kind's least value (a stride or dilation of 1, no dropout).
        redraw: Mutation draws a fresh value instead of stepping from the
            current one.
        shaping: A change may move spatial sizes or what a skip reaches, so a
            mutated genome must be repaired; other changes inside the space
            keep a valid genome valid (a convolution's padding keeps its size
            whatever its kernel or dilation, and skips project channels).
    """

    block: BlockName
    name: str
    kind: Kind
    chance: float = 1.0
    redraw: bool = False
    shaping: bool = False

    @property
    def key(self) -> str | None:
        """The :class:`~menndl.genome.space.SearchSpace` attribute it reads, or None."""
        return self.kind.key if isinstance(self.kind, (Range, Choice, Rate)) else None


_ACTIVATION = Choice("activations", Names(ACTIVATIONS))
_FILTERS = Range("filters", Ints(1), log=True, by_rank=((8, 64), (8, 64), (4, 32)))
_KERNELS = Choice("kernels", Ints(1, odd=True), by_rank=((3, 5, 7, 9), (1, 3, 5), (1, 3)))

# Rows that other modules name for their field-specific rules.
CONV_STRIDE = Field(
    "conv", "stride", Choice("strides", Ints(1), by_rank=((1, 2), (1, 2), (1, 2))), chance=0.25, shaping=True
)
CONV_BATCH_NORM = Field("conv", "batch_norm", Flag())
POOL_SIZE = Field("pool", "size", Choice("pool_sizes", Ints(2)), shaping=True)
SKIP_SPAN = Field("skip", "span", Span(), shaping=True)
GLOBAL_POOL_KIND = Field("global_pool", "kind", Fixed(Names(POOL_KINDS)))
TRAIN_MOMENTUM = Field("train", "momentum", Range("momentum", Floats(0.0, 1.0, high_open=True)), redraw=True)

FIELDS: tuple[Field, ...] = (
    Field("conv", "filters", _FILTERS),
    Field("conv", "kernel", _KERNELS),
    CONV_STRIDE,
    Field("conv", "dilation", Choice("dilations", Ints(1), by_rank=((1, 2, 4), (1, 2), (1,))), chance=0.25),
    Field("conv", "activation", _ACTIVATION),
    CONV_BATCH_NORM,
    Field("conv", "dropout", Rate("max_dropout"), chance=0.25),
    Field("pool", "kind", Fixed(Names(POOL_KINDS))),
    POOL_SIZE,
    SKIP_SPAN,
    Field("skip", "activation", Choice("activations", Names(ACTIVATIONS), extra=("none",))),
    GLOBAL_POOL_KIND,
    Field("dense", "units", Range("dense_units", Ints(1), log=True)),
    Field("dense", "activation", _ACTIVATION),
    Field("dense", "dropout", Rate("max_dropout")),
    Field("up", "filters", _FILTERS),
    Field("up", "kernel", _KERNELS),
    Field("up", "mode", Choice("up_modes", Names(UP_MODES))),
    Field("up", "merge", Choice("merges", Names(MERGES))),
    Field("up", "convs", Choice("up_convs", Ints(1))),
    Field("up", "activation", _ACTIVATION),
    Field("up", "batch_norm", Flag()),
    Field("train", "learning_rate", Range("learning_rate", Floats(0.0, math.inf, low_open=True), log=True)),
    Field("train", "batch_size", Choice("batch_sizes", Ints(2))),  # batch norm needs two samples
    Field("train", "optimizer", Choice("optimizers", Names(OPTIMIZERS))),
    Field("train", "weight_decay", Range("weight_decay", Floats(0.0, math.inf), log=True), redraw=True),
    TRAIN_MOMENTUM,
    Field("train", "schedule", Choice("schedules", Names(SCHEDULES))),
    Field("train", "budget", Range("budget", Floats(0.0, 1.0, low_open=True)), redraw=True),
)


def fields_of(block: BlockName) -> tuple[Field, ...]:
    """The rows of one block type, in table order.

    Args:
        block: A block type name, or ``"train"``.

    Returns:
        Its rows (empty for an unknown name).
    """
    return tuple(field for field in FIELDS if field.block == block)


def space_keys() -> dict[str, Keyed]:
    """Every space key a field reads, with the kind of the first row that reads it (table order).

    Rows that read the same key agree on its kind's values and rank defaults
    (``tests/test_genome_fields.py`` checks it).

    Returns:
        Key -> kind.
    """
    keys: dict[str, Keyed] = {}
    for field in FIELDS:
        kind = field.kind
        if isinstance(kind, (Range, Choice, Rate)):
            keys.setdefault(kind.key, kind)
    return keys
