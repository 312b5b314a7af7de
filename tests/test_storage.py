"""Storage URLs: masking, short forms, the journal file storage end to end."""

from __future__ import annotations

import optuna
import pytest
from click.testing import CliRunner

from losstune import storage
from losstune.cli import main
from losstune.errors import StorageError
from tests.conftest import write_study


@pytest.mark.parametrize("url, shown", [
    ("postgresql://bob:s3cret@db:5432/x", "postgresql://bob:***@db:5432/x"),
    ("postgresql+psycopg://bob:p@ss:w0rd@db/x", "postgresql+psycopg://bob:***@db/x"),
    ("postgresql://bob@db/x", "postgresql://bob@db/x"),
    ("sqlite:///losstune.db", "sqlite:///losstune.db"),
])
def test_passwords_are_masked(url, shown):
    assert storage.mask(url) == shown


def test_short_forms():
    assert storage.normalise("results.db") == "sqlite:///results.db"
    assert storage.normalise("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert storage.normalise("journal:x.log") == "journal:x.log"


def test_heartbeat_settings_from_environment(monkeypatch):
    monkeypatch.setenv("LOSSTUNE_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("LOSSTUNE_GRACE_PERIOD", "1")
    assert storage.heartbeat_settings() == (2, 3)  # grace always outlasts one interval
    monkeypatch.setenv("LOSSTUNE_HEARTBEAT_INTERVAL", "0")
    with pytest.raises(StorageError, match="must be >= 1"):
        storage.heartbeat_settings()


def test_journal_storage_end_to_end(tmp_path):
    path = write_study(tmp_path, {"n_trials": 3})
    journal = tmp_path / "journal.log"
    result = CliRunner().invoke(main, ["search", str(path), "--storage", f"journal:{journal}"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="tiny",
                              storage=JournalStorage(JournalFileBackend(str(journal))))
    assert len(study.trials) == 3
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    shown = CliRunner().invoke(main, ["show", "tiny", "--storage", f"journal:{journal}"])
    assert shown.exit_code == 0 and "3 complete" in shown.output
    listed = CliRunner().invoke(main, ["studies", "--storage", f"journal:{journal}"])
    assert listed.exit_code == 0 and "tiny" in listed.output
