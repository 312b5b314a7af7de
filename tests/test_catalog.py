"""The catalog of loss families: the one place that knows them.

The main test registers a toy family in the catalog alone and follows it through every part of
losstune: a study file, the search, training, words, the report.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from dataclasses import replace

import keras
import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution

from losstune import catalog, losses
from losstune import studyfile as spec
from losstune.cli import main
from losstune.report import _figures
from losstune.errors import SpecError
from tests.conftest import ROOT, write_study


class ScaledCrossentropy(losses.Tunable, keras.losses.Loss):
    """Cross-entropy times a factor: a family losstune does not ship. Its factor lives in a
    variable (the swap contract), so a compiled model is reused from one trial to the next."""

    _variable_keys = ("scale",)
    built: list[float] = []

    def __init__(self, scale: float = 1.0, from_logits: bool = False,
                 reduction="sum_over_batch_size", name="scaled_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.scale, self.from_logits = float(scale), from_logits
        self._init_hp(scale=self.scale)
        ScaledCrossentropy.built.append(self.scale)

    def call(self, y_true, y_pred):
        y_true = losses.one_hot_labels(y_true, y_pred)
        return self._h("scale", y_pred.dtype) * keras.losses.categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "from_logits": self.from_logits}


SCALED = catalog.Family(
    "scaled_ce", catalog.CLASSIFICATION, f"{__name__}:ScaledCrossentropy",
    (catalog.Parameter("scale", 1.0, "(0, 10]", symbol="s", search={"low": 0.5, "high": 2.0}),),
    words="scaled cross-entropy", title="Scaled cross-entropy", needs={"logits": None},
    note="s multiplies the whole loss.")

TOY_STUDY = {"n_trials": 2, "training": {"epochs": 2}, "racing": False,
             "search": {"families": ["scaled_ce"], "scaled_ce": {"scale": {"low": 0.5,
                                                                          "high": 3.0}}},
             "baselines": [{"family": "scaled_ce", "params": {"scale": 2.0}}]}


def test_a_family_registered_in_the_catalog_alone_goes_through_every_part(tmp_path):
    ScaledCrossentropy.built.clear()
    runner = CliRunner()
    with catalog.registered(SCALED):
        # A study file: the family, its table, a baseline of it.
        path = write_study(tmp_path, TOY_STUDY)
        loaded = spec.load(path)
        assert loaded.families == ("scaled_ce",)
        assert loaded.search.family_space("scaled_ce") == {"scale": spec.Range(low=0.5, high=3.0)}
        assert spec.default_space("scaled_ce") == {"scale": spec.Range(low=0.5, high=2.0)}
        bad = write_study(tmp_path, {**TOY_STUDY, "search": {
            "families": ["scaled_ce"], "scaled_ce": {"scale": {"low": 0.5, "high": 20.0}}}},
            name="bad.toml")
        result = runner.invoke(main, ["validate", str(bad)])
        assert result.exit_code == 2
        assert "search.scaled_ce.scale: scale must lie in (0, 10], got 0.5..20" in result.output
        unknown = write_study(tmp_path, {**TOY_STUDY, "baselines": [
            {"family": "scaled_ce", "params": {"size": 1}}]}, name="unknown.toml")
        with pytest.raises(SpecError, match="baselines\\[0\\].params.size: family 'scaled_ce' "
                                            "has no parameter 'size'; allowed: scale"):
            spec.load(unknown)

        # Searched and trained: the baseline (enqueued) and one sampled design.
        url = f"sqlite:///{tmp_path / 'toy.db'}"
        result = runner.invoke(main, ["search", str(path), "--storage", url],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        trials = optuna.load_study(study_name="tiny", storage=url).trials
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
        assert {t.user_attrs["family"] for t in trials} == {"scaled_ce"}
        assert trials[0].params["scaled_ce.scale"] == 2.0
        assert 0.5 <= trials[1].params["scaled_ce.scale"] <= 3.0
        assert trials[0].user_attrs["loss_words"] == "scaled cross-entropy, s = 2"
        assert len(trials[1].user_attrs["curve.val_macro_f1"]) == 2
        assert ScaledCrossentropy.built[:2] == [2.0, trials[1].params["scaled_ce.scale"]]
        # The swap contract: both trained at once, as one population.
        assert [t.user_attrs["compiled"] for t in trials] == ["population", "population"]
        assert [t.user_attrs["population"] for t in trials] == [2, 2]
        # ...where each member computes its own design (its factor stacked by member).
        y_pred = np.random.default_rng(0).normal(size=(4, 2, 3)).astype("float32")
        y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
        two = [ScaledCrossentropy(2.0, from_logits=True), ScaledCrossentropy(0.5, from_logits=True)]
        stacked = keras.ops.convert_to_numpy(losses.stack(two).call(
            np.repeat(y[:, None], 2, axis=1), y_pred))
        for k, loss in enumerate(two):
            np.testing.assert_allclose(stacked[:, k], keras.ops.convert_to_numpy(
                loss.call(y, y_pred[:, k])), rtol=1e-6)

        # Described in words, and back from a built loss.
        description = json.loads(trials[0].user_attrs["loss"])
        assert description == {"family": "scaled_ce", "params": {"scale": 2.0,
                                                                 "from_logits": True}}
        assert losses.describe_loss(losses.build_loss(description)) == description
        with pytest.raises(ValueError, match=r"scaled_ce.scale must be a number in \(0, 10\], "
                                             "got 0"):
            losses.build_loss({"family": "scaled_ce", "params": {"scale": 0}})

        # In the report.
        report = tmp_path / "toy.html"
        result = runner.invoke(main, ["report", "tiny", "--storage", url, "-o", str(report)],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "scaled cross-entropy, s = 2" in report.read_text()
        # Its own figure (a family needs 3 complete trials for one), titled from the catalog.
        study = optuna.create_study(direction="maximize")
        for i in range(3):
            study.add_trial(optuna.trial.create_trial(
                value=0.5 + i / 10, params={"loss": "scaled_ce", "scaled_ce.scale": 0.5 + i},
                distributions={"loss": CategoricalDistribution(["scaled_ce"]),
                               "scaled_ce.scale": FloatDistribution(0.5, 3.0)},
                user_attrs={"family": "scaled_ce"}))
        figures = {title: caption for title, caption, _ in
                   _figures(study, study.trials, True, "macro_f1", study.trials)}
        assert figures["Scaled cross-entropy: s"].endswith(" s multiplies the whole loss.")

    # The registration is gone with the block: the catalog is as it was.
    assert catalog.find("scaled_ce") is None and "scaled_ce" not in catalog.names()
    with pytest.raises(SpecError, match="unknown loss family 'scaled_ce'"):
        spec.load(path)


def test_every_family_and_its_class_agree_on_defaults():
    """A loss class's own keyword defaults are the catalog's (its Python signature repeats
    them, as Keras's classes do)."""
    for family in catalog.families():
        cls = catalog.load(family.loss)
        signature = inspect.signature(cls.__init__).parameters
        for param in family.params:
            if param.role == "loss" and param.default is not None:
                assert signature[param.name].default == param.default, (family.name, param.name)
        for name in family.arguments():
            assert name in signature or "kwargs" in signature, (family.name, name)


def test_every_base_takes_its_arguments_with_the_catalogs_defaults():
    for base in catalog.family("dynamic").bases:
        cls = catalog.load(base.loss)
        signature = inspect.signature(cls.__init__).parameters
        for name in base.args:
            assert name in signature, (base.name, name)
        for name, default in base.defaults.items():
            assert signature[name].default == default, (base.name, name)
        assert type(losses.make_base_loss(base.name)) is cls


@pytest.mark.parametrize("record, message", [
    (replace(SCALED, name="focal"), "registered already"),
    (replace(SCALED, name="Scaled CE"), "lower-case letters"),
    (replace(SCALED, tasks=("ranking",)), "tasks among multiclass, binary, regression"),
    (replace(SCALED, params=(catalog.Parameter("scale", 1.0, "(0, 10]",
                                               search={"low": 0.0, "high": 2.0}),)),
     "default search of 'scale' leaves what it allows"),
    (replace(SCALED, needs={"labels": None}), "needs among logits"),
    (replace(SCALED, contour=("scale", "shift")), "shift"),
])
def test_a_record_that_contradicts_itself_is_refused_at_registration(record, message):
    with pytest.raises((ValueError, KeyError), match=message):
        catalog.register(record)
    assert catalog.find(record.name) is None or record.name == "focal"


def test_intervals_read_as_written():
    beta = catalog.Interval("[0, 1)")
    assert beta.admits(0) and beta.admits(0.9999) and not beta.admits(1)
    assert not catalog.Interval("(0, inf)").admits(0) and catalog.Interval("(0, inf)").admits(1e9)
    assert catalog.Interval("[1e-6, 500]").admits(500) and str(catalog.Interval("[1e-6, 500]")) \
        == "[1e-6, 500]"
    with pytest.raises(ValueError, match="an interval reads like"):
        catalog.Interval("0..1").admits(0.5)


def test_fit_fills_only_what_a_design_needs():
    fit = catalog.fill_from_data
    assert fit({"family": "focal", "params": {}}, class_counts=[1, 2], epochs=3,
               from_logits=True) == {"family": "focal", "params": {"from_logits": True}}
    assert fit({"family": "dynamic", "params": {"prior": "train", "base": "huber"}},
               class_counts=[1, 2], epochs=3, from_logits=True)["params"] == {
        "prior": "train", "base": "huber", "class_counts": [1, 2], "epochs": 3}
    kept = {"family": "class_balanced", "params": {"class_counts": [4, 1]}}
    assert fit(kept) == kept and fit({"family": "dice", "params": {"a": 1}}, epochs=2) == {
        "family": "dice", "params": {"a": 1}}


def test_the_catalog_spec_and_space_need_no_keras():
    code = ("import sys, losstune.catalog, losstune.studyfile, losstune.space, losstune.schedules, "
            "losstune.cli; print('keras' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "False False", out.stderr[-2000:]
