"""Study files: every example validates; bad files give one message naming file, key, allowed."""

from __future__ import annotations


import pytest

from losstune import spec as spec_mod
from losstune.errors import SpecError
from tests.conftest import ROOT, TINY, merge, write_study

STUDIES = sorted((ROOT / "studies").glob("*.toml"))


def test_there_are_example_studies():
    assert {p.name for p in STUDIES} >= {"quickstart.toml"}
    assert len(STUDIES) >= 3


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_example_study_validates_and_says_what_it_is(path):
    spec = spec_mod.load(path)
    assert spec.name
    assert path.read_text().startswith("#"), "each example explains itself in a top comment"


def test_defaults_and_derived_values(study_file):
    spec = spec_mod.load(study_file)
    assert spec.objective.directions == ("maximize",)
    assert [b.family for b in spec.baseline_designs] == ["cross_entropy", "focal"]
    assert spec.baseline_designs[1].params == {"gamma": 2.0, "alpha": 0.25}
    assert spec.sampler_seed == 3
    space = spec.search.family_space("focal")
    assert space["gamma"] == spec_mod.Range(low=0.5, high=3.0)
    assert space["alpha"] == spec_mod.Range(low=0.05, high=1.0)  # default kept
    with pytest.raises(Exception):
        spec.seed = 4  # frozen


def test_regression_defaults(tmp_path):
    path = write_study(tmp_path, {"task": "regression", "dataset": {"name": "diabetes"},
                                  "objective": {"metric": "mae"}, "search": None})
    spec = spec_mod.load(path)
    assert spec.families == ("mse", "mae", "huber", "log_cosh")
    assert [b.family for b in spec.baseline_designs] == ["mse", "huber"]
    assert spec.objective.directions == ("minimize",)


def test_multi_objective(tmp_path):
    path = write_study(tmp_path, {"objective": {"metric": ["macro_f1", "train_time"]}})
    spec = spec_mod.load(path)
    assert spec.objective.directions == ("maximize", "minimize") and spec.multi_objective


# (changes to the tiny study, key path in the message, fragment of the message)
BAD = [
    ({"tasks": "x"}, "tasks", "unknown key; allowed: name, task"),
    ({"task": "ranking"}, "task", "must be 'multiclass', 'binary' or 'regression'"),
    ({"n_trials": "ten"}, "n_trials", "valid integer"),
    ({"n_trials": 0}, "n_trials", "greater than or equal to 1"),
    ({"training": {"epochs": 0}}, "training.epochs", "must lie in [1, inf)"),
    ({"training": {"learning_rate": {"low": 0.1, "high": 0.01}}}, "training.learning_rate",
     "inverted range"),
    ({"training": {"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}},
     "training.learning_rate", "a log range needs low > 0"),
    ({"training": {"batch_size": {"choices": []}}}, "training.batch_size.choices",
     "choices must not be empty"),
    ({"training": {"optimizer": "adagrad"}}, "training.optimizer", "'adam', 'adamw'"),
    ({"dataset": {"name": "mnist"}}, "dataset.name", "must be 'digits', 'wine'"),
    ({"dataset": {"long_tail": 0.5}}, "dataset.long_tail", "greater than or equal to 1"),
    ({"dataset": {"name": "csv", "path": "missing.csv", "target": "y"}}, "dataset.path",
     "file not found"),
    ({"dataset": {"name": "diabetes"}}, "task", "dataset 'diabetes' is a regression task"),
    ({"objective": {"metric": "f2"}}, "objective.metric",
     "unknown metric 'f2' for a multiclass task; allowed: macro_f1"),
    ({"objective": {"metric": "rmse"}}, "objective.metric", "unknown metric 'rmse'"),
    ({"objective": {"metric": ["train_time"]}}, "objective.metric",
     "train_time can only be a second objective"),
    ({"search": {"families": ["dice"]}}, "search.families[0]", "unknown loss family 'dice'"),
    ({"search": {"families": ["huber"]}}, "search.families[0]",
     "family 'huber' is not valid for a multiclass task; allowed: cross_entropy"),
    ({"search": {"families": []}}, "search.families", "list at least one family"),
    ({"search": {"focal": {"gamma": {"low": -1.0, "high": 2.0}}}}, "search.focal.gamma",
     "gamma must lie in [0, inf)"),
    ({"search": {"focal": {"alpha": {"low": 0.5, "high": 1.5}}}}, "search.focal.alpha",
     "alpha must lie in [0, 1]"),
    ({"search": {"focal": {"delta": 1.0}}}, "search.focal.delta",
     "family 'focal' has no parameter 'delta'; allowed: gamma, alpha, label_smoothing"),
    ({"search": {"poly1": {"epsilon": {"low": 1.0}}}}, "search.poly1.epsilon.high",
     "required key is missing"),
    ({"search": {"poly1": {"epsilon": {"low": 1.0, "high": 2.0, "size": 3}}}},
     "search.poly1.epsilon.size", "unknown key; allowed: low, high, log, step"),
    ({"search": {"schedule": {"names": ["zigzag"]}}}, "search.schedule.names",
     "unknown schedule 'zigzag'"),
    ({"search": {"class_balanced": {"beta": 1.0}}, "n_trials": 2}, "search.class_balanced.beta",
     "beta must lie in [0, 1)"),
    ({"model": {"kind": "cnn"}}, "model.kind", "needs image data"),
    ({"model": {"hidden": [0]}}, "model.hidden", "layer sizes must be >= 1"),
    ({"sampler": {"name": "annealing"}}, "sampler.name", "'tpe', 'random', 'grid'"),
    ({"sampler": {"name": "grid"}}, "search.focal.gamma", "grid sampler needs a step"),
    ({"baselines": [{"family": "huber"}]}, "baselines[0].family",
     "family 'huber' is not valid for a multiclass task"),
    ({"n_trials": None}, "n_trials", "give n_trials, timeout or both"),
]


@pytest.mark.parametrize("changes, key, fragment", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_study_files(tmp_path, changes, key, fragment):
    path = write_study(tmp_path, changes)
    with pytest.raises(SpecError) as info:
        spec_mod.load(path)
    message = str(info.value)
    assert info.value.key == key, message
    assert message.startswith(f"{path}: {key}: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\ntask = multiclass\n')
    with pytest.raises(SpecError, match=r"broken.toml: TOML syntax error: .*line 2"):
        spec_mod.load(path)


def test_missing_study_file(tmp_path):
    with pytest.raises(SpecError, match="study file not found"):
        spec_mod.load(tmp_path / "nope.toml")


def test_merge_helper_deletes_keys():
    assert "search" not in merge(TINY, {"search": None})
