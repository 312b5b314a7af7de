"""The command line end to end: a tiny real study, read back with Optuna; resume; show; export."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from losstune.cli import main
from tests.conftest import ROOT, copy_db, write_study

EPOCHS = 3


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_search_stores_a_complete_record(finished):
    _, url, output = finished
    study = optuna.load_study(study_name="tiny", storage=url)
    trials = study.trials
    assert len(trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert study.metric_names == ["macro_f1"]
    assert study.user_attrs["task"] == "multiclass"
    # The baselines run first.
    assert trials[0].user_attrs["baseline"].startswith("cross_entropy")
    assert trials[1].user_attrs["family"] == "focal"
    assert json.loads(trials[1].user_attrs["loss"])["params"]["gamma"] == 2.0
    for t in trials:
        assert t.params["loss"] in ("cross_entropy", "focal", "dynamic")
        a = t.user_attrs
        assert 0 <= a["val.macro_f1"] <= 1 and a["val.macro_f1"] == pytest.approx(t.value)
        for key in ("val.accuracy", "val.balanced_accuracy", "test.macro_f1", "train_time_s",
                    "device", "backend", "loss_words"):
            assert key in a, key
        assert len(a["val.recall_per_class"]) == 3
        assert len(a["curve.val_macro_f1"]) == EPOCHS and len(a["curve.loss"]) == EPOCHS
        assert sorted(t.intermediate_values) == list(range(EPOCHS))
        if a["family"] == "dynamic":
            assert len(a["curve.loss_curriculum"]) == EPOCHS
        if a["family"] == "focal":
            assert "focal.gamma" in t.params and "dynamic.w_balance" not in t.params
    assert "tiny: 4 designs, 4 trainings" in output and "[baseline]" in output


def test_search_again_resumes_and_adds_trials(finished, tmp_path):
    path, url, _ = finished
    url = copy_db(url, tmp_path)
    before = optuna.load_study(study_name="tiny", storage=url).trials
    result = invoke("search", path, "--storage", url, "--n-trials", "2")
    assert result.exit_code == 0, result.output
    assert "(so far: 4 designs, 4 trainings)" in result.output.splitlines()[0]
    after = optuna.load_study(study_name="tiny", storage=url).trials
    # Two new designs; a proposal that repeats a known design trains nothing and does not count.
    assert len([t for t in after[4:] if "duplicate_of" not in t.user_attrs]) == 2
    assert [t.params for t in after[:4]] == [t.params for t in before]
    assert [t.value for t in after[:4]] == [t.value for t in before]
    assert not any("baseline" in t.user_attrs for t in after[4:])  # not enqueued twice


def test_show_studies_and_export_then_load_loss(finished, tmp_path):
    _, url, _ = finished
    shown = invoke("show", "tiny", "--storage", url, "--top", "2")
    assert shown.exit_code == 0 and "macro_f1" in shown.output
    listed = invoke("studies", "--storage", url)
    assert listed.exit_code == 0 and "tiny" in listed.output
    out = tmp_path / "best_loss.json"
    exported = invoke("export", "tiny", "--storage", url, "-o", out)
    assert exported.exit_code == 0, exported.output
    payload = json.loads(out.read_text())
    study = optuna.load_study(study_name="tiny", storage=url)
    # Single-seed: the winner is a design with the best value (ties broken by the design).
    assert payload["mean"] == study.best_value and payload["seeds"] == 1
    assert payload["loss"] == json.loads(study.trials[payload["trial"]].user_attrs["loss"])
    assert payload["verdict"]["significant"] is False

    import keras
    import numpy as np

    from losstune.losses import load_loss

    loss = load_loss(out)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss=loss)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(32) % 3]
    history = model.fit(x, y, epochs=2, verbose=0).history
    assert all(np.isfinite(history["loss"]))

    second = invoke("export", "tiny", "--storage", url, "--trial", "0", "-o", out)
    assert second.exit_code == 0 and json.loads(out.read_text())["trial"] == 0


def test_reading_a_missing_study_lists_the_existing_ones(finished):
    _, url, _ = finished
    result = CliRunner().invoke(main, ["show", "nope", "--storage", url])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: no study 'nope' in {url}; studies there: tiny"


def test_reading_commands_do_not_create_databases(tmp_path):
    db = tmp_path / "none.db"
    result = CliRunner().invoke(main, ["studies", "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 2 and "no database at" in result.output
    assert not db.exists()


def test_export_of_unknown_trial(finished, tmp_path):
    _, url, _ = finished
    result = CliRunner().invoke(main, ["export", "tiny", "--storage", url, "--trial", "99",
                                       "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "has no trial 99" in result.output


def test_validate_and_bad_file_through_cli(study_file, tmp_path):
    ok = invoke("validate", study_file)
    assert ok.exit_code == 0 and "OK" in ok.output
    plan = write_study(tmp_path, {"search": {"families": ["cross_entropy", "dynamic"],
                                             "focal": None}}, name="plan.toml")
    lines = invoke("validate", plan).output
    # The default focal baseline is listed as a baseline, not among the searched families.
    assert "families searched: cross_entropy, dynamic;" in lines
    assert "baselines: cross_entropy (label_smoothing=0.0), focal (gamma=2.0, alpha=0.25)" in lines
    assert "baseline-only families: focal" in lines
    bad = write_study(tmp_path, {"search": {"families": ["huber"]}}, name="bad.toml")
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "search.families[0]" in result.output


def test_regression_and_multi_objective_studies(tmp_path):
    reg = write_study(tmp_path, {"name": "reg", "task": "regression",
                                 "dataset": {"name": "diabetes"},
                                 "objective": {"metric": "mae"}, "n_trials": 3,
                                 "search": {"families": ["mse", "huber"], "focal": None}},
                      name="reg.toml")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert invoke("search", reg, "--storage", url).exit_code == 0
    study = optuna.load_study(study_name="reg", storage=url)
    assert [t.user_attrs["family"] for t in study.trials[:2]] == ["mse", "huber"]
    assert json.loads(study.trials[1].user_attrs["loss"])["params"]["delta"] == 1.0
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert all(20 < t.value < 200 for t in trained)  # MAE in the target's own units
    targets = study.user_attrs["val_targets"]
    for t in trained:  # the stored predictions are the ones the objective was scored on
        pred = t.user_attrs["val.pred"]
        assert len(pred) == len(targets)
        mae = sum(abs(p - y) for p, y in zip(pred, targets)) / len(targets)
        assert mae == pytest.approx(t.value, rel=1e-3)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE

    multi = write_study(tmp_path, {"name": "multi", "n_trials": 3,
                                   "objective": {"metric": ["macro_f1", "train_time"]}},
                        name="multi.toml")
    assert invoke("search", multi, "--storage", url).exit_code == 0
    study = optuna.load_study(study_name="multi", storage=url)
    assert study.metric_names == ["macro_f1", "train_time"]
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert all(len(t.values) == 2 and t.values[1] > 0 for t in trained)
    for t in trained:  # training time without the first epoch's one-off compilation
        assert t.values[1] == pytest.approx(t.user_attrs["epoch_time_s"] * EPOCHS, rel=1e-3)
        assert t.values[1] < t.user_attrs["train_time_s"]


def test_broken_model_factory_fails_trials_then_stops_with_summary(tmp_path):
    (tmp_path / "brokenmodels.py").write_text(
        "def build(input_shape, output_units):\n    raise RuntimeError('factory is broken')\n")
    path = write_study(tmp_path, {"name": "broken", "n_trials": 10,
                                  "model": {"kind": "factory",
                                            "factory": "brokenmodels:build"}})
    url = f"sqlite:///{tmp_path / 'b.db'}"
    result = CliRunner().invoke(main, ["search", str(path), "--storage", url])
    assert result.exit_code == 2
    assert ("stopped: all 3 trials of this run failed; first error: RuntimeError: "
            "factory is broken") in result.output
    study = optuna.load_study(study_name="broken", storage=url)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 3  # stopped instead of burning all 10
    assert failed[0].user_attrs["error"] == "RuntimeError: factory is broken"


def test_a_run_whose_every_trial_failed_is_an_error_however_short(tmp_path):
    """One trial, failed: not a normal exit (nor a normal return from losstune.search())."""
    (tmp_path / "brokenone.py").write_text(
        "def build(input_shape, output_units):\n    raise ValueError('no model today')\n")
    path = write_study(tmp_path, {"name": "one", "n_trials": 1, "baselines": False,
                                  "racing": False,
                                  "model": {"kind": "factory", "factory": "brokenone:build"}})
    result = CliRunner().invoke(main, ["search", str(path), "--storage",
                                       f"sqlite:///{tmp_path / 'o.db'}"])
    assert result.exit_code == 2
    assert result.output.strip().endswith(
        "Error: all 1 trial of this run failed; first error: ValueError: no model today")


def test_user_model_factory_is_used(tmp_path):
    (tmp_path / "mymodels.py").write_text(
        "import keras\n"
        "def build(input_shape, output_units):\n"
        "    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(8, "
        "activation='relu'), keras.layers.Dense(output_units)], name='mine')\n")
    path = write_study(tmp_path, {"name": "mine", "n_trials": 2,
                                  "model": {"kind": "factory", "factory": "mymodels:build"}})
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert invoke("search", path, "--storage", url).exit_code == 0
    study = optuna.load_study(study_name="mine", storage=url)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # The factory gone: every confirmation run fails, and confirm says so instead of printing
    # an empty success.
    (tmp_path / "mymodels.py").unlink()
    import sys

    sys.modules.pop("mymodels", None)
    result = CliRunner().invoke(main, ["confirm", "mine", "--storage", url, "--seeds", "2"])
    assert result.exit_code == 2, result.output
    assert "confirmation runs failed" in result.output and "mymodels" in result.output


def test_a_factory_that_exits_or_returns_the_wrong_outputs_fails_its_trials(tmp_path):
    (tmp_path / "badmodels.py").write_text(
        "import sys\n"
        "import keras\n"
        "def leaves(input_shape, output_units):\n"
        "    sys.exit(3)\n"
        "def wrong(input_shape, output_units):\n"
        "    return keras.Sequential([keras.Input(input_shape), "
        "keras.layers.Dense(output_units + 2)])\n")
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    for name, words in (("leaves", "sys.exit(3)"), ("wrong", "returned outputs of shape")):
        path = write_study(tmp_path, {"name": name, "n_trials": 3,
                                      "model": {"kind": "factory", "factory": f"badmodels:{name}"}},
                           name=f"{name}.toml")
        result = CliRunner().invoke(main, ["search", str(path), "--storage", url])
        assert result.exit_code == 2, result.output
        assert words in result.output.strip().splitlines()[-1]
        study = optuna.load_study(study_name=name, storage=url)
        assert {t.state.name for t in study.trials} == {"FAIL"}  # none left RUNNING
        assert all(words in t.user_attrs["error"] for t in study.trials)


def test_installed_entry_point_is_fast_and_errors_cleanly(tmp_path):
    exe = Path(sys.executable).parent / "losstune"
    start = time.perf_counter()
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0 and "search" in proc.stdout and "export" in proc.stdout
    assert elapsed < 5  # generous for a loaded machine; benchmarks/ measures it properly
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, losstune.cli; "
         "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'optuna', 'plotly')))"],
        capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "False"
    bad = write_study(tmp_path, {"training": {"epochs": 0}})
    proc = subprocess.run([exe, "validate", bad], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"Error: {bad}: training.epochs: epochs must lie in "
                                   "[1, inf), got 0")
    debug = subprocess.run([exe, "--debug", "validate", bad], capture_output=True, text=True,
                           timeout=60)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_examples_validate_through_the_cli():
    for path in sorted((ROOT / "studies").glob("*.toml")):
        result = invoke("validate", path)
        assert result.exit_code == 0, result.output


LONG = ("DynamicLoss, base categorical_crossentropy, w_balance = 0.522, w_curriculum = 0.285, "
        "schedule cosine(start=0, end=0.0264, warmup=0)")


def _console(width):
    import io

    from rich.console import Console

    return Console(width=width, record=True, file=io.StringIO(), highlight=False)


@pytest.mark.parametrize("width", [80, 120])
def test_the_verdict_table_keeps_every_design_whole_at_80_and_120_columns(width):
    """At 80 columns the design column shrank to nothing (the quick start in a default
    terminal): the design wraps in its column, and nothing is cut."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    from losstune import results
    from losstune.cli import print_verdict

    study = optuna.create_study(study_name="narrow", direction="maximize")
    dist = {"loss": CategoricalDistribution(["dynamic", "cross_entropy"])}
    for i, (words, value, baseline) in enumerate([(LONG, 0.9, None), (LONG, 0.91, None),
                                                  ("cross-entropy", 0.8, "ce"),
                                                  ("cross-entropy", 0.82, "ce")]):
        study.add_trial(create_trial(value=value, params={"loss": "dynamic"}, distributions=dist,
                                     user_attrs={"loss_words": words, "design_key": words,
                                                 "seed_index": i % 2, "baseline": baseline}))
    verdict = results.verdict("narrow", "macro_f1", True, results.records(study.trials))
    console = _console(width)
    print_verdict(study, verdict, 10, console)
    text = console.export_text()
    table = text.split("Verdict:")[0]
    assert max(len(line) for line in table.splitlines()) <= width
    assert "…" not in table
    cells = " ".join(line.split("│")[2] for line in table.splitlines() if line.count("│") > 3)
    assert " ".join(cells.split()).startswith(LONG)  # whole, in reading order
    assert "2 designs, 4 trainings" in text.splitlines()[0]
    assert ("trials" in table) == (width >= 110)  # the trial numbers only where there is room


@pytest.mark.parametrize("width", [80, 120])
def test_the_progress_line_keeps_its_counts_and_the_best_design(finished, width):
    from losstune import results
    from losstune.cli import _progress
    from losstune.storage import open_storage

    _, url, _ = finished
    storage = open_storage(url, heartbeat=False, create=False)
    study = optuna.load_study(study_name="tiny", storage=storage)
    console = _console(width)
    bar = _progress(console, 4, study, storage)
    bar.already = 0
    with bar:
        pass
    lines = console.export_text().splitlines()
    at = max(i for i, ln in enumerate(lines) if "new designs" in ln)
    assert "4/4" in lines[at] and all(len(ln) <= width for ln in lines), lines
    info = " ".join(" ".join(lines[at + 1:]).split())  # the line under the bar, wrapped
    assert info.startswith("4 designs, 4 trainings"), info
    winner = results.verdict("tiny", "macro_f1", True, results.records(study.trials)).winner
    assert info.endswith(" ".join(f" · best {winner.mean:.4f}/1 seed ({winner.words})".split()))


def test_the_progress_shows_the_epoch_of_the_training_under_way(monkeypatch):
    """A long training (an absurd epoch count) was a silent bar for minutes: the training
    callbacks say their epoch, and the display shows it when it redraws."""
    import io

    from rich.console import Console

    from losstune import activity
    from losstune.cli import _InfoProgress

    activity.clear()
    assert activity.describe() == ""
    clock = iter([100.0])
    monkeypatch.setattr(activity.time, "perf_counter", lambda: next(clock, 104.0))
    activity.epoch(8, 0, 1000)
    activity.epoch(8, 2, 1000)
    assert activity.describe() == "training 8 designs together: epoch 3 of 1000, 2 s per epoch"
    console = Console(width=80, record=True, file=io.StringIO())
    with _InfoProgress(console=console) as progress:
        progress.add_task("search", total=4)
    assert "training 8 designs together: epoch 3 of 1000" in console.export_text()
    activity.clear()
    assert activity.describe() == ""


def test_no_more_workers_than_new_designs_start(finished, tmp_path):
    """`--workers 1000` for 2 designs started 450 processes on a 2-core machine."""
    path, url, _ = finished
    url = copy_db(url, tmp_path)
    result = invoke("search", path, "--storage", url, "--n-trials", "1", "--workers", "3")
    assert result.exit_code == 0, result.output
    assert "note: 3 workers for 1 new design: 1 start" in result.output
