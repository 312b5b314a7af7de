"""A trial's record, held in memory while the trial runs and written in one transaction.

Layer: storage (beside :mod:`losstune.storage`; below :mod:`losstune.trial`,
:mod:`losstune.batch` and :mod:`losstune.population`, which record through it). The keys are
:mod:`losstune.results`'s; this module only decides *when* and *how* they reach the storage.

Optuna writes every ``set_user_attr``, ``report`` and optuna-dashboard note in a transaction of
its own: about 4 SQL statements each, and a trial's record has 30 to 60 of them (104 statements
a trial were counted in a population search, more than its training took on small data). A
:class:`Recording` keeps them on the trial (``trial.user_attrs`` and the pruner see them at
once, as with Optuna) and writes them together:

* the **early record** (the proposed design, its key and seed) right after the proposal, so
  other workers see what trains and the sampler's constant liar sees the batch's proposals so
  far (with a sampler that reads no running trial, random or CMA-ES, a batch's early records
  are written together once all are proposed, still before any trains);
* the **rest** (curves, intermediate values, metrics, audit, dashboard note) in one transaction
  just before the trial is told, so a worker killed in between leaves the early record and a
  RUNNING trial (failed and retried as before), never half a record;
* during a long training, the intermediate values reported so far, every
  :data:`FLUSH_EVERY` seconds, so the dashboard still follows a running trial's curve.

(A new trial's worker PID goes with its early record, or, on a storage without heartbeats (a
journal file), with the trial itself; a queued trial a worker claims gets its PID and first
heartbeat in one transaction right after it is claimed, before anything is proposed.)

The pruner's decisions do not change: Optuna's pruners compare a trial's own intermediate
values (held on the trial) with those of *finished* trials (all written before their tell).

The trial's parameters are held the same way (a suggestion writes nothing; the early record
carries them) and so is its outcome: :func:`tell` writes the rest of the record, the state and
the values of several trials in one transaction. Optuna has no public call that writes many
things at once, so the write itself is :func:`losstune.optuna_adapter.write` (Optuna's RDB
models in one of its sessions on SQLite and PostgreSQL; call by call through the public API on
any other storage). ``tests/test_recording.py`` checks that the stored trial reads back exactly
as Optuna's own calls store it, on every storage.
"""

from __future__ import annotations

import json
import time
from typing import Any

from losstune import optuna_adapter as adapter
from losstune.optuna_adapter import Pending

# Seconds between writes of a running trial's pending record (the dashboard's live view).
FLUSH_EVERY = 10.0


class _HeldParams:
    """The trial's storage, but a parameter it suggests is held in its pending record (the
    early record writes it) instead of written in a transaction of its own."""

    def __init__(self, storage: Any, pending: "Recording") -> None:
        self._storage, self._recording = storage, pending

    def set_trial_param(self, trial_id: int, name: str, internal: float, dist: Any) -> None:
        pending = self._recording.pending
        adapter.check_param(self._storage, pending.study_id, name, dist)
        pending.params[name] = (internal, dist)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


class Recording:
    """Buffers a live ``optuna.Trial``'s ``set_user_attr``, ``report`` and suggested
    parameters (the trial's own methods, and its storage's ``set_trial_param``, are replaced
    on this instance, so every recording function keeps calling them) and its dashboard note
    (:meth:`note`); :meth:`flush` writes what is pending."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.storage = trial.storage
        self.pending = Pending(adapter.trial_id(trial), adapter.study_id(trial.study))
        self._written = time.monotonic()
        trial._losstune_recording = self
        # Where no one-transaction write exists (in-memory and journal storages, whose trials
        # share their objects with the storage), the trial writes through, as Optuna does.
        self.buffered = adapter.rdb_backend(self.storage) is not None
        if self.buffered:
            trial.set_user_attr = self.set_user_attr
            trial.report = self.report
            trial.storage = _HeldParams(self.storage, self)

    def _refuse_if_told(self) -> None:
        frozen = adapter.held(self.trial)
        if frozen.state.is_finished():  # as Optuna's storage refuses it (never written else)
            from optuna.exceptions import UpdateFinishedTrialError

            raise UpdateFinishedTrialError(
                f"Trial#{frozen.number} has already finished and can not be updated.")

    def set_user_attr(self, key: str, value: Any) -> None:
        self._refuse_if_told()
        json.dumps(value)  # what Optuna's storage would refuse, refused now
        adapter.held(self.trial).user_attrs[key] = value
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
        frozen = adapter.held(self.trial)
        if step in frozen.intermediate_values:  # Optuna ignores it, and says so
            warnings.warn(f"The reported value is ignored because this step={step} is "
                          "already reported.", UserWarning, stacklevel=2)
            return
        frozen.intermediate_values[step] = value
        self.pending.intermediate[step] = value
        if time.monotonic() - self._written > FLUSH_EVERY:
            # The dashboard's live curve: the intermediate values alone. The record's other
            # keys wait for the one write before the tell.
            adapter.write(self.storage, [Pending(self.pending.trial_id, self.pending.study_id,
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
        self.pending.study_system_attrs.update(
            adapter.dashboard_note(self.pending.trial_id, body))

    def flush(self) -> None:
        flush([self.trial])

    def _written_now(self) -> None:
        self.pending = Pending(self.pending.trial_id, self.pending.study_id)
        self._written = time.monotonic()


def start(trial: Any) -> Recording:
    """The trial's recording (a new one the first time)."""
    return getattr(trial, "_losstune_recording", None) or Recording(trial)


def flush(trials: list[Any], *, heartbeat: bool = False) -> None:
    """Write what these trials have pending, all in one transaction; with ``heartbeat``,
    their first heartbeat too."""
    recordings = [start(t) for t in trials]
    for r in recordings:
        r.pending.heartbeat = heartbeat
    write(recordings[0].storage if recordings else None, [r.pending for r in recordings])
    for r in recordings:
        r._written_now()


def tell(told: list[tuple[Any, Any, list[float] | None]]) -> set[int]:
    """Write the rest of these trials' records and their outcomes, ``(trial, state,
    values)``, in one transaction (all of it or none of it: a process killed before it leaves
    the trials RUNNING with their early record, to be failed and retried). Returns the ids of
    those another process had finished meanwhile (failed as stale): nothing of theirs is
    written, and their records are dropped."""
    recordings = [start(t) for t, _, _ in told]
    for r, (_, state, values) in zip(recordings, told):
        r.pending.outcome = (state, values)
    try:
        refused = write(recordings[0].storage if recordings else None,
                        [r.pending for r in recordings])
    except BaseException:
        for r in recordings:
            r.pending.outcome = None
        raise
    for r in recordings:
        r._written_now()
    return refused


def write(storage: Any, records: list[Pending]) -> set[int]:
    """The one write (:func:`losstune.optuna_adapter.write`; a test may stand in for it)."""
    return adapter.write(storage, records)
