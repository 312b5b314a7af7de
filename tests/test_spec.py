"""Study files: every example validates; bad files give one message naming file, key, allowed."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from losstune import catalog
from losstune import studyfile as spec_mod
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
    with pytest.raises(ValidationError, match="Instance is frozen") as info:
        spec.seed = 4  # frozen
    assert info.value.errors()[0]["type"] == "frozen_instance"
    assert spec.seed == 3


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
    ({"task": "ranking"}, "task", "must be 'multiclass', 'binary', 'regression', 'multilabel', 'count', 'autoencoder', 'embedding', 'gan' or 'style_transfer'"),
    ({"n_trials": "ten"}, "n_trials", "valid integer"),
    ({"n_trials": 0}, "n_trials", "must lie in [1, 1000000], got 0"),
    ({"training": {"epochs": 0}}, "training.epochs", "must lie in [1, inf)"),
    ({"training": {"learning_rate": {"low": 0.1, "high": 0.01}}}, "training.learning_rate",
     "inverted range"),
    ({"training": {"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}},
     "training.learning_rate", "a log range needs low > 0"),
    ({"training": {"batch_size": {"choices": []}}}, "training.batch_size.choices",
     "choices must not be empty"),
    ({"training": {"optimizer": "adagrad"}}, "training.optimizer", "'adam', 'adamw'"),
    ({"dataset": {"name": "mnist"}}, "dataset.name", "must be 'digits', 'wine'"),
    ({"dataset": {"long_tail": 0.5}}, "dataset.long_tail", "must lie in [1, inf), got 0.5"),
    ({"dataset": {"name": "csv", "path": "missing.csv", "target": "y"}}, "dataset.path",
     "file not found"),
    ({"dataset": {"name": "diabetes"}}, "task", "dataset 'diabetes' is a regression dataset"),
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
    ({"sampler": {"name": "grid"}}, "search.cross_entropy.label_smoothing",
     "grid sampler needs a step"),
    ({"baselines": [{"family": "huber"}]}, "baselines[0].family",
     "family 'huber' is not valid for a multiclass task"),
    ({"n_trials": None}, "n_trials", "give n_trials, timeout or both"),
    # Seeds leave room for racing's seed + 1000 * i (i < 100) inside 32 bits.
    ({"seed": -1}, "seed", "seed must be a whole number in [0, 2147283647]"),
    ({"seed": spec_mod.MAX_SEED + 1}, "seed", f"got {spec_mod.MAX_SEED + 1}"),
    ({"sampler": {"seed": 2**31}}, "sampler.seed", "seed must be a whole number in [0, "),
    ({"seed": "7"}, "seed", "got '7'"),
    # Every number finite (TOML has nan and inf), with the key path to it.
    ({"training": {"learning_rate": float("nan")}}, "training.learning_rate",
     "must be a finite number, got nan"),
    ({"training": {"learning_rate": {"choices": [0.01, float("inf")]}}},
     "training.learning_rate.choices[1]", "must be a finite number, got inf"),
    ({"search": {"focal": {"gamma": {"low": 0.0, "high": float("inf")}}}},
     "search.focal.gamma.high", "must be a finite number, got inf"),
    ({"search": {"class_balanced": {"beta": {"choices": [0.9, float("nan")]}}}},
     "search.class_balanced.beta.choices[1]", "must be a finite number, got nan"),
    ({"dataset": {"label_noise": float("nan")}}, "dataset.label_noise", "finite number"),
    ({"search": {"schedule": {"rate": float("inf")}}}, "search.schedule.rate", "finite number"),
    ({"racing": {"alpha": float("inf")}}, "racing.alpha", "must be a finite number, got inf"),
    ({"baselines": [{"family": "focal", "params": {"alpha": float("-inf")}}]},
     "baselines[0].params.alpha", "must be a finite number, got -inf"),
    # Baseline parameters: the search space's names, intervals and types.
    ({"baselines": [{"family": "focal", "params": {"gamma": -1.0}}]},
     "baselines[0].params.gamma", "gamma must lie in [0, inf), got -1"),
    ({"baselines": [{"family": "cross_entropy", "params": {"label_smoothing": "some"}}]},
     "baselines[0].params.label_smoothing", "must be a number, a range table or"),
    ({"baselines": [{"family": "class_balanced", "params": {"beta": 1.0}}]},
     "baselines[0].params.beta", "beta must lie in [0, 1), got 1"),
    ({"baselines": [{"family": "focal", "params": {"delta": 1.0}}]},
     "baselines[0].params.delta", "family 'focal' has no parameter 'delta'"),
    ({"baselines": [{"family": "dynamic", "params": {"prior": "flat"}}]},
     "baselines[0].params.prior", "prior 'flat' is not valid; allowed: uniform, train"),
    # Choices: members checked like fixed values.
    ({"training": {"optimizer": {"choices": ["sgd", "lion"]}}}, "training.optimizer",
     "got 'lion'"),
    ({"training": {"batch_size": {"choices": [32, "big"]}}}, "training.batch_size",
     "batch_size must be a number"),
    ({"training": {"epochs": {"low": 1.0, "high": 4.5}}}, "training.epochs",
     "epochs must be a whole number, got 4.5"),
    ({"search": {"class_balanced": {"gamma": {"choices": [1.0, -2.0]}}}},
     "search.class_balanced.gamma", "gamma must lie in [0, inf), got -2..1"),
    ({"search": {"dynamic": {"base": {"choices": ["huber"]}}}}, "search.dynamic.base",
     "base 'huber' is not valid for a multiclass task"),
    ({"search": {"dynamic": {"base": {"low": 0.0, "high": 1.0}}}}, "search.dynamic.base",
     "not a range"),
    ({"search": {"schedule": {"end": {"choices": [0.5, "max"]}}}}, "search.schedule.end",
     "end must be a number"),
    ({"search": {"schedule": {"warmup": 1.5}}}, "search.schedule.warmup",
     "warmup must be a whole number, got 1.5"),
    ({"search": {"schedule": {"rate": 0.0}}}, "search.schedule.rate",
     "rate must lie in [1e-6, inf), got 0"),
    ({"search": {"schedule": {"steepness": {"low": 2.0, "high": 900.0}}}},
     "search.schedule.steepness", "steepness must lie in [1e-6, 500], got 2..900"),
    ({"search": {"schedule": {"milestones": [-2]}}}, "search.schedule.milestones",
     "milestones must be epochs >= 0"),
    ({"search": {"soft_fbeta": {"beta": 0.0}}}, "search.soft_fbeta.beta",
     "beta must lie in (0, inf), got 0"),
    # Family tables: one per catalog family; a term that needs classes is off for regression.
    ({"search": {"dice": {"smooth": 1.0}}}, "search.dice",
     "unknown key; allowed: families, schedule, penalty, denoise, cross_entropy, focal"),
    ({"search": {"focal": 2.0}}, "search.focal", "must be a valid dictionary"),
    ({"task": "regression", "dataset": {"name": "diabetes"}, "objective": {"metric": "mae"},
      "search": {"families": ["dynamic"], "dynamic": {"w_balance": {"low": 0.0, "high": 1.0}}}},
     "search.dynamic.w_balance", "must be 0 for a regression task"),
    ({"task": "regression", "dataset": {"name": "diabetes"}, "objective": {"metric": "mae"},
      "search": None, "baselines": [{"family": "dynamic", "params": {"w_balance": 0.5}}]},
     "baselines[0].params.w_balance", "must be 0 for a regression task"),
    ({"task": "regression", "dataset": {"name": "diabetes"}, "objective": {"metric": "mae"},
      "search": {"families": ["dynamic"], "dynamic": {"base": "categorical_crossentropy"}}},
     "search.dynamic.base", "base 'categorical_crossentropy' is not valid for a regression task"),
    # Built-in datasets take no file columns.
    ({"dataset": {"features": ["a"]}}, "dataset.features",
     "only for the csv and npz datasets; 'wine' is built in"),
    ({"dataset": {"target": "a"}}, "dataset.target", "only for the csv and npz datasets"),
    ({"dataset": {"path": "a.csv"}}, "dataset.path", "only for the csv and npz datasets"),
    # Other sections.
    ({"racing": {"max_seeds": 101}}, "racing.max_seeds", "must lie in [1, 100], got 101"),
    ({"racing": {"seeds": 3}}, "racing.seeds", "unknown key; allowed: max_seeds, alpha, test_seeds"),
    ({"n_trials": spec_mod.MAX_TRIALS + 1}, "n_trials", "must lie in [1, 1000000]"),
    ({"name": "two\nlines"}, "name", "name must be printable text"),
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


def test_max_seed_leaves_room_for_racing_and_the_fresh_seeds():
    from losstune import racing, results

    def most(name):
        return max(m.le for m in spec_mod.RacingSpec.model_fields[name].metadata
                   if hasattr(m, "le"))

    # Racing's seed indices stay below the fresh ones; the last fresh index is a 32-bit seed.
    assert most("max_seeds") <= results.FRESH_SEEDS
    top = results.FRESH_SEEDS + most("test_seeds")
    assert racing.seed_for(spec_mod.MAX_SEED, top) < 2**31
    assert racing.seed_for(spec_mod.MAX_SEED + 1, top) >= 2**31


def test_the_file_and_the_command_line_bound_the_budget_alike():
    from losstune import cli

    assert spec_mod.MAX_TRIALS == cli.MAX_TRIALS


def test_largest_seed_and_literal_nan_in_the_file(tmp_path):
    spec = spec_mod.load(write_study(tmp_path, {"seed": spec_mod.MAX_SEED,
                                                "sampler": {"seed": spec_mod.MAX_SEED}}))
    assert spec.seed == spec.sampler_seed == spec_mod.MAX_SEED
    path = tmp_path / "literal.toml"
    text = write_study(tmp_path).read_text()
    path.write_text(text.replace("learning_rate = 0.01", "learning_rate = nan"))
    assert "learning_rate = nan" in path.read_text()
    with pytest.raises(SpecError, match="training.learning_rate: must be a finite number"):
        spec_mod.load(path)


def test_choices_of_names_and_numbers_that_are_valid_still_load(tmp_path):
    spec = spec_mod.load(write_study(tmp_path, {
        "training": {"optimizer": {"choices": ["adam", "sgd"]}, "epochs": {"choices": [2, 3]}},
        "search": {"dynamic": {"prior": {"choices": ["uniform", "train"]}},
                   "focal": {"alpha": {"choices": [0, 0.5]}}},
        "baselines": [{"family": "focal", "params": {"gamma": 0, "alpha": 1}}]}))
    assert spec.training.optimizer.choices == ("adam", "sgd")
    assert spec.baseline_designs[0].params == {"gamma": 0, "alpha": 1}


def test_merge_helper_deletes_keys():
    assert "search" not in merge(TINY, {"search": None})


def test_a_stored_spec_reads_back_equal_and_lists_every_family(study_file):
    """Studies store ``spec.model_dump_json()`` and compare it when resumed: every catalog
    family's table is in it (empty where the file has none), as before the catalog."""
    loaded = spec_mod.load(study_file)
    stored = json.loads(loaded.model_dump_json())
    assert set(stored["search"]) == {"families", "schedule", "penalty", "denoise", *catalog.names()}
    assert stored["search"]["mse"] == {} and stored["search"]["focal"] == {
        "gamma": {"low": 0.5, "high": 3.0, "log": False, "step": None}}
    assert spec_mod.StudySpec.model_validate(stored) == loaded
    assert stored["search"]["schedule"]["rate"] == {"low": 0.1, "high": 5.0, "log": True,
                                                    "step": None}


def test_default_spaces_and_families_come_from_the_catalog(tmp_path):
    regression = spec_mod.load(write_study(tmp_path, {
        "task": "regression", "dataset": {"name": "diabetes"}, "objective": {"metric": "mae"},
        "search": {"families": None, "dynamic": {"w_curriculum": 0.5}}}))
    assert regression.families == ("mse", "mae", "huber", "log_cosh")
    dynamic = regression.search.family_space("dynamic", "regression")
    assert dynamic["base"] == "huber" and dynamic["w_balance"] == 0.0
    assert dynamic["w_curriculum"] == 0.5 and dynamic["w_standard"] == 1.0
    assert spec_mod.default_space("class_balanced")["beta"] == spec_mod.Choices(
        choices=(0.9, 0.99, 0.999, 0.9999))
    assert spec_mod.default_space("mse") == {}


def test_numpy_values_from_python_are_numbers_and_tuples_not_refused():
    """Strict validation (no "16" for 16) still takes what a notebook passes: NumPy scalars
    and arrays."""
    import numpy as np

    from losstune.studyfile import parse
    from tests.conftest import TINY, merge

    spec = parse(merge(TINY, {"n_trials": np.int64(3),
                              "training": {"learning_rate": np.float32(0.01)},
                              "search": {"focal": {"gamma": {"low": None, "high": None,
                                                             "choices": np.array([1.0, 2.0])}}}}))
    assert spec.n_trials == 3 and type(spec.n_trials) is int
    assert spec.search.model_extra["focal"]["gamma"].choices == (1.0, 2.0)
