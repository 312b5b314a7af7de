"""Storage URLs: masking, short forms, the journal file storage end to end."""

from __future__ import annotations

import json
import os

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
    assert shown.exit_code == 0 and "3 designs, 3 trainings" in shown.output
    listed = CliRunner().invoke(main, ["studies", "--storage", f"journal:{journal}"])
    assert listed.exit_code == 0 and "tiny" in listed.output


# ------------------------------------------------------------------------------ secrets
@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:se/cret@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql://u:p@ss@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql://u:a:b@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql://u:a%2Fb@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql://u@h/db?password=s3cret", "postgresql+psycopg://u@h/db?password=***"),
    ("postgresql://u:p?x@h/db", "postgresql+psycopg://u:***@h/db"),
])
def test_every_password_form_is_masked_after_normalising(url, shown):
    normal = storage.normalise(url)
    assert storage.mask(normal) == shown and storage.mask(url).endswith(shown.split("://")[1])


@pytest.mark.parametrize("url, path", [
    ("sqlite:////tmp/a@b/x.db", "/tmp/a@b/x.db"),   # "@" in a file path is not a password
    ("my@s.db", "my@s.db"),
])
def test_sqlite_paths_with_at_signs_are_kept(url, path):
    normal = storage.normalise(url)
    assert str(storage.sqlite_path(normal)) == path and storage.mask(normal) == normal


@pytest.mark.parametrize("url", [
    "postgresql://u:se/cret@h/db", "postgresql://u:p@ss@h/db", "postgresql://u:a%2Fb@h/db",
    "postgresql://u@h/db?options=-c%20a@b", "sqlite:////tmp/a@b/x.db", "results.db",
    "postgresql://u:pw@h/db?sslrootcert=/x/y@z", "journal:x.log"])
def test_normalising_twice_changes_nothing_and_keeps_the_host(url):
    from sqlalchemy.engine import make_url

    once = storage.normalise(url)
    assert storage.normalise(once) == once
    if once.startswith("postgresql"):
        assert make_url(once).host == "h"



SECRETS = {"se/cr3t": ["se/cr3t", "se%2Fcr3t"], "p@ss:w0rd": ["p@ss:w0rd", "p%40ss"],
           "ab%2Fcd": ["ab%2Fcd", "ab/cd"]}


@pytest.mark.postgres
@pytest.mark.parametrize("password", list(SECRETS))
def test_no_secret_in_output_study_report_export_or_note(tmp_path, postgres_url, password):
    """A password (with "/", "@", ":" or "%2F") on the command line and another one in the study
    file's URL (``?password=``) appear nowhere: not in what any command prints, not in the
    study's or trials' attributes, the report, the export or the dashboard note. (The local
    server trusts every connection, so any password connects.)"""
    from optuna_dashboard import get_note

    url = postgres_url.replace("postgres@", f"postgres:{password}@")
    in_file = postgres_url + "?password=fi1e-s3cret"
    path = write_study(tmp_path, {"n_trials": 2, "storage": in_file})
    runner = CliRunner()
    outputs = [runner.invoke(main, ["search", str(path), "--storage", url],
                             catch_exceptions=False)]
    assert outputs[0].exit_code == 0, outputs[0].output
    report, export = tmp_path / "r.html", tmp_path / "b.json"
    for args in (["show", "tiny"], ["show", "tiny", "-f", "json"], ["studies"],
                 ["report", "tiny", "-o", str(report)], ["export", "tiny", "-o", str(export)],
                 ["show", "nope"]):
        outputs.append(runner.invoke(main, [*args, "--storage", url]))
    bad_port = url.replace(":5432/", ":1/")
    outputs.append(runner.invoke(main, ["show", "tiny", "--storage", bad_port]))
    assert outputs[-1].exit_code == 2 and "cannot connect" in outputs[-1].output
    assert "postgres:***@" in outputs[0].output and "postgres:***@" in outputs[-1].output
    study = optuna.load_study(study_name="tiny", storage=storage.normalise(url))
    stored = json.dumps([study.user_attrs, [t.user_attrs for t in study.trials]])
    assert "fi1e-s3cret" not in stored and "password=***" in stored  # the file's URL, masked
    texts = [o.output for o in outputs] + [stored, report.read_text(), export.read_text(),
                                           get_note(study)]
    for secret in [*SECRETS[password], "fi1e-s3cret"]:
        for text in texts:
            assert secret not in text


# ------------------------------------------------------------------------------ refused storages
def _fingerprint(path) -> tuple[int, str]:
    """The file's size and a hash of its whole content as SQL (nothing changed, nothing added)."""
    import hashlib
    import sqlite3

    if not path.exists():
        return -1, ""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        dump = "\n".join(conn.iterdump())
    return path.stat().st_size, hashlib.sha256(dump.encode()).hexdigest()


def _refused(args, *, contains: str) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert contains in lines[0], lines[0]


def test_in_memory_sqlite_is_refused(study_file):
    _refused(["search", study_file, "--storage", "sqlite://"], contains="in-memory")
    _refused(["search", study_file, "--storage", "sqlite:///:memory:"], contains="in-memory")


def test_a_foreign_sqlite_file_gets_no_optuna_tables(tmp_path, study_file):
    import sqlite3

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    before = _fingerprint(db)
    url = f"sqlite:///{db}"
    _refused(["search", study_file, "--storage", url], contains="tables: users")
    _refused(["show", "tiny", "--storage", url], contains="tables: users")
    _refused(["studies", "--storage", url], contains="tables: users")
    assert _fingerprint(db) == before


def test_readers_never_create_tables_in_an_empty_file(tmp_path):
    db = tmp_path / "empty.db"
    db.touch()
    for args in (["show", "tiny"], ["studies"], ["report", "tiny"], ["export", "tiny"]):
        _refused([*args, "--storage", f"sqlite:///{db}"], contains="is empty")
    assert db.stat().st_size == 0


def test_journal_path_that_is_a_folder(tmp_path, study_file):
    _refused(["search", study_file, "--storage", f"journal:{tmp_path}"], contains="directory")


def test_read_only_database_is_refused_for_search_and_read_by_show(finished, tmp_path):
    import subprocess

    from tests.conftest import copy_db

    url = copy_db(finished[1], tmp_path)
    db = tmp_path / "copy.db"
    if os.geteuid() != 0:
        db.chmod(0o444)  # read-only for anyone but root
    elif subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.fail("root needs chattr +i (e2fsprogs, an ext4-like file system) to make a file "
                    "read-only")
    try:
        before = _fingerprint(db)
        _refused(["search", finished[0], "--storage", url], contains="read-only")
        shown = CliRunner().invoke(main, ["show", "tiny", "--storage", url])
        assert shown.exit_code == 0 and "Verdict" in shown.output, shown.output
        assert _fingerprint(db) == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)], check=True)


def test_another_optuna_schema_is_one_line(finished, tmp_path):
    import sqlite3

    from tests.conftest import copy_db

    url = copy_db(finished[1], tmp_path)
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'v0.9.0.a'")
    _refused(["show", "tiny", "--storage", url], contains="optuna storage upgrade")


@pytest.mark.parametrize("change, key", [
    ({"search": {"focal": {"gamma": {"low": 0.1, "high": 4.0}}}}, "search.focal.gamma"),
    ({"dataset": {"name": "wine", "label_noise": 0.2}}, "dataset.label_noise"),
    ({"training": {"epochs": 4}}, "training.epochs"),
    ({"seed": 4}, "seed"),
])
def test_resuming_with_incomparable_settings_is_refused(finished, tmp_path, change, key):
    from tests.conftest import copy_db

    url = copy_db(finished[1], tmp_path)
    before = _fingerprint(tmp_path / "copy.db")
    changed = write_study(tmp_path, change, name="changed.toml")
    _refused(["search", changed, "--storage", url], contains=key)
    assert _fingerprint(tmp_path / "copy.db") == before
    # What may change: the budget and how the space is searched.
    fine = write_study(tmp_path, {"n_trials": 1, "sampler": {"name": "random"}},
                       name="fine.toml")
    result = CliRunner().invoke(main, ["search", str(fine), "--storage", url])
    assert result.exit_code == 0, result.output


def test_an_interrupted_first_run_leaves_no_empty_database(tmp_path, monkeypatch):
    """Ctrl-C in the first second of a first run (the SQLite file made, no study in it yet)
    left an empty database behind; a file that existed before is never removed."""
    from losstune import api, runner
    from losstune.storage import open_storage
    from tests.conftest import write_study

    def interrupted(spec, url, **kwargs):
        open_storage(url)  # the file and Optuna's tables are made, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "create_or_load", interrupted)
    for name, existed in (("fresh.db", False), ("kept.db", True)):
        if existed:
            open_storage(f"sqlite:///{tmp_path / name}")
        study = api.Study.from_file(write_study(tmp_path), storage=f"sqlite:///{tmp_path / name}")
        with pytest.raises(KeyboardInterrupt):
            study.run_search(n_trials=1)
        assert sorted(p.name for p in tmp_path.glob(f"{name}*")) == (
            [name] if existed else [])
