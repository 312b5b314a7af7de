"""A trial's record written in one transaction (losstune/recording.py): the same stored trial
as Optuna's own calls give, on every storage; all of it or none of it; nothing lost to a kill."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import save_note
from optuna_dashboard._note import get_note_from_system_attrs

from losstune import recording
from tests.conftest import count_statements, write_study

EXE = str(Path(sys.executable).parent / "losstune")
LONG_NOTE = "### a note\n\n" + "| metric | value |\n" * 400  # several of the dashboard's chunks


def _storage_of(tmp_path: Path, kind: str, postgres: str | None) -> object:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'r.db'}"
    if kind == "postgresql":
        return postgres
    if kind == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(tmp_path / "r.log")))
    return optuna.storages.InMemoryStorage()


def note_of(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """The trial's note as optuna-dashboard reads it."""
    return get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id),
                                      trial._trial_id)["body"]


def _record(trial: optuna.Trial) -> None:
    """What a trial records, through the trial's own methods and the dashboard's note."""
    trial.set_user_attr("family", "focal")
    trial.set_user_attr("val.macro_f1", 0.8125)
    trial.set_user_attr("curve.loss", [1.5, 0.75, None])
    trial.set_user_attr("audit", {"loss": {"mean": 2.3}})
    trial.set_user_attr("error", None)
    trial.set_user_attr("family", "class_balanced")  # set twice: the last value stays
    for step, value in enumerate([0.5, float("nan"), float("inf"), float("-inf"), 0.875]):
        trial.report(value, step)
    trial.report(0.1, 0)  # a step reported twice: ignored, as Optuna ignores it


@pytest.fixture(params=["sqlite", "postgresql", "journal", "in_memory"])
def storage(request, tmp_path):
    postgres = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return _storage_of(tmp_path, request.param, postgres)


@pytest.mark.filterwarnings("ignore:The reported value is ignored")
def test_a_recorded_trial_is_stored_as_optunas_own_calls_store_it(storage):
    study = optuna.create_study(storage=storage, direction="maximize")
    optuna_way, ours = study.ask(), study.ask()
    with pytest.warns(UserWarning, match="already reported"):
        _record(optuna_way)
    save_note(optuna_way, LONG_NOTE)
    rec = recording.start(ours)
    _record(ours)
    rec.note(LONG_NOTE)
    # Held on the trial until written: the trial and the pruner see it, the storage does not.
    assert ours.user_attrs["family"] == "class_balanced"
    if rec.buffered:  # SQLite and PostgreSQL; in-memory and journal storages write through
        assert "family" not in study._storage.get_trial(ours._trial_id).user_attrs
    assert rec.buffered == isinstance(storage, str)
    rec.flush()
    for t in (optuna_way, ours):
        study.tell(t, 0.5)
    a, b = study.get_trials()
    assert a.user_attrs == b.user_attrs and a.user_attrs["family"] == "class_balanced"
    assert a.intermediate_values.keys() == b.intermediate_values.keys() == set(range(5))
    for step in range(5):
        x, y = a.intermediate_values[step], b.intermediate_values[step]
        assert x == y or (math.isnan(x) and math.isnan(y))
    assert note_of(study, b) == note_of(study, a) == LONG_NOTE


def test_a_trials_record_is_one_transaction_and_several_trials_share_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    study = optuna.create_study(storage=url, direction="maximize")
    trials = [study.ask() for _ in range(4)]
    for t in trials:
        _record(recording.start(t).trial)
        recording.start(t).note(LONG_NOTE)
    one = count_statements(lambda: recording.start(trials[0]).flush())
    # A transaction: BEGIN, the trials' states, one upsert per table, COMMIT.
    assert one <= 6, one
    for t in trials[1:]:
        t.set_user_attr("pid", 1)
    assert count_statements(lambda: recording.flush(trials[1:])) <= 4
    # Optuna's own calls for the same record: a transaction each.
    other = study.ask()
    with pytest.warns(UserWarning, match="already reported"):
        assert count_statements(lambda: _record(other)) >= 20  # 11 calls, 2 or 3 each


def test_a_record_that_fails_to_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    study = optuna.create_study(storage=url, direction="maximize")
    trial = study.ask()
    rec = recording.start(trial)
    trial.set_user_attr("pid", 123)
    rec.flush()
    _record(trial)
    rec.note("note")
    from sqlalchemy.orm import Session

    real, calls = Session.execute, [0]

    def failing(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 4:  # the last upsert (the note), after the attributes and the curve
            raise RuntimeError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Session, "execute", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        rec.flush()
    monkeypatch.setattr(Session, "execute", real)
    study = optuna.load_study(study_name=study.study_name, storage=url)
    stored = study.trials[0]
    assert stored.user_attrs == {"pid": 123} and stored.intermediate_values == {}
    assert note_of(study, stored) == ""
    rec.flush()  # still pending: written whole the next time
    stored = optuna.load_study(study_name=study.study_name, storage=url).trials[0]
    assert stored.user_attrs["family"] == "class_balanced" and len(stored.intermediate_values) == 5


KILL_BEFORE_RECORD = """
import os, signal, sys
from losstune import recording
write = recording.write
def killed_before_the_record(storage, records):
    if any(k.startswith("val.") for r in records for k in r.user_attrs):
        os.kill(os.getpid(), signal.SIGKILL)  # trained, record not yet written
    write(storage, records)
recording.write = killed_before_the_record
from losstune.cli import main
sys.argv = ["losstune", "search", sys.argv[1], "--storage", sys.argv[2]]
main()
"""


@pytest.mark.slow
def test_a_worker_killed_between_training_and_its_record_loses_nothing(tmp_path):
    """The population trained, the process dies before the one write of the records: its
    trials stay RUNNING with their early record only (design, seed, pid), and the next run
    fails them and trains them again."""
    study = write_study(tmp_path, {"n_trials": 3, "model": {"hidden": [8]}, "baselines": False,
                                   "racing": False,
                                   "training": {"epochs": 2, "population": 3}})
    url = f"sqlite:///{tmp_path / 'k.db'}"
    env = {**os.environ, "LOSSTUNE_HEARTBEAT_INTERVAL": "1", "LOSSTUNE_GRACE_PERIOD": "2"}
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_RECORD, str(study), url],
                            capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert [t.state.name for t in trials] == ["RUNNING"] * 3
    for t in trials:  # the early record, and not one key of the rest
        assert {"pid", "design_key", "seed_index", "family"} <= t.user_attrs.keys()
        assert not [k for k in t.user_attrs if k.startswith(("val.", "curve.", "test."))]
        assert t.intermediate_values == {}
    time.sleep(3)  # past the grace period: the dead worker's heartbeats are stale
    again = subprocess.run([EXE, "search", str(study), "--storage", url], capture_output=True,
                           text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and states.count("FAIL") == 3, states
    done = [t for t in trials if t.state.name == "COMPLETE"]
    for lost in trials[:3]:
        assert any(t.params == lost.params for t in done)
    assert all(k in t.user_attrs for t in done for k in ("val.macro_f1", "curve.loss"))


@pytest.mark.parametrize("state", ["COMPLETE", "PRUNED", "FAIL"])
def test_a_batch_tell_stores_and_returns_what_optunas_tell_does(tmp_path, state):
    """batch.tell_trial skips study.tell's two reads of the trial; what it stores and what it
    hands the callbacks are the same."""
    from losstune import batch

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 't.db'}", direction="maximize")
    optuna_way, ours = study.ask(), study.ask()
    for t in (optuna_way, ours):
        t.suggest_categorical("gamma", [2.0])
        recording.start(t)
        t.set_user_attr("family", "focal")
        for step, value in enumerate([0.25, 0.5]):
            t.report(value, step)
        recording.start(t).flush()
    kind = optuna.trial.TrialState[state]
    value = 0.75 if state == "COMPLETE" else None
    told = [study.tell(optuna_way, value, state=kind), batch.tell_trial(study, ours, kind, value)]
    stored = study.get_trials()
    for a, b in (told, stored, (told[1], stored[1])):
        assert (a.state, a.values, a.params, a.user_attrs, a.intermediate_values) == \
            (b.state, b.values, b.params, b.user_attrs, b.intermediate_values)
    assert stored[1].state == kind and stored[1].datetime_complete is not None
    assert stored[1].values == ([0.75] if state == "COMPLETE" else
                                [0.5] if state == "PRUNED" else None)
    with pytest.raises(ValueError, match="Cannot tell"):
        batch.tell_trial(study, ours, kind, value)  # told once only, as Optuna says
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        ours.set_user_attr("late", 1)  # nothing recorded after the tell


@pytest.mark.parametrize("population", [1, 4])
def test_a_grid_study_runs_to_the_end_of_its_grid(tmp_path, population):
    """Optuna's grid sampler stops the study from its after_trial hook once the grid is
    covered, which Optuna allows only inside study.optimize; every trial here is told by
    batch.tell_trial, and the search ends when only trained designs are left."""
    from click.testing import CliRunner

    from losstune.cli import main

    study = write_study(tmp_path, {
        "n_trials": 10, "baselines": False, "sampler": {"name": "grid"},
        "training": {"epochs": 1, "population": population},
        "search": {"families": ["focal"], "cross_entropy": None,
                   "focal": {"gamma": {"low": None, "high": None, "choices": [1.0, 2.0]},
                             "alpha": {"choices": [0.25, 0.5]}}}})
    url = f"sqlite:///{tmp_path / 'g.db'}"
    result = CliRunner().invoke(main, ["search", str(study), "--storage", url])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert {t.state.name for t in trials} <= {"COMPLETE"}
    trained = {(t.params.get("loss"), t.params.get("focal.gamma"), t.params.get("focal.alpha"))
               for t in trials if "epochs_trained" in t.user_attrs}
    assert len(trained) == len([t for t in trials if "epochs_trained" in t.user_attrs])
    assert {(g, a) for loss, g, a in trained if loss == "focal"} == {
        (1.0, 0.25), (1.0, 0.5), (2.0, 0.25), (2.0, 0.5)}


def test_a_design_that_failed_earlier_in_the_batch_is_no_answer_for_its_repeat():
    """Repeats in a batch are checked against one read of the trained designs plus the
    batch's own: a design whose trial failed there (its loss would not build) trains again
    for the next proposal of it; one that trains is that proposal's answer."""
    from losstune import trial as trial_mod

    study = optuna.create_study(direction="maximize")
    description = {"family": "focal", "gamma": 2.0, "alpha": 0.25}
    known: dict = {}
    first, second, third = study.ask(), study.ask(), study.ask()
    assert trial_mod.repeat_of(first, description, known) is None
    first._cached_frozen_trial.state = optuna.trial.TrialState.FAIL
    assert trial_mod.repeat_of(second, description, known) is None
    assert trial_mod.repeat_of(third, description, known).number == second.number


def test_a_batch_that_raises_leaves_no_trial_running(tmp_path, monkeypatch):
    """A sampler whose after_trial raised (the grid sampler over a baseline's continuous
    space did) left the batch's trials RUNNING for good: they are FAIL, with the reason."""
    from losstune import batch, runner
    from losstune import studyfile as spec_mod
    from tests.conftest import write_study

    spec = spec_mod.load(write_study(tmp_path, {"n_trials": 3, "training": {"epochs": 1}}))
    study = runner.create_or_load(spec, f"sqlite:///{tmp_path / 'r.db'}", heartbeat=False,
                                  base_dir=tmp_path)
    ctx = runner.load_context(spec, tmp_path)

    def broken(*args, **kwargs):
        raise ValueError("the sampler broke")

    monkeypatch.setattr(study.sampler, "after_trial", broken)
    with pytest.raises(ValueError, match="the sampler broke"):
        batch.run(study, ctx, 3)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 3 and "RUNNING" not in {t.state.name for t in trials}
    # The trials whose tell raised keep their outcomes (Optuna's tell, too, writes them in a
    # finally after the sampler's hook); any the batch had not told yet are FAIL, with why.
    for t in trials:
        assert (t.state.name == "COMPLETE" and t.values) or (
            t.state.name == "FAIL" and t.user_attrs["error"] == "ValueError: the sampler broke")


def test_the_repeats_of_a_design_that_failed_in_its_batch_do_not_point_at_each_other():
    """A batch proposed one design four times (trial 0 trains it, 1 to 3 wait for it). Trial
    0 was interrupted: 1 was told PRUNED as "the same design as trial 2, running", 2 as the
    same as 3, and 3 failed; the tally said "3 pruned". All three fail with trial 0."""
    from types import SimpleNamespace

    from losstune import batch

    study = optuna.create_study(direction="maximize")
    trials = [study.ask() for _ in range(4)]
    for t in trials:
        t.set_user_attr("design_key", "A")
    study.tell(trials[0], state=optuna.trial.TrialState.FAIL)
    waiting = {t.number for t in trials[1:]}
    for t in trials[1:]:
        state, _ = batch._answer_later(t, SimpleNamespace(spec=None), waiting)
        assert state == optuna.trial.TrialState.FAIL
        error = t.study.trials[t.number].user_attrs["error"]
        assert error == "the same design failed in this batch"
