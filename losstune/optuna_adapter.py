"""Every use of Optuna's private names, and the few writes Optuna's public API cannot batch.

Layer: storage (the bottom: imports Optuna, SQLAlchemy and the standard library only; used by
:mod:`losstune.recording`, :mod:`losstune.batch` and :mod:`losstune.workers`).

Optuna's storage API writes one thing per transaction: a new trial, then a read of it back (7
SQL statements), each parameter (3), each heartbeat (3), each attribute (4), the tell (5). In a
population of 32 trials that is more time than the training. Optuna has no public call that
writes many of them at once, so on its RDB storage (SQLite and PostgreSQL) this module writes
them with Optuna's own SQLAlchemy models, in one of its own sessions, with the checks Optuna's
own calls make:

* :func:`new_trials`: K new trials in one transaction, numbered as Optuna numbers them (the
  study's row locked, as ``create_new_trial`` locks it), and handed out without reading them
  back: this process has just written them.
* :func:`write`: several trials' pending records in one transaction: parameters (checked
  against the study's earlier distribution of the same name), user attributes, intermediate
  values, the dashboard's notes, the first heartbeat, and the outcome (state and values: the
  update refuses a trial that is finished already, atomically, as Optuna's does).
* :class:`Heartbeat`: one thread that beats every running trial of a batch in one statement,
  where Optuna starts one thread and one transaction per trial.

Other storages (in-memory, journal, other databases) go through Optuna's public API, one call
at a time. ``tests/test_optuna_adapter.py`` checks that Optuna still has every private name used
here (a new Optuna release that renames one fails that test, not a user's search) and that what
is stored reads back exactly as Optuna's own calls store it, on SQLite and PostgreSQL.
``pyproject.toml`` bounds Optuna below 6.
"""

from __future__ import annotations

import copy
import datetime
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover
    import optuna


# ------------------------------------------------------------------------------ accessors
def storage_of(study: "optuna.Study") -> Any:
    return study._storage


def study_id(study: "optuna.Study") -> int:
    return study._study_id


def trial_id(trial: Any) -> int:
    """A live ``optuna.Trial``'s or a ``FrozenTrial``'s storage id."""
    return trial._trial_id


def held(trial: "optuna.Trial") -> "optuna.trial.FrozenTrial":
    """The frozen trial a live trial holds (its params, attributes, values as this process
    knows them; Optuna updates it on every suggest and report)."""
    return trial._cached_frozen_trial


def filtered(study: "optuna.Study", frozen: Any) -> "optuna.Study":
    """The study as Optuna's samplers and pruners see it for ``frozen``."""
    from optuna import pruners

    return pruners._filter_study(study, frozen)


def forget_cached_trials(study: "optuna.Study") -> None:
    """Drop the study's per-thread copy of its trials, as ``study.ask()`` and ``tell`` do."""
    study._thread_local.cached_all_trials = None


def check_state_and_values(state: Any, values: Any) -> None:
    """Optuna's own check of a tell's state and values (raises ValueError)."""
    from optuna.study._tell import _check_state_and_values

    _check_state_and_values(state, values)


def infeasible(study: "optuna.Study", values: list[float]) -> str | None:
    """Why Optuna's tell would refuse these values for the study (NaN, a wrong count), or
    None."""
    from optuna.study._tell import _check_values_are_feasible

    return _check_values_are_feasible(study, values)


def after_trial(study: "optuna.Study", frozen: Any, state: Any, values: Any) -> None:
    """The sampler's ``after_trial`` hook, as ``study.tell`` calls it. The grid sampler calls
    ``study.stop()`` from it once its grid is covered, which Optuna allows only inside
    ``study.optimize``; the search loop stops by itself (a covered grid proposes only designs
    already trained), so that stop is let through and undone."""
    inside = study._thread_local.in_optimize_loop
    study._thread_local.in_optimize_loop = True
    try:
        study.sampler.after_trial(filtered(study, frozen), frozen, state, values)
    finally:
        study._thread_local.in_optimize_loop = inside
        study._stop_flag = False


# optuna-dashboard's note keys (optuna_dashboard/_note.py): written here because importing
# optuna_dashboard loads its whole web app (0.3 s in a process that has Optuna's plots
# loaded, 2.3 s in one that has not), once in every worker; tests/test_optuna_adapter.py
# checks these against optuna_dashboard's own functions.
NOTE_CHUNK = 2045  # optuna_dashboard._note.SYSTEM_ATTR_MAX_LENGTH


def dashboard_note(tid: int, body: str) -> dict[str, Any]:
    """The study system attributes optuna-dashboard's ``save_note`` stores for a trial's
    first note: version 1, and the body in chunks."""
    chunks = {f"dashboard:{tid}:note_str:{i}": body[start:start + NOTE_CHUNK]
              for i, start in enumerate(range(0, len(body), NOTE_CHUNK))}
    return {f"dashboard:{tid}:note_ver": 1, **chunks}


def heartbeat_enabled(storage: Any) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def fail_stale_trials(study: "optuna.Study") -> None:
    """Optuna's ``fail_stale_trials`` (experimental; its warning is Optuna's to give, not the
    user's to read on every batch), at most once a heartbeat interval per study: no trial can
    go stale sooner than its grace period, which is longer (``study.optimize`` looks before
    every trial, 3 SQL statements each)."""
    import time
    import warnings

    import optuna

    storage = storage_of(study)
    if heartbeat_enabled(storage):
        # When each study's stale trials were last looked for, kept on the storage object.
        checked = vars(storage).setdefault("_losstune_stale_checked", {})
        now = time.monotonic()
        if now - checked.get(study_id(study), -float("inf")) < storage.get_heartbeat_interval():
            return
        checked[study_id(study)] = now
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


# ------------------------------------------------------------------------------ the one write
@dataclass
class Pending:
    """What one trial has to write and has not written yet."""

    trial_id: int
    study_id: int
    params: dict[str, tuple[float, Any]] = field(default_factory=dict)  # internal value, dist
    user_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate: dict[int, float] = field(default_factory=dict)
    study_system_attrs: dict[str, Any] = field(default_factory=dict)
    heartbeat: bool = False  # the trial's first heartbeat
    outcome: tuple[Any, list[float] | None] | None = None  # (TrialState, values): the tell

    def __bool__(self) -> bool:
        return bool(self.params or self.user_attrs or self.intermediate
                     or self.study_system_attrs or self.heartbeat or self.outcome)


def rdb_backend(storage: Any) -> Any:
    """Optuna's RDB storage on SQLite or PostgreSQL behind ``storage``, or None."""
    from optuna.storages import RDBStorage

    backend = getattr(storage, "_backend", storage)  # Optuna's _CachedStorage wraps the RDB
    if not isinstance(backend, RDBStorage):
        return None
    if backend.engine.name == "postgresql":
        return backend
    # SQLite has upserts from 3.24 (Optuna falls back without them too).
    if backend.engine.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        return backend
    return None


def write(storage: Any, records: list[Pending]) -> set[int]:
    """Write ``records`` in one transaction where the storage is Optuna's RDB storage on SQLite
    or PostgreSQL; call by call through Optuna's public API otherwise. Returns the ids of the
    trials whose tell was refused because another process had finished them meanwhile (a
    stale-trial sweep): nothing of those is written, and the others are (Optuna's
    ``skip_if_finished``)."""
    from optuna.exceptions import UpdateFinishedTrialError

    records = [r for r in records if r]
    if not records:
        return set()
    backend = rdb_backend(storage)
    if backend is not None:
        return _write_rdb(backend, records)
    refused = set()
    for r in records:
        try:
            for name, (internal, dist) in r.params.items():
                storage.set_trial_param(r.trial_id, name, internal, dist)
            for key, value in r.user_attrs.items():
                storage.set_trial_user_attr(r.trial_id, key, value)
            for step, value in sorted(r.intermediate.items()):
                storage.set_trial_intermediate_value(r.trial_id, step, value)
            for key, value in r.study_system_attrs.items():
                storage.set_study_system_attr(r.study_id, key, value)
            if r.heartbeat and heartbeat_enabled(storage):
                storage.record_heartbeat(r.trial_id)
            if r.outcome is not None:
                storage.set_trial_state_values(r.trial_id, r.outcome[0], r.outcome[1])
        except UpdateFinishedTrialError:
            if r.outcome is None:
                raise
            refused.add(r.trial_id)
    return refused


def check_param(storage: Any, sid: int, name: str, dist: Any) -> None:
    """Refuse a parameter whose distribution is incompatible with the one the study first
    stored under its name, as Optuna's ``set_trial_param`` refuses it (ValueError). The
    study's first stored distribution of a name is read once, and remembered (as Optuna's
    cached storage remembers it) once stored."""
    from optuna import distributions
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    backend = rdb_backend(storage)
    known = _stored_distributions(backend, sid)
    if name not in known:
        with _create_scoped_session(backend.scoped_session) as session:
            first = (session.query(models.TrialParamModel.distribution_json)
                     .join(models.TrialModel).filter(models.TrialModel.study_id == sid)
                     .filter(models.TrialParamModel.param_name == name).first())
        if first is None:  # nothing stored under that name yet: nothing to contradict
            return
        known[name] = distributions.json_to_distribution(first[0])
    distributions.check_distribution_compatibility(known[name], dist)


def _stored_distributions(backend: Any, sid: int) -> dict[str, Any]:
    """The distributions the study has stored, by parameter name, as far as this process
    knows: kept on the storage object itself (its life, not an id() a later storage may
    reuse)."""
    return vars(backend).setdefault("_losstune_distributions", {}).setdefault(sid, {})


def _write_rdb(backend: Any, records: list[Pending]) -> set[int]:
    """One session of Optuna's RDB storage: the tells first (only a trial still running is
    told; one another process finished is left out, with its record), each other trial
    checked updatable (as Optuna checks it before any write), then one statement per table.
    Returns the ids of the tells refused."""
    import sqlalchemy
    from optuna import distributions
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    if backend.engine.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert

    def upsert(model: Any, rows: list[dict[str, Any]], keys: list[str], values: list[str]
               ) -> None:
        # One statement, its rows as one executemany: compiled once and cached by SQLAlchemy
        # (a multi-row VALUES clause is compiled anew for each number of rows).
        # The table's Core statement: the ORM's bulk insert would split the rows by which
        # values are None (a NaN's stored value is).
        if not rows:
            return
        table = model.__table__
        stmt = insert(table)
        session.execute(stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys],
            set_={v: stmt.excluded[v] for v in values}), rows)

    to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
    value_stored = models.TrialValueModel.value_to_stored_repr
    # An IntegrityError here is a fault, not another worker's race: it is raised, and the
    # records stay pending (Optuna's own attribute writes ignore it).
    refused: set[int] = set()
    with _create_scoped_session(backend.scoped_session) as session:
        told = [r for r in records if r.outcome is not None]
        if told:
            now = _stored_time(datetime.datetime.now())
            by_state: dict[Any, list[int]] = {}
            for r in told:
                by_state.setdefault(r.outcome[0], []).append(r.trial_id)
            for state, tids in by_state.items():
                refused |= set(tids) - _finish_running(session, backend, tids, state, now)
            records = [r for r in records if r.trial_id not in refused]
        # Each other trial checked updatable, as Optuna checks it before any write.
        ids = sorted({r.trial_id for r in records if r.outcome is None})
        if ids:
            found = dict(session.execute(
                sqlalchemy.select(models.TrialModel.trial_id, models.TrialModel.state)
                .where(models.TrialModel.trial_id.in_(ids))).all())
            for tid in ids:
                if tid not in found:
                    raise KeyError(f"No trial with trial_id {tid} exists.")
                backend.check_trial_is_updatable(tid, found[tid])
        params = [dict(trial_id=r.trial_id, param_name=name, param_value=internal,
                       distribution_json=distributions.distribution_to_json(dist))
                  for r in records for name, (internal, dist) in r.params.items()]
        if params:  # a parameter is set once (Optuna's unique key refuses a second)
            session.execute(models.TrialParamModel.__table__.insert(), params)
        upsert(models.TrialUserAttributeModel,
               [dict(trial_id=r.trial_id, key=k, value_json=json.dumps(v))
                for r in records for k, v in r.user_attrs.items()],
               ["trial_id", "key"], ["value_json"])
        steps = []
        for r in records:
            for step, value in sorted(r.intermediate.items()):
                stored, kind = to_stored(value)
                steps.append(dict(trial_id=r.trial_id, step=step, intermediate_value=stored,
                                  intermediate_value_type=kind))
        upsert(models.TrialIntermediateValueModel, steps, ["trial_id", "step"],
               ["intermediate_value", "intermediate_value_type"])
        upsert(models.StudySystemAttributeModel,
               [dict(study_id=r.study_id, key=k, value_json=json.dumps(v))
                for r in records for k, v in r.study_system_attrs.items()],
               ["study_id", "key"], ["value_json"])
        beats = [dict(trial_id=r.trial_id) for r in records if r.heartbeat]
        if beats:
            stmt = insert(models.TrialHeartbeatModel).values(beats)
            session.execute(stmt.on_conflict_do_update(
                index_elements=[models.TrialHeartbeatModel.trial_id],
                set_={"heartbeat": sqlalchemy.func.current_timestamp()}))
        values = []
        for r in records:
            for objective, v in enumerate((r.outcome or (None, None))[1] or ()):
                stored, kind = value_stored(v)
                values.append(dict(trial_id=r.trial_id, objective=objective, value=stored,
                                   value_type=kind))
        upsert(models.TrialValueModel, values, ["trial_id", "objective"],
               ["value", "value_type"])
    for r in records:  # stored now: later suggestions are checked against these
        for name, (_, dist) in r.params.items():
            _stored_distributions(backend, r.study_id).setdefault(name, dist)
    return refused


def _has_returning(backend: Any) -> bool:
    """Whether the database answers ``RETURNING`` (SQLite from 3.35; PostgreSQL)."""
    return backend.engine.name != "sqlite" or sqlite3.sqlite_version_info >= (3, 35, 0)


def _finish_running(session: Any, backend: Any, tids: list[int], state: Any,
                    now: datetime.datetime) -> set[int]:
    """Set ``state`` on those of ``tids`` that are still RUNNING; the ids it was set on."""
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    trials = models.TrialModel.__table__
    running = trials.c.state == TrialState.RUNNING
    update = trials.update().where(running).values(state=state, datetime_complete=now)
    if not _has_returning(backend):
        return {t for t in tids  # no RETURNING: one update a trial
                if session.execute(update.where(trials.c.trial_id == t)).rowcount}
    return set(session.execute(update.where(trials.c.trial_id.in_(tids))
                               .returning(trials.c.trial_id)).scalars())


def _stored_time(local: datetime.datetime) -> datetime.datetime:
    """A local time as Optuna's RDB storage keeps it: naive UTC (``models.TrialModel``)."""
    return local.astimezone(datetime.timezone.utc).replace(tzinfo=None)


# ------------------------------------------------------------------------------ new trials
def new_trials(study: "optuna.Study", n: int, user_attrs: dict[str, Any] | None = None,
               heartbeat: bool = False) -> list["optuna.Trial"]:
    """``n`` new RUNNING trials, as ``n`` calls of ``storage.create_new_trial`` and
    ``optuna.Trial(study, id)`` give them, each with ``user_attrs`` (and with ``heartbeat``,
    its first heartbeat) written with it: on the RDB storage in one transaction, and not read
    back."""
    import optuna

    storage = storage_of(study)
    user_attrs = dict(user_attrs or {})
    backend = rdb_backend(storage)
    if backend is None or not _has_returning(backend):
        trials = [optuna.Trial(study, storage.create_new_trial(study_id(study)))
                  for _ in range(n)]
        write(storage, [Pending(trial_id(t), study_id(study), user_attrs=user_attrs,
                                heartbeat=heartbeat) for t in trials])
        for t in trials:
            held(t).user_attrs.update(user_attrs)
        return trials
    if n == 0:
        return []
    frozen = _create_rdb(backend, study_id(study), n, user_attrs, heartbeat)
    add = getattr(storage, "_add_trials_to_cache", None)
    if add is not None:  # Optuna's cached storage keeps what it created, as it does itself
        with storage._lock:
            if study_id(study) not in storage._studies:
                from optuna.storages._cached_storage import _StudyInfo

                storage._studies[study_id(study)] = _StudyInfo()
            # Its own copies: the live trials change theirs as they run.
            add(study_id(study), [copy.deepcopy(f) for f in frozen])
    return [trial_from(study, f) for f in frozen]


def _create_rdb(backend: Any, sid: int, n: int, user_attrs: dict[str, Any],
                heartbeat: bool) -> list["optuna.trial.FrozenTrial"]:
    """Optuna's ``_create_new_trial`` for ``n`` trials at once, numbered as Optuna numbers a
    trial (the count of the study's trials with a smaller id), with their attributes and first
    heartbeat. As Optuna does: the study's row locked, the trials inserted first (which takes
    SQLite's write lock however the transaction began), then counted (a trial alone on SQLite:
    in one statement, :func:`_create_one_sqlite`); retried on a storage error (a deadlock
    between servers' workers), five times."""
    import random
    import time

    import optuna
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import FrozenTrial, TrialState

    for attempt in range(1, 6):
        try:
            with _create_scoped_session(backend.scoped_session) as session:
                now = datetime.datetime.now()
                if n == 1 and backend.engine.name == "sqlite":
                    ids, numbers = _create_one_sqlite(session, sid, now)
                else:
                    models.StudyModel.find_or_raise_by_id(sid, session, for_update=True)
                    ids, numbers = _create_many(session, sid, n, now)
                if user_attrs:
                    session.execute(models.TrialUserAttributeModel.__table__.insert(),
                                    [dict(trial_id=tid, key=k, value_json=json.dumps(v))
                                     for tid in ids for k, v in user_attrs.items()])
                if heartbeat:
                    session.execute(models.TrialHeartbeatModel.__table__.insert(),
                                    [dict(trial_id=tid) for tid in ids])
            break
        except optuna.exceptions.StorageInternalError:
            if attempt == 5:
                raise
            time.sleep(random.random() * 2.0)  # as Optuna waits before trying again
    return [FrozenTrial(number=numbers[tid], state=TrialState.RUNNING, value=None, values=None,
                        datetime_start=now, datetime_complete=None, params={},
                        distributions={}, user_attrs=dict(user_attrs), system_attrs={},
                        intermediate_values={}, trial_id=tid)
            for tid in ids]


def _create_many(session: Any, sid: int, n: int, now: datetime.datetime
                 ) -> tuple[list[int], dict[int, int]]:
    """``n`` trials inserted, then numbered (the study's row locked already); their ids and
    numbers."""
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    trials = models.TrialModel.__table__
    ids = sorted(session.execute(
        trials.insert().returning(trials.c.trial_id),
        [dict(study_id=sid, number=None, state=TrialState.RUNNING,
              datetime_start=_stored_time(now)) for _ in range(n)]).scalars())
    earlier = trials.alias("earlier")
    numbers = dict(session.execute(
        trials.update().where(trials.c.trial_id.in_(ids)).values(
            number=sqlalchemy.select(sqlalchemy.func.count(earlier.c.trial_id))
            .where(earlier.c.study_id == sid)
            .where(earlier.c.trial_id < trials.c.trial_id).scalar_subquery())
        .returning(trials.c.trial_id, trials.c.number)).all())
    return ids, numbers


def _create_one_sqlite(session: Any, sid: int, now: datetime.datetime
                       ) -> tuple[list[int], dict[int, int]]:
    """One trial in one statement, for a trial alone on SQLite: inserted from the study's row
    (none when the study is gone: Optuna's KeyError, as its lookup of the study raises) and
    numbered by the count of the study's trials, all of which have smaller ids (SQLite gives
    a new row the largest id). SQLite's transaction already holds the database's write lock
    (BEGIN IMMEDIATE, losstune/storage.py), so no other worker counts or inserts meanwhile:
    what the study row's lock is for on PostgreSQL."""
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    trials, studies = models.TrialModel.__table__, models.StudyModel.__table__
    earlier = trials.alias("earlier")
    count = (sqlalchemy.select(sqlalchemy.func.count(earlier.c.trial_id))
             .where(earlier.c.study_id == sid).scalar_subquery())
    row = session.execute(
        trials.insert().from_select(
            ["number", "study_id", "state", "datetime_start"],
            sqlalchemy.select(count, studies.c.study_id,
                              sqlalchemy.literal(TrialState.RUNNING, trials.c.state.type),
                              sqlalchemy.literal(_stored_time(now),
                                                 trials.c.datetime_start.type))
            .where(studies.c.study_id == sid))
        .returning(trials.c.trial_id, trials.c.number)).first()
    if row is None:
        raise KeyError(models.NOT_FOUND_MSG)  # as StudyModel.find_or_raise_by_id raises
    return [row.trial_id], {row.trial_id: row.number}


def waiting_trial_ids(study: "optuna.Study") -> list[int]:
    """The study's WAITING trials, oldest first, as ``study.ask()`` finds them (on the RDB
    storage one read of their ids, not of every running trial whole)."""
    from optuna.trial import TrialState

    backend = rdb_backend(storage_of(study))
    if backend is None:
        return [trial_id(t) for t in storage_of(study).get_all_trials(
            study_id(study), deepcopy=False, states=(TrialState.WAITING,))]
    import sqlalchemy
    from optuna.storages._rdb import models

    from losstune.storage import read_only

    with read_only(backend.engine) as session:
        return list(session.execute(
            sqlalchemy.select(models.TrialModel.trial_id)
            .where(models.TrialModel.study_id == study_id(study))
            .where(models.TrialModel.state == TrialState.WAITING)
            .order_by(models.TrialModel.number)).scalars())


def trial_from(study: "optuna.Study", frozen: "optuna.trial.FrozenTrial") -> "optuna.Trial":
    """``optuna.Trial(study, trial_id)`` for a trial this process has just created, without
    its read of the trial back: what ``Trial.__init__`` does, with ``frozen`` as what it
    read."""
    import optuna

    trial = optuna.Trial.__new__(optuna.Trial)
    trial.study = study
    trial._trial_id = frozen._trial_id
    trial.storage = storage_of(study)
    trial._cached_frozen_trial = frozen
    study.sampler.before_trial(filtered(study, frozen), frozen)
    trial.relative_search_space = None
    trial._relative_params = None
    trial._fixed_params = frozen.system_attrs.get("fixed_params", {})
    return trial


def trials_with_user_attr(study: "optuna.Study", key: str, states: tuple[Any, ...],
                          without: str) -> list[tuple[int, int, Any]]:
    """``(trial_id, number, value)`` of each trial in ``states`` that has the user attribute
    ``key`` and not ``without``, by number: on the RDB storage one read of those rows, not of
    every trial whole."""
    return _with_user_attr(study, key, states, without, waiting=False)[1]


def waiting_and_with_user_attr(study: "optuna.Study", key: str, states: tuple[Any, ...],
                               without: str) -> tuple[list[int], list[tuple[int, int, Any]]]:
    """:func:`waiting_trial_ids` and :func:`trials_with_user_attr`, on the RDB storage in one
    read (what a batch reads before it asks its trials)."""
    return _with_user_attr(study, key, states, without, waiting=True)


def _with_user_attr(study: "optuna.Study", key: str, states: tuple[Any, ...], without: str,
                    waiting: bool) -> tuple[list[int], list[tuple[int, int, Any]]]:
    from optuna.trial import TrialState

    backend = rdb_backend(storage_of(study))
    if backend is None:
        return (waiting_trial_ids(study) if waiting else [],
                [(trial_id(t), t.number, t.user_attrs[key])
                 for t in study.get_trials(deepcopy=False, states=states)
                 if key in t.user_attrs and without not in t.user_attrs])
    import sqlalchemy
    from optuna.storages._rdb import models

    from losstune.storage import read_only

    trial, attr = models.TrialModel, models.TrialUserAttributeModel
    other = sqlalchemy.orm.aliased(attr)
    wanted = (trial.state.in_(states) & attr.value_json.is_not(None)
              & ~sqlalchemy.exists().where((other.trial_id == trial.trial_id)
                                           & (other.key == without)))
    if waiting:  # the WAITING trials come in the same rows, with or without the attribute
        wanted = (trial.state == TrialState.WAITING) | wanted
    with read_only(backend.engine) as session:
        rows = session.execute(
            sqlalchemy.select(trial.trial_id, trial.number, trial.state, attr.value_json)
            .outerjoin(attr, (attr.trial_id == trial.trial_id) & (attr.key == key))
            .where(trial.study_id == study_id(study))
            .where(wanted)
            .order_by(trial.number)).all()
    listed = (lambda state: state == TrialState.WAITING) if waiting else (lambda state: False)
    return ([tid for tid, _, state, _ in rows if listed(state)],
            [(tid, number, json.loads(value)) for tid, number, state, value in rows
             if not listed(state)])


# ------------------------------------------------------------------------------ heartbeats
class Heartbeat:
    """The heartbeat of a batch's running trials: their first beat is written with their
    first record (:attr:`Pending.heartbeat`), then one thread beats all that still run every
    interval, in one statement on the RDB storage (Optuna's ``fail_stale_trials`` reads the
    same table). :meth:`done` takes a trial out before its tell; :meth:`stop` ends it."""

    def __init__(self, storage: Any, trial_ids: Iterable[int]) -> None:
        self.storage = storage
        self.ids = set(trial_ids)
        self.interval = storage.get_heartbeat_interval() if heartbeat_enabled(storage) else None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._warned = False
        self._thread: threading.Thread | None = None
        if self.interval is not None and self.ids:
            # A daemon: a process that dies leaves its trials to go stale, as it should.
            self._thread = threading.Thread(target=self._beat, daemon=True,
                                            name="losstune-heartbeat")
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = sorted(self.ids)
            if not ids:
                return
            try:
                self.beat(ids)
            except Exception as err:  # noqa: BLE001 - a missed beat; the next one may land
                if not self._warned:  # said once: trials that stop beating go stale
                    self._warned = True
                    import logging

                    logging.getLogger("losstune").warning(
                        "the heartbeat of %d running trial(s) could not be written (%s); "
                        "they will be failed as stale if it stays so", len(ids), err)

    def beat(self, ids: list[int]) -> None:
        backend = rdb_backend(self.storage)
        if backend is None:
            for tid in ids:
                self.storage.record_heartbeat(tid)
            return
        import sqlalchemy
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(backend.scoped_session) as session:
            session.execute(sqlalchemy.update(models.TrialHeartbeatModel)
                            .where(models.TrialHeartbeatModel.trial_id.in_(ids))
                            .values(heartbeat=sqlalchemy.func.current_timestamp()))

    def done(self, tid: int) -> None:
        with self._lock:
            self.ids.discard(tid)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
