"""Samplers and pruners from the spec, without training anything."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from losstune import runner
from losstune.spec import parse

LOSS = CategoricalDistribution(["cross_entropy", "class_balanced"])


def _study(scope: str) -> optuna.Study:
    spec = parse({"name": "p", "task": "multiclass", "n_trials": 3, "dataset": {"name": "digits"},
                  "pruner": {"n_startup_trials": 2, "n_warmup_steps": 0, "scope": scope}})
    study = optuna.create_study(direction="maximize", pruner=runner.make_pruner(spec))
    for value in (0.90, 0.92):  # cross-entropy learns fast
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value,
                                     params={"loss": "cross_entropy"}, distributions={"loss": LOSS},
                                     intermediate_values={0: value}))
    return study


def _early(study: optuna.Study, family: str, value: float) -> bool:
    study.enqueue_trial({"loss": family})
    trial = study.ask({"loss": LOSS})
    assert trial.params["loss"] == family
    trial.report(value, 0)
    return bool(trial.should_prune())


@pytest.mark.parametrize("scope,slow_family_pruned", [("family", False), ("study", True)])
def test_a_family_that_learns_slowly_is_compared_with_its_own(scope, slow_family_pruned):
    study = _study(scope)
    assert _early(study, "class_balanced", 0.30) is slow_family_pruned
    assert _early(study, "cross_entropy", 0.30) is True  # slow within its family: pruned


def test_pruners_by_name():
    base = {"name": "p", "task": "multiclass", "n_trials": 3, "dataset": {"name": "digits"}}
    assert isinstance(runner.make_pruner(parse({**base, "pruner": {"name": "none"}})),
                      optuna.pruners.NopPruner)
    assert isinstance(runner.make_pruner(parse({**base, "pruner": {"name": "hyperband"}})),
                      optuna.pruners.HyperbandPruner)
    multi = parse({**base, "objective": {"metric": ["macro_f1", "train_time"]}})
    assert isinstance(runner.make_pruner(multi), optuna.pruners.NopPruner)
