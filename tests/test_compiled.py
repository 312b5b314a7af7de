"""Reusing a compiled model across trials: what the reused step computes, and that a study's
results do not depend on whether a trial reused a compiled model."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from click.testing import CliRunner

import keras
from losstune import losses
from losstune.cli import main
from losstune.compiled import CompiledModels, _model_key, steps_per_execution
from tests.conftest import write_study

COUNTS = [30, 20, 10]
# (description A, description B): same structure, every tunable number different.
PAIRS = {
    "cross_entropy": ({"label_smoothing": 0.0}, {"label_smoothing": 0.3}),
    "focal": ({"gamma": 2.0, "alpha": 0.25}, {"gamma": 0.5, "alpha": 0.9, "label_smoothing": 0.2}),
    "class_balanced": ({"beta": 0.9, "class_counts": COUNTS},
                       {"beta": 0.999, "gamma": 1.5, "label_smoothing": 0.1,
                        "class_counts": COUNTS}),
    "poly1": ({"epsilon": 1.0}, {"epsilon": -0.5, "label_smoothing": 0.2}),
    "soft_fbeta": ({"beta": 0.2}, {"beta": 5.0}),
    "dynamic": ({"base": "categorical_focal_crossentropy",
                 "base_params": {"gamma": 2.0, "alpha": 0.25}, "w_balance": 0.5,
                 "w_curriculum": 0.2, "w_progress": 0.1, "prior": "train",
                 "class_counts": COUNTS, "schedule": {"name": "linear"}, "epochs": 5},
                {"base": "categorical_focal_crossentropy",
                 "base_params": {"gamma": 0.3, "alpha": 0.8, "label_smoothing": 0.1},
                 "w_standard": 0.4, "w_balance": 2.0, "w_curriculum": 1.5, "w_progress": 0.7,
                 "prior": "train", "class_counts": [5, 50, 5],
                 "schedule": {"name": "step", "params": {"milestones": [1]}}, "epochs": 3}),
}
REGRESSION_PAIRS = {
    "huber": ({"delta": 1.0}, {"delta": 0.2}),
    "dynamic": ({"base": "huber", "base_params": {"delta": 1.0}, "w_curriculum": 0.3},
                {"base": "huber", "base_params": {"delta": 0.1}, "w_curriculum": 2.0,
                 "w_standard": 3.0}),
}


def _build(family: str, params: dict, from_logits: bool) -> keras.losses.Loss:
    params = dict(params)
    if from_logits:
        params["from_logits"] = True
    return losses.build_loss({"family": family, "params": params})


def _case(family: str, regression: bool):
    rng = np.random.default_rng(0)
    x = (4 * rng.normal(size=(48, 5))).astype("float32")  # confident outputs: F-beta varies
    if regression:
        y = rng.normal(size=(48, 1)).astype("float32")
        a, b = REGRESSION_PAIRS[family]
    else:
        y = np.eye(3, dtype="float32")[rng.integers(0, 3, 48)]
        a, b = PAIRS[family]
    units = 1 if regression else 3
    return x, y, units, _build(family, a, not regression), _build(family, b, not regression)


@pytest.mark.parametrize("family,regression",
                         [(f, False) for f in PAIRS] + [(f, True) for f in REGRESSION_PAIRS])
def test_a_retuned_loss_changes_what_the_compiled_step_computes(family, regression):
    x, y, units, loss_a, loss_b = _case(family, regression)
    assert losses.compiled_key(loss_a) == losses.compiled_key(loss_b)
    if isinstance(loss_b, losses.DynamicLoss):
        loss_b.set_epoch(2)
    keras.utils.set_random_seed(0)  # the same model every run: the values below are fixed
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(units)])
    # Compiled as losstune compiles: with the loss's metrics, which carry its state on JAX.
    model.compile(loss=loss_a, metrics=losses.component_metrics(loss_a))
    before = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    test_function = model.test_function

    losses.retune(loss_a, loss_b)
    after = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    expected = float(keras.ops.convert_to_numpy(loss_b(y, model(x))))
    assert model.test_function is test_function  # the same compiled function ran
    assert after == pytest.approx(expected, rel=1e-5)
    assert abs(before - expected) > 1e-3  # the values differ: a frozen number would show
    assert losses.describe_loss(loss_a) == losses.describe_loss(loss_b)


def test_compiled_key_separates_what_one_step_cannot_compute():
    key = lambda family, **p: losses.compiled_key(_build(family, p, True))  # noqa: E731
    assert key("focal", gamma=1.0) == key("focal", gamma=4.0, alpha=0.6)
    assert key("focal") != key("cross_entropy")
    assert key("dynamic", base="categorical_crossentropy") != key(
        "dynamic", base="categorical_focal_crossentropy")
    assert key("dynamic", prior="uniform") != key("dynamic", prior="train", class_counts=COUNTS)
    assert key("class_balanced", class_counts=[1, 2]) != key("class_balanced",
                                                              class_counts=[1, 2, 3])
    assert losses.compiled_key(losses.build_loss({"family": "focal", "params": {}})) != key("focal")
    with pytest.raises(ValueError, match="compiled_key"):
        losses.retune(_build("focal", {}, True), _build("cross_entropy", {}, True))


def _mlp(units: int = 3, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dropout(0.2), keras.layers.Dense(units)])


def test_a_reused_model_starts_like_a_fresh_one_and_the_cache_is_bounded():
    cache = CompiledModels(size=2)
    x, y, _, loss_a, loss_b = _case("focal", False)
    steps = steps_per_execution("auto", keras.backend.backend())
    kwargs = dict(optimizer="adam", learning_rate=0.01, jit_compile=False, steps=steps,
                  sample=(x[:2], y[:2]))
    first, _, reused = cache.prepare(_mlp(), loss_a, **kwargs)
    assert not reused
    first.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert int(keras.ops.convert_to_numpy(first.optimizer.iterations)) == 12

    fresh = _mlp(seed=7)
    second, loss, reused = cache.prepare(fresh, loss_b, **{**kwargs, "learning_rate": 0.5})
    assert reused and second is first and loss is loss_a
    for got, want in zip(second.variables, fresh.variables):  # weights and dropout seed state
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got),
                                      keras.ops.convert_to_numpy(want))
    assert int(keras.ops.convert_to_numpy(second.optimizer.iterations)) == 0
    assert float(keras.ops.convert_to_numpy(second.optimizer.learning_rate)) == 0.5
    slots = [v for v in second.optimizer.variables if "momentum" in v.path]
    assert slots and all(not np.any(keras.ops.convert_to_numpy(v)) for v in slots)

    # Another optimizer, another width: new entries; the oldest is dropped at size 2.
    assert not cache.prepare(_mlp(), loss_b, **{**kwargs, "optimizer": "sgd"})[2]
    assert not cache.prepare(_mlp(units=3, seed=1), _build("cross_entropy", {}, True),
                             **kwargs)[2]
    assert len(cache) == 2
    assert not cache.prepare(_mlp(), loss_b, **kwargs)[2]  # the first entry was evicted
    assert not cache.prepare(_mlp(), loss_b, **kwargs, reuse=False)[2]


def test_the_model_key_ignores_layer_names_and_sees_the_architecture():
    def functional(width: int) -> keras.Model:  # refers to its layers by name in its config
        inputs = keras.Input((5,))
        x = keras.layers.BatchNormalization()(keras.layers.Dense(width)(inputs))
        return keras.Model(inputs, keras.layers.Dense(3)(x))

    a, b = functional(8), functional(8)
    assert [layer.name for layer in a.layers] != [layer.name for layer in b.layers]
    assert _model_key(a) is not None and _model_key(a) == _model_key(b)
    assert _model_key(functional(9)) != _model_key(a)
    assert _model_key(_mlp()) == _model_key(_mlp(seed=3))
    assert _model_key(_mlp()) != _model_key(_mlp(units=4))


@pytest.mark.slow
def test_a_study_gives_the_same_results_with_and_without_reuse(tmp_path):
    """Trial by trial, the objective is the same whether a trial trained a reused compiled
    model or a new one (same seed, same sampler), so reuse changes speed only."""
    values, compiled = {}, {}
    for reuse in (True, False):
        folder = tmp_path / str(reuse)
        folder.mkdir()
        path = write_study(folder, {
            "n_trials": 8, "sampler": {"name": "random", "seed": 1},
            "model": {"hidden": [16], "dropout": 0.1},
            # Each trial alone: this is about the kept compiled model of a single trial
            # (tests/test_population.py compares populations with trials alone).
            "training": {"reuse_compiled": reuse, "batch_size": {"choices": [16, 32]},
                         "population": 1},
            "search": {"families": ["cross_entropy", "focal", "poly1", "dynamic"]}})
        url = f"sqlite:///{folder / 'r.db'}"
        result = CliRunner().invoke(main, ["search", str(path), "--storage", url],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        trials = optuna.load_study(study_name="tiny", storage=url).trials
        values[reuse] = [(t.params, t.value) for t in trials]
        compiled[reuse] = [t.user_attrs["compiled"] for t in trials]
    assert compiled[False] == ["new"] * 8
    assert compiled[True].count("reused") >= 3
    assert [p for p, _ in values[True]] == [p for p, _ in values[False]]
    assert {p["training.batch_size"] for p, _ in values[True]} == {16, 32}
    for (_, got), (_, want) in zip(values[True], values[False]):
        assert got == pytest.approx(want, abs=1e-6)
