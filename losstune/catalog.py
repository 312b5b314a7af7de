"""The loss families losstune knows: one record each, the only list of them there is.

A :class:`Family` holds everything the rest of losstune asks about a family: the tasks it serves;
its parameters, each with the values it allows (an interval such as ``[0, 1)``), its type, its
default and its default search range; the words and symbols people read; what it needs when it is
built (logits, the training-set class counts, the planned epochs); and where its Keras loss class
lives (``"module:Class"``, imported only when a loss is built). The study-file checks
(:mod:`losstune.studyfile`), the search space (:mod:`losstune.space`), the loss builder and its
descriptions (:mod:`losstune.losses`) and the report read these records; the curriculum schedules'
parameter rules are here too, read by the study file's ``[search.schedule]`` and by
:class:`losstune.schedules.Schedule`. Keras keeps its own losses the same way
(``keras.src.losses.ALL_OBJECTS_DICT``).

Plain data and no Keras import, so ``losstune validate`` stays instant. A new family is one
:func:`register` call; its loss class takes the family's parameters as keyword arguments (and
``from_logits``, ``class_counts``, ``epochs`` where it needs them).

Layer: domain.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import numbers
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Mapping

from losstune import registry, tasks

CLASSIFICATION = ("multiclass", "binary")
REGRESSION = ("regression",)
MULTILABEL = ("multilabel",)
COUNT = ("count",)
EMBEDDING = ("embedding",)
AUTOENCODER = ("autoencoder",)

# What a family may need at build time, and the loss description key that carries it.
NEEDS = {"logits": "from_logits", "class_counts": "class_counts", "epochs": "epochs"}
FITTED = tuple(NEEDS.values())  # description keys fitted to a study's data, not the design


# ------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Interval:
    """The numbers a parameter allows, written as people write them: ``"[0, 1)"``,
    ``"(0, inf)"``."""

    text: str

    @cached_property
    def _ends(self) -> tuple[float, float, bool, bool]:
        match = re.fullmatch(r"([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])", self.text)
        if not match:
            raise ValueError(f"an interval reads like '[0, 1)' or '(0, inf)', got {self.text!r}")
        low, high = float(match[2]), float(match[3])
        return low, high, match[1] == "(", match[4] == ")"

    @property
    def low(self) -> float:
        return self._ends[0]

    @property
    def high(self) -> float:
        return self._ends[1]

    def admits(self, x: float) -> bool:
        low, high, low_open, high_open = self._ends
        return (low < x or (not low_open and x == low)) and (x < high or (not high_open
                                                                         and x == high))

    def __str__(self) -> str:
        return self.text


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value).is_integer()


@dataclass(frozen=True)
class Parameter:
    """One parameter: what it allows, its default, its default search, how people read it.

    ``kind``: ``number``, ``whole`` (an integer), ``bool``, ``name`` (one of ``names``),
    ``epochs`` (a list of epochs), ``counts`` (class counts), ``schedule`` (a curriculum
    schedule) or ``params`` (a base loss's arguments). ``role``: ``loss`` (a loss-class
    argument a study file may set), ``base`` (an argument of the family's base loss: a study
    file sets it, the design carries it in ``base_params``) or ``built`` (set by losstune when
    it builds the loss, never in a study).
    ``search``: the default search space, as plain data: a range ``{"low", "high"[, "log",
    "step"]}``, ``{"choices": [...]}``, a fixed value, or None (left out of the space unless a
    study gives it); ``by_task`` replaces it for some tasks. ``quiet``: values not worth
    writing in a design's words (label smoothing 0).
    """

    name: str
    default: Any = None
    interval: str = ""
    kind: str = "number"
    role: str = "loss"
    names: tuple[str, ...] = ()
    search: Any = None
    by_task: Mapping[str, Any] = field(default_factory=dict)
    symbol: str = ""
    unit: str = ""
    quiet: tuple[Any, ...] = ()
    # Weighs a term that reads class probabilities: must be 0 where there are none.
    classes_only: bool = False

    @property
    def bounds(self) -> Interval | None:
        return Interval(self.interval) if self.interval else None

    @property
    def label(self) -> str:
        """How reports and words name it: its symbol (γ), else its name with spaces."""
        return self.symbol or self.name.replace("_", " ")

    @property
    def studied(self) -> bool:
        """Whether a study file may set it."""
        return self.role in ("loss", "base")

    def search_for(self, task: str) -> Any:
        return self.by_task.get(task, self.search)

    def words(self, value: Any) -> str:
        return f"{self.label} = {format_number(value)}{self.unit}"

    def problem(self, value: Any, names: tuple[str, ...] | None = None) -> str | None:
        """What is wrong with one value ("must be a number in [0, 1], got 2"), or None."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if self.kind == "name":
            allowed = self.names if names is None else names
            return None if value in allowed and isinstance(value, str) else (
                f"must be one of {', '.join(allowed)}, got {value!r}")
        if self.kind == "epochs":
            listed = isinstance(value, (list, tuple))
            if listed and all(_is_whole(m) and self.bounds.admits(m) for m in value):
                return None
            got = list(value) if listed else repr(value)
            return f"must be epochs >= {self.bounds.low:g}, got {got}"
        if self.kind == "counts":
            ok = (isinstance(value, (list, tuple)) and len(value) >= 2
                  and all(_is_number(c) and c >= 0 for c in value) and sum(value) > 0)
            return None if ok else ("must be a list of >= 2 non-negative counts, not all zero, "
                                    f"got {value!r}")
        if self.kind not in ("number", "whole"):
            return None  # schedules and base arguments are checked by what they build
        whole = self.kind == "whole"
        what = "a whole number" if whole else "a number"
        if not _is_number(value) or not math.isfinite(value):
            return f"must be {'a whole' if whole else 'a finite'} number, got {value!r}"
        outside = self.bounds is not None and not self.bounds.admits(value)
        if outside or (whole and not float(value).is_integer()):
            return f"must be {what}{f' in {self.bounds}' if self.bounds else ''}, got {value!r}"
        return None

    def check(self, value: Any, key: str, names: tuple[str, ...] | None = None) -> None:
        """Raise ``ValueError("<key> must be ..., got ...")`` for a value it does not allow."""
        problem = self.problem(value, names)
        if problem:
            raise ValueError(f"{key} {problem}.")


@dataclass(frozen=True)
class Base:
    """A Keras loss a composite family (DynamicLoss) may use as its standard term.

    ``tasks``: the tasks a study may choose it for (none: only from Python). ``classes``: it
    reads class probabilities (so the class-balance term applies). ``defaults``: what it computes
    with when an argument is not given; ``stated``: the arguments a design always writes down.
    """

    name: str
    loss: str
    args: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    classes: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    stated: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """A loss family (see the module docstring).

    ``needs``: build-time needs (keys of :data:`NEEDS`), each always (None) or only when some
    parameters take some values (``{"prior": ("train",)}``). ``also``: other loss classes that
    are this family (Keras's own, for :func:`losstune.losses.describe_loss`). ``default_for``:
    tasks whose studies search it unless they list their families; ``baseline``: the parameters
    of its reference design, a default baseline of those tasks. ``contour``: two parameters the
    report draws as a contour; ``note``: a sentence for the report's figure. ``bases``,
    ``terms`` and ``schedule_gate`` describe a composite: the base losses its ``base``
    parameter chooses among, its weighted terms, and the weight above 0 of which a curriculum
    schedule is chosen.
    """

    name: str
    tasks: tuple[str, ...]
    loss: str
    params: tuple[Parameter, ...] = ()
    words: str = ""
    title: str = ""
    needs: Mapping[str, Mapping[str, tuple[Any, ...]] | None] = field(default_factory=dict)
    also: tuple[str, ...] = ()
    default_for: tuple[str, ...] = ()
    baseline: Mapping[str, Any] | None = None
    contour: tuple[str, ...] = ()
    note: str = ""
    bases: tuple[Base, ...] = ()
    terms: tuple[str, ...] = ()
    schedule_gate: str = ""
    # The model its designs need, where the task's usual one will not do: "variational" (a
    # VAE: the latent code's mean and log-variance, a sampled code in training).
    model: str = ""

    def param(self, name: str) -> Parameter:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def has(self, name: str) -> bool:
        return any(p.name == name for p in self.params)

    @property
    def studied(self) -> tuple[Parameter, ...]:
        """The parameters a study file may set."""
        return tuple(p for p in self.params if p.studied)

    def arguments(self) -> tuple[str, ...]:
        """The loss class's keyword arguments: its own parameters and what it needs."""
        own = tuple(p.name for p in self.params if p.role != "base")
        return own + tuple(NEEDS[n] for n in self.needs if NEEDS[n] not in own)

    def base(self, name: str) -> Base:
        for b in self.bases:
            if b.name == name:
                return b
        raise ValueError(f"base must be one of {', '.join(b.name for b in self.bases)}, "
                         f"got {name!r}.")

    def choices(self, param: Parameter, task: str | None = None) -> tuple[str, ...]:
        """The names a ``name`` parameter allows (in a study of ``task``, if given)."""
        if param.name == "base" and self.bases:
            return tuple(b.name for b in self.bases if task is None or task in b.tasks)
        return param.names

    def uses(self, name: str, params: Mapping[str, Any]) -> bool:
        """Whether a design with ``params`` reads parameter ``name``: a base argument only when
        its chosen base takes it."""
        if not self.has(name) or self.param(name).role != "base":
            return True
        base = params.get("base", self.param("base").default)
        return name in self.base(base).args

    def needed(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The build-time needs of a design with ``params``."""
        def holds(condition: Mapping[str, tuple[Any, ...]] | None) -> bool:
            return condition is None or all(
                params.get(k, self.param(k).default) in allowed for k, allowed in condition.items())

        return tuple(n for n, condition in self.needs.items() if holds(condition))


# ------------------------------------------------------------------------------ the families
# A rule is written once; families take it with their own default and search (dataclasses.replace).
LABEL_SMOOTHING = Parameter("label_smoothing", 0.0, "[0, 1]", quiet=(0.0,))
GAMMA = Parameter("gamma", 2.0, "[0, inf)", symbol="γ")
ALPHA = Parameter("alpha", 0.25, "[0, 1]", symbol="α")
# Huber's δ acts on targets losstune scaled by their robust sd (losstune.data), not raw units.
DELTA = Parameter("delta", 1.0, "(0, inf)", symbol="δ", unit=" robust sd")
FROM_LOGITS = Parameter("from_logits", False, kind="bool")
# The rules of what a design is given at build time (NEEDS), by description key.
FITTED_RULES = {p.name: p for p in (FROM_LOGITS, Parameter("class_counts", kind="counts"),
                                    Parameter("epochs", 10, "[1, inf)", kind="whole"))}
# The keyword arguments of Keras's losses that a DynamicLoss base may take, with their rules.
ARGUMENTS = {p.name: p for p in (GAMMA, ALPHA, DELTA, LABEL_SMOOTHING, FROM_LOGITS,
                                 Parameter("apply_class_balancing", False, kind="bool"))}

_OURS = "losstune.losses._families:"
_LABELS = "losstune.losses._multilabel:"
_COUNTS = "losstune.losses._counts:"
_EMBED = "losstune.losses._embedding:"
_AE = "losstune.losses._autoencoder:"
DYNAMIC_BASES = (
    Base("categorical_crossentropy", _OURS + "CategoricalCrossentropy",
         ("from_logits", "label_smoothing"), CLASSIFICATION, classes=True,
         defaults={"label_smoothing": 0.0}),
    Base("sparse_categorical_crossentropy", "keras.losses:SparseCategoricalCrossentropy",
         ("from_logits",), classes=True),
    Base("categorical_focal_crossentropy", _OURS + "CategoricalFocalCrossentropy",
         ("alpha", "gamma", "from_logits", "label_smoothing"), CLASSIFICATION, classes=True,
         defaults={"gamma": 2.0, "alpha": 0.25, "label_smoothing": 0.0},
         stated=("gamma", "alpha")),
    Base("binary_crossentropy", "keras.losses:BinaryCrossentropy",
         ("from_logits", "label_smoothing"), classes=True),
    Base("binary_focal_crossentropy", "keras.losses:BinaryFocalCrossentropy",
         ("alpha", "gamma", "apply_class_balancing", "from_logits", "label_smoothing"),
         classes=True),
    Base("huber", _OURS + "Huber", ("delta",), REGRESSION, defaults={"delta": 1.0}),
    Base("mean_squared_error", "keras.losses:MeanSquaredError", (), REGRESSION),
    Base("mean_absolute_error", "keras.losses:MeanAbsoluteError", (), REGRESSION),
    Base("log_cosh", "keras.losses:LogCosh", (), REGRESSION),
    Base("poisson", "keras.losses:Poisson"),
    Base("kl_divergence", _OURS + "KLDivergence", ("from_logits", "label_smoothing"),
         CLASSIFICATION, classes=True, defaults={"label_smoothing": 0.0}),
    # The model of a count task outputs the log of the expected count (losstune.tasks).
    Base("poisson_log_input", _COUNTS + "PoissonLogInput", (), COUNT),
)
DYNAMIC_TERMS = ("standard", "progress", "balance", "curriculum")


def _weight(term: str, default: float, search: Any, **kw: Any) -> Parameter:
    return Parameter(f"w_{term}", default, "[0, inf)", symbol=f"w_{term}", search=search,
                     quiet=(default,), **kw)


_FAMILIES: dict[str, Family] = {}


def _builtin() -> tuple[Family, ...]:
    logits = {"logits": None}
    return (
        Family("cross_entropy", CLASSIFICATION, _OURS + "CategoricalCrossentropy",
               (replace(LABEL_SMOOTHING, search=0.0),),
               words="cross-entropy", title="Cross-entropy", needs=logits,
               also=("keras.losses:CategoricalCrossentropy",), default_for=CLASSIFICATION,
               baseline={"label_smoothing": 0.0}),
        Family("focal", CLASSIFICATION, _OURS + "CategoricalFocalCrossentropy",
               (replace(GAMMA, search={"low": 0.0, "high": 5.0}),
                replace(ALPHA, search={"low": 0.05, "high": 1.0}), LABEL_SMOOTHING),
               words="focal loss", title="Focal loss", needs=logits,
               also=("keras.losses:CategoricalFocalCrossentropy",), default_for=CLASSIFICATION,
               baseline={"gamma": 2.0, "alpha": 0.25},
               # α and γ interact (Lin et al. 2017, Table 1): one view of both.
               contour=("gamma", "alpha")),
        Family("class_balanced", CLASSIFICATION, _OURS + "ClassBalancedCrossentropy",
               # Useful β is >= 0.99 with a few hundred samples per class (Cui et al. 2019).
               (Parameter("beta", 0.999, "[0, 1)", symbol="β",
                          search={"choices": [0.9, 0.99, 0.999, 0.9999]}),
                replace(GAMMA, default=0.0, search=0.0, quiet=(0.0,)), LABEL_SMOOTHING),
               words="class-balanced cross-entropy", title="Class-balanced cross-entropy",
               needs={"logits": None, "class_counts": None}, default_for=CLASSIFICATION),
        Family("poly1", CLASSIFICATION, _OURS + "Poly1Crossentropy",
               (Parameter("epsilon", 1.0, "[-1, inf)", symbol="ε",
                          search={"low": -1.0, "high": 5.0}), LABEL_SMOOTHING),
               words="Poly-1 cross-entropy", title="Poly-1 cross-entropy", needs=logits),
        Family("soft_fbeta", CLASSIFICATION, _OURS + "SoftFBetaLoss",
               (Parameter("beta", 1.0, "(0, inf)", symbol="β",
                          search={"low": 0.5, "high": 2.0}),),
               words="soft F-beta loss", title="Soft F-beta loss", needs=logits),
        # Not multilabel: its class-balance and curriculum terms read one softmax over classes.
        Family("dynamic", CLASSIFICATION + REGRESSION + COUNT,
               "losstune.losses._dynamic:DynamicLoss", (
            Parameter("base", "categorical_crossentropy", kind="name",
                      by_task={"regression": "huber", "count": "poisson_log_input"}),
            _weight("standard", 1.0, 1.0),
            # Fixed at 0 by default: the progress term has no gradient (the audit says so).
            _weight("progress", 0.0, 0.0),
            _weight("balance", 0.0, {"low": 0.0, "high": 1.0},
                    by_task={"regression": 0.0, "count": 0.0},
                    classes_only=True),
            _weight("curriculum", 0.0, {"low": 0.0, "high": 1.0}),
            Parameter("schedule", None, kind="schedule", role="built"),
            Parameter("prior", "uniform", kind="name", names=("uniform", "train"),
                      quiet=("uniform",)),
            *(replace(ARGUMENTS[n], default=None, role="base")
              for n in ("gamma", "alpha", "delta", "label_smoothing")),
            Parameter("base_params", None, kind="params", role="built"),
        ), words="DynamicLoss", title="DynamicLoss",
            needs={"logits": {"base": tuple(b.name for b in DYNAMIC_BASES
                                            if "from_logits" in b.args)},
                   "class_counts": {"prior": ("train",)}, "epochs": None},
            default_for=CLASSIFICATION, bases=DYNAMIC_BASES, terms=DYNAMIC_TERMS,
            schedule_gate="w_curriculum"),
        Family("mse", REGRESSION, "keras.losses:MeanSquaredError", words="MSE",
               title="Mean squared error", default_for=REGRESSION, baseline={}),
        Family("mae", REGRESSION, "keras.losses:MeanAbsoluteError", words="MAE",
               title="Mean absolute error", default_for=REGRESSION),
        Family("huber", REGRESSION, _OURS + "Huber",
               (replace(DELTA, search={"low": 0.1, "high": 5.0, "log": True}),),
               words="Huber loss", title="Huber loss", default_for=REGRESSION,
               baseline={"delta": 1.0},
               note="δ is in robust standard deviations of the training targets."),
        Family("log_cosh", REGRESSION, "keras.losses:LogCosh", words="LogCosh",
               title="LogCosh", default_for=REGRESSION),
        # ------------------------------------------------------------------ multilabel
        Family("binary_crossentropy", MULTILABEL, _LABELS + "BinaryCrossentropy",
               (replace(LABEL_SMOOTHING, search=0.0),),
               words="binary cross-entropy", title="Binary cross-entropy", needs=logits,
               also=("keras.losses:BinaryCrossentropy",), default_for=MULTILABEL,
               baseline={"label_smoothing": 0.0}),
        Family("binary_focal", MULTILABEL, _LABELS + "BinaryFocalCrossentropy",
               (replace(GAMMA, search={"low": 0.0, "high": 5.0}),
                replace(ALPHA, search={"low": 0.05, "high": 0.95}),
                # Keras reads α only with class balancing on: on unless a study says not.
                Parameter("apply_class_balancing", True, kind="bool", quiet=(True,)),
                LABEL_SMOOTHING),
               words="binary focal loss", title="Binary focal loss", needs=logits,
               also=("keras.losses:BinaryFocalCrossentropy",), default_for=MULTILABEL,
               baseline={"gamma": 2.0, "alpha": 0.25},
               contour=("gamma", "alpha")),
        Family("class_balanced_bce", MULTILABEL, _LABELS + "ClassBalancedBinaryCrossentropy",
               (Parameter("beta", 0.999, "[0, 1)", symbol="β",
                          search={"choices": [0.9, 0.99, 0.999, 0.9999]}), LABEL_SMOOTHING),
               words="class-balanced binary cross-entropy",
               title="Class-balanced binary cross-entropy",
               needs={"logits": None, "class_counts": None}, default_for=MULTILABEL),
        Family("sigmoid_soft_fbeta", MULTILABEL, _LABELS + "SigmoidSoftFBeta",
               (Parameter("beta", 1.0, "(0, inf)", symbol="β", search={"low": 0.5, "high": 2.0}),
                Parameter("average", "macro", kind="name", names=("macro", "micro"),
                          search={"choices": ["macro", "micro"]})),
               words="soft F-beta loss over labels", title="Soft F-beta over labels",
               needs=logits),
        # ------------------------------------------------------------------ counts
        Family("poisson", COUNT, _COUNTS + "PoissonLogInput", words="Poisson loss",
               title="Poisson loss", also=("keras.losses:Poisson",), default_for=COUNT,
               baseline={}),
        Family("log1p_mse", COUNT, _COUNTS + "Log1pMeanSquaredError",
               words="MSE of log(1 + count)", title="MSE on log1p counts", default_for=COUNT,
               baseline={}),
        Family("count_huber", COUNT, _COUNTS + "CountHuber",
               (Parameter("delta", 1.0, "(0, inf)", symbol="δ", unit=" counts",
                          search={"low": 0.5, "high": 20.0, "log": True}),),
               words="Huber loss on counts", title="Huber loss on counts", default_for=COUNT,
               note="δ is in counts."),
        # ------------------------------------------------------------------ embeddings
        # Margins are on L2-normalised embeddings: squared distances in [0, 4], cosines in
        # [-1, 1] (losstune.losses._embedding).
        Family("triplet", EMBEDDING, _EMBED + "TripletLoss",
               (Parameter("margin", 0.2, "[0, 4]", symbol="α",
                          search={"low": 0.05, "high": 1.0, "log": True}),
                Parameter("mining", "all", kind="name", names=("all", "semi_hard", "hard"),
                          search={"choices": ["all", "semi_hard", "hard"]})),
               words="triplet loss", title="Triplet loss", default_for=EMBEDDING,
               baseline={"margin": 0.2, "mining": "all"}, contour=()),
        Family("contrastive", EMBEDDING, _EMBED + "ContrastiveLoss",
               (Parameter("margin", 1.0, "[0, 2]", symbol="m",
                          search={"low": 0.25, "high": 2.0}),),
               words="contrastive loss", title="Contrastive loss", default_for=EMBEDDING),
        Family("quadruplet", EMBEDDING, _EMBED + "QuadrupletLoss",
               (Parameter("margin", 0.2, "[0, 4]", symbol="α₁",
                          search={"low": 0.05, "high": 1.0, "log": True}),
                Parameter("margin2", 0.1, "[0, 4]", symbol="α₂",
                          search={"low": 0.02, "high": 0.5, "log": True})),
               words="quadruplet loss", title="Quadruplet loss",
               contour=("margin", "margin2")),
        Family("cosine_embedding", EMBEDDING, _EMBED + "CosineEmbeddingLoss",
               (Parameter("margin", 0.0, "[-1, 1)", symbol="m",
                          search={"low": -0.5, "high": 0.5}),),
               words="cosine embedding loss", title="Cosine embedding loss",
               default_for=EMBEDDING),
        # ------------------------------------------------------------------ autoencoders
        # Inputs scaled to [0, 1]; the model outputs reconstruction logits, then its code.
        Family("reconstruction_mse", AUTOENCODER, _AE + "ReconstructionMSE",
               words="reconstruction MSE", title="Reconstruction MSE", default_for=AUTOENCODER,
               baseline={}),
        Family("reconstruction_mae", AUTOENCODER, _AE + "ReconstructionMAE",
               words="reconstruction MAE", title="Reconstruction MAE",
               default_for=AUTOENCODER),
        Family("reconstruction_huber", AUTOENCODER, _AE + "ReconstructionHuber",
               (Parameter("delta", 0.1, "(0, inf)", symbol="δ",
                          search={"low": 0.01, "high": 0.5, "log": True}),),
               words="reconstruction Huber loss", title="Reconstruction Huber loss",
               default_for=AUTOENCODER, note="δ is in input units (inputs scaled to [0, 1])."),
        Family("reconstruction_bce", AUTOENCODER, _AE + "ReconstructionBCE",
               words="reconstruction cross-entropy", title="Reconstruction cross-entropy",
               default_for=AUTOENCODER),
        Family("vae", AUTOENCODER, _AE + "VAELoss",
               (Parameter("reconstruction", "bce", kind="name", names=("bce", "mse"),
                          search={"choices": ["bce", "mse"]}),
                Parameter("beta", 1.0, "[0, inf)", symbol="β",
                          search={"low": 0.05, "high": 4.0, "log": True}),
                Parameter("schedule", None, kind="schedule", role="built")),
               words="VAE", title="Variational autoencoder (β-VAE)", needs={"epochs": None},
               default_for=AUTOENCODER, baseline={"beta": 1.0, "reconstruction": "bce"},
               # β > 0: a warm-up schedule of the KL term is searched ([search.schedule]).
               schedule_gate="beta", model="variational",
               note="The KL term is β × schedule(epoch) × KL; β = 1 is the ELBO."),
    )


# ------------------------------------------------------------------------------ the registry
def register(family: Family) -> Family:
    """Add a family (its name must be new); every part of losstune sees it from then on.

    Registration lives in this process: ``losstune search --workers N`` starts fresh ones.
    """
    if family.name in _FAMILIES:
        raise ValueError(f"loss family {family.name!r} is registered already.")
    _check_record(family)
    _FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    _FAMILIES.pop(name, None)


def registered(family: Family) -> contextlib.AbstractContextManager[Family]:
    """``family`` registered for the ``with`` block only (tests, notebooks)."""
    return registry.for_block(register, unregister, family)


def _check_record(family: Family) -> None:
    """A record that contradicts itself fails here, not in a study."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", family.name):
        raise ValueError(f"a family name is lower-case letters, digits and _, got "
                         f"{family.name!r}.")
    unknown = [t for t in family.tasks if t not in tasks.TASKS]
    if unknown or not family.tasks or ":" not in family.loss:
        raise ValueError(f"family {family.name!r} needs tasks among "
                         f"{', '.join(tasks.names())} and a loss class as 'module:Class'.")
    params = [p.name for p in family.params]
    if len(set(params)) != len(params) or any(n not in NEEDS for n in family.needs):
        raise ValueError(f"family {family.name!r}: parameter names must be unique and needs "
                         f"among {', '.join(NEEDS)}.")
    for p in family.params:
        for task in family.tasks:
            search = p.search_for(task)
            if isinstance(search, dict):
                points = search.get("choices") or (search["low"], search["high"])
            else:
                points = () if search is None else (search,)
            allowed = family.choices(p, task) if p.kind == "name" else None
            if p.kind in ("number", "whole", "name") and any(p.problem(v, allowed)
                                                             for v in points):
                raise ValueError(f"family {family.name!r}: the default search of {p.name!r} "
                                 f"leaves what it allows ({p.bounds or allowed}).")
    for name in (*family.contour, *((family.schedule_gate,) if family.schedule_gate else ())):
        family.param(name)


for _family in _builtin():
    register(_family)


def families(task: str | None = None) -> tuple[Family, ...]:
    """The registered families (those serving ``task``), in registration order."""
    return tuple(f for f in _FAMILIES.values() if task is None or task in f.tasks)


def names(task: str | None = None) -> tuple[str, ...]:
    return tuple(f.name for f in families(task))


def find(name: Any) -> Family | None:
    return _FAMILIES.get(name) if isinstance(name, str) else None


def family(name: Any) -> Family:
    found = find(name)
    if found is None:
        raise ValueError(f"family must be one of {', '.join(_FAMILIES)}, got {name!r}.")
    return found


def default_families(task: str) -> tuple[str, ...]:
    return tuple(f.name for f in families(task) if task in f.default_for)


def default_baselines(task: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """(family, params) of the reference designs a study of ``task`` compares with."""
    return tuple((f.name, dict(f.baseline)) for f in families(task)
                 if f.baseline is not None and task in f.default_for)


def load(reference: str) -> Any:
    """The object a ``"module:Name"`` reference names (a loss class), imported now."""
    module, _, attr = reference.partition(":")
    target: Any = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


# ------------------------------------------------------------------------------ reading
def title(name: str) -> str:
    """A family's name as a heading ("Focal loss"); its key when it is not registered."""
    found = find(name)
    return found.title or found.words or name if found else name


def label(param: str, family_name: str | None = None) -> str:
    """A parameter's short name as reports write it (γ, label smoothing, w_balance)."""
    found = find(family_name)
    if found is not None and found.has(param):
        return found.param(param).label
    return param.replace("_", " ")


def format_number(v: Any) -> str:
    """A parameter as shown to people: 3 significant digits, but never hiding how close to 1 it is.

    β = 0.9999 at 3 significant digits reads "1", which is invalid for a class-balanced β and
    indistinguishable from 0.9995; so within 0.01 of ±1 the distance to 1 keeps 2 significant
    digits (0.9999, 0.99951, 1.0002). Ints, bools and non-numbers are shown with ``str``.
    """
    if not isinstance(v, numbers.Real) or isinstance(v, numbers.Integral):
        return str(v)
    v = float(v)
    distance = abs(abs(v) - 1.0)
    if math.isfinite(v) and 0 < distance < 0.01:
        decimals = math.ceil(-math.log10(distance)) + 1
        return f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def fill_from_data(description: Mapping[str, Any], *, class_counts: Any = None,
                   epochs: int | None = None, from_logits: bool | None = None) -> dict[str, Any]:
    """The description with what its design needs from the data filled in: the class counts,
    the planned epochs, whether the model outputs logits. A value not given (None) stays as the
    description has it; one the design does not need is ignored."""
    params = dict(description.get("params", {}))
    found = find(description.get("family"))
    given = {"logits": from_logits, "class_counts": class_counts, "epochs": epochs}
    for need in found.needed(params) if found else ():
        value = given[need]
        if value is not None:
            params[NEEDS[need]] = ([int(c) for c in value] if need == "class_counts"
                                   else int(value) if need == "epochs" else bool(value))
    return {**description, "params": params}


# ------------------------------------------------------------------------------ schedules
# One rule per schedule parameter, for Schedule and for a study's [search.schedule]. Bounds keep
# every schedule computable: a sigmoid steeper than 500 overflows math.exp, and a rate or
# steepness below 1e-6 makes the normalised ramp divide by zero (it is linear long before that).
SCHEDULE_PARAMETERS = {p.name: p for p in (
    Parameter("value", interval="(-inf, inf)", search=1.0),
    Parameter("start", interval="(-inf, inf)", search=0.0),
    Parameter("end", interval="(-inf, inf)", search={"low": 0.0, "high": 1.0}),
    Parameter("warmup", interval="[0, inf)", kind="whole", search=0),
    Parameter("rate", interval="[1e-6, inf)", search={"low": 0.1, "high": 5.0, "log": True}),
    Parameter("steepness", interval="[1e-6, 500]", search={"low": 2.0, "high": 20.0}),
    Parameter("midpoint", interval="[0, 1]", search={"low": 0.2, "high": 0.8}),
    Parameter("gamma", interval="[0, inf)", search={"low": 0.1, "high": 1.0}),
    Parameter("milestones", interval="[0, inf)", kind="epochs", search=(2, 4)),
)}  # (their defaults are each schedule's own, below)
# Each schedule: the parameters it reads, with its own defaults.
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {"value": 1.0},
    "linear": {"start": 0.0, "end": 1.0, "warmup": 0},
    "step": {"start": 1.0, "gamma": 0.5, "milestones": (2, 4)},
    "exponential": {"start": 1.0, "end": 0.0, "rate": 0.5, "warmup": 0},
    "cosine": {"start": 1.0, "end": 0.0, "warmup": 0},
    "sigmoid": {"start": 0.0, "end": 1.0, "steepness": 10.0, "midpoint": 0.5, "warmup": 0},
}
SEARCHED_SCHEDULES = ("constant", "linear", "cosine")  # a study's default [search.schedule]


# ------------------------------------------------------------------------------ penalties
# What a design adds to its loss through the model, for any family: penalties through the
# model's add_loss (losstune.losses._penalty), and an autoencoder's input noise (a denoising
# autoencoder, losstune.losses._autoencoder). Searched like a loss parameter
# (``penalty.l1_activity``, ``denoise.sigma``) and part of the design's identity, words and
# export; a baseline has none. The default search is the one a study's ``[search.penalty]``
# takes for ``l1_activity = true``.
MODEL_TERMS: dict[str, dict[str, Parameter]] = {
    "penalty": {p.name: p for p in (
        Parameter("l1_activity", 0.0, "[0, inf)", symbol="L1 activity penalty",
                  search={"low": 1e-6, "high": 1e-2, "log": True}),
        Parameter("l2_kernel", 0.0, "[0, inf)", symbol="L2 kernel decay λ",
                  search={"low": 1e-6, "high": 1e-2, "log": True}))},
    "denoise": {p.name: p for p in (
        Parameter("sigma", 0.0, "[0, inf)", symbol="denoising input noise σ",
                  search={"low": 0.01, "high": 0.5, "log": True}),)},
}
PENALTIES = MODEL_TERMS["penalty"]


def model_term_words(description: Mapping[str, Any]) -> str:
    """"L1 activity penalty = 0.0001, L2 kernel decay λ = 0.001" (the non-zero ones)."""
    return ", ".join(rules[k].words(v) for group, rules in MODEL_TERMS.items()
                     for k, v in sorted((description.get(group) or {}).items())
                     if k in rules and v)
