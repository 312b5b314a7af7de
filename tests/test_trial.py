"""A trial's pieces on their own: curves, epoch timing, targets, output checks, seeds."""

from __future__ import annotations

import math

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
