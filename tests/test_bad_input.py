"""Bad input, table-driven: one clear line, exit status 2, no traceback, the database untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from losstune.cli import main
from tests.conftest import copy_db, write_study

CSV_OK_HEADER = "f1,f2,label\n"


def dump(url: str) -> list[str]:
    with sqlite3.connect(url[len("sqlite:///"):]) as conn:
        return list(conn.iterdump())


def _csv(folder: Path, text: str) -> dict:
    (folder / "data.csv").write_text(text)
    return {"dataset": {"name": "csv", "path": "data.csv", "target": "label"},
            "task": "binary"}


# (id, how to make the study file or the command, fragment of the one-line message)
CASES = [
    ("toml-syntax", lambda d: (d / "s.toml").write_text("name = 'x\n") and None, "TOML syntax error"),
    ("unknown-key", {"epochz": 3}, "epochz: unknown key; allowed: name, task"),
    ("unknown-nested-key", {"training": {"epoch": 3}},
     "training.epoch: unknown key; allowed: epochs, batch_size"),
    ("wrong-type-int", {"n_trials": "ten"}, "n_trials: must be a valid integer"),
    ("wrong-type-float", {"training": {"learning_rate": "fast"}}, "training.learning_rate"),
    ("empty-choices", {"training": {"batch_size": {"choices": []}}}, "choices must not be empty"),
    ("steps-per-execution", {"training": {"steps_per_execution": 0}},
     "training.steps_per_execution: steps_per_execution must be an int >= 1 or 'auto', got 0"),
    ("steps-per-execution-on-torch",
     {"env": {"KERAS_BACKEND": "torch"}, "training": {"steps_per_execution": 8}},
     "training.steps_per_execution: the torch backend runs 1 step per execution; use 1 or "
     "'auto', got 8"),
    ("reuse-compiled-string", {"training": {"reuse_compiled": "yes"}},
     "training.reuse_compiled: must be a valid boolean, got 'yes'"),
    ("jit-compile-string", {"training": {"jit_compile": "yes"}},
     "training.jit_compile: jit_compile must be true, false or 'auto', got 'yes'"),
    ("inverted-range", {"search": {"focal": {"gamma": {"low": 3.0, "high": 1.0}}}},
     "search.focal.gamma: low must be <= high, got low=3.0, high=1.0 (inverted range)"),
    ("log-range-at-zero", {"training": {"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}},
     "a log range needs low > 0"),
    ("unknown-family", {"search": {"families": ["hinge"]}},
     "search.families[0]: unknown loss family 'hinge'; allowed: cross_entropy, focal"),
    ("family-wrong-task", {"search": {"families": ["huber"]}},
     "family 'huber' is not valid for a multiclass task"),
    ("unknown-metric", {"objective": {"metric": "f1"}},
     "objective.metric: unknown metric 'f1' for a multiclass task; allowed: macro_f1"),
    ("metric-wrong-task", {"objective": {"metric": "rmse"}}, "unknown metric 'rmse'"),
    ("zero-epochs", {"training": {"epochs": 0}}, "training.epochs: epochs must lie in [1, inf)"),
    ("negative-epochs", {"training": {"epochs": -3}}, "training.epochs"),
    ("negative-gamma", {"search": {"focal": {"gamma": {"low": -1.0, "high": 1.0}}}},
     "gamma must lie in [0, inf)"),
    ("dataset-task-mismatch", {"dataset": {"name": "diabetes"}},
     "task: dataset 'diabetes' is a regression task"),
    ("missing-data-file", {"dataset": {"name": "csv", "path": "nope.csv", "target": "y"},
                           "task": "binary"}, "dataset.path: file not found"),
    ("csv-missing-target", lambda d: _csv(d, "f1,f2,y\n1,2,a\n3,4,b\n"),
     "column 'label' not found; columns: f1, f2, y"),
    ("csv-non-numeric", lambda d: _csv(d, CSV_OK_HEADER + "1,2,a\nx,4,b\n"),
     "feature column 'f1' is not numeric (row 3: 'x')"),
    ("csv-nan", lambda d: _csv(d, CSV_OK_HEADER + "1,2,a\nnan,4,b\n"),
     "1 row(s) have missing or NaN features"),
    ("csv-single-class", lambda d: _csv(d, CSV_OK_HEADER + "1,2,a\n3,4,a\n5,6,a\n"),
     "the target has a single class ('a')"),
    ("factory-without-function", {"model": {"kind": "factory", "factory": "mymodels"}},
     "model: kind = 'factory' needs factory = 'package.module:function'"),
    ("cmaes-multi-objective", {"objective": {"metric": ["macro_f1", "train_time"]},
                               "sampler": {"name": "cmaes"}}, "'cmaes' is single-objective"),
    ("no-budget", {"n_trials": None}, "n_trials: give n_trials, timeout or both"),
    ("unreachable-postgres", {"storage": "postgresql://postgres:s3cret@127.0.0.1:1/none"},
     "storage postgresql+psycopg://postgres:***@127.0.0.1:1/none: cannot connect"),
    ("not-a-sqlite-file", lambda d: (d / "notes.db").write_text("hello\n" * 10) and
     {"storage": f"sqlite:///{d / 'notes.db'}"}, "notes.db is not a SQLite database"),
    ("sqlite-folder-missing", lambda d: {"storage": f"sqlite:///{d / 'no' / 'x.db'}"},
     "does not exist"),
    ("unsupported-scheme", {"storage": "redis://127.0.0.1:6379/0"}, "unsupported URL"),
    ("existing-study-other-direction", {"objective": {"metric": "log_loss"}, "storage": "EXISTING"},
     "study 'tiny' in sqlite:///"),
    ("existing-study-other-objective", {"objective": {"metric": "balanced_accuracy"},
                                        "storage": "EXISTING"}, "the file asks for"),
    ("bad-heartbeat-setting", {"storage": "EXISTING", "env": {"LOSSTUNE_GRACE_PERIOD": "soon"}},
     "LOSSTUNE_GRACE_PERIOD must be a whole number of seconds, got 'soon'"),
]


@pytest.mark.parametrize("case_id, make, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(finished, tmp_path, monkeypatch, case_id, make, fragment):
    existing = copy_db(finished[1], tmp_path)
    before = dump(existing)
    changes = make(tmp_path) if callable(make) else dict(make)
    env = {}
    if changes is not None:
        changes = dict(changes)
        env = changes.pop("env", {})
        if changes.get("storage") == "EXISTING":
            changes.pop("storage")
        study = write_study(tmp_path, changes, name="s.toml")
    else:
        study = tmp_path / "s.toml"
    storage = changes.get("storage") if changes else None
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["search", str(study),
                                       "--storage", storage or existing])
    output = result.output.strip()
    assert result.exit_code == 2, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert output.startswith("Error: ") and fragment in output, output
    assert "s3cret" not in output
    assert dump(existing) == before  # nothing stored was changed


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def test_usage_errors_also_exit_2(study_file):
    result = CliRunner().invoke(main, ["search", str(study_file), "--n-trials", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
