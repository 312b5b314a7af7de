"""Shared fixtures: tiny study files in temporary folders, and service checks.

Locally, a missing PostgreSQL server or Chromium skips the tests that need it, with the reason.
In CI (LOSSTUNE_REQUIRE_SERVICES=1) they fail instead: a skipped check is not a pass.
"""

from __future__ import annotations

import copy
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY: dict[str, Any] = {
    "name": "tiny",
    "task": "multiclass",
    "seed": 3,
    "n_trials": 4,
    "dataset": {"name": "wine"},
    "model": {"kind": "mlp", "hidden": [16]},
    "training": {"epochs": 3, "batch_size": 32, "learning_rate": 0.01},
    "objective": {"metric": "macro_f1"},
    "sampler": {"name": "tpe", "n_startup_trials": 2},
    "pruner": {"name": "none"},
    # Most tests look at single runs: racing over seeds has its own tests (test_racing.py).
    "racing": False,
    "search": {"families": ["cross_entropy", "focal", "dynamic"],
               "cross_entropy": {"label_smoothing": {"low": 0.0, "high": 0.2}},
               "focal": {"gamma": {"low": 0.5, "high": 3.0}}},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``changes`` into a copy of ``base``; a value of None deletes the key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_study(folder: Path, changes: dict[str, Any] | None = None,
                name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(tomli_w.dumps(merge(TINY, changes or {})))
    return path


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    return write_study(tmp_path)


def require_service(available: bool, reason: str) -> None:
    if available:
        return
    if os.environ.get("LOSSTUNE_REQUIRE_SERVICES"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A tiny study (wine, 4 trials x 3 epochs) run once through `losstune search`.

    Shared by several test files; tests that change it work on a copy of the database.
    """
    from click.testing import CliRunner

    from losstune.cli import main

    folder = tmp_path_factory.mktemp("study")
    path = write_study(folder)
    url = f"sqlite:///{folder / 'lt.db'}"
    result = CliRunner().invoke(main, ["search", str(path), "--storage", url],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path, url, result.output


def copy_db(url: str, folder: Path) -> str:
    """A copy of a finished study's SQLite database, to change without affecting others."""
    import shutil
    import sqlite3

    source = url[len("sqlite:///"):]
    target = folder / "copy.db"
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)  # consistent even with WAL files beside the database
    shutil.copymode(source, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def confirmed_report(finished, tmp_path_factory):
    """The finished tiny study, confirmed (top 1 + baselines, 2 seeds; the winner and the
    baselines on 2 fresh seeds), then reported."""
    folder = tmp_path_factory.mktemp("confirmed")
    url = copy_db(finished[1], folder)
    from click.testing import CliRunner

    from losstune.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["confirm", "tiny", "--storage", url, "--top", "1",
                                  "--seeds", "2", "--test-seeds", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = folder / "tiny.html"
    result = runner.invoke(main, ["report", "tiny", "--storage", url, "-o", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return url, out


@pytest.fixture
def postgres_url():
    try:
        import psycopg

        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True,
                                connect_timeout=5)
    except Exception as err:  # noqa: BLE001
        require_service(False, f"PostgreSQL on 127.0.0.1:5432 is not reachable ({err})")
    name = f"losstune_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def count_statements(action) -> int:
    """The SQL statements ``action()`` issues, counted with SQLAlchemy's events."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    count = [0]

    def one(*args):  # noqa: ARG001
        count[0] += 1

    event.listen(Engine, "before_cursor_execute", one)
    try:
        action()
    finally:
        event.remove(Engine, "before_cursor_execute", one)
    return count[0]
