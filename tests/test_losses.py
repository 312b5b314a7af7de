"""The loss library, numerically: equalities with Keras built-ins, epoch variables, round trips.

Backend-neutral: tests/test_backends.py runs this file again under KERAS_BACKEND=torch (tests
named ``*torch_backend`` are left out there: they start that run themselves).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from losstune import catalog
from losstune import losses as L
from losstune.schedules import Schedule

RNG = np.random.default_rng(0)
N, C = 32, 4
LOGITS = RNG.normal(size=(N, C)).astype("float32")
LABELS = RNG.integers(0, C, size=N)
Y = np.eye(C, dtype="float32")[LABELS]
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
REG_TRUE = RNG.normal(size=(N, 1)).astype("float32") * 3
REG_PRED = RNG.normal(size=(N, 1)).astype("float32")


def value(loss, y_true=Y, y_pred=LOGITS) -> float:
    return float(ops.convert_to_numpy(loss(y_true, y_pred)))


# ---------------------------------------------------------------- equalities with Keras
@pytest.mark.parametrize("base, params, reference", [
    ("categorical_crossentropy", {"from_logits": True},
     keras.losses.CategoricalCrossentropy(from_logits=True)),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1},
     keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)),
    ("categorical_focal_crossentropy", {"from_logits": True, "gamma": 1.5, "alpha": 0.4},
     keras.losses.CategoricalFocalCrossentropy(from_logits=True, gamma=1.5, alpha=0.4)),
])
def test_dynamic_standard_only_equals_keras_builtin(base, params, reference):
    dyn = L.DynamicLoss(base=base, base_params=params)
    assert value(dyn) == pytest.approx(value(reference), rel=1e-6)


def test_dynamic_huber_standard_only_equals_keras_huber():
    dyn = L.DynamicLoss(base="huber", base_params={"delta": 0.7})
    ref = keras.losses.Huber(delta=0.7)
    assert value(dyn, REG_TRUE, REG_PRED) == pytest.approx(value(ref, REG_TRUE, REG_PRED), rel=1e-6)


def test_dynamic_weight_scales_standard_component():
    ref = value(keras.losses.CategoricalCrossentropy(from_logits=True))
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_standard=2.5)
    assert value(dyn) == pytest.approx(2.5 * ref, rel=1e-6)


def test_class_balanced_beta_zero_equals_cross_entropy():
    cb = L.ClassBalancedCrossentropy(class_counts=[100, 50, 10, 1], beta=0.0, from_logits=True)
    ref = keras.losses.CategoricalCrossentropy(from_logits=True)
    assert value(cb) == pytest.approx(value(ref), rel=1e-5)


def test_class_balanced_weights_follow_effective_number():
    counts, beta = [1000, 100, 10], 0.99
    w = L.class_balanced_weights(counts, beta)
    eff = [(1 - beta ** n) / (1 - beta) for n in counts]
    raw = [1 / e for e in eff]
    assert w == pytest.approx([r * 3 / sum(raw) for r in raw])
    assert sum(w) == pytest.approx(3.0)
    assert w[2] > w[1] > w[0]  # rarer class, larger weight


def test_class_balanced_upweights_rare_class_errors():
    # Two samples of the same error size; the rare-class one must cost more.
    y = np.eye(2, dtype="float32")[[0, 1]]
    pred = np.array([[0.3, 0.7], [0.7, 0.3]], dtype="float32")
    cb = L.ClassBalancedCrossentropy(class_counts=[1000, 10], beta=0.999, reduction=None)
    per_sample = ops.convert_to_numpy(cb(y, pred))
    assert per_sample[1] > 5 * per_sample[0]


def test_poly1_epsilon_zero_equals_cross_entropy_and_adds_one_minus_pt():
    ce = value(keras.losses.CategoricalCrossentropy(from_logits=True))
    assert value(L.Poly1Crossentropy(epsilon=0.0, from_logits=True)) == pytest.approx(ce, rel=1e-6)
    p_t = (PROBS * Y).sum(-1).mean()
    poly = value(L.Poly1Crossentropy(epsilon=2.0, from_logits=True))
    assert poly == pytest.approx(ce + 2.0 * (1 - p_t), rel=1e-5)


def test_seed_micro_soft_f1_is_just_mean_true_class_probability():
    # The seed sums tp/fp/fn over all classes and samples. With softmax outputs
    # sum(p) = N, so fp = N - tp and fn = N - tp: F1 = 2tp / (2tp + 2(N - tp)) = tp / N.
    tp = (Y * PROBS).sum()
    fp = ((1 - Y) * PROBS).sum()
    fn = (Y * (1 - PROBS)).sum()
    micro_f1 = 2 * tp / (2 * tp + fn + fp)
    assert micro_f1 == pytest.approx((Y * PROBS).sum(-1).mean(), rel=1e-5)
    # losstune's macro version differs from that mean, and is 0 for a perfect prediction.
    macro = value(L.SoftFBetaLoss(beta=1.0, from_logits=True))
    assert abs((1 - macro) - micro_f1) > 1e-3
    assert value(L.SoftFBetaLoss(), Y, Y) == pytest.approx(0.0, abs=1e-5)


def test_seed_class_balance_term_is_constant_ours_is_not():
    # Seed: CE(mean(y_true), uniform) = log C whatever the predictions.
    uniform = np.full(C, 1 / C)
    seed_term = -(Y.mean(0) * np.log(uniform)).sum()
    assert seed_term == pytest.approx(np.log(C))
    # Ours: KL(uniform || mean prediction), 0 when predictions are balanced, > 0 when collapsed.
    dyn = L.DynamicLoss(w_standard=0.0, w_balance=1.0)
    balanced = np.full((N, C), 1 / C, dtype="float32")
    collapsed = np.tile(np.array([[0.97, 0.01, 0.01, 0.01]], dtype="float32"), (N, 1))
    assert value(dyn, Y, balanced) == pytest.approx(0.0, abs=1e-5)
    assert value(dyn, Y, collapsed) > 1.0


def test_balance_prior_train_uses_class_frequencies():
    counts = [70, 10, 10, 10]
    dyn = L.DynamicLoss(w_standard=0.0, w_balance=1.0, prior="train", class_counts=counts)
    matching = np.tile(np.array([[0.7, 0.1, 0.1, 0.1]], dtype="float32"), (N, 1))
    uniform = np.full((N, C), 1 / C, dtype="float32")
    assert value(dyn, Y, matching) == pytest.approx(0.0, abs=1e-5)
    assert value(dyn, Y, uniform) > 0.1


@pytest.mark.parametrize("prior", ["uniform", "train"])
def test_balance_term_is_kl_from_the_prior_to_the_mean_prediction(prior):
    counts = [40, 30, 20, 10]
    dyn = L.DynamicLoss(w_standard=0.0, w_balance=1.0, prior=prior, class_counts=counts)
    q = np.array(counts) / sum(counts) if prior == "train" else np.full(C, 1 / C)
    mean = PROBS.mean(0)
    assert value(dyn, Y, PROBS) == pytest.approx(float((q * np.log(q / mean)).sum()), rel=1e-4)


def test_curriculum_term_is_factor_times_sum_abs_sin_per_sample():
    sched = {"name": "linear", "params": {"start": 0.0, "end": 2.0}}
    dyn = L.DynamicLoss(w_standard=0.0, w_curriculum=1.5, schedule=sched, epochs=5)
    expected = 0.1 * np.abs(np.sin(PROBS)).sum(-1).mean()
    assert value(dyn, Y, PROBS) == pytest.approx(0.0, abs=1e-7)  # factor 0 at epoch 0
    dyn.set_epoch(2)  # linear 0 -> 2 over epochs 0..4: factor 1.0
    assert value(dyn, Y, PROBS) == pytest.approx(1.5 * 1.0 * expected, rel=1e-5)
    dyn.set_epoch(4)
    assert value(dyn, Y, PROBS) == pytest.approx(1.5 * 2.0 * expected, rel=1e-5)


def test_progress_term_grows_linearly_to_weight():
    dyn = L.DynamicLoss(w_standard=0.0, w_progress=0.3, epochs=4)
    got = []
    for epoch in range(4):
        dyn.set_epoch(epoch)
        got.append(value(dyn))
    assert got == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-6)


# ---------------------------------------------------------------- inside a compiled fit
def _frozen_model():
    """A model whose weights never move (SGD with learning rate 0): loss changes come from the loss."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((C,)), keras.layers.Dense(C)])
    return model


def test_epoch_variable_changes_loss_inside_compiled_fit():
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_progress=1.0,
                        w_curriculum=1.0, schedule={"name": "linear"}, epochs=3)
    model = _frozen_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=dyn,
                  metrics=L.component_metrics(dyn))
    assert not model.run_eagerly
    history = model.fit(LOGITS, Y, epochs=3, batch_size=N, shuffle=False, verbose=0,
                        callbacks=L.loss_callbacks(dyn)).history
    loss = history["loss"]
    # progress adds exactly 0, 0.5, 1.0; the curriculum term grows too.
    assert loss[1] - loss[0] > 0.5 - 1e-4 and loss[2] - loss[1] > 0.5 - 1e-4
    assert history["loss_progress"] == pytest.approx([0.0, 0.5, 1.0], abs=1e-5)
    std = history["loss_standard"]
    assert std[0] == pytest.approx(std[2], rel=1e-5)  # weights frozen: standard term constant
    curriculum = history["loss_curriculum"]
    assert curriculum[0] == pytest.approx(0.0, abs=1e-6) and curriculum[2] > curriculum[1] > 0
    for epoch, value in enumerate(loss):  # the logged components add up to the loss
        assert sum(history[f"loss_{c}"][epoch] for c in L.COMPONENTS) == pytest.approx(value,
                                                                                       rel=1e-5)


def test_the_documented_fit_changes_a_dynamic_loss_or_says_how_on_every_backend():
    """compile(loss=…) and fit(callbacks=loss_callbacks(loss)) without the README's
    component_metrics: TensorFlow and torch read the epoch variable at every step; JAX's
    stateless step would train with the loss frozen at epoch 0, so there the callback stops
    before the first step with one line that names the fix."""
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_progress=1.0, epochs=3)
    model = _frozen_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=dyn)

    def fit():
        return model.fit(LOGITS, Y, epochs=3, batch_size=N, shuffle=False, verbose=0,
                         callbacks=L.loss_callbacks(dyn)).history["loss"]

    if keras.backend.backend() == "jax":
        with pytest.raises(L.LossStateError, match=r"metrics=component_metrics\(loss\)") as err:
            fit()
        assert "\n" not in str(err.value)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=dyn,
                      metrics=L.component_metrics(dyn))  # the fix it names
    loss = fit()
    assert loss[1] - loss[0] == pytest.approx(0.5, abs=1e-4)
    assert loss[2] - loss[1] == pytest.approx(0.5, abs=1e-4)


def test_component_metric_reuses_what_the_loss_computed(monkeypatch):
    """In a train step the metric logs the components the loss has just computed from the same
    tensors instead of computing them a second time."""
    calls = []
    components = L.DynamicLoss._terms
    monkeypatch.setattr(L.DynamicLoss, "_terms",
                        lambda self, *a: calls.append(1) or components(self, *a))
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_balance=0.5, w_curriculum=0.5,
                        epochs=2)
    model = _frozen_model()
    model.compile(optimizer="adam", loss=dyn, metrics=L.component_metrics(dyn), run_eagerly=True)
    model.fit(LOGITS, Y, epochs=2, batch_size=N // 4, verbose=0, callbacks=L.loss_callbacks(dyn))
    steps = 2 * 4
    # One per step (and up to two while building). JAX computes the loss inside its gradient
    # trace, on other tensors than the metric's, so there the metric computes them again.
    per_step = 2 if keras.backend.backend() == "jax" else 1
    assert per_step * steps <= len(calls) <= per_step * steps + 2
    # Called on its own (no loss call just before on these tensors), it computes them.
    metric = L.component_metrics(dyn)[-1]
    calls.clear()
    metric.update_state(Y, LOGITS)
    assert len(calls) == 1 and float(metric.result()["loss_balance"]) > 0


def test_component_logs_present_after_fit():
    dyn = L.DynamicLoss(base_params={"from_logits": True}, w_balance=0.5, epochs=2)
    model = _frozen_model()
    model.compile(optimizer="adam", loss=dyn, metrics=L.component_metrics(dyn))
    history = model.fit(LOGITS, Y, validation_data=(LOGITS, Y), epochs=2, verbose=0,
                        callbacks=L.loss_callbacks(dyn)).history
    for c in L.COMPONENTS:
        assert len(history[f"loss_{c}"]) == 2 and len(history[f"val_loss_{c}"]) == 2
    assert history["loss_balance"][0] > 0
    assert L.component_metrics(keras.losses.MeanSquaredError()) == []


# ---------------------------------------------------------------- serialisation
DESCRIPTIONS = [
    {"family": "cross_entropy", "params": {"label_smoothing": 0.1, "from_logits": True}},
    {"family": "focal", "params": {"gamma": 1.3, "alpha": 0.6, "from_logits": True}},
    {"family": "class_balanced", "params": {"beta": 0.99, "gamma": 1.0,
                                            "class_counts": [50, 20, 5, 1],
                                            "from_logits": True}},
    {"family": "poly1", "params": {"epsilon": 1.5, "from_logits": True}},
    {"family": "soft_fbeta", "params": {"beta": 2.0, "from_logits": True}},
    {"family": "dynamic", "params": {
        "base": "categorical_focal_crossentropy", "base_params": {"gamma": 1.0},
        "w_progress": 0.2, "w_balance": 0.3, "w_curriculum": 0.5, "epochs": 5,
        "schedule": {"name": "cosine", "params": {"start": 0.0, "end": 1.0, "warmup": 1}},
        "from_logits": True}},
]


@pytest.mark.parametrize("description", DESCRIPTIONS, ids=lambda d: d["family"])
def test_config_and_description_round_trips(description):
    loss = L.build_loss(description)
    again = loss.__class__.from_config(loss.get_config())
    assert value(again) == pytest.approx(value(loss), rel=1e-6)
    described = L.describe_loss(loss)
    assert described["family"] == description["family"]
    rebuilt = L.build_loss(json.loads(json.dumps(described)))
    assert value(rebuilt) == pytest.approx(value(loss), rel=1e-6)
    serialized = keras.saving.serialize_keras_object(loss)
    assert value(keras.saving.deserialize_keras_object(serialized)) == pytest.approx(
        value(loss), rel=1e-6)


@pytest.mark.parametrize("description", DESCRIPTIONS[2:], ids=lambda d: d["family"])
def test_saved_keras_model_reloads_with_same_loss(tmp_path, description):
    loss = L.build_loss(description)
    if isinstance(loss, L.DynamicLoss):
        loss.set_epoch(3)
    model = _frozen_model()
    model.compile(optimizer="adam", loss=loss)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    reloaded_loss = reloaded.loss
    if isinstance(reloaded_loss, L.DynamicLoss):
        reloaded_loss.set_epoch(3)
    assert type(reloaded_loss) is type(loss)
    assert value(reloaded_loss) == pytest.approx(value(loss), rel=1e-6)


def test_keras_huber_config_drops_delta_ours_keeps_it(tmp_path):
    ref = keras.losses.Huber(delta=2.5)
    # The Keras built-in forgets delta in its config (reloads as delta=1)...
    plain = keras.losses.Huber.from_config(ref.get_config())
    keras_drops_delta = value(plain, REG_TRUE, REG_PRED) != pytest.approx(
        value(ref, REG_TRUE, REG_PRED), rel=1e-6)
    # ...losstune's registered subclass keeps it, through config and a saved model.
    ours = L.Huber(delta=2.5)
    assert value(L.Huber.from_config(ours.get_config()), REG_TRUE, REG_PRED) == pytest.approx(
        value(ref, REG_TRUE, REG_PRED), rel=1e-6)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss=ours)
    model.save(tmp_path / "h.keras")
    assert keras.saving.load_model(tmp_path / "h.keras").loss.delta == 2.5
    if not keras_drops_delta:  # pragma: no cover - a future Keras fixed it; the subclass is moot
        pytest.xfail("keras.losses.Huber keeps delta now; losstune.losses.Huber can go")


# ---------------------------------------------------------------- integer labels
# One design per classification family (the catalog's list: a new family must join), and
# DynamicLoss with each classification base a study may choose.
LABEL_CASES = [
    {"family": "cross_entropy", "params": {"label_smoothing": 0.1}},
    {"family": "focal", "params": {"gamma": 1.5, "alpha": 0.4, "label_smoothing": 0.05}},
    {"family": "class_balanced", "params": {"beta": 0.99, "gamma": 1.0, "label_smoothing": 0.1,
                                            "class_counts": [40, 20, 5, 1]}},
    {"family": "poly1", "params": {"epsilon": 1.5, "label_smoothing": 0.1}},
    {"family": "soft_fbeta", "params": {"beta": 2.0}},
    {"family": "dynamic", "params": {"w_balance": 0.3, "w_curriculum": 0.5, "epochs": 2,
                                     "schedule": {"name": "linear"},
                                     "base_params": {"label_smoothing": 0.1}}},
    {"family": "dynamic", "params": {"base": "categorical_focal_crossentropy",
                                     "base_params": {"gamma": 1.0}, "w_progress": 0.2,
                                     "w_balance": 0.5, "prior": "train", "epochs": 2,
                                     "class_counts": [40, 20, 5, 1]}},
    {"family": "dynamic", "params": {"base": "kl_divergence", "epochs": 2,
                                     "base_params": {"label_smoothing": 0.1}}},
]


def test_every_classification_family_has_an_integer_label_case():
    assert {c["family"] for c in LABEL_CASES} == set(catalog.names("multiclass"))
    bases = {c["params"].get("base", "categorical_crossentropy") for c in LABEL_CASES
             if c["family"] == "dynamic"}
    assert bases == set(catalog.family("dynamic").choices(catalog.family("dynamic").param(
        "base"), "multiclass"))


@pytest.mark.parametrize("description", LABEL_CASES,
                         ids=lambda d: d["family"] + "-" + d["params"].get("base", ""))
def test_integer_labels_train_like_one_hot_labels(description):
    """``model.fit(x, y)`` with class indices, shape (N,) or (N, 1), trains exactly as with
    one-hot labels: same loss every epoch, same logged DynamicLoss terms, same evaluation."""
    description = {**description, "params": {**description["params"], "from_logits": True}}
    labels = {"one-hot": Y, "integers": LABELS, "column": LABELS[:, None].astype("float32")}
    histories, evaluated = {}, {}
    for form, y in labels.items():
        loss = L.build_loss(description)
        model = _frozen_model()  # same initial weights for every form
        start = [w.copy() for w in model.get_weights()]
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=loss,
                      metrics=L.component_metrics(loss))
        assert not model.run_eagerly
        histories[form] = model.fit(LOGITS, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                                    callbacks=L.loss_callbacks(loss)).history
        evaluated[form] = model.evaluate(LOGITS, y, batch_size=N, verbose=0, return_dict=True)
        assert value(loss, y) == pytest.approx(value(loss, Y), rel=1e-5)  # and called directly
        assert any(not np.allclose(a, b) for a, b in zip(start, model.get_weights()))  # trained
    for form in ("integers", "column"):
        assert histories[form].keys() == histories["one-hot"].keys()
        for key, values in histories["one-hot"].items():
            assert histories[form][key] == pytest.approx(values, rel=1e-5, abs=1e-7), (form, key)
        assert evaluated[form]["loss"] == pytest.approx(evaluated["one-hot"]["loss"], rel=1e-5)


def test_integer_labels_with_a_single_sigmoid_unit():
    """Binary labels (N,) against one sigmoid output (N, 1) mean the same as (N, 1) labels."""
    logits = LOGITS[:, :1]
    labels = LABELS % 2
    for loss in (L.SoftFBetaLoss(from_logits=True),
                 L.ClassBalancedCrossentropy([30, 10], beta=0.9, from_logits=True)):
        assert value(loss, labels, logits) == pytest.approx(
            value(loss, labels[:, None].astype("float32"), logits), rel=1e-6)


def test_integer_labels_on_torch_backend():
    """The integer-label tests again, on Keras's PyTorch backend (a fresh interpreter)."""
    pytest.importorskip("torch")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", __file__,
         "-k", "integer_labels and not torch_backend"],
        cwd=root, env={**os.environ, "KERAS_BACKEND": "torch"}, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(LABEL_CASES) + 1} passed" in proc.stdout, proc.stdout[-2000:]  # all ran


def test_load_loss_reads_exported_file(tmp_path):
    desc = DESCRIPTIONS[1]
    path = tmp_path / "best_loss.json"
    path.write_text(json.dumps({"study": "s", "trial": 3, "loss": desc}))
    assert value(L.load_loss(path)) == pytest.approx(value(L.build_loss(desc)), rel=1e-6)
    L.save_description(desc, tmp_path / "bare.json")
    assert value(L.load_loss(tmp_path / "bare.json")) == pytest.approx(
        value(L.build_loss(desc)), rel=1e-6)


COUNTS = [50, 20, 5, 1]
EXPORTED = {  # what a study exports: the design, what was fitted, both together
    "class_balanced": ({"beta": 0.99, "gamma": 1.0, "from_logits": True},
                       {"class_counts": COUNTS}),
    "dynamic": ({"base": "categorical_crossentropy", "base_params": {"from_logits": True},
                 "w_balance": 0.5, "w_curriculum": 0.4, "prior": "train",
                 "schedule": {"name": "linear", "params": {}}},
                {"class_counts": COUNTS, "epochs": 5}),
    "focal": ({"gamma": 1.3, "alpha": 0.6, "from_logits": True}, {}),
}


def _export(folder, family: str, *, loss: bool = True) -> Path:
    design, fitted = EXPORTED[family]
    payload = {"study": "s", "design": {"family": family, "params": design}, "fitted": fitted}
    if loss:  # 0.2's exports carry the whole description too; a design alone must do
        payload["loss"] = {"family": family, "params": {**design, **fitted}}
    path = folder / f"{family}-{loss}.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.parametrize("family", EXPORTED)
@pytest.mark.parametrize("with_loss", [True, False], ids=["with-loss", "design-only"])
def test_load_loss_reads_the_design_and_what_was_fitted(tmp_path, family, with_loss):
    design, fitted = EXPORTED[family]
    expected = L.build_loss({"family": family, "params": {**design, **fitted}})
    loaded = L.load_loss(_export(tmp_path, family, loss=with_loss))
    assert L.describe_loss(loaded) == L.describe_loss(expected)
    assert value(loaded) == pytest.approx(value(expected), rel=1e-6)


def test_load_loss_takes_your_class_counts_and_epochs_where_the_design_uses_them(tmp_path):
    mine = [10, 10, 10, 10]
    balanced = L.load_loss(_export(tmp_path, "class_balanced"), class_counts=mine)
    assert balanced.class_counts == mine and balanced.weights == pytest.approx([1.0] * 4)
    dynamic = L.load_loss(_export(tmp_path, "dynamic", loss=False), class_counts=mine, epochs=9)
    assert (dynamic.class_counts, dynamic.epochs) == (mine, 9)
    # A design that does not use them ignores them: focal loss, DynamicLoss with a uniform prior.
    focal = L.load_loss(_export(tmp_path, "focal"), class_counts=mine, epochs=9)
    assert value(focal) == pytest.approx(value(L.build_loss(
        {"family": "focal", "params": EXPORTED["focal"][0]})), rel=1e-6)
    uniform = dict(EXPORTED["dynamic"][0], prior="uniform")
    path = tmp_path / "uniform.json"
    path.write_text(json.dumps({"design": {"family": "dynamic", "params": uniform},
                                "fitted": {"epochs": 5}}))
    loaded = L.load_loss(path, class_counts=mine, epochs=3)
    assert loaded.class_counts is None and loaded.epochs == 3
    # A design alone was trained on logits (every losstune model outputs them).
    path.write_text(json.dumps({"design": {"family": "focal", "params": {"gamma": 1.0}}}))
    assert L.describe_loss(L.load_loss(path))["params"]["from_logits"] is True


def test_describe_in_words():
    assert L.describe_in_words({"family": "focal", "params": {"gamma": 1.8, "alpha": 0.4}}) == (
        "focal loss, γ = 1.8, α = 0.4")
    words = L.describe_in_words(DESCRIPTIONS[-1])
    assert words == ("DynamicLoss, base categorical_focal_crossentropy (γ = 1, α = 0.25), "
                     "w_progress = 0.2, w_balance = 0.3, w_curriculum = 0.5, "
                     "schedule cosine(start=0, end=1, warmup=1)")
    # What a design does not say reads as its default: Huber's own δ; a train prior is said.
    assert L.describe_in_words({"family": "dynamic", "params": {
        "base": "huber", "base_params": {}, "prior": "train", "schedule": {"name": "linear"}}}
    ) == "DynamicLoss, base huber (δ = 1 robust sd), prior train"
    # A family this process does not know keeps its name and parameters.
    assert L.describe_in_words({"family": "dice", "params": {"smooth": 1.0, "epochs": 3}}) == (
        "dice, smooth = 1")


@pytest.mark.parametrize("number, text", [
    (0.9999, "0.9999"), (0.999, "0.999"), (0.99, "0.99"), (0.99999, "0.99999"),
    (0.9995, "0.9995"), (1.0002, "1.0002"), (1.4234, "1.42"), (0.25, "0.25"), (2.0, "2"),
    (1.0, "1"), (1e-4, "0.0001"), (1.5e-5, "1.5e-05"), (3, "3"), ("linear", "linear"),
])
def test_format_number_keeps_the_digits_that_matter(number, text):
    assert L.format_number(number) == text


def test_describe_in_words_never_rounds_beta_to_one():
    words = L.describe_in_words({"family": "class_balanced",
                                 "params": {"beta": 0.9999, "gamma": 0.0, "class_counts": [9, 1]}})
    assert words == "class-balanced cross-entropy, β = 0.9999"
    assert "β = 1" not in words


def test_describe_in_words_gives_huber_delta_its_unit():
    assert L.describe_in_words({"family": "huber", "params": {"delta": 1.35}}) == (
        "Huber loss, δ = 1.35 robust sd")
    words = L.describe_in_words({"family": "dynamic", "params": {
        "base": "huber", "base_params": {"delta": 0.7}, "w_curriculum": 0.5}})
    assert words.startswith("DynamicLoss, base huber (δ = 0.7 robust sd), w_curriculum = 0.5")


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("make, fragment", [
    (lambda: L.build_loss({"family": "focal", "params": {"gamma": -1.0}}),
     "focal.gamma must be a number in [0, inf), got -1.0"),
    (lambda: L.build_loss({"family": "focal", "params": {"alpha": 1.5}}),
     "focal.alpha must be a number in [0, 1], got 1.5"),
    (lambda: L.Huber(delta=0.0), "huber.delta must be a number in (0, inf), got 0.0"),
    (lambda: L.build_loss({"family": "huber", "params": {"delta": -2}}),
     "huber.delta must be a number in (0, inf), got -2"),
    (lambda: L.ClassBalancedCrossentropy([10, 5], beta=1.0),
     "class_balanced.beta must be a number in [0, 1), got 1.0"),
    (lambda: L.ClassBalancedCrossentropy([10, 5], beta=-0.1),
     "class_balanced.beta must be a number in [0, 1), got -0.1"),
    (lambda: L.DynamicLoss(base="hinge"), "base must be one of categorical_crossentropy"),
    (lambda: L.DynamicLoss(schedule="zigzag"), "schedule must be one of constant, linear"),
    (lambda: L.DynamicLoss(w_balance=-0.5),
     "dynamic.w_balance must be a number in [0, inf), got -0.5"),
    (lambda: L.DynamicLoss(w_curriculum=float("nan")), "dynamic.w_curriculum must be a finite"),
    (lambda: L.DynamicLoss(base_params={"delta": 1.0}),
     "base loss 'categorical_crossentropy' has no argument 'delta'"),
    (lambda: L.DynamicLoss(epochs=0), "dynamic.epochs must be a whole number in [1, inf), got 0"),
    (lambda: L.DynamicLoss(prior="train"), "dynamic.class_counts must be given"),
    (lambda: L.build_loss({"family": "dice"}), "family must be one of cross_entropy"),
    (lambda: L.build_loss({"family": "poly1", "params": {"gamma": 2.0}}),
     "loss family 'poly1' has no parameter 'gamma'"),
    (lambda: L.build_loss({"family": "cross_entropy", "params": {"label_smoothing": 2}}),
     "cross_entropy.label_smoothing must be a number in [0, 1], got 2"),
])
def test_bad_arguments_raise_value_error_naming_them(make, fragment):
    with pytest.raises(ValueError) as info:
        make()
    assert fragment in str(info.value)


def test_schedule_is_validated_when_given_as_dict():
    with pytest.raises(ValueError, match="schedule 'linear' has no parameter 'rate'"):
        L.DynamicLoss(schedule={"name": "linear", "params": {"rate": 1.0}})
    assert isinstance(L.DynamicLoss(schedule={"name": "step"}).schedule, Schedule)


def test_a_loss_made_while_holding_makes_its_variables_only_when_read():
    """losses.holding(): a population member's hyperparameters stay values, stacked and
    retuned from as they are; read as variables, they become the same variables a loss made
    outside the block has at once. Outside it every variable exists before any step."""
    from losstune.losses import holding, loss_variables, retune, stack

    def focal(gamma, alpha):
        return L.build_loss({"family": "focal",
                             "params": {"gamma": gamma, "alpha": alpha, "from_logits": True}})

    eager = [focal(0.5, 0.25), focal(2.0, 0.75)]
    assert all(isinstance(v, keras.Variable) for loss in eager
               for v in dict.values(loss._hp))
    with holding():
        held = [focal(0.5, 0.25), focal(2.0, 0.75)]
    assert not any(isinstance(v, keras.Variable) for loss in held
                   for v in dict.values(loss._hp))
    for name in ("gamma", "alpha"):
        np.testing.assert_array_equal(ops.convert_to_numpy(stack(held)._hp[name]),
                                      ops.convert_to_numpy(stack(eager)._hp[name]))
    target = focal(5.0, 0.5)
    retune(target, held[1])
    assert float(ops.convert_to_numpy(target._hp["gamma"])) == 2.0
    assert not any(isinstance(v, keras.Variable) for v in dict.values(held[1]._hp))
    y = np.eye(3, dtype="float32")[[0, 1, 2, 1]]
    logits = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(held[1].call(y, logits)),
                               ops.convert_to_numpy(eager[1].call(y, logits)), rtol=1e-6)
    assert len(loss_variables(held[0])) == len(loss_variables(eager[0]))
    assert all(isinstance(v, keras.Variable) for v in dict.values(held[0]._hp))
    with holding():  # a block inside another leaves the outer one holding
        with holding():
            pass
        still = focal(1.0, 0.5)
    assert not any(isinstance(v, keras.Variable) for v in dict.values(still._hp))
    assert isinstance(focal(1.0, 0.5)._hp.get("gamma"), keras.Variable)
