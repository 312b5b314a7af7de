"""The loss library: DynamicLoss and the families a study searches over.

Everything is written with ``keras.ops`` so it runs on the TensorFlow, JAX and PyTorch backends.
Where Keras already has a loss (cross-entropy, focal, Huber, MSE...) it is used as is; this module
adds only what Keras lacks: class-balanced cross-entropy (Cui et al. 2019), Poly-1 (Leng et al.
2022), a macro soft F-beta loss and the composite :class:`DynamicLoss`.

A loss is described by plain data, a *loss description*::

    {"family": "focal", "params": {"gamma": 2.0, "alpha": 0.25, "from_logits": true}}

:func:`build_loss` turns a description into a ready Keras loss, :func:`describe_loss` goes back,
and :func:`load_loss` reads a description exported by ``losstune export``. Studies store,
export and report exactly that description, so every view of a result describes one object.

Where this module differs from the seed DynamicLoss design (docs/design-notes in README):

* the epoch lives in a non-trainable ``keras.Variable`` assigned by :class:`DynamicLossCallback`,
  not in a Python int (a compiled train step freezes a Python number at trace time);
* the class-balance term is KL(prior || batch-mean prediction); the seed's
  CE(mean(y_true), uniform) is the constant log C and has no gradient;
* the curriculum term is summed over classes *per sample* (then averaged over the batch by the
  reduction) instead of over the whole batch, so its scale does not grow with the batch size.

Every numeric hyperparameter a loss reads while computing (γ, α, δ, ε, β, label smoothing, the
DynamicLoss weights) lives in a non-trainable ``keras.Variable``, not a Python float. A compiled
train step reads a Python float once, when it is traced, but reads a variable at every step, so
:func:`retune` can give a compiled model's loss the hyperparameters of the next trial and the
traced step is reused instead of traced again (:mod:`losstune.compiled`). :func:`compiled_key`
says which losses can share one traced step. Cross-entropy, focal loss and Huber are Keras's own
functions (``keras.losses.categorical_crossentropy`` ...) called with those variables.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any, Mapping

import keras
from keras import ops

from losstune.schedules import Schedule, progress

PACKAGE = "losstune"
_EPS = 1e-7

# --------------------------------------------------------------------------------------------
# Keras built-ins usable as DynamicLoss's standard component, with the arguments each accepts.
# --------------------------------------------------------------------------------------------
BASE_LOSSES: dict[str, tuple[type, tuple[str, ...]]] = {
    "categorical_crossentropy": (
        None,  # losstune's CategoricalCrossentropy, defined below (label smoothing in a variable)
        ("from_logits", "label_smoothing"),
    ),
    "sparse_categorical_crossentropy": (
        keras.losses.SparseCategoricalCrossentropy,
        ("from_logits",),
    ),
    "categorical_focal_crossentropy": (
        None,  # losstune's CategoricalFocalCrossentropy, defined below
        ("alpha", "gamma", "from_logits", "label_smoothing"),
    ),
    "binary_crossentropy": (
        keras.losses.BinaryCrossentropy,
        ("from_logits", "label_smoothing"),
    ),
    "binary_focal_crossentropy": (
        keras.losses.BinaryFocalCrossentropy,
        ("alpha", "gamma", "apply_class_balancing", "from_logits", "label_smoothing"),
    ),
    "huber": (None, ("delta",)),  # losstune's Huber, defined below (keeps delta in its config)
    "mean_squared_error": (keras.losses.MeanSquaredError, ()),
    "mean_absolute_error": (keras.losses.MeanAbsoluteError, ()),
    "log_cosh": (keras.losses.LogCosh, ()),
    "poisson": (keras.losses.Poisson, ()),
    "kl_divergence": (keras.losses.KLDivergence, ()),
}
CLASSIFICATION_BASES = {
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "categorical_focal_crossentropy",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "kl_divergence",
}

COMPONENTS = ("standard", "progress", "balance", "curriculum")


# --------------------------------------------------------------------------------------------
# Argument checks: ValueError naming the argument, the value and what is allowed.
# --------------------------------------------------------------------------------------------
def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}.")


def _check_number(name: str, value: Any) -> float:
    _check(name, value, isinstance(value, (int, float)) and not isinstance(value, bool)
           and math.isfinite(value), "a finite number")
    return float(value)


def validate_params(params: Mapping[str, Any], prefix: str = "") -> None:
    """Range checks shared by every loss argument of the same name."""
    for key, value in params.items():
        name = prefix + key
        if key in ("gamma",):
            _check(name, value, _check_number(name, value) >= 0, "a number >= 0")
        elif key in ("alpha", "label_smoothing"):
            _check(name, value, 0 <= _check_number(name, value) <= 1, "a number in [0, 1]")
        elif key == "delta":
            _check(name, value, _check_number(name, value) > 0, "a number > 0")
        elif key == "beta" and prefix.endswith("class_balanced."):
            _check(name, value, 0 <= _check_number(name, value) < 1, "a number in [0, 1)")
        elif key == "beta":
            _check(name, value, _check_number(name, value) > 0, "a number > 0")
        elif key == "epsilon":
            _check(name, value, _check_number(name, value) >= -1, "a number >= -1")
        elif key.startswith("w_"):
            _check(name, value, _check_number(name, value) >= 0, "a number >= 0")
        elif key in ("from_logits", "apply_class_balancing"):
            _check(name, value, isinstance(value, bool), "true or false")


def _check_counts(class_counts: Any, name: str = "class_counts") -> list[float] | None:
    if class_counts is None:
        return None
    counts = [float(c) for c in class_counts]
    _check(name, class_counts, len(counts) >= 2 and all(c >= 0 for c in counts)
           and sum(counts) > 0, "a list of >= 2 non-negative counts, not all zero")
    return counts


def _probabilities(y_pred, from_logits: bool):
    """Class probabilities from a model output; a single sigmoid unit becomes [1 - p, p]."""
    if y_pred.shape[-1] == 1:
        p = ops.sigmoid(y_pred) if from_logits else y_pred
        return ops.concatenate([1.0 - p, p], axis=-1)
    return ops.softmax(y_pred, axis=-1) if from_logits else y_pred


def _smooth(y_true, label_smoothing):
    """Label smoothing; ``label_smoothing`` may be a variable (then it is always applied: a
    compiled step cannot branch on its value, and smoothing by 0 is exact)."""
    if isinstance(label_smoothing, (int, float)) and not label_smoothing:
        return y_true
    num_classes = ops.cast(ops.shape(y_true)[-1], y_true.dtype)
    return y_true * (1.0 - label_smoothing) + label_smoothing / num_classes


def _per_sample(values, y_pred):
    """Broadcast a batch-level scalar to one value per sample, so reductions and weights apply."""
    return values * ops.ones_like(y_pred[..., 0])


class _Tunable:
    """Hyperparameters in non-trainable variables (``self._hp``), so :func:`retune` can change
    them under a compiled train step.

    ``_variable_keys`` are the config keys that may differ between two losses sharing one traced
    step: those held in ``_hp`` and those read only from Python (a schedule, the epoch count).
    """

    _variable_keys: tuple[str, ...] = ()

    def _init_hp(self, **values: Any) -> None:
        self._hp = {name: keras.Variable(value, trainable=False, dtype="float32", name=name)
                    for name, value in values.items()}

    def _h(self, name: str, dtype):
        return ops.cast(self._hp[name], dtype)


class _Serializable(_Tunable, keras.losses.Loss):
    """Common base: ``get_config`` holds exactly the constructor's hyperparameters."""

    _config_keys: tuple[str, ...] = ()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in self._config_keys:
            value = getattr(self, key)
            config[key] = value.to_dict() if isinstance(value, Schedule) else value
        return config


# --------------------------------------------------------------------------------------------
# Families Keras does not have.
# --------------------------------------------------------------------------------------------
def class_balanced_weights(class_counts, beta: float) -> list[float]:
    """Cui et al. 2019: w_c ∝ (1 - β) / (1 - β^n_c), normalised so the weights sum to C.

    A class with zero training samples gets the largest weight seen (its effective number is
    undefined); β = 0 gives every class weight 1, i.e. plain cross-entropy.
    """
    counts = _check_counts(class_counts)
    effective = [(1.0 - beta ** n) / (1.0 - beta) if n > 0 else 0.0 for n in counts]
    raw = [1.0 / e if e > 0 else 0.0 for e in effective]
    top = max(raw)
    raw = [r if r > 0 else top for r in raw]
    scale = len(raw) / sum(raw)
    return [r * scale for r in raw]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassBalancedCrossentropy(_Serializable):
    """Cross-entropy (optionally focal) weighted per class by the effective number of samples.

    ``class_counts`` are the training-set counts per class; they are part of the config so an
    exported loss rebuilds with the same weights.
    """

    _config_keys = ("class_counts", "beta", "gamma", "label_smoothing", "from_logits")
    _variable_keys = ("class_counts", "beta", "gamma", "label_smoothing", "weights")

    def __init__(self, class_counts, beta: float = 0.999, gamma: float = 0.0,
                 label_smoothing: float = 0.0, from_logits: bool = False,
                 reduction="sum_over_batch_size", name="class_balanced_crossentropy",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        validate_params({"beta": beta, "gamma": gamma, "label_smoothing": label_smoothing,
                         "from_logits": from_logits}, prefix="class_balanced.")
        self.class_counts = _check_counts(class_counts, "class_balanced.class_counts")
        if self.class_counts is None:
            raise ValueError("class_balanced.class_counts must be the training-set count of "
                             "every class, got None.")
        self.beta, self.gamma = float(beta), float(gamma)
        self.label_smoothing, self.from_logits = float(label_smoothing), from_logits
        self.weights = class_balanced_weights(self.class_counts, self.beta)
        self._init_hp(weights=self.weights, gamma=self.gamma,
                      label_smoothing=self.label_smoothing)

    def call(self, y_true, y_pred):
        dtype = y_pred.dtype
        y_true = _smooth(ops.cast(y_true, dtype), self._h("label_smoothing", dtype))
        p = ops.clip(_probabilities(y_pred, self.from_logits), _EPS, 1.0 - _EPS)
        # (1 - p)^0 = 1 exactly, so γ = 0 is plain weighted cross-entropy.
        per_class = -y_true * ops.log(p) * ops.power(1.0 - p, self._h("gamma", dtype))
        return ops.sum(per_class * self._h("weights", dtype), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Poly1Crossentropy(_Serializable):
    """Poly-1 (Leng et al. 2022): CE + ε (1 - p_t), with p_t = <y_true, p> (smoothed labels)."""

    _config_keys = ("epsilon", "label_smoothing", "from_logits")
    _variable_keys = ("epsilon", "label_smoothing")

    def __init__(self, epsilon: float = 1.0, label_smoothing: float = 0.0,
                 from_logits: bool = False, reduction="sum_over_batch_size",
                 name="poly1_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        validate_params({"epsilon": epsilon, "label_smoothing": label_smoothing,
                         "from_logits": from_logits}, prefix="poly1.")
        self.epsilon, self.label_smoothing = float(epsilon), float(label_smoothing)
        self.from_logits = from_logits
        self._init_hp(epsilon=self.epsilon, label_smoothing=self.label_smoothing)

    def call(self, y_true, y_pred):
        dtype = y_pred.dtype
        y_true = _smooth(ops.cast(y_true, dtype), self._h("label_smoothing", dtype))
        ce = keras.losses.categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)
        p_t = ops.sum(y_true * _probabilities(y_pred, self.from_logits), axis=-1)
        return ce + self._h("epsilon", dtype) * (1.0 - p_t)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftFBetaLoss(_Serializable):
    """1 - soft F-beta, macro-averaged over classes on the batch.

    The seed version sums true/false positives over *all* classes and samples (micro F-beta).
    With softmax outputs micro soft-F1 is exactly the mean probability of the true class, so it
    is not an F-score of anything; per-class (macro) averaging is what makes it one. F-beta is a
    batch statistic: every sample gets the batch's value.
    """

    _config_keys = ("beta", "from_logits")
    _variable_keys = ("beta",)

    def __init__(self, beta: float = 1.0, from_logits: bool = False,
                 reduction="sum_over_batch_size", name="soft_fbeta", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        validate_params({"beta": beta, "from_logits": from_logits}, prefix="soft_fbeta.")
        self.beta, self.from_logits = float(beta), from_logits
        self._init_hp(beta=self.beta)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = _probabilities(y_pred, self.from_logits)
        if y_true.shape[-1] == 1 and p.shape[-1] == 2:
            y_true = ops.concatenate([1.0 - y_true, y_true], axis=-1)
        tp = ops.sum(y_true * p, axis=0)
        fp = ops.sum((1.0 - y_true) * p, axis=0)
        fn = ops.sum(y_true * (1.0 - p), axis=0)
        b2 = ops.square(self._h("beta", y_pred.dtype))
        fbeta = (1.0 + b2) * tp / ((1.0 + b2) * tp + b2 * fn + fp + _EPS)
        return _per_sample(1.0 - ops.mean(fbeta), y_pred)


# Keras's cross-entropy, focal and Huber losses, with their hyperparameters in variables
# (see _Tunable). The arithmetic is Keras's own function; only where the numbers live differs.
@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoricalCrossentropy(_Tunable, keras.losses.CategoricalCrossentropy):
    """``keras.losses.CategoricalCrossentropy`` with ``label_smoothing`` in a variable."""

    _variable_keys = ("label_smoothing",)

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs):
        validate_params({"label_smoothing": label_smoothing}, prefix="cross_entropy.")
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, **kwargs)
        self._init_hp(label_smoothing=float(label_smoothing))

    def call(self, y_true, y_pred):
        dtype = y_pred.dtype
        y_true = _smooth(ops.cast(y_true, dtype), self._h("label_smoothing", dtype))
        return keras.losses.categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                                     axis=self.axis)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoricalFocalCrossentropy(_Tunable, keras.losses.CategoricalFocalCrossentropy):
    """``keras.losses.CategoricalFocalCrossentropy`` with γ, α and smoothing in variables."""

    _variable_keys = ("alpha", "gamma", "label_smoothing")

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0, **kwargs):
        validate_params({"alpha": alpha, "gamma": gamma, "label_smoothing": label_smoothing},
                        prefix="focal.")
        super().__init__(alpha=alpha, gamma=gamma, from_logits=from_logits,
                         label_smoothing=label_smoothing, **kwargs)
        self._init_hp(alpha=float(alpha), gamma=float(gamma),
                      label_smoothing=float(label_smoothing))

    def call(self, y_true, y_pred):
        dtype = y_pred.dtype
        y_true = _smooth(ops.cast(y_true, dtype), self._h("label_smoothing", dtype))
        return keras.losses.categorical_focal_crossentropy(
            y_true, y_pred, alpha=self._h("alpha", dtype), gamma=self._h("gamma", dtype),
            from_logits=self.from_logits, axis=self.axis)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Huber(_Tunable, keras.losses.Huber):
    """keras.losses.Huber whose config keeps ``delta`` (and whose δ lives in a variable).

    Keras 3.15's ``Huber.get_config`` returns only name and reduction, so a saved model compiled
    with ``Huber(delta=2.5)`` reloads with δ = 1 (tests/test_losses.py shows it). Subclassing
    fixes the round trip without re-implementing the loss.
    """

    _variable_keys = ("delta",)

    def __init__(self, delta: float = 1.0, reduction="sum_over_batch_size", name="huber_loss",
                 dtype=None):
        validate_params({"delta": delta}, prefix="huber.")
        super().__init__(delta=delta, reduction=reduction, name=name, dtype=dtype)
        self.delta = float(delta)
        self._init_hp(delta=self.delta)

    def call(self, y_true, y_pred):
        return keras.losses.huber(y_true, y_pred, delta=self._h("delta", y_pred.dtype))

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


# --------------------------------------------------------------------------------------------
# DynamicLoss
# --------------------------------------------------------------------------------------------
def make_base_loss(base: str, base_params: Mapping[str, Any] | None = None) -> keras.losses.Loss:
    """A Keras built-in by name, unreduced (DynamicLoss reduces the sum of its components)."""
    if base not in BASE_LOSSES:
        raise ValueError(f"base must be one of {', '.join(BASE_LOSSES)}, got {base!r}.")
    cls, allowed = BASE_LOSSES[base]
    cls = cls or {"huber": Huber, "categorical_crossentropy": CategoricalCrossentropy,
                  "categorical_focal_crossentropy": CategoricalFocalCrossentropy}[base]
    params = dict(base_params or {})
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"base loss {base!r} has no argument {unknown[0]!r}; "
                         f"allowed: {', '.join(allowed) or 'none'}.")
    validate_params(params, prefix="base_params.")
    return cls(reduction=None, **params)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DynamicLoss(_Serializable):
    """standard + learning progress + class balance + curriculum, each with its own weight.

    * standard: ``w_standard`` × a Keras built-in loss (``base`` + ``base_params``);
    * progress: ``w_progress`` × epoch / (epochs - 1), a per-epoch offset (no gradient, by design
      of the seed; the audit warns about it);
    * balance: ``w_balance`` × KL(prior || mean predicted distribution over the batch), prior
      uniform or the training-set class frequencies (``prior="train"`` with ``class_counts``);
    * curriculum: ``w_curriculum`` × schedule(epoch) × 0.1 × Σ_classes |sin(p)| per sample.

    The epoch, the progress and the schedule factor are non-trainable Keras variables that
    :class:`DynamicLossCallback` assigns at the start of every epoch, so they change inside a
    compiled train step. Use ``loss.callback()`` in ``model.fit(callbacks=[...])``.
    """

    _config_keys = ("base", "base_params", "w_standard", "w_progress", "w_balance",
                    "w_curriculum", "schedule", "epochs", "prior", "class_counts")
    # base_params: the base loss's own variables (its compiled_key covers what must match).
    _variable_keys = ("base_params", "w_standard", "w_progress", "w_balance", "w_curriculum",
                      "schedule", "epochs", "class_counts")

    def __init__(self, base: str = "categorical_crossentropy",
                 base_params: Mapping[str, Any] | None = None, w_standard: float = 1.0,
                 w_progress: float = 0.0, w_balance: float = 0.0, w_curriculum: float = 0.0,
                 schedule: Schedule | Mapping[str, Any] | str | None = None, epochs: int = 10,
                 prior: str = "uniform", class_counts=None,
                 reduction="sum_over_batch_size", name="dynamic_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.base, self.base_params = base, dict(base_params or {})
        self._base = make_base_loss(base, self.base_params)
        weights = {"w_standard": w_standard, "w_progress": w_progress,
                   "w_balance": w_balance, "w_curriculum": w_curriculum}
        validate_params(weights, prefix="dynamic.")
        self.w_standard, self.w_progress = float(w_standard), float(w_progress)
        self.w_balance, self.w_curriculum = float(w_balance), float(w_curriculum)
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule.from_dict(schedule)
        _check("dynamic.epochs", epochs, isinstance(epochs, int) and epochs >= 1, "an int >= 1")
        self.epochs = epochs
        _check("dynamic.prior", prior, prior in ("uniform", "train"), "'uniform' or 'train'")
        self.prior = prior
        self.class_counts = _check_counts(class_counts, "dynamic.class_counts")
        if prior == "train" and self.class_counts is None:
            raise ValueError("dynamic.class_counts must be given when prior is 'train', got None.")
        if base not in CLASSIFICATION_BASES and self.w_balance > 0:
            raise ValueError(f"dynamic.w_balance must be 0 for the regression base {base!r}, "
                             f"got {self.w_balance}; the class-balance term needs class "
                             "probabilities.")
        self.from_logits = bool(self.base_params.get("from_logits", False))
        self.epoch = keras.Variable(0.0, trainable=False, dtype="float32", name="epoch")
        self.progress = keras.Variable(0.0, trainable=False, dtype="float32", name="progress")
        self.curriculum_factor = keras.Variable(
            self.schedule.value(0, epochs), trainable=False, dtype="float32",
            name="curriculum_factor")
        counts = self.class_counts or [1.0, 1.0]
        prior = [c / sum(counts) for c in counts]
        self._init_hp(w_standard=self.w_standard, w_progress=self.w_progress,
                      w_balance=self.w_balance, w_curriculum=self.w_curriculum, prior=prior,
                      # Σ prior · log prior, the constant half of the KL balance term
                      prior_log_prior=sum(q * math.log(max(q, _EPS)) for q in prior))
        self._hp.update(epoch=self.epoch, progress=self.progress,
                        curriculum_factor=self.curriculum_factor)

    # The callback calls this; tests and user loops may too.
    def set_epoch(self, epoch: int) -> None:
        self.epoch.assign(float(epoch))
        self.progress.assign(progress(epoch, self.epochs))
        self.curriculum_factor.assign(self.schedule.value(epoch, self.epochs))

    def callback(self) -> "DynamicLossCallback":
        return DynamicLossCallback(self)

    def components(self, y_true, y_pred) -> dict[str, Any]:
        """Each weighted component, one value per sample; their sum is the loss."""
        terms = self._terms(y_true, y_pred)
        return {c: terms[c] if c in self._PER_SAMPLE else _per_sample(terms[c], y_pred)
                for c in COMPONENTS}

    # standard and curriculum vary per sample; progress and balance are one value per batch,
    # kept scalar inside the train step (broadcast once, in call) to save ops on small models.
    _PER_SAMPLE = ("standard", "curriculum")

    def _terms(self, y_true, y_pred) -> dict[str, Any]:
        dtype = y_pred.dtype
        out = {"standard": self._h("w_standard", dtype)
               * ops.cast(self._base.call(y_true, y_pred), dtype),
               "progress": self._h("w_progress", dtype) * self._h("progress", dtype)}
        if self.base in CLASSIFICATION_BASES:
            p = _probabilities(y_pred, self.from_logits)
            out["balance"] = self._h("w_balance", dtype) * self._balance(p)
        else:
            p = y_pred
            out["balance"] = ops.zeros((), dtype=dtype)
        scale = self._h("w_curriculum", dtype) * self._h("curriculum_factor", dtype) * 0.1
        out["curriculum"] = scale * ops.sum(ops.abs(ops.sin(p)), axis=-1)
        return out

    def _balance(self, p):
        """KL(prior || mean prediction) = Σ prior·log prior − Σ prior·log mean."""
        log_mean = ops.log(ops.maximum(ops.mean(p, axis=0), _EPS))
        if self.prior == "train":
            return (self._h("prior_log_prior", p.dtype)
                    - ops.sum(self._h("prior", p.dtype) * log_mean))
        return -ops.mean(log_mean) - ops.log(ops.cast(ops.shape(log_mean)[-1], p.dtype))

    def call(self, y_true, y_pred):
        terms = self._terms(y_true, y_pred)
        # Kept for ComponentMeans, which Keras updates right after the loss in the same train
        # step with the very same tensors; it then logs these instead of computing them again.
        self._last_terms = (y_true, y_pred, terms)
        return (terms["standard"] + terms["curriculum"]) + (terms["progress"] + terms["balance"])

    def _terms_for(self, y_true, y_pred) -> dict[str, Any]:
        """The terms of this exact (y_true, y_pred): those the loss just computed when it was
        called with these tensor objects, else computed now."""
        last, self._last_terms = getattr(self, "_last_terms", None), None
        if last is not None and last[0] is y_true and last[1] is y_pred:
            return last[2]
        return self._terms(y_true, y_pred)


class DynamicLossCallback(keras.callbacks.Callback):
    """Assigns the loss's epoch variables at the start of every epoch (0-based, like Keras).

    The seed updates a Python int in ``on_epoch_end``: Keras never calls a loss's
    ``on_epoch_end``, the value would be one epoch late, and a compiled step would not see it.
    """

    def __init__(self, loss: DynamicLoss):
        super().__init__()
        self.loss = loss

    def on_epoch_begin(self, epoch, logs=None):
        self.loss.set_epoch(epoch)


class ComponentMeans(keras.metrics.Metric):
    """Mean of every DynamicLoss component, logged as ``loss_<component>`` each epoch.

    One metric for all four components: four separate metrics would trace the components four
    times into the train step. In a train step it reuses the terms the loss has just computed
    from the same tensors (TensorFlow and torch pass the loss and the metrics the same objects);
    otherwise (JAX, whose loss runs inside its gradient trace) it computes them again.
    Metric state, not variables written by the loss, because Keras carries metric state through
    the compiled step on every backend (the JAX step is stateless and would drop a loss's own
    writes).
    """

    def __init__(self, loss: "DynamicLoss", name: str = "loss_components", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = loss
        # Sums of the components over samples, in COMPONENTS order, and the sample count.
        self.sums = self.add_variable((len(COMPONENTS),), initializer="zeros", name="sums")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        terms = self.loss._terms_for(y_true, y_pred)
        n = ops.cast(ops.shape(y_pred)[0], self.dtype)
        sums = [ops.cast(ops.sum(terms[c]), self.dtype) * (1.0 if c in DynamicLoss._PER_SAMPLE
                                                          else n) for c in COMPONENTS]
        self.sums.assign_add(ops.stack(sums))
        self.count.assign_add(n)

    def result(self):
        means = self.sums / ops.maximum(self.count, 1.0)
        return {f"loss_{c}": means[i] for i, c in enumerate(COMPONENTS)}

def component_metrics(loss: keras.losses.Loss) -> list[keras.metrics.Metric]:
    """The per-component metric of a DynamicLoss (none for other losses)."""
    if not isinstance(loss, DynamicLoss):
        return []
    return [ComponentMeans(loss)]


def loss_callbacks(loss: keras.losses.Loss) -> list[keras.callbacks.Callback]:
    return [loss.callback()] if isinstance(loss, DynamicLoss) else []


# --------------------------------------------------------------------------------------------
# Families and descriptions.
# --------------------------------------------------------------------------------------------
# family -> (tasks it is valid for, parameters it takes with defaults)
FAMILIES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "cross_entropy": (("multiclass", "binary"), {"label_smoothing": 0.0}),
    "focal": (("multiclass", "binary"), {"gamma": 2.0, "alpha": 0.25, "label_smoothing": 0.0}),
    "class_balanced": (("multiclass", "binary"), {"beta": 0.999, "gamma": 0.0,
                                                  "label_smoothing": 0.0, "class_counts": None}),
    "poly1": (("multiclass", "binary"), {"epsilon": 1.0, "label_smoothing": 0.0}),
    "soft_fbeta": (("multiclass", "binary"), {"beta": 1.0}),
    "dynamic": (("multiclass", "binary", "regression"), {
        "base": "categorical_crossentropy", "base_params": {}, "w_standard": 1.0,
        "w_progress": 0.0, "w_balance": 0.0, "w_curriculum": 0.0, "schedule": None,
        "epochs": 10, "prior": "uniform", "class_counts": None}),
    "mse": (("regression",), {}),
    "mae": (("regression",), {}),
    "huber": (("regression",), {"delta": 1.0}),
    "log_cosh": (("regression",), {}),
}
CLASSIFICATION_FAMILIES = [f for f, (tasks, _) in FAMILIES.items() if "multiclass" in tasks]
REGRESSION_FAMILIES = [f for f, (tasks, _) in FAMILIES.items() if "regression" in tasks]


def build_loss(description: Mapping[str, Any]) -> keras.losses.Loss:
    """A ready Keras loss from a loss description ``{"family": ..., "params": {...}}``."""
    family = description.get("family")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}.")
    params = dict(description.get("params", {}))
    from_logits = bool(params.pop("from_logits", False))
    allowed = FAMILIES[family][1]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"loss family {family!r} has no parameter {unknown[0]!r}; "
                         f"allowed: {', '.join(allowed) or 'none'}.")
    validate_params(params, prefix=f"{family}.")
    p = {**allowed, **params}
    if family == "cross_entropy":
        return CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=p["label_smoothing"])
    if family == "focal":
        return CategoricalFocalCrossentropy(
            gamma=p["gamma"], alpha=p["alpha"], from_logits=from_logits,
            label_smoothing=p["label_smoothing"])
    if family == "class_balanced":
        return ClassBalancedCrossentropy(from_logits=from_logits, **p)
    if family == "poly1":
        return Poly1Crossentropy(from_logits=from_logits, **p)
    if family == "soft_fbeta":
        return SoftFBetaLoss(from_logits=from_logits, **p)
    if family == "dynamic":
        base_params = dict(p["base_params"])
        if p["base"] in CLASSIFICATION_BASES:
            base_params.setdefault("from_logits", from_logits)
        return DynamicLoss(**{**p, "base_params": base_params})
    if family == "huber":
        return Huber(delta=p["delta"])
    return {"mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError,
            "log_cosh": keras.losses.LogCosh}[family]()


def describe_loss(loss: keras.losses.Loss) -> dict[str, Any]:
    """The loss description of a loss built by :func:`build_loss` (the inverse mapping)."""
    config = loss.get_config()
    drop = {"name", "reduction", "dtype", "axis"}
    params = {k: v for k, v in config.items() if k not in drop}
    by_class = {
        CategoricalCrossentropy: "cross_entropy",
        CategoricalFocalCrossentropy: "focal",
        keras.losses.CategoricalCrossentropy: "cross_entropy",
        keras.losses.CategoricalFocalCrossentropy: "focal",
        ClassBalancedCrossentropy: "class_balanced",
        Poly1Crossentropy: "poly1",
        SoftFBetaLoss: "soft_fbeta",
        DynamicLoss: "dynamic",
        Huber: "huber",
        keras.losses.MeanSquaredError: "mse",
        keras.losses.MeanAbsoluteError: "mae",
        keras.losses.LogCosh: "log_cosh",
    }
    family = by_class.get(type(loss))
    if family is None:
        raise ValueError(f"loss must be one built by losstune.build_loss, got {type(loss).__name__}.")
    if family in ("mse", "mae", "log_cosh"):
        params = {}
    if family == "cross_entropy":
        params.pop("ignore_class", None)
    return {"family": family, "params": params}


def compiled_key(loss: keras.losses.Loss) -> str:
    """Losses with equal keys differ only in values held in variables, so one traced train step
    computes either of them once :func:`retune` has assigned the values."""

    def key(obj: Any) -> list[Any]:
        config = obj.get_config()
        masked = set(getattr(type(obj), "_variable_keys", ()))
        fixed = {k: (len(v) if isinstance(v, list) else "*") if k in masked else v
                 for k, v in config.items()}
        nested = {name: key(value) for name, value in sorted(vars(obj).items())
                  if isinstance(value, keras.losses.Loss)}
        return [type(obj).__module__, type(obj).__qualname__, fixed, nested]

    return json.dumps(key(loss), sort_keys=True, default=str)


def retune(target: keras.losses.Loss, source: keras.losses.Loss) -> None:
    """Make ``target`` compute ``source`` in place: variables assigned, Python-side
    hyperparameters (config, schedule, epochs) copied. Both must have the same
    :func:`compiled_key`."""
    if compiled_key(target) != compiled_key(source):
        raise ValueError("retune needs two losses with the same compiled_key.")
    _copy_hyperparameters(target, source)


def _copy_hyperparameters(target: Any, source: Any) -> None:
    for name, variable in getattr(source, "_hp", {}).items():
        target._hp[name].assign(variable.value)
    for name in getattr(type(source), "_variable_keys", ()):
        if name in vars(source):
            setattr(target, name, getattr(source, name))
    for name, value in vars(source).items():
        if isinstance(value, keras.losses.Loss):
            _copy_hyperparameters(getattr(target, name), value)


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


def describe_in_words(description: Mapping[str, Any]) -> str:
    """'focal loss, γ = 2, α = 0.25' — for reports, the dashboard and the terminal."""
    family = description.get("family", "?")
    p = dict(description.get("params", {}))
    greek = {"gamma": "γ", "alpha": "α", "beta": "β", "delta": "δ", "epsilon": "ε"}
    fmt = format_number
    # Huber's δ acts on targets losstune scaled by their robust sd (losstune.data), not raw units.
    unit = {"delta": " robust sd"}

    names = {"cross_entropy": "cross-entropy", "focal": "focal loss",
             "class_balanced": "class-balanced cross-entropy", "poly1": "Poly-1 cross-entropy",
             "soft_fbeta": "soft F-beta loss", "dynamic": "DynamicLoss", "mse": "MSE",
             "mae": "MAE", "huber": "Huber loss", "log_cosh": "LogCosh"}
    parts = []
    if family == "dynamic":
        base = p.get("base", "categorical_crossentropy")
        if base == "huber":
            delta = (p.get("base_params") or {}).get("delta", 1.0)  # Huber's own default
            parts.append(f"base huber (δ = {fmt(delta)}{unit['delta']})")
        else:
            parts.append(f"base {base}")
        defaults = FAMILIES["dynamic"][1]
        for key in ("w_standard", "w_progress", "w_balance", "w_curriculum"):
            if key in p and p[key] != defaults[key]:
                parts.append(f"{key} = {fmt(p[key])}")
        sched = p.get("schedule")
        if sched and p.get("w_curriculum"):
            parts.append(f"schedule {Schedule.from_dict(sched).describe()}")
    else:
        for key, value in p.items():
            if key in ("class_counts", "from_logits") or value is None:
                continue
            if key == "label_smoothing" and not value:
                continue
            if key == "gamma" and family == "class_balanced" and not value:
                continue
            parts.append(f"{greek.get(key, key.replace('_', ' '))} = {fmt(value)}"
                         f"{unit.get(key, '') if family == 'huber' else ''}")
    return ", ".join([names.get(family, family)] + parts)


def save_description(description: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")


def load_loss(path: str | Path) -> keras.losses.Loss:
    """Read a loss description written by ``losstune export`` and build the Keras loss.

    >>> loss = load_loss("best_loss.json")          # doctest: +SKIP
    >>> model.compile(optimizer="adam", loss=loss)  # doctest: +SKIP
    """
    data = json.loads(Path(path).read_text())
    description = data.get("loss", data)
    return build_loss(description)
