"""The loss audit: per-component values and gradient norms, warnings and rejections."""

from __future__ import annotations

import numpy as np
import pytest

from keras import ops

from losstune import audit
from losstune import losses as L

RNG = np.random.default_rng(3)
LOGITS = RNG.normal(size=(16, 3)).astype("float32")
Y = np.eye(3, dtype="float32")[RNG.integers(0, 3, size=16)]


def _read(variable) -> float:
    return float(ops.convert_to_numpy(variable))


def test_reports_every_dynamic_component_with_gradient_norms():
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_balance=0.5, w_curriculum=0.5,
                        schedule={"name": "constant"}, epochs=4)
    report = audit.check(dyn, Y, LOGITS)
    names = [c.name for c in report.components]
    assert names == ["standard", "progress", "balance", "curriculum"]
    by_name = {c.name: c for c in report.components}
    assert by_name["standard"].grad_norm > 0 and by_name["balance"].grad_norm > 0
    assert by_name["curriculum"].grad_norm > 0
    assert report.warnings == ()  # w_progress = 0: nothing to warn about


def test_warns_about_zero_gradient_progress_term():
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_progress=0.4, epochs=4)
    dyn.set_epoch(2)
    report = audit.check(dyn, Y, LOGITS)
    progress = report.as_dict()["progress"]
    assert progress["value"] > 0 and progress["grad_norm"] == 0.0
    assert len(report.warnings) == 1
    assert "'progress' has zero gradient" in report.warnings[0]
    assert "cannot change training" in report.warnings[0]


def test_curriculum_that_starts_at_zero_is_looked_at_where_it_is_active():
    # Linear 0 → 1: the curriculum has no gradient at epoch 0 but shapes every later epoch.
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_curriculum=0.5,
                        schedule={"name": "linear", "params": {"start": 0.0, "end": 1.0}},
                        epochs=5)
    report = audit.check(dyn, Y, LOGITS)
    assert report.warnings == ()
    curriculum = {c.name: c for c in report.components}["curriculum"]
    assert curriculum.grad_norm > 0 and curriculum.epoch == 4  # the point of largest activity
    assert set(report.as_dict()["curriculum"]) == {"value", "grad_norm"}
    assert _read(dyn.epoch) == 0.0 and _read(dyn.curriculum_factor) == 0.0  # restored


def test_progress_term_warning_says_where_it_looked_and_epoch_is_restored():
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_progress=0.4, epochs=4)
    report = audit.check(dyn, Y, LOGITS)
    assert len(report.warnings) == 1
    assert "'progress' has zero gradient with respect to the predictions at epochs 0, 3" in (
        report.warnings[0])
    assert report.as_dict()["progress"]["value"] == pytest.approx(0.4)  # last epoch: progress 1
    assert _read(dyn.epoch) == 0.0 and _read(dyn.progress) == 0.0  # restored


def test_rejects_nan_configuration_naming_component():
    # Poisson on logits: log of negative predictions is NaN.
    dyn = L.DynamicLoss(base="poisson")
    with pytest.raises(audit.LossAuditError, match="'standard' is not finite"):
        audit.check(dyn, Y, LOGITS)


def test_rejects_overflowing_weight_naming_component():
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_curriculum=1e38,
                        schedule={"name": "constant", "params": {"value": 100.0}})
    with pytest.raises(audit.LossAuditError, match="'curriculum' is not finite"):
        audit.check(dyn, Y, LOGITS)


def test_plain_loss_is_one_component():
    report = audit.check(L.build_loss({"family": "focal", "params": {"from_logits": True}}),
                         Y, LOGITS)
    assert [c.name for c in report.components] == ["loss"]
    assert report.components[0].grad_norm > 0


def test_integer_labels_are_audited_like_one_hot_labels():
    for loss in (L.DynamicLoss(base_params={"from_logits": True}, w_balance=0.5,
                               w_curriculum=0.5, epochs=4),
                 L.build_loss({"family": "class_balanced", "params": {
                     "class_counts": [5, 3, 1], "beta": 0.9, "from_logits": True}})):
        one_hot = audit.check(loss, Y, LOGITS).as_dict()
        indices = audit.check(loss, np.argmax(Y, axis=-1), LOGITS).as_dict()
        assert indices.keys() == one_hot.keys()
        for name, figures in one_hot.items():
            assert indices[name] == pytest.approx(figures, rel=1e-5)
