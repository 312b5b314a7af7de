"""Population training: K trials in one model compute what each computes alone.

Backend-neutral: tests/test_backends.py runs this file again under KERAS_BACKEND=torch and jax.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import optuna
import pytest
import tomli_w

from losstune import losses, population, results, runner, sampling, studyfile as spec_mod
from losstune import stored as stored_study
from losstune.storage import open_storage
from tests.conftest import merge

CLASSIFICATION = {
    "name": "pop", "task": "multiclass", "seed": 5, "n_trials": 8,
    "dataset": {"name": "wine"},
    "model": {"kind": "mlp", "hidden": [12]},
    # Learning rate and epochs differ between members: each has its own.
    "training": {"epochs": {"choices": [2, 3]}, "batch_size": 32,
                 "learning_rate": {"low": 0.003, "high": 0.03, "log": True}},
    # A continuous objective: equal values mean equal models, not just equal argmaxes.
    "objective": {"metric": "log_loss"},
    "sampler": {"name": "random"},
    "pruner": {"name": "none"},
    "racing": False,
    "baselines": False,
    "search": {"families": ["cross_entropy", "focal", "class_balanced", "poly1", "soft_fbeta",
                            "dynamic"],
               "cross_entropy": {"label_smoothing": {"low": 0.0, "high": 0.2}},
               "focal": {"gamma": {"low": 0.5, "high": 3.0}, "alpha": {"low": 0.1, "high": 0.9}},
               "class_balanced": {"beta": {"choices": [0.9, 0.99]},
                                  "gamma": {"low": 0.0, "high": 2.0}},
               "poly1": {"epsilon": {"low": -0.5, "high": 2.0}},
               "soft_fbeta": {"beta": {"low": 0.5, "high": 2.0}},
               "dynamic": {"w_balance": {"low": 0.0, "high": 1.0},
                           "w_curriculum": {"low": 0.0, "high": 1.0},
                           "w_progress": {"low": 0.0, "high": 0.5}},
               "schedule": {"names": ["linear", "cosine"]}},
}
# Every family, two DynamicLoss designs (one structure, two schedules' values).
CLASSIFICATION_DESIGNS = ["cross_entropy", "focal", "class_balanced", "poly1", "soft_fbeta",
                          "dynamic", "dynamic", "focal"]
REGRESSION = merge(CLASSIFICATION, {
    "task": "regression", "dataset": {"name": "diabetes"}, "objective": {"metric": "rmse"},
    "search": {"families": ["mse", "mae", "huber", "log_cosh", "dynamic"],
               "huber": {"delta": {"low": 0.2, "high": 2.0}},
               "dynamic": {"base": {"choices": ["huber", "mean_squared_error"]},
                           "w_balance": None},
               "cross_entropy": None, "focal": None, "class_balanced": None, "poly1": None,
               "soft_fbeta": None}})
REGRESSION_DESIGNS = ["mse", "mae", "huber", "log_cosh", "dynamic", "dynamic", "huber"]
_OTHERS = {"cross_entropy": None, "focal": None, "class_balanced": None, "poly1": None,
           "soft_fbeta": None}
MULTILABEL = merge(CLASSIFICATION, {
    "task": "multilabel", "dataset": {"name": "multilabel", "max_samples": 400},
    "objective": {"metric": "mean_average_precision"},
    "search": {**_OTHERS, "families": ["binary_crossentropy", "binary_focal",
                                       "class_balanced_bce", "sigmoid_soft_fbeta"],
               "dynamic": None, "schedule": None,
               "binary_crossentropy": {"label_smoothing": {"low": 0.0, "high": 0.2}}}})
MULTILABEL_DESIGNS = ["binary_crossentropy", "binary_focal", "class_balanced_bce",
                      "sigmoid_soft_fbeta"]
COUNT = merge(CLASSIFICATION, {
    "task": "count", "dataset": {"name": "counts"}, "objective": {"metric": "poisson_deviance"},
    "search": {**_OTHERS, "families": ["poisson", "log1p_mse", "count_huber", "dynamic"],
               "dynamic": {"w_balance": None}}})
COUNT_DESIGNS = ["poisson", "log1p_mse", "count_huber", "dynamic"]
EMBEDDING = merge(CLASSIFICATION, {
    "task": "embedding", "dataset": {"name": "digits", "max_samples": 400},
    "model": {"embedding_dim": 8}, "objective": {"metric": "knn_accuracy"},
    "search": {**_OTHERS, "families": ["triplet", "contrastive", "quadruplet",
                                       "cosine_embedding"], "dynamic": None,
               "schedule": None}})
EMBEDDING_DESIGNS = ["triplet", "contrastive", "quadruplet", "cosine_embedding"]
CASES = {"classification": (CLASSIFICATION, CLASSIFICATION_DESIGNS),
         "regression": (REGRESSION, REGRESSION_DESIGNS),
         "multilabel": (MULTILABEL, MULTILABEL_DESIGNS), "count": (COUNT, COUNT_DESIGNS),
         "embedding": (EMBEDDING, EMBEDDING_DESIGNS)}


def _run(tmp_path: Path, base: dict, designs: list[str], population_size: int, tag: str
         ) -> list[optuna.trial.FrozenTrial]:
    raw = merge(base, {"n_trials": len(designs),
                       "training": {"population": population_size}})
    path = tmp_path / f"{tag}.toml"
    path.write_text(tomli_w.dumps(raw))
    spec = spec_mod.load(path)
    url = f"sqlite:///{tmp_path / (tag + '.db')}"
    study = runner.create_or_load(spec, url, base_dir=tmp_path)
    for i, family in enumerate(designs):
        # The family fixed; the learning rate and epochs vary by member; the rest the
        # (seeded) random sampler draws, in the same order in both runs.
        study.enqueue_trial({"loss": family, "training.epochs": 2 + i % 2,
                             "training.learning_rate": [0.004, 0.02, 0.008][i % 3]})
    ctx = runner.load_context(spec, tmp_path)
    runner.Search(study, ctx, open_storage(url)).run(len(designs))
    return sorted(study.get_trials(), key=lambda t: t.number)


def _same(alone: list, together: list, k: int) -> None:
    assert len(alone) == len(together)
    for a, b in zip(alone, together):
        assert a.params == b.params
        assert a.state == b.state == optuna.trial.TrialState.COMPLETE, (
            a.user_attrs.get("error"), b.user_attrs.get("error"))
        assert a.user_attrs[results.POPULATION] == 1
        assert b.user_attrs[results.POPULATION] == k
        assert b.value == pytest.approx(a.value, rel=2e-4, abs=1e-6), a.params
        for key in [key for key in a.user_attrs if key.startswith(results.CURVE)]:
            np.testing.assert_allclose(b.user_attrs[key], a.user_attrs[key], rtol=1e-3,
                                       atol=1e-5, err_msg=f"{key} of {a.params}")
        assert b.user_attrs[results.EPOCHS_TRAINED] == a.user_attrs[results.EPOCHS_TRAINED] \
            == a.params["training.epochs"]
    assert sorted(t.user_attrs[results.MEMBER] for t in together) == list(range(k))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_member_computes_what_its_trial_computes_alone(tmp_path, case):
    """Every family of every task (DynamicLoss with schedules included), each member with its
    own learning rate and epoch count, against the same trials trained one at a time."""
    base, designs = CASES[case]
    alone = _run(tmp_path, base, designs, 1, "alone")
    together = _run(tmp_path, base, designs, len(designs), "together")
    _same(alone, together, len(designs))
    families = {t.params["loss"] for t in together}
    assert families == set(designs)
    if case == "classification":
        dynamic = [t for t in together if t.params["loss"] == "dynamic"]
        assert all(len(t.user_attrs[results.CURVE + "loss_curriculum"]) >= 2 for t in dynamic)


@pytest.mark.slow
def test_the_cnn_population_matches_its_trials_alone(tmp_path):
    base = merge(CLASSIFICATION, {
        "dataset": {"name": "digits", "image": True},
        "model": {"kind": "cnn", "filters": [4, 6], "hidden": [8]},
        "search": {"families": ["cross_entropy", "focal"], "schedule": None}})
    designs = ["cross_entropy", "focal", "focal"]
    _same(_run(tmp_path, base, designs, 1, "alone"),
          _run(tmp_path, base, designs, 3, "together"), 3)


class _SumOfMSE(keras.losses.Loss):
    """Σ over two members of each member's MSE (a Loss subclass: Keras reshapes the inputs of
    plain functions to one rank)."""

    def call(self, y_true, y_pred):
        diff = y_pred - keras.ops.expand_dims(y_true, 1)
        return 2.0 * keras.ops.mean(keras.ops.square(diff), axis=-1)


FACTORY = """
import keras


def build(input_shape, output_units):
    # A functional model with a fixed name and a batch-normalisation layer: the copies of a
    # population must not clash, and each keeps its own statistics.
    inputs = keras.Input(input_shape)
    x = keras.layers.Dense(10, activation="tanh")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(output_units)(x), name="users_model")
"""


@pytest.mark.slow
def test_a_factory_model_trains_side_by_side_and_matches_its_trials_alone(tmp_path):
    (tmp_path / "users_models.py").write_text(FACTORY)
    base = merge(CLASSIFICATION, {"model": {"kind": "factory",
                                            "factory": "users_models:build", "hidden": None}})
    # Three: until a trial has succeeded, user code trains at most the failure guard's limit.
    designs = ["cross_entropy", "focal", "dynamic"]
    together = _run(tmp_path, base, designs, 4, "together")
    _same(_run(tmp_path, base, designs, 1, "alone"), together, 3)
    assert all(results.POPULATION_NOTE not in t.user_attrs for t in together)


def _per_member_optimizer_case(name: str):
    """Two members with different rates against two models trained alone."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    spec = spec_mod.StudySpec.model_validate(
        merge(REGRESSION, {"model": {"hidden": [4]}, "training": {"optimizer": name}}))
    keras.utils.set_random_seed(1)
    alone = keras.Sequential([keras.Input((5,)), keras.layers.Flatten(),
                              keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    rates = [0.01, 0.1]
    together = population.build_model(spec, input_shape=(5,), units=1, members=2)
    population.copy_weights(together, alone, 2)
    opt = population.member_optimizer(name, 2, population._layouts(together, 2))
    together.compile(optimizer=opt, loss=_SumOfMSE())
    together.optimizer.build(together.trainable_variables)
    together.optimizer.member_lr.assign(np.array(rates, "float32"))
    singles = []
    for rate in rates:
        single = keras.models.clone_model(alone)
        single.set_weights(alone.get_weights())
        single.compile(optimizer=keras.optimizers.get(
            {"class_name": name, "config": {"learning_rate": rate}}), loss="mse")
        singles.append(single)
    for _ in range(3):
        together.train_on_batch(x, y)
        for single in singles:
            single.train_on_batch(x, y)
    out = keras.ops.convert_to_numpy(together(x))
    return out, [keras.ops.convert_to_numpy(s(x)) for s in singles]


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_each_member_trains_at_its_own_learning_rate(name):
    out, singles = _per_member_optimizer_case(name)
    for k, single in enumerate(singles):
        np.testing.assert_allclose(out[:, k], single, rtol=1e-4, atol=1e-5)
    assert not np.allclose(singles[0], singles[1], atol=1e-4)  # the rates mattered


@pytest.mark.slow
def test_pruned_members_stop_and_the_others_finish_unchanged(tmp_path):
    """A pruner that stops two members after epoch 1: they are PRUNED with that epoch and
    their curves end there; the others give what they give without any pruning."""
    base = merge(CLASSIFICATION, {"training": {"epochs": 3}})
    designs = ["cross_entropy", "focal", "poly1", "dynamic"]
    free = _run(tmp_path, base, designs, 4, "free")

    class PruneSome(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number in (1, 3) and max(trial.intermediate_values, default=-1) >= 1

    original = sampling.make_pruner
    try:
        sampling.make_pruner = lambda spec: PruneSome()
        pruned = _run(tmp_path, base, designs, 4, "pruned")
    finally:
        sampling.make_pruner = original
    for a, b in zip(free, pruned):
        if b.number in (1, 3):
            assert b.state == optuna.trial.TrialState.PRUNED
            assert b.user_attrs[results.PRUNED_AT] == 1
            assert len(b.user_attrs[results.val_curve("log_loss")]) == 2
            assert b.user_attrs[results.val_curve("log_loss")] == pytest.approx(
                a.user_attrs[results.val_curve("log_loss")][:2], rel=1e-4)
        else:
            assert b.state == optuna.trial.TrialState.COMPLETE
            assert b.value == pytest.approx(a.value, rel=1e-5)


def test_population_size_follows_the_setting_the_model_and_the_budget():
    spec = spec_mod.StudySpec.model_validate(merge(CLASSIFICATION, {}))
    assert population.size(spec, (13,), 3) == population.AUTO_MAX
    assert population.size(spec, (13,), 3, remaining=3) == 3
    # "auto": the trials left in populations of equal size, each at most AUTO_MAX.
    cap = population.AUTO_MAX
    assert population.size(spec, (13,), 3, remaining=cap + 8) == (cap + 8 + 1) // 2
    assert population.size(spec, (13,), 3, remaining=2 * cap) == cap
    assert population.size(spec, (13,), 3, remaining=2 * cap + 1) == (2 * cap + 1 + 2) // 3
    assert population.size(spec, (13,), 3, remaining=0) == 1
    five = spec.model_copy(update={"training": spec.training.model_copy(
        update={"population": 5})})
    assert population.size(five, (13,), 3) == 5
    assert population.size(five, (13,), 3, remaining=7) == 5  # a set size is not balanced
    one = spec.model_copy(update={"training": spec.training.model_copy(
        update={"population": 1})})
    assert population.size(one, (13,), 3) == 1
    factory = spec.model_copy(update={"model": spec.model.model_copy(
        update={"kind": "factory", "factory": "m:f"})})
    assert population.size(factory, (13,), 3) == population.AUTO_MAX  # split once built
    timed = spec.model_copy(update={"objective": spec.objective.model_copy(
        update={"metric": ("log_loss", "train_time")})})
    assert population.size(timed, (13,), 3) == 1
    from losstune import trial as trial_mod

    assert "train_time" in trial_mod.trains_alone(timed)
    # A member that would need more memory than there is: "auto" shrinks the population.
    huge = spec.model_copy(update={"model": spec.model.model_copy(
        update={"hidden": (200_000, 200_000)})})
    assert population.size(huge, (13,), 3) < population.AUTO_MAX
    assert population.member_bytes(huge, (13,), 3) > 4 * 4 * 200_000 ** 2


def test_a_bad_population_setting_is_one_clear_line(tmp_path):
    from click.testing import CliRunner

    from losstune.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(merge(CLASSIFICATION, {"training": {"population": 0}})))
    result = CliRunner().invoke(main, ["search", str(path), "--storage",
                                       f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "training.population" in line and "'auto'" in line
    assert not (tmp_path / "x.db").exists()


def test_the_population_loss_is_the_sum_of_the_members_mean_losses():
    """The stacked loss of one batch equals the members' losses alone (no training)."""
    from losstune import losses

    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(16, 3, 4)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, 16)]
    members = [losses.build_loss({"family": "focal", "params": {"gamma": g, "from_logits": True}})
               for g in (0.5, 2.0, 4.0)]
    loss = population.PopulationLoss([losses.stack(members)], [3])
    values, _ = loss.member_losses(keras.ops.convert_to_tensor(y),
                                   keras.ops.convert_to_tensor(y_pred))
    values = keras.ops.convert_to_numpy(values)
    for k, m in enumerate(members):
        np.testing.assert_allclose(values[:, k], keras.ops.convert_to_numpy(
            m.call(y, y_pred[:, k])), rtol=1e-6)
    total = float(keras.ops.convert_to_numpy(loss(y, y_pred)))
    assert math.isclose(total, float(values.mean(0).sum()), rel_tol=1e-5)


@pytest.mark.slow
def test_a_population_study_gives_the_verdict_of_the_same_study_alone(tmp_path):
    """Long-tailed digits, where class-balanced weights clearly beat both baselines: search and
    racing to 4 seeds with populations, and with every trial alone, give one verdict."""
    base = {
        # Three designs: the two baselines (cross-entropy, focal) and class-balanced CE.
        "name": "sep", "task": "multiclass", "seed": 7, "n_trials": 3,
        "dataset": {"name": "digits", "long_tail": 10.0},
        "model": {"kind": "mlp", "hidden": [32]},
        "training": {"epochs": 6, "batch_size": 64, "learning_rate": 0.003},
        "objective": {"metric": "macro_f1"},
        "sampler": {"name": "random"}, "pruner": {"name": "none"},
        "racing": {"max_seeds": 4, "test_seeds": 4},
        "search": {"families": ["class_balanced"],
                   "class_balanced": {"beta": {"choices": [0.999]}}},
    }
    verdicts = {}
    for size in ("auto", 1):
        raw = merge(base, {"training": {"population": size}})
        path = tmp_path / f"sep_{size}.toml"
        path.write_text(tomli_w.dumps(raw))
        spec = spec_mod.load(path)
        url = f"sqlite:///{tmp_path / f'sep_{size}.db'}"
        study = runner.create_or_load(spec, url, base_dir=tmp_path)
        storage = open_storage(url)
        search = runner.Search(study, runner.load_context(spec, tmp_path), storage)
        search.run(spec.n_trials)
        search.test()
        verdicts[size] = stored_study.study_verdict(study, storage).to_dict()["verdict"]
        populations = {t.user_attrs.get(results.POPULATION) for t in study.get_trials()
                       if t.state.name == "COMPLETE" and not results.is_repeat(t)}
        if size == 1:
            assert populations == {1}
        else:  # the baselines and the searched designs trained together
            assert max(populations) > 1
    together, alone = verdicts["auto"], verdicts[1]
    assert together["significant"] and alone["significant"]
    assert together["winner"]["design"] == alone["winner"]["design"]
    assert together["winner"]["design"]["family"] == "class_balanced"
    # Raced in one population of three or one design at a time, the race may give the winner
    # other racing seeds; the test is the same: the same 4 fresh seeds, the same differences.
    assert together["winner"]["seeds"] >= 2 and alone["winner"]["seeds"] >= 2
    assert together["tested_on_seeds"] == alone["tested_on_seeds"] == [100, 101, 102, 103]
    for a, b in zip(alone["comparisons"], together["comparisons"]):
        assert b["baseline"] == a["baseline"] and b["significant"] == a["significant"]
        assert b["diff"] == pytest.approx(a["diff"], abs=2e-3)
    assert together["sentence"].split(" by ")[0] == alone["sentence"].split(" by ")[0]


class _Tempered(losses.Tunable, keras.losses.Loss):
    """A per-member temperature, registered as the class axis's by mistake: it is not in
    ``_elementwise``, so stacked it broadcasts against the classes."""

    _variable_keys = ("temperature",)

    def __init__(self, temperature=1.0, name="tempered", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)
        self._init_hp(temperature=self.temperature)

    def call(self, y_true, y_pred):
        return keras.losses.categorical_crossentropy(
            y_true, y_pred / self._h("temperature", y_pred.dtype), from_logits=True)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def _three_classes() -> SimpleNamespace:
    """A context with three classes: as many as the stacking tests' members."""
    return SimpleNamespace(splits=SimpleNamespace(task="multiclass", num_classes=3,
                                                  y_train=np.array([0, 1, 2, 1] * 4)))


def _members(member_losses: list) -> list:
    return [population.Member(trial=None, description={}, training={}, loss=loss)
            for loss in member_losses]


def _focal(*gammas: float) -> list:
    return _members([losses.build_loss({"family": "focal", "params": {
        "gamma": g, "from_logits": True}}) for g in gammas])


def test_a_loss_that_does_not_stack_is_found_and_trains_alone():
    """A registered family whose per-class value is not declared ``_elementwise`` broadcasts
    it against the wrong axis when stacked (here silently: 3 members, 3 classes). Such a group
    is found before training, and its trials train alone; the shipped families stack."""
    tempered = _members([_Tempered(t) for t in (0.5, 1.0, 2.0)])
    assert population.unstackable(tempered + _focal(0.5, 1.0, 2.0), _three_classes()) \
        == tempered


def test_a_loss_structure_is_checked_for_stacking_once_a_worker_and_size(monkeypatch):
    monkeypatch.setattr(population, "_STACKS", {})
    checked = []
    real = population._stacks
    monkeypatch.setattr(population, "_stacks",
                        lambda group, y: checked.append(len(group)) or real(group, y))
    ctx, focal = _three_classes(), _focal
    assert population.unstackable(focal(0.5, 1.0, 2.0), ctx) == []
    assert population.unstackable(focal(3.0, 0.1, 4.0), ctx) == []  # other values: known
    assert checked == [3]
    assert population.unstackable(focal(3.0, 0.1), ctx) == []  # another size: checked
    assert checked == [3, 2]
    # A structure that does not stack stays known as such: its members train alone.
    monkeypatch.setattr(population, "_STACKS", {})
    monkeypatch.setattr(population, "_stacks", lambda group, y: checked.append(0) or False)
    members = focal(0.5, 1.0)
    assert population.unstackable(members, ctx) == members
    assert population.unstackable(focal(2.0, 3.0), ctx) != []
    assert checked == [3, 2, 0]


def test_a_stacking_check_on_values_the_members_share_is_no_verdict_for_other_values(
        monkeypatch):
    """A per-member value broadcast against the class axis goes unseen while the members share
    it (3 members, 3 classes, one temperature): that check is kept for populations that share
    it too, and members that differ are checked again, and train alone."""
    monkeypatch.setattr(population, "_STACKS", {})
    ctx = _three_classes()

    def members(*temperatures):
        return _members([_Tempered(t) for t in temperatures])

    assert population.unstackable(members(2.0, 2.0, 2.0), ctx) == []  # right, by chance
    differing = members(0.5, 1.0, 2.0)
    assert population.unstackable(differing, ctx) == differing
    assert population.unstackable(members(3.0, 3.0, 3.0), ctx) == []


@pytest.mark.slow
def test_a_kept_population_model_trains_as_a_new_one_would(tmp_path, monkeypatch):
    """Two populations of one structure: the second reuses the first's compiled model
    (weights, optimizer state and loss values replaced) and the model its members start
    from, and gives what a new model gives."""
    from losstune import models

    hits, built = [], []
    kept = population.KEPT.kept
    monkeypatch.setattr(population.KEPT, "kept",
                        lambda key: hits.append(kept(key)) or hits[-1])
    build = models.build
    monkeypatch.setattr(models, "build", lambda *a, **k: built.append(1) or build(*a, **k))
    designs = ["focal", "cross_entropy", "focal", "cross_entropy"]
    base = merge(CLASSIFICATION, {"search": {"families": ["cross_entropy", "focal"],
                                             "schedule": None}})
    reused = _run(tmp_path, merge(base, {"training": {"reuse_compiled": True}}), designs, 2,
                  "kept")
    assert len(built) == 1  # the starting model: built for the first population only
    for entry in population.KEPT._entries.values():  # each optimizer built once
        names = [v.name for v in entry.model.optimizer.variables]
        assert names.count("member_lr") == 1, names
    fresh = _run(tmp_path, merge(base, {"training": {"reuse_compiled": False}}), designs, 2,
                 "fresh")
    assert len(built) == 3  # reuse_compiled = false: built for each population
    assert any(h is not None for h in hits)  # a population model was reused
    for a, b in zip(reused, fresh):
        assert a.params == b.params and a.value == pytest.approx(b.value, rel=1e-5, abs=1e-7)
