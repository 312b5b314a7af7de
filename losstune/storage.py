"""Storage URLs: the embedded SQLite default, PostgreSQL for many machines, Optuna's journal file.

* ``sqlite:///losstune.db`` (default, in the working directory): one file, no server. Several
  local workers are safe thanks to a busy timeout and write-ahead logging (WAL).
* ``postgresql://user@host/db`` (psycopg 3 through SQLAlchemy): many workers on many machines.
* ``journal:PATH``: Optuna's append-only journal file, for many local workers without a server.

Passwords never reach the terminal or an error message (:func:`mask`).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from losstune.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    import optuna

DEFAULT_URL = "sqlite:///losstune.db"
SQLITE_TIMEOUT_S = 60.0
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30
SQLITE_MAGIC = b"SQLite format 3\x00"


def mask(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db``."""
    return re.sub(r"(//[^:/@]+:)[^/]*@", r"\1***@", url)  # up to the last @ of the authority


def normalise(url: str) -> str:
    """Accept the common short forms: a bare ``*.db`` path, ``postgresql://`` (psycopg 3)."""
    if "://" not in url and not url.startswith("journal:"):
        return f"sqlite:///{url}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _prepare_sqlite(path: Path, url: str) -> None:
    if path.exists():
        if path.is_dir():
            raise StorageError(f"storage {url}: {path} is a directory, not a SQLite database")
        with path.open("rb") as fh:
            head = fh.read(16)
        if head and head != SQLITE_MAGIC:
            raise StorageError(f"storage {url}: {path} is not a SQLite database; "
                               "give another file name")
    elif not path.parent.exists():
        raise StorageError(f"storage {url}: folder {path.parent} does not exist")
    # WAL lets readers (the dashboard, `losstune show`) work while workers write, and makes
    # concurrent writers wait less; the mode is stored in the file, so setting it once suffices.
    try:
        with sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as err:
        raise StorageError(f"storage {url}: {path} cannot be opened as SQLite ({err})") from None


def heartbeat_settings() -> tuple[int, int]:
    """Heartbeat interval and grace period in seconds; operators (and tests) may shorten them
    with LOSSTUNE_HEARTBEAT_INTERVAL and LOSSTUNE_GRACE_PERIOD."""
    import os

    def read(name: str, default: int) -> int:
        text = os.environ.get(name, "")
        try:
            value = int(text) if text else default
        except ValueError:
            raise StorageError(f"{name} must be a whole number of seconds, got {text!r}") from None
        if value < 1:
            raise StorageError(f"{name} must be >= 1, got {value}")
        return value

    interval = read("LOSSTUNE_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL_S)
    return interval, max(read("LOSSTUNE_GRACE_PERIOD", GRACE_PERIOD_S), interval + 1)


def open_storage(url: str | None = None, *, heartbeat: bool = True) -> "optuna.storages.BaseStorage":
    """An Optuna storage for ``url``; errors are one line, password masked."""
    import optuna
    import sqlalchemy.exc

    url = normalise(url or DEFAULT_URL)
    shown = mask(url)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        if not path.parent.exists():
            raise StorageError(f"storage {shown}: folder {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    path = sqlite_path(url)
    engine_kwargs: dict = {}
    if path is not None:
        _prepare_sqlite(path, shown)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    elif url.startswith("postgresql"):
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    elif not url.startswith(("sqlite", "mysql")):
        raise StorageError(f"storage {shown}: unsupported URL; use sqlite:///FILE.db, "
                           "postgresql://USER@HOST/DB or journal:FILE")
    kwargs = {}
    if heartbeat:
        interval, grace = heartbeat_settings()
        kwargs = dict(heartbeat_interval=interval, grace_period=grace,
                      heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                          max_retry=3))
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise StorageError(f"storage {shown}: cannot connect ({mask(reason)})") from None
    if path is not None:
        _serialise_sqlite_transactions(storage.engine)
    return storage


def _serialise_sqlite_transactions(engine) -> None:
    """Every SQLite transaction starts with BEGIN IMMEDIATE (SQLAlchemy's pysqlite recipe).

    Optuna pops an enqueued (WAITING) trial with SELECT … FOR UPDATE, which SQLite ignores: two
    workers could both read WAITING and run the same trial ("Cannot tell a COMPLETE trial").
    Taking the write lock at BEGIN makes read-then-update atomic; the busy timeout makes other
    workers wait for it instead of failing.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, record):  # noqa: ARG001
        dbapi_connection.isolation_level = None  # SQLAlchemy, not pysqlite, emits BEGIN
        # In WAL mode, NORMAL skips the fsync at every commit (a trial makes about 25) and
        # keeps the database consistent; a killed worker loses nothing it committed. Only a
        # power loss or OS crash can roll back the last commits (SQLite's WAL documentation).
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened before the listeners existed


def study_names(storage: "optuna.storages.BaseStorage") -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]
