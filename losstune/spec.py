"""Study files: TOML parsed once, validated by pydantic into a frozen :class:`StudySpec`.

Nothing downstream sees raw dicts. Every error becomes a :class:`~losstune.errors.SpecError`
naming the file, the dotted key path and what is allowed. This module imports neither Keras nor
Optuna, so ``losstune validate`` is fast.

A searchable value is written either as a fixed scalar, as a range table
``{low = .., high = .., log = true, step = ..}``, or as ``{choices = [..]}``.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, Callable, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, ValidationError,
                      field_validator, model_validator)

from losstune.errors import SpecError

TASKS = ("multiclass", "binary", "regression")
BUILTIN_DATASETS = {"digits": "multiclass", "wine": "multiclass",
                    "breast_cancer": "binary", "diabetes": "regression"}

# metric -> (direction, tasks it applies to)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "macro_f1": ("maximize", ("multiclass", "binary")),
    "balanced_accuracy": ("maximize", ("multiclass", "binary")),
    "accuracy": ("maximize", ("multiclass", "binary")),
    "roc_auc": ("maximize", ("multiclass", "binary")),
    "log_loss": ("minimize", ("multiclass", "binary")),
    "mae": ("minimize", ("regression",)),
    "rmse": ("minimize", ("regression",)),
    "r2": ("maximize", ("regression",)),
    # Only as a second objective: wall time of the trial's training, in seconds.
    "train_time": ("minimize", TASKS),
}

# Loss families by task. Mirrors losstune.losses.FAMILIES without importing Keras.
FAMILY_TASKS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("multiclass", "binary"),
    "focal": ("multiclass", "binary"),
    "class_balanced": ("multiclass", "binary"),
    "poly1": ("multiclass", "binary"),
    "soft_fbeta": ("multiclass", "binary"),
    "dynamic": ("multiclass", "binary", "regression"),
    "mse": ("regression",),
    "mae": ("regression",),
    "huber": ("regression",),
    "log_cosh": ("regression",),
}
SCHEDULE_NAMES = ("constant", "linear", "step", "exponential", "cosine", "sigmoid")
# Which schedule parameters each schedule reads (a parameter is suggested only when used).
SCHEDULE_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "linear": ("start", "end", "warmup"),
    "step": ("start", "gamma", "milestones"),
    "exponential": ("start", "end", "rate", "warmup"),
    "cosine": ("start", "end", "warmup"),
    "sigmoid": ("start", "end", "steepness", "midpoint", "warmup"),
}

# allow_inf_nan=False: every float a study file gives (TOML has nan and inf literals) must be
# finite, in every section, range, choice and baseline parameter: the one place that says so.
_FROZEN = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

# Racing trains seed index i on seed + 1000 * i (racing.SEED_STRIDE) for up to 100 indices
# (RacingSpec.max_seeds), and every seed derived from the study's must stay a valid 32-bit seed
# (NumPy, scikit-learn, Keras): seed + 100_000 < 2**31.
MAX_SEED = 2**31 - 1 - 100 * 1000
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# An upper bound on a study's budget: far beyond any search, and a number every counter holds.
MAX_TRIALS = 1_000_000


def _check_seed(v: Any) -> Any:
    """A study or sampler seed: a whole number (not a boolean or a string) in [0, MAX_SEED]."""
    if v is None:
        return v
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_SEED:
        raise ValueError(f"seed must be a whole number in [0, {MAX_SEED}] (racing adds "
                         f"1000 per extra seed and seeds are 32-bit), got {v!r}")
    return v


# ------------------------------------------------------------------------------- ranges
class Range(BaseModel):
    """A numeric interval to search: ``{low, high, log, step}``."""

    model_config = _FROZEN
    low: float
    high: float
    log: StrictBool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> "Range":
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite, got low={self.low}, high={self.high}")
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low}, high={self.high} "
                             "(inverted range)")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be used together")
        if self.step is not None and not self.step > 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        return self

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def is_int(self) -> bool:
        return (float(self.low).is_integer() and float(self.high).is_integer()
                and (self.step is None or float(self.step).is_integer()) and not self.log)


class Choices(BaseModel):
    """A finite set to choose from: ``{choices = [..]}``."""

    model_config = _FROZEN
    choices: tuple[Union[float, int, str, bool], ...]

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, v: tuple) -> tuple:
        if not v:
            raise ValueError("choices must not be empty")
        return v

    def bounds(self) -> tuple[float, float]:
        nums = [c for c in self.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        return (min(nums), max(nums)) if nums else (math.nan, math.nan)


Param = Union[Range, Choices, float, int, str, bool]


def param_bounds(value: Param) -> tuple[float, float]:
    """Smallest and largest value a parameter can take (NaNs for non-numeric)."""
    if isinstance(value, (Range, Choices)):
        return value.bounds()
    if isinstance(value, bool) or isinstance(value, str):
        return math.nan, math.nan
    return float(value), float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_numeric(name: str, value: Param, *, whole: bool = False) -> Param:
    """A number, a range or numeric choices: a string or a boolean (fixed, or among the
    choices) is refused here, not at run time. ``whole``: integers only (epochs...)."""
    members = value.choices if isinstance(value, Choices) else (
        (value.low, value.high, *(() if value.step is None else (value.step,)))
        if isinstance(value, Range) else (value,))
    for member in members:
        if not _is_number(member):
            raise ValueError(f"{name} must be a number, a range table or {{choices = [...]}} "
                             f"of numbers, got {member!r}")
        if whole and not float(member).is_integer():
            raise ValueError(f"{name} must be a whole number, got {member!r}")
    if whole and isinstance(value, Range) and value.log:
        raise ValueError(f"{name} is a whole number: use step, not log")
    return value


def _check_param(name: str, value: Param, low: float | None = None, high: float | None = None,
                 *, high_open: bool = False, allowed: str = "", low_open: bool = False,
                 whole: bool = False) -> Param:
    _check_numeric(name, value, whole=whole)
    lo, hi = param_bounds(value)
    bad = ((low is not None and lo < low) or (high is not None and hi > high)
           or (high_open and high is not None and hi >= high)
           or (low_open and low is not None and lo <= low))
    if bad:
        got = f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"
        raise ValueError(f"{name} must lie in {allowed}, got {got}")
    return value


# ------------------------------------------------------------------------------- sections
class DatasetSpec(BaseModel):
    model_config = _FROZEN
    # "arrays": in-memory data given to losstune.search() in Python (not in a study file).
    name: Literal["digits", "wine", "breast_cancer", "diabetes", "csv", "npz", "arrays"]
    path: str | None = None
    features: tuple[str, ...] | None = None
    target: str | None = None
    image: StrictBool = False  # digits as 8x8x1 images (for the CNN) instead of 64 features
    validation: float = Field(0.2, gt=0, lt=1)
    test: float = Field(0.2, ge=0, lt=1)
    long_tail: float = Field(1.0, ge=1, description="imbalance factor n_max / n_min")
    label_noise: float = Field(0.0, ge=0, lt=1)
    outliers: float = Field(0.0, ge=0, lt=1)
    outlier_scale: float = Field(10.0, gt=0)
    max_samples: int | None = Field(None, ge=10)

    @model_validator(mode="after")
    def _check(self) -> "DatasetSpec":
        if self.name in ("csv", "npz"):
            if not self.path:
                raise ValueError(f"dataset {self.name!r} needs path = 'file.{self.name}'")
            if not self.target:
                raise ValueError(f"dataset {self.name!r} needs target = 'column'")
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% for training")
        return self


class ModelSpec(BaseModel):
    model_config = _FROZEN
    # "python": a model function given to losstune.search() in Python (not in a study file).
    kind: Literal["mlp", "cnn", "factory", "python"] = "mlp"
    hidden: tuple[int, ...] = (64,)
    filters: tuple[int, ...] = (16, 32)
    dropout: float = Field(0.0, ge=0, lt=1)
    factory: str | None = None

    @field_validator("hidden", "filters")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 1 for n in v):
            raise ValueError(f"layer sizes must be >= 1, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        if self.kind == "factory" and (not self.factory or ":" not in self.factory):
            raise ValueError("kind = 'factory' needs factory = 'package.module:function'")
        return self


class TrainingSpec(BaseModel):
    model_config = _FROZEN
    epochs: Union[int, Range, Choices] = 10
    batch_size: Union[int, Range, Choices] = 64
    optimizer: Union[Literal[OPTIMIZERS], Choices] = "adam"
    learning_rate: Union[float, Range, Choices] = 1e-3
    mixed_precision: StrictBool = False
    # XLA compilation of the train step. Off by default: for the small models people tune
    # losses on, compiling costs more than it saves (benchmarks/run.py, figure 0).
    jit_compile: Union[StrictBool, Literal["auto"]] = False
    # Train steps run per call into the compiled function (TensorFlow, JAX): one Python round
    # trip per N batches instead of per batch. "auto": 64, or 1 on torch (which needs 1).
    steps_per_execution: Union[int, Literal["auto"]] = "auto"
    # Reuse one compiled model per model shape and loss structure across a worker's trials,
    # with fresh weights, optimizer state and loss hyperparameters (losstune/compiled.py).
    reuse_compiled: StrictBool = True

    @field_validator("epochs", "batch_size")
    @classmethod
    def _at_least_one(cls, v: Param, info) -> Param:
        return _check_param(info.field_name, v, 1, allowed="[1, inf)", whole=True)

    @field_validator("optimizer")
    @classmethod
    def _known_optimizers(cls, v: Any) -> Any:
        # A fixed name is checked by its Literal; the members of {choices = [...]} the same way.
        for member in v.choices if isinstance(v, Choices) else ():
            if member not in OPTIMIZERS:
                raise ValueError(f"optimizer choices must be among "
                                 f"{', '.join(map(repr, OPTIMIZERS))}, got {member!r}")
        return v

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _bool_or_auto(cls, v: Any) -> Any:
        if not isinstance(v, bool) and v != "auto":
            raise ValueError(f"jit_compile must be true, false or 'auto', got {v!r}")
        return v

    @field_validator("steps_per_execution", mode="before")
    @classmethod
    def _steps_at_least_one(cls, v: Any) -> Any:
        if v != "auto" and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"steps_per_execution must be an int >= 1 or 'auto', got {v!r}")
        return v

    @field_validator("learning_rate")
    @classmethod
    def _positive_lr(cls, v: Param) -> Param:
        _check_numeric("learning_rate", v)
        if param_bounds(v)[0] <= 0:
            raise ValueError(f"learning_rate must be > 0, got {param_bounds(v)[0]:g}")
        return v

    def max_epochs(self) -> int:
        return int(param_bounds(self.epochs)[1])


class ObjectiveSpec(BaseModel):
    model_config = _FROZEN
    metric: Union[str, tuple[str, ...]] = "macro_f1"

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric,) if isinstance(self.metric, str) else tuple(self.metric)

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(METRICS[m][0] for m in self.metrics)


class SamplerSpec(BaseModel):
    model_config = _FROZEN
    name: Literal["tpe", "random", "grid", "cmaes", "gp"] = "tpe"
    seed: int | None = None
    n_startup_trials: int = Field(10, ge=0)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, v: Any) -> Any:
        return _check_seed(v)


class PrunerSpec(BaseModel):
    model_config = _FROZEN
    name: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(1, ge=0)
    # "family": the median rule compares a trial only with trials of its own loss family, so a
    # family that learns slowly and ends well is not pruned for its early epochs (runner.py).
    scope: Literal["family", "study"] = "family"


# Default search space per family; a study's [search.<family>] table overrides it key by key.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "cross_entropy": {"label_smoothing": 0.0},
    "focal": {"gamma": Range(low=0.0, high=5.0), "alpha": Range(low=0.05, high=1.0)},
    "class_balanced": {"beta": Choices(choices=(0.9, 0.99, 0.999, 0.9999)), "gamma": 0.0},
    "poly1": {"epsilon": Range(low=-1.0, high=5.0)},
    "soft_fbeta": {"beta": Range(low=0.5, high=2.0)},
    # w_progress is fixed at 0 by default: the term has no gradient (the audit says so).
    "dynamic": {"w_standard": 1.0, "w_progress": 0.0, "w_balance": Range(low=0.0, high=1.0),
                "w_curriculum": Range(low=0.0, high=1.0)},
    "huber": {"delta": Range(low=0.1, high=5.0, log=True)},
    "mse": {}, "mae": {}, "log_cosh": {},
}


# Allowed parameter names per family, with their valid numeric interval for the range check:
# (low, high, high end open, the interval as printed; "(" there makes the low end open too).
# Searched parameters and baselines' parameters are checked against the same table.
_FAMILY_PARAMS: dict[str, dict[str, tuple[float | None, float | None, bool, str]]] = {
    "cross_entropy": {"label_smoothing": (0, 1, False, "[0, 1]")},
    "focal": {"gamma": (0, None, False, "[0, inf)"), "alpha": (0, 1, False, "[0, 1]"),
              "label_smoothing": (0, 1, False, "[0, 1]")},
    "class_balanced": {"beta": (0, 1, True, "[0, 1)"), "gamma": (0, None, False, "[0, inf)"),
                       "label_smoothing": (0, 1, False, "[0, 1]")},
    "poly1": {"epsilon": (-1, None, False, "[-1, inf)"),
              "label_smoothing": (0, 1, False, "[0, 1]")},
    "soft_fbeta": {"beta": (0, None, True, "(0, inf)")},
    "dynamic": {"w_standard": (0, None, False, "[0, inf)"),
                "w_progress": (0, None, False, "[0, inf)"),
                "w_balance": (0, None, False, "[0, inf)"),
                "w_curriculum": (0, None, False, "[0, inf)"),
                "base": (None, None, False, ""), "gamma": (0, None, False, "[0, inf)"),
                "alpha": (0, 1, False, "[0, 1]"), "delta": (0, None, True, "(0, inf)"),
                "label_smoothing": (0, 1, False, "[0, 1]"),
                "prior": (None, None, False, "")},
    "huber": {"delta": (0, None, True, "(0, inf)")},
    "mse": {}, "mae": {}, "log_cosh": {},
}
DYNAMIC_BASES = {"multiclass": ("categorical_crossentropy", "categorical_focal_crossentropy"),
                 "binary": ("categorical_crossentropy", "categorical_focal_crossentropy"),
                 "regression": ("huber", "mean_squared_error", "mean_absolute_error",
                                "log_cosh")}


class ScheduleSpace(BaseModel):
    model_config = _FROZEN
    names: tuple[str, ...] = ("constant", "linear", "cosine")
    value: Param = 1.0
    start: Param = 0.0
    end: Param = Range(low=0.0, high=1.0)
    warmup: Param = 0
    rate: Param = Range(low=0.1, high=5.0, log=True)
    steepness: Param = Range(low=2.0, high=20.0)
    midpoint: Param = Range(low=0.2, high=0.8)
    gamma: Param = Range(low=0.1, high=1.0)
    milestones: tuple[int, ...] = (2, 4)

    @field_validator("names")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for n in v:
            if n not in SCHEDULE_NAMES:
                raise ValueError(f"unknown schedule {n!r}; allowed: {', '.join(SCHEDULE_NAMES)}")
        if not v:
            raise ValueError("names must list at least one schedule")
        return v

    @field_validator("value", "start", "end")
    @classmethod
    def _numbers(cls, v: Param, info) -> Param:
        return _check_numeric(info.field_name, v)

    # Bounds that keep every schedule computable (losstune/schedules.py): a sigmoid steeper
    # than 500 overflows math.exp, and a rate or steepness below 1e-6 makes the normalised
    # ramp divide by zero (the ramp is linear long before that anyway).
    @field_validator("warmup")
    @classmethod
    def _warmup(cls, v: Param) -> Param:
        return _check_param("warmup", v, 0, allowed="[0, inf)", whole=True)

    @field_validator("midpoint")
    @classmethod
    def _midpoint(cls, v: Param) -> Param:
        return _check_param("midpoint", v, 0, 1, allowed="[0, 1]")

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: Param) -> Param:
        return _check_param("rate", v, 1e-6, allowed="[1e-6, inf)")

    @field_validator("steepness")
    @classmethod
    def _steepness(cls, v: Param) -> Param:
        return _check_param("steepness", v, 1e-6, 500, allowed="[1e-6, 500]")

    @field_validator("gamma")
    @classmethod
    def _gamma(cls, v: Param) -> Param:
        return _check_param("gamma", v, 0, allowed="[0, inf)")

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(m < 0 for m in v):
            raise ValueError(f"milestones must be epochs >= 0, got {list(v)}")
        return v


class SearchSpec(BaseModel):
    """Which families to choose among, and per family the parameters to search."""

    model_config = _FROZEN
    families: tuple[str, ...] | None = None
    schedule: ScheduleSpace = ScheduleSpace()
    cross_entropy: dict[str, Param] = {}
    focal: dict[str, Param] = {}
    class_balanced: dict[str, Param] = {}
    poly1: dict[str, Param] = {}
    soft_fbeta: dict[str, Param] = {}
    dynamic: dict[str, Param] = {}
    huber: dict[str, Param] = {}
    mse: dict[str, Param] = {}
    mae: dict[str, Param] = {}
    log_cosh: dict[str, Param] = {}

    def family_space(self, family: str, task: str = "multiclass") -> dict[str, Param]:
        """The family's parameters: defaults overridden by the study file."""
        space = {**FAMILY_DEFAULTS[family], **getattr(self, family)}
        if family == "dynamic" and task == "regression":
            space.setdefault("base", "huber")
            space["w_balance"] = getattr(self, family).get("w_balance", 0.0)
        return space


class RacingSpec(BaseModel):
    """Racing over seeds inside the search (losstune/racing.py)."""

    model_config = _FROZEN
    max_seeds: int = Field(5, ge=1, le=100)
    alpha: float = Field(0.05, gt=0, lt=1)


class Baseline(BaseModel):
    model_config = _FROZEN
    family: str
    params: dict[str, Union[float, int, str, bool]] = {}


class StudySpec(BaseModel):
    """A validated study file."""

    model_config = _FROZEN
    name: str = Field(min_length=1, max_length=200)
    task: Literal["multiclass", "binary", "regression"]
    seed: int = 0
    # The same bound as `losstune search --n-trials` (cli.MAX_TRIALS).
    n_trials: int | None = Field(None, ge=1, le=MAX_TRIALS)
    timeout: float | None = Field(None, gt=0)
    storage: str | None = None
    dataset: DatasetSpec
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    search: SearchSpec = SearchSpec()
    baselines: Union[StrictBool, tuple[Baseline, ...]] = True
    racing: Union[StrictBool, RacingSpec] = True
    notes: str = ""

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, v: Any) -> Any:
        return _check_seed(v)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, v: str) -> str:
        # The name is printed in one-line messages, tables and file names.
        if not v.isprintable():
            raise ValueError(f"name must be printable text (no line breaks or control "
                             f"characters), got {v!r}")
        return v

    @property
    def race(self) -> RacingSpec | None:
        """The racing settings, or None: ``racing = false``, or several objectives (a paired
        test ranks by one)."""
        if self.racing is False or self.multi_objective:
            return None
        return RacingSpec() if self.racing is True else self.racing

    @property
    def families(self) -> tuple[str, ...]:
        if self.search.families is not None:
            return self.search.families
        if self.task == "regression":
            return ("mse", "mae", "huber", "log_cosh")
        return ("cross_entropy", "focal", "class_balanced", "dynamic")

    @property
    def baseline_designs(self) -> tuple[Baseline, ...]:
        if self.baselines is False:
            return ()
        if self.baselines is True:
            if self.task == "regression":
                return (Baseline(family="mse"), Baseline(family="huber", params={"delta": 1.0}))
            return (Baseline(family="cross_entropy", params={"label_smoothing": 0.0}),
                    Baseline(family="focal", params={"gamma": 2.0, "alpha": 0.25}))
        return self.baselines

    @property
    def sampler_seed(self) -> int:
        return self.seed if self.sampler.seed is None else self.sampler.seed

    @property
    def multi_objective(self) -> bool:
        return len(self.objective.metrics) > 1


# ------------------------------------------------------------------------------- checks that
# need more than one section (each raises SpecError with its key path)
def _cross_checks(spec: StudySpec, path: str) -> None:
    def fail(key: str, message: str) -> None:
        raise SpecError(path, key, message)

    if spec.dataset.name in BUILTIN_DATASETS:
        native = BUILTIN_DATASETS[spec.dataset.name]
        if native != spec.task:
            fail("task", f"dataset {spec.dataset.name!r} is a {native} task, got task = "
                         f"{spec.task!r}")
    if spec.dataset.image and spec.dataset.name != "digits":
        fail("dataset.image", "only the digits dataset has images")
    if spec.model.kind == "cnn" and not spec.dataset.image:
        fail("model.kind", "the cnn model needs image data: set dataset.image = true (digits)")
    if spec.task == "regression" and (spec.dataset.long_tail != 1 or spec.dataset.label_noise):
        fail("dataset", "long_tail and label_noise are for classification; use outliers "
                        "for regression")
    if spec.task != "regression" and spec.dataset.outliers:
        fail("dataset.outliers", "outliers are for regression; use label_noise for "
                                 "classification")
    if spec.dataset.name in ("csv", "npz"):
        data_path = Path(spec.dataset.path)
        if not data_path.is_absolute():
            data_path = Path(path).parent / data_path
        if data_path.is_dir():
            fail("dataset.path", f"{data_path} is a folder; give the {spec.dataset.name} file")
        if not data_path.is_file():
            fail("dataset.path", f"file not found: {data_path}")
        features = spec.dataset.features
        if features is not None:
            if not features:
                fail("dataset.features", "list at least one column (or leave features out: "
                                         "every column but the target)")
            for i, column in enumerate(features):
                if column == spec.dataset.target:
                    fail(f"dataset.features[{i}]", f"{column!r} is the target; a feature "
                                                   "cannot be the target")
                if column in features[:i]:
                    fail(f"dataset.features[{i}]", f"{column!r} is listed twice")
    else:
        for key in ("path", "target", "features"):
            if getattr(spec.dataset, key) is not None:
                fail(f"dataset.{key}", f"only for the csv and npz datasets; {spec.dataset.name!r} "
                                       "is built in (remove it)")

    metrics = spec.objective.metrics
    if not metrics:
        fail("objective.metric", "give at least one metric")
    for i, metric in enumerate(metrics):
        key = "objective.metric" if len(metrics) == 1 else f"objective.metric[{i}]"
        valid = [m for m, (_, tasks) in METRICS.items() if spec.task in tasks
                 and m != "train_time"]
        if metric not in METRICS or spec.task not in METRICS[metric][1]:
            fail(key, f"unknown metric {metric!r} for a {spec.task} task; allowed: "
                      f"{', '.join(valid)}")
        if metric == "train_time" and i == 0:
            fail(key, "train_time can only be a second objective; put a quality metric first")
    if len(set(metrics)) != len(metrics):
        fail("objective.metric", "each metric may appear once")

    valid_families = [f for f, tasks in FAMILY_TASKS.items() if spec.task in tasks]
    if spec.search.families is not None and not spec.search.families:
        fail("search.families", f"list at least one family; allowed: {', '.join(valid_families)}")
    for i, family in enumerate(spec.families):
        if family not in FAMILY_TASKS:
            fail(f"search.families[{i}]", f"unknown loss family {family!r}; allowed: "
                                          f"{', '.join(valid_families)}")
        if spec.task not in FAMILY_TASKS[family]:
            fail(f"search.families[{i}]", f"family {family!r} is not valid for a {spec.task} "
                                          f"task; allowed: {', '.join(valid_families)}")

    for family in _FAMILY_PARAMS:
        for name, value in spec.search.family_space(family, spec.task).items():
            _check_family_param(family, name, value, spec.task, f"search.{family}.{name}", fail)
    if spec.task == "regression":
        balance = spec.search.family_space("dynamic", spec.task).get("w_balance", 0.0)
        if param_bounds(balance)[1] > 0 and "dynamic" in spec.families:
            fail("search.dynamic.w_balance",
                 "must be 0 for regression (the class-balance term needs class probabilities)")

    if spec.baselines is not True and spec.baselines is not False:
        for i, base in enumerate(spec.baselines):
            if base.family not in FAMILY_TASKS or spec.task not in FAMILY_TASKS[base.family]:
                fail(f"baselines[{i}].family", f"family {base.family!r} is not valid for a "
                                               f"{spec.task} task; allowed: "
                                               f"{', '.join(valid_families)}")
            # The same names, intervals and types as the search space: a baseline trains too.
            for name, value in base.params.items():
                _check_family_param(base.family, name, value, spec.task,
                                    f"baselines[{i}].params.{name}", fail)

    if spec.sampler.name == "grid":
        _check_grid(spec, fail)
    if spec.multi_objective and spec.sampler.name in ("cmaes", "gp"):
        fail("sampler.name", f"{spec.sampler.name!r} is single-objective; use tpe or random "
                             "for several metrics")
    if spec.n_trials is None and spec.timeout is None:
        fail("n_trials", "give n_trials, timeout or both")


def _check_family_param(family: str, name: str, value: Param, task: str, key: str,
                        fail: Callable[[str, str], None]) -> None:
    """One loss parameter (searched or a baseline's): a known name, a value of the right kind
    (every member of ``{choices = [...]}`` too) inside the family's interval."""
    allowed = _FAMILY_PARAMS[family]
    if name not in allowed:
        fail(key, f"family {family!r} has no parameter {name!r}; allowed: "
                  f"{', '.join(allowed) or 'none'}")
    low, high, high_open, interval = allowed[name]
    names = {"base": DYNAMIC_BASES[task], "prior": ("uniform", "train")}.get(name)
    if names is not None:  # a name out of a fixed set, fixed or among the choices
        if isinstance(value, Range):
            fail(key, f"must be one of {', '.join(map(repr, names))} (or {{choices = [...]}} "
                      "of them), not a range")
        for member in value.choices if isinstance(value, Choices) else (value,):
            if member not in names or not isinstance(member, str):
                where = f" for a {task} task" if name == "base" else ""
                fail(key, f"{name} {member!r} is not valid{where}; allowed: {', '.join(names)}")
        return
    try:
        _check_param(name, value, low, high, high_open=high_open, allowed=interval,
                     low_open=interval.startswith("("))
    except ValueError as err:
        fail(key, str(err))


def _check_grid(spec: StudySpec, fail) -> None:
    """The grid sampler (Optuna's BruteForceSampler) needs every searched number discrete."""
    def discrete(value: Param) -> bool:
        return not isinstance(value, Range) or value.step is not None

    for name in ("epochs", "batch_size", "learning_rate"):
        if not discrete(getattr(spec.training, name)):
            fail(f"training.{name}", "the grid sampler needs a step or {choices = [...]}")
    for family in spec.families:
        for name, value in spec.search.family_space(family, spec.task).items():
            if not discrete(value):
                fail(f"search.{family}.{name}",
                     "the grid sampler needs a step or {choices = [...]}")


# ------------------------------------------------------------------------------- loading
def _is_type_tag(item: Any) -> bool:
    """Pydantic puts the union member it tried (``float``, ``Range``, ``function-after[...]``,
    ``literal[...]``) into an error's location; it is not a key of the study file."""
    return isinstance(item, str) and (
        item in ("int", "float", "str", "bool") or _union_member((item,)) is not None
        or item.startswith(("function-", "literal[", "tuple[", "constrained-")))


def _model_names() -> set[str]:
    return {cls.__name__ for cls in globals().values()
            if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel}


def _key_path(loc: tuple) -> str:
    parts: list[str] = []
    models = _model_names()
    for n, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        # A section's model name (racing = {..} tried as RacingSpec) is a union member too;
        # the last item is kept: it may be the user's own unknown key.
        elif not _is_type_tag(item) and not (item in models and n < len(loc) - 1):
            parts.append(str(item))
    return ".".join(parts)


def _friendly(error: dict[str, Any]) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return msg.replace("Input should be", "must be")
    if kind == "finite_number":
        return f"must be a finite number, got {error.get('input')!r}"
    msg = msg.replace("Value error, ", "").replace("Input should be", "must be")
    got = error.get("input")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        msg += f", got {got!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        interval = _interval(error["loc"])
        msg = (f"must lie in {interval}" if interval else msg) + f", got {got!r}"
    return msg


def _model_in(annotation: Any) -> Any:
    """The section model inside a field's annotation (``Union[bool, tuple[Baseline, ...]]``
    gives Baseline), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_at(loc: tuple) -> tuple[Any, Any]:
    """(the model holding the last key of ``loc``, that key's FieldInfo or None), skipping list
    indices and union member tags; (None, None) where ``loc`` leaves the models."""
    model: Any = StudySpec
    info = None
    models = _model_names()
    items = [i for n, i in enumerate(loc) if not isinstance(i, int) and not _is_type_tag(i)
             and not (i in models and n < len(loc) - 1)]
    for n, item in enumerate(items):
        fields = getattr(model, "model_fields", None) if model is not None else None
        if not fields or item not in fields:
            return (model, None) if n == len(items) - 1 else (None, None)
        info = fields[item]
        if n < len(items) - 1:
            model = _model_in(info.annotation)
    return model, info


def _number(v: Any) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _interval(loc: tuple) -> str:
    """The interval a number field allows (``[0, 1)``), read from its Field constraints."""
    info = _field_at(loc)[1]
    bounds = {kind: getattr(m, kind) for m in getattr(info, "metadata", ())
              if (kind := type(m).__name__.lower()) in ("gt", "ge", "lt", "le")}
    if not bounds:
        return ""
    low = (f"({_number(bounds['gt'])}" if "gt" in bounds
           else f"[{_number(bounds['ge'])}" if "ge" in bounds else "(-inf")
    high = (f"{_number(bounds['lt'])})" if "lt" in bounds
            else f"{_number(bounds['le'])}]" if "le" in bounds else "inf)")
    return f"{low}, {high}"


def _union_member(loc: tuple) -> str | None:
    for item in loc:
        if item == "Choices":
            return "Choices"
        if isinstance(item, str) and "Range" in item:
            return "Range"
    return None


def _best_error(err: ValidationError) -> dict[str, Any]:
    """Pydantic reports one error per union member; keep the member the user meant.

    A table with a ``choices`` key means ``{choices = [..]}``, any other table a range.
    """
    errors = [e for e in err.errors() if e["type"] not in ("model_type", "dict_type")] or \
        err.errors()
    choices_missing = any(_union_member(e["loc"]) == "Choices" and e["type"] == "missing"
                          and e["loc"][-1] == "choices" for e in errors)
    intended = "Range" if choices_missing else "Choices"
    candidates = [e for e in errors if _union_member(e["loc"]) in (None, intended)]
    members = [e for e in candidates if _union_member(e["loc"])]
    candidates = members or candidates or errors
    for preferred in ("value_error", "finite_number", "extra_forbidden", "missing",
                      "literal_error", "greater_than", "greater_than_equal", "less_than",
                      "less_than_equal"):
        for e in candidates:
            if e["type"] == preferred:
                return e
    return candidates[0]


def _allowed_keys(error: dict[str, Any]) -> str:
    """For an unknown key, list the keys the enclosing table accepts."""
    member = _union_member(error["loc"])
    if member:
        return "; allowed: " + ", ".join((Range if member == "Range" else Choices).model_fields)
    fields = getattr(_field_at(error["loc"])[0], "model_fields", None)
    return f"; allowed: {', '.join(fields)}" if fields else ""


def parse(data: dict[str, Any], path: str | Path = "<study>") -> StudySpec:
    """Validate already-parsed TOML data."""
    path = str(path)
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        error = _best_error(err)
        key = _key_path(error["loc"])
        message = _friendly(error)
        if error["type"] == "extra_forbidden":
            message += _allowed_keys(error)
        raise SpecError(path, key, message) from None
    _cross_checks(spec, path)
    return spec


def load(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(str(path), "", "study file not found") from None
    except OSError as err:
        raise SpecError(str(path), "", f"cannot read the study file ({err.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(str(path), "", "not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(str(path), "", f"TOML syntax error: {err}") from None
    spec = parse(data, path)
    # These two exist only for studies made from Python, with the objects themselves.
    if spec.dataset.name == "arrays":
        raise SpecError(str(path), "dataset.name", "'arrays' is for in-memory data given to "
                        "losstune.search() in Python; a study file uses digits, wine, "
                        "breast_cancer, diabetes, csv or npz")
    if spec.model.kind == "python":
        raise SpecError(str(path), "model.kind", "'python' is for a model function given to "
                        "losstune.search() in Python; a study file uses mlp, cnn or factory "
                        "(factory = 'module:function')")
    return spec


def baseline_label(family: str, params: dict[str, Any]) -> str:
    """A short readable label of a baseline design (its ``baseline`` user attribute)."""
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in sorted(params.items()))
    return f"{family}({shown})"


__all__ = ["StudySpec", "Range", "Choices", "load", "parse", "METRICS", "FAMILY_TASKS",
           "baseline_label"]
