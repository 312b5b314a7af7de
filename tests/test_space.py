"""The search space: Optuna suggest calls per family (only what the chosen design reads),
baselines as points of the space, and the description a design becomes."""

from __future__ import annotations

import optuna
import pytest

from losstune import results, space
from losstune.studyfile import parse
from tests.conftest import TINY, merge

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(changes: dict | None = None):
    return parse(merge(TINY, changes or {}))


def _ask(spec, fixed: dict, user_attrs: dict | None = None):
    """A real Optuna trial whose listed parameters are fixed (enqueued), the rest sampled."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(fixed, user_attrs=user_attrs or {})
    trial = study.ask()
    return trial, space.suggest_design(trial, spec)


DYNAMIC = {"search": {"families": ["cross_entropy", "focal", "dynamic"], "dynamic": {
    "base": {"choices": ["categorical_crossentropy", "categorical_focal_crossentropy"]},
    "gamma": {"low": 0.5, "high": 3.0}, "label_smoothing": {"low": 0.0, "high": 0.2},
    "w_curriculum": {"choices": [0.0, 0.5]}},
    "schedule": {"names": ["linear", "exponential", "step"], "warmup": {"low": 0, "high": 2}}}}


def test_a_family_suggests_its_own_parameters_only():
    spec = _spec()
    trial, design = _ask(spec, {"loss": "focal"})
    assert set(trial.params) == {"loss", "focal.gamma", "focal.alpha"}
    assert 0.5 <= design.params["gamma"] <= 3.0 and 0.05 <= design.params["alpha"] <= 1.0
    trial, design = _ask(spec, {"loss": "cross_entropy"})
    assert set(trial.params) == {"loss", "cross_entropy.label_smoothing"}
    # A family with nothing searched has no dimension besides "loss"; fixed values still count.
    trial, design = _ask(_spec({"search": {"families": ["class_balanced"]}}),
                         {"loss": "class_balanced"})
    assert set(trial.params) == {"loss", "class_balanced.beta"} and design.params["gamma"] == 0.0


@pytest.mark.parametrize("base, reads", [
    ("categorical_crossentropy", {"label_smoothing"}),
    ("categorical_focal_crossentropy", {"gamma", "label_smoothing"}),
])
def test_a_base_argument_is_suggested_only_when_the_chosen_base_reads_it(base, reads):
    trial, design = _ask(_spec(DYNAMIC), {"loss": "dynamic", "dynamic.base": base,
                                          "dynamic.w_curriculum": 0.0})
    arguments = {n.partition(".")[2] for n in trial.params} & {"gamma", "label_smoothing"}
    assert arguments == reads and design.params["base"] == base
    assert "schedule" not in trial.params  # w_curriculum = 0: no schedule to choose


@pytest.mark.parametrize("schedule, searched", [
    ("linear", {"schedule.end", "schedule.warmup"}),
    ("exponential", {"schedule.end", "schedule.warmup", "schedule.rate"}),
    ("step", {"schedule.gamma"}),
])
def test_a_schedule_is_chosen_when_the_curriculum_has_weight_and_reads_its_own_parameters(
        schedule, searched):
    trial, design = _ask(_spec(DYNAMIC), {"loss": "dynamic", "dynamic.w_curriculum": 0.5,
                                          "schedule": schedule})
    assert {n for n in trial.params if n.startswith("schedule.")} == searched
    assert design.params["schedule"] == schedule
    sched = design.params["schedule_params"]
    assert set(sched) >= {n.split(".", 1)[1] for n in searched}
    if "warmup" in sched:  # a whole number, suggested as one
        assert isinstance(sched["warmup"], int) and isinstance(
            trial.distributions["schedule.warmup"], optuna.distributions.IntDistribution)
    if schedule == "step":
        assert sched["milestones"] == [2, 4]  # a list of epochs is never searched


def test_a_whole_number_stays_whole_among_choices():
    choices = merge(DYNAMIC, {"search": {"schedule": {"warmup": None}}})  # no range left
    spec = _spec(merge(choices, {"search": {"schedule": {"warmup": {"choices": [1.0, 2.0]}}}}))
    _, design = _ask(spec, {"loss": "dynamic", "dynamic.w_curriculum": 0.5,
                            "schedule": "linear"})
    assert type(design.params["schedule_params"]["warmup"]) is int


def test_the_description_gathers_base_arguments_and_takes_what_the_design_needs():
    design = space.LossDesign("dynamic", {"base": "categorical_focal_crossentropy",
                                          "gamma": 1.5, "w_curriculum": 0.5, "prior": "train",
                                          "schedule": "linear", "schedule_params": {"end": 2.0}})
    params = design.description(epochs=7, class_counts=[3, 2, 1])["params"]
    assert params["base_params"] == {"gamma": 1.5, "alpha": 0.25}  # a design states γ and α
    assert params["schedule"] == {"name": "linear", "params": {"end": 2.0}}
    assert (params["epochs"], params["class_counts"], params["from_logits"]) == (7, [3, 2, 1],
                                                                                True)
    uniform = space.LossDesign("dynamic", {"base": "huber", "delta": 0.5})
    params = uniform.description(epochs=3, class_counts=None, from_logits=False)["params"]
    assert params["base_params"] == {"delta": 0.5} and "class_counts" not in params
    assert "from_logits" not in params  # Huber reads no logits
    assert params["schedule"] == {"name": "constant", "params": {}}
    balanced = space.LossDesign("class_balanced", {"beta": 0.9}).description(
        epochs=3, class_counts=[5, 1])
    assert balanced == {"family": "class_balanced", "params": {
        "beta": 0.9, "class_counts": [5, 1], "from_logits": True}}
    assert space.LossDesign("huber", {"delta": 1.0}).description(
        epochs=3, class_counts=None, from_logits=False) == {"family": "huber",
                                                            "params": {"delta": 1.0}}


def test_default_baselines_are_complete_points_of_the_space():
    spec = _spec()
    [(ce, ce_label, ce_own), (focal, _, focal_own)] = space.baseline_params(spec)
    assert ce == {"loss": "cross_entropy", "cross_entropy.label_smoothing": 0.0}
    assert ce_own == {"label_smoothing": 0.0} and ce_label.startswith("cross_entropy(")
    assert focal == {"loss": "focal", "focal.gamma": 2.0, "focal.alpha": 0.25}
    assert focal_own == {"gamma": 2.0, "alpha": 0.25}


def test_baseline_params_fill_the_rest_with_the_lowest_value_and_skip_what_is_not_read():
    spec = _spec(merge(DYNAMIC, {"baselines": [
        {"family": "focal", "params": {"gamma": 1.0}},
        {"family": "dynamic", "params": {"w_balance": 0.2}},
        {"family": "poly1", "params": {"epsilon": 0.5}}]}))
    [(focal, _, _), (dynamic, _, own), (poly1, _, _)] = space.baseline_params(spec)
    assert focal == {"loss": "focal", "focal.gamma": 1.0, "focal.alpha": 0.05}  # alpha's low end
    # The first base (cross-entropy) reads label smoothing, not γ: γ is not enqueued.
    assert dynamic == {"loss": "dynamic", "dynamic.base": "categorical_crossentropy",
                       "dynamic.w_balance": 0.2, "dynamic.w_curriculum": 0.0,
                       "dynamic.label_smoothing": 0.0}
    # poly1 is not searched: its baseline names no `loss` (no sampler choice), only its params.
    assert poly1 == {"poly1.epsilon": 0.5}
    assert "poly1" not in space.families_to_choose(spec)
    assert space.baseline_only_families(spec) == ["poly1"]
    label = space.baseline_label("poly1", {"epsilon": 0.5})
    trial, design = _ask(spec, poly1, {results.BASELINE: label,
                                       results.BASELINE_PARAMS: {"epsilon": 0.5}})
    assert design.family == "poly1" and design.params["epsilon"] == 0.5
    assert "loss" not in trial.params
    # Enqueued into a real study, a baseline trial proposes exactly its design.
    trial, design = _ask(spec, dynamic, {results.BASELINE_PARAMS: own})
    assert design.family == "dynamic" and design.params["w_balance"] == 0.2
    assert set(trial.params) == set(dynamic)


def test_baselines_train_at_a_declared_point_of_searched_training_settings():
    from losstune.space import baseline_params

    spec = parse({"name": "b", "task": "multiclass", "n_trials": 2, "dataset": {"name": "wine"},
                  "training": {"learning_rate": {"low": 1e-3, "high": 1e-1, "log": True},
                               "epochs": {"low": 2, "high": 7},
                               "optimizer": {"choices": ["sgd", "adam"]}}})
    for params, _, _ in baseline_params(spec):
        assert params["training.learning_rate"] == pytest.approx(1e-2)  # geometric middle
        assert params["training.epochs"] == 4 and params["training.optimizer"] == "sgd"
    fixed = parse({"name": "b", "task": "multiclass", "n_trials": 2, "dataset": {"name": "wine"}})
    assert not any(k.startswith("training.") for p, _, _ in baseline_params(fixed) for k in p)


def test_the_sampler_never_proposes_a_baseline_only_family():
    """One searched family (focal) and the default baselines (cross-entropy, which the study
    does not search, and focal): over many random proposals of a real study, the sampler
    proposes focal only; the cross-entropy baseline still trains, enqueued."""
    from losstune import sampling

    spec = _spec({"search": {"families": ["focal"]}})
    assert space.families_to_choose(spec) == ["focal"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for params, label, own in space.baseline_params(spec):
        study.enqueue_trial(params, user_attrs={results.BASELINE: label,
                                                results.BASELINE_PARAMS: own})
    proposed = []
    for _ in range(300):
        trial = study.ask()
        design = space.suggest_design(trial, spec)
        trial.set_user_attr(results.FAMILY, design.family)  # as trial.propose records it
        study.tell(trial, 0.5)
        proposed.append((design.family, results.BASELINE in trial.user_attrs))
    assert proposed[:2] == [("cross_entropy", True), ("focal", True)]
    assert {family for family, baseline in proposed[2:]} == {"focal"}
    assert not any(baseline for _, baseline in proposed[2:])
    # The family pruner still finds the cross-entropy baseline in its family (by the user
    # attribute: the trial has no `loss` parameter).
    assert [t.number for t in sampling._FamilyView(study, "cross_entropy").get_trials()] == [0]
    assert len(sampling._FamilyView(study, "focal").get_trials()) == 299


def test_a_study_made_before_keeps_its_loss_choices():
    """A study whose trials offered the baseline-only families too (losstune before 0.5):
    Optuna refuses another set of choices for `loss`, so its next trials keep the old set."""
    spec = _spec({"search": {"families": ["focal"]}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    old = study.ask()
    old.suggest_categorical("loss", ["focal", "cross_entropy"])
    study.tell(old, 0.5)
    families = set()
    for _ in range(40):
        trial = study.ask()
        families.add(space.suggest_design(trial, spec).family)
        study.tell(trial, 0.5)
    assert families == {"focal", "cross_entropy"}


@pytest.mark.parametrize("sampler", ["grid", "cmaes", "gp"])
def test_samplers_that_need_a_loss_on_every_trial_keep_the_baseline_families(sampler):
    """The grid (a tree of every trial's parameters) and GP and CMA-ES (the parameters every
    trial shares) would lose the family choice to a baseline trial without `loss`."""
    spec = _spec({"search": {"families": ["focal"], "focal": {
        "gamma": {"low": None, "high": None, "choices": [1.0, 2.0]},
        "alpha": {"choices": [0.25, 0.5]}},
        # the grid reads the baseline-only family's space too: discrete (test_bad_input.py)
        "cross_entropy": {"label_smoothing": {"low": None, "high": None, "choices": [0.0]}}},
        "sampler": {"name": sampler}})
    assert space.families_to_choose(spec) == ["focal", "cross_entropy"]
    assert all("loss" in params for params, _, _ in space.baseline_params(spec))
