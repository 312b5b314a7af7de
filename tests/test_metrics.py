"""Metrics equal scikit-learn's on model outputs (logits), in the target's own units."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import softmax
from sklearn import metrics as skm

from losstune import metrics

RNG = np.random.default_rng(0)
Y = np.array([0, 1, 2, 2, 1, 0, 2, 1])
LOGITS = RNG.normal(size=(8, 3))


def sklearn_scores(y_true: np.ndarray, logits: np.ndarray, num_classes: int) -> dict:
    """The reference: each classification metric straight from scikit-learn, one model's
    outputs at a time (what losstune computed before it scored members at once)."""
    proba = softmax(logits.astype("float64"), axis=-1)
    y_pred = proba.argmax(axis=-1)
    labels = list(range(num_classes))
    try:
        auc = (skm.roc_auc_score(y_true, proba[:, 1]) if num_classes == 2 else
               skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
    except ValueError:  # a split without every class
        auc = math.nan
    return {"accuracy": skm.accuracy_score(y_true, y_pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
            "macro_f1": skm.f1_score(y_true, y_pred, average="macro", labels=labels,
                                     zero_division=0),
            "log_loss": skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=labels),
            "roc_auc": auc,
            "recall_per_class": list(skm.recall_score(y_true, y_pred, labels=labels,
                                                      average=None, zero_division=0))}


def test_classification_metrics_equal_scikit_learn():
    got = metrics.classification(Y, LOGITS, 3)
    pred = LOGITS.argmax(1)
    proba = softmax(LOGITS, axis=1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y, pred))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(Y, pred, average="macro",
                                                         zero_division=0))
    assert got["log_loss"] == pytest.approx(skm.log_loss(Y, proba, labels=[0, 1, 2]))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y, proba, multi_class="ovr"))
    assert metrics.classification(Y, LOGITS, 3, only="macro_f1") == {
        "macro_f1": got["macro_f1"]}


def test_a_class_missing_from_the_split_gives_nan_auc_not_an_error():
    y = np.array([0, 0, 1, 1])
    got = metrics.classification(y, RNG.normal(size=(4, 3)), 3)
    assert math.isnan(got["roc_auc"]) and 0 <= got["macro_f1"] <= 1


def test_binary_auc_uses_the_positive_class():
    y = np.array([0, 1, 1, 0, 1])
    logits = np.stack([np.zeros(5), np.array([-1.0, 2.0, 0.5, -0.2, 1.0])], axis=1)
    assert metrics.classification(y, logits, 2)["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, softmax(logits, axis=1)[:, 1]))


def test_non_finite_outputs_are_a_floating_point_error():
    bad = LOGITS.copy()
    bad[0, 0] = np.nan
    with pytest.raises(FloatingPointError):
        metrics.classification(Y, bad, 3)
    with pytest.raises(FloatingPointError):
        metrics.regression([1.0, 2.0], [np.inf, 1.0])


def test_per_class_recall_and_regression_metrics():
    recall = metrics.classification(Y, LOGITS, 3, recall=True)["recall_per_class"]
    assert recall == pytest.approx(
        skm.recall_score(Y, LOGITS.argmax(1), average=None, labels=[0, 1, 2], zero_division=0))
    y, p = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    got = metrics.regression(y, p.reshape(-1, 1))
    assert got == pytest.approx({"mae": skm.mean_absolute_error(y, p),
                                 "rmse": math.sqrt(skm.mean_squared_error(y, p)),
                                 "r2": skm.r2_score(y, p)})


@pytest.mark.parametrize("classes, n, missing", [(4, 97, None), (2, 60, None), (3, 50, 2),
                                                  (10, 360, None)])
def test_members_scored_at_once_equal_each_member_scored_by_scikit_learn(classes, n, missing):
    """A population's members scored from one stacked prediction (metrics.classification_members)
    equal each member's outputs scored by scikit-learn, ties and absent classes too."""
    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, size=n)
    if missing is not None:
        y[y == missing] = 0  # a class with no sample in the split: AUC is NaN
    k = 6
    logits = rng.normal(size=(k, n, classes)) * np.linspace(0.1, 3, k)[:, None, None]
    logits[1] = np.round(logits[1])  # many ties in scores and in predictions
    logits[2] = 0.0  # every output equal: every sample tied
    logits[3, 5, 0] = np.nan  # not finite: this member alone fails
    together = metrics.classification_members(y, logits, classes, recall=True)
    assert isinstance(together[3], FloatingPointError)
    for i in (0, 1, 2, 4, 5):
        alone = sklearn_scores(y, logits[i], classes)
        assert together[i].keys() == alone.keys()
        for name, value in alone.items():
            np.testing.assert_allclose(together[i][name], value, rtol=1e-10, atol=1e-12,
                                       err_msg=f"member {i}, {name}")
    objective = metrics.classification_members(y, logits, classes, only="macro_f1")
    assert objective[0] == {"macro_f1": together[0]["macro_f1"]}
