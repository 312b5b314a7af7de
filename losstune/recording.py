"""A trial's record, held in memory while the trial runs and written in one transaction.

Layer: storage (beside :mod:`losstune.storage`; below :mod:`losstune.trial`,
:mod:`losstune.batch` and :mod:`losstune.population`, which record through it). The keys are
:mod:`losstune.results`'s; this module only decides *when* and *how* they reach the storage.

Optuna writes every ``set_user_attr``, ``report`` and optuna-dashboard note in a transaction of
its own: about 4 SQL statements each, and a trial's record has 30 to 60 of them (104 statements
a trial were counted in a population search, more than its training took on small data). A
:class:`Recording` keeps them on the trial (``trial.user_attrs`` and the pruner see them at
once, as with Optuna) and writes them together:

* the **early record** (the proposed design, its key and seed, the worker's PID) right after
  the proposal, so other workers see what trains and a dead worker's trials can be failed;
* the **rest** (curves, intermediate values, metrics, audit, dashboard note) in one transaction
  just before the trial is told, so a worker killed in between leaves the early record and a
  RUNNING trial (failed and retried as before), never half a record;
* during a long training, the intermediate values reported so far, every
  :data:`FLUSH_EVERY` seconds, so the dashboard still follows a running trial's curve.

(A population's PID is written for its K trials in one transaction right after they are
asked, before anything is proposed.)

The pruner's decisions do not change: Optuna's pruners compare a trial's own intermediate
values (held on the trial) with those of *finished* trials (all written before their tell).

Optuna has no public call that writes many attributes at once, so :func:`write` uses its RDB
storage's models inside one of its sessions, with the same upserts Optuna's own
``set_trial_user_attr`` issues (SQLite and PostgreSQL; any other storage is written key by key
through the public API). ``tests/test_recording.py`` checks that the stored trial reads back
exactly as Optuna's own calls store it, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

# Seconds between writes of a running trial's pending record (the dashboard's live view).
FLUSH_EVERY = 10.0


@dataclass
class Pending:
    """What one trial has recorded and not yet written."""

    trial_id: int
    study_id: int
    user_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate: dict[int, float] = field(default_factory=dict)
    study_system_attrs: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.user_attrs or self.intermediate or self.study_system_attrs)


class Recording:
    """Buffers a live ``optuna.Trial``'s ``set_user_attr`` and ``report`` (the trial's own
    methods are replaced on this instance, so every recording function keeps calling them) and
    its dashboard note (:meth:`note`); :meth:`flush` writes what is pending."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.pending = Pending(trial._trial_id, trial.study._study_id)
        self._written = time.monotonic()
        trial._losstune_recording = self
        # Where no one-transaction write exists (in-memory and journal storages, whose trials
        # share their objects with the storage), the trial writes through, as Optuna does.
        self.buffered = _one_transaction_backend(trial.storage) is not None
        if self.buffered:
            trial.set_user_attr = self.set_user_attr
            trial.report = self.report

    def _refuse_if_told(self) -> None:
        frozen = self.trial._cached_frozen_trial
        if frozen.state.is_finished():  # as Optuna's storage refuses it (never written else)
            from optuna.exceptions import UpdateFinishedTrialError

            raise UpdateFinishedTrialError(
                f"Trial#{frozen.number} has already finished and can not be updated.")

    def set_user_attr(self, key: str, value: Any) -> None:
        self._refuse_if_told()
        json.dumps(value)  # what Optuna's storage would refuse, refused now
        self.trial._cached_frozen_trial.user_attrs[key] = value
        self.pending.user_attrs[key] = value

    def report(self, value: float, step: int) -> None:
        """Optuna's ``Trial.report`` (same checks, same cache), written later."""
        import warnings

        if len(self.trial.study.directions) > 1:
            raise NotImplementedError(
                "Trial.report is not supported for multi-objective optimization.")
        self._refuse_if_told()
        value, step = float(value), int(step)
        if step < 0:
            raise ValueError(f"step={step} must be non-negative.")
        frozen = self.trial._cached_frozen_trial
        if step in frozen.intermediate_values:  # Optuna ignores it, and says so
            warnings.warn(f"The reported value is ignored because this step={step} is "
                          "already reported.", UserWarning, stacklevel=2)
            return
        frozen.intermediate_values[step] = value
        self.pending.intermediate[step] = value
        if time.monotonic() - self._written > FLUSH_EVERY:
            # The dashboard's live curve: the intermediate values alone. The record's other
            # keys wait for the one write before the tell.
            write(self.trial.storage, [Pending(self.pending.trial_id, self.pending.study_id,
                                               intermediate=self.pending.intermediate)])
            self.pending.intermediate = {}
            self._written = time.monotonic()

    def note(self, body: str) -> None:
        """The trial's optuna-dashboard note (``optuna_dashboard.save_note`` stores it as
        study system attributes, in chunks, with a version). A trial's note is written once,
        so its version is 1 and no earlier chunks need clearing; ``save_note`` would read
        every study system attribute twice to find that out."""
        if not self.buffered:
            from optuna_dashboard import save_note

            save_note(self.trial, body)
            return
        from optuna_dashboard._note import note_ver_key, split_body

        tid = self.trial._trial_id
        self.pending.study_system_attrs[note_ver_key(tid)] = 1
        self.pending.study_system_attrs.update(split_body(body, tid))

    def flush(self) -> None:
        flush([self.trial])

    def _written_now(self) -> None:
        self.pending = Pending(self.pending.trial_id, self.pending.study_id)
        self._written = time.monotonic()


def start(trial: Any) -> Recording:
    """The trial's recording (a new one the first time)."""
    return getattr(trial, "_losstune_recording", None) or Recording(trial)


def flush(trials: list[Any]) -> None:
    """Write what these trials have pending, all in one transaction."""
    recordings = [start(t) for t in trials]
    write(trials[0].storage if trials else None, [r.pending for r in recordings])
    for r in recordings:
        r._written_now()


# ------------------------------------------------------------------------------ the one write
def write(storage: Any, records: list[Pending]) -> None:
    """Write ``records`` (several trials' pending records) in one transaction where the storage
    is Optuna's RDB storage on SQLite or PostgreSQL; key by key through the public API
    otherwise (in-memory and journal storages, other databases)."""
    records = [r for r in records if r]
    if not records:
        return
    backend = _one_transaction_backend(storage)
    if backend is not None:
        _write_rdb(backend, records)
        return
    for r in records:
        for key, value in r.user_attrs.items():
            storage.set_trial_user_attr(r.trial_id, key, value)
        for step, value in sorted(r.intermediate.items()):
            storage.set_trial_intermediate_value(r.trial_id, step, value)
        for key, value in r.study_system_attrs.items():
            storage.set_study_system_attr(r.study_id, key, value)


def _one_transaction_backend(storage: Any) -> Any:
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


def _write_rdb(backend: Any, records: list[Pending]) -> None:
    """One session of Optuna's RDB storage: each trial checked updatable (as Optuna checks it
    before any write), then one multi-row upsert per table."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    if backend.engine.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert

    def upsert(model: Any, rows: list[dict[str, Any]], keys: list[str], values: list[str]
               ) -> None:
        # SQLite before 3.32 allows 999 bound values a statement: parts stay below that.
        part = 999 // len(rows[0])
        for start in range(0, len(rows), part):
            stmt = insert(model).values(rows[start:start + part])
            session.execute(stmt.on_conflict_do_update(
                index_elements=[getattr(model, k) for k in keys],
                set_={v: getattr(stmt.excluded, v) for v in values}))

    to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
    # An IntegrityError here is a fault, not another worker's race: it is raised, and the
    # records stay pending (Optuna's own attribute writes ignore it).
    with _create_scoped_session(backend.scoped_session) as session:
        ids = sorted({r.trial_id for r in records})
        found = {t.trial_id: t.state for t in session.query(models.TrialModel).filter(
            models.TrialModel.trial_id.in_(ids))}
        for trial_id in ids:
            if trial_id not in found:
                raise KeyError(f"No trial with trial_id {trial_id} exists.")
            backend.check_trial_is_updatable(trial_id, found[trial_id])
        user = [dict(trial_id=r.trial_id, key=k, value_json=json.dumps(v))
                for r in records for k, v in r.user_attrs.items()]
        steps = []
        for r in records:
            for step, value in sorted(r.intermediate.items()):
                stored, kind = to_stored(value)
                steps.append(dict(trial_id=r.trial_id, step=step, intermediate_value=stored,
                                  intermediate_value_type=kind))
        system = [dict(study_id=r.study_id, key=k, value_json=json.dumps(v))
                  for r in records for k, v in r.study_system_attrs.items()]
        if user:
            upsert(models.TrialUserAttributeModel, user, ["trial_id", "key"], ["value_json"])
        if steps:
            upsert(models.TrialIntermediateValueModel, steps, ["trial_id", "step"],
                   ["intermediate_value", "intermediate_value_type"])
        if system:
            upsert(models.StudySystemAttributeModel, system, ["study_id", "key"],
                   ["value_json"])
