"""Loss classes for multi-label outputs: one logit per label, each label a yes/no question.

Keras's binary cross-entropy and binary focal losses are subclassed only to keep their
hyperparameters in variables (:class:`~losstune.losses._tunable.Tunable`); their arithmetic is
Keras's own. Added: class-balanced binary cross-entropy (Cui et al. 2019, per label) and a
soft F-beta over labels (micro or macro). Each returns one value per sample (the mean over
labels, Keras's ``axis=-1``), so a population's (batch, members, labels) passes through.

Layer: domain.
"""

from __future__ import annotations

import keras
from keras import ops

from losstune.losses._families import EPS, PACKAGE, ConfigLoss, class_balanced_weights, per_sample
from losstune.losses._tunable import Tunable
from losstune.losses._validation import check_counts, check_params


def _smooth_binary(y_true, label_smoothing):
    """Keras's binary label smoothing (towards 0.5), with a smoothing that may be a variable
    (Keras's own ``if label_smoothing:`` cannot branch on one inside a compiled step)."""
    return y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing


@keras.saving.register_keras_serializable(package=PACKAGE)
class BinaryCrossentropy(Tunable, keras.losses.BinaryCrossentropy):
    """``keras.losses.BinaryCrossentropy`` with ``label_smoothing`` in a variable."""

    _variable_keys = ("label_smoothing",)
    _elementwise = ("label_smoothing",)

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs):
        check_params("binary_crossentropy", {"label_smoothing": label_smoothing})
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, **kwargs)
        self._init_hp(label_smoothing=float(label_smoothing))

    def call(self, y_true, y_pred):
        y_true = _smooth_binary(ops.cast(y_true, y_pred.dtype),
                                self._h("label_smoothing", y_pred.dtype))
        return keras.losses.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits,
                                                axis=self.axis)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BinaryFocalCrossentropy(Tunable, keras.losses.BinaryFocalCrossentropy):
    """``keras.losses.BinaryFocalCrossentropy`` with γ, α and smoothing in variables.

    Keras reads α only with ``apply_class_balancing=True`` (α for the positives, 1 − α for the
    negatives), and its default is off; here it is on by default, so that the α the family
    searches means something.
    """

    _variable_keys = ("alpha", "gamma", "label_smoothing")
    _elementwise = ("alpha", "gamma", "label_smoothing")

    def __init__(self, apply_class_balancing: bool = True, alpha: float = 0.25,
                 gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0,
                 **kwargs):
        check_params("binary_focal", {"alpha": alpha, "gamma": gamma,
                                      "label_smoothing": label_smoothing,
                                      "apply_class_balancing": apply_class_balancing})
        super().__init__(apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma,
                         from_logits=from_logits, label_smoothing=label_smoothing, **kwargs)
        self._init_hp(alpha=float(alpha), gamma=float(gamma),
                      label_smoothing=float(label_smoothing))

    def call(self, y_true, y_pred):
        dtype = y_pred.dtype
        y_true = _smooth_binary(ops.cast(y_true, dtype), self._h("label_smoothing", dtype))
        return keras.losses.binary_focal_crossentropy(
            y_true, y_pred, apply_class_balancing=self.apply_class_balancing,
            alpha=self._h("alpha", dtype), gamma=self._h("gamma", dtype),
            from_logits=self.from_logits, label_smoothing=0.0, axis=self.axis)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassBalancedBinaryCrossentropy(ConfigLoss):
    """Binary cross-entropy whose positive term of label c is weighted by Cui et al.'s
    (1 − β) / (1 − β^n_c), n_c the label's positives in the training split, the weights
    normalised to a mean of 1 over labels; negatives weigh 1.

    Cui et al. (2019) weigh a sigmoid loss by the sample's one true class; a multi-label sample
    has several, so the weight goes to each label's positive term instead: a rare label's
    positives count more, as they do in the paper.
    """

    _config_keys = ("class_counts", "beta", "label_smoothing", "from_logits")
    _variable_keys = ("class_counts", "beta", "label_smoothing", "weights")
    _elementwise = ("label_smoothing",)

    def __init__(self, class_counts, beta: float = 0.999, label_smoothing: float = 0.0,
                 from_logits: bool = False, reduction="sum_over_batch_size",
                 name="class_balanced_binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("class_balanced_bce", {"beta": beta, "label_smoothing": label_smoothing,
                                            "from_logits": from_logits})
        self.class_counts = check_counts(class_counts, "class_balanced_bce.class_counts")
        if self.class_counts is None:
            raise ValueError("class_balanced_bce.class_counts must be the training-set count of "
                             "positives of every label, got None.")
        self.beta, self.label_smoothing = float(beta), float(label_smoothing)
        self.from_logits = from_logits
        # Normalised to sum to the number of labels: a mean weight of 1.
        self.weights = class_balanced_weights(self.class_counts, self.beta)
        self._init_hp(weights=self.weights, label_smoothing=self.label_smoothing)

    def call(self, y_true, y_pred):
        dtype = y_pred.dtype
        y = _smooth_binary(ops.cast(y_true, dtype), self._h("label_smoothing", dtype))
        if self.from_logits:  # -log σ(z) = softplus(-z), -log(1 - σ(z)) = softplus(z)
            positive, negative = ops.softplus(-y_pred), ops.softplus(y_pred)
        else:
            p = ops.clip(y_pred, EPS, 1.0 - EPS)
            positive, negative = -ops.log(p), -ops.log(1.0 - p)
        terms = self._h("weights", dtype) * y * positive + (1.0 - y) * negative
        return ops.mean(terms, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SigmoidSoftFBeta(ConfigLoss):
    """1 − soft F-beta of sigmoid outputs over the batch: ``macro`` (per label, then the mean
    over labels) or ``micro`` (true and false positives summed over every label first).

    With sigmoid outputs micro soft-F1 is a real F-score of the labels; the seed's micro
    soft-F1 over *softmax* outputs is only the mean probability of the true class (see
    :class:`~losstune.losses._families.SoftFBetaLoss`). F-beta is a batch statistic: every sample
    gets the batch's value.
    """

    _config_keys = ("beta", "average", "from_logits")
    _variable_keys = ("beta",)
    _elementwise = ("beta",)

    def __init__(self, beta: float = 1.0, average: str = "macro", from_logits: bool = False,
                 reduction="sum_over_batch_size", name="sigmoid_soft_fbeta", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_params("sigmoid_soft_fbeta", {"beta": beta, "average": average,
                                            "from_logits": from_logits})
        self.beta, self.average, self.from_logits = float(beta), average, from_logits
        self._init_hp(beta=self.beta)

    def call(self, y_true, y_pred):
        y = ops.cast(y_true, y_pred.dtype)
        p = ops.sigmoid(y_pred) if self.from_logits else y_pred
        # Sums over the batch (axis 0); labels are the last axis, so a population's member axis
        # (batch, members, labels) passes through.
        tp, fp, fn = (ops.sum(a, axis=0) for a in (y * p, (1.0 - y) * p, y * (1.0 - p)))
        if self.average == "micro":
            tp, fp, fn = (ops.sum(a, axis=-1, keepdims=True) for a in (tp, fp, fn))
        b2 = ops.square(self._h("beta", y_pred.dtype))
        fbeta = (1.0 + b2) * tp / ((1.0 + b2) * tp + b2 * fn + fp + EPS)
        return per_sample(1.0 - ops.mean(fbeta, axis=-1), y_pred)
