"""Tasks beyond classes and values: multilabel and count. Each new loss against a reference
(Keras's own loss where there is one, else NumPy), the metrics against scikit-learn, the
built-in data, and each example study end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest
import tomllib
import tomli_w
from click.testing import CliRunner
from keras import ops

from losstune import catalog, data, losses, metrics, results, studyfile as spec_mod, tasks
from losstune.cli import main
from losstune.losses import _counts, _families, _multilabel

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(0)
LABELS = (RNG.random((32, 5)) < 0.3).astype("float32")
LOGITS = (2.0 * RNG.normal(size=(32, 5))).astype("float32")
COUNTS = RNG.poisson(3.0, size=(32, 1)).astype("float32")
LOG_COUNTS = RNG.normal(1.0, 0.7, size=(32, 1)).astype("float32")


def _np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z.astype("float64")))


# ------------------------------------------------------------------------------ the task records
def test_every_metric_has_one_direction_and_each_task_a_default():
    for name, (direction, used_by) in tasks.metrics().items():
        assert all(tasks.TASKS[t].metrics.get(name, direction) == direction for t in used_by)
    assert {t: tasks.TASKS[t].default_metric for t in ("multilabel", "count")} == {
        "multilabel": "macro_f1", "count": "poisson_deviance"}
    assert tasks.metrics()["poisson_deviance"] == ("minimize", ("count",))
    assert catalog.default_families("multilabel") == (
        "binary_crossentropy", "binary_focal", "class_balanced_bce")
    assert [f for f, _ in catalog.default_baselines("count")] == ["poisson", "log1p_mse"]
    assert "dynamic" not in catalog.names("multilabel")  # its terms read one softmax


# ------------------------------------------------------------------------------ multilabel losses
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_binary_crossentropy_is_keras(smoothing):
    ours = _multilabel.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
    keras_own = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
    np.testing.assert_allclose(_np(ours(LABELS, LOGITS)), _np(keras_own(LABELS, LOGITS)),
                               rtol=1e-5)


@pytest.mark.parametrize("gamma, alpha, balancing, smoothing",
                         [(2.0, 0.25, True, 0.0), (0.5, 0.8, True, 0.1), (3.0, 0.25, False, 0.0)])
def test_binary_focal_is_keras(gamma, alpha, balancing, smoothing):
    ours = _multilabel.BinaryFocalCrossentropy(apply_class_balancing=balancing, alpha=alpha,
                                               gamma=gamma, from_logits=True,
                                               label_smoothing=smoothing)
    keras_own = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=balancing, alpha=alpha, gamma=gamma, from_logits=True,
        label_smoothing=smoothing)
    np.testing.assert_allclose(_np(ours(LABELS, LOGITS)), _np(keras_own(LABELS, LOGITS)),
                               rtol=1e-5)


def test_class_balanced_bce_weighs_each_labels_positives_by_its_effective_number():
    counts, beta = [200, 40, 10, 3, 1], 0.99
    loss = _multilabel.ClassBalancedBinaryCrossentropy(counts, beta=beta, from_logits=True,
                                                       reduction=None)
    n = np.array(counts, dtype="float64")
    w = (1 - beta) / (1 - beta ** n)
    w = w * len(w) / w.sum()
    p = _sigmoid(LOGITS)
    expected = -(w * LABELS * np.log(p) + (1 - LABELS) * np.log(1 - p)).mean(axis=-1)
    np.testing.assert_allclose(_np(loss(LABELS, LOGITS)), expected, rtol=1e-5)
    assert w[-1] > w[0]  # the rarest label's positives weigh most
    plain = _multilabel.ClassBalancedBinaryCrossentropy(counts, beta=0.0, from_logits=True)
    np.testing.assert_allclose(_np(plain(LABELS, LOGITS)),
                               _np(keras.losses.BinaryCrossentropy(from_logits=True)(
                                   LABELS, LOGITS)), rtol=1e-5)  # β = 0: plain BCE


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_sigmoid_soft_fbeta_against_numpy(average):
    beta = 1.5
    loss = _multilabel.SigmoidSoftFBeta(beta=beta, average=average, from_logits=True)
    p = _sigmoid(LOGITS)
    tp, fp, fn = ((LABELS * p).sum(0), ((1 - LABELS) * p).sum(0), (LABELS * (1 - p)).sum(0))
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    b2 = beta ** 2
    f = (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp + 1e-7)
    assert _np(loss(LABELS, LOGITS)) == pytest.approx(1.0 - np.mean(f), rel=1e-5)


# ------------------------------------------------------------------------------ count losses
def test_poisson_of_the_log_count_is_keras_poisson_of_the_count():
    ours = _counts.PoissonLogInput()
    keras_own = keras.losses.Poisson()
    assert _np(ours(COUNTS, LOG_COUNTS)) == pytest.approx(
        _np(keras_own(COUNTS, np.exp(LOG_COUNTS))), rel=1e-5)


def test_log1p_mse_and_count_huber_against_references():
    mu = np.exp(LOG_COUNTS.astype("float64"))
    expected = np.mean((np.log1p(COUNTS) - np.log1p(mu)) ** 2)
    assert _np(_counts.Log1pMeanSquaredError()(COUNTS, LOG_COUNTS)) == pytest.approx(
        expected, rel=1e-5)
    assert _np(_counts.CountHuber(delta=2.0)(COUNTS, LOG_COUNTS)) == pytest.approx(
        _np(keras.losses.Huber(delta=2.0)(COUNTS, mu.astype("float32"))), rel=1e-5)


def test_a_diverging_log_count_gives_a_finite_loss():
    huge = np.full_like(LOG_COUNTS, 1e4)
    assert np.isfinite(_np(_counts.PoissonLogInput()(COUNTS, huge)))


def test_kl_divergence_base_is_keras_kl_of_the_probabilities():
    y = np.eye(5, dtype="float32")[RNG.integers(0, 5, 32)]
    ours = _families.KLDivergence(from_logits=True, label_smoothing=0.1)
    smoothed = y * 0.9 + 0.1 / 5
    probs = _np(ops.softmax(LOGITS, axis=-1)).astype("float32")
    assert _np(ours(y, LOGITS)) == pytest.approx(
        _np(keras.losses.KLDivergence()(smoothed, probs)), rel=1e-5)
    # One-hot labels: KL is cross-entropy.
    assert _np(_families.KLDivergence(from_logits=True)(y, LOGITS)) == pytest.approx(
        _np(keras.losses.CategoricalCrossentropy(from_logits=True)(y, LOGITS)), rel=1e-4)


def test_the_new_families_build_from_their_descriptions_and_reload():
    for description in (
            {"family": "binary_focal", "params": {"gamma": 1.0, "alpha": 0.6}},
            {"family": "class_balanced_bce", "params": {"beta": 0.99, "class_counts": [5, 1, 2]}},
            {"family": "sigmoid_soft_fbeta", "params": {"beta": 2.0, "average": "micro"}},
            {"family": "count_huber", "params": {"delta": 3.0}},
            {"family": "dynamic", "params": {"base": "poisson_log_input", "w_curriculum": 0.2}}):
        loss = losses.build_loss(catalog.fill_from_data(description, from_logits=True, epochs=3))
        again = type(loss).from_config(loss.get_config())
        assert again.get_config() == loss.get_config(), description["family"]


# ------------------------------------------------------------------------------ metrics
def test_multilabel_metrics_are_scikit_learns():
    from sklearn import metrics as skm

    y = LABELS.astype("int64")
    got = metrics.multilabel(y, LOGITS, per_label=True)
    p = _sigmoid(LOGITS)
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, p >= 0.5, average="macro"))
    assert got["micro_f1"] == pytest.approx(skm.f1_score(y, p >= 0.5, average="micro"))
    assert got["mean_average_precision"] == pytest.approx(
        skm.average_precision_score(y, p, average="macro"))
    assert got["ap_per_label"] == pytest.approx(
        list(skm.average_precision_score(y, p, average=None)))
    # A label without positives in the split has no AP: left out of the mean, not a 0.
    y[:, 0] = 0
    got = metrics.multilabel(y, LOGITS, per_label=True)
    assert math.isnan(got["ap_per_label"][0])
    assert got["mean_average_precision"] == pytest.approx(
        skm.average_precision_score(y[:, 1:], p[:, 1:], average="macro"))


def test_count_metrics_are_scikit_learns_on_the_expected_counts():
    from sklearn import metrics as skm

    got = metrics.counts(COUNTS, LOG_COUNTS)
    mu = np.exp(LOG_COUNTS.reshape(-1).astype("float64"))
    assert got["poisson_deviance"] == pytest.approx(
        skm.mean_poisson_deviance(COUNTS.reshape(-1), mu))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(COUNTS.reshape(-1), mu))


# ------------------------------------------------------------------------------ data
def test_builtin_multilabel_and_count_sets_are_fixed():
    x1, y1, names = data.multilabel_set()
    x2, y2, _ = data.multilabel_set()
    assert x1.shape == (2000, 20) and y1.shape == (2000, 8) and np.array_equal(y1, y2)
    assert names[0] == "label_0" and set(np.unique(y1)) == {0, 1}
    x, counts, _ = data.count_set()
    assert x.shape == (442, 10) and counts.min() >= 0 and 2.5 < counts.mean() < 4.5
    assert np.array_equal(counts, data.count_set()[1])


def test_the_multilabel_long_tail_follows_cuis_profile_on_the_training_split_only():
    plain = data.load(spec_mod.DatasetSpec(name="multilabel"), "multilabel", seed=0)
    tail = data.load(spec_mod.DatasetSpec(name="multilabel", long_tail=20.0), "multilabel",
                     seed=0)
    before, after = np.array(plain.class_counts), np.array(tail.class_counts)
    assert after.max() / after.min() > 2 * before.max() / before.min()
    assert len(tail.y_train) < len(plain.y_train)
    assert np.array_equal(tail.y_val, plain.y_val)  # validation untouched
    assert tail.y_train.shape[1] == tail.num_classes == 8


def test_a_multilabel_csv_names_its_label_columns(tmp_path):
    rows = "".join(f"{i % 7},{i % 3},{int(i % 2 == 0)},{int(i % 3 == 0)}\n" for i in range(60))
    (tmp_path / "d.csv").write_text("f1,f2,cat,dog\n" + rows)
    ds = spec_mod.DatasetSpec(name="csv", path="d.csv", target=["cat", "dog"])
    splits = data.load(ds, "multilabel", seed=0, base_dir=tmp_path)
    assert splits.class_names == ["cat", "dog"] and splits.x_train.shape[1] == 2
    assert splits.y_train.shape[1] == 2 and set(np.unique(splits.y_train)) <= {0, 1}


def test_counts_are_not_scaled():
    splits = data.load(spec_mod.DatasetSpec(name="counts"), "count", seed=0)
    assert splits.y_scale == 1.0 and splits.y_center == 0.0
    assert np.array_equal(splits.y_train, np.round(splits.y_train)) and splits.y_train.min() >= 0


# ------------------------------------------------------------------------------ end to end
def _tiny(name: str, tmp_path: Path, **changes) -> Path:
    raw = tomllib.loads((ROOT / "studies" / f"{name}.toml").read_text())
    raw.update({"n_trials": 3, "racing": {"max_seeds": 2, "test_seeds": 2}, **changes})
    raw["training"] = {**raw["training"], "epochs": 2}
    raw["pruner"] = {"name": "none"}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name, figure", [("multilabel_longtail", "Per-label AP"),
                                          ("counts", "Expected against true counts"),
                                          ("embedding_digits", "Validation embeddings"),
                                          ("autoencoder_digits", "Reconstructions")])
def test_each_example_study_runs_end_to_end(tmp_path, monkeypatch, name, figure):
    monkeypatch.chdir(tmp_path)
    path = _tiny(name, tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    searched = runner.invoke(main, ["search", str(path), "--storage", url])
    assert searched.exit_code == 0, searched.output
    study = optuna.load_study(study_name=name, storage=url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) >= 3
    task = tasks.TASKS[spec_mod.load(path).task]
    for t in done:
        assert set(task.metrics) <= {k[len(results.VAL):] for k in t.user_attrs}
        assert t.user_attrs[results.BACKEND] == keras.backend.backend()  # torch, run again there
    if name == "multilabel_longtail":
        assert all(len(t.user_attrs[results.AP_PER_LABEL]) == 8 for t in done)
    elif name == "embedding_digits":
        assert all(len(t.user_attrs[results.PROJECTION][0]) == 359 for t in done)
    elif name == "autoencoder_digits":
        assert all(len(t.user_attrs[results.RECONSTRUCTIONS]) == 8 for t in done)
        assert study.user_attrs[results.IMAGE_SHAPE] == [8, 8]  # digits: drawn as images
        vae = [t for t in done if results.family_of(t) == "vae"]
        assert vae and all(results.CURVE + "loss_kl" in t.user_attrs for t in vae)
    else:
        assert all(min(t.user_attrs[results.PREDICTIONS]) > 0 for t in done)
    shown = json.loads(runner.invoke(main, ["show", name, "--storage", url, "-f",
                                            "json"]).output)
    assert shown["metric"] == task.default_metric and shown["verdict"]["test"]
    reported = runner.invoke(main, ["report", name, "--storage", url, "-o",
                                    str(tmp_path / "r.html")])
    assert reported.exit_code == 0, reported.output
    html = (tmp_path / "r.html").read_text()
    assert figure in html and "no per-label" not in html and "no stored" not in html
    exported = runner.invoke(main, ["export", name, "--storage", url, "-o",
                                    str(tmp_path / "b.json")])
    assert exported.exit_code == 0, exported.output
    loss = losses.load_loss(tmp_path / "b.json")
    winner = json.loads((tmp_path / "b.json").read_text())["design"]["family"]
    assert type(loss).__name__ == catalog.load(catalog.family(winner).loss).__name__


# ------------------------------------------------------------------------------ penalties
def _penalised_mlp(penalty):
    from losstune import models

    return models.build(spec_mod.ModelSpec(kind="mlp", hidden=(8, 6)), input_shape=(4,),
                        units=3, penalty=penalty)


def test_penalties_are_keras_l2_on_kernels_and_a_per_sample_l1_on_the_penultimate_layer():
    x = RNG.normal(size=(10, 4)).astype("float32")
    model = _penalised_mlp({"l1_activity": 0.01, "l2_kernel": 0.001})
    model(x)
    penultimate = keras.Model(model.inputs, model.get_layer("penalties").output)(x)
    l1 = 0.01 * np.mean(np.abs(_np(penultimate)).sum(axis=-1))
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    l2 = sum(_np(keras.regularizers.L2(0.001)(layer.kernel)) for layer in dense)
    assert len(dense) == 3
    assert sum(_np(v) for v in model.losses) == pytest.approx(l1 + l2, rel=1e-5)
    assert _penalised_mlp(None).losses == []  # no penalty: no term, no layer


def test_a_reused_compiled_model_reads_the_new_penalty():
    from losstune import compiled

    cache = compiled.CompiledModels()
    x = RNG.normal(size=(16, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[RNG.integers(0, 3, 16)]
    loss = losses.build_loss({"family": "cross_entropy", "params": {"from_logits": True}})
    values, first = [], None
    for decay in (0.0001, 0.1):
        model = _penalised_mlp({"l2_kernel": decay})
        first = first or [v.numpy() for v in model.weights if "penalties" not in v.path]
        for v, value in zip([v for v in model.weights if "penalties" not in v.path], first):
            v.assign(value)  # the same weights: only the coefficient differs
        model, _, reused = cache.prepare(model, loss, optimizer="adam", learning_rate=1e-3,
                                         jit_compile=False, steps=1, sample=(x, y))
        kernels = sum(float(np.sum(_np(v) ** 2)) for v in model.weights
                      if v.regularizer is not None)
        values.append((reused, float(model.test_on_batch(x, y, return_dict=True)["loss"])
                       - decay * kernels))
    # The same data loss both times: the compiled step read each model's own coefficient.
    assert [r for r, _ in values] == [False, True]
    assert values[1][1] == pytest.approx(values[0][1], rel=1e-4)


@pytest.mark.slow
def test_searched_penalties_are_part_of_the_design_its_words_and_its_export(tmp_path):
    from tests.conftest import write_study

    study = write_study(tmp_path, {"n_trials": 5, "baselines": True, "search": {
        "families": ["cross_entropy"], "penalty": {"l1_activity": True,
                                                   "l2_kernel": {"low": 1e-4, "high": 1e-2,
                                                                 "log": True}}}})
    url = f"sqlite:///{tmp_path / 'p.db'}"
    result = CliRunner().invoke(main, ["search", str(study), "--storage", url])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    searched = [t for t in trials if not t.user_attrs.get(results.BASELINE)]
    baselines = [t for t in trials if t.user_attrs.get(results.BASELINE)]
    assert len(baselines) == 2 and all("penalty.l2_kernel" not in t.params for t in baselines)
    assert all("+ L1 activity penalty" not in t.user_attrs[results.WORDS] for t in baselines)
    for t in searched:
        described = json.loads(t.user_attrs[results.LOSS])
        assert described["penalty"] == {"l1_activity": t.params["penalty.l1_activity"],
                                        "l2_kernel": t.params["penalty.l2_kernel"]}
        assert "L2 kernel decay λ = " in t.user_attrs[results.WORDS]
        assert '"penalty.l2_kernel"' in t.user_attrs[results.DESIGN_KEY]
        assert t.user_attrs[results.POPULATION] == 1 and "penalties" in t.user_attrs[
            results.POPULATION_NOTE]
    out = tmp_path / "b.json"
    exported = CliRunner().invoke(main, ["export", "tiny", "--storage", url, "-o", str(out),
                                         "--trial", str(searched[0].number)])
    assert exported.exit_code == 0, exported.output
    written = json.loads(out.read_text())
    assert written["design"]["penalty"]["l2_kernel"] == searched[0].params["penalty.l2_kernel"]
    assert "L2 kernel decay" in written["description"]
    losses.load_loss(out)  # the loss itself builds; the penalty is the model's


def test_the_python_api_infers_multilabel_and_takes_counts():
    multi_hot = (RNG.random((40, 4)) < 0.4).astype("int64")
    multi_hot[0] = [1, 1, 0, 0]  # some row has two labels
    assert data.infer_task(multi_hot) == "multilabel"
    assert data.infer_task(np.eye(4, dtype="int64")[RNG.integers(0, 4, 40)]) == "multiclass"
    x = RNG.normal(size=(40, 3)).astype("float32")
    splits = data.from_arrays(x, multi_hot, task="multilabel")
    assert splits.num_classes == 4 and splits.y_train.shape[1] == 4
    counts = data.from_arrays(x, RNG.poisson(2.0, 40), task="count")
    assert counts.y_scale == 1.0 and counts.y_train.dtype == np.float32
    with pytest.raises(data.DataError, match="a count target must be whole numbers >= 0"):
        data.from_arrays(x, RNG.normal(size=40), task="count")


# ------------------------------------------------------------------------------ embeddings
def _batch(seed: int = 1, classes: int = 4, per_class: int = 3, dim: int = 5):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class).astype("float32")[:, None]
    return labels, rng.normal(size=(len(labels), dim)).astype("float32")


def _reference_pairs(labels, emb):
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = e @ e.T
    d = np.maximum(2 - 2 * cos, 0)
    y = labels.reshape(-1)
    same = y[:, None] == y[None, :]
    return cos, d, same & ~np.eye(len(y), dtype=bool), ~same


def _triplet_reference(labels, emb, margin, mining):
    """Plain loops over anchors, positives and negatives: the definitions, not the tensors."""
    _, d, pos, neg = _reference_pairs(labels, emb)
    out = []
    for a in range(len(d)):
        ps, ns = np.flatnonzero(pos[a]), np.flatnonzero(neg[a])
        if mining == "all":
            out.append(np.mean([max(d[a, p] - d[a, n] + margin, 0) for p in ps for n in ns]))
        elif mining == "hard":
            out.append(max(d[a, ps].max() - d[a, ns].min() + margin, 0))
        else:
            per = []
            for p in ps:
                farther = [d[a, n] for n in ns if d[a, n] > d[a, p]]
                chosen = min(farther) if farther else d[a, ns].max()
                per.append(max(d[a, p] - chosen + margin, 0))
            out.append(np.mean(per))
    return np.array(out)


@pytest.mark.parametrize("mining", ["all", "semi_hard", "hard"])
def test_triplet_loss_mines_as_defined(mining):
    labels, emb = _batch()
    loss = losses.build_loss({"family": "triplet", "params": {"margin": 0.3, "mining": mining}})
    loss.reduction = None
    np.testing.assert_allclose(_np(loss(labels, emb)),
                               _triplet_reference(labels, emb, 0.3, mining), rtol=1e-4,
                               atol=1e-6)


def test_contrastive_quadruplet_and_cosine_losses_against_numpy():
    labels, emb = _batch(seed=2)
    cos, d2, pos, neg = _reference_pairs(labels, emb)
    d = np.sqrt(d2)
    pairs = pos | neg
    contrastive = np.where(pos, d2, np.maximum(0.8 - d, 0) ** 2)
    expected = (contrastive * pairs).sum(1) / pairs.sum(1)
    got = losses.build_loss({"family": "contrastive", "params": {"margin": 0.8}})
    got.reduction = None
    np.testing.assert_allclose(_np(got(labels, emb)), expected, rtol=1e-4, atol=1e-6)
    # Cosine: its cosine is Keras's cosine similarity (negated) of the two embeddings.
    keras_cos = -_np(keras.losses.cosine_similarity(np.repeat(emb, len(emb), axis=0),
                                                    np.tile(emb, (len(emb), 1))))
    np.testing.assert_allclose(keras_cos.reshape(len(emb), len(emb)), cos, atol=1e-5)
    per = np.where(pos, 1 - cos, np.maximum(cos - 0.1, 0))
    got = losses.build_loss({"family": "cosine_embedding", "params": {"margin": 0.1}})
    got.reduction = None
    np.testing.assert_allclose(_np(got(labels, emb)), (per * pairs).sum(1) / pairs.sum(1),
                               rtol=1e-4, atol=1e-6)
    # Quadruplet, batch-hard: the nearest pair of negatives of two classes, neither a's.
    y = labels.reshape(-1)
    expected = []
    for a in range(len(y)):
        hardest_p = d2[a, pos[a]].max()
        nearest_n = d2[a, neg[a]].min()
        others = [d2[i, j] for i in range(len(y)) for j in range(len(y))
                  if y[i] != y[a] and y[j] != y[a] and y[i] != y[j]]
        expected.append(max(hardest_p - nearest_n + 0.2, 0) + max(hardest_p - min(others)
                                                                  + 0.1, 0))
    got = losses.build_loss({"family": "quadruplet", "params": {"margin": 0.2,
                                                                "margin2": 0.1}})
    got.reduction = None
    np.testing.assert_allclose(_np(got(labels, emb)), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family, params", [
    ("triplet", [{"margin": 0.1, "mining": "semi_hard"}, {"margin": 0.5, "mining": "semi_hard"}]),
    ("quadruplet", [{"margin": 0.1, "margin2": 0.05}, {"margin": 0.4, "margin2": 0.3}])])
def test_embedding_losses_stack_member_by_member(family, params):
    from losstune.losses._tunable import stack

    labels, emb = _batch(seed=3)
    members = [losses.build_loss({"family": family, "params": p}) for p in params]
    other = np.random.default_rng(4).normal(size=emb.shape).astype("float32")
    pred = np.stack([emb, other], axis=1)  # (batch, members, dim)
    together = _np(stack(members).call(np.repeat(labels[:, None], 2, axis=1), pred))
    for k, (loss, e) in enumerate(zip(members, (emb, other))):
        np.testing.assert_allclose(together[:, k], _np(loss.call(labels, e)), rtol=1e-5)


def test_a_margin_every_triplet_already_meets_is_a_warning():
    from losstune import audit

    labels = np.repeat(np.arange(3), 2).astype("float32")[:, None]
    emb = np.eye(3, dtype="float32")[np.repeat(np.arange(3), 2)] * 5.0  # classes apart
    report = audit.check(losses.build_loss({"family": "triplet", "params": {"margin": 0.1}}),
                         labels, emb)
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("every triplet already satisfies its margin on the "
                                         "audit batch: zero loss and zero gradient")
    wide = audit.check(losses.build_loss({"family": "triplet", "params": {"margin": 3.0}}),
                       labels, emb)
    assert wide.warnings == ()


def test_embedding_metrics_are_nearest_neighbours_of_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import normalize

    rng = np.random.default_rng(5)
    gallery, y_gallery = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    emb, y = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    got = metrics.embedding(y, emb, y_gallery, gallery)
    knn = KNeighborsClassifier(5).fit(normalize(gallery), y_gallery)
    assert got["knn_accuracy"] == pytest.approx(knn.score(normalize(emb), y))
    nearest = np.argmax(normalize(emb) @ normalize(gallery).T, axis=1)
    assert got["recall_at_1"] == pytest.approx(np.mean(y_gallery[nearest] == y))


def test_pk_batches_hold_p_classes_of_k_samples_and_are_seeded():
    y = np.repeat(np.arange(10), [30, 20, 12, 8, 5, 3, 3, 2, 2, 1])
    order, steps = data.pk_batches(y, 16, 4, epochs=3, seed=7)
    assert steps == len(y) // 16 and len(order) == 3 * steps * 16
    for batch in order.reshape(-1, 16):
        counts = np.unique(y[batch], return_counts=True)[1]
        assert len(counts) == 4 and set(counts) == {4}  # P = 4 classes x K = 4
    # A compiled call of 4 steps never runs into the next epoch: epochs of whole calls.
    assert data.pk_batches(y, 16, 4, epochs=1, seed=7, multiple_of=4)[1] == steps // 4 * 4
    again, _ = data.pk_batches(y, 16, 4, epochs=3, seed=7)
    assert np.array_equal(order, again)
    assert not np.array_equal(order, data.pk_batches(y, 16, 4, epochs=3, seed=8)[0])
    with pytest.raises(data.DataError, match="asks for 12 classes per batch; the training "
                                             "split has 10"):
        data.pk_batches(y, 48, 4, epochs=1, seed=0)


# ------------------------------------------------------------------------------ autoencoders
X01 = RNG.random((12, 6)).astype("float32")  # inputs in [0, 1]
AE_LOGITS = RNG.normal(size=(12, 6 + 3)).astype("float32")  # 6 reconstruction logits, code 3


@pytest.mark.parametrize("family, keras_loss", [
    ("reconstruction_mse", keras.losses.MeanSquaredError()),
    ("reconstruction_mae", keras.losses.MeanAbsoluteError()),
    ("reconstruction_huber", keras.losses.Huber(delta=0.05))])
def test_reconstruction_losses_are_keras_on_the_sigmoid_of_the_logits(family, keras_loss):
    params = {"delta": 0.05} if family == "reconstruction_huber" else {}
    ours = losses.build_loss({"family": family, "params": params})
    recon = _np(ops.sigmoid(AE_LOGITS[:, :6])).astype("float32")
    assert _np(ours(X01, AE_LOGITS)) == pytest.approx(_np(keras_loss(X01, recon)), rel=1e-5)


def test_reconstruction_bce_is_keras_bce_from_logits():
    ours = losses.build_loss({"family": "reconstruction_bce", "params": {}})
    keras_own = keras.losses.BinaryCrossentropy(from_logits=True)
    assert _np(ours(X01, AE_LOGITS)) == pytest.approx(_np(keras_own(X01, AE_LOGITS[:, :6])),
                                                      rel=1e-5)


def test_the_vae_kl_is_the_closed_form_and_its_weight_follows_the_warm_up():
    out = RNG.normal(size=(12, 6 + 2 * 3)).astype("float32")  # logits, μ, log σ²
    loss = losses.build_loss({"family": "vae", "params": {
        "reconstruction": "mse", "beta": 2.0, "epochs": 5,
        "schedule": {"name": "linear", "params": {"start": 0.0, "end": 1.0}}}})
    mu, log_var = out[:, 6:9].astype("float64"), out[:, 9:].astype("float64")
    kl = 0.5 * np.sum(mu ** 2 + np.exp(log_var) - log_var - 1.0, axis=1)
    recon = np.sum((_sigmoid(out[:, :6]) - X01) ** 2, axis=1)
    for epoch, factor in ((0, 0.0), (2, 0.5), (4, 1.0)):
        loss.set_epoch(epoch)
        terms = loss.components(X01, out)
        np.testing.assert_allclose(_np(terms["kl"]), 2.0 * factor * kl, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(terms["reconstruction"]), recon, rtol=1e-5)
        assert _np(loss(X01, out)) == pytest.approx(np.mean(recon + 2.0 * factor * kl),
                                                    rel=1e-5)


def test_the_built_in_autoencoder_outputs_logits_then_its_code():
    from losstune import models
    from losstune.losses._autoencoder import InputNoise

    spec = spec_mod.ModelSpec(hidden=(16,), embedding_dim=3)
    plain = models.build_autoencoder(spec, input_shape=(6,), variational=False)
    vae = models.build_autoencoder(spec, input_shape=(6,), variational=True, noise=0.2)
    assert plain(X01).shape == (12, 6 + 3) and vae(X01).shape == (12, 6 + 3 + 3)
    # Inference uses μ itself; training samples the code, and noises the inputs.
    assert np.allclose(_np(vae(X01, training=False)), _np(vae(X01, training=False)))
    assert not np.allclose(_np(vae(X01, training=True)), _np(vae(X01, training=False)))
    noise = InputNoise(0.2)
    big = np.zeros((4000, 6), "float32")
    assert np.std(_np(noise(big, training=True))) == pytest.approx(0.2, rel=0.05)
    assert np.array_equal(_np(noise(big, training=False)), big)


def test_autoencoder_metrics_are_scikit_learns():
    from sklearn.metrics import mean_squared_error
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(6)
    code, gallery = rng.normal(size=(12, 3)), rng.normal(size=(40, 3))
    y, y_gallery = rng.integers(0, 2, 12), rng.integers(0, 2, 40)
    got = metrics.autoencoder(X01, AE_LOGITS[:, :6], y, code, y_gallery, gallery)
    assert got["reconstruction_mse"] == pytest.approx(
        mean_squared_error(X01, _sigmoid(AE_LOGITS[:, :6])))
    assert got["latent_knn_accuracy"] == pytest.approx(
        KNeighborsClassifier(5).fit(gallery, y_gallery).score(code, y))


def test_autoencoder_inputs_are_scaled_to_the_unit_interval_on_the_training_split():
    splits = data.load(spec_mod.DatasetSpec(name="breast_cancer"), "autoencoder", seed=0)
    assert splits.x_train.min() == 0.0 and splits.x_train.max() == 1.0
    assert 0.0 <= splits.x_val.min() and splits.x_val.max() <= 1.0  # clipped
    assert splits.num_classes == 2 and splits.class_counts == []  # labels score the code


# ------------------------------------------------------------------------------ the seeds
def test_the_seeds_triplet_splits_features_not_samples_and_ignores_the_labels():
    """Seed 003's triplet_loss splits each prediction's *features* in three (tf.split on axis
    1) and never reads y_true: which samples share a class cannot change it. losstune mines
    anchors, positives and negatives among the batch's samples by their labels."""
    def seed_triplet(y_true, y_pred, alpha=0.2):  # the seed's code, in keras.ops
        anchor, positive, negative = ops.split(y_pred, 3, axis=1)
        pos = ops.sum(ops.square(anchor - positive), axis=1)
        neg = ops.sum(ops.square(anchor - negative), axis=1)
        return ops.mean(ops.maximum(pos - neg + alpha, 0.0))

    labels, emb = _batch(seed=7, dim=6)
    shuffled = labels[np.random.default_rng(0).permutation(len(labels))]
    assert _np(seed_triplet(labels, emb)) == _np(seed_triplet(shuffled, emb))
    ours = losses.build_loss({"family": "triplet", "params": {"margin": 0.2}})
    assert _np(ours(labels, emb)) != pytest.approx(_np(ours(shuffled, emb)))


def test_the_activity_penalty_does_not_grow_with_the_batch_as_the_seeds_does():
    """Seed 003's L1PenaltyLayer adds factor × Σ|inputs| over the whole batch (and calls it a
    penalty on weights): twice the batch, twice the penalty, so its factor means something
    else at every batch size. losstune's is the mean over samples of Σ|a|."""
    from losstune.losses._penalty import Penalties

    a = RNG.normal(size=(8, 5)).astype("float32")
    twice = np.concatenate([a, a])
    seed_penalty = lambda x: 0.01 * float(np.sum(np.abs(x)))  # noqa: E731
    assert seed_penalty(twice) == pytest.approx(2 * seed_penalty(a))
    ours = Penalties(l1_activity=True, values={"l1_activity": 0.01})
    ours(a)
    one = sum(_np(v) for v in ours.losses)
    ours(twice)
    assert sum(_np(v) for v in ours.losses) == pytest.approx(one, rel=1e-6)


@pytest.mark.parametrize("family, params", [("triplet", {"mining": "hard"}),
                                            ("triplet", {"mining": "semi_hard"}),
                                            ("triplet", {"mining": "all"}), ("quadruplet", {})])
def test_an_anchor_without_a_positive_or_a_negative_adds_nothing(family, params):
    """Outside P x K batches (an exported loss on shuffled data): an anchor alone in its class,
    or a batch of one class, has no triplet; it must give 0, not a margin or a huge value."""
    rng = np.random.default_rng(8)
    loss = losses.build_loss({"family": family, "params": params})
    loss.reduction = None
    emb = rng.normal(size=(5, 4)).astype("float32")
    lonely = np.array([[0], [0], [1], [1], [2]], "float32")  # sample 4 has no positive
    assert _np(loss(lonely, emb))[4] == 0.0
    one_class = np.zeros((5, 1), "float32")  # no negatives anywhere
    assert np.all(_np(loss(one_class, emb)) == 0.0)


# ------------------------------------------------------------------------------ a new task
def test_a_task_registered_in_one_module_goes_through_search_report_and_export(tmp_path):
    """tests/ordinal_task.py registers ordinal regression (its task and its loss) and nothing
    else changes: a study file names it, a two-trial search trains and scores it, the report
    and the export read it; it is gone when its block ends."""
    from sklearn.datasets import load_diabetes

    from tests import ordinal_task
    from tests.conftest import write_study

    x, y = load_diabetes(return_X_y=True)
    grade = np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))  # 4 ordered classes
    csv_path = tmp_path / "grades.csv"
    rows = [",".join([*(f"f{i}" for i in range(x.shape[1])), "grade"])]
    rows += [",".join([*(f"{v:.6g}" for v in row), str(g)]) for row, g in zip(x, grade)]
    csv_path.write_text("\n".join(rows) + "\n")
    study = {"task": "ordinal", "n_trials": 2, "dataset": {"name": "csv", "path": "grades.csv",
                                                           "target": "grade"},
             "objective": {"metric": "mae"}, "training": {"epochs": 4},
             "search": {"families": ["cumulative_logit"]}}
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'ordinal.db'}"
    with (tasks.registered(ordinal_task.ORDINAL),
          catalog.registered(ordinal_task.CUMULATIVE_LOGIT)):
        path = write_study(tmp_path, study)
        loaded = spec_mod.load(path)
        assert (loaded.task, loaded.families) == ("ordinal", ("cumulative_logit",))
        assert [b.family for b in loaded.baseline_designs] == ["cumulative_logit"]
        # The task's own rules come from the registry: a metric of another task is refused.
        bad = write_study(tmp_path, {**study, "objective": {"metric": "r2"}}, name="bad.toml")
        result = runner.invoke(main, ["validate", str(bad)])
        assert result.exit_code == 2
        assert ("objective.metric: unknown metric 'r2' for an ordinal task; allowed: mae, "
                "accuracy, quadratic_kappa") in result.output

        result = runner.invoke(main, ["search", str(path), "--storage", url],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        trials = optuna.load_study(study_name="tiny", storage=url).trials
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
        assert trials[0].params["cumulative_logit.smoothing"] == 0.0  # the baseline, enqueued
        for t in trials:
            # Scored by the task: a mean absolute error in classes, from 3 threshold logits.
            # Predicting one class for all would score about 1.0 on four balanced classes.
            assert 0.0 <= t.value < 0.9
            assert t.value == pytest.approx(t.user_attrs["val.mae"], abs=1e-6)
            assert t.user_attrs["val.quadratic_kappa"] > 0.3
            assert len(t.user_attrs["curve.val_mae"]) == 4
        # Trained together, each member its own ε (the swap contract).
        assert [t.user_attrs["compiled"] for t in trials] == ["population", "population"]

        report = tmp_path / "ordinal.html"
        result = runner.invoke(main, ["report", "tiny", "--storage", url, "-o", str(report)],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "cumulative-link loss" in report.read_text()

        exported = tmp_path / "best.json"
        result = runner.invoke(main, ["export", "tiny", "--storage", url, "-o", str(exported)],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        loss = losses.load_loss(exported)
        assert isinstance(loss, ordinal_task.CumulativeLogitLoss) and loss.from_logits
        assert loss.smoothing in [t.params["cumulative_logit.smoothing"] for t in trials]
        y_true = np.array([[1.0, 1.0, 0.0]], "float32")
        z = np.array([[2.0, 0.5, -1.0]], "float32")
        t = y_true * (1 - loss.smoothing) + loss.smoothing / 2
        p = _sigmoid(z)
        expected = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
        np.testing.assert_allclose(_np(loss(y_true, z)), expected, rtol=1e-5)

    assert "ordinal" not in tasks.names() and catalog.find("cumulative_logit") is None
    with pytest.raises(Exception, match="task: must be 'multiclass', .* or 'style_transfer'"):
        spec_mod.load(path)
