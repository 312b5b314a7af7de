"""The study file's schema: typed, frozen pydantic sections, each checking its own values
(finite numbers, intervals from :mod:`losstune.catalog`).

Layer: domain.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, create_model,
                      field_validator, model_validator)

from losstune import catalog, tasks
from losstune.tasks import IN_MEMORY
from losstune.results import RUNS_SUFFIX


def _one_of(value: Any, allowed: tuple[str, ...]) -> Any:
    """``value`` if it is one of ``allowed``, read when a file is validated: the registered
    tasks and datasets (a Literal would fix them when this module is imported, before a task
    registered later). The message is pydantic's for a Literal."""
    if isinstance(value, str) and value in allowed:
        return value
    words = ", ".join(repr(a) for a in allowed[:-1])
    raise ValueError(f"must be {words} or {allowed[-1]!r}" if words else
                     f"must be {allowed[-1]!r}")


def dataset_names() -> tuple[str, ...]:
    """What ``dataset.name`` allows: the registered tasks' built-in datasets, csv and npz
    files, and (from Python) in-memory arrays."""
    return (*tasks.builtin_datasets(), "csv", "npz", IN_MEMORY)

# allow_inf_nan=False: every float a study file gives (TOML has nan and inf literals) must be
# finite, in every section, range, choice and baseline parameter: the one place that says so.
_FROZEN = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

# Racing trains seed index i on seed + 1000 * i (racing.SEED_STRIDE): up to 100 racing indices
# (RacingSpec.max_seeds), then up to 100 fresh ones from index 100 on (RacingSpec.test_seeds,
# results.FRESH_SEEDS), and every seed derived from the study's must stay a valid 32-bit seed
# (NumPy, scikit-learn, Keras): seed + 200_000 < 2**31.
MAX_SEED = 2**31 - 1 - 200 * 1000
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# An upper bound on a study's budget: far beyond any search, and a number every counter holds.
MAX_TRIALS = 1_000_000
# The most trials one population trains at once: far more than fit a CPU's caches, and a
# population of that many small models still fits a GPU.
MAX_POPULATION = 1024


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
        if self.step is not None and self.high > self.low:
            # Optuna would move high down to the last whole step, with a warning: a step that
            # does not fit the range leaves fewer values than written (one, when step > span).
            steps = (self.high - self.low) / self.step
            if abs(steps - round(steps)) > 1e-9 * max(1.0, steps) or round(steps) < 1:
                raise ValueError(f"step {self.step:g} must divide high − low = "
                                 f"{self.high - self.low:g} a whole number of times")
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


def _check_param(name: str, value: Param, interval: str = "", *,
                 whole: bool = False) -> Param:
    """A number, a range or numeric choices inside ``interval`` (``"[0, 1)"``), every value."""
    _check_numeric(name, value, whole=whole)
    lo, hi = param_bounds(value)
    bounds = catalog.Interval(interval) if interval else None
    if bounds is not None and not (bounds.admits(lo) and bounds.admits(hi)):
        got = f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"
        raise ValueError(f"{name} must lie in {bounds}, got {got}")
    return value


def _check_rule(rule: catalog.Parameter, value: Any, names: tuple[str, ...] = (),
                where: str = "") -> Any:
    """A value (fixed, a range or choices) against one catalog rule; ValueError if it breaks it.
    ``names``: what a ``name`` parameter allows here; ``where``: " for a multiclass task"."""
    if rule.kind == "name":
        if isinstance(value, Range):
            raise ValueError(f"must be one of {', '.join(map(repr, names))} (or {{choices = "
                             "[...]}} of them), not a range")
        for member in value.choices if isinstance(value, Choices) else (value,):
            if member not in names or not isinstance(member, str):
                raise ValueError(f"{rule.name} {member!r} is not valid{where}; allowed: "
                                 f"{', '.join(names)}")
        return value
    if rule.kind == "epochs":
        problem = rule.problem(value)
        if problem:
            raise ValueError(f"{rule.name} {problem}")
        return value
    return _check_param(rule.name, value, rule.interval, whole=rule.kind == "whole")


def _as_param(plain: Any) -> Param:
    """A catalog default search (plain data) as the study file would write it."""
    if isinstance(plain, dict):
        return Choices(choices=tuple(plain["choices"])) if "choices" in plain else Range(**plain)
    return plain


# ------------------------------------------------------------------------------- sections
class DatasetSpec(BaseModel):
    model_config = _FROZEN
    # "arrays": in-memory data given to losstune.search() in Python (not in a study file).
    name: str
    path: str | None = None
    features: tuple[str, ...] | None = None
    # One column, or (multilabel) a list of the label columns.
    target: Union[str, tuple[str, ...], None] = None
    image: StrictBool = False  # inputs as images (for the CNN) instead of flat features
    # A csv or npz file's images: (height, width) or (height, width, channels); a csv row holds
    # their pixels in row-major order, an npz array may hold them as (samples, *image_shape).
    image_shape: tuple[Annotated[int, Field(ge=1, le=4096)], ...] | None = Field(
        None, min_length=2, max_length=3)
    validation: float = Field(0.2, gt=0, lt=1)
    # The test split is scored for every trial (the report's test-split figures): not empty.
    test: float = Field(0.2, gt=0, lt=1)
    long_tail: float = Field(1.0, ge=1, description="imbalance factor n_max / n_min")
    label_noise: float = Field(0.0, ge=0, lt=1)
    outliers: float = Field(0.0, ge=0, lt=1)
    outlier_scale: float = Field(10.0, gt=0)
    max_samples: int | None = Field(None, ge=10)
    # "arrays" only: a hash of the in-memory data, so that a study resumed with other arrays is
    # refused like a study file whose dataset changed (set by losstune.search()).
    fingerprint: str | None = None
    # Style transfer: the content and style image files ("images"), and the long side in
    # pixels both are scaled down to.
    content: str | None = None
    style: str | None = None
    size: int = Field(96, ge=32, le=2048)  # the feature network needs 32 px a side

    @field_validator("name", mode="before")
    @classmethod
    def _known(cls, v: Any) -> Any:
        return _one_of(v, dataset_names())

    @model_validator(mode="after")
    def _check(self) -> "DatasetSpec":
        if self.fingerprint is not None and self.name != IN_MEMORY:
            raise ValueError("fingerprint is set by losstune.search() for in-memory data")
        if self.name in ("csv", "npz"):
            if not self.path:
                raise ValueError(f"dataset {self.name!r} needs path = 'file.{self.name}'")
            if not self.target:
                raise ValueError(f"dataset {self.name!r} needs target = 'column'")
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% for training")
        return self

    @property
    def targets(self) -> tuple[str, ...]:
        """The target columns (arrays): one, or a multilabel task's label columns."""
        if self.target is None:
            return ()
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)


class ModelSpec(BaseModel):
    model_config = _FROZEN
    # "python": a model function given to losstune.search() in Python (not in a study file).
    kind: Literal["mlp", "cnn", "factory", "python"] = "mlp"
    hidden: tuple[int, ...] = (64,)
    filters: tuple[int, ...] = (16, 32)
    dropout: float = Field(0.0, ge=0, lt=1)
    factory: str | None = None
    # The embedding task's output units (the embedding's dimension).
    embedding_dim: int = Field(16, ge=2, le=4096)
    # The gan task's latent vectors (the generator's input width).
    latent_dim: int = Field(16, ge=1, le=4096)
    # The gan task's normalisation: the generator's hidden layers ("batch", DCGAN's), and
    # with "layer" the discriminator's too (never batch: its penalties are per sample).
    normalization: Literal["batch", "layer", "none"] = "batch"
    # Style transfer's feature network: a fixed random multi-scale CNN, or VGG19 with
    # ImageNet weights already on disk (vgg_weights, or Keras's cache).
    features: Literal["random", "vgg19"] = "random"
    vgg_weights: str | None = None

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
    # Trials trained together as one model (losstune/population.py): "auto" chooses from the
    # model's size and the free memory; 1 trains each trial alone.
    population: Union[int, Literal["auto"]] = "auto"
    # The embedding task's batches: batch_size // samples_per_class classes, each with
    # samples_per_class samples (P x K batches, Hermans et al. 2017).
    samples_per_class: int = Field(4, ge=1)
    # Style transfer: optimisation steps an epoch (an epoch is one scored point of its
    # curves, and one step for the pruner).
    steps_per_epoch: int = Field(20, ge=1, le=100_000)

    @field_validator("epochs", "batch_size")
    @classmethod
    def _at_least_one(cls, v: Param, info) -> Param:
        return _check_param(info.field_name, v, "[1, inf)", whole=True)

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

    @field_validator("population", mode="before")
    @classmethod
    def _population(cls, v: Any) -> Any:
        if v != "auto" and (not isinstance(v, int) or isinstance(v, bool)
                            or not 1 <= v <= MAX_POPULATION):
            raise ValueError(f"population must be an int in [1, {MAX_POPULATION}] or 'auto', "
                             f"got {v!r}")
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
        known = tasks.metrics()
        return tuple(known[m][0] for m in self.metrics)


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


class _ScheduleTable(BaseModel):
    model_config = _FROZEN
    names: tuple[str, ...] = catalog.SEARCHED_SCHEDULES

    @field_validator("names")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for n in v:
            if n not in catalog.SCHEDULES:
                raise ValueError(f"unknown schedule {n!r}; allowed: "
                                 f"{', '.join(catalog.SCHEDULES)}")
        if not v:
            raise ValueError("names must list at least one schedule")
        return v


def _schedule_rule(cls: type, value: Any, info: Any) -> Any:
    return _check_rule(catalog.SCHEDULE_PARAMETERS[info.field_name], value)


# [search.schedule]: the schedules to choose among and every schedule parameter's search, one
# field per catalog.SCHEDULE_PARAMETERS entry, checked by its rule (as Schedule checks values).
ScheduleSpace = create_model(
    "ScheduleSpace", __base__=_ScheduleTable,
    __validators__={"_rule": field_validator(*catalog.SCHEDULE_PARAMETERS)(_schedule_rule)},
    **{p.name: (tuple[int, ...] if p.kind == "epochs" else Param, _as_param(p.search))
       for p in catalog.SCHEDULE_PARAMETERS.values()})


class _ModelTermTable(BaseModel):
    model_config = _FROZEN

    @property
    def searched(self) -> dict[str, Param]:
        """What a design carries, with its search (a number is fixed)."""
        return {name: getattr(self, name) for name in type(self).model_fields
                if getattr(self, name) is not None}


def _model_term_space(group: str) -> type:
    """[search.penalty], [search.denoise]: each of the group's catalog.MODEL_TERMS a number, a
    range or choices, or ``true`` for the catalog's default search; absent or false: none."""
    rules = catalog.MODEL_TERMS[group]

    def rule(cls: type, value: Any, info: Any) -> Any:
        if value is True:
            return _as_param(rules[info.field_name].search)
        if value is False or value is None:
            return None
        return _check_rule(rules[info.field_name], value)

    return create_model(f"{group.title()}Space", __base__=_ModelTermTable,
                        __validators__={"_rule": field_validator(*rules)(rule)},
                        **{name: (Union[StrictBool, Param, None], None) for name in rules})


PenaltySpace = _model_term_space("penalty")
DenoiseSpace = _model_term_space("denoise")


def default_space(family: str, task: str = "multiclass") -> dict[str, Param]:
    """A family's search space when the study file has no table for it (the catalog's)."""
    record = catalog.family(family)
    return {p.name: _as_param(p.search_for(task)) for p in record.studied
            if p.search_for(task) is not None}


class SearchSpec(BaseModel):
    """Which families to choose among, the curriculum schedules, and per family (a table named
    after it, ``[search.focal]``) the parameters to search."""

    # Family tables are extra keys, one per catalog family (filled in empty below, so that a
    # stored spec lists every family and compares equal when it is read again).
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    __pydantic_extra__: dict[str, dict[str, Param]] = Field(init=False)
    families: tuple[str, ...] | None = None
    schedule: ScheduleSpace = Field(default_factory=ScheduleSpace)
    penalty: PenaltySpace = Field(default_factory=PenaltySpace)
    denoise: DenoiseSpace = Field(default_factory=DenoiseSpace)

    @model_validator(mode="before")
    @classmethod
    def _every_family(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {**{name: {} for name in catalog.names()}, **data}
        return data

    @property
    def tables(self) -> dict[str, dict[str, Param]]:
        """The study's table per family (empty where it gives none)."""
        return dict(self.model_extra or {})

    def family_space(self, family: str, task: str = "multiclass") -> dict[str, Param]:
        """The family's parameters: the catalog's defaults overridden by the study file."""
        return {**default_space(family, task), **self.tables.get(family, {})}


class RacingSpec(BaseModel):
    """Racing over seeds inside the search (losstune/racing.py)."""

    model_config = _FROZEN
    max_seeds: int = Field(5, ge=1, le=100)
    alpha: float = Field(0.05, gt=0, lt=1)
    # Fresh seeds on which the race's winner and every baseline train after the race: the
    # verdict's tests use them alone (0: test on the racing seeds, optimistic). 8 gives the
    # paired t-test with Holm over 2 or 3 baselines 94-95 % power for a design better by 2
    # run-noise sd (6 gives 81-82 %), before racing has to find the design:
    # tests/test_calibration.py::test_the_default_fresh_seeds_are_justified_by_power.
    test_seeds: int = Field(8, ge=0, le=100)

    @field_validator("test_seeds")
    @classmethod
    def _testable(cls, v: int) -> int:
        if v == 1:  # a paired test needs two seeds; one would never test anything
            raise ValueError("test_seeds must be 0 (test on the racing seeds) or at least 2, "
                             "got 1")
        return v


class Baseline(BaseModel):
    model_config = _FROZEN
    family: str
    params: dict[str, Union[float, int, str, bool]] = {}


def check_study_name(name: str) -> str:
    """A study's name, or ValueError: printable (it is printed in one-line messages, tables and
    file names), and not the name of another study's replicate runs (``NAME:runs``), which
    would resume that study's runs as its own."""
    if not name.isprintable():
        raise ValueError(f"name must be printable text (no line breaks or control "
                         f"characters), got {name!r}")
    if not name.strip():
        raise ValueError(f"name must not be blank, got {name!r}")
    if name.endswith(RUNS_SUFFIX):
        raise ValueError(f"names ending in {RUNS_SUFFIX!r} are kept for the replicate runs of "
                         f"the study before it; got {name!r}")
    return name


class StudySpec(BaseModel):
    """A validated study file."""

    model_config = _FROZEN
    name: str = Field(min_length=1, max_length=200)
    task: str
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
    search: SearchSpec = Field(default_factory=SearchSpec)
    baselines: Union[StrictBool, tuple[Baseline, ...]] = True
    racing: Union[StrictBool, RacingSpec] = True
    notes: str = ""

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, v: Any) -> Any:
        return _check_seed(v)

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, v: Any) -> Any:
        return _one_of(v, tasks.names())

    @field_validator("name")
    @classmethod
    def _printable_name(cls, v: str) -> str:
        return check_study_name(v)

    @property
    def race(self) -> RacingSpec | None:
        """The racing settings, or None (``racing = false``). With several objectives a
        paired race ranks by none of them: the search gives the front's designs and the
        baselines ``max_seeds`` seeds, then fresh seeds (losstune.runner.Search.test)."""
        if self.racing is False:
            return None
        return RacingSpec() if self.racing is True else self.racing

    @property
    def families(self) -> tuple[str, ...]:
        if self.search.families is not None:
            return self.search.families
        return catalog.default_families(self.task)

    @property
    def baseline_designs(self) -> tuple[Baseline, ...]:
        if self.baselines is False:
            return ()
        if self.baselines is True:
            return tuple(Baseline(family=family, params=params)
                         for family, params in catalog.default_baselines(self.task))
        return self.baselines

    @property
    def sampler_seed(self) -> int:
        return self.seed if self.sampler.seed is None else self.sampler.seed

    @property
    def multi_objective(self) -> bool:
        return len(self.objective.metrics) > 1
