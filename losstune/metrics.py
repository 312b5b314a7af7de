"""Objective and secondary metrics, computed with scikit-learn on model outputs.

The objective is never the loss's own value: losses of different families are not on one scale.
"""

from __future__ import annotations

import math

import numpy as np


CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc")


def _checked_inputs():
    """scikit-learn's own switches for inputs already checked: the outputs are tested for
    finiteness here and the labels are integer arrays losstune made. Its per-call validation
    took most of the metrics' time on small splits (about 1.5 s of 20 trials' scoring)."""
    import sklearn

    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)


def classification(y_true: np.ndarray, logits: np.ndarray, num_classes: int,
                   only: str | None = None) -> dict[str, float]:
    """Every classification metric, or ``only`` one (the per-epoch objective: computing all of
    them after every epoch cost more than the epoch itself on small data)."""
    from scipy.special import softmax
    from sklearn import metrics as skm

    if not np.all(np.isfinite(logits)):
        raise FloatingPointError("the model's outputs are not finite")
    proba = softmax(logits.astype("float64"), axis=-1)
    y_pred = proba.argmax(axis=-1)
    labels = list(range(num_classes))

    def roc_auc() -> float:
        try:
            if num_classes == 2:
                return skm.roc_auc_score(y_true, proba[:, 1])
            return skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels)
        except ValueError:  # a split without every class
            return math.nan

    compute = {
        "accuracy": lambda: skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y_true, y_pred),
        "macro_f1": lambda: skm.f1_score(y_true, y_pred, average="macro", labels=labels,
                                         zero_division=0),
        "log_loss": lambda: skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels),
        "roc_auc": roc_auc,
    }
    names = (only,) if only else CLASSIFICATION_METRICS
    with _checked_inputs():
        return {name: float(compute[name]()) for name in names}


def per_class_recall(y_true: np.ndarray, logits: np.ndarray, num_classes: int) -> list[float]:
    from sklearn.metrics import recall_score

    y_pred = logits.argmax(axis=-1)
    with _checked_inputs():
        recall = recall_score(y_true, y_pred, labels=list(range(num_classes)), average=None,
                              zero_division=0)
    return [float(r) for r in recall]


def regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Targets and predictions in the original units."""
    from sklearn import metrics as skm

    y_pred = np.asarray(y_pred, dtype="float64").reshape(-1)
    if not np.all(np.isfinite(y_pred)):
        raise FloatingPointError("the model's outputs are not finite")
    y_true = np.asarray(y_true, dtype="float64").reshape(-1)
    with _checked_inputs():
        return {"mae": float(skm.mean_absolute_error(y_true, y_pred)),
                "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
                "r2": float(skm.r2_score(y_true, y_pred))}
