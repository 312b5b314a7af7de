"""A trial's pieces on their own: curves, epoch timing, targets, output checks, seeds."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from losstune import trial
from losstune.data import Splits
from losstune.errors import LosstuneError
from losstune.studyfile import parse


def _spec(**changes):
    base = {"name": "t", "task": "multiclass", "n_trials": 1, "dataset": {"name": "wine"}}
    return parse({**base, **changes})


def test_curves_are_compact_and_keep_non_finite_as_missing():
    assert trial.compact([0.123456789, math.nan, math.inf, 2.0]) == [0.12346, None, None, 2.0]


def test_epoch_time_leaves_out_the_first_epoch():
    assert trial.steady_epoch_seconds([5.0, 0.2, 0.4, 0.3]) == pytest.approx(0.3)
    assert trial.steady_epoch_seconds([5.0]) == 5.0 and trial.steady_epoch_seconds([]) == 0.0


def test_targets_are_one_hot_for_classes_and_a_column_for_regression():
    cls = Splits(*(np.zeros((3, 2), "float32"), np.array([0, 2, 1])) * 3, task="multiclass",
                 num_classes=3)
    assert trial.training_targets(cls).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    reg = Splits(*(np.zeros((3, 2), "float32"), np.array([0.5, 1.0, 2.0])) * 3,
                 task="regression")
    assert trial.training_targets(reg).shape == (3, 1)


def test_outputs_that_do_not_match_the_targets_are_named():
    spec = _spec(model={"kind": "factory", "factory": "m:build"})
    with pytest.raises(LosstuneError, match=r"model.factory 'm:build' returned outputs of shape "
                                            r"\(batch, 5\); a multiclass task here needs "
                                            r"\(batch, 3\)"):
        trial.check_outputs(spec, np.zeros((4, 5)), np.zeros((4, 3)))
    trial.check_outputs(spec, np.zeros((4, 3)), np.zeros((4, 3)))  # fine


def test_the_seed_depends_on_the_run_seed_only():
    assert trial.run_seed(_spec(seed=3)) == trial.run_seed(_spec(seed=3))
    assert trial.run_seed(_spec(seed=3)) != trial.run_seed(_spec(seed=1003))


@pytest.mark.parametrize("population", [1, 3])
def test_a_training_whose_loss_diverges_fails_with_its_epoch_alone_and_in_a_population(
        tmp_path, population):
    """A trial alone and each population member are watched alike (trial.watch_epoch): a
    training loss that is not finite stops that training and is recorded FAIL, with the
    epoch it happened at."""
    from losstune import runner
    from losstune import studyfile as spec_mod
    from losstune.storage import open_storage
    from tests.conftest import write_study

    path = write_study(tmp_path, {
        "task": "regression", "dataset": {"name": "diabetes"}, "n_trials": 3,
        "objective": {"metric": "mae"}, "baselines": False, "sampler": {"name": "random"},
        "search": {"families": ["mse"]},
        "training": {"learning_rate": {"low": 1e29, "high": 1e30, "log": True},
                     "population": population}})
    spec = spec_mod.load(path)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    study = runner.create_or_load(spec, url)
    search = runner.Search(study, runner.load_context(spec, tmp_path), open_storage(url))
    search.run(3)
    trials = study.get_trials()
    assert trials and all(t.state.name == "FAIL" for t in trials)
    for t in trials:
        assert re.fullmatch(r"the training loss became (nan|inf) at epoch \d",
                            t.user_attrs["error"]), t.user_attrs["error"]
        assert t.user_attrs.get("population", 1) == population
