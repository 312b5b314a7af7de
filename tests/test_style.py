"""Style transfer: its losses and metrics against NumPy and scikit-image references, and the
known answers of a real study (content only, style only, a flat image)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from losstune import metrics
from losstune.losses import _style as style_mod

RNG = np.random.default_rng(0)
FEATURES = [RNG.random((1, 8 // (2 ** i) + 2, 6, 3 + i)).astype("float32") for i in range(4)]
STYLE_FEATURES = [RNG.random(f.shape).astype("float32") for f in FEATURES]
CONTENT = RNG.random(FEATURES[3].shape).astype("float32")
IMAGE = RNG.random((1, 9, 7, 3)).astype("float32")


def _np(x) -> float:
    return float(ops.convert_to_numpy(x))


def _gram(f):
    f = f.reshape(-1, f.shape[-1]).astype("float64")
    return f.T @ f / len(f)


def test_the_gatys_loss_is_the_papers_sums():
    """Eq. 1 and 4 of Gatys et al.: ½ Σ (F − P)², and E_l = Σ (G − A)² / (4 N² M²) with
    G = FᵀF, weighted by w_l / Σ w, plus α/β and the total variation's weight."""
    loss = style_mod.GatysStyle(ratio=0.01, w1=1.0, w2=2.0, w3=0.0, w4=1.0, tv_weight=3.0)
    targets = [loss.statistic(ops.convert_to_tensor(s)) for s in STYLE_FEATURES]
    terms = {k: _np(v) for k, v in loss.terms(IMAGE, FEATURES, CONTENT, targets).items()}
    content = 0.5 * np.sum((FEATURES[3].astype("float64") - CONTENT) ** 2)
    e = []
    for f, s in zip(FEATURES, STYLE_FEATURES):
        flat, target = f.reshape(-1, f.shape[-1]), s.reshape(-1, s.shape[-1])
        m, n = flat.shape
        g, a = flat.T.astype("float64") @ flat, target.T.astype("float64") @ target
        e.append(np.sum((g - a) ** 2) / (4 * n ** 2 * m ** 2))
    style = (1 * e[0] + 2 * e[1] + 0 * e[2] + 1 * e[3]) / 4
    img = IMAGE.astype("float64")
    tv = (np.mean((img[:, 1:] - img[:, :-1]) ** 2) + np.mean((img[:, :, 1:] - img[:, :, :-1]) ** 2))
    assert terms["content"] == pytest.approx(content, rel=1e-5)
    assert terms["style"] == pytest.approx(style, rel=1e-5)
    assert terms["tv"] == pytest.approx(tv, rel=1e-5)
    assert terms["loss"] == pytest.approx(0.01 * content + style + 3.0 * tv, rel=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(style_mod.gram(FEATURES[0])),
                               _gram(FEATURES[0]), rtol=1e-5)


def test_mean_std_and_sliced_wasserstein_statistics():
    ms = style_mod.MeanStdStyle()
    f, s = FEATURES[1].reshape(-1, FEATURES[1].shape[-1]), STYLE_FEATURES[1].reshape(
        -1, STYLE_FEATURES[1].shape[-1])
    want = np.mean((f.mean(0) - s.mean(0)) ** 2) + np.mean(
        (np.sqrt(f.var(0) + 1e-8) - np.sqrt(s.var(0) + 1e-8)) ** 2)
    got = _np(ms.distance(FEATURES[1], ms.statistic(STYLE_FEATURES[1])))
    assert got == pytest.approx(want, rel=1e-4)
    sw = style_mod.SlicedWassersteinStyle(projections=64)
    same = FEATURES[2]
    shuffled = RNG.permutation(same.reshape(-1, same.shape[-1]))  # positions do not matter
    assert _np(sw.distance(same, sw.statistic(shuffled))) == pytest.approx(0.0, abs=1e-10)
    # A shift by c moves every projection by c·d: the distance is c² mean (d·1)², > 0.
    assert _np(sw.distance(same, sw.statistic(same + 1.0))) > 0.1


def test_ssim_is_scikit_images():
    from skimage.metrics import structural_similarity

    for shape, noise in (((40, 50, 3), 0.1), ((33, 47, 3), 0.4), ((64, 64, 3), 0.0)):
        a = RNG.random(shape)
        b = np.clip(a + RNG.normal(0, noise, shape), 0, 1)
        assert metrics.ssim(a, b) == pytest.approx(structural_similarity(
            a, b, channel_axis=-1, data_range=1, gaussian_weights=True,
            use_sample_covariance=False), abs=1e-12)


def test_the_scoring_networks_are_not_the_losss():
    from losstune import stylize
    from losstune.tasks import style_transfer as task

    loss_net = stylize.random_features(task.RANDOM_SEED, 32, 32)
    val, test = (stylize.random_features(task.SCORING_SEEDS[s], 32, 32) for s in ("val", "test"))
    assert task.LAYERS == len(style_mod.LAYERS)
    x = RNG.random((1, 32, 32, 3)).astype("float32")
    outs = [ops.convert_to_numpy(n(x)[0]) for n in (loss_net, val, test)]
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])


def test_known_answers_content_only_style_only_and_a_flat_image(tmp_path):
    """The example study with four fixed designs on the bundled photographs (48 px, 60
    steps): α/β = 1e6 keeps the
    content (SSIM near 1) and a poor style distance; α/β = 1e-9 the reverse; both end the
    front. A total-variation weight of 1e4 flattens the image: dominated. Then the report's
    pictures and an export of the front's style end."""
    import json

    from click.testing import CliRunner

    import tomllib

    import tomli_w

    from losstune import results
    from losstune.api import load_study
    from losstune.cli import main
    from tests.conftest import ROOT

    gatys = {"ratio": 1e-3, "w1": 1.0, "w2": 1.0, "w3": 1.0, "w4": 1.0,
             "content_layer": "block4", "tv_weight": 0.0}
    designs = {"content": {**gatys, "ratio": 1e6}, "style": {**gatys, "ratio": 1e-9},
               "gatys": gatys, "flat": {**gatys, "tv_weight": 1e4}}
    # studies/style_transfer.toml, smaller: 48 px, 60 steps, the four designs as baselines.
    raw = tomllib.loads((ROOT / "studies" / "style_transfer.toml").read_text())
    raw.update({"name": "st", "n_trials": 4, "racing": False,
                "baselines": [{"family": "gatys", "params": p} for p in designs.values()]})
    raw["dataset"]["size"] = 48
    raw["training"]["epochs"] = 3
    raw["search"] = {"families": ["gatys"], "gatys": {"tv_weight": {"choices": [0.0, 1e4]}}}
    path = tmp_path / "st.toml"
    path.write_text(tomli_w.dumps(raw))
    url = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    searched = runner.invoke(main, ["search", str(path), "--storage", url])
    assert searched.exit_code == 0, searched.output
    verdict = load_study("st", storage=url).verdict
    by = {}
    for m in [*verdict.front, *verdict.others]:
        params = m.first.description["params"]
        by[next(k for k, p in designs.items() if all(
            params.get(key, gatys[key]) == (pytest.approx(v) if isinstance(v, float) else v)
            for key, v in p.items()))] = m
    ssim, distance = ({k: m.means[i] for k, m in by.items()} for i in (0, 1))
    assert ssim["content"] > 0.9 and ssim["style"] < 0.8
    assert distance["style"] < distance["gatys"] < distance["content"]
    assert distance["content"] > 5 * distance["style"]
    front = [m.key for m in verdict.front]
    assert front[0] == by["content"].key and front[-1] == by["style"].key
    assert by["flat"].key not in front  # dominated
    assert ssim["flat"] < ssim["gatys"] - 0.1  # the total variation flattened it
    trials = load_study("st", storage=url).optuna_study.trials
    assert all(t.user_attrs[results.STYLIZED].startswith("data:image/png;base64,")
               for t in trials)
    assert all(len(t.user_attrs["curve.val_style_distance"]) == 3 for t in trials)
    reported = runner.invoke(main, ["report", "st", "--storage", url, "-o",
                                    str(tmp_path / "r.html")])
    assert reported.exit_code == 0, reported.output
    html = (tmp_path / "r.html").read_text()
    for figure in ("Results on the two objectives", "Content, style and results",
                   "Pareto front"):
        assert f"<h3>{figure}</h3>" in html
    assert "Feature network of the losses: a random multi-scale CNN" in html
    exported = runner.invoke(main, ["export", "st", "--storage", url, "--pick",
                                    "style_distance", "-o", str(tmp_path / "b.json")])
    assert exported.exit_code == 0, exported.output
    payload = json.loads((tmp_path / "b.json").read_text())
    assert payload["design"]["params"]["ratio"] == pytest.approx(1e-9)
    from losstune.losses import load_loss

    assert type(load_loss(tmp_path / "b.json")) is style_mod.GatysStyle


def test_vgg19_from_a_weights_file_on_disk(tmp_path):
    """model.features = "vgg19" with model.vgg_weights: Keras's VGG19 loads the file (here
    random weights saved by Keras itself: ImageNet's are not downloaded), one design trains
    on it, and the report names the network."""
    import keras
    import optuna
    from click.testing import CliRunner

    from losstune.cli import main
    from tests.conftest import write_study

    keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 48, 3)) \
        .save_weights(tmp_path / "vgg19.weights.h5")
    path = write_study(tmp_path, {
        "name": "vgg", "task": "style_transfer", "n_trials": 1, "racing": False,
        "dataset": {"name": "sample_images", "size": 48},
        "model": {"features": "vgg19", "vgg_weights": "vgg19.weights.h5", "hidden": None},
        "training": {"epochs": 1, "steps_per_epoch": 5, "learning_rate": 0.01,
                     "batch_size": None},
        "objective": {"metric": ["content_ssim", "style_distance"]},
        "search": {"families": ["gatys"], "cross_entropy": None, "focal": None}})
    url = f"sqlite:///{tmp_path / 'v.db'}"
    runner = CliRunner()
    searched = runner.invoke(main, ["search", str(path), "--storage", url])
    assert searched.exit_code == 0, searched.output
    (trial,) = optuna.load_study(study_name="vgg", storage=url).trials
    assert trial.state.name == "COMPLETE" and 0 < trial.values[0] <= 1
    assert trial.user_attrs["audit"]["content"]["value"] >= 0
    reported = runner.invoke(main, ["report", "vgg", "--storage", url, "-o",
                                    str(tmp_path / "r.html")])
    assert reported.exit_code == 0, reported.output
    assert "Feature network of the losses: VGG19" in (tmp_path / "r.html").read_text()
