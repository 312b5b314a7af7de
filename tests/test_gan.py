"""GAN losses against their papers' closed forms, and the sample-quality metrics against
brute-force references (SciPy's sqrtm, an MMD written out sample by sample, k-NN balls by
loops)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from keras import ops

from losstune import metrics, results
from losstune.losses import _adversarial as adv

RNG = np.random.default_rng(11)
R = RNG.normal(1.0, 1.5, size=32).astype("float32")   # D's outputs on real samples
F = RNG.normal(-0.5, 1.2, size=32).astype("float32")  # ... and on generated ones


def _np(x) -> float:
    return float(ops.convert_to_numpy(x))


def _softplus(x):
    return np.log1p(np.exp(x.astype("float64")))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype("float64")))


r64, f64 = R.astype("float64"), F.astype("float64")
CLOSED_FORMS = {
    # name: (loss, D's loss, G's loss), in the papers' notation
    "minimax": (adv.MinimaxGAN(),
                np.mean(-np.log(_sigmoid(r64)) - np.log(1 - _sigmoid(f64))),
                np.mean(np.log(1 - _sigmoid(f64)))),
    "non_saturating": (adv.NonSaturatingGAN(),
                       np.mean(-np.log(_sigmoid(r64)) - np.log(1 - _sigmoid(f64))),
                       np.mean(-np.log(_sigmoid(f64)))),
    "least_squares": (adv.LeastSquaresGAN(a=-1.0, b=1.0, c=0.0),
                      np.mean(0.5 * (r64 - 1) ** 2 + 0.5 * (f64 + 1) ** 2),
                      np.mean(0.5 * f64 ** 2)),
    "hinge": (adv.HingeGAN(), np.mean(np.maximum(0, 1 - r64) + np.maximum(0, 1 + f64)),
              -np.mean(f64)),
    "wasserstein": (adv.WassersteinGAN(), np.mean(f64) - np.mean(r64), -np.mean(f64)),
    "relativistic": (adv.RelativisticGAN(),
                     np.mean(-np.log(_sigmoid(r64 - f64.mean()))
                             - np.log(1 - _sigmoid(f64 - r64.mean()))),
                     np.mean(-np.log(_sigmoid(f64 - r64.mean()))
                             - np.log(1 - _sigmoid(r64 - f64.mean())))),
}


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_each_family_is_its_papers_closed_form(name):
    loss, d_loss, g_loss = CLOSED_FORMS[name]
    assert _np(loss.discriminator_loss(R, F)) == pytest.approx(d_loss, rel=1e-5)
    assert _np(loss.generator_loss(F, R)) == pytest.approx(g_loss, rel=1e-5)
    assert adv.ADVERSARIAL[name] is type(loss)
    # The train step gives the generator's loss D's outputs on real samples only where it
    # reads them: without them, a loss that reads them would compute something else.
    reads = _np(loss.generator_loss(F)) != pytest.approx(g_loss, rel=1e-5)
    assert reads == loss.generator_reads_real


def test_minimax_saturates_where_non_saturating_does_not():
    """Goodfellow et al.'s reason for the non-saturating form: where D rejects the samples
    (f very negative), log(1 − σ(f)) has almost no slope, −log σ(f) a slope near −1
    (central differences of the losses, on any backend)."""
    f, h = np.array([-8.0, -6.0], "float32"), np.float32(0.01)
    slopes = {}
    for name in ("minimax", "non_saturating"):
        loss = CLOSED_FORMS[name][0]
        slopes[name] = max(abs(_np(loss.generator_loss(f + h * np.eye(2, dtype="float32")[i]))
                               - _np(loss.generator_loss(f - h * np.eye(2, dtype="float32")[i])))
                           * len(f) / (2 * h) for i in range(2))
    assert slopes["minimax"] < 5e-3 < 0.9 < slopes["non_saturating"]


def test_one_sided_label_smoothing_changes_only_the_real_target():
    s = 0.1
    for cls in (adv.MinimaxGAN, adv.NonSaturatingGAN):
        smoothed = cls(label_smoothing=s)
        expected = np.mean((1 - s) * _softplus(-r64) + s * _softplus(r64) + _softplus(f64))
        assert _np(smoothed.discriminator_loss(R, F)) == pytest.approx(expected, rel=1e-5)
        # G's loss does not read the real target.
        assert _np(smoothed.generator_loss(F)) == pytest.approx(_np(cls().generator_loss(F)))


def test_penalties_on_input_gradients():
    g = RNG.normal(size=(8, 4, 4, 1)).astype("float32")
    norms = np.sqrt((g.astype("float64").reshape(8, -1) ** 2).sum(axis=1))
    assert _np(adv.gradient_penalty(g, "gp")) == pytest.approx(np.mean((norms - 1) ** 2),
                                                                rel=1e-4)
    assert _np(adv.gradient_penalty(g, "r1")) == pytest.approx(0.5 * np.mean(norms ** 2),
                                                                rel=1e-4)
    with pytest.raises(ValueError, match="'gp' or 'r1'"):
        adv.gradient_penalty(g, "l2")
    assert adv.WassersteinGAN().gp_weight == 10.0 and adv.HingeGAN().gp_weight == 0.0


def test_a_family_rebuilds_from_its_config():
    loss = adv.LeastSquaresGAN(a=-1.0, b=1.0, c=0.0, label_smoothing=0.2, r1_gamma=5.0)
    again = type(loss).from_config(loss.get_config())
    assert (again.a, again.b, again.c, again.label_smoothing, again.r1_gamma) == (
        -1.0, 1.0, 0.0, 0.2, 5.0)
    assert _np(again.discriminator_loss(R, F)) == pytest.approx(_np(loss.discriminator_loss(R, F)))


# ------------------------------------------------------------------------------ metrics
def test_frechet_distance_is_scipys_sqrtm_form():
    from scipy.linalg import sqrtm

    a = RNG.normal(size=(300, 6)) @ RNG.normal(size=(6, 6))
    b = RNG.normal(0.3, 1.2, size=(250, 6)) @ RNG.normal(size=(6, 6))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    mu = a.mean(0) - b.mean(0)
    reference = mu @ mu + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert metrics.frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def _mmd2_unbiased(x, y):
    """The unbiased squared MMD with KID's kernel, sample by sample."""
    d = x.shape[1]
    k = lambda u, v: (u @ v / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_and_centred_on_zero_for_one_distribution():
    x, y = RNG.normal(size=(40, 5)), RNG.normal(0.5, 1.0, size=(40, 5))
    assert metrics.kernel_inception_distance(x, y, subsets=1, subset_size=40) == pytest.approx(
        _mmd2_unbiased(x, y), rel=1e-9)
    # Unbiased: same-distribution estimates scatter around 0 (a biased one stays above).
    rng = np.random.default_rng(5)  # its own draws, whatever ran before
    same = [metrics.kernel_inception_distance(rng.normal(size=(60, 5)), rng.normal(size=(60, 5)),
                                              subsets=1, subset_size=60) for _ in range(40)]
    assert min(same) < 0 < max(same) and abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(40)
    assert metrics.kernel_inception_distance(x, y, subsets=3, subset_size=30) > 0.1


def test_precision_and_recall_are_k_nn_balls():
    real = RNG.normal(size=(30, 3))
    fake = np.concatenate([RNG.normal(size=(20, 3)), RNG.normal(6.0, 1.0, size=(10, 3))])
    k = 3

    def ref(points, centres):
        radius = [sorted(np.linalg.norm(c - o) for o in centres)[k] for c in centres]
        return np.mean([any(np.linalg.norm(p - c) <= r for c, r in zip(centres, radius))
                        for p in points])

    precision, recall = metrics.precision_recall(real, fake, k=k)
    assert precision == pytest.approx(ref(fake, real)) and recall == pytest.approx(ref(real, fake))
    assert precision <= 2 / 3 + 1e-9  # the 10 far samples are outside the real manifold


def test_class_coverage():
    found, kl = metrics.class_coverage(np.array([0, 0, 1, 1]), np.array([5, 5, 5, 5]))
    assert found == 0.5 and kl == pytest.approx(np.log(2))
    found, kl = metrics.class_coverage(np.array([0, 1, 2, 3]), np.array([5, 5, 5, 5]))
    assert found == 1.0 and kl == pytest.approx(0.0)


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("family, params", [("non_saturating", {"label_smoothing": 0.1}),
                                            ("wasserstein", {"r1_gamma": 1.0, "d_steps": 2}),
                                            ("least_squares", {"d_lr_ratio": 2.0}),
                                            ("relativistic", {})])
def test_the_train_step_alternates_and_updates_both_models(family, params):
    """One epoch of the built-in GAN: the discriminator and the generator both move, the
    discriminator's optimizer runs d_steps a batch at d_lr_ratio times the generator's rate,
    and the logs carry both losses (the penalties' second-order terms included)."""
    import keras

    from losstune import adversarial

    keras.utils.set_random_seed(0)
    loss = adv.ADVERSARIAL[family](**params)
    model = adversarial.GAN(adversarial.build_generator(8, (16,), "mlp", (16,), ()),
                            adversarial.build_discriminator((16,), "mlp", (16,), ()), 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    before_g = [np.array(v) for v in model.generator.get_weights()]
    before_d = [np.array(v) for v in model.discriminator.get_weights()]
    x = RNG.uniform(-1, 1, size=(64, 16)).astype("float32")
    logs = model.fit(x, np.zeros((64, 1), "float32"), batch_size=16, epochs=1,
                     verbose=0).history
    assert {"loss", "loss_discriminator", "loss_generator"} <= set(logs)
    assert all(np.isfinite(v[-1]) for v in logs.values())
    assert any(not np.allclose(a, b) for a, b in zip(before_g, model.generator.get_weights()))
    assert any(not np.allclose(a, b) for a, b in zip(before_d,
                                                      model.discriminator.get_weights()))
    assert int(model.d_optimizer.iterations) == 4 * loss.d_steps
    assert int(model.optimizer.iterations) == 4
    assert float(model.d_optimizer.learning_rate) == pytest.approx(1e-3 * loss.d_lr_ratio)
    assert model(RNG.normal(size=(5, 8)).astype("float32")).shape == (5, 16)


def _small_gan(loss, seed=0):
    import keras

    from losstune import adversarial

    keras.utils.set_random_seed(seed)
    model = adversarial.GAN(adversarial.build_generator(8, (16,), "mlp", (16,), ()),
                            adversarial.build_discriminator((16,), "mlp", (16,), ()), 8,
                            seed=seed)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    return model


def _fit_once(model):
    x = np.random.default_rng(1).uniform(-1, 1, size=(32, 16)).astype("float32")
    model.fit(x, np.zeros((32, 1), "float32"), batch_size=32, epochs=1, verbose=0)


def test_the_generator_step_leaves_the_discriminator_alone():
    """With the discriminator's learning rate at 0 (a broken design), only the generator
    moves: its step updates its own weights, never the discriminator's."""
    model = _small_gan(adv.NonSaturatingGAN(d_lr_ratio=0.0))
    d0 = [np.array(w) for w in model.discriminator.get_weights()]
    g0 = [np.array(w) for w in model.generator.get_weights()]
    _fit_once(model)
    assert all(np.array_equal(a, b) for a, b in zip(d0, model.discriminator.get_weights()))
    assert any(not np.allclose(a, b) for a, b in zip(g0, model.generator.get_weights()))


@pytest.mark.parametrize("family, penalty", [("non_saturating", {"r1_gamma": 100.0}),
                                             ("wasserstein", {"gp_weight": 100.0})])
def test_a_penalty_reaches_the_discriminators_update(family, penalty):
    """The same first step with and without the penalty: the discriminator's weights differ
    (its input gradient is differentiated again, not dropped)."""
    base = {"gp_weight": 0.0} if family == "wasserstein" else {}
    plain, penalised = (_small_gan(adv.ADVERSARIAL[family](**params))
                        for params in (base, penalty))
    for model in (plain, penalised):
        _fit_once(model)
    gaps = [np.abs(a - b).max() for a, b in zip(plain.discriminator.get_weights(),
                                                penalised.discriminator.get_weights())]
    assert max(gaps) > 1e-3


def test_scored_latent_vectors_are_fixed_and_differ_between_splits():
    from types import SimpleNamespace

    from losstune import tasks

    gan = tasks.TASKS["gan"]
    splits = SimpleNamespace(latent_dim=8)
    val = gan.scored_inputs(splits, np.zeros((5, 2)), "val")
    assert val.shape == (1000, 8)
    assert np.array_equal(val, gan.scored_inputs(splits, np.zeros((7, 2)), "val"))
    assert not np.allclose(val, gan.scored_inputs(splits, np.zeros((5, 2)), "test"))


def test_a_gan_study_on_jax_is_refused_before_anything_is_stored(tmp_path, monkeypatch):
    from losstune import backend
    from losstune import studyfile as spec_mod
    from losstune.errors import SpecError
    from tests.conftest import write_study

    path = write_study(tmp_path, {"task": "gan", "dataset": {"name": "digits"},
                                  "objective": {"metric": "kid"},
                                  "search": {"families": ["hinge"]}})
    spec = spec_mod.load(path)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(SpecError, match="task: a gan task trains on tensorflow or torch .*; "
                                        "KERAS_BACKEND=jax is not supported"):
        backend.check(spec, path)
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    backend.check(spec, path)


# ------------------------------------------------------------------------------ end to end
def test_the_gan_example_study_searches_reports_and_exports(tmp_path, monkeypatch):
    """studies/gan_digits.toml on a tiny budget (400 digits, 2 epochs, the two baselines and
    one searched design, no racing: racing is the same for every task and has its own
    tests): trained, scored on generated samples, reported, exported."""
    import json
    import tomllib

    import optuna
    import tomli_w
    from click.testing import CliRunner

    from losstune import losses, results
    from losstune.cli import main
    from tests.conftest import ROOT

    monkeypatch.chdir(tmp_path)
    raw = tomllib.loads((ROOT / "studies" / "gan_digits.toml").read_text())
    raw.update({"n_trials": 3, "racing": False, "pruner": {"name": "none"},
                "dataset": {"name": "digits", "max_samples": 400}})
    raw["training"]["epochs"] = 2
    raw["search"]["families"] = ["wasserstein"]
    path = tmp_path / "gan.toml"
    path.write_text(tomli_w.dumps(raw))
    url = f"sqlite:///{tmp_path / 'g.db'}"
    runner = CliRunner()
    searched = runner.invoke(main, ["search", str(path), "--storage", url])
    assert searched.exit_code == 0, searched.output
    trials = optuna.load_study(study_name="gan_digits", storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert {results.family_of(t) for t in trials} == {"non_saturating", "minimax", "wasserstein"}
    for t in trials:
        assert {"val.kid", "val.fd", "val.precision", "val.recall", "val.class_coverage",
                "val.class_kl"} <= set(t.user_attrs)
        assert t.value == pytest.approx(t.user_attrs["val.kid"], rel=1e-4)
        # 1000 generated samples scored a split; the first 12 kept, as 8 x 8 images.
        assert len(t.user_attrs[results.GENERATED]) == 12
        assert sum(t.user_attrs["val.class_histogram"]) == 1000
        # The test split is scored on its own images and latent vectors.
        assert t.user_attrs["test.kid"] != t.user_attrs["val.kid"]
        assert len(t.user_attrs["curve.loss_generator"]) == 2
        assert len(t.user_attrs["curve.val_kid"]) == len(t.user_attrs["curve.val_fd"]) == 2
        assert t.user_attrs["curve.val_fd"][-1] == pytest.approx(t.user_attrs["val.fd"],
                                                                 rel=1e-3)
        assert t.user_attrs["population"] == 1 and t.user_attrs.get("population_note")
    reported = runner.invoke(main, ["report", "gan_digits", "--storage", url, "-o",
                                    str(tmp_path / "r.html")])
    assert reported.exit_code == 0, reported.output
    html = (tmp_path / "r.html").read_text()
    for figure in ("Generated samples", "Adversarial losses", "Class coverage",
                   "KID and FD per epoch"):
        assert figure in html
    assert "no stored samples" not in html and "no class histogram" not in html
    exported = runner.invoke(main, ["export", "gan_digits", "--storage", url, "-o",
                                    str(tmp_path / "b.json")])
    assert exported.exit_code == 0, exported.output
    loss = losses.load_loss(tmp_path / "b.json")
    winner = json.loads((tmp_path / "b.json").read_text())["design"]["family"]
    assert type(loss) is adv.ADVERSARIAL[winner]
    assert _np(loss.discriminator_loss(R, F)) == pytest.approx(
        _np(adv.ADVERSARIAL[winner](**{k: v for k, v in loss.get_config().items()
                                       if k in ("gp_weight", "label_smoothing", "a", "b", "c")
                                       }).discriminator_loss(R, F)))


def _user_generator(latent_dim, output_shape):
    import keras

    z = keras.Input((latent_dim,))
    h = keras.layers.Dense(32, activation="relu")(z)
    out = keras.layers.Dense(int(np.prod(output_shape)), activation="tanh")(h)
    return keras.Model(z, keras.layers.Reshape(output_shape)(out), name="my_generator")


def _user_discriminator(input_shape):
    import keras

    x = keras.Input(input_shape)
    h = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(x))
    return keras.Model(x, keras.layers.Dense(1)(h), name="my_discriminator")


def test_a_gan_from_python_trains_the_users_models_on_arrays(tmp_path):
    """losstune.search with task="gan": image arrays in [-1, 1] and labels, the user's
    generator and discriminator functions (called with the latent width and the images'
    shape), a search, then the stored study refusing to train again until the functions are
    given back."""
    from sklearn.datasets import load_digits

    import losstune
    from losstune.errors import LosstuneError

    digits = load_digits()
    x = (digits.images[:400] / 8.0 - 1.0).astype("float32")  # (n, 8, 8) images
    y = digits.target[:400]
    calls = []

    def generator(latent_dim, output_shape):
        calls.append(("g", latent_dim, tuple(output_shape)))
        return _user_generator(latent_dim, output_shape)

    url = f"sqlite:///{tmp_path / 'g.db'}"
    study = losstune.search(None, x, y, build_generator=generator,
                            build_discriminator=_user_discriminator, latent_dim=6,
                            n_trials=3, epochs=1, racing=False, pruner="none",
                            families=["least_squares"], storage=url, study_name="g")
    assert study.spec.task == "gan" and study.spec.model.latent_dim == 6
    assert calls and set(calls) == {("g", 6, (8, 8))}
    trials = study.optuna_study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert all(t.value > 0 and len(t.user_attrs[results.GENERATED][0]) == 64 for t in trials)
    assert study.optuna_study.user_attrs["image_shape"] == [8, 8]
    loaded = losstune.load_study("g", storage=url)
    with pytest.raises(LosstuneError, match=r"attach\(None, x, y, build_generator=\.\.\., "):
        loaded.confirm(2, top=1)
    # The built-in models in place of the study's own would mix other runs into its seeds.
    with pytest.raises(LosstuneError, match="was made with .*generator.* give the same model "
                                            "functions"):
        loaded.attach(None, x, y)
    loaded.attach(None, x, y, build_generator=generator,
                  build_discriminator=_user_discriminator)
    # Outside [-1, 1], a generator's tanh cannot reach the data: refused before anything.
    with pytest.raises(LosstuneError, match=r"must lie in \[-1, 1\]"):
        losstune.search(None, x * 4, y, task="gan", storage=url, study_name="other")
    with pytest.raises(LosstuneError, match="give build_generator and build_discriminator"):
        losstune.search(_user_discriminator, x, y, task="gan", storage=url, study_name="x")
    with pytest.raises(LosstuneError, match="build_generator is for task=.gan., not "
                                            "task=.multiclass."):
        losstune.search(_user_discriminator, x.reshape(400, -1), y, task="multiclass",
                        build_generator=generator, storage=url, study_name="x")
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["g"]


def test_a_users_generator_of_the_wrong_shape_is_one_clear_error():
    from losstune import adversarial
    from losstune.errors import LosstuneError

    with pytest.raises(LosstuneError, match=r"samples have shape \(4, 4\); the data's are "
                                            r"\(8, 8\)"):
        adversarial.check_models(_user_generator(3, (4, 4)), _user_discriminator((8, 8)), 3,
                                 (8, 8))
    with pytest.raises(LosstuneError, match="needs one raw value a sample"):
        import keras

        x = keras.Input((8, 8))
        two = keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
        adversarial.check_models(_user_generator(3, (8, 8)), two, 3, (8, 8))


def test_colour_images_from_an_npz_file_train_the_cnn_gan_and_show_in_colour(tmp_path):
    """A user's npz file of colour images (samples, 8, 8, 3) and labels, the DCGAN-style
    models: one design trained, its samples kept with their channels, drawn as colour images
    in the report."""
    from click.testing import CliRunner

    from losstune.cli import main
    from tests.conftest import write_study

    rng = np.random.default_rng(0)
    labels = np.arange(240) % 3
    images = np.zeros((240, 8, 8, 3), "uint8")
    for c in range(3):  # class c: a bright channel c, with noise
        images[labels == c, :, :, c] = 200
    images = images + rng.integers(0, 40, images.shape, dtype="uint8")
    np.savez(tmp_path / "colour.npz", images=images, label=labels)
    path = write_study(tmp_path, {
        "name": "colour", "task": "gan", "n_trials": 1, "baselines": False,
        "dataset": {"name": "npz", "path": "colour.npz", "target": "label",
                    "features": ["images"], "image": True},
        "model": {"kind": "cnn", "filters": [8], "hidden": None, "latent_dim": 4},
        "training": {"epochs": 1, "batch_size": 32, "learning_rate": 2e-4},
        "objective": {"metric": "kid"}, "search": {"families": ["hinge"],
                                                   "cross_entropy": None, "focal": None}})
    url = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    searched = runner.invoke(main, ["search", str(path), "--storage", url])
    assert searched.exit_code == 0, searched.output
    (trial,) = optuna.load_study(study_name="colour", storage=url).trials
    assert trial.state.name == "COMPLETE" and len(trial.user_attrs[results.GENERATED][0]) == 192
    reported = runner.invoke(main, ["report", "colour", "--storage", url, "-o",
                                    str(tmp_path / "r.html")])
    assert reported.exit_code == 0, reported.output
    assert '"type":"image"' in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_normalisation_of_the_built_in_models(kind):
    """model.normalization: batch (DCGAN's) in the generator only, layer in both, none in
    neither; the discriminator never has batch normalisation (its penalties are per
    sample)."""
    from losstune import adversarial

    def kinds(model):
        return {type(layer).__name__ for layer in model.layers}

    for norm, in_g, in_d in (("batch", "BatchNormalization", None),
                             ("layer", "LayerNormalization", "LayerNormalization"),
                             ("none", None, None)):
        g = adversarial.build_generator(4, (8, 8, 1), kind, (16,), (8,), norm)
        d = adversarial.build_discriminator((8, 8, 1), kind, (16,), (8,), norm)
        found_g = kinds(g) & {"BatchNormalization", "LayerNormalization"}
        found_d = kinds(d) & {"BatchNormalization", "LayerNormalization"}
        assert found_g == ({in_g} if in_g else set()), (norm, found_g)
        assert found_d == ({in_d} if in_d else set()), (norm, found_d)
