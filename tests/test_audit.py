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


def test_a_population_is_audited_together_as_each_member_alone():
    """audit.check_members: one evaluation and one gradient per loss structure give each
    member the report check() gives it alone (a DynamicLoss is audited alone)."""
    members = [L.CategoricalFocalCrossentropy(gamma=g, alpha=a, from_logits=True)
               for g, a in ((0.0, 0.25), (2.0, 0.5), (5.0, 0.1))]
    members += [L.CategoricalCrossentropy(label_smoothing=s, from_logits=True) for s in (0.0, 0.2)]
    members.insert(2, L.DynamicLoss(base_params={"from_logits": True}, w_progress=0.4, epochs=4))
    together = audit.check_members(members, Y, LOGITS)
    assert len(together) == len(members)
    for loss, report in zip(members, together):
        alone = audit.check(loss, Y, LOGITS)
        assert [c.name for c in report.components] == [c.name for c in alone.components]
        for c, a in zip(report.components, alone.components):
            assert c.value == pytest.approx(a.value, rel=1e-5)
            assert c.grad_norm == pytest.approx(a.grad_norm, rel=1e-4)
        assert report.warnings == alone.warnings
    assert together[2].warnings  # the DynamicLoss's progress term has no gradient
    # Members differ: each got its own gradient, not the group's.
    norms = [r.components[0].grad_norm for r in together[:2] + together[3:]]
    assert len(set(norms)) == len(norms)


def test_a_population_is_audited_with_its_own_stacked_losses_when_given():
    """The population's stacked losses (by compiled key) are audited instead of new stacks:
    the same reports; a stack of other values gives those values' reports."""
    from losstune.losses import compiled_key, stack

    members = [L.CategoricalFocalCrossentropy(gamma=g, from_logits=True) for g in (0.5, 3.0)]
    key = compiled_key(members[0])
    alone = audit.check_members(members, Y, LOGITS)
    given = audit.check_members(members, Y, LOGITS, stacked={key: stack(members)})
    for a, b in zip(alone, given):
        assert b.components[0].value == pytest.approx(a.components[0].value, rel=1e-6)
        assert b.components[0].grad_norm == pytest.approx(a.components[0].grad_norm, rel=1e-6)
    others = [L.CategoricalFocalCrossentropy(gamma=g, from_logits=True) for g in (3.0, 0.5)]
    swapped = audit.check_members(members, Y, LOGITS, stacked={key: stack(others)})
    assert swapped[0].components[0].value == pytest.approx(alone[1].components[0].value,
                                                           rel=1e-6)
    # A stack of other members (three, not these two) is not theirs: they are stacked anew.
    three = stack([*others, members[0]])
    again = audit.check_members(members, Y, LOGITS, stacked={key: three})
    assert [r.components[0].value for r in again] == pytest.approx(
        [r.components[0].value for r in alone], rel=1e-6)


def test_a_population_member_that_is_not_finite_is_rejected_as_alone():
    members = [L.CategoricalFocalCrossentropy(gamma=g, from_logits=True) for g in (1.0, 2.0)]
    bad = LOGITS.copy()
    bad[0, 0] = np.nan
    with pytest.raises(audit.LossAuditError,
                       match="loss component 'loss' is not finite on the audit batch"):
        audit.check(members[0], Y, bad)
    with pytest.raises(audit.LossAuditError,
                       match="loss component 'loss' is not finite on the audit batch"):
        audit.check_members(members, Y, bad)
