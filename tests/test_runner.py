"""Samplers and pruners from the spec, without training anything."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from losstune import runner, sampling
from losstune.studyfile import parse

LOSS = CategoricalDistribution(["cross_entropy", "class_balanced"])


def _study(scope: str) -> optuna.Study:
    spec = parse({"name": "p", "task": "multiclass", "n_trials": 3, "dataset": {"name": "digits"},
                  "pruner": {"n_startup_trials": 2, "n_warmup_steps": 0, "scope": scope}})
    study = optuna.create_study(direction="maximize", pruner=sampling.make_pruner(spec))
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
    assert isinstance(sampling.make_pruner(parse({**base, "pruner": {"name": "none"}})),
                      optuna.pruners.NopPruner)
    assert isinstance(sampling.make_pruner(parse({**base, "pruner": {"name": "hyperband"}})),
                      optuna.pruners.HyperbandPruner)
    multi = parse({**base, "objective": {"metric": ["macro_f1", "train_time"]}})
    assert isinstance(sampling.make_pruner(multi), optuna.pruners.NopPruner)


def _spec(**changes):
    from tests.conftest import TINY, merge

    return parse(merge(TINY, changes))


def _baselines(study):
    from losstune import results

    return [(t.user_attrs["baseline"], t.state.name) for t in study.get_trials(deepcopy=False)
            if results.BASELINE in t.user_attrs]


def test_an_interrupted_baseline_is_queued_again_on_resume(tmp_path):
    """Ctrl-C, SIGTERM or a killed parent during a baseline: the resumed study trains it (it
    compared against one baseline or none before). A baseline that keeps failing for its own
    reasons is queued at most MAX_BASELINE_FAILURES times."""
    from losstune import results
    from losstune.stopping import INTERRUPTED

    url = f"sqlite:///{tmp_path / 'b.db'}"
    spec = _spec()
    study = runner.create_or_load(spec, url, heartbeat=False)
    labels = [label for label, _ in _baselines(study)]
    assert len(labels) == 2 and all(state == "WAITING" for _, state in _baselines(study))
    first = study.ask()  # the first baseline, popped from the queue and interrupted
    first.set_user_attr(results.ERROR, INTERRUPTED)
    study.tell(first, state=TrialState.FAIL)
    study = runner.create_or_load(spec, url, heartbeat=False)
    assert sorted(_baselines(study)) == sorted([(labels[0], "FAIL"), (labels[0], "WAITING"),
                                                (labels[1], "WAITING")])
    assert runner.create_or_load(spec, url, heartbeat=False).trials == study.trials  # once
    second = study.ask()  # the other baseline, queued before the retry: it trains
    assert second.user_attrs["baseline"] == labels[1]
    study.tell(second, 0.5)
    for _ in range(runner.MAX_BASELINE_FAILURES):  # failing on its own: given up after 3
        trial = study.ask()
        assert trial.user_attrs["baseline"] == labels[0]
        trial.set_user_attr(results.ERROR, "ValueError: nan loss")
        study.tell(trial, state=TrialState.FAIL)
        study = runner.create_or_load(spec, url, heartbeat=False)
    assert [state for label, state in _baselines(study) if label == labels[0]] == [
        "FAIL", "FAIL", "FAIL", "FAIL"]  # the interrupt, then 3 failures: not queued again


def test_a_study_killed_before_its_settings_were_stored_is_finished_on_resume(tmp_path):
    """A kill in the first second left a study without its settings: resuming skipped the
    changed-settings check for good. Now the next start stores them, and the check holds."""
    from losstune import results
    from losstune.errors import StorageError

    url = f"sqlite:///{tmp_path / 'k.db'}"
    optuna.create_study(study_name="tiny", storage=url, direction="maximize")  # killed here
    spec = _spec()
    study = runner.create_or_load(spec, url, heartbeat=False)
    assert study.user_attrs[results.SPEC]["name"] == "tiny"
    assert study.user_attrs[results.OBJECTIVE] == ["macro_f1"] and len(_baselines(study)) == 2
    with pytest.raises(StorageError, match="was made with other settings; changed: "
                                           "training.epochs"):
        runner.create_or_load(_spec(training={"epochs": 9}), url, heartbeat=False)


def test_a_plain_optuna_study_of_the_same_name_is_not_taken_over(tmp_path):
    from losstune.errors import StorageError

    url = f"sqlite:///{tmp_path / 'o.db'}"
    other = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    other.add_trial(create_trial(value=0.5, params={}, distributions={}))
    with pytest.raises(StorageError, match="has trials but no losstune settings"):
        runner.create_or_load(_spec(), url, heartbeat=False)
    assert optuna.load_study(study_name="tiny", storage=url).user_attrs == {}
