"""Storage URLs: the embedded SQLite default, PostgreSQL for many machines, Optuna's journal file.

* ``sqlite:///losstune.db`` (default, in the working directory): one file, no server. Several
  local workers are safe thanks to a busy timeout and write-ahead logging (WAL).
* ``postgresql://user@host/db`` (psycopg 3 through SQLAlchemy): many workers on many machines.
* ``journal:PATH``: Optuna's append-only journal file, for many local workers without a server.

Passwords never reach the terminal or an error message (:func:`mask`).

Layer: storage.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from losstune.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    import optuna

DEFAULT_URL = "sqlite:///losstune.db"
SQLITE_TIMEOUT_S = 60.0
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30


# Query parameters that carry a secret (libpq's `password`, and the usual spellings).
_SECRET_KEYS = {"password", "passwd", "pwd", "pass", "sslpassword", "secret", "token"}


# Where a server URL's query starts: a path segment (the database name) followed by "?key=".
_QUERY = re.compile(r"/[^/?@]*\?[A-Za-z_][\w.-]*=")


def _split_credentials(url: str) -> tuple[str, str | None, str | None, str]:
    """``scheme://user:password@rest`` → (scheme, user, password, rest).

    Credentials end at the *last* "@" before the query: a password typed as-is may hold "/",
    ":" or "@". SQLAlchemy's parser ends the password at the first "@" (``u:a@b@host`` gives
    the host ``b@host``), which would print the rest of such a password; every other part is
    parsed by SQLAlchemy. SQLite URLs hold a file path, never credentials ("@" may be in it).
    """
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] == "sqlite":
        return scheme, None, None, rest
    query = _QUERY.search(rest)
    head = rest[:query.start() + query.group().index("?")] if query else rest
    at = head.rfind("@")
    if at < 0:
        return scheme, None, None, rest
    creds, rest = rest[:at], rest[at + 1:]
    user, colon, password = creds.partition(":")
    return scheme, user, password if colon else None, rest


def mask(url: str) -> str:
    """A storage URL safe to print or store: ``postgresql://user:***@host/db``, with secret
    query parameters (``?password=…``) masked too. A URL SQLAlchemy cannot parse keeps only its
    scheme: the whole credentials part and the query are masked."""
    from sqlalchemy.engine import make_url

    if "://" not in url or url.split("://")[0].split("+")[0] == "sqlite":
        return url  # journal:FILE, a bare path, a SQLite file: no credentials
    scheme, user, password, rest = _split_credentials(url)
    who = "" if user is None else (f"{user}:***@" if password is not None else f"{user}@")
    try:
        parsed = make_url(f"{scheme}://{rest}")
        if any(k.lower() in _SECRET_KEYS for k in parsed.query):
            parsed = parsed.set(query={k: ("***" if k.lower() in _SECRET_KEYS else v)
                                       for k, v in parsed.query.items()})
        shown = parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:  # noqa: BLE001 - any parse failure: show nothing that might be secret
        return f"{scheme}://***" + ("@…" if user is not None else "")
    return shown.replace("://", "://" + who, 1)


def scrub(text: str, url: str) -> str:
    """``text`` (say a driver's error message) without the URL's secrets, in any spelling."""
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url

    secrets = set()
    if "://" in url:
        _, _, password, rest = _split_credentials(url)
        if password:
            secrets |= {password, unquote(password)}
        try:
            secrets |= {v for k, v in make_url(url.split("://")[0] + "://" + rest).query.items()
                        if k.lower() in _SECRET_KEYS and isinstance(v, str)}
        except Exception:  # noqa: BLE001
            pass
    text = text.replace(url, mask(url))
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 2:
            text = text.replace(secret, "***")
    return text


# Every URL this process opened or was given: any error line is scrubbed of their secrets
# (scrub_known), wherever the error came from (a driver, Optuna, SQLAlchemy).
_OPENED: set[str] = set()


def remember(url: str) -> None:
    _OPENED.add(url)


def scrub_known(text: str) -> str:
    """``text`` without the secrets of any storage URL this process has used."""
    for url in sorted(_OPENED, key=len, reverse=True):
        text = scrub(text, url)
    return text


def normalise(url: str) -> str:
    """Accept the common short forms: a bare ``*.db`` path, ``postgresql://`` (psycopg 3); a
    password typed with "@", "/", ":" or "?" in it is percent-encoded, as drivers expect."""
    if "://" not in url and not url.startswith("journal:"):
        return f"sqlite:///{url}"
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" in url:
        from urllib.parse import unquote

        from sqlalchemy.engine import make_url

        scheme, user, password, rest = _split_credentials(url)
        if user is not None:
            try:
                parsed = make_url(f"{scheme}://{rest}").set(
                    username=unquote(user),
                    password=None if password is None else unquote(password))
                return parsed.render_as_string(hide_password=False)
            except Exception:  # noqa: BLE001 - left as given; opening it reports the error
                return url
    return url


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _prepare_sqlite(path: Path, url: str, create: bool) -> None:
    """Checks on a SQLite file before Optuna opens it. The file is read through SQLite only:
    in a process that already has the database open (a search that reads its results), a
    plain open() and close() of the file would drop SQLite's POSIX locks on it, the way to
    corrupt a database that SQLite's documentation warns about."""
    if path.is_dir():
        raise StorageError(f"storage {url}: {path} is a directory, not a SQLite database")
    if path.exists():
        if path.stat().st_size:
            _check_optuna_tables(path, url, create)
        elif not create:
            raise StorageError(f"storage {url}: {path} is empty: no study there yet; run "
                               "`losstune search STUDY_FILE` first")
        if create and not os.access(path, os.W_OK):
            raise StorageError(f"storage {url}: {path} is read-only; a search writes its "
                               "trials there: give a writable file (show and report can read it)")
    elif not path.parent.exists():
        raise StorageError(f"storage {url}: folder {path.parent} does not exist")
    if create and not os.access(path.parent, os.W_OK):
        raise StorageError(f"storage {url}: folder {path.parent} is read-only; SQLite writes "
                           "its journal beside the database: give a writable folder")
    if not create:
        return  # readers change nothing, not even the journal mode
    # WAL lets readers (the dashboard, `losstune show`) work while workers write, and makes
    # concurrent writers wait less; the mode is stored in the file, so setting it once suffices.
    _sql(path, url, "PRAGMA journal_mode=WAL")


def _check_optuna_tables(path: Path, url: str, create: bool) -> None:
    """Optuna creates its tables in any database it opens. In a SQLite file of another
    application that would change someone else's data, so only a new or empty file, or one
    that already holds Optuna's tables, is used; and a reader (``create=False``: show,
    report) adds no table to a file that has none."""
    tables = {row[0] for row in _sql(path, url, "SELECT name FROM sqlite_master "
                                                "WHERE type = 'table'")}
    if not tables and not create:
        raise StorageError(f"storage {url}: {path} holds no study yet; run `losstune search "
                           "STUDY_FILE` first")
    if tables and not {"studies", "trials", "version_info"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise StorageError(f"storage {url}: {path} is a SQLite database of something else "
                           f"(tables: {shown}); losstune will not add its tables to it: give "
                           "another file name")


def _sql(path: Path, url: str, sql: str) -> list[tuple]:
    """One statement on the file, through SQLite; its errors as one line."""
    try:
        with sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.DatabaseError as err:
        if "not a database" in str(err):
            raise StorageError(f"storage {url}: {path} is not a SQLite database; give another "
                               "file name") from None
        raise StorageError(f"storage {url}: {path} cannot be opened as SQLite ({err})") from None


@contextlib.contextmanager
def new_sqlite_file(url: str) -> Iterator[None]:
    """Around the making of a study: when it is interrupted (Ctrl-C in the first seconds, an
    error) and the SQLite file did not exist before and holds no study, the file goes (with
    its -wal and -shm companions), so an interrupted first run leaves no empty database."""
    path = sqlite_path(normalise(url))
    fresh = path is not None and not path.exists()
    try:
        yield
    except BaseException:
        if fresh and path.exists() and not _holds_a_study(path):
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        raise


def _holds_a_study(path: Path) -> bool:
    try:
        return bool(_sql(path, str(path), "SELECT COUNT(*) FROM studies")[0][0])
    except StorageError:  # no table yet, or not a database any more: nothing of ours
        return False


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


def open_storage(url: str | None = None, *, heartbeat: bool = True,
                 create: bool = True) -> "optuna.storages.BaseStorage":
    """An Optuna storage for ``url``; errors are one line, password masked.

    ``create=False`` (reading commands): never create a database or Optuna's tables."""
    import optuna
    import sqlalchemy.exc

    remember(url or DEFAULT_URL)
    url = normalise(url or DEFAULT_URL)
    remember(url)
    shown = mask(url)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        if path.is_dir():
            raise StorageError(f"storage {shown}: {path} is a directory; a journal is a file")
        if not path.parent.exists():
            raise StorageError(f"storage {shown}: folder {path.parent} does not exist")
        if not create and not path.exists():
            raise StorageError(f"storage {shown}: no journal file at {path}")
        if path.exists() and not path.is_file():  # /dev/null, a FIFO: nothing is kept there
            raise StorageError(f"storage {shown}: {path} is not a regular file; a journal is "
                               "a file")
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except (OSError, ValueError) as err:
            raise StorageError(f"storage {shown}: cannot use {path} ({err})") from None
    if url.split("?")[0] in ("sqlite://", "sqlite:///:memory:", "sqlite:///"):
        raise StorageError(f"storage {shown}: an in-memory SQLite database keeps nothing; "
                           "give a file: sqlite:///FILE.db")
    path = sqlite_path(url)
    engine_kwargs: dict = {}
    if path is not None:
        _prepare_sqlite(path, shown, create)
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
        raise StorageError(f"storage {shown}: cannot connect ({scrub(reason, url)})") from None
    except RuntimeError as err:  # Optuna: a schema made by another Optuna version
        reason = str(err).strip().splitlines()[0].replace("$STORAGE_URL", shown)
        raise StorageError(f"storage {shown}: {scrub(reason, url)}") from None
    if path is not None and create:  # readers take no write lock at the start of every read
        _serialise_sqlite_transactions(storage.engine)
    return storage


# A connection's execution option: its statements only read, one each, so on SQLite it begins
# no transaction (each SELECT reads a consistent snapshot by itself) and takes no write lock.
READ_ONLY = "losstune_read_only"


def read_only(engine):
    """A connection of ``engine`` for single reads: on SQLite no BEGIN IMMEDIATE before them."""
    return engine.connect().execution_options(**{READ_ONLY: True})


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
        if not connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened before the listeners existed


def study_names(storage: "optuna.storages.BaseStorage") -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]
