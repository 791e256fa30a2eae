"""Job files: one TOML file that says what to search, on what data, for how long.

A job is validated completely before any worker starts; every mistake is a
`UserError` naming the file and the key (``jobs/x.toml: search.population:
expected an integer, got 'ten'``).  Tables map onto frozen dataclasses, one per
table, so the defaults live next to the types.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from menndl.data.keys import DataKeys
from menndl.errors import UserError
from menndl.genome.space import SearchSpace
from menndl.objectives import CONSTRAINTS, DIRECTIONS, RANKINGS, measurements_needed
from menndl.tasks import LOSSES, TASK_OBJECTIVES, TASKS, foreign_objective, loss_for, task_score

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MAX_CANDIDATE_SECONDS = 1e7  # about 116 days: more is a typo, and overflows timers
MAX_SEED = 2**63 - 1  # seeds are stored as int64 in the library
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
CHANNELS_LAST = ("auto", "on", "off")


#: Values of ``data.placement``: where a worker keeps the samples it trains on (see `menndl.data.placement`).
PLACEMENTS = ("auto", "device", "node", "stream")
MIN_CACHE_BYTES = 2**20


@dataclass(frozen=True)
class DataConfig:
    """The ``[data]`` table: which dataset, where its arrays are, how it is split and where workers keep it."""

    source: str = "digits"
    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    x_key: str = "x"
    y_key: str = "y"
    x_val_key: str = "x_val"
    y_val_key: str = "y_val"
    x_test_key: str = "x_test"
    y_test_key: str = "y_test"
    num_classes: int = 0
    task: str = "auto"
    ignore_label: int = -1
    placement: str = "auto"
    cache_bytes: int = 2**30

    def __post_init__(self) -> None:
        if self.task not in ("auto", *TASKS):
            raise ValueError(f"data.task: expected one of auto, {', '.join(TASKS)}, got '{self.task}'")
        if not self.source.strip():
            raise ValueError(
                "data.source: expected 'digits', 'mnist1d', 'oscillator1d', 'shapes2d' or a .h5/.hdf5/.npz/.npy "
                "path, got ''"
            )
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"data.validation_fraction: expected a number in (0, 1), got {self.validation_fraction}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"data.test_fraction: expected a number in [0, 1), got {self.test_fraction}")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"data.validation_fraction ({self.validation_fraction}) + data.test_fraction ({self.test_fraction}) "
                "leave no training data; expected a sum below 1"
            )
        for name in ("x_key", "y_key", "x_val_key", "y_val_key", "x_test_key", "y_test_key"):
            if not getattr(self, name).strip():
                raise ValueError(f"data.{name}: expected a dataset name, got ''")
        if self.num_classes < 0 or self.num_classes == 1:
            raise ValueError(
                f"data.num_classes: expected 0 (from the labels) or an integer >= 2, got {self.num_classes}"
            )
        if self.ignore_label < -1:
            raise ValueError(f"data.ignore_label: expected -1 (none) or a mask label >= 0, got {self.ignore_label}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"data.placement: expected one of {', '.join(PLACEMENTS)}, got '{self.placement}'")
        if self.cache_bytes < MIN_CACHE_BYTES:
            raise ValueError(f"data.cache_bytes: expected at least {MIN_CACHE_BYTES} (1 MiB), got {self.cache_bytes}")

    def keys(self) -> DataKeys:
        """Where the arrays are in the file."""
        return DataKeys(self.x_key, self.y_key, self.x_val_key, self.y_val_key, self.x_test_key, self.y_test_key)


@dataclass(frozen=True)
class AugmentConfig:
    """The ``[augment]`` table: random changes to training batches, made on the training device.

    Validation and test batches are never augmented.  Spatial axes are numbered from 1 (the first axis
    after the channels: 1 for a signal, 1 and 2 for an image, 1 to 3 for a volume).
    """

    flip_axes: tuple[int, ...] = ()
    crop_padding: int = 0
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        for axis in self.flip_axes:
            if not 1 <= axis <= 3:
                raise ValueError(f"augment.flip_axes: expected spatial axes 1, 2 or 3, got {axis}")
        if len(set(self.flip_axes)) != len(self.flip_axes):
            raise ValueError(f"augment.flip_axes: an axis is given twice in {list(self.flip_axes)}")
        if self.crop_padding < 0:
            raise ValueError(f"augment.crop_padding: expected an integer >= 0, got {self.crop_padding}")
        if not self.noise_std >= 0:
            raise ValueError(f"augment.noise_std: expected a number >= 0, got {self.noise_std}")

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return bool(self.flip_axes or self.crop_padding or self.noise_std)


#: Values of ``search.strategy``: menndl's asynchronous NSGA-II (the default), random sampling from the
#: same space with selection off (a baseline), Optuna's NSGAIISampler over the same genome encoding (a baseline).
STRATEGIES: tuple[str, ...] = ("nsga2", "random", "optuna")

#: Values of ``search.selection``: who survives a re-ranking of the population (NSGA-II's crowding distance,
#: NSGA-III's reference points, SPEA2's strength and density; the last two from DEAP).
SELECTIONS: tuple[str, ...] = ("nsga2", "nsga3", "spea2")
MAX_REFERENCE_POINTS = 10_000  # NSGA-III's association is rows x points: more is a typo, and slow
MAX_RUNGS = 8  # fidelity levels: 3**7 = 2,187 times less training at the lowest than at the top is already plenty
SPEA2_MAX_POPULATION = 500  # DEAP's selSPEA2 is quadratic in pure Python: 1 s per re-ranking at 600 members


@dataclass(frozen=True)
class SearchConfig:
    """The ``[search]`` table: budget, population and objectives."""

    population: int = 16
    evaluations: int | None = None
    time_limit: float | None = None
    objectives: tuple[str, ...] = ("accuracy", "params", "train_seconds")
    crossover_probability: float = 0.3
    max_params: int | None = None  # hard constraint: no genome with more parameters is ever trained
    max_flops: int | None = None  # hard constraint on forward FLOPs per sample
    aging: bool = False  # regularized evolution: the oldest members leave the population, not the worst
    task_deadline: float | None = None  # seconds before a worker is presumed lost (default 2 x max_seconds + 60)
    prefetch: int = 1  # tasks queued at each worker behind the one it runs (0 = none): no worker waits for the master
    rerank_interval: int | None = None  # results between full re-rankings (default_rerank_interval)
    stop_grace: float = 600.0  # seconds a stop signal waits for running evaluations before leaving them to --resume
    strategy: str = "nsga2"  # who proposes children: menndl's NSGA-II, plain random sampling, or Optuna's NSGA-II
    spread_start: bool = True  # nsga2: the random start spans model sizes evenly in log(parameters)
    selection: str = "nsga2"  # who survives a re-ranking: one of SELECTIONS
    reference_points: tuple[tuple[float, ...], ...] = ()  # nsga3: one point per row, one value per objective
    reference_divisions: int | None = None  # nsga3: Das-Dennis points with this many divisions (default by objectives)
    max_latency: float | None = None  # measured limit: inference seconds per sample at batch 1 (`latency`)
    max_memory: int | None = None  # measured limit: peak inference bytes at measure.batch_size (`memory`)
    max_energy: float | None = None  # measured limit: joules per inference sample (`energy`)
    rungs: int = 1  # fidelity levels (menndl.master.rungs): 1 = every candidate trains its whole budget at once
    reduction_factor: int = 3  # rungs: a rung's budget is this times the one below; the top 1/this promoted
    inherit_weights: bool = False  # children start from their parent's trained weights (menndl.worker.inherit)
    epoch_budget: int | None = None  # stop after this many training epochs over all evaluations (compute)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"search.strategy: expected one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        self._check_selection()
        for name in ("max_latency", "max_memory", "max_energy"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"search.{name}: expected a number > 0, got {value}")
        if self.prefetch < 0:
            raise ValueError(f"search.prefetch: expected an integer >= 0, got {self.prefetch}")
        self._check_fidelity()
        for name in ("max_params", "max_flops", "rerank_interval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"search.{name}: expected an integer >= 1, got {value}")
        if self.task_deadline is not None and self.task_deadline <= 0:
            raise ValueError(f"search.task_deadline: expected seconds > 0, got {self.task_deadline}")
        if not (math.isfinite(self.stop_grace) and self.stop_grace >= 0):
            raise ValueError(f"search.stop_grace: expected seconds >= 0, got {self.stop_grace}")
        if self.population < 2:
            raise ValueError(f"search.population: expected an integer >= 2, got {self.population}")
        if self.evaluations is not None and self.evaluations < 1:
            raise ValueError(f"search.evaluations: expected an integer >= 1, got {self.evaluations}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"search.time_limit: expected seconds > 0, got {self.time_limit}")
        if self.evaluations is None and self.time_limit is None and self.epoch_budget is None:
            raise ValueError("search: set evaluations, time_limit or epoch_budget (or more); a search needs a budget")
        unknown = [name for name in self.objectives if name not in DIRECTIONS]
        if unknown:
            raise ValueError(
                f"search.objectives: unknown objective '{unknown[0]}' (expected some of: {', '.join(DIRECTIONS)})"
            )
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"search.objectives: expected distinct objective names, got {list(self.objectives)}")
        if not 0.0 <= self.crossover_probability <= 1.0:
            raise ValueError(
                f"search.crossover_probability: expected a number in [0, 1], got {self.crossover_probability}"
            )

    @property
    def limits(self) -> dict[str, float]:
        """The measured limits that are set: bounded column (``latency``, ``memory``, ``energy``) -> its limit."""
        return {
            column: float(getattr(self, key)) for key, column in CONSTRAINTS.items() if getattr(self, key) is not None
        }

    def _check_fidelity(self) -> None:
        if not 1 <= self.rungs <= MAX_RUNGS:
            raise ValueError(f"search.rungs: expected an integer in [1, {MAX_RUNGS}], got {self.rungs}")
        if self.reduction_factor < 2:
            raise ValueError(f"search.reduction_factor: expected an integer >= 2, got {self.reduction_factor}")
        if self.epoch_budget is not None and self.epoch_budget < 1:
            raise ValueError(f"search.epoch_budget: expected an integer >= 1, got {self.epoch_budget}")
        if self.strategy == "optuna" and (self.rungs > 1 or self.inherit_weights):
            key = "rungs" if self.rungs > 1 else "inherit_weights"
            raise ValueError(f'search.{key}: applies to strategies "nsga2" and "random", not "optuna" (Optuna\'s '
                             "pruners do not support several objectives)")  # fmt: skip

    def _check_selection(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"search.selection: expected one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.selection != "nsga2" and self.aging:
            raise ValueError(f'search.selection: "{self.selection}" cuts the worst members; aging cuts the oldest')
        if self.selection != "nsga2" and self.strategy != "nsga2":
            raise ValueError(f'search.selection: "{self.selection}" applies to strategy "nsga2", not "{self.strategy}"')
        if self.selection == "spea2" and self.population > SPEA2_MAX_POPULATION:
            raise ValueError(
                f"search.selection: spea2 (DEAP's selSPEA2, quadratic in pure Python) takes a population of at most "
                f"{SPEA2_MAX_POPULATION}, got {self.population}; use nsga3 for larger ones"
            )
        if self.selection != "nsga3" and (self.reference_points or self.reference_divisions is not None):
            key = "reference_points" if self.reference_points else "reference_divisions"
            raise ValueError(f'search.{key}: only used with selection = "nsga3", got selection "{self.selection}"')
        if self.reference_points and self.reference_divisions is not None:
            raise ValueError("search.reference_points: set reference_points or reference_divisions, not both")
        if self.selection == "nsga3" and len(self.objectives) < 2:
            raise ValueError(f"search.selection: nsga3 needs at least 2 objectives, got {list(self.objectives)}")
        if self.reference_divisions is not None:
            if self.reference_divisions < 1:
                raise ValueError(
                    f"search.reference_divisions: expected an integer >= 1, got {self.reference_divisions}"
                )
            count = math.comb(self.reference_divisions + len(self.objectives) - 1, len(self.objectives) - 1)
            if count > MAX_REFERENCE_POINTS:
                raise ValueError(
                    f"search.reference_divisions: {self.reference_divisions} divisions give {count:,} reference points "
                    f"for {len(self.objectives)} objectives; expected at most {MAX_REFERENCE_POINTS:,}"
                )
        if len(self.reference_points) > MAX_REFERENCE_POINTS:
            raise ValueError(f"search.reference_points: expected at most {MAX_REFERENCE_POINTS:,} points")
        for i, point in enumerate(self.reference_points):
            if len(point) != len(self.objectives):
                raise ValueError(
                    f"search.reference_points[{i}]: expected {len(self.objectives)} values, one per objective "
                    f"({', '.join(self.objectives)}), got {len(point)}"
                )
            if any(value < 0 for value in point) or not any(value > 0 for value in point):
                raise ValueError(
                    f"search.reference_points[{i}]: expected values >= 0, not all zero (a direction), got {list(point)}"
                )


@dataclass(frozen=True)
class TrainingConfig:
    """The ``[training]`` table: the budget and numerics of one candidate's training."""

    epochs: int = 10
    max_seconds: float = 30.0
    precision: str = "auto"
    device: str = "auto"
    channels_last: str = "auto"
    early_stopping: bool = False
    early_stopping_fractions: tuple[float, ...] = (0.25, 0.5)
    early_stopping_quantile: float = 0.5
    early_stopping_min_results: int = 8
    loss: str = "auto"
    class_weights: tuple[float, ...] | str = ()

    def __post_init__(self) -> None:
        losses = sorted({name for names in LOSSES.values() for name in names})
        if self.loss not in ("auto", *losses):
            raise ValueError(f"training.loss: expected one of auto, {', '.join(losses)}, got '{self.loss}'")
        weights = self.class_weights
        if isinstance(weights, str) and weights != "balanced":
            raise ValueError(f"training.class_weights: expected \"balanced\" or one weight per class, got '{weights}'")
        if not isinstance(weights, str) and any(not w > 0 for w in weights):
            raise ValueError(f"training.class_weights: expected positive weights, got {list(weights)}")
        if self.channels_last not in CHANNELS_LAST:
            raise ValueError(
                f"training.channels_last: expected one of {', '.join(CHANNELS_LAST)}, got '{self.channels_last}'"
            )
        if not self.early_stopping_fractions or any(not 0.0 < f < 1.0 for f in self.early_stopping_fractions):
            raise ValueError(
                "training.early_stopping_fractions: expected fractions of the budget in (0, 1), "
                f"got {list(self.early_stopping_fractions)}"
            )
        if len(set(self.early_stopping_fractions)) != len(self.early_stopping_fractions):
            raise ValueError(
                "training.early_stopping_fractions: expected distinct fractions, "
                f"got {list(self.early_stopping_fractions)}"
            )
        if not 0.0 <= self.early_stopping_quantile <= 1.0:
            raise ValueError(
                f"training.early_stopping_quantile: expected a number in [0, 1], got {self.early_stopping_quantile}"
            )
        if self.early_stopping_min_results < 1:
            raise ValueError(
                f"training.early_stopping_min_results: expected an integer >= 1, got {self.early_stopping_min_results}"
            )
        if self.epochs < 1:
            raise ValueError(f"training.epochs: expected an integer >= 1, got {self.epochs}")
        if not 0 < self.max_seconds <= MAX_CANDIDATE_SECONDS:
            raise ValueError(
                f"training.max_seconds: expected seconds in (0, {MAX_CANDIDATE_SECONDS:g}], got {self.max_seconds}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"training.precision: expected one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.device not in DEVICES:
            raise ValueError(f"training.device: expected one of {', '.join(DEVICES)}, got '{self.device}'")


MEASURE_PRECISIONS = ("training", "fp32", "bf16", "fp16")
MEASUREMENT_KINDS = ("latency", "memory", "energy")
MEASURE_RUNTIMES = ("torch", "onnxruntime")  # what runs inference for latency and energy (measure.runtime)
RUNTIME_PACKAGES: dict[str, tuple[str, ...]] = {  # what each measure.runtime needs beyond torch (the export extra)
    "torch": (),
    "onnxruntime": ("onnxruntime", "onnx", "onnxscript"),
}


def missing_runtime_packages(runtime: str) -> list[str]:
    """The packages ``measure.runtime`` = ``runtime`` needs that are not installed (found without importing them)."""
    import importlib.util

    return [name for name in RUNTIME_PACKAGES[runtime] if importlib.util.find_spec(name) is None]


@dataclass(frozen=True)
class MeasureConfig:
    """The ``[measure]`` table: how a worker measures latency, memory and energy (`menndl.worker.hardware_cost`).

    Measured only when an objective or a ``search.max_*`` limit needs it, or ``record`` names it.
    """

    batch_size: int = 64  # the deployed batch size: batch_latency, memory and energy are measured at it
    seconds: float = 0.2  # timed seconds per batch size (torch.utils.benchmark's min_run_time)
    warmup_seconds: float = 0.25  # untimed calls for this long first (3 at least): caches, clocks, allocator
    precision: str = "training"  # deployed numerics: the candidate's training precision, or fp32, bf16, fp16
    energy_seconds: float = 1.0  # inference seconds an energy reading spans at least (counters update slowly)
    record: tuple[str, ...] = ()  # measurements to record even when no objective or limit needs them
    runtime: str = "torch"  # what runs inference for latency and energy: torch, or onnxruntime (CPU, fp32)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"measure.batch_size: expected an integer >= 1, got {self.batch_size}")
        if not 0 < self.seconds <= 60:
            raise ValueError(f"measure.seconds: expected seconds in (0, 60], got {self.seconds}")
        if not 0 <= self.warmup_seconds <= 60:
            raise ValueError(f"measure.warmup_seconds: expected seconds in [0, 60], got {self.warmup_seconds}")
        if self.precision not in MEASURE_PRECISIONS:
            raise ValueError(
                f"measure.precision: expected one of {', '.join(MEASURE_PRECISIONS)}, got '{self.precision}'"
            )
        if self.runtime not in MEASURE_RUNTIMES:
            raise ValueError(f"measure.runtime: expected one of {', '.join(MEASURE_RUNTIMES)}, got '{self.runtime}'")
        if self.runtime == "onnxruntime" and self.precision not in ("training", "fp32"):
            raise ValueError(
                f"measure.precision: onnxruntime measures fp32 networks, got '{self.precision}' (expected fp32)"
            )
        if not 0 < self.energy_seconds <= 600:
            raise ValueError(f"measure.energy_seconds: expected seconds in (0, 600], got {self.energy_seconds}")
        for kind in self.record:
            if kind not in MEASUREMENT_KINDS:
                raise ValueError(
                    f"measure.record: unknown measurement '{kind}' (expected some of: latency, memory, energy)"
                )


FOLD_SETTINGS = ("auto", "inline", "process")  # library.fold: a helper process, the master itself, or by size


@dataclass(frozen=True)
class LibraryConfig:
    """The ``[library]`` table: how the library is written, weights kept, earlier libraries reused."""

    flush_records: int = 4096
    flush_seconds: float = 1.0
    keep_weights: int = 0
    seed_from: tuple[str, ...] = ()
    seed_top: int = 8
    seed_by: str = "accuracy"
    fold: str = "auto"  # who writes the HDF5 batches: one of FOLD_SETTINGS (see menndl.library.folding_writer)

    def __post_init__(self) -> None:
        if self.fold not in FOLD_SETTINGS:
            raise ValueError(f"library.fold: expected auto, inline or process, got '{self.fold}'")
        if self.flush_records < 1:
            raise ValueError(f"library.flush_records: expected an integer >= 1, got {self.flush_records}")
        if self.flush_seconds < 0:
            raise ValueError(f"library.flush_seconds: expected seconds >= 0, got {self.flush_seconds}")
        if self.keep_weights < 0:
            raise ValueError(f"library.keep_weights: expected an integer >= 0, got {self.keep_weights}")
        if self.seed_top < 1:
            raise ValueError(f"library.seed_top: expected an integer >= 1, got {self.seed_top}")
        if self.seed_by not in RANKINGS:
            raise ValueError(f"library.seed_by: expected {', '.join(RANKINGS)}, got '{self.seed_by}'")


@dataclass(frozen=True)
class Job:
    """A validated job: the parsed tables plus where it came from."""

    name: str
    seed: int
    data: DataConfig
    search: SearchConfig
    space: SearchSpace
    training: TrainingConfig
    library: LibraryConfig = field(default_factory=LibraryConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    path: str = ""
    text: str = field(default="", repr=False)
    given: frozenset[str] = frozenset()  # the "table.key" names the file sets (the rest are defaults)

    @property
    def measurements(self) -> list[str]:
        """What workers measure besides training: ``latency``, ``memory``, ``energy`` (objectives, limits, record)."""
        needed = set(measurements_needed([*self.search.objectives, *self.search.limits])) | set(self.measure.record)
        return [kind for kind in MEASUREMENT_KINDS if kind in needed]

    @property
    def base_dir(self) -> Path:
        """Folder that relative dataset paths in the job are resolved against."""
        return Path(self.path).resolve().parent if self.path else Path.cwd()

    def for_task(self, task: str) -> Job:
        """The job for data of ``task`` (what the data check found): the task's score where the file left the
        objectives or ``library.seed_by`` to their defaults, and its objectives and loss checked.

        Raises:
            UserError: an objective, ``library.seed_by`` or ``training.loss`` belongs to another task.
        """
        score = task_score(task)
        search, library = self.search, self.library
        if "search.objectives" not in self.given:
            search = dataclasses.replace(
                search, objectives=tuple(score if n == "accuracy" else n for n in search.objectives)
            )
        if "library.seed_by" not in self.given and library.seed_by == "accuracy":
            library = dataclasses.replace(library, seed_by=score)
        for key, names in (("search.objectives", search.objectives), ("library.seed_by", (library.seed_by,))):
            foreign = foreign_objective(task, names)
            if foreign is not None:
                raise UserError(
                    f"{self.path}: {key}: '{foreign}' is not measured for a {task} task (the data's labels); "
                    f"expected {' or '.join(TASK_OBJECTIVES[task])} or a task-free objective"
                )
        try:
            loss_for(task, self.training.loss)
        except ValueError as exc:
            raise UserError(f"{self.path}: {exc}") from None
        if self.training.class_weights and task != "segmentation":
            raise UserError(f"{self.path}: training.class_weights weighs the pixels of segmentation masks; a {task} "
                            "task takes none")  # fmt: skip
        if self.data.ignore_label != -1 and task != "segmentation":
            raise UserError(f"{self.path}: data.ignore_label = {self.data.ignore_label} marks pixels of segmentation "
                            f"masks; a {task} task takes none")  # fmt: skip
        return dataclasses.replace(self, search=search, library=library)

    def with_overrides(
        self,
        *,
        evaluations: int | None = None,
        time_limit: float | None = None,
        seed: int | None = None,
    ) -> Job:
        """Return a copy with command-line overrides applied and validated.

        Raises:
            UserError: an override is out of range.
        """
        if evaluations is not None and evaluations < 1:
            raise UserError(f"--evaluations: expected an integer >= 1, got {evaluations}")
        if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
            raise UserError(f"--time-limit: expected a finite number of seconds > 0, got {time_limit}")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise UserError(f"--seed: expected an integer in [0, 2**63 - 1], got {seed}")
        search = self.search
        if evaluations is not None or time_limit is not None:
            search = dataclasses.replace(
                search,
                evaluations=evaluations if evaluations is not None else search.evaluations,
                time_limit=time_limit if time_limit is not None else search.time_limit,
            )
        return dataclasses.replace(self, search=search, seed=self.seed if seed is None else seed)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "search": SearchConfig,
    "space": SearchSpace,
    "training": TrainingConfig,
    "library": LibraryConfig,
    "augment": AugmentConfig,
    "measure": MeasureConfig,
}
_TOP_LEVEL = ("name", "seed", "description", *_SECTIONS)


def load_job(path: str | Path) -> Job:
    """Read and validate a job file.

    Raises:
        UserError: the file is missing, unreadable, not TOML, or any value is
            of the wrong type, out of range or unknown.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: job file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; expected a TOML job file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read job file ({_one_line(exc)})") from None
    return parse_job(text, path=str(path))


def parse_job(text: str, *, path: str = "<job>") -> Job:
    """Validate job TOML text; ``path`` is used in error messages and to resolve data paths.

    Raises:
        UserError: as `load_job`.
    """
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {_one_line(exc)}") from None
    for key in table:
        if key not in _TOP_LEVEL:
            raise UserError(f"{path}: unknown key '{key}' (expected one of: {', '.join(_TOP_LEVEL)})")
    name = _typed(table.get("name", Path(path).stem), str, "name", path)
    seed = _typed(table.get("seed", 0), int, "seed", path)
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"{path}: seed: expected an integer in [0, 2**63 - 1], got {seed}")
    _typed(table.get("description", ""), str, "description", path)
    sections = {key: _build(cls, table.get(key, {}), key, path) for key, cls in _SECTIONS.items()}
    if sections["search"].rungs > 1 and sections["training"].early_stopping:
        raise UserError(f"{path}: search.rungs = {sections['search'].rungs} already stops the weaker candidates "
                        "early; set training.early_stopping = false or search.rungs = 1")  # fmt: skip
    given = frozenset(f"{key}.{name}" for key in _SECTIONS if isinstance(table.get(key), dict) for name in table[key])
    return Job(name=name, seed=seed, path=path, text=text, given=given, **sections)


def _build(cls: type, table: Any, where: str, path: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, checking keys and types."""
    if not isinstance(table, Mapping):
        raise UserError(f"{path}: '{where}' must be a table ([{where}]), got {_describe(table)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in table.items():
        if key not in names:
            raise UserError(f"{path}: unknown key '{where}.{key}' (expected one of: {', '.join(names)})")
        values[key] = _typed(value, hints[key], f"{where}.{key}", path)
    try:
        return cls(**values)
    except ValueError as exc:
        raise UserError(f"{path}: {_one_line(exc)}") from None


def _typed(value: Any, hint: Any, key: str, path: str) -> Any:
    """Check ``value`` against a type hint (int, float, bool, str, tuples, Optional)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) > 1:  # e.g. a list of numbers or a name: the option of the value's TOML type
            arrays = [o for o in options if typing.get_origin(o) is tuple]
            return _typed(value, (arrays or options)[0] if isinstance(value, list) else
                          next((o for o in options if o is str), options[0]), key, path)  # fmt: skip
        return _typed(value, options[0], key, path)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise UserError(f"{path}: {key}: expected an array, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(item, args[0], f"{key}[{i}]", path) for i, item in enumerate(value))
        if len(value) != len(args):
            raise UserError(f"{path}: {key}: expected an array of {len(args)} values, got {len(value)}")
        return tuple(_typed(item, arg, f"{key}[{i}]", path) for i, (item, arg) in enumerate(zip(value, args)))
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not _finite(value):
            raise UserError(f"{path}: {key}: expected a finite number, got {str(value)[:40]}")
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a dataclass field with an unsupported annotation
        raise TypeError(f"unsupported job field type {hint!r} for {key}")
    if not ok:
        raise UserError(f"{path}: {key}: expected {_TYPE_WORDS[hint]}, got {_describe(value)}")
    return value


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{kind.get(type(value), type(value).__name__)} {shown}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _finite(value: float) -> bool:
    """``math.isfinite`` that says False, not OverflowError, for an integer too big for a float."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
