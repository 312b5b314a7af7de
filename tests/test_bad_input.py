"""Bad input, table-driven: one line on stderr, exit status 2, no traceback, nothing changed.

Every case runs through ``losstune search`` against a copy of a finished study's database (and,
where ``validate`` can see the problem, through ``losstune validate`` first, with the same line):
the database must keep the same trials and the same dump, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from losstune.cli import main
from tests.conftest import copy_db, write_study

CSV_OK_HEADER = "f1,f2,label\n"
GOOD_CSV = CSV_OK_HEADER + "".join(f"{i % 7},{i % 5},{'ab'[i % 2]}\n" for i in range(40))
NAN, INF = float("nan"), float("inf")
# Which commands see a case: validate (the study file, a csv header, an npz's array names) and
# search, or search only (data rows, storage, backend, options).
BOTH, SEARCH = ("validate", "search"), ("search",)


def db_state(url: str) -> tuple[int, str]:
    """The trial count and a hash of the whole dump of a SQLite study database."""
    with sqlite3.connect(url[len("sqlite:///"):]) as conn:
        trials = conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        digest = hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    return trials, digest


def _csv(folder: Path, text: str | bytes, **dataset) -> dict:
    path = folder / "data.csv"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return {"dataset": {"name": "csv", "path": "data.csv", "target": "label", **dataset},
            "task": "binary"}


def _npz(folder: Path, **arrays) -> dict:
    np.savez(folder / "data.npz", **arrays)
    return {"dataset": {"name": "npz", "path": "data.npz", "target": "y"}, "task": "binary"}


# A style-transfer study (its own data and objectives) as a bad-input case's base.
STYLE = {"task": "style_transfer", "dataset": {"name": "sample_images"},
         "objective": {"metric": ["content_ssim", "style_distance"]},
         "search": {"families": ["gatys"], "cross_entropy": None, "focal": None}}


def _image(folder: Path, name: str, side: int) -> Path:
    from PIL import Image

    path = folder / name
    Image.fromarray(np.full((side, side, 3), 128, "uint8")).save(path)
    return path


def _unreadable_csv(folder: Path) -> dict:
    """A data file whose reading fails. chmod 000 does not stop root (the tests may run as
    root): there, /proc/self/mem, a regular file whose first bytes no process can read (EIO)."""
    path = folder / "data.csv"
    path.write_text(GOOD_CSV)
    path.chmod(0)
    if os.access(path, os.R_OK):
        path = Path("/proc/self/mem")
        if not path.is_file():
            pytest.skip("running as root and no /proc/self/mem: no file root cannot read")
    return {"dataset": {"name": "csv", "path": str(path), "target": "label"}, "task": "binary"}


def _fresh_storage(folder: Path, changes: dict) -> dict:
    """The case's changes with a storage that does not exist yet: it must not be created."""
    db = folder / "fresh.db"

    def after() -> None:
        assert not db.exists() and not list(folder.glob("fresh.db*"))

    return {**changes, "storage": f"sqlite:///{db}", "after": after}


def _symlink(folder: Path, dangling: bool) -> dict:
    target = folder / "elsewhere.json"
    if not dangling:
        target.write_text("keep me\n")
    (folder / "link.json").symlink_to(target)

    def after() -> None:  # the link's target neither created nor changed
        assert (target.read_text() == "keep me\n") if not dangling else not target.exists()

    return {"command": ["export", "tiny", "-o", str(folder / "link.json")], "after": after}


# (id, changes to the tiny study or how to make the case, fragment of the one-line message,
#  the commands that must refuse it; "export" cases give their command line in "command").
#  A callable gets the test's folder and returns the changes
#  (None: it wrote s.toml itself). Keys besides the study's: "env" (environment variables),
#  "args" (more search options), "command" (another command, run with --storage), "after" (a
#  check once the commands ran); storage "EXISTING" is the finished study's database copy.
CASES = [
    ("toml-syntax", lambda d: (d / "s.toml").write_text("name = 'x\n") and None,
     "TOML syntax error", BOTH),
    ("unknown-key", {"epochz": 3}, "epochz: unknown key; allowed: name, task", BOTH),
    ("unknown-nested-key", {"training": {"epoch": 3}},
     "training.epoch: unknown key; allowed: epochs, batch_size", BOTH),
    ("unknown-key-in-racing", {"racing": {"seeds": 3}},
     "racing.seeds: unknown key; allowed: max_seeds, alpha, test_seeds", BOTH),
    ("wrong-type-int", {"n_trials": "ten"}, "n_trials: must be a valid integer", BOTH),
    ("wrong-type-float", {"training": {"learning_rate": "fast"}}, "training.learning_rate", BOTH),
    # TOML is typed: a number in quotes, or true, is not a number (pydantic's lax mode took both)
    ("number-in-quotes", {"n_trials": "16"}, "n_trials: must be a valid integer, got '16'", BOTH),
    ("boolean-as-number", {"training": {"epochs": True}},
     "training.epochs: must be a valid integer, got True", BOTH),
    ("nested-too-deep",
     lambda d: (d / "s.toml").write_text("name = 'x'\na = " + "[" * 3000 + "]" * 3000) and None,
     "s.toml: values nested too deeply", BOTH),
    ("a-fifo", lambda d: os.mkfifo(d / "s.toml"), "s.toml: not a regular file", BOTH),
    ("companion-study-name", {"name": "tiny:runs"},
     "name: names ending in ':runs' are kept for the replicate runs of the study before it",
     BOTH),
    ("empty-choices", {"training": {"batch_size": {"choices": []}}}, "choices must not be empty",
     BOTH),
    ("steps-per-execution", {"training": {"steps_per_execution": 0}},
     "training.steps_per_execution: steps_per_execution must be an int >= 1 or 'auto', got 0",
     BOTH),
    ("steps-per-execution-on-torch",
     {"env": {"KERAS_BACKEND": "torch"}, "training": {"steps_per_execution": 8}},
     "training.steps_per_execution: the torch backend runs 1 step per execution; use 1 or "
     "'auto', got 8", SEARCH),
    ("reuse-compiled-string", {"training": {"reuse_compiled": "yes"}},
     "training.reuse_compiled: must be a valid boolean, got 'yes'", BOTH),
    ("jit-compile-string", {"training": {"jit_compile": "yes"}},
     "training.jit_compile: jit_compile must be true, false or 'auto', got 'yes'", BOTH),
    ("inverted-range", {"search": {"focal": {"gamma": {"low": 3.0, "high": 1.0}}}},
     "search.focal.gamma: low must be <= high, got low=3.0, high=1.0 (inverted range)", BOTH),
    ("log-range-at-zero", {"training": {"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}},
     "a log range needs low > 0", BOTH),
    ("unknown-family", {"search": {"families": ["squared_hinge"]}},
     "search.families[0]: unknown loss family 'squared_hinge'; allowed: cross_entropy, focal", BOTH),
    ("family-wrong-task", {"search": {"families": ["huber"]}},
     "family 'huber' is not valid for a multiclass task", BOTH),
    ("unknown-metric", {"objective": {"metric": "f1"}},
     "objective.metric: unknown metric 'f1' for a multiclass task; allowed: macro_f1", BOTH),
    ("metric-wrong-task", {"objective": {"metric": "rmse"}}, "unknown metric 'rmse'", BOTH),
    ("zero-epochs", {"training": {"epochs": 0}}, "training.epochs: epochs must lie in [1, inf)",
     BOTH),
    ("negative-epochs", {"training": {"epochs": -3}}, "training.epochs", BOTH),
    ("fractional-epochs-choice", {"training": {"epochs": {"choices": [2, 2.5]}}},
     "training.epochs: epochs must be a whole number, got 2.5", BOTH),
    ("negative-gamma", {"search": {"focal": {"gamma": {"low": -1.0, "high": 1.0}}}},
     "gamma must lie in [0, inf)", BOTH),
    ("zero-huber-delta", {"task": "regression", "dataset": {"name": "diabetes"},
                          "objective": {"metric": "mae"},
                          "search": {"families": ["huber"], "huber": {"delta": 0.0}}},
     "search.huber.delta: delta must lie in (0, inf), got 0", BOTH),
    # Seeds: racing trains seed + 1000 * i for up to 100 seed indices, all 32-bit seeds.
    ("negative-seed", {"seed": -1}, "seed: seed must be a whole number in [0, 2147283647]", BOTH),
    ("seed-without-room-for-racing", {"seed": 2**31 - 200_000},
     "seed: seed must be a whole number in [0, 2147283647]", BOTH),
    ("negative-sampler-seed", {"sampler": {"seed": -1}},
     "sampler.seed: seed must be a whole number in [0, 2147283647]", BOTH),
    ("boolean-seed", {"seed": True}, "seed: seed must be a whole number", BOTH),
    ("too-many-trials", {"n_trials": 10**9}, "n_trials: must lie in [1, 1000000], got "
     "1000000000", BOTH),
    ("control-character-in-name", {"name": "tiny\nnext"},
     "name: name must be printable text (no line breaks", BOTH),
    # nan and inf (TOML literals) wherever a number is read.
    ("nan-learning-rate", {"training": {"learning_rate": NAN}},
     "training.learning_rate: must be a finite number, got nan", BOTH),
    ("inf-learning-rate-range", {"training": {"learning_rate": {"low": 1e-3, "high": INF}}},
     "training.learning_rate.high: must be a finite number, got inf", BOTH),
    ("nan-among-choices", {"training": {"batch_size": {"choices": [16, NAN]}}},
     "training.batch_size.choices[1]: must be a finite number, got nan", BOTH),
    ("nan-fixed-family-param", {"search": {"focal": {"gamma": NAN}}},
     "search.focal.gamma: must be a finite number, got nan", BOTH),
    ("inf-long-tail", {"dataset": {"long_tail": INF}},
     "dataset.long_tail: must be a finite number, got inf", BOTH),
    ("nan-validation-fraction", {"dataset": {"validation": NAN}},
     "dataset.validation: must be a finite number, got nan", BOTH),
    ("inf-outlier-scale", {"task": "regression", "objective": {"metric": "mae"}, "search": None,
                           "dataset": {"name": "diabetes", "outliers": 0.1,
                                       "outlier_scale": INF}},
     "dataset.outlier_scale: must be a finite number, got inf", BOTH),
    ("inf-timeout", {"timeout": INF}, "timeout: must be a finite number, got inf", BOTH),
    ("one-fresh-seed", {"racing": {"test_seeds": 1}},
     "racing.test_seeds: test_seeds must be 0 (test on the racing seeds) or at least 2, got 1",
     BOTH),
    ("nan-racing-alpha", {"racing": {"alpha": NAN}},
     "racing.alpha: must be a finite number, got nan", BOTH),
    ("nan-schedule-end", {"search": {"schedule": {"end": NAN}}},
     "search.schedule.end: must be a finite number, got nan", BOTH),
    ("nan-baseline-param", {"baselines": [{"family": "focal", "params": {"gamma": NAN}}]},
     "baselines[0].params.gamma: must be a finite number, got nan", BOTH),
    # Baselines: the search space's intervals and types.
    ("negative-baseline-gamma", {"baselines": [{"family": "focal", "params": {"gamma": -1.0}}]},
     "baselines[0].params.gamma: gamma must lie in [0, inf), got -1", BOTH),
    ("string-baseline-gamma", {"baselines": [{"family": "focal", "params": {"gamma": "big"}}]},
     "baselines[0].params.gamma: gamma must be a number", BOTH),
    ("baseline-alpha-above-1", {"baselines": [{"family": "focal", "params": {"alpha": 1.5}}]},
     "baselines[0].params.alpha: alpha must lie in [0, 1], got 1.5", BOTH),
    ("baseline-unknown-base", {"baselines": [{"family": "dynamic", "params": {"base": "huber"}}]},
     "baselines[0].params.base: base 'huber' is not valid for a multiclass task", BOTH),
    # Choices: every member checked like a fixed value.
    ("unknown-optimizer", {"training": {"optimizer": "lion"}},
     "training.optimizer: must be 'adam', 'adamw', 'sgd' or 'rmsprop'", BOTH),
    ("unknown-optimizer-among-choices", {"training": {"optimizer": {"choices": ["adam", "lion"]}}},
     "training.optimizer: optimizer choices must be among 'adam', 'adamw', 'sgd', 'rmsprop', "
     "got 'lion'", BOTH),
    ("string-among-numeric-choices", {"training": {"learning_rate": {"choices": [1e-3, "fast"]}}},
     "training.learning_rate: learning_rate must be a number", BOTH),
    ("boolean-among-family-choices", {"search": {"focal": {"alpha": {"choices": [0.5, True]}}}},
     "search.focal.alpha: alpha must be a number, a range table or {choices = [...]} of numbers, "
     "got True", BOTH),
    ("unknown-base-among-choices",
     {"search": {"dynamic": {"base": {"choices": ["categorical_crossentropy", "dice"]}}}},
     "search.dynamic.base: base 'dice' is not valid for a multiclass task", BOTH),
    ("unknown-prior-among-choices", {"search": {"dynamic": {"prior": {"choices": ["uniform",
                                                                                 "flat"]}}}},
     "search.dynamic.prior: prior 'flat' is not valid; allowed: uniform, train", BOTH),
    ("unknown-schedule", {"search": {"schedule": {"names": ["linear", "zigzag"]}}},
     "unknown schedule 'zigzag'", BOTH),
    ("string-schedule-start", {"search": {"schedule": {"start": "low"}}},
     "search.schedule.start: start must be a number", BOTH),
    ("negative-milestone", {"search": {"schedule": {"milestones": [2, -1]}}},
     "search.schedule.milestones: milestones must be epochs >= 0", BOTH),
    ("overflowing-sigmoid", {"search": {"schedule": {"steepness": 1000.0}}},
     "search.schedule.steepness: steepness must lie in [1e-6, 500], got 1000", BOTH),
    ("dataset-task-mismatch", {"dataset": {"name": "diabetes"}},
     "task: dataset 'diabetes' is a regression dataset", BOTH),
    # Data: built-in datasets take no columns; user files are checked.
    ("features-on-builtin-dataset", {"dataset": {"features": ["alcohol"]}},
     "dataset.features: only for the csv and npz datasets; 'wine' is built in", BOTH),
    ("target-on-builtin-dataset", {"dataset": {"target": "class"}},
     "dataset.target: only for the csv and npz datasets", BOTH),
    ("missing-data-file", {"dataset": {"name": "csv", "path": "nope.csv", "target": "y"},
                           "task": "binary"}, "dataset.path: file not found", BOTH),
    ("data-path-is-a-folder", lambda d: (d / "data.csv").mkdir() or
     {"dataset": {"name": "csv", "path": "data.csv", "target": "label"}, "task": "binary"},
     "data.csv is a folder; give the csv file", BOTH),
    ("unreadable-data-file", _unreadable_csv, "cannot read the data file", BOTH),
    ("csv-missing-target", lambda d: _csv(d, "f1,f2,y\n1,2,a\n3,4,b\n"),
     "dataset.target: column 'label' not found; columns: f1, f2, y", BOTH),
    ("csv-missing-feature", lambda d: _csv(d, GOOD_CSV, features=["f1", "f3"]),
     "dataset.features[1]: column 'f3' not found; columns: f1, f2, label", BOTH),
    ("csv-target-as-feature", lambda d: _csv(d, GOOD_CSV, features=["f1", "label"]),
     "dataset.features[1]: 'label' is the target", BOTH),
    ("csv-empty-features", lambda d: _csv(d, GOOD_CSV, features=[]),
     "dataset.features: list at least one column", BOTH),
    ("csv-feature-listed-twice", lambda d: _csv(d, GOOD_CSV, features=["f1", "f2", "f1"]),
     "dataset.features[2]: 'f1' is listed twice", BOTH),
    ("csv-random-bytes", lambda d: _csv(d, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
     "data.csv: not a UTF-8 text CSV file", BOTH),
    ("csv-ragged-row", lambda d: _csv(d, GOOD_CSV + "1,2\n"),
     "data.csv: row 42 has 2 fields, the header has 3", SEARCH),
    ("csv-inf-feature", lambda d: _csv(d, CSV_OK_HEADER + "1,2,a\ninf,4,b\n"),
     "feature column 'f1' is not finite (row 3: 'inf')", SEARCH),
    ("csv-non-numeric", lambda d: _csv(d, CSV_OK_HEADER + "1,2,a\nx,4,b\n"),
     "feature column 'f1' is not numeric (row 3: 'x')", SEARCH),
    ("csv-nan", lambda d: _csv(d, CSV_OK_HEADER + "1,2,a\nnan,4,b\n"),
     "1 row(s) have missing or NaN features", SEARCH),
    ("csv-single-class", lambda d: _csv(d, CSV_OK_HEADER + "1,2,a\n3,4,a\n5,6,a\n"),
     "the target has a single class ('a')", SEARCH),
    ("csv-bad-row-into-a-new-storage",
     lambda d: _fresh_storage(d, _csv(d, GOOD_CSV + "1,2,a,extra\n")),
     "data.csv: row 42 has 4 fields, the header has 3", SEARCH),
    ("nan-into-a-new-storage",
     lambda d: _fresh_storage(d, {"training": {"learning_rate": NAN}}),
     "training.learning_rate: must be a finite number, got nan", BOTH),
    ("npz-missing-target", lambda d: _npz(d, x=np.ones((40, 2)), label=np.arange(40) % 2),
     "data.npz: dataset.target: array 'y' not found; arrays: x, label", BOTH),
    ("npz-missing-features", lambda d: _npz(d, features=np.ones((40, 2)), y=np.arange(40) % 2),
     "dataset.features: array 'x' not found (the features array when features is not set)",
     BOTH),
    ("npz-object-array", lambda d: _npz(d, x=np.array([{"a": 1}, None] * 20, dtype=object),
                                        y=np.arange(40) % 2),
     "data.npz: array 'x' holds Python objects (dtype=object)", SEARCH),
    ("npz-scalar-features", lambda d: _npz(d, x=np.float64(3.0), y=np.arange(40) % 2),
     "data.npz: array 'x' is a single value (shape ())", SEARCH),
    ("npz-random-bytes", lambda d: (d / "data.npz").write_bytes(bytes(range(256)) * 4) and
     {"dataset": {"name": "npz", "path": "data.npz", "target": "y"}, "task": "binary"},
     "data.npz: not a readable NPZ file", BOTH),
    ("factory-without-function", {"model": {"kind": "factory", "factory": "mymodels"}},
     "model: kind = 'factory' needs factory = 'package.module:function'", BOTH),
    ("cmaes-multi-objective", {"objective": {"metric": ["macro_f1", "train_time"]},
                               "sampler": {"name": "cmaes"}}, "'cmaes' is single-objective",
     BOTH),
    ("no-budget", {"n_trials": None}, "n_trials: give n_trials, timeout or both", BOTH),
    ("unreachable-postgres", {"storage": "postgresql://postgres:s3cret@127.0.0.1:1/none"},
     "storage postgresql+psycopg://postgres:***@127.0.0.1:1/none: cannot connect", SEARCH),
    ("not-a-sqlite-file", lambda d: (d / "notes.db").write_text("hello\n" * 10) and
     {"storage": f"sqlite:///{d / 'notes.db'}"}, "notes.db is not a SQLite database", SEARCH),
    ("sqlite-folder-missing", lambda d: {"storage": f"sqlite:///{d / 'no' / 'x.db'}"},
     "does not exist", SEARCH),
    ("unsupported-scheme", {"storage": "redis://127.0.0.1:6379/0"}, "unsupported URL", SEARCH),
    ("existing-study-other-direction", {"objective": {"metric": "log_loss"},
                                        "storage": "EXISTING"}, "study 'tiny' in sqlite:///",
     SEARCH),
    ("existing-study-other-objective", {"objective": {"metric": "balanced_accuracy"},
                                        "storage": "EXISTING"}, "the file asks for", SEARCH),
    ("bad-heartbeat-setting", {"storage": "EXISTING", "env": {"LOSSTUNE_GRACE_PERIOD": "soon"}},
     "LOSSTUNE_GRACE_PERIOD must be a whole number of seconds, got 'soon'", SEARCH),
    # Options.
    ("gpus-not-a-list", {"args": ["--gpus", "x;rm,,"]},
     "Invalid value for '--gpus': 'x;rm,,' is not a list of GPU ids; give integers >= 0", SEARCH),
    ("gpus-negative", {"args": ["--workers", "2", "--gpus", "0,-1"]},
     "Invalid value for '--gpus': '0,-1' is not a list of GPU ids", SEARCH),
    ("gpus-empty-entry", {"args": ["--workers", "2", "--gpus", "0,,1"]},
     "'0,,1' is not a list of GPU ids", SEARCH),
    ("gpus-with-one-worker", {"args": ["--gpus", "0"]}, "--gpus pins worker processes", SEARCH),
    ("timeout-nan", {"args": ["--timeout", "nan"]}, "nan is not a number of seconds", SEARCH),
    ("timeout-inf", {"args": ["--timeout", "inf"]}, "inf is not a number of seconds", SEARCH),
    ("study-name-control-character", {"args": ["--study-name", "a\x1b[31mb"]},
     "a study name is 1 to 200 printable characters", SEARCH),
    ("confirm-too-many-seeds", {"command": ["confirm", "tiny", "--seeds", "101"]},
     "101 is not in the range 2<=x<=100", ("confirm",)),
    # Output files: export writes no file through a symbolic link, nor into a missing folder.
    ("export-into-missing-folder", lambda d: {"command": ["export", "tiny", "-o",
                                                          str(d / "no" / "such" / "b.json")]},
     os.path.join("no", "such") + " does not exist; create it first", ("export",)),
    ("export-through-symlink", lambda d: _symlink(d, dangling=False),
     "link.json: is a symbolic link; refusing to write through it", ("export",)),
    ("export-through-dangling-symlink", lambda d: _symlink(d, dangling=True),
     "link.json: is a symbolic link; refusing to write through it", ("export",)),
    # Tasks beyond classes and values (multilabel, count).
    ("family-not-for-multilabel", {"task": "multilabel", "dataset": {"name": "multilabel"},
                                   "search": {"families": ["focal"]}},
     "search.families[0]: family 'focal' is not valid for a multilabel task; allowed: "
     "binary_crossentropy, binary_focal, class_balanced_bce, sigmoid_soft_fbeta", BOTH),
    ("multilabel-one-target-column",
     lambda d: {**_csv(d, "f1,f2,a\n" + "1,2,0\n" * 20), "task": "multilabel",
                "search": {"families": ["binary_crossentropy"]}},
     "dataset.target: a multilabel task needs two or more label columns", BOTH),
    ("multilabel-npz-one-column",
     lambda d: {**_npz(d, x=np.ones((20, 2)), y=np.zeros(20)), "task": "multilabel",
                "search": {"families": ["binary_crossentropy"]}},
     "a multilabel task needs one 0/1 column per label, two or more; got a target of shape "
     "(20,)", SEARCH),
    ("multilabel-value-not-0-1",
     lambda d: {**_csv(d, "f1,a,b\n" + "1,0,1\n" * 10 + "2,1,2\n", target=["a", "b"]),
                "task": "multilabel", "search": {"families": ["binary_crossentropy"]}},
     "label values must be 0 or 1, got '2'", SEARCH),
    ("multilabel-npz-target-list",
     lambda d: {**_npz(d, x=np.ones((20, 2)), y=np.zeros((20, 2))), "task": "multilabel",
                "dataset": {"name": "npz", "path": "data.npz", "target": ["y", "z"]},
                "search": {"families": ["binary_crossentropy"]}},
     "dataset.target: an npz file's multilabel target is one array of shape (samples, labels)",
     BOTH),
    ("target-list-for-multiclass",
     lambda d: {**_csv(d, GOOD_CSV, target=["label", "f2"])},
     "dataset.target: a list of target columns is for the multilabel task (one column per label); a binary task has one", BOTH),
    ("label-noise-on-multilabel", {"task": "multilabel",
                                   "dataset": {"name": "multilabel", "label_noise": 0.1},
                                   "search": {"families": ["binary_crossentropy"]}},
     "dataset.label_noise: label_noise is for multiclass, binary and embedding tasks, not a multilabel task; it takes long_tail", BOTH),
    ("count-negative",
     lambda d: {**_csv(d, "f1,n\n" + "1,3\n" * 10 + "2,-1\n", target="n"), "task": "count",
                "objective": {"metric": "poisson_deviance"},
                "search": {"families": ["poisson"]}},
     "a count target must be whole numbers >= 0, got -1 (row 10)", SEARCH),
    ("count-metric-of-regression", {"task": "count", "dataset": {"name": "counts"},
                                    "objective": {"metric": "r2"},
                                    "search": {"families": ["poisson"]}},
     "unknown metric 'r2' for a count task; allowed: poisson_deviance, mae, rmse", BOTH),
    ("penalty-negative", {"search": {"penalty": {"l2_kernel": -0.1}}},
     "search.penalty.l2_kernel: l2_kernel must lie in [0, inf), got -0.1", BOTH),
    ("penalty-unknown", {"search": {"penalty": {"l2_bias": 0.1}}},
     "search.penalty.l2_bias: unknown key; allowed: l1_activity, l2_kernel", BOTH),
    ("penalty-on-a-factory-model",
     {"model": {"kind": "factory", "factory": "mymodels:build"},
      "search": {"penalty": {"l1_activity": True}}},
     "search.penalty: penalties are added to the built-in models (model.kind mlp or cnn)", BOTH),
    ("embedding-one-sample-per-class",
     {"task": "embedding", "dataset": {"name": "digits"}, "objective": {"metric": "knn_accuracy"},
      "training": {"samples_per_class": 1}, "search": {"families": ["triplet"]}},
     "training.samples_per_class: an embedding task needs >= 2 samples of a class per batch",
     BOTH),
    ("embedding-one-class-per-batch",
     {"task": "embedding", "dataset": {"name": "digits"}, "objective": {"metric": "knn_accuracy"},
      "training": {"batch_size": 6}, "search": {"families": ["triplet"]}},
     "training.batch_size: an embedding batch holds batch_size // samples_per_class classes "
     "and needs >= 2 (negatives): batch_size >= 8, got 6", BOTH),
    ("embedding-more-classes-per-batch-than-the-data-has",
     {"task": "embedding", "dataset": {"name": "digits"}, "objective": {"metric": "knn_accuracy"},
      "training": {"batch_size": 64}, "search": {"families": ["triplet"]}},
     "training.batch_size 64 with samples_per_class 4 asks for 16 classes per batch; the "
     "training split has 10: use batch_size <= 40", SEARCH),
    ("quadruplet-with-two-classes-per-batch",
     {"task": "embedding", "dataset": {"name": "digits"}, "objective": {"metric": "knn_accuracy"},
      "training": {"batch_size": 8}, "search": {"families": ["quadruplet"]}},
     "training.batch_size: the quadruplet loss needs >= 3 classes per batch: batch_size >= 12",
     BOTH),
    ("gan-family-in-a-multiclass-study", {"search": {"families": ["hinge"]}},
     "search.families[0]: family 'hinge' is not valid for a multiclass task", BOTH),
    ("classifier-metric-on-a-gan-study",
     {"task": "gan", "dataset": {"name": "digits"}, "objective": {"metric": "macro_f1"},
      "search": {"families": ["hinge"]}},
     "objective.metric: unknown metric 'macro_f1' for a gan task; allowed: kid, fd, "
     "precision, recall, class_coverage, class_kl", BOTH),
    ("gan-latent-size-zero",
     {"task": "gan", "dataset": {"name": "digits"}, "objective": {"metric": "kid"},
      "model": {"latent_dim": 0}, "search": {"families": ["hinge"]}},
     "model.latent_dim: must lie in [1, 4096], got 0", BOTH),
    ("gan-in-mixed-precision",
     {"task": "gan", "dataset": {"name": "digits"}, "objective": {"metric": "kid"},
      "training": {"mixed_precision": True}, "search": {"families": ["hinge"]}},
     "training.mixed_precision: a gan task trains in float32", BOTH),
    ("gan-with-xla",
     {"task": "gan", "dataset": {"name": "digits"}, "objective": {"metric": "kid"},
      "training": {"jit_compile": True}, "search": {"families": ["hinge"]}},
     "training.jit_compile: a gan task's train step runs without XLA", BOTH),
    ("gan-images-of-inconsistent-shape",
     lambda d: {**_npz(d, x=np.zeros((40, 8, 8)), y=np.arange(40) % 2), "task": "gan",
                "dataset": {"name": "npz", "path": "data.npz", "target": "y",
                            "image_shape": [6, 6]},
                "objective": {"metric": "kid"}, "search": {"families": ["hinge"]}},
     "data.npz: images of inconsistent shape: dataset.image_shape is [6, 6], the file's "
     "images are [8, 8]", SEARCH),
    ("gan-csv-images-of-inconsistent-shape",
     lambda d: {**_csv(d, CSV_OK_HEADER + "".join(f"{i % 7},{i % 5},{i % 2}\n"
                                                   for i in range(40)), image_shape=[2, 2]),
                "task": "gan", "objective": {"metric": "kid"},
                "search": {"families": ["hinge"]}},
     "data.csv: images of inconsistent shape: dataset.image_shape [2, 2, 1] needs 4 values "
     "a sample, the file has 2", SEARCH),
    ("two-image-arrays-in-one-npz",
     lambda d: {**_npz(d, a=np.zeros((40, 8, 8)), b=np.zeros((40, 4, 4)),
                       y=np.arange(40) % 2), "task": "gan",
                "dataset": {"name": "npz", "path": "data.npz", "target": "y",
                            "features": ["a", "b"], "image": True},
                "objective": {"metric": "kid"}, "search": {"families": ["hinge"]}},
     "images of inconsistent shape: the feature arrays (8, 8), (4, 4) hold more than one "
     "image array", SEARCH),
    ("image-shape-on-a-builtin-dataset", {"dataset": {"image_shape": [8, 8]}},
     "dataset.image_shape: only for the csv and npz datasets; 'wine' is built in", BOTH),
    ("cnn-on-a-flat-csv", lambda d: {**_csv(d, GOOD_CSV, image=True), "model": {"kind": "cnn"}},
     "dataset.image_shape: a csv file's rows are flat: give the images' shape", BOTH),
    ("style-family-in-a-multiclass-study", {"search": {"families": ["gatys"]}},
     "search.families[0]: family 'gatys' is not valid for a multiclass task", BOTH),
    ("style-image-missing",
     {**STYLE, "dataset": {"name": "images", "content": "nope.jpg", "style": "nope.png"}},
     "dataset.content: image not found: ", BOTH),
    ("style-image-unreadable",
     lambda d: (d / "c.jpg").write_text("not an image") and (d / "s.png").write_bytes(b"")
     or {**STYLE, "dataset": {"name": "images", "content": "c.jpg", "style": "s.png"}},
     "dataset.content: cannot read image ", SEARCH),
    ("style-image-below-the-receptive-field", lambda d: _image(d, "c.png", 20) and _image(
        d, "s.png", 64) and {**STYLE, "dataset": {"name": "images", "content": "c.png",
                                                  "style": "s.png"}},
     "the content image is 20 x 20 px at dataset.size = 96; the feature network's deepest "
     "block needs at least 32 px a side", SEARCH),
    ("style-vgg-weights-missing",
     {**STYLE, "model": {"features": "vgg19", "vgg_weights": "no/vgg19.h5"}},
     "model.vgg_weights: file not found: ", BOTH),
    ("normalisation-on-multiclass", {"model": {"normalization": "layer"}},
     "model.normalization: only for the gan task", BOTH),
    ("latent-size-on-multiclass", {"model": {"latent_dim": 8}},
     "model.latent_dim: only for the gan task (the generator's latent vectors), not a "
     "multiclass task", BOTH),
    ("samples-per-class-on-multiclass", {"training": {"samples_per_class": 4}},
     "training.samples_per_class: only for the embedding task", BOTH),
    ("embedding-dim-on-multiclass", {"model": {"embedding_dim": 8}},
     "model.embedding_dim: only for the autoencoder and embedding tasks (the embedding's or "
     "the code's width), not a multiclass task", BOTH),
    ("outliers-on-multiclass", {"dataset": {"outliers": 0.1}},
     "dataset.outliers: outliers is for regression tasks, not a multiclass task; it takes "
     "long_tail and label_noise", BOTH),
    ("long-tail-on-regression",
     {"task": "regression", "dataset": {"name": "diabetes", "long_tail": 10},
      "objective": {"metric": "mae"}, "search": {"families": ["huber"]}},
     "dataset.long_tail: long_tail is for multiclass, binary, multilabel and embedding tasks, "
     "not a regression task; it takes outliers", BOTH),
    ("family-not-for-embedding",
     {"task": "embedding", "dataset": {"name": "digits"}, "objective": {"metric": "knn_accuracy"},
      "search": {"families": ["cross_entropy"]}},
     "family 'cross_entropy' is not valid for an embedding task", BOTH),
    ("autoencoder-with-a-cnn",
     {"task": "autoencoder", "dataset": {"name": "digits", "image": True},
      "model": {"kind": "cnn"}, "objective": {"metric": "reconstruction_mse"},
      "search": {"families": ["reconstruction_mse"]}},
     "model.kind: an autoencoder task trains the built-in autoencoder", BOTH),
    ("denoise-on-multiclass", {"search": {"denoise": {"sigma": 0.1}}},
     "search.denoise: only for the autoencoder task (input noise: a denoising autoencoder), not a multiclass task", BOTH),
    ("beta-on-a-plain-autoencoder",
     {"task": "autoencoder", "dataset": {"name": "digits"},
      "objective": {"metric": "reconstruction_mse"},
      "search": {"families": ["reconstruction_mse"], "reconstruction_mse": {"beta": 1.0}}},
     "search.reconstruction_mse.beta: family 'reconstruction_mse' has no parameter 'beta'", BOTH),
    ("warm-up-without-a-vae",
     {"task": "autoencoder", "dataset": {"name": "digits"},
      "objective": {"metric": "reconstruction_mse"},
      "search": {"families": ["reconstruction_mse"], "schedule": {"names": ["linear"]}}},
     "search.schedule: a schedule (a curriculum, a β warm-up) is searched only for vae", BOTH),
    ("journal-on-a-device", {"storage": "journal:/dev/null"},
     "storage journal:/dev/null: /dev/null is not a regular file; a journal is a file", SEARCH),
    ("export-onto-a-folder", lambda d: (d / "out").mkdir() or {"command": ["export", "tiny",
                                                                           "-o", str(d / "out")]},
     "out: is a folder; give a file name", ("export",)),
]


def _check_one_line(result, fragment: str) -> str:
    """Exit status 2, exactly one line on stderr (nothing on stdout), no traceback."""
    stderr = result.stderr.strip()
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == "", result.output
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("Error: ") and fragment in stderr, stderr
    assert "s3cret" not in result.output
    return stderr


@pytest.mark.parametrize("case_id, make, fragment, commands", CASES, ids=[c[0] for c in CASES])
def test_bad_input(finished, tmp_path, monkeypatch, case_id, make, fragment, commands):
    existing = copy_db(finished[1], tmp_path)
    before = db_state(existing)
    made = make(tmp_path) if callable(make) else make
    changes = dict(made) if made is not None else {}
    env, args = changes.pop("env", {}), changes.pop("args", [])
    command, after = changes.pop("command", None), changes.pop("after", None)
    if changes.get("storage") == "EXISTING":
        changes.pop("storage")
    # None: the case wrote s.toml itself
    study = tmp_path / "s.toml" if made is None else write_study(tmp_path, changes, name="s.toml")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runs = [[*command, "--storage", existing]] if command else []
    if "validate" in commands:
        runs.append(["validate", str(study)])
    if "search" in commands:
        runs.append(["search", str(study), "--storage", changes.get("storage") or existing,
                     *args])
    lines = {_check_one_line(CliRunner().invoke(main, argv), fragment) for argv in runs}
    assert len(lines) == 1, lines  # validate and search say the same
    assert db_state(existing) == before  # nothing stored was changed
    if after:
        after()


def test_the_unchanged_study_and_data_pass_the_same_checks(tmp_path):
    """Each case above fails for its own change: the tiny study, and the same study on a good
    CSV file, validate (exit 0, nothing on stderr)."""
    for changes in ({}, _csv(tmp_path, GOOD_CSV, features=["f1", "f2"]),
                    _npz(tmp_path, x=np.ones((40, 2)), y=np.arange(40) % 2)):
        result = CliRunner().invoke(main, ["validate", str(write_study(tmp_path, changes))])
        assert result.exit_code == 0 and result.stderr == "", result.output
        assert ": OK — study 'tiny'" in result.stdout


def test_debug_shows_the_error_itself(tmp_path):
    study = write_study(tmp_path, {"seed": -1})
    result = CliRunner().invoke(main, ["--debug", "validate", str(study)])
    from losstune.errors import SpecError

    assert isinstance(result.exception, SpecError) and result.exception.key == "seed"


@pytest.mark.parametrize("argv, fragment", [
    (["search", "STUDY", "--n-trials", "0"], "Invalid value for '--n-trials'"),
    (["search"], "Missing argument 'STUDY_FILE'"),
    (["serach", "STUDY"], "No such command 'serach'"),
    (["show", "tiny", "--format", "yaml"], "'yaml' is not one of 'table', 'json'"),
    (["search", "STUDY", "--workers", "1000"], "1000 is not in the range 1<=x<=256"),
    (["search", "STUDY", "--study-name", "x:runs"],
     "names ending in ':runs' are kept for the replicate runs"),
])
def test_usage_errors_are_one_line_too(study_file, argv, fragment):
    argv = [str(study_file) if a == "STUDY" else a for a in argv]
    _check_one_line(CliRunner().invoke(main, argv), fragment)


def test_gpu_ids_are_normalised():
    from losstune.cli import _gpu_ids

    assert _gpu_ids(" 0, 1 ,00") == "0,1,0" and _gpu_ids("3") == "3" and _gpu_ids(None) is None


def test_output_path_helpers(tmp_path, monkeypatch):
    """The helpers export uses and report should use (losstune/paths.py)."""
    from losstune import paths
    from losstune.errors import LosstuneError
    from losstune.paths import (check_output_path, default_report_path, visible_name,
                                write_output)

    target = tmp_path / "real.html"
    target.write_text("keep")
    (tmp_path / "link.html").symlink_to(target)
    for bad, message in [(tmp_path / "link.html", "is a symbolic link"),
                         (tmp_path, "is a folder"),
                         (tmp_path / "no" / "r.html", "does not exist")]:
        with pytest.raises(LosstuneError, match=message):
            check_output_path(bad)
        with pytest.raises(LosstuneError, match=message):
            write_output(bad, "x")
    assert target.read_text() == "keep"
    # A link made after the check (a race): the rename replaces the link, never writes
    # through it.
    monkeypatch.setattr(paths, "check_output_path", lambda path, **kw: Path(path))
    write_output(tmp_path / "link.html", "x")
    assert target.read_text() == "keep" and not (tmp_path / "link.html").is_symlink()
    monkeypatch.undo()
    out = write_output(tmp_path / "new" / "r.html", "made", create_folder=True)
    assert out.read_text(encoding="utf-8") == "made"
    assert default_report_path(".hidden") == Path("reports") / "hidden.html"
    assert default_report_path("..") == Path("reports") / "study.html"
    assert visible_name("a b/c") == "a_b_c" and visible_name("tiny") == "tiny"
    # A study name of 200 two-byte letters: 400 bytes, over the file systems' 255.
    long = visible_name("é" * 200)
    assert len(long.encode()) <= 120 and long.startswith("éé") and long != visible_name("é" * 199)
    with pytest.raises(LosstuneError, match="the file name is 305 bytes; file systems take "
                                            "at most 255"):
        write_output(tmp_path / ("e" * 300 + ".json"), "x")


def test_a_full_disk_leaves_the_old_file_whole_and_no_temporary_file(tmp_path):
    """A write that runs out of room (RLIMIT_FSIZE stands for a full disk here) says so in
    one line and changes nothing: the file that was there keeps its content (it was left
    truncated or empty before)."""
    import subprocess
    import sys

    (tmp_path / "best_loss.json").write_text("the earlier export\n")
    code = ("import resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "from losstune.errors import LosstuneError\n"
            "from losstune.paths import write_output\n"
            "try:\n"
            "    write_output('best_loss.json', 'x' * 100_000)\n"
            "except LosstuneError as err:\n"
            "    print(err)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == ("best_loss.json: cannot write (File too large); nothing "
                                   "was changed"), proc.stdout + proc.stderr
    assert (tmp_path / "best_loss.json").read_text() == "the earlier export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["best_loss.json"]


def test_an_export_never_replaces_a_file_without_saying_so(finished, tmp_path):
    """From Python it refuses unless overwrite=True; the command says it replaced the file."""
    from losstune import api
    from losstune.errors import LosstuneError

    _, url, _ = finished
    out = tmp_path / "best_loss.json"
    out.write_text("the quick start's export\n")
    study = api.load_study("tiny", storage=url)
    with pytest.raises(LosstuneError, match="best_loss.json: the file exists"):
        study.export(out)
    assert out.read_text() == "the quick start's export\n"
    assert '"design"' in study.export(out, overwrite=True).read_text()
    result = CliRunner().invoke(main, ["export", "tiny", "--storage", url, "-o", str(out)])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"wrote {out} (replacing the file that was there): ")


def test_a_database_that_refuses_says_its_reason_in_one_line(postgres_url):
    """Any error, not only losstune's own, is one line (exit 1, the cause named): a PostgreSQL
    role without privileges on Optuna's tables hears "permission denied", which Optuna's
    StorageInternalError ("An exception is raised during the commit") hid behind a traceback;
    the role's password (with an "@" in it) appears nowhere."""
    import uuid

    import optuna
    import psycopg

    optuna.create_study(study_name="held", storage=postgres_url.replace(
        "postgresql://", "postgresql+psycopg://"))
    role, password = f"weak_{uuid.uuid4().hex[:8]}", "Secr3t@pw"
    database = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        try:
            admin.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
            result = CliRunner().invoke(main, [
                "show", "held", "--storage",
                f"postgresql://{role}:{password}@127.0.0.1:5432/{database}"])
        finally:
            admin.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
            admin.execute(f"DROP ROLE {role}")
    stderr = result.stderr.strip()
    assert result.exit_code == 1 and len(stderr.splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert stderr.startswith("Error: InsufficientPrivilege: permission denied for table"), stderr
    assert "Secr3t" not in result.stdout + result.stderr


def test_reading_commands_add_no_table_to_a_sqlite_file_without_any(tmp_path):
    """`show` on a SQLite file with no table (not empty: a page of settings) created Optuna's
    tables in it."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 3")
    before = path.read_bytes()
    for argv in (["show", "x"], ["report", "x", "-o", str(tmp_path / "r.html")],
                 ["export", "x", "-o", str(tmp_path / "e.json")], ["studies"]):
        result = CliRunner().invoke(main, [*argv, "--storage", f"sqlite:///{path}"])
        _check_one_line(result, "other.db holds no study yet")
    assert path.read_bytes() == before


@pytest.mark.parametrize("changes, fragment", [
    # the grid sampler reads a baseline's family's space too (it crashed mid-run, and left
    # the baseline's trial RUNNING)
    ({"sampler": {"name": "grid", "n_startup_trials": None},
      "search": {"families": ["cross_entropy"], "focal": None,
                 "cross_entropy": {"label_smoothing": {"low": None, "high": None,
                                                       "choices": [0.0, 0.1]}}}},
     "search.focal.gamma: the grid sampler needs a step or {choices = [...]} (focal is a "
     "baseline's family"),
    # a step that does not fit its range: Optuna moved high to 0.0, a search of one value
    ({"search": {"focal": {"gamma": {"low": 0.0, "high": 1.0, "step": 5.0}}}},
     "search.focal.gamma: step 5 must divide high − low = 1 a whole number of times"),
    ({"dataset": {"test": 0.0}}, "dataset.test: must lie in (0, 1), got 0.0"),
    ({"name": "   "}, "name: name must not be blank"),
])
def test_values_that_passed_validation_then_crashed_or_did_nothing(tmp_path, changes, fragment):
    result = CliRunner().invoke(main, ["validate", str(write_study(tmp_path, changes))])
    _check_one_line(result, fragment)
