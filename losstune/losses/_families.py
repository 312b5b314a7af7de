"""The loss classes of the families (the catalog says which class is which family).

Keras's cross-entropy, focal and Huber losses are subclassed only to keep their hyperparameters
in variables (:class:`~losstune.losses._tunable.Tunable`); their arithmetic is Keras's own
function. Added: class-balanced cross-entropy (Cui et al. 2019), Poly-1 (Leng et al. 2022) and a
macro soft F-beta loss. Every classification loss takes integer labels as well as one-hot ones
(:func:`one_hot_labels`). Everything is ``keras.ops``, so TensorFlow, JAX and PyTorch all run it.

Layer: domain.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from losstune import catalog
from losstune.losses._tunable import Tunable
from losstune.losses._validation import check_counts, check_params

PACKAGE = "losstune"
EPS = 1e-7


# --------------------------------------------------------------------------------------------
# Shared arithmetic.
# --------------------------------------------------------------------------------------------
def one_hot_labels(y_true, y_pred):
    """Labels laid out like the predictions: class indices one-hot, one-hot labels as they are.

    Integer labels are what scikit-learn users have (``model.fit(x, y)`` with ``y`` of shape
    (N,) or (N, 1)); Keras's sparse losses take those, its categorical ones one-hot labels. Like
    Keras's sparse losses this reads static shapes, which a traced train step knows: labels with
    one dimension fewer than the predictions, or a last dimension of 1 where the predictions
    have several classes, are class indices. With a single sigmoid unit, (N,) labels become
    (N, 1).
    """
    classes = y_pred.shape[-1]
    rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    indices = rank == pred_rank - 1 or (rank == pred_rank and y_true.shape[-1] == 1
                                        and classes not in (None, 1))
    if not indices:
        return ops.cast(y_true, y_pred.dtype)
    if classes == 1:
        return ops.expand_dims(ops.cast(y_true, y_pred.dtype), -1)
    if rank == pred_rank:
        y_true = ops.squeeze(y_true, axis=-1)
    return ops.one_hot(ops.cast(y_true, "int32"), classes, dtype=y_pred.dtype)


def probabilities(y_pred, from_logits: bool):
    """Class probabilities from a model output; a single sigmoid unit becomes [1 - p, p]."""
    if y_pred.shape[-1] == 1:
        p = ops.sigmoid(y_pred) if from_logits else y_pred
        return ops.concatenate([1.0 - p, p], axis=-1)
    return ops.softmax(y_pred, axis=-1) if from_logits else y_pred


def _targets_and_probabilities(y_true, y_pred, from_logits: bool):
    """One-hot targets and class probabilities of the same width (two for a sigmoid unit)."""
    p = probabilities(y_pred, from_logits)
    y = one_hot_labels(y_true, y_pred)
    if y.shape[-1] == 1 and p.shape[-1] == 2:
        y = ops.concatenate([1.0 - y, y], axis=-1)
    return y, p


def _smooth(y_true, label_smoothing):
    """Label smoothing; ``label_smoothing`` may be a variable (then it is always applied: a
    compiled step cannot branch on its value, and smoothing by 0 is exact)."""
    if isinstance(label_smoothing, (int, float)) and not label_smoothing:
        return y_true
    num_classes = ops.cast(ops.shape(y_true)[-1], y_true.dtype)
    return y_true * (1.0 - label_smoothing) + label_smoothing / num_classes


def per_sample(values, y_pred):
    """Broadcast a batch-level scalar to one value per sample, so reductions and weights apply."""
    return values * ops.ones_like(y_pred[..., 0])


class ConfigLoss(Tunable, keras.losses.Loss):
    """A loss whose ``get_config`` holds exactly its constructor's hyperparameters
    (``_config_keys``; a value with ``to_dict``, a schedule, is stored as that dict)."""

    _config_keys: tuple[str, ...] = ()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in self._config_keys:
            value = getattr(self, key)
            config[key] = value.to_dict() if hasattr(value, "to_dict") else value
        return config


# --------------------------------------------------------------------------------------------
# Keras's cross-entropy, focal and Huber losses, with their hyperparameters in variables.
# --------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoricalCrossentropy(Tunable, keras.losses.CategoricalCrossentropy):
    """``keras.losses.CategoricalCrossentropy`` with ``label_smoothing`` in a variable."""

    _variable_keys = ("label_smoothing",)
    _elementwise = ("label_smoothing",)

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs):
        check_params("cross_entropy", {"label_smoothing": label_smoothing})
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, **kwargs)
        self._init_hp(label_smoothing=float(label_smoothing))

    def call(self, y_true, y_pred):
        y_true = _smooth(one_hot_labels(y_true, y_pred),
                         self._h("label_smoothing", y_pred.dtype))
        return keras.losses.categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                                     axis=self.axis)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoricalFocalCrossentropy(Tunable, keras.losses.CategoricalFocalCrossentropy):
    """``keras.losses.CategoricalFocalCrossentropy`` with γ, α and smoothing in variables."""

    _variable_keys = ("alpha", "gamma", "label_smoothing")
    _elementwise = ("alpha", "gamma", "label_smoothing")

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0, **kwargs):
        check_params("focal", {"alpha": alpha, "gamma": gamma, "label_smoothing": label_smoothing})
        super().__init__(alpha=alpha, gamma=gamma, from_logits=from_logits,
                         label_smoothing=label_smoothing, **kwargs)
        self._init_hp(alpha=float(alpha), gamma=float(gamma),
                      label_smoothing=float(label_smoothing))

    def call(self, y_true, y_pred):
        dtype = y_pred.dtype
        y_true = _smooth(one_hot_labels(y_true, y_pred), self._h("label_smoothing", dtype))
        return keras.losses.categorical_focal_crossentropy(
            y_true, y_pred, alpha=self._h("alpha", dtype), gamma=self._h("gamma", dtype),
            from_logits=self.from_logits, axis=self.axis)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Huber(Tunable, keras.losses.Huber):
    """keras.losses.Huber whose config keeps ``delta`` (and whose δ lives in a variable).

    Keras 3.15's ``Huber.get_config`` returns only name and reduction, so a saved model compiled
    with ``Huber(delta=2.5)`` reloads with δ = 1 (tests/test_losses.py shows it). Subclassing
    fixes the round trip without re-implementing the loss.
    """

    _variable_keys = ("delta",)
    _elementwise = ("delta",)

    def __init__(self, delta: float = 1.0, reduction="sum_over_batch_size", name="huber_loss",
                 dtype=None):
        check_params("huber", {"delta": delta})
        super().__init__(delta=delta, reduction=reduction, name=name, dtype=dtype)
        self.delta = float(delta)
        self._init_hp(delta=self.delta)

    def call(self, y_true, y_pred):
        return keras.losses.huber(y_true, y_pred, delta=self._h("delta", y_pred.dtype))

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


@keras.saving.register_keras_serializable(package=PACKAGE)
class KLDivergence(Tunable, keras.losses.KLDivergence):
    """``keras.losses.KLDivergence`` KL(y || p) of the (smoothed) labels and the predicted
    class probabilities, from logits where the model outputs them (Keras's takes
    probabilities only). With one-hot labels it is cross-entropy; with smoothing it differs
    from smoothed cross-entropy by the labels' entropy, a constant: the same gradients."""

    _variable_keys = ("label_smoothing",)
    _elementwise = ("label_smoothing",)

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in {"from_logits": from_logits, "label_smoothing": label_smoothing}.items():
            catalog.ARGUMENTS[name].check(value, f"kl_divergence.{name}")
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)
        self._init_hp(label_smoothing=self.label_smoothing)

    def call(self, y_true, y_pred):
        y_true = _smooth(one_hot_labels(y_true, y_pred),
                         self._h("label_smoothing", y_pred.dtype))
        return keras.losses.kl_divergence(y_true, probabilities(y_pred, self.from_logits))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


# --------------------------------------------------------------------------------------------
# Families Keras does not have.
# --------------------------------------------------------------------------------------------
def class_balanced_weights(class_counts, beta: float) -> list[float]:
    """Cui et al. 2019: w_c ∝ (1 - β) / (1 - β^n_c), normalised so the weights sum to C.

    A class with zero training samples gets the largest weight seen (its effective number is
    undefined); β = 0 gives every class weight 1, i.e. plain cross-entropy.
    """
    counts = check_counts(class_counts, "class_counts")
    effective = [(1.0 - beta ** n) / (1.0 - beta) if n > 0 else 0.0 for n in counts]
    raw = [1.0 / e if e > 0 else 0.0 for e in effective]
    top = max(raw)
    raw = [r if r > 0 else top for r in raw]
    scale = len(raw) / sum(raw)
    return [r * scale for r in raw]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassBalancedCrossentropy(ConfigLoss):
    """Cross-entropy (optionally focal) weighted per class by the effective number of samples.

    ``class_counts`` are the training-set counts per class; they are part of the config so an
    exported loss rebuilds with the same weights.
    """

    _config_keys = ("class_counts", "beta", "gamma", "label_smoothing", "from_logits")
    _variable_keys = ("class_counts", "beta", "gamma", "label_smoothing", "weights")
    _elementwise = ("gamma", "label_smoothing")

    def __init__(self, class_counts, beta: float = 0.999, gamma: float = 0.0,
                 label_smoothing: float = 0.0, from_logits: bool = False,
                 reduction="sum_over_batch_size", name="class_balanced_crossentropy",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("class_balanced", {"beta": beta, "gamma": gamma,
                                        "label_smoothing": label_smoothing,
                                        "from_logits": from_logits})
        self.class_counts = check_counts(class_counts, "class_balanced.class_counts")
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
        y_true, p = _targets_and_probabilities(y_true, y_pred, self.from_logits)
        y_true = _smooth(y_true, self._h("label_smoothing", dtype))
        p = ops.clip(p, EPS, 1.0 - EPS)
        # (1 - p)^0 = 1 exactly, so γ = 0 is plain weighted cross-entropy.
        per_class = -y_true * ops.log(p) * ops.power(1.0 - p, self._h("gamma", dtype))
        return ops.sum(per_class * self._h("weights", dtype), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Poly1Crossentropy(ConfigLoss):
    """Poly-1 (Leng et al. 2022): CE + ε (1 - p_t), with p_t = <y_true, p> (smoothed labels)."""

    _config_keys = ("epsilon", "label_smoothing", "from_logits")
    _variable_keys = ("epsilon", "label_smoothing")
    _elementwise = ("label_smoothing",)

    def __init__(self, epsilon: float = 1.0, label_smoothing: float = 0.0,
                 from_logits: bool = False, reduction="sum_over_batch_size",
                 name="poly1_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("poly1", {"epsilon": epsilon, "label_smoothing": label_smoothing,
                               "from_logits": from_logits})
        self.epsilon, self.label_smoothing = float(epsilon), float(label_smoothing)
        self.from_logits = from_logits
        self._init_hp(epsilon=self.epsilon, label_smoothing=self.label_smoothing)

    def call(self, y_true, y_pred):
        dtype = y_pred.dtype
        y_true = _smooth(one_hot_labels(y_true, y_pred), self._h("label_smoothing", dtype))
        ce = keras.losses.categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)
        p_t = ops.sum(y_true * probabilities(y_pred, self.from_logits), axis=-1)
        return ce + self._h("epsilon", dtype) * (1.0 - p_t)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftFBetaLoss(ConfigLoss):
    """1 - soft F-beta, macro-averaged over classes on the batch.

    The seed version sums true/false positives over *all* classes and samples (micro F-beta).
    With softmax outputs micro soft-F1 is exactly the mean probability of the true class, so it
    is not an F-score of anything; per-class (macro) averaging is what makes it one. F-beta is a
    batch statistic: every sample gets the batch's value.
    """

    _config_keys = ("beta", "from_logits")
    _variable_keys = ("beta",)
    _elementwise = ("beta",)

    def __init__(self, beta: float = 1.0, from_logits: bool = False,
                 reduction="sum_over_batch_size", name="soft_fbeta", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("soft_fbeta", {"beta": beta, "from_logits": from_logits})
        self.beta, self.from_logits = float(beta), from_logits
        self._init_hp(beta=self.beta)

    def call(self, y_true, y_pred):
        y_true, p = _targets_and_probabilities(y_true, y_pred, self.from_logits)
        # Sums over the batch (axis 0); the class axis is last, so a population's member axis
        # (batch, members, classes) passes through.
        tp = ops.sum(y_true * p, axis=0)
        fp = ops.sum((1.0 - y_true) * p, axis=0)
        fn = ops.sum(y_true * (1.0 - p), axis=0)
        b2 = ops.square(self._h("beta", y_pred.dtype))
        fbeta = (1.0 + b2) * tp / ((1.0 + b2) * tp + b2 * fn + fp + EPS)
        return per_sample(1.0 - ops.mean(fbeta, axis=-1), y_pred)
