"""The Python API: a notebook's search, the same study from the CLI, light imports, the README."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import optuna
import pytest
from click.testing import CliRunner

import losstune
from losstune.cli import main
from losstune.errors import LosstuneError
from tests.conftest import ROOT


def test_import_losstune_is_light():
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, losstune; print(sorted(m for m in ('tensorflow', "
         "'keras', 'optuna', 'plotly', 'pandas', 'sklearn') if m in sys.modules)); "
         "print(sorted(losstune.__all__))"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert probe.returncode == 0, probe.stderr
    heavy, names = probe.stdout.strip().splitlines()
    assert heavy == "[]"
    assert names == "['Study', '__version__', 'load_study', 'search']"


def _wine():
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    return x, y


def _build(input_shape, output_units):
    import keras

    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(output_units)])


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    x, y = _wine()
    names = np.array(["barolo", "grignolino", "barbera"])[y]  # string labels
    url = f"sqlite:///{folder / 'api.db'}"
    study = losstune.search(_build, x, names, validation_split=0.3,
                            families=["cross_entropy", "focal"], n_trials=3, epochs=3,
                            racing={"max_seeds": 2, "test_seeds": 2}, storage=url,
                            study_name="nb")
    return study, url, folder, (x, names)


def test_search_from_python_gives_a_study_with_its_verdict(notebook):
    study, url, _, _ = notebook
    v = study.verdict
    assert v.winner is not None and v.metric == "macro_f1" and v.sentence
    board = study.leaderboard()
    assert list(board.index[:2]) == [1, 2] and {"design", "seeds", "mean", "ci"} <= set(board)
    assert board.iloc[0]["design"] == v.winner.words
    stored = optuna.load_study(study_name="nb", storage=url)
    assert stored.user_attrs["class_names"] == ["barbera", "barolo", "grignolino"]
    assert stored.user_attrs["spec"]["dataset"]["name"] == "arrays"
    assert stored.user_attrs["spec"]["model"]["kind"] == "python"


def test_the_best_loss_takes_integer_and_one_hot_labels(notebook):
    import keras

    study, _, _, (x, _) = notebook
    y = np.arange(len(x)) % 3
    values = []
    for labels in (y, np.eye(3, dtype="float32")[y]):
        keras.utils.set_random_seed(0)
        model = _build((x.shape[1],), 3)
        model.compile(optimizer="adam", loss=study.best_loss())
        values.append(model.fit(x, labels, epochs=2, verbose=0).history["loss"])
    assert np.allclose(values[0], values[1], rtol=1e-5)


def test_the_cli_reads_a_python_study_and_says_what_needs_python(notebook, tmp_path):
    study, url, _, (x, names) = notebook
    shown = CliRunner().invoke(main, ["show", "nb", "--storage", url, "-f", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["verdict"]["sentence"] == study.verdict.sentence
    result = CliRunner().invoke(main, ["confirm", "nb", "--storage", url, "--seeds", "3"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "made from Python" in result.output and ".attach(" in result.output
    again = losstune.load_study("nb", storage=url)
    with pytest.raises(LosstuneError, match="made from Python"):
        again.confirm(seeds=3)
    verdict = again.attach(_build, x, names, validation_split=0.3).confirm(seeds=3, top=1,
                                                                            test_seeds=2)
    baselines = [d for d in verdict.ranking if d.baseline]
    assert baselines and all(d.n == 3 and len(d.fresh) == 2 for d in baselines)
    out = again.export(tmp_path / "b.json")
    payload = json.loads(out.read_text())
    assert payload["design"]["family"] == verdict.winner.family
    assert "class_counts" not in payload["design"]["params"]
    assert set(payload["fitted"]) <= {"class_counts", "epochs", "from_logits"}
    assert not set(payload["design"]["params"]) & {"class_counts", "epochs", "from_logits"}


def test_regression_task_is_inferred_and_a_dataset_is_read(tmp_path):
    import tensorflow as tf
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    data = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y)).batch(64)
    study = losstune.search(_build, data, n_trials=2, epochs=2, racing=False,
                            storage=f"sqlite:///{tmp_path / 'r.db'}", study_name="reg")
    assert study.spec.task == "regression" and study.verdict.metric == "mae"
    assert 10 < study.verdict.winner.mean < 200  # MAE in the target's own units


def test_study_from_file_is_the_cli_search(tmp_path):
    from tests.conftest import write_study

    path = write_study(tmp_path, {"n_trials": 2})
    study = losstune.Study.from_file(path, storage=f"sqlite:///{tmp_path / 'f.db'}")
    study.search()
    assert len([t for t in study.optuna_study.trials if "duplicate_of" not in t.user_attrs]) == 2


def test_bad_python_input_is_one_clear_error(tmp_path):
    x, y = _wine()
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    with pytest.raises(LosstuneError, match="x has 178 rows but y has 10"):
        losstune.search(_build, x, y[:10], storage=url)
    with pytest.raises(LosstuneError, match="y_val: labels 7 are not among"):
        losstune.search(_build, x, y, validation_data=(x[:5], np.full(5, 7)), storage=url)
    with pytest.raises(LosstuneError, match="search.families"):
        losstune.search(_build, x, y, families=["huber"], storage=url)
    # Inputs that raised NumPy's or TensorFlow's own errors, as tracebacks, before
    import pandas as pd
    import tensorflow as tf

    frame = pd.DataFrame(x).assign(colour=["red"] * len(x))
    ragged = [list(row[: 1 + i % 3]) for i, row in enumerate(x)]
    unlabelled = [None if i == 3 else int(v) for i, v in enumerate(y)]
    for args, message in [
            ((frame, y), "x: column colour is not numeric (text, categories or dates); "
                         "encode it first"),
            ((ragged, y), "x: rows of different lengths; give a rectangular array"),
            ((x, unlabelled), "y: 1 missing value (None or NaN), the first at position 3"),
            ((tf.data.Dataset.from_tensor_slices((x, y)), None),
             "the dataset yields single samples, not batches: batch it first")]:
        with pytest.raises(LosstuneError, match=re.escape(message)):
            losstune.search(_build, *args, storage=url)
    assert not (tmp_path / "bad.db").exists()  # refused before anything was stored
    with pytest.raises(LosstuneError, match="no database at"):
        losstune.load_study("nope", storage=url)


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_a_model_that_ends_in_softmax_is_refused(tmp_path):
    """Losses take logits: a softmax (or sigmoid) at the end trained, badly, in silence."""
    import keras

    def probabilities(shape, units):  # other names than input_shape, output_units
        return keras.Sequential([keras.Input(shape), keras.layers.Dense(units),
                                 keras.layers.Softmax()])

    x, y = _wine()
    with pytest.raises(LosstuneError, match="the model ends in softmax; losstune's losses take "
                                            "the raw outputs"):
        losstune.search(probabilities, x, y, n_trials=1, epochs=1, baselines=False,
                        racing=False, storage=f"sqlite:///{tmp_path / 's.db'}")


def test_the_readme_python_snippets_run_as_written(tmp_path):
    """The Python API example first (it writes notebook_loss.json), then every other snippet
    (which reads best_loss.json, the quick start's `losstune export`: a copy stands for it)."""
    import shutil

    blocks = _python_blocks()
    api = [b for b in blocks if "losstune.search(" in b]
    assert len(api) == 1 and len(blocks) >= 2
    for i, block in enumerate(api + [b for b in blocks if b not in api]):
        if i == 1:
            shutil.copy(tmp_path / "notebook_loss.json", tmp_path / "best_loss.json")
        script = tmp_path / f"snippet{i}.py"
        script.write_text(block)
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=400)
        assert proc.returncode == 0, f"README snippet {i} failed:\n{block}\n{proc.stderr[-3000:]}"


def test_other_data_cannot_join_a_python_study(notebook):
    study, url, _, (x, names) = notebook
    with pytest.raises(LosstuneError, match="was made with other settings; changed: "
                                            "dataset.fingerprint"):
        losstune.search(_build, x[:-1], names[:-1], validation_split=0.3,
                        families=["cross_entropy", "focal"], n_trials=1, epochs=3,
                        racing={"max_seeds": 2, "test_seeds": 2}, storage=url,
                        study_name="nb")
    with pytest.raises(LosstuneError, match="was made with other data"):
        losstune.load_study("nb", storage=url).attach(_build, x, names, validation_split=0.4)


def test_python_arguments_follow_the_study_file_rules_and_write_nothing_first(tmp_path):
    """families=[] meant "all families", timeout=0 was dropped, and a build_model that is no
    function stored a study (with WAITING baselines) before it was refused."""
    x, y = _wine()
    url = f"sqlite:///{tmp_path / 'p.db'}"
    for kwargs, message in [({"families": []}, "search.families"),
                            ({"timeout": 0}, "timeout"),
                            ({"build_model": "notafunction"}, "build_model must be a function")]:
        with pytest.raises(LosstuneError, match=message):
            losstune.search(kwargs.pop("build_model", _build), x, y, storage=url, **kwargs)
    assert not (tmp_path / "p.db").exists()
